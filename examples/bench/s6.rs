//! S6 wrong kills: pooled churn, where what a tool chose may have changed by
//! the time its KILL arrives (issue 12). Both tools take turns on the same
//! churn; everything is counted by the clients, each of which knows when its
//! statement (or idle spell) started and whether and when it saw a kill.
//! - W1: back-to-back `SELECT SLEEP(1.9..2.1)` on pooled connections (the
//!   next statement as soon as the previous one ends, a killed connection
//!   replaced at once); `k_longtime=2` vs `--busy-time 2`, both killing
//!   connections (both tools' default). A kill is wrong when the statement
//!   it ended had run less than 2 s by its client's clock: the next
//!   statement on the connection, or the connection's next work.
//! - W1q: the same with query kills (`k_mode=query` vs `--kill-query`); a
//!   killed statement's connection goes on with the next one.
//! - W2: pooled connections idle 2.5-3.5 s between short transactions
//!   (BEGIN; UPDATE its own row; COMMIT); `k_sleep=3` vs `--idle-time 3`
//!   (connection kills: an idle thread has no statement). A kill is wrong
//!   when it lands mid-transaction (after BEGIN, before COMMIT returned) or
//!   ends an idle spell younger than 3 s.
//!
//! The clients' clocks start before the server's (a statement is timed from
//! before it is sent, an idle spell from before the COMMIT or login that
//! began it was sent), so a kill the server would call right is never
//! counted wrong.

use crate::load::{count, wait_for, wait_quiet};
use crate::measure::Rng;
use crate::opts::Opts;
use crate::report::Row;
use crate::scenario::{progress, Ctx, Scenario, BOTH};
use crate::server::{APP1, MON, PTK, SCHEMA};
use crate::tool::{alternating, mysqk_watch, pt_kill, write_ini, Tool, Which};
use mysql::prelude::*;
use mysql::{Conn, OptsBuilder};
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const SCENARIO: Scenario = Scenario {
    id: "S6",
    needs_watch: true,
    servers: BOTH,
    run,
    method,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    /// W1: statement churn, connection kills.
    Statements,
    /// W1q: statement churn, query kills.
    StatementsQuery,
    /// W2: idle churn.
    Idle,
}

impl Workload {
    fn tag(self) -> &'static str {
        match self {
            Workload::Statements => "W1",
            Workload::StatementsQuery => "W1q",
            Workload::Idle => "W2",
        }
    }

    fn title(self, n: usize) -> String {
        match self {
            Workload::Statements => {
                format!(
                    "S6 W1 wrong kills: {n} pooled, back-to-back SLEEP(1.9..2.1), kill connection"
                )
            }
            Workload::StatementsQuery => {
                format!("S6 W1q wrong kills: {n} pooled, back-to-back SLEEP(1.9..2.1), kill query")
            }
            Workload::Idle => {
                format!("S6 W2 wrong kills: {n} pooled, idle 2.5-3.5 s between transactions")
            }
        }
    }

    fn commkill(self) -> String {
        match self {
            Workload::Statements => format!("k_user={}\nk_longtime=2\nk_sleep=0", APP1.0),
            Workload::StatementsQuery => {
                format!("k_user={}\nk_longtime=2\nk_sleep=0\nk_mode=query", APP1.0)
            }
            Workload::Idle => format!("k_user={}\nk_longtime=0\nk_sleep=3", APP1.0),
        }
    }

    fn pt_kill_args(self) -> &'static [&'static str] {
        match self {
            Workload::Statements => &["--match-command", "Query", "--busy-time", "2", "--kill"],
            Workload::StatementsQuery => &[
                "--match-command",
                "Query",
                "--busy-time",
                "2",
                "--kill-query",
            ],
            Workload::Idle => &["--match-command", "Sleep", "--idle-time", "3", "--kill"],
        }
    }
}

/// What the clients counted while one tool ran.
#[derive(Default, Clone, Debug)]
struct Churn {
    /// Statements that ran to 2 s / idle spells that reached 3 s: what a
    /// killer should kill (most end on their own before a tool's next look).
    targets: u64,
    kills: u64,
    /// Kills of a statement younger than 2 s (W1), of an idle spell younger
    /// than 3 s (W2).
    wrong_young: u64,
    /// W2: kills after BEGIN, before COMMIT returned.
    wrong_mid_trx: u64,
    /// Failures that are not kills (never counted as kills).
    errors: u64,
    /// The first wrong kills and errors, for the progress log.
    examples: Vec<String>,
}

