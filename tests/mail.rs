//! Mail alerts against a real SMTP server on 127.0.0.1 (aiosmtpd, tests/support/smtp.rs)
//! and a real MariaDB: the mail of a kill, SMTP down or refusing, and the
//! digest that keeps a busy instance from mailing more than once per interval,
//! `mysqk watch` with an SMTP server that hangs or comes back, and TLS: every
//! `mail_tls` mode end to end, certificates checked against a test CA.

mod support;
mod watch_harness;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::smtp::{Blackhole, Listen, SmtpServer, TestCa};
use support::{mysqk_bin, run_with_timeout, server, wait_until, write_ini};

/// This file's ini and helpers on top of the shared test tenant.
use support::Tenant as Setup;

impl Setup {
    fn snap_dir(&self) -> PathBuf {
        self.dir.path().join("snap")
    }

    /// Instance `x` on the shared server; kills `app`'s statements older than 1 s.
    fn ini(&self, mail: &str) -> PathBuf {
        let text = format!(
            "[settings]\nsnapshot_dir={snap}\n\n[mail_config]\n{mail}\n\n\
             [db_info]\nx=127.0.0.1:{port}\n\n[db_auth]\n{app}={pw}\n{mon}={pw}\n\n\
             [db_commconfig]\ndb_puser={mon}\nrun_max_count=999\ndry_run=0\n\n\
             [db_commkill]\nk_user={app}\nk_longtime=1\n",
            snap = self.snap_dir().display(),
            port = server().port(),
            app = self.app,
            mon = self.mon,
            pw = self.pw,
        );
        write_ini(self.dir.path(), &text)
    }

