//! pt-kill-style features of `mysqk kill` on a real MariaDB: a query pile-up
//! (k_group_by / k_query_count / k_victims), a prepared statement
//! (Command=Execute) against k_longtime, `--json`, and the on_kill_command hook.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use support::{mysqk_bin, run_with_timeout, server, wait_until, write_ini, BgQuery};

/// This file's ini and helpers on top of the shared test tenant.
use support::Tenant as Setup;

impl Setup {
    fn ini(&self, settings: &str, commkill: &str) -> PathBuf {
        let text = format!(
            "[settings]\nsnapshot_dir={snap}\n{settings}\n\n[db_info]\nx=127.0.0.1:{port}\n\n\
             [db_auth]\n{a}={pw}\n{m}={pw}\n\n\
             [db_commconfig]\ndb_puser={m}\ndry_run=0\n\n[db_commkill]\nk_user={a}\n{commkill}\n",
            snap = self.dir.path().join("snapshots").display(),
            port = server().port(),
            a = self.app,
            m = self.mon,
            pw = self.pw,
        );
        write_ini(self.dir.path(), &text)
    }

    fn query(&self, sql: &str) -> BgQuery {
        server().spawn_query(&self.app, &self.pw, sql)
    }
}

fn kill(ini: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["kill", "-c", ini.to_str().unwrap(), "--db", "x"];
    args.extend_from_slice(extra);
    let out = run_with_timeout(mysqk_bin().args(&args), Duration::from_secs(60));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        text(&out)
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The thread runs `command` and has done so for at least `secs` s.
fn running(id: u64, command: &str, secs: u64) -> bool {
    matches!(server().thread(id), Some((_, _, cmd, t, _)) if cmd == command && t >= server().time_at_least(secs))
}

fn assert_killed(q: BgQuery) {
    let id = q.conn_id;
    let e = q
        .join_within(Duration::from_secs(10))
        .expect_err("the statement must have been killed");
    assert!(support::is_killed_error(&e), "thread {id}: {e}");
}

const THREAD_FIELDS: [&str; 13] = [
    "instance",
    "id",
    "user",
    "host",
    "db",
    "command",
    "time",
    "state",
    "info",
    "reason",
    "action",
    "result",
    "fingerprint",
];

#[test]
fn pile_up_kills_all_but_the_oldest_copy_and_spares_other_queries() {
    let t = Setup::new("Pw-2y");
    let s = server();
    // The first copy starts alone, so it is unambiguously the oldest.
    let first = t.query("SELECT SLEEP(60) AS pile FROM DUAL WHERE 'lit-0' <> ''");
    wait_until(Duration::from_secs(20), "the first copy to age", || {
        running(first.conn_id, "Query", 2)
    });
    let mut copies: Vec<BgQuery> = (1..12)
        .map(|i| {
            t.query(&format!(
                "SELECT SLEEP(60) AS pile FROM DUAL WHERE 'lit-{i}' <> ''"
            ))
        })
        .collect();
    let others = [
        t.query("SELECT SLEEP(60) AS other_a"),
        t.query("SELECT SLEEP(60) AS other_b"),
    ];
    wait_until(
        Duration::from_secs(20),
        "every statement to run 1 s",
        || {
            copies
                .iter()
                .chain(others.iter())
                .all(|q| running(q.conn_id, "Query", 1))
        },
    );
    let ini = t.ini(
        "",
        "k_longtime=1\nk_group_by=fingerprint\nk_query_count=10\nk_victims=all-but-oldest",
    );
    let out = kill(&ini, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // stdout is JSON lines only: one per killed copy.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let mut got: Vec<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    got.sort_unstable();
    let mut want: Vec<u64> = copies.iter().map(|q| q.conn_id).collect();
    want.sort_unstable();
    assert_eq!(got, want, "{}", text(&out));
    for r in &records {
        for f in THREAD_FIELDS {
            assert!(r.get(f).is_some(), "{f} missing in {r}");
        }
        assert_eq!(r["instance"], "x");
        assert_eq!(r["user"], t.app.as_str());
        assert_eq!(r["command"], "Query");
        assert_eq!(r["result"], "killed", "{r}");
        assert_eq!(r["action"], "kill-connection");
        assert_eq!(
            r["fingerprint"],
            "select sleep(?) as pile from dual where ? <> ?"
        );
        assert!(
            r["info"]
                .as_str()
                .unwrap()
                .starts_with("SELECT SLEEP(60) AS pile"),
            "{r}"
        );
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.contains("pile-up: 12 threads with fingerprint")
                && reason.contains("k_victims=all-but-oldest"),
            "{reason}"
        );
    }
    // The human summary went to stderr, not into the JSON stream.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("11 matched, 11 killed"),
        "{}",
        text(&out)
    );
    assert!(!stdout.contains("threads scanned"), "{stdout}");

    for q in copies.drain(..) {
        assert_killed(q);
    }
    assert!(
        running(first.conn_id, "Query", 1),
        "the oldest copy must survive"
    );
    for q in &others {
        assert!(
            running(q.conn_id, "Query", 1),
            "thread {} must survive",
            q.conn_id
        );
    }
    // One copy left: its class is below k_query_count, so a second pass kills nothing.
    let out = kill(&ini, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("0 matched"), "{}", text(&out));
    s.kill_thread(first.conn_id);
    for q in &others {
        s.kill_thread(q.conn_id);
    }
}

