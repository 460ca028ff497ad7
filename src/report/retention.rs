//! Snapshot retention: `snapshot_keep_days` and `snapshot_max_mb`. The
//! decision is pure ([`plan`]); [`prune`] lists and deletes, and runs only on
//! the reporter thread, so instance threads never wait on it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::report::history;

/// One snapshot file as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub path: PathBuf,
    pub modified: SystemTime,
    pub len: u64,
}

/// Which files to delete: those older than `keep`, then the oldest until
/// the rest fits in `max_bytes`. The newest file is always kept: it is the
/// evidence of the latest event, even when it alone exceeds the limit.
pub fn plan(
    files: &[FileInfo],
    now: SystemTime,
    keep: Option<Duration>,
    max_bytes: Option<u64>,
) -> Vec<PathBuf> {
    let mut by_age: Vec<&FileInfo> = files.iter().collect();
    // Oldest first; the path breaks ties so the plan is deterministic.
    by_age.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.path.cmp(&b.path)));
    let newest = by_age.pop();
    let mut delete = Vec::new();
    let mut kept: Vec<&FileInfo> = Vec::new();
    for f in by_age {
        let age = now.duration_since(f.modified).unwrap_or(Duration::ZERO);
        if keep.is_some_and(|k| age > k) {
            delete.push(f.path.clone());
        } else {
            kept.push(f);
        }
    }
    if let Some(max) = max_bytes {
        let mut total: u64 = kept.iter().map(|f| f.len).sum::<u64>() + newest.map_or(0, |f| f.len);
        for f in kept {
            if total <= max {
                break;
            }
            total -= f.len;
            delete.push(f.path.clone());
        }
    }
    delete
}

/// What one prune did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub files: usize,
    pub bytes: u64,
    pub errors: Vec<String>,
}

/// Apply the retention settings to the snapshot files under `dir` (only
/// files named as the reporter names them; nothing else there is touched).
pub fn prune(dir: &Path, keep_days: u64, max_mb: u64) -> Pruned {
    let mut out = Pruned::default();
    if keep_days == 0 && max_mb == 0 {
        return out;
    }
    let files: Vec<FileInfo> = match history::snapshot_files(dir) {
        Ok(list) => list
            .into_iter()
            .filter_map(|(_, path)| {
                let md = std::fs::metadata(&path).ok()?;
                Some(FileInfo {
                    modified: md.modified().ok()?,
                    len: md.len(),
                    path,
                })
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.errors.push(format!("{}: {e}", dir.display()));
            return out;
        }
    };
    let keep = (keep_days > 0).then(|| Duration::from_secs(keep_days.saturating_mul(86_400)));
    let max = (max_mb > 0).then(|| max_mb.saturating_mul(1024 * 1024));
    for path in plan(&files, SystemTime::now(), keep, max) {
        let len = files.iter().find(|f| f.path == path).map_or(0, |f| f.len);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                out.files += 1;
                out.bytes += len;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => out.errors.push(format!("{}: {e}", path.display())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn file(name: &str, age_days: u64, len: u64, now: SystemTime) -> FileInfo {
        FileInfo {
            path: PathBuf::from(name),
            modified: now - Duration::from_secs(age_days * DAY),
            len,
        }
    }

    #[test]
    fn old_files_go_then_the_oldest_until_the_rest_fits() {
        let now = SystemTime::now();
        let files = vec![
            file("a", 100, 10, now),
            file("b", 40, 10, now),
            file("c", 20, 10, now),
            file("d", 1, 10, now),
        ];
        let keep = Some(Duration::from_secs(30 * DAY));
        assert_eq!(
            plan(&files, now, keep, None),
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
        assert_eq!(
            plan(&files, now, None, Some(25)),
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
        assert_eq!(
            plan(&files, now, keep, Some(10)),
            vec![PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("c")]
        );
        assert!(plan(&files, now, None, None).is_empty());
    }

    #[test]
    fn the_newest_file_is_kept_whatever_the_limits() {
        let now = SystemTime::now();
        let files = vec![file("old", 500, 50, now), file("new", 400, 5000, now)];
        let keep = Some(Duration::from_secs(DAY));
        assert_eq!(plan(&files, now, keep, Some(1)), vec![PathBuf::from("old")]);
    }
}
