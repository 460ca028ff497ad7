//! `mysqk watch`: the supervisor of the instance threads.
//!
//! It loads the config, takes the lock file, starts the reporter and one
//! [`InstanceHandle`] per `[db_info]` entry, then ticks a few times a second:
//! it checks the config file (a changed file is parsed whole: valid ->
//! applied, invalid -> one log line and the last good config stays), reaps
//! threads, and rewrites the status file. SIGINT/SIGTERM stop it cleanly:
//! threads stopped and joined, the reporter flushed, the lock released,
//! exit 0. A second SIGINT/SIGTERM during that stop exits at once (1).
//! SIGHUP re-reads the config and re-opens the log file.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Local};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::{Config, ConfigError};
use crate::daemon::instance::InstanceHandle;
use crate::daemon::lockfile::{LockError, LockFile};
use crate::daemon::status::{self, StatusBoard};
use crate::report::flood;
use crate::report::logging;
use crate::report::reporter::{ReportSender, Reporter};

/// How often the supervisor looks at the config file, the threads and the status.
const TICK: Duration = Duration::from_millis(200);
/// The status file is rewritten at most this often (and only when its
/// content changed): a large fleet changes something every tick.
pub const STATUS_PERIOD: Duration = Duration::from_secs(1);
/// A changed config file is applied only once it has stayed the same (size,
/// mtime, inode and content) for this long: a writer that pauses between two
/// parts (an editor, `cat a b > mysqk.ini`, a config-management run) must not
/// have its first part taken for the whole file.
pub const SETTLE: Duration = Duration::from_millis(1500);
/// The same for a file that would stop watching instances or drop
/// `[db_auth]` users: closing held sessions costs the most when wrong (during
/// a `Too many connections` incident they cannot be opened again), so a
/// truncated file gets the longest look.
pub const SETTLE_REMOVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WatchOpts {
    pub config: PathBuf,
    /// Overrides `[settings] lock_file`.
    pub lock_file: Option<PathBuf>,
    /// Command-line settings that win over the file, at start and after every reload.
    pub overrides: Overrides,
    /// Stop cleanly after this long (`--run-time`).
    pub run_time: Option<Duration>,
}

/// What `watch`'s flags impose on every version of the config.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--dry-run`: every instance reports only.
    pub dry_run: bool,
    /// `--interval`: replaces `check_interval`.
    pub interval: Option<Duration>,
}

impl Overrides {
    fn apply(&self, mut cfg: Config) -> Config {
        if self.dry_run {
            for i in &mut cfg.instances {
                i.dry_run = true;
            }
        }
        if let Some(d) = self.interval {
            cfg.settings.check_interval = d;
        }
        cfg
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("cannot start watch: {0}")]
    Start(String),
}

/// Run until SIGINT/SIGTERM. `Ok` means a clean stop.
pub fn run(opts: &WatchOpts) -> Result<(), WatchError> {
    let mut file = ConfigFile::new(&opts.config, opts.overrides.clone());
    let cfg = file.load_initial()?;
    crate::report::clock::set_utc(cfg.settings.log_utc);
    if let Some(p) = &cfg.settings.log_file {
        if let Err(e) = logging::set_file(Some(p)) {
            log::warn!(
                "cannot open log_file {}: {e}; logging to stderr",
                p.display()
            );
        }
    }
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    let lock_path = opts
        .lock_file
        .clone()
        .unwrap_or_else(|| cfg.settings.lock_file.clone());
    let lock = LockFile::acquire(&lock_path)?;

    // Armed when the stop begins: a second signal then ends the process at once.
    let terminating = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, terminating.clone())
            .map_err(|e| WatchError::Start(format!("signal handler: {e}")))?;
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| WatchError::Start(format!("signal handler: {e}")))?;
    let signals_handle = signals.handle();
    let (sig_tx, sig_rx) = unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if sig_tx.send(s).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| WatchError::Start(format!("signal thread: {e}")))?;

    let mut sup = Supervisor::new(cfg, file, lock);
    log::info!(
        "mysqk watch started (pid {}): config {}, {} instance(s), lock {}, status {}",
        std::process::id(),
        opts.config.display(),
        sup.cfg.instances.len(),
        lock_path.display(),
        sup.cfg.settings.status_file.display()
    );
    if opts.overrides.dry_run {
        log::info!("--dry-run: every instance reports only, whatever dry_run says");
    }
    let until = opts.run_time.map(|d| (Instant::now() + d, d));
    sup.start_all();
    sup.run(&sig_rx, until);
    terminating.store(true, Ordering::SeqCst);
    sup.shutdown();
    signals_handle.close();
    Ok(())
}

