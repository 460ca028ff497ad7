//! `make bench`: mysqk against pt-kill (Percona Toolkit) on throwaway
//! servers (MariaDB and MySQL 9.7), side by side, and one table of medians
//! and ratios.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/bench [--mysqk target/release/mysqk] [--rounds 3]
//!     [--only S1,S5] [--server mariadb|mysql|both] [--out bench/results/latest.md]
//!     [--s1-conns 2000] ...
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
//! - `s1.rs` ... `s7.rs`: one scenario each (their headers say what they
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
mod s6;
mod s7;
mod scenario;
mod server;
mod tool;

use opts::{parse_opts, usage_error};
use report::{Measured, Section};
use scenario::{progress, Ctx, Scenario};
use server::{flavor_id, is_root, Flavor, Server};
use std::fs;
use std::path::PathBuf;
use std::process::{exit, Command};
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
    s6::SCENARIO,
    s7::SCENARIO,
];

fn main() {
    let o = parse_opts();
    if !o.mysqk.is_file() {
        usage_error(&format!(
            "{} does not exist: cargo build --release first",
            o.mysqk.display()
        ));
    }
    if let Some(only) = &o.only {
        for id in only {
            if !SCENARIOS.iter().any(|s| s.id == id) {
                usage_error(&format!("--only: no scenario {id}"));
            }
        }
    }
    // Found now rather than after the MariaDB half of the run.
    if o.servers.contains(&Flavor::MySql) && !is_root() {
        usage_error(
            "MySQL runs from a Debian sid root by chroot, which needs root; \
             run as root or pass --server mariadb",
        );
    }
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
    let mut mysqk_version = version(Command::new(&o.mysqk).arg("--version"));
    if mysqk_version.is_empty() {
        mysqk_version = "mysqk".into();
    }
    let git = version(Command::new("git").args(["describe", "--always", "--dirty"]));
    if !git.is_empty() {
        mysqk_version = format!("{mysqk_version} (git {git})");
    }
    let watch = has_watch(&o.mysqk);
    let args = bench_args();
    // Read before anything runs: a bad file is better found now than after
    // the run.
    let mut sections = match fs::read_to_string(&o.out) {
        Ok(text) => report::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            eprintln!("bench: cannot read {}: {e}", o.out.display());
            exit(1);
        }
    };
    let scratch = Scratch::new(o.keep);
    let started = Instant::now();
    for &flavor in &o.servers {
        let todo: Vec<&Scenario> = SCENARIOS
            .iter()
            .filter(|s| o.wants(s.id) && s.servers.contains(&flavor))
            .filter(|s| {
                if s.needs_watch && !watch {
                    eprintln!(
                        "bench: {} not run: {} has no `watch` command",
                        s.id,
                        o.mysqk.display()
                    );
                }
                watch || !s.needs_watch
            })
            .collect();
        if todo.is_empty() {
            continue;
        }
        progress(&format!("starting a throwaway {}", flavor.name()));
        let srv = Server::start(flavor);
        let label = srv.label();
        // MySQL's VERSION() does not say MySQL.
        let full_version = if srv.version.contains(flavor.name()) {
            srv.version.clone()
        } else {
            format!("{} {}", flavor.name(), srv.version)
        };
        let dir = scratch.0.join(flavor_id(flavor));
        fs::create_dir_all(&dir).expect("create the runs directory");
        let mut ctx = Ctx {
            o: &o,
            srv: &srv,
            dir,
            notes: Vec::new(),
        };
        for s in todo {
            progress(&format!("{} on {label}", s.id));
            let t0 = Instant::now();
            let rows = (s.run)(&mut ctx);
            let measured = Measured {
                server_label: &label,
                server_version: &full_version,
                mysqk: &mysqk_version,
                ptkill: &ptk_version,
                args: &args,
                secs: t0.elapsed().as_secs_f64(),
            };
            let notes = std::mem::take(&mut ctx.notes);
            let new = Section::new(
                s.id,
                flavor_id(flavor),
                &measured,
                &rows,
                &(s.method)(&o),
                &notes,
            );
            println!("\n{}", new.text);
            match sections
                .iter_mut()
                .find(|x| x.id == new.id && x.server == new.server)
            {
                Some(old) => *old = new,
                None => sections.push(new),
            }
        }
        if o.keep {
            let _ = fs::write(ctx.dir.join("server-error.log"), srv.log_tail());
        }
    }
    sections.sort_by_key(|s| (section_rank(&s.id), s.server == flavor_id(Flavor::MySql)));
    let md = report::document(&sections);
    if let Some(parent) = o.out.parent() {
        let _ = fs::create_dir_all(parent);
    }
    match fs::write(&o.out, &md) {
        Ok(()) => eprintln!(
            "bench: wrote {} (run took {:.0} s)",
            o.out.display(),
            started.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("bench: cannot write {}: {e}", o.out.display());
            exit(1);
        }
    }
    if o.keep {
        eprintln!("bench: kept {}", scratch.0.display());
    }
}

/// Sections in `SCENARIOS` order; those of scenarios this bench does not
/// know (kept from the previous file) last.
fn section_rank(id: &str) -> usize {
    SCENARIOS
        .iter()
        .position(|s| s.id == id)
        .unwrap_or(SCENARIOS.len())
}

/// The bench's arguments as given, for the record (`--mysqk` and `--out`
/// say nothing about the figures).
fn bench_args() -> String {
    let mut out = vec!["bench".to_string()];
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--mysqk" || a == "--out" {
            it.next();
            continue;
        }
        out.push(a);
    }
    out.join(" ")
}

/// `/tmp/mysqk-bench-<pid>`: the tools' inis and logs, removed at the end
/// unless `--keep`.
struct Scratch(PathBuf, bool);

impl Scratch {
    fn new(keep: bool) -> Scratch {
        sweep_stale_dirs();
        let dir = PathBuf::from(format!("/tmp/mysqk-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the bench directory");
        Scratch(dir, keep)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.1 {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Removes `/tmp/mysqk-bench-<pid>` directories of bench runs that died
/// (Ctrl-C: their servers died with them, the directory stayed).
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(Ok(pid)) = name.strip_prefix("mysqk-bench-").map(str::parse::<i32>) else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) == 0 };
        if !alive {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}
