//! Metadata-lock waits and who blocks them: pure code over lock rows.
//!
//! Where the server lists pending requests (MySQL 8, or MariaDB with
//! `performance_schema=ON` and the `wait/lock/metadata/sql/mdl` instrument:
//! `performance_schema.metadata_locks` with `LOCK_STATUS=PENDING`), the blocker
//! follows from MySQL's MDL compatibility matrices. MariaDB's
//! `information_schema.METADATA_LOCK_INFO` (plugin `metadata_lock_info`) lists
//! granted locks only: the request of a thread in `Waiting for table metadata
//! lock` is then inferred from its statement (the tables it names, DDL asks
//! for an exclusive lock). Without either source the waiter is reported
//! without a blocker.
//!
//! The blocker reported (and, with `k_lock`, killed) is the *root*: a thread
//! that holds the lock and is not waiting itself. A `SELECT` queued behind a
//! waiting `ALTER TABLE` is blocked by whatever the `ALTER` waits for (often a
//! transaction left open), not by the `ALTER`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;

use crate::core::row::ProcRow;

/// The processlist state of a thread waiting for a metadata lock.
pub const WAIT_STATE: &str = "Waiting for table metadata lock";

/// MDL types, in the order of MySQL's matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    S,
    Sh,
    Sr,
    Sw,
    Swlp,
    Su,
    Sro,
    Snw,
    Snrw,
    X,
}

impl Mode {
    /// From `performance_schema.metadata_locks.LOCK_TYPE` (`SHARED_READ`) or
    /// `METADATA_LOCK_INFO.LOCK_MODE` (`MDL_SHARED_READ`). Scoped and backup
    /// lock modes (`INTENTION_EXCLUSIVE`, `BACKUP_*`) are not table modes.
    pub fn parse(s: &str) -> Option<Mode> {
        let s = s.trim().to_ascii_uppercase();
        let s = s.strip_prefix("MDL_").unwrap_or(&s);
        Some(match s {
            "SHARED" => Mode::S,
            "SHARED_HIGH_PRIO" => Mode::Sh,
            "SHARED_READ" => Mode::Sr,
            "SHARED_WRITE" => Mode::Sw,
            "SHARED_WRITE_LOW_PRIO" => Mode::Swlp,
            "SHARED_UPGRADABLE" => Mode::Su,
            "SHARED_READ_ONLY" => Mode::Sro,
            "SHARED_NO_WRITE" => Mode::Snw,
            "SHARED_NO_READ_WRITE" => Mode::Snrw,
            "EXCLUSIVE" => Mode::X,
            _ => return None,
        })
    }

    /// Granted-lock matrix (mdl.cc `m_granted_incompatible`): may `self` be
    /// granted while `granted` is held by another thread?
    fn conflicts_with_granted(self, granted: Mode) -> bool {
        use Mode::*;
        match self {
            S | Sh => granted == X,
            Sr => matches!(granted, Snrw | X),
            Sw | Swlp => matches!(granted, Sro | Snw | Snrw | X),
            Su => matches!(granted, Su | Snw | Snrw | X),
            Sro => matches!(granted, Sw | Swlp | Snrw | X),
            Snw => matches!(granted, Sw | Swlp | Su | Snw | Snrw | X),
            Snrw => !matches!(granted, S | Sh),
            X => true,
        }
    }

    /// Waiting-request matrix (mdl.cc `m_waiting_incompatible`): does a
    /// pending `waiting` request of another thread make `self` queue behind it?
    fn queues_behind_pending(self, waiting: Mode) -> bool {
        use Mode::*;
        match self {
            S | Su | Snw | Snrw => waiting == X,
            Sh | X => false,
            Sr => matches!(waiting, Snrw | X),
            Sw => matches!(waiting, Snw | Snrw | X),
            Swlp => matches!(waiting, Sro | Snw | Snrw | X),
            Sro => matches!(waiting, Sw | Snrw | X),
        }
    }
}

