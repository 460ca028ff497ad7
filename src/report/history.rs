//! Reading back the snapshot files the reporter writes
//! (`snapshot_dir/<dbid>/<YYYYmmdd-HHMMSS>-<n>.txt`): `mysqk events` lists
//! what happened, `mysqk match --from` replays their processlists, and
//! retention finds what to prune.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};

use crate::core::row::ProcRow;
use crate::core::text::{char_width, neutral};

/// The header of a snapshot's processlist section (see `render_snapshot`).
pub const PROCESSLIST: &str = "== processlist ==";
const VICTIMS: &str = "== victims and actions ==";
const PROCESSLIST_COLUMNS: [&str; 8] = [
    "ID", "USER", "HOST", "DB", "COMMAND", "TIME", "STATE", "INFO",
];

/// `YYYYmmdd-HHMMSS-N.txt`: the names the reporter gives snapshot files.
pub fn is_snapshot_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".txt") else {
        return false;
    };
    let b = stem.as_bytes();
    b.len() >= 17
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'-'
        && b[16..].iter().all(u8::is_ascii_digit)
}

/// Every snapshot file under `dir` as (dbid, path), sorted by dbid then name
/// (names sort by time).
pub fn snapshot_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let dbid = entry.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if is_snapshot_name(&name) && f.file_type().is_ok_and(|t| t.is_file()) {
                out.push((dbid.clone(), f.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// One event as its snapshot file tells it.
#[derive(Debug, Clone)]
pub struct EventEntry {
    pub dbid: String,
    pub time: DateTime<FixedOffset>,
    /// The summary line without the `[mysqk] dbid (addr): ` prefix.
    pub summary: String,
    /// The victims-and-actions table, one line each, made safe to print.
    pub victims: Vec<String>,
    pub path: PathBuf,
}

/// The time in a file name `20261201-091011-3.txt`, as local time.
fn time_of_name(path: &Path) -> Option<DateTime<FixedOffset>> {
    let name = path.file_name()?.to_str()?;
    let naive = NaiveDateTime::parse_from_str(name.get(..15)?, "%Y%m%d-%H%M%S").ok()?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.fixed_offset())
}

/// Read one snapshot file's header and victims table.
pub fn read_event(dbid: &str, path: &Path) -> std::io::Result<EventEntry> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut summary = String::new();
    let mut time = None;
    let mut victims = Vec::new();
    let mut in_victims = false;
    for line in f.lines() {
        // A file is the server's text: never printed raw.
        let line = neutral(&line?);
        if let Some(t) = line.strip_prefix("# time: ") {
            time = DateTime::parse_from_str(t.trim(), "%Y-%m-%d %H:%M:%S %z").ok();
        } else if summary.is_empty() && line.starts_with("# ") {
            let s = line[2..].trim();
            summary = s.split_once("): ").map_or(s, |(_, rest)| rest).to_string();
        } else if line == VICTIMS {
            in_victims = true;
        } else if in_victims {
            if line.trim().is_empty() || line.starts_with("== ") {
                break;
            }
            victims.push(line);
        }
    }
    let time = time
        .or_else(|| time_of_name(path))
        .unwrap_or_else(|| Local::now().fixed_offset());
    Ok(EventEntry {
        dbid: dbid.to_string(),
        time,
        summary,
        victims,
        path: path.to_path_buf(),
    })
}

/// The events under `dir`, oldest first, of the instances in `dbs` (all
/// when `None`) since `since`.
pub fn events(
    dir: &Path,
    dbs: Option<&[String]>,
    since: Option<DateTime<FixedOffset>>,
) -> std::io::Result<Vec<EventEntry>> {
    let mut out = Vec::new();
    for (dbid, path) in snapshot_files(dir)? {
        if dbs.is_some_and(|d| !d.contains(&dbid)) {
            continue;
        }
        // A quick filter on the name before reading the file.
        if let (Some(s), Some(t)) = (since, time_of_name(&path)) {
            if t < s - chrono::Duration::days(1) {
                continue;
            }
        }
        let e = read_event(&dbid, &path)?;
        if since.is_some_and(|s| e.time < s) {
            continue;
        }
        out.push(e);
    }
    out.sort_by(|a, b| a.time.cmp(&b.time).then(a.path.cmp(&b.path)));
    Ok(out)
}

/// What a file is, seen as a mysqk snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotText {
    /// Not written by mysqk (a client dump, say).
    NotMysqk,
    /// A mysqk event without a processlist (follow-ups on earlier kills).
    NoProcesslist,
    Rows(Vec<ProcRow>),
}

/// A snapshot problem at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SnapshotError {
    pub line: usize,
    pub message: String,
}

