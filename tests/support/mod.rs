//! Shared support for the integration tests: real MariaDB or MySQL servers,
//! users and clients (SPEC section 7: no mocked database, no skipped tests).
//!
//! `MYSQK_TEST_SERVER=mariadb|mysql` (default `mariadb`) picks the flavour of
//! every server this process starts. MariaDB is the host's `mariadbd`; MySQL
//! is Debian sid's `mysqld`, run by `chroot` from a sid root (bookworm's glibc
//! is too old for it) that this module builds with `mmdebstrap` when it is
//! missing ([`mysql_root`]). Each server started prints one line
//! `test server: <MariaDB|MySQL> <version>` to stderr.
//!
//! Every test binary that says `mod support;` gets
//! - one lazily started shared server ([`server()`]), and
//! - dedicated servers on demand ([`Server::start`]) for tests that crash,
//!   freeze or restart a server, or need replication.
//!
//! Servers live under `/tmp/mysqk-t-<pid>-<n>/` (a short path: a unix socket
//! path must fit in 108 bytes); a MySQL server's directory is that path inside
//! the sid root, since a chrooted mysqld sees nothing outside it. They die with the test process whatever
//! happens: `PR_SET_PDEATHSIG` covers a killed test process, an `atexit`
//! handler covers a normal or panicking exit, `Drop` covers a dedicated
//! server going out of scope, and stale directories of dead test processes are
//! swept at the next start.

// Each test binary uses only part of this module.
#![allow(dead_code)]

/// A real SMTP server (aiosmtpd: plain, STARTTLS, TLS) on 127.0.0.1 for the mail tests.
pub mod smtp;

use mysql::prelude::*;
use mysql::{Conn, OptsBuilder};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, Once, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Admin account created on every server (all privileges, any host).
pub const ADMIN_USER: &str = "tadmin";
pub const ADMIN_PASS: &str = "tadmin-pw";

/// Replication account created on a primary by [`Server::start_replica_of`].
pub const REPL_USER: &str = "trepl";
pub const REPL_PASS: &str = "trepl-pw";

const DIR_PREFIX: &str = "mysqk-t-";
/// Name of the server's pid file in its directory (read by the stale sweep).
const PID_FILE: &str = "server.pid";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read/write timeout of helper connections: long enough for the `SLEEP(n)`
/// statements tests run, short enough that a frozen server fails the test
/// instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

static NEXT_SERVER: AtomicU64 = AtomicU64::new(1);
static NEXT_UNIQUE: AtomicU64 = AtomicU64::new(1);

// ---------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------

fn find_binary(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn required_binary(name: &str, extra_dirs: &[&str]) -> PathBuf {
    find_binary(name, extra_dirs).unwrap_or_else(|| {
        panic!(
            "`{name}` not found (searched PATH and {extra_dirs:?}). The integration tests \
             need a real MariaDB server: run `make test` (its `deps` step installs \
             mariadb-server), or `apt-get install mariadb-server` yourself."
        )
    })
}

/// The server flavour of this test process (`MYSQK_TEST_SERVER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::MariaDb => "MariaDB",
            Flavor::MySql => "MySQL",
        }
    }
}

/// `MYSQK_TEST_SERVER=mariadb|mysql`, default `mariadb`. Anything else is a
/// mistake worth a loud failure rather than a silent default.
pub fn flavor() -> Flavor {
    static F: OnceLock<Flavor> = OnceLock::new();
    *F.get_or_init(|| match std::env::var("MYSQK_TEST_SERVER") {
        Err(_) => Flavor::MariaDb,
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "mariadb" => Flavor::MariaDb,
            "mysql" => Flavor::MySql,
            other => panic!("MYSQK_TEST_SERVER={other:?}: expected `mariadb` or `mysql`"),
        },
    })
}

pub fn is_mysql() -> bool {
    flavor() == Flavor::MySql
}

/// Where the Debian sid root with MySQL lives (`MYSQK_TEST_MYSQL_ROOT`
/// overrides). Kept short: socket paths inside it must fit in 108 bytes.
pub const DEFAULT_MYSQL_ROOT: &str = "/var/cache/mysqk-test/mysql-sid-root";

fn mysql_root_path() -> PathBuf {
    std::env::var_os("MYSQK_TEST_MYSQL_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MYSQL_ROOT))
}

/// The sid root holding `/usr/sbin/mysqld`, built on first use. Built in a
/// temporary directory beside it and renamed into place under an exclusive
/// `flock`, so concurrent test binaries (or engineers) never see half a root
/// and never build it twice.
pub fn mysql_root() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let root = mysql_root_path();
        if root.join("usr/sbin/mysqld").is_file() {
            return root;
        }
        let parent = root.parent().unwrap_or(Path::new("/")).to_path_buf();
        fs::create_dir_all(&parent).unwrap_or_else(|e| {
            panic!(
                "cannot create {} for the MySQL sid root: {e} (run the tests as root, or set \
                 MYSQK_TEST_MYSQL_ROOT to a writable place)",
                parent.display()
            )
        });
        let _lock = FileLock::exclusive(&root.with_extension("lock"));
        if root.join("usr/sbin/mysqld").is_file() {
            return root; // another process built it while we waited
        }
        let tmp = root.with_extension(format!("tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let cmd_text = format!(
            "mmdebstrap --variant=apt --aptopt='Acquire::Check-Valid-Until \"false\"' \
             --include=mysql-server-core,mysql-client-core sid {}",
            root.display()
        );
        eprintln_raw(&format!(
            "test support: building the MySQL sid root at {} (about 30 s, 500 MB)",
            root.display()
        ));
        let out = Command::new("mmdebstrap")
            .args([
                "--variant=apt",
                "--aptopt=Acquire::Check-Valid-Until \"false\"",
                "--include=mysql-server-core,mysql-client-core",
                "sid",
            ])
            .arg(&tmp)
            .stdin(Stdio::null())
            .output();
        let failure = match out {
            Err(e) => Some(format!(
                "cannot run mmdebstrap: {e} (install it: `apt-get install mmdebstrap`, or run \
                 `make deps` as root)"
            )),
            Ok(o) if !o.status.success() => {
                let err = String::from_utf8_lossy(&o.stderr);
                let lines: Vec<&str> = err.lines().collect();
                Some(format!(
                    "mmdebstrap failed ({}); last lines:\n{}",
                    o.status,
                    lines[lines.len().saturating_sub(30)..].join("\n")
                ))
            }
            Ok(_) if !tmp.join("usr/sbin/mysqld").is_file() => {
                Some("mmdebstrap succeeded but the root has no /usr/sbin/mysqld".into())
            }
            Ok(_) => None,
        };
        if let Some(why) = failure {
            let _ = fs::remove_dir_all(&tmp);
            panic!(
                "MYSQK_TEST_SERVER=mysql needs a Debian sid root with MySQL at {} and it could \
                 not be built: {why}\nBuild it by hand (as root, needs network):\n    {cmd_text}",
                root.display()
            );
        }
        fs::rename(&tmp, &root)
            .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), root.display()));
        root
    })
}

