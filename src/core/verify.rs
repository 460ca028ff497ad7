//! Did the kills work? Pure decisions over the processlist read after a kill.
//!
//! A KILL only sets a flag on the target thread; the thread acts on it at its
//! next kill check point, and a killed transaction must still roll back
//! (seeds 001/002). So every kill is checked on a later read:
//!
//! - the thread is gone: done;
//! - after `KILL QUERY` its statement ended and the connection lives on: done;
//! - after `KILL QUERY` it still runs the *same* statement (same text, and a
//!   time that kept growing across the kill): escalate to `KILL CONNECTION`,
//!   once;
//! - it shows `Command=Killed`: never killed again (that cannot help: it is
//!   already ending, usually rolling back); once it has been there for
//!   `k_killed_report` seconds it is reported, once, as stuck, with what the
//!   server tells about why (`INNODB_TRX`: `ROLLING BACK`, rows modified).
//!
//! No I/O here: the shell (`daemon::pass`) reads rows and `INNODB_TRX`,
//! calls [`Tracker::observe`], sends the escalations it asks for and reports
//! the findings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::core::outcome::{Action, Followup, KillResult, Outcome};
use crate::core::row::ProcRow;

/// What `INNODB_TRX` says about a thread's transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrxFacts {
    /// `trx_state`: `RUNNING`, `LOCK WAIT`, `ROLLING BACK`, `COMMITTING`.
    pub state: String,
    /// `trx_rows_modified`: what a rollback still has to undo (it shrinks as
    /// the rollback proceeds).
    pub rows_modified: u64,
    /// `trx_operation_state`, e.g. `rollback`, when the server fills it.
    pub operation: Option<String>,
}

/// Timing knobs of the verify step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `k_killed_report`: time in `Killed` before a thread is reported as stuck.
    pub killed_report: Duration,
    /// Time a `KILL QUERY` gets to take effect before it is escalated: a
    /// statement only notices the kill at its next check point.
    pub grace: Duration,
}

impl Policy {
    pub fn new(killed_report_secs: u64) -> Policy {
        Policy {
            killed_report: Duration::from_secs(killed_report_secs),
            grace: Duration::from_secs(1),
        }
    }
}

/// A kill the server accepted and that is not yet known to have worked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: u64,
    pub user: String,
    /// The client's `host:port`: with the user, what tells a thread from a
    /// later one given the same id (ids start again after a server restart).
    pub host: String,
    /// The last action sent (`KillConnection` after an escalation).
    pub action: Action,
    /// The statement running when it was killed.
    pub info: Option<String>,
    /// How long that statement had run when it was killed, in ms.
    pub time_ms: u64,
    /// Whether `time_ms` has millisecond precision (MariaDB `TIME_MS`).
    pub precise: bool,
    /// When the first kill was sent.
    pub when: Instant,
    /// When the escalating `KILL CONNECTION` was sent.
    pub escalated_at: Option<Instant>,
    /// Already reported as stuck (it is reported once).
    pub stuck_reported: bool,
}

impl Pending {
    /// The kill of `o`, if the server accepted one (dry runs, failures and
    /// threads already gone need no verification).
    pub fn from_outcome(o: &Outcome, when: Instant) -> Option<Pending> {
        // A KILL still unanswered was sent all the same: verify it too.
        if !matches!(
            o.result,
            KillResult::Killed { .. } | KillResult::Unanswered { .. }
        ) {
            return None;
        }
        let r = &o.victim.row;
        Some(Pending {
            id: r.id,
            user: r.user.clone(),
            host: r.host.clone(),
            action: o.action,
            info: r.info.clone(),
            time_ms: r.elapsed_ms(),
            precise: r.time_ms.is_some(),
            when,
            escalated_at: None,
            stuck_reported: false,
        })
    }

    /// When the connection kill that is now running was sent.
    fn connection_kill_at(&self) -> Instant {
        self.escalated_at.unwrap_or(self.when)
    }
}

