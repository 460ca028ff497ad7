//! A small but real SMTP server on 127.0.0.1 for the mail tests (SPEC 7:
//! mail is tested against a real server, not a mock transport).
//!
//! It speaks enough ESMTP for any client: EHLO/HELO, MAIL FROM, RCPT TO,
//! DATA (with dot-unstuffing), RSET, NOOP, QUIT, VRFY and AUTH PLAIN/LOGIN
//! (any credentials are accepted and recorded, so a test can check which
//! password the client decrypted). STARTTLS is not offered. Each accepted
//! message is kept in memory as [`Received`], with helpers that undo the
//! MIME transfer encodings (quoted-printable, base64, RFC 2047 subjects).

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use base64::Engine;

const HOSTNAME: &str = "mysqk-test-smtp";
/// A client that goes quiet is dropped after this (keeps threads bounded).
const IDLE: Duration = Duration::from_secs(60);

/// One message as accepted by the server.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub helo: String,
    /// Address of `MAIL FROM:<...>`.
    pub mail_from: String,
    /// Addresses of `RCPT TO:<...>`.
    pub rcpt_to: Vec<String>,
    /// `(user, password)` from AUTH, if the client logged in.
    pub auth: Option<(String, String)>,
    /// The DATA as received (CRLF line ends, dot-unstuffed).
    pub data: String,
}

impl Received {
    fn split(&self) -> (&str, &str) {
        self.data
            .split_once("\r\n\r\n")
            .unwrap_or((self.data.as_str(), ""))
    }

    /// A header's value, unfolded, not decoded. Case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.split();
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The Subject, RFC 2047 encoded words decoded.
    pub fn subject(&self) -> String {
        decode_words(&self.header("Subject").unwrap_or_default())
    }

    /// The body as text, its Content-Transfer-Encoding undone.
    pub fn body(&self) -> String {
        let (_, body) = self.split();
        let cte = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = match cte.as_str() {
            "quoted-printable" => decode_qp(body),
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(body.split_whitespace().collect::<String>())
                .unwrap_or_else(|e| panic!("mail body is not valid base64: {e}\n{body}")),
            _ => body.as_bytes().to_vec(),
        };
        String::from_utf8(bytes)
            .unwrap_or_else(|e| panic!("mail body is not UTF-8: {e}"))
            .replace("\r\n", "\n")
    }

