//! Human-readable tables of what matched and what was done.

use crate::core::outcome::{KillResult, Outcome};
use crate::core::text::{info_text, log_value, neutral};

/// Render rows of cells as an aligned text table with a header.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    crate::core::text::align(header, rows)
}

/// The victims table: id, user, host, db, command, time, info, reason, action, result.
pub fn outcomes_table(outcomes: &[Outcome], info_width: usize) -> String {
    table_of(None, outcomes, info_width)
}

/// The table `mysqk kill` prints: [`outcomes_table`] with an INSTANCE column
/// first, so lines of several instances (or pasted into a ticket) say where
/// they come from.
pub fn instance_outcomes_table(dbid: &str, outcomes: &[Outcome], info_width: usize) -> String {
    table_of(Some(dbid), outcomes, info_width)
}

fn table_of(dbid: Option<&str>, outcomes: &[Outcome], info_width: usize) -> String {
    let mut header = vec![
        "ID", "USER", "HOST", "DB", "COMMAND", "TIME", "INFO", "REASON", "ACTION", "RESULT",
    ];
    if dbid.is_some() {
        header.insert(0, "INSTANCE");
    }
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let r = &o.victim.row;
            dbid.map(str::to_string)
                .into_iter()
                .chain([
                    r.id.to_string(),
                    neutral(&r.user),
                    neutral(&r.host),
                    neutral(r.db.as_deref().unwrap_or_default()),
                    neutral(&r.command),
                    r.time.to_string(),
                    info_text(r, info_width),
                    neutral(&o.victim.reason_text()),
                    o.action.label().to_string(),
                    neutral(&o.result.text()),
                ])
                .collect()
        })
        .collect();
    render(&header, &rows)
}

/// The log line written for each kill (SPEC 5): one line, every value that
/// could hold a space quoted ([`log_value`]), so `user="a b" host=…` parses
/// back the same way whatever the server's names contain.
pub fn log_line(dbid: &str, o: &Outcome) -> String {
    let r = &o.victim.row;
    format!(
        "{dbid}: thread {} user={} host={} db={} command={} time={}s info={} reason={} action={} result={}",
        r.id,
        log_value(&r.user),
        log_value(&r.host),
        log_value(r.db.as_deref().unwrap_or("NULL")),
        log_value(&r.command),
        r.time,
        log_value(&info_text(r, 100)),
        log_value(&o.victim.reason_text()),
        o.action.label(),
        log_value(&o.result.text())
    )
}

/// `1 thread`, `2 threads`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// What the kills of one pass came to, counted by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub matched: usize,
    pub killed: usize,
    pub gone: usize,
    pub no_session: usize,
    pub failed: usize,
    /// Re-checked right before the KILL and found changed: left alone.
    pub changed: usize,
    pub dry_run: bool,
}

impl Tally {
    pub fn of(outcomes: &[Outcome], dry_run: bool) -> Tally {
        let mut t = Tally {
            matched: outcomes.len(),
            dry_run,
            ..Tally::default()
        };
        for o in outcomes {
            match o.result {
                // Unanswered: sent; its answer comes later (watch only).
                KillResult::Killed { .. } | KillResult::Unanswered { .. } => t.killed += 1,
                KillResult::ChangedBeforeKill { .. } => t.changed += 1,
                KillResult::Gone => t.gone += 1,
                // Waiting for a free session slot: not killed, no session yet.
                KillResult::NoSession { .. } | KillResult::Pending { .. } => t.no_session += 1,
                // A refused login is a failure too (exit 1), as is_failure says.
                KillResult::Failed { .. } | KillResult::LoginFailed { .. } => t.failed += 1,
                KillResult::DryRun => {}
            }
        }
        t
    }

    /// `3 matched, 2 killed, 1 gone, 0 no session, 0 failed` (with `, 1
    /// changed before kill` after `gone` when the re-check left any alone);
    /// in a dry run `DRY RUN: 3 matched, none killed`.
    pub fn text(&self) -> String {
        if self.dry_run {
            format!("DRY RUN: {} matched, none killed", self.matched)
        } else {
            let changed = if self.changed > 0 {
                format!(", {} changed before kill", self.changed)
            } else {
                String::new()
            };
            format!(
                "{} matched, {} killed, {} gone{changed}, {} no session, {} failed",
                self.matched, self.killed, self.gone, self.no_session, self.failed
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_words() {
        assert_eq!(count(1, "thread"), "1 thread");
        assert_eq!(count(0, "thread"), "0 threads");
        assert_eq!(count(57, "thread"), "57 threads");
        let t = Tally {
            matched: 3,
            killed: 2,
            gone: 1,
            ..Tally::default()
        };
        assert_eq!(
            t.text(),
            "3 matched, 2 killed, 1 gone, 0 no session, 0 failed"
        );
        let dry = Tally {
            matched: 2,
            dry_run: true,
            ..Tally::default()
        };
        assert_eq!(dry.text(), "DRY RUN: 2 matched, none killed");
        assert!(!dry.text().contains("  "));
    }

    #[test]
    fn tables_align_wide_characters() {
        let t = render(
            &["INFO", "X"],
            &[
                vec!["中文".into(), "1".into()],
                vec!["abcd".into(), "2".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        // "中文" is four terminal columns wide, like "abcd": the X column lines up.
        assert_eq!(lines[1], "中文  1");
        assert_eq!(lines[2], "abcd  2");
    }
}
