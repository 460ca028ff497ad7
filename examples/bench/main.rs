//! `make bench`: mysqk against pt-kill (Percona Toolkit) on one throwaway
//! MariaDB, side by side, and one table of medians and ratios.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/bench [--mysqk target/release/mysqk] [--rounds 3]
//!     [--only S1,S5] [--out bench/results/latest.md] [--s1-conns 2000] ...
//! ```
//! (`bench/run.sh` does the above, installs the packages and raises the
//! open-files limit.)
//!
//! Where things are:
//! - `opts.rs`: the command line.
//! - `server.rs`: the throwaway server and its accounts.
//! - `load.rs`: idle connections opened in parallel; waiting for the server.
//! - `tool.rs`: starting and stopping mysqk and pt-kill, their ini.
//! - `measure.rs`: CPU and memory from /proc, server counters, percentiles.
//! - `report.rs`: the rows and the markdown table.
//! - `scenario.rs`: what a scenario is and what it is given (`Ctx`).
//! - `s1.rs` ... `s5.rs`: one scenario each (their headers say what they
//!   measure); `SCENARIOS` below lists them in the order they run.
//!
//! Tools run in turn (mysqk, pt-kill, mysqk, pt-kill, ...). Every time the
//! bench reports comes from the server (polling the processlist) or from the
//! victim's client, never from a tool's own exit time (S5 excepted: there
//! the wall time of the command is the figure asked for). mysqk passwords go
//! in an ini file (mode 0600); pt-kill takes its password in its DSN, which
//! is pt-kill's interface.

mod load;
mod measure;
mod opts;
mod report;
mod s1;
mod s2;
mod s3;
mod s4;
mod s5;
mod scenario;
mod server;
mod tool;

use mysql::prelude::*;
use opts::{parse_opts, usage_error};
use report::{samples, table};
use scenario::{progress, Ctx, Scenario};
use server::Server;
use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::thread;
use std::time::Instant;
use tool::{has_watch, pt_kill};

/// Every scenario, in the order they run (each file's `SCENARIO` says its
/// id and what it needs).
const SCENARIOS: &[Scenario] = &[
    s1::SCENARIO,
    s2::SCENARIO,
    s3::SCENARIO,
    s4::SCENARIO,
    s5::SCENARIO,
];

fn main() {
    let o = parse_opts();
    if !o.mysqk.is_file() {
        usage_error(&format!(
            "{} does not exist: cargo build --release first",
            o.mysqk.display()
        ));
    }
    let started = Instant::now();
    let version = |cmd: &mut Command| {
        cmd.output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    };
    let ptk_version = version(pt_kill().arg("--version"));
    let mysqk_version = version(Command::new(&o.mysqk).arg("--version"));
    let watch = has_watch(&o.mysqk);
    progress("starting a throwaway MariaDB");
    let srv = Server::start(o.keep);
    let server_version: String = srv
        .admin()
        .query_first("SELECT VERSION()")
        .ok()
        .flatten()
        .unwrap_or_default();
    let dir = srv.dir.join("runs");
    fs::create_dir_all(&dir).expect("create runs dir");
    let mut ctx = Ctx {
        o: &o,
        srv: &srv,
        dir,
        notes: Vec::new(),
    };
    let mut rows = Vec::new();
    let no_watch: Vec<&str> = SCENARIOS
        .iter()
        .filter(|s| s.needs_watch && o.wants(s.id))
        .map(|s| s.id)
        .collect();
    if !watch && !no_watch.is_empty() {
        ctx.notes.push(format!(
            "{} not run: {} has no `watch` command",
            no_watch.join(", "),
            o.mysqk.display()
        ));
    }
    for s in SCENARIOS {
        if o.wants(s.id) && (watch || !s.needs_watch) {
            rows.extend((s.run)(&mut ctx));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpus = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut md = String::new();
    let _ = writeln!(md, "# mysqk vs pt-kill\n");
    let _ = writeln!(
        md,
        "{} | {} | MariaDB {} | {} CPUs | {} rounds each, alternating | run took {:.0} s\n",
        if mysqk_version.is_empty() {
            "mysqk"
        } else {
            &mysqk_version
        },
        ptk_version,
        server_version,
        cpus,
        o.rounds,
        elapsed
    );
    md.push_str(&table(&rows));
    let _ = writeln!(
        md,
        "\nFigures are medians over the rounds (S2: over every query of every round; \
         S4 CPU: the sum of the rounds' windows). How each is measured:\n"
    );
    for s in SCENARIOS {
        let _ = writeln!(md, "{}", (s.method)(&o));
    }
    let _ = writeln!(md, "\nSamples (mysqk | pt-kill):\n");
    for r in &rows {
        let _ = writeln!(
            md,
            "- {}: {} | {}",
            r.scenario,
            samples(&r.mysqk),
            samples(&r.ptkill)
        );
    }
    if !ctx.notes.is_empty() {
        let _ = writeln!(md, "\nNotes:\n");
        for n in &ctx.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    println!("\n{md}");
    if let Some(parent) = o.out.parent() {
        let _ = fs::create_dir_all(parent);
    }
    match fs::write(&o.out, &md) {
        Ok(()) => eprintln!("bench: wrote {}", o.out.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", o.out.display()),
    }
    if o.keep {
        eprintln!("bench: kept {}", srv.dir.display());
    }
}
