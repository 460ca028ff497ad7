//! The one reporter thread: writes a snapshot file per event, then hands the
//! event to the mailer and the hook. Instance threads never wait on it: they
//! `try_send` into a bounded channel and count what could not be queued.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::config::Config;
use crate::core::redact;
use crate::core::text::{framed, neutral};
use crate::report::event::Event;
use crate::report::hook::Hook;
use crate::report::mail::Mailer;
use crate::report::output;
use crate::report::retention;

/// Events waiting for the reporter; beyond this, events are dropped and counted.
const QUEUE: usize = 256;

pub enum Msg {
    Event(Box<Event>),
    /// A reloaded config (mail settings, snapshot dir, hook).
    Config(Arc<Config>),
    Stop,
}

/// A cheap handle instance threads use to report without blocking.
#[derive(Clone)]
pub struct ReportSender {
    tx: Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl ReportSender {
    /// Queue an event; never blocks. Returns false (and counts it) when full.
    pub fn send(&self, e: Event) -> bool {
        match self.tx.try_send(Msg::Event(Box::new(e))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                log::error!("reporter queue full: event dropped ({n} dropped so far)");
                false
            }
        }
    }

    /// Hand over a reloaded config. Unlike events this may wait briefly: a
    /// reload must not be lost because the queue happened to be full.
    pub fn config(&self, cfg: Arc<Config>) {
        if self
            .tx
            .send_timeout(Msg::Config(cfg), Duration::from_secs(5))
            .is_err()
        {
            log::error!("reporter busy: the reloaded config did not reach it (mail/hook settings unchanged)");
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

pub struct Reporter {
    sender: ReportSender,
    handle: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn start(cfg: Arc<Config>) -> Reporter {
        let (tx, rx) = bounded(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let handle = std::thread::Builder::new()
            .name("reporter".into())
            .spawn(move || run(rx, cfg))
            .map_err(|e| log::error!("cannot start the reporter thread: {e}"))
            .ok();
        Reporter {
            sender: ReportSender { tx, dropped },
            handle,
        }
    }

    pub fn sender(&self) -> ReportSender {
        self.sender.clone()
    }

    /// Write everything queued, give pending mail one last try, and join.
    pub fn stop(mut self) {
        // A blocking send: the queue drains while we wait, and Stop comes last.
        let _ = self.sender.tx.send(Msg::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Snapshot retention runs at most this often after a new snapshot ...
const PRUNE_AFTER_WRITE: Duration = Duration::from_secs(60);
/// ... and at least this often (files age without new events).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

fn run(rx: Receiver<Msg>, cfg: Arc<Config>) {
    let mut state = State::new(cfg);
    state.prune();
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Msg::Event(e)) => state.handle(&e),
            Ok(Msg::Config(c)) => state.reconfigure(c),
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        state.mailer.tick();
        let since = state.last_prune.elapsed();
        if since >= PRUNE_EVERY || (state.prune_due && since >= PRUNE_AFTER_WRITE) {
            state.prune();
        }
    }
    if state.prune_due {
        state.prune();
    }
    state.mailer.shutdown();
}

/// Snapshots kept in memory while the disk refuses them (full, read-only):
/// enough for a storm's worth of events, bounded so a dead disk cannot eat
/// the memory.
const PENDING_MAX: usize = 64;

/// A snapshot not written yet: where it goes and its text.
struct Pending {
    dbid: String,
    time: chrono::DateTime<chrono::Local>,
    text: String,
}

struct State {
    cfg: Arc<Config>,
    mailer: Mailer,
    hook: Hook,
    /// Snapshots whose write failed, retried at the next event (oldest first).
    pending: std::collections::VecDeque<Pending>,
    last_prune: std::time::Instant,
    prune_due: bool,
}

impl State {
    fn new(cfg: Arc<Config>) -> State {
        State {
            mailer: Mailer::new(&cfg.mail),
            hook: Hook::new(&cfg.settings),
            cfg,
            pending: std::collections::VecDeque::new(),
            last_prune: std::time::Instant::now(),
            prune_due: false,
        }
    }

    /// Apply `snapshot_keep_days` / `snapshot_max_mb`.
    fn prune(&mut self) {
        let st = &self.cfg.settings;
        let done = retention::prune(&st.snapshot_dir, st.snapshot_keep_days, st.snapshot_max_mb);
        if done.files > 0 {
            log::info!(
                "snapshots: {} old file{} deleted ({:.1} MB; snapshot_keep_days={}, snapshot_max_mb={})",
                done.files,
                if done.files == 1 { "" } else { "s" },
                done.bytes as f64 / (1024.0 * 1024.0),
                st.snapshot_keep_days,
                st.snapshot_max_mb
            );
        }
        for e in &done.errors {
            log::warn!("snapshot retention: {e}");
        }
        self.last_prune = std::time::Instant::now();
        self.prune_due = false;
    }

    fn reconfigure(&mut self, cfg: Arc<Config>) {
        self.mailer.reconfigure(&cfg.mail);
        self.hook = Hook::new(&cfg.settings);
        self.cfg = cfg;
        // The retention settings may have changed.
        self.prune_due = true;
    }

    fn handle(&mut self, e: &Event) {
        self.retry_pending();
        let text = render_snapshot(e);
        let dir = &self.cfg.settings.snapshot_dir;
        let path = match write_snapshot(dir, &e.dbid, e.time, &text) {
            Ok(p) => {
                log::info!("{}: snapshot written to {}", e.dbid, p.display());
                self.prune_due = true;
                Some(p)
            }
            Err(err) => {
                log::error!(
                    "{}: cannot write the snapshot: {err}; kept in memory, retried at the next event",
                    e.dbid
                );
                if self.pending.len() == PENDING_MAX {
                    if let Some(lost) = self.pending.pop_front() {
                        log::error!(
                            "{}: snapshot of {} lost: {PENDING_MAX} snapshots wait for the disk",
                            lost.dbid,
                            crate::report::clock::format(lost.time, "%Y-%m-%d %H:%M:%S %z")
                        );
                    }
                }
                self.pending.push_back(Pending {
                    dbid: e.dbid.clone(),
                    time: e.time,
                    text,
                });
                None
            }
        };
        self.mailer.on_event(e, path.as_deref());
        self.hook.run(e, path.as_deref());
    }

    /// Write the snapshots an earlier failure kept, oldest first, until one fails.
    fn retry_pending(&mut self) {
        let dir = self.cfg.settings.snapshot_dir.clone();
        while let Some(p) = self.pending.front() {
            match write_snapshot(&dir, &p.dbid, p.time, &p.text) {
                Ok(path) => {
                    log::info!(
                        "{}: snapshot of {} written late to {}",
                        p.dbid,
                        crate::report::clock::format(p.time, "%Y-%m-%d %H:%M:%S %z"),
                        path.display()
                    );
                    self.pending.pop_front();
                }
                Err(_) => break,
            }
        }
    }
}

/// Writes `text` as a new file `snapshot_dir/<dbid>/<YYYYmmdd-HHMMSS>-<n>.txt`,
/// mode 0600. Created exclusively (`O_EXCL`): `<n>` counts up past names that
/// exist, so two events of one second, or three `mysqk kill` runs, never
/// overwrite each other's evidence. A failed write removes its partial file.
pub fn write_snapshot(
    dir: &Path,
    dbid: &str,
    time: chrono::DateTime<chrono::Local>,
    text: &str,
) -> std::io::Result<PathBuf> {
    let dir = dir.join(dbid);
    fs::create_dir_all(&dir)?;
    let stamp = crate::report::clock::format(time, "%Y%m%d-%H%M%S");
    let mut n = 1u32;
    let (path, mut f) = loop {
        let path = dir.join(format!("{stamp}-{n}.txt"));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => break (path, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100_000 => n += 1,
            Err(e) => return Err(e),
        }
    };
    if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_data()) {
        drop(f);
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// What every line of server text in a snapshot starts with.
pub const FRAME: &str = "  | ";

/// The snapshot file's text: victims and actions, then the four parts.
pub fn render_snapshot(e: &Event) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# {}\n# time: {}\n\n",
        e.summary(),
        crate::report::clock::format(e.time, "%Y-%m-%d %H:%M:%S %z")
    ));
    s.push_str("== victims and actions ==\n");
    if e.outcomes.is_empty() {
        s.push_str("(none)\n");
    } else {
        s.push_str(&output::outcomes_table(&e.outcomes, 200));
    }
    if !e.followups.is_empty() {
        s.push_str("\n== follow-ups on earlier kills ==\n");
        for f in &e.followups {
            s.push_str(&format!(
                "thread {} ({}): {} - {}\n",
                f.id,
                neutral(&f.user),
                neutral(&f.outcome),
                neutral(&redact::sql(&f.detail))
            ));
        }
    }
    if let Some(snap) = &e.snapshot {
        s.push_str("\n== processlist ==\n");
        let header = [
            "ID", "USER", "HOST", "DB", "COMMAND", "TIME", "STATE", "INFO",
        ];
        let rows: Vec<Vec<String>> = snap
            .processlist
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    neutral(&r.user),
                    neutral(&r.host),
                    r.db.as_deref()
                        .map(neutral)
                        .unwrap_or_else(|| "NULL".into()),
                    neutral(&r.command),
                    r.time.to_string(),
                    neutral(r.state.as_deref().unwrap_or_default()),
                    r.info
                        .as_deref()
                        .map(|i| neutral(&redact::sql(i)))
                        .unwrap_or_else(|| "NULL".into()),
                ]
            })
            .collect();
        s.push_str(&output::render(&header, &rows));
        // The server's own multi-line text, each line behind FRAME: a
        // statement in it cannot forge a `== … ==` line of this file.
        s.push_str("\n== SHOW ENGINE INNODB STATUS ==\n");
        s.push_str(&framed(&redact::sql(&snap.innodb_status), FRAME));
        s.push_str("\n== lock waits ==\n");
        // No statement text there today, but a server version may add some.
        s.push_str(&framed(&redact::sql(&snap.lock_waits), FRAME));
        s.push_str("\n== INNODB_TRX ==\n");
        s.push_str(&framed(&redact::sql(&snap.innodb_trx), FRAME));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_of_one_second_get_their_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let t = chrono::Local::now();
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| write_snapshot(dir.path(), "crm0", t, &format!("snapshot {i}\n")).unwrap())
            .collect();
        let stamp = t.format("%Y%m%d-%H%M%S").to_string();
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(
                p.file_name().unwrap().to_string_lossy(),
                format!("{stamp}-{}.txt", i + 1)
            );
            assert_eq!(fs::read_to_string(p).unwrap(), format!("snapshot {i}\n"));
        }
    }
}
