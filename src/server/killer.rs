//! Kills victims through held sessions: the victim's own user first (works
//! without SUPER), else a session that may kill others, else nothing and a
//! clear report.

use mysql::prelude::Queryable;

use std::collections::BTreeMap;

use crate::config::crypto::Secret;
use crate::core::matcher::{KillCmd, KillMode, Victim};
pub use crate::core::outcome::{Action, KillResult, Outcome};
use crate::server::session::{error_code, error_text, Sessions};

/// MySQL/MariaDB error: `Unknown thread id` (the thread already ended).
const ER_NO_SUCH_THREAD: u16 = 1094;
/// `You are not owner of thread`.
const ER_KILL_DENIED: u16 = 1095;
/// `execute command denied to user` (no EXECUTE on `mysql.rds_kill*`).
const ER_PROCACCESS_DENIED: u16 = 1370;
/// `Access denied; you need (at least one of) the ... privilege(s)`.
const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;

/// Kill `victims` on one instance. `password` looks up a `[db_auth]` user.
pub fn kill_all<'a>(
    sessions: &mut Sessions,
    password: impl Fn(&str) -> Option<&'a Secret>,
    auth_users: &[String],
    victims: &[Victim],
    mode: KillMode,
    cmd: KillCmd,
    dry_run: bool,
) -> Vec<Outcome> {
    let actions: Vec<Action> = victims
        .iter()
        .map(|v| Action::for_victim(mode, &v.row.command))
        .collect();
    let mut settled: Vec<Option<KillResult>> = vec![None; victims.len()];
    if !dry_run && cmd == KillCmd::Kill {
        kill_batched(sessions, &password, victims, &actions, &mut settled);
    }
    // Whatever the batch path left (few victims, a refusal that needs the
    // privileged fallback, a broken session, rds) goes one at a time.
    victims
        .iter()
        .zip(actions)
        .zip(settled)
        .map(|((v, action), done)| {
            let result = match done {
                Some(r) => r,
                None if dry_run => KillResult::DryRun,
                None => kill_one(sessions, &password, auth_users, v, action, cmd),
            };
            Outcome {
                victim: v.clone(),
                action,
                result,
            }
        })
        .collect()
}

/// Below this many victims of one user, one round trip per KILL costs
/// about as much as the batch machinery.
const BATCH_MIN: usize = 16;
/// KILL statements per multi-statement packet (~25 bytes each).
const CHUNK: usize = 100;

/// The fast path for many victims of one user (a connection storm): the
/// KILLs go to the server as multi-statement packets over the owner's held
/// session, one round trip per [`CHUNK`] victims instead of one per victim.
///
/// One connection, not several in parallel: measured with `make bench` on
/// a 2-core host, 2000 idle connections were gone sooner when the server
/// received the KILLs one after another (the killed threads exit while the
/// next KILLs run) than from 2, 4 or 8 parallel sessions, where the
/// victims all wake at once and queue for the same CPUs on their way out.
///
/// Correctness over speed: the server stops a multi-statement packet at the
/// first failing statement; [`kill_batch`] reads each answer and sends the
/// rest again. `Unknown thread id` settles that victim as gone; a refusal
/// (not the owner, no privilege) or a broken connection leaves the victim
/// unsettled for [`kill_one`], which tries the privileged sessions.
fn kill_batched<'a>(
    sessions: &mut Sessions,
    password: &impl Fn(&str) -> Option<&'a Secret>,
    victims: &[Victim],
    actions: &[Action],
    settled: &mut [Option<KillResult>],
) {
    let mut by_owner: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, v) in victims.iter().enumerate() {
        by_owner.entry(v.row.user.as_str()).or_default().push(i);
    }
    for (owner, idxs) in by_owner {
        if idxs.len() < BATCH_MIN {
            continue;
        }
        let Some(pw) = password(owner) else { continue };
        let Some(held) = sessions.ensure(owner, pw) else {
            continue;
        };
        let stmts: Vec<(usize, String)> = idxs
            .iter()
            .map(|&i| (i, actions[i].sql(KillCmd::Kill, victims[i].row.id)))
            .collect();
        let mut done = Vec::with_capacity(stmts.len());
        let mut broken = None;
        for chunk in stmts.chunks(CHUNK) {
            if let Err(reason) = kill_batch(&mut held.conn, owner, chunk, &mut done) {
                broken = Some(reason);
                break;
            }
        }
        if let Some(reason) = broken {
            sessions.connection_failed(owner, &reason);
        }
        for (i, r) in done {
            settled[i] = Some(r);
        }
    }
}

