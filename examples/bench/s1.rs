//! S1 storm: N idle `app1` connections, all idle >= 2 s; time from the
//! tool's start until none of them is left in the server's processlist.

use crate::load::{count, open_idle, socket_fds, wait_closed, wait_for, wait_quiet};
use crate::measure::median;
use crate::opts::Opts;
use crate::report::Row;
use crate::scenario::{progress, Ctx, Scenario, BOTH};
use crate::server::APP1;
use crate::tool::{alternating, pt_kill, write_ini, Tool, Which};
use mysql::Conn;
use std::process::{exit, Command};
use std::thread;
use std::time::{Duration, Instant};

/// A storm of idle app1 connections aged past both tools' idle limit.
struct Storm {
    conns: Vec<Conn>,
    fds: Vec<i32>,
    left_sql: String,
}

impl Storm {
    fn open(ctx: &Ctx, admin: &mut Conn) -> Storm {
        let n = ctx.o.s1_conns;
        wait_quiet(admin);
        let before = socket_fds();
        let (conns, lo, hi) = open_idle(ctx.srv, APP1, n);
        let fds: Vec<i32> = socket_fds().difference(&before).copied().collect();
        if fds.len() != n {
            eprintln!("bench: found {} storm sockets, expected {n}", fds.len());
            exit(1);
        }
        let left_sql = format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{}' AND ID BETWEEN {lo} AND {hi}",
            APP1.0
        );
        // Both tools match an idle time of at least 1 s.
        let aged_sql = format!("{left_sql} AND COMMAND = 'Sleep' AND TIME >= 2");
        wait_for("the storm to age 2 s", Duration::from_secs(60), || {
            count(admin, &aged_sql) as usize >= n
        });
        Storm {
            conns,
            fds,
            left_sql,
        }
    }

    /// Seconds from `t0` until no storm thread is left in the processlist
    /// (and how many are left at the 120 s deadline), and when the last
    /// storm socket was closed by the server.
    fn wait_gone(&self, admin: &mut Conn, t0: Instant) -> (f64, u64, f64) {
        // The sockets first (free to watch), then the processlist: a killed
        // thread stays listed until it has finished exiting.
        let deadline = t0 + Duration::from_secs(120);
        wait_closed(&self.fds, deadline);
        let closed = t0.elapsed().as_secs_f64();
        let mut left = self.conns.len() as u64;
        while left > 0 && Instant::now() < deadline {
            left = count(admin, &self.left_sql);
            if left > 0 {
                thread::sleep(Duration::from_millis(2));
            }
        }
        (t0.elapsed().as_secs_f64(), left, closed)
    }
}

pub const SCENARIO: Scenario = Scenario {
    id: "S1",
    needs_watch: false,
    servers: BOTH,
    run,
    method,
};

/// S1: N idle app1 connections; time until none is left.
pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    let n = ctx.o.s1_conns;
    let mut row = Row::new(
        &format!("S1 storm: clear {n} idle app1 connections"),
        "s",
        "<= 0.5x",
    );
    row.max_ratio = Some(0.5);
    let ini = write_ini(
        &ctx.dir,
        "s1",
        ctx.srv,
        &["b".to_string()],
        "k_user=none\nk_longtime=0\nk_sleep=0",
    );
    let mut admin = ctx.srv.admin();
    let mut closed_at = Vec::new();
    for (round, which) in alternating(ctx.o.rounds) {
        let storm = Storm::open(ctx, &mut admin);
        let log = ctx.dir.join(format!("s1-{}-{round}.log", which.name()));
        let mut tool = match which {
            Which::Mysqk => Tool::spawn(
                Command::new(&ctx.o.mysqk).args([
                    "kill",
                    "-c",
                    &ini.to_string_lossy(),
                    "--db",
                    "b",
                    "--user",
                    APP1.0,
                    "--sleep",
                    "1",
                ]),
                &log,
            ),
            Which::PtKill => Tool::spawn(
                pt_kill().arg(ctx.srv.ptk_dsn()).args([
                    "--match-user",
                    APP1.0,
                    "--match-command",
                    "Sleep",
                    "--idle-time",
                    "1",
                    "--victims",
                    "all",
                    "--kill",
                ]),
                &log,
            ),
        };
        let (secs, left, closed) = storm.wait_gone(&mut admin, tool.started);
        match which {
            Which::Mysqk => {
                let code = tool.wait_exit(Duration::from_secs(60));
                if code != Some(0) {
                    ctx.notes.push(format!(
                        "S1 round {round}: mysqk exited with {code:?} (log {})",
                        log.display()
                    ));
                }
            }
            Which::PtKill => tool.stop(),
        }
        if left > 0 {
            ctx.notes.push(format!(
                "S1 round {round}: {} left {left} of {n} connections after 120 s",
                which.name()
            ));
        }
        progress(&format!(
            "S1 round {round} {}: {secs:.3} s (last socket closed at {closed:.3} s)",
            which.name()
        ));
        match which {
            Which::Mysqk => row.mysqk.push(secs),
            Which::PtKill => row.ptkill.push(secs),
        }
        closed_at.push((which, closed));
    }
    let closed = |w: Which| -> Vec<f64> {
        closed_at
            .iter()
            .filter(|(x, _)| *x == w)
            .map(|(_, t)| *t)
            .collect()
    };
    ctx.notes.push(format!(
        "S1: the server closes a killed connection's socket at once and lists the thread until it has exited; the last storm socket was closed at median {:.3} s (mysqk) and {:.3} s (pt-kill) after the start.",
        median(&closed(Which::Mysqk)),
        median(&closed(Which::PtKill))
    ));
    vec![row]
}

pub fn method(o: &Opts) -> String {
    format!(
        "- S1: `mysqk kill --user app1 --sleep 1` vs `pt-kill --match-user app1 --match-command Sleep \
         --idle-time 1 --victims all --kill`; from the tool's start until the server's processlist \
         lists none of the {s1} connections.",
        s1 = o.s1_conns,
    )
}
