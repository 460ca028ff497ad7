//! Encrypted passwords end to end (SPEC 6) and the promise that no secret
//! leaks into logs, snapshots, mails or check-config output, on a real
//! MariaDB and a real SMTP server.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::smtp::SmtpServer;
use support::{mysqk_bin, run_with_timeout, server, unique, write_ini};

const TIMEOUT: Duration = Duration::from_secs(90);

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> (i32, String, Output) {
    let out = run_with_timeout(cmd, TIMEOUT);
    let text = text_of(&out);
    assert!(!text.contains("panicked"), "panic:\n{text}");
    (out.status.code().unwrap_or(-1), text, out)
}

/// `mysqk encrypt-password` with the password on stdin (a pipe, as in a script).
fn encrypt(mut cmd: Command, password: &str) -> String {
    let mut child = cmd
        .arg("encrypt-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mysqk encrypt-password");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = text_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let value = stdout.trim().to_string();
    assert!(value.starts_with("enc:v1:"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "one value to paste: {stdout}");
    assert!(
        !text.contains(password),
        "the password is never echoed:\n{text}"
    );
    value
}

/// Users on the shared server: a killable app user and a PROCESS monitor,
/// each with its own password.
struct Users {
    app: String,
    app_pw: String,
    mon: String,
    mon_pw: String,
}

impl Users {
    fn new() -> Users {
        let s = server();
        let u = Users {
            app: unique("sapp"),
            app_pw: format!("App-{}-pw", unique("x")),
            mon: unique("smon"),
            mon_pw: format!("Mon-{}-pw", unique("x")),
        };
        s.create_app_user(&u.app, &u.app_pw, &unique("sdb"));
        s.create_monitor_user(&u.mon, &u.mon_pw);
        u
    }
}

/// An ini for instance `x`: `auth` is the [db_auth] body, `extra` more sections.
fn ini(dir: &Path, u: &Users, settings: &str, auth: &str, mail: &str) -> PathBuf {
    write_ini(
        dir,
        &format!(
            "[settings]\nsnapshot_dir={snap}\n{settings}\n\n[mail_config]\n{mail}\n\n\
             [db_info]\nx=127.0.0.1:{port}\n\n[db_auth]\n{auth}\n\n\
             [db_commconfig]\ndb_puser={mon}\nrun_max_count=999\ndry_run=0\n\n\
             [db_commkill]\nk_user={app}\nk_longtime=1\n",
            snap = dir.join("snap").display(),
            port = server().port(),
            mon = u.mon,
            app = u.app,
        ),
    )
}

fn read_key(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[test]
fn gen_key_encrypt_password_and_kill_with_the_decrypted_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let u = Users::new();
    let s = server();
    let smtp = SmtpServer::start();

    // gen-key prints a key, or writes a new 0600 file and never overwrites it.
    let (code, text, out) = run(mysqk_bin().arg("gen-key"));
    assert_eq!(code, 0, "{text}");
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        printed.len() == 64 && printed.bytes().all(|b| b.is_ascii_hexdigit()),
        "{printed}"
    );
    let key_file = dir.path().join("mysqk.key");
    let (code, text, _) = run(mysqk_bin().args(["gen-key", "-o", key_file.to_str().unwrap()]));
    assert_eq!(code, 0, "{text}");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let key = read_key(&key_file);
    assert_eq!(key.len(), 64);
    assert!(!text.contains(&key), "the key is not printed:\n{text}");
    let (code, text, _) = run(mysqk_bin().args(["gen-key", "-o", key_file.to_str().unwrap()]));
    assert_eq!(code, 2, "{text}");
    assert_eq!(read_key(&key_file), key, "an existing key file is kept");

    // encrypt-password finds the key through [settings] key_file of -c ...
    let settings = format!("key_file={}", key_file.display());
    let bootstrap = write_ini(dir.path(), &format!("[settings]\n{settings}\n"));
    let mut cmd = mysqk_bin();
    cmd.args(["-c", bootstrap.to_str().unwrap()]);
    let app_enc = encrypt(cmd, &u.app_pw);
    // ... or through MYSQK_KEY.
    let mut cmd = mysqk_bin();
    cmd.env("MYSQK_KEY", &key);
    let mon_enc = encrypt(cmd, &u.mon_pw);
    let mut cmd = mysqk_bin();
    cmd.env("MYSQK_KEY", &key);
    let mail_enc = encrypt(cmd, "Mail-Secret-42");

    let ini = ini(
        dir.path(),
        &u,
        &settings,
        &format!("{}={app_enc}\n{}={mon_enc}", u.app, u.mon),
        &format!(
            "mail_host={}\nmail_user=mysqk@example.com\nmail_pass={mail_enc}\nmail_receiver=dba@example.com",
            smtp.host_port()
        ),
    );
    let q = s.spawn_query(&u.app, &u.app_pw, "SELECT SLEEP(60)");
    s.wait_query_time(q.conn_id, 1);
    let (code, text, _) = run(mysqk_bin().args(["kill", "-c", ini.to_str().unwrap(), "--db", "x"]));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("killed (as {})", u.app)),
        "logged in as the app user with its decrypted password:\n{text}"
    );
    assert!(support::is_killed_error(
        &q.join_within(Duration::from_secs(10)).unwrap_err()
    ));
    assert!(!text.contains("plain-text password"), "{text}");

    // The SMTP login used the decrypted mail_pass.
    let mails = smtp.wait_messages(1, Duration::from_secs(10));
    assert_eq!(
        mails[0].auth,
        Some((
            "mysqk@example.com".to_string(),
            "Mail-Secret-42".to_string()
        ))
    );
    assert_eq!(mails[0].mail_from, "mysqk@example.com");

    // check-config loads it too, and prints no secret.
    let (code, text, _) = run(mysqk_bin().args(["check-config", "-c", ini.to_str().unwrap()]));
    assert_eq!(code, 0, "{text}");
    for secret in [&u.app_pw, &u.mon_pw, "Mail-Secret-42", &key] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(text.contains("(password set)"), "{text}");
}

