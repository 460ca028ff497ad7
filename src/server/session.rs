//! Held connections: one per `[db_auth]` user per instance, each with
//! connect/read/write timeouts so a server that stops answering can never hang
//! a thread for longer than `read_timeout`, nor a login for longer than
//! `connect_timeout`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

use crate::config::crypto::Secret;
use crate::config::{Config, Instance};
use crate::core::grants;
use crate::report::flood;
use crate::server::buffers;
use crate::server::resync::{self, Progress, Resync, SocketState};

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
        /// The server's error code, if it gave one.
        code: Option<u16>,
        /// Refused for want of a free slot ([`is_full`]).
        full: bool,
        /// No server answered at all (refused, TCP or login timeout): every
        /// user's login to that address would fail the same way.
        unreachable: bool,
        reason: String,
    },
    #[error("{addr} as {user}: {reason}")]
    Query {
        addr: String,
        user: String,
        reason: String,
    },
}

impl SessionError {
    /// The server's error code of a refused login.
    pub fn code(&self) -> Option<u16> {
        match self {
            SessionError::Connect { code, .. } => *code,
            SessionError::Query { .. } => None,
        }
    }

    /// A login refused for want of a free slot.
    pub fn is_full(&self) -> bool {
        matches!(self, SessionError::Connect { full: true, .. })
    }

    /// A login that reached no server (see [`no_server`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SessionError::Connect {
                unreachable: true,
                ..
            }
        )
    }
}

/// The login failed before any server answered: the port refused, the TCP
/// connect or the whole login timed out (`None`: the login thread gave no
/// answer in time). A server that answered with an error, even a broken
/// handshake, is not this.
fn no_server(e: Option<&mysql::Error>) -> bool {
    use mysql::{DriverError as D, Error as E};
    use std::io::ErrorKind as K;
    match e {
        None => true,
        Some(E::IoError(io)) => matches!(
            io.kind(),
            K::ConnectionRefused
                | K::TimedOut
                | K::WouldBlock
                | K::HostUnreachable
                | K::NetworkUnreachable
        ),
        Some(E::DriverError(D::CouldNotConnect(_) | D::ConnectTimeout)) => true,
        Some(_) => false,
    }
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
    /// Holds SUPER or CONNECTION ADMIN, directly or through an active role:
    /// may kill other users' threads.
    pub can_kill_others: bool,
    /// A command on it failed without a server error (timeout, protocol):
    /// it may be out of step with the server and is checked before reuse.
    /// A `Cell` because the failures are seen where only `&Session` is at hand.
    suspect: Cell<bool>,
    /// Being brought back in step after a timeout (see [`resync`]).
    resync: Option<Resync>,
    /// Holds PROCESS, directly or through an active role: sees every thread.
    pub sees_all: bool,
    /// Where this session reads the processlist from, and why.
    pub proc_source: ProcSource,
    /// With `performance_schema.processlist`: also read each running
    /// statement's elapsed time from `events_statements_current` (sub-second,
    /// where TIME may be 1 s high). Cleared when that read fails (no SELECT
    /// on performance_schema).
    pub stmt_timers: bool,
    /// The driver's buffers of this connection (see [`buffers`]).
    buffers: buffers::Owned,
}

/// The table the processlist is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcSource {
    /// MySQL 8.0.22+: `performance_schema.processlist`, which does not take
    /// the global mutex `information_schema.PROCESSLIST` takes.
    PerformanceSchema,
    /// `information_schema.PROCESSLIST`, for the reason given.
    InformationSchema(IsReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsReason {
    /// MariaDB: the only table with every thread (and `TIME_MS`).
    MariaDb,
    /// MySQL 5.7 and older: no `performance_schema.processlist`.
    OldMySql,
    /// MySQL 8 with `performance_schema=OFF`: its processlist table is then
    /// empty without an error, so reading it would see no thread at all.
    PerformanceSchemaOff,
    /// MySQL 8 where `performance_schema.processlist` failed (before 8.0.22).
    PerformanceSchemaFailed,
}

impl fmt::Display for ProcSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcSource::PerformanceSchema => f.write_str("performance_schema.processlist"),
            ProcSource::InformationSchema(why) => write!(
                f,
                "information_schema.PROCESSLIST ({})",
                match why {
                    IsReason::MariaDb => "MariaDB",
                    IsReason::OldMySql => "MySQL before 8.0",
                    IsReason::PerformanceSchemaOff => "performance_schema=OFF",
                    IsReason::PerformanceSchemaFailed =>
                        "performance_schema.processlist unreadable",
                }
            ),
        }
    }
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

