//! Many victims at once (a connection storm): the batched kill path
//! kills every victim through its owner's own sessions, carries on past
//! statements that fail in the middle of a batch, and never touches another
//! user's threads. No timing assertions: speed is `make bench`'s business.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use mysqk::config::crypto::Secret;
use mysqk::core::matcher::{KillCmd, KillMode, Victim};
use mysqk::core::row::ProcRow;
use mysqk::server::killer::{self, KillResult};
use mysqk::server::session::{Sessions, Target};
use support::{
    mysqk_bin, run_with_timeout, server, unique, wait_until, write_ini, Server, ServerOpts,
};

const PW: &str = "Pw-many-1";

fn conn_ids(conns: &[mysql::Conn]) -> Vec<u64> {
    conns.iter().map(|c| u64::from(c.connection_id())).collect()
}

fn alive(s: &Server) -> HashSet<u64> {
    s.processlist().into_iter().map(|r| r.0).collect()
}

#[test]
fn one_kill_clears_300_idle_connections_of_one_user_and_spares_the_other() {
    // Its own server: 300 + 20 connections do not fit next to other tests.
    let s = Server::start(ServerOpts {
        max_connections: 1000,
        ..ServerOpts::default()
    });
    let (app1, app2, mon, schema) = (unique("app"), unique("app"), unique("mon"), unique("db"));
    s.create_app_user(&app1, PW, &schema);
    s.create_app_user(&app2, PW, &schema);
    s.create_monitor_user(&mon, PW);
    let dir = tempfile::tempdir().unwrap();
    let ini = write_ini(
        dir.path(),
        &format!(
            "[settings]\nsnapshot_dir={snap}\n\n[db_info]\nx={addr}\n\n\
             [db_auth]\n{app1}={PW}\n{app2}={PW}\n{mon}={PW}\n\n\
             [db_commconfig]\ndb_puser={mon}\nrun_max_count=999\ndry_run=0\n\n\
             [db_commkill]\nk_user=none\nk_longtime=0\nk_sleep=0\n",
            snap = dir.path().join("snapshots").display(),
            addr = s.addr(),
        ),
    );
    let storm = s.open_idle(&app1, PW, 300);
    let bystanders = s.open_idle(&app2, PW, 20);
    let storm_ids = conn_ids(&storm);
    let bystander_ids = conn_ids(&bystanders);
    wait_until(Duration::from_secs(30), "the storm to idle for 1 s", || {
        let rows = s.processlist();
        storm_ids.iter().all(|id| {
            rows.iter()
                .any(|r| r.0 == *id && r.2 == "Sleep" && r.3 >= s.time_at_least(1))
        })
    });

    let out = run_with_timeout(
        mysqk_bin().args([
            "kill",
            "-c",
            ini.to_str().unwrap(),
            "--db",
            "x",
            "--user",
            &app1,
            "--sleep",
            "1",
        ]),
        Duration::from_secs(120),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("300 matched, 300 killed, 0 gone, 0 no session, 0 failed"),
        "every victim killed, through its owner's sessions:\n{text}"
    );
    assert!(
        !text.contains(&format!("killed (as {mon})"))
            && !text.contains(&format!("killed (as {app2})")),
        "only {app1}'s own sessions kill {app1}'s threads:\n{text}"
    );
    wait_until(
        Duration::from_secs(30),
        "all 300 storm threads to leave the processlist",
        || {
            let now = alive(&s);
            storm_ids.iter().all(|id| !now.contains(id))
        },
    );
    let now = alive(&s);
    for id in &bystander_ids {
        assert!(now.contains(id), "{app2}'s thread {id} was killed:\n{text}");
    }
    // mysqk's own connections are closed after a one-shot run.
    wait_until(Duration::from_secs(30), "mysqk's sessions to close", || {
        s.processlist().iter().all(|r| r.1 != app1 && r.1 != mon)
    });
}