/// One table metadata lock, granted or requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// Processlist id of the owner.
    pub thread: u64,
    pub schema: String,
    pub table: String,
    pub mode: Mode,
    pub granted: bool,
}

/// A metadata-lock wait as reported: `blocking` is `None` when the server
/// cannot tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wait {
    pub waiting: u64,
    pub blocking: Option<u64>,
    /// `schema.table`, when known.
    pub object: Option<String>,
    pub wait_secs: u64,
}

/// Threads whose processlist state says they wait for a metadata lock.
pub fn waiters(rows: &[ProcRow]) -> Vec<&ProcRow> {
    rows.iter()
        .filter(|r| r.state.as_deref() == Some(WAIT_STATE))
        .collect()
}

/// Direct blockers of each pending request: granted locks of other threads
/// that conflict with it, and pending requests of other threads it queues
/// behind. Keyed by (waiter, object).
fn direct(locks: &[Lock]) -> BTreeMap<(u64, String, String), BTreeSet<u64>> {
    let mut out: BTreeMap<(u64, String, String), BTreeSet<u64>> = BTreeMap::new();
    for w in locks.iter().filter(|l| !l.granted) {
        let same = |l: &&Lock| l.thread != w.thread && l.schema == w.schema && l.table == w.table;
        let set = out
            .entry((w.thread, w.schema.clone(), w.table.clone()))
            .or_default();
        for l in locks.iter().filter(same) {
            let blocks = if l.granted {
                w.mode.conflicts_with_granted(l.mode)
            } else {
                w.mode.queues_behind_pending(l.mode)
            };
            if blocks {
                set.insert(l.thread);
            }
        }
    }
    out
}

/// Every metadata-lock wait among `locks` with its root blocker(s): a
/// blocker that waits itself is replaced by what it waits for. `rows` gives
/// the waiters' times (their statement time in the processlist).
pub fn resolve(locks: &[Lock], rows: &[ProcRow]) -> Vec<Wait> {
    let direct = direct(locks);
    let waiting: HashSet<u64> = locks
        .iter()
        .filter(|l| !l.granted)
        .map(|l| l.thread)
        .collect();
    let blockers_of = |t: u64| -> BTreeSet<u64> {
        direct
            .iter()
            .filter(|((w, _, _), _)| *w == t)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    };
    let roots = |start: &BTreeSet<u64>| -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        let mut seen = HashSet::new();
        let mut todo: Vec<u64> = start.iter().copied().collect();
        while let Some(t) = todo.pop() {
            if !seen.insert(t) {
                continue;
            }
            if waiting.contains(&t) {
                let next = blockers_of(t);
                if next.is_empty() {
                    // A waiter with nothing known in its way: keep it as the
                    // blocker rather than report nothing.
                    out.insert(t);
                }
                todo.extend(next);
            } else {
                out.insert(t);
            }
        }
        out
    };
    // The waiter's statement time, as much of it as has certainly passed.
    let secs = |t: u64| {
        rows.iter()
            .find(|r| r.id == t)
            .map_or(0, ProcRow::secs_at_least)
    };
    let mut out = Vec::new();
    for ((w, schema, table), d) in &direct {
        let object = Some(format!("{schema}.{table}"));
        let r = roots(d);
        let r: BTreeSet<u64> = r.into_iter().filter(|b| b != w).collect();
        if r.is_empty() {
            out.push(Wait {
                waiting: *w,
                blocking: None,
                object: object.clone(),
                wait_secs: secs(*w),
            });
        }
        for b in r {
            out.push(Wait {
                waiting: *w,
                blocking: Some(b),
                object: object.clone(),
                wait_secs: secs(*w),
            });
        }
    }
    out
}

/// Statements that take an exclusive (or no-write) metadata lock.
fn is_ddl(info: &str) -> bool {
    let first = info
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "ALTER" | "DROP" | "RENAME" | "TRUNCATE" | "CREATE" | "OPTIMIZE" | "REPAIR" | "LOCK"
    )
}

fn is_write(info: &str) -> bool {
    let first = info
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD"
    )
}

