//! Exactly the right thread (issue 12) on a real server: a victim that
//! changed between the scan and the KILL is left alone; pooled churn
//! (statements that end right at the limit, idle connections that wake
//! right at it) gets no wrong kills; a KILL that does not return stops
//! neither the instance loop nor the other victims.

mod support;
mod watch_harness;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::Conn;

use support::{is_killed_error, mysqk_bin, run_with_timeout, server, wait_until, Server};
use watch_harness::{Setup, User, Watch};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A small deterministic PRNG (xorshift64*): each client draws its own
/// statement lengths and pauses, reproducibly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        lo + (hi - lo) * (x as f64 / (1u64 << 53) as f64)
    }
}

/// The thread's command and the identity of its statement: MariaDB's
/// `QUERY_ID`; MySQL's `EVENT_ID` of the running statement (0 when idle).
fn query_id(srv: &Server, id: u64) -> Option<(String, u64)> {
    let sql = if srv.is_mysql() {
        format!(
            "SELECT p.COMMAND, IFNULL((SELECT MIN(e.EVENT_ID) FROM performance_schema.threads t \
             JOIN performance_schema.events_statements_current e ON e.THREAD_ID = t.THREAD_ID \
             WHERE t.PROCESSLIST_ID = p.ID AND e.END_EVENT_ID IS NULL), 0) \
             FROM performance_schema.processlist p WHERE p.ID = {id}"
        )
    } else {
        format!("SELECT COMMAND, QUERY_ID FROM information_schema.PROCESSLIST WHERE ID = {id}")
    };
    srv.query::<(String, u64)>(&sql).into_iter().next()
}

/// A pooled connection running `SELECT SLEEP(30)` twice in a row; the
/// second starts when the test replaces the first.
struct Pooled {
    id: u64,
    go_next: std::sync::mpsc::Sender<()>,
    runner: thread::JoinHandle<()>,
}

impl Pooled {
    fn start(s: &Server, user: &User) -> Pooled {
        let mut conn = s.connect(&user.name, &user.pw).unwrap();
        let id = u64::from(conn.connection_id());
        let (go_next, next_rx) = std::sync::mpsc::channel::<()>();
        let runner = thread::spawn(move || {
            let _ = conn.query_drop("SELECT SLEEP(30)");
            let _ = next_rx.recv();
            let _ = conn.query_drop("SELECT SLEEP(30)");
        });
        Pooled {
            id,
            go_next,
            runner,
        }
    }

    /// Ends the first statement and waits for the second: the id of the
    /// statement now running.
    fn replace(&self, s: &Server) -> u64 {
        let id = self.id;
        let (_, old_qid) = query_id(s, id).expect("statement victim row");
        s.exec(&format!("KILL QUERY {id}"));
        self.go_next.send(()).unwrap();
        wait_until(
            SECS(10),
            "the next statement to start",
            || matches!(query_id(s, id), Some((c, q)) if c == "Query" && q != old_qid),
        );
        query_id(s, id).unwrap().1
    }

    fn finish(self, s: &Server) {
        s.kill_thread(self.id);
        // (An interrupted SLEEP() may return 1 rather than an error: only
        // the processlist tells who ended what.)
        self.runner.join().unwrap();
    }
}

/// `mysqk kill -c ini --db x` with the debug-build test hook `var`, which
/// holds it at one point of its pass until the test says go.
struct HeldKill {
    dir: tempfile::TempDir,
    run: thread::JoinHandle<std::process::Output>,
}

impl HeldKill {
    /// Starts it and waits until it holds: the thread ids it holds for.
    fn start(ini: &std::path::Path, var: &str, what: &str) -> (HeldKill, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = mysqk_bin();
        cmd.args(["kill", "--db", "x", "-c"])
            .arg(ini)
            .env(var, dir.path());
        let run = thread::spawn(move || run_with_timeout(&mut cmd, SECS(60)));
        let held = dir.path().join("held");
        wait_until(SECS(20), what, || held.exists());
        let ids = std::fs::read_to_string(&held).unwrap();
        (HeldKill { dir, run }, ids)
    }

    /// Lets it go on; its stdout and stderr once it has exited 0.
    fn go(self) -> (String, String) {
        std::fs::write(self.dir.path().join("go"), "").unwrap();
        let out = self.run.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        (stdout, stderr)
    }
}

