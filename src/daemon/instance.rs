//! One watched instance: the blocking loop `watch` runs on its own thread.
//!
//! ```text
//! loop {
//!     keep sessions  ping the held sessions, re-open missing ones (the backoff
//!                    lives in `Sessions`: at most one attempt per user per interval)
//!     config         a reload arrives over the control channel (the supervisor
//!                    owns the file and hands over a whole, validated Config)
//!     scan           processlist (+ lock waits) through db_puser
//!     verify         kills sent by earlier passes, checked against this scan
//!     match          matcher::select_victims, minus pending kills and dry-run repeats
//!     snapshot       before any kill
//!     kill           through the owner's own held session
//!     report         one Event to the reporter (try_send: never blocks)
//!     wait           until the next pass, or earlier (`next_crossing`), or a control message
//! }
//! ```
//!
//! Every wait is a `recv_timeout` on the control channel, so a stop request or
//! a new config is seen at once; the only other blocking calls are queries,
//! each bounded by the connection's read_timeout, with a stop check between them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{Local, NaiveTime};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};

use crate::config::{Config, Instance, TimeWindow};
use crate::core::matcher::{self, Rules, Scan, Victim};
use crate::core::row::ProcRow;
use crate::core::verify::{self, Finding, Policy, Tracker};
use crate::daemon::pass;
use crate::daemon::status::{self, StatusBoard};
use crate::report::event::{Event, Followup};
use crate::report::flood;
use crate::report::output;
use crate::report::reporter::ReportSender;
use crate::server::killer::{KillResult, Lanes, Outcome};
use crate::server::session::{Sessions, Target, RESYNC_POLL};

/// Never wake up sooner than this after a scan (no busy loop, whatever the rows say).
pub const MIN_WAKE: Duration = Duration::from_millis(50);
/// Added to a computed crossing time so the server's TIME has surely reached the limit.
pub const CROSS_MARGIN: Duration = Duration::from_millis(20);

/// The longest a pass waits for the answers to its KILLs (see [`Lanes`]).
pub const KILL_WAIT: Duration = Duration::from_millis(250);

/// `run_max_count` value meaning "check forever".
pub const RUN_FOREVER: u32 = 999;

/// Messages from the supervisor to an instance thread.
pub enum Control {
    Config(Arc<Config>),
    Stop,
}

/// What the instance does right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Checking,
    /// `run_max_count` is 0 or used up: sessions are kept alive, nothing is checked.
    KeepAlive,
    OutsideWindow,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Checking => "checking",
            Mode::KeepAlive => "keep-alive",
            Mode::OutsideWindow => "outside-window",
        }
    }
}

/// `run_max_count` and `run_time_window` semantics (SPEC 2), pure.
pub fn mode(
    run_max_count: u32,
    run_count: u64,
    window: Option<TimeWindow>,
    now: NaiveTime,
) -> Mode {
    if run_max_count == 0 || (run_max_count != RUN_FOREVER && run_count >= u64::from(run_max_count))
    {
        Mode::KeepAlive
    } else if window.is_some_and(|w| !w.contains(now)) {
        Mode::OutsideWindow
    } else {
        Mode::Checking
    }
}

/// Reaction speed: how long after `scan` was read the first thread that is
/// not a victim yet becomes one by time alone — a statement reaching
/// `k_longtime`, a sleeper reaching `k_sleep`, a lock wait reaching `k_lock`.
/// The loop wakes up then instead of a whole `check_interval` later.
///
/// MariaDB's `TIME_MS` (or MySQL's statement timers) gives the milliseconds;
/// without them the time that has certainly passed is used (MySQL's `TIME`
/// less the second it may be high by), so the estimate errs late, never
/// early. Lock wait times are whole seconds, also counted at least. `skip` lists threads already
/// handled (pending kills, dry-run repeats, this pass's victims). Pile-up
/// class rules (`k_query_count`, ...) are not predicted: a class that becomes
/// abnormal is seen at the next regular pass.
pub fn next_crossing(scan: &Scan, rules: &Rules, skip: &HashSet<u64>) -> Option<Duration> {
    let candidate = |row: &ProcRow| {
        rules.users.contains(&row.user)
            && !skip.contains(&row.id)
            && matcher::protected(row, &scan.own_ids).is_none()
            && !rules
                .exclude
                .as_ref()
                .is_some_and(|re| re.is_match(&row.row_text()))
            && rules.fields.rejects(row).is_none()
    };
    let mut best: Option<u64> = None;
    let mut consider = |ms: u64| best = Some(best.map_or(ms, |b| b.min(ms)));
    for row in scan.rows.iter().filter(|r| candidate(r)) {
        let limit = if row.command == "Sleep" {
            rules.sleep
        } else {
            rules.longtime
        };
        let limit_ms = limit.saturating_mul(1000);
        if limit > 0 && row.ms_at_least() < limit_ms {
            consider(limit_ms - row.ms_at_least());
        }
    }
    if rules.lock > 0 {
        for w in scan.lock_waits.iter().filter(|w| w.wait_secs < rules.lock) {
            if scan.rows.iter().any(|r| r.id == w.blocking && candidate(r)) {
                consider((rules.lock - w.wait_secs).saturating_mul(1000));
            }
        }
    }
    best.map(Duration::from_millis)
}

