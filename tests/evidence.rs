//! Issue 14, "nothing leaked, nothing lost, nothing silently ignored": what
//! mysqk writes about server text (terminal, log, snapshot, JSON, mail, hook,
//! status file) carries no password literal and no control character, on
//! real servers and over generated rows; evidence files never collide and a
//! full disk leaves nothing half-written behind.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use mysqk::core::matcher::{Reason, Victim};
use mysqk::core::outcome::{Action, Followup, KillResult, Outcome};
use mysqk::core::row::ProcRow;
use mysqk::core::text::is_unsafe;
use mysqk::report::event::Event;
use mysqk::report::{jsonl, mail, output, reporter};
use mysqk::server::inspector::Snapshot;
use proptest::prelude::*;
use support::smtp::SmtpServer;
use support::{mysqk_bin, run_with_timeout, server, unique, wait_until, write_ini, Tenant};

/// What may appear in human-readable output: newlines, nothing else below
/// 0x20, no DEL, no C1, no ESC (and no bidi override).
fn assert_clean(place: &str, text: &str) {
    if let Some((i, c)) = text
        .char_indices()
        .find(|&(_, c)| c != '\n' && is_unsafe(c))
    {
        let from = text[..i].char_indices().rev().nth(40).map_or(0, |(j, _)| j);
        panic!(
            "{place}: raw {:?} at byte {i}: …{:?}…",
            c,
            &text[from..(i + c.len_utf8()).min(text.len())]
        );
    }
}

/// JSON: valid, no raw control byte, and no unsafe character in any value.
fn assert_clean_json(place: &str, line: &str) {
    assert!(
        !line.bytes().any(|b| b < 0x20),
        "{place}: raw control byte: {line:?}"
    );
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{place}: not JSON ({e}): {line}"));
    fn walk(place: &str, v: &serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                assert!(!s.chars().any(is_unsafe), "{place}: value {s:?}")
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(place, x)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(place, x)),
            _ => {}
        }
    }
    walk(place, &v);
}

/// mysqk's own section lines in a snapshot.
const SECTIONS: &[&str] = &[
    "== victims and actions ==",
    "== follow-ups on earlier kills ==",
    "== processlist ==",
    "== SHOW ENGINE INNODB STATUS ==",
    "== lock waits ==",
    "== INNODB_TRX ==",
];

/// Every line starting like a section of mysqk's own is one, once each.
fn assert_structure(snapshot: &str) {
    let own: Vec<&str> = snapshot
        .lines()
        .filter(|l| l.starts_with("==") || l.starts_with('#'))
        .collect();
    for l in &own {
        assert!(
            SECTIONS.contains(l) || l.starts_with("# [mysqk]") || l.starts_with("# time: "),
            "server text passes for mysqk's structure: {l:?}\n{snapshot}"
        );
    }
    for s in SECTIONS {
        assert!(
            own.iter().filter(|l| *l == s).count() <= 1,
            "{s} twice:\n{snapshot}"
        );
    }
}