    /// Snapshot files of instance `x`.
    fn snapshots(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.snap_dir().join("x"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn kill(ini: &Path) -> (Output, String) {
    let out = run_with_timeout(
        mysqk_bin().args(["kill", "-c", ini.to_str().unwrap(), "--db", "x"]),
        Duration::from_secs(90),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "panic:\n{text}");
    (out, text)
}

#[test]
fn kill_mails_the_victims_with_chinese_text_intact() {
    let smtp = SmtpServer::start();
    let t = Setup::new("Mail-Pw-1");
    let s = server();
    let ini = t.ini(&format!(
        "mail_host={}\nmail_receiver=dba@example.com\nmail_from=mysqk@example.com",
        smtp.host_port()
    ));
    let comment = "慢查询: 报表导出（中文注释）";
    let q = s.spawn_query(&t.app, &t.pw, &format!("SELECT SLEEP(60) /* {comment} */"));
    let id = q.conn_id;
    s.wait_query_time(id, 1);

    let (out, text) = kill(&ini);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(support::is_killed_error(
        &q.join_within(Duration::from_secs(10)).unwrap_err()
    ));

    let mails = smtp.wait_messages(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1, "one event, one mail");
    let m = &mails[0];
    assert_eq!(m.rcpt_to, vec!["dba@example.com".to_string()]);
    assert_eq!(m.mail_from, "mysqk@example.com");
    assert!(
        m.header("To")
            .unwrap_or_default()
            .contains("dba@example.com"),
        "{}",
        m.data
    );
    assert!(m.header("Message-ID").is_some(), "{}", m.data);
    assert!(
        m.header("Content-Type")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("charset=utf-8"),
        "{}",
        m.data
    );
    let subject = m.subject();
    // The one-shot kill may add a follow-up (", 1 follow-up") after verifying.
    assert!(
        subject.starts_with(&format!(
            "[mysqk] x (127.0.0.1:{}): 1 thread matched, 1 killed",
            s.port()
        )),
        "{subject}"
    );
    let body = m.body();
    let row = body
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("no victims row for thread {id}:\n{body}"));
    assert!(row.contains(&t.app), "{row}");
    assert!(row.contains("long-running"), "reason: {row}");
    assert!(row.contains("kill connection"), "action: {row}");
    assert!(
        row.contains(&format!("killed (as {})", t.app)),
        "result: {row}"
    );
    assert!(
        body.contains(comment),
        "Chinese text must arrive intact:\n{body}"
    );
    let snaps = t.snapshots();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(
        body.contains(&format!("snapshot: {}", snaps[0].display())),
        "{body}"
    );
    assert!(text.contains("mail sent to dba@example.com"), "{text}");
}

#[test]
fn smtp_down_or_refusing_does_not_stop_the_kill() {
    let t = Setup::new("Mail-Pw-1");
    let s = server();

    // Down: the server was there and is gone; its port refuses connections.
    let mut smtp = SmtpServer::start();
    let addr = smtp.host_port();
    smtp.stop();
    let ini = t.ini(&format!("mail_host={addr}\nmail_receiver=dba@example.com"));
    let q = s.spawn_query(&t.app, &t.pw, "SELECT SLEEP(60) /* smtp down */");
    s.wait_query_time(q.conn_id, 1);
    let started = Instant::now();
    let (out, text) = kill(&ini);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a mail failure is not a kill failure:\n{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(support::is_killed_error(
        &q.join_within(Duration::from_secs(10)).unwrap_err()
    ));
    assert_eq!(t.snapshots().len(), 1, "the snapshot is written regardless");
    assert!(text.contains("x: mail failed:"), "{text}");
    assert!(text.contains(&addr), "the log names the server:\n{text}");
    assert!(
        text.contains("last mail attempt at shutdown failed")
            && text.contains("giving up on 1 event"),
        "{text}"
    );

    // Refusing: up, but every MAIL FROM gets 451.
    let smtp = SmtpServer::start();
    smtp.set_refuse(true);
    let ini = t.ini(&format!(
        "mail_host={}\nmail_receiver=dba@example.com",
        smtp.host_port()
    ));
    let q = s.spawn_query(&t.app, &t.pw, "SELECT SLEEP(60) /* smtp refusing */");
    s.wait_query_time(q.conn_id, 1);
    let (out, text) = kill(&ini);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(support::is_killed_error(
        &q.join_within(Duration::from_secs(10)).unwrap_err()
    ));
    assert_eq!(t.snapshots().len(), 2);
    assert!(
        text.contains("451"),
        "the server's answer is logged:\n{text}"
    );
    assert!(smtp.messages().is_empty());
    assert!(
        smtp.connections() >= 2,
        "tried, then tried once more at exit"
    );
}

/// The digest, through the library against the real SMTP server: the first
/// event is mailed at once, the next two are held for `mail_interval` and
/// arrive as one mail that says it covers 2 events.
#[test]
fn events_within_the_interval_are_folded_into_one_digest() {
    use mysqk::config::{MailConfig, MailTls};
    use mysqk::core::matcher::{Reason, Victim};
    use mysqk::core::row::ProcRow;
    use mysqk::report::event::Event;
    use mysqk::report::mail::Mailer;
    use mysqk::server::killer::{Action, KillResult, Outcome};

    let mut smtp = SmtpServer::start();
    let interval = Duration::from_secs(2);
    let cfg = MailConfig {
        host: Some("127.0.0.1".into()),
        port: Some(smtp.port()),
        receivers: vec!["dba@example.com".into(), "ops@example.com".into()],
        tls: MailTls::None,
        interval,
        ..MailConfig::default()
    };
    let event = |id: u64| {
        let mut e = Event::new("crm0", "10.0.0.1:3306", false);
        e.outcomes.push(Outcome {
            victim: Victim {
                row: ProcRow {
                    id,
                    user: "app1".into(),
                    host: "10.0.0.9:5000".into(),
                    command: "Query".into(),
                    time: 30,
                    info: Some(format!("select sleep(30) /* 事件 {id} */")),
                    ..ProcRow::default()
                },
                reasons: vec![Reason::LongRunning {
                    secs: 30,
                    limit: 10,
                }],
            },
            action: Action::KillConnection,
            result: KillResult::Killed { via: "app1".into() },
        });
        e
    };
    let snap = |id: u64| PathBuf::from(format!("/var/lib/mysqk/crm0/{id}.txt"));

    let mut mailer = Mailer::new(&cfg);
    mailer.on_event(&event(101), Some(&snap(101)));
    let first_sent = Instant::now();
    assert_eq!(
        smtp.messages().len(),
        1,
        "the first event is mailed at once"
    );
    mailer.on_event(&event(102), Some(&snap(102)));
    mailer.on_event(&event(103), Some(&snap(103)));
    mailer.tick();
    assert_eq!(smtp.messages().len(), 1, "held back by mail_interval");
    assert_eq!(mailer.pending(), 2);

    wait_until(Duration::from_secs(20), "the digest mail", || {
        mailer.tick();
        smtp.messages().len() >= 2
    });
    assert!(first_sent.elapsed() >= interval);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2, "two events, one digest");
    let d = &mails[1];
    assert_eq!(
        d.rcpt_to,
        vec!["dba@example.com".to_string(), "ops@example.com".to_string()]
    );
    assert_eq!(
        d.subject(),
        "[mysqk] crm0 (10.0.0.1:3306): digest of 2 events, 2 threads matched, 2 killed"
    );
    let body = d.body();
    assert!(body.contains("digest of 2 events"), "{body}");
    for id in [102, 103] {
        assert!(body.contains(&format!("事件 {id}")), "{body}");
        assert!(body.contains(&snap(id).display().to_string()), "{body}");
    }
    assert!(!body.contains("事件 101"), "already mailed:\n{body}");
    assert_eq!(mailer.pending(), 0);

    // SMTP gone: a new event waits in the queue, and shutdown makes one last
    // short attempt, then gives up instead of hanging.
    smtp.stop();
    mailer.on_event(&event(104), Some(&snap(104)));
    assert_eq!(mailer.pending(), 1, "queued");
    let t = Instant::now();
    mailer.shutdown();
    assert_eq!(mailer.pending(), 0, "given up at shutdown");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

/// `mail_tls` against a server without STARTTLS: `none` and the default
/// (STARTTLS only when offered) deliver; `starttls` and `tls` refuse to send
/// in clear text and keep the mail queued.
#[test]
fn mail_tls_modes_against_a_server_without_starttls() {
    use mysqk::config::{MailConfig, MailTls};
    use mysqk::report::event::Event;
    use mysqk::report::mail::Mailer;

    let smtp = SmtpServer::start();
    for (tls, delivered) in [
        (MailTls::None, true),
        (MailTls::Opportunistic, true),
        (MailTls::StartTls, false),
        (MailTls::Tls, false),
    ] {
        let before = smtp.messages().len();
        let mut mailer = Mailer::new(&MailConfig {
            host: Some("127.0.0.1".into()),
            port: Some(smtp.port()),
            receivers: vec!["dba@example.com".into()],
            tls,
            interval: Duration::from_secs(60),
            ..MailConfig::default()
        });
        mailer.on_event(&Event::new("crm0", "10.0.0.1:3306", true), None);
        let got = smtp.messages().len() - before;
        assert_eq!(got, usize::from(delivered), "{tls:?}");
        assert_eq!(mailer.pending(), usize::from(!delivered), "{tls:?}");
        mailer.shutdown();
        assert_eq!(mailer.pending(), 0, "{tls:?}");
        assert_eq!(
            smtp.messages().len() - before,
            usize::from(delivered),
            "{tls:?}"
        );
    }
}

/// `watch` with an SMTP server that accepts connections and never answers:
/// the reporter waits for its SMTP timeout, the instance thread does not, so
/// the next runaway is still killed; SIGTERM during the hung attempt still
/// ends the process soon (one last short attempt, then given up).
#[test]
fn watch_keeps_killing_while_smtp_hangs_and_stops_promptly_on_sigterm() {
    use watch_harness::{assert_killed, Setup, Watch};
    let s = server();
    let t = Setup::new(&[s]);
    let hole = Blackhole::start();
    t.write(&t.ini_text(
        "",
        &[("x", s.addr())],
        "run_max_count=999\ndry_run=0",
        &format!("k_user={}\nk_longtime=1", t.app1.name),
        &format!(
            "[mail_config]\nmail_host={}\nmail_receiver=dba@example.com",
            hole.host_port()
        ),
    ));
    let mut w = Watch::start(&t);
    w.wait_connected(&["x"], &[&t.app1, &t.app2, &t.mon]);

    let q1 = t.query(s, &t.app1, "SELECT SLEEP(60) /* first */");
    assert_killed(q1, Duration::from_secs(20), &w.log_text());
    // The reporter is now talking to the silent server (up to 10 s).
    let q2 = t.query(s, &t.app1, "SELECT SLEEP(60) /* second */");
    assert_killed(q2, Duration::from_secs(20), &w.log_text());

    let stop = Instant::now();
    let st = w.terminate(Duration::from_secs(40));
    let took = stop.elapsed();
    let log = w.log_text();
    assert!(st.success(), "{st}\n{log}");
    // At most the hung attempt (10 s) plus the last one at shutdown (5 s).
    assert!(
        took < Duration::from_secs(25),
        "stopped after {took:?}:\n{log}"
    );
    assert_eq!(t.snapshots("x").len(), 2, "both snapshots written:\n{log}");
    assert!(log.contains("x: mail failed"), "{log}");
    assert!(log.contains("no answer within 10 s (timeout)"), "{log}");
    assert!(
        log.contains("last mail attempt at shutdown failed") && log.contains("giving up on"),
        "{log}"
    );
}

/// `watch` with the SMTP server down at the kill and back a little later:
/// the mail is retried with backoff and arrives, with the victim in it.
#[test]
fn watch_retries_the_mail_when_smtp_comes_back() {
    use watch_harness::{assert_killed, Setup, Watch};
    let s = server();
    let t = Setup::new(&[s]);
    let mut smtp = SmtpServer::start();
    let port = smtp.port();
    smtp.stop();
    t.write(&t.ini_text(
        "",
        &[("x", s.addr())],
        "run_max_count=999\ndry_run=0",
        &format!("k_user={}\nk_longtime=1", t.app1.name),
        &format!("[mail_config]\nmail_host=127.0.0.1:{port}\nmail_receiver=dba@example.com"),
    ));
    let mut w = Watch::start(&t);
    w.wait_connected(&["x"], &[&t.app1, &t.app2, &t.mon]);
    let q = t.query(s, &t.app1, "SELECT SLEEP(60) /* retry me */");
    let id = q.conn_id;
    assert_killed(q, Duration::from_secs(20), &w.log_text());
    w.wait_log(Duration::from_secs(20), "x: mail failed");
    assert!(w.log_text().contains("retrying in 5 s"), "{}", w.log_text());

    let smtp = SmtpServer::start_on(port);
    // Backoff 5 s, then 10 s: well within the wait.
    let mails = smtp.wait_messages(1, Duration::from_secs(40));
    let body = mails[0].body();
    assert!(
        body.lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains(&t.app1.name)),
        "{body}"
    );
    assert!(body.contains("retry me"), "{body}");
    w.wait_log(Duration::from_secs(10), "x: mail sent to dba@example.com");
    let st = w.terminate(Duration::from_secs(20));
    assert!(st.success(), "{st}");
}

/// The CA and the three servers of the TLS tests: plain, STARTTLS and
/// implicit TLS, the TLS ones with a certificate for 127.0.0.1 from `ca`.
struct TlsServers {
    ca: TestCa,
    plain: SmtpServer,
    starttls: SmtpServer,
    implicit: SmtpServer,
}

impl TlsServers {
    fn start() -> TlsServers {
        let ca = TestCa::new("mail");
        let cert = ca.server_cert(&["127.0.0.1", "localhost"]);
        TlsServers {
            plain: SmtpServer::start(),
            starttls: SmtpServer::start_with(Listen::StartTls(cert.clone())),
            implicit: SmtpServer::start_with(Listen::ImplicitTls(cert)),
            ca,
        }
    }
}

/// Log lines of the library calls in this test binary (the Mailer logs its
/// failures; there is no other way to see them without the CLI).
fn captured_log() -> &'static std::sync::Mutex<Vec<String>> {
    struct Capture;
    static LINES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, r: &log::Record) {
            let mut lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
            lines.push(format!("{} {}", r.level(), r.args()));
        }
        fn flush(&self) {}
    }
    static CAPTURE: Capture = Capture;
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger in this binary");
        log::set_max_level(log::LevelFilter::Info);
    });
    &LINES
}

