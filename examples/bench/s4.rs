//! S4 fleet: one `mysqk watch` over K instances (the same server under K
//! dbids) against K pt-kill daemons; total RSS and CPU while idle.

use crate::load::{count, wait_for, wait_quiet};
use crate::measure::{cpu_spent, median, proc_kb, read_cpu, Cpu};
use crate::opts::Opts;
use crate::report::Row;
use crate::scenario::{progress, Ctx, Scenario, MARIADB_ONLY};
use crate::server::{APP1, MON, PTK};
use crate::tool::{alternating, mysqk_watch, pt_kill, write_ini, Tool, Which};
use std::thread;
use std::time::Duration;

pub const SCENARIO: Scenario = Scenario {
    id: "S4",
    needs_watch: true,
    servers: MARIADB_ONLY,
    run,
    method,
};

/// S4: one watch over K instances against K pt-kill daemons, idle.
pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    let k = ctx.o.s4_instances;
    let w = ctx.o.s4_window;
    let mut rss = Row::new(
        &format!("S4 fleet: total RSS, {k} instances"),
        "MB",
        "<= 0.1x",
    );
    rss.max_ratio = Some(0.1);
    let mut cpu = Row::new(
        &format!(
            "S4 fleet: CPU over {} s idle ({} x {w} s)",
            w * ctx.o.rounds as u64,
            ctx.o.rounds
        ),
        "s",
        "(report)",
    );
    let dbids: Vec<String> = (1..=k).map(|i| format!("b{i:02}")).collect();
    let ini = write_ini(
        &ctx.dir,
        "s4",
        ctx.srv,
        &dbids,
        &format!("k_user={}\nk_longtime=3600\nk_sleep=0", APP1.0),
    );
    let mut admin = ctx.srv.admin();
    let mut pss = (Vec::new(), Vec::new());
    for (round, which) in alternating(ctx.o.rounds) {
        wait_quiet(&mut admin);
        let tools: Vec<Tool> = match which {
            Which::Mysqk => vec![mysqk_watch(
                ctx,
                &ini,
                &ctx.dir.join(format!("s4-mysqk-{round}.log")),
            )],
            Which::PtKill => (0..k)
                .map(|i| {
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
                        &ctx.dir.join(format!("s4-ptkill-{round}-{i}.log")),
                    )
                })
                .collect(),
        };
        let user = match which {
            Which::Mysqk => MON.0,
            Which::PtKill => PTK.0,
        };
        wait_for(
            "every instance to be connected",
            Duration::from_secs(120),
            || {
                count(
                    &mut admin,
                    &format!(
                        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'"
                    ),
                ) as usize
                    >= k
            },
        );
        // Let start-up settle (pt-kill's compile, mysqk's logins).
        thread::sleep(Duration::from_secs(2));
        let pids: Vec<i32> = tools.iter().map(Tool::pid).collect();
        let cpu0: Vec<Cpu> = pids.iter().map(|p| read_cpu(*p)).collect();
        thread::sleep(Duration::from_secs(w));
        let cpu1: Vec<Cpu> = pids.iter().map(|p| read_cpu(*p)).collect();
        let spent = cpu_spent(&cpu0, &cpu1);
        let rss_mb = pids
            .iter()
            .map(|p| proc_kb(*p, "status", "VmRSS:"))
            .sum::<u64>() as f64
            / 1024.0;
        let pss_mb = pids
            .iter()
            .map(|p| proc_kb(*p, "smaps_rollup", "Pss:"))
            .sum::<u64>() as f64
            / 1024.0;
        for t in tools {
            t.stop();
        }
        progress(&format!(
            "S4 round {round} {}: RSS {rss_mb:.1} MB (PSS {pss_mb:.1} MB), CPU {spent:.3} s over {w} s",
            which.name(),
        ));
        match which {
            Which::Mysqk => {
                rss.mysqk.push(rss_mb);
                cpu.mysqk.push(spent);
                pss.0.push(pss_mb);
            }
            Which::PtKill => {
                rss.ptkill.push(rss_mb);
                cpu.ptkill.push(spent);
                pss.1.push(pss_mb);
            }
        }
    }
    // CPU over the whole idle time: the sum of the windows, not a median.
    cpu.mysqk = vec![cpu.mysqk.iter().sum()];
    cpu.ptkill = vec![cpu.ptkill.iter().sum()];
    ctx.notes.push(format!(
        "S4 proportional memory (PSS, shared pages split between the pt-kill processes): mysqk median {:.1} MB, pt-kill median {:.1} MB",
        median(&pss.0),
        median(&pss.1)
    ));
    vec![rss, cpu]
}

pub fn method(o: &Opts) -> String {
    format!(
        "- S4: one `mysqk watch` over {k} dbids (the same server) vs {k} `pt-kill` daemons, interval 1, \
         nothing to kill; RSS summed over the processes (/proc/PID/status VmRSS) and CPU over \
         {rounds} idle windows of {w4} s ({t4} s in all, the issue's 60 s).",
        k = o.s4_instances,
        rounds = o.rounds,
        w4 = o.s4_window,
        t4 = o.s4_window * o.rounds as u64,
    )
}