/// A mysql error in words, without anything that could carry a password
/// (the driver's messages name user and host, never the password). The one
/// place a `mysql::Error` becomes text: the driver's `Display` wraps its
/// variants as `DriverError { ... }` / `CodecError { ... }`, which no log or
/// terminal should show.
pub fn error_text(e: &mysql::Error) -> String {
    use mysql::{DriverError as D, Error as E};
    match e {
        E::MySqlError(me) => format!("{} ({})", me.message, me.code),
        E::IoError(io) => io_text(io),
        E::CodecError(c) => {
            // The codec's only I/O-carrying variant is where timeouts show up.
            match std::error::Error::source(c).and_then(|s| s.downcast_ref::<std::io::Error>()) {
                Some(io) => io_text(io),
                None => format!("protocol error: {}", lowercase_first(&c.to_string())),
            }
        }
        E::DriverError(D::CouldNotConnect(Some((_, desc, kind)))) => connect_text(*kind, desc),
        E::DriverError(D::ConnectTimeout | D::Timeout) => NO_ANSWER.into(),
        E::DriverError(d) => lowercase_first(&d.to_string()),
        E::UrlError(u) => format!("bad address: {u}"),
        E::FromValueError(_) | E::FromRowError(_) => {
            "the server's answer has an unexpected type".into()
        }
        // Variants of driver features (TLS): their text without the wrapper.
        #[allow(unreachable_patterns)]
        other => unwrap_variant(&other.to_string()),
    }
}

/// `Name { text }` -> `text`.
fn unwrap_variant(s: &str) -> String {
    match s.split_once(" { ") {
        Some((name, rest)) if !name.contains(' ') && rest.ends_with(" }") => {
            lowercase_first(&rest[..rest.len() - 2])
        }
        _ => s.to_string(),
    }
}

const NO_ANSWER: &str = "no answer within the timeout (server hung or unreachable)";

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn io_text(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match io.kind() {
        // A read/write timeout surfaces as EAGAIN or ETIMEDOUT.
        K::WouldBlock | K::TimedOut => NO_ANSWER.into(),
        K::ConnectionRefused => "connection refused (no server on that port?)".into(),
        K::ConnectionReset | K::ConnectionAborted => "connection reset by the server".into(),
        K::UnexpectedEof | K::BrokenPipe => "the server closed the connection".into(),
        _ => lowercase_first(&io.to_string()),
    }
}

fn connect_text(kind: std::io::ErrorKind, desc: &str) -> String {
    use std::io::ErrorKind as K;
    match kind {
        K::WouldBlock | K::TimedOut => NO_ANSWER.into(),
        K::ConnectionRefused => "connection refused (no server on that port?)".into(),
        _ => lowercase_first(desc),
    }
}

/// A read/write timeout: EAGAIN (os error 11) or ETIMEDOUT, possibly deep
/// inside the driver's codec error.
pub fn is_timeout(e: &mysql::Error) -> bool {
    let text = e.to_string();
    matches!(e, mysql::Error::IoError(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
        || text.contains("os error 11)")
        || text.contains("os error 110)")
}

/// `Access denied for user … (1045)` as `1045 Access denied for user …`:
/// the code first, where a reader of a table column looks.
pub fn code_first(reason: &str) -> String {
    let code = reason
        .strip_suffix(')')
        .and_then(|r| r.rsplit_once(" ("))
        .filter(|(_, c)| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()));
    match code {
        Some((msg, code)) => format!("{code} {msg}"),
        None => reason.to_string(),
    }
}

/// The server error code, when the error came from the server.
pub fn error_code(e: &mysql::Error) -> Option<u16> {
    match e {
        mysql::Error::MySqlError(me) => Some(me.code),
        _ => None,
    }
}

/// `Too many connections`.
pub const ER_CON_COUNT_ERROR: u16 = 1040;
/// `User ... has exceeded the 'max_user_connections' resource`.
pub const ER_TOO_MANY_USER_CONNECTIONS: u16 = 1203;
/// `Server shutdown in progress`.
const ER_SERVER_SHUTDOWN: u16 = 1053;

/// `User ... has exceeded the '<resource>' resource` (per-account limits).
pub const ER_USER_LIMIT_REACHED: u16 = 1226;

/// A login refused for want of a free connection slot (the server's
/// `max_connections`, or the account's `max_user_connections`): one frees
/// whenever a client disconnects, so it is retried at once, not after a
/// backoff. (1226 is also used for hourly limits; those are not slots.)
pub fn is_full(e: &mysql::Error) -> bool {
    match e {
        mysql::Error::MySqlError(me) => match me.code {
            ER_CON_COUNT_ERROR | ER_TOO_MANY_USER_CONNECTIONS => true,
            ER_USER_LIMIT_REACHED => me.message.contains("max_user_connections"),
            _ => false,
        },
        _ => false,
    }
}

/// `Conn::new` within `limit` in all (TCP connect plus every step of the
/// handshake). The driver bounds each step on its own; the whole login runs
/// on a helper thread so the sum is bounded too. A helper that is given up
/// on ends by itself within one more step (its reads are bounded).
/// The error is the driver's, when it answered in time, and the words for it.
fn login(
    opts: OptsBuilder,
    limit: Duration,
) -> Result<(Conn, buffers::Owned), (Option<mysql::Error>, String)> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let helper = std::thread::Builder::new()
        .name("login".into())
        .spawn(move || {
            // Captured on the thread that allocates the connection's buffers.
            let (conn, owned) = buffers::capture(|| Conn::new(opts));
            let _ = tx.send(conn.map(|c| (c, owned)));
        });
    if helper.is_err() {
        return Err((None, "cannot start the login thread".into()));
    }
    match rx.recv_timeout(limit + LOGIN_SLACK) {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(e)) => {
            let text = error_text(&e);
            Err((Some(e), text))
        }
        Err(_) => Err((
            None,
            format!(
                "no answer within connect_timeout ({} s) during the login (server hung or unreachable)",
                limit.as_secs()
            ),
        )),
    }
}

