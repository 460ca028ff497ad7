//! S7 guard window: how wide the window is between a KILL's check and its
//! effect, the race that bench S6 W1 sees as its residue (issue 12). A
//! statement that ends by itself inside that window has answered before the
//! kill flag is set: a connection KILL then closes the connection under the
//! pool's next statement, and a MySQL `KILL QUERY` may interrupt that next
//! statement.
//!
//! Each try: a victim runs `SELECT SLEEP(2.2)` and at once `SELECT 1` (its
//! pool's next statement); 100 ms before the SLEEP's end its killer (the
//! same user, as mysqk kills through the owner's session) reads the
//! victim's row, and at a random moment within 1 ms either side of the end
//! sends either the KILL mysqk sends for that row (built by the very
//! function mysqk uses, `mysqk::server::killer::guard_for`) or the plain
//! `KILL <id>` / `KILL QUERY <id>` pt-kill sends after its read. The try
//! is wrong when the SLEEP ended by itself and the next statement, or one
//! more the victim runs once the killer is done, saw a kill. Wrong tries x
//! 2 ms / tries is then the width of the window. The four variants take
//! turns on every pair, so load affects them alike.

use crate::measure::Rng;
use crate::opts::Opts;
use crate::report::Row;
use crate::scenario::{progress, Ctx, Scenario, BOTH};
use crate::server::{Flavor, APP1};
use mysqk::core::row::ProcRow;
use mysqk::server::killer::guard_for;
use mysqk::server::session::{Flavor as ServerFlavor, IsReason, ProcSource};
use mysql::prelude::*;
use mysql::{Conn, OptsBuilder};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const SCENARIO: Scenario = Scenario {
    id: "S7",
    needs_watch: false,
    servers: BOTH,
    run,
    method,
};

const SLEEP: Duration = Duration::from_millis(2200);
/// The kill is sent this far either side of the SLEEP's end, uniformly.
const SPAN_US: f64 = 2000.0;
const PAIRS: usize = 10;

/// (mysqk's KILL, connection kill)
const VARIANTS: [(bool, bool); 4] = [(true, true), (false, true), (true, false), (false, false)];

#[derive(Default, Clone, Copy, Debug)]
struct Tally {
    tries: u64,
    /// The SLEEP was interrupted: the kill hit the statement it was for.
    right: u64,
    /// The SLEEP ended by itself and later work on the connection saw a kill.
    wrong: u64,
    /// mysqk's guard answered "changed": nothing was killed.
    left_alone: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.tries += o.tries;
        self.right += o.right;
        self.wrong += o.wrong;
        self.left_alone += o.left_alone;
    }
    fn per_100(&self) -> f64 {
        if self.tries == 0 {
            f64::NAN
        } else {
            self.wrong as f64 * 100.0 / self.tries as f64
        }
    }
    fn window_us(&self) -> f64 {
        self.per_100() / 100.0 * SPAN_US
    }
}

/// Did this answer come from a kill (1317, 1927, 2006, 2013, a closed socket)?
fn is_kill(r: &Result<Option<u64>, mysql::Error>) -> bool {
    match r {
        Ok(_) => false,
        Err(mysql::Error::MySqlError(e)) => matches!(e.code, 1317 | 1927 | 2006 | 2013),
        Err(_) => true,
    }
}

/// The victim's row as mysqk's inspector reads it (the fields a guard uses).
fn read_row(k: &mut Conn, flavor: Flavor, id: u32) -> Option<ProcRow> {
    type Cols = (
        u64,
        String,
        String,
        String,
        u64,
        Option<f64>,
        Option<String>,
        Option<String>,
        Option<u64>,
    );
    let sql = match flavor {
        Flavor::MariaDb => format!(
            "SELECT ID, USER, HOST, COMMAND, TIME, TIME_MS, STATE, INFO, QUERY_ID \
             FROM information_schema.PROCESSLIST WHERE ID = {id}"
        ),
        Flavor::MySql => format!(
            "SELECT ID, USER, HOST, COMMAND, TIME, NULL, STATE, INFO, NULL \
             FROM performance_schema.processlist WHERE ID = {id}"
        ),
    };
    let (id, user, host, command, time, ms, state, info, query_id): Cols =
        k.query_first(sql).ok()??;
    Some(ProcRow {
        id,
        user,
        host,
        command,
        time,
        time_ms: ms.map(|m| m as u64),
        state,
        info,
        query_id,
        ..ProcRow::default()
    })
}

fn connect(opts: &OptsBuilder) -> Conn {
    Conn::new(opts.clone()).expect("S7: app1 connection")
}

