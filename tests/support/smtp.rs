//! A real SMTP server on 127.0.0.1 for the mail tests (SPEC 7: mail is
//! tested against a real server, not a mock transport): Python's aiosmtpd
//! (Debian python3-aiosmtpd), run by `smtp_server.py` next to this file.
//!
//! [`SmtpServer`] speaks plain SMTP, STARTTLS or implicit TLS ([`Listen`]) with a
//! certificate from a [`TestCa`] made at test time. Any AUTH PLAIN/LOGIN is
//! accepted and recorded, so a test can check which password the client
//! decrypted. Each accepted message is a JSON file in the server's directory,
//! read back as [`Received`]. [`Blackhole`] is the server that hangs.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Debian's interpreter, where python3-aiosmtpd is installed.
const PYTHON: &str = "/usr/bin/python3";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_server.py");
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One message as accepted by the server.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Received {
    pub helo: String,
    /// Address of `MAIL FROM:<...>`.
    pub mail_from: String,
    /// Addresses of `RCPT TO:<...>`.
    pub rcpt_to: Vec<String>,
    /// `(user, password)` from AUTH, if the client logged in.
    pub auth: Option<(String, String)>,
    /// The TLS version the message came over (`TLSv1.3`), `None` = plain text.
    pub tls: Option<String>,
    /// The DATA as received (CRLF line ends, dot-unstuffed).
    pub data: String,
    /// Subject and body as Python's `email` package decodes them (RFC 2047,
    /// quoted-printable, base64, charset undone; body with `\n` line ends).
    subject: String,
    body: String,
}

impl Received {
    /// A header's value, unfolded, not decoded. Case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The Subject, decoded.
    pub fn subject(&self) -> String {
        self.subject.clone()
    }

    /// The body as text, its Content-Transfer-Encoding undone.
    pub fn body(&self) -> String {
        self.body.clone()
    }

    /// Headers and decoded body together, for searching.
    pub fn text(&self) -> String {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        format!("{head}\n{}\n{}", self.subject, self.body)
    }
}

/// A certificate authority made for one test, and the server certificates
/// it signs. Its files live in a temp dir as long as it does.
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca_file: PathBuf,
    issued: std::cell::Cell<u32>,
}

/// A server certificate and its key, PEM files.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("mysqk test CA {name}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        let dir = tempfile::tempdir().expect("temp dir for the CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write ca.pem");
        TestCa {
            dir,
            issuer: Issuer::new(params, key),
            ca_file,
            issued: std::cell::Cell::new(0),
        }
    }

    /// The CA certificate (PEM), what `mail_ca_file` points at.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A server certificate valid for `names` (DNS names or IP addresses).
    pub fn server_cert(&self, names: &[&str]) -> ServerCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server cert params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the server cert");
        let n = self.issued.get() + 1;
        self.issued.set(n);
        let out = ServerCert {
            cert: self.dir.path().join(format!("server{n}.pem")),
            key: self.dir.path().join(format!("server{n}.key")),
        };
        std::fs::write(&out.cert, cert.pem()).expect("write the server cert");
        std::fs::write(&out.key, key.serialize_pem()).expect("write the server key");
        out
    }
}

/// What the server offers on its port.
#[derive(Debug, Clone)]
pub enum Listen {
    /// No TLS at all (no STARTTLS in EHLO).
    Plain,
    /// STARTTLS offered, not required.
    StartTls(ServerCert),
    /// TLS from the first byte, as on port 465.
    ImplicitTls(ServerCert),
}

/// The aiosmtpd process; stopped (its port then refuses connections) on
/// `stop` or drop.
pub struct SmtpServer {
    port: u16,
    tls: Listen,
    dir: tempfile::TempDir,
    child: Option<(Child, ChildStdin)>,
}

impl SmtpServer {
    /// A plain server on a free port of 127.0.0.1, below the ephemeral range
    /// (as the database servers do), so that after `stop` no outgoing client
    /// socket takes the port before [`SmtpServer::start_on`] reuses it.
    pub fn start() -> SmtpServer {
        SmtpServer::start_with(Listen::Plain)
    }

    /// Like [`SmtpServer::start`], offering STARTTLS or implicit TLS.
    pub fn start_with(tls: Listen) -> SmtpServer {
        // A port found free can be taken before the server binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            match SmtpServer::launch(super::pick_free_port(), tls.clone()) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("cannot start the test SMTP server: {last}");
    }

    /// A plain server on `port` of 127.0.0.1, e.g. to bring a stopped server
    /// back on its old address.
    pub fn start_on(port: u16) -> SmtpServer {
        SmtpServer::launch(port, Listen::Plain)
            .unwrap_or_else(|e| panic!("start the test SMTP server on port {port}: {e}"))
    }

    fn launch(port: u16, tls: Listen) -> Result<SmtpServer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let log = std::fs::File::create(dir.path().join("server.log"))
            .map_err(|e| format!("server.log: {e}"))?;
        let mut cmd = Command::new(PYTHON);
        cmd.arg(SCRIPT).arg(dir.path()).arg(port.to_string());
        match &tls {
            Listen::Plain => cmd.arg("plain"),
            Listen::StartTls(c) => cmd.arg("starttls").arg(&c.cert).arg(&c.key),
            Listen::ImplicitTls(c) => cmd.arg("tls").arg(&c.cert).arg(&c.key),
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        // The server also exits when its stdin closes (the test process is
        // gone, however it died); PDEATHSIG covers the spawning thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn {PYTHON}: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = SmtpServer {
            port,
            tls,
            dir,
            child: Some((child, stdin)),
        };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.trim() == format!("READY {port}") => Ok(server),
            other => {
                server.stop();
                Err(format!(
                    "no READY line ({other:?}); server log:\n{}",
                    server.log()
                ))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the form `mail_host` accepts.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn tls(&self) -> &Listen {
        &self.tls
    }

    /// What the server wrote to stderr (aiosmtpd logs errors there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Messages accepted so far, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("messages"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        // Files being written are hidden `.NNNNNN.json.tmp` until renamed.
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("parse {}: {e}\n{text}", p.display()))
            })
            .collect()
    }

    /// Client sessions seen, including refused ones (with implicit TLS only
    /// those whose handshake succeeded).
    pub fn connections(&self) -> u64 {
        std::fs::read_to_string(self.dir.path().join("connections"))
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0)
    }

    /// Waits until at least `n` messages arrived and returns them all.
    pub fn wait_messages(&self, n: usize, within: Duration) -> Vec<Received> {
        super::wait_until(within, &format!("{n} mail(s) at the SMTP server"), || {
            self.messages().len() >= n
        });
        self.messages()
    }

    /// Up, but every MAIL FROM gets `451` (temporary failure).
    pub fn set_refuse(&self, refuse: bool) {
        let flag = self.dir.path().join("refuse");
        if refuse {
            std::fs::write(&flag, "").expect("create the refuse flag");
        } else {
            let _ = std::fs::remove_file(&flag);
        }
    }

    /// Stops the server and waits until it is gone, so its port refuses
    /// connections when this returns. Idempotent.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that accepts TCP connections (the kernel completes the handshake)
/// but never says a word: the SMTP server that hangs, which only client
/// timeouts get out of.
pub struct Blackhole {
    listener: TcpListener,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        Blackhole {
            listener: TcpListener::bind("127.0.0.1:0").expect("bind the blackhole"),
        }
    }

    pub fn host_port(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.listener.local_addr().expect("local addr").port()
        )
    }
}
