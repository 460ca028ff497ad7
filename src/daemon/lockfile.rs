//! One mysqk per config: `watch` and cron runs of `kill` take an exclusive
//! `flock(2)` on the lock file (`[settings] lock_file`, default
//! `<snapshot_dir>/mysqk.lock`, or `--lock-file`), and write their pid into it.
//!
//! `flock` rather than a pid check: the kernel drops the lock when the holder
//! dies, however it dies, so a stale file left by a `kill -9`ed process is
//! simply taken over, and a recycled pid can never make a dead holder look
//! alive. The pid inside is only there to name the holder in the message.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another mysqk (pid {pid}) holds the lock file {path}: a `mysqk watch` or an earlier \
         cron run is still active on this config"
    )]
    Held { path: PathBuf, pid: String },
    #[error("cannot use the lock file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A held lock; dropping it removes the file and releases the lock.
#[derive(Debug)]
pub struct LockFile {
    path: PathBuf,
    // Kept open: closing it would release the flock.
    _file: File,
}

impl LockFile {
    /// Take the lock or say who holds it. Never blocks.
    pub fn acquire(path: &Path) -> Result<LockFile, LockError> {
        let io_err = |source: io::Error| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        // A holder removes the file when it stops; if that happens between our
        // open and our flock we would hold a lock on a deleted inode while the
        // next process creates a fresh file. So: lock, then check the path
        // still names the inode we locked, and retry otherwise.
        for _ in 0..20 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(io_err)?;
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let pid = text.trim();
                    return Err(LockError::Held {
                        path: path.to_path_buf(),
                        pid: if pid.is_empty() {
                            "unknown, starting up".into()
                        } else {
                            pid.to_string()
                        },
                    });
                }
                return Err(io_err(err));
            }
            let ours = file.metadata().map_err(io_err)?;
            match fs::metadata(path) {
                Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {}
                _ => continue,
            }
            let mut old = String::new();
            let _ = file.read_to_string(&mut old);
            let old = old.trim();
            if !old.is_empty() {
                log::info!(
                    "{}: taking over a stale lock of pid {old} (that process is gone)",
                    path.display()
                );
            }
            file.set_len(0).map_err(io_err)?;
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            writeln!(file, "{}", std::process::id()).map_err(io_err)?;
            return Ok(LockFile {
                path: path.to_path_buf(),
                _file: file,
            });
        }
        Err(io_err(io::Error::other(
            "the lock file keeps being replaced by another process",
        )))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Remove while still holding the lock (see `acquire`), then the fd closes.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_names_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/mysqk.lock");
        let first = LockFile::acquire(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        // flock locks belong to the open file description: a second open in
        // the same process conflicts just like another process would.
        match LockFile::acquire(&path) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        assert!(!path.exists(), "released lock removes the file");
        let again = LockFile::acquire(&path).unwrap();
        drop(again);
    }

    #[test]
    fn stale_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mysqk.lock");
        // A file left behind by a dead process: nobody holds the flock.
        fs::write(&path, "999999\n").unwrap();
        let lock = LockFile::acquire(&path).unwrap();
        assert_eq!(
            fs::read_to_string(lock.path()).unwrap().trim(),
            std::process::id().to_string()
        );
    }
}