fn nasty() -> impl Strategy<Value = String> {
    // Controls of every kind, an ANSI colour, a forged section, Chinese, quotes.
    let piece = prop_oneof![
        proptest::char::range('\u{0}', '\u{a0}').prop_map(String::from),
        Just("\u{1b}[31m".to_string()),
        Just("\n== victims and actions ==\n".to_string()),
        Just("\r\n# [mysqk] forged\n".to_string()),
        Just("中文".to_string()),
        Just("\u{202e}\u{2028}".to_string()),
        Just("'\"\\ =".to_string()),
        "[a-z ]{0,6}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn event_of(rows: Vec<ProcRow>, status: String, err: String) -> Event {
    let mut e = Event::new("crm0", "10.0.0.1:3306", false);
    e.outcomes = rows
        .iter()
        .enumerate()
        .map(|(i, r)| Outcome {
            victim: Victim {
                row: r.clone(),
                reasons: vec![Reason::LongRunning {
                    secs: 12,
                    limit: 10,
                }],
            },
            action: Action::KillConnection,
            result: match i % 3 {
                0 => KillResult::Killed {
                    via: r.user.clone(),
                },
                1 => KillResult::Failed {
                    message: err.clone(),
                },
                _ => KillResult::NoSession {
                    message: err.clone(),
                },
            },
        })
        .collect();
    e.followups = vec![Followup {
        id: 7,
        user: rows.first().map(|r| r.user.clone()).unwrap_or_default(),
        outcome: "stuck".into(),
        detail: err.clone(),
    }];
    e.snapshot = Some(Snapshot {
        processlist: rows,
        innodb_status: status.clone(),
        lock_waits: err,
        innodb_trx: status,
    });
    e
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// No byte < 0x20 but the snapshot's own newlines, and no DEL, C1 or ESC,
    /// reaches any output, whatever the server's names and texts hold.
    #[test]
    fn every_output_of_server_text_is_neutral(
        fields in proptest::collection::vec((nasty(), nasty(), nasty(), nasty(), nasty(), nasty()), 1..4),
        status in nasty(),
        err in nasty(),
    ) {
        let rows: Vec<ProcRow> = fields
            .into_iter()
            .enumerate()
            .map(|(i, (user, host, db, command, state, info))| ProcRow {
                query_id: None,
                id: i as u64 + 1,
                user,
                host,
                db: Some(db),
                command,
                time: 12,
                time_ms: None,
                time_high: false,
                state: Some(state),
                info: Some(info),
            })
            .collect();
        let e = event_of(rows, status, err);

        let snap = reporter::render_snapshot(&e);
        assert_clean("snapshot", &snap);
        assert_structure(&snap);
        assert_clean("table", &output::outcomes_table(&e.outcomes, 60));
        for o in &e.outcomes {
            let line = output::log_line("crm0", o);
            assert_clean("log line", &line);
            prop_assert!(!line.contains('\n'), "one line per record: {line:?}");
            assert_clean_json("--json", &jsonl::ThreadRecord::from_outcome(e.time, "crm0", o, false).to_line());
        }
        assert_clean_json("hook stdin", &jsonl::event_json(&e, None));
        let item = mail::MailItem::from_event(&e, None);
        let (subject, body) = mail::compose(&[&item], Duration::from_secs(60), "h");
        assert_clean("mail subject", &subject);
        assert_clean("mail body", &body);

        let board = mysqk::daemon::status::StatusBoard::new();
        board.register("crm0", "10.0.0.1:3306", 1);
        let first = e.snapshot.as_ref().map(|s| s.lock_waits.clone());
        board.update("crm0", 1, |s| {
            s.last_error = first.clone();
            s.disconnected_users.insert("app".into(), first.clone().unwrap_or_default());
        });
        board.set_config_error(first);
        let doc = board
            .render_if_dirty(true, Path::new("/etc/mysqk.ini"), chrono::Local::now(), 0)
            .expect("rendered");
        assert_clean_json("status file", &doc.replace('\n', " "));
    }
}

/// The part of every secret literal that must never show up.
const SECRET_HEAD: &str = "S3cr-";

/// This file's ini on top of the shared tenant: instance `x`, the app user
/// killable, mail and hook optional.
fn tenant_ini(t: &Tenant, commkill: &str, settings: &str, mail: &str) -> PathBuf {
    write_ini(
        t.dir.path(),
        &format!(
            "[settings]\nsnapshot_dir={snap}\n{settings}\n\n[mail_config]\n{mail}\n\n\
             [db_info]\nx={addr}\n\n[db_auth]\n{app}={pw}\n{mon}={pw}\n\n\
             [db_commconfig]\ndb_puser={mon}\nrun_max_count=999\ndry_run=0\n\n\
             [db_commkill]\nk_user={app}\n{commkill}\n",
            snap = t.dir.path().join("snap").display(),
            addr = server().addr(),
            app = t.app,
            mon = t.mon,
            pw = t.pw,
        ),
    )
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out: Output = run_with_timeout(mysqk_bin().args(args), Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A database named with an ANSI colour and a bell, and two running
/// statements of its owner: one carrying control characters, a forged
/// snapshot section and a key literal, one whose key literal is longer than
/// the server shows (cut off by the server's truncation). Everything mysqk
/// writes about them — the table, `--json`, the log, snapshots, the hook's
/// stdin, the mail — is clean and holds no part of either literal.
#[test]
fn server_text_reaches_no_output_raw_and_no_literal_survives() {
    let s = server();
    let t = Tenant::new("Pw-ev1");
    let smtp = SmtpServer::start();
    let db = format!("{}\u{1b}[31m\u{7}x", unique("evdb"));
    s.exec(&format!("CREATE DATABASE `{db}`"));
    s.exec(&format!("GRANT ALL ON `{db}`.* TO '{}'@'%'", t.app));
    let hook_out = t.dir.path().join("hook.json");
    let ini = tenant_ini(
        &t,
        "k_longtime=1",
        &format!("on_kill_command={{ cat; echo; }} >> {}", hook_out.display()),
        &format!(
            "mail_host={}\nmail_receiver=dba@example.com\nmail_tls=none",
            smtp.host_port()
        ),
    );
    let conn = |sql: &str| {
        let c = mysql::Conn::new(s.opts(&t.app, &t.pw).db_name(Some(db.clone())))
            .expect("app login into the odd database");
        support::BgQuery::start(c, sql)
    };
    let nasty = "SELECT SLEEP(60) /* \u{1b}[2J\r\t\u{7f}\u{85}\n== victims and actions ==\n# [mysqk] forged */, \
                 AES_ENCRYPT('a', 'S3cr-Key-one')";
    let q1 = conn(nasty);
    let long_key = format!("{SECRET_HEAD}{}", "ZqZq".repeat(20_000));
    let q2 = conn(&format!("SELECT SLEEP(60), AES_ENCRYPT('a', '{long_key}')"));
    s.wait_query_time(q1.conn_id, 1);
    s.wait_query_time(q2.conn_id, 1);
    let raw_info = s.thread(q2.conn_id).and_then(|r| r.4).unwrap_or_default();
    assert!(
        raw_info.len() < long_key.len(),
        "the server cuts the long statement (so a literal is left open): {} chars",
        raw_info.len()
    );

    let ini_s = ini.to_str().unwrap();
    let (code, table, log) = run(&["-v", "kill", "-c", ini_s, "--db", "x", "--dry-run"]);
    assert_eq!(code, 0, "{table}{log}");
    assert!(
        table.contains(&q1.conn_id.to_string()) && table.contains(&q2.conn_id.to_string()),
        "{table}"
    );
    assert!(
        table.contains("\\e[31m\\x07"),
        "the db name shown, not obeyed:\n{table}"
    );
    let (code, json, log2) = run(&["kill", "-c", ini_s, "--db", "x", "--dry-run", "--json"]);
    assert_eq!(code, 0, "{json}{log2}");
    assert_eq!(json.lines().count(), 2, "{json}");

    let mails = smtp.wait_messages(1, Duration::from_secs(15));
    wait_until(Duration::from_secs(15), "two hook runs", || {
        fs::read_to_string(&hook_out).is_ok_and(|h| h.lines().count() >= 2)
    });
    let snaps = files_under(&t.dir.path().join("snap"));
    let snaps: Vec<&PathBuf> = snaps
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    assert_eq!(snaps.len(), 2, "one snapshot per run: {snaps:?}");

    let mut places = vec![
        ("table".to_string(), table),
        ("log".to_string(), format!("{log}{log2}")),
        (
            "mail".to_string(),
            mails.iter().map(|m| m.body()).collect::<String>(),
        ),
    ];
    for p in &snaps {
        let text = fs::read_to_string(p).unwrap();
        assert_structure(&text);
        assert!(
            text.contains("== SHOW ENGINE INNODB STATUS ==\n  | "),
            "framed:\n{text}"
        );
        places.push((p.display().to_string(), text));
    }
    for (place, text) in &places {
        assert_clean(place, text);
    }
    for line in json.lines() {
        assert_clean_json("--json", line);
    }
    for line in fs::read_to_string(&hook_out).unwrap().lines() {
        assert_clean_json("hook stdin", line);
        places.push(("hook".into(), line.to_string()));
    }
    places.push(("--json".into(), json));
    for (place, text) in &places {
        for needle in [SECRET_HEAD, "ZqZq", "Key-one"] {
            assert!(
                !text.contains(needle),
                "`{needle}` survived in {place}:\n{text}"
            );
        }
    }
    s.kill_thread(q1.conn_id);
    s.kill_thread(q2.conn_id);
    let _ = (q1.join(), q2.join());
}

/// Three `mysqk kill --dry-run` at once (as cron and a person may): three
/// snapshot files, none overwritten, each whole.
#[test]
fn concurrent_runs_never_overwrite_each_others_snapshots() {
    let s = server();
    let t = Tenant::new("Pw-ev2");
    let ini = tenant_ini(&t, "k_longtime=1", "", "");
    let q = s.spawn_query(&t.app, &t.pw, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 1);
    let ini_s = ini.to_str().unwrap().to_string();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let ini_s = ini_s.clone();
            std::thread::spawn(move || {
                run(&["kill", "-c", &ini_s, "--db", "x", "--dry-run", "--no-lock"])
            })
        })
        .collect();
    for r in runs {
        let (code, out, err) = r.join().unwrap();
        assert_eq!(code, 0, "{out}{err}");
    }
    let snaps = files_under(&t.dir.path().join("snap").join("x"));
    assert_eq!(snaps.len(), 3, "{snaps:?}");
    for p in &snaps {
        let text = fs::read_to_string(p).unwrap();
        assert!(
            text.contains(&format!("{}", q.conn_id)) && text.contains("== INNODB_TRX =="),
            "whole snapshot in {}:\n{text}",
            p.display()
        );
    }
    s.kill_thread(q.conn_id);
    let _ = q.join();
}

/// A file system that can be filled and freed while `watch` runs: a tiny
/// tmpfs (as root), else the daemon's RLIMIT_FSIZE (set from outside with
/// prlimit; writes past it fail with EFBIG, SIGXFSZ ignored).
enum Disk {
    Tmpfs { mount: PathBuf, filler: PathBuf },
    Rlimit,
}

impl Disk {
    fn at(dir: &Path) -> Disk {
        fs::create_dir_all(dir).unwrap();
        // MYSQK_TEST_NO_MOUNT=1 exercises the fallback where mount works too.
        let ok = std::env::var_os("MYSQK_TEST_NO_MOUNT").is_none()
            && std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs"])
                .arg(dir)
                .output()
                .is_ok_and(|o| o.status.success());
        if ok {
            Disk::Tmpfs {
                mount: dir.to_path_buf(),
                filler: dir.join("filler"),
            }
        } else {
            eprintln!("mount unavailable: using RLIMIT_FSIZE for the full disk");
            Disk::Rlimit
        }
    }

    fn set_limit(pid: i32, bytes: u64) {
        let lim = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit on a child we spawned, with a valid rlimit.
        let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    }

    fn fill(&self, pid: i32) {
        match self {
            Disk::Tmpfs { filler, .. } => {
                use std::io::Write;
                let mut f = fs::File::create(filler).unwrap();
                let block = [b'f'; 4096];
                while f.write_all(&block).is_ok() {}
                let _ = f.sync_all();
            }
            Disk::Rlimit => Disk::set_limit(pid, 64),
        }
    }

    fn free(&self, pid: i32) {
        match self {
            Disk::Tmpfs { filler, .. } => fs::remove_file(filler).unwrap(),
            Disk::Rlimit => Disk::set_limit(pid, libc::RLIM_INFINITY),
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Disk::Tmpfs { mount, .. } = self {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(mount)
                .status();
        }
    }
}

/// `watch` with its stderr (the log) on a pipe: a pipe is not subject to
/// RLIMIT_FSIZE nor to the full file system.
struct Daemon {
    child: support::ChildGuard,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    fn start(ini: &Path) -> Daemon {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        let mut cmd = mysqk_bin();
        cmd.args(["watch", "-c"])
            .arg(ini)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // SAFETY: only async-signal-safe signal() between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        let mut child = support::ChildGuard::spawn(&mut cmd);
        let mut stderr = child.0.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Daemon { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_log(&self, needle: &str, within: Duration) {
        let end = std::time::Instant::now() + within;
        while !self.log().contains(needle) {
            assert!(
                std::time::Instant::now() < end,
                "no `{needle}` within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// On a full disk the snapshot write and the status file's write fail: no
/// 0-byte or partial snapshot, no stale `.mysqk.status.PID.tmp`; once there
/// is space again, the kept snapshot is written at the next event and the
/// status file is current again.
#[test]
fn a_full_disk_loses_nothing_and_leaves_nothing_half_written() {
    let s = server();
    let t = Tenant::new("Pw-ev3");
    let snap = t.dir.path().join("snap");
    let disk = Disk::at(&snap);
    let status = snap.join("mysqk.status");
    let ini = tenant_ini(
        &t,
        "k_longtime=1",
        &format!(
            "check_interval=1\nlock_file={}\nstatus_file={}",
            t.dir.path().join("mysqk.lock").display(),
            status.display()
        ),
        "",
    );
    // dry_run: every victim is one event, reported once.
    let text = fs::read_to_string(&ini)
        .unwrap()
        .replace("dry_run=0", "dry_run=1");
    fs::write(&ini, text).unwrap();
    let d = Daemon::start(&ini);
    wait_until(Duration::from_secs(20), "the first status file", || {
        status_of(&status).is_some_and(|v| v["instances"]["x"]["connected"] == true)
    });
    let before = fs::read_to_string(&status).unwrap();

    disk.fill(d.child.pid());
    let a = s.spawn_query(&t.app, &t.pw, "SELECT SLEEP(60) /* victim A */");
    d.wait_log("cannot write the snapshot", Duration::from_secs(20));
    d.wait_log("cannot write the status file", Duration::from_secs(20));
    let leftovers = |what: &str| {
        let files = files_under(&snap);
        let bad: Vec<&PathBuf> = files
            .iter()
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.ends_with(".tmp")
                    || (name.ends_with(".txt") && fs::metadata(p).map_or(true, |m| m.len() == 0))
            })
            .collect();
        assert!(bad.is_empty(), "{what}: left behind {bad:?}\n{}", d.log());
        files
    };
    let files = leftovers("while full");
    assert!(
        !files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "txt")),
        "no snapshot could be written: {files:?}"
    );
    assert_eq!(
        fs::read_to_string(&status).unwrap(),
        before,
        "the old status file stays whole"
    );

    disk.free(d.child.pid());
    let b = s.spawn_query(&t.app, &t.pw, "SELECT SLEEP(60) /* victim B */");
    d.wait_log("written late", Duration::from_secs(20));
    wait_until(Duration::from_secs(20), "two snapshots", || {
        files_under(&snap.join("x")).len() == 2
    });
    let snaps = files_under(&snap.join("x"));
    let texts: Vec<String> = snaps
        .iter()
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        texts[0].contains("victim A") || texts[1].contains("victim A"),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("victim B")), "{texts:?}");
    wait_until(Duration::from_secs(20), "a fresh status file", || {
        fs::read_to_string(&status).is_ok_and(|t| t != before)
            && status_of(&status).is_some_and(|v| v["pid"] == d.child.pid())
    });
    leftovers("after");
    for q in [a, b] {
        s.kill_thread(q.conn_id);
        let _ = q.join();
    }
    drop(d);
}

/// A misspelled section is a config error (exit 2, line, did-you-mean), not
/// a run with defaults that kills what its `k_exclude` protected; BOM and
/// GBK files; `check-config` warns about a `k_user` without a session and
/// shows the paths it resolved.
#[test]
fn config_mistakes_are_reported_not_ignored() {
    let s = server();
    let t = Tenant::new("Pw-ev4");
    let protected = s.spawn_query(&t.app, &t.pw, "SELECT SLEEP(60) /* nightly-report */");
    s.wait_query_time(protected.conn_id, 1);
    let good = tenant_ini(&t, "k_longtime=1\nk_exclude=nightly-report", "", "");
    let good_text = fs::read_to_string(&good).unwrap();
    let ini_s = good.to_str().unwrap().to_string();

    let typo = good_text.replace("[db_commkill]", "[db_commkil]");
    let line = typo.lines().position(|l| l == "[db_commkil]").unwrap() + 1;
    fs::write(&good, &typo).unwrap();
    for cmd in ["check-config", "kill"] {
        let mut args = vec![cmd, "-c", &ini_s];
        if cmd == "kill" {
            args.extend(["--db", "x"]);
        }
        let (code, out, err) = run(&args);
        assert_eq!(code, 2, "{cmd}: {out}{err}");
        assert!(
            err.contains(&format!("mysqk.ini:{line}: [db_commkil]: unknown section"))
                && err.contains("did you mean [db_commkill]?"),
            "{cmd}: {err}"
        );
    }
    assert!(
        s.thread_exists(protected.conn_id),
        "the protected thread lives"
    );

    let id_typo = format!("{good_text}\n[id_y]\nk_exclude=\n");
    fs::write(&good, &id_typo).unwrap();
    let (code, _, err) = run(&["check-config", "-c", &ini_s]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("[id_y]: unknown section: `y` is not in [db_info]")
            && err.contains("did you mean [id_x]?"),
        "{err}"
    );

    fs::write(&good, format!("\u{feff}{good_text}")).unwrap();
    let (code, out, err) = run(&["check-config", "-c", &ini_s]);
    assert_eq!(code, 0, "a BOM is fine: {out}{err}");

    let mut gbk = good_text.clone().into_bytes();
    gbk.extend_from_slice(b"; \xd7\xa2\xca\xcd\n");
    let gbk_line = good_text.lines().count() + 1;
    fs::write(&good, gbk).unwrap();
    let (code, _, err) = run(&["check-config", "-c", &ini_s]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("mysqk.ini:{gbk_line}: ")) && err.contains("iconv -f GBK -t UTF-8"),
        "{err}"
    );

    let ghost = unique("ghost");
    fs::write(
        &good,
        good_text.replace(
            &format!("k_user={}", t.app),
            &format!("k_user={},{ghost}", t.app),
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["check-config", "-c", &ini_s]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("k_user: `{ghost}` is not in [db_auth]")),
        "{err}"
    );
    let snap = t.dir.path().join("snap");
    assert!(
        out.contains(&format!(
            "paths: log=stderr status={0}/mysqk.status lock={0}/mysqk.lock snapshots={0}",
            snap.display()
        )),
        "{out}"
    );
    s.kill_thread(protected.conn_id);
    let _ = protected.join();
}

/// A `[db_auth]` line that lost its `=` in a reload: rejected with its line,
/// the last good config stays, and the password is in no message: not the
/// log, not `config_error` in the status file.
#[test]
fn a_password_typo_is_reported_by_line_never_by_text() {
    let t = Tenant::new("Pw-ev5");
    let ini = tenant_ini(&t, "k_longtime=100", "check_interval=1", "");
    let good_text = fs::read_to_string(&ini).unwrap();
    let d = Daemon::start(&ini);
    let status = t.dir.path().join("snap").join("mysqk.status");
    wait_until(Duration::from_secs(20), "watch connected", || {
        status_of(&status).is_some_and(|v| v["instances"]["x"]["connected"] == true)
    });
    let secret = "TypoPw_S3cr3t!";
    let bad = good_text.replace(
        &format!("{}={}", t.app, t.pw),
        &format!("{} {secret}", t.app),
    );
    let line = bad.lines().position(|l| l.contains(secret)).unwrap() + 1;
    // An editor's save: a new file renamed over the old one.
    let tmp = t.dir.path().join("mysqk.ini.new");
    fs::write(&tmp, bad).unwrap();
    fs::rename(&tmp, &ini).unwrap();
    d.wait_log("config reload rejected", Duration::from_secs(20));
    wait_until(
        Duration::from_secs(20),
        "config_error in the status file",
        || fs::read_to_string(&status).is_ok_and(|t| t.contains("\"config_error\": \"")),
    );
    let doc: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&status).unwrap()).unwrap();
    let err = doc["config_error"].as_str().unwrap().to_string();
    assert!(
        err.contains(&format!("mysqk.ini:{line}: [db_auth]")),
        "{err}"
    );
    assert_eq!(
        doc["instances"]["x"]["connected"], true,
        "the last good config stays"
    );
    for (place, text) in [
        ("log", d.log()),
        ("status file", fs::read_to_string(&status).unwrap()),
    ] {
        assert!(
            !text.contains("TypoPw"),
            "the password leaked into the {place}:\n{text}"
        );
    }
}

