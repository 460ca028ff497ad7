//! One check pass on one instance: scan -> match -> snapshot -> kill.
//! Shared by the one-shot `mysqk kill` and the `watch` instance loop.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::config::{Config, Instance};
use crate::core::matcher::{self, Rules, Scan, UserFilter, Victim};
use crate::core::outcome::{Action, KillResult};
use crate::core::recheck::{self, Verdict};
use crate::core::row::ProcRow;
use crate::core::verify::{Finding, Kind, Tracker};
use crate::server::inspector::{self, Snapshot};
use crate::server::killer::{self, KillOpts, Lanes, Outcome};
use crate::server::session::{Flavor, SessionError, Sessions};

/// What one pass saw and did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub rows: Vec<ProcRow>,
    pub outcomes: Vec<Outcome>,
    /// Taken before any kill, only when there were victims.
    pub snapshot: Option<Snapshot>,
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("{dbid}: {source}")]
    Session { dbid: String, source: SessionError },
    #[error("{dbid}: cannot log in as db_puser {user}: {reason}")]
    NoPuser {
        dbid: String,
        user: String,
        reason: String,
    },
}

/// Which threads a scan reads.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Every thread: one-shot runs, where the table shows what was scanned.
    All,
    /// The daemon's steady state: only threads that could be victims (those
    /// of `k_user` users) plus `ids` (kills awaiting verification). Falls
    /// back to every thread when `k_lock` is on, since a lock waiter may
    /// belong to any user.
    Candidates(&'a HashSet<u64>),
}

/// A scan, and whether its rows are the whole processlist (a snapshot needs that).
pub struct Scanned {
    pub scan: Scan,
    pub complete: bool,
}

/// Read the processlist (and lock waits when `k_lock` is on) through `db_puser`.
pub fn scan(
    cfg: &Config,
    inst: &Instance,
    rules: &Rules,
    sessions: &mut Sessions,
) -> Result<Scan, PassError> {
    scan_scoped(cfg, inst, rules, sessions, Scope::All).map(|s| s.scan)
}

/// [`scan`] restricted to `scope`.
pub fn scan_scoped(
    cfg: &Config,
    inst: &Instance,
    rules: &Rules,
    sessions: &mut Sessions,
    scope: Scope,
) -> Result<Scanned, PassError> {
    let puser = inst.puser.as_str();
    let pw = cfg.password(puser).ok_or_else(|| PassError::NoPuser {
        dbid: inst.dbid.clone(),
        user: puser.into(),
        reason: "not in [db_auth]".into(),
    })?;
    let Some(s) = sessions.ensure(puser, pw) else {
        let reason = sessions
            .errors()
            .into_iter()
            .find(|(u, _)| u == puser)
            .map(|(_, e)| e)
            .unwrap_or_else(|| "not connected".into());
        return Err(PassError::NoPuser {
            dbid: inst.dbid.clone(),
            user: puser.into(),
            reason,
        });
    };
    let fail = |dbid: &str, e: SessionError| PassError::Session {
        dbid: dbid.to_string(),
        source: e,
    };
    let narrowed = match (scope, &rules.users) {
        (Scope::Candidates(ids), UserFilter::Users(users)) if rules.lock == 0 => {
            inspector::processlist_of(s, users, ids)
        }
        (Scope::Candidates(ids), UserFilter::Nobody) if rules.lock == 0 => {
            inspector::processlist_of(s, &BTreeSet::new(), ids)
        }
        _ => None,
    };
    let complete = narrowed.is_none();
    let rows = match narrowed.unwrap_or_else(|| inspector::processlist(s)) {
        Ok(r) => r,
        Err(e) => {
            // A broken connection must be re-opened next time, not reused.
            sessions.connection_failed(puser, &e.to_string());
            return Err(fail(&inst.dbid, e));
        }
    };
    let lock_waits = if rules.lock > 0 {
        let mut waits = inspector::lock_waits(s).unwrap_or_else(|e| {
            log::warn!("{}: cannot read lock waits: {e}", inst.dbid);
            Vec::new()
        });
        // Metadata-lock waits count as lock waits when the blocker is known.
        if let Some((mdl_waits, _)) = inspector::mdl_waits(s, &rows) {
            waits.extend(mdl_waits.iter().filter_map(|w| {
                w.blocking.map(|b| matcher::LockWait {
                    waiting: w.waiting,
                    blocking: b,
                    wait_secs: w.wait_secs,
                })
            }));
        }
        waits
    } else {
        Vec::new()
    };
    Ok(Scanned {
        scan: Scan {
            rows,
            own_ids: sessions.own_ids(),
            lock_waits,
        },
        complete,
    })
}

