//! Reads server state: the processlist, InnoDB lock waits, and the snapshot
//! taken before any kill. Read-only; every query runs on a held session.

use std::collections::{HashMap, HashSet};

use mysql::prelude::Queryable;
use mysql::{Row, Value};

use crate::core::matcher::LockWait;
use crate::core::mdl;
use crate::core::row::ProcRow;
use crate::core::verify::TrxFacts;
use crate::core::waits;
use crate::server::session::{Flavor, IsReason, ProcSource, Session, SessionError};

fn text(v: Option<Value>) -> Option<String> {
    match v {
        None | Some(Value::NULL) => None,
        // Reuses the driver's buffer: every pass reads every thread's fields,
        // so a copy per field is most of the scan's client-side cost.
        Some(Value::Bytes(b)) => Some(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        Some(other) => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn number(v: Option<Value>) -> u64 {
    match v {
        Some(Value::Int(i)) => i.max(0) as u64,
        Some(Value::UInt(u)) => u,
        Some(Value::Float(f)) => f.max(0.0) as u64,
        Some(Value::Double(f)) => f.max(0.0) as u64,
        Some(Value::Bytes(b)) => digits(&b),
        _ => 0,
    }
}

/// The integer part of a decimal in text form (`TIME_MS` is `1234.567`);
/// 0 when there is none. Saturates instead of overflowing.
fn digits(b: &[u8]) -> u64 {
    let b = b.trim_ascii();
    let int = b.split(|&c| c == b'.').next().unwrap_or_default();
    if int.is_empty() || !int.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    int.iter().fold(0u64, |n, &c| {
        n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
    })
}

/// The processlist query for this source. Column 9 is the statement's
/// identity for the re-check: MariaDB's `QUERY_ID`; on MySQL the outermost
/// running statement's `EVENT_ID` (per thread, new for every statement, kept
/// by a CALL while its nested statements run).
fn processlist_sql(source: ProcSource, stmt_timers: bool) -> &'static str {
    match source {
        ProcSource::InformationSchema(IsReason::MariaDb) => {
            "SELECT ID, USER, HOST, DB, COMMAND, TIME, TIME_MS, STATE, INFO, QUERY_ID FROM information_schema.PROCESSLIST"
        }
        // TIME_MS of a running statement from its statement event: TIMER_WAIT
        // of an event not yet ended is the time elapsed so far (picoseconds).
        // MAX: a stored program's nested statements are current too; the
        // outermost one has run longest (and has the smallest EVENT_ID).
        // Not a sleeper's: its last statement's end would be the time it
        // fell idle, but a connection that has run no statement yet can show
        // the last statement of the thread that held its slot before
        // (seconds of "idle" at login). TIME, up to 1 s high, never errs early.
        ProcSource::PerformanceSchema if stmt_timers => {
            "SELECT p.ID, p.USER, p.HOST, p.DB, p.COMMAND, p.TIME, \
             CASE WHEN p.COMMAND = 'Sleep' THEN NULL ELSE \
             (SELECT MAX(e.TIMER_WAIT) FROM performance_schema.threads t \
             JOIN performance_schema.events_statements_current e ON e.THREAD_ID = t.THREAD_ID \
             WHERE t.PROCESSLIST_ID = p.ID AND e.END_EVENT_ID IS NULL) DIV 1000000000 END, \
             p.STATE, p.INFO, \
             CASE WHEN p.COMMAND = 'Sleep' THEN NULL ELSE \
             (SELECT MIN(e.EVENT_ID) FROM performance_schema.threads t \
             JOIN performance_schema.events_statements_current e ON e.THREAD_ID = t.THREAD_ID \
             WHERE t.PROCESSLIST_ID = p.ID AND e.END_EVENT_ID IS NULL) END \
             FROM performance_schema.processlist p"
        }
        ProcSource::PerformanceSchema => {
            "SELECT ID, USER, HOST, DB, COMMAND, TIME, NULL, STATE, INFO, NULL FROM performance_schema.processlist"
        }
        ProcSource::InformationSchema(_) => {
            "SELECT ID, USER, HOST, DB, COMMAND, TIME, NULL, STATE, INFO, NULL FROM information_schema.PROCESSLIST"
        }
    }
}

/// Every thread the session's user can see (all of them with PROCESS).
pub fn processlist(s: &mut Session) -> Result<Vec<ProcRow>, SessionError> {
    processlist_where(s, "")
}

/// Only the threads of `users`, plus the threads `ids`. The server does the
/// filtering: with thousands of other users' idle connections, reading and
/// decoding rows nobody may kill is most of a pass's client-side cost.
/// `None` when a user name cannot be put in a literal safely (a backslash,
/// whose meaning depends on sql_mode): the caller reads everything instead.
pub fn processlist_of(
    s: &mut Session,
    users: &std::collections::BTreeSet<String>,
    ids: &std::collections::HashSet<u64>,
) -> Option<Result<Vec<ProcRow>, SessionError>> {
    if users.iter().any(|u| u.contains('\\')) {
        return None;
    }
    let mut terms = Vec::new();
    if !users.is_empty() {
        let list: Vec<String> = users
            .iter()
            .map(|u| format!("'{}'", u.replace('\'', "''")))
            .collect();
        terms.push(format!("USER IN ({})", list.join(",")));
    }
    if !ids.is_empty() {
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        terms.push(format!("ID IN ({})", list.join(",")));
    }
    let clause = if terms.is_empty() {
        " WHERE FALSE".to_string()
    } else {
        format!(" WHERE {}", terms.join(" OR "))
    };
    Some(processlist_where(s, &clause))
}

/// The rows of threads `ids` only: the re-check right before a kill (one
/// narrow query, by primary key, for all the victims of a pass). A user
/// without PROCESS sees its own threads, which is all its kill thread needs.
pub fn rows_by_id(s: &mut Session, ids: &[u64]) -> Result<Vec<ProcRow>, SessionError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    processlist_where(s, &format!(" WHERE ID IN ({})", list.join(",")))
}

fn processlist_where(s: &mut Session, clause: &str) -> Result<Vec<ProcRow>, SessionError> {
    // MySQL's TIME is a difference of whole wall-clock seconds.
    let time_high = s.flavor != Flavor::MariaDb;
    loop {
        let sql = format!("{}{clause}", processlist_sql(s.proc_source, s.stmt_timers));
        // Rows are converted as they arrive, not collected first.
        match s.conn.query_map(&sql, |r| to_proc_row(r, time_high)) {
            Ok(rows) => return Ok(rows),
            // Without SELECT on performance_schema the timers are out of
            // reach: TIME alone, counted as up to 1 s high.
            Err(mysql::Error::MySqlError(_)) if s.stmt_timers => s.stmt_timers = false,
            // performance_schema.processlist is 8.0.22+; older 8.0 falls
            // back, and stays on the fallback for the session's life.
            Err(mysql::Error::MySqlError(_)) if s.proc_source == ProcSource::PerformanceSchema => {
                s.proc_source = ProcSource::InformationSchema(IsReason::PerformanceSchemaFailed)
            }
            Err(e) => return Err(s.query_err(&e)),
        }
    }
}

/// MySQL's `TIME` is the wall-clock second now less the second the command
/// began, so it reads up to 1 s high or low: 0.7 s reads 0 or 1, 1.7 s
/// reads 1 or 2. The true elapsed time lies within 1 s of `TIME` either
/// way; a timer reading outside that (with 50 ms for the two clocks' skew)
/// describes something else. (Only its being high matters for never
/// killing early; a low `TIME` once made half of all good readings look
/// wrong here, and statements that had reached the limit were not killed.)
fn timer_agrees(time: u64, ms: u64) -> bool {
    let slack = 50;
    let t = time.saturating_mul(1000);
    ms <= t.saturating_add(1000 + slack) && ms.saturating_add(1000 + slack) >= t
}

fn to_proc_row(mut r: Row, time_high: bool) -> ProcRow {
    let optional = |v: Option<Value>| match v {
        None | Some(Value::NULL) => None,
        v => Some(number(v)),
    };
    let time = number(r.take(5));
    // MySQL's timer reading is trusted only where TIME agrees with it.
    let time_ms = optional(r.take(6)).filter(|&ms| !time_high || timer_agrees(time, ms));
    ProcRow {
        query_id: optional(r.take(9)),
        id: number(r.take(0)),
        user: text(r.take(1)).unwrap_or_default(),
        host: text(r.take(2)).unwrap_or_default(),
        db: text(r.take(3)),
        command: text(r.take(4)).unwrap_or_default(),
        time,
        time_ms,
        time_high: time_high && time_ms.is_none(),
        state: text(r.take(7)),
        info: text(r.take(8)),
    }
}

/// Whole seconds a lock wait has certainly lasted. `trx_wait_started` is a
/// DATETIME truncated to the second, so the wait began up to 1 s after it:
/// the precise now less that second, never a wait counted early.
const WAIT_SECS_AT_LEAST: &str = "GREATEST(TIMESTAMPDIFF(MICROSECOND, r.trx_wait_started, NOW(6)) \
     - 1000000, 0) DIV 1000000";

/// InnoDB row-lock waits: who waits on whom, for how long (at least).
pub fn lock_waits(s: &mut Session) -> Result<Vec<LockWait>, SessionError> {
    let sql = match s.flavor {
        Flavor::MySql8 => format!(
            "SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id, {WAIT_SECS_AT_LEAST} \
             FROM performance_schema.data_lock_waits w \
             JOIN information_schema.INNODB_TRX b ON b.trx_id = w.BLOCKING_ENGINE_TRANSACTION_ID \
             JOIN information_schema.INNODB_TRX r ON r.trx_id = w.REQUESTING_ENGINE_TRANSACTION_ID"
        ),
        _ => format!(
            "SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id, {WAIT_SECS_AT_LEAST} \
             FROM information_schema.INNODB_LOCK_WAITS w \
             JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id \
             JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id"
        ),
    };
    let rows: Vec<Row> = s.conn.query(sql).map_err(|e| s.query_err(&e))?;
    Ok(rows
        .into_iter()
        .map(|mut r| LockWait {
            waiting: number(r.take(0)),
            blocking: number(r.take(1)),
            wait_secs: number(r.take(2)),
        })
        .collect())
}

/// `INNODB_TRX` facts of the given threads (why a killed thread is still
/// there: `ROLLING BACK`, rows left to undo). Threads without a transaction
/// are absent from the map.
pub fn trx_facts(s: &mut Session, ids: &[u64]) -> Result<HashMap<u64, TrxFacts>, SessionError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    let sql = format!(
        "SELECT trx_mysql_thread_id, trx_state, trx_rows_modified, trx_operation_state \
         FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id IN ({})",
        list.join(",")
    );
    let rows: Vec<Row> = s.conn.query(sql).map_err(|e| s.query_err(&e))?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            (
                number(r.take(0)),
                TrxFacts {
                    state: text(r.take(1)).unwrap_or_default(),
                    rows_modified: number(r.take(2)),
                    operation: text(r.take(3)).filter(|o| !o.is_empty()),
                },
            )
        })
        .collect())
}