/// An exclusive `flock` on a file, released on drop (and by the kernel if the
/// process dies, so a crashed build never leaves the lock held).
struct FileLock(fs::File);

impl FileLock {
    fn exclusive(path: &Path) -> FileLock {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open lock file {}: {e}", path.display()));
        use std::os::fd::AsRawFd;
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            panic!("flock {}: {}", path.display(), io::Error::last_os_error());
        }
        FileLock(f)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Writes a line straight to the process's stderr, past the test harness's
/// output capture: the `test server:` lines must show in every run.
fn eprintln_raw(line: &str) {
    use std::io::Write;
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Inside the sid root: `mysqld --initialize-insecure` takes ~5 s, a copy of
/// an initialised datadir well under one, so every MySQL server starts from a
/// copy of this template (built once per root, same locking as the root).
/// The copy drops `auto.cnf`, so each server gets its own server_uuid
/// (replication refuses a replica with its primary's uuid).
const MYSQL_TEMPLATE: &str = "var/lib/mysqk-template-1";

fn mysql_template() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let root = mysql_root();
        let template = root.join(MYSQL_TEMPLATE);
        if template.join("mysql.ibd").is_file() {
            return template;
        }
        let _lock = FileLock::exclusive(&root.join("var/lib/mysqk-template.lock"));
        if template.join("mysql.ibd").is_file() {
            return template;
        }
        let inner_tmp = format!("/{MYSQL_TEMPLATE}.tmp-{}", std::process::id());
        let tmp = root.join(inner_tmp.trim_start_matches('/'));
        let _ = fs::remove_dir_all(&tmp);
        let out = Command::new("chroot")
            .arg(root)
            .arg("/usr/sbin/mysqld")
            .arg("--no-defaults")
            .arg("--user=root")
            .arg("--initialize-insecure")
            .arg(format!("--datadir={inner_tmp}"))
            .arg("--log-error-verbosity=1")
            .args(MYSQL_INNODB_ARGS)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "run chroot {} mysqld --initialize-insecure: {e}",
                    root.display()
                )
            });
        if !out.status.success() || !tmp.join("mysql.ibd").is_file() {
            let _ = fs::remove_dir_all(&tmp);
            panic!(
                "mysqld --initialize-insecure failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::rename(&tmp, &template)
            .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), template.display()));
        template
    })
}

/// InnoDB sizes of the MySQL servers, shared by the template's initialise and
/// every start. 32 MB of redo: 8 MB made the initialise stall on checkpoints.
const MYSQL_INNODB_ARGS: &[&str] = &[
    "--innodb-buffer-pool-size=32M",
    "--innodb-redo-log-capacity=32M",
];

fn mariadbd() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        required_binary(
            "mariadbd",
            &["/usr/sbin", "/usr/local/sbin", "/usr/libexec"],
        )
    })
}

fn install_db() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        required_binary(
            "mariadb-install-db",
            &["/usr/bin", "/usr/local/bin", "/usr/sbin"],
        )
    })
}

// ---------------------------------------------------------------------------
// Process-wide cleanup
// ---------------------------------------------------------------------------

/// A server that must be gone when the process exits. `pid == 0`: not running
/// (the directory still has to be removed).
struct Live {
    pid: i32,
    dir: PathBuf,
}

fn registry() -> &'static Mutex<HashMap<u64, Live>> {
    static R: OnceLock<Mutex<HashMap<u64, Live>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A panicking test must not make every later test fail on a poisoned lock.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs at process exit (normal end of the harness, also after failed tests).
/// Statics are never dropped, so this is what stops the shared server.
extern "C" fn kill_all_at_exit() {
    let reg = match registry().try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        // Someone holds it while the process exits: PDEATHSIG still kills the
        // servers, the next run sweeps the directories.
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    for live in reg.values() {
        if live.pid > 0 {
            unsafe {
                libc::kill(live.pid, libc::SIGKILL);
                libc::waitpid(live.pid, std::ptr::null_mut(), 0);
            }
        }
        let _ = fs::remove_dir_all(&live.dir);
    }
}

fn init_process_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        sweep_stale_dirs();
        unsafe {
            libc::atexit(kill_all_at_exit);
        }
    });
}

