//! `mysqk match`: an instance's rules applied to a saved processlist, without
//! connecting to anything ("what would mysqk have killed?").
//!
//! Offline there are no lock waits (`k_lock` cannot match) and no way to know
//! which rows were mysqk's own connections; everything else is exactly the
//! matcher `kill` and `watch` use.

use std::io::Read;

use chrono::Local;

use crate::cli::dump::{self, DumpError};
use crate::core::matcher::{self, Rules, Scan, Victim};
use crate::core::row::ProcRow;
use crate::core::text::neutral;
use crate::report::history::{self, SnapshotText};
use crate::report::jsonl::ThreadRecord;
use crate::report::output;
use crate::server::killer::Action;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{name}: cannot read: {reason}")]
    Read { name: String, reason: String },
    /// A malformed dump, with the line the parser stopped at.
    #[error("{name}:{}: {}", .source.line, .source.message)]
    Dump { name: String, source: DumpError },
}

/// The dump's text and a name for messages; `-` reads stdin.
pub fn read_source(from: &str) -> Result<(String, String), OfflineError> {
    if from == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| OfflineError::Read {
                name: "<stdin>".into(),
                reason: e.to_string(),
            })?;
        return Ok(("<stdin>".into(), text));
    }
    let bytes = std::fs::read(from).map_err(|e| OfflineError::Read {
        name: from.into(),
        reason: e.to_string(),
    })?;
    // A dump of a server with mixed charsets may hold invalid UTF-8 in Info;
    // a replaced character is better than refusing the whole file.
    Ok((from.into(), String::from_utf8_lossy(&bytes).into_owned()))
}

/// One processlist to replay: a result set of a dump, or a mysqk snapshot.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Where it comes from, for the output: `file`, or `file line N` when
    /// the file holds several.
    pub name: String,
    pub rows: Vec<ProcRow>,
}

/// Every processlist in `from`: a dump file (each result set on its own), a
/// mysqk snapshot file, a directory of them (its snapshot files if it has
/// any, else its `.txt` files; sorted by path, which sorts snapshot files by
/// time), or `-` (stdin).
pub fn load(from: &str) -> Result<Vec<Replay>, OfflineError> {
    let path = std::path::Path::new(from);
    if from == "-" || !path.is_dir() {
        let (name, text) = read_source(from)?;
        return replays_of(&name, &text, false);
    }
    let mut files = Vec::new();
    collect_files(path, 2, &mut files).map_err(|e| OfflineError::Read {
        name: from.into(),
        reason: e.to_string(),
    })?;
    // A snapshot directory may hold other files (notes, a status file): when
    // it has snapshot files, only those are replayed.
    if files.iter().any(|f| is_snapshot_file(f)) {
        files.retain(|f| is_snapshot_file(f));
    }
    files.sort();
    if files.is_empty() {
        return Err(OfflineError::Read {
            name: from.into(),
            reason: "no .txt files in this directory".into(),
        });
    }
    let mut out = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let (name, text) = read_source(&name)?;
        out.extend(replays_of(&name, &text, true)?);
    }
    Ok(out)
}

fn is_snapshot_file(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(history::is_snapshot_name)
}

/// `.txt` files under `dir`, `depth` levels down (a snapshot_dir holds one
/// folder per instance).
fn collect_files(
    dir: &std::path::Path,
    depth: usize,
    out: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if depth > 1 {
                collect_files(&path, depth - 1, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "txt") {
            out.push(path);
        }
    }
    Ok(())
}

/// The processlists of one file. In a directory, a mysqk event file without
/// a processlist (follow-ups only) is skipped rather than an error.
fn replays_of(name: &str, text: &str, in_dir: bool) -> Result<Vec<Replay>, OfflineError> {
    let snapshot = history::processlist_of(text).map_err(|e| OfflineError::Dump {
        name: name.into(),
        source: DumpError {
            line: e.line,
            message: e.message,
        },
    })?;
    match snapshot {
        SnapshotText::Rows(rows) => {
            return Ok(vec![Replay {
                name: name.into(),
                rows,
            }])
        }
        SnapshotText::NoProcesslist if in_dir => return Ok(Vec::new()),
        SnapshotText::NoProcesslist => {
            return Err(OfflineError::Read {
                name: name.into(),
                reason: "this mysqk event file has no processlist (an event about earlier kills)"
                    .into(),
            })
        }
        SnapshotText::NotMysqk => {}
    }
    let sets = dump::parse_sets(text).map_err(|source| OfflineError::Dump {
        name: name.into(),
        source,
    })?;
    if sets.len() <= 1 {
        let rows = sets.into_iter().next().map(|s| s.rows).unwrap_or_default();
        return Ok(vec![Replay {
            name: name.into(),
            rows,
        }]);
    }
    Ok(sets
        .into_iter()
        .map(|s| Replay {
            name: format!("{name} line {}", s.line),
            rows: s.rows,
        })
        .collect())
}

/// Parse the dump; errors carry the source name and line.
pub fn parse(name: &str, text: &str) -> Result<Vec<ProcRow>, OfflineError> {
    dump::parse_dump(text).map_err(|source| OfflineError::Dump {
        name: name.into(),
        source,
    })
}

/// The victims the rules pick among `rows`.
pub fn evaluate(rows: Vec<ProcRow>, rules: &Rules) -> Vec<Victim> {
    matcher::select_victims(
        &Scan {
            rows,
            ..Scan::default()
        },
        rules,
    )
}

/// Table of what would be killed, and why.
pub fn table(victims: &[Victim], rules: &Rules, info_width: usize) -> String {
    let header = [
        "ID", "USER", "HOST", "DB", "COMMAND", "TIME", "STATE", "INFO", "REASON", "ACTION",
    ];
    let rows: Vec<Vec<String>> = victims
        .iter()
        .map(|v| {
            let r = &v.row;
            vec![
                r.id.to_string(),
                neutral(&r.user),
                neutral(&r.host),
                neutral(r.db.as_deref().unwrap_or_default()),
                neutral(&r.command),
                r.time.to_string(),
                neutral(r.state.as_deref().unwrap_or_default()),
                crate::core::text::info_text(r, info_width),
                v.reason_text(),
                format!(
                    "would {}",
                    Action::for_victim(rules.mode, &r.command).label()
                ),
            ]
        })
        .collect();
    output::render(&header, &rows)
}

/// One JSON line per victim (`result: "offline"`).
pub fn json_lines(instance: &str, victims: &[Victim], rules: &Rules) -> Vec<String> {
    let ts = Local::now();
    victims
        .iter()
        .map(|v| {
            ThreadRecord::offline(
                ts,
                instance,
                v,
                Action::for_victim(rules.mode, &v.row.command),
            )
            .to_line()
        })
        .collect()
}

/// Notes about rules that cannot be evaluated offline.
pub fn notes(rules: &Rules) -> Vec<String> {
    let mut n = Vec::new();
    if rules.lock > 0 {
        n.push(format!(
            "note: k_lock={} is not evaluated offline (a processlist dump has no lock waits)",
            rules.lock
        ));
    }
    n
}