#[test]
fn key_problems_exit_2_each_with_its_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let u = Users::new();
    let key = read_key_from(mysqk_bin().arg("gen-key"));
    let other = read_key_from(mysqk_bin().arg("gen-key"));
    let mut cmd = mysqk_bin();
    cmd.env("MYSQK_KEY", &key);
    let app_enc = encrypt(cmd, &u.app_pw);
    let auth = |app_value: &str| format!("{}={app_value}\n{}={}", u.app, u.mon, u.mon_pw);
    let body = app_enc.strip_prefix("enc:v1:").unwrap();
    let flipped = format!(
        "enc:v1:{}{}",
        if body.starts_with('A') { 'B' } else { 'A' },
        &body[1..]
    );
    let truncated = app_enc[..app_enc.len() - 6].to_string();
    let missing_file = dir.path().join("no-such.key");

    // (what, ini settings, [db_auth] app value, MYSQK_KEY, expected message)
    let cases: Vec<(&str, String, String, Option<&str>, String)> = vec![
        (
            "wrong key",
            String::new(),
            app_enc.clone(),
            Some(&other),
            format!(
                "[db_auth] {}: wrong key: this value was encrypted with key id",
                u.app
            ),
        ),
        (
            "tampered",
            String::new(),
            flipped,
            Some(&key),
            format!(
                "[db_auth] {}: encrypted value was modified after encryption",
                u.app
            ),
        ),
        (
            "truncated",
            String::new(),
            truncated,
            Some(&key),
            format!("[db_auth] {}: corrupt encrypted value", u.app),
        ),
        (
            "missing key",
            String::new(),
            app_enc.clone(),
            None,
            format!("[db_auth] {}: encrypted password but no key", u.app),
        ),
        (
            "missing key file",
            format!("key_file={}", missing_file.display()),
            app_enc.clone(),
            None,
            format!(
                "[settings] key_file: cannot load the key: cannot read key file {}",
                missing_file.display()
            ),
        ),
    ];
    let mut messages = Vec::new();
    for (what, settings, value, env, want) in &cases {
        let ini = ini(dir.path(), &u, settings, &auth(value), "");
        for sub in [&["kill", "--db", "x"][..], &["check-config"][..]] {
            let mut cmd = mysqk_bin();
            cmd.arg("-c").arg(&ini).args(sub);
            if let Some(k) = env {
                cmd.env("MYSQK_KEY", k);
            }
            let (code, text, _) = run(&mut cmd);
            assert_eq!(code, 2, "{what} ({sub:?}):\n{text}");
            assert!(
                text.contains(want.as_str()),
                "{what}: want `{want}` in:\n{text}"
            );
            assert!(!text.contains(&u.app_pw), "{what}:\n{text}");
            assert!(
                !text.contains(&key) && !text.contains(&other),
                "{what}:\n{text}"
            );
            if sub[0] == "kill" {
                messages.push(text);
            }
        }
    }
    // Each message is its own: no case reads like another one.
    for (i, (what, ..)) in cases.iter().enumerate() {
        for (j, (_, _, _, _, want)) in cases.iter().enumerate() {
            if i != j {
                assert!(
                    !messages[i].contains(want.as_str()),
                    "{what}: {}",
                    messages[i]
                );
            }
        }
    }
}

