//! Who waits for whom, in words a DBA reads during an incident: the lock
//! waits of a snapshot with both threads' ids, users, statements and the
//! wait time, and hints for metadata-lock waits nothing explains. Pure code
//! over rows and waits.

use std::collections::HashSet;

use crate::core::matcher::LockWait;
use crate::core::mdl;
use crate::core::row::ProcRow;
use crate::core::text::{align, info_text, neutral};

/// Statement text shown per thread in these tables and hints.
const STMT: usize = 80;

/// What a thread is doing, for the blocker column: its statement, or that
/// it is idle (an idle blocker is a transaction left open).
fn doing(row: Option<&ProcRow>) -> String {
    match row {
        None => "(gone from the processlist)".into(),
        Some(r) if r.command == "Sleep" => format!("idle {} s (transaction left open?)", r.time),
        Some(r) => match r.info.as_deref() {
            Some(_) => format!(
                "{} {} s: {}",
                neutral(&r.command),
                r.time,
                info_text(r, STMT)
            ),
            None => format!("{} {} s", neutral(&r.command), r.time),
        },
    }
}

fn find(rows: &[ProcRow], id: u64) -> Option<&ProcRow> {
    rows.iter().find(|r| r.id == id)
}

fn user(row: Option<&ProcRow>) -> String {
    row.map_or_else(|| "?".into(), |r| neutral(&r.user))
}

/// The "who waits for whom" table of a snapshot: InnoDB row-lock waits and
/// metadata-lock waits, one line per (waiter, blocker), then the hints.
pub fn who_waits(row_waits: &[LockWait], mdl_waits: &[mdl::Wait], rows: &[ProcRow]) -> String {
    let header = [
        "LOCK",
        "WAITING",
        "USER",
        "WAITED",
        "STATEMENT",
        "BLOCKER",
        "USER",
        "BLOCKER DOING",
    ];
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut push = |kind: String, waiting: u64, secs: u64, blocking: Option<u64>| {
        let w = find(rows, waiting);
        let b = blocking.map(|b| find(rows, b));
        lines.push(vec![
            kind,
            waiting.to_string(),
            user(w),
            format!("{secs} s"),
            w.map(|r| info_text(r, STMT)).unwrap_or_default(),
            blocking.map_or_else(|| "unknown".into(), |b| b.to_string()),
            b.map_or_else(|| "-".into(), user),
            b.map_or_else(|| "-".into(), doing),
        ]);
    };
    for w in row_waits {
        push("row".into(), w.waiting, w.wait_secs, Some(w.blocking));
    }
    for w in mdl_waits {
        let kind = match &w.object {
            Some(o) => format!("metadata {}", neutral(o)),
            None => "metadata".into(),
        };
        push(kind, w.waiting, w.wait_secs, w.blocking);
    }
    if lines.is_empty() {
        return "who waits for whom\n(no lock waits)\n".into();
    }
    let mut out = String::from("who waits for whom\n");
    out.push_str(&align(&header, &lines));
    out
}

