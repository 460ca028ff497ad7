//! What an instance thread tells the reporter: one event per pass that found
//! victims (or per verification finding). Owned data, cheap to send.

use chrono::{DateTime, Local};

pub use crate::core::outcome::Followup;
use crate::core::outcome::{KillResult, Outcome};
use crate::server::inspector::Snapshot;

#[derive(Debug, Clone)]
pub struct Event {
    pub dbid: String,
    pub addr: String,
    pub time: DateTime<Local>,
    pub dry_run: bool,
    /// Victims with the action taken and its result.
    pub outcomes: Vec<Outcome>,
    /// Verify results about earlier kills.
    pub followups: Vec<Followup>,
    /// Server state captured before any kill of this event.
    pub snapshot: Option<Snapshot>,
}

impl Event {
    pub fn new(dbid: &str, addr: &str, dry_run: bool) -> Event {
        Event {
            dbid: dbid.to_string(),
            addr: addr.to_string(),
            time: Local::now(),
            dry_run,
            outcomes: Vec::new(),
            followups: Vec::new(),
            snapshot: None,
        }
    }

    pub fn killed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.result, KillResult::Killed { .. }))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.result.is_failure())
            .count()
    }

    /// One-line summary, used as a mail subject and in logs.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "[mysqk] {} ({}): {} thread{} {}",
            self.dbid,
            self.addr,
            self.outcomes.len(),
            if self.outcomes.len() == 1 { "" } else { "s" },
            if self.dry_run {
                "matched (DRY RUN, nothing killed)".to_string()
            } else {
                format!("matched, {} killed", self.killed())
            }
        );
        if self.failed() > 0 {
            s.push_str(&format!(", {} failed", self.failed()));
        }
        if !self.followups.is_empty() {
            s.push_str(&format!(
                ", {} follow-up{}",
                self.followups.len(),
                if self.followups.len() == 1 { "" } else { "s" }
            ));
        }
        s
    }
}
