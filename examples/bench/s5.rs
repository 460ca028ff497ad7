//! S5 cron: wall time of `mysqk kill --db all --dry-run` with nothing to
//! kill; for pt-kill, the time until its first check is done (it has no
//! one-shot mode: `--run-time` would add a whole interval).

use crate::load::{open_idle, wait_quiet, wait_quiet_except};
use crate::opts::Opts;
use crate::report::Row;
use crate::scenario::{progress, Ctx, Scenario, MARIADB_ONLY};
use crate::server::{die_with_parent, APP1, APP2};
use crate::tool::{alternating, pt_kill, write_ini, Tool, Which};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const SCENARIO: Scenario = Scenario {
    id: "S5",
    needs_watch: false,
    servers: MARIADB_ONLY,
    run,
    method,
};

/// S5: one-shot cost with nothing to kill.
pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    let mut row = Row::new(
        "S5 cron: `kill --db all --dry-run`, nothing to kill",
        "ms",
        "report (well under 100 ms)",
    );
    let ini = write_ini(
        &ctx.dir,
        "s5",
        ctx.srv,
        &["b".to_string()],
        &format!("k_user={}\nk_longtime=3600\nk_sleep=0", APP1.0),
    );
    let mut admin = ctx.srv.admin();
    // A small, realistic processlist: 50 idle connections of a user no rule matches.
    wait_quiet(&mut admin);
    let (_idle, _, _) = open_idle(ctx.srv, APP2, 50);
    for (round, which) in alternating(ctx.o.s5_rounds) {
        wait_quiet_except(&mut admin, APP2.0);
        let log = ctx.dir.join(format!("s5-{}-{round}.log", which.name()));
        let ms = match which {
            Which::Mysqk => {
                let mut tool = Tool::spawn(
                    Command::new(&ctx.o.mysqk).args([
                        "kill",
                        "-c",
                        &ini.to_string_lossy(),
                        "--db",
                        "all",
                        "--dry-run",
                    ]),
                    &log,
                );
                let code = tool.wait_exit(Duration::from_secs(30));
                let ms = tool.started.elapsed().as_secs_f64() * 1000.0;
                if code != Some(0) {
                    ctx.notes.push(format!(
                        "S5 round {round}: mysqk exited with {code:?} (log {})",
                        log.display()
                    ));
                }
                ms
            }
            Which::PtKill => {
                // Time until pt-kill reports its first check done ("Sleeping").
                let mut cmd = pt_kill();
                cmd.arg(ctx.srv.ptk_dsn())
                    .args([
                        "--match-user",
                        APP1.0,
                        "--match-command",
                        "Query",
                        "--busy-time",
                        "3600",
                        "--interval",
                        "1",
                        "--print",
                        "--verbose",
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null());
                die_with_parent(&mut cmd);
                let mut child = cmd.spawn().expect("spawn pt-kill");
                let t0 = Instant::now();
                let stdout = child.stdout.take().expect("pt-kill stdout");
                let (tx, rx) = mpsc::channel();
                thread::spawn(move || {
                    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                        if line.contains("Sleeping") {
                            let _ = tx.send(Instant::now());
                            return;
                        }
                    }
                });
                let done = rx.recv_timeout(Duration::from_secs(30));
                let _ = child.kill();
                let _ = child.wait();
                match done {
                    Ok(t) => t.duration_since(t0).as_secs_f64() * 1000.0,
                    Err(_) => {
                        ctx.notes
                            .push(format!("S5 round {round}: pt-kill never finished a check"));
                        f64::NAN
                    }
                }
            }
        };
        progress(&format!("S5 round {round} {}: {ms:.1} ms", which.name()));
        if ms.is_nan() {
            continue;
        }
        match which {
            Which::Mysqk => row.mysqk.push(ms),
            Which::PtKill => row.ptkill.push(ms),
        }
    }
    vec![row]
}

pub fn method(_: &Opts) -> String {
    "- S5: wall time of `mysqk kill --db all --dry-run` with nothing to kill; pt-kill has no \
     one-shot mode, so its figure is the time until it has finished its first check (its \
     `--verbose` \"Sleeping\" line), a lower bound of what a cron run of it would cost."
        .to_string()
}
