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