/// The driver's own timeouts fire first; this only covers their sum.
const LOGIN_SLACK: Duration = Duration::from_millis(200);

/// Give an open connection's socket the steady-state read/write timeout.
fn set_socket_timeouts(conn: &Conn, d: Duration) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(d.subsec_micros()),
    };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: setsockopt on the connection's own socket with a timeval
        // that lives for the call.
        let rc = unsafe {
            libc::setsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Session {
    pub fn open(target: &Target, user: &str, password: &Secret) -> Result<Session, SessionError> {
        let addr = target.addr();
        let fail = |e: Option<&mysql::Error>, reason: String| SessionError::Connect {
            addr: addr.clone(),
            user: user.to_string(),
            code: e.and_then(error_code),
            full: e.is_some_and(is_full),
            unreachable: false,
            reason,
        };
        // The login's reads and writes get connect_timeout, not read_timeout:
        // a port that accepts TCP and never answers must fail as fast as
        // one that refuses. read_timeout applies once logged in.
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(target.host.clone()))
            .tcp_port(target.port)
            .user(Some(user))
            .pass(Some(password.expose()))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(target.connect_timeout))
            .read_timeout(Some(target.connect_timeout))
            .write_timeout(Some(target.connect_timeout))
            // Keepalive probes tell a peer that is gone (host down, cable cut)
            // from one that is only slow: a held session that stopped answering
            // is kept until the kernel says the peer is unreachable.
            .tcp_keepalive_time_ms(Some(10_000))
            .tcp_keepalive_probe_interval_secs(Some(5))
            .tcp_keepalive_probe_count(Some(6))
            .stmt_cache_size(Some(0));
        let (mut conn, buffers) =
            login(opts, target.connect_timeout).map_err(|(e, reason)| SessionError::Connect {
                addr: addr.clone(),
                user: user.to_string(),
                code: e.as_ref().and_then(error_code),
                full: e.as_ref().is_some_and(is_full),
                unreachable: no_server(e.as_ref()),
                reason,
            })?;
        set_socket_timeouts(&conn, target.read_timeout).map_err(|e| {
            fail(
                None,
                format!("cannot set the read timeout on the connection: {e}"),
            )
        })?;
        let (conn_id, version): (u64, String) = conn
            .query_first("SELECT CONNECTION_ID(), VERSION()")
            .map_err(|e| fail(Some(&e), error_text(&e)))?
            .ok_or_else(|| fail(None, "no answer to SELECT CONNECTION_ID()".into()))?;
        // A held session must outlive long quiet periods between pings.
        let _ = conn.query_drop("SET SESSION wait_timeout = 86400");
        // Privileges through roles count (see core::grants). A session
        // whose grants cannot be read is taken as unprivileged.
        let grant_lines: Vec<String> = conn.query("SHOW GRANTS").unwrap_or_default();
        let privs = grants::global_privileges(grant_lines.iter().map(String::as_str));
        let flavor = flavor_of(&version);
        let proc_source = match flavor {
            Flavor::MariaDb => ProcSource::InformationSchema(IsReason::MariaDb),
            Flavor::MySql57 | Flavor::MySqlOther => {
                ProcSource::InformationSchema(IsReason::OldMySql)
            }
            Flavor::MySql8 => match conn.query_first::<u64, _>("SELECT @@performance_schema") {
                Ok(Some(0)) => ProcSource::InformationSchema(IsReason::PerformanceSchemaOff),
                _ => ProcSource::PerformanceSchema,
            },
        };
        Ok(Session {
            user: user.to_string(),
            addr,
            conn,
            conn_id,
            flavor,
            version,
            can_kill_others: privs.kill_others,
            sees_all: privs.process,
            stmt_timers: proc_source == ProcSource::PerformanceSchema,
            proc_source,
            suspect: Cell::new(false),
            resync: None,
            buffers,
        })
    }

    /// Record a failed command: anything but a server error may have left
    /// the connection out of step.
    pub fn note(&self, e: &mysql::Error) {
        if error_code(e).is_none() {
            self.suspect.set(true);
        }
    }

    pub fn query_err(&self, e: &mysql::Error) -> SessionError {
        self.note(e);
        SessionError::Query {
            addr: self.addr.clone(),
            user: self.user.clone(),
            reason: error_text(e),
        }
    }

    /// True when the server still answers on this connection.
    pub fn ping(&mut self) -> Result<(), String> {
        self.conn.ping().map_err(|e| {
            self.note(&e);
            error_text(&e)
        })
    }

    fn fd(&self) -> RawFd {
        self.conn.as_raw_fd()
    }

    /// Give the pages of the driver's buffers back while nothing is in
    /// flight (see [`buffers`]). Only a session in step, with nothing
    /// unread on its socket, qualifies.
    fn trim(&self) {
        if self.resync.is_none()
            && !self.suspect.get()
            && resync::socket_state(self.fd()) == SocketState::Quiet
        {
            // SAFETY: in step and nothing unread: the driver read every byte
            // of the last reply, so its buffers hold no data; this is the
            // thread that uses the connection.
            unsafe { buffers::trim(&self.buffers) }
        }
    }

    /// Waiting for the server to answer (a resync in progress).
    pub fn is_stalled(&self) -> bool {
        self.resync.is_some()
    }
}

