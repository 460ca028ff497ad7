//! The throwaway servers the scenarios run against (MariaDB, MySQL 9.7),
//! and their accounts. Starting them is tests/support's job (the same
//! datadirs, the same sid root for MySQL, built there when missing), so the
//! bench and the tests run the very same servers.

#[path = "../../tests/support/mod.rs"]
mod support;

use mysql::{Conn, OptsBuilder};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{exit, Command};
use std::time::Duration;
pub use support::Flavor;

/// The bench's own admin: the one tests/support creates (and keeps a
/// session of, for `exec`), so "quiet" means no other user is connected.
pub const ADMIN: (&str, &str) = (support::ADMIN_USER, support::ADMIN_PASS);
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

/// `--server` names: `mariadb`, `mysql`.
pub fn flavor_id(f: Flavor) -> &'static str {
    match f {
        Flavor::MariaDb => "mariadb",
        Flavor::MySql => "mysql",
    }
}

pub struct Server {
    pub flavor: Flavor,
    /// `VERSION()`.
    pub version: String,
    inner: support::Server,
}

impl Server {
    /// Starts a fresh server of `flavor`, sized for the storms, and creates
    /// the bench's accounts.
    pub fn start(flavor: Flavor) -> Server {
        let inner = support::Server::start_as(
            flavor,
            support::ServerOpts {
                // Storms of thousands of connections; bench/run.sh raises
                // the open-files limit, which the server inherits.
                max_connections: 5000,
                extra_args: [
                    "--open-files-limit=20000",
                    "--back-log=3000",
                    "--table-open-cache=400",
                ]
                .map(String::from)
                .to_vec(),
                ..support::ServerOpts::default()
            },
        );
        let stmts = [
            format!("CREATE DATABASE {SCHEMA}"),
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
            inner.exec(s);
        }
        if flavor == Flavor::MySql {
            // What README asks of a db_puser on MySQL: without it mysqk has
            // no statement timers and takes TIME as up to 1 s high.
            inner.exec(&format!(
                "GRANT SELECT ON performance_schema.* TO '{}'@'%'",
                MON.0
            ));
        }
        let version = inner
            .query::<String>("SELECT VERSION()")
            .pop()
            .unwrap_or_default();
        Server {
            flavor,
            version,
            inner,
        }
    }

    /// `MariaDB 10.11.19`, `MySQL 9.7.4`: the version without the
    /// distribution's suffix.
    pub fn label(&self) -> String {
        let v = self.version.split('-').next().unwrap_or("");
        format!("{} {v}", self.flavor.name())
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    /// The last lines of the server's error log.
    pub fn log_tail(&self) -> String {
        self.inner.error_log_tail()
    }

    pub fn opts(&self, user: &str, pass: &str) -> OptsBuilder {
        OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.port())
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
        format!("h=127.0.0.1,P={},u={},p={}", self.port(), PTK.0, PTK.1)
    }
}