/// Who a thread id belonged to: ids are reused after a server restart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ThreadKey {
    user: String,
    host: String,
}

impl ThreadKey {
    fn of(row: &ProcRow) -> ThreadKey {
        ThreadKey {
            user: row.user.clone(),
            host: row.host.clone(),
        }
    }

    fn is(&self, row: &ProcRow) -> bool {
        self.user == row.user && self.host == row.host
    }
}

/// Forget threads that left the processlist (so the map stays small and a
/// reused id is a new thread).
fn forget_gone(map: &mut HashMap<u64, ThreadKey>, rows: &[ProcRow]) {
    // The usual case: nothing remembered, no need to index every thread.
    if map.is_empty() {
        return;
    }
    let live: HashMap<u64, &ProcRow> = rows.iter().map(|r| (r.id, r)).collect();
    map.retain(|id, key| live.get(id).is_some_and(|r| key.is(r)));
}

/// Counters published in the status file.
#[derive(Debug, Default)]
struct Stats {
    passes: u64,
    matched: u64,
    kills: u64,
    errors: u64,
    dropped: u64,
    last_pass: Option<chrono::DateTime<Local>>,
    last_pass_ok: Option<bool>,
    last_error: Option<String>,
}

/// The supervisor's handle on one instance thread.
pub struct InstanceHandle {
    pub dbid: String,
    pub addr: String,
    tx: Sender<Control>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl InstanceHandle {
    /// Start watching `inst` on a new thread.
    pub fn spawn(
        cfg: Arc<Config>,
        inst: Instance,
        generation: u64,
        reporter: ReportSender,
        board: Arc<StatusBoard>,
    ) -> std::io::Result<InstanceHandle> {
        let (tx, rx) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let dbid = inst.dbid.clone();
        let addr = inst.addr();
        board.register(&dbid, &addr, generation);
        let worker = Worker::new(cfg, inst, generation, reporter, board, stop.clone(), rx);
        let handle = std::thread::Builder::new()
            .name(format!("inst-{dbid}"))
            .spawn(move || worker.run())?;
        Ok(InstanceHandle {
            dbid,
            addr,
            tx,
            stop,
            handle: Some(handle),
        })
    }

    /// Hand over a reloaded config (applied before the next pass).
    pub fn reconfigure(&self, cfg: Arc<Config>) {
        let _ = self.tx.send(Control::Config(cfg));
    }

    /// Ask the thread to stop; it notices within one bounded query at most.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Control::Stop);
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Join a finished (or finishing) thread. False if it panicked.
    pub fn join(mut self) -> bool {
        self.handle.take().is_none_or(|h| h.join().is_ok())
    }
}

struct Worker {
    dbid: String,
    generation: u64,
    cfg: Arc<Config>,
    inst: Instance,
    sessions: Sessions,
    reporter: ReportSender,
    board: Arc<StatusBoard>,
    stop: Arc<AtomicBool>,
    rx: Receiver<Control>,
    /// The value the current run was started with; a change is a clean start.
    run_max_count: u32,
    /// Counted passes since the last clean start.
    run_count: u64,
    /// When the next counted (every `check_interval`) pass is due.
    next_counted: Instant,
    /// An extra, uncounted pass for a thread about to cross a limit.
    early: Option<Instant>,
    next_ping: Instant,
    next_connect: Instant,
    /// Dry run: threads already reported (once per thread, across passes).
    dry_reported: HashMap<u64, ThreadKey>,
    /// Victims no session could kill, already reported once.
    no_session_reported: HashMap<u64, ThreadKey>,
    /// Victims whose owner's session was not ready yet, already reported once.
    pending_reported: HashMap<u64, ThreadKey>,
    /// Kills sent and not yet known to have worked (the verify step).
    tracker: Tracker,
    /// Kill threads still out with a session, and their late answers.
    lanes: Lanes,
    stats: Stats,
    /// Keep-alive rounds done (published: the loop's heartbeat).
    ping_rounds: u64,
}

/// How long a held session may wait for a stalled server before one of the
/// others is used to ask whether the server answers at all.
pub fn stall_patience(read_timeout: Duration) -> Duration {
    (read_timeout * 5).max(Duration::from_secs(30))
}

fn max_backoff(cfg: &Config) -> Duration {
    // A dead server is retried at least once per keep-alive period; the
    // backoff itself starts at 1 s (and check_interval is at least 1 s).
    (cfg.settings.check_interval * cfg.settings.ping_multi).max(Duration::from_secs(1))
}

impl Worker {
    fn new(
        cfg: Arc<Config>,
        inst: Instance,
        generation: u64,
        reporter: ReportSender,
        board: Arc<StatusBoard>,
        stop: Arc<AtomicBool>,
        rx: Receiver<Control>,
    ) -> Worker {
        let mut sessions = Sessions::new(Target::of(&cfg, &inst))
            .for_instance(&inst.dbid)
            .share_unreachable();
        sessions.max_backoff = max_backoff(&cfg);
        let killed_report = inst.rules.killed_report;
        let now = Instant::now();
        Worker {
            dbid: inst.dbid.clone(),
            generation,
            run_max_count: cfg.run_max_count,
            cfg,
            inst,
            sessions,
            reporter,
            board,
            stop,
            rx,
            run_count: 0,
            next_counted: now,
            early: None,
            next_ping: now,
            next_connect: now,
            dry_reported: HashMap::new(),
            no_session_reported: HashMap::new(),
            pending_reported: HashMap::new(),
            tracker: Tracker::new(Policy::new(killed_report)),
            lanes: Lanes::new(),
            stats: Stats::default(),
            ping_rounds: 0,
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn interval(&self) -> Duration {
        self.cfg.settings.check_interval
    }

    /// How long a pass waits for its KILLs' answers before it goes on (a
    /// slow KILL is answered in a later pass, never holding up this loop
    /// for more than this).
    fn kill_wait(&self) -> Duration {
        (self.interval() / 4).min(KILL_WAIT)
    }

    fn mode(&self) -> Mode {
        mode(
            self.run_max_count,
            self.run_count,
            self.inst.window,
            Local::now().time(),
        )
    }

    fn run(mut self) {
        if flood::allow(flood::Kind::Watching) {
            log::info!(
                "{}: watching {} (run_max_count={}, dry_run={})",
                self.dbid,
                self.inst.addr(),
                self.run_max_count,
                u8::from(self.inst.dry_run)
            );
        }
        'outer: loop {
            if self.stopping() {
                break;
            }
            self.keep_sessions(self.mode());
            if self.stopping() {
                break;
            }
            let mode = self.mode();
            if mode == Mode::Checking {
                let now = Instant::now();
                let counted = now >= self.next_counted;
                if counted || self.early.is_some_and(|t| now >= t) {
                    if counted {
                        self.next_counted = now + self.interval();
                    }
                    self.pass(counted);
                }
            } else {
                self.early = None;
            }
            // Between two rounds nothing is in flight on any session.
            self.sessions.trim();
            self.publish(self.mode());
            let timeout = self
                .next_wake(self.mode())
                .saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(timeout) {
                Ok(msg) => {
                    if !self.handle(msg) {
                        break;
                    }
                    // Several reloads in a row: apply them all, in order.
                    while let Ok(msg) = self.rx.try_recv() {
                        if !self.handle(msg) {
                            break 'outer;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if flood::allow(flood::Kind::Stopped) {
            log::info!("{}: stopped", self.dbid);
        }
    }

    /// False: stop.
    fn handle(&mut self, msg: Control) -> bool {
        match msg {
            Control::Stop => false,
            Control::Config(cfg) => {
                self.apply(cfg);
                true
            }
        }
    }

    fn next_wake(&self, mode: Mode) -> Instant {
        // Waking every check_interval at least (next_connect) also re-evaluates
        // the time window while outside it.
        let mut wake = self.next_connect.min(self.next_ping);
        if let Some(t) = self.sessions.next_due() {
            wake = wake.min(t.max(Instant::now() + MIN_WAKE.min(RESYNC_POLL)));
        }
        if mode == Mode::Checking {
            wake = wake.min(self.next_counted);
            if let Some(e) = self.early {
                wake = wake.min(e);
            }
        }
        wake
    }

    /// Ping held sessions (every check_interval while checking, every
    /// check_interval * ping_multi otherwise) and re-open missing ones.
    ///
    /// While a held session waits for a stalled server, the others are left
    /// alone: a ping would only stall them too, and a session with nothing
    /// in flight is usable the moment the server wakes. After
    /// [`stall_patience`] one ping tells a server that is stalled from one
    /// that answers while a single connection is stuck; a stuck one is then
    /// given up and re-opened.
    fn keep_sessions(&mut self, mode: Mode) {
        self.sessions.poll();
        let now = Instant::now();
        let interval = self.interval();
        let stalled = self.sessions.stalled_since();
        let patience = stall_patience(self.sessions.target.read_timeout);
        if now >= self.next_ping {
            let period = if mode == Mode::Checking {
                interval
            } else {
                interval * self.cfg.settings.ping_multi
            };
            self.next_ping = now + period;
            self.ping_rounds += 1;
            let probe_only = match stalled {
                Some(t) if now.duration_since(t) < patience => Some(0),
                Some(_) => Some(1),
                None => None,
            };
            let users = self.sessions.connected_users();
            let users = match probe_only {
                Some(n) => &users[..n.min(users.len())],
                None => &users[..],
            };
            for user in users {
                if self.stopping() {
                    return;
                }
                let t = Instant::now();
                if self.sessions.ping(user) {
                    if probe_only.is_some() {
                        self.sessions.give_up_stalled(patience);
                    }
                } else {
                    if probe_only.is_some() {
                        // Still stalled: whatever answered before no longer counts.
                        self.sessions.server_silent();
                    }
                    // Re-open it now rather than an interval later.
                    self.next_connect = now;
                    if self.no_answer(t, self.sessions.target.read_timeout) {
                        break;
                    }
                }
            }
        }
        let retry_due = self.sessions.next_due().is_some_and(|t| now >= t);
        if now >= self.next_connect || retry_due {
            if now >= self.next_connect {
                self.next_connect = now + interval;
            }
            let cfg = self.cfg.clone();
            let limit = self
                .sessions
                .target
                .connect_timeout
                .min(self.sessions.target.read_timeout);
            for a in &cfg.auth {
                if self.stopping() {
                    return;
                }
                let t = Instant::now();
                if self.sessions.ensure(&a.user, &a.password).is_none() && self.no_answer(t, limit)
                {
                    break;
                }
            }
        }
    }

    /// A call that failed only after (about) its whole timeout: the server
    /// does not answer. The rest of this round is skipped — each further
    /// session would cost another timeout — and retried on the next one.
    fn no_answer(&self, started: Instant, timeout: Duration) -> bool {
        let hung = started.elapsed() >= timeout.mul_f64(0.9);
        if hung {
            log::debug!(
                "{}: no answer within {timeout:?}; skipping the other sessions this round",
                self.dbid
            );
        }
        hung
    }

    fn apply(&mut self, cfg: Arc<Config>) {
        let Some(inst) = cfg.instance(&self.dbid).cloned() else {
            // Removed from [db_info]: the supervisor stops this thread.
            self.cfg = cfg;
            return;
        };
        for user in self.sessions.users() {
            if cfg.password(&user).is_none() {
                log::info!("{}: {user} left [db_auth]: closing its session", self.dbid);
                self.sessions.remove(&user);
            }
        }
        let target = Target::of(&cfg, &inst);
        self.sessions.target.connect_timeout = target.connect_timeout;
        self.sessions.target.read_timeout = target.read_timeout;
        self.sessions.max_backoff = max_backoff(&cfg);
        let now = Instant::now();
        if cfg.run_max_count != self.run_max_count {
            log::info!(
                "{}: run_max_count {} -> {}: clean start",
                self.dbid,
                self.run_max_count,
                cfg.run_max_count
            );
            self.run_max_count = cfg.run_max_count;
            self.run_count = 0;
            self.next_counted = now;
        } else {
            // New rules take effect at once, with an extra (uncounted) pass.
            self.early = Some(now);
        }
        if inst.dry_run != self.inst.dry_run {
            self.dry_reported.clear();
        }
        self.tracker.policy = Policy::new(inst.rules.killed_report);
        self.cfg = cfg;
        self.inst = inst;
        // Users added to [db_auth] get their session now.
        self.next_connect = now;
    }

    /// The verify step: every earlier kill checked against this scan — gone,
    /// statement stopped, escalated from KILL QUERY to KILL CONNECTION, stuck
    /// in `Killed`. The decisions live in [`crate::core::verify`]; [`pass::verify`]
    /// reads `INNODB_TRX`, sends the escalations and logs every finding. Only
    /// the notable findings become events: "gone" after every kill would
    /// double the snapshots without telling anything new.
    fn verify_step(
        &mut self,
        rules: &Rules,
        rows: &[ProcRow],
        plog: &mut PassLog,
    ) -> Vec<Followup> {
        let findings = pass::verify(
            &self.cfg,
            &self.inst,
            rules,
            &mut self.sessions,
            &mut self.tracker,
            rows,
        );
        pass::log_findings(&self.dbid, &findings);
        plog.earlier(&findings);
        for f in &findings {
            if f.kind == verify::Kind::Escalated {
                self.stats.kills += 1;
            }
            if f.kind == verify::Kind::EscalationFailed {
                self.stats.errors += 1;
            }
        }
        findings
            .iter()
            .filter(|f| f.notable())
            .map(Finding::followup)
            .collect()
    }

    /// While a kill is not known to have worked, look again after the
    /// escalation grace time rather than a whole check_interval later (a
    /// kill already reported as stuck waits for the normal passes).
    fn verify_soon(&mut self, from: Instant) {
        if self.tracker.is_empty() || self.tracker.settled() {
            return;
        }
        let at = from + self.tracker.policy.grace.max(MIN_WAKE);
        self.early = Some(self.early.map_or(at, |e| e.min(at)));
    }

    fn fail_pass(&mut self, msg: String) {
        self.stats.errors += 1;
        self.stats.last_pass_ok = Some(false);
        // One line per distinct failure, not one per interval. The reason is
        // said once: when db_puser's session failed, its own log line gave it.
        if self.stats.last_error.as_deref() != Some(msg.as_str())
            && flood::allow(flood::Kind::PassFailed)
        {
            if self.sessions.error_of(&self.inst.puser).is_some() {
                log::warn!(
                    "{}: pass failed: no session of db_puser {}",
                    self.dbid,
                    self.inst.puser
                );
            } else {
                let text = msg
                    .strip_prefix(&format!("{}: ", self.dbid))
                    .unwrap_or(&msg);
                log::warn!("{}: pass failed: {text}", self.dbid);
            }
        }
        self.stats.last_error = Some(msg);
    }

    /// One check pass: scan -> verify -> match -> snapshot -> kill -> report.
    fn pass(&mut self, counted: bool) {
        if self.sessions.stalled_since().is_some() {
            // No pass while a held session waits for the server: the scan
            // would only stall db_puser's session as well (keep_sessions).
            self.early = None;
            self.stats.passes += 1;
            self.fail_pass("the server does not answer; its held sessions wait for it".to_string());
            return;
        }
        self.stats.passes += 1;
        let mut plog = PassLog::new(&self.dbid, self.stats.passes);
        if counted {
            self.run_count += 1;
        }
        self.stats.last_pass = Some(Local::now());
        let rules = self.inst.rules.clone();
        let pending = self.tracker.ids();
        let scope = pass::Scope::Candidates(&pending);
        let scanned = pass::scan_scoped(&self.cfg, &self.inst, &rules, &mut self.sessions, scope);
        plog.step("scan");
        let (scan, complete) = match scanned {
            Ok(s) => (s.scan, s.complete),
            Err(e) => {
                self.early = None;
                self.fail_pass(e.to_string());
                return;
            }
        };
        let read_at = Instant::now();
        if self.stats.last_pass_ok == Some(false) {
            log::info!("{}: processlist readable again", self.dbid);
        }
        self.stats.last_pass_ok = Some(true);
        self.stats.last_error = None;

        plog.rows = scan.rows.len();
        let late = self.lanes.drain(&mut self.sessions, Duration::ZERO);
        let followups = self.verify_step(&rules, &scan.rows, &mut plog);
        plog.step("verify");
        let dry_run = self.inst.dry_run;
        forget_gone(&mut self.dry_reported, &scan.rows);
        forget_gone(&mut self.no_session_reported, &scan.rows);
        forget_gone(&mut self.pending_reported, &scan.rows);
        let mut skip: HashSet<u64> = self.tracker.ids();
        if dry_run {
            skip.extend(self.dry_reported.keys().copied());
        }
        let victims: Vec<Victim> = matcher::select_victims(&scan, &rules)
            .into_iter()
            .filter(|v| !skip.contains(&v.row.id))
            .collect();
        skip.extend(victims.iter().map(|v| v.row.id));
        plog.step("match");
        self.early =
            next_crossing(&scan, &rules, &skip).map(|d| read_at + (d + CROSS_MARGIN).max(MIN_WAKE));
        self.verify_soon(read_at);
        if victims.is_empty() && followups.is_empty() && late.is_empty() {
            return;
        }

        // A victim reported as unkillable before needs no new snapshot.
        let fresh = victims.iter().any(|v| {
            !self.no_session_reported.contains_key(&v.row.id)
                && !self.pending_reported.contains_key(&v.row.id)
        });
        let snapshot = if fresh {
            pass::take_snapshot(
                &self.inst,
                &mut self.sessions,
                complete.then_some(&scan.rows[..]),
            )
        } else {
            None
        };
        plog.step("snapshot");
        let mut outcomes = if victims.is_empty() {
            Vec::new()
        } else {
            let wait = self.kill_wait();
            pass::kill(
                &self.cfg,
                &self.inst,
                &rules,
                dry_run,
                &mut self.sessions,
                &mut self.lanes,
                &victims,
                wait,
            )
        };
        plog.step("kill");
        let sent = Instant::now();
        let mut reported = Vec::new();
        for o in &late {
            // A late answer: the kill is tracked since it was sent, unless
            // the answer says it did not take.
            if !matches!(o.result, KillResult::Killed { .. }) {
                self.tracker.forget(o.victim.row.id);
            }
        }
        let late_ids: HashSet<u64> = late.iter().map(|o| o.victim.row.id).collect();
        outcomes.splice(0..0, late);
        for o in outcomes {
            let row = &o.victim.row;
            match &o.result {
                KillResult::Killed { .. } => {
                    self.stats.kills += 1;
                    self.no_session_reported.remove(&row.id);
                    self.pending_reported.remove(&row.id);
                }
                KillResult::DryRun => {
                    self.dry_reported.insert(row.id, ThreadKey::of(row));
                }
                KillResult::NoSession { .. }
                | KillResult::Pending { .. }
                | KillResult::LoginFailed { .. } => {
                    let said = if matches!(o.result, KillResult::Pending { .. }) {
                        &mut self.pending_reported
                    } else {
                        &mut self.no_session_reported
                    };
                    if said.insert(row.id, ThreadKey::of(row)).is_some() {
                        // Tried again (a session may have come back), said once.
                        continue;
                    }
                    if o.result.is_failure() {
                        self.stats.errors += 1;
                    }
                }
                KillResult::Failed { .. } => self.stats.errors += 1,
                KillResult::Gone
                | KillResult::ChangedBeforeKill { .. }
                | KillResult::Unanswered { .. } => {}
            }
            self.stats.matched += 1;
            let line = output::log_line(&self.dbid, &o);
            match &o.result {
                KillResult::NoSession { .. }
                | KillResult::Pending { .. }
                | KillResult::LoginFailed { .. }
                | KillResult::Failed { .. } => log::warn!("{line}"),
                _ => log::info!("{line}"),
            }
            reported.push(o);
        }
        if !reported.is_empty() {
            plog.summary
                .push(output::Tally::of(&reported, dry_run).text());
        }
        let fresh_kills: Vec<Outcome> = reported
            .iter()
            .filter(|o| !late_ids.contains(&o.victim.row.id))
            .cloned()
            .collect();
        self.tracker.track(&fresh_kills, sent);
        if !reported.is_empty() {
            self.verify_soon(sent);
        }
        if reported.is_empty() && followups.is_empty() {
            return;
        }
        let mut event = Event::new(&self.dbid, &self.inst.addr(), dry_run);
        event.outcomes = reported;
        event.followups = followups;
        event.snapshot = snapshot;
        if !self.reporter.send(event) {
            self.stats.dropped += 1;
        }
    }

    fn publish(&self, mode: Mode) {
        let connected_users = self.sessions.connected_users();
        // Checkable: db_puser's session in step, and no held session waiting
        // for a stalled server (no pass runs then).
        let connected =
            connected_users.contains(&self.inst.puser) && self.sessions.stalled_since().is_none();
        let disconnected = self.sessions.errors().into_iter().collect();
        let st = &self.stats;
        self.board.update(&self.dbid, self.generation, |s| {
            s.addr = self.inst.addr();
            s.state = mode.label().into();
            s.connected = connected;
            s.connected_users = connected_users;
            s.held_sessions = self.sessions.held_ids();
            s.disconnected_users = disconnected;
            s.last_pass = st.last_pass.map(status::timestamp);
            s.last_pass_ok = st.last_pass_ok;
            s.passes = st.passes;
            s.run_count = self.run_count;
            s.run_max_count = self.run_max_count;
            s.dry_run = self.inst.dry_run;
            s.matched = st.matched;
            s.kills = st.kills;
            s.errors = st.errors;
            s.last_error = st.last_error.clone();
            s.dropped_events = st.dropped;
            s.pending_kills = self.tracker.len();
            s.ping_rounds = self.ping_rounds;
        });
    }
}

/// What one pass logs, however it ends: its timings at debug (`-vv`), and,
/// when it did something, one summary line at info: the kills of this pass
/// by result, and what the earlier ones came to. A storm of 57 threads is
/// then 57 kill lines (SPEC 5) and one summary, not a second line per kill.
struct PassLog {
    dbid: String,
    pass: u64,
    mark: Instant,
    rows: usize,
    steps: Vec<(&'static str, Duration)>,
    summary: Vec<String>,
}

impl PassLog {
    fn new(dbid: &str, pass: u64) -> PassLog {
        PassLog {
            dbid: dbid.to_string(),
            pass,
            mark: Instant::now(),
            rows: 0,
            steps: Vec::new(),
            summary: Vec::new(),
        }
    }

    /// The time since the previous step was spent in `name`.
    fn step(&mut self, name: &'static str) {
        let now = Instant::now();
        self.steps.push((name, now - self.mark));
        self.mark = now;
    }

    /// Earlier kills, counted by what became of them.
    fn earlier(&mut self, findings: &[Finding]) {
        let mut by_kind: Vec<(&'static str, usize)> = Vec::new();
        for f in findings {
            match by_kind.iter_mut().find(|(k, _)| *k == f.kind.label()) {
                Some((_, n)) => *n += 1,
                None => by_kind.push((f.kind.label(), 1)),
            }
        }
        if !by_kind.is_empty() {
            let parts: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
            self.summary
                .push(format!("earlier kills: {}", parts.join(", ")));
        }
    }
}

impl Drop for PassLog {
    fn drop(&mut self) {
        if log::log_enabled!(log::Level::Debug) {
            let steps: Vec<String> = self
                .steps
                .iter()
                .map(|(n, d)| format!("{n} {:.1} ms", d.as_secs_f64() * 1000.0))
                .collect();
            log::debug!(
                "{}: pass {}: {} read; {}",
                self.dbid,
                self.pass,
                output::count(self.rows, "row"),
                steps.join(", ")
            );
        }
        if !self.summary.is_empty() {
            log::info!(
                "{}: pass {}: {}",
                self.dbid,
                self.pass,
                self.summary.join("; ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::matcher::{LockWait, UserFilter};

    fn row(id: u64, user: &str, command: &str, time_ms: u64) -> ProcRow {
        ProcRow {
            query_id: None,
            id,
            user: user.into(),
            host: "10.0.0.5:5100".into(),
            db: None,
            command: command.into(),
            time: time_ms / 1000,
            time_ms: Some(time_ms),
            time_high: false,
            state: None,
            info: (command != "Sleep").then(|| "select sleep(60)".to_string()),
        }
    }

    fn rules() -> Rules {
        Rules {
            users: UserFilter::Users(["app1".to_string()].into_iter().collect()),
            longtime: 10,
            sleep: 30,
            ..Rules::default()
        }
    }

    fn scan(rows: Vec<ProcRow>) -> Scan {
        Scan {
            rows,
            ..Scan::default()
        }
    }

    #[test]
    fn modes() {
        let t = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap();
        let w = crate::config::parse_window("22:00-06:00");
        assert_eq!(mode(0, 0, None, t(12)), Mode::KeepAlive);
        assert_eq!(mode(999, 123_456, None, t(12)), Mode::Checking);
        assert_eq!(mode(3, 2, None, t(12)), Mode::Checking);
        assert_eq!(mode(3, 3, None, t(12)), Mode::KeepAlive);
        assert_eq!(mode(1000, 999, None, t(12)), Mode::Checking);
        assert_eq!(mode(999, 0, w, t(12)), Mode::OutsideWindow);
        assert_eq!(mode(999, 0, w, t(23)), Mode::Checking);
        assert_eq!(mode(999, 0, w, t(3)), Mode::Checking);
    }

    #[test]
    fn crossing_uses_milliseconds_and_the_right_limit() {
        let none = HashSet::new();
        let s = scan(vec![
            row(1, "app1", "Query", 7_250),  // 2.75 s to k_longtime
            row(2, "app1", "Sleep", 29_500), // 0.5 s to k_sleep
            row(3, "app2", "Query", 9_990),  // not in k_user
        ]);
        assert_eq!(
            next_crossing(&s, &rules(), &none),
            Some(Duration::from_millis(500))
        );
        let skip: HashSet<u64> = [2].into_iter().collect();
        assert_eq!(
            next_crossing(&s, &rules(), &skip),
            Some(Duration::from_millis(2_750))
        );
        // Already over the limit (a victim, handled by the pass): no crossing.
        let s = scan(vec![row(4, "app1", "Query", 12_000)]);
        assert_eq!(next_crossing(&s, &rules(), &none), None);
    }

    #[test]
    fn crossing_skips_protected_excluded_and_disabled() {
        let none = HashSet::new();
        let mut r = rules();
        r.sleep = 0;
        r.exclude = Some(regex::Regex::new("nightly").unwrap());
        let mut excluded = row(1, "app1", "Query", 1_000);
        excluded.info = Some("nightly report".into());
        let mut s = scan(vec![excluded, row(2, "app1", "Sleep", 1_000)]);
        assert_eq!(next_crossing(&s, &r, &none), None);
        s.rows.push(row(3, "app1", "Killed", 1_000));
        assert_eq!(next_crossing(&s, &r, &none), None);
        s.rows.push(row(4, "app1", "Query", 4_000));
        s.own_ids.insert(4);
        assert_eq!(next_crossing(&s, &r, &none), None);
    }

    #[test]
    fn crossing_of_lock_blockers() {
        let mut r = rules();
        r.longtime = 0;
        r.lock = 5;
        let mut s = scan(vec![
            row(1, "app1", "Sleep", 100),
            row(2, "app2", "Query", 100),
        ]);
        s.lock_waits.push(LockWait {
            waiting: 2,
            blocking: 1,
            wait_secs: 2,
        });
        assert_eq!(
            next_crossing(&s, &r, &HashSet::new()),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn reused_id_is_another_thread() {
        let other = row(7, "app2", "Query", 1);
        let mut map = HashMap::new();
        map.insert(7, ThreadKey::of(&row(7, "app1", "Query", 1)));
        forget_gone(&mut map, &[other]);
        assert!(map.is_empty());
    }
}