/// Captured log lines that name `smtp`'s address (tests run in parallel).
fn log_of(smtp: &SmtpServer) -> Vec<String> {
    let lines = captured_log().lock().unwrap_or_else(|e| e.into_inner());
    lines
        .iter()
        .filter(|l| l.contains(&smtp.host_port()))
        .cloned()
        .collect()
}

/// A Mailer for one server, with a login, sending one event at once.
fn mail_one(smtp: &SmtpServer, tls: mysqk::config::MailTls, ca_file: Option<&Path>) -> usize {
    captured_log();
    use mysqk::config::crypto::Secret;
    use mysqk::config::MailConfig;
    use mysqk::report::event::Event;
    use mysqk::report::mail::Mailer;
    let mut mailer = Mailer::new(&MailConfig {
        host: Some("127.0.0.1".into()),
        port: Some(smtp.port()),
        user: Some("alerts@example.com".into()),
        pass: Some(Secret::new("smtp-pw")),
        receivers: vec!["dba@example.com".into()],
        tls,
        ca_file: ca_file.map(Path::to_path_buf),
        interval: Duration::from_secs(60),
        ..MailConfig::default()
    });
    mailer.on_event(&Event::new("crm0", "10.0.0.1:3306", true), None);
    // Dropped without shutdown: no second attempt.
    mailer.pending()
}

