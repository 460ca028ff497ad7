//! What was done to a victim and how it ended: the vocabulary shared by the
//! killer (which produces it), the verify step and every report.

use serde::Serialize;

use crate::core::matcher::{KillCmd, KillMode};
use crate::core::victim::Victim;

/// What mysqk does to a victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    KillConnection,
    KillQuery,
}

impl Action {
    /// Sleepers have no statement to stop: they are always killed as connections.
    pub fn for_victim(mode: KillMode, command: &str) -> Action {
        match mode {
            KillMode::Query if command != "Sleep" => Action::KillQuery,
            _ => Action::KillConnection,
        }
    }

    pub fn sql(self, cmd: KillCmd, id: u64) -> String {
        match (cmd, self) {
            (KillCmd::Kill, Action::KillConnection) => format!("KILL CONNECTION {id}"),
            (KillCmd::Kill, Action::KillQuery) => format!("KILL QUERY {id}"),
            (KillCmd::Rds, Action::KillConnection) => format!("CALL mysql.rds_kill({id})"),
            (KillCmd::Rds, Action::KillQuery) => format!("CALL mysql.rds_kill_query({id})"),
        }
    }

    /// The statement that kills exactly the statement `query_id` (MariaDB
    /// `KILL QUERY ID`): a statement that already ended cannot take its
    /// successor down with it. `query_id` is given only where the server
    /// has the command; otherwise (and for connection kills) [`Action::sql`].
    pub fn sql_exact(self, cmd: KillCmd, id: u64, query_id: Option<u64>) -> String {
        match (cmd, self, query_id) {
            (KillCmd::Kill, Action::KillQuery, Some(q)) => format!("KILL QUERY ID {q}"),
            (KillCmd::Rds, Action::KillQuery, Some(q)) => {
                format!("CALL mysql.rds_kill_query_id({q})")
            }
            _ => self.sql(cmd, id),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Action::KillConnection => "kill connection",
            Action::KillQuery => "kill query",
        }
    }
}

/// How a kill ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum KillResult {
    /// The server accepted the kill from `via`'s session.
    Killed {
        via: String,
    },
    /// `Unknown thread id`: it ended by itself; counts as done.
    Gone,
    /// Dry run: nothing sent.
    DryRun,
    /// No held session may kill it.
    NoSession {
        message: String,
    },
    /// The owner's session is only away for a while (held and waiting for a
    /// stalled server, or being re-opened after a restart or with `Too many
    /// connections`): the kill is tried again on the next passes.
    Pending {
        message: String,
    },
    /// Left unkilled because its owner's login was refused (wrong password,
    /// account locked…) and no other session may kill it: a runtime
    /// failure, unlike [`KillResult::NoSession`], which is a config fact.
    LoginFailed {
        message: String,
    },
    Failed {
        message: String,
    },
    /// The re-check right before the KILL found something else than what the
    /// rule chose (another statement, woken up, no longer blocking): nothing
    /// sent. Not an error; the next pass matches the thread afresh.
    ChangedBeforeKill {
        why: String,
    },
    /// The KILL was sent but the server had not answered within the bound
    /// the loop waits; the answer is reported when it comes.
    Unanswered {
        via: String,
    },
}

impl KillResult {
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            KillResult::Failed { .. } | KillResult::LoginFailed { .. }
        )
    }

    pub fn text(&self) -> String {
        match self {
            KillResult::Killed { via } => format!("killed (as {via})"),
            KillResult::Gone => "gone (ended by itself)".into(),
            KillResult::DryRun => "dry run".into(),
            KillResult::NoSession { message }
            | KillResult::Pending { message }
            | KillResult::LoginFailed { message }
            | KillResult::Failed { message } => message.clone(),
            KillResult::ChangedBeforeKill { why } => format!("changed before kill: {why}"),
            KillResult::Unanswered { via } => {
                format!("kill sent (as {via}), no answer yet: reported when it comes")
            }
        }
    }
}

/// One victim with what was done and how it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub victim: Victim,
    pub action: Action,
    pub result: KillResult,
}

/// A follow-up on an earlier kill, found by the next scan (verify step).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Followup {
    pub id: u64,
    pub user: String,
    /// `gone`, `escalated`, `stuck`, ...
    pub outcome: String,
    /// One human sentence, e.g. "stuck in Killed for 12 s: ROLLING BACK, 50000 rows modified".
    pub detail: String,
}