/// Whether `info` names the table `schema.table` (as `table`, `` `table` ``,
/// `schema.table` or `` `schema`.`table` ``; unqualified only when `db` is
/// `schema`).
fn names_table(info: &str, db: Option<&str>, schema: &str, table: &str) -> bool {
    let text = info.to_ascii_lowercase().replace('`', "");
    let (schema, table) = (schema.to_ascii_lowercase(), table.to_ascii_lowercase());
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    let mut from = 0;
    while let Some(pos) = text[from..].find(&table) {
        let start = from + pos;
        let end = start + table.len();
        from = start + 1;
        let after_ok = text[end..].chars().next().is_none_or(|c| !is_ident(c));
        let before = text[..start].chars().next_back();
        if !after_ok || before.is_some_and(is_ident) {
            continue;
        }
        if before == Some('.') {
            let qual = text[..start - 1]
                .chars()
                .rev()
                .take_while(|c| is_ident(*c))
                .collect::<String>()
                .chars()
                .rev()
                .collect::<String>();
            if qual == schema {
                return true;
            }
        } else if db.is_some_and(|d| d.eq_ignore_ascii_case(&schema)) {
            return true;
        }
    }
    false
}

/// From MariaDB's `METADATA_LOCK_INFO` (granted table locks only), the
/// pending requests the waiters most likely make: one per table their
/// statement names that someone holds a lock on; DDL asks for an exclusive
/// lock, writes for `SHARED_WRITE`, anything else for `SHARED_READ`.
pub fn infer_pending(granted: &[Lock], rows: &[ProcRow]) -> Vec<Lock> {
    let tables: BTreeSet<(String, String)> = granted
        .iter()
        .map(|l| (l.schema.clone(), l.table.clone()))
        .collect();
    let mut out = Vec::new();
    for w in waiters(rows) {
        let Some(info) = w.info.as_deref() else {
            continue;
        };
        let mode = if is_ddl(info) {
            Mode::X
        } else if is_write(info) {
            Mode::Sw
        } else {
            Mode::Sr
        };
        for (schema, table) in &tables {
            if names_table(info, w.db.as_deref(), schema, table) {
                out.push(Lock {
                    thread: w.id,
                    schema: schema.clone(),
                    table: table.clone(),
                    mode,
                    granted: false,
                });
            }
        }
    }
    out
}

