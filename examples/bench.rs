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
//! Scenarios (the issue's targets are in the table this prints):
//! - S1 storm: N idle `app1` connections, all idle >= 2 s; time from the
//!   tool's start until none of them is left in the server's processlist.
//! - S2 reaction: both tools running as daemons (interval 1, limit 2 s); M
//!   `SELECT SLEEP(20)` started at random moments; per query, the delay from
//!   the moment it has run 2 s to the moment its client sees the kill.
//! - S3 scan cost: N idle connections of a user no rule matches; CPU
//!   seconds (user+sys from /proc) per check pass, passes counted on the
//!   server (`Com_select` for mysqk's `information_schema.PROCESSLIST` read,
//!   `Com_show_processlist` for pt-kill's `SHOW FULL PROCESSLIST`).
//! - S4 fleet: one `mysqk watch` over K instances (the same server under K
//!   dbids) against K pt-kill daemons; total RSS and CPU while idle.
//! - S5 cron: wall time of `mysqk kill --db all --dry-run` with nothing to
//!   kill; for pt-kill, the time until its first check is done (it has no
//!   one-shot mode: `--run-time` would add a whole interval).
//!
//! Tools run in turn (mysqk, pt-kill, mysqk, pt-kill, ...). Every time the
//! bench reports comes from the server (polling the processlist) or from the
//! victim's client, never from a tool's own exit time (S5 excepted: there
//! the wall time of the command is the figure asked for). mysqk passwords go
//! in an ini file (mode 0600); pt-kill takes its password in its DSN, which
//! is pt-kill's interface.

use mysql::prelude::*;
use mysql::{Conn, OptsBuilder};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{exit, Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const ADMIN: (&str, &str) = ("bench_admin", "Bench-admin-1");
/// pt-kill's login: all privileges, as a DBA would run it.
const PTK: (&str, &str) = ("bench_ptk", "Bench-ptk-1");
/// The application user whose threads are killed (no SUPER, no PROCESS).
const APP1: (&str, &str) = ("app1", "App1-pw-1");
/// Another application user: its connections are never victims.
const APP2: (&str, &str) = ("app2", "App2-pw-1");
/// mysqk's `db_puser`: PROCESS only.
const MON: (&str, &str) = ("monitor", "Monitor-pw-1");
const SCHEMA: &str = "benchdb";

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

struct Opts {
    mysqk: PathBuf,
    rounds: usize,
    out: PathBuf,
    only: Option<Vec<String>>,
    s1_conns: usize,
    s2_queries: usize,
    s2_spread: f64,
    s3_conns: usize,
    s3_window: u64,
    s4_instances: usize,
    s4_window: u64,
    s5_rounds: usize,
    keep: bool,
}

const USAGE: &str =
    "usage: bench [--mysqk PATH] [--rounds N (3)] [--out FILE] [--only S1,S2,...]\n\
    [--s1-conns N (2000)] [--s2-queries N (20)] [--s2-spread SECS (6)]\n\
    [--s3-conns N (3000)] [--s3-window SECS (20)] [--s4-instances N (50)]\n\
    [--s4-window SECS (20)] [--s5-rounds N (5)] [--keep]";

fn usage_error(msg: &str) -> ! {
    eprintln!("bench: {msg}\n{USAGE}");
    exit(2);
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        // target/release/examples/bench -> target/release/mysqk
        mysqk: std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("mysqk")))
            .unwrap_or_else(|| PathBuf::from("target/release/mysqk")),
        rounds: 3,
        out: PathBuf::from("bench/results/latest.md"),
        only: None,
        s1_conns: 2000,
        s2_queries: 20,
        s2_spread: 6.0,
        s3_conns: 3000,
        s3_window: 20,
        s4_instances: 50,
        s4_window: 20,
        s5_rounds: 5,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0);
            }
            "--keep" => {
                o.keep = true;
                continue;
            }
            _ => {}
        }
        let v = it
            .next()
            .unwrap_or_else(|| usage_error(&format!("{flag} needs a value")));
        let n = || -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage_error(&format!("{flag}: not a number: {v}")))
        };
        match flag.as_str() {
            "--mysqk" => o.mysqk = PathBuf::from(&v),
            "--rounds" => o.rounds = n().max(1) as usize,
            "--out" => o.out = PathBuf::from(&v),
            "--only" => {
                o.only = Some(v.split(',').map(|s| s.trim().to_uppercase()).collect());
            }
            "--s1-conns" => o.s1_conns = n() as usize,
            "--s2-queries" => o.s2_queries = n() as usize,
            "--s2-spread" => {
                o.s2_spread = v
                    .parse()
                    .unwrap_or_else(|_| usage_error(&format!("{flag}: not a number: {v}")))
            }
            "--s3-conns" => o.s3_conns = n() as usize,
            "--s3-window" => o.s3_window = n().max(1),
            "--s4-instances" => o.s4_instances = n().max(1) as usize,
            "--s4-window" => o.s4_window = n().max(1),
            "--s5-rounds" => o.s5_rounds = n().max(1) as usize,
            _ => usage_error(&format!("unknown flag {flag}")),
        }
    }
    o
}

