//! Proves the test harness in `tests/support` works against a real server.

mod support;

use mysql::prelude::*;
use std::time::Duration;
use support::*;

#[test]
fn shared_server_kill_runaway_query() {
    let srv = server();
    let user = unique("app");
    let db = unique("db");
    srv.create_app_user(&user, "pw1", &db);

    let q = srv.spawn_query(&user, "pw1", "SELECT SLEEP(30)");
    srv.wait_query_time(q.conn_id, 1);
    let (_, who, cmd, _, info) = srv.thread(q.conn_id).expect("runaway in processlist");
    assert_eq!(who, user);
    assert_eq!(cmd, "Query");
    assert_eq!(info.as_deref(), Some("SELECT SLEEP(30)"));

    let id = q.conn_id;
    srv.kill_thread(id);
    let err = q
        .join_within(Duration::from_secs(10))
        .expect_err("killed query must fail");
    assert!(
        is_killed_error(&err),
        "unexpected error for a killed connection: {err:?}"
    );
    if let mysql::Error::MySqlError(e) = &err {
        assert!([1317, 1927, 2013].contains(&e.code), "code {}", e.code);
    }
    srv.wait_thread_gone(id, Duration::from_secs(10));
}

#[test]
fn kill_query_keeps_connection_usable() {
    let srv = server();
    let user = unique("app");
    srv.create_app_user(&user, "pw2", &unique("db"));

    let q = srv.spawn_query(&user, "pw2", "SELECT SLEEP(30)");
    srv.wait_query_time(q.conn_id, 0);
    srv.exec(&format!("KILL QUERY {}", q.conn_id));
    let (mut conn, res) = q.join_conn();
    // MariaDB: SLEEP() interrupted by KILL QUERY returns 1 or error 1317.
    if let Err(e) = res {
        assert!(is_killed_error(&e), "{e:?}");
    }
    let one: Option<u32> = conn
        .query_first("SELECT 1")
        .expect("connection survives KILL QUERY");
    assert_eq!(one, Some(1));
}

#[test]
fn users_and_idle_connections() {
    let srv = server();
    let app = unique("app");
    let mon = unique("mon");
    srv.create_app_user(&app, "pw", &unique("db"));
    srv.create_monitor_user(&mon, "pw");

    let idle = srv.open_idle(&app, "pw", 3);
    let ids: Vec<u64> = idle.iter().map(|c| c.connection_id() as u64).collect();
    for id in &ids {
        // The server marks a thread idle only after it has sent its last
        // answer, which the client may have read already: poll.
        wait_until(
            Duration::from_secs(10),
            "the idle thread listed as Sleep",
            || {
                srv.thread(*id)
                    .is_some_and(|(_, u, cmd, _, _)| u == app && cmd == "Sleep")
            },
        );
    }

    // The monitor sees other users' threads but may not kill them.
    let mut m = srv.connect(&mon, "pw").expect("monitor login");
    let seen: Vec<u64> = m
        .query("SELECT ID FROM information_schema.PROCESSLIST")
        .unwrap();
    assert!(
        ids.iter().all(|id| seen.contains(id)),
        "PROCESS shows all threads"
    );
    let err = m
        .query_drop(format!("KILL {}", ids[0]))
        .expect_err("monitor must not kill others");
    assert!(
        matches!(&err, mysql::Error::MySqlError(e) if e.code == 1095),
        "{err:?}"
    );

    // The app user sees only its own threads, and can kill them.
    let mut a = srv.connect(&app, "pw").unwrap();
    let own: Vec<String> = a
        .query("SELECT DISTINCT USER FROM information_schema.PROCESSLIST")
        .unwrap();
    assert_eq!(own, vec![app.clone()]);
    a.query_drop(format!("KILL {}", ids[1]))
        .expect("a user may kill its own thread");
    srv.wait_thread_gone(ids[1], Duration::from_secs(10));
    drop(idle);
}

