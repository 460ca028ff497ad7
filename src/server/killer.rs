//! Kills victims through held sessions: the victim's own user first (works
//! without SUPER), else a session that may kill others, else nothing and a
//! clear report.

use mysql::prelude::Queryable;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::config::crypto::Secret;
use crate::core::matcher::{KillCmd, KillMode, Victim};
pub use crate::core::outcome::{Action, KillResult, Outcome};
use crate::core::recheck::{self, Verdict};
use crate::core::row::ProcRow;
use crate::server::inspector;
use crate::server::session::{error_code, error_text, Flavor, ProcSource, Session, Sessions};

/// MySQL/MariaDB error: `Unknown thread id` (the thread already ended).
const ER_NO_SUCH_THREAD: u16 = 1094;
/// `You are not owner of thread`.
const ER_KILL_DENIED: u16 = 1095;
/// `execute command denied to user` (no EXECUTE on `mysql.rds_kill*`).
const ER_PROCACCESS_DENIED: u16 = 1370;
/// `Access denied; you need (at least one of) the ... privilege(s)`.
const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;

/// How the KILLs of one pass are sent.
#[derive(Debug, Clone)]
pub struct KillOpts {
    pub mode: KillMode,
    pub cmd: KillCmd,
    pub dry_run: bool,
    /// The server has `KILL QUERY ID` (MariaDB): query kills name the
    /// statement, not the connection.
    pub exact_query: bool,
    /// How long the caller waits for the answers; a KILL not answered by
    /// then is reported [`KillResult::Unanswered`] and its answer later, by
    /// [`Lanes::drain`].
    pub wait: Duration,
    /// The user whose session never leaves the calling thread (db_puser:
    /// the next scan needs it); its victims' KILLs are sent in line.
    pub keep: Option<String>,
}

/// MariaDB: `Unknown query id` (`KILL QUERY ID` of a statement that ended).
const ER_NO_SUCH_QUERY: u16 = 1957;
/// `PROCEDURE ... does not exist` (no `mysql.rds_kill_query_id`).
const ER_SP_DOES_NOT_EXIST: u16 = 1305;

/// Older than this, the re-check a kill thread goes on is stale: after a
/// slow KILL it reads its remaining victims again before the next one.
const FRESH: Duration = Duration::from_millis(20);

/// One KILL to send.
#[derive(Debug, Clone)]
struct Item {
    idx: usize,
    row: ProcRow,
    action: Action,
    sql: String,
}

/// What a kill thread says about one item.
#[derive(Debug)]
enum Answer {
    Result(KillResult),
    /// This session may not kill it: the caller tries the privileged ones.
    /// Carries the server's refusal.
    Denied(String),
}

enum LaneMsg {
    Answer {
        lane: u64,
        idx: usize,
        answer: Answer,
    },
    Done {
        lane: u64,
        session: Box<Session>,
        broken: Option<String>,
    },
}

/// A session lent to a kill thread, and the victims it still owes answers for.
struct Away {
    user: String,
    /// Victims whose answer came after the caller stopped waiting.
    late: BTreeMap<usize, (Victim, Action)>,
}

/// Kill threads, one per victim owner per pass, each on its owner's own
/// held session, lent for the time it takes.
///
/// Why threads: a KILL can take seconds to return. MariaDB's KILL waits
/// for the victim to leave its condition wait, retrying a trylock of the
/// wait's mutex for up to 2 s (`THD::abort_current_cond_wait`,
/// `SECONDS_TO_WAIT_FOR_KILL`); every `SLEEP()` waits on one global mutex,
/// so KILLs of `SLEEP()` threads sent back to back, while the previous
/// victim is still waking, run 2.0 s each on the server (measured: slow
/// log `Query_time` 2.01 s, in one pass of 20 in two; spaced 30 ms apart,
/// none). The instance loop waits at most [`KillOpts::wait`] and goes on;
/// another owner's victims are never behind it.
pub struct Lanes {
    tx: Sender<LaneMsg>,
    rx: Receiver<LaneMsg>,
    away: BTreeMap<u64, Away>,
    next: u64,
    /// Answers that arrived for earlier passes, not yet collected.
    late: Vec<Outcome>,
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes::new()
    }
}

