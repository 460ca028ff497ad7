//! What a DBA coming from pt-kill reaches for (issue 15), end to end on a
//! real server: pt-kill spellings, a one-off run without an ini (password
//! never on argv), bounded logins against a silent port, per-snapshot
//! replay, snapshot retention, `events`, lock-wait readability.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use support::{
    mysqk_bin, run_with_timeout, server, unique, wait_until, write_ini, BgQuery, ChildGuard,
    ADMIN_PASS, ADMIN_USER,
};

/// Two non-SUPER app users sharing a schema with a table, a PROCESS monitor,
/// and a temp dir.
struct Setup {
    dir: tempfile::TempDir,
    app1: String,
    app2: String,
    mon: String,
    schema: String,
    pw: String,
}

impl Setup {
    fn new() -> Setup {
        let s = server();
        let (app1, app2, mon, schema) = (unique("app"), unique("app"), unique("mon"), unique("db"));
        let pw = "Pw-15x".to_string();
        s.create_app_user(&app1, &pw, &schema);
        s.create_app_user(&app2, &pw, &schema);
        s.create_monitor_user(&mon, &pw);
        // MySQL 8+ keeps lock waits in performance_schema (doctor says so too).
        s.exec(&format!(
            "GRANT SELECT ON performance_schema.* TO '{}'@'%'",
            support::sql_str(&mon)
        ));
        s.exec(&format!(
            "CREATE TABLE `{schema}`.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; \
             INSERT INTO `{schema}`.t VALUES (1, 0), (2, 0)"
        ));
        Setup {
            dir: tempfile::tempdir().unwrap(),
            app1,
            app2,
            mon,
            schema,
            pw,
        }
    }

    fn snapshots(&self) -> PathBuf {
        self.dir.path().join("snapshots")
    }

    /// An ini with instance `x`; `settings` and `commkill` are added as given.
    fn ini(&self, settings: &str, commkill: &str) -> PathBuf {
        self.ini_with(settings, commkill, "")
    }

    fn ini_with(&self, settings: &str, commkill: &str, db_info_extra: &str) -> PathBuf {
        let text = format!(
            "[settings]\nsnapshot_dir={snap}\n{settings}\n\n[db_info]\n{db_info_extra}\nx=127.0.0.1:{port}\n\n\
             [db_auth]\n{a1}={pw}\n{a2}={pw}\n{m}={pw}\n\n\
             [db_commconfig]\ndb_puser={m}\nrun_max_count=999\ndry_run=0\n\n[db_commkill]\n{commkill}\n",
            port = server().port(),
            snap = self.snapshots().display(),
            a1 = self.app1,
            a2 = self.app2,
            m = self.mon,
            pw = self.pw,
        );
        write_ini(self.dir.path(), &text)
    }

    fn query(&self, user: &str, sql: &str) -> BgQuery {
        server().spawn_query(user, &self.pw, sql)
    }