/// Take the snapshot through `db_puser`'s session (it holds PROCESS).
/// `rows` is the pass's processlist when it was complete; otherwise the
/// whole processlist is read now, still before any kill.
pub fn take_snapshot(
    inst: &Instance,
    sessions: &mut Sessions,
    rows: Option<&[ProcRow]>,
) -> Option<Snapshot> {
    let s = sessions.get(&inst.puser)?;
    let full;
    let rows = match rows {
        Some(r) => r,
        None => {
            full = inspector::processlist(s).unwrap_or_else(|e| {
                log::warn!("{}: snapshot: cannot read the processlist: {e}", inst.dbid);
                Vec::new()
            });
            &full
        }
    };
    Some(inspector::snapshot(s, rows))
}

/// Re-check, then kill: read the victims' rows again (one query by id on
/// db_puser's session), kill through the held sessions only those still
/// what the rule chose ([`recheck`]), report the others `changed before
/// kill`. Waits at most `wait` for the KILLs' answers (see
/// [`killer::Lanes`]); later answers come from `lanes.drain`.
#[allow(clippy::too_many_arguments)]
pub fn kill(
    cfg: &Config,
    inst: &Instance,
    rules: &Rules,
    dry_run: bool,
    sessions: &mut Sessions,
    lanes: &mut Lanes,
    victims: &[Victim],
    wait: Duration,
) -> Vec<Outcome> {
    hold_before_recheck(victims);
    let (still, mut outcomes) = recheck_victims(inst, rules, sessions, victims);
    let auth_users: Vec<String> = cfg.auth.iter().map(|a| a.user.clone()).collect();
    let exact_query = sessions
        .get(&inst.puser)
        .is_some_and(|s| s.flavor == Flavor::MariaDb);
    let opts = KillOpts {
        mode: rules.mode,
        cmd: rules.kill_cmd,
        dry_run,
        exact_query,
        wait,
        keep: Some(inst.puser.clone()),
    };
    outcomes.extend(killer::kill_all(
        sessions,
        lanes,
        |u| cfg.password(u),
        &auth_users,
        &still,
        &opts,
    ));
    outcomes
}

/// The victims still what the rule chose, and outcomes for the others.
/// Without a re-read nothing is killed: a KILL by id on a guess is what the
/// re-check is there to prevent.
fn recheck_victims(
    inst: &Instance,
    rules: &Rules,
    sessions: &mut Sessions,
    victims: &[Victim],
) -> (Vec<Victim>, Vec<Outcome>) {
    let ids = recheck::ids_to_read(victims);
    let read = match sessions.get(&inst.puser) {
        Some(s) => inspector::rows_by_id(s, &ids).map_err(|e| e.to_string()),
        None => Err(format!("no session of db_puser {}", inst.puser)),
    };
    let outcome = |v: &Victim, result| Outcome {
        victim: v.clone(),
        action: Action::for_victim(rules.mode, &v.row.command),
        result,
    };
    let rows = match read {
        Ok(rows) => rows,
        Err(e) => {
            log::warn!("{}: re-check before kill failed: {e}", inst.dbid);
            let out = victims
                .iter()
                .map(|v| {
                    outcome(
                        v,
                        KillResult::Failed {
                            message: format!(
                                "not killed: the re-check before the kill failed: {e}"
                            ),
                        },
                    )
                })
                .collect();
            return (Vec::new(), out);
        }
    };
    let reread = recheck::Reread::new(&rows);
    let mut still = Vec::new();
    let mut out = Vec::new();
    for v in victims {
        match recheck::verdict(v, &reread) {
            Verdict::Same => still.push(v.clone()),
            Verdict::Gone => out.push(outcome(v, KillResult::Gone)),
            Verdict::Changed(why) => out.push(outcome(v, KillResult::ChangedBeforeKill { why })),
        }
    }
    (still, out)
}

/// Test hook: `MYSQK_TEST_HOLD_BEFORE_RECHECK=DIR` holds a pass that
/// decided to kill before its re-check ([`crate::server::testhook`]).
fn hold_before_recheck(victims: &[Victim]) {
    let ids: Vec<u64> = victims.iter().map(|v| v.row.id).collect();
    crate::server::testhook::hold("MYSQK_TEST_HOLD_BEFORE_RECHECK", &ids);
}