/// Every open InnoDB transaction: (thread id, seconds since it started).
/// The suspects when a metadata-lock wait has no known blocker.
pub fn open_transactions(s: &mut Session) -> Result<Vec<(u64, u64)>, SessionError> {
    let rows: Vec<Row> = s
        .conn
        .query(
            "SELECT trx_mysql_thread_id, TIMESTAMPDIFF(SECOND, trx_started, NOW()) \
             FROM information_schema.INNODB_TRX ORDER BY trx_started",
        )
        .map_err(|e| s.query_err(&e))?;
    Ok(rows
        .into_iter()
        .map(|mut r| (number(r.take(0)), number(r.take(1))))
        .collect())
}

/// Where the metadata-lock information came from (shown in snapshots and by doctor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MdlSource {
    /// `performance_schema.metadata_locks` (pending requests listed).
    PerformanceSchema,
    /// MariaDB `information_schema.METADATA_LOCK_INFO` (granted locks only).
    MetadataLockInfo,
    /// Neither is available: waiters are reported without a blocker.
    None,
}

impl MdlSource {
    pub fn text(self) -> &'static str {
        match self {
            MdlSource::PerformanceSchema => "performance_schema.metadata_locks",
            MdlSource::MetadataLockInfo => {
                "information_schema.METADATA_LOCK_INFO (granted locks; requests inferred from the statement)"
            }
            MdlSource::None => "none (no performance_schema MDL instrument, no metadata_lock_info plugin)",
        }
    }
}