/// Every `mail_tls` mode against a server that offers it, through the real
/// handshake: the message arrives, encrypted exactly when the mode says so,
/// and the login travels inside the TLS session.
#[test]
fn every_mail_tls_mode_delivers_over_the_matching_server() {
    use mysqk::config::MailTls;
    let s = TlsServers::start();
    let ca = Some(s.ca.ca_file());
    for (smtp, tls, ca_file, encrypted) in [
        (&s.plain, MailTls::None, None, false),
        (&s.starttls, MailTls::None, None, false),
        (&s.plain, MailTls::Opportunistic, None, false),
        (&s.starttls, MailTls::Opportunistic, ca, true),
        (&s.starttls, MailTls::StartTls, ca, true),
        (&s.implicit, MailTls::Tls, ca, true),
    ] {
        let what = format!("{tls:?} against {:?}", smtp.tls());
        let before = smtp.messages().len();
        assert_eq!(mail_one(smtp, tls, ca_file), 0, "{what}: still queued");
        let mails = smtp.messages();
        assert_eq!(mails.len(), before + 1, "{what}: delivered");
        let m = &mails[before];
        assert_eq!(m.tls.is_some(), encrypted, "{what}: {:?}", m.tls);
        if let Some(v) = &m.tls {
            assert!(v == "TLSv1.3" || v == "TLSv1.2", "{what}: {v}");
        }
        assert_eq!(
            m.auth,
            Some(("alerts@example.com".into(), "smtp-pw".into())),
            "{what}"
        );
        assert_eq!(m.rcpt_to, vec!["dba@example.com".to_string()], "{what}");
        assert!(
            m.subject().starts_with("[mysqk] crm0"),
            "{what}: {}",
            m.subject()
        );
    }
}

