//! Per-column filters: `k_match_*` / `k_ignore_*` (pt-kill's QUERY MATCHES).
//!
//! They only *narrow*: a thread still needs a reason from SPEC 2's rules
//! (k_longtime, k_sleep, k_include, k_lock) to be a victim, and `k_exclude` and
//! the never-kill list still win. Each regex looks at one processlist column;
//! the host is matched without the client port. A NULL column (no db, no
//! statement) is never matched by a pattern, as in pt-kill: `k_match_db`
//! drops it, `k_ignore_db` keeps it.

use regex::Regex;

use crate::core::row::ProcRow;

/// A processlist column a filter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Column {
    User,
    Host,
    Db,
    Command,
    State,
    Info,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::User => "user",
            Column::Host => "host",
            Column::Db => "db",
            Column::Command => "command",
            Column::State => "state",
            Column::Info => "info",
        }
    }

    /// The row's value for this column; `None` when the server shows NULL.
    pub fn value(self, row: &ProcRow) -> Option<&str> {
        match self {
            Column::User => Some(&row.user),
            // `10.0.0.1:51234` -> `10.0.0.1`: the port changes with every connection.
            Column::Host => Some(row.host_only()),
            Column::Db => row.db.as_deref(),
            Column::Command => Some(&row.command),
            Column::State => row.state.as_deref(),
            Column::Info => row.info.as_deref(),
        }
    }
}

/// `k_match_*` keeps only rows whose column matches; `k_ignore_*` drops rows whose column matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Match,
    Ignore,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Match => "match",
            Kind::Ignore => "ignore",
        }
    }
}

/// Every per-column key, in the order `check-config` shows them. The command
/// line flag is the key without `k_`, dashed: `k_match_command` -> `--match-command`.
pub const FIELD_KEYS: &[(&str, Kind, Column)] = &[
    ("k_match_command", Kind::Match, Column::Command),
    ("k_match_state", Kind::Match, Column::State),
    ("k_match_db", Kind::Match, Column::Db),
    ("k_match_host", Kind::Match, Column::Host),
    ("k_match_info", Kind::Match, Column::Info),
    ("k_ignore_command", Kind::Ignore, Column::Command),
    ("k_ignore_state", Kind::Ignore, Column::State),
    ("k_ignore_db", Kind::Ignore, Column::Db),
    ("k_ignore_host", Kind::Ignore, Column::Host),
    ("k_ignore_info", Kind::Ignore, Column::Info),
    ("k_ignore_user", Kind::Ignore, Column::User),
];

/// The ini key of a (kind, column) pair, e.g. `k_ignore_user`.
pub fn key_name(kind: Kind, column: Column) -> String {
    format!("k_{}_{}", kind.name(), column.name())
}

/// The per-column filters of one instance. Empty = no narrowing.
#[derive(Debug, Clone, Default)]
pub struct FieldFilters {
    entries: Vec<(Kind, Column, Regex)>,
}

impl FieldFilters {
    /// Set (or with `None`, clear) the filter for one key.
    pub fn set(&mut self, kind: Kind, column: Column, re: Option<Regex>) {
        self.entries
            .retain(|(k, c, _)| !(*k == kind && *c == column));
        if let Some(re) = re {
            self.entries.push((kind, column, re));
            self.entries.sort_by_key(|(k, c, _)| (*k, *c));
        }
    }

    pub fn get(&self, kind: Kind, column: Column) -> Option<&Regex> {
        self.entries
            .iter()
            .find(|(k, c, _)| *k == kind && *c == column)
            .map(|(_, _, re)| re)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `None` when the row passes every filter, else which key dropped it.
    pub fn rejects(&self, row: &ProcRow) -> Option<String> {
        for (kind, column, re) in &self.entries {
            let value = column.value(row);
            let hit = value.is_some_and(|v| re.is_match(v));
            let name = key_name(*kind, *column);
            match kind {
                Kind::Ignore if hit => {
                    return Some(format!("{name} /{}/ matches", re.as_str()));
                }
                Kind::Match if !hit => {
                    return Some(match value {
                        None => format!("{name}: {} is NULL", column.name()),
                        Some(_) => format!("{name} /{}/ does not match", re.as_str()),
                    });
                }
                _ => {}
            }
        }
        None
    }

    /// `k_match_command=/Query/ k_ignore_user=/^bi_/`, or `-` when none is set.
    pub fn describe(&self) -> String {
        if self.entries.is_empty() {
            return "-".into();
        }
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|(k, c, re)| format!("{}=/{}/", key_name(*k, *c), re.as_str()))
            .collect();
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ProcRow {
        ProcRow {
            query_id: None,
            id: 1,
            user: "app1".into(),
            host: "10.0.0.5:51000".into(),
            db: Some("crm".into()),
            command: "Query".into(),
            time: 5,
            time_ms: None,
            time_high: false,
            state: Some("User sleep".into()),
            info: Some("select sleep(60)".into()),
        }
    }

    fn only(kind: Kind, column: Column, re: &str) -> FieldFilters {
        let mut f = FieldFilters::default();
        f.set(kind, column, Some(Regex::new(re).unwrap()));
        f
    }

    #[test]
    fn table() {
        let no_db = ProcRow { db: None, ..row() };
        // (filter, row, passes?)
        let cases: Vec<(FieldFilters, ProcRow, bool)> = vec![
            (FieldFilters::default(), row(), true),
            (only(Kind::Match, Column::Command, "^Query$"), row(), true),
            (
                only(Kind::Match, Column::Command, "^Execute$"),
                row(),
                false,
            ),
            (only(Kind::Match, Column::State, "sleep"), row(), true),
            (only(Kind::Match, Column::Db, "^crm$"), row(), true),
            (only(Kind::Match, Column::Db, "."), no_db.clone(), false),
            (only(Kind::Ignore, Column::Db, "."), no_db, true),
            // The port is not part of the host.
            (
                only(Kind::Match, Column::Host, r"^10\.0\.0\.5$"),
                row(),
                true,
            ),
            (only(Kind::Ignore, Column::Host, "51000"), row(), true),
            (only(Kind::Match, Column::Info, "(?i)SELECT"), row(), true),
            (only(Kind::Match, Column::Info, "SELECT"), row(), false),
            (only(Kind::Ignore, Column::Info, "sleep"), row(), false),
            (only(Kind::Ignore, Column::User, "^app"), row(), false),
            (only(Kind::Ignore, Column::User, "^bi_"), row(), true),
            (only(Kind::Ignore, Column::Command, "Query"), row(), false),
            (only(Kind::Ignore, Column::State, "^User"), row(), false),
        ];
        for (i, (f, r, want)) in cases.into_iter().enumerate() {
            assert_eq!(f.rejects(&r).is_none(), want, "case {i}: {}", f.describe());
        }
    }

    #[test]
    fn set_replaces_and_clears() {
        let mut f = only(Kind::Match, Column::Db, "a");
        f.set(Kind::Match, Column::Db, Some(Regex::new("b").unwrap()));
        assert_eq!(f.describe(), "k_match_db=/b/");
        f.set(Kind::Match, Column::Db, None);
        assert!(f.is_empty());
        assert_eq!(FIELD_KEYS.len(), 11);
        for (key, kind, col) in FIELD_KEYS {
            assert_eq!(*key, key_name(*kind, *col));
        }
    }
}