/// Runs KILL statements (`(index, sql)`) on one connection as
/// multi-statement packets and pushes each statement's result onto
/// `settled`. The server stops a packet at its first failing statement, so
/// answers are read one by one and whatever followed a failure is sent
/// again. A refused statement (not the owner, no privilege) is left out of
/// `settled` for the caller's fallback. `Err`: the connection broke; the
/// statements not in `settled` were not (known to be) done.
pub fn kill_batch(
    conn: &mut mysql::Conn,
    via: &str,
    chunk: &[(usize, String)],
    settled: &mut Vec<(usize, KillResult)>,
) -> Result<(), String> {
    let mut pos = 0;
    while pos < chunk.len() {
        let start = pos;
        let sql = chunk[pos..]
            .iter()
            .map(|(_, s)| s.as_str())
            .collect::<Vec<_>>()
            .join(";");
        // Each answered statement moves `pos` on; a failure ends the packet.
        let failure = match conn.query_iter(&sql) {
            Err(e) => Some(e),
            Ok(mut result) => {
                let mut failure = None;
                while let Some(mut set) = result.iter() {
                    let answer = set.next();
                    drop(set);
                    if let Some(Err(e)) = answer {
                        failure = Some(e);
                        break;
                    }
                    settled.push((
                        chunk[pos].0,
                        KillResult::Killed {
                            via: via.to_string(),
                        },
                    ));
                    pos += 1;
                }
                failure
            }
        };
        let Some(e) = failure else {
            if pos == start {
                // The server answered nothing for the packet: never loop on it.
                return Err("no answer to a KILL batch".into());
            }
            continue;
        };
        let (i, stmt) = (chunk[pos].0, &chunk[pos].1);
        match error_code(&e) {
            Some(ER_NO_SUCH_THREAD) => settled.push((i, KillResult::Gone)),
            // Left unsettled: kill_one tries the privileged sessions.
            Some(ER_KILL_DENIED | ER_PROCACCESS_DENIED | ER_SPECIFIC_ACCESS_DENIED) => {}
            Some(_) => settled.push((
                i,
                KillResult::Failed {
                    message: format!("{stmt} as {via}: {}", error_text(&e)),
                },
            )),
            None => return Err(error_text(&e)),
        }
        pos += 1;
    }
    Ok(())
}

/// Kill one thread with a given action (the verify step's escalation to
/// `KILL CONNECTION`), with the same session choice as [`kill_all`].
pub fn kill_thread<'a>(
    sessions: &mut Sessions,
    password: impl Fn(&str) -> Option<&'a Secret>,
    auth_users: &[String],
    row: &crate::core::row::ProcRow,
    action: Action,
    cmd: KillCmd,
) -> KillResult {
    let victim = Victim {
        row: row.clone(),
        reasons: Vec::new(),
    };
    kill_one(sessions, &password, auth_users, &victim, action, cmd)
}

enum Try {
    Done(KillResult),
    /// This session may not kill the thread; try another. Carries the
    /// server's refusal, if it gave one.
    Denied(Option<String>),
}