/// Certificate checks: without `mail_ca_file` the test CA is not trusted
/// (only the built-in roots are), a wrong CA and a certificate for another
/// name are refused too, in STARTTLS and implicit TLS alike, also in the
/// default mode (a bad certificate never falls back to plain text). The mail
/// stays queued each time and nothing reaches the server.
#[test]
fn untrusted_certificates_are_refused_and_the_mail_stays_queued() {
    use mysqk::config::MailTls;
    let s = TlsServers::start();
    let other_ca = TestCa::new("other");
    let wrong_name =
        SmtpServer::start_with(Listen::StartTls(s.ca.server_cert(&["mail.example.test"])));
    let ca = Some(s.ca.ca_file());
    let other = Some(other_ca.ca_file());
    let no_ca = "it is not signed by a CA mysqk trusts (the built-in Mozilla roots); \
                 for a private CA set mail_ca_file to its PEM file";
    let wrong_ca = format!(
        "it is not signed by a CA mysqk trusts (the built-in Mozilla roots and mail_ca_file {}); \
         check that mail_ca_file holds the CA that signed the server's certificate",
        other_ca.ca_file().display()
    );
    let wrong_host = "it is not valid for `127.0.0.1`; mail_host must be a name (or IP address) \
                      the certificate lists";
    for (smtp, tls, ca_file, problem) in [
        (&s.starttls, MailTls::StartTls, None, no_ca),
        (&s.starttls, MailTls::Opportunistic, None, no_ca),
        (&s.starttls, MailTls::StartTls, other, wrong_ca.as_str()),
        (&s.implicit, MailTls::Tls, None, no_ca),
        (&s.implicit, MailTls::Tls, other, wrong_ca.as_str()),
        (&wrong_name, MailTls::StartTls, ca, wrong_host),
    ] {
        let what = format!("{tls:?} against {:?} trusting {ca_file:?}", smtp.tls());
        let before = log_of(smtp).len();
        assert_eq!(mail_one(smtp, tls, ca_file), 1, "{what}: queued for retry");
        assert!(smtp.messages().is_empty(), "{what}: nothing delivered");
        let log = log_of(smtp)[before..].to_vec();
        let want = format!(
            "WARN crm0: mail failed: {}: TLS certificate not accepted: {problem}; \
             1 event queued, retrying in 5 s (for up to 600 s)",
            smtp.host_port()
        );
        assert_eq!(log, vec![want], "{what}");
    }
    assert!(s.plain.messages().is_empty());
}

