//! Replication threads are never victims (SPEC 2, issue 5): a primary's
//! `Binlog Dump` and a replica's IO/SQL threads survive mysqk run with the
//! most aggressive rules, on real servers in replication (MariaDB's
//! `Slave_IO`/`Slave_SQL`/`Slave_worker` commands; MySQL's `system user`
//! threads with `Connect`/`Query` commands).

mod support;

use std::path::Path;
use std::time::Duration;

use support::{
    mysqk_bin, run_with_timeout, unique, wait_until, write_ini, ChildGuard, Server, ServerOpts,
    REPL_PASS, REPL_USER,
};

/// (id, user, command) of every thread of `s` whose command matches `f`.
fn threads(s: &Server, f: impl Fn(&str) -> bool) -> Vec<(u64, String, String)> {
    s.processlist()
        .into_iter()
        .filter(|r| f(&r.2))
        .map(|r| (r.0, r.1, r.2))
        .collect()
}

/// The replica's replication threads (id, user, command): MariaDB names
/// them by command (`Slave_IO`, `Slave_SQL`, `Slave_worker`), MySQL runs
/// them all as `system user` (IO `Connect`, coordinator and workers `Query`
/// or `Connect`).
fn replication_threads(s: &Server) -> Vec<(u64, String, String)> {
    s.processlist()
        .into_iter()
        .filter(|r| {
            if s.is_mysql() {
                r.1 == "system user"
            } else {
                r.2.starts_with("Slave_")
            }
        })
        .map(|r| (r.0, r.1, r.2))
        .collect()
}

