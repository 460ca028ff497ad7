//! A victim: a thread the rules chose, with every reason that applies.

use std::fmt;

use serde::Serialize;

use crate::core::classes::ClassReason;
use crate::core::row::ProcRow;

/// Why a thread is a victim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    LongRunning {
        secs: u64,
        limit: u64,
    },
    Sleeping {
        secs: u64,
        limit: u64,
    },
    Included {
        pattern: String,
    },
    LockBlocker {
        waiting: Vec<u64>,
        wait_secs: u64,
        limit: u64,
    },
    /// The thread's class is abnormal and `k_victims` picked it (see [`classes`]).
    Class(ClassReason),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::LongRunning { secs, limit } => write!(f, "long-running {secs}s >= {limit}"),
            Reason::Sleeping { secs, limit } => write!(f, "sleeping {secs}s >= {limit}"),
            Reason::Included { pattern } => write!(f, "included by /{pattern}/"),
            Reason::LockBlocker {
                waiting,
                wait_secs,
                limit,
            } => {
                let ids: Vec<String> = waiting.iter().map(u64::to_string).collect();
                write!(
                    f,
                    "blocks thread {} for {wait_secs}s >= {limit}",
                    ids.join(",")
                )
            }
            Reason::Class(c) => write!(f, "{c}"),
        }
    }
}

/// A thread the rules say to kill, with every reason that applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    pub row: ProcRow,
    pub reasons: Vec<Reason>,
}

impl Victim {
    pub fn reason_text(&self) -> String {
        let parts: Vec<String> = self.reasons.iter().map(Reason::to_string).collect();
        parts.join("; ")
    }
}
