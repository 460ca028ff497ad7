//! `mysqk doctor`: can mysqk do its job on every instance?
//!
//! For each instance and `[db_auth]` user it logs in the way `watch` does and
//! checks what an incident would otherwise reveal too late: a wrong password,
//! a `db_puser` without PROCESS (it would see only its own threads), users
//! nobody can kill, unreadable lock-wait tables, a server near
//! `max_connections`, a clock or time zone that differs from this host's.
//! Each problem comes with the GRANT or setting that fixes it.
//!
//! Gathering ([`check_instance`]) is I/O; judging ([`assess`]) is pure and
//! unit-tested; [`render`] prints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mysql::prelude::Queryable;

use crate::config::{Config, Instance};
use crate::core::matcher::{KillCmd, UserFilter};
use crate::report::output;
use crate::server::inspector::{self, MdlSource};
use crate::server::session::{Flavor, IsReason, ProcSource, Session, Target};

/// A clock difference at least this large is reported.
const SKEW_WARN: Duration = Duration::from_secs(5);
/// Connection usage (percent of max_connections) that deserves a warning.
const USAGE_WARN_PCT: u64 = 80;

/// What doctor learnt about one `[db_auth]` user on one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    pub user: String,
    /// `Err(reason)` when the login failed.
    pub connect: Result<(), String>,
    /// `CURRENT_USER()` as `'user'@'host'`, for GRANT statements.
    pub account: Option<String>,
    /// Holds SUPER / CONNECTION ADMIN: may kill any thread.
    pub kills_others: bool,
    /// Holds PROCESS (or sees other users' threads).
    pub sees_all: bool,
    /// Can run `mysql.rds_kill` (only asked when `k_kill_cmd = rds`).
    pub rds_kill: Option<bool>,
}

impl Default for UserFacts {
    fn default() -> Self {
        UserFacts {
            user: String::new(),
            connect: Ok(()),
            account: None,
            kills_others: false,
            sees_all: false,
            rds_kill: None,
        }
    }
}

impl UserFacts {
    fn connected(&self) -> bool {
        self.connect.is_ok()
    }

    /// The account to name in a GRANT (`'u'@'%'` when the login failed).
    pub fn grantee(&self) -> String {
        self.account
            .clone()
            .unwrap_or_else(|| format!("'{}'@'%'", self.user.replace('\'', "''")))
    }
}

/// What doctor learnt about one instance.
#[derive(Debug, Clone, Default)]
pub struct InstanceFacts {
    pub dbid: String,
    pub addr: String,
    pub puser: String,
    pub version: Option<String>,
    pub flavor: Option<Flavor>,
    pub users: Vec<UserFacts>,
    /// `k_user` users that mysqk must be able to kill.
    pub k_users: BTreeSet<String>,
    pub k_lock: u64,
    pub rds: bool,
    pub max_connections: Option<u64>,
    pub threads_connected: Option<u64>,
    /// Server clock minus this host's clock, in ms.
    pub skew_ms: Option<i64>,
    /// Server UTC offset minus this host's, in seconds.
    pub tz_diff_secs: Option<i64>,
    /// Reading the lock-wait tables through `db_puser`.
    pub lock_tables: Option<Result<(), String>>,
    pub mdl: Option<MdlSource>,
    /// A running `mysqk watch` that holds sessions on this instance (from
    /// its status file).
    pub watch: Option<WatchHold>,
    /// The table `db_puser` reads the processlist from, and why.
    pub proc_source: Option<ProcSource>,
    /// MySQL 8: `@@performance_schema_show_processlist` (whether the
    /// server's own SHOW PROCESSLIST avoids the global mutex too).
    pub ps_show_processlist: Option<bool>,
}

impl InstanceFacts {
    /// MySQL 8 with performance_schema off: its lock tables are empty
    /// without an error, so no lock wait is ever seen.
    fn ps_off(&self) -> bool {
        self.proc_source
            == Some(ProcSource::InformationSchema(
                IsReason::PerformanceSchemaOff,
            ))
    }
}

