//! `mysqk watch` end to end on a real MariaDB (the binary's shared server):
//! kills with snapshots, status and log; reaction speed; run_max_count,
//! time window and dry run semantics; live reload (invalid, valid, instances
//! added and removed); the lock file and a clean stop on SIGTERM; the status
//! file written on change and at most once a second.
//! Tests that crash, freeze or fill a server are in tests/watch_servers.rs.

mod support;
mod watch_harness;

use std::fs;
use std::time::{Duration, Instant};

use chrono::{Local, Timelike};

use support::{mysqk_bin, run_with_timeout, server};
use watch_harness::{assert_killed, count_lines, is_mode_0600, Setup, Watch};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn addr() -> String {
    server().addr()
}

fn users_of(t: &Setup) -> [&watch_harness::User; 3] {
    [&t.app1, &t.app2, &t.mon]
}

#[test]
fn kills_a_runaway_with_snapshot_status_and_log_line() {
    let s = server();
    let t = Setup::new(&[s]);
    let log_file = t.dir.path().join("logs/mysqk.log");
    t.write(&t.ini_text(
        &format!("log_file={}", log_file.display()),
        &[("x", addr())],
        "run_max_count=999\ndry_run=0",
        &format!("k_user={}\nk_longtime=2", t.app1.name),
        "",
    ));
    let mut w = Watch::start(&t);
    w.log = log_file.clone();
    w.wait_connected(&["x"], &users_of(&t));

    // A password literal in the statement must not reach any file.
    let q = t.query(
        s,
        &t.app1,
        "SELECT SLEEP(60) /* set password = 'Leak-Me-7' */",
    );
    let id = q.conn_id;
    assert_killed(q, SECS(20), &w.log_text());

    w.wait_status(SECS(10), "kills >= 1", |st| {
        st["instances"]["x"]["kills"].as_u64() >= Some(1)
    });
    let st = w.status().unwrap();
    let x = &st["instances"]["x"];
    assert_eq!(x["state"], "checking", "{st:#}");
    assert_eq!(x["connected"], true);
    assert!(x["passes"].as_u64().unwrap() >= 1);
    assert_eq!(x["errors"], 0, "{st:#}");
    assert_eq!(st["pid"], w.pid());
    assert!(st["config_error"].is_null());

    // One line per kill in log_file: instance, id, user, action, result.
    w.wait_log(SECS(10), &format!("x: thread {id} user={}", t.app1.name));
    let log = w.log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("thread {id} user=")))
        .unwrap();
    assert!(
        line.contains("action=kill connection")
            && line.contains(&format!("killed (as {})", t.app1.name)),
        "{line}"
    );
    assert!(!log.contains("Leak-Me-7"), "{log}");

    // The snapshot: victims and actions, then the four parts; 0600; no secret.
    support::wait_until(SECS(10), "a snapshot file", || !t.snapshots("x").is_empty());
    let snaps = t.snapshots("x");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let path = &snaps[0];
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.len() == "20240101-120000-1.txt".len() && name.ends_with("-1.txt"),
        "{name}"
    );
    assert!(is_mode_0600(path), "snapshot mode");
    let text = fs::read_to_string(path).unwrap();
    for part in [
        "== victims and actions ==",
        "== processlist ==",
        "== SHOW ENGINE INNODB STATUS ==",
        "== lock waits ==",
        "== INNODB_TRX ==",
    ] {
        assert!(text.contains(part), "missing {part}:\n{text}");
    }
    assert!(text.contains(&id.to_string()) && text.contains("SLEEP(60)"));
    assert!(text.contains("LATEST DETECTED DEADLOCK") || text.contains("TRANSACTIONS"));
    for secret in t.passwords().into_iter().chain(["Leak-Me-7"]) {
        assert!(!text.contains(secret), "secret in the snapshot:\n{text}");
        assert!(!log.contains(secret), "secret in the log");
    }
    let status_text = fs::read_to_string(&w.status).unwrap();
    for secret in t.passwords() {
        assert!(!status_text.contains(secret));
    }
    let st = w.terminate(SECS(10));
    assert!(st.success(), "{st}");
}