fn read_key_from(cmd: &mut Command) -> String {
    let (code, text, out) = run(cmd);
    assert_eq!(code, 0, "{text}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn encrypt_password_input_rules() {
    let dir = tempfile::tempdir().unwrap();
    // Never from argv.
    let (code, text, _) = run(mysqk_bin().args(["encrypt-password", "hunter2"]));
    assert_eq!(code, 2, "{text}");
    // No key anywhere.
    let (code, text, _) = run(mysqk_bin().current_dir(dir.path()).arg("encrypt-password"));
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("no key: set MYSQK_KEY or [settings] key_file"),
        "{text}"
    );
    // Empty stdin.
    let (code, text, _) = run(mysqk_bin()
        .current_dir(dir.path())
        .env("MYSQK_KEY", "00".repeat(32))
        .arg("encrypt-password"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("empty password"), "{text}");
    // A key file others can read still works, with a warning.
    let key_file = dir.path().join("loose.key");
    std::fs::write(&key_file, format!("{}\n", "11".repeat(32))).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = write_ini(
        dir.path(),
        &format!("[settings]\nkey_file={}\n", key_file.display()),
    );
    let mut child = mysqk_bin()
        .args(["-c", cfg.to_str().unwrap(), "encrypt-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = text_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("accessible by group/others"), "{text}");
    assert!(text.contains("chmod 600"), "{text}");
}

/// A pseudo-terminal: (master side to read the screen and type, slave side
/// to hand to the child as its terminal).
fn open_pty() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two fds; each is owned exactly once below.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened by openpty and are owned only here.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}

/// On a terminal, `encrypt-password` prompts and reads with echo off: what
/// is typed never shows on the screen (here: the pty's output).
#[test]
fn encrypt_password_prompts_without_echo_on_a_terminal() {
    use std::io::Read;
    use std::sync::mpsc;

    let (mut master, slave) = open_pty();
    let key = "22".repeat(32);
    let mut cmd = mysqk_bin();
    cmd.env("MYSQK_KEY", &key)
        .arg("encrypt-password")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::piped());
    let mut child = support::ChildGuard::spawn(&mut cmd);
    // Only the child may hold the terminal now, so the reader sees EOF/EIO
    // when it exits.
    drop(cmd);
    drop(slave);
    let mut stdout = child.0.stdout.take().unwrap();

    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut reader = master.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Vec::new();
    support::wait_until(Duration::from_secs(10), "the password prompt", || {
        while let Ok(b) = rx.try_recv() {
            screen.extend(b);
        }
        String::from_utf8_lossy(&screen).contains("Password:")
    });
    master.write_all(b"Tty-Secret-77\n").unwrap();
    let status = child
        .wait_timeout(Duration::from_secs(10))
        .expect("encrypt-password exits");
    let mut value = String::new();
    stdout.read_to_string(&mut value).unwrap();
    reader.join().unwrap();
    screen.extend(rx.try_iter().flatten());
    let screen = String::from_utf8_lossy(&screen);
    assert!(status.success(), "{status}: {screen}");
    assert!(!screen.contains("Tty-Secret"), "echoed: {screen:?}");
    let k = mysqk::config::crypto::Key::parse(&key).unwrap();
    assert_eq!(
        mysqk::config::crypto::decrypt(&k, value.trim()).unwrap(),
        "Tty-Secret-77"
    );
}

/// Ctrl-C at the prompt ends `encrypt-password` (exit 130) and gives the
/// terminal its echo back: the user's shell must not be left typing blind.
#[test]
fn ctrl_c_at_the_prompt_restores_echo() {
    use std::io::Read;
    use std::os::fd::AsRawFd;

    let (master, slave) = open_pty();
    let echo_on = |fd: i32| {
        // SAFETY: tcgetattr fills a zeroed termios for an open tty fd.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
        t.c_lflag & libc::ECHO != 0
    };
    assert!(echo_on(slave.as_raw_fd()), "a fresh pty echoes");
    let mut cmd = mysqk_bin();
    cmd.env("MYSQK_KEY", "33".repeat(32))
        .arg("encrypt-password")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::null());
    let mut child = support::ChildGuard::spawn(&mut cmd);
    drop(cmd);
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    // Detached: it blocks on the pty until the test process ends.
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Vec::new();
    support::wait_until(Duration::from_secs(10), "the password prompt", || {
        screen.extend(rx.try_iter().flatten());
        String::from_utf8_lossy(&screen).contains("Password:")
    });
    assert!(!echo_on(slave.as_raw_fd()), "echo is off at the prompt");
    child.signal(libc::SIGINT);
    let status = child
        .wait_timeout(Duration::from_secs(10))
        .expect("encrypt-password ends on SIGINT");
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(echo_on(slave.as_raw_fd()), "echo restored after Ctrl-C");
    drop(master);
}

