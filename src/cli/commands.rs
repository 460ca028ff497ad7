//! Command line: parse flags, load the config, run a command, map the result
//! to an exit code (0 done, 1 runtime failure, 2 usage or config error).

use std::collections::HashSet;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use regex::Regex;

use crate::cli::offline;
use crate::config::crypto;
use crate::config::{self, Config, Instance};
use crate::core::classes::{GroupBy, Pick};
use crate::core::filters::{Column, Kind, FIELD_KEYS};
use crate::core::matcher::{Rules, UserFilter};
use crate::daemon::pass;
use crate::report::jsonl::ThreadRecord;
use crate::report::output;
use crate::server::session::{Sessions, Target};

#[derive(Parser, Debug)]
#[command(
    name = "mysqk",
    version,
    about = "Kill abnormal MySQL/MariaDB threads through each user's own held session",
    long_about = "mysqk kills runaway queries, idle sleepers and lock blockers on MySQL/MariaDB.\n\
It logs in before the incident and kills each thread through its owner's own session,\n\
so it works without SUPER and when new logins fail with 'Too many connections'.\n\n\
Exit codes: 0 done (killed or nothing to kill), 1 runtime failure (an instance\n\
unreachable, a kill failed), 2 usage or config error."
)]
pub struct Cli {
    /// Config file [default: $MYSQK_CONFIG, else ./mysqk.ini]
    #[arg(short = 'c', long = "config", global = true, env = "MYSQK_CONFIG")]
    pub config: Option<PathBuf>,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// One pass on the named instances: print what matched and kill it (unless --dry-run).
    Kill(KillArgs),
    /// Apply an instance's rules to a saved processlist and print what would be
    /// killed and why, without connecting to anything.
    Match(MatchArgs),
    /// Validate the config file and print the effective rules per instance and
    /// the log, status, lock and snapshot paths it resolves to.
    CheckConfig,
    /// Encrypt a password read from stdin (or a no-echo prompt) for the ini.
    EncryptPassword,
    /// Print a new random key (64 hex digits, AES-256) for MYSQK_KEY or key_file.
    GenKey(GenKeyArgs),
    /// Check every instance and user: logins, PROCESS, who can kill whom, lock
    /// tables, connections, clock; print the GRANT that fixes each problem.
    /// Names the sessions a running `mysqk watch` holds (from its status file).
    /// Exit 0 when mysqk can do its job everywhere, 1 otherwise.
    Doctor(DoctorArgs),
    /// Foreground daemon: watch every [db_info] instance, reload the config when
    /// it changes, until SIGINT/SIGTERM (then a clean stop, exit 0).
    Watch(WatchArgs),
    /// Write the man pages and bash/zsh/fish completions under DIR (`make deb`).
    #[command(hide = true)]
    GenAssets(GenAssetsArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct GenAssetsArgs {
    /// Output directory (man/ and completions/ are created in it)
    #[arg(long = "out", value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args, Debug, Clone, Default)]
pub struct WatchArgs {
    /// Lock file stopping a second watch (or an overlapping cron `kill`) on this
    /// config [default: [settings] lock_file, else <snapshot_dir>/mysqk.lock]
    #[arg(long, value_name = "PATH")]
    pub lock_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GenKeyArgs {
    /// Write the key to this new file (mode 0600, never overwritten) instead of stdout
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct KillArgs {
    /// Instances: dbid[,dbid...] or `all`
    #[arg(long = "db", required = true)]
    pub db: String,
    /// Report only: match and snapshot, never KILL
    #[arg(long)]
    pub dry_run: bool,
    /// Only act inside the instance's run_time_window (as watch does)
    #[arg(long)]
    pub respect_window: bool,
    /// One JSON object per matched thread on stdout, one per line (summaries go to stderr)
    #[arg(long)]
    pub json: bool,
    /// Lock file shared with `watch`: an overlapping run exits 2
    /// [default: [settings] lock_file, else <snapshot_dir>/mysqk.lock]
    #[arg(long, value_name = "PATH")]
    pub lock_file: Option<PathBuf>,
    /// Run even while a `watch` or another run holds the lock (a person at a prompt)
    #[arg(long, conflicts_with = "lock_file")]
    pub no_lock: bool,
    /// Seconds to re-read the processlist after killing, to verify each kill,
    /// escalate a KILL QUERY that did not stop its statement, and report
    /// threads stuck in Killed (0 = do not verify)
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    pub verify_secs: u64,
    #[command(flatten)]
    pub rules: RuleFlags,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DoctorArgs {
    /// Instances: dbid[,dbid...] or `all`
    #[arg(long = "db", default_value = "all")]
    pub db: String,
}

#[derive(Args, Debug, Clone, Default)]
pub struct MatchArgs {
    /// The instance whose effective rules apply
    #[arg(long = "db", required = true)]
    pub db: String,
    /// Processlist dump (SHOW FULL PROCESSLIST as \G, boxed table or tab-separated); `-` = stdin
    #[arg(long = "from", required = true, value_name = "DUMP")]
    pub from: String,
    /// One JSON object per matched thread on stdout, one per line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub rules: RuleFlags,
}

/// Flags that replace one of the instance's `k_*` keys (`kill` and `match`).
/// A regex flag given as "" turns that key off.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Rule overrides (each replaces the instance's k_* key)")]
pub struct RuleFlags {
    /// Users whose threads may be killed: u1,u2 | all | none (k_user)
    #[arg(long)]
    pub user: Option<String>,
    /// Seconds a non-Sleep thread may run (k_longtime; 0 = off)
    #[arg(long, value_name = "SECS")]
    pub longtime: Option<u64>,
    /// Seconds a Sleep thread may idle (k_sleep; 0 = off)
    #[arg(long, value_name = "SECS")]
    pub sleep: Option<u64>,
    /// Regex: matching threads are victims regardless of time (k_include)
    #[arg(long, value_name = "RE")]
    pub include: Option<String>,
    /// Regex: matching threads are never killed (k_exclude)
    #[arg(long, value_name = "RE")]
    pub exclude: Option<String>,
    /// Only threads whose Command matches may be killed (k_match_command)
    #[arg(long, value_name = "RE")]
    pub match_command: Option<String>,
    /// Only threads whose State matches (k_match_state)
    #[arg(long, value_name = "RE")]
    pub match_state: Option<String>,
    /// Only threads whose db matches; NULL never matches (k_match_db)
    #[arg(long, value_name = "RE")]
    pub match_db: Option<String>,
    /// Only threads whose Host, without the port, matches (k_match_host)
    #[arg(long, value_name = "RE")]
    pub match_host: Option<String>,
    /// Only threads whose Info (statement) matches (k_match_info)
    #[arg(long, value_name = "RE")]
    pub match_info: Option<String>,
    /// Never threads whose Command matches (k_ignore_command)
    #[arg(long, value_name = "RE")]
    pub ignore_command: Option<String>,
    /// Never threads whose State matches (k_ignore_state)
    #[arg(long, value_name = "RE")]
    pub ignore_state: Option<String>,
    /// Never threads whose db matches (k_ignore_db)
    #[arg(long, value_name = "RE")]
    pub ignore_db: Option<String>,
    /// Never threads whose Host, without the port, matches (k_ignore_host)
    #[arg(long, value_name = "RE")]
    pub ignore_host: Option<String>,
    /// Never threads whose Info matches (k_ignore_info)
    #[arg(long, value_name = "RE")]
    pub ignore_info: Option<String>,
    /// Never threads whose User matches (k_ignore_user)
    #[arg(long, value_name = "RE")]
    pub ignore_user: Option<String>,
    /// Group candidates into classes (k_group_by)
    #[arg(long, value_name = "HOW", value_parser = ["none", "fingerprint", "info"])]
    pub group_by: Option<String>,
    /// A class needs at least N threads (k_query_count; 0 = off)
    #[arg(long, value_name = "N")]
    pub query_count: Option<u64>,
    /// A class needs one thread running longer than SECS s (k_any_busy_time; 0 = off)
    #[arg(long, value_name = "SECS")]
    pub any_busy_time: Option<u64>,
    /// A class needs every thread running longer than SECS s (k_each_busy_time; 0 = off)
    #[arg(long, value_name = "SECS")]
    pub each_busy_time: Option<u64>,
    /// Which threads of an abnormal class are killed (k_victims)
    #[arg(long, value_name = "WHICH", value_parser = ["all", "oldest", "all-but-oldest"])]
    pub victims: Option<String>,
}

impl RuleFlags {
    /// The flag for one per-column key (`k_match_command` -> `--match-command`).
    fn field(&self, kind: Kind, column: Column) -> Option<&String> {
        use Column as C;
        use Kind as K;
        match (kind, column) {
            (K::Match, C::Command) => self.match_command.as_ref(),
            (K::Match, C::State) => self.match_state.as_ref(),
            (K::Match, C::Db) => self.match_db.as_ref(),
            (K::Match, C::Host) => self.match_host.as_ref(),
            (K::Match, C::Info) => self.match_info.as_ref(),
            (K::Ignore, C::Command) => self.ignore_command.as_ref(),
            (K::Ignore, C::State) => self.ignore_state.as_ref(),
            (K::Ignore, C::Db) => self.ignore_db.as_ref(),
            (K::Ignore, C::Host) => self.ignore_host.as_ref(),
            (K::Ignore, C::Info) => self.ignore_info.as_ref(),
            (K::Ignore, C::User) => self.ignore_user.as_ref(),
            // k_user (a list of names) plays pt-kill's --match-user.
            (K::Match, C::User) => None,
        }
    }
}

/// Everything that ends a command, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Runtime(_) => 1,
            CliError::Usage(_) | CliError::Config(_) => 2,
        }
    }
}

fn init_logging(verbose: u8, daemon: bool) {
    let default = match verbose {
        // A daemon's log is its record of what it killed: info by default.
        0 if daemon => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let mut b =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    // The driver logs connection details at debug; they are not ours to print.
    b.filter_module("mysql", log::LevelFilter::Warn);
    b.filter_module("mysql_common", log::LevelFilter::Warn);
    // Messages quote server text (errors, names): one line, no control
    // character, whatever the server sent.
    b.format(|buf, record| {
        writeln!(
            buf,
            "[{} {:<5} {}] {}",
            buf.timestamp(),
            record.level(),
            record.target(),
            crate::core::text::neutral(&record.args().to_string())
        )
    });
    if daemon {
        // `watch` learns [settings] log_file only after the logger exists.
        b.target(env_logger::Target::Pipe(Box::new(
            crate::report::logging::Sink,
        )));
    }
    let _ = b.try_init();
}

pub fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| PathBuf::from("mysqk.ini"))
}

pub fn load_config(cli: &Cli) -> Result<Config, CliError> {
    let cfg = Config::load(&config_path(cli))?;
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    Ok(cfg)
}

/// Entry point used by `main`: never panics on bad input, returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.verbose, matches!(cli.command, Command::Watch(_)));
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Errors may quote the server (or a dump): no control character out.
            eprintln!("mysqk: {}", crate::core::text::neutral(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

pub fn run(cli: &Cli) -> Result<u8, CliError> {
    match &cli.command {
        Command::Kill(args) => kill(cli, args),
        Command::Watch(args) => watch(cli, args),
        Command::Match(args) => match_dump(cli, args),
        Command::CheckConfig => {
            let cfg = load_config(cli)?;
            print!("{}", config::describe(&cfg));
            Ok(0)
        }
        Command::EncryptPassword => encrypt_password(cli),
        Command::GenKey(args) => gen_key(args),
        Command::GenAssets(args) => {
            let files = crate::cli::assets::write(&args.out).map_err(|e| {
                CliError::Runtime(format!("cannot write under {}: {e}", args.out.display()))
            })?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(0)
        }
        Command::Doctor(args) => {
            let cfg = load_config(cli)?;
            let instances = select_instances(&cfg, &args.db)?;
            let (report, ok) = crate::cli::doctor::run(&cfg, &instances);
            // The report quotes server errors and grants.
            print!("{}", crate::core::text::framed(&report, ""));
            Ok(if ok { 0 } else { 1 })
        }
    }
}

/// Resolve `--db` to instances; unknown names are a usage error listing the known ones.
pub fn select_instances<'a>(cfg: &'a Config, db: &str) -> Result<Vec<&'a Instance>, CliError> {
    let known: Vec<&str> = cfg.instances.iter().map(|i| i.dbid.as_str()).collect();
    if db.trim() == "all" {
        return Ok(cfg.instances.iter().collect());
    }
    let mut out = Vec::new();
    for name in db.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match cfg.instance(name) {
            Some(i) => out.push(i),
            None => {
                return Err(CliError::Usage(format!(
                    "unknown --db `{name}`; instances in {}: {}",
                    cfg.path.display(),
                    if known.is_empty() {
                        "(none)".to_string()
                    } else {
                        known.join(", ")
                    }
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(CliError::Usage("--db names no instance".into()));
    }
    Ok(out)
}

fn flag_regex(flag: &str, value: &str) -> Result<Option<Regex>, CliError> {
    if value.is_empty() {
        return Ok(None);
    }
    Regex::new(value).map(Some).map_err(|e| {
        CliError::Usage(format!(
            "{flag}: invalid regex `{value}`: {}",
            e.to_string().lines().last().unwrap_or("")
        ))
    })
}

/// The instance's rules with the command-line flags applied on top.
pub fn override_rules(cfg: &Config, base: &Rules, args: &RuleFlags) -> Result<Rules, CliError> {
    let mut r = base.clone();
    if let Some(u) = &args.user {
        r.users = match u.trim() {
            "none" | "" => UserFilter::Nobody,
            "all" => UserFilter::Users(cfg.auth.iter().map(|a| a.user.clone()).collect()),
            list => UserFilter::Users(
                list.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
        };
    }
    if let Some(v) = args.longtime {
        r.longtime = v;
    }
    if let Some(v) = args.sleep {
        r.sleep = v;
    }
    if let Some(v) = &args.include {
        r.include = flag_regex("--include", v)?;
    }
    if let Some(v) = &args.exclude {
        r.exclude = flag_regex("--exclude", v)?;
    }
    for (key, kind, column) in FIELD_KEYS {
        if let Some(v) = args.field(*kind, *column) {
            let flag = format!("--{}", key.trim_start_matches("k_").replace('_', "-"));
            r.fields.set(*kind, *column, flag_regex(&flag, v)?);
        }
    }
    if let Some(v) = &args.group_by {
        r.classes.group_by = GroupBy::parse(v).ok_or_else(|| {
            CliError::Usage(format!(
                "--group-by: `{v}` is not none, fingerprint or info"
            ))
        })?;
    }
    if let Some(v) = args.query_count {
        r.classes.query_count = v;
    }
    if let Some(v) = args.any_busy_time {
        r.classes.any_busy_time = v;
    }
    if let Some(v) = args.each_busy_time {
        r.classes.each_busy_time = v;
    }
    if let Some(v) = &args.victims {
        r.classes.victims = Pick::parse(v).ok_or_else(|| {
            CliError::Usage(format!(
                "--victims: `{v}` is not all, oldest or all-but-oldest"
            ))
        })?;
    }
    Ok(r)
}

/// `mysqk match`: the instance's effective rules over a dump; never connects.
fn match_dump(cli: &Cli, args: &MatchArgs) -> Result<u8, CliError> {
    let cfg = load_config(cli)?;
    let instances = select_instances(&cfg, &args.db)?;
    let [inst] = instances.as_slice() else {
        return Err(CliError::Usage(
            "match: --db takes one instance (a dump comes from one server)".into(),
        ));
    };
    let rules = override_rules(&cfg, &inst.rules, &args.rules)?;
    let bad_input = |e: offline::OfflineError| CliError::Usage(e.to_string());
    let (name, text) = offline::read_source(&args.from).map_err(bad_input)?;
    let rows = offline::parse(&name, &text).map_err(bad_input)?;
    let scanned = rows.len();
    let victims = offline::evaluate(rows, &rules);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for note in offline::notes(&rules) {
        eprintln!("{note}");
    }
    if args.json {
        for line in offline::json_lines(&inst.dbid, &victims, &rules) {
            let _ = writeln!(out, "{line}");
        }
        return Ok(0);
    }
    if !victims.is_empty() {
        let table = offline::table(&victims, &rules, 60);
        let _ = write!(out, "{}", crate::core::text::framed(&table, ""));
    }
    let _ = writeln!(
        out,
        "{}: {} threads in {}, {} would be killed (offline match: nothing was killed)",
        inst.dbid,
        scanned,
        name,
        victims.len()
    );
    Ok(0)
}

/// The result of one instance in a one-shot run.
struct InstanceRun {
    dbid: String,
    result: Result<pass::PassReport, pass::PassError>,
    dry_run: bool,
    skipped: Option<String>,
    /// What the verify step found about the kills of this run.
    followups: Vec<crate::core::verify::Finding>,
}

/// `mysqk watch`: runs until SIGINT/SIGTERM; a clean stop is exit 0.
fn watch(cli: &Cli, args: &WatchArgs) -> Result<u8, CliError> {
    let opts = crate::daemon::watch::WatchOpts {
        config: config_path(cli),
        lock_file: args.lock_file.clone(),
    };
    match crate::daemon::watch::run(&opts) {
        Ok(()) => Ok(0),
        Err(crate::daemon::watch::WatchError::Config(e)) => Err(CliError::Config(e)),
        // Another watch on this config is a usage error, not a failure.
        Err(
            e @ crate::daemon::watch::WatchError::Lock(crate::daemon::lockfile::LockError::Held {
                ..
            }),
        ) => Err(CliError::Usage(e.to_string())),
        Err(e) => Err(CliError::Runtime(e.to_string())),
    }
}

/// The lock of a `kill` run (cron runs must not overlap each other or a
/// `watch`), unless `--no-lock`.
fn kill_lock(
    cfg: &Config,
    args: &KillArgs,
) -> Result<Option<crate::daemon::lockfile::LockFile>, CliError> {
    if args.no_lock {
        return Ok(None);
    }
    let path = args
        .lock_file
        .clone()
        .unwrap_or_else(|| cfg.settings.lock_file.clone());
    match crate::daemon::lockfile::LockFile::acquire(&path) {
        Ok(l) => Ok(Some(l)),
        Err(e @ crate::daemon::lockfile::LockError::Held { .. }) => Err(CliError::Usage(format!(
            "{e}; pass --no-lock to run anyway"
        ))),
        Err(e) => Err(CliError::Runtime(e.to_string())),
    }
}

fn kill(cli: &Cli, args: &KillArgs) -> Result<u8, CliError> {
    let cfg = load_config(cli)?;
    let instances = select_instances(&cfg, &args.db)?;
    let _lock = kill_lock(&cfg, args)?;
    let mut plans = Vec::new();
    for inst in instances {
        plans.push((inst, override_rules(&cfg, &inst.rules, &args.rules)?));
    }
    // Instances run in parallel so an unreachable one costs at most its connect timeout.
    let runs: Vec<InstanceRun> = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .iter()
            .map(|(inst, rules)| {
                let cfg = &cfg;
                scope.spawn(move || {
                    let dry_run = args.dry_run || inst.dry_run;
                    if args.respect_window {
                        if let Some(w) = inst.window {
                            if !w.contains(chrono::Local::now().time()) {
                                return InstanceRun {
                                    dbid: inst.dbid.clone(),
                                    result: Ok(pass::PassReport::default()),
                                    dry_run,
                                    skipped: Some(format!("outside run_time_window {w}")),
                                    followups: Vec::new(),
                                };
                            }
                        }
                    }
                    let mut sessions = Sessions::new(Target::of(cfg, inst));
                    let result =
                        pass::run(cfg, inst, rules, dry_run, &mut sessions, &HashSet::new());
                    let mut followups = Vec::new();
                    if let Ok(report) = &result {
                        // A KILL only sets a flag: check that each one took effect.
                        let mut tracker = crate::core::verify::Tracker::new(
                            crate::core::verify::Policy::new(rules.killed_report),
                        );
                        tracker.track(&report.outcomes, std::time::Instant::now());
                        if args.verify_secs > 0 && !tracker.is_empty() {
                            followups = pass::verify_window(
                                cfg,
                                inst,
                                rules,
                                &mut sessions,
                                &mut tracker,
                                Duration::from_secs(args.verify_secs),
                            );
                        }
                    }
                    InstanceRun {
                        dbid: inst.dbid.clone(),
                        result,
                        dry_run,
                        skipped: None,
                        followups,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(plans.iter())
            .map(|(h, (inst, _))| {
                h.join().unwrap_or_else(|_| InstanceRun {
                    dbid: inst.dbid.clone(),
                    result: Ok(pass::PassReport::default()),
                    dry_run: true,
                    skipped: Some("internal error in this instance's pass".into()),
                    followups: Vec::new(),
                })
            })
            .collect()
    });
    // Snapshots (and mail) for a one-shot run go through the same reporter as `watch`.
    let cfg = std::sync::Arc::new(cfg.clone());
    let reporter = crate::report::reporter::Reporter::start(cfg.clone());
    let mut failed = false;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // With --json, stdout carries only JSON lines; what people read goes to stderr.
    let mut stderr = std::io::stderr();
    let json = args.json;
    let human = |out: &mut std::io::StdoutLock, err: &mut std::io::Stderr, text: String| {
        let _ = if json {
            err.write_all(text.as_bytes())
        } else {
            out.write_all(text.as_bytes())
        };
    };
    let ts = chrono::Local::now();
    for run in runs {
        if let Some(why) = &run.skipped {
            let msg = format!("{}: skipped ({why})\n", run.dbid);
            human(&mut out, &mut stderr, msg);
            continue;
        }
        match run.result {
            Err(e) => {
                failed = true;
                let msg = format!(
                    "{}: ERROR {}\n",
                    run.dbid,
                    crate::core::text::neutral(&e.to_string())
                );
                human(&mut out, &mut stderr, msg);
                log::error!("{e}");
            }
            Ok(mut report) => {
                if json {
                    for o in &report.outcomes {
                        let rec = ThreadRecord::from_outcome(ts, &run.dbid, o, run.dry_run);
                        let _ = writeln!(out, "{}", rec.to_line());
                    }
                } else if !report.outcomes.is_empty() {
                    let _ = write!(out, "{}", output::outcomes_table(&report.outcomes, 60));
                }
                for o in &report.outcomes {
                    log::info!("{}", output::log_line(&run.dbid, o));
                }
                for f in &run.followups {
                    // Details usually start with their kind ("gone 0.2 s after …").
                    let label = f.kind.label();
                    let text = if f.detail.starts_with(label) {
                        f.detail.clone()
                    } else {
                        format!("{label}: {}", f.detail)
                    };
                    human(
                        &mut out,
                        &mut stderr,
                        format!(
                            "{}: thread {} ({}): {}\n",
                            run.dbid,
                            f.id,
                            crate::core::text::neutral(&f.user),
                            crate::core::text::neutral(&crate::core::redact::sql(&text))
                        ),
                    );
                }
                failed |= run
                    .followups
                    .iter()
                    .any(|f| f.kind == crate::core::verify::Kind::EscalationFailed);
                if !report.outcomes.is_empty() {
                    let addr = cfg
                        .instance(&run.dbid)
                        .map(|i| i.addr())
                        .unwrap_or_default();
                    let mut event = crate::report::event::Event::new(&run.dbid, &addr, run.dry_run);
                    event.outcomes = report.outcomes.clone();
                    event.followups = run.followups.iter().map(|f| f.followup()).collect();
                    event.snapshot = report.snapshot.take();
                    reporter.sender().send(event);
                }
                let killed = report
                    .outcomes
                    .iter()
                    .filter(|o| {
                        matches!(o.result, crate::server::killer::KillResult::Killed { .. })
                    })
                    .count();
                let gone = report
                    .outcomes
                    .iter()
                    .filter(|o| o.result == crate::server::killer::KillResult::Gone)
                    .count();
                let nosession = report
                    .outcomes
                    .iter()
                    .filter(|o| {
                        matches!(
                            o.result,
                            crate::server::killer::KillResult::NoSession { .. }
                                | crate::server::killer::KillResult::Pending { .. }
                        )
                    })
                    .count();
                let fails = report
                    .outcomes
                    .iter()
                    .filter(|o| o.result.is_failure())
                    .count();
                failed |= fails > 0;
                human(&mut out, &mut stderr, format!(
                    "{}: {} threads scanned, {} matched, {}{} killed, {} gone, {} no session, {} failed\n",
                    run.dbid,
                    report.rows.len(),
                    report.outcomes.len(),
                    if run.dry_run { "DRY RUN: 0 " } else { "" },
                    if run.dry_run { String::new() } else { killed.to_string() },
                    gone,
                    nosession,
                    fails
                ));
            }
        }
    }
    drop(out);
    reporter.stop();
    Ok(if failed { 1 } else { 0 })
}

fn gen_key(args: &GenKeyArgs) -> Result<u8, CliError> {
    let key = crypto::Key::try_generate().map_err(|e| CliError::Runtime(e.to_string()))?;
    let Some(path) = &args.output else {
        println!("{}", key.to_hex());
        return Ok(0);
    };
    // create_new + 0600: a key file is never replaced by accident (values
    // encrypted with the old key would become unreadable) nor born readable
    // by others, whatever the umask.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", path.display())))?;
    writeln!(f, "{}", key.to_hex())
        .map_err(|e| CliError::Runtime(format!("cannot write {}: {e}", path.display())))?;
    eprintln!(
        "mysqk: key (id {}) written to {}; set [settings] key_file={} or MYSQK_KEY",
        key.id(),
        path.display(),
        path.display()
    );
    Ok(0)
}

fn encrypt_password(cli: &Cli) -> Result<u8, CliError> {
    let env_key = std::env::var(crypto::KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty());
    // Without MYSQK_KEY, only `[settings] key_file` is read from the config:
    // its other values may be encrypted with the very key we need here.
    let key_file = if env_key.is_some() {
        None
    } else {
        let path = config_path(cli);
        if path.exists() {
            Config::key_file_of(&path)?
        } else if cli.config.is_some() {
            return Err(CliError::Usage(format!(
                "{}: no such config file (it is read for [settings] key_file)",
                path.display()
            )));
        } else {
            None
        }
    };
    const NO_KEY: &str =
        "no key: set MYSQK_KEY or [settings] key_file (create one with `mysqk gen-key`)";
    let (key, source) = match crypto::load_key(env_key.as_deref(), key_file.as_deref()) {
        Ok(Some(found)) => found,
        Ok(None) => return Err(CliError::Usage(NO_KEY.into())),
        Err(e) => return Err(CliError::Usage(format!("cannot load the key: {e}"))),
    };
    let password = read_password()?;
    let value =
        crypto::try_encrypt(&key, &password).map_err(|e| CliError::Runtime(e.to_string()))?;
    log::info!("encrypted with the key from {source} (id {})", key.id());
    println!("{value}");
    Ok(0)
}

/// stdin when piped; otherwise a prompt on the terminal with echo off.
fn read_password() -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let mut text = String::new();
    if stdin.is_terminal() {
        // Echo off before the prompt: whatever is typed once the prompt is
        // visible must not appear on the screen.
        let _guard = EchoOff::new().ok_or_else(|| {
            CliError::Runtime(
                "cannot turn off terminal echo; pipe the password on stdin instead".into(),
            )
        })?;
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        stdin
            .read_line(&mut text)
            .map_err(|e| CliError::Runtime(format!("cannot read the password: {e}")))?;
        eprintln!();
    } else {
        stdin
            .lock()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Runtime(format!("cannot read stdin: {e}")))?;
    }
    let pw = text.strip_suffix('\n').unwrap_or(&text);
    let pw = pw.strip_suffix('\r').unwrap_or(pw).to_string();
    if pw.is_empty() {
        return Err(CliError::Usage("empty password".into()));
    }
    Ok(pw)
}

/// Turns terminal echo off for as long as it lives.
struct EchoOff {
    saved: libc::termios,
    /// Restores the terminal if Ctrl-C ends the process at the prompt
    /// (SIGINT's default action would leave echo off in the user's shell).
    on_sigint: Option<signal_hook::SigId>,
}

impl EchoOff {
    /// `None` when stdin's echo cannot be turned off.
    fn new() -> Option<EchoOff> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed, then filled, termios.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            saved
        };
        // SAFETY: the handler only calls tcsetattr and _exit, both
        // async-signal-safe, on a termios copied into the closure.
        let on_sigint = unsafe {
            signal_hook::low_level::register(libc::SIGINT, move || {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
                libc::_exit(130);
            })
        }
        .ok();
        Some(EchoOff { saved, on_sigint })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(id) = self.on_sigint.take() {
            signal_hook::low_level::unregister(id);
        }
        // SAFETY: restores the attributes read in `new`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}