#[test]
fn binlog_dump_and_replica_threads_are_never_killed() {
    let primary = Server::start(ServerOpts {
        log_bin: true,
        server_id: 1,
        ..ServerOpts::default()
    });
    let replica = Server::start(ServerOpts {
        server_id: 2,
        // Parallel workers: `Slave_worker` threads on MariaDB, more
        // `system user` threads on MySQL.
        extra_args: vec![if support::is_mysql() {
            "--replica-parallel-workers=2".into()
        } else {
            "--slave-parallel-threads=2".into()
        }],
        ..ServerOpts::default()
    });
    replica.start_replica_of(&primary);

    let mon = unique("mon");
    let pw = "Pw-rx";
    // Created on the primary, it replicates to the replica.
    primary.create_monitor_user(&mon, pw);
    wait_until(
        Duration::from_secs(30),
        "the monitor user on the replica",
        || {
            !replica
                .query::<String>(&format!("SELECT User FROM mysql.user WHERE User = '{mon}'"))
                .is_empty()
        },
    );

    let dir = tempfile::tempdir().unwrap();
    // k_user=all covers the replication user; k_longtime=1 and an include
    // that matches every replication thread would pick them if anything could.
    let ini = write_ini(
        dir.path(),
        &format!(
            "[settings]\nsnapshot_dir={snap}\ncheck_interval=1\nlog_file={log}\n\n\
             [db_info]\nprimary={p}\nreplica={r}\n\n\
             [db_auth]\n{mon}={pw}\n{REPL_USER}={REPL_PASS}\n\n\
             [db_commconfig]\ndb_puser={mon}\nrun_max_count=999\ndry_run=0\n\n\
             [db_commkill]\nk_user=all\nk_longtime=1\nk_sleep=1\nk_lock=1\n\
             k_include=Binlog|Slave|Connect|Waiting|relay\n",
            snap = dir.path().join("snapshots").display(),
            log = dir.path().join("mysqk.log").display(),
            p = primary.addr(),
            r = replica.addr(),
        ),
    );
    let dump = threads(&primary, |c| c.starts_with("Binlog Dump"));
    assert_eq!(dump.len(), 1, "{dump:?}");
    assert_eq!(dump[0].1, REPL_USER);
    let replica_threads = replication_threads(&replica);
    let commands: Vec<&str> = replica_threads.iter().map(|t| t.2.as_str()).collect();
    if replica.is_mysql() {
        // IO thread (Connect), coordinator and 2 workers.
        assert!(
            replica_threads.len() >= 4 && commands.contains(&"Connect"),
            "{replica_threads:?}"
        );
    } else {
        assert!(
            commands.contains(&"Slave_IO") && commands.contains(&"Slave_SQL"),
            "{replica_threads:?}"
        );
    }
    assert!(
        replica_threads.iter().all(|t| t.1 == "system user"),
        "{replica_threads:?}"
    );
    // Old enough for k_longtime=1 / k_sleep=1.
    wait_until(
        Duration::from_secs(30),
        "replication threads to age",
        || {
            primary
                .processlist()
                .iter()
                .any(|r| r.2.starts_with("Binlog Dump") && r.3 >= primary.time_at_least(2))
                && replication_threads(&replica).iter().all(|t| {
                    replica
                        .thread(t.0)
                        .is_some_and(|r| r.3 >= replica.time_at_least(2))
                })
        },
    );

    // The same user's ordinary thread is a victim: the rules do bite.
    let ordinary = primary.spawn_query(REPL_USER, REPL_PASS, "SELECT SLEEP(60) /* Binlog */");
    primary.wait_query_time(ordinary.conn_id, 1);

    // One-shot, with k_user from the ini (all) and with an explicit list
    // naming the replica threads' user.
    let mut ordinary = Some(ordinary);
    for user_flag in [None, Some("all"), Some("system user,trepl")] {
        let mut cmd = mysqk_bin();
        cmd.args([
            "kill",
            "-c",
            ini.to_str().unwrap(),
            "--db",
            "all",
            "--no-lock",
        ]);
        if let Some(u) = user_flag {
            cmd.args(["--user", u]);
        }
        let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(
            text.contains("primary:") && text.contains("replica:"),
            "{text}"
        );
        match ordinary.take() {
            Some(q) => {
                let id = q.conn_id;
                assert!(
                    support::is_killed_error(&q.join_within(Duration::from_secs(10)).unwrap_err()),
                    "{text}"
                );
                assert!(text.contains("1 matched, 1 killed"), "{text}");
                assert!(
                    text.lines()
                        .any(|l| l.contains(" replica: ") && l.contains(" 0 matched")),
                    "{text}"
                );
                assert!(
                    text.contains(&format!("thread {id} ({REPL_USER}): gone")),
                    "{text}"
                );
            }
            None => assert_eq!(
                text.matches(" 0 matched").count(),
                2,
                "{user_flag:?}: nothing on either server:\n{text}"
            ),
        }
    }

    // And `watch`, several passes on both.
    let log = dir.path().join("mysqk.log");
    let mut w = ChildGuard::spawn(
        mysqk_bin()
            .args(["watch", "-c", ini.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let status = dir.path().join("snapshots").join("mysqk.status");
    wait_until(Duration::from_secs(30), "watch to pass a few times", || {
        passes(&status) >= 6
    });
    w.signal(libc::SIGTERM);
    assert!(w.wait_timeout(Duration::from_secs(20)).is_some());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("action="), "nothing killed:\n{text}");

    assert_eq!(threads(&primary, |c| c.starts_with("Binlog Dump")), dump);
    // Same threads (a MySQL worker's command may move between Connect and
    // Query as it waits or applies).
    let ids = |v: &[(u64, String, String)]| v.iter().map(|t| t.0).collect::<Vec<_>>();
    assert_eq!(ids(&replication_threads(&replica)), ids(&replica_threads));
    assert_eq!(replica.replica_running(), Some((true, true)));
    // Replication still moves data.
    let db = unique("rdb");
    primary.exec(&format!(
        "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.t (id INT PRIMARY KEY); INSERT INTO `{db}`.t VALUES (42)"
    ));
    wait_until(Duration::from_secs(30), "the row to replicate", || {
        use mysql::prelude::Queryable;
        replica
            .with_admin(|c| c.query::<u32, _>(format!("SELECT id FROM `{db}`.t")))
            .is_ok_and(|rows| rows == vec![42])
    });
}

/// Total passes over all instances, from the status file (0 if unreadable).
fn passes(status: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(status) else {
        return 0;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return 0;
    };
    let mut total = 0;
    let mut stack = vec![&v];
    while let Some(x) = stack.pop() {
        match x {
            serde_json::Value::Object(m) => {
                if let Some(n) = m.get("passes").and_then(|p| p.as_u64()) {
                    total += n;
                }
                stack.extend(m.values());
            }
            serde_json::Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    total
}
