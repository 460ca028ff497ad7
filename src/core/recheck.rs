//! Re-check, then kill (SPEC 3): is a victim, read again right before its
//! KILL, still the thing the rule chose?
//!
//! A pass reads the processlist, decides, takes its snapshot, and only then
//! kills. On a pooled connection the statement that was chosen may have
//! ended in between and the next one begun under the same thread id; an idle
//! connection may have woken for a transaction. A KILL sent by id then hits
//! the wrong work. So the victims' rows are read again (one narrow query) and
//! compared with the rows the rule saw:
//!
//! - the id must still be the same connection: same user and host;
//! - a sleeper must still be `Sleep`, with an idle time that kept growing
//!   (a wake-up restarts it) and, where the server tells, the same last
//!   statement (`QUERY_ID`);
//! - a statement victim must not have begun to finish on its own: a thread
//!   whose statement has done its work passes through the stages below
//!   ([`FINISHING_STATES`]) while it answers and goes idle. A KILL there
//!   comes too late to stop the statement; a connection KILL then takes the
//!   connection's next statement down instead (MySQL: a query KILL may too).
//!   A victim that was already in such a stage when the rule chose it (stuck
//!   in `query end` waiting for a commit) is still killed;
//! - a statement victim must still run the same statement: the same
//!   statement id where the server has one (MariaDB's `QUERY_ID`; MySQL's
//!   `EVENT_ID` of the outermost running statement, which a CALL keeps
//!   while its statements run), or else the same text with a time that did
//!   not start again (on MariaDB a stored procedure's statements get query
//!   ids of their own while its CALL goes on);
//! - a lock blocker whose only reason is the lock must still hold up one of
//!   the threads it blocked (that waiter still waiting in the same
//!   statement).
//!
//! No I/O: `server` reads the rows, this decides.

use std::collections::HashMap;

use crate::core::row::ProcRow;
use crate::core::victim::{Reason, Victim};

/// What the re-read row says about a victim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still what the rule chose: kill it.
    Same,
    /// Not in the processlist any more: it ended by itself.
    Gone,
    /// Something else now: leave it alone; the next pass matches it afresh.
    /// The text says what changed, for the report.
    Changed(String),
}

/// The rows read again for the re-check, by id.
#[derive(Debug, Default)]
pub struct Reread<'a> {
    rows: HashMap<u64, &'a ProcRow>,
}

impl<'a> Reread<'a> {
    pub fn new(rows: &'a [ProcRow]) -> Reread<'a> {
        Reread {
            rows: rows.iter().map(|r| (r.id, r)).collect(),
        }
    }

    fn get(&self, id: u64) -> Option<&'a ProcRow> {
        self.rows.get(&id).copied()
    }
}