/// Table metadata locks from `performance_schema.metadata_locks`, owners
/// mapped to processlist ids. Empty when performance_schema is off or the
/// MDL instrument is disabled (the table then has no rows).
fn ps_metadata_locks(s: &mut Session) -> Result<Vec<mdl::Lock>, mysql::Error> {
    let rows: Vec<Row> = s.conn.query(
        "SELECT t.PROCESSLIST_ID, m.OBJECT_SCHEMA, m.OBJECT_NAME, m.LOCK_TYPE, m.LOCK_STATUS \
         FROM performance_schema.metadata_locks m \
         JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID \
         WHERE m.OBJECT_TYPE = 'TABLE' AND t.PROCESSLIST_ID IS NOT NULL",
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|mut r| {
            let mode = mdl::Mode::parse(&text(r.take(3)).unwrap_or_default())?;
            Some(mdl::Lock {
                thread: number(r.take(0)),
                schema: text(r.take(1)).unwrap_or_default(),
                table: text(r.take(2)).unwrap_or_default(),
                mode,
                granted: text(r.take(4)).as_deref() == Some("GRANTED"),
            })
        })
        .collect())
}

/// Granted table metadata locks from MariaDB's `METADATA_LOCK_INFO`.
fn plugin_metadata_locks(s: &mut Session) -> Result<Vec<mdl::Lock>, mysql::Error> {
    let rows: Vec<Row> = s.conn.query(
        "SELECT THREAD_ID, TABLE_SCHEMA, TABLE_NAME, LOCK_MODE \
         FROM information_schema.METADATA_LOCK_INFO WHERE LOCK_TYPE = 'Table metadata lock'",
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|mut r| {
            let mode = mdl::Mode::parse(&text(r.take(3)).unwrap_or_default())?;
            Some(mdl::Lock {
                thread: number(r.take(0)),
                schema: text(r.take(1)).unwrap_or_default(),
                table: text(r.take(2)).unwrap_or_default(),
                mode,
                granted: true,
            })
        })
        .collect())
}

