//! Output for machines: one JSON object per matched thread (`--json` on
//! `kill` and `match`, one per line for log shippers), and the event document
//! the `on_kill_command` hook reads on stdin.
//!
//! Statement text is redacted ([`redact::sql`]) and cut to [`INFO_MAX`]
//! characters: a multi-megabyte `INSERT` must not become a multi-megabyte
//! log line. The fingerprint is taken from the full statement (it has no
//! literals, so no password survives it) and cut the same way.

use chrono::{DateTime, Local, SecondsFormat};
use serde::Serialize;

use crate::core::fingerprint::fingerprint;
use crate::core::matcher::{Reason, Victim};
use crate::core::redact;
use crate::core::text::neutral;
use crate::report::event::{Event, Followup};
use crate::server::killer::{Action, KillResult, Outcome};

/// Longest `info` / `fingerprint` value written, in characters.
pub const INFO_MAX: usize = 4096;

/// What happened to a matched thread, as a stable token.
pub fn result_token(r: &KillResult) -> &'static str {
    match r {
        KillResult::Killed { .. } => "killed",
        KillResult::Gone => "gone",
        KillResult::DryRun => "dry-run",
        KillResult::NoSession { .. } => "no-session",
        KillResult::Pending { .. } => "pending",
        KillResult::LoginFailed { .. } => "login-failed",
        KillResult::Failed { .. } => "failed",
        KillResult::ChangedBeforeKill { .. } => "changed-before-kill",
        KillResult::Unanswered { .. } => "unanswered",
    }
}

fn action_token(a: Action) -> &'static str {
    match a {
        Action::KillConnection => "kill-connection",
        Action::KillQuery => "kill-query",
    }
}

/// One matched thread. Field names are the contract with log shippers.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadRecord {
    /// When mysqk matched it (RFC 3339, local time with offset).
    pub ts: String,
    pub instance: String,
    pub id: u64,
    pub user: String,
    pub host: String,
    pub db: Option<String>,
    pub command: String,
    /// Seconds in the current command.
    pub time: u64,
    pub state: Option<String>,
    /// Redacted, cut to [`INFO_MAX`] characters; null when the thread runs nothing.
    pub info: Option<String>,
    /// Every reason in one human sentence (as in the table).
    pub reason: String,
    /// The same reasons, structured.
    pub reasons: Vec<Reason>,
    /// `kill-connection` | `kill-query`.
    pub action: &'static str,
    /// `killed` | `gone` | `dry-run` | `no-session` | `failed` | `offline` (`mysqk match`).
    pub result: &'static str,
    /// The result as a sentence, e.g. `killed (as app1)` or the server's error.
    pub detail: String,
    pub dry_run: bool,
    /// `pt-fingerprint` style; null when the thread runs nothing.
    pub fingerprint: Option<String>,
}

fn cut_field(s: &str) -> String {
    if s.chars().count() <= INFO_MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(INFO_MAX - 1).collect();
        t.push('…');
        t
    }
}

impl ThreadRecord {
    fn new(
        ts: DateTime<Local>,
        instance: &str,
        v: &Victim,
        action: Action,
        result: &'static str,
        detail: String,
        dry_run: bool,
    ) -> ThreadRecord {
        let r = &v.row;
        ThreadRecord {
            ts: crate::report::clock::rfc3339(ts, SecondsFormat::Secs),
            instance: instance.to_string(),
            id: r.id,
            // Neutralised like every other output: a JSON string may carry
            // DEL and C1 raw, and consumers print these values.
            user: neutral(&r.user),
            host: neutral(&r.host),
            db: r.db.as_deref().map(neutral),
            command: neutral(&r.command),
            time: r.time,
            state: r.state.as_deref().map(neutral),
            info: r
                .info
                .as_deref()
                .map(|i| cut_field(&neutral(&redact::sql(i)))),
            reason: neutral(&v.reason_text()),
            reasons: v.reasons.clone(),
            action: action_token(action),
            result,
            detail: neutral(&detail),
            dry_run,
            fingerprint: r
                .info
                .as_deref()
                .filter(|i| !i.trim().is_empty())
                // Of the redacted text: a literal cut off by the server's
                // truncation is not one the fingerprint can replace.
                .map(|i| cut_field(&neutral(&fingerprint(&redact::sql(i))))),
        }
    }

    /// A thread `mysqk kill` (or `watch`) acted on.
    pub fn from_outcome(
        ts: DateTime<Local>,
        instance: &str,
        o: &Outcome,
        dry_run: bool,
    ) -> ThreadRecord {
        ThreadRecord::new(
            ts,
            instance,
            &o.victim,
            o.action,
            result_token(&o.result),
            o.result.text(),
            dry_run || o.result == KillResult::DryRun,
        )
    }

    /// A thread `mysqk match` would kill (nothing was sent anywhere).
    pub fn offline(
        ts: DateTime<Local>,
        instance: &str,
        v: &Victim,
        action: Action,
    ) -> ThreadRecord {
        ThreadRecord::new(
            ts,
            instance,
            v,
            action,
            "offline",
            "offline match: nothing was killed".into(),
            true,
        )
    }