/// A batch that meets `Unknown thread id` and `You are not owner of thread`
/// in its middle still kills everything after them, and the refused thread
/// (another user's) survives: the batch is answered statement by statement.
#[test]
fn a_batch_carries_on_past_gone_and_refused_threads() {
    let s = server();
    let (app1, app2, mon, schema) = (unique("app"), unique("app"), unique("mon"), unique("db"));
    s.create_app_user(&app1, PW, &schema);
    s.create_app_user(&app2, PW, &schema);
    s.create_monitor_user(&mon, PW);
    let mine = s.open_idle(&app1, PW, 40);
    let other = s.open_idle(&app2, PW, 1);
    let mine_ids = conn_ids(&mine);
    let other_id = conn_ids(&other)[0];
    // A thread that existed and ended: `Unknown thread id` when killed.
    let ended = {
        let c = s.connect(&app1, PW).unwrap();
        let id = u64::from(c.connection_id());
        drop(c);
        s.wait_thread_gone(id, Duration::from_secs(30));
        id
    };

    let row = |id: u64, user: &str| ProcRow {
        id,
        user: user.to_string(),
        command: "Sleep".into(),
        time: 5,
        ..ProcRow::default()
    };
    let mut victims: Vec<Victim> = Vec::new();
    for (n, id) in mine_ids.iter().enumerate() {
        if n == 10 {
            victims.push(Victim {
                row: row(ended, &app1),
                reasons: Vec::new(),
            });
        }
        if n == 20 {
            // Listed under app1's name, so it lands in app1's batch; the
            // server refuses: it is app2's thread.
            victims.push(Victim {
                row: row(other_id, &app1),
                reasons: Vec::new(),
            });
        }
        victims.push(Victim {
            row: row(*id, &app1),
            reasons: Vec::new(),
        });
    }

    let secret = Secret::new(PW);
    let auth = vec![app1.clone(), app2.clone(), mon.clone()];
    let mut sessions = Sessions::new(Target {
        host: "127.0.0.1".into(),
        port: s.port(),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(30),
    });
    let opts = killer::KillOpts {
        mode: KillMode::Connection,
        cmd: KillCmd::Kill,
        dry_run: false,
        exact_query: false,
        wait: Duration::from_secs(30),
        keep: None,
    };
    let mut lanes = killer::Lanes::new();
    let outcomes = killer::kill_all(
        &mut sessions,
        &mut lanes,
        |u| auth.iter().any(|a| a == u).then_some(&secret),
        &auth,
        &victims,
        &opts,
    );
    assert!(!lanes.busy(), "every kill thread is back");
    assert!(sessions.get(&app1).is_some(), "app1's session is back");
    assert_eq!(outcomes.len(), victims.len());
    for (o, v) in outcomes.iter().zip(&victims) {
        assert_eq!(
            o.victim.row.id, v.row.id,
            "outcomes keep the victims' order"
        );
        let expected = if v.row.id == ended {
            KillResult::Gone
        } else if v.row.id == other_id {
            // Nobody here may kill app2's thread as app1; mon has no SUPER.
            assert!(
                matches!(&o.result, KillResult::NoSession { .. }),
                "thread {other_id}: {:?}",
                o.result
            );
            continue;
        } else {
            KillResult::Killed { via: app1.clone() }
        };
        assert_eq!(o.result, expected, "thread {}", v.row.id);
    }
    wait_until(
        Duration::from_secs(30),
        "app1's 40 threads to leave the processlist",
        || {
            let now = alive(s);
            mine_ids.iter().all(|id| !now.contains(id))
        },
    );
    assert!(
        s.thread_exists(other_id),
        "{app2}'s thread {other_id} must survive"
    );
    drop(other);
}

/// One connection, one packet list: failures first, in the middle and last
/// are each answered for themselves and never stop the statements after
/// them (MariaDB ends a multi-statement packet at its first error).
#[test]
fn kill_batch_answers_every_statement_even_after_errors() {
    let s = server();
    let (app1, app2, schema) = (unique("app"), unique("app"), unique("db"));
    s.create_app_user(&app1, PW, &schema);
    s.create_app_user(&app2, PW, &schema);
    let mine = s.open_idle(&app1, PW, 30);
    let other = s.open_idle(&app2, PW, 1);
    let mine_ids = conn_ids(&mine);
    let other_id = conn_ids(&other)[0];
    let ended = {
        let c = s.connect(&app1, PW).unwrap();
        let id = u64::from(c.connection_id());
        drop(c);
        s.wait_thread_gone(id, Duration::from_secs(30));
        id
    };

    // refused first, gone in the middle, refused in the middle, gone last.
    let mut ids = vec![other_id];
    ids.extend(&mine_ids[..10]);
    ids.push(ended);
    ids.extend(&mine_ids[10..20]);
    ids.push(other_id);
    ids.extend(&mine_ids[20..]);
    ids.push(ended);
    let stmts: Vec<(usize, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (i, format!("KILL CONNECTION {id}")))
        .collect();

    let mut killer_conn = s.connect(&app1, PW).unwrap();
    let mut settled = Vec::new();
    killer::kill_batch(&mut killer_conn, &app1, &stmts, &mut settled)
        .expect("the connection stays up");
    let by_index: std::collections::HashMap<usize, KillResult> = settled.into_iter().collect();
    for (i, id) in ids.iter().enumerate() {
        let got = by_index.get(&i);
        if *id == other_id {
            assert_eq!(
                got, None,
                "statement {i} (refused) is left for the fallback"
            );
        } else if *id == ended {
            assert_eq!(got, Some(&KillResult::Gone), "statement {i}");
        } else {
            assert_eq!(
                got,
                Some(&KillResult::Killed { via: app1.clone() }),
                "statement {i} (thread {id})"
            );
        }
    }
    wait_until(
        Duration::from_secs(30),
        "app1's 30 threads to leave the processlist",
        || {
            let now = alive(s);
            mine_ids.iter().all(|id| !now.contains(id))
        },
    );
    assert!(s.thread_exists(other_id), "{app2}'s thread survives");
    drop(other);
}