#[test]
fn reacts_when_a_thread_crosses_k_longtime_not_a_whole_interval_later() {
    let s = server();
    let t = Setup::new(&[s]);
    // A long check_interval: without the crossing computation the kill would
    // wait for the next pass, up to 10 s after the limit.
    t.write(&t.ini_text(
        "check_interval=10",
        &[("x", addr())],
        "run_max_count=999",
        &format!("k_user={}\nk_longtime=3", t.app1.name),
        "",
    ));
    let q = t.query(s, &t.app1, "SELECT SLEEP(60)");
    let started = Instant::now();
    let mut w = Watch::start(&t);
    // The first pass sees it well below 3 s and schedules a wake-up for 3 s.
    assert_killed(q, SECS(30), &w.log_text());
    let took = started.elapsed();
    assert!(
        took < SECS(6),
        "killed {took:?} after it started: the crossing at 3 s was not used\n{}",
        w.log_text()
    );
    w.wait_status(SECS(5), "an extra pass at the crossing", |st| {
        st["instances"]["x"]["passes"].as_u64() >= Some(2)
            && st["instances"]["x"]["kills"].as_u64() >= Some(1)
    });
    assert!(w.terminate(SECS(10)).success());
}

#[test]
fn run_max_count_0_then_n_then_999_each_change_a_clean_start() {
    let s = server();
    let t = Setup::new(&[s]);
    let ini = |count: u32| {
        t.ini_text(
            "",
            &[("x", addr())],
            &format!("run_max_count={count}"),
            &format!("k_user={}\nk_longtime=1", t.app1.name),
            "",
        )
    };
    t.write(&ini(0));
    let mut w = Watch::start(&t);
    // 0: sessions held, nothing checked.
    w.wait_connected(&["x"], &users_of(&t));
    w.wait_status(SECS(10), "keep-alive", |st| {
        st["instances"]["x"]["state"] == "keep-alive"
    });
    let q1 = t.query(s, &t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q1.conn_id, 2);
    w.wait_rewrites(2);
    assert!(!q1.is_finished(), "run_max_count=0 must not kill");
    assert_eq!(w.inst("x")["passes"], 0);

    // 0 -> 2: a clean start, two counted passes, then keep-alive again.
    t.write(&ini(2));
    assert_killed(q1, SECS(15), &w.log_text());
    w.wait_status(SECS(15), "2 passes then keep-alive", |st| {
        let x = &st["instances"]["x"];
        x["run_max_count"] == 2 && x["run_count"] == 2 && x["state"] == "keep-alive"
    });
    let q2 = t.query(s, &t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q2.conn_id, 2);
    w.wait_rewrites(2);
    assert!(!q2.is_finished(), "no checks after N passes");
    assert_eq!(w.inst("x")["run_count"], 2);
    assert_eq!(w.inst("x")["state"], "keep-alive");

    // 2 -> 999: checks again, forever.
    t.write(&ini(999));
    assert_killed(q2, SECS(15), &w.log_text());
    w.wait_status(SECS(10), "checking, counting", |st| {
        let x = &st["instances"]["x"];
        x["state"] == "checking" && x["run_count"].as_u64() >= Some(3)
    });
    assert!(w.log_text().contains("run_max_count 0 -> 2: clean start"));
    assert!(w.log_text().contains("run_max_count 2 -> 999: clean start"));
    assert!(w.terminate(SECS(10)).success());
}

/// `HH:MM-HH:MM` from `now + from_h` to `now + to_h` hours (wrapping at midnight).
fn window(from_h: i64, to_h: i64) -> String {
    let now = Local::now();
    let at = |h: i64| {
        let t = now + chrono::Duration::hours(h);
        format!("{:02}:{:02}", t.hour(), t.minute())
    };
    format!("{}-{}", at(from_h), at(to_h))
}