/// Metadata-lock waits among `rows` with their root blockers where the
/// server can tell (see [`mdl`]). Nothing is queried when no thread waits
/// (`None`).
pub fn mdl_waits(s: &mut Session, rows: &[ProcRow]) -> Option<(Vec<mdl::Wait>, MdlSource)> {
    if mdl::waiters(rows).is_empty() {
        return None;
    }
    Some(mdl_waits_of(s, rows))
}

fn mdl_waits_of(s: &mut Session, rows: &[ProcRow]) -> (Vec<mdl::Wait>, MdlSource) {
    let ps = ps_metadata_locks(s).unwrap_or_default();
    if ps.iter().any(|l| !l.granted) {
        let mut waits = mdl::resolve(&ps, rows);
        waits.extend(mdl::unexplained(rows, &waits));
        return (waits, MdlSource::PerformanceSchema);
    }
    match plugin_metadata_locks(s) {
        Ok(granted) => {
            let mut locks = mdl::infer_pending(&granted, rows);
            locks.extend(granted);
            let mut waits = mdl::resolve(&locks, rows);
            waits.extend(mdl::unexplained(rows, &waits));
            (waits, MdlSource::MetadataLockInfo)
        }
        Err(_) => (mdl::unexplained(rows, &[]), MdlSource::None),
    }
}