/// A statement victim whose statement is replaced by another (same text, same
/// connection) and an idle victim that woke up, both between the decision and
/// the re-check (held there by the debug-build test hook): neither is killed,
/// both are reported `changed before kill`, and the run still exits 0.
#[test]
fn a_victim_that_changed_between_scan_and_kill_is_left_alone() {
    let s = server();
    let t = Setup::new(&[s]);
    let ini = t.kill_ini(
        s.addr(),
        &format!("k_user={}\nk_longtime=2\nk_sleep=3", t.app1.name),
    );

    // The statement victim: the test lets its second statement start once
    // mysqk has decided.
    let stmt = Pooled::start(s, &t.app1);
    let stmt_id = stmt.id;
    // The idle victim: asleep for 3 s and more when the pass decides.
    let mut idle = s.connect(&t.app1.name, &t.app1.pw).unwrap();
    let idle_id = u64::from(idle.connection_id());
    s.wait_query_time(stmt_id, 3);
    wait_until(
        SECS(10),
        "the idle connection to sleep 3 s",
        || matches!(s.thread(idle_id), Some((_, _, c, t, _)) if c == "Sleep" && t >= 3),
    );

    let (kill, ids) = HeldKill::start(
        &ini,
        "MYSQK_TEST_HOLD_BEFORE_RECHECK",
        "mysqk to decide and hold",
    );
    assert!(
        ids.split(',').any(|i| i == stmt_id.to_string())
            && ids.split(',').any(|i| i == idle_id.to_string()),
        "both chosen: {ids}"
    );

    // Between the decision and the re-check: the statement is replaced by
    // the next one on the same connection, the idle connection wakes up.
    let new_qid = stmt.replace(s);
    idle.query_drop("SELECT 1").unwrap();
    let (stdout, stderr) = kill.go();
    assert!(
        stdout.contains("2 changed before kill") && stdout.contains("0 killed"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout.matches("changed before kill:").count(),
        2,
        "each victim says what changed:\n{stdout}"
    );
    // Left alone: the second statement still runs, the idle connection works.
    assert_eq!(
        query_id(s, stmt_id),
        Some(("Query".into(), new_qid)),
        "{stdout}"
    );
    idle.query_drop("SELECT 1")
        .expect("the woken connection was not killed");
    stmt.finish(s);
}

/// The server-side guard, end to end on each flavour: the victim's
/// statement is replaced by its connection's next one after the re-check
/// passed and before the KILL (held there by the debug-build test hook).
/// The guard reads the thread again inside the server, finds another
/// statement, and does not kill it: `changed before kill`, and the second
/// statement runs on.
#[test]
fn a_statement_replaced_after_the_recheck_is_left_alone_by_the_guard() {
    let s = server();
    let t = Setup::new(&[s]);
    let ini = t.kill_ini(
        s.addr(),
        &format!("k_user={}\nk_longtime=2\nk_sleep=0", t.app1.name),
    );
    let stmt = Pooled::start(s, &t.app1);
    let id = stmt.id;
    // Past the limit on either flavour's clock (MySQL's TIME may read 1 s high).
    s.wait_query_time(id, 3);

    let (kill, ids) = HeldKill::start(
        &ini,
        "MYSQK_TEST_HOLD_BEFORE_KILL",
        "mysqk to re-check and hold before its KILL",
    );
    assert_eq!(ids, id.to_string());
    let new_qid = stmt.replace(s);
    let (stdout, stderr) = kill.go();
    assert!(
        stdout.contains("changed at the last moment") && stdout.contains("0 killed"),
        "the guard must have refused the KILL:\n{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("guarded KILL refused"), "{stderr}");
    assert_eq!(
        query_id(s, id),
        Some(("Query".into(), new_qid)),
        "the next statement runs on:\n{stdout}"
    );
    stmt.finish(s);
}

/// What the churn clients counted.
#[derive(Default, Debug)]
struct Tally {
    /// Statements (or idle spells) that reached the limit: legitimate victims.
    targets: u64,
    kills: u64,
    /// Kills that hit what was not a victim: a statement younger than the
    /// limit, a transaction in progress.
    wrong: u64,
}

fn connect_retry(s: &Server, u: &User, stop: &AtomicBool) -> Option<Conn> {
    while !stop.load(Ordering::SeqCst) {
        if let Ok(c) = s.connect(&u.name, &u.pw) {
            return Some(c);
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

fn watch_for(t: &Setup, commkill: &str) -> Watch {
    t.write(&t.ini_text(
        "",
        &[("x", server().addr())],
        "run_max_count=999\ndry_run=0",
        commkill,
        "",
    ));
    let mut w = Watch::start(t);
    w.wait_connected(&["x"], &[&t.app1, &t.mon]);
    w
}

/// Lets the churn `clients` run for `how_long` under `w` (which must keep
/// running), then stops them and waits for each.
fn churn_for(
    w: &mut Watch,
    how_long: Duration,
    stop: &AtomicBool,
    clients: Vec<thread::JoinHandle<()>>,
) {
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        w.assert_running();
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
}

/// Per 100 targets, for the failure message.
fn per_100(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 * 100.0 / of as f64
    }
}

/// ~30 pooled connections run `SELECT SLEEP(1.9..2.1)` back to back under
/// `watch` with `k_longtime=2`, `check_interval=1` and connection kills: many
/// statements end just as they cross the limit, and the next one starts on
/// the same thread id at once. A kill is wrong when the statement it ended
/// had run for less than 2 s by the client's own clock (which starts before
/// the server's). Issue 12 measured 3.5 to 9 in 100 without the re-check.
#[test]
fn pooled_statement_churn_gets_no_wrong_kills() {
    let s = server();
    let t = Setup::new(&[s]);
    let mut w = watch_for(&t, &format!("k_user={}\nk_longtime=2", t.app1.name));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients: Vec<_> = (0..30)
        .map(|n| {
            let (stop, tally) = (stop.clone(), tally.clone());
            let user = User {
                name: t.app1.name.clone(),
                pw: t.app1.pw.clone(),
            };
            thread::spawn(move || {
                let s = server();
                let mut rng = Rng::new(n + 1);
                let mut conn = connect_retry(s, &user, &stop);
                while let Some(c) = conn.as_mut() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let secs = rng.range(1.9, 2.1);
                    let started = Instant::now();
                    let r = c.query_drop(format!("SELECT SLEEP({secs:.3})"));
                    let ran = started.elapsed();
                    let mut t = tally.lock().unwrap();
                    if secs >= 2.0 {
                        t.targets += 1;
                    }
                    match r {
                        Ok(()) => {}
                        Err(e) if is_killed_error(&e) => {
                            t.kills += 1;
                            if ran < Duration::from_secs(2) {
                                t.wrong += 1;
                                eprintln!("wrong kill: SLEEP({secs:.3}) ended after {ran:?}: {e}");
                            }
                            drop(t);
                            conn = connect_retry(s, &user, &stop);
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            })
        })
        .collect();
    // Long enough for ~300 statements, about half of them targets.
    churn_for(&mut w, SECS(20), &stop, clients);
    let t = tally.lock().unwrap();
    let log = w.log_text();
    assert!(
        !log.contains("guarded KILL refused"),
        "every KILL must go out with its server-side guard:\n{log}"
    );
    assert!(
        t.targets >= 100 && t.kills >= 10,
        "the churn must have run and been killed at: {t:?}\n{log}"
    );
    assert!(
        // A connection kill that lands in the chosen statement's last
        // microseconds closes the connection after its answer: the pool's
        // next statement fails. No check can close that race (README,
        // "Re-check, then kill": about 1 in 80 kills); stale kills (after
        // the statement ended) are what the re-check and guard remove, and
        // they were 3.5 to 9 in 100.
        t.wrong * 100 <= t.kills * 2,
        "{} wrong kills in {} kills ({:.2} per 100 targets): {t:?}\n{log}",
        t.wrong,
        t.kills,
        per_100(t.wrong, t.targets)
    );
    eprintln!(
        "statement churn: {t:?}, wrong per 100 targets {:.2}",
        per_100(t.wrong, t.targets)
    );
}

/// 40 idle connections wake every 2.5 to 3.5 s (MySQL: 3.5 to 4.5 s) for a
/// short transaction (BEGIN, UPDATE, COMMIT) under `watch` with `k_sleep=3`:
/// many wake just as they cross the limit. A kill is wrong when it lands
/// after BEGIN was accepted (the client sees its UPDATE or COMMIT fail, the
/// transaction is rolled back), or ends an idle spell shorter than 3 s. Issue 12 measured 1 in 100 without the re-check.
#[test]
fn idle_pool_churn_kills_no_transaction() {
    let s = server();
    let t = Setup::new(&[s]);
    let mut w = watch_for(&t, &format!("k_user={}\nk_sleep=3", t.app1.name));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    // One row per client: the transactions never wait on each other.
    let table = format!("{}.churn", support::unique("churn"));
    let schema = table.split('.').next().unwrap().to_string();
    s.exec(&format!(
        "CREATE DATABASE {schema}; CREATE TABLE {table} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; \
         GRANT ALL ON {schema}.* TO '{}'@'%'",
        t.app1.name
    ));
    let rows: Vec<String> = (0..40).map(|i| format!("({i}, 0)")).collect();
    s.exec(&format!("INSERT INTO {table} VALUES {}", rows.join(",")));
    let clients: Vec<_> = (0..40)
        .map(|n| {
            let (stop, tally) = (stop.clone(), tally.clone());
            let user = User {
                name: t.app1.name.clone(),
                pw: t.app1.pw.clone(),
            };
            let update = format!("UPDATE {table} SET v = v + 1 WHERE id = {n}");
            thread::spawn(move || {
                let s = server();
                let mut rng = Rng::new(100 + n);
                let fresh = |stop: &AtomicBool| connect_retry(s, &user, stop);
                // The idle spell as the client sees it, from before the login
                // or COMMIT that began it: never shorter than the server's.
                let mut spell_from = Instant::now();
                let mut conn = fresh(&stop);
                // MySQL's TIME is up to 1 s high, and mysqk errs late with it:
                // a sleeper is killed between k_sleep and k_sleep + 1 s there.
                let (lo, hi) = if s.is_mysql() { (3.5, 4.5) } else { (2.5, 3.5) };
                while let Some(c) = conn.as_mut() {
                    let pause = rng.range(lo, hi);
                    thread::sleep(Duration::from_secs_f64(pause));
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let mut t = tally.lock().unwrap();
                    if pause >= 3.0 {
                        t.targets += 1;
                    }
                    drop(t);
                    // An idle spell killed before BEGIN is a right kill; one
                    // that ends the transaction after BEGIN is a wrong one.
                    let spell = spell_from.elapsed();
                    let begun = c.query_drop("BEGIN");
                    let rest = begun.as_ref().ok().map(|_| {
                        c.query_drop(&update).and_then(|_| {
                            spell_from = Instant::now();
                            c.query_drop("COMMIT")
                        })
                    });
                    let mut t = tally.lock().unwrap();
                    match (begun, rest) {
                        (Ok(()), Some(Ok(()))) => continue,
                        (Err(e), _) if is_killed_error(&e) => {
                            t.kills += 1;
                            // Killed before its BEGIN: while idle, and before
                            // the spell reached k_sleep it was an early kill.
                            if spell < SECS(3) {
                                t.wrong += 1;
                                eprintln!("wrong kill: idle for only {spell:?}: {e}");
                            }
                        }
                        (Ok(()), Some(Err(e))) if is_killed_error(&e) => {
                            t.kills += 1;
                            t.wrong += 1;
                            eprintln!("wrong kill: transaction ended after BEGIN: {e}");
                        }
                        (Err(e), _) | (_, Some(Err(e))) => panic!("unexpected error: {e}"),
                        (Ok(()), None) => unreachable!(),
                    }
                    drop(t);
                    spell_from = Instant::now();
                    conn = fresh(&stop);
                }
            })
        })
        .collect();
    churn_for(&mut w, SECS(20), &stop, clients);
    let t = tally.lock().unwrap();
    let log = w.log_text();
    assert!(
        !log.contains("guarded KILL refused"),
        "every KILL must go out with its server-side guard:\n{log}"
    );
    assert!(
        t.targets >= 80 && t.kills >= 10,
        "the churn must have run and been killed at: {t:?}\n{log}"
    );
    assert!(
        t.wrong <= 1,
        "{} wrong kills in {} kills ({:.2} per 100 targets): {t:?}\n{log}",
        t.wrong,
        t.kills,
        per_100(t.wrong, t.targets)
    );
    eprintln!(
        "idle churn: {t:?}, wrong per 100 targets {:.2}",
        per_100(t.wrong, t.targets)
    );
}

/// A TCP proxy in front of the server that holds back the first client
/// statement with a `KILL` in it for `delay`: a KILL that does not return, as
/// MariaDB's do when the victim is slow to leave its wait.
struct StallingProxy {
    port: u16,
    /// When the held KILL arrived (ms since `t0`), 0 while none.
    stalled_at_ms: Arc<AtomicU64>,
    t0: Instant,
}

impl StallingProxy {
    fn start(upstream: u16, delay: Duration) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(true));
        let stalled_at_ms = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let stalled = stalled_at_ms.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (armed, stalled) = (armed.clone(), stalled.clone());
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Both);
                });
                thread::spawn(move || {
                    // Client packets: 3-byte length, sequence id, payload;
                    // COM_QUERY is 0x03 followed by the SQL text.
                    loop {
                        let mut head = [0u8; 4];
                        if c_read.read_exact(&mut head).is_err() {
                            break;
                        }
                        let len = usize::from(head[0])
                            | usize::from(head[1]) << 8
                            | usize::from(head[2]) << 16;
                        let mut body = vec![0u8; len];
                        if c_read.read_exact(&mut body).is_err() {
                            break;
                        }
                        // mysqk's KILLs may be wrapped in a guard block.
                        let is_kill =
                            body.first() == Some(&3) && body.windows(5).any(|w| w == b"KILL ");
                        if is_kill && armed.swap(false, Ordering::SeqCst) {
                            let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(1);
                            stalled.store(ms.max(1), Ordering::SeqCst);
                            thread::sleep(delay);
                        }
                        if s_write.write_all(&head).is_err() || s_write.write_all(&body).is_err() {
                            break;
                        }
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        StallingProxy {
            port,
            stalled_at_ms,
            t0,
        }
    }

    fn stalled_at(&self) -> Option<Instant> {
        match self.stalled_at_ms.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(self.t0 + Duration::from_millis(ms)),
        }
    }
}

/// The first KILL is held back 5 s (a stalled KILL). The instance loop goes
/// on regardless: its next passes come on time (one interval), another
/// user's victim is killed while the first KILL is still out, and the first
/// victim is killed when its KILL goes through, its late answer reported.
#[test]
fn a_stalled_kill_holds_up_neither_the_loop_nor_other_victims() {
    let s = server();
    let t = Setup::new(&[s]);
    let proxy = StallingProxy::start(s.port(), SECS(5));
    // A read_timeout longer than the stall: the KILL is slow, not lost.
    t.write(&t.ini_text(
        "read_timeout=10",
        &[("x", format!("127.0.0.1:{}", proxy.port))],
        "run_max_count=999\ndry_run=0",
        &format!("k_user={},{}\nk_longtime=2", t.app1.name, t.app2.name),
        "",
    ));
    let mut w = Watch::start(&t);
    w.wait_connected(&["x"], &[&t.app1, &t.app2, &t.mon]);

    let first = t.query(s, &t.app1, "SELECT SLEEP(60)");
    wait_until(SECS(20), "the first KILL to be held", || {
        proxy.stalled_at().is_some()
    });
    let stalled = proxy.stalled_at().unwrap();
    let passes = |w: &Watch| w.inst("x")["passes"].as_u64().unwrap_or(0);
    let before = passes(&w);
    // The second victim starts now and crosses k_longtime 2 s later.
    let second = t.query(s, &t.app2, "SELECT SLEEP(60)");

    // Two more passes within 2.5 s: at most one interval (1 s) apart, plus
    // the bounded wait for KILL answers, while the first KILL is still out.
    w.wait_status(SECS(10), "two passes after the stall", |st| {
        st["instances"]["x"]["passes"].as_u64().unwrap_or(0) >= before + 2
    });
    let after = stalled.elapsed();
    assert!(
        after < Duration::from_millis(2500),
        "passes stalled: two more passes took {after:?}\n{}",
        w.log_text()
    );
    assert!(!first.is_finished(), "its KILL is still held back");

    // The other user's victim is killed while the first KILL is out.
    let id2 = second.conn_id;
    match second.join_within(SECS(10)) {
        Err(e) if is_killed_error(&e) => {}
        other => panic!(
            "thread {id2} should have been killed: {other:?}\n{}",
            w.log_text()
        ),
    }
    assert!(
        stalled.elapsed() < SECS(5) && !first.is_finished(),
        "the second kill went through before the held one ({:?})\n{}",
        stalled.elapsed(),
        w.log_text()
    );

    // The held KILL goes through; its answer is reported late, once.
    let id1 = first.conn_id;
    match first.join_within(SECS(15)) {
        Err(e) if is_killed_error(&e) => {}
        other => panic!(
            "thread {id1} should have been killed: {other:?}\n{}",
            w.log_text()
        ),
    }
    let line = format!("thread {id1} user={}", t.app1.name);
    w.wait_log(SECS(10), &format!("killed (as {})", t.app1.name));
    let log = w.log_text();
    assert!(
        !log.contains("guarded KILL refused"),
        "every KILL must go out with its server-side guard:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&line) && l.contains("no answer yet")),
        "the unanswered KILL is reported as such:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&line) && l.contains(&format!("killed (as {})", t.app1.name))),
        "and its answer when it came:\n{log}"
    );
    let st = w.terminate(SECS(10));
    assert!(st.success(), "{st}");
}
