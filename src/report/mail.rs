//! Mail alerts (SPEC 4). Driven by the reporter thread only, so nothing here
//! may block for long: every SMTP connection has short timeouts, and a failing
//! server is retried with backoff instead of in a loop.
//!
//! Policy, per instance (`dbid`):
//! - The first event is mailed at once, as its own mail (subject =
//!   [`Event::summary`]).
//! - After a mail was delivered, the next one goes out no sooner than
//!   `mail_interval` later. Events arriving in between are collected and sent
//!   as one digest mail that says how many events it covers. Nothing is dropped
//!   silently.
//! - When SMTP is down or refusing, the pending events stay queued and are
//!   retried with a backoff shared by all instances (it is one server). An
//!   event that could not be delivered for [`RETRY_FOR`] is given up with one
//!   log line naming its snapshot files.
//! - At shutdown every pending mail gets one last attempt; after the first
//!   failure the rest are given up without trying (the server is down), each
//!   with a log line.
//!
//! The scheduling is the pure [`Outbox`] (times are passed in, so it is unit
//! tested without clocks); [`compose`] renders the text; [`Mailer`] does the I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;

use crate::config::{MailConfig, MailTls};
use crate::core::redact;
use crate::core::text::neutral;
use crate::report::event::Event;
use crate::report::output;

/// Connect and per-command I/O timeout of a normal send. Short, because the
/// reporter thread (snapshots of other events) waits while we talk to SMTP.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Shorter still for the last attempt at shutdown: `watch` must stop promptly.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an undeliverable event is retried before it is given up.
pub const RETRY_FOR: Duration = Duration::from_secs(600);
/// First retry delay after a failure; doubles per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5);
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A digest shows this many events in full; the rest get one line each (with
/// their snapshot file), so a long incident cannot produce a huge mail.
pub const DETAILED_EVENTS: usize = 20;
/// Characters of statement text per victim in a mail (the snapshot has all).
const INFO_WIDTH: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid address `{value}` in {key}: {reason}")]
    Address {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("mail_host is not set")]
    NoHost,
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("{server}: server does not offer STARTTLS (mail_tls=starttls); set mail_tls=none to send without encryption")]
    NoStartTls { server: String },
    #[error("{server}: no answer within {} s (timeout)", .after.as_secs())]
    Timeout { server: String, after: Duration },
    #[error("cannot use mail_ca_file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// The TLS handshake failed on the server's certificate; `problem` says
    /// why in the operator's terms (see [`certificate_problem`]).
    #[error("{server}: TLS certificate not accepted: {problem}")]
    Certificate { server: String, problem: String },
    #[error("{server}: {error}")]
    Smtp {
        server: String,
        #[source]
        error: lettre::transport::smtp::Error,
    },
}

// ---------------------------------------------------------------------------
// Scheduling (pure)

/// One instance's queue.
#[derive(Debug)]
struct Lane<T> {
    /// Pending items with the time each was queued.
    items: Vec<(Instant, T)>,
    /// When the last mail of this lane was delivered (rate limit).
    last_sent: Option<Instant>,
    /// When this lane was last tried (round robin between failing lanes).
    last_attempt: Option<Instant>,
    /// Set while this lane's last attempt failed.
    failing: bool,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane {
            items: Vec::new(),
            last_sent: None,
            last_attempt: None,
            failing: false,
        }
    }
}

/// What is waiting to be mailed, per lane (instance), and when it may go.
///
/// All methods take `now` instead of reading a clock so the policy is a pure
/// function of the call sequence.
#[derive(Debug)]
pub struct Outbox<T> {
    interval: Duration,
    retry_for: Duration,
    lanes: BTreeMap<String, Lane<T>>,
    /// Shared by all lanes: after a failure nothing is tried before this.
    next_try: Option<Instant>,
    /// Delay after the next failure.
    backoff: Duration,
}

impl<T> Outbox<T> {
    pub fn new(interval: Duration, retry_for: Duration) -> Outbox<T> {
        Outbox {
            interval,
            retry_for,
            lanes: BTreeMap::new(),
            next_try: None,
            backoff: BACKOFF_FIRST,
        }
    }

    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    pub fn push(&mut self, lane: &str, item: T, now: Instant) {
        self.lanes
            .entry(lane.to_string())
            .or_default()
            .items
            .push((now, item));
    }