/// A whole pass with the instance's rules (possibly overridden by the caller).
/// `skip` lists thread ids already handled (dry-run dedupe, pending verification).
pub fn run(
    cfg: &Config,
    inst: &Instance,
    rules: &Rules,
    dry_run: bool,
    sessions: &mut Sessions,
    skip: &HashSet<u64>,
) -> Result<PassReport, PassError> {
    let scan = scan(cfg, inst, rules, sessions)?;
    let victims: Vec<Victim> = matcher::select_victims(&scan, rules)
        .into_iter()
        .filter(|v| !skip.contains(&v.row.id))
        .collect();
    if victims.is_empty() {
        return Ok(PassReport {
            rows: scan.rows,
            ..PassReport::default()
        });
    }
    let snapshot = take_snapshot(inst, sessions, Some(&scan.rows));
    // A one-shot run waits for every answer: each KILL is bounded by the
    // session's read_timeout, and there is no next pass to report it in.
    let mut lanes = Lanes::new();
    let wait = sessions.target.read_timeout + Duration::from_secs(1);
    let mut outcomes = kill(
        cfg, inst, rules, dry_run, sessions, &mut lanes, &victims, wait,
    );
    let late = lanes.drain(sessions, wait);
    for l in late {
        if let Some(o) = outcomes
            .iter_mut()
            .find(|o| o.victim.row.id == l.victim.row.id)
        {
            *o = l;
        }
    }
    Ok(PassReport {
        rows: scan.rows,
        outcomes,
        snapshot,
    })
}

/// Verify earlier kills against `rows`, a processlist just read through
/// `db_puser`: look up `INNODB_TRX` for the pending threads still there,
/// decide ([`Tracker::observe`]), and send the `KILL CONNECTION`s it asks
/// for. Returns the findings (escalations as sent, with their result); each
/// is logged.
pub fn verify(
    cfg: &Config,
    inst: &Instance,
    rules: &Rules,
    sessions: &mut Sessions,
    tracker: &mut Tracker,
    rows: &[ProcRow],
) -> Vec<Finding> {
    if tracker.is_empty() {
        return Vec::new();
    }
    let present = tracker.present(rows);
    let trx = match sessions.get(&inst.puser) {
        Some(s) if !present.is_empty() => inspector::trx_facts(s, &present).unwrap_or_else(|e| {
            log::warn!("{}: cannot read INNODB_TRX: {e}", inst.dbid);
            HashMap::new()
        }),
        _ => HashMap::new(),
    };
    let found = tracker.observe(rows, &trx, Instant::now());
    let auth_users: Vec<String> = cfg.auth.iter().map(|a| a.user.clone()).collect();
    let mut out = Vec::new();
    for f in found {
        let f = if f.kind == Kind::Escalate {
            let Some(row) = rows.iter().find(|r| r.id == f.id) else {
                continue;
            };
            let result = killer::kill_thread(
                sessions,
                |u| cfg.password(u),
                &auth_users,
                row,
                killer::Action::KillConnection,
                rules.kill_cmd,
            );
            match tracker.escalated(f.id, &result, Instant::now()) {
                Some(f) => f,
                None => continue,
            }
        } else {
            f
        };
        out.push(f);
    }
    out
}

/// `watch`'s log lines for the verify step (a one-shot run prints every
/// finding itself instead, once): a kill that needs attention is a warning;
/// the end of one reported before gets its own line; a kill that simply
/// worked is only counted in the pass summary (its kill line is the record,
/// SPEC 5), with its own line at debug.
pub fn log_findings(dbid: &str, findings: &[Finding]) {
    for f in findings {
        // Details usually start with their kind ("gone 0.2 s after ...").
        let label = f.kind.label();
        let text = if f.detail.starts_with(label) {
            f.detail.clone()
        } else {
            format!("{label}: {}", f.detail)
        };
        let line = format!(
            "{dbid}: thread {} user={} {text}",
            f.id,
            crate::core::text::log_value(&f.user)
        );
        if f.notable() {
            log::warn!("{line}");
        } else if f.told {
            log::info!("{line}");
        } else {
            log::debug!("{line}");
        }
    }
}

/// How often the one-shot verify re-reads the processlist.
const VERIFY_POLL: Duration = Duration::from_millis(200);

/// One-shot verify: re-read the processlist until every kill is known to
/// have worked or `window` is over; what is left then is reported as still
/// present (a `watch` keeps checking on its next passes instead).
pub fn verify_window(
    cfg: &Config,
    inst: &Instance,
    rules: &Rules,
    sessions: &mut Sessions,
    tracker: &mut Tracker,
    window: Duration,
) -> Vec<Finding> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    while !tracker.is_empty() {
        let rows = match sessions.get(&inst.puser).map(inspector::processlist) {
            Some(Ok(rows)) => rows,
            Some(Err(e)) => {
                log::warn!("{}: verify: {e}", inst.dbid);
                sessions.connection_failed(&inst.puser, &e.to_string());
                break;
            }
            None => break,
        };
        out.extend(verify(cfg, inst, rules, sessions, tracker, &rows));
        if tracker.is_empty() || Instant::now() + VERIFY_POLL > end {
            break;
        }
        // Polling the server: a kill takes effect on the server's schedule.
        std::thread::sleep(VERIFY_POLL);
    }
    out.extend(tracker.give_up(Instant::now()));
    out
}
