//! The status file `watch` keeps for monitoring (`[settings] status_file`,
//! default `<snapshot_dir>/mysqk.status`).
//!
//! Instance threads only update an in-memory board (a short mutex, no I/O:
//! they never block on disk); the supervisor rewrites the file atomically
//! (temporary file + rename, so a reader never sees half a file) at most a few
//! times a second, whenever something changed — in practice right after each
//! pass. The format is one JSON object, documented in the README ("status
//! file"); `version` changes if a field changes meaning.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Local, SecondsFormat};
use serde::Serialize;

use crate::core::redact;
use crate::core::text::neutral;

/// Server text as the status file shows it: masked, then neutralised.
fn shown(s: &str) -> String {
    neutral(&redact::sql(s))
}

/// What one instance thread reports about itself.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct InstanceStatus {
    pub addr: String,
    /// `starting`, `checking`, `keep-alive` (run_max_count 0 or used up),
    /// `outside-window`, `stopped`.
    pub state: String,
    /// The `db_puser` session is live and in step, and no held session is
    /// waiting for a stalled server: the instance can be checked.
    pub connected: bool,
    /// Users with a live held session.
    pub connected_users: Vec<String>,
    /// The server thread id of each held session, by user (also of one
    /// waiting for a stalled server).
    pub held_sessions: BTreeMap<String, u64>,
    /// Users without one, with the last error.
    pub disconnected_users: BTreeMap<String, String>,
    /// Time of the last check pass (successful or not), RFC 3339 local time.
    pub last_pass: Option<String>,
    pub last_pass_ok: Option<bool>,
    /// Every check pass since this instance was started.
    pub passes: u64,
    /// Counted passes since the last clean start (compare with `run_max_count`).
    pub run_count: u64,
    pub run_max_count: u32,
    pub dry_run: bool,
    /// Victims found (in dry run: reported).
    pub matched: u64,
    /// KILLs the server accepted.
    pub kills: u64,
    /// Failed passes (scan errors) plus failed kills.
    pub errors: u64,
    pub last_error: Option<String>,
    /// Events this instance could not queue for the reporter.
    pub dropped_events: u64,
    /// Kills sent and not yet verified gone.
    pub pending_kills: usize,
    /// Rounds of keep-alive pings done (every `check_interval` while
    /// checking, every `check_interval * ping_multi` otherwise): shows the
    /// thread goes round its loop also when no pass runs.
    pub ping_rounds: u64,
    /// Which thread generation owns this entry (a restarted instance thread
    /// must not be overwritten by its stopping predecessor).
    #[serde(skip)]
    pub generation: u64,
}

#[derive(Debug, Default)]
struct Board {
    instances: BTreeMap<String, InstanceStatus>,
    config_error: Option<String>,
    dirty: bool,
}

/// Shared between the instance threads (writers) and the supervisor (reader).
#[derive(Debug, Default)]
pub struct StatusBoard {
    inner: Mutex<Board>,
}

/// The document without its instances (rendered one per line after it).
#[derive(Serialize)]
struct Head<'a> {
    version: u32,
    pid: u32,
    config: String,
    started: String,
    updated: String,
    /// The last rejected reload, while the file stays invalid.
    config_error: Option<&'a str>,
    /// Events dropped because the reporter queue was full (all instances).
    dropped_events: u64,
}

pub fn timestamp(t: DateTime<Local>) -> String {
    crate::report::clock::rfc3339(t, SecondsFormat::Millis)
}

