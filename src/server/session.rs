//! Held connections: one per `[db_auth]` user per instance, each with
//! connect/read/write timeouts so a server that stops answering can never hang
//! a thread for longer than `read_timeout`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

use crate::config::crypto::Secret;
use crate::config::{Config, Instance};

/// Which server family a connection talks to; decides the SQL used for
/// processlist, lock waits and kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql57,
    MySql8,
    /// Anything older or unknown: treated like MySQL 5.7.
    MySqlOther,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::MariaDb => "MariaDB",
            Flavor::MySql57 => "MySQL 5.7",
            Flavor::MySql8 => "MySQL 8",
            Flavor::MySqlOther => "MySQL",
        })
    }
}

/// Flavor from `SELECT VERSION()`, e.g. `10.11.6-MariaDB-0+deb12u1` or `8.0.36`.
pub fn flavor_of(version: &str) -> Flavor {
    if version.to_ascii_lowercase().contains("mariadb") {
        return Flavor::MariaDb;
    }
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(major), _) if major >= 8 => Flavor::MySql8,
        (Some(5), Some(7)) => Flavor::MySql57,
        _ => Flavor::MySqlOther,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect to {addr} as {user}: {reason}")]
    Connect {
        addr: String,
        user: String,
        reason: String,
    },
    #[error("{addr} as {user}: {reason}")]
    Query {
        addr: String,
        user: String,
        reason: String,
    },
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Target {
    /// Where and how patiently to reach one configured instance.
    pub fn of(cfg: &Config, inst: &Instance) -> Target {
        Target {
            host: inst.host.clone(),
            port: inst.port,
            connect_timeout: cfg.settings.connect_timeout,
            read_timeout: cfg.settings.read_timeout,
        }
    }
}

impl Target {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One live connection of one user.
pub struct Session {
    pub user: String,
    pub addr: String,
    pub conn: Conn,
    /// `CONNECTION_ID()`: never a victim.
    pub conn_id: u64,
    pub flavor: Flavor,
    pub version: String,
    /// Holds SUPER or CONNECTION ADMIN: may kill other users' threads.
    pub can_kill_others: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Session({}@{} id={})",
            self.user, self.addr, self.conn_id
        )
    }
}

/// A mysql error's text without anything that could carry a password.
/// (The driver's messages name user and host, never the password.)
pub fn error_text(e: &mysql::Error) -> String {
    match e {
        mysql::Error::MySqlError(me) => format!("{} ({})", me.message, me.code),
        other => {
            let text = other.to_string();
            // A read/write timeout surfaces as EAGAIN (os error 11) or ETIMEDOUT
            // deep inside the driver's codec error; say what it means.
            let timed_out = matches!(other, mysql::Error::IoError(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
                || text.contains("os error 11)")
                || text.contains("os error 110)");
            if timed_out {
                "no answer within the timeout (server hung or unreachable)".to_string()
            } else {
                text
            }
        }
    }
}

/// The server error code, when the error came from the server.
pub fn error_code(e: &mysql::Error) -> Option<u16> {
    match e {
        mysql::Error::MySqlError(me) => Some(me.code),
        _ => None,
    }
}

impl Session {
    pub fn open(target: &Target, user: &str, password: &Secret) -> Result<Session, SessionError> {
        let addr = target.addr();
        let fail = |reason: String| SessionError::Connect {
            addr: addr.clone(),
            user: user.to_string(),
            reason,
        };
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(target.host.clone()))
            .tcp_port(target.port)
            .user(Some(user))
            .pass(Some(password.expose()))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(target.connect_timeout))
            .read_timeout(Some(target.read_timeout))
            .write_timeout(Some(target.read_timeout))
            .tcp_keepalive_time_ms(Some(10_000))
            .stmt_cache_size(Some(0));
        let mut conn = Conn::new(opts).map_err(|e| fail(error_text(&e)))?;
        let (conn_id, version): (u64, String) = conn
            .query_first("SELECT CONNECTION_ID(), VERSION()")
            .map_err(|e| fail(error_text(&e)))?
            .ok_or_else(|| fail("no answer to SELECT CONNECTION_ID()".into()))?;
        // A held session must outlive long quiet periods between pings.
        let _ = conn.query_drop("SET SESSION wait_timeout = 86400");
        // MariaDB spells it `CONNECTION ADMIN`, MySQL 8 `CONNECTION_ADMIN`.
        let can_kill_others = conn
            .query_first::<u64, _>(
                "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES \
                 WHERE PRIVILEGE_TYPE IN ('SUPER', 'CONNECTION ADMIN', 'CONNECTION_ADMIN') \
                 AND GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
                 SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')",
            )
            .ok()
            .flatten()
            .unwrap_or(0)
            > 0;
        Ok(Session {
            user: user.to_string(),
            addr,
            conn,
            conn_id,
            flavor: flavor_of(&version),
            version,
            can_kill_others,
        })
    }

    pub fn query_err(&self, e: &mysql::Error) -> SessionError {
        SessionError::Query {
            addr: self.addr.clone(),
            user: self.user.clone(),
            reason: error_text(e),
        }
    }

    /// True when the server still answers on this connection.
    pub fn ping(&mut self) -> bool {
        self.conn.ping().is_ok()
    }
}