/// How often a connection waiting for a late reply is looked at.
pub const RESYNC_POLL: Duration = Duration::from_millis(100);
/// Retry period of a login refused with `Too many connections`.
pub const FULL_RETRY: Duration = Duration::from_millis(100);

/// What became of a held session when it was looked at.
enum Health {
    Ready,
    /// Held, waiting for the server's late reply.
    Waiting,
    /// Given up: the server closed it or it cannot be brought back in step.
    Lost(String),
}

/// Look at a held session before it is used: bring a suspect one back in
/// step, notice one the server closed. Never blocks, except for the one
/// check query after a resync (bounded by read_timeout).
/// `who` names the instance in its log lines.
fn health(s: &mut Session, who: &str) -> Health {
    if s.resync.is_none() {
        let state = resync::socket_state(s.fd());
        if !s.suspect.get() && state == SocketState::Quiet {
            return Health::Ready;
        }
        if state == SocketState::Closed {
            return Health::Lost("closed by the server".into());
        }
        let reason = if s.suspect.get() {
            "a command got no answer within read_timeout"
        } else {
            "unexpected bytes from the server"
        };
        let nonce = format!("mysqk-resync-{}-{:08x}", s.conn_id, nonce());
        match Resync::start(s.fd(), &nonce, reason.into()) {
            Ok(r) => {
                log::warn!(
                    "{who}: session of {} (id {}) is out of step ({reason}); holding it until the server answers",
                    s.user,
                    s.conn_id
                );
                s.resync = Some(r);
            }
            Err(e) => return Health::Lost(e),
        }
    }
    let fd = s.fd();
    let Some(r) = s.resync.as_mut() else {
        return Health::Ready;
    };
    match r.advance(fd) {
        Progress::Waiting => Health::Waiting,
        Progress::Lost(why) => Health::Lost(why),
        Progress::InStep => {
            let (since, discarded) = (r.since, r.discarded);
            s.resync = None;
            s.suspect.set(false);
            match s.conn.query_first::<u64, _>("SELECT CONNECTION_ID()") {
                Ok(Some(id)) if id == s.conn_id => {
                    log::info!(
                        "{who}: session of {} (id {}) answers again after {:.1} s: same connection, {discarded} bytes of late replies discarded",
                        s.user,
                        s.conn_id,
                        since.elapsed().as_secs_f64()
                    );
                    Health::Ready
                }
                Ok(_) => Health::Lost("answers out of step after a resync".into()),
                Err(e) if is_timeout(&e) => {
                    // Stalled again right away: start over, the socket is still open.
                    s.suspect.set(true);
                    Health::Waiting
                }
                Err(e) => Health::Lost(error_text(&e)),
            }
        }
    }
}

