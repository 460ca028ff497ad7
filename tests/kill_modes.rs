//! Kills that finish (issue 5) on a real MariaDB: lock blockers (row and
//! metadata locks), `k_mode=query`, verification of every kill, threads stuck
//! in `Killed`, and `k_kill_cmd=rds`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::Conn;
use support::{
    mysqk_bin, run_with_timeout, server, unique, wait_until, write_ini, BgQuery, ChildGuard,
    Server, ServerOpts,
};

/// Two non-SUPER app users sharing a schema, and a PROCESS monitor, on `srv`.
struct Setup<'a> {
    srv: &'a Server,
    dir: tempfile::TempDir,
    app1: String,
    app2: String,
    mon: String,
    schema: String,
    pw: String,
}

impl<'a> Setup<'a> {
    fn on(srv: &'a Server) -> Setup<'a> {
        let (app1, app2, mon) = (unique("app"), unique("app"), unique("mon"));
        let schema = unique("db");
        let pw = "Pw-5x".to_string();
        srv.create_app_user(&app1, &pw, &schema);
        srv.create_app_user(&app2, &pw, &schema);
        srv.create_monitor_user(&mon, &pw);
        Setup {
            srv,
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

    /// An ini with instance `x`; `commkill` is the [db_commkill] body.
    fn ini(&self, commkill: &str, settings: &str) -> PathBuf {
        let text = format!(
            "[settings]\nsnapshot_dir={snap}\n{settings}\n\n[db_info]\nx=127.0.0.1:{port}\n\n\
             [db_auth]\n{a1}={pw}\n{a2}={pw}\n{m}={pw}\n\n\
             [db_commconfig]\ndb_puser={m}\nrun_max_count=999\ndry_run=0\n\n\
             [db_commkill]\n{commkill}\n",
            port = self.srv.port(),
            snap = self.snapshots().display(),
            a1 = self.app1,
            a2 = self.app2,
            m = self.mon,
            pw = self.pw,
        );
        write_ini(self.dir.path(), &text)
    }

    fn conn(&self, user: &str) -> Conn {
        self.srv.connect(user, &self.pw).unwrap()
    }

    fn query(&self, user: &str, sql: &str) -> BgQuery {
        self.srv.spawn_query(user, &self.pw, sql)
    }

    /// The text of every snapshot file written so far.
    fn snapshot_texts(&self) -> Vec<String> {
        let dir = self.snapshots().join("x");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

fn kill(ini: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["kill", "-c", ini.to_str().unwrap(), "--db", "x"];
    args.extend_from_slice(extra);
    let out: Output = run_with_timeout(mysqk_bin().args(&args), Duration::from_secs(90));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "panic:\n{text}");
    (out.status.code().unwrap_or(-1), text)
}

fn conn_id(c: &mut Conn) -> u64 {
    c.query_first("SELECT CONNECTION_ID()").unwrap().unwrap()
}

/// (command, time, state) of thread `id`, from the table mysqk reads: on
/// MySQL performance_schema, where a killed connection that rolls back stays
/// (information_schema drops it at once).
fn state(s: &Server, id: u64) -> Option<(String, u64, Option<String>)> {
    let table = if s.is_mysql() {
        "performance_schema.processlist"
    } else {
        "information_schema.PROCESSLIST"
    };
    s.query::<(String, u64, Option<String>)>(&format!(
        "SELECT COMMAND, IFNULL(TIME, 0), STATE FROM {table} WHERE ID = {id}"
    ))
    .into_iter()
    .next()
}

/// Killed and not gone yet: MariaDB shows `Command=Killed`; MySQL shows the
/// connection as `Sleep` while InnoDB rolls its transaction back.
fn being_killed(s: &Server, id: u64, command: &str) -> bool {
    if s.is_mysql() {
        !s.query::<String>(&format!(
            "SELECT trx_state FROM information_schema.INNODB_TRX \
             WHERE trx_mysql_thread_id = {id} AND trx_state = 'ROLLING BACK'"
        ))
        .is_empty()
    } else {
        command == "Killed"
    }
}

/// Waits until thread `id` has been in `wanted` state for at least `secs`.
fn wait_state(s: &Server, id: u64, wanted: &str, secs: u64) {
    wait_until(
        Duration::from_secs(secs + 30),
        &format!("thread {id} in `{wanted}` for {secs} s"),
        || matches!(state(s, id), Some((_, t, Some(st))) if st == wanted && t >= s.time_at_least(secs)),
    );
}

#[test]
fn lock_blocker_idle_in_transaction_is_killed_not_the_waiter() {
    let s = server();
    let t = Setup::on(s);
    let table = format!("`{}`.t", t.schema);
    s.exec(&format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; INSERT INTO {table} VALUES (1, 0)"
    ));
    // app1 updates the row and stays idle with the transaction open (Sleep).
    let mut blocker = t.conn(&t.app1);
    let blocker_id = conn_id(&mut blocker);
    blocker.query_drop("BEGIN").unwrap();
    blocker
        .query_drop(format!("UPDATE {table} SET v = 1 WHERE id = 1"))
        .unwrap();
    let waiter = t.query(&t.app2, &format!("UPDATE {table} SET v = 2 WHERE id = 1"));
    // The row-lock wait must be older than k_lock=2 (whole seconds).
    s.wait_query_time(waiter.conn_id, 3);
    let users = format!("k_user={},{}\nk_longtime=100", t.app1, t.app2);

    let (code, out) = kill(&t.ini(&format!("{users}\nk_lock=0"), ""), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 matched"), "k_lock=0 kills nobody:\n{out}");
    assert!(
        s.thread_exists(blocker_id) && !waiter.is_finished(),
        "{out}"
    );

    let (code, out) = kill(&t.ini(&format!("{users}\nk_lock=2"), ""), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 matched"), "{out}");
    assert!(
        out.contains(&format!("blocks thread {}", waiter.conn_id)),
        "the reason names the waiter:\n{out}"
    );
    assert!(
        out.contains(&format!("thread {blocker_id} ({}): gone", t.app1)),
        "the kill is verified:\n{out}"
    );
    // The waiter was not killed: its update goes through.
    waiter
        .join_within(Duration::from_secs(20))
        .expect("app2's update completes once the blocker is gone");
    assert!(!s.thread_exists(blocker_id));
    let v: Vec<u32> = s.query(&format!("SELECT v FROM {table} WHERE id = 1"));
    assert_eq!(v, vec![2], "app1's change rolled back, app2's applied");
}

#[test]
fn query_mode_stops_the_statement_and_keeps_the_connection() {
    let s = server();
    let t = Setup::on(s);
    let ini = t.ini(
        &format!("k_user={}\nk_longtime=1\nk_mode=query", t.app1),
        "",
    );
    let q = t.query(&t.app1, "SELECT SLEEP(60)");
    let id = q.conn_id;
    s.wait_query_time(id, 1);
    let started = Instant::now();
    let (code, out) = kill(&ini, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("kill query"), "{out}");
    assert!(
        out.contains(&format!(
            "thread {id} ({}): stopped: statement ended after kill query; connection kept",
            t.app1
        )),
        "{out}"
    );
    let (mut conn, result) = q.join_conn();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "SLEEP(60) ended early"
    );
    // An interrupted SLEEP() returns 1, or the statement fails with 1317.
    if let Err(e) = result {
        assert!(
            matches!(&e, mysql::Error::MySqlError(me) if me.code == 1317),
            "only the statement was interrupted: {e}"
        );
    }
    let one: Option<u32> = conn
        .query_first("SELECT 1")
        .expect("connection still usable");
    assert_eq!(one, Some(1));
    assert_eq!(conn_id(&mut conn), id, "same connection");

    // A Sleep thread has no statement: always killed as a connection.
    let ini = t.ini(
        &format!("k_user={}\nk_longtime=0\nk_sleep=1\nk_mode=query", t.app1),
        "",
    );
    wait_until(
        Duration::from_secs(30),
        "the connection to idle",
        || matches!(state(s, id), Some((c, t, _)) if c == "Sleep" && t >= s.time_at_least(1)),
    );
    let (code, out) = kill(&ini, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("kill connection"), "{out}");
    assert!(
        out.contains(&format!("thread {id} ({}): gone", t.app1)),
        "{out}"
    );
}

/// A statement that ignores `KILL QUERY`: a procedure whose handler swallows
/// the interruption and loops on. The verify step sees the same statement
/// still running after the grace time and escalates to `KILL CONNECTION`, once.
#[test]
fn kill_query_ignored_is_escalated_to_kill_connection_once() {
    let s = server();
    let t = Setup::on(s);
    let proc_name = format!("`{}`.stubborn", t.schema);
    s.exec(&format!(
        // INVOKER: a DEFINER routine shows its definer as the thread's user.
        "CREATE PROCEDURE {proc_name}() SQL SECURITY INVOKER BEGIN \
         DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END; \
         LOOP DO SLEEP(1); END LOOP; END"
    ));
    let q = t.query(&t.app1, &format!("CALL {proc_name}()"));
    let id = q.conn_id;
    s.wait_query_time(id, 1);
    let ini = t.ini(
        &format!("k_user={}\nk_longtime=1\nk_mode=query", t.app1),
        "",
    );
    let (code, out) = kill(&ini, &["--verify-secs", "10"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("kill query"), "{out}");
    let mine: Vec<&str> = out
        .lines()
        // Each line starts with its timestamp.
        .filter(|l| l.contains(&format!(" x: thread {id} (")))
        .collect();
    assert_eq!(mine.len(), 2, "escalated, then gone:\n{out}");
    assert!(
        mine[0].contains(&format!(
            "escalated: same statement still running after kill query: kill connection sent (as {})",
            t.app1
        )),
        "{out}"
    );
    assert!(
        mine[1].contains("gone") && mine[1].contains("after the escalated kill connection"),
        "{out}"
    );
    assert!(
        support::is_killed_error(&q.join_within(Duration::from_secs(10)).unwrap_err()),
        "{out}"
    );
    // The snapshot's follow-ups carry the escalation too.
    let snaps = t.snapshot_texts();
    assert!(
        snaps
            .last()
            .is_some_and(|s| s.contains(&format!("thread {id} ({}): escalated", t.app1))),
        "{snaps:?}"
    );
}

/// Runs `mysqk watch` on `ini` until dropped.
fn watch(ini: &Path, log: &Path) -> ChildGuard {
    let mut cmd = mysqk_bin();
    cmd.args(["watch", "-c", ini.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log.with_extension("stderr")).unwrap());
    ChildGuard::spawn(&mut cmd)
}

/// A large transaction killed while open rolls back for seconds, shown as
/// `Command=Killed`. `watch` (one pass a second) must kill it once, never
/// again while it rolls back, and report it once as stuck with the rollback
/// size. Runs under `watch` (not the one-shot verify window) because "not
/// re-killed on each pass" is about passes.
#[test]
fn stuck_in_killed_is_reported_once_and_never_killed_again() {
    // Its own server: the big transaction's IO must not slow the other tests.
    let srv = Server::start(ServerOpts::default());
    let s = &srv;
    let t = Setup::on(s);
    let table = format!("`{}`.big", t.schema);
    // Secondary indexes make the rollback slow: every index entry is undone,
    // and 400k rows outgrow the 32 MB buffer pool, so undoing them waits on IO
    // (measured: several seconds; 250k rows roll back in about one).
    s.exec(&format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY AUTO_INCREMENT, a INT, b CHAR(32), \
         KEY (a), KEY (b)) ENGINE=InnoDB"
    ));
    // The recursion limit's name differs between the flavours, and MySQL
    // 9 has no MD5().
    let (limit, hash) = if s.is_mysql() {
        ("cte_max_recursion_depth", "LEFT(SHA2(n, 256), 32)")
    } else {
        ("max_recursive_iterations", "MD5(n)")
    };
    let q = t.query(
        &t.app1,
        &format!(
            "SET SESSION {limit} = 1000000; BEGIN; \
             INSERT INTO {table} (a, b) WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL \
             SELECT n + 1 FROM s WHERE n < 400000) SELECT n, {hash} FROM s; \
             SELECT SLEEP(300) /* stuck-me */"
        ),
    );
    let id = q.conn_id;
    wait_until(Duration::from_secs(120), "the insert to finish", || {
        s.query::<Option<String>>(&format!(
            "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = {id}"
        ))
        .first()
        .is_some_and(|i| i.as_deref().is_some_and(|i| i.contains("stuck-me")))
    });
    let log = t.dir.path().join("mysqk.log");
    let ini = t.ini(
        &format!(
            "k_user={}\nk_longtime=0\nk_include=stuck-me\nk_killed_report=1",
            t.app1
        ),
        &format!("check_interval=1\nlog_file={}", log.display()),
    );
    let mut w = watch(&ini, &log);
    // Observe it in Killed, then gone; meanwhile watch keeps passing.
    let mut killed_since: Option<Instant> = None;
    wait_until(
        Duration::from_secs(120),
        "the killed thread to end",
        || match state(s, id) {
            // On MySQL the client's statement has also ended by then (its
            // connection is closed while the server still rolls back).
            Some((c, _, _)) if being_killed(s, id, &c) || (s.is_mysql() && q.is_finished()) => {
                killed_since.get_or_insert_with(Instant::now);
                false
            }
            Some(_) => false,
            None => true,
        },
    );
    let in_killed = killed_since.map(|k| k.elapsed()).unwrap_or_default();
    assert!(
        in_killed >= Duration::from_secs(2),
        "the rollback must outlast a few passes to test anything (was {in_killed:?}); \
         make the transaction bigger"
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        Duration::from_secs(20),
        "watch to log the thread gone",
        || read_log().contains(&format!("thread {id} user={} gone", t.app1)),
    );
    w.signal(libc::SIGTERM);
    assert!(w.wait_timeout(Duration::from_secs(20)).is_some());
    let text = read_log();
    let kills = text
        .lines()
        .filter(|l| l.contains(&format!("thread {id} user=")) && l.contains("action="))
        .count();
    assert_eq!(kills, 1, "killed once, never again while Killed:\n{text}");
    // MariaDB shows the thread as Killed; MySQL as Sleep while it rolls back
    // (its transaction may still read RUNNING when the report is due).
    let (marker, trx_state) = if s.is_mysql() {
        ("still shown as Sleep", "transaction")
    } else {
        ("stuck in Killed", "ROLLING BACK")
    };
    let stuck: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("thread {id} user=")) && l.contains(marker))
        .collect();
    assert_eq!(stuck.len(), 1, "reported once:\n{text}");
    // MySQL: the rolling-back transaction is not always listed under the
    // killed thread's id in INNODB_TRX by the time of the report (seen
    // under load); the report then says so rather than guess.
    let no_trx = s.is_mysql() && stuck[0].contains("no InnoDB transaction");
    assert!(
        no_trx || (stuck[0].contains(trx_state) && stuck[0].contains(" rows modified")),
        "with the rollback size: {}",
        stuck[0]
    );
    // The report is also an event: in a snapshot file (follow-ups section).
    let snaps = t.snapshot_texts();
    let with_stuck = snaps.iter().filter(|s| s.contains(marker)).count();
    assert_eq!(with_stuck, 1, "one event for the stuck report");
    // (A multi-statement's later error may be swallowed by the driver: ask
    // the connection itself.)
    let (mut conn, _) = q.join_conn();
    assert!(
        conn.query_drop("SELECT 1").is_err(),
        "app1's connection was killed"
    );
    let n: Vec<u64> = s.query(&format!("SELECT COUNT(*) FROM {table}"));
    assert_eq!(n, vec![0], "rolled back");
}

#[test]
fn rds_kill_procedures_are_called_instead_of_kill() {
    let s = server();
    let t = Setup::on(s);
    let calls = format!("`{}`.rds_calls", t.schema);
    // What a cloud server offers instead of KILL: definer-rights procedures
    // that kill for the caller (here they also record who called them).
    s.exec(&format!(
        "CREATE TABLE {calls} (thread BIGINT, kind VARCHAR(16), caller VARCHAR(200)) ENGINE=InnoDB"
    ));
    for (name, kind, stmt) in [
        ("rds_kill", "connection", "KILL CONNECTION thread"),
        ("rds_kill_query", "query", "KILL QUERY thread"),
    ] {
        // MySQL has no CREATE OR REPLACE PROCEDURE.
        s.exec(&format!("DROP PROCEDURE IF EXISTS mysql.{name}"));
        s.exec(&format!(
            "CREATE DEFINER = 'tadmin'@'%' PROCEDURE mysql.{name}(IN thread BIGINT) \
             SQL SECURITY DEFINER \
             BEGIN INSERT INTO {calls} VALUES (thread, '{kind}', USER()); {stmt}; END"
        ));
        s.exec(&format!(
            "GRANT EXECUTE ON PROCEDURE mysql.{name} TO '{}'@'%'",
            t.app1
        ));
    }
    let recorded = |id: u64| -> Vec<(String, String)> {
        s.query(&format!(
            "SELECT kind, caller FROM {calls} WHERE thread = {id}"
        ))
    };

    // Query mode: rds_kill_query, the connection survives.
    let q = t.query(&t.app1, "SELECT SLEEP(60) /* rds-q */");
    s.wait_query_time(q.conn_id, 1);
    let ini = t.ini(
        &format!(
            "k_user={}\nk_longtime=1\nk_kill_cmd=rds\nk_mode=query",
            t.app1
        ),
        "",
    );
    let (code, out) = kill(&ini, &[]);
    assert_eq!(code, 0, "{out}");
    let rec = recorded(q.conn_id);
    assert_eq!(rec.len(), 1, "{out}");
    assert_eq!(rec[0].0, "query");
    assert!(rec[0].1.starts_with(&format!("{}@", t.app1)), "{rec:?}");
    let (mut conn, _) = q.join_conn();
    assert_eq!(conn.query_first::<u32, _>("SELECT 1").unwrap(), Some(1));

    // The same from the flags that stand for k_kill_cmd and k_mode.
    let q = t.query(&t.app1, "SELECT SLEEP(60) /* rds-flags */");
    s.wait_query_time(q.conn_id, 1);
    let ini = t.ini(&format!("k_user={}\nk_longtime=1", t.app1), "");
    let (code, out) = kill(&ini, &["--kill-cmd", "rds", "--mode", "query"]);
    assert_eq!(code, 0, "{out}");
    let rec = recorded(q.conn_id);
    assert_eq!(rec.len(), 1, "{out}");
    assert_eq!(rec[0].0, "query", "{out}");
    let (mut conn, _) = q.join_conn();
    assert_eq!(conn.query_first::<u32, _>("SELECT 1").unwrap(), Some(1));

    // Connection mode: rds_kill.
    let q = t.query(&t.app1, "SELECT SLEEP(60) /* rds-c */");
    s.wait_query_time(q.conn_id, 1);
    let ini = t.ini(
        &format!("k_user={},{}\nk_longtime=1\nk_kill_cmd=rds", t.app1, t.app2),
        "",
    );
    // app2 has no EXECUTE and nobody may kill others: the refusal is reported.
    let q2 = t.query(&t.app2, "SELECT SLEEP(60) /* rds-denied */");
    s.wait_query_time(q2.conn_id, 1);
    let (_, out) = kill(&ini, &[]);
    assert_eq!(recorded(q.conn_id)[0].0, "connection", "{out}");
    assert!(
        support::is_killed_error(&q.join_within(Duration::from_secs(10)).unwrap_err()),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "no session can kill thread {} of user {}",
            q2.conn_id, t.app2
        )) && out.contains("execute command denied"),
        "{out}"
    );
    assert!(s.thread_exists(q2.conn_id));
    s.kill_thread(q2.conn_id);
    let plain_kills: Vec<u64> = s.query(&format!(
        "SELECT COUNT(*) FROM {calls} WHERE caller NOT LIKE '{}@%'",
        t.app1
    ));
    assert_eq!(plain_kills, vec![0]);
}