/// The processlist of a mysqk snapshot file. Its table is aligned by
/// terminal columns, so each column starts where its header word does.
pub fn processlist_of(text: &str) -> Result<SnapshotText, SnapshotError> {
    let lines: Vec<&str> = text.lines().collect();
    let mysqk = lines.first().is_some_and(|l| l.starts_with("# ")) && lines.contains(&VICTIMS);
    if !mysqk {
        return Ok(SnapshotText::NotMysqk);
    }
    let Some(at) = lines.iter().position(|l| *l == PROCESSLIST) else {
        return Ok(SnapshotText::NoProcesslist);
    };
    let err = |line: usize, message: String| SnapshotError { line, message };
    let header_no = at + 1;
    let header = lines
        .get(header_no)
        .ok_or_else(|| err(header_no + 1, "the processlist has no header line".into()))?;
    let starts = column_starts(header);
    let names: Vec<&str> = header.split_whitespace().collect();
    if names != PROCESSLIST_COLUMNS {
        return Err(err(
            header_no + 1,
            format!(
                "unexpected processlist header `{header}` (expected {})",
                PROCESSLIST_COLUMNS.join(" ")
            ),
        ));
    }
    let mut rows = Vec::new();
    for (n, line) in lines.iter().enumerate().skip(header_no + 1) {
        if line.trim().is_empty() || line.starts_with("== ") {
            break;
        }
        let c = split_at_columns(line, &starts);
        let number = |i: usize, what: &str| {
            c[i].parse::<u64>()
                .map_err(|_| err(n + 1, format!("{what} `{}` is not a number", c[i])))
        };
        let null = |s: &str| (s != "NULL").then(|| s.to_string());
        rows.push(ProcRow {
            query_id: None,
            id: number(0, "ID")?,
            user: c[1].clone(),
            host: c[2].clone(),
            db: null(&c[3]),
            command: c[4].clone(),
            time: number(5, "TIME")?,
            time_ms: None,
            // As the snapshot shows it; the flavour is not recorded there.
            time_high: false,
            state: Some(c[6].clone()),
            info: null(&c[7]),
        });
    }
    Ok(SnapshotText::Rows(rows))
}

/// Terminal column where each word of a header line starts.
fn column_starts(header: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut col = 0;
    let mut prev_space = true;
    for c in header.chars() {
        let space = c == ' ';
        if !space && prev_space {
            starts.push(col);
        }
        prev_space = space;
        col += char_width(c);
    }
    starts
}

/// Cut `line` at the terminal columns `starts`; the last cell takes the rest.
fn split_at_columns(line: &str, starts: &[usize]) -> Vec<String> {
    let mut cells = vec![String::new(); starts.len()];
    let mut col = 0;
    let mut k = 0;
    for c in line.chars() {
        while k + 1 < starts.len() && col >= starts[k + 1] {
            k += 1;
        }
        cells[k].push(c);
        col += char_width(c);
    }
    cells.iter().map(|c| c.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names() {
        assert!(is_snapshot_name("20261201-091011-3.txt"));
        assert!(is_snapshot_name("20261201-091011-12.txt"));
        assert!(!is_snapshot_name("mysqk.status"));
        assert!(!is_snapshot_name("20261201-091011.txt"));
        assert!(!is_snapshot_name("notes.txt"));
    }

    #[test]
    fn processlist_cells_follow_the_header_columns() {
        let cells = |v: [&str; 8]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        // The table as the reporter renders it.
        let table = crate::core::text::align(
            &PROCESSLIST_COLUMNS,
            &[
                cells(["7", "app", "h:5000", "NULL", "Sleep", "30", "", "NULL"]),
                cells([
                    "8",
                    "中文",
                    "h:5001",
                    "crm",
                    "Query",
                    "12",
                    "Sending data",
                    "select 1 from t where a = 'x y'",
                ]),
            ],
        );
        let text = format!(
            "# [mysqk] x (h:1): 1 thread matched, 1 killed\n# time: 2026-12-01 09:10:11 +0000\n\n\
             == victims and actions ==\nID ...\n\n== processlist ==\n{table}\n== SHOW ENGINE INNODB STATUS ==\n"
        );
        let text = text.as_str();
        let SnapshotText::Rows(rows) = processlist_of(text).unwrap() else {
            panic!("not rows")
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].db, None);
        assert_eq!(rows[0].state.as_deref(), Some(""));
        assert_eq!(rows[0].info, None);
        assert_eq!(rows[1].user, "中文");
        assert_eq!(rows[1].state.as_deref(), Some("Sending data"));
        assert_eq!(
            rows[1].info.as_deref(),
            Some("select 1 from t where a = 'x y'")
        );
        assert_eq!(rows[1].time, 12);
    }
}