/// One victim/killer pair: `tries` tries of each variant, in turn.
fn pair(opts: OptsBuilder, flavor: Flavor, tries: usize, mut rng: Rng) -> [Tally; 4] {
    let mut out = [Tally::default(); 4];
    let mut killer = connect(&opts);
    let mut victim = Some(connect(&opts));
    let (sf, source) = match flavor {
        Flavor::MariaDb => (
            ServerFlavor::MariaDb,
            ProcSource::InformationSchema(IsReason::MariaDb),
        ),
        Flavor::MySql => (ServerFlavor::MySql8, ProcSource::PerformanceSchema),
    };
    for n in 0..tries * VARIANTS.len() {
        let v = n % VARIANTS.len();
        let (mysqk, connection) = VARIANTS[v];
        let mut conn = victim.take().unwrap_or_else(|| connect(&opts));
        let id = conn.connection_id();
        let (started_tx, started_rx) = mpsc::channel::<Instant>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let runner = thread::spawn(move || {
            let _ = started_tx.send(Instant::now());
            let first =
                conn.query_first::<u64, _>(format!("SELECT SLEEP({})", SLEEP.as_secs_f64()));
            let next = conn.query_first::<u64, _>("SELECT 1");
            let _ = done_rx.recv_timeout(Duration::from_secs(5));
            let later = conn.query_first::<u64, _>("SELECT 1");
            (conn, first, next, later)
        });
        let Ok(t0) = started_rx.recv() else { continue };
        thread::sleep(SLEEP.saturating_sub(Duration::from_millis(100)));
        let row = read_row(&mut killer, flavor, id);
        let offset = (rng.next_f64() - 0.5) * SPAN_US;
        let at = t0 + SLEEP;
        let at = if offset >= 0.0 {
            at + Duration::from_micros(offset as u64)
        } else {
            at - Duration::from_micros((-offset) as u64)
        };
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let plain = if connection {
            format!("KILL {id}")
        } else {
            format!("KILL QUERY {id}")
        };
        let mut left_alone = false;
        match (mysqk, &row) {
            (true, Some(row)) => {
                // mysqk's statement for this row: `KILL QUERY ID` on
                // MariaDB's query kills, else the guarded KILL.
                let kill = match (flavor, connection, row.query_id) {
                    (_, true, _) => format!("KILL CONNECTION {id}"),
                    (Flavor::MariaDb, false, Some(q)) => format!("KILL QUERY ID {q}"),
                    _ => plain.clone(),
                };
                match guard_for(sf, source, &kill, row) {
                    Some(g) => left_alone = matches!(g.send(&mut killer), Ok(false)),
                    None => {
                        let _ = killer.query_drop(&kill);
                    }
                }
            }
            _ => {
                let _ = killer.query_drop(&plain);
            }
        }
        let _ = done_tx.send(());
        let Ok((conn, first, next, later)) = runner.join() else {
            continue;
        };
        let t = &mut out[v];
        t.tries += 1;
        let interrupted = !matches!(first, Ok(Some(0)));
        if left_alone {
            t.left_alone += 1;
        }
        if interrupted {
            t.right += 1;
        } else if is_kill(&next) || is_kill(&later) {
            t.wrong += 1;
        }
        if first.is_ok() && next.is_ok() && later.is_ok() {
            victim = Some(conn);
        }
    }
    out
}

pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    let tries = ctx.o.s7_tries;
    let mut seeds = Rng::new();
    let pairs: Vec<_> = (0..PAIRS)
        .map(|_| {
            let opts = ctx.srv.opts(APP1.0, APP1.1);
            let flavor = ctx.srv.flavor;
            let rng = Rng::seeded(seeds.next_u64());
            thread::spawn(move || pair(opts, flavor, tries, rng))
        })
        .collect();
    let mut total = [Tally::default(); 4];
    for p in pairs {
        let t = p.join().expect("S7 pair");
        for (a, b) in total.iter_mut().zip(t.iter()) {
            a.add(b);
        }
    }
    let mut rows = Vec::new();
    for (mode, m, p) in [
        ("kill connection", total[0], total[1]),
        ("kill query", total[2], total[3]),
    ] {
        progress(&format!(
            "S7 {mode}: mysqk {m:?} (window {:.0} us), plain KILL {p:?} (window {:.0} us)",
            m.window_us(),
            p.window_us()
        ));
        let mut row = Row::new(
            &format!(
                "S7 guard window, {mode}: wrong per 100 tries within 1 ms of a statement's end"
            ),
            "",
            "(report)",
        );
        row.mysqk = vec![m.per_100()];
        row.ptkill = vec![p.per_100()];
        rows.push(row);
        ctx.notes.push(format!(
            "S7 {mode}: mysqk {} wrong in {} tries (a window of {:.0} us; {} interrupted the \
             statement, {} left alone by the guard); the plain KILL pt-kill sends {} wrong in {} \
             (a window of {:.0} us).",
            m.wrong,
            m.tries,
            m.window_us(),
            m.right,
            m.left_alone,
            p.wrong,
            p.tries,
            p.window_us()
        ));
    }
    rows
}

pub fn method(o: &Opts) -> String {
    format!(
        "- S7: {PAIRS} victim/killer pairs of app1 sessions, {} tries of each variant per pair: the \
         victim runs `SELECT SLEEP(2.2)` then at once `SELECT 1`; the killer reads the victim's row \
         100 ms before the end and sends its KILL at a random moment within 1 ms either side of it: \
         the KILL mysqk sends for that row (`guard_for`, the same code; `KILL QUERY ID` for \
         MariaDB's query kills) against the plain `KILL <id>` / `KILL QUERY <id>` pt-kill sends \
         (in pt-kill's column). A try is wrong when the SLEEP ended by itself and the victim's \
         next statement, or one more after the killer is done, saw a kill; wrong x 2 ms / tries \
         is the window's width.",
        o.s7_tries
    )
}