/// What identifies a version of the config file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileSig {
    mtime: SystemTime,
    len: u64,
    ino: u64,
    dev: u64,
}

/// The config file as the supervisor follows it.
///
/// A change of (mtime, size, inode) — an editor that saves by rename changes
/// the inode, one that rewrites in place changes the mtime — makes it read
/// the file. The content becomes a candidate, applied (or rejected) only once
/// it stayed the same for [`SETTLE`] ([`SETTLE_REMOVAL`] when it removes
/// instances or users); any change in between starts the wait again. A
/// `touch` (same content) does nothing, and an invalid file is reported once,
/// not every tick. SIGHUP applies a valid file at once: the operator says it
/// is complete.
struct ConfigFile {
    path: PathBuf,
    overrides: Overrides,
    sig: Option<FileSig>,
    /// The content last applied or rejected.
    hash: Option<u64>,
    pending: Option<Candidate>,
    unreadable: Option<String>,
}

/// A changed file waiting to prove it is complete.
struct Candidate {
    sig: FileSig,
    hash: u64,
    since: Instant,
    parsed: Result<Config, ConfigError>,
}

/// Of the file's bytes: a file that is not UTF-8 has a hash too, and is
/// rejected (once) like any invalid file.
fn text_hash(text: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn file_sig(path: &Path) -> std::io::Result<FileSig> {
    let m = std::fs::metadata(path)?;
    Ok(FileSig {
        mtime: m.modified()?,
        len: m.len(),
        ino: m.ino(),
        dev: m.dev(),
    })
}

fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let env_key = std::env::var("MYSQK_KEY").ok();
    Config::parse(path, text, env_key.as_deref())
}

/// The new config stops watching an instance or holding a user's sessions.
pub fn removes_something(old: &Config, new: &Config) -> bool {
    old.instances
        .iter()
        .any(|i| new.instance(&i.dbid).is_none_or(|n| n.addr() != i.addr()))
        || old.auth.iter().any(|a| new.password(&a.user).is_none())
}

/// How long a candidate must stay unchanged before it is acted on.
pub fn settle_time(current: &Config, parsed: &Result<Config, ConfigError>) -> Duration {
    match parsed {
        Ok(new) if removes_something(current, new) => SETTLE_REMOVAL,
        _ => SETTLE,
    }
}

impl ConfigFile {
    fn new(path: &Path, overrides: Overrides) -> ConfigFile {
        ConfigFile {
            path: path.to_path_buf(),
            overrides,
            sig: None,
            hash: None,
            pending: None,
            unreadable: None,
        }
    }