    /// One line of JSON, without the newline.
    pub fn to_line(&self) -> String {
        // Serializing plain strings and numbers cannot fail; keep a valid
        // object on the impossible path rather than panic.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"instance\":{},\"id\":{},\"error\":{}}}",
                serde_json::Value::from(self.instance.as_str()),
                self.id,
                serde_json::Value::from(e.to_string())
            )
        })
    }
}

/// The document a hook gets on stdin: the event and every thread in it.
#[derive(Debug, Serialize)]
pub struct EventDoc<'a> {
    pub instance: &'a str,
    pub addr: &'a str,
    pub time: String,
    pub dry_run: bool,
    /// The mail subject / log summary line.
    pub summary: String,
    pub matched: usize,
    pub killed: usize,
    pub failed: usize,
    /// Where the reporter wrote the snapshot; null if it could not.
    pub snapshot: Option<String>,
    pub threads: Vec<ThreadRecord>,
    pub followups: Vec<Followup>,
}

/// The hook's stdin for `e`.
pub fn event_json(e: &Event, snapshot: Option<&std::path::Path>) -> String {
    let doc = EventDoc {
        instance: &e.dbid,
        addr: &e.addr,
        time: crate::report::clock::rfc3339(e.time, SecondsFormat::Secs),
        dry_run: e.dry_run,
        summary: e.summary(),
        matched: e.outcomes.len(),
        killed: e.killed(),
        failed: e.failed(),
        snapshot: snapshot.map(|p| p.display().to_string()),
        threads: e
            .outcomes
            .iter()
            .map(|o| ThreadRecord::from_outcome(e.time, &e.dbid, o, e.dry_run))
            .collect(),
        followups: e
            .followups
            .iter()
            .map(|f| Followup {
                id: f.id,
                user: neutral(&f.user),
                outcome: neutral(&f.outcome),
                detail: neutral(&redact::sql(&f.detail)),
            })
            .collect(),
    };
    serde_json::to_string(&doc).unwrap_or_else(|err| {
        format!(
            "{{\"instance\":{},\"error\":{}}}",
            serde_json::Value::from(e.dbid.as_str()),
            serde_json::Value::from(err.to_string())
        )
    })
}

/// Short text for logs about a hook: the summary, cut.
pub fn event_label(e: &Event) -> String {
    crate::core::text::cut(&e.summary(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::row::ProcRow;

    fn victim(info: Option<&str>) -> Victim {
        Victim {
            row: ProcRow {
                query_id: None,
                id: 42,
                user: "app1".into(),
                host: "10.0.0.5:51000".into(),
                db: None,
                command: "Query".into(),
                time: 12,
                time_ms: Some(12345),
                time_high: false,
                state: Some("User sleep".into()),
                info: info.map(Into::into),
            },
            reasons: vec![Reason::LongRunning {
                secs: 12,
                limit: 10,
            }],
        }
    }

    #[test]
    fn record_has_every_field_and_no_password() {
        let v = victim(Some("CREATE USER u IDENTIFIED BY 'S3cret'"));
        let o = Outcome {
            victim: v,
            action: Action::KillQuery,
            result: KillResult::Killed { via: "app1".into() },
        };
        let line = ThreadRecord::from_outcome(Local::now(), "crm0", &o, false).to_line();
        assert!(!line.contains("S3cret"), "{line}");
        let j: serde_json::Value = serde_json::from_str(&line).unwrap();
        for k in [
            "instance",
            "id",
            "user",
            "host",
            "db",
            "command",
            "time",
            "state",
            "info",
            "reason",
            "action",
            "result",
            "fingerprint",
        ] {
            assert!(j.get(k).is_some(), "{k} missing in {line}");
        }
        assert_eq!(j["id"], 42);
        assert_eq!(j["db"], serde_json::Value::Null);
        assert_eq!(j["action"], "kill-query");
        assert_eq!(j["result"], "killed");
        assert_eq!(j["detail"], "killed (as app1)");
        assert_eq!(j["fingerprint"], "create user u identified by ?");
        assert_eq!(j["reasons"][0]["kind"], "long-running");
    }

    #[test]
    fn long_info_is_cut_and_null_info_stays_null() {
        let big = format!("select '{}'", "x".repeat(10_000));
        let r = ThreadRecord::offline(
            Local::now(),
            "x",
            &victim(Some(&big)),
            Action::KillConnection,
        );
        assert_eq!(r.info.as_ref().unwrap().chars().count(), INFO_MAX);
        assert_eq!(r.fingerprint.as_deref(), Some("select ?"));
        let r = ThreadRecord::offline(Local::now(), "x", &victim(None), Action::KillConnection);
        assert!(r.info.is_none() && r.fingerprint.is_none());
        assert_eq!(r.result, "offline");
    }
}