/// Hints for metadata-lock waits this pass left alone: a waiter whose
/// blocker is unknown, or whose blocker the rules do not make a victim.
/// `open_trx` is (thread id, seconds open) of every open transaction;
/// `victims` the threads this pass chose; `k_lock` the rule, `None` where
/// the rules are unknown (a snapshot, whose table already names a known
/// blocker); `no_source` that the server lists no metadata locks at all.
pub fn mdl_hints(
    waits: &[mdl::Wait],
    rows: &[ProcRow],
    open_trx: &[(u64, u64)],
    victims: &HashSet<u64>,
    k_lock: Option<u64>,
    no_source: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for w in waits.iter().filter(|w| w.wait_secs >= 1) {
        let waiter = find(rows, w.waiting);
        let mut h = format!(
            "thread {} ({}{}) has waited {} s for a metadata lock{}",
            w.waiting,
            user(waiter),
            waiter
                .and_then(|r| r
                    .info
                    .as_ref()
                    .map(|_| format!(", `{}`", info_text(r, STMT))))
                .unwrap_or_default(),
            w.wait_secs,
            w.object
                .as_deref()
                .map(|o| format!(" on {}", neutral(o)))
                .unwrap_or_default()
        );
        match w.blocking {
            Some(b) if victims.contains(&b) => continue,
            Some(_) if k_lock.is_none() => continue,
            Some(b) => {
                let k_lock = k_lock.unwrap_or(0);
                let br = find(rows, b);
                h.push_str(&format!(
                    "; blocked by thread {b} ({}, {})",
                    user(br),
                    doing(br)
                ));
                if k_lock == 0 {
                    h.push_str(
                        "; k_lock is off: --lock-wait SECS (k_lock) makes such a blocker a victim",
                    );
                } else if w.wait_secs < k_lock {
                    h.push_str(&format!(
                        "; it becomes a victim once the wait reaches k_lock={k_lock} s"
                    ));
                } else {
                    h.push_str("; the rules do not let mysqk kill it (its user is not in k_user, or it is excluded)");
                }
            }
            None => {
                h.push_str("; no known blocker");
                if no_source {
                    h.push_str(
                        " (this server lists no metadata locks: enable performance_schema with \
                         the wait/lock/metadata/sql/mdl instrument, or on MariaDB \
                         INSTALL SONAME 'metadata_lock_info')",
                    );
                }
                let suspects: Vec<String> = open_trx
                    .iter()
                    .filter(|(id, _)| *id != w.waiting)
                    .map(|(id, secs)| {
                        let r = find(rows, *id);
                        format!("{id} ({}, open {secs} s, {})", user(r), doing(r))
                    })
                    .collect();
                if suspects.is_empty() {
                    h.push_str("; no transaction is open now");
                } else {
                    h.push_str(&format!(
                        "; the usual blocker is a transaction that used the table and was left open; \
                         open transactions: {}",
                        suspects.join("; ")
                    ));
                }
            }
        }
        out.push(h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, user: &str, command: &str, time: u64, info: Option<&str>) -> ProcRow {
        ProcRow {
            query_id: None,
            id,
            user: user.into(),
            host: "10.0.0.5:5000".into(),
            db: Some("crm".into()),
            command: command.into(),
            time,
            time_ms: None,
            time_high: false,
            state: Some(if info.is_some_and(|i| i.starts_with("alter")) {
                mdl::WAIT_STATE.to_string()
            } else {
                String::new()
            }),
            info: info.map(Into::into),
        }
    }

    #[test]
    fn row_waits_name_both_threads() {
        let rows = vec![
            row(14, "app1", "Sleep", 30, None),
            row(15, "app2", "Query", 12, Some("update t set v=1 where id=1")),
        ];
        let t = who_waits(
            &[LockWait {
                waiting: 15,
                blocking: 14,
                wait_secs: 12,
            }],
            &[],
            &rows,
        );
        let line = t.lines().nth(2).unwrap();
        for part in [
            "row",
            "15",
            "app2",
            "12 s",
            "update t set v=1",
            "14",
            "app1",
            "idle 30 s",
        ] {
            assert!(line.contains(part), "{part} missing in {line}");
        }
    }

    #[test]
    fn unknown_mdl_blocker_gets_a_hint_with_the_open_transactions() {
        let rows = vec![
            row(20, "app1", "Sleep", 300, None),
            row(21, "dba", "Query", 40, Some("alter table t add c int")),
        ];
        let waits = vec![mdl::Wait {
            waiting: 21,
            blocking: None,
            object: None,
            wait_secs: 40,
        }];
        let hints = mdl_hints(&waits, &rows, &[(20, 310)], &HashSet::new(), Some(0), true);
        assert_eq!(hints.len(), 1, "{hints:?}");
        let h = &hints[0];
        assert!(
            h.contains("thread 21 (dba, `alter table t add c int`) has waited 40 s"),
            "{h}"
        );
        assert!(h.contains("no known blocker"), "{h}");
        assert!(h.contains("metadata_lock_info"), "{h}");
        assert!(h.contains("20 (app1, open 310 s, idle 300 s"), "{h}");
        // A blocker this pass kills needs no hint.
        let known = vec![mdl::Wait {
            blocking: Some(20),
            ..waits[0].clone()
        }];
        let victims: HashSet<u64> = [20].into_iter().collect();
        assert!(mdl_hints(&known, &rows, &[], &victims, Some(10), false).is_empty());
        let h = &mdl_hints(&known, &rows, &[], &HashSet::new(), Some(0), false)[0];
        assert!(h.contains("blocked by thread 20 (app1, idle 300 s"), "{h}");
        assert!(h.contains("--lock-wait"), "{h}");
    }
}