/// What a verify step found about one earlier kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The thread is gone: done.
    Gone,
    /// After `KILL QUERY` the statement ended; the connection is kept: done.
    Stopped,
    /// Still the same statement after `KILL QUERY`: the caller must send
    /// `KILL CONNECTION` and call [`Tracker::escalated`].
    Escalate,
    /// The escalating `KILL CONNECTION` was sent.
    Escalated,
    /// The escalating `KILL CONNECTION` failed.
    EscalationFailed,
    /// In `Killed` (or otherwise not ending) for at least `k_killed_report`.
    Stuck,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Gone => "gone",
            Kind::Stopped => "stopped",
            Kind::Escalate => "escalate",
            Kind::Escalated => "escalated",
            Kind::EscalationFailed => "escalation-failed",
            Kind::Stuck => "stuck",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub id: u64,
    pub user: String,
    pub kind: Kind,
    /// One sentence for people, e.g. "stuck in Killed for 12 s: ROLLING BACK, 50000 rows modified".
    pub detail: String,
    /// The kill was already reported on its own (stuck, escalated): how it
    /// ends is worth its own line too, not just a count in a summary.
    pub told: bool,
}

impl Finding {
    pub fn followup(&self) -> Followup {
        Followup {
            id: self.id,
            user: self.user.clone(),
            outcome: self.kind.label().to_string(),
            detail: self.detail.clone(),
        }
    }

    /// Worth a warning (and a mail), not just an info line.
    pub fn notable(&self) -> bool {
        matches!(
            self.kind,
            Kind::Escalated | Kind::EscalationFailed | Kind::Stuck
        )
    }
}

/// The verdict on one pending kill, given what the latest read shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Finished; stop tracking.
    Done(Kind, String),
    /// Send `KILL CONNECTION`.
    Escalate,
    /// Report once as stuck; keep tracking until it is gone.
    Stuck(String),
    /// Nothing to say yet.
    Wait,
}