#[test]
fn a_time_window_that_excludes_now_kills_nothing_until_it_includes_now() {
    let s = server();
    let t = Setup::new(&[s]);
    let ini = |w: &str| {
        t.ini_text(
            "",
            &[("x", addr())],
            &format!("run_max_count=999\nrun_time_window={w}"),
            &format!("k_user={}\nk_longtime=1", t.app1.name),
            "",
        )
    };
    t.write(&ini(&window(2, 3)));
    let mut w = Watch::start(&t);
    w.wait_status(SECS(20), "outside-window", |st| {
        st["instances"]["x"]["state"] == "outside-window"
    });
    let q = t.query(s, &t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 2);
    w.wait_rewrites(2);
    assert!(!q.is_finished(), "outside the window nothing is killed");
    assert_eq!(w.inst("x")["passes"], 0);
    assert!(t.snapshots("x").is_empty());

    // A window around now (crossing midnight when now is near it).
    t.write(&ini(&window(-1, 1)));
    assert_killed(q, SECS(15), &w.log_text());
    w.wait_status(SECS(5), "checking", |st| {
        st["instances"]["x"]["state"] == "checking"
    });
    assert!(w.terminate(SECS(10)).success());
}

#[test]
fn dry_run_reports_a_thread_once_across_many_passes() {
    let s = server();
    let t = Setup::new(&[s]);
    t.write(&t.ini_text(
        "",
        &[("x", addr())],
        "run_max_count=999\ndry_run=1",
        &format!("k_user={}\nk_longtime=1", t.app1.name),
        "",
    ));
    let mut w = Watch::start(&t);
    let q = t.query(s, &t.app1, "SELECT SLEEP(60)");
    let id = q.conn_id;
    support::wait_until(SECS(15), "the dry-run snapshot", || {
        !t.snapshots("x").is_empty()
    });
    let passes = w.inst("x")["passes"].as_u64().unwrap();
    w.wait_status(SECS(15), "4 more passes", |st| {
        st["instances"]["x"]["passes"].as_u64() >= Some(passes + 4)
    });
    assert!(!q.is_finished(), "dry run kills nothing");
    assert!(s.thread_exists(id));
    assert_eq!(t.snapshots("x").len(), 1, "one report per thread");
    let log = w.log_text();
    assert_eq!(
        count_lines(&log, &format!("thread {id} user=")),
        1,
        "one log line per thread:\n{log}"
    );
    assert!(log.contains("result=\"dry run\""), "{log}");
    let text = fs::read_to_string(&t.snapshots("x")[0]).unwrap();
    assert!(text.contains("DRY RUN"), "{text}");
    let x = w.inst("x");
    assert_eq!(
        (x["matched"].as_u64(), x["kills"].as_u64()),
        (Some(1), Some(0))
    );
    s.kill_thread(id);
    assert!(w.terminate(SECS(10)).success());
}

#[test]
fn an_invalid_edit_is_logged_once_and_ignored_then_a_valid_edit_applies() {
    let s = server();
    let t = Setup::new(&[s]);
    t.write(&t.ini_text(
        "",
        &[("x", addr())],
        "run_max_count=999",
        "k_user=none\nk_longtime=1",
        "",
    ));
    let mut w = Watch::start(&t);
    w.wait_connected(&["x"], &users_of(&t));
    let q = t.query(s, &t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 2);

    // Invalid: a bad number. Everything else in it would kill app1's query.
    t.write(&t.ini_text(
        "",
        &[("x", addr())],
        "run_max_count=999",
        &format!("k_user={}\nk_longtime=ten", t.app1.name),
        "",
    ));
    w.wait_log(SECS(10), "config reload rejected");
    w.wait_status(SECS(10), "config_error", |st| {
        st["config_error"].is_string()
    });
    w.wait_rewrites(3);
    let log = w.log_text();
    assert_eq!(count_lines(&log, "config reload rejected"), 1, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("config reload rejected"))
        .unwrap();
    assert!(
        line.contains("mysqk.ini:") && line.contains("[db_commkill] k_longtime: `ten`"),
        "names the line and key: {line}"
    );
    assert!(!q.is_finished(), "the last good config (k_user=none) stays");

    // Valid again: applies on the next pass.
    t.write(&t.ini_text(
        "",
        &[("x", addr())],
        "run_max_count=999",
        &format!("k_user={}\nk_longtime=1", t.app1.name),
        "",
    ));
    assert_killed(q, SECS(15), &w.log_text());
    w.wait_status(SECS(10), "config_error cleared", |st| {
        st["config_error"].is_null()
    });
    assert!(w.log_text().contains("config reloaded from"));
    assert!(w.terminate(SECS(10)).success());
}