/// A `k_user` user whose login fails (wrong password in the ini): its thread
/// is left running, the row says why, and `mysqk kill` exits 1 so cron
/// notices; the wrong password is nowhere in what it prints.
#[test]
fn a_victim_left_unkilled_by_a_failed_login_exits_1_and_says_why() {
    let s = server();
    let t = Tenant::new("Pw-ev6");
    let app2 = unique("app");
    let right = "Right-Pw-ev6";
    s.create_app_user(&app2, right, &unique("db"));
    let wrong = "Wrong-Pw-ev6-S3cr";
    let ini = tenant_ini(&t, "k_longtime=1", "", "");
    let text = fs::read_to_string(&ini)
        .unwrap()
        .replace(&format!("k_user={}", t.app), &format!("k_user={app2}"))
        .replace("[db_auth]\n", &format!("[db_auth]\n{app2}={wrong}\n"));
    fs::write(&ini, text).unwrap();
    let q = s.spawn_query(&app2, right, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 1);
    let (code, out, err) = run(&["kill", "-c", ini.to_str().unwrap(), "--db", "x"]);
    assert_eq!(code, 1, "a runtime failure:\n{out}{err}");
    let row = out
        .lines()
        // The kill table: INSTANCE, then ID.
        .find(|l| l.split_whitespace().nth(1) == Some(q.conn_id.to_string().as_str()))
        .unwrap_or_else(|| panic!("no row for {}:\n{out}", q.conn_id));
    assert!(row.contains("login failed: 1045 Access denied"), "{row}");
    assert!(out.contains("1 failed"), "{out}");
    assert!(s.thread_exists(q.conn_id), "left running");
    let (code, json, _) = run(&["kill", "-c", ini.to_str().unwrap(), "--db", "x", "--json"]);
    assert_eq!(code, 1);
    assert!(json.contains("\"result\":\"login-failed\""), "{json}");
    for text in [&out, &err, &json] {
        assert!(!text.contains(wrong) && !text.contains(right), "{text}");
    }
    s.kill_thread(q.conn_id);
    let _ = q.join();
}

