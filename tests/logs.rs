//! Logs a person can follow, on a real server: one line per kill with its
//! instance, one summary line per pass that did something (not a second line
//! per kill), reload lines that say what changed, SIGHUP answered, one time
//! zone in logs, status and snapshots (local with offset, or UTC by
//! `log_utc`), timestamps on one-shot lines, and each error once, in words,
//! when a server is down or silent.

mod support;
mod watch_harness;

use std::fs;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use chrono::DateTime;
use regex::Regex;

use support::{mysqk_bin, run_with_timeout, server, unique, ChildGuard};
use watch_harness::{assert_killed, Setup, Watch};

const SECS: fn(u64) -> Duration = Duration::from_secs;
/// No DST, an offset with minutes: a stamp in the wrong zone cannot pass.
const TZ: &str = "Asia/Kolkata";

/// `mysqk watch` with `TZ` set (the harness's `Watch::start` sets none).
fn start_watch(t: &Setup) -> Watch {
    start_watch_env(t, &[])
}

fn start_watch_env(t: &Setup, env: &[(&str, &str)]) -> Watch {
    let stderr = t.dir.path().join(format!("watch-{}.stderr", unique("w")));
    let file = fs::File::create(&stderr).unwrap();
    let mut cmd = mysqk_bin();
    cmd.env("TZ", TZ)
        .envs(env.iter().copied())
        .arg("watch")
        .arg("-c")
        .arg(t.ini_path())
        .stdout(Stdio::null())
        .stderr(file);
    Watch {
        child: ChildGuard::spawn(&mut cmd),
        log: stderr.clone(),
        stderr,
        status: t.status_path(),
    }
}

/// The stamp that starts a log or one-shot line, with its UTC offset.
fn stamp_offset(line: &str) -> String {
    let first = line.split(' ').next().unwrap_or("");
    let t = DateTime::parse_from_rfc3339(first)
        .unwrap_or_else(|e| panic!("line does not start with a timestamp ({e}): {line}"));
    t.offset().to_string()
}

/// Sum of the first `N word` count after `needle`, over the lines holding it.
fn sum(text: &str, needle: &str, word: &str) -> u64 {
    let re = Regex::new(&format!(r"(\d+) {word}\b")).unwrap();
    text.lines()
        .filter_map(|l| l.split_once(needle).map(|(_, rest)| rest))
        .filter_map(|l| re.captures(l))
        .map(|c| c[1].parse::<u64>().unwrap())
        .sum()
}

fn assert_no_debug_text(text: &str) {
    for raw in [
        "DriverError {",
        "CodecError {",
        "IoError {",
        "MySqlError {",
        "os error",
    ] {
        assert!(!text.contains(raw), "raw driver text `{raw}`:\n{text}");
    }
}