#[test]
fn adding_a_db_info_entry_starts_watching_it_and_removing_it_stops() {
    let s = server();
    let t = Setup::new(&[s]);
    // Both ids name the same server; x may kill nobody, y (common rules) may.
    let ini = |instances: &[(&str, String)]| {
        t.ini_text(
            "",
            instances,
            "run_max_count=999",
            &format!("k_user={}\nk_longtime=1", t.app1.name),
            "[id_x]\nk_user=none\n",
        )
    };
    t.write(&ini(&[("x", addr())]));
    let mut w = Watch::start(&t);
    w.wait_connected(&["x"], &users_of(&t));
    let q = t.query(s, &t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 2);
    assert!(!q.is_finished());

    t.write(&ini(&[("x", addr()), ("y", addr())]));
    assert_killed(q, SECS(20), &w.log_text());
    w.wait_log(SECS(5), "now watching y");
    support::wait_until(SECS(10), "a snapshot for y", || {
        !t.snapshots("y").is_empty()
    });
    assert!(t.snapshots("x").is_empty());
    w.wait_status(SECS(5), "y counts its kill", |st| {
        st["instances"]["y"]["kills"].as_u64() >= Some(1)
    });

    t.write(&ini(&[("x", addr())]));
    w.wait_log(SECS(10), "no longer watching y");
    w.wait_status(SECS(10), "y gone from the status", |st| {
        st["instances"].get("y").is_none() && st["instances"].get("x").is_some()
    });
    assert!(w.terminate(SECS(10)).success());
}

#[test]
fn a_reload_that_moves_the_status_file_removes_the_old_one() {
    let s = server();
    let t = Setup::new(&[s]);
    let ini = |settings: &str| {
        t.ini_text(
            settings,
            &[("x", addr())],
            "run_max_count=999",
            "k_user=none",
            "",
        )
    };
    t.write(&ini(""));
    let mut w = Watch::start(&t);
    let old = t.status_path();
    support::wait_until(SECS(10), "the status file", || old.exists());
    let moved = t.dir.path().join("elsewhere.status");
    t.write(&ini(&format!("status_file={}", moved.display())));
    support::wait_until(SECS(10), "the status file at its new path", || {
        moved.exists()
    });
    support::wait_until(SECS(5), "the old status file removed", || !old.exists());
    assert!(w.terminate(SECS(10)).success());
}

fn ini_for_lock(t: &Setup) -> String {
    t.ini_text("", &[("x", addr())], "run_max_count=999", "k_user=none", "")
}