impl Opts {
    fn wants(&self, s: &str) -> bool {
        self.only.as_ref().is_none_or(|l| l.iter().any(|x| x == s))
    }
}

// ---------------------------------------------------------------------------
// The throwaway server
// ---------------------------------------------------------------------------

fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn need_bin(name: &str) -> PathBuf {
    find_bin(name).unwrap_or_else(|| {
        eprintln!("bench: `{name}` not found; `make bench` installs it (needs root)");
        exit(1)
    })
}

const INNODB_ARGS: &[&str] = &[
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=8M",
    "--innodb-data-file-path=ibdata1:12M:autoextend",
];

struct Server {
    dir: PathBuf,
    port: u16,
    child: Child,
    keep: bool,
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Makes a child die with the bench (SIGKILL when our main thread exits).
fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Removes `/tmp/mysqk-bench-<pid>` directories of bench runs that died
/// (Ctrl-C: their mariadbd died with them, the directory stayed).
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

impl Server {
    fn start(keep: bool) -> Server {
        sweep_stale_dirs();
        let dir = PathBuf::from(format!("/tmp/mysqk-bench-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the bench directory");
        let datadir = dir.join("data");
        let mut install = Command::new(need_bin("mariadb-install-db"));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg("--skip-name-resolve")
            .args(INNODB_ARGS)
            .stdin(Stdio::null());
        if is_root() {
            install.arg("--user=root");
        }
        let out = install.output().expect("run mariadb-install-db");
        if !out.status.success() {
            eprintln!(
                "bench: mariadb-install-db failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            exit(1);
        }
        let port = free_port();
        let sock = dir.join("s.sock");
        let log = fs::File::create(dir.join("mariadbd.out")).expect("create mariadbd.out");
        let mut cmd = Command::new(need_bin("mariadbd"));
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .arg(format!("--tmpdir={}", dir.display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                // Storms of thousands of connections; the ulimit is raised by bench.sh.
                "--max-connections=5000",
                "--open-files-limit=20000",
                "--back-log=3000",
                "--table-open-cache=400",
                "--max-connect-errors=1000000",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-use-native-aio=0",
            ])
            .args(INNODB_ARGS)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("spawn mariadbd");
        let mut srv = Server {
            dir,
            port,
            child,
            keep,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut root = loop {
            let o = OptsBuilder::new()
                .socket(Some(sock.to_string_lossy().into_owned()))
                .user(Some("root"));
            if let Ok(c) = Conn::new(o) {
                break c;
            }
            if let Ok(Some(st)) = srv.child.try_wait() {
                eprintln!("bench: mariadbd exited ({st}):\n{}", srv.log_tail());
                exit(1);
            }
            if Instant::now() > deadline {
                eprintln!("bench: mariadbd not ready after 60 s:\n{}", srv.log_tail());
                exit(1);
            }
            thread::sleep(Duration::from_millis(50));
        };
        let stmts = [
            format!("CREATE DATABASE {SCHEMA}"),
            format!("CREATE USER '{}'@'%' IDENTIFIED BY '{}'", ADMIN.0, ADMIN.1),
            format!("GRANT ALL ON *.* TO '{}'@'%' WITH GRANT OPTION", ADMIN.0),
            format!("CREATE USER '{}'@'%' IDENTIFIED BY '{}'", PTK.0, PTK.1),
            format!("GRANT ALL ON *.* TO '{}'@'%'", PTK.0),
            format!("CREATE USER '{}'@'%' IDENTIFIED BY '{}'", APP1.0, APP1.1),
            format!("GRANT ALL ON {SCHEMA}.* TO '{}'@'%'", APP1.0),
            format!("CREATE USER '{}'@'%' IDENTIFIED BY '{}'", APP2.0, APP2.1),
            format!("GRANT ALL ON {SCHEMA}.* TO '{}'@'%'", APP2.0),
            format!("CREATE USER '{}'@'%' IDENTIFIED BY '{}'", MON.0, MON.1),
            format!("GRANT PROCESS ON *.* TO '{}'@'%'", MON.0),
        ];
        for s in &stmts {
            root.query_drop(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        srv
    }

    fn log_tail(&self) -> String {
        let t = fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn opts(&self, user: &str, pass: &str) -> OptsBuilder {
        OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(pass))
            .db_name(Some(SCHEMA))
            .prefer_socket(false)
            // Saves the driver's `SELECT @@max_allowed_packet` per connection.
            .max_allowed_packet(Some(16 << 20))
            .tcp_connect_timeout(Some(Duration::from_secs(10)))
            .read_timeout(Some(Duration::from_secs(120)))
            .write_timeout(Some(Duration::from_secs(30)))
    }

    fn admin(&self) -> Conn {
        Conn::new(self.opts(ADMIN.0, ADMIN.1)).expect("admin connection")
    }

    fn ptk_dsn(&self) -> String {
        format!("h=127.0.0.1,P={},u={},p={}", self.port, PTK.0, PTK.1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------
// Load: idle connections opened in parallel
// ---------------------------------------------------------------------------

/// Open socket descriptors of this process.
fn socket_fds() -> std::collections::HashSet<i32> {
    fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                })
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the server has closed every socket in `fds` (the client side
/// sees the FIN the moment KILL shuts a connection down). Watching our own
/// client sockets costs the server nothing, where polling
/// `information_schema.PROCESSLIST` costs it ~8 ms per poll with 2000
/// threads and would slow down whichever tool is being measured.
/// Returns how many are still open at `deadline`.
fn wait_closed(fds: &[i32], deadline: Instant) -> usize {
    let mut open: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLRDHUP,
            revents: 0,
        })
        .collect();
    while !open.is_empty() && Instant::now() < deadline {
        // SAFETY: `open` is a valid, exclusively borrowed array of pollfd.
        unsafe {
            libc::poll(open.as_mut_ptr(), open.len() as libc::nfds_t, 50);
        }
        open.retain(|p| p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) == 0);
        for p in open.iter_mut() {
            p.revents = 0;
        }
    }
    open.len()
}

/// `n` idle connections of `user`, opened by 4 threads (the server accepts
/// faster than one client connects). Returns them with their ids.
fn open_idle(srv: &Server, user: (&str, &str), n: usize) -> (Vec<Conn>, u64, u64) {
    let threads = 4.min(n.max(1));
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let count = per.min(n.saturating_sub(t * per));
            let opts = srv.opts(user.0, user.1);
            thread::spawn(move || {
                (0..count)
                    .map(|i| {
                        Conn::new(opts.clone()).unwrap_or_else(|e| {
                            eprintln!("bench: idle connection {i}: {e}");
                            exit(1)
                        })
                    })
                    .collect::<Vec<Conn>>()
            })
        })
        .collect();
    let conns: Vec<Conn> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("opener thread"))
        .collect();
    let ids = conns.iter().map(|c| u64::from(c.connection_id()));
    let lo = ids.clone().min().unwrap_or(0);
    let hi = ids.max().unwrap_or(0);
    (conns, lo, hi)
}

fn count(c: &mut Conn, sql: &str) -> u64 {
    c.query_first::<u64, _>(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or(0)
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        if Instant::now() > end {
            eprintln!("bench: timed out after {limit:?} waiting for {what}");
            exit(1);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the processlist holds only the bench's own admin connections:
/// the previous run's tool and victims are gone.
fn wait_quiet(admin: &mut Conn) {
    wait_for("the server to be quiet", Duration::from_secs(60), || {
        count(
            admin,
            &format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER NOT IN ('{}', 'system user', 'event_scheduler')",
                ADMIN.0
            ),
        ) == 0
    });
}

// ---------------------------------------------------------------------------
// Tools under test
// ---------------------------------------------------------------------------

struct Tool {
    child: Child,
    /// When `spawn` returned: the tool's process exists and has exec'd. The
    /// clock starts here, not before the fork: forking the bench (which may
    /// hold thousands of sockets and their buffers) costs milliseconds that
    /// belong to neither tool.
    started: Instant,
}

impl Tool {
    fn spawn(cmd: &mut Command, log: &Path) -> Tool {
        let out = fs::File::create(log).expect("tool log");
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .env_remove("MYSQK_CONFIG")
            .env_remove("MYSQK_KEY");
        die_with_parent(cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Tool {
            child,
            started: Instant::now(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, then SIGKILL after 5 s; reaps.
    fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the exit (polling every 0.2 ms: S5 times it); kills the
    /// tool after `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st.code().unwrap_or(-1));
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            thread::sleep(Duration::from_micros(200));
        }
    }
}

fn pt_kill() -> Command {
    let mut c = Command::new(need_bin("pt-kill"));
    // No network call to percona.com in the middle of a measurement.
    c.arg("--no-version-check");
    c
}

/// Writes an ini (mode 0600: it holds passwords) for `dbids` on the server.
fn write_ini(dir: &Path, name: &str, srv: &Server, dbids: &[String], commkill: &str) -> PathBuf {
    let mut text = format!(
        "[settings]\ncheck_interval=1\nsnapshot_dir={}\nconnect_timeout=5\nread_timeout=30\n\n[db_info]\n",
        dir.join(format!("{name}.snap")).display()
    );
    for d in dbids {
        let _ = writeln!(text, "{d}=127.0.0.1:{}", srv.port);
    }
    let _ = write!(
        text,
        "\n[db_auth]\n{}={}\n{}={}\n{}={}\n\n[db_commconfig]\ndb_puser={}\nrun_max_count=999\ndry_run=0\n\n[db_commkill]\n{commkill}\n",
        APP1.0, APP1.1, APP2.0, APP2.1, MON.0, MON.1, MON.0
    );
    let path = dir.join(format!("{name}.ini"));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .expect("write ini");
    f.write_all(text.as_bytes()).expect("write ini");
    path
}

/// CPU time (user+system) of a process, read two ways: clock ticks from
/// /proc/PID/stat (10 ms steps, but they include threads that have exited)
/// and the scheduler's per-thread runtime from /proc/PID/task/*/sched
/// (nanoseconds, live threads only; needs CONFIG_SCHED_DEBUG).
#[derive(Clone, Copy)]
struct Cpu {
    ticks: f64,
    precise: Option<f64>,
}

fn read_cpu(pid: i32) -> Cpu {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`, which may itself hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut precise = None;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let text = fs::read_to_string(t.path().join("sched")).unwrap_or_default();
            let ms = text
                .lines()
                .find(|l| l.starts_with("se.sum_exec_runtime"))
                .and_then(|l| l.rsplit(':').next())
                .and_then(|v| v.trim().parse::<f64>().ok());
            if let Some(ms) = ms {
                precise = Some(precise.unwrap_or(0.0) + ms / 1000.0);
            }
        }
    }
    Cpu {
        ticks: (tick(11) + tick(12)) / hz,
        precise,
    }
}

/// CPU seconds spent between two readings: the precise figure unless a
/// thread exited in between (the tick count is then ahead by more than its
/// 10 ms steps can explain).
fn cpu_spent(a: &[Cpu], b: &[Cpu]) -> f64 {
    let ticks: f64 = b.iter().zip(a).map(|(b, a)| b.ticks - a.ticks).sum();
    let precise: Option<f64> = b
        .iter()
        .zip(a)
        .map(|(b, a)| Some(b.precise? - a.precise?))
        .sum();
    match precise {
        Some(p) if (ticks - p).abs() <= 0.011 * b.len() as f64 + 0.05 * ticks => p,
        _ => ticks,
    }
}

/// A `kB` field of /proc/PID/status or smaps_rollup, in kB.
fn proc_kb(pid: i32, file: &str, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn global_status(c: &mut Conn, name: &str) -> u64 {
    let row: Option<(String, u64)> = c
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .unwrap_or_else(|e| panic!("SHOW GLOBAL STATUS: {e}"));
    row.map(|r| r.1).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Statistics and the report
// ---------------------------------------------------------------------------

fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

/// Nearest-rank percentile.
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

struct Row {
    scenario: String,
    unit: &'static str,
    mysqk: Vec<f64>,
    ptkill: Vec<f64>,
    /// How the single figure is taken from the samples.
    pct: f64,
    target: String,
    /// Largest ratio that meets the target (None: report only).
    max_ratio: Option<f64>,
    /// Absolute limit on mysqk's figure (S2's 150 ms).
    max_abs: Option<f64>,
}

impl Row {
    fn new(scenario: &str, unit: &'static str, target: &str) -> Row {
        Row {
            scenario: scenario.into(),
            unit,
            mysqk: Vec::new(),
            ptkill: Vec::new(),
            pct: 50.0,
            target: target.into(),
            max_ratio: None,
            max_abs: None,
        }
    }
    fn m(&self) -> f64 {
        percentile(&self.mysqk, self.pct)
    }
    fn p(&self) -> f64 {
        percentile(&self.ptkill, self.pct)
    }
    fn ratio(&self) -> f64 {
        self.m() / self.p()
    }
    fn verdict(&self) -> &'static str {
        let (m, r) = (self.m(), self.ratio());
        if m.is_nan() {
            return "n/a";
        }
        let ok_ratio = self.max_ratio.is_none_or(|x| r <= x);
        let ok_abs = self.max_abs.is_none_or(|x| m <= x);
        if self.max_ratio.is_none() && self.max_abs.is_none() {
            "(report)"
        } else if ok_ratio && ok_abs {
            "met"
        } else {
            "NOT met"
        }
    }
}

fn fmt_num(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "n/a".into();
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| scenario | mysqk | pt-kill | ratio mysqk/pt-kill | target | |\n|---|---:|---:|---:|---|---|\n",
    );
    for r in rows {
        let ratio = r.ratio();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario,
            fmt_num(r.m(), r.unit),
            fmt_num(r.p(), r.unit),
            if ratio.is_nan() {
                "n/a".into()
            } else {
                format!("{ratio:.3}x")
            },
            r.target,
            r.verdict()
        );
    }
    t
}

/// Every sample, or a summary when there are many (S2: one per query).
fn samples(v: &[f64]) -> String {
    if v.len() > 12 {
        return format!(
            "{} samples: min {:.1}, median {:.1}, p95 {:.1}, max {:.1}",
            v.len(),
            percentile(v, 0.0),
            median(v),
            percentile(v, 95.0),
            percentile(v, 100.0)
        );
    }
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
    parts.join(", ")
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Mysqk,
    PtKill,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Mysqk => "mysqk",
            Which::PtKill => "pt-kill",
        }
    }
}

/// mysqk, pt-kill, mysqk, pt-kill, ...
fn alternating(rounds: usize) -> Vec<(usize, Which)> {
    (0..rounds)
        .flat_map(|r| [(r, Which::Mysqk), (r, Which::PtKill)])
        .collect()
}

struct Ctx<'a> {
    o: &'a Opts,
    srv: &'a Server,
    dir: PathBuf,
    notes: Vec<String>,
}

fn progress(msg: &str) {
    eprintln!("[{}] {msg}", chrono::Local::now().format("%H:%M:%S"));
}

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

/// S1: N idle app1 connections; time until none is left.
fn s1(ctx: &mut Ctx) -> Row {
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
    row
}

/// S5: one-shot cost with nothing to kill.
fn s5(ctx: &mut Ctx) -> Row {
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
    row
}

fn wait_quiet_except(admin: &mut Conn, also: &str) {
    wait_for("the server to be quiet", Duration::from_secs(60), || {
        count(
            admin,
            &format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER NOT IN ('{}', '{also}', 'system user', 'event_scheduler')",
                ADMIN.0
            ),
        ) == 0
    });
}

/// True when this mysqk has the `watch` command (S2-S4 need it).
fn has_watch(mysqk: &Path) -> bool {
    Command::new(mysqk)
        .arg("--help")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim_start().starts_with("watch"))
        })
        .unwrap_or(false)
}

fn mysqk_watch(ctx: &Ctx, ini: &Path, log: &Path) -> Tool {
    Tool::spawn(
        Command::new(&ctx.o.mysqk).args(["watch", "-c", &ini.to_string_lossy()]),
        log,
    )
}

/// S3: CPU per pass over a processlist of N idle connections nothing matches.
fn s3(ctx: &mut Ctx) -> Row {
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
    row
}

/// S2: reaction delay from crossing k_longtime to the kill, per query.
fn s2(ctx: &mut Ctx) -> (Row, Row) {
    let m = ctx.o.s2_queries;
    let mut med = Row::new(
        &format!("S2 reaction: median delay after 2 s ({m} queries/round)"),
        "ms",
        "(report)",
    );
    let mut p95 = Row::new("S2 reaction: p95 delay after 2 s", "ms", "mysqk <= 150 ms");
    p95.pct = 95.0;
    p95.max_abs = Some(150.0);
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
        let (a, b) = match which {
            Which::Mysqk => (&mut med.mysqk, &mut p95.mysqk),
            Which::PtKill => (&mut med.ptkill, &mut p95.ptkill),
        };
        a.extend(&delays);
        b.extend(&delays);
    }
    (med, p95)
}

/// S4: one watch over K instances against K pt-kill daemons, idle.
fn s4(ctx: &mut Ctx) -> (Row, Row) {
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
    (rss, cpu)
}

/// xorshift64*: random start moments without a crate.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Rng(seed | 1)
    }
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

// ---------------------------------------------------------------------------

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
    if o.wants("S1") {
        rows.push(s1(&mut ctx));
    }
    if !watch && (o.wants("S2") || o.wants("S3") || o.wants("S4")) {
        ctx.notes.push(format!(
            "S2, S3, S4 not run: {} has no `watch` command",
            o.mysqk.display()
        ));
    }
    if watch && o.wants("S2") {
        let (a, b) = s2(&mut ctx);
        rows.push(a);
        rows.push(b);
    }
    if watch && o.wants("S3") {
        rows.push(s3(&mut ctx));
    }
    if watch && o.wants("S4") {
        let (a, b) = s4(&mut ctx);
        rows.push(a);
        rows.push(b);
    }
    if o.wants("S5") {
        rows.push(s5(&mut ctx));
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
         S4 CPU: the sum of the rounds' windows). How each is measured:\n\n\
         - S1: `mysqk kill --user app1 --sleep 1` vs `pt-kill --match-user app1 --match-command Sleep \
         --idle-time 1 --victims all --kill`; from the tool's start until the server's processlist \
         lists none of the {s1} connections.\n\
         - S2: `mysqk watch` (check_interval=1, k_longtime=2) vs `pt-kill --match-user app1 \
         --match-command Query --busy-time 2 --interval 1 --victims all --kill`; {q} `SELECT SLEEP(20)` \
         per round started at random moments over {spread} s; delay = when the query's own client \
         saw the kill, minus 2 s after it sent the query.\n\
         - S3: {s3} idle connections of a user no rule matches; both daemons at interval 1; CPU \
         (user+sys, /proc) over {w3} s windows divided by the passes the server counted (mysqk: \
         `Com_select`, pt-kill: `Com_show_processlist`); {rounds} rounds = about {p3} passes per tool \
         (the issue's 60 passes).\n\
         - S4: one `mysqk watch` over {k} dbids (the same server) vs {k} `pt-kill` daemons, interval 1, \
         nothing to kill; RSS summed over the processes (/proc/PID/status VmRSS) and CPU over \
         {rounds} idle windows of {w4} s ({t4} s in all, the issue's 60 s).\n\
         - S5: wall time of `mysqk kill --db all --dry-run` with nothing to kill; pt-kill has no \
         one-shot mode, so its figure is the time until it has finished its first check (its \
         `--verbose` \"Sleeping\" line), a lower bound of what a cron run of it would cost.\n",
        s1 = o.s1_conns,
        q = o.s2_queries,
        spread = o.s2_spread,
        s3 = o.s3_conns,
        w3 = o.s3_window,
        rounds = o.rounds,
        p3 = o.s3_window * o.rounds as u64,
        k = o.s4_instances,
        w4 = o.s4_window,
        t4 = o.s4_window * o.rounds as u64,
    );
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
