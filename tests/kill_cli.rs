//! `mysqk kill` end to end on a real MariaDB: no SUPER, every k_* rule,
//! dry runs, and bad input.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use support::{
    mysqk_bin, run_with_timeout, server, unique, wait_until, write_ini, BgQuery, Server,
};

/// Users and an ini for one test: two non-SUPER app users and a PROCESS monitor.
struct Setup {
    dir: tempfile::TempDir,
    app1: String,
    app2: String,
    mon: String,
    pw: String,
}

impl Setup {
    fn new() -> Setup {
        let s = server();
        let (app1, app2, mon) = (unique("app"), unique("app"), unique("mon"));
        let schema = unique("db");
        let pw = "Pw-1x".to_string();
        s.create_app_user(&app1, &pw, &schema);
        s.create_app_user(&app2, &pw, &schema);
        s.create_monitor_user(&mon, &pw);
        Setup {
            dir: tempfile::tempdir().unwrap(),
            app1,
            app2,
            mon,
            pw,
        }
    }

    /// An ini with instance `x` on the shared server; `kill` is the [db_commkill] body.
    fn ini(&self, commkill: &str, extra: &str) -> PathBuf {
        let text = format!(
            "[settings]\nsnapshot_dir={snap}\n\n[db_info]\nx=127.0.0.1:{port}\n\n[db_auth]\n{a1}={pw}\n{a2}={pw}\n{m}={pw}\n\n\
             [db_commconfig]\ndb_puser={m}\nrun_max_count=999\ndry_run=0\n\n\
             [db_commkill]\n{commkill}\n\n{extra}\n",
            port = server().port(),
            snap = self.dir.path().join("snapshots").display(),
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
}

fn mysqk(args: &[&str]) -> Output {
    let out = run_with_timeout(mysqk_bin().args(args), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "panic:\n{stderr}"
    );
    out
}

fn kill(ini: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["kill", "-c", ini.to_str().unwrap(), "--db", "x"];
    args.extend_from_slice(extra);
    let out = mysqk(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn running(s: &Server, id: u64) -> bool {
    matches!(s.thread(id), Some((_, _, cmd, _, _)) if cmd == "Query")
}

fn wait_idle(s: &Server, ids: &[u64], secs: u64) {
    wait_until(
        Duration::from_secs(secs + 20),
        "idle connections to age",
        || {
            ids.iter().all(|id| matches!(s.thread(*id), Some((_, _, cmd, t, _)) if cmd == "Sleep" && t >= s.time_at_least(secs)))
        },
    );
}

fn conn_id(c: &mut mysql::Conn) -> u64 {
    use mysql::prelude::Queryable;
    c.query_first("SELECT CONNECTION_ID()").unwrap().unwrap()
}

#[test]
fn kills_own_users_runaway_without_super_and_spares_the_other_user() {
    let t = Setup::new();
    let s = server();
    let ini = t.ini("k_user=none\nk_longtime=2", "");
    let q1 = t.query(&t.app1, "SELECT SLEEP(60)");
    let q2 = t.query(&t.app2, "SELECT SLEEP(60)");
    s.wait_query_time(q1.conn_id, 2);
    s.wait_query_time(q2.conn_id, 2);

    let (code, out) = kill(&ini, &["--user", &t.app1]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("killed (as {})", t.app1)),
        "killed through app1's own session:\n{out}"
    );
    let e = q1
        .join_within(Duration::from_secs(10))
        .expect_err("app1's statement must be interrupted");
    assert!(support::is_killed_error(&e), "{e}");
    assert!(running(s, q2.conn_id), "app2's statement must still run");
    s.kill_thread(q2.conn_id);
}

#[test]
fn k_sleep_kills_idle_connections() {
    let t = Setup::new();
    let s = server();
    let ini = t.ini(&format!("k_user={}\nk_longtime=0\nk_sleep=2", t.app1), "");
    let mut idle = s.open_idle(&t.app1, &t.pw, 2);
    let mut other = s.open_idle(&t.app2, &t.pw, 1);
    let ids: Vec<u64> = idle.iter_mut().map(conn_id).collect();
    let other_id = conn_id(&mut other[0]);
    wait_idle(s, &ids, 2);
    wait_idle(s, &[other_id], 2);
    let (code, out) = kill(&ini, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sleeping"), "{out}");
    for id in ids {
        s.wait_thread_gone(id, Duration::from_secs(10));
    }
    assert!(s.thread_exists(other_id), "app2 is not in k_user");
}

#[test]
fn k_include_kills_below_longtime_and_k_exclude_spares() {
    let t = Setup::new();
    let s = server();
    let ini = t.ini(
        &format!(
            "k_user={}\nk_longtime=100\nk_include=kill-me\nk_exclude=keep-me",
            t.app1
        ),
        "",
    );
    let victim = t.query(&t.app1, "SELECT SLEEP(30) /* kill-me */");
    let kept = t.query(&t.app1, "SELECT SLEEP(30) /* kill-me keep-me */");
    wait_until(Duration::from_secs(10), "both statements to run", || {
        running(s, victim.conn_id) && running(s, kept.conn_id)
    });
    let (code, out) = kill(&ini, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("included by /kill-me/"), "{out}");
    assert!(support::is_killed_error(
        &victim.join_within(Duration::from_secs(10)).unwrap_err()
    ));
    assert!(running(s, kept.conn_id), "k_exclude must spare it");
    s.kill_thread(kept.conn_id);

    // k_exclude also spares what only the time would have matched.
    let ini = t.ini(
        &format!("k_user={}\nk_longtime=1\nk_exclude=keep-me", t.app1),
        "",
    );
    let kept = t.query(&t.app1, "SELECT SLEEP(30) /* keep-me */");
    s.wait_query_time(kept.conn_id, 1);
    let (code, out) = kill(&ini, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(running(s, kept.conn_id), "{out}");
    s.kill_thread(kept.conn_id);
}

#[test]
fn k_user_all_none_and_list() {
    let t = Setup::new();
    let s = server();
    let q1 = t.query(&t.app1, "SELECT SLEEP(60)");
    let q2 = t.query(&t.app2, "SELECT SLEEP(60)");
    s.wait_query_time(q1.conn_id, 1);
    s.wait_query_time(q2.conn_id, 1);

    let (code, out) = kill(&t.ini("k_user=none\nk_longtime=1", ""), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        running(s, q1.conn_id) && running(s, q2.conn_id),
        "none kills nobody:\n{out}"
    );
    assert!(out.contains("0 matched"), "{out}");

    let (code, out) = kill(&t.ini(&format!("k_user={}\nk_longtime=1", t.app2), ""), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(support::is_killed_error(
        &q2.join_within(Duration::from_secs(10)).unwrap_err()
    ));
    assert!(
        running(s, q1.conn_id),
        "a list names who may be killed:\n{out}"
    );

    let q2 = t.query(&t.app2, "SELECT SLEEP(60)");
    s.wait_query_time(q2.conn_id, 1);
    let (code, out) = kill(&t.ini("k_user=all\nk_longtime=1", ""), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        support::is_killed_error(&q1.join_within(Duration::from_secs(10)).unwrap_err()),
        "{out}"
    );
    assert!(
        support::is_killed_error(&q2.join_within(Duration::from_secs(10)).unwrap_err()),
        "{out}"
    );
}

#[test]
fn dry_run_flag_and_dry_run_in_instance_section_kill_nothing() {
    let t = Setup::new();
    let s = server();
    let q = t.query(&t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 1);
    let rules = format!("k_user={}\nk_longtime=1", t.app1);

    let (code, out) = kill(&t.ini(&rules, ""), &["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("dry run") && out.contains(&q.conn_id.to_string()),
        "{out}"
    );
    assert!(out.contains("DRY RUN"), "{out}");
    assert!(running(s, q.conn_id));

    let (code, out) = kill(&t.ini(&rules, "[id_x]\ndry_run=1"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dry run"), "{out}");
    assert!(running(s, q.conn_id));

    // The flags override the config's rules: --longtime 1000 leaves it alone.
    let (code, out) = kill(&t.ini(&rules, ""), &["--longtime", "1000"]);
    assert_eq!(code, 0, "{out}");
    assert!(running(s, q.conn_id), "{out}");
    s.kill_thread(q.conn_id);
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let t = Setup::new();
    let good = format!("k_user={}\nk_longtime=1", t.app1);

    let ini = t.ini(&format!("{good}\nk_exclude=Binlog|("), "");
    let (code, out) = kill(&ini, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("[db_commkill] k_exclude: invalid regex `Binlog|(`"),
        "{out}"
    );

    let (code, out) = kill(&t.ini(&good, ""), &["--db", "nope"]);
    // `--db x --db nope`: clap rejects a repeated flag; test the name check alone.
    assert_eq!(code, 2, "{out}");
    let out = mysqk(&[
        "kill",
        "-c",
        t.ini(&good, "").to_str().unwrap(),
        "--db",
        "x,nope",
    ]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("unknown --db `nope`") && text.contains(": x"),
        "{text}"
    );

    let ini = write_ini(t.dir.path(), "[db_info]\nx=127.0.0.1:1\n[db_auth\nu=p\n");
    let (code, out) = kill(&ini, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("malformed section header"), "{out}");

    let ini = t.ini(&good, "").to_str().unwrap().to_string();
    let text = std::fs::read_to_string(&ini)
        .unwrap()
        .replace(&format!("db_puser={}", t.mon), "db_puser=ghost");
    std::fs::write(&ini, text).unwrap();
    let (code, out) = kill(&PathBuf::from(&ini), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("db_puser: `ghost` is not in [db_auth]"),
        "{out}"
    );

    let out = mysqk(&["check-config", "-c", "/nonexistent/mysqk.ini"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("given with -c /nonexistent/mysqk.ini does not exist")
            && err.contains("-c FILE or MYSQK_CONFIG=FILE"),
        "{err}"
    );
}

#[test]
fn unreachable_instance_exits_1_and_the_reachable_one_is_still_processed() {
    let t = Setup::new();
    let s = server();
    // A port nothing listens on: bind, note the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ini = t.ini(&format!("k_user={}\nk_longtime=1", t.app1), "");
    let text = std::fs::read_to_string(&ini).unwrap().replace(
        "[db_info]\n",
        &format!("[db_info]\ndown=127.0.0.1:{closed}\n"),
    );
    std::fs::write(&ini, text).unwrap();
    let q = t.query(&t.app1, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 1);
    let started = std::time::Instant::now();
    let out = mysqk(&["kill", "-c", ini.to_str().unwrap(), "--db", "all"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("down: ERROR"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3 + 10),
        "within the connect timeout"
    );
    assert!(
        support::is_killed_error(&q.join_within(Duration::from_secs(10)).unwrap_err()),
        "{text}"
    );
}

#[test]
fn check_config_prints_effective_rules() {
    let t = Setup::new();
    let ini = t.ini(
        "k_user=all\nk_longtime=10   ; seconds\nk_sleep=0",
        "[id_x]\nk_longtime=20",
    );
    let out = mysqk(&["check-config", "-c", ini.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("[x] 127.0.0.1:"), "{text}");
    assert!(text.contains("k_longtime=20"), "{text}");
    assert!(!text.contains(&t.pw), "no password in check-config output");
}