/// `mysqk kill` with each `mail_tls` mode from the ini (and `mail_ca_file`
/// for the private CA): the victim's mail arrives, encrypted for `starttls`
/// and `tls`, in clear text for `none`.
#[test]
fn kill_mails_with_mail_tls_none_starttls_and_tls() {
    let s = TlsServers::start();
    let t = Setup::new("Mail-Pw-1");
    let db = server();
    for (mode, smtp) in [
        ("none", &s.plain),
        ("starttls", &s.starttls),
        ("tls", &s.implicit),
    ] {
        let ini = t.ini(&format!(
            "mail_host={}\nmail_tls={mode}\nmail_ca_file={}\nmail_user=alerts@example.com\n\
             mail_pass=smtp-pw\nmail_receiver=dba@example.com",
            smtp.host_port(),
            s.ca.ca_file().display()
        ));
        let q = db.spawn_query(&t.app, &t.pw, &format!("SELECT SLEEP(60) /* tls {mode} */"));
        let id = q.conn_id;
        db.wait_query_time(id, 1);
        let (out, text) = kill(&ini);
        assert_eq!(out.status.code(), Some(0), "{mode}: {text}");
        assert!(support::is_killed_error(
            &q.join_within(Duration::from_secs(10)).unwrap_err()
        ));
        let mails = smtp.wait_messages(1, Duration::from_secs(10));
        assert_eq!(mails.len(), 1, "{mode}");
        let m = &mails[0];
        assert_eq!(m.tls.is_some(), mode != "none", "{mode}: {:?}", m.tls);
        assert_eq!(
            m.auth.as_ref().map(|a| a.1.as_str()),
            Some("smtp-pw"),
            "{mode}"
        );
        let body = m.body();
        assert!(
            body.lines().any(|l| l.starts_with(&format!("{id} "))),
            "{mode}: no row for thread {id}:\n{body}"
        );
        assert!(body.contains(&format!("tls {mode}")), "{mode}: {body}");
        assert!(
            text.contains("mail sent to dba@example.com"),
            "{mode}: {text}"
        );
        assert_eq!(
            text.contains("without TLS"),
            mode == "none",
            "{mode}: plain-login warning\n{text}"
        );
    }
}