    /// Number of pending items over all lanes.
    pub fn len(&self) -> usize {
        self.lanes.values().map(|l| l.items.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pending items of a lane, oldest first.
    pub fn items(&self, lane: &str) -> Vec<&T> {
        self.lanes
            .get(lane)
            .map(|l| l.items.iter().map(|(_, t)| t).collect())
            .unwrap_or_default()
    }

    /// When a lane with pending items may be mailed (ignoring the backoff).
    fn lane_ready_at(&self, lane: &Lane<T>) -> Option<Instant> {
        if lane.items.is_empty() {
            return None;
        }
        Some(match lane.last_sent {
            Some(t) => t + self.interval,
            // Never mailed: due as soon as its first item arrived.
            None => lane.items[0].0,
        })
    }

    /// The lane to mail now, if any: it has pending items, `interval` has
    /// passed since its last delivered mail, and SMTP is not in backoff.
    /// Among several, the least recently tried goes first, so a failing
    /// server does not starve one instance behind another.
    pub fn next_due(&self, now: Instant) -> Option<String> {
        if self.next_try.is_some_and(|t| now < t) {
            return None;
        }
        self.lanes
            .iter()
            .filter(|(_, l)| self.lane_ready_at(l).is_some_and(|t| t <= now))
            .min_by_key(|(_, l)| l.last_attempt)
            .map(|(name, _)| name.clone())
    }

    /// The earliest time something may be mailed, if anything is pending.
    pub fn next_due_at(&self) -> Option<Instant> {
        let ready = self
            .lanes
            .values()
            .filter_map(|l| self.lane_ready_at(l))
            .min()?;
        Some(match self.next_try {
            Some(t) => ready.max(t),
            None => ready,
        })
    }

    /// The lane's pending items were delivered at `now`: they leave the queue
    /// and the lane's interval starts; the shared backoff is reset.
    pub fn delivered(&mut self, lane: &str, now: Instant) {
        if let Some(l) = self.lanes.get_mut(lane) {
            l.items.clear();
            l.last_sent = Some(now);
            l.last_attempt = Some(now);
            l.failing = false;
        }
        self.next_try = None;
        self.backoff = BACKOFF_FIRST;
    }

    /// Sending the lane's items failed at `now`. Returns the delay before the
    /// next attempt (of any lane); the delay doubles up to [`BACKOFF_MAX`].
    pub fn failed(&mut self, lane: &str, now: Instant) -> Duration {
        if let Some(l) = self.lanes.get_mut(lane) {
            l.last_attempt = Some(now);
            l.failing = true;
        }
        let delay = self.backoff;
        self.next_try = Some(now + delay);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        delay
    }

    /// Items of failing lanes that have waited `retry_for` or longer: they
    /// leave the queue and are returned so the caller can log them. Items of
    /// lanes that are only waiting for their interval never expire.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, Vec<T>)> {
        let retry_for = self.retry_for;
        let mut out = Vec::new();
        for (name, lane) in self.lanes.iter_mut() {
            if !lane.failing {
                continue;
            }
            let (old, young): (Vec<_>, Vec<_>) = std::mem::take(&mut lane.items)
                .into_iter()
                .partition(|(t, _)| now.saturating_duration_since(*t) >= retry_for);
            lane.items = young;
            if lane.items.is_empty() {
                lane.failing = false;
            }
            if !old.is_empty() {
                out.push((name.clone(), old.into_iter().map(|(_, t)| t).collect()));
            }
        }
        out
    }

    /// Everything pending, lane by lane; the queue is empty afterwards.
    pub fn drain(&mut self) -> Vec<(String, Vec<T>)> {
        let mut out = Vec::new();
        for (name, lane) in self.lanes.iter_mut() {
            lane.failing = false;
            if !lane.items.is_empty() {
                let items = std::mem::take(&mut lane.items);
                out.push((name.clone(), items.into_iter().map(|(_, t)| t).collect()));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Composing (pure)

/// What a mail needs to know about one event, rendered when it arrives (the
/// event itself, with its snapshot, is not kept).
#[derive(Debug, Clone)]
pub struct MailItem {
    pub time: DateTime<Local>,
    pub dbid: String,
    pub addr: String,
    pub summary: String,
    pub threads: usize,
    pub killed: usize,
    pub failed: usize,
    pub dry_run: bool,
    /// Victims table and follow-ups, statement text redacted.
    pub details: String,
    pub snapshot: Option<PathBuf>,
}

impl MailItem {
    pub fn from_event(e: &Event, snapshot: Option<&Path>) -> MailItem {
        let mut details = String::new();
        if e.outcomes.is_empty() {
            details.push_str("(no victims in this event)\n");
        } else {
            // outcomes_table shows statement text through output::info_text,
            // which redacts password literals.
            details.push_str(&output::outcomes_table(&e.outcomes, INFO_WIDTH));
        }
        if !e.followups.is_empty() {
            details.push_str("\nfollow-ups on earlier kills:\n");
            for f in &e.followups {
                // Redacted too: a detail may quote the statement.
                details.push_str(&format!(
                    "  thread {} ({}): {} - {}\n",
                    f.id,
                    neutral(&f.user),
                    neutral(&f.outcome),
                    neutral(&redact::sql(&f.detail))
                ));
            }
        }
        MailItem {
            time: e.time,
            dbid: e.dbid.clone(),
            addr: e.addr.clone(),
            summary: e.summary(),
            threads: e.outcomes.len(),
            killed: e.killed(),
            failed: e.failed(),
            dry_run: e.dry_run,
            details,
            snapshot: snapshot.map(Path::to_path_buf),
        }
    }

    fn snapshot_text(&self) -> String {
        match &self.snapshot {
            Some(p) => p.display().to_string(),
            None => "(could not be written; see the mysqk log)".into(),
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn stamp(t: &DateTime<Local>) -> String {
    crate::report::clock::format(*t, "%Y-%m-%d %H:%M:%S %z")
}

/// Subject and plain-text body of one mail for `items` of one instance
/// (oldest first). One item: the event's own mail. Several: a digest.
pub fn compose(items: &[&MailItem], interval: Duration, from_host: &str) -> (String, String) {
    let Some(first) = items.first() else {
        return (String::new(), String::new());
    };
    let last = items[items.len() - 1];
    let mut body = format!(
        "mysqk on {from_host}, instance {} ({})\n\n",
        first.dbid, first.addr
    );
    if items.len() == 1 {
        let e = first;
        body.push_str(&format!("time: {}\n", stamp(&e.time)));
        body.push_str(&format!("{}\n\n", e.summary));
        body.push_str(&e.details);
        body.push_str(&format!("\nsnapshot: {}\n", e.snapshot_text()));
        return (e.summary.clone(), body);
    }

    let n = items.len();
    let threads: usize = items.iter().map(|i| i.threads).sum();
    let killed: usize = items.iter().map(|i| i.killed).sum();
    let failed: usize = items.iter().map(|i| i.failed).sum();
    let dry: usize = items.iter().filter(|i| i.dry_run).map(|i| i.threads).sum();
    let mut what = format!("{} matched", plural(threads, "thread"));
    if dry == threads {
        what.push_str(" (DRY RUN, nothing killed)");
    } else {
        what.push_str(&format!(", {killed} killed"));
        if dry > 0 {
            what.push_str(&format!(", {dry} in dry run"));
        }
    }
    if failed > 0 {
        what.push_str(&format!(", {failed} failed"));
    }
    let subject = format!(
        "[mysqk] {} ({}): digest of {n} events, {what}",
        first.dbid, first.addr
    );
    body.push_str(&format!(
        "This mail is a digest of {n} events, from {} to {}: {what}.\n\
         At most one mail per instance is sent every {} s (mail_interval); \
         events in between are collected into the next mail.\n",
        stamp(&first.time),
        stamp(&last.time),
        interval.as_secs()
    ));
    for (i, e) in items.iter().enumerate().take(DETAILED_EVENTS) {
        body.push_str(&format!(
            "\n=== event {} of {n}, {} ===\n{}\n\n",
            i + 1,
            stamp(&e.time),
            e.summary
        ));
        body.push_str(&e.details);
        body.push_str(&format!("snapshot: {}\n", e.snapshot_text()));
    }
    if n > DETAILED_EVENTS {
        body.push_str(&format!(
            "\n=== events {}-{n}, one line each (details in their snapshot files) ===\n",
            DETAILED_EVENTS + 1
        ));
        for e in &items[DETAILED_EVENTS..] {
            body.push_str(&format!(
                "{}  {}  snapshot: {}\n",
                stamp(&e.time),
                e.summary,
                e.snapshot_text()
            ));
        }
    }
    (subject, body)
}

/// Snapshot files of given-up items, for the log line (at most a few).
fn snapshot_list(items: &[MailItem]) -> String {
    const SHOWN: usize = 5;
    let paths: Vec<String> = items
        .iter()
        .take(SHOWN)
        .map(MailItem::snapshot_text)
        .collect();
    let mut s = paths.join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

// ---------------------------------------------------------------------------
// Sending

/// The mail side of the reporter: queue, rate limit, digest, send, retry.
pub struct Mailer {
    cfg: MailConfig,
    outbox: Outbox<MailItem>,
    hello: ClientId,
    /// Logged once per process: credentials sent over an unencrypted link.
    warned_plain_auth: bool,
}

impl Mailer {
    pub fn new(cfg: &MailConfig) -> Mailer {
        Mailer {
            cfg: cfg.clone(),
            outbox: Outbox::new(cfg.interval, RETRY_FOR),
            hello: ClientId::default(),
            warned_plain_auth: false,
        }
    }

    pub fn reconfigure(&mut self, cfg: &MailConfig) {
        self.cfg = cfg.clone();
        self.outbox.set_interval(cfg.interval);
        if !cfg.enabled() {
            for (dbid, items) in self.outbox.drain() {
                log::warn!(
                    "{dbid}: mail is off after a config reload; {} not mailed (snapshots: {})",
                    plural(items.len(), "event"),
                    snapshot_list(&items)
                );
            }
        }
    }

    /// Pending events (for tests and the status file).
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    /// Called once per event, after its snapshot was written.
    pub fn on_event(&mut self, e: &Event, snapshot: Option<&Path>) {
        if !self.cfg.enabled() {
            return;
        }
        self.outbox
            .push(&e.dbid, MailItem::from_event(e, snapshot), Instant::now());
        self.pump();
    }

    /// Called about twice a second: send due digests and retries.
    pub fn tick(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        self.expire(Instant::now());
        self.pump();
    }

    /// Called once when the reporter stops: one last attempt for each pending
    /// mail, ignoring interval and backoff; given up after that.
    pub fn shutdown(&mut self) {
        let lanes = self.outbox.drain();
        if lanes.is_empty() || !self.cfg.enabled() {
            return;
        }
        let mut down: Option<String> = None;
        for (dbid, items) in lanes {
            let n = plural(items.len(), "event");
            if let Some(why) = &down {
                log::error!(
                    "{dbid}: mail not sent at shutdown, SMTP is failing ({why}); giving up on {n} (snapshots: {})",
                    snapshot_list(&items)
                );
                continue;
            }
            let refs: Vec<&MailItem> = items.iter().collect();
            match self.send(&refs, SHUTDOWN_TIMEOUT) {
                Ok(()) => log::info!(
                    "{dbid}: mail sent to {} at shutdown ({n})",
                    self.cfg.receivers.join(", ")
                ),
                Err(e) => {
                    log::error!(
                        "{dbid}: last mail attempt at shutdown failed: {e}; giving up on {n} (snapshots: {})",
                        snapshot_list(&items)
                    );
                    down = Some(e.to_string());
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        for (dbid, items) in self.outbox.expire(now) {
            log::error!(
                "{dbid}: giving up on mail after {} s of SMTP failures; {} not mailed (snapshots: {})",
                RETRY_FOR.as_secs(),
                plural(items.len(), "event"),
                snapshot_list(&items)
            );
        }
    }

    /// Send whatever is due now; stop at the first failure (the backoff
    /// then holds every lane back).
    fn pump(&mut self) {
        while let Some(lane) = self.outbox.next_due(Instant::now()) {
            let items: Vec<MailItem> = self.outbox.items(&lane).into_iter().cloned().collect();
            let refs: Vec<&MailItem> = items.iter().collect();
            let result = self.send(&refs, SMTP_TIMEOUT);
            let now = Instant::now();
            match result {
                Ok(()) => {
                    self.outbox.delivered(&lane, now);
                    log::info!(
                        "{lane}: mail sent to {} ({})",
                        self.cfg.receivers.join(", "),
                        plural(items.len(), "event")
                    );
                }
                Err(e) => {
                    let delay = self.outbox.failed(&lane, now);
                    log::warn!(
                        "{lane}: mail failed: {e}; {} queued, retrying in {} s (for up to {} s)",
                        plural(items.len(), "event"),
                        delay.as_secs(),
                        RETRY_FOR.as_secs()
                    );
                    self.expire(now);
                    return;
                }
            }
        }
    }

    fn host_name(&self) -> String {
        match &self.hello {
            ClientId::Domain(d) => d.clone(),
            other => other.to_string(),
        }
    }

    /// `mail_from`, else `mail_user` when it is an address, else mysqk@<host>.
    fn from(&self) -> Result<Mailbox, MailError> {
        if let Some(f) = &self.cfg.from {
            return f.parse().map_err(|e| MailError::Address {
                key: "mail_from",
                value: f.clone(),
                reason: format!("{e}"),
            });
        }
        if let Some(m) = self.cfg.user.as_deref().and_then(|u| u.parse().ok()) {
            return Ok(m);
        }
        format!("mysqk@{}", self.host_name())
            .parse()
            .or_else(|_| "mysqk@localhost".parse())
            .map_err(|e| MailError::Build(format!("{e}")))
    }

    fn message(&self, items: &[&MailItem]) -> Result<Message, MailError> {
        let (subject, body) = compose(items, self.cfg.interval, &self.host_name());
        // message_id(None): a generated `<random@host>` id, which some
        // relays and spam filters expect.
        let mut b = Message::builder()
            .from(self.from()?)
            .subject(subject)
            .message_id(None);
        for r in &self.cfg.receivers {
            let to: Mailbox = r.parse().map_err(|e| MailError::Address {
                key: "mail_receiver",
                value: r.clone(),
                reason: format!("{e}"),
            })?;
            b = b.to(to);
        }
        // Plain UTF-8 text; lettre picks quoted-printable or base64 for
        // non-ASCII SQL (Chinese comments), so any SMTP server carries it.
        b.header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))
    }

    fn send(&mut self, items: &[&MailItem], timeout: Duration) -> Result<(), MailError> {
        let msg = self.message(items)?;
        let host = self.cfg.host.clone().ok_or(MailError::NoHost)?;
        let port = self.cfg.port.unwrap_or(match self.cfg.tls {
            MailTls::Tls => 465,
            _ => 25,
        });
        let server = format!("{host}:{port}");
        let ca_file = self.cfg.ca_file.clone();
        let peer = Peer {
            server: &server,
            host: &host,
            ca_file: ca_file.as_deref(),
            timeout,
        };
        let smtp = |error| peer.error(error);
        let tls = match self.cfg.tls {
            MailTls::None => None,
            // Opportunistic must not fail where plain would work; a broken
            // mail_ca_file is still reported, as the operator asked for it.
            MailTls::Opportunistic if ca_file.is_none() => tls_parameters(&peer).ok(),
            MailTls::Opportunistic | MailTls::StartTls | MailTls::Tls => {
                Some(tls_parameters(&peer)?)
            }
        };
        let wrapper = match self.cfg.tls {
            MailTls::Tls => tls.as_ref(),
            _ => None,
        };
        log::debug!(
            "mail: connecting to {server} (mail_tls {:?}, login {})",
            self.cfg.tls,
            self.cfg.user.as_deref().unwrap_or("none")
        );
        let mut conn = SmtpConnection::connect(
            (host.as_str(), port),
            Some(timeout),
            &self.hello,
            wrapper,
            None,
        )
        .map_err(smtp)?;
        let result = self.converse(&mut conn, &msg, tls.as_ref(), &peer);
        match &result {
            Ok(()) => {
                // The message is accepted once DATA is answered; a failing
                // QUIT changes nothing.
                let _ = conn.quit();
            }
            Err(_) => conn.abort(),
        }
        result
    }

    fn converse(
        &mut self,
        conn: &mut SmtpConnection,
        msg: &Message,
        tls: Option<&TlsParameters>,
        peer: &Peer,
    ) -> Result<(), MailError> {
        let server = peer.server;
        let smtp = |error| peer.error(error);
        match (self.cfg.tls, tls) {
            (MailTls::StartTls, Some(p)) => {
                if !conn.can_starttls() {
                    return Err(MailError::NoStartTls {
                        server: server.to_string(),
                    });
                }
                conn.starttls(p, &self.hello).map_err(smtp)?;
            }
            (MailTls::Opportunistic, Some(p)) if conn.can_starttls() => {
                conn.starttls(p, &self.hello).map_err(smtp)?;
            }
            _ => {}
        }
        let pass = self.cfg.pass.as_ref().filter(|p| !p.is_empty());
        if let (Some(user), Some(pass)) = (self.cfg.user.as_ref(), pass) {
            if !conn.is_encrypted() && !self.warned_plain_auth {
                self.warned_plain_auth = true;
                let why = if self.cfg.tls == MailTls::None {
                    "mail_tls=none"
                } else {
                    "the server offers no STARTTLS"
                };
                log::warn!(
                    "mail: logging in to {server} without TLS ({why}); \
                     set mail_tls=starttls or mail_tls=tls to require encryption"
                );
            }
            let creds = Credentials::new(user.clone(), pass.expose().to_string());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                .map_err(smtp)?;
        }
        conn.send(msg.envelope(), &msg.formatted()).map_err(smtp)?;
        Ok(())
    }
}

/// What an SMTP error message needs to say where and why it failed.
struct Peer<'a> {
    /// `host:port`, as the log names it.
    server: &'a str,
    /// The name the certificate must be valid for (`mail_host`).
    host: &'a str,
    ca_file: Option<&'a Path>,
    timeout: Duration,
}

impl Peer<'_> {
    /// A socket timeout reads "os error 11" (EAGAIN) in lettre's text, and a
    /// refused certificate "invalid peer certificate: UnknownIssuer": say
    /// what they mean.
    fn error(&self, error: lettre::transport::smtp::Error) -> MailError {
        let mut source = std::error::Error::source(&error);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    return MailError::Timeout {
                        server: self.server.to_string(),
                        after: self.timeout,
                    };
                }
                // rustls reports a failed handshake as an io::Error around
                // its own error; io::Error::source skips that, get_ref does not.
                let tls = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
                if let Some(rustls::Error::InvalidCertificate(c)) = tls {
                    return MailError::Certificate {
                        server: self.server.to_string(),
                        problem: certificate_problem(c, self.host, self.ca_file),
                    };
                }
            }
            source = e.source();
        }
        MailError::Smtp {
            server: self.server.to_string(),
            error,
        }
    }
}

/// TLS settings for one connection: the built-in roots (lettre's default
/// with `rustls-tls`: Mozilla's set from `webpki-roots`) plus the CAs in
/// `mail_ca_file`, read at every connection so a renewed file is used
/// without a reload. The certificate must also be valid for `mail_host`.
fn tls_parameters(peer: &Peer) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(peer.host.to_string());
    if let Some(path) = peer.ca_file {
        let ca_err = |reason: String| MailError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| ca_err(e.to_string()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| peer.error(e))
}

/// A refused server certificate in the operator's terms: which check failed
/// and which setting would change it.
fn certificate_problem(e: &rustls::CertificateError, host: &str, ca_file: Option<&Path>) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => match ca_file {
            None => "it is not signed by a CA mysqk trusts (the built-in Mozilla roots); \
                     for a private CA set mail_ca_file to its PEM file"
                .to_string(),
            Some(p) => format!(
                "it is not signed by a CA mysqk trusts (the built-in Mozilla roots and \
                 mail_ca_file {}); check that mail_ca_file holds the CA that signed the \
                 server's certificate",
                p.display()
            ),
        },
        C::NotValidForName | C::NotValidForNameContext { .. } => format!(
            "it is not valid for `{host}`; mail_host must be a name (or IP address) \
             the certificate lists"
        ),
        C::Expired | C::ExpiredContext { .. } => "it has expired".to_string(),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "it is not valid yet (check this host's clock)".to_string()
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_certificates_name_the_check_and_the_setting() {
        use rustls::CertificateError as C;
        let ca = Path::new("/etc/mysqk/ca.pem");
        let p = certificate_problem(&C::UnknownIssuer, "smtp.corp", None);
        assert!(
            p.contains("built-in Mozilla roots") && p.contains("set mail_ca_file"),
            "{p}"
        );
        let p = certificate_problem(&C::UnknownIssuer, "smtp.corp", Some(ca));
        assert!(p.contains("and mail_ca_file /etc/mysqk/ca.pem"), "{p}");
        let p = certificate_problem(&C::NotValidForName, "smtp.corp", Some(ca));
        assert!(
            p.contains("not valid for `smtp.corp`") && p.contains("mail_host"),
            "{p}"
        );
        assert_eq!(
            certificate_problem(&C::Expired, "h", None),
            "it has expired"
        );
        assert!(certificate_problem(&C::NotValidYet, "h", None).contains("clock"));
        assert_eq!(
            certificate_problem(&C::BadSignature, "h", None),
            "BadSignature"
        );
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ob() -> (Outbox<u32>, Instant) {
        (Outbox::new(secs(60), secs(600)), Instant::now())
    }

    #[test]
    fn first_event_goes_at_once_then_one_mail_per_interval() {
        let (mut o, t0) = ob();
        o.push("a", 1, t0);
        assert_eq!(o.next_due(t0).as_deref(), Some("a"));
        o.delivered("a", t0);
        assert!(o.is_empty());

        // Two more events inside the interval: held back, folded together.
        o.push("a", 2, t0 + secs(5));
        o.push("a", 3, t0 + secs(30));
        assert_eq!(o.next_due(t0 + secs(30)), None);
        assert_eq!(o.next_due(t0 + secs(59)), None);
        assert_eq!(o.next_due_at(), Some(t0 + secs(60)));
        assert_eq!(o.next_due(t0 + secs(60)).as_deref(), Some("a"));
        assert_eq!(o.items("a"), vec![&2, &3]);
        o.delivered("a", t0 + secs(60));

        // Quiet for longer than the interval: the next event goes at once.
        o.push("a", 4, t0 + secs(500));
        assert_eq!(o.next_due(t0 + secs(500)).as_deref(), Some("a"));
    }

    #[test]
    fn instances_are_limited_separately() {
        let (mut o, t0) = ob();
        o.push("a", 1, t0);
        o.delivered("a", t0);
        o.push("a", 2, t0 + secs(1));
        o.push("b", 3, t0 + secs(1));
        assert_eq!(o.next_due(t0 + secs(1)).as_deref(), Some("b"));
        o.delivered("b", t0 + secs(1));
        assert_eq!(o.next_due(t0 + secs(2)), None);
        assert_eq!(o.next_due(t0 + secs(60)).as_deref(), Some("a"));
    }

    #[test]
    fn zero_interval_sends_every_event() {
        let mut o = Outbox::new(Duration::ZERO, secs(600));
        let t0 = Instant::now();
        for i in 0u32..3 {
            o.push("a", i, t0 + secs(u64::from(i)));
            assert_eq!(o.next_due(t0 + secs(u64::from(i))).as_deref(), Some("a"));
            assert_eq!(o.items("a"), vec![&i]);
            o.delivered("a", t0 + secs(u64::from(i)));
        }
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_cap() {
        let (mut o, t0) = ob();
        o.push("a", 1, t0);
        let mut t = t0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            assert_eq!(o.next_due(t).as_deref(), Some("a"));
            let d = o.failed("a", t);
            delays.push(d.as_secs());
            assert_eq!(o.next_due(t + d - Duration::from_millis(1)), None);
            t += d;
        }
        assert_eq!(delays, vec![5, 10, 20, 40, 60, 60]);
        // Success resets the backoff; the rate limit starts at the delivery.
        o.delivered("a", t);
        o.push("a", 2, t);
        assert_eq!(o.next_due(t + secs(59)), None);
        assert_eq!(o.next_due(t + secs(60)).as_deref(), Some("a"));
        assert_eq!(o.failed("a", t + secs(60)), secs(5));
    }

    #[test]
    fn events_queued_while_failing_are_kept_and_sent_together() {
        let (mut o, t0) = ob();
        o.push("a", 1, t0);
        let d = o.failed("a", t0);
        o.push("a", 2, t0 + secs(1));
        assert_eq!(o.next_due(t0 + secs(1)), None, "backoff holds");
        assert_eq!(o.next_due(t0 + d).as_deref(), Some("a"));
        assert_eq!(o.items("a"), vec![&1, &2]);
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn undeliverable_items_expire_after_retry_for_and_not_before() {
        let (mut o, t0) = ob();
        o.push("a", 1, t0);
        o.failed("a", t0);
        o.push("a", 2, t0 + secs(300));
        assert!(o.expire(t0 + secs(599)).is_empty());
        let gone = o.expire(t0 + secs(600));
        assert_eq!(gone, vec![("a".to_string(), vec![1])]);
        // The younger item stays until its own time is up.
        assert_eq!(o.items("a"), vec![&2]);
        assert!(o.expire(t0 + secs(899)).is_empty());
        assert_eq!(o.expire(t0 + secs(900)), vec![("a".to_string(), vec![2])]);
        assert!(o.is_empty());
    }

    #[test]
    fn items_waiting_only_for_the_interval_never_expire() {
        let mut o = Outbox::new(secs(3600), secs(600));
        let t0 = Instant::now();
        o.push("a", 1, t0);
        o.delivered("a", t0);
        o.push("a", 2, t0 + secs(1));
        assert!(o.expire(t0 + secs(3000)).is_empty());
        assert_eq!(o.next_due(t0 + secs(3600)).as_deref(), Some("a"));
    }

    #[test]
    fn failing_lanes_take_turns() {
        let (mut o, t0) = ob();
        o.push("a", 1, t0);
        o.push("b", 2, t0);
        let first = o.next_due(t0).expect("due");
        let d = o.failed(&first, t0);
        let second = o.next_due(t0 + d).expect("due");
        assert_ne!(first, second, "the other instance gets the next try");
        let d2 = o.failed(&second, t0 + d);
        assert_eq!(o.next_due(t0 + d + d2), Some(first));
    }

    #[test]
    fn drain_returns_everything() {
        let (mut o, t0) = ob();
        o.push("a", 1, t0);
        o.push("b", 2, t0);
        o.push("a", 3, t0);
        o.failed("a", t0);
        assert_eq!(
            o.drain(),
            vec![("a".to_string(), vec![1, 3]), ("b".to_string(), vec![2])]
        );
        assert!(o.is_empty());
        assert_eq!(o.next_due_at(), None);
    }

    fn item(n: usize, dry: bool) -> MailItem {
        MailItem {
            time: Local::now(),
            dbid: "crm0".into(),
            addr: "10.0.0.1:3306".into(),
            summary: format!("[mysqk] crm0 (10.0.0.1:3306): summary {n}"),
            threads: 2,
            killed: if dry { 0 } else { 2 },
            failed: 0,
            dry_run: dry,
            details: format!("TABLE {n} 中文\n"),
            snapshot: Some(PathBuf::from(format!("/snap/crm0/{n}.txt"))),
        }
    }

    #[test]
    fn single_event_mail_uses_the_event_summary() {
        let i = item(1, false);
        let (subject, body) = compose(&[&i], secs(60), "dbhost");
        assert_eq!(subject, i.summary);
        assert!(body.contains("mysqk on dbhost, instance crm0 (10.0.0.1:3306)"));
        assert!(body.contains("TABLE 1 中文"));
        assert!(body.contains("snapshot: /snap/crm0/1.txt"));
        assert!(!body.contains("digest"));
    }

    #[test]
    fn digest_says_how_many_events_it_covers() {
        let items: Vec<MailItem> = (1..=3).map(|n| item(n, n == 2)).collect();
        let refs: Vec<&MailItem> = items.iter().collect();
        let (subject, body) = compose(&refs, secs(60), "h");
        assert_eq!(
            subject,
            "[mysqk] crm0 (10.0.0.1:3306): digest of 3 events, 6 threads matched, 4 killed, 2 in dry run"
        );
        assert!(body.contains("digest of 3 events"), "{body}");
        assert!(body.contains("every 60 s (mail_interval)"), "{body}");
        for n in 1..=3 {
            assert!(body.contains(&format!("=== event {n} of 3")), "{body}");
            assert!(body.contains(&format!("summary {n}")), "{body}");
            assert!(body.contains(&format!("/snap/crm0/{n}.txt")), "{body}");
        }

        let dry: Vec<MailItem> = (1..=2).map(|n| item(n, true)).collect();
        let refs: Vec<&MailItem> = dry.iter().collect();
        let (subject, _) = compose(&refs, secs(60), "h");
        assert!(
            subject.ends_with("digest of 2 events, 4 threads matched (DRY RUN, nothing killed)"),
            "{subject}"
        );
    }

    #[test]
    fn long_digest_lists_every_event_but_details_only_some() {
        let items: Vec<MailItem> = (1..=30).map(|n| item(n, false)).collect();
        let refs: Vec<&MailItem> = items.iter().collect();
        let (subject, body) = compose(&refs, secs(60), "h");
        assert!(subject.contains("digest of 30 events"));
        assert_eq!(body.matches("TABLE ").count(), DETAILED_EVENTS);
        for n in 1..=30 {
            assert!(body.contains(&format!("/snap/crm0/{n}.txt")), "event {n}");
        }
        assert!(body.contains("events 21-30, one line each"), "{body}");
    }

    #[test]
    fn missing_snapshot_is_said() {
        let mut i = item(1, false);
        i.snapshot = None;
        let (_, body) = compose(&[&i], secs(60), "h");
        assert!(body.contains("snapshot: (could not be written"), "{body}");
    }
}