#[test]
fn a_storm_is_one_line_per_kill_plus_one_summary_in_one_time_zone() {
    let s = server();
    let t = Setup::new(&[s]);
    let commkill = |longtime: u64| format!("k_user={}\nk_longtime={longtime}", t.app1.name);
    let ini = |settings: &str, longtime: u64| {
        t.ini_text(
            settings,
            &[("x", s.addr())],
            "run_max_count=999\ndry_run=0",
            &commkill(longtime),
            "",
        )
    };
    t.write(&ini("", 2));
    let mut w = start_watch(&t);
    w.wait_connected(&["x"], &[&t.app1, &t.app2, &t.mon]);

    const N: usize = 4;
    let queries: Vec<_> = (0..N)
        .map(|i| t.query(s, &t.app1, &format!("SELECT SLEEP(60) AS storm{i}")))
        .collect();
    let ids: Vec<u64> = queries.iter().map(|q| q.conn_id).collect();
    for q in queries {
        assert_killed(q, SECS(20), &w.log_text());
    }
    // The next passes see them gone: one line for all of them.
    support::wait_until(SECS(15), "the earlier kills' summary", || {
        sum(&w.log_text(), "earlier kills:", "gone") >= N as u64
    });
    let log = w.log_text();

    // One line per kill (SPEC 5), naming the instance.
    let kill_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("result=\"killed"))
        .collect();
    assert_eq!(kill_lines.len(), N, "{log}");
    for id in &ids {
        let line = kill_lines
            .iter()
            .find(|l| l.contains(&format!(" x: thread {id} user=")))
            .unwrap_or_else(|| panic!("no kill line naming x for thread {id}:\n{log}"));
        assert!(line.contains(" INFO "), "{line}");
    }
    // The pass summaries count the same kills, and the follow-up is counted,
    // not a second line per thread.
    assert_eq!(sum(&log, "x: pass ", "killed"), N as u64, "{log}");
    assert_eq!(sum(&log, "earlier kills:", "gone"), N as u64, "{log}");
    for id in &ids {
        let per_thread = log
            .lines()
            .filter(|l| l.contains(&format!("thread {id} ")))
            .count();
        assert_eq!(per_thread, 1, "thread {id}:\n{log}");
    }

    // One zone: the log, the status file, the snapshot header.
    for line in log.lines() {
        assert_eq!(stamp_offset(line), "+05:30", "{line}");
    }
    let updated = w.status().unwrap()["updated"].as_str().unwrap().to_string();
    assert!(updated.ends_with("+05:30"), "{updated}");
    support::wait_until(SECS(10), "a snapshot", || !t.snapshots("x").is_empty());
    let snap = fs::read_to_string(&t.snapshots("x")[0]).unwrap();
    assert!(snap.contains("+0530"), "{}", &snap[..snap.len().min(400)]);

    // A reload says what changed; log_utc switches every stamp to UTC.
    // Lines of the storm's passes may still come; the reload is after them.
    let before = log.lines().count();
    t.write(&ini("log_utc=1", 30));
    w.wait_log(SECS(15), "config reloaded from");
    let log = w.log_text();
    let reload = log
        .lines()
        .find(|l| l.contains("config reloaded from"))
        .unwrap();
    assert!(
        reload.contains("changed: x: k_longtime 2 -> 30; log_utc 0 -> 1"),
        "{reload}"
    );
    assert!(!reload.contains(&t.app1.pw) && !reload.contains(&t.mon.pw));
    w.wait_status(SECS(10), "a UTC status stamp", |st| {
        st["updated"].as_str().is_some_and(|u| u.ends_with('Z'))
    });

    // SIGHUP is answered even when there is nothing to apply.
    w.child.signal(libc::SIGHUP);
    w.wait_log(SECS(10), "unchanged, nothing to apply");
    let log = w.log_text();
    let after: Vec<&str> = log
        .lines()
        .skip(before)
        .skip_while(|l| !l.contains("config reloaded from"))
        .collect();
    assert!(after
        .iter()
        .any(|l| l.contains("SIGHUP: re-reading the config")));
    for line in after {
        assert_eq!(stamp_offset(line), "+00:00", "{line}");
        assert!(line.split(' ').next().unwrap().ends_with('Z'), "{line}");
    }
    assert!(w.terminate(SECS(20)).success());
}

