//! S4 fleet, in steady state: several fleets run side by side for
//! `--s4-settle` seconds (the 10 minutes), then one window of
//! `--s4-window` seconds is measured — RSS, CPU per second and bytes written
//! to disk per second (the status file, rewritten at most once a second; the
//! log), from /proc:
//! - one `mysqk watch` over K dbids (the same server) against K pt-kill
//!   daemons, interval 1, nothing to kill;
//! - one `mysqk watch` over the big fleet (500); pt-kill only with
//!   `--s4-ptkill-big` (500 Perl processes of ~25 MB and a compile each
//!   do not fit a shared 2-core machine);
//! - the memory figure: 100 instances x 3 users for 120 s, each pass reading
//!   60 rows (idle connections of a watched user no rule kills): RSS at the
//!   start, middle and end of those 120 s;
//! - 1000 instances at check_interval=5 on a closed port (no server: the
//!   fleet's own cost, its logins refused).
//!
//! Running them at the same time keeps the wall time at one settle period.
//! They do not see each other: every mysqk pass asks for the threads of
//! `s4_idle` only (its 60 idle connections, whichever fleets run), and
//! pt-kill logs in without PROCESS, so its processlist is its own 50
//! sessions, not the mysqk fleets' (it reads the whole list every pass).
//! Sharing the 2 CPUs makes every figure a little higher, not lower.

use crate::load::{count, open_idle, wait_for};
use crate::measure::{cpu_spent, proc_kb, read_cpu, Cpu};
use crate::opts::Opts;
use crate::report::Row;
use crate::scenario::{progress, Ctx, Scenario, MARIADB_ONLY};
use crate::server::{Server, APP1, APP2, MON, SCHEMA};
use crate::tool::{mysqk_watch, pt_kill, write_ini_file, Tool};
use mysql::prelude::*;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

pub const SCENARIO: Scenario = Scenario {
    id: "S4",
    needs_watch: true,
    servers: MARIADB_ONLY,
    run,
    method,
};

/// The user whose idle connections every mysqk pass reads (no rule kills
/// them: k_sleep=0, k_longtime far away).
const IDLE: (&str, &str) = ("s4_idle", "S4-idle-pw-1");
/// pt-kill's login here: no PROCESS, so it lists only its own sessions.
const PTK_OWN: (&str, &str) = ("s4_ptk", "S4-ptk-pw-1");
/// Idle connections of `IDLE`: the rows each pass reads.
const IDLE_ROWS: usize = 60;
/// The memory figure's fleet and how long it runs.
const MEM_INSTANCES: usize = 100;
const MEM_SECS: u64 = 120;
/// The idle fleet on a closed port.
const IDLE_INSTANCES: usize = 1000;
const IDLE_INTERVAL: u64 = 5;
/// The big fleet's interval: one server cannot answer 500
/// `information_schema.PROCESSLIST` reads a second (each walks every thread
/// under a global lock); at 5 s it gets 100 a second.
const BIG_INTERVAL: u64 = 5;

/// The held users of most fleets (db_puser last).
const USERS3: &[(&str, &str)] = &[APP1, APP2, MON];
/// The big fleet holds db_puser's session only: 1500 more server threads
/// would make every processlist read on the one server walk them (each read
/// of every fleet, under a global lock), until logins time out.
const USERS1: &[(&str, &str)] = &[MON];

/// The ini of one mysqk fleet: `k` dbids at `port`, `users` held each.
fn fleet_ini(
    dir: &Path,
    name: &str,
    k: usize,
    port: u16,
    interval: u64,
    users: &[(&str, &str)],
) -> PathBuf {
    let mut text = format!(
        "[settings]\ncheck_interval={interval}\nsnapshot_dir={}\nconnect_timeout=10\nread_timeout=30\n\n[db_info]\n",
        dir.join(format!("{name}.snap")).display()
    );
    for i in 1..=k {
        let _ = writeln!(text, "{name}_{i:04}=127.0.0.1:{port}");
    }
    text.push_str("\n[db_auth]\n");
    for (u, p) in users {
        let _ = writeln!(text, "{u}={p}");
    }
    let _ = write!(
        text,
        "\n[db_commconfig]\ndb_puser={}\nrun_max_count=999\ndry_run=0\n\n\
         [db_commkill]\nk_user={}\nk_longtime=3600\nk_sleep=0\n",
        MON.0, IDLE.0
    );
    write_ini_file(dir, name, &text)
}

/// One fleet under test: its processes and what it is.
struct Fleet {
    label: String,
    tools: Vec<Tool>,
    status: Option<PathBuf>,
    /// What a status line of an instance holding every session shows.
    all_held: String,
}