/// `watch` with `mail_ca_file` holding the wrong CA: the kill and its
/// snapshot happen, the send is refused with one clear line and retried with
/// backoff; once the file holds the right CA (no reload: it is read at every
/// connection) the retry delivers the mail over TLS.
#[test]
fn watch_with_a_wrong_ca_refuses_then_delivers_once_the_ca_file_is_fixed() {
    use watch_harness::{assert_killed, count_lines, Setup, Watch};
    let s = server();
    let t = Setup::new(&[s]);
    let ca = TestCa::new("right");
    let wrong = TestCa::new("wrong");
    let smtp = SmtpServer::start_with(Listen::StartTls(ca.server_cert(&["127.0.0.1"])));
    let ca_file = t.dir.path().join("mail-ca.pem");
    std::fs::copy(wrong.ca_file(), &ca_file).expect("copy the wrong CA");
    t.write(&t.ini_text(
        "",
        &[("x", s.addr())],
        "run_max_count=999\ndry_run=0",
        &format!("k_user={}\nk_longtime=1", t.app1.name),
        &format!(
            "[mail_config]\nmail_host={}\nmail_tls=starttls\nmail_ca_file={}\n\
             mail_receiver=dba@example.com",
            smtp.host_port(),
            ca_file.display()
        ),
    ));
    let mut w = Watch::start(&t);
    w.wait_connected(&["x"], &[&t.app1, &t.app2, &t.mon]);
    let q = t.query(s, &t.app1, "SELECT SLEEP(60) /* wrong ca */");
    let id = q.conn_id;
    assert_killed(q, Duration::from_secs(20), &w.log_text());
    w.wait_log(Duration::from_secs(20), "x: mail failed");
    let log = w.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("x: mail failed"))
        .unwrap_or_else(|| panic!("{log}"));
    let want = format!(
        "x: mail failed: {}: TLS certificate not accepted: it is not signed by a CA mysqk \
         trusts (the built-in Mozilla roots and mail_ca_file {}); check that mail_ca_file \
         holds the CA that signed the server's certificate; 1 event queued, retrying in 5 s \
         (for up to 600 s)",
        smtp.host_port(),
        ca_file.display()
    );
    assert!(line.ends_with(&want), "{line}\nwant: {want}");
    assert_eq!(t.snapshots("x").len(), 1, "snapshot written:\n{log}");
    assert!(smtp.messages().is_empty());

    std::fs::copy(ca.ca_file(), &ca_file).expect("install the right CA");
    // Backoff 5 s, then 10 s: well within the wait.
    let mails = smtp.wait_messages(1, Duration::from_secs(40));
    assert!(mails[0].tls.is_some(), "{:?}", mails[0].tls);
    let body = mails[0].body();
    assert!(
        body.lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains(&t.app1.name)),
        "{body}"
    );
    w.wait_log(Duration::from_secs(10), "x: mail sent to dba@example.com");
    let log = w.log_text();
    assert_eq!(
        count_lines(&log, "TLS certificate not accepted"),
        count_lines(&log, "x: mail failed"),
        "every failure says why, once:\n{log}"
    );
    assert!(!log.contains("invalid peer certificate"), "{log}");
    let st = w.terminate(Duration::from_secs(20));
    assert!(st.success(), "{st}");
}