impl Lanes {
    pub fn new() -> Lanes {
        let (tx, rx) = unbounded();
        Lanes {
            tx,
            rx,
            away: BTreeMap::new(),
            next: 0,
            late: Vec::new(),
        }
    }

    /// Kill threads still out.
    pub fn busy(&self) -> bool {
        !self.away.is_empty()
    }

    /// Late answers and sessions that came back, waiting up to `wait` for
    /// the threads still out (zero: only what is there).
    pub fn drain(&mut self, sessions: &mut Sessions, wait: Duration) -> Vec<Outcome> {
        let end = Instant::now() + wait;
        loop {
            let msg = match self.rx.try_recv() {
                Ok(m) => Some(m),
                Err(_) if self.busy() && Instant::now() < end => self
                    .rx
                    .recv_timeout(end.saturating_duration_since(Instant::now()))
                    .ok(),
                Err(_) => None,
            };
            let Some(msg) = msg else { break };
            self.late_msg(sessions, msg);
        }
        std::mem::take(&mut self.late)
    }

    fn late_msg(&mut self, sessions: &mut Sessions, msg: LaneMsg) {
        match msg {
            LaneMsg::Answer { lane, idx, answer } => {
                let Some(away) = self.away.get_mut(&lane) else {
                    return;
                };
                let Some((victim, action)) = away.late.remove(&idx) else {
                    return;
                };
                let result = match answer {
                    Answer::Result(r) => r,
                    Answer::Denied(why) => KillResult::NoSession {
                        message: format!(
                            "no session can kill thread {} of user {} (refused: {why})",
                            victim.row.id, away.user
                        ),
                    },
                };
                self.late.push(Outcome {
                    victim,
                    action,
                    result,
                });
            }
            LaneMsg::Done {
                lane,
                session,
                broken,
            } => {
                if let Some(away) = self.away.remove(&lane) {
                    let message = match &broken {
                        Some(why) => format!("no answer to the KILL: {why}"),
                        None => "no answer from the server to the KILL".into(),
                    };
                    for (_, (victim, action)) in away.late {
                        self.late.push(Outcome {
                            victim,
                            action,
                            result: KillResult::Failed {
                                message: message.clone(),
                            },
                        });
                    }
                }
                sessions.give_back(*session, broken.as_deref());
            }
        }
    }
}