impl StatusBoard {
    pub fn new() -> StatusBoard {
        StatusBoard::default()
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // A panicking instance thread must not take the status file down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new entry for `dbid`, owned by thread generation `generation`.
    pub fn register(&self, dbid: &str, addr: &str, generation: u64) {
        let mut b = self.lock();
        b.instances.insert(
            dbid.to_string(),
            InstanceStatus {
                addr: addr.to_string(),
                state: "starting".into(),
                generation,
                ..InstanceStatus::default()
            },
        );
        b.dirty = true;
    }

    /// Change `dbid`'s entry if `generation` still owns it.
    pub fn update(&self, dbid: &str, generation: u64, f: impl FnOnce(&mut InstanceStatus)) {
        let mut b = self.lock();
        if let Some(s) = b.instances.get_mut(dbid) {
            if s.generation == generation {
                // Only a real change is written: an idle fleet publishes the
                // same status every loop.
                let before = s.clone();
                f(s);
                if *s != before {
                    b.dirty = true;
                }
            }
        }
    }

    pub fn remove(&self, dbid: &str) {
        let mut b = self.lock();
        b.instances.remove(dbid);
        b.dirty = true;
    }

    pub fn set_config_error(&self, e: Option<String>) {
        let mut b = self.lock();
        if b.config_error != e {
            b.config_error = e;
            b.dirty = true;
        }
    }

    /// Have the next [`StatusBoard::render_if_dirty`] render (a write failed).
    pub fn mark_dirty(&self) {
        self.lock().dirty = true;
    }

    /// Mark every instance stopped (at shutdown).
    pub fn all_stopped(&self) {
        let mut b = self.lock();
        for s in b.instances.values_mut() {
            s.state = "stopped".into();
        }
        b.dirty = true;
    }

    pub fn get(&self, dbid: &str) -> Option<InstanceStatus> {
        self.lock().instances.get(dbid).cloned()
    }

    /// The JSON text if anything changed since the last call (or `force`).
    pub fn render_if_dirty(
        &self,
        force: bool,
        config: &Path,
        started: DateTime<Local>,
        dropped_events: u64,
    ) -> Option<String> {
        let mut b = self.lock();
        if !b.dirty && !force {
            return None;
        }
        b.dirty = false;
        // Errors quote the server; the file is read by agents and people.
        let instances: BTreeMap<String, InstanceStatus> = b
            .instances
            .iter()
            .map(|(k, s)| {
                let mut s = s.clone();
                s.last_error = s.last_error.as_deref().map(shown);
                for e in s.disconnected_users.values_mut() {
                    *e = shown(e);
                }
                (k.clone(), s)
            })
            .collect();
        let config_error = b.config_error.as_deref().map(shown);
        let head = Head {
            version: 1,
            pid: std::process::id(),
            config: config.display().to_string(),
            started: timestamp(started),
            updated: timestamp(Local::now()),
            config_error: config_error.as_deref(),
            dropped_events,
        };
        render(&head, &instances)
    }
}

/// The head's fields one per line, then each instance compact on a line of
/// its own: a tenth smaller than pretty-printing every field (a 10,000
/// instance fleet writes megabytes), and `grep crm0` still shows one instance.
fn render(head: &Head, instances: &BTreeMap<String, InstanceStatus>) -> Option<String> {
    let head = serde_json::to_string_pretty(head).ok()?;
    let mut out = String::with_capacity(head.len() + instances.len() * 512);
    out.push_str(head.strip_suffix("\n}")?);
    out.push_str(",\n  \"instances\": {");
    for (i, (dbid, s)) in instances.iter().enumerate() {
        out.push_str(if i == 0 { "\n    " } else { ",\n    " });
        out.push_str(&serde_json::to_string(dbid).ok()?);
        out.push_str(": ");
        out.push_str(&serde_json::to_string(s).ok()?);
    }
    out.push_str(if instances.is_empty() {
        "}\n}\n"
    } else {
        "\n  }\n}\n"
    });
    Some(out)
}

/// Status files whose stale temporaries were looked for by this process.
static CLEANED: Mutex<std::collections::BTreeSet<std::path::PathBuf>> =
    Mutex::new(std::collections::BTreeSet::new());

/// The first time this process writes `path`: remove `.<name>.<pid>.tmp`
/// files left by a mysqk that died mid-write (kill -9, power loss), whose
/// pid no longer runs. A live writer's temporary file is left alone.
fn remove_stale_temps_once(path: &Path, name: &str) {
    let first = CLEANED
        .lock()
        .map(|mut c| c.insert(path.to_path_buf()))
        .unwrap_or(false);
    if !first {
        return;
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for e in entries.flatten() {
        let file = e.file_name();
        let file = file.to_string_lossy();
        let pid = file
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"))
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        let Some(pid) = pid.filter(|&p| p > 0 && p as u32 != std::process::id()) else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Replace `path` with `text` atomically: write a temporary file beside it,
/// then rename over. Mode 0644: it holds no secret and a monitoring agent
/// usually runs as another user.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mysqk.status".into());
    remove_stale_temps_once(path, &name);
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    // Whatever failed (full disk, quota), no temporary file is left behind;
    // the old status file stays whole and the next change retries.
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_json_and_respects_generations() {
        let board = StatusBoard::new();
        board.register("crm0", "10.0.0.1:3306", 1);
        board.update("crm0", 1, |s| {
            s.kills = 3;
            s.connected_users = vec!["app1".into()];
            s.last_error = Some("near 'IDENTIFIED BY 'S3cr'' \x1b[31m\u{85}".into());
        });
        // A stopping predecessor (generation 0) must not overwrite it.
        board.update("crm0", 0, |s| s.kills = 99);
        let text = board
            .render_if_dirty(false, Path::new("/etc/mysqk.ini"), Local::now(), 2)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["dropped_events"], 2);
        assert_eq!(v["instances"]["crm0"]["kills"], 3);
        assert_eq!(v["instances"]["crm0"]["connected_users"][0], "app1");
        assert_eq!(v["instances"]["crm0"]["state"], "starting");
        assert!(v["instances"]["crm0"].get("generation").is_none());
        // Masked and neutralised like every other output.
        let err = v["instances"]["crm0"]["last_error"].as_str().unwrap();
        assert!(
            !err.contains("S3cr") && !err.contains('\x1b') && !err.contains('\u{85}'),
            "{err}"
        );
        assert!(board
            .render_if_dirty(false, Path::new("x"), Local::now(), 0)
            .is_none());
    }

    #[test]
    fn an_unchanged_update_writes_nothing_and_each_instance_is_one_line() {
        let board = StatusBoard::new();
        board.register("a", "10.0.0.1:3306", 1);
        board.register("b", "10.0.0.2:3306", 1);
        board.update("a", 1, |s| s.passes = 1);
        let text = board
            .render_if_dirty(false, Path::new("x"), Local::now(), 0)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["instances"]["a"]["passes"], 1);
        assert_eq!(text.lines().filter(|l| l.contains("\"addr\"")).count(), 2);
        board.update("a", 1, |s| s.passes = 1);
        assert!(board
            .render_if_dirty(false, Path::new("x"), Local::now(), 0)
            .is_none());
        board.update("a", 1, |s| s.passes = 2);
        assert!(board
            .render_if_dirty(false, Path::new("x"), Local::now(), 0)
            .is_some());
        let empty = StatusBoard::new();
        let text = empty
            .render_if_dirty(true, Path::new("x"), Local::now(), 0)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["instances"].as_object().unwrap().is_empty());
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mysqk.status");
        // A pid that surely no longer runs: a child that was reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(format!(".mysqk.status.{dead}.tmp"));
        let live = dir.path().join(".mysqk.status.1.tmp");
        fs::write(&stale, "half").unwrap();
        fs::write(&live, "pid 1 runs").unwrap();
        write_atomic(&path, "one\n").unwrap();
        assert!(!stale.exists(), "a dead writer's temporary file is removed");
        assert!(live.exists(), "a live writer's is not");
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/mysqk.status");
        write_atomic(&path, "one\n").unwrap();
        write_atomic(&path, "two\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two\n");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}