/// Debug logging, mail on, a victim whose statement carries a password
/// literal: no plaintext password of the config, no key and no literal may
/// show up on stdout/stderr, in the snapshot files or in the mail.
#[test]
fn no_secret_leaks_into_logs_snapshots_or_mail() {
    let dir = tempfile::tempdir().unwrap();
    let u = Users::new();
    let s = server();
    let smtp = SmtpServer::start();
    let key = read_key_from(mysqk_bin().arg("gen-key"));
    let enc = |pw: &str| {
        let mut cmd = mysqk_bin();
        cmd.env("MYSQK_KEY", &key);
        encrypt(cmd, pw)
    };
    let mail_pw = "Leak-Mail-2Zp";
    let literal = "Leak-Literal-5Rw";
    // The app password encrypted, the monitor's plain (plain ones must not
    // leak either), mail_pass encrypted.
    let ini = ini(
        dir.path(),
        &u,
        "",
        &format!("{}={}\n{}={}", u.app, enc(&u.app_pw), u.mon, u.mon_pw),
        &format!(
            "mail_host={}\nmail_user=mysqk@example.com\nmail_pass={}\nmail_receiver=dba@example.com",
            smtp.host_port(),
            enc(mail_pw)
        ),
    );
    let q = s.spawn_query(
        &u.app,
        &u.app_pw,
        &format!("SELECT SLEEP(60) /* ALTER USER x IDENTIFIED BY '{literal}' */"),
    );
    s.wait_query_time(q.conn_id, 1);
    let (code, text, _) = run(mysqk_bin()
        .env("MYSQK_KEY", &key)
        .env("RUST_LOG", "trace")
        .args(["-vv", "kill", "-c", ini.to_str().unwrap(), "--db", "x"]));
    assert_eq!(code, 0, "{text}");
    assert!(support::is_killed_error(
        &q.join_within(Duration::from_secs(10)).unwrap_err()
    ));
    assert!(
        text.contains("DEBUG") || text.contains("TRACE"),
        "debug logging is on:\n{text}"
    );
    assert!(
        text.contains("IDENTIFIED BY '***'"),
        "redacted, still readable:\n{text}"
    );

    let mails = smtp.wait_messages(1, Duration::from_secs(10));
    assert_eq!(mails[0].auth.as_ref().map(|a| a.1.as_str()), Some(mail_pw));
    let mail = format!("{}\n{}", mails[0].data, mails[0].text());
    assert!(mail.contains("IDENTIFIED BY '***'"), "{mail}");

    let mut places = vec![("output".to_string(), text)];
    places.push(("mail".to_string(), mail));
    let mut files = 0;
    for entry in walk(&dir.path().join("snap")) {
        files += 1;
        let bytes = std::fs::read(&entry).unwrap();
        places.push((
            entry.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    assert!(files >= 1, "a snapshot was written");

    let (code, check, _) = run(mysqk_bin()
        .env("MYSQK_KEY", &key)
        .env("RUST_LOG", "trace")
        .args(["-vv", "check-config", "-c", ini.to_str().unwrap()]));
    assert_eq!(code, 0, "{check}");
    places.push(("check-config".to_string(), check));

    let secrets = [
        u.app_pw.as_str(),
        u.mon_pw.as_str(),
        mail_pw,
        literal,
        key.as_str(),
    ];
    for (place, content) in &places {
        for secret in secrets {
            assert!(
                !content.contains(secret),
                "`{secret}` leaked into {place}:\n{content}"
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
