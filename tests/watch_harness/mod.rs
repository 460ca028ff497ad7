//! Running `mysqk watch` in tests: users and an ini per test, the daemon as a
//! child process, and what it shows from outside (status file, snapshot
//! files, log, the server). Shared by tests/watch.rs and tests/watch_servers.rs.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{mysqk_bin, unique, write_ini, BgQuery, ChildGuard, Server};

/// A user name and password on the server(s) of one test.
pub struct User {
    pub name: String,
    pub pw: String,
}

/// Users, a temp dir and the ini of one test.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub app1: User,
    pub app2: User,
    pub mon: User,
}

fn password(tag: &str) -> String {
    // Distinctive, so a leak into a file is easy to find.
    format!("Pw-{tag}-{}", unique("s"))
}

impl Setup {
    /// Two app users (no SUPER, no PROCESS) and a PROCESS monitor on every server.
    pub fn new(servers: &[&Server]) -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().expect("tempdir"),
            app1: User {
                name: unique("app"),
                pw: password("a1"),
            },
            app2: User {
                name: unique("app"),
                pw: password("a2"),
            },
            mon: User {
                name: unique("mon"),
                pw: password("m"),
            },
        };
        let schema = unique("db");
        for srv in servers {
            srv.create_app_user(&s.app1.name, &s.app1.pw, &schema);
            srv.create_app_user(&s.app2.name, &s.app2.pw, &schema);
            srv.create_monitor_user(&s.mon.name, &s.mon.pw);
        }
        s
    }

    pub fn snap_dir(&self) -> PathBuf {
        self.dir.path().join("snap")
    }

    pub fn status_path(&self) -> PathBuf {
        self.snap_dir().join("mysqk.status")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.snap_dir().join("mysqk.lock")
    }

    pub fn ini_path(&self) -> PathBuf {
        self.dir.path().join("mysqk.ini")
    }

    pub fn passwords(&self) -> Vec<&str> {
        vec![&self.app1.pw, &self.app2.pw, &self.mon.pw]
    }

    /// The full ini text: fast test settings (`settings` lines are appended
    /// and win), the three users, `instances` as `[db_info]`, then the
    /// `[db_commconfig]` and `[db_commkill]` bodies and any `extra` sections.
    pub fn ini_text(
        &self,
        settings: &str,
        instances: &[(&str, String)],
        commconfig: &str,
        commkill: &str,
        extra: &str,
    ) -> String {
        let db_info: String = instances
            .iter()
            .map(|(id, addr)| format!("{id}={addr}\n"))
            .collect();
        format!(
            "[settings]\nsnapshot_dir={snap}\ncheck_interval=1\nping_multi=2\nconnect_timeout=2\nread_timeout=3\n{settings}\n\n\
             [db_info]\n{db_info}\n\
             [db_auth]\n{a1}={p1}\n{a2}={p2}\n{m}={pm}\n\n\
             [db_commconfig]\ndb_puser={m}\n{commconfig}\n\n\
             [db_commkill]\n{commkill}\n\n{extra}\n",
            snap = self.snap_dir().display(),
            a1 = self.app1.name,
            p1 = self.app1.pw,
            a2 = self.app2.name,
            p2 = self.app2.pw,
            m = self.mon.name,
            pm = self.mon.pw,
        )
    }

    /// Writes the common one-instance ini: instance `x` at `addr`, killing
    /// (`dry_run=0`) by `commkill`.
    pub fn kill_ini(&self, addr: String, commkill: &str) -> PathBuf {
        self.write(&self.ini_text(
            "",
            &[("x", addr)],
            "run_max_count=999\ndry_run=0",
            commkill,
            "",
        ))
    }

    /// Write (or rewrite, while `watch` runs) the ini.
    pub fn write(&self, text: &str) -> PathBuf {
        write_ini(self.dir.path(), text)
    }

    pub fn query(&self, srv: &Server, user: &User, sql: &str) -> BgQuery {
        srv.spawn_query(&user.name, &user.pw, sql)
    }

    /// Snapshot files written for instance `dbid`.
    pub fn snapshots(&self, dbid: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.snap_dir().join(dbid))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// A running `mysqk watch`, killed when dropped.