impl Fleet {
    fn mysqk(
        ctx: &Ctx,
        name: &str,
        k: usize,
        port: u16,
        interval: u64,
        users: &[(&str, &str)],
    ) -> Fleet {
        let ini = fleet_ini(&ctx.dir, name, k, port, interval, users);
        let mut names: Vec<String> = users.iter().map(|u| format!("\"{}\"", u.0)).collect();
        names.sort();
        let log = ctx.dir.join(format!("{name}.log"));
        Fleet {
            label: name.into(),
            tools: vec![mysqk_watch(ctx, &ini, &log)],
            status: Some(ctx.dir.join(format!("{name}.snap")).join("mysqk.status")),
            all_held: format!(
                "\"connected\":true,\"connected_users\":[{}]",
                names.join(",")
            ),
        }
    }

    fn pt_kill(ctx: &Ctx, name: &str, k: usize, interval: u64) -> Fleet {
        let dsn = format!(
            "h=127.0.0.1,P={},u={},p={}",
            ctx.srv.port(),
            PTK_OWN.0,
            PTK_OWN.1
        );
        let tools = (0..k)
            .map(|i| {
                Tool::spawn(
                    pt_kill().arg(&dsn).args([
                        "--match-user",
                        APP1.0,
                        "--match-command",
                        "Query",
                        "--busy-time",
                        "3600",
                        "--interval",
                        &interval.to_string(),
                        "--victims",
                        "all",
                        "--kill",
                    ]),
                    &ctx.dir.join(format!("{name}-{i}.log")),
                )
            })
            .collect();
        Fleet {
            label: name.into(),
            tools,
            status: None,
            all_held: String::new(),
        }
    }

    fn pids(&self) -> Vec<i32> {
        self.tools.iter().map(Tool::pid).collect()
    }

    fn rss_mb(&self) -> f64 {
        self.pids()
            .iter()
            .map(|p| proc_kb(*p, "status", "VmRSS:"))
            .sum::<u64>() as f64
            / 1024.0
    }

    fn pss_mb(&self) -> f64 {
        self.pids()
            .iter()
            .map(|p| proc_kb(*p, "smaps_rollup", "Pss:"))
            .sum::<u64>() as f64
            / 1024.0
    }

    fn cpu(&self) -> Vec<Cpu> {
        self.pids().iter().map(|p| read_cpu(*p)).collect()
    }

    /// Bytes the processes caused to be written to disk (/proc/PID/io).
    fn written(&self) -> u64 {
        self.pids()
            .iter()
            .map(|p| io_field(*p, "write_bytes:"))
            .sum()
    }

    /// Instances whose status line says every held user is connected.
    fn connected(&self) -> usize {
        let Some(path) = &self.status else { return 0 };
        let text = fs::read_to_string(path).unwrap_or_default();
        text.matches(&self.all_held).count()
    }

    /// Instances listed in the status file at all (the closed-port fleet).
    fn listed(&self) -> usize {
        let Some(path) = &self.status else { return 0 };
        let text = fs::read_to_string(path).unwrap_or_default();
        text.matches("\"addr\":").count()
    }

