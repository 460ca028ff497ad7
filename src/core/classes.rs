//! Query pile-ups: pt-kill's GROUP, CLASS MATCHES and `--victims`, applied to
//! the per-thread candidates [`crate::core::matcher::select_victims`] found.
//!
//! Order of evaluation (as in pt-kill):
//! 1. per-thread rules pick candidates (k_user, never-kill, k_exclude,
//!    k_match_* / k_ignore_*, then k_longtime / k_sleep / k_include / k_lock);
//! 2. candidates are grouped into classes by `k_group_by` (`none` = one class
//!    holding every candidate);
//! 3. a class is abnormal only if it passes every class rule that is set:
//!    `k_query_count` (at least N members), `k_any_busy_time` (some member has
//!    run longer than N s), `k_each_busy_time` (every member has);
//! 4. `k_victims` picks which members of an abnormal class are killed.
//!
//! With every class key at its default (none, 0, 0, 0, all) this step changes
//! nothing: every candidate is a victim, exactly SPEC 2.

use std::fmt;

use serde::Serialize;

use crate::core::fingerprint::fingerprint;
use crate::core::row::ProcRow;

/// `k_group_by`: how candidates are grouped into classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupBy {
    /// One class holding every candidate (pt-kill without `--group-by`).
    #[default]
    None,
    /// Same statement up to literals, `IN (...)` lists, comments, whitespace, case.
    Fingerprint,
    /// Byte-identical statement text.
    Info,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Some(GroupBy::None),
            "fingerprint" => Some(GroupBy::Fingerprint),
            "info" => Some(GroupBy::Info),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::None => "none",
            GroupBy::Fingerprint => "fingerprint",
            GroupBy::Info => "info",
        }
    }
}

/// `k_victims`: which members of an abnormal class are killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pick {
    /// Every member (mysqk's default: SPEC 2 kills every victim).
    #[default]
    All,
    /// Only the one that has run longest.
    Oldest,
    /// Every member but the one that has run longest (cache stampedes: let
    /// the first copy finish, kill the queue behind it).
    AllButOldest,
}

impl Pick {
    pub fn parse(s: &str) -> Option<Pick> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "all" => Some(Pick::All),
            "oldest" => Some(Pick::Oldest),
            "all-but-oldest" => Some(Pick::AllButOldest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Pick::All => "all",
            Pick::Oldest => "oldest",
            Pick::AllButOldest => "all-but-oldest",
        }
    }
}

/// The class keys of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassRules {
    pub group_by: GroupBy,
    /// `k_query_count`: a class needs at least this many members; 0 = off.
    pub query_count: u64,
    /// `k_any_busy_time`: some member has run longer than N s; 0 = off.
    pub any_busy_time: u64,
    /// `k_each_busy_time`: every member has run longer than N s; 0 = off.
    pub each_busy_time: u64,
    pub victims: Pick,
}

impl ClassRules {
    /// False when every key is at its default: the step is then a no-op.
    pub fn is_active(&self) -> bool {
        *self != ClassRules::default()
    }

    /// The class rules that are set, e.g. `k_query_count>=10, k_any_busy_time>5`.
    pub fn conditions(&self) -> String {
        let mut c = Vec::new();
        if self.query_count > 0 {
            c.push(format!("k_query_count>={}", self.query_count));
        }
        if self.any_busy_time > 0 {
            c.push(format!("k_any_busy_time>{}", self.any_busy_time));
        }
        if self.each_busy_time > 0 {
            c.push(format!("k_each_busy_time>{}", self.each_busy_time));
        }
        c.join(", ")
    }

    /// One line for `check-config`.
    pub fn describe(&self) -> String {
        format!(
            "k_group_by={} k_query_count={} k_any_busy_time={} k_each_busy_time={} k_victims={}",
            self.group_by.as_str(),
            self.query_count,
            self.any_busy_time,
            self.each_busy_time,
            self.victims.as_str()
        )
    }
}

/// The class a row belongs to. Rows without a statement (sleepers, idle
/// transactions) share the empty key.
pub fn class_key(group_by: GroupBy, row: &ProcRow) -> String {
    let info = row.info.as_deref().filter(|i| !i.trim().is_empty());
    match (group_by, info) {
        (GroupBy::None, _) | (_, None) => String::new(),
        (GroupBy::Fingerprint, Some(i)) => fingerprint(i),
        (GroupBy::Info, Some(i)) => i.to_string(),
    }
}

/// Why a victim's class made it a victim (part of [`Reason::Class`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassReason {
    pub group_by: GroupBy,
    /// The class key as shown to people: redacted and cut.
    pub class: String,
    pub members: usize,
    /// The class rules that held, e.g. `k_query_count>=10`.
    pub conditions: String,
    pub victims: Pick,
}

impl fmt::Display for ClassReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.group_by {
            GroupBy::None => write!(f, "class of all {} candidates", self.members)?,
            GroupBy::Fingerprint | GroupBy::Info => {
                let what = if self.group_by == GroupBy::Info {
                    "statement"
                } else {
                    "fingerprint"
                };
                let threads = if self.members == 1 {
                    "thread"
                } else {
                    "threads"
                };
                if self.class.is_empty() {
                    write!(f, "pile-up: {} {threads} with no statement", self.members)?;
                } else {
                    write!(
                        f,
                        "pile-up: {} {threads} with {what} \"{}\"",
                        self.members, self.class
                    )?;
                }
            }
        }
        if !self.conditions.is_empty() {
            write!(f, " ({})", self.conditions)?;
        }
        write!(f, ", k_victims={}", self.victims.as_str())
    }
}