    fn read_error(&self, e: std::io::Error) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: None,
            section: None,
            key: None,
            message: format!("cannot read: {e}"),
        }
    }

    fn load_initial(&mut self) -> Result<Config, ConfigError> {
        self.sig = file_sig(&self.path).ok();
        let bytes = std::fs::read(&self.path).map_err(|e| self.read_error(e))?;
        let cfg = self.parse_bytes(&bytes)?;
        self.hash = Some(text_hash(&bytes));
        Ok(cfg)
    }

    /// Decode (BOM dropped, non-UTF-8 located), parse, and impose the
    /// command line's overrides.
    fn parse_bytes(&self, bytes: &[u8]) -> Result<Config, ConfigError> {
        let text = crate::config::decode_text(bytes)
            .map_err(|line| crate::config::not_utf8(&self.path, line))?;
        parse(&self.path, &text).map(|c| self.overrides.apply(c))
    }

    /// A new parse result when the file changed and has settled since the
    /// last look. `force` (SIGHUP) re-reads and acts at once.
    fn poll(&mut self, current: &Config, force: bool) -> Option<Result<Config, ConfigError>> {
        let sig = match file_sig(&self.path) {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                if self.unreadable.as_deref() != Some(msg.as_str()) {
                    log::error!(
                        "config file {}: {msg}; keeping the last good config",
                        self.path.display()
                    );
                    self.unreadable = Some(msg);
                }
                self.pending = None;
                return None;
            }
        };
        self.unreadable = None;
        if !force {
            if let Some(p) = &self.pending {
                if p.sig == sig {
                    if p.since.elapsed() < settle_time(current, &p.parsed) {
                        return None;
                    }
                    // Stable metadata for the whole wait; the content must
                    // be the one read at the start too.
                    let bytes = std::fs::read(&self.path).ok()?;
                    let p = self.pending.take()?;
                    if text_hash(&bytes) != p.hash {
                        self.sig = None;
                        return None;
                    }
                    self.sig = Some(sig);
                    self.hash = Some(p.hash);
                    return Some(p.parsed);
                }
            } else if Some(sig) == self.sig {
                return None;
            }
        }
        let bytes = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) => {
                self.pending = None;
                return force.then(|| Err(self.read_error(e)));
            }
        };
        let h = text_hash(&bytes);
        if Some(h) == self.hash {
            // Touched, or changed and changed back: nothing to do.
            self.sig = Some(sig);
            self.pending = None;
            return None;
        }
        let parsed = self.parse_bytes(&bytes);
        if force {
            self.sig = Some(sig);
            self.hash = Some(h);
            self.pending = None;
            return Some(parsed);
        }
        self.pending = Some(Candidate {
            sig,
            hash: h,
            since: Instant::now(),
            parsed,
        });
        None
    }
}

struct Supervisor {
    cfg: Arc<Config>,
    file: ConfigFile,
    /// `None` once stopped (flushed) at shutdown.
    reporter: Option<Reporter>,
    /// Kept to read the dropped-events counter, also after the reporter stopped.
    sender: ReportSender,
    board: Arc<StatusBoard>,
    threads: BTreeMap<String, InstanceHandle>,
    /// Asked to stop (removed or moved instances), not joined yet.
    stopping: Vec<InstanceHandle>,
    /// Instances whose thread died unexpectedly: restart when due.
    restart_at: HashMap<String, Instant>,
    generation: u64,
    started: DateTime<Local>,
    /// The config path as the status file shows it (absolute when possible).
    config_shown: PathBuf,
    status_error: Option<String>,
    /// When the status file was last written.
    status_written: Option<Instant>,
    lock: Option<LockFile>,
}

impl Supervisor {
    fn new(cfg: Config, file: ConfigFile, lock: LockFile) -> Supervisor {
        let cfg = Arc::new(cfg);
        let reporter = Reporter::start(cfg.clone());
        let config_shown = std::fs::canonicalize(&file.path).unwrap_or_else(|_| file.path.clone());
        Supervisor {
            sender: reporter.sender(),
            reporter: Some(reporter),
            cfg,
            file,
            board: Arc::new(StatusBoard::new()),
            threads: BTreeMap::new(),
            stopping: Vec::new(),
            restart_at: HashMap::new(),
            generation: 0,
            started: Local::now(),
            config_shown,
            status_error: None,
            status_written: None,
            lock: Some(lock),
        }
    }

    fn spawn(&mut self, dbid: &str) {
        let Some(inst) = self.cfg.instance(dbid).cloned() else {
            return;
        };
        self.generation += 1;
        match InstanceHandle::spawn(
            self.cfg.clone(),
            inst,
            self.generation,
            self.sender.clone(),
            self.board.clone(),
        ) {
            Ok(h) => {
                self.threads.insert(dbid.to_string(), h);
            }
            Err(e) => {
                log::error!("{dbid}: cannot start its thread: {e}; retrying");
                self.restart_at.insert(
                    dbid.to_string(),
                    Instant::now() + self.cfg.settings.check_interval,
                );
            }
        }
    }