    fn status_bytes(&self) -> u64 {
        self.status
            .as_ref()
            .and_then(|p| fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    fn stop(self) {
        for t in self.tools {
            t.stop();
        }
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn io_field(pid: i32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The accounts S4 adds: the idle user whose rows each pass reads, and
/// pt-kill's own login without PROCESS.
fn accounts(srv: &Server) {
    let mut admin = srv.admin();
    for (u, p) in [IDLE, PTK_OWN] {
        for s in [
            format!("CREATE USER IF NOT EXISTS '{u}'@'%' IDENTIFIED BY '{p}'"),
            format!("GRANT ALL ON {SCHEMA}.* TO '{u}'@'%'"),
        ] {
            admin.query_drop(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }
}

/// Waits until every instance holds its sessions; false after `limit`
/// (the bench goes on and says how many did).
fn wait_connected_soft(f: &Fleet, k: usize, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while f.connected() < k {
        if Instant::now() > end {
            progress(&format!(
                "S4: {} holds every session on {} of {k} instances after {limit:?}; going on",
                f.label,
                f.connected()
            ));
            return false;
        }
        thread::sleep(Duration::from_millis(200));
    }
    true
}

fn wait_connected(f: &Fleet, k: usize, limit: Duration) {
    wait_for(&format!("{} to hold every session", f.label), limit, || {
        thread::sleep(Duration::from_millis(200));
        f.connected() >= k
    });
}

/// What one window measured of one fleet.
struct Window {
    rss: f64,
    pss: f64,
    cpu_pct: f64,
    written_kb_s: f64,
}

pub fn run(ctx: &mut Ctx) -> Vec<Row> {
    let o = ctx.o;
    let (k, big) = (o.s4_instances, o.s4_big);
    let (settle, w) = (o.s4_settle, o.s4_window);
    accounts(ctx.srv);
    let mut admin = ctx.srv.admin();
    let (idle, _, _) = open_idle(ctx.srv, IDLE, IDLE_ROWS);

    progress(&format!("S4: {k} instances: mysqk and {k} pt-kill"));
    let small = Fleet::mysqk(ctx, "s4_small", k, ctx.srv.port(), 1, USERS3);
    let ptk = Fleet::pt_kill(ctx, "s4_ptk", k, 1);
    wait_connected(&small, k, Duration::from_secs(120));
    wait_for("pt-kill to connect", Duration::from_secs(120), || {
        thread::sleep(Duration::from_millis(200));
        count(
            &mut admin,
            &format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{}'",
                PTK_OWN.0
            ),
        ) as usize
            >= k
    });
    // The memory figure first, while only the small fleets run: the
    // server answers every pass in time.
    progress(&format!(
        "S4: memory, {MEM_INSTANCES} instances x 3 users, {IDLE_ROWS} rows per pass, {MEM_SECS} s"
    ));
    let mem = Fleet::mysqk(ctx, "s4_mem", MEM_INSTANCES, ctx.srv.port(), 1, USERS3);
    wait_connected(&mem, MEM_INSTANCES, Duration::from_secs(120));
    let m0 = Instant::now();
    let mut mem_rss = vec![mem.rss_mb()];
    for half in 1..=2u32 {
        let at = m0 + Duration::from_secs(MEM_SECS) * half / 2;
        thread::sleep(at.saturating_duration_since(Instant::now()));
        mem_rss.push(mem.rss_mb());
    }
    let mem_passes = passes(&mem);
    mem.stop();
    progress(&format!(
        "S4 memory: RSS {:.1} / {:.1} / {:.1} MB at 0 / {} / {} s",
        mem_rss[0],
        mem_rss[1],
        mem_rss[2],
        MEM_SECS / 2,
        MEM_SECS
    ));

    progress(&format!(
        "S4: {big} instances at check_interval={BIG_INTERVAL}: mysqk{}",
        if o.s4_ptkill_big {
            format!(" and {big} pt-kill")
        } else {
            String::new()
        }
    ));
    let large = Fleet::mysqk(ctx, "s4_big", big, ctx.srv.port(), BIG_INTERVAL, USERS1);
    let ptk_big = o
        .s4_ptkill_big
        .then(|| Fleet::pt_kill(ctx, "s4_ptk_big", big, BIG_INTERVAL));
    wait_connected_soft(&large, big, Duration::from_secs(180));
    progress(&format!(
        "S4: {IDLE_INSTANCES} instances at check_interval={IDLE_INTERVAL} on a closed port"
    ));
    let closed = Fleet::mysqk(
        ctx,
        "s4_closed",
        IDLE_INSTANCES,
        closed_port(),
        IDLE_INTERVAL,
        USERS3,
    );
    wait_for(
        "the closed-port fleet to start",
        Duration::from_secs(60),
        || {
            thread::sleep(Duration::from_millis(200));
            closed.listed() >= IDLE_INSTANCES
        },
    );
    let t0 = Instant::now();
    let fleets: Vec<&Fleet> = [
        Some(&small),
        Some(&ptk),
        Some(&large),
        ptk_big.as_ref(),
        Some(&closed),
    ]
    .into_iter()
    .flatten()
    .collect();
    let rss_start: Vec<f64> = fleets.iter().map(|f| f.rss_mb()).collect();

    progress(&format!(
        "S4: fleets settling; measured from {settle} s after they were up, for {w} s"
    ));
    let mid_at = t0 + Duration::from_secs(settle) / 2;
    thread::sleep(mid_at.saturating_duration_since(Instant::now()));
    let rss_mid: Vec<f64> = fleets.iter().map(|f| f.rss_mb()).collect();
    let window_at = t0 + Duration::from_secs(settle);
    thread::sleep(window_at.saturating_duration_since(Instant::now()));
    // The window.
    let c0: Vec<Vec<Cpu>> = fleets.iter().map(|f| f.cpu()).collect();
    let b0: Vec<u64> = fleets.iter().map(|f| f.written()).collect();
    let w0 = Instant::now();
    thread::sleep(Duration::from_secs(w));
    let secs = w0.elapsed().as_secs_f64();
    let c1: Vec<Vec<Cpu>> = fleets.iter().map(|f| f.cpu()).collect();
    let b1: Vec<u64> = fleets.iter().map(|f| f.written()).collect();
    let got: Vec<Window> = fleets
        .iter()
        .enumerate()
        .map(|(i, f)| Window {
            rss: f.rss_mb(),
            pss: f.pss_mb(),
            cpu_pct: 100.0 * cpu_spent(&c0[i], &c1[i]) / secs,
            written_kb_s: b1[i].saturating_sub(b0[i]) as f64 / 1024.0 / secs,
        })
        .collect();
    // Still holding every session at the end: a steady state, not a
    // fleet that lost its sessions along the way.
    let held = [(small.connected(), k), (large.connected(), big)];
    let status_kb = [
        small.status_bytes(),
        large.status_bytes(),
        closed.status_bytes(),
    ]
    .map(|b| b as f64 / 1024.0);
    let ran = t0.elapsed().as_secs();
    for (f, w) in fleets.iter().zip(&got) {
        progress(&format!(
            "S4 {}: RSS {:.1} MB (PSS {:.1} MB), CPU {:.2} % of a core, {:.1} kB/s written",
            f.label, w.rss, w.pss, w.cpu_pct, w.written_kb_s
        ));
    }
    let labels: Vec<String> = fleets.iter().map(|f| f.label.clone()).collect();
    drop(fleets);
    small.stop();
    ptk.stop();
    large.stop();
    if let Some(f) = ptk_big {
        f.stop();
    }
    closed.stop();
    drop(idle);

    let mins = settle as f64 / 60.0;
    let at = |i: usize| &got[i];
    let (i_small, i_ptk, i_large) = (0, 1, 2);
    let i_ptk_big = o.s4_ptkill_big.then_some(3);
    let i_closed = got.len() - 1;
    let mut rows = Vec::new();

    let mut rss = Row::new(
        &format!("S4 fleet: total RSS, {k} instances, after {mins:.0} min"),
        "MB",
        "<= 0.1x",
    );
    rss.max_ratio = Some(0.1);
    rss.mysqk.push(at(i_small).rss);
    rss.ptkill.push(at(i_ptk).rss);
    rows.push(rss);
    let mut cpu = Row::new(
        &format!("S4 fleet: CPU, {k} instances, after {mins:.0} min"),
        "% core",
        "(report)",
    );
    cpu.mysqk.push(at(i_small).cpu_pct);
    cpu.ptkill.push(at(i_ptk).cpu_pct);
    rows.push(cpu);
    let mut wr = Row::new(
        &format!("S4 fleet: disk writes (status file, log), {k} instances"),
        "kB/s",
        "(report)",
    );
    wr.mysqk.push(at(i_small).written_kb_s);
    wr.ptkill.push(at(i_ptk).written_kb_s);
    rows.push(wr);

    let ptk_note = if o.s4_ptkill_big {
        format!(" at interval {BIG_INTERVAL}")
    } else {
        format!(" at interval {BIG_INTERVAL} (mysqk only)")
    };
    let mut rss = Row::new(
        &format!("S4 fleet: total RSS, {big} instances{ptk_note}, after {mins:.0} min"),
        "MB",
        if o.s4_ptkill_big {
            "<= 0.1x"
        } else {
            "(report)"
        },
    );
    if o.s4_ptkill_big {
        rss.max_ratio = Some(0.1);
    }
    rss.mysqk.push(at(i_large).rss);
    let mut cpu = Row::new(
        &format!("S4 fleet: CPU, {big} instances{ptk_note}, after {mins:.0} min"),
        "% core",
        "(report)",
    );
    cpu.mysqk.push(at(i_large).cpu_pct);
    let mut wr = Row::new(
        &format!("S4 fleet: disk writes (status file, log), {big} instances{ptk_note}"),
        "kB/s",
        "(report)",
    );
    wr.mysqk.push(at(i_large).written_kb_s);
    if let Some(i) = i_ptk_big {
        rss.ptkill.push(at(i).rss);
        cpu.ptkill.push(at(i).cpu_pct);
        wr.ptkill.push(at(i).written_kb_s);
    }
    rows.extend([rss, cpu, wr]);

    let mut peak = Row::new(
        &format!(
            "S4 memory: RSS, {MEM_INSTANCES} instances x 3 users, {IDLE_ROWS} rows/pass, peak of 0/{}/{} s",
            MEM_SECS / 2,
            MEM_SECS
        ),
        "MB",
        "mysqk <= 40 MB",
    );
    peak.pct = 100.0;
    peak.max_abs = Some(40.0);
    peak.mysqk = mem_rss.clone();
    rows.push(peak);
    let mut growth = Row::new(
        &format!("S4 memory: RSS growth over those {MEM_SECS} s"),
        "MB",
        "mysqk <= 2 MB (flat)",
    );
    growth.max_abs = Some(2.0);
    growth.mysqk.push(mem_rss[2] - mem_rss[0]);
    rows.push(growth);

    let mut idle_cpu = Row::new(
        &format!(
            "S4 idle: CPU, {IDLE_INSTANCES} instances, check_interval={IDLE_INTERVAL}, closed port (mysqk only)"
        ),
        "% core",
        "mysqk <= 5 % core",
    );
    idle_cpu.max_abs = Some(5.0);
    idle_cpu.mysqk.push(at(i_closed).cpu_pct);
    rows.push(idle_cpu);

    let flat: Vec<String> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            format!(
                "{l} {:.1} / {:.1} / {:.1}",
                rss_start[i], rss_mid[i], got[i].rss
            )
        })
        .collect();
    ctx.notes.push(format!(
        "S4 RSS (MB) when every fleet was up / after {:.0} min / at the end: {}; PSS at the end (shared pages split between the pt-kill processes): {}",
        mins / 2.0,
        flat.join(", "),
        labels
            .iter()
            .zip(&got)
            .map(|(l, w)| format!("{l} {:.1} MB", w.pss))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ctx.notes.push(format!(
        "S4 status files at the end: {k} instances {:.1} kB, {big} instances {:.1} kB, {IDLE_INSTANCES} closed-port instances {:.1} kB; \
         instances holding all their sessions at the end: {}/{k} (3 each) and {}/{big} (1 each); the fleets ran {ran} s; the memory fleet made {mem_passes} passes in {MEM_SECS} s",
        status_kb[0], status_kb[1], status_kb[2], held[0].0, held[1].0
    ));
    if !o.s4_ptkill_big {
        ctx.notes.push(format!(
            "S4 {big} pt-kill daemons not run: at ~25 MB RSS and a Perl compile each, {big} of them do not fit this shared 2-core machine \
             (`--s4-ptkill-big` runs them)"
        ));
    }
    rows
}

/// Passes the memory fleet's instances made (summed from its status file).
fn passes(f: &Fleet) -> u64 {
    let Some(path) = &f.status else { return 0 };
    let text = fs::read_to_string(path).unwrap_or_default();
    text.match_indices("\"passes\":")
        .filter_map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse::<u64>().ok()
        })
        .sum()
}

pub fn method(o: &Opts) -> String {
    format!(
        "- S4: fleets started side by side and measured after {settle} s ({mins:.0} min) of running, over one window of {w} s: \
         one `mysqk watch` over {k} dbids (the same server) vs {k} `pt-kill` daemons, interval 1, nothing to kill; \
         one `watch` over {big} dbids at check_interval={BIG_INTERVAL}{big_ptk}, holding db_puser's session only (one \
         server cannot answer {big} processlist reads a second, nor walk 1500 more threads in each); {IDLE_INSTANCES} dbids at check_interval={IDLE_INTERVAL} on a closed port (no server); \
         and before the big fleets start, {MEM_INSTANCES} dbids x 3 users at interval 1 for {MEM_SECS} s (RSS at 0, {half} \
         and {MEM_SECS} s). \
         The other mysqk instances hold 3 sessions each (app1, app2, monitor); each pass reads the {IDLE_ROWS} idle connections of \
         `{idle}`, which no rule kills; pt-kill logs in without PROCESS, so it lists only its own sessions and the mysqk fleets \
         do not enlarge its processlist. RSS from /proc/PID/status (summed over the pt-kill processes), CPU (user+sys) over the \
         window divided by its length, disk writes from /proc/PID/io write_bytes (mysqk: its status file, rewritten at most \
         once a second when it changed, and its log).",
        settle = o.s4_settle,
        mins = o.s4_settle as f64 / 60.0,
        w = o.s4_window,
        k = o.s4_instances,
        big = o.s4_big,
        big_ptk = if o.s4_ptkill_big {
            format!(" vs {} pt-kill daemons", o.s4_big)
        } else {
            " (mysqk only)".into()
        },
        half = MEM_SECS / 2,
        idle = IDLE.0,
    )
}