impl Churn {
    fn wrong(&self) -> u64 {
        self.wrong_young + self.wrong_mid_trx
    }

    fn add(&mut self, o: &Churn) {
        self.targets += o.targets;
        self.kills += o.kills;
        self.wrong_young += o.wrong_young;
        self.wrong_mid_trx += o.wrong_mid_trx;
        self.errors += o.errors;
    }

    fn note(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(format!(
                "{} {what}",
                chrono::Local::now().format("%H:%M:%S%.3f")
            ));
        }
    }

    fn per_100(&self) -> f64 {
        if self.kills == 0 {
            f64::NAN
        } else {
            self.wrong() as f64 * 100.0 / self.kills as f64
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} kills of {} targets, {} wrong ({} young, {} mid-transaction)",
            self.kills,
            self.targets,
            self.wrong(),
            self.wrong_young,
            self.wrong_mid_trx
        )
    }
}

/// The clients' tallies, one per tool run; `current` is the run in progress
/// (0: none, between runs).
struct Tally {
    runs: Mutex<Vec<Churn>>,
    current: AtomicUsize,
    stop: AtomicBool,
}

impl Tally {
    fn record(&self, f: impl FnOnce(&mut Churn)) {
        let i = self.current.load(Ordering::SeqCst);
        let mut runs = self.runs.lock().expect("tally lock");
        if let Some(c) = runs.get_mut(i) {
            f(c);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// How a client sees a kill: `Some(true)` its connection is gone (2006,
/// 2013, MariaDB's 1927, the socket closed under the driver), `Some(false)`
/// its statement was interrupted (1317), `None` not a kill.
fn kill_error(e: &mysql::Error) -> Option<bool> {
    match e {
        mysql::Error::MySqlError(e) => match e.code {
            1317 => Some(false),
            1927 | 2006 | 2013 => Some(true),
            _ => None,
        },
        mysql::Error::IoError(_) | mysql::Error::CodecError(_) | mysql::Error::DriverError(_) => {
            Some(true)
        }
        _ => None,
    }
}

/// A pooled connection, and when its login started (its idle time on the
/// server starts later). The pool replaces a killed one at once.
fn pool_connect(opts: &OptsBuilder, tally: &Tally) -> Option<(Conn, Instant)> {
    while !tally.stopped() {
        let t = Instant::now();
        if let Ok(c) = Conn::new(opts.clone()) {
            return Some((c, t));
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// W1/W1q client.
fn statement_client(opts: OptsBuilder, mut rng: Rng, tally: Arc<Tally>) {
    let limit = Duration::from_secs(2);
    // Pools do not start in step.
    thread::sleep(Duration::from_secs_f64(rng.next_f64() * 2.0));
    let mut conn = pool_connect(&opts, &tally);
    while let Some((c, _)) = conn.as_mut() {
        if tally.stopped() {
            break;
        }
        let secs = 1.9 + 0.2 * rng.next_f64();
        let started = Instant::now();
        let r = c.query_first::<u64, _>(format!("SELECT SLEEP({secs:.3})"));
        let ran = started.elapsed();
        let id = c.connection_id();
        // (killed, connection gone)
        let (killed, gone) = match &r {
            Ok(Some(0)) => (false, false),
            // SLEEP() returns 1 when interrupted (MySQL: with no error).
            Ok(_) => (true, false),
            Err(e) => match kill_error(e) {
                Some(gone) => (true, gone),
                None => (false, true),
            },
        };
        tally.record(|t| {
            if secs >= 2.0 {
                t.targets += 1;
            }
            if let (false, true, Err(e)) = (killed, gone, &r) {
                t.errors += 1;
                t.note(format!("thread {id}: error: {e}"));
            }
            if !killed {
                return;
            }
            t.kills += 1;
            if ran < limit {
                t.wrong_young += 1;
                t.note(format!(
                    "thread {id}: SLEEP({secs:.3}) killed after {:.3} s",
                    ran.as_secs_f64()
                ));
            }
        });
        if gone {
            conn = pool_connect(&opts, &tally);
        }
    }
}

/// W2 client: idle 2.5-3.5 s, then BEGIN; UPDATE its own row; COMMIT.
fn idle_client(opts: OptsBuilder, mut rng: Rng, row: usize, tally: Arc<Tally>) {
    let limit = Duration::from_secs(3);
    let update = format!("UPDATE {SCHEMA}.s6 SET v = v + 1 WHERE id = {row}");
    thread::sleep(Duration::from_secs_f64(rng.next_f64() * 3.0));
    let mut conn = pool_connect(&opts, &tally);
    // The idle spell began at the login, not at a COMMIT.
    let mut since_login = true;
    while let Some((c, idle_from)) = conn.as_mut() {
        thread::sleep(Duration::from_secs_f64(2.5 + rng.next_f64()));
        if tally.stopped() {
            break;
        }
        let idle = idle_from.elapsed();
        let id = c.connection_id();
        // Err((after BEGIN, error))
        let r = c
            .query_drop("BEGIN")
            .map_err(|e| (false, e))
            .and_then(|()| {
                c.query_drop(&update)
                    .and_then(|()| {
                        *idle_from = Instant::now();
                        c.query_drop("COMMIT")
                    })
                    .map_err(|e| (true, e))
            });
        tally.record(|t| {
            if idle >= limit {
                t.targets += 1;
            }
            let Err((mid, e)) = &r else { return };
            if kill_error(e).is_none() {
                t.errors += 1;
                t.note(format!("thread {id}: error: {e}"));
                return;
            }
            t.kills += 1;
            if *mid {
                t.wrong_mid_trx += 1;
                t.note(format!("thread {id}: transaction killed after BEGIN: {e}"));
            } else if idle < limit {
                t.wrong_young += 1;
                t.note(format!(
                    "thread {id}: killed after {:.3} s idle (since its {})",
                    idle.as_secs_f64(),
                    if since_login { "login" } else { "last COMMIT" }
                ));
            }
        });
        since_login = r.is_err();
        if r.is_err() {
            conn = pool_connect(&opts, &tally);
        }
    }
}

fn tool_sessions(admin: &mut Conn, user: &str) -> u64 {
    count(
        admin,
        &format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'"),
    )
}

/// One workload: the churn runs throughout, the tools take turns on it.
fn workload(ctx: &mut Ctx, w: Workload) -> (Churn, Churn) {
    let tag = w.tag().to_lowercase();
    let ini = write_ini(
        &ctx.dir,
        &format!("s6-{tag}"),
        ctx.srv,
        &["b".to_string()],
        &w.commkill(),
    );
    let mut admin = ctx.srv.admin();
    wait_quiet(&mut admin);
    let plan = alternating(ctx.o.rounds);
    let tally = Arc::new(Tally {
        runs: Mutex::new(vec![Churn::default(); plan.len() + 1]),
        current: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let mut seeds = Rng::new();
    let clients: Vec<_> = (0..ctx.o.s6_conns)
        .map(|i| {
            let opts = ctx.srv.opts(APP1.0, APP1.1);
            let rng = Rng::seeded(seeds.next_u64());
            let tally = tally.clone();
            thread::spawn(move || match w {
                Workload::Idle => idle_client(opts, rng, i, tally),
                _ => statement_client(opts, rng, tally),
            })
        })
        .collect();
    // The churn in its steady state before the first tool comes.
    thread::sleep(Duration::from_secs(4));
    let mut left_alone = 0;
    for (run, &(round, which)) in plan.iter().enumerate() {
        wait_for("the last tool to log out", Duration::from_secs(30), || {
            tool_sessions(&mut admin, MON.0) + tool_sessions(&mut admin, PTK.0) == 0
        });
        let log = ctx
            .dir
            .join(format!("s6-{tag}-{}-{round}.log", which.name()));
        // Counting starts before the tool: its first kills are its own.
        tally.current.store(run + 1, Ordering::SeqCst);
        let (tool, user) = match which {
            Which::Mysqk => (mysqk_watch(ctx, &ini, &log), MON.0),
            Which::PtKill => (
                Tool::spawn(
                    pt_kill()
                        .arg(ctx.srv.ptk_dsn())
                        .args(["--match-user", APP1.0])
                        .args(w.pt_kill_args())
                        .args(["--interval", "1", "--victims", "all"]),
                    &log,
                ),
                PTK.0,
            ),
        };
        wait_for("the tool to log in", Duration::from_secs(30), || {
            tool_sessions(&mut admin, user) > 0
        });
        thread::sleep(Duration::from_secs(ctx.o.s6_window));
        tool.stop();
        // Its last kills reach their clients: a statement client sees its
        // kill at once, an idle one only at its next BEGIN (up to 3.5 s on),
        // and must not count it against the next tool.
        thread::sleep(if w == Workload::Idle {
            Duration::from_secs(4)
        } else {
            Duration::from_millis(300)
        });
        tally.current.store(0, Ordering::SeqCst);
        let c = tally.runs.lock().expect("tally lock")[run + 1].clone();
        let mut line = format!(
            "S6 {} round {round} {}: {}",
            w.tag(),
            which.name(),
            c.summary()
        );
        if c.errors > 0 {
            line.push_str(&format!(", {} other errors", c.errors));
        }
        if which == Which::Mysqk {
            let n = fs::read_to_string(&log)
                .map(|t| t.matches("changed before kill:").count())
                .unwrap_or(0);
            left_alone += n;
            line.push_str(&format!(", {n} left alone (`changed before kill`)"));
        }
        progress(&line);
        for e in &c.examples {
            progress(&format!("  {e}"));
        }
    }
    tally.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("churn client");
    }
    let runs = tally.runs.lock().expect("tally lock");
    let (mut m, mut p) = (Churn::default(), Churn::default());
    for (run, &(_, which)) in plan.iter().enumerate() {
        match which {
            Which::Mysqk => m.add(&runs[run + 1]),
            Which::PtKill => p.add(&runs[run + 1]),
        }
    }
    ctx.notes.push(format!(
        "S6 {}: mysqk {}, {left_alone} victims left alone by its re-check; pt-kill {}.",
        w.tag(),
        m.summary(),
        p.summary()
    ));
    if m.errors + p.errors > 0 {
        ctx.notes.push(format!(
            "S6 {}: failures that are not kills: mysqk {}, pt-kill {}",
            w.tag(),
            m.errors,
            p.errors
        ));
    }
    (m, p)
}

pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    let n = ctx.o.s6_conns;
    let mut admin = ctx.srv.admin();
    let values: Vec<String> = (0..n).map(|i| format!("({i}, 0)")).collect();
    for s in [
        format!("DROP TABLE IF EXISTS {SCHEMA}.s6"),
        format!("CREATE TABLE {SCHEMA}.s6 (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"),
        format!("INSERT INTO {SCHEMA}.s6 VALUES {}", values.join(",")),
    ] {
        admin.query_drop(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let mut rows = Vec::new();
    for w in [
        Workload::Statements,
        Workload::StatementsQuery,
        Workload::Idle,
    ] {
        let (m, p) = workload(ctx, w);
        let mut wrong = Row::new(
            &format!("{}: per 100 kills", w.title(n)),
            "",
            "mysqk <= 0.1",
        );
        wrong.max_abs = Some(0.1);
        wrong.mysqk = vec![m.per_100()];
        wrong.ptkill = vec![p.per_100()];
        let mut kills = Row::new(&format!("S6 {}: kills counted", w.tag()), "", "(report)");
        kills.mysqk = vec![m.kills as f64];
        kills.ptkill = vec![p.kills as f64];
        rows.push(wrong);
        rows.push(kills);
    }
    rows
}

pub fn method(o: &Opts) -> String {
    format!(
        "- S6: {n} pooled app1 connections churn throughout while the tools take turns ({w} s \
         each, {r} rounds); `mysqk watch` (check_interval=1) vs `pt-kill --match-user app1 \
         --interval 1 --victims all`. Kills and wrong kills are counted by the clients; the figure \
         is wrong kills x 100 / kills over all rounds. W1: back-to-back `SELECT SLEEP(1.9..2.1)`, \
         `k_longtime=2` vs `--match-command Query --busy-time 2 --kill` (both kill the connection, \
         both tools' default); a kill is wrong when the statement it ended had run < 2 s by its \
         client's clock (the next statement on the connection, or its next work). W1q: the same, \
         `k_mode=query` vs `--kill-query`. W2: idle 2.5-3.5 s, then BEGIN; UPDATE one row; COMMIT, \
         `k_sleep=3` vs `--match-command Sleep --idle-time 3 --kill`; a kill is wrong when it lands \
         after BEGIN (the transaction is rolled back) or ends an idle spell < 3 s.",
        n = o.s6_conns,
        w = o.s6_window,
        r = o.rounds,
    )
}