/// `Time` columns are whole seconds unless the server gives `TIME_MS`; allow
/// for that truncation when asking "did the time keep growing?".
fn slack_ms(p: &Pending, r: &ProcRow) -> u64 {
    if p.precise && r.time_ms.is_some() {
        250
    } else {
        1000
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn secs_text(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// The same statement as at the kill: same text, and it has been running at
/// least as long as it had then plus the time since (a re-sent identical
/// statement would have started again from 0).
pub fn same_statement(p: &Pending, r: &ProcRow, now: Instant) -> bool {
    // Not the query id: a stored procedure's statements each get one while
    // the CALL (its text, its time) goes on, and that CALL is what must be
    // escalated.
    r.command != "Sleep"
        && r.info.is_some()
        && r.info == p.info
        && r.elapsed_ms() + slack_ms(p, r) >= p.time_ms + ms(now.saturating_duration_since(p.when))
}

/// A statement that was interrupted and is undoing its changes: a connection
/// kill would not make that any faster.
fn rolling_back(r: &ProcRow, trx: Option<&TrxFacts>) -> bool {
    let state = r.state.as_deref().unwrap_or("").to_ascii_lowercase();
    state.contains("rollback")
        || state.contains("rolling back")
        || trx.is_some_and(|t| t.state == "ROLLING BACK")
}

/// Why a thread does not end, as far as the server can tell.
pub fn reason(r: &ProcRow, trx: Option<&TrxFacts>) -> String {
    let state = r.state.as_deref().filter(|s| !s.is_empty());
    match (trx, state) {
        (Some(t), _) if t.state == "ROLLING BACK" => {
            format!("ROLLING BACK, {} rows modified", t.rows_modified)
        }
        (Some(t), Some(s)) => format!(
            "transaction {}, {} rows modified, state {s}",
            t.state, t.rows_modified
        ),
        (Some(t), None) => format!("transaction {}, {} rows modified", t.state, t.rows_modified),
        (None, Some(s)) => format!("no InnoDB transaction, state {s}"),
        (None, None) => {
            "no InnoDB transaction and no state (waiting for a kill check point or for IO)".into()
        }
    }
}

/// The verdict on one pending kill. `row` is its processlist row in the
/// latest read (`None`: not there), `trx` its `INNODB_TRX` facts if read.
pub fn decide(
    p: &Pending,
    row: Option<&ProcRow>,
    trx: Option<&TrxFacts>,
    now: Instant,
    policy: &Policy,
) -> Decision {
    let since_kill = now.saturating_duration_since(p.connection_kill_at());
    let Some(r) = row else {
        let detail = if p.stuck_reported {
            format!(
                "gone after {} in Killed",
                secs_text(now.saturating_duration_since(p.connection_kill_at()))
            )
        } else {
            format!(
                "gone {:.1} s after {}",
                now.saturating_duration_since(p.when).as_secs_f64(),
                if p.escalated_at.is_some() {
                    "the escalated kill connection"
                } else {
                    p.action.label()
                }
            )
        };
        return Decision::Done(Kind::Gone, detail);
    };
    if r.user != p.user {
        // Thread ids are only reused after a server restart: the killed one is gone.
        return Decision::Done(
            Kind::Gone,
            format!("gone (id {} now belongs to user {})", r.id, r.user),
        );
    }
    if r.host != p.host {
        // Same user, another client connection: the server restarted and
        // the id was given again.
        return Decision::Done(
            Kind::Gone,
            format!(
                "gone (id {} now belongs to a connection from {})",
                r.id, r.host
            ),
        );
    }
    let stuck = |what: String| {
        if !p.stuck_reported && since_kill >= policy.killed_report {
            Decision::Stuck(what)
        } else {
            Decision::Wait
        }
    };
    if r.command == "Killed" {
        return stuck(format!(
            "stuck in Killed for {}: {}",
            secs_text(since_kill),
            reason(r, trx)
        ));
    }
    match p.action {
        Action::KillQuery => {
            if !same_statement(p, r, now) {
                return Decision::Done(
                    Kind::Stopped,
                    format!(
                        "statement ended after kill query; connection kept (now {})",
                        r.command
                    ),
                );
            }
            if rolling_back(r, trx) {
                return stuck(format!(
                    "still rolling back its statement {} after kill query: {}",
                    secs_text(since_kill),
                    reason(r, trx)
                ));
            }
            if now.saturating_duration_since(p.when) >= policy.grace {
                Decision::Escalate
            } else {
                Decision::Wait
            }
        }
        Action::KillConnection => stuck(format!(
            "still shown as {} {} after kill connection: {}",
            r.command,
            secs_text(since_kill),
            reason(r, trx)
        )),
    }
}

/// Every kill not yet known to have worked, on one instance.
#[derive(Debug, Clone)]
pub struct Tracker {
    pending: BTreeMap<u64, Pending>,
    pub policy: Policy,
}

impl Tracker {
    pub fn new(policy: Policy) -> Tracker {
        Tracker {
            pending: BTreeMap::new(),
            policy,
        }
    }

    /// Start verifying the accepted kills among `outcomes`.
    pub fn track(&mut self, outcomes: &[Outcome], now: Instant) {
        for o in outcomes {
            if let Some(p) = Pending::from_outcome(o, now) {
                self.pending.insert(p.id, p);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Stop verifying `id`: its late answer said the KILL did not take
    /// (gone before it, refused, failed).
    pub fn forget(&mut self, id: u64) {
        self.pending.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Thread ids being verified: the matcher must not pick them again (a
    /// second `KILL QUERY` each pass would never escalate).
    pub fn ids(&self) -> HashSet<u64> {
        self.pending.keys().copied().collect()
    }

    pub fn get(&self, id: u64) -> Option<&Pending> {
        self.pending.get(&id)
    }

    /// Pending threads that are still in `rows`: the ones worth an
    /// `INNODB_TRX` look-up.
    pub fn present(&self, rows: &[ProcRow]) -> Vec<u64> {
        rows.iter()
            .filter(|r| self.pending.contains_key(&r.id))
            .map(|r| r.id)
            .collect()
    }

    /// True when nothing can change soon: every pending kill was already
    /// reported as stuck (a one-shot run may stop waiting then).
    pub fn settled(&self) -> bool {
        self.pending.values().all(|p| p.stuck_reported)
    }

    /// Decide every pending kill against the latest read. Done kills are
    /// forgotten, stuck ones marked reported; `Escalate` findings wait for
    /// [`Tracker::escalated`].
    pub fn observe(
        &mut self,
        rows: &[ProcRow],
        trx: &HashMap<u64, TrxFacts>,
        now: Instant,
    ) -> Vec<Finding> {
        let by_id: HashMap<u64, &ProcRow> = rows.iter().map(|r| (r.id, r)).collect();
        let mut out = Vec::new();
        let mut done = Vec::new();
        for p in self.pending.values_mut() {
            let row = by_id.get(&p.id).copied();
            let told = p.stuck_reported || p.escalated_at.is_some();
            let finding = |kind, detail| Finding {
                id: p.id,
                user: p.user.clone(),
                kind,
                detail,
                told,
            };
            match decide(p, row, trx.get(&p.id), now, &self.policy) {
                Decision::Done(kind, detail) => {
                    out.push(finding(kind, detail));
                    done.push(p.id);
                }
                Decision::Escalate => out.push(finding(
                    Kind::Escalate,
                    "same statement still running after kill query".into(),
                )),
                Decision::Stuck(detail) => {
                    p.stuck_reported = true;
                    out.push(finding(Kind::Stuck, detail));
                }
                Decision::Wait => {}
            }
        }
        for id in done {
            self.pending.remove(&id);
        }
        out
    }

    /// Record the escalating `KILL CONNECTION` of `id` and its result.
    pub fn escalated(&mut self, id: u64, result: &KillResult, now: Instant) -> Option<Finding> {
        let p = self.pending.get_mut(&id)?;
        let user = p.user.clone();
        let finding = |kind, detail| Finding {
            id,
            user: user.clone(),
            kind,
            detail,
            told: false,
        };
        let f = match result {
            KillResult::Killed { via } => {
                p.action = Action::KillConnection;
                p.escalated_at = Some(now);
                finding(
                    Kind::Escalated,
                    format!("same statement still running after kill query: kill connection sent (as {via})"),
                )
            }
            KillResult::Gone => {
                self.pending.remove(&id);
                finding(
                    Kind::Gone,
                    "gone before the escalating kill connection".into(),
                )
            }
            other => {
                // Not retried: a failing kill is reported, not hammered.
                self.pending.remove(&id);
                finding(
                    Kind::EscalationFailed,
                    format!("escalating kill connection failed: {}", other.text()),
                )
            }
        };
        Some(f)
    }

    /// Stop tracking and say what is left (end of a one-shot verify window).
    pub fn give_up(&mut self, now: Instant) -> Vec<Finding> {
        let left = std::mem::take(&mut self.pending);
        left.into_values()
            .filter(|p| !p.stuck_reported)
            .map(|p| Finding {
                id: p.id,
                user: p.user.clone(),
                kind: Kind::Stuck,
                detail: format!(
                    "still present {} after {} (verify window ended)",
                    secs_text(now.saturating_duration_since(p.when)),
                    p.action.label()
                ),
                told: false,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::matcher::Victim;

    const Q: &str = "select sleep(60)";

    fn row(id: u64, user: &str, command: &str, time_ms: u64, info: Option<&str>) -> ProcRow {
        ProcRow {
            query_id: None,
            id,
            user: user.into(),
            host: "10.0.0.5:5100".into(),
            db: None,
            command: command.into(),
            time: time_ms / 1000,
            time_ms: Some(time_ms),
            time_high: false,
            state: Some(if command == "Killed" { "Rollback" } else { "" }.into()),
            info: info.map(Into::into),
        }
    }

    fn pending(action: Action, time_ms: u64, t0: Instant) -> Pending {
        Pending {
            id: 7,
            user: "app1".into(),
            host: "10.0.0.5:5100".into(),
            action,
            info: Some(Q.into()),
            time_ms,
            precise: true,
            when: t0,
            escalated_at: None,
            stuck_reported: false,
        }
    }

    fn policy() -> Policy {
        Policy {
            killed_report: Duration::from_secs(10),
            grace: Duration::from_secs(1),
        }
    }

    fn rolling_back_trx(rows: u64) -> TrxFacts {
        TrxFacts {
            state: "ROLLING BACK".into(),
            rows_modified: rows,
            operation: None,
        }
    }

    /// (name, pending, row, trx, now, expected)
    type Case<'a> = (
        &'a str,
        Pending,
        Option<ProcRow>,
        Option<&'a TrxFacts>,
        Instant,
        Decision,
    );

    #[test]
    fn decisions() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let trx = rolling_back_trx(50_000);
        let stuck_before = Pending {
            stuck_reported: true,
            ..pending(Action::KillConnection, 5_000, t0)
        };
        let escalated = Pending {
            action: Action::KillConnection,
            escalated_at: Some(at(5.0)),
            ..pending(Action::KillQuery, 5_000, t0)
        };
        let seconds_only = Pending {
            precise: false,
            ..pending(Action::KillQuery, 5_000, t0)
        };
        let mut coarse_same = row(7, "app1", "Query", 0, Some(Q));
        coarse_same.time = 7; // 5 s at the kill, read 2.5 s later, whole seconds
        coarse_same.time_ms = None;
        let cases: Vec<Case> = vec![
            (
                "gone after kill connection",
                pending(Action::KillConnection, 5_000, t0),
                None,
                None,
                at(0.2),
                Decision::Done(Kind::Gone, "gone 0.2 s after kill connection".into()),
            ),
            (
                "gone after kill query (connection closed too)",
                pending(Action::KillQuery, 5_000, t0),
                None,
                None,
                at(3.0),
                Decision::Done(Kind::Gone, "gone 3.0 s after kill query".into()),
            ),
            (
                "query stopped, connection idle",
                pending(Action::KillQuery, 5_000, t0),
                Some(row(7, "app1", "Sleep", 300, None)),
                None,
                at(0.3),
                Decision::Done(
                    Kind::Stopped,
                    "statement ended after kill query; connection kept (now Sleep)".into(),
                ),
            ),
            (
                "query stopped, connection runs another statement",
                pending(Action::KillQuery, 5_000, t0),
                Some(row(7, "app1", "Query", 100, Some("select 1"))),
                None,
                at(2.0),
                Decision::Done(
                    Kind::Stopped,
                    "statement ended after kill query; connection kept (now Query)".into(),
                ),
            ),
            (
                "same text re-sent: time restarted, not the same statement",
                pending(Action::KillQuery, 5_000, t0),
                Some(row(7, "app1", "Query", 1_500, Some(Q))),
                None,
                at(2.0),
                Decision::Done(
                    Kind::Stopped,
                    "statement ended after kill query; connection kept (now Query)".into(),
                ),
            ),
            (
                "same statement within the grace time: wait",
                pending(Action::KillQuery, 5_000, t0),
                Some(row(7, "app1", "Query", 5_400, Some(Q))),
                None,
                at(0.4),
                Decision::Wait,
            ),
            (
                "same statement after the grace time: escalate",
                pending(Action::KillQuery, 5_000, t0),
                Some(row(7, "app1", "Query", 7_000, Some(Q))),
                None,
                at(2.0),
                Decision::Escalate,
            ),
            (
                "same statement, whole-second times",
                seconds_only,
                Some(coarse_same),
                None,
                at(2.5),
                Decision::Escalate,
            ),
            (
                "statement rolling back after kill query: no escalation",
                pending(Action::KillQuery, 5_000, t0),
                Some(ProcRow {
                    state: Some("Rollback".into()),
                    ..row(7, "app1", "Query", 7_000, Some(Q))
                }),
                Some(&trx),
                at(2.0),
                Decision::Wait,
            ),
            (
                "statement rolling back long after kill query: stuck",
                pending(Action::KillQuery, 5_000, t0),
                Some(ProcRow {
                    state: Some("Rollback".into()),
                    ..row(7, "app1", "Query", 17_000, Some(Q))
                }),
                Some(&trx),
                at(12.0),
                Decision::Stuck(
                    "still rolling back its statement 12 s after kill query: ROLLING BACK, 50000 rows modified"
                        .into(),
                ),
            ),
            (
                "killed, young: wait, never re-kill",
                pending(Action::KillConnection, 5_000, t0),
                Some(row(7, "app1", "Killed", 3_000, Some(Q))),
                Some(&trx),
                at(3.0),
                Decision::Wait,
            ),
            (
                "killed for k_killed_report: stuck with the rollback size",
                pending(Action::KillConnection, 5_000, t0),
                Some(row(7, "app1", "Killed", 10_000, Some(Q))),
                Some(&trx),
                at(10.0),
                Decision::Stuck(
                    "stuck in Killed for 10 s: ROLLING BACK, 50000 rows modified".into(),
                ),
            ),
            (
                "killed without a transaction",
                pending(Action::KillConnection, 5_000, t0),
                Some(ProcRow {
                    state: Some("Waiting for table level lock".into()),
                    ..row(7, "app1", "Killed", 11_000, Some(Q))
                }),
                None,
                at(11.0),
                Decision::Stuck(
                    "stuck in Killed for 11 s: no InnoDB transaction, state Waiting for table level lock"
                        .into(),
                ),
            ),
            (
                "stuck reported once only",
                stuck_before.clone(),
                Some(row(7, "app1", "Killed", 30_000, Some(Q))),
                Some(&trx),
                at(30.0),
                Decision::Wait,
            ),
            (
                "gone after being stuck",
                stuck_before,
                None,
                None,
                at(42.0),
                Decision::Done(Kind::Gone, "gone after 42 s in Killed".into()),
            ),
            (
                "escalated and still the same statement: never killed a third time",
                escalated.clone(),
                Some(row(7, "app1", "Query", 12_000, Some(Q))),
                None,
                at(7.0),
                Decision::Wait,
            ),
            (
                "escalated, killed: stuck time counts from the escalation",
                escalated.clone(),
                Some(row(7, "app1", "Killed", 0, Some(Q))),
                None,
                at(15.0),
                Decision::Stuck(
                    "stuck in Killed for 10 s: no InnoDB transaction, state Rollback".into(),
                ),
            ),
            (
                "escalated, gone",
                escalated,
                None,
                None,
                at(6.0),
                Decision::Done(
                    Kind::Gone,
                    "gone 6.0 s after the escalated kill connection".into(),
                ),
            ),
            (
                "kill connection accepted but row unchanged for long",
                pending(Action::KillConnection, 5_000, t0),
                Some(row(7, "app1", "Query", 15_000, Some(Q))),
                None,
                at(10.0),
                Decision::Stuck(
                    "still shown as Query 10 s after kill connection: no InnoDB transaction and no state (waiting for a kill check point or for IO)".into(),
                ),
            ),
            (
                "id reused by another connection of the same user",
                pending(Action::KillConnection, 5_000, t0),
                Some(ProcRow {
                    host: "10.0.0.5:5200".into(),
                    ..row(7, "app1", "Sleep", 100, None)
                }),
                None,
                at(1.0),
                Decision::Done(
                    Kind::Gone,
                    "gone (id 7 now belongs to a connection from 10.0.0.5:5200)".into(),
                ),
            ),
            (
                "id reused by another user",
                pending(Action::KillConnection, 5_000, t0),
                Some(row(7, "app2", "Query", 100, Some("select 2"))),
                None,
                at(1.0),
                Decision::Done(Kind::Gone, "gone (id 7 now belongs to user app2)".into()),
            ),
        ];
        for (name, p, r, trx, now, want) in cases {
            let r = r.map(|r| {
                // Rows built with an empty state have none, as the server shows.
                if r.state.as_deref() == Some("") {
                    ProcRow { state: None, ..r }
                } else {
                    r
                }
            });
            assert_eq!(
                decide(&p, r.as_ref(), trx, now, &policy()),
                want,
                "case {name}"
            );
        }
    }

    fn outcome(id: u64, action: Action, result: KillResult, r: ProcRow) -> Outcome {
        Outcome {
            victim: Victim {
                row: ProcRow { id, ..r },
                reasons: vec![],
            },
            action,
            result,
        }
    }

    fn killed() -> KillResult {
        KillResult::Killed { via: "app1".into() }
    }

    #[test]
    fn only_accepted_kills_are_tracked() {
        let t0 = Instant::now();
        let r = row(1, "app1", "Query", 5_000, Some(Q));
        let mut t = Tracker::new(policy());
        t.track(
            &[
                outcome(1, Action::KillQuery, killed(), r.clone()),
                outcome(2, Action::KillQuery, KillResult::DryRun, r.clone()),
                outcome(3, Action::KillQuery, KillResult::Gone, r.clone()),
                outcome(
                    4,
                    Action::KillQuery,
                    KillResult::Failed {
                        message: "x".into(),
                    },
                    r,
                ),
            ],
            t0,
        );
        assert_eq!(t.ids(), HashSet::from([1]));
    }

    #[test]
    fn escalates_once_then_reports_stuck_once_then_gone() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut t = Tracker::new(Policy {
            killed_report: Duration::from_secs(2),
            grace: Duration::from_secs(1),
        });
        t.track(
            &[outcome(
                7,
                Action::KillQuery,
                killed(),
                row(7, "app1", "Query", 5_000, Some(Q)),
            )],
            t0,
        );
        let none = HashMap::new();
        let running = |s: f64| {
            vec![row(
                7,
                "app1",
                "Query",
                5_000 + (s * 1000.0) as u64,
                Some(Q),
            )]
        };
        assert!(t.observe(&running(0.5), &none, at(0.5)).is_empty());
        let f = t.observe(&running(1.5), &none, at(1.5));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::Escalate);
        let f = t.escalated(7, &killed(), at(1.6)).unwrap();
        assert_eq!(f.kind, Kind::Escalated);
        assert!(f.notable());
        // Not asked to escalate again, whatever the row shows.
        assert!(t.observe(&running(2.0), &none, at(2.0)).is_empty());
        let killed_row = vec![row(7, "app1", "Killed", 0, Some(Q))];
        let trx = HashMap::from([(7, rolling_back_trx(1234))]);
        assert!(t.observe(&killed_row, &trx, at(3.0)).is_empty());
        let f = t.observe(&killed_row, &trx, at(3.7));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::Stuck);
        assert_eq!(
            f[0].followup().detail,
            "stuck in Killed for 2 s: ROLLING BACK, 1234 rows modified"
        );
        assert!(t.settled());
        for s in [5.0, 8.0, 20.0] {
            assert!(t.observe(&killed_row, &trx, at(s)).is_empty(), "once only");
        }
        let f = t.observe(&[], &none, at(21.6));
        assert_eq!(f[0].kind, Kind::Gone);
        assert_eq!(f[0].detail, "gone after 20 s in Killed");
        assert!(t.is_empty());
    }

    #[test]
    fn failed_escalation_is_reported_and_forgotten() {
        let t0 = Instant::now();
        let mut t = Tracker::new(policy());
        t.track(
            &[outcome(
                7,
                Action::KillQuery,
                killed(),
                row(7, "app1", "Query", 5_000, Some(Q)),
            )],
            t0,
        );
        let f = t
            .escalated(
                7,
                &KillResult::NoSession {
                    message: "no session can kill thread 7 of user app1".into(),
                },
                t0,
            )
            .unwrap();
        assert_eq!(f.kind, Kind::EscalationFailed);
        assert!(t.is_empty());
        assert!(t.escalated(7, &killed(), t0).is_none());
    }

    #[test]
    fn give_up_reports_what_is_left() {
        let t0 = Instant::now();
        let mut t = Tracker::new(policy());
        t.track(
            &[outcome(
                7,
                Action::KillConnection,
                killed(),
                row(7, "app1", "Query", 5_000, Some(Q)),
            )],
            t0,
        );
        let f = t.give_up(t0 + Duration::from_secs(3));
        assert_eq!(
            f[0].detail,
            "still present 3 s after kill connection (verify window ended)"
        );
        assert!(t.is_empty());
    }
}