/// Waiters the lock data says nothing about: reported without a blocker.
pub fn unexplained(rows: &[ProcRow], waits: &[Wait]) -> Vec<Wait> {
    waiters(rows)
        .into_iter()
        .filter(|r| !waits.iter().any(|w| w.waiting == r.id))
        .map(|r| Wait {
            waiting: r.id,
            blocking: None,
            object: None,
            wait_secs: r.secs_at_least(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(thread: u64, table: &str, mode: Mode, granted: bool) -> Lock {
        Lock {
            thread,
            schema: "crm".into(),
            table: table.into(),
            mode,
            granted,
        }
    }

    fn row(id: u64, time: u64, state: Option<&str>, info: Option<&str>) -> ProcRow {
        ProcRow {
            query_id: None,
            id,
            user: "app".into(),
            host: "h:1".into(),
            db: Some("crm".into()),
            command: if info.is_some() { "Query" } else { "Sleep" }.into(),
            time,
            time_ms: None,
            time_high: false,
            state: state.map(Into::into),
            info: info.map(Into::into),
        }
    }

    fn pairs(w: &[Wait]) -> Vec<(u64, Option<u64>)> {
        w.iter().map(|w| (w.waiting, w.blocking)).collect()
    }

    #[test]
    fn modes_parse_from_both_sources() {
        assert_eq!(Mode::parse("SHARED_READ"), Some(Mode::Sr));
        assert_eq!(Mode::parse("MDL_SHARED_UPGRADABLE"), Some(Mode::Su));
        assert_eq!(Mode::parse("MDL_EXCLUSIVE"), Some(Mode::X));
        assert_eq!(Mode::parse("MDL_INTENTION_EXCLUSIVE"), None);
        assert_eq!(Mode::parse("MDL_BACKUP_ALTER_COPY"), None);
    }

    #[test]
    fn queue_behind_alter_resolves_to_the_open_transaction() {
        // 13: idle transaction that read t; 14: ALTER waiting for X;
        // 15: SELECT queued behind the ALTER's pending X.
        let locks = vec![
            lock(13, "t", Mode::Sr, true),
            lock(14, "t", Mode::Su, true),
            lock(14, "t", Mode::X, false),
            lock(15, "t", Mode::Sr, false),
        ];
        let rows = vec![
            row(13, 30, None, None),
            row(14, 20, Some(WAIT_STATE), Some("alter table t add c int")),
            row(15, 10, Some(WAIT_STATE), Some("select * from t")),
        ];
        let w = resolve(&locks, &rows);
        assert_eq!(pairs(&w), vec![(14, Some(13)), (15, Some(13))]);
        assert_eq!(w[0].wait_secs, 20);
        assert_eq!(w[0].object.as_deref(), Some("crm.t"));
    }

    #[test]
    fn compatible_holders_are_not_blockers() {
        // A reader waits for a LOCK TABLES ... WRITE holder (SNRW); another
        // reader holding SR on the same table is not in its way.
        let locks = vec![
            lock(1, "t", Mode::Snrw, true),
            lock(2, "t", Mode::Sr, true),
            lock(3, "t", Mode::Sr, false),
            lock(4, "u", Mode::X, true),
        ];
        let w = resolve(&locks, &[]);
        assert_eq!(pairs(&w), vec![(3, Some(1))]);
    }

    #[test]
    fn a_waiter_with_nothing_known_is_reported_without_blocker() {
        let rows = vec![row(9, 5, Some(WAIT_STATE), Some("select * from t"))];
        let w = unexplained(&rows, &[]);
        assert_eq!(pairs(&w), vec![(9, None)]);
        assert_eq!(w[0].wait_secs, 5);
    }

    #[test]
    fn mariadb_plugin_rows_infer_the_request_from_the_statement() {
        // METADATA_LOCK_INFO shows granted locks only.
        let granted = vec![
            lock(58, "r", Mode::Sr, true),
            lock(59, "r", Mode::Su, true),
            lock(70, "other", Mode::Sw, true),
        ];
        let rows = vec![
            row(58, 30, Some("User sleep"), Some("select sleep(30)")),
            row(
                59,
                20,
                Some(WAIT_STATE),
                Some("alter table `crm`.`r` add column w int"),
            ),
            row(60, 10, Some(WAIT_STATE), Some("SELECT * FROM r WHERE id=1")),
            row(61, 10, Some(WAIT_STATE), Some("select * from rr")),
        ];
        let mut locks = granted.clone();
        locks.extend(infer_pending(&granted, &rows));
        let w = resolve(&locks, &rows);
        assert_eq!(pairs(&w), vec![(59, Some(58)), (60, Some(58))]);
        assert_eq!(pairs(&unexplained(&rows, &w)), vec![(61, None)]);
    }

    #[test]
    fn table_names_are_matched_as_identifiers() {
        let cases = [
            ("select * from t", Some("crm"), true),
            ("select * from t", Some("other"), false),
            ("select * from crm.t", None, true),
            ("select * from `crm`.`t`", Some("x"), true),
            ("select * from x.t", Some("crm"), false),
            ("select * from tt", Some("crm"), false),
            ("select t_id from u", Some("crm"), false),
            ("update T set a=1", Some("crm"), true),
        ];
        for (info, db, want) in cases {
            assert_eq!(names_table(info, db, "crm", "t"), want, "{info} in {db:?}");
        }
    }

    #[test]
    fn ddl_and_writes_are_recognised() {
        assert!(is_ddl("  ALTER TABLE t ADD c INT"));
        assert!(is_ddl("truncate t"));
        assert!(!is_ddl("select 1"));
        assert!(is_write("update t set a=1"));
        assert!(!is_write("select * from t for update"));
    }
}