/// Which metadata-lock source this server offers.
pub fn mdl_source(s: &mut Session) -> MdlSource {
    // performance_schema.metadata_locks only has rows when P_S is on and the
    // MDL instrument enabled; the instrument table says which.
    let ps_on = s
        .conn
        .query_first::<String, _>(
            "SELECT ENABLED FROM performance_schema.setup_instruments \
             WHERE NAME = 'wait/lock/metadata/sql/mdl'",
        )
        .ok()
        .flatten()
        .is_some_and(|e| e.eq_ignore_ascii_case("YES"))
        && s.conn
            .query_first::<String, _>("SELECT @@performance_schema")
            .ok()
            .flatten()
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("ON"));
    if ps_on {
        return MdlSource::PerformanceSchema;
    }
    match s
        .conn
        .query_drop("SELECT 1 FROM information_schema.METADATA_LOCK_INFO LIMIT 0")
    {
        Ok(()) => MdlSource::MetadataLockInfo,
        Err(_) => MdlSource::None,
    }
}

/// The metadata-lock waits as a text table for snapshots.
pub fn mdl_table(found: Option<&(Vec<mdl::Wait>, MdlSource)>) -> String {
    let Some((waits, source)) = found else {
        return "metadata lock waits\n(none)\n".into();
    };
    let mut out = format!("metadata lock waits (source: {})\n", source.text());
    out.push_str("waiting\tblocking\tobject\twait_secs\n");
    for w in waits {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            w.waiting,
            w.blocking
                .map_or_else(|| "unknown".to_string(), |b| b.to_string()),
            w.object.as_deref().unwrap_or("?"),
            w.wait_secs
        ));
    }
    out
}

/// A query's result rendered as a plain text table (for snapshots): one line
/// per row, cells separated by ` | `, each cell redacted and neutralised
/// (`trx_query` may span lines or carry a password).
pub fn query_table(s: &mut Session, sql: &str) -> String {
    let result = s.conn.query_iter(sql);
    let mut result = match result {
        Ok(r) => r,
        Err(e) => return format!("({sql}: {})\n", crate::server::session::error_text(&e)),
    };
    let mut out = String::new();
    let mut header_done = false;
    while let Some(set) = result.iter() {
        for row in set {
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    out.push_str(&format!(
                        "(error: {})\n",
                        crate::server::session::error_text(&e)
                    ));
                    break;
                }
            };
            if !header_done {
                let names: Vec<String> = row
                    .columns_ref()
                    .iter()
                    .map(|c| c.name_str().into_owned())
                    .collect();
                out.push_str(&names.join(" | "));
                out.push('\n');
                header_done = true;
            }
            let cells: Vec<String> = (0..row.len())
                .map(|i| {
                    text(row.as_ref(i).cloned())
                        .map(|t| crate::core::text::neutral(&crate::core::redact::sql(&t)))
                        .unwrap_or_else(|| "NULL".into())
                })
                .collect();
            out.push_str(&cells.join(" | "));
            out.push('\n');
        }
    }
    if !header_done {
        out.push_str("(empty)\n");
    }
    out
}

/// What the server looked like just before mysqk acted (SPEC 4).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Snapshot {
    pub processlist: Vec<ProcRow>,
    pub innodb_status: String,
    pub lock_waits: String,
    pub innodb_trx: String,
}

