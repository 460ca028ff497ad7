//! The throwaway server the scenarios run against, and its accounts.

use mysql::prelude::*;
use mysql::{Conn, OptsBuilder};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{exit, Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub const ADMIN: (&str, &str) = ("bench_admin", "Bench-admin-1");
/// pt-kill's login: all privileges, as a DBA would run it.
pub const PTK: (&str, &str) = ("bench_ptk", "Bench-ptk-1");
/// The application user whose threads are killed (no SUPER, no PROCESS).
pub const APP1: (&str, &str) = ("app1", "App1-pw-1");
/// Another application user: its connections are never victims.
pub const APP2: (&str, &str) = ("app2", "App2-pw-1");
/// mysqk's `db_puser`: PROCESS only.
pub const MON: (&str, &str) = ("monitor", "Monitor-pw-1");
pub const SCHEMA: &str = "benchdb";

pub fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub fn need_bin(name: &str) -> PathBuf {
    find_bin(name).unwrap_or_else(|| {
        eprintln!("bench: `{name}` not found; `make bench` installs it (needs root)");
        exit(1)
    })
}

pub const INNODB_ARGS: &[&str] = &[
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=8M",
    "--innodb-data-file-path=ibdata1:12M:autoextend",
];

pub struct Server {
    pub dir: PathBuf,
    pub port: u16,
    pub child: Child,
    pub keep: bool,
}

pub fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Makes a child die with the bench (SIGKILL when our main thread exits).
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Removes `/tmp/mysqk-bench-<pid>` directories of bench runs that died
/// (Ctrl-C: their mariadbd died with them, the directory stayed).
pub fn sweep_stale_dirs() {
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
    pub fn start(keep: bool) -> Server {
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

    pub fn log_tail(&self) -> String {
        let t = fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn opts(&self, user: &str, pass: &str) -> OptsBuilder {
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

    pub fn admin(&self) -> Conn {
        Conn::new(self.opts(ADMIN.0, ADMIN.1)).expect("admin connection")
    }

    pub fn ptk_dsn(&self) -> String {
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