/// Thread ids the re-check must read for `victims`: each victim, and the
/// threads a lock blocker was chosen for (to see that they still wait).
pub fn ids_to_read(victims: &[Victim]) -> Vec<u64> {
    let mut ids: Vec<u64> = victims.iter().map(|v| v.row.id).collect();
    for v in victims {
        for r in &v.reasons {
            if let Reason::LockBlocker { waiting, .. } = r {
                ids.extend(waiting.iter().copied());
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Did the thread's time in its current command keep growing from `old` to
/// `new`? Milliseconds where both reads have them, whole seconds otherwise
/// (a restarted command reads a smaller value either way: the window between
/// the two reads is milliseconds, far less than a victim's time).
fn time_kept_growing(old: &ProcRow, new: &ProcRow) -> bool {
    match (old.time_ms, new.time_ms) {
        (Some(o), Some(n)) => n >= o,
        _ => new.time >= old.time,
    }
}

/// The stages (SHOW PROCESSLIST `State`, lower case) a statement passes
/// through once its work is done, on MariaDB 10.11 and MySQL 8-9, seen by
/// polling pooled churn: it answers from the last of them.
pub const FINISHING_STATES: &[&str] = &[
    "end",
    "end of update loop",
    "query end",
    "closing tables",
    "starting cleanup",
    "freeing items",
    "updating status",
    "logging slow query",
    "cleaning up",
    "reset for next command",
];

/// Is `state` one of the [`FINISHING_STATES`]?
pub fn is_finishing(state: Option<&str>) -> bool {
    state.is_some_and(|s| {
        FINISHING_STATES
            .iter()
            .any(|f| f.eq_ignore_ascii_case(s.trim()))
    })
}

/// A statement victim chosen while it worked that has since begun to finish
/// by itself (a stage of [`FINISHING_STATES`], or its statement text gone).
pub fn began_finishing(old: &ProcRow, new: &ProcRow) -> Option<String> {
    if old.command == "Sleep" || is_finishing(old.state.as_deref()) {
        return None;
    }
    if is_finishing(new.state.as_deref()) {
        return Some(format!(
            "its statement is finishing by itself (state {})",
            new.state.as_deref().unwrap_or_default().to_lowercase()
        ));
    }
    (old.info.is_some() && new.info.is_none())
        .then(|| "its statement is finishing by itself (no statement text)".to_string())
}

fn secs(r: &ProcRow) -> String {
    let ms = r.elapsed_ms();
    format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
}

/// The identity check shared by every reason: same connection, same work.
fn same_work(old: &ProcRow, new: &ProcRow) -> Result<(), String> {
    if new.user != old.user || new.host != old.host {
        return Err(format!(
            "thread id now belongs to another connection (user {})",
            new.user
        ));
    }
    if new.command == "Killed" {
        return Err("already being killed (Command=Killed)".into());
    }
    let query_changed = matches!((old.query_id, new.query_id), (Some(o), Some(n)) if o != n);
    if old.command == "Sleep" {
        if new.command != "Sleep" {
            return Err(format!("woke up: now {}", new.command));
        }
        if query_changed || !time_kept_growing(old, new) {
            return Err(format!(
                "woke up in between: idle {} -> {}",
                secs(old),
                secs(new)
            ));
        }
        return Ok(());
    }
    if new.command == "Sleep" {
        return Err("its statement ended: now idle".into());
    }
    if let Some(why) = began_finishing(old, new) {
        return Err(why);
    }
    // The same query id is the same statement. A different one is not
    // enough to say it changed: inside a stored program every statement
    // gets its own while the CALL (its text, its time) goes on; a pooled
    // connection's next statement starts its time again from 0.
    if matches!((old.query_id, new.query_id), (Some(o), Some(n)) if o == n) {
        return Ok(());
    }
    if new.info != old.info {
        return Err("now runs another statement".into());
    }
    if !time_kept_growing(old, new) {
        let ids = match (old.query_id, new.query_id) {
            (Some(o), Some(n)) => format!(" (query id {o} -> {n})"),
            _ => String::new(),
        };
        return Err(format!(
            "now runs another statement{ids}: {} -> {}",
            secs(old),
            secs(new)
        ));
    }
    Ok(())
}

/// The identity check alone (same connection, same statement or still the
/// same idle spell), for re-reads that cannot see the lock waiters: a kill
/// thread re-checking on its own user's session after a slow KILL.
pub fn identity(old: &ProcRow, new: Option<&ProcRow>) -> Verdict {
    match new {
        None => Verdict::Gone,
        Some(new) => match same_work(old, new) {
            Ok(()) => Verdict::Same,
            Err(why) => Verdict::Changed(why),
        },
    }
}

/// A waiter the blocker was chosen for still waits in the same statement:
/// it is there, not idle, and has run at least as long as it had waited.
fn still_waiting(reread: &Reread, waiting: &[u64], wait_secs: u64) -> bool {
    waiting.iter().any(|&id| {
        reread
            .get(id)
            .is_some_and(|w| w.command != "Sleep" && w.command != "Killed" && w.time >= wait_secs)
    })
}

/// The verdict on one victim. Only the lock blockers' waiters need to be in
/// `reread` besides the victim itself (see [`ids_to_read`]).
pub fn verdict(v: &Victim, reread: &Reread) -> Verdict {
    let Some(new) = reread.get(v.row.id) else {
        return Verdict::Gone;
    };
    if let Err(why) = same_work(&v.row, new) {
        return Verdict::Changed(why);
    }
    let mut lock_reasons = v.reasons.iter().filter_map(|r| match r {
        Reason::LockBlocker {
            waiting, wait_secs, ..
        } => Some((waiting, *wait_secs)),
        _ => None,
    });
    let only_lock = v
        .reasons
        .iter()
        .all(|r| matches!(r, Reason::LockBlocker { .. }));
    if only_lock
        && !v.reasons.is_empty()
        && !lock_reasons.any(|(waiting, secs)| still_waiting(reread, waiting, secs))
    {
        return Verdict::Changed("no longer blocks the threads it was chosen for".into());
    }
    Verdict::Same
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, command: &str, time_ms: u64, qid: Option<u64>) -> ProcRow {
        ProcRow {
            id,
            user: "app1".into(),
            host: "10.0.0.5:5100".into(),
            command: command.into(),
            time: time_ms / 1000,
            time_ms: Some(time_ms),
            info: (command != "Sleep").then(|| "SELECT SLEEP(2)".to_string()),
            query_id: qid,
            ..ProcRow::default()
        }
    }

    fn victim(row: ProcRow, reason: Reason) -> Victim {
        Victim {
            row,
            reasons: vec![reason],
        }
    }

    fn long(row: ProcRow) -> Victim {
        victim(row, Reason::LongRunning { secs: 2, limit: 2 })
    }

    fn sleeper(row: ProcRow) -> Victim {
        victim(row, Reason::Sleeping { secs: 3, limit: 3 })
    }

    fn check(v: &Victim, now: &[ProcRow]) -> Verdict {
        verdict(v, &Reread::new(now))
    }

    fn changed(v: Verdict) -> bool {
        matches!(v, Verdict::Changed(_))
    }

    #[test]
    fn the_same_statement_is_still_a_victim() {
        let v = long(row(7, "Query", 2_010, Some(500)));
        assert_eq!(
            check(&v, &[row(7, "Query", 2_012, Some(500))]),
            Verdict::Same
        );
    }

    #[test]
    fn a_missing_thread_is_gone() {
        let v = long(row(7, "Query", 2_010, Some(500)));
        assert_eq!(check(&v, &[row(8, "Query", 9_000, Some(1))]), Verdict::Gone);
    }

    #[test]
    fn the_next_statement_on_a_pooled_connection_is_left_alone() {
        // Same text, new query id, time started again.
        let v = long(row(7, "Query", 2_010, Some(500)));
        let v2 = check(&v, &[row(7, "Query", 4, Some(501))]);
        assert!(
            matches!(&v2, Verdict::Changed(w) if w.contains("query id 500 -> 501")),
            "{v2:?}"
        );
        // A stored procedure's next statement: new query id, but the CALL's
        // text and time go on. Still the victim.
        let mut call = row(7, "Query", 2_010, Some(500));
        call.info = Some("CALL nightly()".into());
        let mut next = call.clone();
        next.query_id = Some(530);
        next.time_ms = Some(2_040);
        assert_eq!(check(&long(call), &[next]), Verdict::Same);
        // Without a query id: same text, time started again from 0.
        let v = long(row(7, "Query", 2_010, None));
        assert!(changed(check(&v, &[row(7, "Query", 3, None)])));
        // Without a query id: other text.
        let mut other = row(7, "Query", 2_500, None);
        other.info = Some("UPDATE t SET v = 1".into());
        assert!(changed(check(&v, &[other])));
        // The statement ended and the connection is idle now.
        assert!(changed(check(&v, &[row(7, "Sleep", 1, None)])));
    }

    #[test]
    fn a_statement_that_began_to_finish_is_left_alone() {
        let mut old = row(7, "Query", 2_010, Some(500));
        old.state = Some("User sleep".into());
        let mut now = row(7, "Query", 2_011, Some(500));
        for state in [
            "Freeing items",
            "query end",
            "cleaning up",
            "Reset for next command",
        ] {
            now.state = Some(state.into());
            let v = check(&long(old.clone()), std::slice::from_ref(&now));
            assert!(
                matches!(&v, Verdict::Changed(w) if w.contains("finishing")),
                "{state}: {v:?}"
            );
        }
        // Its text gone: the server has reset the statement.
        now.state = Some("starting".into());
        now.info = None;
        assert!(changed(check(
            &long(old.clone()),
            std::slice::from_ref(&now)
        )));
        // Still working: the same.
        now.state = Some("User sleep".into());
        now.info = old.info.clone();
        assert_eq!(check(&long(old.clone()), &[now.clone()]), Verdict::Same);
        // Chosen while already stuck finishing (a commit that waits): killed.
        old.state = Some("query end".into());
        now.state = Some("query end".into());
        assert_eq!(check(&long(old), &[now]), Verdict::Same);
    }

    #[test]
    fn whole_seconds_only_compare_whole_seconds() {
        let mut old = row(7, "Query", 0, None);
        old.time_ms = None;
        old.time = 2;
        let mut same = old.clone();
        same.time = 2;
        assert_eq!(check(&long(old.clone()), &[same]), Verdict::Same);
        let mut restarted = old.clone();
        restarted.time = 0;
        assert!(changed(check(&long(old), &[restarted])));
    }

    #[test]
    fn a_reused_id_is_another_connection() {
        let v = long(row(7, "Query", 2_010, Some(500)));
        let mut other = row(7, "Query", 2_020, Some(500));
        other.user = "app2".into();
        assert!(changed(check(&v, &[other])));
        let mut other = row(7, "Query", 2_020, Some(500));
        other.host = "10.0.0.6:5100".into();
        assert!(changed(check(&v, &[other])));
    }

    #[test]
    fn a_thread_already_being_killed_is_left_alone() {
        let v = long(row(7, "Query", 2_010, Some(500)));
        assert!(changed(check(&v, &[row(7, "Killed", 2_020, Some(500))])));
    }

    #[test]
    fn a_sleeper_must_still_sleep_and_its_idle_time_keep_growing() {
        let v = sleeper(row(9, "Sleep", 3_100, Some(40)));
        assert_eq!(
            check(&v, &[row(9, "Sleep", 3_102, Some(40))]),
            Verdict::Same
        );
        // Woke up for a transaction: now running a statement.
        assert!(changed(check(&v, &[row(9, "Query", 1, Some(41))])));
        // Between two statements of that transaction: idle again, but briefly.
        assert!(changed(check(&v, &[row(9, "Sleep", 2, Some(41))])));
        // A short wake-up and back to sleep that the time alone would miss
        // (crafted: the idle time reads larger), but the query id does not.
        assert!(changed(check(&v, &[row(9, "Sleep", 3_200, Some(43))])));
    }

    #[test]
    fn a_lock_blocker_must_still_block() {
        let blocker = row(5, "Sleep", 12_000, Some(10));
        let v = victim(
            blocker.clone(),
            Reason::LockBlocker {
                waiting: vec![6],
                wait_secs: 4,
                limit: 3,
            },
        );
        let mut waiter = row(6, "Query", 4_500, Some(77));
        waiter.user = "app2".into();
        let now_blocker = row(5, "Sleep", 12_003, Some(10));
        assert_eq!(
            check(&v, &[now_blocker.clone(), waiter.clone()]),
            Verdict::Same
        );
        // The waiter gave up (lock wait timeout) and is idle, or left.
        let mut idle = waiter.clone();
        idle.command = "Sleep".into();
        assert!(changed(check(&v, &[now_blocker.clone(), idle])));
        assert!(changed(check(&v, std::slice::from_ref(&now_blocker))));
        // The waiter runs a new statement, younger than the wait was.
        let mut fresh = waiter.clone();
        fresh.time = 0;
        assert!(changed(check(&v, &[now_blocker.clone(), fresh])));
        // Also long-running: the lock is not its only reason.
        let mut both = v.clone();
        both.reasons.push(Reason::Sleeping {
            secs: 12,
            limit: 10,
        });
        assert_eq!(check(&both, &[now_blocker]), Verdict::Same);
    }

    #[test]
    fn ids_include_the_waiters_once() {
        let v = victim(
            row(5, "Sleep", 12_000, None),
            Reason::LockBlocker {
                waiting: vec![6, 8],
                wait_secs: 4,
                limit: 3,
            },
        );
        let w = long(row(6, "Query", 2_000, None));
        assert_eq!(ids_to_read(&[v, w]), vec![5, 6, 8]);
    }
}