/// Kill `victims` on one instance (or report a dry run). `password` looks
/// up a `[db_auth]` user. Victims whose owner's session is still away in an
/// earlier pass's kill thread get no outcome: the next pass matches them
/// again.
pub fn kill_all<'a>(
    sessions: &mut Sessions,
    lanes: &mut Lanes,
    password: impl Fn(&str) -> Option<&'a Secret>,
    auth_users: &[String],
    victims: &[Victim],
    opts: &KillOpts,
) -> Vec<Outcome> {
    let actions: Vec<Action> = victims
        .iter()
        .map(|v| Action::for_victim(opts.mode, &v.row.command))
        .collect();
    if opts.dry_run {
        return victims
            .iter()
            .zip(actions)
            .map(|(v, action)| Outcome {
                victim: v.clone(),
                action,
                result: KillResult::DryRun,
            })
            .collect();
    }
    let mut settled: Vec<Option<KillResult>> = vec![None; victims.len()];
    let mut deferred = vec![false; victims.len()];
    let mut denied: Vec<Option<String>> = vec![None; victims.len()];
    let mut by_owner: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, v) in victims.iter().enumerate() {
        by_owner.entry(v.row.user.as_str()).or_default().push(i);
    }
    // This pass's kill threads and the items each still owes.
    let mut mine: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (owner, idxs) in by_owner {
        if sessions.is_lent(owner) {
            for &i in &idxs {
                deferred[i] = true;
            }
            continue;
        }
        let Some(pw) = password(owner) else { continue };
        if sessions.ensure(owner, pw).is_none() {
            continue;
        }
        let items: Vec<Item> = idxs
            .iter()
            .map(|&i| {
                let row = victims[i].row.clone();
                let qid = row.query_id.filter(|_| opts.exact_query);
                Item {
                    idx: i,
                    sql: actions[i].sql_exact(opts.cmd, row.id, qid),
                    row,
                    action: actions[i],
                }
            })
            .collect();
        if opts.keep.as_deref() == Some(owner) {
            let Some(s) = sessions.get(owner) else {
                continue;
            };
            let mut answers = Vec::new();
            let broken = send_lane(s, &items, opts.cmd, &mut |idx, a| answers.push((idx, a)));
            if let Err(reason) = broken {
                sessions.connection_failed(owner, &reason);
            }
            for (idx, a) in answers {
                match a {
                    Answer::Result(r) => settled[idx] = Some(r),
                    Answer::Denied(why) => denied[idx] = Some(why),
                }
            }
            continue;
        }
        let Some(mut session) = sessions.lend(owner) else {
            continue;
        };
        let lane = lanes.next;
        lanes.next += 1;
        let tx = lanes.tx.clone();
        let cmd = opts.cmd;
        let owned = items.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("kill-{owner}"))
            .spawn(move || {
                let broken = send_lane(&mut session, &owned, cmd, &mut |idx, answer| {
                    let _ = tx.send(LaneMsg::Answer { lane, idx, answer });
                });
                let _ = tx.send(LaneMsg::Done {
                    lane,
                    session: Box::new(session),
                    broken: broken.err(),
                });
            });
        if spawned.is_err() {
            // No thread (resource limits): the session is lost with the
            // closure; it is re-opened by the next `ensure`.
            sessions.give_back_lost(owner);
            continue;
        }
        lanes.away.insert(
            lane,
            Away {
                user: owner.to_string(),
                late: BTreeMap::new(),
            },
        );
        mine.insert(lane, idxs);
    }
    // Wait for this pass's answers and sessions, at most `opts.wait`
    // (the session comes back right after the last answer).
    let end = Instant::now() + opts.wait;
    let mut out: std::collections::BTreeSet<u64> = mine.keys().copied().collect();
    while !out.is_empty() {
        let left = end.saturating_duration_since(Instant::now());
        let Ok(msg) = lanes.rx.recv_timeout(left) else {
            break;
        };
        match msg {
            LaneMsg::Answer { lane, idx, answer } if out.contains(&lane) => match answer {
                Answer::Result(r) => settled[idx] = Some(r),
                Answer::Denied(why) => denied[idx] = Some(why),
            },
            LaneMsg::Done {
                lane,
                session,
                broken,
            } if out.contains(&lane) => {
                // Every item was answered before Done; one that was not
                // never got its KILL through.
                out.remove(&lane);
                for &i in mine.get(&lane).into_iter().flatten() {
                    if settled[i].is_none() && denied[i].is_none() {
                        settled[i] = Some(KillResult::Failed {
                            message: match &broken {
                                Some(why) => format!("not sent: session broke: {why}"),
                                None => "no answer from the server to the KILL".into(),
                            },
                        });
                    }
                }
                lanes.away.remove(&lane);
                sessions.give_back(*session, broken.as_deref());
            }
            other => lanes.late_msg(sessions, other),
        }
    }
    // What is still owed is answered later, through `drain`.
    for (lane, idxs) in &mine {
        let Some(away) = lanes.away.get_mut(lane) else {
            continue;
        };
        for &i in idxs {
            if settled[i].is_none() && denied[i].is_none() {
                away.late.insert(i, (victims[i].clone(), actions[i]));
                settled[i] = Some(KillResult::Unanswered {
                    via: away.user.clone(),
                });
            }
        }
    }
    victims
        .iter()
        .zip(actions)
        .zip(settled)
        .enumerate()
        .filter(|(i, _)| !deferred[*i])
        .map(|(i, ((v, action), done))| {
            let result = match done {
                Some(r) => r,
                // No own session, or refused to it: the privileged ones.
                None => kill_one(
                    sessions,
                    &password,
                    auth_users,
                    v,
                    action,
                    opts.cmd,
                    denied[i].clone(),
                ),
            };
            Outcome {
                victim: v.clone(),
                action,
                result,
            }
        })
        .collect()
}

