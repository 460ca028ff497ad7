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
use crate::report::event::Event;
use crate::report::hook::Hook;
use crate::report::mail::Mailer;
use crate::report::output;

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

fn run(rx: Receiver<Msg>, cfg: Arc<Config>) {
    let mut state = State::new(cfg);
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Msg::Event(e)) => state.handle(&e),
            Ok(Msg::Config(c)) => state.reconfigure(c),
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        state.mailer.tick();
    }
    state.mailer.shutdown();
}

struct State {
    cfg: Arc<Config>,
    mailer: Mailer,
    hook: Hook,
    /// Distinguishes several events in the same second.
    seq: u64,
}

impl State {
    fn new(cfg: Arc<Config>) -> State {
        State {
            mailer: Mailer::new(&cfg.mail),
            hook: Hook::new(&cfg.settings),
            cfg,
            seq: 0,
        }
    }

    fn reconfigure(&mut self, cfg: Arc<Config>) {
        self.mailer.reconfigure(&cfg.mail);
        self.hook = Hook::new(&cfg.settings);
        self.cfg = cfg;
    }

    fn handle(&mut self, e: &Event) {
        self.seq += 1;
        let path = match write_snapshot(&self.cfg.settings.snapshot_dir, e, self.seq) {
            Ok(p) => {
                log::info!("{}: snapshot written to {}", e.dbid, p.display());
                Some(p)
            }
            Err(err) => {
                log::error!("{}: cannot write the snapshot: {err}", e.dbid);
                None
            }
        };
        self.mailer.on_event(e, path.as_deref());
        self.hook.run(e, path.as_deref());
    }
}

/// `snapshot_dir/<dbid>/<YYYYmmdd-HHMMSS>-<n>.txt`, mode 0600.
pub fn write_snapshot(dir: &Path, e: &Event, seq: u64) -> std::io::Result<PathBuf> {
    let dir = dir.join(&e.dbid);
    fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}-{seq}.txt", e.time.format("%Y%m%d-%H%M%S")));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(render_snapshot(e).as_bytes())?;
    Ok(path)
}

/// The snapshot file's text: victims and actions, then the four parts.
pub fn render_snapshot(e: &Event) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# {}\n# time: {}\n\n",
        e.summary(),
        e.time.format("%Y-%m-%d %H:%M:%S %z")
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
                f.id, f.user, f.outcome, f.detail
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
                    r.user.clone(),
                    r.host.clone(),
                    r.db.clone().unwrap_or_else(|| "NULL".into()),
                    r.command.clone(),
                    r.time.to_string(),
                    r.state.clone().unwrap_or_default(),
                    r.info
                        .as_deref()
                        .map(|i| redact::sql(i).replace('\n', " "))
                        .unwrap_or_else(|| "NULL".into()),
                ]
            })
            .collect();
        s.push_str(&output::render(&header, &rows));
        s.push_str("\n== SHOW ENGINE INNODB STATUS ==\n");
        s.push_str(&redact::sql(&snap.innodb_status));
        s.push_str("\n\n== lock waits ==\n");
        // No statement text there today, but a server version may add some.
        s.push_str(&redact::sql(&snap.lock_waits));
        s.push_str("\n== INNODB_TRX ==\n");
        s.push_str(&redact::sql(&snap.innodb_trx));
    }
    s
}