/// A value that differs between resyncs, so a marker from an earlier one
/// (or another session's, seen in a processlist) is never taken for this one.
fn nonce() -> u32 {
    let mut b = [0u8; 4];
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.subsec_nanos();
    }
    u32::from_le_bytes(b)
}

/// A held session slot: the connection if open, and when to try again if not.
#[derive(Debug)]
pub struct Slot {
    pub session: Option<Session>,
    /// Lent to a kill thread (see `killer::Lanes`): the connection id while
    /// it is away. A lent session is neither re-opened nor pinged, and its
    /// id stays one of mysqk's own.
    lent: Option<u64>,
    pub last_error: Option<String>,
    /// The server's error code of the last failed login, if it gave one.
    last_code: Option<u16>,
    /// The last login was refused for want of a free slot.
    last_full: bool,
    /// A login was tried at least once.
    tried: bool,
    /// Why the last login failed, as `1045 Access denied for user …`
    /// (cleared by a successful one): a victim of this user left unkilled
    /// says so.
    login_error: Option<String>,
    next_attempt: Instant,
    backoff: Duration,
    /// When another session of the server was first seen answering while
    /// this one still waited for its late reply.
    others_answered: Option<Instant>,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            session: None,
            lent: None,
            last_error: None,
            last_code: None,
            last_full: false,
            tried: false,
            login_error: None,
            next_attempt: Instant::now(),
            backoff: Duration::ZERO,
            others_answered: None,
        }
    }

    fn ready(&self) -> bool {
        self.session.as_ref().is_some_and(|s| !s.is_stalled())
    }

    /// The session is only away for a while: held and waiting for the
    /// server, or being re-opened after a failure that passes (server
    /// restarting, network, no free slot). Not: a refused login.
    fn coming_back(&self) -> bool {
        match &self.session {
            Some(_) => true,
            None => {
                !self.tried
                    || self.last_full
                    || matches!(self.last_code, None | Some(ER_SERVER_SHUTDOWN))
            }
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
    /// The instance's dbid, which starts every log line about these sessions.
    instance: Option<String>,
    /// Login failures at debug, not warn: a one-shot run reports them itself
    /// (the ERROR line of its instance, the reason in a victim's result).
    quiet: bool,
    /// Set by `watch` ([`Sessions::share_unreachable`]): while no server
    /// answers at the address, one login per backoff step tries for all
    /// users (until this instant), not one per user.
    unreachable_until: Option<Instant>,
    share_unreachable: bool,
}

impl Sessions {
    pub fn new(target: Target) -> Sessions {
        Sessions {
            target,
            slots: BTreeMap::new(),
            max_backoff: Duration::from_secs(30),
            instance: None,
            quiet: false,
            unreachable_until: None,
            share_unreachable: false,
        }
    }

    /// A login that reached no server holds back the other users' logins
    /// until the next backoff step: they would fail the same way, and a
    /// fleet of unreachable instances would otherwise spend a login (a
    /// thread, a socket) per user per step. For `watch`; a one-shot run
    /// tries every user once and reports each.
    pub fn share_unreachable(mut self) -> Sessions {
        self.share_unreachable = true;
        self
    }

    /// Name the instance in log lines (`crm0: cannot connect ...`).
    pub fn for_instance(mut self, dbid: &str) -> Sessions {
        self.instance = Some(dbid.to_string());
        self
    }

    /// See [`Sessions::quiet`]: for one-shot runs.
    pub fn quiet(mut self) -> Sessions {
        self.quiet = true;
        self
    }

    /// How log lines name where these sessions go: the dbid, else the address.
    fn who(&self) -> String {
        self.instance.clone().unwrap_or_else(|| self.target.addr())
    }

    /// Why `user` has no session, if it has none and a login failed.
    pub fn error_of(&self, user: &str) -> Option<&str> {
        self.slots
            .get(user)
            .filter(|s| s.session.is_none())
            .and_then(|s| s.last_error.as_deref())
    }

    /// Look at one slot's session: drop it if gone, keep it if waiting.
    fn check(&mut self, user: &str) {
        let who = self.who();
        let Some(slot) = self.slots.get_mut(user) else {
            return;
        };
        let Some(s) = slot.session.as_mut() else {
            return;
        };
        match health(s, &who) {
            Health::Ready | Health::Waiting => {}
            Health::Lost(why) => {
                log::warn!(
                    "{who}: session of {user} (id {}) lost: {why}; will reconnect",
                    s.conn_id
                );
                slot.session = None;
                slot.last_error = Some(format!("connection lost: {why}"));
                slot.last_code = None;
                slot.next_attempt = Instant::now();
            }
        }
    }

    /// Open (or re-open, respecting the backoff) the session of `user`.
    /// Returns the session if one is live and in step afterwards. A held
    /// session waiting for the server is never replaced by a new login.
    pub fn ensure(&mut self, user: &str, password: &Secret) -> Option<&mut Session> {
        self.slots
            .entry(user.to_string())
            .or_insert_with(Slot::empty);
        self.check(user);
        let max_backoff = self.max_backoff;
        let (who, quiet) = (self.who(), self.quiet);
        let gate = self.unreachable_until.filter(|t| Instant::now() < *t);
        let addr = self.target.addr();
        let slot = self.slots.get_mut(user)?;
        let mut back = false;
        let due =
            slot.session.is_none() && slot.lent.is_none() && Instant::now() >= slot.next_attempt;
        if due && gate.is_some() {
            if slot.last_error.is_none() {
                slot.last_error = Some(format!(
                    "cannot connect to {addr} as {user}: no server answered another user's login; retried with it"
                ));
            }
        } else if due {
            slot.tried = true;
            match Session::open(&self.target, user, password) {
                Ok(s) => {
                    if slot.last_error.is_some() {
                        log::info!("{who}: session of {user} re-opened (id {})", s.conn_id);
                        back = true;
                    }
                    slot.session = Some(s);
                    self.unreachable_until = None;
                    slot.last_error = None;
                    slot.last_code = None;
                    slot.login_error = None;
                    slot.backoff = Duration::ZERO;
                }
                Err(e) => {
                    let msg = e.to_string();
                    if quiet {
                        log::debug!("{who}: {msg}");
                    } else if slot.last_error.as_deref() != Some(msg.as_str())
                        && flood::allow(flood::Kind::Connect)
                    {
                        log::warn!("{who}: {msg}");
                    }
                    slot.last_error = Some(msg);
                    slot.last_code = e.code();
                    slot.last_full = e.is_full();
                    if let SessionError::Connect { reason, .. } = &e {
                        slot.login_error = Some(code_first(reason));
                    }
                    if slot.last_full {
                        slot.backoff = FULL_RETRY;
                    } else {
                        slot.backoff =
                            (slot.backoff * 2).clamp(Duration::from_secs(1), max_backoff);
                    }
                    slot.next_attempt = Instant::now() + slot.backoff;
                    if self.share_unreachable && e.is_unreachable() {
                        self.unreachable_until = Some(slot.next_attempt);
                    } else {
                        self.unreachable_until = None;
                    }
                }
            }
        }
        if back {
            // The server answers logins again (restarted, reachable): the
            // other users' sessions are re-opened now, not at the end of
            // their own backoff, so no victim waits for its owner's session.
            for (u, other) in self.slots.iter_mut() {
                if u != user && other.session.is_none() {
                    other.next_attempt = Instant::now();
                }
            }
        }
        self.slots
            .get_mut(user)
            .and_then(|s| s.session.as_mut())
            .filter(|s| !s.is_stalled())
    }

    /// Ping one user's session. True when it answered; a timeout keeps the
    /// session (held, brought back in step when the server answers); only a
    /// closed connection is dropped.
    pub fn ping(&mut self, user: &str) -> bool {
        if self.is_lent(user) {
            // Busy sending KILLs: its thread reports what the server says.
            return true;
        }
        self.check(user);
        let Some(s) = self.get(user) else {
            return false;
        };
        match s.ping() {
            Ok(()) => true,
            Err(why) => {
                self.connection_failed(user, &why);
                false
            }
        }
    }

    /// A command on `user`'s session failed without a server error. The
    /// session is dropped only if the server closed it; otherwise it is held
    /// and brought back in step (a timeout on a live socket is a server that
    /// stalled or a slow reply, not a lost session).
    pub fn connection_failed(&mut self, user: &str, reason: &str) {
        let who = self.who();
        if let Some(s) = self.slots.get_mut(user).and_then(|s| s.session.as_mut()) {
            log::debug!("{who}: session of {user}: {reason}");
            s.suspect.set(true);
        }
        self.check(user);
    }

    /// Look at every held session: finish resyncs whose late replies have
    /// arrived, drop the ones the server closed. Never blocks long.
    pub fn poll(&mut self) {
        let users: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.session.as_ref().is_some_and(Session::is_stalled))
            .map(|(u, _)| u.clone())
            .collect();
        for u in users {
            self.check(&u);
        }
    }

    /// Another session just answered, so the server is alive: a session
    /// still waiting after `patience` may be stuck (its command hangs inside
    /// the server), not stalled with it. But a server that has just woken up
    /// from a long stall answers one session a moment before the others:
    /// each waiting session is looked at first, and given up only if it is
    /// still waiting `read_timeout` after the server was first seen
    /// answering others — its late reply would have come by then. Given up,
    /// it is re-opened (a new login, which a full server may refuse: so
    /// never for a mere stall).
    pub fn give_up_stalled(&mut self, patience: Duration) {
        // Late replies that came with the wake-up are read first.
        self.poll();
        let who = self.who();
        let grace = self.target.read_timeout;
        let now = Instant::now();
        for (user, slot) in self.slots.iter_mut() {
            let Some(s) = slot.session.as_ref() else {
                slot.others_answered = None;
                continue;
            };
            let Some(r) = s.resync.as_ref() else {
                slot.others_answered = None;
                continue;
            };
            if r.since.elapsed() < patience {
                continue;
            }
            let first = *slot.others_answered.get_or_insert(now);
            if now.duration_since(first) >= grace {
                slot.others_answered = None;
                log::warn!(
                    "{who}: session of {user} (id {}) has waited {} s while the server answers others; closing it, will reconnect",
                    s.conn_id,
                    r.since.elapsed().as_secs()
                );
                slot.session = None;
                slot.last_error = Some("stuck: no answer while the server answered others".into());
                slot.last_code = None;
                slot.next_attempt = Instant::now();
            }
        }
    }

    /// A probe got no answer: the server is stalled again, so an answer seen
    /// before starts no grace period (see [`Sessions::give_up_stalled`]).
    pub fn server_silent(&mut self) {
        for slot in self.slots.values_mut() {
            slot.others_answered = None;
        }
    }

    /// Give back the driver buffer pages of every idle session in step.
    pub fn trim(&self) {
        for s in self.slots.values().filter_map(|s| s.session.as_ref()) {
            s.trim();
        }
    }

    /// Since when the oldest held session has been waiting for the server.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|s| s.session.as_ref()?.resync.as_ref().map(|r| r.since))
            .min()
    }

    /// When something is due: a resync to look at, a login to retry.
    pub fn next_due(&self) -> Option<Instant> {
        let gate = self.unreachable_until;
        let retry = self
            .slots
            .values()
            .filter(|s| s.session.is_none() && s.lent.is_none() && (s.tried || gate.is_some()))
            .map(|s| gate.map_or(s.next_attempt, |g| s.next_attempt.max(g)))
            .min();
        let resync = self.stalled_since().map(|_| Instant::now() + RESYNC_POLL);
        retry.into_iter().chain(resync).min()
    }

    /// Why `user`'s last login failed, when it was refused (wrong password,
    /// locked account: not a passing failure) and none succeeded since.
    pub fn login_failure(&self, user: &str) -> Option<&str> {
        self.slots
            .get(user)
            .filter(|s| s.session.is_none() && !s.coming_back())
            .and_then(|s| s.login_error.as_deref())
    }

    /// `user`'s session is away only for a while (held and waiting, or
    /// being re-opened after a passing failure): a victim of this user is
    /// pending, not unkillable.
    pub fn coming_back(&self, user: &str) -> bool {
        self.slots
            .get(user)
            .is_none_or(|s| !s.ready() && s.coming_back())
    }

    /// Hand `user`'s session, open and in step, to a kill thread. `None`
    /// when there is none (or it is lent already).
    pub fn lend(&mut self, user: &str) -> Option<Session> {
        self.check(user);
        let slot = self.slots.get_mut(user)?;
        if !slot.ready() {
            return None;
        }
        let s = slot.session.take()?;
        slot.lent = Some(s.conn_id);
        Some(s)
    }

    /// A lent session back from its kill thread. `failed`: a command on it
    /// failed without a server error (see [`Sessions::connection_failed`]:
    /// dropped if the server closed it, else held and brought back in step).
    pub fn give_back(&mut self, s: Session, failed: Option<&str>) {
        let user = s.user.clone();
        let Some(slot) = self.slots.get_mut(&user) else {
            // The user left [db_auth] meanwhile: close it.
            return;
        };
        slot.lent = None;
        slot.session = Some(s);
        if let Some(reason) = failed {
            self.connection_failed(&user, reason);
        }
    }

    /// A lent session that will not come back (its kill thread could not
    /// start): `ensure` re-opens it.
    pub fn give_back_lost(&mut self, user: &str) {
        if let Some(slot) = self.slots.get_mut(user) {
            slot.lent = None;
            slot.last_error = Some("session lost with a kill thread that did not start".into());
            slot.next_attempt = Instant::now();
        }
    }

    /// `user`'s session is away in a kill thread.
    pub fn is_lent(&self, user: &str) -> bool {
        self.slots.get(user).is_some_and(|s| s.lent.is_some())
    }

    /// Stop holding `user`'s session (the user left `[db_auth]`).
    pub fn remove(&mut self, user: &str) {
        self.slots.remove(user);
    }

    /// `user`'s session if it is open and in step.
    pub fn get(&mut self, user: &str) -> Option<&mut Session> {
        self.check(user);
        self.slots
            .get_mut(user)
            .and_then(|s| s.session.as_mut())
            .filter(|s| !s.is_stalled())
    }

    /// Connection ids of every held session (also those waiting for the
    /// server): never victims.
    pub fn own_ids(&self) -> std::collections::HashSet<u64> {
        self.slots
            .values()
            .filter_map(|s| s.session.as_ref().map(|s| s.conn_id).or(s.lent))
            .collect()
    }

    /// The server thread id of every held session (also one waiting for the
    /// server), by user: what a DBA looks for in the processlist.
    pub fn held_ids(&self) -> BTreeMap<String, u64> {
        self.slots
            .iter()
            .filter_map(|(u, s)| {
                Some((u.clone(), s.session.as_ref().map(|s| s.conn_id).or(s.lent)?))
            })
            .collect()
    }

    /// Users with a live session in step.
    pub fn connected_users(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.ready() || s.lent.is_some())
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Users without a usable session, with the last error (or why a held
    /// one is waiting).
    pub fn errors(&self) -> Vec<(String, String)> {
        self.slots
            .iter()
            .filter(|(_, s)| !s.ready() && s.lent.is_none())
            .map(|(u, s)| {
                let why = match s.session.as_ref().and_then(|s| s.resync.as_ref()) {
                    Some(r) => format!(
                        "held (id {}), waiting for the server for {} s: {}",
                        s.session.as_ref().map_or(0, |s| s.conn_id),
                        r.since.elapsed().as_secs(),
                        r.reason
                    ),
                    None => s
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "not connected".into()),
                };
                (u.clone(), why)
            })
            .collect()
    }

    /// Users whose session may kill other users' threads.
    pub fn privileged_users(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.ready() && s.session.as_ref().is_some_and(|s| s.can_kill_others))
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
    fn codes_come_first() {
        assert_eq!(
            code_first("Access denied for user 'a'@'h' (using password: YES) (1045)"),
            "1045 Access denied for user 'a'@'h' (using password: YES)"
        );
        assert_eq!(
            code_first("Connection refused (os error 111)"),
            "Connection refused (os error 111)"
        );
    }

    /// A port nothing listens on (bound, then released).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        l.local_addr().expect("addr").port()
    }

    fn sessions_at(port: u16) -> Sessions {
        Sessions::new(Target {
            host: "127.0.0.1".into(),
            port,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(2),
        })
    }

    /// A refused login holds back the other users' logins until the next
    /// backoff step (one login per step for the whole instance), and the
    /// wake-up time is that step, not "now" for the users held back.
    #[test]
    fn unreachable_server_costs_one_login_per_step() {
        let mut s = sessions_at(closed_port()).share_unreachable();
        let pw = Secret::new("x");
        for u in ["a", "b", "c"] {
            assert!(s.ensure(u, &pw).is_none());
        }
        let tried: Vec<bool> = s.slots.values().map(|x| x.tried).collect();
        assert_eq!(tried, [true, false, false]);
        assert!(s.error_of("a").unwrap().contains("connection refused"));
        assert!(s.error_of("b").unwrap().contains("another user's login"));
        let step = s.slots["a"].next_attempt;
        assert_eq!(s.next_due(), Some(step));
        assert!(step > Instant::now());
    }

    /// One-shot runs (no `share_unreachable`) try every user and report each.
    #[test]
    fn one_shot_tries_every_user() {
        let mut s = sessions_at(closed_port());
        let pw = Secret::new("x");
        for u in ["a", "b"] {
            assert!(s.ensure(u, &pw).is_none());
        }
        assert!(s.slots.values().all(|x| x.tried));
        assert!(s.error_of("b").unwrap().contains("connection refused"));
    }

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