#[test]
fn prepared_statement_obeys_k_longtime() {
    let t = Setup::new("Pw-2y");
    let s = server();
    let mut conn = s.connect(&t.app, &t.pw).unwrap();
    let id: u64 = conn.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    // exec_drop prepares server-side (COM_STMT_PREPARE / COM_STMT_EXECUTE):
    // the processlist shows Command=Execute.
    let stmt = std::thread::spawn(move || conn.exec_drop("SELECT SLEEP(?)", (60,)));
    wait_until(
        Duration::from_secs(20),
        "the prepared statement to run",
        || running(id, "Execute", 1),
    );
    let ini = t.ini("", "k_longtime=6");
    let out = kill(&ini, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("0 matched"), "{}", text(&out));
    assert!(running(id, "Execute", 1), "below k_longtime it must run on");

    wait_until(
        Duration::from_secs(20),
        "the prepared statement to reach 6 s",
        || running(id, "Execute", 6),
    );
    let out = kill(&ini, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("long-running"), "{}", text(&out));
    let started = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the prepared statement to end",
        || stmt.is_finished(),
    );
    let e = stmt.join().unwrap().expect_err("killed");
    assert!(support::is_killed_error(&e), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn hook_gets_the_event_on_stdin_and_its_failure_never_stops_killing() {
    let t = Setup::new("Pw-2y");
    let out_file = t.dir.path().join("hook.json");
    let q = t.query("SELECT SLEEP(60) /* hooked */");
    server().wait_query_time(q.conn_id, 1);
    let ini = t.ini(
        &format!("on_kill_command=cat > {}", out_file.display()),
        "k_longtime=1",
    );
    let out = kill(&ini, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = q.conn_id;
    assert_killed(q);
    // `mysqk kill` waits for its reporter (snapshot, mail, hook) before exiting.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("the hook ran"))
            .expect("the hook got JSON");
    assert_eq!(doc["instance"], "x");
    assert_eq!(doc["dry_run"], false);
    assert_eq!(doc["matched"], 1);
    assert_eq!(doc["killed"], 1);
    let snapshot = doc["snapshot"].as_str().expect("snapshot path");
    assert!(Path::new(snapshot).is_file(), "{snapshot}");
    let th = &doc["threads"][0];
    for f in THREAD_FIELDS {
        assert!(th.get(f).is_some(), "{f} missing in {th}");
    }
    assert_eq!(th["id"], id);
    assert_eq!(th["result"], "killed");
    assert_eq!(th["info"], "SELECT SLEEP(60) /* hooked */");
    assert_eq!(th["fingerprint"], "select sleep(?)");

    // A failing hook and a hanging hook: logged, the kill still happens.
    for (hook, log) in [
        ("exit 7", "failed (exit status 7)"),
        ("sleep 30", "did not finish within 1 s; killed"),
    ] {
        let q = t.query("SELECT SLEEP(60)");
        server().wait_query_time(q.conn_id, 1);
        let ini = t.ini(
            &format!("on_kill_command={hook}\nhook_timeout=1"),
            "k_longtime=1",
        );
        let started = Instant::now();
        let out = kill(&ini, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(text(&out).contains(log), "{}", text(&out));
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_killed(q);
    }
}