/// Metadata-lock blockers: an `ALTER TABLE` waits for a transaction that read
/// the table and stays open; a `SELECT` queues behind the `ALTER`. The root
/// blocker (the open transaction) is killed, not the `ALTER` or the `SELECT`.
/// Checked with each source the server may offer: performance_schema (on
/// both), MariaDB's METADATA_LOCK_INFO plugin, and neither (then no kill; on
/// MySQL: the MDL instrument turned off).
#[test]
fn metadata_lock_blocker_killed_with_k_lock_from_each_source() {
    let mut extra_args = vec![
        "--performance-schema=ON".to_string(),
        "--performance-schema-instrument=wait/lock/metadata/sql/mdl=ON".into(),
    ];
    if !support::is_mysql() {
        extra_args.push("--plugin-load-add=metadata_lock_info".into());
    }
    let srv = Server::start(ServerOpts {
        extra_args,
        ..ServerOpts::default()
    });
    let t = Setup::on(&srv);
    srv.exec(&format!(
        "GRANT SELECT ON performance_schema.* TO '{}'@'%'",
        t.mon
    ));
    let table = format!("`{}`.m", t.schema);
    srv.exec(&format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO {table} VALUES (1)"
    ));
    let rules = format!("k_user={},{}\nk_longtime=100\nk_lock=2", t.app1, t.app2);
    let phases: &[(&str, bool)] = if srv.is_mysql() {
        &[("performance_schema.metadata_locks", true), ("none", false)]
    } else {
        &[
            ("performance_schema.metadata_locks", true),
            ("information_schema.METADATA_LOCK_INFO", true),
            ("none", false),
        ]
    };
    let instrument_off = "UPDATE performance_schema.setup_instruments SET ENABLED = 'NO' \
                          WHERE NAME = 'wait/lock/metadata/sql/mdl'";
    for (n, &(source, killed)) in phases.iter().enumerate() {
        match source {
            "information_schema.METADATA_LOCK_INFO" => srv.exec(instrument_off),
            "none" if srv.is_mysql() => srv.exec(instrument_off),
            "none" => srv.exec("UNINSTALL SONAME 'metadata_lock_info'"),
            _ => {}
        }
        let mut holder = t.conn(&t.app1);
        let holder_id = conn_id(&mut holder);
        holder.query_drop("BEGIN").unwrap();
        let _: Vec<u32> = holder.query(format!("SELECT id FROM {table}")).unwrap();
        let alter = t.query(&t.app2, &format!("ALTER TABLE {table} ADD COLUMN c{n} INT"));
        wait_state(&srv, alter.conn_id, "Waiting for table metadata lock", 3);
        let reader = t.query(&t.app2, &format!("SELECT * FROM {table}"));
        wait_state(&srv, reader.conn_id, "Waiting for table metadata lock", 0);
        let (alter_id, reader_id) = (alter.conn_id, reader.conn_id);

        let before = t.snapshot_texts().len();
        let (code, out) = kill(&t.ini(&rules, ""), &[]);
        assert_eq!(code, 0, "{source}: {out}");
        if killed {
            assert!(out.contains("1 matched"), "{source}: {out}");
            assert!(
                out.contains(&format!("thread {holder_id} ({}): gone", t.app1)),
                "{source}: the open transaction is the victim:\n{out}"
            );
            alter
                .join_within(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("{source}: the ALTER completes: {e}"));
            reader
                .join_within(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("{source}: the SELECT completes: {e}"));
            let snaps = t.snapshot_texts();
            assert_eq!(snaps.len(), before + 1, "{source}");
            let snap = snaps.last().unwrap();
            assert!(
                snap.contains(&format!("source: {source}")),
                "{source}: {snap}"
            );
            // Both the ALTER and the SELECT queued behind it name the root blocker.
            // (The "who waits for whom" table, framed as server text.)
            for waiter in [alter_id, reader_id] {
                let named = snap.lines().map(|l| l.trim_start_matches("  | ")).any(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    let at = |id: u64| words.iter().position(|w| *w == id.to_string());
                    l.starts_with("metadata ")
                        && matches!((at(waiter), at(holder_id)), (Some(w), Some(h)) if w < h)
                });
                assert!(
                    named,
                    "{source}: wait of {waiter} reported with its blocker:\n{snap}"
                );
            }
        } else {
            assert!(out.contains("0 matched"), "{source}: {out}");
            assert!(srv.thread_exists(holder_id));
            holder.query_drop("COMMIT").unwrap();
            alter.join_within(Duration::from_secs(20)).unwrap();
            reader.join_within(Duration::from_secs(20)).unwrap();
        }
    }
}