#[test]
fn unique_names_are_short_and_distinct() {
    let a = unique("user_prefix_long");
    let b = unique("user_prefix_long");
    assert_ne!(a, b);
    assert!(a.len() < 32, "{a}");
}

#[test]
fn write_ini_dedents() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_ini(dir.path(), "\n    [db_info]\n    a=127.0.0.1:1\n");
    assert_eq!(
        std::fs::read_to_string(p).unwrap(),
        "[db_info]\na=127.0.0.1:1\n"
    );
}

#[test]
fn dedicated_server_crash_freeze_restart() {
    let srv = Server::start(ServerOpts {
        max_connections: 10,
        ..Default::default()
    });
    let dir = srv.datadir().to_path_buf();
    let port = srv.port();
    let pid = srv.pid();

    // max_connections is honoured for ordinary users (the cached admin
    // connection of create_app_user holds one of the 10 slots); the admin still
    // gets MariaDB's one extra connection reserved for privileged accounts.
    let user = unique("app");
    srv.create_app_user(&user, "pw", &unique("db"));
    let held = srv.open_idle(&user, "pw", 9);
    let err = srv.connect(&user, "pw").map(|_| ());
    assert!(
        matches!(&err, Err(mysql::Error::MySqlError(e)) if e.code == 1040),
        "{err:?}"
    );
    assert!(srv.processlist().len() >= 10);
    let extra = srv.admin();
    let held_ids: Vec<u64> = srv
        .processlist()
        .iter()
        .filter(|r| r.1 == user)
        .map(|r| r.0)
        .collect();
    drop((held, extra));
    // The server ends closed connections asynchronously: wait until their
    // slots are free, or the next login may still get 1040.
    for id in held_ids {
        srv.wait_thread_gone(id, Duration::from_secs(20));
    }

    // SIGSTOP: a client with a short read timeout gets an error, not a hang.
    // (A login, not a query on an open connection: that one was seen to get
    // an instant OK now and then, read from its socket buffer.)
    srv.sigstop();
    let t0 = std::time::Instant::now();
    let frozen = mysql::Conn::new(
        srv.opts(ADMIN_USER, ADMIN_PASS)
            .read_timeout(Some(Duration::from_secs(1))),
    );
    assert!(frozen.is_err(), "a frozen server cannot log anyone in");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "bounded by the timeout"
    );
    srv.sigcont();
    drop(frozen);

    srv.kill9();
    assert!(!srv.is_running());
    assert!(srv.connect(ADMIN_USER, ADMIN_PASS).is_err());
    srv.restart();
    assert_eq!(srv.port(), port);
    assert_ne!(srv.pid(), pid);
    let mut c = srv.admin();
    let one: Option<u32> = c.query_first("SELECT 1").unwrap();
    assert_eq!(one, Some(1));

    drop(c);
    drop(srv);
    assert!(!dir.exists(), "datadir removed on drop");
}

#[test]
fn replication_pair() {
    let primary = Server::start(ServerOpts {
        log_bin: true,
        server_id: 1,
        ..Default::default()
    });
    let replica = Server::start(ServerOpts {
        server_id: 2,
        ..Default::default()
    });
    replica.start_replica_of(&primary);
    primary.exec("CREATE DATABASE repl_t; CREATE TABLE repl_t.t (i INT PRIMARY KEY); INSERT INTO repl_t.t VALUES (7)");
    wait_until(Duration::from_secs(20), "row to replicate", || {
        replica
            .with_admin(|c| c.query_first::<u32, _>("SELECT i FROM repl_t.t"))
            .ok()
            .flatten()
            == Some(7)
    });
    let cmds: Vec<String> = primary.processlist().into_iter().map(|r| r.2).collect();
    assert!(
        cmds.iter().any(|c| c.starts_with("Binlog Dump")),
        "{cmds:?}"
    );
    let users: Vec<String> = replica.processlist().into_iter().map(|r| r.1).collect();
    assert!(users.iter().any(|u| u == "system user"), "{users:?}");
}