/// A held session slot: the connection if open, and when to try again if not.
#[derive(Debug)]
pub struct Slot {
    pub session: Option<Session>,
    pub last_error: Option<String>,
    next_attempt: Instant,
    backoff: Duration,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            session: None,
            last_error: None,
            next_attempt: Instant::now(),
            backoff: Duration::ZERO,
        }
    }
}

/// All held sessions of one instance, keyed by user.
#[derive(Debug)]
pub struct Sessions {
    pub target: Target,
    slots: BTreeMap<String, Slot>,
    /// Upper bound of the reconnect backoff.
    pub max_backoff: Duration,
}

impl Sessions {
    pub fn new(target: Target) -> Sessions {
        Sessions {
            target,
            slots: BTreeMap::new(),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// Open (or re-open, respecting the backoff) the session of `user`.
    /// Returns the session if one is live afterwards.
    pub fn ensure(&mut self, user: &str, password: &Secret) -> Option<&mut Session> {
        let slot = self
            .slots
            .entry(user.to_string())
            .or_insert_with(Slot::empty);
        if slot.session.is_none() && Instant::now() >= slot.next_attempt {
            match Session::open(&self.target, user, password) {
                Ok(s) => {
                    if slot.last_error.is_some() {
                        log::info!("{}: session of {user} re-opened (id {})", s.addr, s.conn_id);
                    }
                    slot.session = Some(s);
                    slot.last_error = None;
                    slot.backoff = Duration::ZERO;
                }
                Err(e) => {
                    let msg = e.to_string();
                    if slot.last_error.as_deref() != Some(msg.as_str()) {
                        log::warn!("{msg}");
                    }
                    slot.last_error = Some(msg);
                    slot.backoff =
                        (slot.backoff * 2).clamp(Duration::from_secs(1), self.max_backoff);
                    slot.next_attempt = Instant::now() + slot.backoff;
                }
            }
        }
        slot.session.as_mut()
    }

    /// Ping one user's open session, dropping it if dead. True when it is
    /// live afterwards. (`watch` pings user by user so a stop request is
    /// noticed between two pings of a hung server, each bounded by read_timeout.)
    pub fn ping(&mut self, user: &str) -> bool {
        let Some(slot) = self.slots.get_mut(user) else {
            return false;
        };
        let Some(s) = slot.session.as_mut() else {
            return false;
        };
        if s.ping() {
            return true;
        }
        log::warn!(
            "{}: session of {user} (id {}) lost; will reconnect",
            s.addr,
            s.conn_id
        );
        slot.session = None;
        slot.last_error = Some("connection lost".into());
        false
    }

    /// Ping every open session; drop the dead ones so `ensure` re-opens them.
    pub fn ping_all(&mut self) {
        for (user, slot) in self.slots.iter_mut() {
            if let Some(s) = slot.session.as_mut() {
                if !s.ping() {
                    log::warn!(
                        "{}: session of {user} (id {}) lost; will reconnect",
                        s.addr,
                        s.conn_id
                    );
                    slot.session = None;
                    slot.last_error = Some("connection lost".into());
                }
            }
        }
    }

    /// Forget a session after a network-level failure on it.
    pub fn drop_session(&mut self, user: &str, reason: &str) {
        if let Some(slot) = self.slots.get_mut(user) {
            if slot.session.take().is_some() {
                log::warn!(
                    "{}: session of {user} dropped: {reason}",
                    self.target.addr()
                );
            }
            slot.last_error = Some(reason.to_string());
        }
    }

    /// Stop holding `user`'s session (the user left `[db_auth]`).
    pub fn remove(&mut self, user: &str) {
        self.slots.remove(user);
    }

    pub fn get(&mut self, user: &str) -> Option<&mut Session> {
        self.slots.get_mut(user).and_then(|s| s.session.as_mut())
    }

    /// Connection ids of every held session: never victims.
    pub fn own_ids(&self) -> std::collections::HashSet<u64> {
        self.slots
            .values()
            .filter_map(|s| s.session.as_ref())
            .map(|s| s.conn_id)
            .collect()
    }

    /// Users with a live session.
    pub fn connected_users(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.session.is_some())
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Users without a live session, with the last error.
    pub fn errors(&self) -> Vec<(String, String)> {
        self.slots
            .iter()
            .filter(|(_, s)| s.session.is_none())
            .map(|(u, s)| {
                (
                    u.clone(),
                    s.last_error
                        .clone()
                        .unwrap_or_else(|| "not connected".into()),
                )
            })
            .collect()
    }

    /// Users whose session may kill other users' threads.
    pub fn privileged_users(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.session.as_ref().is_some_and(|s| s.can_kill_others))
            .map(|(u, _)| u.clone())
            .collect()
    }

    pub fn users(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors() {
        assert_eq!(flavor_of("10.11.6-MariaDB-0+deb12u1"), Flavor::MariaDb);
        assert_eq!(flavor_of("5.5.5-10.6.12-MariaDB-log"), Flavor::MariaDb);
        assert_eq!(flavor_of("8.0.36"), Flavor::MySql8);
        assert_eq!(flavor_of("8.4.0-commercial"), Flavor::MySql8);
        assert_eq!(flavor_of("5.7.44-log"), Flavor::MySql57);
        assert_eq!(flavor_of("5.6.51"), Flavor::MySqlOther);
    }
}