/// During a connection storm `doctor` cannot log in, but a running `watch`
/// holds working sessions: doctor reads its status file, says so, treats
/// the failed logins of held users as warnings and never advises a restart.
#[test]
fn doctor_in_a_storm_names_the_watch_that_holds_sessions_and_never_says_restart() {
    let srv = support::Server::start(support::ServerOpts {
        max_connections: 12,
        ..support::ServerOpts::default()
    });
    let pw = "Pw-ev7";
    let (app, mon) = (unique("app"), unique("mon"));
    srv.create_app_user(&app, pw, &unique("db"));
    srv.create_monitor_user(&mon, pw);
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("snap").join("mysqk.status");
    let ini = write_ini(
        dir.path(),
        &format!(
            "[settings]\nsnapshot_dir={}\ncheck_interval=1\nconnect_timeout=2\n\n[db_info]\nx={}\n\n\
             [db_auth]\n{app}={pw}\n{mon}={pw}\n\n[db_commconfig]\ndb_puser={mon}\nrun_max_count=999\n\n\
             [db_commkill]\nk_user=none\n",
            dir.path().join("snap").display(),
            srv.addr()
        ),
    );
    let d = Daemon::start(&ini);
    wait_until(Duration::from_secs(30), "watch holds both sessions", || {
        fs::read_to_string(&status)
            .is_ok_and(|t| t.contains(&format!("\"{app}\"")) && t.contains(&format!("\"{mon}\"")))
    });
    let mut idle = Vec::new();
    let refused = loop {
        match srv.connect(&app, pw) {
            Ok(c) => idle.push(c),
            Err(e) => break e,
        }
        assert!(idle.len() < 100, "max_connections never reached");
    };
    assert!(
        matches!(&refused, mysql::Error::MySqlError(e) if e.code == 1040),
        "{refused:?}"
    );
    let (code, out, err) = run(&["doctor", "-c", ini.to_str().unwrap()]);
    assert!(
        out.contains("Too many connections"),
        "doctor could not log in:\n{out}{err}"
    );
    assert!(
        out.contains(&format!(
            "`mysqk watch` (pid {}) holds working sessions",
            d.child.pid()
        )),
        "{out}"
    );
    assert!(
        !out.to_lowercase().contains("restart"),
        "never advise a restart:\n{out}"
    );
    assert!(!out.contains("ERROR "), "held users are warnings:\n{out}");
    assert_eq!(code, 0, "the watch can do the job:\n{out}{err}");

    // Without the watch the same storm is an error, still without "restart".
    drop(d);
    wait_until(
        Duration::from_secs(20),
        "the watch's sessions closed",
        || !srv.processlist().iter().any(|r| r.1 == mon),
    );
    while let Ok(c) = srv.connect(&app, pw) {
        idle.push(c);
        assert!(idle.len() < 100, "max_connections never reached");
    }
    let (code, out, _) = run(&["doctor", "-c", ini.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("keep `mysqk watch` running") && !out.to_lowercase().contains("restart"),
        "{out}"
    );
    drop(idle);
}

/// A user name with a space and a quote: the log line stays one record whose
/// fields parse back (`user="ev \"q u"`), and the table shows it as it is.
#[test]
fn a_user_name_with_spaces_cannot_fake_a_log_field() {
    let s = server();
    let t = Tenant::new("Pw-ev8");
    let odd = format!("ev \"q {}", unique("u"));
    s.create_app_user(&odd, &t.pw, &unique("db"));
    let ini = tenant_ini(&t, "k_longtime=1", "", "");
    let text = fs::read_to_string(&ini)
        .unwrap()
        .replace(&format!("k_user={}", t.app), &format!("k_user={odd}"))
        .replace("[db_auth]\n", &format!("[db_auth]\n{odd}={}\n", t.pw));
    fs::write(&ini, text).unwrap();
    let q = s.spawn_query(&odd, &t.pw, "SELECT SLEEP(60) /* host=evil user=root */");
    s.wait_query_time(q.conn_id, 1);
    let (code, out, log) = run(&[
        "-v",
        "kill",
        "-c",
        ini.to_str().unwrap(),
        "--db",
        "x",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{out}{log}");
    let line = log
        .lines()
        .find(|l| l.contains(&format!("thread {} ", q.conn_id)))
        .unwrap_or_else(|| panic!("no log line:\n{log}"));
    let fields = log_fields(line);
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["user", "host", "db", "command", "time", "info", "reason", "action", "result"],
        "{line}"
    );
    assert_eq!(fields[0].1, odd, "{line}");
    assert_eq!(
        fields[5].1, "SELECT SLEEP(60) /* host=evil user=root */",
        "{line}"
    );
    s.kill_thread(q.conn_id);
    let _ = q.join();
}

/// `key=value` fields of a log line after `thread N `: values quoted with
/// `\"` / `\\` escapes, or bare up to a space (a bare word without `=`
/// continues the previous value, as in `action=kill connection`).
fn log_fields(line: &str) -> Vec<(String, String)> {
    let rest = line.split_once(" thread ").map_or("", |(_, r)| r);
    let rest = rest.split_once(' ').map_or("", |(_, r)| r);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ' ' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(&key);
            }
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

/// The status file as JSON, once it is there and whole.
fn status_of(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}