fn try_via(sessions: &mut Sessions, user: &str, sql: &str) -> Try {
    let Some(s) = sessions.get(user) else {
        return Try::Denied(None);
    };
    match s.conn.query_drop(sql) {
        Ok(()) => Try::Done(KillResult::Killed {
            via: user.to_string(),
        }),
        Err(e) => match error_code(&e) {
            Some(ER_NO_SUCH_THREAD) => Try::Done(KillResult::Gone),
            // Another session may have the right (SUPER, CONNECTION ADMIN,
            // EXECUTE on the rds procedures): try it before giving up.
            Some(ER_KILL_DENIED | ER_PROCACCESS_DENIED | ER_SPECIFIC_ACCESS_DENIED) => {
                Try::Denied(Some(format!("{sql} as {user}: {}", error_text(&e))))
            }
            Some(_) => Try::Done(KillResult::Failed {
                message: format!("{sql} as {user}: {}", error_text(&e)),
            }),
            None => {
                let reason = error_text(&e);
                sessions.connection_failed(user, &reason);
                Try::Done(KillResult::Failed {
                    message: format!("{sql} as {user}: {reason}"),
                })
            }
        },
    }
}

fn kill_one<'a>(
    sessions: &mut Sessions,
    password: &impl Fn(&str) -> Option<&'a Secret>,
    auth_users: &[String],
    v: &Victim,
    action: Action,
    cmd: KillCmd,
) -> KillResult {
    let sql = action.sql(cmd, v.row.id);
    let owner = v.row.user.as_str();
    let mut refusal = None;
    if let Some(pw) = password(owner) {
        if sessions.ensure(owner, pw).is_some() {
            match try_via(sessions, owner, &sql) {
                Try::Done(r) => return r,
                Try::Denied(why) => refusal = why.or(refusal),
            }
        }
    }
    for user in auth_users.iter().filter(|u| u.as_str() != owner) {
        let Some(pw) = password(user) else { continue };
        let privileged = sessions.ensure(user, pw).is_some_and(|s| s.can_kill_others);
        if privileged {
            match try_via(sessions, user, &sql) {
                Try::Done(r) => return r,
                Try::Denied(why) => refusal = why.or(refusal),
            }
        }
    }
    if password(owner).is_some() && sessions.coming_back(owner) {
        return KillResult::Pending {
            message: format!(
                "pending: the session of {owner} is not ready yet (server not answering or reconnecting); thread {} is killed when it is",
                v.row.id
            ),
        };
    }
    if let Some(why) = password(owner).and(sessions.login_failure(owner)) {
        // The owner is configured but its login is refused: cron must
        // notice (exit 1), and the row says why.
        return KillResult::LoginFailed {
            message: format!(
                "login failed: {why}; no session can kill thread {} of user {owner}",
                v.row.id
            ),
        };
    }
    let mut message = format!("no session can kill thread {} of user {owner}", v.row.id);
    if let Some(why) = sessions.error_of(owner) {
        // The owner is in [db_auth] but cannot log in: that is the fix to make.
        message.push_str(&format!(" ({owner} cannot log in: {why})"));
    }
    if let Some(why) = refusal {
        // e.g. no EXECUTE on mysql.rds_kill: the fix is a GRANT, say which.
        message.push_str(&format!(" (refused: {why})"));
    }
    KillResult::NoSession { message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        assert_eq!(
            Action::for_victim(KillMode::Query, "Query").sql(KillCmd::Kill, 7),
            "KILL QUERY 7"
        );
        assert_eq!(
            Action::for_victim(KillMode::Query, "Sleep").sql(KillCmd::Kill, 7),
            "KILL CONNECTION 7"
        );
        assert_eq!(
            Action::for_victim(KillMode::Connection, "Query").sql(KillCmd::Rds, 7),
            "CALL mysql.rds_kill(7)"
        );
        assert_eq!(
            Action::KillQuery.sql(KillCmd::Rds, 7),
            "CALL mysql.rds_kill_query(7)"
        );
    }
}
