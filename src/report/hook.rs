//! `on_kill_command`: run a command per event with the event as JSON on stdin
//! (to page someone, post to a chat, open a ticket).
//!
//! Runs on the reporter thread, after the snapshot file and the mail, so it
//! never delays a kill; an instance thread never waits for it. The command
//! goes through `sh -c` (pipes and redirections work as in a crontab), in its
//! own process group, with `hook_timeout`: past it, the whole group is killed
//! (`sh -c 'curl ...'` forks, and killing only `sh` would leave `curl`
//! running). A failing, hanging or missing command is logged and changes
//! nothing else.
//!
//! The command gets the event document of [`crate::report::jsonl::event_json`] on
//! stdin, and `MYSQK_INSTANCE` / `MYSQK_SNAPSHOT` in its environment.
//! `MYSQK_KEY` is removed from its environment: a hook has no business with
//! the key that decrypts the passwords.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::report::event::Event;
use crate::report::jsonl;

/// How much of the command's stdout/stderr is kept for the log.
const OUTPUT_KEEP: usize = 2000;
/// After the command ends (or is killed), how long to wait for its output
/// pipes to close: a grandchild that left the process group may hold them.
const DRAIN_WAIT: Duration = Duration::from_millis(500);

/// Why a hook run did not succeed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookError {
    #[error("cannot start `sh -c {command}`: {reason}")]
    Spawn { command: String, reason: String },
    #[error("`{command}` did not finish within {secs} s; killed")]
    Timeout { command: String, secs: u64 },
    #[error("`{command}` failed ({status}){}", stderr_note(.stderr))]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

fn stderr_note(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {}", crate::core::text::cut(s, 300))
    }
}

pub struct Hook {
    command: Option<String>,
    timeout: Duration,
}

impl Hook {
    pub fn new(settings: &Settings) -> Hook {
        Hook {
            command: settings.on_kill_command.clone(),
            timeout: settings.hook_timeout,
        }
    }

    /// Called by the reporter thread once per event. Never panics, never
    /// returns an error: the outcome is logged.
    pub fn run(&self, e: &Event, snapshot: Option<&Path>) {
        let Some(cmd) = &self.command else { return };
        let input = jsonl::event_json(e, snapshot);
        let env = [
            ("MYSQK_INSTANCE", e.dbid.clone()),
            (
                "MYSQK_SNAPSHOT",
                snapshot
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
        ];
        match run_command(cmd, &input, &env, self.timeout) {
            Ok(out) => log::info!(
                "{}: hook `{cmd}` done{}",
                e.dbid,
                if out.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", crate::core::text::cut(out.trim(), 200))
                }
            ),
            Err(err) => log::error!("{}: hook for \"{}\": {err}", e.dbid, jsonl::event_label(e)),
        }
    }
}

/// Run `sh -c command` with `input` on stdin, killing its process group
/// after `timeout`. Returns its stdout (cut) on exit status 0.
pub fn run_command(
    command: &str,
    input: &str,
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<String, HookError> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env_remove("MYSQK_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout can kill everything it started.
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| HookError::Spawn {
        command: command.to_string(),
        reason: e.to_string(),
    })?;
    // Write stdin from another thread: a command that never reads it must
    // not block us past the timeout once the pipe buffer is full.
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.as_bytes().to_vec();
        thread::spawn(move || {
            // EPIPE (the command ignores stdin and exits) is not an error.
            let _ = stdin.write_all(&input);
        });
    }
    let out_rx = drain(child.stdout.take());
    let err_rx = drain(child.stderr.take());
    let status = wait_or_kill(&mut child, timeout);
    let stdout = out_rx.recv_timeout(DRAIN_WAIT).unwrap_or_default();
    let stderr = err_rx.recv_timeout(DRAIN_WAIT).unwrap_or_default();
    match status {
        None => Err(HookError::Timeout {
            command: command.to_string(),
            secs: timeout.as_secs(),
        }),
        Some(Err(e)) => Err(HookError::Failed {
            command: command.to_string(),
            status: format!("cannot wait: {e}"),
            stderr,
        }),
        Some(Ok(s)) if s.success() => Ok(stdout),
        Some(Ok(s)) => Err(HookError::Failed {
            command: command.to_string(),
            status: status_text(s),
            stderr,
        }),
    }
}

fn status_text(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

/// Read a pipe to the end on a thread; the first `OUTPUT_KEEP` bytes arrive on the channel.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut p) = pipe {
        thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            // Keep reading past the limit so the command never blocks on a full pipe.
            while let Ok(n) = p.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = OUTPUT_KEEP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            let _ = tx.send(String::from_utf8_lossy(&kept).into_owned());
        });
    }
    rx
}

/// `None` on timeout (after killing the process group and reaping the child).
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<std::io::Result<ExitStatus>> {
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(Ok(s)),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        if Instant::now() >= end {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) on the group we created (pgid = child's pid).
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        // Polling a child's exit is the only portable way to bound the wait
        // without a signal handler; 20 ms is well under any sane timeout.
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn stdin_and_env_reach_the_command() {
        let out = run_command(
            "printf '%s|' \"$MYSQK_INSTANCE\" \"${MYSQK_KEY:-nokey}\"; cat",
            "{\"a\":1}",
            &[("MYSQK_INSTANCE", "crm0".into())],
            T,
        )
        .unwrap();
        assert_eq!(out, "crm0|nokey|{\"a\":1}");
    }

    #[test]
    fn failure_reports_status_and_stderr() {
        let e = run_command("echo boom >&2; exit 3", "", &[], T).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`echo boom >&2; exit 3` failed (exit status 3): boom"
        );
    }

    /// Gone, or a zombie waiting for init to reap it.
    fn dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // sh forks a grandchild and waits for it; both must die at the timeout.
        let cmd = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let e = run_command(&cmd, "", &[], Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, HookError::Timeout { secs: 1, .. }), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while !dead(pid) {
            assert!(
                Instant::now() < end,
                "grandchild {pid} survived the timeout"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_command_that_ignores_a_large_stdin_still_finishes() {
        let big = "x".repeat(1 << 20);
        assert_eq!(run_command("true", &big, &[], T).unwrap(), "");
    }
}