#[test]
fn second_watch_and_cron_kill_exit_2_naming_the_pid_and_sigterm_releases_the_lock() {
    let t = Setup::new(&[server()]);
    let ini = t.write(&ini_for_lock(&t));
    let mut a = Watch::start(&t);
    let lock = t.lock_path();
    a.wait_status(SECS(20), "watch A running", |st| {
        st["instances"]["x"]["connected"] == true
    });
    assert_eq!(
        fs::read_to_string(&lock).unwrap().trim(),
        a.pid().to_string()
    );
    let pid = format!("pid {}", a.pid());

    // A second watch on the same config refuses to start.
    let out = run_with_timeout(
        mysqk_bin().args(["watch", "-c", ini.to_str().unwrap()]),
        SECS(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&pid) && err.contains(&lock.display().to_string()),
        "{err}"
    );

    // So does an overlapping cron run of `mysqk kill`, unless --no-lock.
    let out = run_with_timeout(
        mysqk_bin().args(["kill", "-c", ini.to_str().unwrap(), "--db", "all"]),
        SECS(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&pid) && err.contains("--no-lock"), "{err}");
    let out = run_with_timeout(
        mysqk_bin().args([
            "kill",
            "-c",
            ini.to_str().unwrap(),
            "--db",
            "all",
            "--no-lock",
        ]),
        SECS(30),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.assert_running();

    // SIGTERM: a clean stop within about one interval, exit 0, lock released.
    let t0 = Instant::now();
    let st = a.terminate(SECS(10));
    assert!(st.success(), "{st}\n{}", a.log_text());
    assert!(t0.elapsed() < SECS(5), "stopped in {:?}", t0.elapsed());
    assert!(!lock.exists(), "lock file removed");
    let log = a.log_text();
    assert!(
        log.contains("SIGTERM: stopping") && log.contains("mysqk watch stopped"),
        "{log}"
    );
    assert_eq!(a.inst("x")["state"], "stopped");

    // The cron run works again once the watch is gone, and holds the lock itself.
    let out = run_with_timeout(
        mysqk_bin().args(["kill", "-c", ini.to_str().unwrap(), "--db", "all"]),
        SECS(30),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!lock.exists());
}

#[test]
fn a_stale_lock_of_a_killed_watch_is_taken_over() {
    let t = Setup::new(&[server()]);
    t.write(&ini_for_lock(&t));
    let lock = t.lock_path();
    let mut a = Watch::start(&t);
    support::wait_until(SECS(20), "watch A holds the lock", || {
        fs::read_to_string(&lock).is_ok_and(|s| s.trim() == a.pid().to_string())
    });
    let dead = a.pid();
    a.child.signal(libc::SIGKILL);
    a.child.wait_timeout(SECS(10)).expect("killed");
    assert!(lock.exists(), "a SIGKILLed watch leaves its lock file");

    let mut b = Watch::start(&t);
    b.wait_log(SECS(20), &format!("taking over a stale lock of pid {dead}"));
    support::wait_until(SECS(10), "watch B holds the lock", || {
        fs::read_to_string(&lock).is_ok_and(|s| s.trim() == b.pid().to_string())
    });
    assert!(b.terminate(SECS(10)).success());
}

/// The command line of the shipped `examples/mysqk.cron`, pointed at `ini`.
fn cron_example_args(ini: &std::path::Path) -> Vec<String> {
    let text = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mysqk.cron"))
        .expect("examples/mysqk.cron");
    let line = text
        .lines()
        .find(|l| l.starts_with('*'))
        .expect("a crontab line");
    // m h dom mon dow user command...; the output redirection is the shell's.
    let words: Vec<&str> = line.split_whitespace().skip(6).collect();
    assert_eq!(words[0], "mysqk", "{line}");
    words[1..]
        .iter()
        .take_while(|w| !w.starts_with(">>") && !w.starts_with("2>"))
        .map(|w| {
            if *w == "/etc/mysqk/mysqk.ini" {
                ini.display().to_string()
            } else {
                w.to_string()
            }
        })
        .collect()
}

#[test]
fn the_cron_example_kills_and_overlapping_runs_exit_2() {
    use std::os::unix::io::AsRawFd;
    let s = server();
    let t = Setup::new(&[s]);
    let ini = t.write(&t.ini_text(
        "",
        &[("x", addr())],
        "run_max_count=999\ndry_run=0",
        &format!("k_user={}\nk_longtime=2", t.app1.name),
        "",
    ));
    let args = cron_example_args(&ini);
    let cron = || run_with_timeout(mysqk_bin().args(&args), SECS(30));

    // An earlier run that is still busy holds the lock (and wrote its pid).
    let lock = t.lock_path();
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let busy = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .unwrap();
    // SAFETY: flock on a descriptor owned by `busy`.
    assert_eq!(
        unsafe { libc::flock(busy.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    fs::write(&lock, "4242\n").unwrap();
    let q = t.query(s, &t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 2);
    let out = cron();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("pid 4242"), "{err}");
    assert!(!q.is_finished(), "an overlapping run kills nothing");

    // The earlier run ends (its lock goes with it): the next minute's run works.
    drop(busy);
    let out = cron();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_killed(q, SECS(10), "");
    assert!(!lock.exists(), "the run released its lock");
}

/// `watch --dry-run` (and `--interval`) hold across reloads: a file that
/// says `dry_run=0`, edited while the watch runs, still kills nothing.
#[test]
fn watch_dry_run_and_interval_hold_across_a_reload() {
    let s = server();
    let t = Setup::new(&[s]);
    let ini = |longtime: u64| {
        t.ini_text(
            "check_interval=30",
            &[("x", addr())],
            "run_max_count=999\ndry_run=0",
            &format!("k_user={}\nk_longtime={longtime}", t.app1.name),
            "",
        )
    };
    t.write(&ini(1));
    let mut w = Watch::start_with(&t, &["--dry-run", "--interval", "1"]);
    let q = t.query(s, &t.app1, "SELECT SLEEP(60)");
    let id = q.conn_id;
    w.wait_log(SECS(15), &format!("thread {id} user="));
    t.write(&ini(2));
    w.wait_log(SECS(15), "config reloaded");
    let passes = w.inst("x")["passes"].as_u64().unwrap_or(0);
    // --interval 1 still, not the file's 30 s.
    w.wait_status(SECS(10), "3 more passes after the reload", |st| {
        st["instances"]["x"]["passes"].as_u64() >= Some(passes + 3)
    });
    assert!(
        s.thread_exists(id),
        "killed after a reload:\n{}",
        w.log_text()
    );
    let x = w.inst("x");
    assert_eq!(x["kills"].as_u64(), Some(0), "{x}");
    assert_eq!(x["dry_run"], true, "{x}");
    s.kill_thread(id);
    let _ = q.join();
    assert!(w.terminate(SECS(10)).success());
}

/// Writes of the status file seen within `within`: each is a new file
/// renamed over the old one (a new inode), polled every 5 ms.
fn status_writes(path: &std::path::Path, within: Duration) -> usize {
    use std::os::unix::fs::MetadataExt;
    let sig = || {
        fs::metadata(path)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
    };
    let end = Instant::now() + within;
    let mut last = sig();
    let mut n = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
        let now = sig();
        if now != last {
            n += 1;
            last = now;
        }
    }
    n
}

/// The status file follows the work (issue 13): 20 instances passing every
/// second change it 20 times a second, and it is written at most once a
/// second; while nothing happens (no checks, pings 30 s apart) it is not
/// written at all.
#[test]
fn the_status_file_is_written_when_it_changed_and_at_most_once_a_second() {
    let t = Setup::new(&[server()]);
    let ids: Vec<String> = (0..20).map(|i| format!("i{i}")).collect();
    let instances: Vec<(&str, String)> = ids.iter().map(|i| (i.as_str(), addr())).collect();
    let ini = |settings: &str, commconfig: &str| {
        t.ini_text(settings, &instances, commconfig, "k_user=none", "")
    };
    t.write(&ini("check_interval=1", "run_max_count=999"));
    let mut w = Watch::start(&t);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    w.wait_connected(&refs, &[&t.app1, &t.mon]);

    let window = SECS(5);
    let busy = status_writes(&w.status, window);
    assert!(
        (3..=6).contains(&busy),
        "{busy} writes in {window:?} with 20 instances passing every second"
    );
    let passes: u64 = ids
        .iter()
        .map(|i| w.inst(i)["passes"].as_u64().unwrap_or(0))
        .sum();
    assert!(passes >= 60, "the instances did pass: {passes}");

    t.write(&ini("check_interval=1\nping_multi=30", "run_max_count=0"));
    w.wait_log(SECS(15), "config reloaded");
    w.wait_status(SECS(15), "every instance only keeps its sessions", |st| {
        ids.iter()
            .all(|i| st["instances"][i]["state"] == "keep-alive")
    });
    // The first keep-alive round may still be being written.
    std::thread::sleep(SECS(2));
    let idle = status_writes(&w.status, SECS(4));
    assert_eq!(idle, 0, "the status file rewritten while nothing changed");
    assert!(w.terminate(SECS(20)).success());
}