/// What the status file of a live `mysqk watch` says about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchHold {
    pub pid: u32,
    /// Users whose held session works.
    pub users: Vec<String>,
    /// When the status file was last written.
    pub updated: String,
}

impl WatchHold {
    fn holds(&self, user: &str) -> bool {
        self.users.iter().any(|u| u == user)
    }
}

/// The watch's view of each instance from `status_file`, when the process
/// that wrote it still runs (a stale file from a dead watch says nothing).
pub fn watch_holds(status_file: &Path) -> BTreeMap<String, WatchHold> {
    let Ok(text) = std::fs::read_to_string(status_file) else {
        return BTreeMap::new();
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
        return BTreeMap::new();
    };
    let Some(pid) = doc["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) else {
        return BTreeMap::new();
    };
    if !process_alive(pid) {
        return BTreeMap::new();
    }
    let updated = doc["updated"].as_str().unwrap_or("?").to_string();
    let mut out = BTreeMap::new();
    if let Some(insts) = doc["instances"].as_object() {
        for (dbid, i) in insts {
            let users: Vec<String> = i["connected_users"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if !users.is_empty() && i["state"] != "stopped" {
                out.insert(
                    dbid.clone(),
                    WatchHold {
                        pid,
                        users,
                        updated: updated.clone(),
                    },
                );
            }
        }
    }
    out
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 || pid == std::process::id() as libc::pid_t {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// mysqk cannot do its job: exit 1.
    Error,
    /// Works, but something deserves attention.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub dbid: String,
    pub user: Option<String>,
    pub what: String,
    /// The GRANT or setting that fixes it.
    pub fix: String,
}

fn kill_grant(flavor: Option<Flavor>, grantee: &str) -> String {
    match flavor {
        Some(Flavor::MySql8) => format!("GRANT CONNECTION_ADMIN ON *.* TO {grantee};"),
        Some(Flavor::MariaDb) => format!("GRANT CONNECTION ADMIN ON *.* TO {grantee};"),
        _ => format!("GRANT SUPER ON *.* TO {grantee};"),
    }
}

fn connect_fix(user: &str, reason: &str, grantee: &str, watch: Option<&WatchHold>) -> String {
    if reason.contains("(1040)") || reason.contains("Too many connections") {
        // Never "restart mysqk": during a storm the held sessions are the
        // only way in, and a restarted mysqk could not log in again.
        return match watch {
            Some(w) => format!(
                "the server is at max_connections; leave `mysqk watch` (pid {}) running: it holds \
                 sessions of {} and kills through them. Raise max_connections or close idle \
                 connections",
                w.pid,
                w.users.join(", ")
            ),
            None => "the server is at max_connections: mysqk must log in before an incident \
                     (keep `mysqk watch` running); raise max_connections or close idle connections"
                .into(),
        };
    }
    if reason.contains("(1045)") || reason.contains("Access denied") {
        format!(
            "check the password of {user} in [db_auth] (encrypt it with `mysqk encrypt-password`), \
             or set it on the server: ALTER USER {grantee} IDENTIFIED BY '...';"
        )
    } else if reason.contains("(1226)") {
        format!("raise the user's limit: ALTER USER {grantee} WITH MAX_USER_CONNECTIONS 0;")
    } else {
        "check host:port in [db_info], that the server runs, and the network/firewall between \
         this host and it (connect_timeout in [settings])"
            .into()
    }
}

/// Judge the facts of one instance. Errors mean mysqk cannot do its job.
pub fn assess(f: &InstanceFacts) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem = |severity, user: Option<&str>, what: String, fix: String| {
        out.push(Problem {
            severity,
            dbid: f.dbid.clone(),
            user: user.map(Into::into),
            what,
            fix,
        });
    };
    for u in &f.users {
        if let Err(reason) = &u.connect {
            // A watch that still holds this user's session can do the job
            // doctor's fresh login cannot: a warning, not an error.
            let held = f.watch.as_ref().filter(|w| w.holds(&u.user));
            let what = match held {
                Some(w) => format!(
                    "cannot log in: {reason} (the running `mysqk watch`, pid {}, still holds a \
                     working session of {})",
                    w.pid, u.user
                ),
                None => format!("cannot log in: {reason}"),
            };
            problem(
                if held.is_some() {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                Some(&u.user),
                what,
                connect_fix(&u.user, reason, &u.grantee(), f.watch.as_ref()),
            );
        }
    }
    let puser = f.users.iter().find(|u| u.user == f.puser);
    match puser {
        None => problem(
            Severity::Error,
            Some(&f.puser),
            "db_puser is not in [db_auth]".into(),
            format!("add {} to [db_auth]", f.puser),
        ),
        Some(p) if p.connected() && !p.sees_all => problem(
            Severity::Error,
            Some(&p.user),
            "db_puser sees only its own threads (no PROCESS privilege)".into(),
            format!("GRANT PROCESS ON *.* TO {};", p.grantee()),
        ),
        _ => {}
    }
    let puser_ok = puser.is_some_and(UserFacts::connected);
    if puser_ok && f.ps_off() {
        problem(
            if f.k_lock > 0 {
                Severity::Error
            } else {
                Severity::Warning
            },
            None,
            "performance_schema=OFF: threads are read from information_schema.PROCESSLIST \
             (it takes a global mutex), and no row-lock or metadata-lock wait can be seen \
             (k_lock kills no blocker)"
                .into(),
            "performance_schema=ON in the server's my.cnf [mysqld] section (needs a restart)"
                .into(),
        );
    }
    if puser_ok {
        if let Some(Err(e)) = &f.lock_tables {
            let grantee = puser.map(UserFacts::grantee).unwrap_or_default();
            problem(
                if f.k_lock > 0 {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                Some(&f.puser),
                format!("cannot read the lock-wait tables: {e}"),
                match f.flavor {
                    Some(Flavor::MySql8) => format!(
                        "GRANT PROCESS ON *.* TO {grantee}; GRANT SELECT ON performance_schema.* TO {grantee};"
                    ),
                    _ => format!("GRANT PROCESS ON *.* TO {grantee};"),
                },
            );
        }
        if f.k_lock > 0 && f.mdl == Some(MdlSource::None) && !f.ps_off() {
            problem(
                Severity::Warning,
                None,
                "metadata-lock waits can be seen but not their blocker (k_lock kills none for them)"
                    .into(),
                match f.flavor {
                    Some(Flavor::MariaDb) => "INSTALL SONAME 'metadata_lock_info'; (or in my.cnf: \
                         performance_schema=ON and performance-schema-instrument='wait/lock/metadata/sql/mdl=ON')"
                        .into(),
                    _ => "UPDATE performance_schema.setup_instruments SET ENABLED='YES' \
                          WHERE NAME='wait/lock/metadata/sql/mdl'; (and GRANT SELECT ON performance_schema.*)"
                        .into(),
                },
            );
        }
    }
    // Who can kill the threads of each k_user user?
    let killers_of_others: Vec<&UserFacts> = f
        .users
        .iter()
        .filter(|u| u.connected() && u.kills_others)
        .collect();
    // Nothing is known about an instance nobody could log in to.
    let reachable = f.users.iter().any(UserFacts::connected);
    for ku in f.k_users.iter().filter(|_| reachable) {
        let own = f.users.iter().find(|u| &u.user == ku);
        let own_ok = own.is_some_and(|u| u.connected() && (!f.rds || u.rds_kill != Some(false)));
        let other_ok = killers_of_others
            .iter()
            .any(|u| &u.user != ku && (!f.rds || u.rds_kill != Some(false)));
        if own_ok || other_ok {
            continue;
        }
        let via = puser.map(UserFacts::grantee).unwrap_or_default();
        let (what, fix) = match own {
            None => (
                format!("threads of k_user {ku} cannot be killed: {ku} is not in [db_auth] and no session may kill other users' threads"),
                format!("add {ku} to [db_auth], or {}", kill_grant(f.flavor, &via)),
            ),
            Some(u) if !u.connected() => continue, // already reported: cannot log in
            Some(u) => (
                format!("threads of k_user {ku} cannot be killed with k_kill_cmd=rds: no EXECUTE on mysql.rds_kill"),
                format!(
                    "GRANT EXECUTE ON PROCEDURE mysql.rds_kill TO {0}; GRANT EXECUTE ON PROCEDURE mysql.rds_kill_query TO {0};",
                    u.grantee()
                ),
            ),
        };
        problem(Severity::Error, Some(ku), what, fix);
    }
    if let (Some(max), Some(used)) = (f.max_connections, f.threads_connected) {
        if max > 0 && used * 100 >= max * USAGE_WARN_PCT {
            problem(
                Severity::Warning,
                None,
                format!("{used} of max_connections={max} in use"),
                "raise max_connections (SET GLOBAL max_connections=...; and in my.cnf) or find the \
                 connection leak; mysqk's own sessions are already held"
                    .into(),
            );
        }
    }
    if let Some(skew) = f.skew_ms {
        if skew.unsigned_abs() >= SKEW_WARN.as_millis() as u64 {
            problem(
                Severity::Warning,
                None,
                format!(
                    "server clock differs from this host's by {:+.1} s (snapshot times vs server logs)",
                    skew as f64 / 1000.0
                ),
                "synchronise both clocks with NTP (chrony/systemd-timesyncd)".into(),
            );
        }
    }
    if let Some(tz) = f.tz_diff_secs {
        // Offsets are whole minutes at worst; ignore rounding noise.
        if tz.abs() >= 60 {
            problem(
                Severity::Warning,
                None,
                format!(
                    "server time zone is {:+.1} h from this host's: run_time_window uses this host's local time",
                    tz as f64 / 3600.0
                ),
                "write run_time_window in this host's local time (or run mysqk with TZ set to the server's zone)"
                    .into(),
            );
        }
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `CURRENT_USER()` (`u@h`) as a quoted account `'u'@'h'`.
fn quote_account(cu: &str) -> String {
    let (u, h) = cu.rsplit_once('@').unwrap_or((cu, "%"));
    format!("'{}'@'{}'", u.replace('\'', "''"), h.replace('\'', "''"))
}

fn user_facts(s: &mut Session, rds: bool) -> UserFacts {
    let account = s
        .conn
        .query_first::<String, _>("SELECT CURRENT_USER()")
        .ok()
        .flatten()
        .map(|cu| quote_account(&cu));
    let rds_kill = rds.then(|| {
        // A routine is listed only to users with some privilege on it.
        s.conn
            .query_first::<u64, _>(
                "SELECT COUNT(*) FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA = 'mysql' AND ROUTINE_NAME = 'rds_kill'",
            )
            .ok()
            .flatten()
            .unwrap_or(0)
            > 0
    });
    UserFacts {
        user: s.user.clone(),
        connect: Ok(()),
        account,
        kills_others: s.can_kill_others,
        // From SHOW GRANTS: roles count, odd names do not confuse it.
        sees_all: s.sees_all,
        rds_kill,
    }
}

/// One line on stderr per user checked, as it finishes, so a slow instance
/// shows what it is waiting for.
fn progress(dbid: &str, u: &UserFacts, took: std::time::Duration) {
    let what = match &u.connect {
        Ok(()) => "login ok".to_string(),
        Err(reason) => format!("cannot log in: {reason}"),
    };
    eprintln!(
        "doctor: {dbid} {}: {what} ({:.1} s)",
        u.user,
        took.as_secs_f64()
    );
}

/// Log in as every `[db_auth]` user on `inst` and gather the facts.
pub fn check_instance(cfg: &Config, inst: &Instance) -> InstanceFacts {
    let target = Target {
        host: inst.host.clone(),
        port: inst.port,
        connect_timeout: cfg.settings.connect_timeout,
        read_timeout: cfg.settings.read_timeout,
    };
    let rds = inst.rules.kill_cmd == KillCmd::Rds;
    let mut f = InstanceFacts {
        dbid: inst.dbid.clone(),
        addr: inst.addr(),
        puser: inst.puser.clone(),
        k_users: match &inst.rules.users {
            UserFilter::Nobody => BTreeSet::new(),
            UserFilter::Users(u) => u.clone(),
            UserFilter::Matching(_) => cfg
                .auth
                .iter()
                .filter(|a| inst.rules.users.contains(&a.user))
                .map(|a| a.user.clone())
                .collect(),
        },
        k_lock: inst.rules.lock,
        rds,
        ..InstanceFacts::default()
    };
    // Sessions stay open until the end so db_puser's processlist shows the
    // other users' logins (a PROCESS check that also covers roles). Users
    // log in in parallel: a hung server costs one connect_timeout, not one
    // per user; each prints a progress line when done.
    let logins: Vec<(UserFacts, Option<Session>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = cfg
            .auth
            .iter()
            .map(|a| {
                let target = &target;
                scope.spawn(move || {
                    let started = std::time::Instant::now();
                    let result = match Session::open(target, &a.user, &a.password) {
                        Ok(mut s) => (user_facts(&mut s, rds), Some(s)),
                        Err(e) => {
                            let reason = match e {
                                crate::server::session::SessionError::Connect {
                                    reason, ..
                                }
                                | crate::server::session::SessionError::Query { reason, .. } => {
                                    reason
                                }
                            };
                            let facts = UserFacts {
                                user: a.user.clone(),
                                connect: Err(reason),
                                ..UserFacts::default()
                            };
                            (facts, None)
                        }
                    };
                    progress(&inst.dbid, &result.0, started.elapsed());
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(&cfg.auth)
            .map(|(h, a)| {
                h.join().unwrap_or_else(|_| {
                    let facts = UserFacts {
                        user: a.user.clone(),
                        connect: Err("internal error while checking this user".into()),
                        ..UserFacts::default()
                    };
                    (facts, None)
                })
            })
            .collect()
    });
    let mut sessions: Vec<Session> = Vec::new();
    for (facts, session) in logins {
        f.users.push(facts);
        sessions.extend(session);
    }
    let Some(first) = sessions.first_mut() else {
        return f;
    };
    f.version = Some(first.version.clone());
    f.flavor = Some(first.flavor);
    f.max_connections = first
        .conn
        .query_first::<u64, _>("SELECT @@max_connections")
        .ok()
        .flatten();
    f.threads_connected = first
        .conn
        .query_first::<(String, u64), _>("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        .ok()
        .flatten()
        .map(|(_, n)| n);
    let before = now_ms();
    let server: Option<(String, i64)> = first
        .conn
        .query_first(
            "SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS CHAR), \
             TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW())",
        )
        .ok()
        .flatten();
    let after = now_ms();
    if let Some((server_ms, server_off)) = server {
        if let Ok(ms) = server_ms.split('.').next().unwrap_or("").parse::<i64>() {
            // The server read its clock somewhere inside our round trip.
            f.skew_ms = Some(ms - (before + after) / 2);
        }
        let local_off = i64::from(chrono::Local::now().offset().local_minus_utc());
        f.tz_diff_secs = Some(server_off - local_off);
    }
    let others: BTreeSet<String> = f
        .users
        .iter()
        .filter(|u| u.connected() && u.user != inst.puser)
        .map(|u| u.user.clone())
        .collect();
    if let Some(p) = sessions.iter_mut().find(|s| s.user == inst.puser) {
        // Seeing another mysqk login proves PROCESS whatever the grant path.
        if let Ok(rows) = inspector::processlist(p) {
            if rows.iter().any(|r| others.contains(&r.user)) {
                if let Some(u) = f.users.iter_mut().find(|u| u.user == inst.puser) {
                    u.sees_all = true;
                }
            }
        }
        f.lock_tables = Some(
            inspector::lock_waits(p)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
        f.mdl = Some(inspector::mdl_source(p));
        // After the reads above, which may have fallen back to another table.
        f.proc_source = Some(p.proc_source);
        if p.flavor == Flavor::MySql8 {
            f.ps_show_processlist = p
                .conn
                .query_first::<u64, _>("SELECT @@performance_schema_show_processlist")
                .ok()
                .flatten()
                .map(|v| v != 0);
        }
    }
    f
}

/// The report: an instance table, a user table, then every problem with its fix.
pub fn render(facts: &[InstanceFacts], problems: &[Problem]) -> String {
    let mut s = String::new();
    let inst_rows: Vec<Vec<String>> = facts
        .iter()
        .map(|f| {
            let conns = match (f.threads_connected, f.max_connections) {
                (Some(u), Some(m)) if m > 0 => format!("{u}/{m} ({}%)", u * 100 / m),
                _ => "?".into(),
            };
            vec![
                f.dbid.clone(),
                f.addr.clone(),
                f.version.clone().unwrap_or_else(|| "unreachable".into()),
                f.flavor.map(|x| x.to_string()).unwrap_or_default(),
                conns,
                f.skew_ms
                    .map(|ms| format!("{:+.1} s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "?".into()),
                match &f.lock_tables {
                    Some(Ok(())) if f.ps_off() => "blind (P_S off)".into(),
                    Some(Ok(())) => "readable".into(),
                    Some(Err(_)) => "NOT readable".into(),
                    None => "?".into(),
                },
                match f.mdl {
                    Some(MdlSource::PerformanceSchema) => "performance_schema".into(),
                    Some(MdlSource::MetadataLockInfo) => "METADATA_LOCK_INFO".into(),
                    Some(MdlSource::None) => "no blocker info".into(),
                    None => "?".into(),
                },
                match (f.proc_source, f.ps_show_processlist) {
                    (Some(src), Some(show)) => format!(
                        "{src}; SHOW PROCESSLIST from P_S: {}",
                        if show { "ON" } else { "OFF" }
                    ),
                    (Some(src), None) => src.to_string(),
                    (None, _) => "?".into(),
                },
            ]
        })
        .collect();
    s.push_str(&output::render(
        &[
            "INSTANCE",
            "ADDRESS",
            "VERSION",
            "FLAVOR",
            "CONNECTIONS",
            "CLOCK SKEW",
            "LOCK WAITS",
            "MDL BLOCKERS",
            "PROCESSLIST",
        ],
        &inst_rows,
    ));
    s.push('\n');
    for f in facts {
        if let Some(w) = &f.watch {
            s.push_str(&format!(
                "{}: `mysqk watch` (pid {}) holds working sessions of {} (status file of {})\n",
                f.dbid,
                w.pid,
                w.users.join(", "),
                w.updated
            ));
        }
    }
    if facts.iter().any(|f| f.watch.is_some()) {
        s.push('\n');
    }
    let mut user_rows = Vec::new();
    for f in facts {
        for u in &f.users {
            let role = if u.user == f.puser { "db_puser" } else { "" };
            let (login, sees, kills) = match &u.connect {
                Err(e) => (
                    format!("FAILED: {}", crate::core::text::cut(e, 70)),
                    "-".into(),
                    "-".into(),
                ),
                Ok(()) => (
                    "ok".to_string(),
                    if u.sees_all {
                        "all threads"
                    } else {
                        "own threads"
                    }
                    .to_string(),
                    match (u.kills_others, u.rds_kill) {
                        (_, Some(false)) => "none (no EXECUTE on mysql.rds_kill)".to_string(),
                        (true, _) => "any thread".to_string(),
                        (false, _) => "own threads".to_string(),
                    },
                ),
            };
            user_rows.push(vec![
                f.dbid.clone(),
                u.user.clone(),
                role.into(),
                login,
                sees,
                kills,
                if f.k_users.contains(&u.user) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
            ]);
        }
    }
    s.push_str(&output::render(
        &[
            "INSTANCE",
            "USER",
            "ROLE",
            "LOGIN",
            "SEES",
            "CAN KILL",
            "IN K_USER",
        ],
        &user_rows,
    ));
    s.push('\n');
    if problems.is_empty() {
        s.push_str("No problems found.\n");
    } else {
        s.push_str("Problems:\n");
        for p in problems {
            s.push_str(&format!(
                "{} {}{}: {}\n    fix: {}\n",
                match p.severity {
                    Severity::Error => "ERROR",
                    Severity::Warning => "WARN ",
                },
                p.dbid,
                p.user.as_ref().map(|u| format!(" {u}")).unwrap_or_default(),
                p.what,
                p.fix
            ));
        }
    }
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    if errors == 0 {
        s.push_str("doctor: mysqk can do its job on every instance checked.\n");
    } else {
        s.push_str(&format!(
            "doctor: {errors} error{} stop mysqk from doing its job.\n",
            if errors == 1 { "" } else { "s" }
        ));
    }
    s
}

/// Run every check on `instances` (in parallel: an unreachable one costs
/// only its connect timeout). Returns the report text and whether mysqk can
/// do its job everywhere.
pub fn run(cfg: &Config, instances: &[&Instance]) -> (String, bool) {
    let mut holds = watch_holds(&cfg.settings.status_file);
    let mut facts: Vec<InstanceFacts> = std::thread::scope(|scope| {
        let handles: Vec<_> = instances
            .iter()
            .map(|inst| scope.spawn(move || check_instance(cfg, inst)))
            .collect();
        handles
            .into_iter()
            .zip(instances)
            .map(|(h, inst)| {
                h.join().unwrap_or_else(|_| InstanceFacts {
                    dbid: inst.dbid.clone(),
                    addr: inst.addr(),
                    puser: inst.puser.clone(),
                    ..InstanceFacts::default()
                })
            })
            .collect()
    });
    for f in &mut facts {
        f.watch = holds.remove(&f.dbid);
    }
    let problems: Vec<Problem> = facts.iter().flat_map(assess).collect();
    let ok = !problems.iter().any(|p| p.severity == Severity::Error);
    (render(&facts, &problems), ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserFacts {
        UserFacts {
            user: name.into(),
            connect: Ok(()),
            account: Some(format!("'{name}'@'%'")),
            ..UserFacts::default()
        }
    }

    fn healthy() -> InstanceFacts {
        InstanceFacts {
            dbid: "crm0".into(),
            addr: "10.0.0.1:3306".into(),
            puser: "mon".into(),
            version: Some("10.11.6-MariaDB".into()),
            flavor: Some(Flavor::MariaDb),
            users: vec![
                UserFacts {
                    sees_all: true,
                    ..user("mon")
                },
                user("app1"),
            ],
            k_users: ["app1".to_string()].into(),
            k_lock: 0,
            rds: false,
            max_connections: Some(151),
            threads_connected: Some(10),
            skew_ms: Some(120),
            tz_diff_secs: Some(0),
            lock_tables: Some(Ok(())),
            mdl: Some(MdlSource::MetadataLockInfo),
            watch: None,
            proc_source: Some(ProcSource::InformationSchema(IsReason::MariaDb)),
            ps_show_processlist: None,
        }
    }

    #[test]
    fn mysql_with_performance_schema_off_is_blind_to_lock_waits() {
        let mut f = InstanceFacts {
            version: Some("9.7.4".into()),
            flavor: Some(Flavor::MySql8),
            proc_source: Some(ProcSource::InformationSchema(
                IsReason::PerformanceSchemaOff,
            )),
            mdl: Some(MdlSource::None),
            ..healthy()
        };
        let p = assess(&f);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].severity, Severity::Warning);
        assert!(p[0].what.starts_with("performance_schema=OFF"), "{p:?}");
        // With k_lock it is an error: no blocker could ever be found.
        f.k_lock = 5;
        let p = assess(&f);
        assert_eq!(p.len(), 1, "no second, wrong fix for MDL: {p:?}");
        assert_eq!(p[0].severity, Severity::Error);
        assert!(p[0].fix.contains("performance_schema=ON"), "{p:?}");
    }

    fn summary(p: &[Problem]) -> Vec<(Severity, Option<String>, String)> {
        p.iter()
            .map(|p| (p.severity, p.user.clone(), p.fix.clone()))
            .collect()
    }

    #[test]
    fn healthy_has_no_problem() {
        assert!(assess(&healthy()).is_empty());
    }

    #[test]
    fn table() {
        type Edit = fn(&mut InstanceFacts);
        // (name, edit, expected severity, expected text in the fix)
        let cases: Vec<(&str, Edit, Severity, &str)> = vec![
            (
                "puser without PROCESS",
                |f| f.users[0].sees_all = false,
                Severity::Error,
                "GRANT PROCESS ON *.* TO 'mon'@'%';",
            ),
            (
                "wrong password",
                |f| {
                    f.users[1].connect = Err(
                        "Access denied for user 'app1'@'127.0.0.1' (using password: YES) (1045)"
                            .into(),
                    );
                    f.users[1].account = None;
                },
                Severity::Error,
                "ALTER USER 'app1'@'%' IDENTIFIED BY",
            ),
            (
                "too many connections, no watch",
                |f| f.users[1].connect = Err("Too many connections (1040)".into()),
                Severity::Error,
                "keep `mysqk watch` running",
            ),
            (
                "too many connections while a watch holds the session",
                |f| {
                    f.users[1].connect = Err("Too many connections (1040)".into());
                    f.watch = Some(WatchHold {
                        pid: 4242,
                        users: vec!["mon".into(), "app1".into()],
                        updated: "t".into(),
                    });
                },
                Severity::Warning,
                "leave `mysqk watch` (pid 4242) running: it holds sessions of mon, app1",
            ),
            (
                "unreachable",
                |f| f.users[1].connect = Err("Connection refused (os error 111)".into()),
                Severity::Error,
                "check host:port in [db_info]",
            ),
            (
                "k_user outside [db_auth] and nobody may kill others",
                |f| {
                    f.k_users.insert("etl".into());
                },
                Severity::Error,
                "add etl to [db_auth], or GRANT CONNECTION ADMIN ON *.* TO 'mon'@'%';",
            ),
            (
                "rds without EXECUTE",
                |f| {
                    f.rds = true;
                    f.users[1].rds_kill = Some(false);
                },
                Severity::Error,
                "GRANT EXECUTE ON PROCEDURE mysql.rds_kill TO 'app1'@'%';",
            ),
            (
                "lock tables unreadable with k_lock",
                |f| {
                    f.k_lock = 5;
                    f.lock_tables = Some(Err("denied".into()));
                },
                Severity::Error,
                "GRANT PROCESS ON *.* TO 'mon'@'%';",
            ),
            (
                "lock tables unreadable without k_lock",
                |f| f.lock_tables = Some(Err("denied".into())),
                Severity::Warning,
                "GRANT PROCESS",
            ),
            (
                "no MDL blocker info with k_lock",
                |f| {
                    f.k_lock = 5;
                    f.mdl = Some(MdlSource::None);
                },
                Severity::Warning,
                "INSTALL SONAME 'metadata_lock_info'",
            ),
            (
                "near max_connections",
                |f| f.threads_connected = Some(140),
                Severity::Warning,
                "raise max_connections",
            ),
            (
                "clock skew",
                |f| f.skew_ms = Some(-7_000),
                Severity::Warning,
                "NTP",
            ),
            (
                "time zone",
                |f| f.tz_diff_secs = Some(8 * 3600),
                Severity::Warning,
                "run_time_window in this host's local time",
            ),
        ];
        for (name, edit, severity, fix) in cases {
            let mut f = healthy();
            edit(&mut f);
            let p = assess(&f);
            assert_eq!(p.len(), 1, "case {name}: {:?}", summary(&p));
            assert_eq!(p[0].severity, severity, "case {name}");
            assert!(p[0].fix.contains(fix), "case {name}: {}", p[0].fix);
        }
    }

    #[test]
    fn a_privileged_session_covers_users_without_their_own() {
        let mut f = healthy();
        f.k_users.insert("etl".into());
        f.users[0].kills_others = true;
        assert!(assess(&f).is_empty());
    }

    #[test]
    fn render_lists_fixes_and_verdict() {
        let mut f = healthy();
        f.users[0].sees_all = false;
        let p = assess(&f);
        let text = render(&[f], &p);
        assert!(text.contains("ERROR crm0 mon: db_puser sees only its own threads"));
        assert!(text.contains("fix: GRANT PROCESS ON *.* TO 'mon'@'%';"));
        assert!(text.contains("1 error stop"));
        let text = render(&[healthy()], &[]);
        assert!(text.contains("can do its job"));
    }
}