    /// A connection of `user` holding an open transaction that updated row 1.
    fn open_trx(&self, user: &str) -> (mysql::Conn, u64) {
        let mut c = server().connect(user, &self.pw).unwrap();
        let id: u64 = c.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
        c.query_drop(format!(
            "BEGIN; UPDATE `{}`.t SET v = v + 1 WHERE id = 1",
            self.schema
        ))
        .unwrap();
        (c, id)
    }
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run mysqk in `cwd` (where no mysqk.ini is) and return (exit code, stdout+stderr).
fn mysqk_in(cwd: &Path, args: &[&str]) -> (i32, String) {
    let out = run_with_timeout(
        mysqk_bin().current_dir(cwd).args(args),
        Duration::from_secs(60),
    );
    let text = text_of(&out);
    assert!(!text.contains("panicked"), "panic:\n{text}");
    (out.status.code().unwrap_or(-1), text)
}

fn mysqk(args: &[&str]) -> (i32, String) {
    mysqk_in(Path::new("/"), args)
}

#[test]
fn pt_kill_spellings_kill_as_pt_kill_would() {
    let t = Setup::new();
    let s = server();
    let ini = t.ini("", "k_user=none");
    let ini = ini.to_str().unwrap();
    let q = t.query(&t.app1, "SELECT SLEEP(60)");
    let other = t.query(&t.app2, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 2);
    s.wait_query_time(other.conn_id, 2);

    // --print alone reports only, as in pt-kill.
    let re = format!("^{}$", t.app1);
    let (code, out) = mysqk(&[
        "kill",
        "-c",
        ini,
        "--match-user",
        &re,
        "--busy-time",
        "2s",
        "--print",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("DRY RUN"), "{out}");
    assert!(s.thread_exists(q.conn_id), "--print must not kill:\n{out}");

    // --print --kill-query (pt-kill's other action): only the statement of
    // app1 is killed; the table names the instance; app2 (not matched by
    // --match-user) is spared.
    let (code, out) = mysqk(&[
        "kill",
        "-c",
        ini,
        "--match-user",
        &re,
        "--busy-time",
        "2",
        "--print",
        "--kill-query",
        "--verify-secs",
        "0",
    ]);
    assert_eq!(code, 0, "{out}");
    let header = out
        .lines()
        .find(|l| l.starts_with("INSTANCE"))
        .unwrap_or_default();
    assert!(header.starts_with("INSTANCE  ID"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("x ") && l.contains(&q.conn_id.to_string()))
        .unwrap_or_else(|| panic!("no table line for {}:\n{out}", q.conn_id));
    assert!(line.contains("kill query"), "{line}");
    let id = q.conn_id;
    // The statement ends; the connection stays.
    let (conn, _) = q.join_conn();
    assert!(
        s.thread_exists(id),
        "--kill-query must leave the connection"
    );
    drop(conn);
    assert!(
        s.thread_exists(other.conn_id),
        "app2 was not matched:\n{out}"
    );

    // --print --kill kills (and prints); --match-all takes every thread of
    // the user, however young, narrowed by --match-info.
    let young = t.query(&t.app1, "SELECT SLEEP(60) /* match-all-tag */");
    s.wait_query_time(young.conn_id, 0);
    let (code, out) = mysqk(&[
        "kill",
        "-c",
        ini,
        "--match-user",
        &re,
        "--match-all",
        "--match-info",
        "match-all-tag",
        "--print",
        "--kill",
        "--verify-secs",
        "0",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&young.conn_id.to_string()) && !out.contains("DRY RUN"),
        "{out}"
    );
    let id = young.conn_id;
    match young.join_within(Duration::from_secs(10)) {
        Err(e) if support::is_killed_error(&e) => {}
        other => panic!("thread {id} should have been killed, got {other:?}\n{out}"),
    }
    assert!(
        s.thread_exists(other.conn_id),
        "app2 was not matched:\n{out}"
    );
    s.kill_thread(other.conn_id);
}

#[test]
fn kill_wide_shows_the_whole_statement() {
    let t = Setup::new();
    let s = server();
    let ini = t.ini("", "k_user=none");
    let long = format!("SELECT SLEEP(60) /* {} end-of-statement */", "x".repeat(80));
    let q = t.query(&t.app1, &long);
    s.wait_query_time(q.conn_id, 1);
    let ini = ini.to_str().unwrap();
    let (_, cut) = mysqk(&[
        "kill",
        "-c",
        ini,
        "--user",
        &t.app1,
        "--longtime",
        "1",
        "--dry-run",
    ]);
    assert!(!cut.contains("end-of-statement"), "{cut}");
    let (code, wide) = mysqk(&[
        "kill",
        "-c",
        ini,
        "--user",
        &t.app1,
        "--longtime",
        "1",
        "--dry-run",
        "--wide",
    ]);
    assert_eq!(code, 0, "{wide}");
    assert!(wide.contains("end-of-statement */"), "{wide}");
    s.kill_thread(q.conn_id);
}

/// The password of a one-off run comes from stdin (held back until the
/// process is inspected: it is never in /proc/PID/cmdline) or MYSQK_PASSWORD.
#[test]
fn one_off_kill_without_an_ini_takes_the_password_from_stdin_or_env() {
    let t = Setup::new();
    let s = server();
    let cwd = tempfile::tempdir().unwrap();
    let port = s.port().to_string();
    let q = t.query(&t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 2);
    let args = [
        "kill",
        "-h",
        "127.0.0.1",
        "-P",
        &port,
        "-u",
        &t.app1,
        "--ask-pass",
        "--user",
        "all",
        "--busy-time",
        "2",
        "--verify-secs",
        "0",
    ];
    let mut child = ChildGuard::spawn(
        mysqk_bin()
            .current_dir(cwd.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // Once exec'd (the cmdline is mysqk's), while it waits for the password.
    let mut cmdline = String::new();
    wait_until(Duration::from_secs(10), "mysqk to start", || {
        let raw = std::fs::read(format!("/proc/{}/cmdline", child.pid())).unwrap_or_default();
        cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        cmdline.contains("--ask-pass")
    });
    assert!(!cmdline.contains(&t.pw), "password in argv: {cmdline}");
    let mut stdin = child.0.stdin.take().unwrap();
    writeln!(stdin, "{}", t.pw).unwrap();
    drop(stdin);
    let status = child
        .wait_timeout(Duration::from_secs(30))
        .expect("mysqk ends");
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{out}{err}");
    let inst = format!("127.0.0.1:{port}");
    assert!(
        out.contains(&format!("{inst}: ")) && out.contains("1 killed"),
        "{out}{err}"
    );
    s.wait_thread_gone(q.conn_id, Duration::from_secs(10));
    assert!(!out.contains(&t.pw) && !err.contains(&t.pw));
    // No ini was needed and none was written; a one-off run writes no snapshot.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);

    // MYSQK_PASSWORD, and a DSN.
    let q = t.query(&t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 2);
    let dsn = format!("h=127.0.0.1,P={port},u={}", t.app1);
    let out = run_with_timeout(
        mysqk_bin()
            .current_dir(cwd.path())
            .env("MYSQK_PASSWORD", &t.pw)
            .args([
                "kill",
                "--dsn",
                &dsn,
                "--user",
                "all",
                "--idle-time",
                "600",
                "--busy-time",
                "2",
            ]),
        Duration::from_secs(30),
    );
    let text = text_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("1 killed"), "{text}");
    s.wait_thread_gone(q.conn_id, Duration::from_secs(10));

    // Refusals: a password on argv (not echoed back), no password, no rule.
    let (code, text) = mysqk_in(
        cwd.path(),
        &[
            "kill",
            "-h",
            "127.0.0.1",
            "-u",
            "x",
            "-psecret-on-argv",
            "--user",
            "all",
            "--busy-time",
            "5",
        ],
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("--ask-pass") && !text.contains("secret-on-argv"),
        "{text}"
    );
    let (code, text) = mysqk_in(
        cwd.path(),
        &[
            "kill",
            "-h",
            "127.0.0.1",
            "-u",
            "x",
            "--user",
            "all",
            "--busy-time",
            "5",
        ],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("MYSQK_PASSWORD"), "{text}");
    let (code, text) = mysqk_in(
        cwd.path(),
        &["kill", "-h", "127.0.0.1", "-u", "x", "--user", "all"],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--busy-time"), "{text}");

    // A wrong password: a runtime failure, and the password is not printed.
    let out = run_with_timeout(
        mysqk_bin()
            .current_dir(cwd.path())
            .env("MYSQK_PASSWORD", "wrong-pw-15")
            .args([
                "kill",
                "-h",
                "127.0.0.1",
                "-P",
                &port,
                "-u",
                &t.app1,
                "--user",
                "all",
                "--busy-time",
                "5",
            ]),
        Duration::from_secs(30),
    );
    let text = text_of(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Access denied") && !text.contains("wrong-pw-15"),
        "{text}"
    );
}

#[test]
fn a_missing_config_names_c_and_mysqk_config() {
    let cwd = tempfile::tempdir().unwrap();
    let (code, text) = mysqk_in(cwd.path(), &["kill", "--db", "x"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("mysqk.ini does not exist")
            && text.contains("-c FILE or MYSQK_CONFIG=FILE")
            && text.contains("-h HOST"),
        "{text}"
    );
    let dump = cwd.path().join("pl.txt");
    std::fs::write(&dump, "Id\tUser\tHost\tdb\tCommand\tTime\tState\tInfo\n").unwrap();
    let (code, text) = mysqk_in(cwd.path(), &["match", "--from", dump.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("-c FILE or MYSQK_CONFIG=FILE") && text.contains("--busy-time"),
        "{text}"
    );
    let out = run_with_timeout(
        mysqk_bin()
            .env("MYSQK_CONFIG", "/nonexistent/m.ini")
            .args(["doctor"]),
        Duration::from_secs(30),
    );
    let text = text_of(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("named by MYSQK_CONFIG /nonexistent/m.ini does not exist"),
        "{text}"
    );
    let (code, text) = mysqk_in(cwd.path(), &["watch"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("-c FILE or MYSQK_CONFIG=FILE"), "{text}");
    let (code, text) = mysqk_in(
        cwd.path(),
        &["encrypt-password", "-c", "/nonexistent/k.ini"],
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("given with -c /nonexistent/k.ini does not exist")
            && text.contains("MYSQK_KEY"),
        "{text}"
    );
}

/// A listener that accepts TCP (the kernel completes the handshake) and
/// never says a word: a hung server, or a port forwarded to nowhere.
fn silent_port() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[test]
fn a_silent_port_costs_connect_timeout_not_read_timeout() {
    let t = Setup::new();
    let (_silent, port) = silent_port();
    let ini = t.ini_with(
        "connect_timeout=2\nread_timeout=10",
        &format!("k_user={}\nk_longtime=600", t.app1),
        &format!("down=127.0.0.1:{port}"),
    );
    let ini = ini.to_str().unwrap();
    let started = Instant::now();
    let (code, text) = mysqk(&["kill", "-c", ini, "--db", "down"]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("connect_timeout (2 s)") || text.contains("no answer"),
        "{text}"
    );
    assert!(
        took < Duration::from_secs(3),
        "kill took {took:?} (connect_timeout=2):\n{text}"
    );

    // The one-off run's --connect-timeout bounds the login the same way.
    let started = Instant::now();
    let out = run_with_timeout(
        mysqk_bin().env("MYSQK_PASSWORD", "pw").args([
            "kill",
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            "u",
            "--connect-timeout",
            "1",
            "--user",
            "all",
            "--busy-time",
            "5",
        ]),
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
    assert!(
        took < Duration::from_secs(2),
        "one-off kill took {took:?} (connect timeout 1 s)"
    );

    // doctor: every user of both instances is checked in parallel, with a
    // progress line each; the silent instance costs one connect_timeout.
    let started = Instant::now();
    let (code, text) = mysqk(&["doctor", "-c", ini]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{text}");
    assert!(
        took < Duration::from_secs(3),
        "doctor took {took:?} (3 users, connect_timeout=2)"
    );
    for u in [&t.app1, &t.app2, &t.mon] {
        assert!(
            text.contains(&format!("doctor: x {u}: login ok")),
            "{u}:\n{text}"
        );
        assert!(
            text.contains(&format!("doctor: down {u}: cannot log in")),
            "{u}:\n{text}"
        );
    }
}

#[test]
fn kill_db_all_prints_each_instance_as_it_finishes() {
    let t = Setup::new();
    let s = server();
    let (_silent, port) = silent_port();
    let ini = t.ini_with(
        "connect_timeout=4",
        &format!("k_user={}\nk_longtime=1", t.app1),
        &format!("down=127.0.0.1:{port}"),
    );
    let q = t.query(&t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 1);
    let started = Instant::now();
    let mut child = ChildGuard::spawn(
        mysqk_bin()
            .args([
                "kill",
                "-c",
                ini.to_str().unwrap(),
                "--db",
                "all",
                "--verify-secs",
                "0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let lines: Vec<(Duration, String)> = BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .map(|l| (started.elapsed(), l))
        .collect();
    let status = child
        .wait_timeout(Duration::from_secs(30))
        .expect("kill ends");
    assert_eq!(status.code(), Some(1), "{lines:?}");
    let at = |prefix: &str| {
        lines
            .iter()
            // Event lines start with their timestamp.
            .find(|(_, l)| {
                l.split_once(' ')
                    .is_some_and(|(_, l)| l.starts_with(prefix))
            })
            .map(|(d, _)| *d)
            .unwrap_or_else(|| panic!("no `{prefix}` line: {lines:?}"))
    };
    let healthy = at("x: ");
    let hung = at("down: ERROR");
    assert!(
        healthy + Duration::from_secs(1) < hung,
        "the healthy instance waited for the hung one: {lines:?}"
    );
    assert!(hung < Duration::from_secs(6), "{lines:?}");
    s.wait_thread_gone(q.conn_id, Duration::from_secs(10));
}

/// `SHOW PROCESSLIST` output appended every second, as pt-kill's
/// --test-matching files are: tab-separated, one header per snapshot.
fn processlist_tsv(rows: &[(u64, &str, &str, u64, &str)]) -> String {
    let mut s = String::from("Id\tUser\tHost\tdb\tCommand\tTime\tState\tInfo\n");
    for (id, user, cmd, time, info) in rows {
        s.push_str(&format!(
            "{id}\t{user}\t10.0.0.5:5000\tshop\t{cmd}\t{time}\tUser sleep\t{info}\n"
        ));
    }
    s
}

#[test]
fn match_replays_each_snapshot_of_a_file_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let one = processlist_tsv(&[
        (10, "app", "Query", 6, "select * from cart where id = 1"),
        (11, "app", "Query", 5, "select * from cart where id = 2"),
        (12, "app", "Query", 4, "select * from cart where id = 3"),
    ]);
    let two = processlist_tsv(&[
        (10, "app", "Query", 7, "select * from cart where id = 1"),
        (11, "app", "Query", 6, "select * from cart where id = 2"),
        (12, "app", "Query", 5, "select * from cart where id = 3"),
    ]);
    let file = dir.path().join("incident.txt");
    std::fs::write(&file, format!("{one}{two}")).unwrap();
    let file = file.to_str().unwrap();
    let rules = [
        "--match-user",
        "^app$",
        "--busy-time",
        "1",
        "--group-by",
        "fingerprint",
        "--any-busy-time",
        "3",
        "--query-count",
    ];
    // Joined, the class would have 6 members; no single snapshot has 4.
    let mut args = vec!["match", "--from", file];
    args.extend_from_slice(&rules);
    args.push("4");
    let (code, text) = mysqk_in(dir.path(), &args);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("offline: snapshot 1/2 (")
            && text.contains("line 1): 3 threads, 0 would be killed"),
        "{text}"
    );
    assert!(
        text.contains("snapshot 2/2 (") && text.contains("line 5): 3 threads, 0 would be killed"),
        "{text}"
    );
    assert!(
        text.contains("2 snapshots in") && text.contains("0 would be killed in all"),
        "{text}"
    );
    *args.last_mut().unwrap() = "3";
    let (code, text) = mysqk_in(dir.path(), &args);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("line 1): 3 threads, 3 would be killed"),
        "{text}"
    );
    assert!(
        text.contains("line 5): 3 threads, 3 would be killed"),
        "{text}"
    );

    // --json says which processlist each thread was in.
    let mut json_args = args.clone();
    json_args.push("--json");
    let (code, text) = mysqk_in(dir.path(), &json_args);
    assert_eq!(code, 0, "{text}");
    let sources: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["source"].to_string())
        .collect();
    assert_eq!(sources.len(), 6, "{text}");
    assert_eq!(
        sources.iter().filter(|s| s.ends_with(" line 5\"")).count(),
        3,
        "{sources:?}"
    );

    // Several files (pt-kill's `--test-matching a,b`): each on its own too.
    let other = dir.path().join("later.txt");
    std::fs::write(&other, &two).unwrap();
    let other = other.to_str().unwrap();
    let mut args = vec!["match", "--from", file, "--from", other];
    args.extend_from_slice(&rules);
    args.push("4");
    let (code, text) = mysqk_in(dir.path(), &args);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("snapshot 3/3 (")
            && text.contains("later.txt): 3 threads, 0 would be killed"),
        "{text}"
    );
    assert!(
        text.contains("3 snapshots in") && text.contains("0 would be killed in all"),
        "{text}"
    );
}

#[test]
fn snapshots_replay_retention_and_events() {
    let t = Setup::new();
    let s = server();
    let snap = t.snapshots().join("x");
    std::fs::create_dir_all(&snap).unwrap();
    // An old snapshot (to be pruned by age) and a file that is not a snapshot.
    let old = snap.join("20200101-000000-1.txt");
    std::fs::write(&old, "# [mysqk] x (h:1): 1 thread matched, 1 killed\n").unwrap();
    let notes = snap.join("notes.txt");
    std::fs::write(&notes, "mine").unwrap();
    set_mtime(&old, 400);
    set_mtime(&notes, 400);
    // Recent, big snapshots (events without a processlist): together over
    // snapshot_max_mb.
    let mut fakes = vec![old.clone()];
    for n in 1..=3 {
        let big = snap.join(format!("20261101-00000{n}-1.txt"));
        let text = format!(
            "# [mysqk] x (h:1): 0 threads matched\n# time: 2026-11-01 00:00:0{n} +0000\n\n\
             == victims and actions ==\n(none)\n\n{}\n",
            "#".repeat(600 * 1024)
        );
        std::fs::write(&big, text).unwrap();
        set_mtime(&big, 10 - n);
        fakes.push(big);
    }
    let ini = t.ini("snapshot_keep_days=30\nsnapshot_max_mb=1", "k_user=none");
    let ini = ini.to_str().unwrap();
    let (_, described) = mysqk(&["check-config", "-c", ini]);
    assert!(
        described.contains("snapshot_keep_days=30 snapshot_max_mb=1"),
        "{described}"
    );
    let q = t.query(&t.app1, "SELECT SLEEP(60) /* replay-me */");
    s.wait_query_time(q.conn_id, 1);
    for _ in 0..2 {
        let (code, out) = mysqk(&[
            "kill",
            "-c",
            ini,
            "--user",
            &t.app1,
            "--longtime",
            "1",
            "--dry-run",
        ]);
        assert_eq!(code, 0, "{out}");
    }
    s.kill_thread(q.conn_id);
    let mut names: Vec<String> = std::fs::read_dir(&snap)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(!old.exists(), "older than snapshot_keep_days: {names:?}");
    assert!(notes.exists(), "not a snapshot file: never touched");
    let total: u64 = std::fs::read_dir(&snap)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "notes.txt")
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        total <= 1024 * 1024,
        "over snapshot_max_mb: {total} bytes in {names:?}"
    );
    let fake_names: Vec<String> = fakes
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let ours: Vec<&String> = names
        .iter()
        .filter(|n| *n != "notes.txt" && !fake_names.contains(n))
        .collect();
    assert_eq!(ours.len(), 2, "the two new snapshots are kept: {names:?}");

    // Replay: one file, then the directory (each snapshot on its own).
    let first = snap.join(ours[0]);
    let (code, text) = mysqk(&[
        "match",
        "-c",
        ini,
        "--from",
        first.to_str().unwrap(),
        "--user",
        &t.app1,
        "--longtime",
        "1",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("replay-me") && text.contains("1 would be killed"),
        "{text}"
    );
    let (code, text) = mysqk(&[
        "match",
        "-c",
        ini,
        "--from",
        snap.to_str().unwrap(),
        "--user",
        &t.app1,
        "--longtime",
        "1",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("2 snapshots in") && text.contains("2 would be killed in all"),
        "{text}"
    );

    // events: the two dry runs, with the thread; --since filters.
    let (code, text) = mysqk(&["events", "-c", ini, "--db", "x"]);
    assert_eq!(code, 0, "{text}");
    let events: Vec<&str> = text.lines().filter(|l| l.contains("  x  ")).collect();
    assert_eq!(
        events.iter().filter(|l| l.contains("DRY RUN")).count(),
        2,
        "{text}"
    );
    assert!(
        text.contains(&q.conn_id.to_string()) && text.contains(&t.app1),
        "{text}"
    );
    let (_, text) = mysqk(&["events", "-c", ini, "--since", "2099-01-01"]);
    assert!(text.contains("0 events in"), "{text}");
    let (_, text) = mysqk(&[
        "events",
        "--dir",
        t.snapshots().to_str().unwrap(),
        "--since",
        "1h",
        "--brief",
    ]);
    assert!(
        text.contains("events in") && !text.contains(&t.app1),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("DRY RUN")).count(),
        2,
        "{text}"
    );

    // --db picks one instance's events out of several.
    let y = t.snapshots().join("y");
    std::fs::create_dir_all(&y).unwrap();
    std::fs::write(
        y.join("20261130-120000-1.txt"),
        "# [mysqk] y (h:2): 1 thread matched, 1 killed\n# time: 2026-11-30 12:00:00 +0000\n\n\
         == victims and actions ==\n(none)\n",
    )
    .unwrap();
    let dir = t.snapshots();
    let listed = |db: &str| {
        let (code, text) = mysqk(&[
            "events",
            "--dir",
            dir.to_str().unwrap(),
            "--db",
            db,
            "--brief",
        ]);
        assert_eq!(code, 0, "{text}");
        text
    };
    let (only_y, only_x) = (listed("y"), listed("x"));
    assert!(
        only_y.contains("1 thread matched, 1 killed") && !only_y.contains("DRY RUN"),
        "{only_y}"
    );
    assert!(
        !only_x.contains("1 thread matched, 1 killed") && only_x.contains("DRY RUN"),
        "{only_x}"
    );
}

/// Set a file's mtime `days` days back.
fn set_mtime(path: &Path, days: u64) {
    let when = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(when).unwrap();
}

#[test]
fn snapshots_say_who_waits_for_whom_and_mdl_waits_get_a_hint() {
    let t = Setup::new();
    let s = server();
    let ini = t.ini("", "k_user=none");
    let ini = ini.to_str().unwrap();
    let (_holder, holder_id) = t.open_trx(&t.app1);
    let waiter = t.query(
        &t.app2,
        &format!("UPDATE `{}`.t SET v = 5 WHERE id = 1", t.schema),
    );
    wait_until(
        Duration::from_secs(20),
        "a row lock wait of 2 s",
        || matches!(s.thread(waiter.conn_id), Some((_, _, _, time, _)) if time >= 2),
    );
    let (code, out) = mysqk(&[
        "kill",
        "-c",
        ini,
        "--user",
        "all",
        "--lock-wait",
        "1",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 matched"), "{out}");
    let file = newest_snapshot(&t.snapshots().join("x"));
    let text = std::fs::read_to_string(&file).unwrap();
    let section = text
        .split("who waits for whom")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    let line = section
        .lines()
        // Server text in a snapshot is framed behind `  | `.
        .map(|l| l.trim_start_matches("  | "))
        .find(|l| l.starts_with("row ") && l.contains(&waiter.conn_id.to_string()))
        .unwrap_or_else(|| panic!("no row-lock line for {}:\n{section}", waiter.conn_id));
    for part in [
        t.app2.as_str(),
        "UPDATE `",
        &holder_id.to_string(),
        t.app1.as_str(),
        "idle ",
    ] {
        assert!(line.contains(part), "`{part}` missing: {line}");
    }
    drop(_holder);
    let _ = waiter.join_within(Duration::from_secs(20));

    // An ALTER stuck behind an open transaction: nothing matches (k_lock off)
    // but the run says what it is stuck on.
    let (_holder, holder_id) = t.open_trx(&t.app1);
    let alter = s.spawn_query(
        ADMIN_USER,
        ADMIN_PASS,
        &format!("ALTER TABLE `{}`.t ADD COLUMN c{} INT", t.schema, holder_id),
    );
    wait_until(
        Duration::from_secs(20),
        "the ALTER to wait 2 s for its metadata lock",
        || matches!(s.thread(alter.conn_id), Some((_, _, _, time, _)) if time >= 2),
    );
    let (code, out) = mysqk(&["kill", "-c", ini, "--user", &t.app2, "--longtime", "600"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 matched"), "{out}");
    let hint = out
        .lines()
        .find(|l| {
            l.contains(" x: hint: thread ") && l.contains(&format!("thread {} (", alter.conn_id))
        })
        .unwrap_or_else(|| panic!("no hint for the ALTER {}:\n{out}", alter.conn_id));
    assert!(
        hint.contains("waited") && hint.contains("metadata lock"),
        "{hint}"
    );
    assert!(
        hint.contains(&format!("blocked by thread {holder_id} ("))
            || hint.contains(&format!("open transactions: {holder_id} (")),
        "the holder {holder_id} is not named: {hint}"
    );
    drop(_holder);
    let _ = alter.join_within(Duration::from_secs(30));
}

fn newest_snapshot(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .pop()
        .unwrap_or_else(|| panic!("no snapshot in {}", dir.display()))
}

#[test]
fn watch_dry_run_run_time_and_interval() {
    let t = Setup::new();
    let s = server();
    // check_interval=30 in the file: only --interval 1 gives several passes.
    let ini = t.ini(
        "check_interval=30",
        &format!("k_user={}\nk_longtime=1", t.app1),
    );
    let q = t.query(&t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 1);
    let started = Instant::now();
    let out = run_with_timeout(
        mysqk_bin().args([
            "watch",
            "-c",
            ini.to_str().unwrap(),
            "--dry-run",
            "--run-time",
            "3s",
            "--interval",
            "1",
        ]),
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    let text = text_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "{took:?}\n{text}"
    );
    assert!(text.contains("--run-time 3 s is over"), "{text}");
    assert!(
        text.contains(&format!("thread {}", q.conn_id)) && text.contains("dry run"),
        "{text}"
    );
    assert!(s.thread_exists(q.conn_id), "--dry-run killed:\n{text}");
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.snapshots().join("mysqk.status")).unwrap())
            .unwrap();
    let passes = status["instances"]["x"]["passes"].as_u64().unwrap_or(0);
    assert!(
        passes >= 3,
        "--interval 1 over 3 s: {passes} passes\n{status}"
    );
    s.kill_thread(q.conn_id);
}
