//! `mysqk watch` against servers in trouble, each on a dedicated MariaDB:
//! a connection storm (`Too many connections`), a crash and restart, a hung
//! (SIGSTOPped) server next to a healthy one.

mod support;
mod watch_harness;

use std::time::Duration;

use support::{server, Server, ServerOpts};
use watch_harness::{assert_killed, Setup, Watch};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The original's reason to exist: the server is full, nobody can log in, and
/// mysqk, which logged in before, kills the idle connections through the app
/// user's own held session after a live edit of the ini.
#[test]
fn connection_storm_is_cleared_through_held_sessions_after_a_live_edit() {
    let s = Server::start(ServerOpts {
        max_connections: 30,
        ..ServerOpts::default()
    });
    let t = Setup::new(&[&s]);
    let ini =
        |commkill: &str| t.ini_text("", &[("x", s.addr())], "run_max_count=999", commkill, "");
    t.write(&ini("k_user=none\nk_sleep=0"));
    let mut w = Watch::start(&t);
    w.wait_connected(&["x"], &[&t.app1, &t.mon]);

    // Fill the server with idle app1 connections until a login fails with 1040.
    let mut idle = Vec::new();
    let refused = loop {
        match s.connect(&t.app1.name, &t.app1.pw) {
            Ok(c) => idle.push(c),
            Err(e) => break e,
        }
        assert!(idle.len() < 200, "max_connections never reached");
    };
    match &refused {
        mysql::Error::MySqlError(e) if e.code == 1040 => {}
        other => panic!("expected Too many connections (1040), got {other:?}"),
    }
    let ids: Vec<u64> = idle
        .iter_mut()
        .map(|c| {
            use mysql::prelude::Queryable;
            c.query_first("SELECT CONNECTION_ID()").unwrap().unwrap()
        })
        .collect();
    assert!(ids.len() >= 20, "{} idle connections", ids.len());

    // The DBA edits the ini while mysqk runs: kill app1's sleepers.
    t.write(&ini(&format!("k_user={}\nk_sleep=2", t.app1.name)));
    support::wait_until(SECS(30), "every idle connection killed", || {
        let live: Vec<u64> = s.processlist().iter().map(|r| r.0).collect();
        ids.iter().all(|id| !live.contains(id))
    });
    let mut fresh = s
        .connect(&t.app1.name, &t.app1.pw)
        .expect("a fresh login succeeds after the storm is cleared");
    {
        use mysql::prelude::Queryable;
        let one: Option<u64> = fresh.query_first("SELECT 1").unwrap();
        assert_eq!(one, Some(1));
    }
    let log = w.log_text();
    assert!(
        log.contains(&format!("killed (as {})", t.app1.name)),
        "killed through app1's own held session:\n{log}"
    );
    w.wait_status(SECS(10), "kills counted", |st| {
        st["instances"]["x"]["kills"].as_u64() >= Some(ids.len() as u64)
    });
    // mysqk's own sessions survived (never its own victims).
    assert_eq!(w.inst("x")["connected"], true);
    drop(idle);
    assert!(w.terminate(SECS(10)).success());
}

#[test]
fn after_a_server_crash_and_restart_watch_reconnects_and_kills_again() {
    let s = Server::start(ServerOpts::default());
    let t = Setup::new(&[&s]);
    // The accounts must survive a kill -9 of the server.
    s.make_durable();
    t.write(&t.ini_text(
        "connect_timeout=1\nread_timeout=2",
        &[("x", s.addr())],
        "run_max_count=999",
        &format!("k_user={}\nk_longtime=2", t.app1.name),
        "",
    ));
    let mut w = Watch::start(&t);
    w.wait_connected(&["x"], &[&t.app1, &t.mon]);

    s.kill9();
    w.wait_status(SECS(20), "the instance notices the crash", |st| {
        let x = &st["instances"]["x"];
        x["connected"] == false && x["errors"].as_u64() >= Some(1)
    });
    s.restart();
    w.wait_connected(&["x"], &[&t.app1, &t.mon]);

    let q = t.query(&s, &t.app1, "SELECT SLEEP(60)");
    assert_killed(q, SECS(20), &w.log_text());
    w.assert_running();
    assert!(w.log_text().contains("re-opened"), "{}", w.log_text());
    assert!(w.terminate(SECS(10)).success());
}

#[test]
fn a_hung_server_does_not_stop_kills_on_the_other_and_is_watched_again_after_sigcont() {
    let healthy = server();
    let hung = Server::start(ServerOpts::default());
    let t = Setup::new(&[healthy, &hung]);
    let read_timeout = 2;
    t.write(&t.ini_text(
        &format!("connect_timeout=1\nread_timeout={read_timeout}"),
        &[("a", healthy.addr()), ("b", hung.addr())],
        "run_max_count=999",
        &format!("k_user={}\nk_longtime=2", t.app1.name),
        "",
    ));
    let mut w = Watch::start(&t);
    w.wait_connected(&["a", "b"], &[&t.app1, &t.mon]);

    hung.sigstop();
    // Kills on the healthy server go on.
    let q = t.query(healthy, &t.app1, "SELECT SLEEP(60)");
    assert_killed(q, SECS(15), &w.log_text());
    // The hung server's thread is not stuck: it times out (read_timeout) and
    // says so in the status; the healthy one keeps passing every interval.
    w.wait_status(SECS(read_timeout * 3 + 5), "b marked disconnected", |st| {
        let b = &st["instances"]["b"];
        b["connected"] == false && b["errors"].as_u64() >= Some(1)
    });
    let a_passes = w.inst("a")["passes"].as_u64().unwrap();
    w.wait_status(SECS(10), "a keeps passing", |st| {
        st["instances"]["a"]["passes"].as_u64() >= Some(a_passes + 3)
    });

    hung.sigcont();
    w.wait_connected(&["b"], &[&t.app1, &t.mon]);
    let q = t.query(&hung, &t.app1, "SELECT SLEEP(60)");
    assert_killed(q, SECS(20), &w.log_text());
    w.wait_status(SECS(10), "b kill counted", |st| {
        st["instances"]["b"]["kills"].as_u64() >= Some(1)
    });

    // SIGTERM while a server hangs: b's thread is stuck in at most one
    // bounded call, so the stop still comes within the timeouts.
    hung.sigstop();
    w.wait_rewrites(2);
    let t0 = std::time::Instant::now();
    let st = w.terminate(SECS(20));
    assert!(st.success(), "{st}\n{}", w.log_text());
    let bound = SECS(1 + read_timeout + 3);
    assert!(t0.elapsed() < bound, "stopped in {:?}", t0.elapsed());
}
