//! Log lines that a fleet repeats once per instance (10,000 instances on a
//! closed port would log tens of thousands of identical lines at start) are
//! let through up to [`BURST`] per kind and [`WINDOW`]; the rest are counted
//! and summed up in one line per kind when the window ends
//! ([`summaries`], logged by the `watch` supervisor).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Lines of one kind let through per window.
pub const BURST: u32 = 10;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The repetitive lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<dbid>: watching <addr>`.
    Watching,
    /// `cannot connect to <addr> as <user>: ...`.
    Connect,
    /// `<dbid>: pass failed: ...`.
    PassFailed,
}

const KINDS: [Kind; 3] = [Kind::Watching, Kind::Connect, Kind::PassFailed];

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Watching => "instances started watching",
            Kind::Connect => "failed logins (cannot connect)",
            Kind::PassFailed => "failed passes",
        }
    }
}

#[derive(Clone, Copy)]
struct Counter {
    since: Option<Instant>,
    shown: u32,
    suppressed: u64,
}

static STATE: Mutex<[Counter; 3]> = Mutex::new(
    [Counter {
        since: None,
        shown: 0,
        suppressed: 0,
    }; 3],
);

fn state() -> MutexGuard<'static, [Counter; 3]> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a line of `kind` may be logged now (else it is counted).
pub fn allow(kind: Kind) -> bool {
    let now = Instant::now();
    let mut st = state();
    let c = &mut st[kind.index()];
    if c.since.is_none_or(|s| now.duration_since(s) >= WINDOW) && c.suppressed == 0 {
        c.since = Some(now);
        c.shown = 0;
    }
    if c.shown < BURST {
        c.shown += 1;
        true
    } else {
        c.suppressed += 1;
        false
    }
}

/// One line per kind whose window ended with lines suppressed.
pub fn summaries() -> Vec<String> {
    let now = Instant::now();
    let mut st = state();
    let mut out = Vec::new();
    for kind in KINDS {
        let c = &mut st[kind.index()];
        let ended = c.since.is_some_and(|s| now.duration_since(s) >= WINDOW);
        if ended && c.suppressed > 0 {
            out.push(format!(
                "{} more {} in the last {} s (lines not shown; the status file has each instance)",
                c.suppressed,
                kind.what(),
                WINDOW.as_secs()
            ));
            c.suppressed = 0;
            c.since = Some(now);
            c.shown = 0;
        }
    }
    out
}