    fn start_all(&mut self) {
        let ids: Vec<String> = self.cfg.instances.iter().map(|i| i.dbid.clone()).collect();
        for id in ids {
            self.spawn(&id);
        }
        self.write_status(true);
    }

    /// Until a stop signal, or `until` (deadline, run time) has passed.
    fn run(&mut self, signals: &Receiver<i32>, until: Option<(Instant, Duration)>) {
        loop {
            if let Some((deadline, d)) = until {
                if Instant::now() >= deadline {
                    log::info!("--run-time {} s is over: stopping", d.as_secs());
                    return;
                }
            }
            let mut force = false;
            match signals.recv_timeout(TICK) {
                Ok(SIGHUP) => {
                    log::info!("SIGHUP: re-reading the config, re-opening the log file");
                    force = true;
                }
                Ok(sig) => {
                    log::info!(
                        "{}: stopping",
                        if sig == SIGINT { "SIGINT" } else { "SIGTERM" }
                    );
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let current = self.cfg.clone();
            match self.file.poll(&current, force) {
                Some(Ok(cfg)) => self.apply(cfg),
                Some(Err(e)) => {
                    log::error!("config reload rejected, keeping the last good config: {e}");
                    self.board.set_config_error(Some(e.to_string()));
                }
                // Said, so a `systemctl reload` is never met with silence.
                None if force => log::info!(
                    "SIGHUP: {} unchanged, nothing to apply",
                    self.file.path.display()
                ),
                None => {}
            }
            self.reap();
            for line in flood::summaries() {
                log::warn!("{line}");
            }
            logging::reopen_if_moved();
            self.write_status(false);
        }
    }

    /// Apply a valid reloaded config: hand it to every thread, start and stop
    /// threads for added and removed instances.
    fn apply(&mut self, new: Config) {
        // First: every line from here on is in the new zone.
        crate::report::clock::set_utc(new.settings.log_utc);
        for w in &new.warnings {
            log::warn!("{w}");
        }
        let old = std::mem::replace(&mut self.cfg, Arc::new(new));
        let new = self.cfg.clone();
        let changes = crate::config::diff::changes(&old, &new);
        let mut removed = Vec::new();
        for (dbid, h) in std::mem::take(&mut self.threads) {
            match new.instance(&dbid) {
                Some(i) if i.addr() == h.addr => {
                    h.reconfigure(new.clone());
                    self.threads.insert(dbid, h);
                }
                Some(i) => {
                    log::info!(
                        "{dbid}: address changed {} -> {}: restarting its thread",
                        h.addr,
                        i.addr()
                    );
                    h.request_stop();
                    self.stopping.push(h);
                }
                None => {
                    h.request_stop();
                    self.stopping.push(h);
                    self.board.remove(&dbid);
                    removed.push(dbid);
                }
            }
        }
        self.restart_at.retain(|id, _| new.instance(id).is_some());
        let mut added = Vec::new();
        for inst in &new.instances {
            if !self.threads.contains_key(&inst.dbid) {
                if old.instance(&inst.dbid).is_none() {
                    added.push(inst.dbid.clone());
                }
                self.spawn(&inst.dbid);
            }
        }
        self.sender.config(new.clone());
        if new.settings.log_file != old.settings.log_file {
            if let Err(e) = logging::set_file(new.settings.log_file.as_deref()) {
                log::error!("cannot switch the log file: {e}; keeping the current one");
            }
        }
        if new.settings.status_file != old.settings.status_file {
            // Monitoring follows the new path; a file left at the old one would
            // look like a watcher that stopped updating.
            if let Err(e) = std::fs::remove_file(&old.settings.status_file) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!(
                        "cannot remove the old status file {}: {e}",
                        old.settings.status_file.display()
                    );
                }
            }
        }
        if new.settings.lock_file != old.settings.lock_file {
            log::warn!(
                "lock_file changed to {}; it takes effect at the next start (still holding {})",
                new.settings.lock_file.display(),
                self.lock
                    .as_ref()
                    .map(|l| l.path().display().to_string())
                    .unwrap_or_default()
            );
        }
        self.board.set_config_error(None);
        let list = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                v.join(",")
            }
        };
        log::info!(
            "config reloaded from {}: {} instance(s){}{}; {}",
            new.path.display(),
            new.instances.len(),
            if added.is_empty() {
                String::new()
            } else {
                format!(", now watching {}", list(&added))
            },
            if removed.is_empty() {
                String::new()
            } else {
                format!(", no longer watching {}", list(&removed))
            },
            if changes.is_empty() && added.is_empty() && removed.is_empty() {
                "no rule or setting changed".to_string()
            } else if changes.is_empty() {
                "no other change".to_string()
            } else {
                format!("changed: {}", changes.join("; "))
            }
        );
    }

    /// Join stopped threads; restart a thread that ended on its own (a bug:
    /// logged, and retried once per check_interval rather than in a hot loop).
    fn reap(&mut self) {
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.stopping)
            .into_iter()
            .partition(InstanceHandle::is_finished);
        self.stopping = rest;
        for h in done {
            h.join();
        }
        let dead: Vec<String> = self
            .threads
            .iter()
            .filter(|(_, h)| h.is_finished() && !h.stop_requested())
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            if let Some(h) = self.threads.remove(&id) {
                let ok = h.join();
                log::error!(
                    "{id}: its thread ended unexpectedly{}; restarting it",
                    if ok { "" } else { " (panic)" }
                );
                self.restart_at
                    .insert(id, Instant::now() + self.cfg.settings.check_interval);
            }
        }
        let now = Instant::now();
        let due: Vec<String> = self
            .restart_at
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.restart_at.remove(&id);
            if !self.threads.contains_key(&id) {
                self.spawn(&id);
            }
        }
    }

    fn write_status(&mut self, force: bool) {
        if !force
            && self
                .status_written
                .is_some_and(|t| t.elapsed() < STATUS_PERIOD)
        {
            return;
        }
        let Some(text) = self.board.render_if_dirty(
            force,
            &self.config_shown,
            self.started,
            self.sender.dropped(),
        ) else {
            return;
        };
        let path = &self.cfg.settings.status_file;
        self.status_written = Some(Instant::now());
        match status::write_atomic(path, &text) {
            Ok(()) => self.status_error = None,
            Err(e) => {
                // Written again on the next round, not only at the next change.
                self.board.mark_dirty();
                let msg = format!("cannot write the status file {}: {e}", path.display());
                if self.status_error.as_deref() != Some(msg.as_str()) {
                    log::error!("{msg}");
                }
                self.status_error = Some(msg);
            }
        }
    }

    /// Stop every thread (each notices within one bounded query), flush the
    /// reporter, write the final status, release the lock.
    fn shutdown(mut self) {
        let mut all: Vec<InstanceHandle> = std::mem::take(&mut self.threads)
            .into_values()
            .chain(std::mem::take(&mut self.stopping))
            .collect();
        for h in &all {
            h.request_stop();
        }
        // A thread blocked on a hung server needs at most one connect or query.
        let s = &self.cfg.settings;
        let deadline = Instant::now() + s.connect_timeout + s.read_timeout + Duration::from_secs(2);
        while all.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for h in all.drain(..) {
            if h.is_finished() {
                h.join();
            } else {
                log::warn!(
                    "{}: thread still blocked on {}; not waiting for it",
                    h.dbid,
                    h.addr
                );
            }
        }
        if let Some(r) = self.reporter.take() {
            r.stop();
        }
        for line in flood::flush() {
            log::info!("{line}");
        }
        self.board.all_stopped();
        self.write_status(true);
        drop(self.lock.take());
        log::info!("mysqk watch stopped");
    }
}