pub struct Watch {
    pub child: ChildGuard,
    pub stderr: PathBuf,
    pub status: PathBuf,
    /// Where the log goes: stderr, or `[settings] log_file`.
    pub log: PathBuf,
}

impl Watch {
    pub fn start(setup: &Setup) -> Watch {
        Watch::start_with(setup, &[])
    }

    pub fn start_with(setup: &Setup, extra_args: &[&str]) -> Watch {
        let stderr = setup
            .dir
            .path()
            .join(format!("watch-{}.stderr", unique("w")));
        let file = fs::File::create(&stderr).expect("stderr file");
        let mut cmd = mysqk_bin();
        cmd.arg("watch")
            .arg("-c")
            .arg(setup.ini_path())
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(file);
        Watch {
            child: ChildGuard::spawn(&mut cmd),
            log: stderr.clone(),
            stderr,
            status: setup.status_path(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The status file, if written yet.
    pub fn status(&self) -> Option<Value> {
        let text = fs::read_to_string(&self.status).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn inst(&self, dbid: &str) -> Value {
        self.status()
            .map(|s| s["instances"][dbid].clone())
            .unwrap_or(Value::Null)
    }

    /// Fails the test (with the log) when the daemon died.
    pub fn assert_running(&mut self) {
        if let Some(st) = self.child.0.try_wait().expect("try_wait") {
            panic!("mysqk watch exited ({st}):\n{}", self.log_text());
        }
    }

    /// Poll the status file until `f` holds.
    pub fn wait_status(&mut self, within: Duration, what: &str, f: impl Fn(&Value) -> bool) {
        let mut last = Value::Null;
        let end = std::time::Instant::now() + within;
        loop {
            self.assert_running();
            if let Some(s) = self.status() {
                if f(&s) {
                    return;
                }
                last = s;
            }
            if std::time::Instant::now() >= end {
                panic!(
                    "timed out after {within:?} waiting for {what}\nstatus: {last:#}\nlog:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the status file was rewritten `n` more times: proof that
    /// the instance threads went round their loop (each pass and each round
    /// of keep-alive pings changes the status) — what a "nothing happened"
    /// assertion waits for.
    pub fn wait_rewrites(&mut self, n: usize) {
        for _ in 0..n {
            let before = self.status().map(|s| s["updated"].clone());
            self.wait_status(Duration::from_secs(15), "a status rewrite", |s| {
                Some(s["updated"].clone()) != before
            });
        }
    }

    pub fn wait_log(&mut self, within: Duration, needle: &str) {
        let end = std::time::Instant::now() + within;
        loop {
            if self.log_text().contains(needle) {
                return;
            }
            self.assert_running();
            if std::time::Instant::now() >= end {
                panic!(
                    "timed out after {within:?} waiting for `{needle}` in the log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until every instance holds all sessions of `users`.
    pub fn wait_connected(&mut self, dbids: &[&str], users: &[&User]) {
        for dbid in dbids {
            let dbid = dbid.to_string();
            self.wait_status(Duration::from_secs(20), &format!("{dbid} connected"), |s| {
                let i = &s["instances"][&dbid];
                i["connected"] == true
                    && users.iter().all(|u| {
                        i["connected_users"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|x| x == u.name.as_str()))
                    })
            });
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.child.signal(libc::SIGTERM);
        match self.child.wait_timeout(within) {
            Some(st) => st,
            None => panic!(
                "mysqk watch did not stop within {within:?} after SIGTERM:\n{}",
                self.log_text()
            ),
        }
    }
}

/// The statement was interrupted by a kill (not finished, not another error).
pub fn assert_killed(q: BgQuery, within: Duration, log: &str) {
    let id = q.conn_id;
    match q.join_within(within) {
        Err(e) if crate::support::is_killed_error(&e) => {}
        other => panic!("thread {id} should have been killed, got {other:?}\nlog:\n{log}"),
    }
}

/// Count the lines of `text` that contain `needle`.
pub fn count_lines(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

pub fn is_mode_0600(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777 == 0o600)
        .unwrap_or(false)
}

/// An application connection pool that grabs every free slot again within
/// milliseconds, as a real one does during an incident: it keeps logging
/// in as `user` until the server says `Too many connections`, and goes on
/// trying, so a slot freed by a kill (or by anyone) is taken back at once.
pub struct RefillingPool {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    state: std::sync::Arc<std::sync::Mutex<PoolState>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
pub struct PoolState {
    /// Server thread ids of the connections opened (live or since killed).
    pub ids: Vec<u64>,
    /// Logins refused for want of a slot: 1040 (max_connections), 1203 or
    /// 1226 (max_user_connections).
    pub refused: u64,
    /// No new logins while set.
    pub paused: bool,
    /// Connections to close (the pool's own, oldest first) at its next turn.
    pub to_close: usize,
    /// Connections held now.
    pub live: usize,
}

impl RefillingPool {
    /// A pool with no size limit: it holds every slot the server has.
    pub fn start(srv: &Server, user: &User) -> RefillingPool {
        RefillingPool::sized(srv, user, None)
    }

    /// A pool of at most `max` connections (when given) that notices its
    /// killed or broken connections (every 20 ms, by looking at the socket:
    /// a ping would reset the connection's idle time) and replaces them.
    pub fn sized(srv: &Server, user: &User, max: Option<usize>) -> RefillingPool {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = std::sync::Arc::new(std::sync::Mutex::new(PoolState::default()));
        let opts = srv
            .opts(&user.name, &user.pw)
            .tcp_connect_timeout(Some(Duration::from_millis(500)));
        let (stop2, state2) = (stop.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<mysql::Conn> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                let (paused, close) = {
                    let mut st = state2.lock().unwrap();
                    st.live = conns.len();
                    (st.paused, std::mem::take(&mut st.to_close))
                };
                conns.drain(..close.min(conns.len()));
                if paused || max.is_some_and(|m| conns.len() >= m) {
                    std::thread::sleep(Duration::from_millis(20));
                    conns.retain(|c| !closed_by_server(c));
                    continue;
                }
                match mysql::Conn::new(opts.clone()) {
                    Ok(c) => {
                        state2
                            .lock()
                            .unwrap()
                            .ids
                            .push(u64::from(c.connection_id()));
                        conns.push(c);
                    }
                    Err(mysql::Error::MySqlError(e)) if matches!(e.code, 1040 | 1203 | 1226) => {
                        state2.lock().unwrap().refused += 1;
                    }
                    Err(_) => {}
                }
                // The pool's own pace: a retry every few milliseconds.
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        RefillingPool {
            stop,
            state,
            thread: Some(thread),
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.state.lock().unwrap().ids.clone()
    }

    pub fn pause(&self) {
        self.state.lock().unwrap().paused = true;
    }

    /// Close `n` of the pool's connections (it opens new ones unless paused).
    pub fn close(&self, n: usize) {
        self.state.lock().unwrap().to_close += n;
    }

    pub fn live(&self) -> usize {
        self.state.lock().unwrap().live
    }

    pub fn refused(&self) -> u64 {
        self.state.lock().unwrap().refused
    }

    /// Wait until the pool holds `n` connections (opened since it started).
    pub fn wait_opened(&self, n: usize) {
        crate::support::wait_until(Duration::from_secs(20), "the pool fills", || {
            self.ids().len() >= n
        });
    }

    /// Wait until the pool holds every slot: a login of its was refused.
    pub fn wait_full(&self) {
        crate::support::wait_until(Duration::from_secs(20), "the pool fills the server", || {
            self.refused() > 0
        });
    }
}

impl Drop for RefillingPool {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The server closed this idle connection (killed, or the server went away):
/// its socket is readable (an error packet or end of file).
fn closed_by_server(c: &mysql::Conn) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: c.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) != 0 }
}
