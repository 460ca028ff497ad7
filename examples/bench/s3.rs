//! S3 scan cost: N idle connections of a user no rule matches; CPU seconds
//! (user+sys from /proc) per check pass, passes counted on the server
//! (`Com_select` for mysqk's `information_schema.PROCESSLIST` read,
//! `Com_show_processlist` for pt-kill's `SHOW FULL PROCESSLIST`).

use crate::load::{open_idle, wait_for, wait_quiet, wait_quiet_except};
use crate::measure::{cpu_spent, global_status, read_cpu};
use crate::opts::Opts;
use crate::report::Row;
use crate::scenario::{progress, Ctx, Scenario, BOTH};
use crate::server::{APP1, APP2};
use crate::tool::{alternating, mysqk_watch, pt_kill, write_ini, Tool, Which};
use std::thread;
use std::time::Duration;

pub const SCENARIO: Scenario = Scenario {
    id: "S3",
    needs_watch: true,
    servers: BOTH,
    run,
    method,
};

/// S3: CPU per pass over a processlist of N idle connections nothing matches.
pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    let n = ctx.o.s3_conns;
    let mut row = Row::new(
        &format!("S3 scan cost: CPU per pass, {n} idle, nothing matches"),
        "ms",
        "<= 0.2x",
    );
    row.max_ratio = Some(0.2);
    let ini = write_ini(
        &ctx.dir,
        "s3",
        ctx.srv,
        &["b".to_string()],
        &format!("k_user={}\nk_longtime=3600\nk_sleep=0", APP1.0),
    );
    let mut admin = ctx.srv.admin();
    wait_quiet(&mut admin);
    let (_idle, _, _) = open_idle(ctx.srv, APP2, n);
    let window = ctx.o.s3_window;
    for (round, which) in alternating(ctx.o.rounds) {
        wait_quiet_except(&mut admin, APP2.0);
        let log = ctx.dir.join(format!("s3-{}-{round}.log", which.name()));
        let (tool, counter) = match which {
            Which::Mysqk => (mysqk_watch(ctx, &ini, &log), "Com_select"),
            Which::PtKill => (
                Tool::spawn(
                    pt_kill().arg(ctx.srv.ptk_dsn()).args([
                        "--match-user",
                        APP1.0,
                        "--match-command",
                        "Query",
                        "--busy-time",
                        "3600",
                        "--interval",
                        "1",
                        "--victims",
                        "all",
                        "--kill",
                    ]),
                    &log,
                ),
                "Com_show_processlist",
            ),
        };
        // Start-up (perl compiling pt-kill, mysqk's logins) is not a pass.
        let first = global_status(&mut admin, counter);
        wait_for("the first pass", Duration::from_secs(30), || {
            global_status(&mut admin, counter) > first
        });
        thread::sleep(Duration::from_millis(500));
        let (c0, p0) = (read_cpu(tool.pid()), global_status(&mut admin, counter));
        thread::sleep(Duration::from_secs(window));
        let (c1, p1) = (read_cpu(tool.pid()), global_status(&mut admin, counter));
        tool.stop();
        let spent = cpu_spent(&[c0], &[c1]);
        let passes = p1.saturating_sub(p0);
        let per = if passes == 0 {
            f64::NAN
        } else {
            spent * 1000.0 / passes as f64
        };
        progress(&format!(
            "S3 round {round} {}: {spent:.4} CPU s over {passes} passes = {per:.3} ms/pass",
            which.name(),
        ));
        if per.is_nan() {
            ctx.notes.push(format!(
                "S3 round {round}: {} made no pass in {window} s",
                which.name()
            ));
            continue;
        }
        match which {
            Which::Mysqk => row.mysqk.push(per),
            Which::PtKill => row.ptkill.push(per),
        }
    }
    vec![row]
}

pub fn method(o: &Opts) -> String {
    format!(
        "- S3: {s3} idle connections of a user no rule matches; both daemons at interval 1; CPU \
         (user+sys, /proc) over {w3} s windows divided by the passes the server counted (mysqk: \
         `Com_select`, pt-kill: `Com_show_processlist`); {rounds} rounds = about {p3} passes per tool \
         (the issue's 60 passes).",
        s3 = o.s3_conns,
        w3 = o.s3_window,
        rounds = o.rounds,
        p3 = o.s3_window * o.rounds as u64,
    )
}
