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
    /// `<dbid>: stopped`.
    Stopped,
}

const KINDS: [Kind; 4] = [
    Kind::Watching,
    Kind::Connect,
    Kind::PassFailed,
    Kind::Stopped,
];

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Watching => "instances started watching",
            Kind::Connect => "failed logins (cannot connect)",
            Kind::PassFailed => "failed passes",
            Kind::Stopped => "instances stopped",
        }
    }
}

#[derive(Clone, Copy)]
struct Counter {
    since: Option<Instant>,
    shown: u32,
    suppressed: u64,
}

static STATE: Mutex<[Counter; KINDS.len()]> = Mutex::new(
    [Counter {
        since: None,
        shown: 0,
        suppressed: 0,
    }; KINDS.len()],
);

fn state() -> MutexGuard<'static, [Counter; KINDS.len()]> {
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
    summarize(false)
}

/// Every suppressed count now, window over or not (at the end of `watch`).
pub fn flush() -> Vec<String> {
    summarize(true)
}

fn summarize(all: bool) -> Vec<String> {
    let now = Instant::now();
    let mut st = state();
    let mut out = Vec::new();
    for kind in KINDS {
        let c = &mut st[kind.index()];
        let ended = all || c.since.is_some_and(|s| now.duration_since(s) >= WINDOW);
        if ended && c.suppressed > 0 {
            out.push(format!(
                "{} more {} in the last {:.0} s (lines not shown; the status file has each instance)",
                c.suppressed,
                kind.what(),
                c.since.map_or(0.0, |s| now.duration_since(s).as_secs_f64())
            ));
            c.suppressed = 0;
            c.since = Some(now);
            c.shown = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_summary() {
        // Only this test uses Kind::Watching in the unit-test binary.
        let shown = (0..100).filter(|_| allow(Kind::Watching)).count();
        assert_eq!(shown, BURST as usize);
        let lines = flush();
        let line = lines
            .iter()
            .find(|l| l.contains("instances started watching"))
            .expect("a summary");
        assert!(line.starts_with("90 more"), "{line}");
        assert!(flush().iter().all(|l| !l.contains("started watching")));
        assert!(allow(Kind::Watching), "a new window after the summary");
    }
}
