//! One processlist row, as read from the server or from a dump file.

use serde::Serialize;

/// A row of `information_schema.PROCESSLIST` (or of a `SHOW FULL PROCESSLIST` dump).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ProcRow {
    pub id: u64,
    pub user: String,
    /// `host:port` as the server shows it (the port may be absent).
    pub host: String,
    pub db: Option<String>,
    pub command: String,
    /// Seconds in the current command.
    pub time: u64,
    /// Milliseconds in the current command, when the server tells (MariaDB `TIME_MS`).
    pub time_ms: Option<u64>,
    /// `time` may read up to 1 s more than has really passed: MySQL computes
    /// it as a difference of whole wall-clock seconds, so a statement shows
    /// `TIME=1` after 0.4 s. Set by the live reader for MySQL.
    #[serde(skip)]
    pub time_high: bool,
    pub state: Option<String>,
    pub info: Option<String>,
    /// Which statement the thread runs, where the server can tell: MariaDB's
    /// `QUERY_ID` (it grows with every statement a connection runs). Lets the
    /// re-check before a kill tell a long statement from its successor on a
    /// pooled connection, which text and time alone cannot (SPEC 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_id: Option<u64>,
}

impl ProcRow {
    /// Host without the client port (`10.0.0.1:51234` -> `10.0.0.1`).
    pub fn host_only(&self) -> &str {
        // An IPv6 host is shown as `[::1]:port` or bare; only strip a trailing `:digits`.
        match self.host.rsplit_once(':') {
            Some((h, p))
                if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') =>
            {
                h.trim_start_matches('[').trim_end_matches(']')
            }
            _ => &self.host,
        }
    }

    /// The text `k_include` / `k_exclude` are matched against: user, host, db,
    /// command, state and info joined by single spaces (missing fields are skipped).
    pub fn row_text(&self) -> String {
        let fields = [
            Some(self.user.as_str()),
            Some(self.host.as_str()),
            self.db.as_deref(),
            Some(self.command.as_str()),
            self.state.as_deref(),
            self.info.as_deref(),
        ];
        let parts: Vec<&str> = fields
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        parts.join(" ")
    }

    /// Time in milliseconds, using `time_ms` when the server gave it.
    pub fn elapsed_ms(&self) -> u64 {
        self.time_ms.unwrap_or(self.time.saturating_mul(1000))
    }

    /// Whole seconds this thread has certainly been in its command: what every
    /// time-based rule compares, so none fires early. `TIME_MS` when given;
    /// else `TIME`, less the second it may be high by on MySQL.
    pub fn secs_at_least(&self) -> u64 {
        self.ms_at_least() / 1000
    }

    /// Milliseconds this thread has certainly been in its command.
    pub fn ms_at_least(&self) -> u64 {
        match self.time_ms {
            Some(ms) => ms,
            None if self.time_high => self.time.saturating_sub(1).saturating_mul(1000),
            None => self.time.saturating_mul(1000),
        }
    }
}
