//! The tools under test: starting and stopping them, their configuration.

use crate::scenario::Ctx;
use crate::server::{die_with_parent, need_bin, Server, APP1, APP2, MON};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub struct Tool {
    pub child: Child,
    /// When `spawn` returned: the tool's process exists and has exec'd. The
    /// clock starts here, not before the fork: forking the bench (which may
    /// hold thousands of sockets and their buffers) costs milliseconds that
    /// belong to neither tool.
    pub started: Instant,
}

impl Tool {
    pub fn spawn(cmd: &mut Command, log: &Path) -> Tool {
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

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, then SIGKILL after 5 s; reaps.
    pub fn stop(mut self) {
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
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
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

pub fn pt_kill() -> Command {
    let mut c = Command::new(need_bin("pt-kill"));
    // No network call to percona.com in the middle of a measurement.
    c.arg("--no-version-check");
    c
}

/// Writes an ini (mode 0600: it holds passwords) for `dbids` on the server.
pub fn write_ini(
    dir: &Path,
    name: &str,
    srv: &Server,
    dbids: &[String],
    commkill: &str,
) -> PathBuf {
    let mut text = format!(
        "[settings]\ncheck_interval=1\nsnapshot_dir={}\nconnect_timeout=5\nread_timeout=30\n\n[db_info]\n",
        dir.join(format!("{name}.snap")).display()
    );
    for d in dbids {
        let _ = writeln!(text, "{d}=127.0.0.1:{}", srv.port());
    }
    let _ = write!(
        text,
        "\n[db_auth]\n{}={}\n{}={}\n{}={}\n\n[db_commconfig]\ndb_puser={}\nrun_max_count=999\ndry_run=0\n\n[db_commkill]\n{commkill}\n",
        APP1.0, APP1.1, APP2.0, APP2.1, MON.0, MON.1, MON.0
    );
    write_ini_file(dir, name, &text)
}

/// `<dir>/<name>.ini` holding `text`, readable by its owner only (it holds
/// passwords, and mysqk warns about a wider mode).
pub fn write_ini_file(dir: &Path, name: &str, text: &str) -> PathBuf {
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Which {
    Mysqk,
    PtKill,
}

impl Which {
    pub fn name(self) -> &'static str {
        match self {
            Which::Mysqk => "mysqk",
            Which::PtKill => "pt-kill",
        }
    }
}

/// mysqk, pt-kill, mysqk, pt-kill, ...
pub fn alternating(rounds: usize) -> Vec<(usize, Which)> {
    (0..rounds)
        .flat_map(|r| [(r, Which::Mysqk), (r, Which::PtKill)])
        .collect()
}

/// True when this mysqk has the `watch` command (S2-S4 need it).
pub fn has_watch(mysqk: &Path) -> bool {
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

pub fn mysqk_watch(ctx: &Ctx, ini: &Path, log: &Path) -> Tool {
    Tool::spawn(
        Command::new(&ctx.o.mysqk).args(["watch", "-c", &ini.to_string_lossy()]),
        log,
    )
}