    /// Headers and decoded body together, for searching.
    pub fn text(&self) -> String {
        format!("{}\n{}\n{}", self.split().0, self.subject(), self.body())
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Quoted-printable (RFC 2045): `=XX` bytes and `=` soft line breaks.
pub fn decode_qp(s: &str) -> Vec<u8> {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// RFC 2047 `=?charset?B|Q?text?=` words (UTF-8 only); whitespace between
/// two encoded words is dropped, as the RFC says.
pub fn decode_words(s: &str) -> String {
    let re = regex::Regex::new(r"(?i)=\?([^?]+)\?([bq])\?([^?]*)\?=").unwrap();
    let mut out = String::new();
    let mut last = 0;
    let mut prev_encoded = false;
    for m in re.captures_iter(s) {
        let whole = m.get(0).unwrap();
        let between = &s[last..whole.start()];
        if !(prev_encoded && between.trim().is_empty()) {
            out.push_str(between);
        }
        let text = &m[3];
        let bytes = if m[2].eq_ignore_ascii_case("b") {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_else(|e| panic!("bad base64 word `{text}`: {e}"))
        } else {
            decode_qp(&text.replace('_', " "))
        };
        out.push_str(&String::from_utf8_lossy(&bytes));
        last = whole.end();
        prev_encoded = true;
    }
    out.push_str(&s[last..]);
    out
}

struct Shared {
    messages: Mutex<Vec<Received>>,
    stop: AtomicBool,
    /// Answer `451` to MAIL FROM (a server that is up but refusing).
    refuse: AtomicBool,
    /// Connections seen, including refused and aborted ones.
    connections: Mutex<u64>,
}

/// The server; stops (its port then refuses connections) on `stop` or drop.
pub struct SmtpServer {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SmtpServer {
    /// Listens on a free port of 127.0.0.1, below the ephemeral range (as
    /// the database servers do), so that after `stop` no outgoing client
    /// socket takes the port before [`SmtpServer::start_on`] reuses it.
    pub fn start() -> SmtpServer {
        // A port found free can be taken before we bind it: retry.
        for _ in 0..5 {
            if let Ok(l) = TcpListener::bind(("127.0.0.1", super::pick_free_port())) {
                return SmtpServer::serve(l);
            }
        }
        panic!("no free port for the test SMTP server");
    }

    /// Listens on `port` of 127.0.0.1, e.g. to bring a stopped server back
    /// on its old address.
    pub fn start_on(port: u16) -> SmtpServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("bind the test SMTP server on port {port}: {e}"));
        SmtpServer::serve(listener)
    }

    fn serve(listener: TcpListener) -> SmtpServer {
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            messages: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            connections: Mutex::new(0),
        });
        let s = shared.clone();
        let accept = thread::Builder::new()
            .name(format!("smtp-{port}"))
            .spawn(move || {
                for stream in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    *lock(&s.connections) += 1;
                    let s = s.clone();
                    let _ = thread::Builder::new()
                        .name(format!("smtp-{port}-conn"))
                        .spawn(move || {
                            let _ = session(stream, &s);
                        });
                }
                // The listener is dropped here: the port refuses from now on.
            })
            .expect("spawn the SMTP accept thread");
        SmtpServer {
            port,
            shared,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, the form `mail_host` accepts.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn messages(&self) -> Vec<Received> {
        lock(&self.shared.messages).clone()
    }

    pub fn connections(&self) -> u64 {
        *lock(&self.shared.connections)
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
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Stops accepting and closes the port. Idempotent.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            // Wake the blocking accept so the thread sees `stop`.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = h.join();
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

fn b64_text(s: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One client connection, until QUIT, EOF or an idle timeout.
fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    reply(&mut out, &format!("220 {HOSTNAME} ESMTP ready"))?;
    let mut helo = String::new();
    let mut auth: Option<(String, String)> = None;
    let mut tx: Option<Received> = None;
    while let Some(line) = read_line(&mut input)? {
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("").to_string();
        let arg = line.get(verb.len()..).unwrap_or("").trim().to_string();
        match verb.as_str() {
            "EHLO" => {
                helo = arg;
                tx = None;
                reply(&mut out, &format!("250-{HOSTNAME} greets {helo}"))?;
                reply(&mut out, "250-8BITMIME")?;
                reply(&mut out, "250-AUTH PLAIN LOGIN")?;
                reply(&mut out, "250 SIZE 10485760")?;
            }
            "HELO" => {
                helo = arg;
                tx = None;
                reply(&mut out, &format!("250 {HOSTNAME}"))?;
            }
            "AUTH" => {
                let mut parts = arg.split_whitespace();
                let mech = parts.next().unwrap_or("").to_ascii_uppercase();
                let initial = parts.next().map(str::to_string);
                match mech.as_str() {
                    "PLAIN" => {
                        let resp = match initial {
                            Some(r) => r,
                            None => {
                                reply(&mut out, "334 ")?;
                                read_line(&mut input)?.unwrap_or_default()
                            }
                        };
                        let decoded = b64_text(&resp);
                        let mut f = decoded.split('\0');
                        let _authzid = f.next();
                        let user = f.next().unwrap_or("").to_string();
                        let pass = f.next().unwrap_or("").to_string();
                        auth = Some((user, pass));
                        reply(&mut out, "235 2.7.0 Authentication successful")?;
                    }
                    "LOGIN" => {
                        let user = match initial {
                            Some(r) => b64_text(&r),
                            None => {
                                reply(&mut out, "334 VXNlcm5hbWU6")?;
                                b64_text(&read_line(&mut input)?.unwrap_or_default())
                            }
                        };
                        reply(&mut out, "334 UGFzc3dvcmQ6")?;
                        let pass = b64_text(&read_line(&mut input)?.unwrap_or_default());
                        auth = Some((user, pass));
                        reply(&mut out, "235 2.7.0 Authentication successful")?;
                    }
                    _ => reply(&mut out, "504 5.5.4 mechanism not supported")?,
                }
            }
            "MAIL" => {
                if shared.refuse.load(Ordering::SeqCst) {
                    reply(&mut out, "451 4.3.0 test server refuses mail for now")?;
                    continue;
                }
                let from = angle(&arg);
                tx = Some(Received {
                    helo: helo.clone(),
                    mail_from: from,
                    auth: auth.clone(),
                    ..Received::default()
                });
                reply(&mut out, "250 2.1.0 OK")?;
            }
            "RCPT" => match tx.as_mut() {
                Some(t) => {
                    t.rcpt_to.push(angle(&arg));
                    reply(&mut out, "250 2.1.5 OK")?;
                }
                None => reply(&mut out, "503 5.5.1 MAIL first")?,
            },
            "DATA" => {
                let Some(mut t) = tx.take().filter(|t| !t.rcpt_to.is_empty()) else {
                    reply(&mut out, "503 5.5.1 RCPT first")?;
                    continue;
                };
                reply(&mut out, "354 end with <CRLF>.<CRLF>")?;
                let mut data = String::new();
                loop {
                    let Some(l) = read_line(&mut input)? else {
                        return Ok(());
                    };
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    data.push_str("\r\n");
                }
                t.data = data;
                lock(&shared.messages).push(t);
                reply(&mut out, "250 2.0.0 OK queued")?;
            }
            "RSET" => {
                tx = None;
                reply(&mut out, "250 2.0.0 OK")?;
            }
            "NOOP" => reply(&mut out, "250 2.0.0 OK")?,
            "VRFY" => reply(&mut out, "252 2.1.5 cannot verify")?,
            "QUIT" => {
                reply(&mut out, &format!("221 2.0.0 {HOSTNAME} closing"))?;
                let _ = out.shutdown(Shutdown::Both);
                return Ok(());
            }
            _ => reply(&mut out, "502 5.5.2 command not implemented")?,
        }
    }
    Ok(())
}

fn reply(out: &mut TcpStream, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.write_all(b"\r\n")?;
    out.flush()
}

fn read_line(input: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    if input.read_until(b'\n', &mut buf)? == 0 {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&buf).into_owned();
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

/// `FROM:<a@b> SIZE=1` -> `a@b`.
fn angle(arg: &str) -> String {
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_string(),
        _ => arg
            .split_once(':')
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default(),
    }
}