/// Below this many idle victims of one user, one round trip per KILL costs
/// about as much as the batch machinery.
const BATCH_MIN: usize = 16;
/// KILL statements per multi-statement packet (~25 bytes each).
const CHUNK: usize = 100;

/// Sends one owner's KILLs on its session, answering each item through
/// `answer`. `Err`: the connection broke; the items not answered were not
/// sent.
///
/// Statement victims go first, one KILL per round trip: each may wait on
/// the server (see [`Lanes`]), and one that did makes the re-check the
/// caller did stale, so the rest are read again (by id, on this session)
/// before they are killed. Idle victims wait on nothing server-side; 16 or
/// more go as multi-statement packets over the one session (a connection
/// storm: measured with `make bench` on a 2-core host, 2000 idle
/// connections were gone sooner this way than from 2, 4 or 8 parallel
/// sessions, where the victims all wake at once and queue for the same CPUs
/// on their way out).
fn send_lane(
    s: &mut Session,
    items: &[Item],
    cmd: KillCmd,
    answer: &mut dyn FnMut(usize, Answer),
) -> Result<(), String> {
    // Statement victims first; `done` is indexed like `order`.
    let mut order: Vec<&Item> = items
        .iter()
        .filter(|it| it.row.command != "Sleep")
        .collect();
    order.extend(items.iter().filter(|it| it.row.command == "Sleep"));
    let mut checked = Instant::now();
    let mut done: Vec<bool> = vec![false; order.len()];
    let pos: std::collections::HashMap<usize, usize> = order
        .iter()
        .enumerate()
        .map(|(p, it)| (it.idx, p))
        .collect();
    let pos = |it: &Item| pos.get(&it.idx).copied().unwrap_or(0);
    let mut k = 0;
    while k < order.len() {
        if checked.elapsed() > FRESH {
            let rest: Vec<&Item> = order[k..]
                .iter()
                .copied()
                .filter(|it| !done[pos(it)])
                .collect();
            let ids: Vec<u64> = rest.iter().map(|it| it.row.id).collect();
            match inspector::rows_by_id(s, &ids) {
                Ok(rows) => {
                    for it in rest {
                        let verdict =
                            recheck::identity(&it.row, rows.iter().find(|r| r.id == it.row.id));
                        let result = match verdict {
                            Verdict::Same => continue,
                            Verdict::Gone => KillResult::Gone,
                            Verdict::Changed(why) => KillResult::ChangedBeforeKill { why },
                        };
                        done[pos(it)] = true;
                        answer(it.idx, Answer::Result(result));
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    for it in rest {
                        done[pos(it)] = true;
                        answer(
                            it.idx,
                            Answer::Result(KillResult::Failed {
                                message: format!(
                                    "not killed: cannot re-check it after a slow KILL: {reason}"
                                ),
                            }),
                        );
                    }
                    return Err(reason);
                }
            }
            checked = Instant::now();
        }
        let it = order[k];
        if done[pos(it)] {
            k += 1;
            continue;
        }
        let idle_batch: Vec<&Item> = if it.row.command == "Sleep" && cmd == KillCmd::Kill {
            order[k..]
                .iter()
                .copied()
                .filter(|x| !done[pos(x)])
                .collect()
        } else {
            Vec::new()
        };
        if idle_batch.len() >= BATCH_MIN {
            let stmts: Vec<(usize, String)> =
                idle_batch.iter().map(|x| (x.idx, x.sql.clone())).collect();
            let mut settled = Vec::with_capacity(stmts.len());
            let mut broken = None;
            for chunk in stmts.chunks(CHUNK) {
                if let Err(reason) = kill_batch(&mut s.conn, &s.user, chunk, &mut settled) {
                    broken = Some(reason);
                    break;
                }
            }
            let mut answered: std::collections::HashSet<usize> = std::collections::HashSet::new();
            for (idx, r) in settled {
                answered.insert(idx);
                answer(idx, Answer::Result(r));
            }
            for x in &idle_batch {
                if !answered.contains(&x.idx) {
                    // Refused (not the owner) or not sent (broken).
                    if broken.is_none() {
                        answer(
                            x.idx,
                            Answer::Denied(format!("{} as {}: refused", x.sql, s.user)),
                        );
                    }
                }
            }
            return broken.map_or(Ok(()), Err);
        }
        let t = Instant::now();
        let a = send_one(s, it, cmd);
        done[pos(it)] = true;
        k += 1;
        match a {
            Ok(a) => answer(it.idx, a),
            Err(reason) => return Err(reason),
        }
        if t.elapsed() > FRESH {
            // The next KILL needs a fresh re-check.
            checked = t;
        }
    }
    Ok(())
}

/// The KILL of `it` made conditional on the server side: the victim's row
/// is checked and the KILL run inside the server, microseconds apart, and
/// only if the thread still runs the statement the rule chose or, for a
/// sleeper, still sleeps the same idle spell. Without this a statement that
/// ends between the re-check and the KILL takes its connection's next
/// statement down with it (seen in about 2 kills of 100 under pooled churn
/// on a loaded host, on both servers). `KILL QUERY ID` needs no guard: it
/// names the statement itself.
pub enum Guard {
    /// MariaDB: an anonymous compound statement that answers 1 (killed) or
    /// 0 (changed).
    Block(String),
    /// MySQL (no anonymous blocks; `KILL` takes no subquery, but takes an
    /// expression): `SET @v := (the id if still the same); KILL @v` in one
    /// packet. A changed victim leaves `@v` NULL, and `KILL NULL` fails with
    /// 1094 without touching any thread.
    Var(String),
}

impl Guard {
    /// Sends the guarded KILL on `conn`: `Ok(true)` killed, `Ok(false)` the
    /// server found the victim changed and killed nothing. `Err` as the
    /// server said it (1064: not in this server's grammar).
    pub fn send(&self, conn: &mut mysql::Conn) -> Result<bool, mysql::Error> {
        match self {
            Guard::Block(g) => Ok(conn.query_first::<u8, _>(g)? == Some(1)),
            Guard::Var(g) => match run_all(conn, g) {
                Ok(()) => Ok(true),
                // `KILL NULL`: the check found no such thread any more.
                Err(e) if error_code(&e) == Some(ER_NO_SUCH_THREAD) => Ok(false),
                Err(e) => Err(e),
            },
        }
    }
}

/// The user variable a MySQL guard passes the checked id in.
const GUARD_VAR: &str = "@mysqk_victim";

fn guarded(s: &Session, it: &Item) -> Option<Guard> {
    guard_for(s.flavor, s.proc_source, &it.sql, &it.row)
}

/// How mysqk guards `kill` (the KILL it chose for `row`, e.g. `KILL 7`) on
/// a server of `flavor` that it reads the processlist of from `source`.
/// `None`: no guard, the re-check alone (the KILL names the statement
/// itself, or nothing the server shows tells a successor apart). Public for
/// the bench, which measures the window a guard leaves (S7).
pub fn guard_for(flavor: Flavor, source: ProcSource, kill: &str, row: &ProcRow) -> Option<Guard> {
    if kill.starts_with("KILL QUERY ID") || kill.contains("_query_id(") {
        return None;
    }
    match flavor {
        Flavor::MariaDb => {
            let qid = row.query_id?;
            // A statement: the same query id, or (a stored program moves on
            // to its next statement) a command that has run at least as
            // long as it had; a pooled connection's next statement starts
            // again from 0. A sleeper: still asleep after the same last
            // statement.
            let still = if row.command == "Sleep" {
                format!("COMMAND = 'Sleep' AND QUERY_ID = {qid}")
            } else {
                format!(
                    "COMMAND NOT IN ('Sleep', 'Killed') AND (QUERY_ID = {qid} OR TIME_MS >= {ms}){working}",
                    ms = row.elapsed_ms(),
                    working = still_working(row),
                )
            };
            Some(Guard::Block(format!(
                "BEGIN NOT ATOMIC IF EXISTS (SELECT 1 FROM information_schema.PROCESSLIST \
                 WHERE ID = {id} AND {still}) THEN {kill}; SELECT 1; ELSE SELECT 0; END IF; END",
                id = row.id,
            )))
        }
        _ => {
            // Only the plain KILL takes an expression (a procedure given
            // NULL might do anything).
            let kill = kill.strip_suffix(&row.id.to_string())?;
            if !kill.starts_with("KILL ") {
                return None;
            }
            let table = match source {
                ProcSource::PerformanceSchema => "performance_schema.processlist",
                ProcSource::InformationSchema(_) => "information_schema.PROCESSLIST",
            };
            Some(Guard::Var(format!(
                "SET {GUARD_VAR} := (SELECT ID FROM {table} \
                 WHERE ID = {id} AND {still} LIMIT 1); {kill}{GUARD_VAR}",
                id = row.id,
                still = mysql_still(row)?,
            )))
        }
    }
}

/// MySQL's "still the same", over what every user can read of its own
/// threads (no statement id there; whole-second `TIME`): the same kind of
/// command, and a `TIME` that did not start again. Read from the table the
/// session reads the processlist from: `information_schema`'s `TIME` of a
/// stored procedure restarts with each statement inside it,
/// `performance_schema`'s is the CALL's. `None` (no guard, the re-check
/// alone) when `TIME` cannot tell a successor apart: below 2, the next
/// statement may read 1 as well.
fn mysql_still(row: &ProcRow) -> Option<String> {
    if row.time < 2 {
        return None;
    }
    let t = row.time;
    // A thread being killed (`Killed`) still counts: an escalation kills
    // the connection of a statement that ignored KILL QUERY.
    Some(if row.command == "Sleep" {
        format!("COMMAND = 'Sleep' AND TIME >= {t}")
    } else {
        format!("COMMAND <> 'Sleep' AND TIME >= {t}{}", still_working(row))
    })
}

/// The server-side half of [`recheck::began_finishing`]: a statement chosen
/// while it worked must not have begun to finish by the time the guard reads
/// it. Empty for one chosen while already finishing (it may be stuck there).
fn still_working(row: &ProcRow) -> String {
    if recheck::is_finishing(row.state.as_deref()) {
        return String::new();
    }
    let states: Vec<String> = recheck::FINISHING_STATES
        .iter()
        .map(|s| format!("'{s}'"))
        .collect();
    let info = if row.info.is_some() {
        " AND INFO IS NOT NULL"
    } else {
        ""
    };
    format!(
        " AND LOWER(IFNULL(STATE, '')) NOT IN ({}){info}",
        states.join(", ")
    )
}

/// Runs every statement of a multi-statement `sql`; the first error, if
/// any (dropping a result unread would hide a later statement's error).
fn run_all(conn: &mut mysql::Conn, sql: &str) -> Result<(), mysql::Error> {
    let mut result = conn.query_iter(sql)?;
    while let Some(mut set) = result.iter() {
        if let Some(Err(e)) = set.next() {
            return Err(e);
        }
    }
    Ok(())
}

fn changed_at_last_moment() -> Answer {
    Answer::Result(KillResult::ChangedBeforeKill {
        why: "changed at the last moment: no longer the statement (or idle spell) chosen".into(),
    })
}

/// A server that does not take the guard gets the plain KILL (the re-check
/// alone), and the log says so: the tests fail on this line, so a guard
/// broken by an edit cannot pass for one that works.
fn guard_refused(s: &Session, e: &mysql::Error) {
    log::warn!(
        "guarded KILL refused as {} ({}): the KILL is sent without its guard",
        s.user,
        error_text(e)
    );
}

/// One KILL on `s`. `Err`: the connection broke.
fn send_one(s: &mut Session, it: &Item, cmd: KillCmd) -> Result<Answer, String> {
    let mut sql = it.sql.clone();
    let killed = || {
        Ok(Answer::Result(KillResult::Killed {
            via: s.user.clone(),
        }))
    };
    // Test hook: after the re-check, before the (guarded) KILL.
    super::testhook::hold("MYSQK_TEST_HOLD_BEFORE_KILL", &[it.row.id]);
    if let Some(g) = guarded(s, it) {
        match g.send(&mut s.conn) {
            Ok(true) => return killed(),
            Ok(false) => return Ok(changed_at_last_moment()),
            // Not in this server's grammar after all: the plain KILL.
            Err(e) if error_code(&e) == Some(1064) => guard_refused(s, &e),
            Err(e) => return kill_error(s, &sql, &e),
        }
    }
    loop {
        let e = match s.conn.query_drop(&sql) {
            Ok(()) => {
                return Ok(Answer::Result(KillResult::Killed {
                    via: s.user.clone(),
                }))
            }
            Err(e) => e,
        };
        // No mysql.rds_kill_query_id here: the by-thread procedure, after
        // the re-check all the same.
        // (A user without EXECUTE on a procedure that does not exist is
        // told it may not execute it.)
        if matches!(
            error_code(&e),
            Some(ER_SP_DOES_NOT_EXIST | ER_PROCACCESS_DENIED)
        ) && sql.contains("rds_kill_query_id")
        {
            sql = it.action.sql(cmd, it.row.id);
            continue;
        }
        return kill_error(s, &sql, &e);
    }
}

/// What a KILL's error means. `Err`: the connection broke.
fn kill_error(s: &Session, sql: &str, e: &mysql::Error) -> Result<Answer, String> {
    Ok(match error_code(e) {
        Some(ER_NO_SUCH_THREAD | ER_NO_SUCH_QUERY) => Answer::Result(KillResult::Gone),
        Some(ER_KILL_DENIED | ER_PROCACCESS_DENIED | ER_SPECIFIC_ACCESS_DENIED) => {
            Answer::Denied(format!("{sql} as {}: {}", s.user, error_text(e)))
        }
        Some(_) => Answer::Result(KillResult::Failed {
            message: format!("{sql} as {}: {}", s.user, error_text(e)),
        }),
        None => return Err(error_text(e)),
    })
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
    kill_one(sessions, &password, auth_users, &victim, action, cmd, None)
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
    refused_to_owner: Option<String>,
) -> KillResult {
    let sql = action.sql(cmd, v.row.id);
    let owner = v.row.user.as_str();
    let mut refusal = None;
    if refused_to_owner.is_some() {
        refusal = refused_to_owner;
    } else if let Some(pw) = password(owner) {
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

    fn row(command: &str, time: u64, info: Option<&str>) -> ProcRow {
        ProcRow {
            id: 7,
            user: "app".into(),
            command: command.into(),
            time,
            info: info.map(str::to_string),
            ..ProcRow::default()
        }
    }

    #[test]
    fn mysql_guard_only_where_it_tells_a_successor_apart() {
        // TIME 1: the next statement may read 1 as well.
        assert_eq!(mysql_still(&row("Query", 1, Some("SELECT 1"))), None);
        assert_eq!(
            mysql_still(&row("Sleep", 4, None)).as_deref(),
            Some("COMMAND = 'Sleep' AND TIME >= 4")
        );
        let g = mysql_still(&row("Query", 3, Some("SELECT '\u{e9}'"))).unwrap_or_default();
        assert!(
            g.starts_with(
                "COMMAND <> 'Sleep' AND TIME >= 3 AND LOWER(IFNULL(STATE, '')) NOT IN ('end', "
            ),
            "{g}"
        );
        assert!(
            g.ends_with("'reset for next command') AND INFO IS NOT NULL"),
            "{g}"
        );
        // Chosen while already finishing (maybe stuck there): no such clause.
        let mut stuck = row("Query", 3, Some("COMMIT"));
        stuck.state = Some("query end".into());
        assert_eq!(
            mysql_still(&stuck).as_deref(),
            Some("COMMAND <> 'Sleep' AND TIME >= 3")
        );
    }
}