fn pid_alive(pid: i32) -> bool {
    // kill(pid, 0) == 0, or EPERM: the process exists.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

/// Removes `/tmp/mysqk-t-<pid>-<n>` (also inside the MySQL sid root) left
/// behind by test processes that were SIGKILLed (no atexit). A server still
/// running from such a directory is killed first, but only if its command line
/// names that directory.
fn sweep_stale_dirs() {
    sweep_stale_dirs_in(Path::new("/tmp"));
    // Only an existing root: sweeping must not build one.
    let root_tmp = mysql_root_path().join("tmp");
    if root_tmp.is_dir() {
        sweep_stale_dirs_in(&root_tmp);
    }
}

fn sweep_stale_dirs_in(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        let Some(Ok(owner)) = rest.split('-').next().map(str::parse::<i32>) else {
            continue;
        };
        if owner == std::process::id() as i32 || pid_alive(owner) {
            continue;
        }
        let dir = entry.path();
        // The server's own view of its directory (inside a chroot: /tmp/...).
        let inner = format!("/tmp/{name}");
        if let Ok(text) = fs::read_to_string(dir.join(PID_FILE)) {
            if let Ok(server_pid) = text.trim().parse::<i32>() {
                let cmdline = fs::read(format!("/proc/{server_pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&inner) {
                    unsafe {
                        libc::kill(server_pid, libc::SIGKILL);
                    }
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

// ---------------------------------------------------------------------------
// Spawner thread
// ---------------------------------------------------------------------------

type SpawnJob = Box<dyn FnOnce() -> io::Result<Child> + Send>;
type SpawnReq = (SpawnJob, mpsc::Sender<io::Result<Child>>);

/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not
/// the process. Test threads end after each test, so every mariadbd is forked
/// from this one thread, which lives until the process dies.
fn spawn_from_parent_thread(job: SpawnJob) -> io::Result<Child> {
    static TX: OnceLock<mpsc::Sender<SpawnReq>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnReq>();
        thread::Builder::new()
            .name("mariadbd-parent".into())
            .spawn(move || {
                // The sender sits in a static, so this loop never ends.
                for (job, reply) in rx {
                    let _ = reply.send(job());
                }
            })
            .expect("spawn the mariadbd parent thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((job, reply_tx))
        .expect("mariadbd parent thread is gone");
    reply_rx.recv().expect("mariadbd parent thread is gone")
}

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

/// Options of a dedicated server.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    /// MariaDB clamps values below 10 to 10. Privileged accounts (the admin)
    /// get one connection beyond this limit (`extra_max_connections` is
    /// another port, not used here).
    pub max_connections: u32,
    /// Binary log on (needed on a replication primary).
    pub log_bin: bool,
    /// Must differ between a primary and its replica.
    pub server_id: u32,
    /// Appended to mariadbd's command line, e.g. `"--event-scheduler=ON"`.
    pub extra_args: Vec<String>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            max_connections: 200,
            log_bin: false,
            server_id: 1,
            extra_args: Vec::new(),
        }
    }
}

/// A row of `information_schema.PROCESSLIST`: (id, user, command, time, info).
pub type ProcRow = (u64, String, String, u64, Option<String>);

/// A running `mariadbd` or `mysqld` with its own datadir, port and socket.
pub struct Server {
    key: u64,
    flavor: Flavor,
    /// The server's directory as this process sees it (inside the sid root
    /// for MySQL).
    dir: PathBuf,
    /// The same directory as the server sees it (the path inside the chroot
    /// for MySQL; equal to `dir` for MariaDB).
    inner_dir: PathBuf,
    datadir: PathBuf,
    socket: PathBuf,
    err_log: PathBuf,
    port: u16,
    args: Vec<OsString>,
    child: Mutex<Option<Child>>,
    /// Cached admin connection behind `exec`/`processlist`/...: opened once,
    /// so these helpers still work when `max_connections` is exhausted.
    admin_conn: Mutex<Option<Conn>>,
    /// MySQL with performance_schema on (read once): where `processlist()`
    /// reads from.
    ps_processlist: OnceLock<bool>,
}

/// The server shared by all tests of this test binary. Tests must use
/// [`unique`] names for users and schemas so they do not see each other.
pub fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        Server::start(ServerOpts {
            max_connections: 400,
            ..ServerOpts::default()
        })
    })
}

impl Server {
    /// Starts a fresh server (new datadir, free port) and waits until it
    /// accepts connections. Panics with the server's error log on failure.
    pub fn start(opts: ServerOpts) -> Server {
        Server::start_as(flavor(), opts)
    }

    /// [`Server::start`] of a given flavour, whatever `MYSQK_TEST_SERVER`
    /// says (the bench starts both in one process).
    pub fn start_as(flavor: Flavor, opts: ServerOpts) -> Server {
        init_process_hooks();
        let key = NEXT_SERVER.fetch_add(1, Ordering::SeqCst);
        let inner_dir = PathBuf::from(format!("/tmp/{DIR_PREFIX}{}-{key}", std::process::id()));
        let dir = match flavor {
            Flavor::MariaDb => inner_dir.clone(),
            Flavor::MySql => mysql_root().join(inner_dir.strip_prefix("/").unwrap_or(&inner_dir)),
        };
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        // Registered before anything can fail, so the directory is removed.
        lock(registry()).insert(
            key,
            Live {
                pid: 0,
                dir: dir.clone(),
            },
        );

        let mut srv = Server {
            key,
            flavor,
            inner_dir,
            datadir: dir.join("data"),
            socket: dir.join("s.sock"),
            err_log: dir.join("error.log"),
            dir,
            port: 0,
            args: Vec::new(),
            child: Mutex::new(None),
            admin_conn: Mutex::new(None),
            ps_processlist: OnceLock::new(),
        };
        srv.install_datadir();

        // A port found free can be taken before mariadbd binds it: retry.
        let mut attempt = 0;
        loop {
            attempt += 1;
            srv.port = pick_free_port();
            srv.args = srv.server_args(&opts);
            match srv.spawn_and_wait() {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.contains("Address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        let version = srv.create_admin();
        eprintln_raw(&format!(
            "test server: {} {version} (port {})",
            flavor.name(),
            srv.port
        ));
        srv
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    pub fn is_mysql(&self) -> bool {
        self.flavor == Flavor::MySql
    }

    /// A path of this server's directory as the server process sees it.
    fn inner(&self, host_path: &Path) -> String {
        match host_path.strip_prefix(&self.dir) {
            Ok(rel) => self.inner_dir.join(rel).display().to_string(),
            Err(_) => host_path.display().to_string(),
        }
    }

    fn install_datadir(&self) {
        match self.flavor {
            Flavor::MariaDb => self.install_mariadb_datadir(),
            Flavor::MySql => self.install_mysql_datadir(),
        }
    }

    /// A copy of the initialised template (see [`mysql_template`]).
    fn install_mysql_datadir(&self) {
        let template = mysql_template();
        let out = Command::new("cp")
            .arg("-a")
            .arg("--reflink=auto")
            .arg(template)
            .arg(&self.datadir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run cp: {e}"));
        if !out.status.success() {
            panic!(
                "copy {} -> {} failed: {}",
                template.display(),
                self.datadir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = fs::remove_file(self.datadir.join("auto.cnf"));
    }

    fn install_mariadb_datadir(&self) {
        let out = Command::new(install_db())
            // --no-defaults must come first; the innodb sizes must match the
            // ones the server runs with (small files: fast and light).
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.datadir.display()))
            .arg("--user=root")
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg("--skip-name-resolve")
            // The bootstrap's temporary tables in our own dir, not /tmp: a
            // concurrent install (or /tmp cleaner) removing `#sql-temptable-*`
            // there failed the install ("Unknown table 'mysql.tmp_user_sys'").
            .arg(format!("--tmpdir={}", self.dir.display()))
            .args(INNODB_ARGS)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", install_db().display()));
        if !out.status.success() {
            panic!(
                "mariadb-install-db failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn server_args(&self, opts: &ServerOpts) -> Vec<OsString> {
        let d = |p: &Path| self.inner(p);
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            // We run as root in CI; the server refuses that without --user.
            "--user=root".into(),
            format!("--datadir={}", d(&self.datadir)),
            format!("--socket={}", d(&self.socket)),
            format!("--pid-file={}", d(&self.dir.join(PID_FILE))),
            format!("--log-error={}", d(&self.err_log)),
            format!("--tmpdir={}", d(&self.dir)),
            "--bind-address=127.0.0.1".into(),
            format!("--port={}", self.port),
            // Accounts are 'user'@'%'; hosts in the processlist stay IPs.
            "--skip-name-resolve".into(),
            format!("--max-connections={}", opts.max_connections),
            // Tests open and drop many connections; never block 127.0.0.1.
            "--max-connect-errors=1000000".into(),
            format!("--server-id={}", opts.server_id),
            "--character-set-server=utf8mb4".into(),
            "--collation-server=utf8mb4_general_ci".into(),
            // Speed over durability; these datadirs are thrown away. MySQL
            // keeps its accounts in InnoDB, so it writes the log at each
            // commit (2: no fsync), or a SIGKILL loses the last second's
            // CREATE USERs; MariaDB's are in Aria.
            match self.flavor {
                Flavor::MariaDb => "--innodb-flush-log-at-trx-commit=0".into(),
                Flavor::MySql => "--innodb-flush-log-at-trx-commit=2".into(),
            },
            "--innodb-doublewrite=0".into(),
            // Many servers at once can exhaust the kernel's aio/io_uring limits.
            "--innodb-use-native-aio=0".into(),
        ];
        match self.flavor {
            Flavor::MariaDb => args.extend(INNODB_ARGS.iter().map(|s| s.to_string())),
            Flavor::MySql => {
                args.extend(MYSQL_INNODB_ARGS.iter().map(|s| s.to_string()));
                args.extend(
                    [
                        // LOAD DATA / SELECT INTO OUTFILE anywhere, as MariaDB.
                        "--secure-file-priv=",
                        // No X Protocol listener on 33060: it would collide
                        // between concurrent servers.
                        "--mysqlx=OFF",
                        // The default's events and binlog-expiry threads are not
                        // needed, and keep the processlist like MariaDB's.
                        "--event-scheduler=OFF",
                    ]
                    .map(String::from),
                );
            }
        }
        if opts.log_bin {
            args.push("--log-bin=mysql-bin".into());
            args.push("--binlog-format=ROW".into());
            args.push("--sync-binlog=0".into());
        } else {
            args.push("--skip-log-bin".into());
        }
        args.extend(opts.extra_args.iter().cloned());
        args.into_iter().map(OsString::from).collect()
    }

    /// Spawns mariadbd (from the parent thread) and waits until it accepts a
    /// connection on its socket. `Err` carries a message with the log tail.
    fn spawn_and_wait(&self) -> Result<(), String> {
        let log_start = fs::metadata(&self.err_log).map(|m| m.len()).unwrap_or(0);
        let _ = fs::remove_file(&self.socket);
        let args = self.args.clone();
        let flavor = self.flavor;
        let out_path = self.dir.join("server.out");
        let child = spawn_from_parent_thread(Box::new(move || {
            let out = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out_path)?;
            let mut cmd = match flavor {
                Flavor::MariaDb => Command::new(mariadbd()),
                Flavor::MySql => {
                    // chroot execs mysqld, so the child (and its pid) is mysqld.
                    let mut c = Command::new("chroot");
                    c.arg(mysql_root()).arg("/usr/sbin/mysqld");
                    c
                }
            };
            cmd.args(&args)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out);
            unsafe {
                cmd.pre_exec(|| {
                    // Die with the thread that forked us (it lives as long as
                    // the test process).
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cmd.spawn()
        }))
        .unwrap_or_else(|e| panic!("spawn {}: {e}", self.flavor.name()));
        let pid = child.id() as i32;
        lock(registry()).entry(self.key).and_modify(|l| l.pid = pid);
        *lock(&self.child) = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // A statement of its own: an `if let` scrutinee's guard would
            // live through the block, and forget_child() locks it again.
            let exited = lock(&self.child)
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.forget_child();
                return Err(format!(
                    "{} on port {} exited during startup ({status}); error log:\n{}",
                    self.flavor.name(),
                    self.port,
                    self.log_since(log_start)
                ));
            }
            if self.root_socket_conn().is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(format!(
                    "{} on port {} did not accept connections within {:?}; error log:\n{}",
                    self.flavor.name(),
                    self.port,
                    START_TIMEOUT,
                    self.log_since(log_start)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Last ~60 lines of the error log written since byte `start`.
    fn log_since(&self, start: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&self.err_log) {
            let _ = f.seek(SeekFrom::Start(start));
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The tail of the server's error log (for assertion messages).
    pub fn error_log_tail(&self) -> String {
        self.log_since(0)
    }

    /// root@localhost over the unix socket: passwordless, used only to
    /// bootstrap the admin account and to probe readiness.
    fn root_socket_conn(&self) -> mysql::Result<Conn> {
        let opts = OptsBuilder::new()
            .socket(Some(self.socket.to_string_lossy().into_owned()))
            .user(Some("root"))
            .read_timeout(Some(CONNECT_TIMEOUT))
            .write_timeout(Some(CONNECT_TIMEOUT));
        Conn::new(opts)
    }

    /// Creates the admin account; returns `VERSION()`. On the bootstrap
    /// connection, so no other connection counts against max_connections.
    fn create_admin(&self) -> String {
        let mut c = self.root_socket_conn().expect("root over the socket");
        for sql in [
            format!("CREATE USER '{ADMIN_USER}'@'%' IDENTIFIED BY '{ADMIN_PASS}'"),
            format!("GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION"),
        ] {
            c.query_drop(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        c.query_first::<String, _>("SELECT VERSION()")
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn forget_child(&self) {
        if let Some(mut c) = lock(&self.child).take() {
            let _ = c.wait();
        }
        lock(registry()).entry(self.key).and_modify(|l| l.pid = 0);
        // Its connection died with the server.
        *lock(&self.admin_conn) = None;
    }

    // --- addresses -------------------------------------------------------

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the form `[db_info]` wants.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// `mysql://user:pass@127.0.0.1:port` (no percent-encoding: keep test
    /// passwords URL-safe).
    pub fn url_for(&self, user: &str, pass: &str) -> String {
        format!("mysql://{user}:{pass}@127.0.0.1:{}", self.port)
    }

    // --- process control -------------------------------------------------

    /// Pid of the running mariadbd. Panics if it is not running.
    pub fn pid(&self) -> u32 {
        lock(&self.child)
            .as_ref()
            .map(Child::id)
            .expect("server is not running")
    }

    pub fn is_running(&self) -> bool {
        lock(&self.child)
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Crash: SIGKILL and reap. No-op if it is not running.
    pub fn kill9(&self) {
        if let Some(c) = lock(&self.child).as_mut() {
            let _ = c.kill();
        }
        self.forget_child();
    }

    /// Clean shutdown: SIGTERM, wait (SIGKILL after 30 s).
    pub fn stop(&self) {
        if let Some(c) = lock(&self.child).as_mut() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
        }
        self.forget_child();
    }

    /// Starts the server again on the same port and datadir (killing it
    /// first if it still runs) and waits until it accepts connections.
    pub fn restart(&self) {
        if lock(&self.child).is_some() {
            self.kill9();
        }
        if let Err(e) = self.spawn_and_wait() {
            panic!("restart: {e}");
        }
    }

    /// Freezes the server (it keeps its sockets but answers nothing).
    pub fn sigstop(&self) {
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGSTOP);
        }
    }

    pub fn sigcont(&self) {
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGCONT);
        }
    }

    // --- connections -----------------------------------------------------

    /// TCP connection options with short connect and bounded I/O timeouts.
    /// `prefer_socket(false)`: otherwise the mysql crate silently switches a
    /// 127.0.0.1 connection to the unix socket (host `localhost`).
    pub fn opts(&self, user: &str, pass: &str) -> OptsBuilder {
        OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(pass))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
            .read_timeout(Some(IO_TIMEOUT))
            .write_timeout(Some(IO_TIMEOUT))
    }

    pub fn connect(&self, user: &str, pass: &str) -> Result<Conn, mysql::Error> {
        Conn::new(self.opts(user, pass))
    }

    /// A new admin connection over TCP. Panics if it cannot connect.
    pub fn admin(&self) -> Conn {
        self.connect(ADMIN_USER, ADMIN_PASS)
            .unwrap_or_else(|e| panic!("admin connection to port {}: {e}", self.port))
    }

    /// Runs `f` on the cached admin connection, reconnecting once if that
    /// connection broke (server restarted, killed). SQL errors are not retried.
    pub fn with_admin<T>(
        &self,
        mut f: impl FnMut(&mut Conn) -> mysql::Result<T>,
    ) -> mysql::Result<T> {
        let mut guard = lock(&self.admin_conn);
        if let Some(conn) = guard.as_mut() {
            match f(conn) {
                Err(e) if !matches!(e, mysql::Error::MySqlError(_)) => *guard = None,
                other => return other,
            }
        }
        let mut conn = self.connect(ADMIN_USER, ADMIN_PASS)?;
        let result = f(&mut conn);
        *guard = Some(conn);
        result
    }

    /// Make everything written so far survive a `kill -9`. The test servers
    /// run with `innodb_flush_log_at_trx_commit=0` (speed): `FLUSH TABLES`
    /// covers MariaDB's Aria system tables, but MySQL keeps its accounts in
    /// InnoDB, whose redo log is flushed only once a second. One commit with
    /// the log flushed at commit carries every earlier change with it.
    pub fn make_durable(&self) {
        self.exec("FLUSH TABLES");
        self.exec("SET GLOBAL innodb_flush_log_at_trx_commit = 1");
        self.exec("CREATE TABLE IF NOT EXISTS mysql.mysqk_durable (i INT) ENGINE=InnoDB");
        self.exec("INSERT INTO mysql.mysqk_durable VALUES (1)");
    }

    /// Executes statements (`;`-separated is fine) as admin; panics on error.
    pub fn exec(&self, sql: &str) {
        self.with_admin(|c| c.query_drop(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs a query as admin and returns all rows; panics on error.
    pub fn query<T: FromRow>(&self, sql: &str) -> Vec<T> {
        self.with_admin(|c| c.query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `KILL <id>` as admin. `Unknown thread id` is ignored.
    pub fn kill_thread(&self, id: u64) {
        match self.with_admin(|c| c.query_drop(format!("KILL {id}"))) {
            Ok(()) => {}
            Err(mysql::Error::MySqlError(e)) if e.code == 1094 => {}
            Err(e) => panic!("KILL {id}: {e}"),
        }
    }

    // --- users -----------------------------------------------------------

    /// `CREATE USER 'name'@'%'` then one `GRANT <g> TO 'name'@'%'` per entry,
    /// e.g. `&["PROCESS ON *.*", "SELECT ON db1.*"]`.
    pub fn create_user(&self, name: &str, password: &str, grants: &[&str]) {
        self.exec(&format!(
            "CREATE USER '{}'@'%' IDENTIFIED BY '{}'",
            sql_str(name),
            sql_str(password)
        ));
        for g in grants {
            self.exec(&format!("GRANT {g} TO '{}'@'%'", sql_str(name)));
        }
    }

    /// An application user: ALL on `schema.*` only (creates the schema), no
    /// SUPER / CONNECTION ADMIN / PROCESS — it can kill only its own threads.
    pub fn create_app_user(&self, name: &str, password: &str, schema: &str) {
        self.exec(&format!("CREATE DATABASE IF NOT EXISTS `{schema}`"));
        self.create_user(
            name,
            password,
            &[&format!("ALL PRIVILEGES ON `{schema}`.*")],
        );
    }

    /// A monitor user: PROCESS (sees every thread, kills none but its own);
    /// on MySQL also SELECT on performance_schema, which its lock-wait,
    /// metadata-lock and statement-timer tables need (README: what a db_puser
    /// needs). [`Server::create_user`] makes one without it.
    pub fn create_monitor_user(&self, name: &str, password: &str) {
        match self.flavor {
            Flavor::MariaDb => self.create_user(name, password, &["PROCESS ON *.*"]),
            Flavor::MySql => self.create_user(
                name,
                password,
                &["PROCESS ON *.*", "SELECT ON performance_schema.*"],
            ),
        }
    }

    pub fn drop_user(&self, name: &str) {
        self.exec(&format!("DROP USER IF EXISTS '{}'@'%'", sql_str(name)));
    }

    // --- clients ---------------------------------------------------------

    /// Opens `n` idle connections; keep the Vec alive as long as they should
    /// stay in the processlist (`Command=Sleep`).
    pub fn open_idle(&self, user: &str, pass: &str, n: usize) -> Vec<Conn> {
        (0..n)
            .map(|i| {
                self.connect(user, pass)
                    .unwrap_or_else(|e| panic!("idle connection {i} as {user}: {e}"))
            })
            .collect()
    }

    /// Connects as `user`, records the connection id, and runs `sql` on a
    /// background thread. Panics if the connection cannot be opened.
    pub fn spawn_query(&self, user: &str, pass: &str, sql: &str) -> BgQuery {
        let conn = self
            .connect(user, pass)
            .unwrap_or_else(|e| panic!("connect as {user} for `{sql}`: {e}"));
        BgQuery::start(conn, sql)
    }

    /// The full processlist, ordered by id, read as admin. On MySQL from
    /// performance_schema (unless it is off), as mysqk reads it:
    /// information_schema's TIME of a stored procedure restarts with each
    /// statement inside it.
    pub fn processlist(&self) -> Vec<ProcRow> {
        let ps = *self.ps_processlist.get_or_init(|| {
            self.is_mysql() && self.query::<u64>("SELECT @@performance_schema").first() == Some(&1)
        });
        self.query(if ps {
            "SELECT ID, IFNULL(USER, ''), COMMAND, IFNULL(TIME, 0), INFO FROM performance_schema.processlist ORDER BY ID"
        } else {
            "SELECT ID, IFNULL(USER, ''), COMMAND, TIME, INFO FROM information_schema.PROCESSLIST ORDER BY ID"
        })
    }

    /// A `TIME` value that proves `secs` seconds have passed: MySQL's may
    /// read 1 s high (TIME=1 after 0.4 s), MariaDB's is rounded down.
    pub fn time_at_least(&self, secs: u64) -> u64 {
        match self.flavor {
            Flavor::MariaDb => secs,
            Flavor::MySql => secs + 1,
        }
    }

    /// The processlist row of one thread, if it is there.
    pub fn thread(&self, id: u64) -> Option<ProcRow> {
        self.processlist().into_iter().find(|r| r.0 == id)
    }

    /// Still in the processlist (a just-killed thread may linger as `Killed`).
    pub fn thread_exists(&self, id: u64) -> bool {
        self.thread(id).is_some()
    }

    /// Waits until thread `id` is gone from the processlist.
    pub fn wait_thread_gone(&self, id: u64, within: Duration) {
        wait_until(
            within,
            &format!("thread {id} to leave the processlist"),
            || !self.thread_exists(id),
        );
    }

    /// Waits until thread `id` has certainly run a statement (`Command=Query`)
    /// for at least `secs` seconds — e.g. before expecting `k_longtime` to
    /// match. MySQL's TIME may read 1 s high, so there it waits for one more.
    pub fn wait_query_time(&self, id: u64, secs: u64) {
        let at_least = self.time_at_least(secs);
        wait_until(
            Duration::from_secs(secs + 30),
            &format!("thread {id} to run a query for {secs} s"),
            || matches!(self.thread(id), Some((_, _, cmd, t, _)) if cmd == "Query" && t >= at_least),
        );
    }

    // --- replication -----------------------------------------------------

    /// Makes `self` a replica of `primary` (which needs `log_bin: true` and
    /// another `server_id`) and waits until both replication threads run.
    /// MySQL 8.4+ dropped the MASTER/SLAVE statements: it gets `SHOW BINARY
    /// LOG STATUS` / `CHANGE REPLICATION SOURCE` / `START REPLICA`, and the
    /// replica fetches the primary's RSA key (`caching_sha2_password` over
    /// plain TCP).
    pub fn start_replica_of(&self, primary: &Server) {
        primary.exec(&format!(
            "CREATE USER IF NOT EXISTS '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASS}'; \
             GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'"
        ));
        let show = match primary.flavor {
            Flavor::MariaDb => "SHOW MASTER STATUS",
            Flavor::MySql => "SHOW BINARY LOG STATUS",
        };
        let status: Vec<mysql::Row> = primary.query(show);
        let row = status
            .first()
            .unwrap_or_else(|| panic!("{show} is empty: start the primary with log_bin: true"));
        let file: String = row.get(0).expect("binlog file");
        let pos: u64 = row.get(1).expect("binlog position");
        let port = primary.port();
        self.exec(&match self.flavor {
            Flavor::MariaDb => format!(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, \
                 MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASS}', \
                 MASTER_LOG_FILE='{file}', MASTER_LOG_POS={pos}, MASTER_CONNECT_RETRY=1; \
                 START SLAVE"
            ),
            Flavor::MySql => format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={port}, \
                 SOURCE_USER='{REPL_USER}', SOURCE_PASSWORD='{REPL_PASS}', \
                 SOURCE_LOG_FILE='{file}', SOURCE_LOG_POS={pos}, SOURCE_CONNECT_RETRY=1, \
                 GET_SOURCE_PUBLIC_KEY=1; START REPLICA"
            ),
        });
        wait_until(
            Duration::from_secs(30),
            "replica IO and SQL threads to run",
            || self.replica_running() == Some((true, true)),
        );
    }

    /// The replica's `SHOW SLAVE STATUS` (MariaDB) / `SHOW REPLICA STATUS`
    /// (MySQL) row, `None` when it is not a replica.
    pub fn replica_status(&self) -> Option<mysql::Row> {
        let sql = match self.flavor {
            Flavor::MariaDb => "SHOW SLAVE STATUS",
            Flavor::MySql => "SHOW REPLICA STATUS",
        };
        self.query::<mysql::Row>(sql).into_iter().next()
    }

    /// (IO thread running, SQL thread running), `None` when not a replica.
    pub fn replica_running(&self) -> Option<(bool, bool)> {
        let (io, sql) = match self.flavor {
            Flavor::MariaDb => ("Slave_IO_Running", "Slave_SQL_Running"),
            Flavor::MySql => ("Replica_IO_Running", "Replica_SQL_Running"),
        };
        self.replica_status().map(|r| {
            let col = |name: &str| {
                r.get_opt::<String, _>(name)
                    .and_then(Result::ok)
                    .unwrap_or_default()
            };
            (col(io) == "Yes", col(sql) == "Yes")
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Drop the admin connection first: closing it on a dead server is fine.
        *lock(&self.admin_conn) = None;
        self.kill9();
        lock(registry()).remove(&self.key);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Small files: a fresh datadir is ~25 MB and initialises in under a second.
/// Shared by mariadb-install-db and mariadbd so the two agree.
const INNODB_ARGS: &[&str] = &[
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=8M",
    "--innodb-data-file-path=ibdata1:12M:autoextend",
];

/// A port that was free a moment ago. Taken from 15000..32000, below Linux's
/// ephemeral range, so it does not collide with outgoing client sockets.
fn pick_free_port() -> u16 {
    for _ in 0..200 {
        let port = 15000 + (random_u64() % 17000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 in 15000..32000");
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT_UNIQUE.fetch_add(1, Ordering::SeqCst));
    h.write_u32(std::process::id());
    h.finish()
}

/// Escapes a value for a single-quoted SQL string literal.
pub fn sql_str(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "''")
}

// ---------------------------------------------------------------------------
// Background queries
// ---------------------------------------------------------------------------

/// A statement running on its own connection in a background thread.
pub struct BgQuery {
    /// `CONNECTION_ID()` of the connection running the statement: the
    /// thread id mysqk sees in the processlist and kills.
    pub conn_id: u64,
    handle: JoinHandle<(Conn, Result<(), mysql::Error>)>,
}

impl BgQuery {
    /// Runs `sql` on `conn` (e.g. one built from [`Server::opts`]).
    pub fn start(mut conn: Conn, sql: &str) -> BgQuery {
        let conn_id: u64 = conn
            .query_first("SELECT CONNECTION_ID()")
            .expect("SELECT CONNECTION_ID()")
            .expect("CONNECTION_ID() row");
        let sql = sql.to_string();
        let handle = thread::Builder::new()
            .name(format!("bg-query-{conn_id}"))
            .spawn(move || {
                let result = conn.query_drop(&sql);
                (conn, result)
            })
            .expect("spawn background query thread");
        BgQuery { conn_id, handle }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the statement's result.
    pub fn join(self) -> Result<(), mysql::Error> {
        self.join_conn().1
    }

    /// Waits for the statement and gives the connection back, e.g. to check
    /// it still works (`SELECT 1`) after a `KILL QUERY`.
    pub fn join_conn(self) -> (Conn, Result<(), mysql::Error>) {
        self.handle
            .join()
            .expect("background query thread panicked")
    }

    /// Like `join`, but panics if the statement has not finished within `d`.
    pub fn join_within(self, d: Duration) -> Result<(), mysql::Error> {
        wait_until(
            d,
            &format!("background query on thread {} to finish", self.conn_id),
            || self.is_finished(),
        );
        self.join()
    }
}

/// What a client sees when its statement or connection was killed:
/// 1317 query interrupted (KILL QUERY), 1927 connection killed (MariaDB's
/// reply to KILL CONNECTION), 2013/2006 lost/gone (MySQL), or a broken socket.
pub fn is_killed_error(e: &mysql::Error) -> bool {
    match e {
        mysql::Error::MySqlError(e) => matches!(e.code, 1317 | 1927 | 2006 | 2013),
        mysql::Error::IoError(_) | mysql::Error::CodecError(_) => true,
        mysql::Error::DriverError(_) => true,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Misc helpers
// ---------------------------------------------------------------------------

/// A short name unique in this process and unlikely to clash with other
/// processes: `prefix` + counter + pid in base 36 (safe as a MySQL user or
/// schema name; stays under 32 characters for prefixes up to 16).
pub fn unique(prefix: &str) -> String {
    assert!(
        prefix.len() <= 16,
        "unique(): prefix `{prefix}` longer than 16 chars"
    );
    let n = NEXT_UNIQUE.fetch_add(1, Ordering::SeqCst);
    let mut pid = std::process::id();
    let mut suffix = Vec::new();
    while pid > 0 {
        suffix.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(pid % 36) as usize]);
        pid /= 36;
    }
    suffix.reverse();
    format!("{prefix}{n}_{}", String::from_utf8(suffix).unwrap())
}

/// Polls `f` every 50 ms until it returns true; panics with `what` if it does
/// not within `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The mysqk binary under test, with a clean environment: no `MYSQK_*`
/// variables leak in from the developer's shell, `RUST_LOG=info` (override
/// with `MYSQK_TEST_LOG`), no colours, stdin closed.
pub fn mysqk_bin() -> Command {
    // Not `env!`: examples/bench includes this module too, and cargo sets
    // the variable for integration tests only (the bench never calls this).
    let mut cmd = Command::new(option_env!("CARGO_BIN_EXE_mysqk").unwrap_or("mysqk"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MYSQK_") {
            cmd.env_remove(key);
        }
    }
    cmd.env(
        "RUST_LOG",
        std::env::var("MYSQK_TEST_LOG").unwrap_or_else(|_| "info".into()),
    );
    cmd.env("RUST_LOG_STYLE", "never");
    cmd.stdin(Stdio::null());
    cmd
}

/// A child process (e.g. `mysqk watch`) that is killed and reaped when
/// dropped, so a failing test leaves nothing running. It also gets
/// `PR_SET_PDEATHSIG`, so it dies if the spawning thread (the test) dies.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        ChildGuard(cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")))
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Sends a signal, e.g. `libc::SIGTERM` for a clean stop.
    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits up to `d` for the process to exit.
    pub fn wait_timeout(&mut self, d: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + d;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for child") {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` to completion, capturing stdout and stderr; kills it and
/// panics (showing what it printed) if it takes longer than `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let reader = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.join().unwrap()),
                String::from_utf8_lossy(&err.join().unwrap())
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// One test's own accounts on the shared server: a non-SUPER app user
/// (ALL on a schema of its own), a PROCESS-only monitor, one password, and a
/// temp dir for the ini and snapshots. Test files add their own `ini()`.
pub struct Tenant {
    pub dir: tempfile::TempDir,
    pub app: String,
    pub mon: String,
    pub pw: String,
}

impl Tenant {
    pub fn new(pw: &str) -> Tenant {
        let s = server();
        let (app, mon) = (unique("app"), unique("mon"));
        s.create_app_user(&app, pw, &unique("db"));
        s.create_monitor_user(&mon, pw);
        Tenant {
            dir: tempfile::tempdir().expect("temp dir"),
            app,
            mon,
            pw: pw.to_string(),
        }
    }
}

/// Writes `dir/mysqk.ini` (mode 0600: it holds passwords). Leading
/// whitespace of every line is stripped, so tests can indent the text.
pub fn write_ini(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mysqk.ini");
    let body: String = text
        .trim_start_matches('\n')
        .lines()
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    io::Write::write_all(&mut f, body.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