/// Capture `SHOW ENGINE INNODB STATUS`, the lock waits and `INNODB_TRX`;
/// the processlist is the one the pass already read.
pub fn snapshot(s: &mut Session, processlist: &[ProcRow]) -> Snapshot {
    let innodb_status = match s.conn.query_first::<Row, _>("SHOW ENGINE INNODB STATUS") {
        Ok(Some(mut r)) => text(r.take(2)).unwrap_or_default(),
        Ok(None) => String::new(),
        Err(e) => format!(
            "(SHOW ENGINE INNODB STATUS: {})",
            crate::server::session::error_text(&e)
        ),
    };
    let lock_sql = match s.flavor {
        Flavor::MySql8 => "SELECT * FROM performance_schema.data_lock_waits",
        _ => "SELECT * FROM information_schema.INNODB_LOCK_WAITS",
    };
    let raw = query_table(s, lock_sql);
    // Metadata-lock waits go with the row-lock waits: same question (who
    // blocks whom), same section of the snapshot.
    let found = mdl_waits(s, processlist);
    let row_waits = self::lock_waits(s).unwrap_or_default();
    let mdl_list = found.as_ref().map(|(w, _)| w.as_slice()).unwrap_or(&[]);
    // First in words (ids, users, statements, wait), then the raw tables.
    let mut lock_waits = waits::who_waits(&row_waits, mdl_list, processlist);
    if let Some((w, source)) = &found {
        let open = open_transactions(s).unwrap_or_default();
        for h in waits::mdl_hints(
            w,
            processlist,
            &open,
            &HashSet::new(),
            None,
            *source == MdlSource::None,
        ) {
            lock_waits.push_str(&format!("hint: {h}\n"));
        }
    }
    lock_waits.push('\n');
    lock_waits.push_str(&raw);
    lock_waits.push('\n');
    lock_waits.push_str(&mdl_table(found.as_ref()));
    Snapshot {
        processlist: processlist.to_vec(),
        innodb_status,
        lock_waits,
        innodb_trx: query_table(s, "SELECT * FROM information_schema.INNODB_TRX"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_text() {
        assert_eq!(digits(b"1234.567"), 1234);
        assert_eq!(digits(b" 42 "), 42);
        assert_eq!(digits(b"0.999"), 0);
        assert_eq!(digits(b""), 0);
        assert_eq!(digits(b"-5"), 0);
        assert_eq!(digits(b"12abc"), 0);
        assert_eq!(digits(b"99999999999999999999999"), u64::MAX);
        assert_eq!(number(Some(Value::Bytes(b"3000.5".to_vec()))), 3000);
        assert_eq!(number(Some(Value::Int(-3))), 0);
        assert_eq!(number(None), 0);
    }

    #[test]
    fn text_keeps_valid_utf8_and_repairs_the_rest() {
        assert_eq!(
            text(Some(Value::Bytes(b"app1".to_vec()))).as_deref(),
            Some("app1")
        );
        assert_eq!(
            text(Some(Value::Bytes(vec![b'a', 0xff, b'b']))).as_deref(),
            Some("a\u{fffd}b")
        );
        assert_eq!(text(Some(Value::NULL)), None);
        assert_eq!(text(None), None);
    }
}

#[cfg(test)]
mod timer_tests {
    use super::timer_agrees;

    #[test]
    fn a_timer_is_trusted_only_within_what_time_allows() {
        // TIME=3: between 2 and 4 s have passed.
        assert!(timer_agrees(3, 2000) && timer_agrees(3, 2999) && timer_agrees(3, 3000));
        assert!(!timer_agrees(3, 1800), "TIME says more than 2 s");
        assert!(!timer_agrees(3, 4200), "TIME says less than 4 s");
        assert!(!timer_agrees(0, 5000), "a just-connected thread: TIME 0");
        assert!(timer_agrees(0, 0) && timer_agrees(1, 400));
        // Seen on MySQL 9.7 in about half of all readings under churn: a
        // statement that began late in its second shows a low TIME.
        assert!(timer_agrees(0, 700) && timer_agrees(1, 1704) && timer_agrees(2, 2950));
        assert!(!timer_agrees(u64::MAX, 0), "absurd TIME: no panic");
    }
}