#[test]
fn one_shot_lines_carry_time_and_say_dry_run_plainly() {
    let s = server();
    let t = Setup::new(&[s]);
    t.kill_ini(s.addr(), &format!("k_user={}\nk_longtime=1", t.app1.name));
    let q = t.query(s, &t.app1, "SELECT SLEEP(30) AS dry");
    s.wait_query_time(q.conn_id, 1);
    let out = run_with_timeout(
        mysqk_bin().env("TZ", TZ).args([
            "kill",
            "-c",
            t.ini_path().to_str().unwrap(),
            "--db",
            "x",
            "--dry-run",
            "--no-lock",
        ]),
        SECS(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.contains(" x: ") && l.contains("scanned"))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    assert_eq!(stamp_offset(summary), "+05:30", "{summary}");
    assert!(
        Regex::new(r" x: \d+ threads scanned, DRY RUN: 1 matched, none killed$")
            .unwrap()
            .is_match(summary),
        "{summary}"
    );
    assert!(s.thread_exists(q.conn_id), "a dry run killed it");
    drop(q);
}

#[test]
fn a_down_or_silent_server_is_reported_once_in_words() {
    let s = server();
    let t = Setup::new(&[s]);
    // A port nothing listens on, and one that accepts and never answers.
    let down = TcpListener::bind("127.0.0.1:0").unwrap();
    let down_addr = down.local_addr().unwrap().to_string();
    drop(down);
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    t.write(&t.ini_text(
        "connect_timeout=1\nread_timeout=2",
        &[("down", down_addr), ("silent", silent_addr)],
        "run_max_count=999\ndry_run=0",
        &format!("k_user={}\nk_longtime=5", t.app1.name),
        "",
    ));

    // One-shot: one ERROR line per instance, and the reason nowhere else.
    let out = run_with_timeout(
        mysqk_bin().args([
            "kill",
            "-c",
            t.ini_path().to_str().unwrap(),
            "--db",
            "down,silent",
            "--no-lock",
        ]),
        SECS(60),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_no_debug_text(&text);
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 2, "{text}");
    for (dbid, why) in [("down", "connection refused"), ("silent", "no answer")] {
        let line = errors
            .iter()
            .find(|l| {
                l.contains(&format!(
                    " {dbid}: ERROR cannot log in as db_puser {}",
                    t.mon.name
                ))
            })
            .unwrap_or_else(|| panic!("no ERROR line for {dbid}:\n{text}"));
        assert!(line.contains(why), "{line}");
        stamp_offset(line);
        assert_eq!(
            text.matches(why).count(),
            1,
            "`{why}` more than once:\n{text}"
        );
    }

    // watch: the refused login said once per user at most (not once per
    // pass; a login that reaches no server holds the instance's other
    // logins back until the next backoff step, so they may not be tried
    // yet), the pass failure without repeating it, and no driver debug text.
    let mut w = Watch::start(&t);
    w.wait_status(SECS(30), "both instances failing", |st| {
        ["down", "silent"]
            .iter()
            .all(|d| st["instances"][d]["last_error"].is_string())
    });
    w.wait_rewrites(4);
    let log = w.log_text();
    assert_no_debug_text(&log);
    let mut said = 0;
    for user in [&t.app1, &t.app2, &t.mon] {
        let refused = log
            .lines()
            .filter(|l| {
                l.contains("down: cannot connect to") && l.contains(&format!(" as {}: ", user.name))
            })
            .count();
        assert!(
            refused <= 1,
            "{} refused {refused} times:\n{log}",
            user.name
        );
        said += refused;
    }
    assert!(said >= 1, "the refusal is said:\n{log}");
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("down: pass failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert!(
        failed[0].ends_with(&format!("no session of db_puser {}", t.mon.name)),
        "{}",
        failed[0]
    );
    assert!(w.terminate(SECS(30)).success());
    drop(silent);
}

#[test]
fn debug_shows_each_pass_with_its_timings() {
    let s = server();
    let t = Setup::new(&[s]);
    t.write(&t.ini_text(
        "",
        &[("x", s.addr())],
        "run_max_count=999\ndry_run=1",
        &format!("k_user={}\nk_longtime=1", t.app1.name),
        "",
    ));
    let q = t.query(s, &t.app1, "SELECT SLEEP(30) AS timed");
    let mut w = start_watch_env(&t, &[("RUST_LOG", "debug")]);
    w.wait_log(SECS(20), "DRY RUN: 1 matched, none killed");
    let timing = Regex::new(
        r" DEBUG x: pass (\d+): \d+ rows? read; scan \d+\.\d ms, verify \d+\.\d ms, match \d+\.\d ms(, snapshot \d+\.\d ms, kill \d+\.\d ms)?$",
    )
    .unwrap();
    support::wait_until(SECS(10), "three passes with timings", || {
        w.log_text().lines().filter(|l| timing.is_match(l)).count() >= 3
    });
    let log = w.log_text();
    // The pass that matched timed its snapshot and kill steps too, and its
    // number is the one its summary line carries.
    let summary = log
        .lines()
        .find(|l| l.contains("DRY RUN: 1 matched"))
        .unwrap();
    let n = Regex::new(r"x: pass (\d+):")
        .unwrap()
        .captures(summary)
        .unwrap()[1]
        .to_string();
    let timed = log
        .lines()
        .find(|l| timing.captures(l).is_some_and(|c| c[1] == n))
        .unwrap_or_else(|| panic!("no timings for pass {n}:\n{log}"));
    assert!(
        timed.contains(", snapshot ") && timed.contains(", kill "),
        "{timed}"
    );
    // The driver's own debug output stays out.
    assert!(
        !log.contains("mysql_common") && !log.contains("mysql::"),
        "{log}"
    );
    assert!(w.terminate(SECS(20)).success());
    drop(q);
}
