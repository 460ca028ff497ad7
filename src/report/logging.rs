//! Where `watch` logs go: `[settings] log_file` (appended to) when set, else
//! stderr. The logger is set up before the config is read, so it writes
//! through [`Sink`], which `watch` points at the file once it knows it (and
//! again after a reload that changes `log_file`). A log file moved away by
//! logrotate is noticed and re-opened by [`reopen_if_moved`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

struct Target {
    path: PathBuf,
    file: File,
}

static TARGET: Mutex<Option<Target>> = Mutex::new(None);

fn target() -> MutexGuard<'static, Option<Target>> {
    TARGET.lock().unwrap_or_else(|e| e.into_inner())
}

fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Log to `path` from now on (`None`: stderr). On error the old target stays.
pub fn set_file(path: Option<&Path>) -> io::Result<()> {
    let mut t = target();
    match path {
        None => *t = None,
        Some(p) => {
            if t.as_ref().is_some_and(|t| t.path == p) {
                return Ok(());
            }
            *t = Some(Target {
                path: p.to_path_buf(),
                file: open(p)?,
            });
        }
    }
    Ok(())
}

/// Re-open the log file if its path now names another file (rotated) or none.
pub fn reopen_if_moved() {
    let mut t = target();
    let Some(cur) = t.as_mut() else { return };
    let same = match (std::fs::metadata(&cur.path), cur.file.metadata()) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    };
    if !same {
        if let Ok(f) = open(&cur.path) {
            cur.file = f;
        }
    }
}

/// The `env_logger` target: the log file when set, else stderr.
pub struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut t = target();
        if let Some(t) = t.as_mut() {
            if t.file.write_all(buf).is_ok() {
                return Ok(buf.len());
            }
        }
        // No file, or it failed (disk full): a log line on stderr beats none.
        io::stderr().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One log line: `2026-12-01T10:14:17.123+01:00 INFO  text`, in the zone of
/// [`crate::report::clock`] like every other timestamp mysqk writes. No
/// module path: a line says what happened in words, and names its instance.
/// Messages quote server text (errors, names): one line, no control
/// character, whatever the server sent.
pub fn format(buf: &mut dyn Write, record: &log::Record) -> io::Result<()> {
    writeln!(
        buf,
        "{} {:<5} {}",
        crate::report::clock::stamp_now(),
        record.level(),
        crate::core::text::neutral(&record.args().to_string())
    )
}
