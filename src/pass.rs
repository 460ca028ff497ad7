//! One check pass on one instance: scan -> match -> snapshot -> kill.
//! Shared by the one-shot `mysqk kill` and the `watch` instance loop.

use std::collections::HashSet;

use crate::config::{Config, Instance};
use crate::inspector::{self, Snapshot};
use crate::killer::{self, Outcome};
use crate::matcher::{self, Rules, Scan, Victim};
use crate::row::ProcRow;
use crate::session::{SessionError, Sessions};

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

/// Read the processlist (and lock waits when `k_lock` is on) through `db_puser`.
pub fn scan(
    cfg: &Config,
    inst: &Instance,
    rules: &Rules,
    sessions: &mut Sessions,
) -> Result<Scan, PassError> {
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
    let rows = match inspector::processlist(s) {
        Ok(r) => r,
        Err(e) => {
            // A broken connection must be re-opened next time, not reused.
            sessions.drop_session(puser, &e.to_string());
            return Err(fail(&inst.dbid, e));
        }
    };
    let lock_waits = if rules.lock > 0 {
        inspector::lock_waits(s).unwrap_or_else(|e| {
            log::warn!("{}: cannot read lock waits: {e}", inst.dbid);
            Vec::new()
        })
    } else {
        Vec::new()
    };
    Ok(Scan {
        rows,
        own_ids: sessions.own_ids(),
        lock_waits,
    })
}

/// Take the snapshot through `db_puser`'s session (it holds PROCESS).
pub fn take_snapshot(
    inst: &Instance,
    sessions: &mut Sessions,
    rows: &[ProcRow],
) -> Option<Snapshot> {
    sessions
        .get(&inst.puser)
        .map(|s| inspector::snapshot(s, rows))
}

/// Kill `victims` through the held sessions (or report a dry run).
pub fn kill(
    cfg: &Config,
    rules: &Rules,
    dry_run: bool,
    sessions: &mut Sessions,
    victims: &[Victim],
) -> Vec<Outcome> {
    let auth_users: Vec<String> = cfg.auth.iter().map(|a| a.user.clone()).collect();
    killer::kill_all(
        sessions,
        |u| cfg.password(u),
        &auth_users,
        victims,
        rules.mode,
        rules.kill_cmd,
        dry_run,
    )
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
    let snapshot = take_snapshot(inst, sessions, &scan.rows);
    let outcomes = kill(cfg, rules, dry_run, sessions, &victims);
    Ok(PassReport {
        rows: scan.rows,
        outcomes,
        snapshot,
    })
}
