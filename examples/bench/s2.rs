//! S2 reaction: both tools running as daemons (interval 1, limit 2 s); M
//! `SELECT SLEEP(20)` started at random moments; per query, the delay from
//! the moment it has run 2 s to the moment its client sees the kill.

use crate::load::{count, open_idle, wait_for, wait_quiet};
use crate::measure::{median, percentile, Rng};
use crate::opts::Opts;
use crate::report::Row;
use crate::scenario::{progress, Ctx, Scenario, BOTH};
use crate::server::{APP1, MON, PTK};
use crate::tool::{alternating, mysqk_watch, pt_kill, write_ini, Tool, Which};
use mysql::prelude::*;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const SCENARIO: Scenario = Scenario {
    id: "S2",
    needs_watch: true,
    servers: BOTH,
    run,
    method,
};

/// S2: reaction delay from crossing k_longtime to the kill, per query.
pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    let m = ctx.o.s2_queries;
    let mut med = Row::new(
        &format!("S2 reaction: median delay after 2 s ({m} queries/round)"),
        "ms",
        "(report)",
    );
    let mut p95 = Row::new("S2 reaction: p95 delay after 2 s", "ms", "mysqk <= 150 ms");
    p95.pct = 95.0;
    p95.max_abs = Some(150.0);
    // MySQL's TIME reads 2 after 1.x s: a tool trusting it kills early, and
    // an early kill is a short negative delay that flatters the two rows
    // above, so it is counted on its own.
    let mut early_row = Row::new(
        "S2 reaction: killed before 2 s (all rounds)",
        "%",
        "mysqk 0 %",
    );
    early_row.max_abs = Some(0.0);
    let ini = write_ini(
        &ctx.dir,
        "s2",
        ctx.srv,
        &["b".to_string()],
        &format!("k_user={}\nk_longtime=2\nk_sleep=0", APP1.0),
    );
    let mut admin = ctx.srv.admin();
    let mut rng = Rng::new();
    for (round, which) in alternating(ctx.o.rounds) {
        wait_quiet(&mut admin);
        // Connections first: a query's start is then one round trip away.
        let (conns, _, _) = open_idle(ctx.srv, APP1, m);
        let log = ctx.dir.join(format!("s2-{}-{round}.log", which.name()));
        let tool = match which {
            Which::Mysqk => mysqk_watch(ctx, &ini, &log),
            Which::PtKill => Tool::spawn(
                pt_kill().arg(ctx.srv.ptk_dsn()).args([
                    "--match-user",
                    APP1.0,
                    "--match-command",
                    "Query",
                    "--busy-time",
                    "2",
                    "--interval",
                    "1",
                    "--victims",
                    "all",
                    "--kill",
                ]),
                &log,
            ),
        };
        // Steady state: the tool is logged in and looping.
        let tool_user = match which {
            Which::Mysqk => MON.0,
            Which::PtKill => PTK.0,
        };
        wait_for("the tool to log in", Duration::from_secs(30), || {
            count(
                &mut admin,
                &format!(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{tool_user}'"
                ),
            ) > 0
        });
        thread::sleep(Duration::from_millis(1500));
        let (tx, rx) = mpsc::channel::<Option<f64>>();
        let start = Instant::now();
        let handles: Vec<_> = conns
            .into_iter()
            .map(|mut c| {
                let at = Duration::from_secs_f64(rng.next_f64() * ctx.o.s2_spread);
                let tx = tx.clone();
                thread::spawn(move || {
                    if let Some(d) = (start + at).checked_duration_since(Instant::now()) {
                        thread::sleep(d);
                    }
                    let t = Instant::now();
                    let r = c.query_drop("SELECT SLEEP(20)");
                    let ran = t.elapsed().as_secs_f64();
                    // Ok: it ran its 20 s, nobody killed it.
                    let _ = tx.send(match r {
                        Ok(()) => None,
                        Err(_) => Some((ran - 2.0) * 1000.0),
                    });
                })
            })
            .collect();
        drop(tx);
        let mut delays = Vec::new();
        let mut missed = 0;
        for d in rx.iter() {
            match d {
                Some(ms) => delays.push(ms),
                None => missed += 1,
            }
        }
        for h in handles {
            let _ = h.join();
        }
        tool.stop();
        if missed > 0 {
            ctx.notes.push(format!(
                "S2 round {round}: {} left {missed} of {m} queries running for 20 s",
                which.name()
            ));
        }
        let early = delays.iter().filter(|d| **d < 0.0).count();
        if early > 0 {
            ctx.notes.push(format!(
                "S2 round {round}: {} killed {early} queries before they reached 2 s",
                which.name()
            ));
        }
        progress(&format!(
            "S2 round {round} {}: median {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            which.name(),
            median(&delays),
            percentile(&delays, 95.0),
            percentile(&delays, 100.0)
        ));
        let (a, b, c) = match which {
            Which::Mysqk => (&mut med.mysqk, &mut p95.mysqk, &mut early_row.mysqk),
            Which::PtKill => (&mut med.ptkill, &mut p95.ptkill, &mut early_row.ptkill),
        };
        a.extend(&delays);
        b.extend(&delays);
        c.push(early as f64);
    }
    // Of every query of every round, not a median.
    let all = (m * ctx.o.rounds).max(1) as f64;
    early_row.mysqk = vec![early_row.mysqk.iter().sum::<f64>() * 100.0 / all];
    early_row.ptkill = vec![early_row.ptkill.iter().sum::<f64>() * 100.0 / all];
    vec![med, p95, early_row]
}

pub fn method(o: &Opts) -> String {
    format!(
        "- S2: `mysqk watch` (check_interval=1, k_longtime=2) vs `pt-kill --match-user app1 \
         --match-command Query --busy-time 2 --interval 1 --victims all --kill`; {q} `SELECT SLEEP(20)` \
         per round started at random moments over {spread} s; delay = when the query's own client \
         saw the kill, minus 2 s after it sent the query.",
        q = o.s2_queries,
        spread = o.s2_spread,
    )
}
