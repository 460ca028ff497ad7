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
use crate::config::crypto::{self, Secret};
use crate::config::{self, Config, Instance};
use crate::core::classes::{GroupBy, Pick};
use crate::core::filters::{Column, Kind, FIELD_KEYS};
use crate::core::matcher::{KillCmd, KillMode, Rules, UserFilter, UserPattern};
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
unreachable, a kill failed, a victim left because its owner's login failed),\n\
2 usage or config error (a number out of its range too), or another mysqk\n\
holds the lock file."
)]
pub struct Cli {
    /// Config file [default: $MYSQK_CONFIG, else ./mysqk.ini]
    #[arg(short = 'c', long = "config", global = true, env = "MYSQK_CONFIG")]
    pub config: Option<PathBuf>,
    /// More logging (-v info: each kill; -vv debug: each pass's timings); RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// One pass on the named instances: print what matched and kill it (unless --dry-run).
    /// Without an ini: `mysqk kill -h HOST -u USER --ask-pass --match-user RE --busy-time 60`.
    /// Each victim is re-read right before its KILL; one that changed meanwhile
    /// (another statement, woke up, no longer blocking) is left alone, shown as
    /// `changed before kill`.
    // `-h` is the host, as in pt-kill and the mysql client; help is `--help`.
    #[command(disable_help_flag = true)]
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
    /// List what happened, oldest first, from the snapshot files: time,
    /// instance, summary, file, and the threads matched.
    Events(EventsArgs),
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
pub struct EventsArgs {
    /// Instances: dbid[,dbid...] [default: all]
    #[arg(long = "db")]
    pub db: Option<String>,
    /// Only events since: 2h / 3d (ago), 2026-11-21, `2026-11-21 14:00` (local time)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Read this snapshot directory instead of the ini's snapshot_dir
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// One line per event, without the threads
    #[arg(long)]
    pub brief: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct WatchArgs {
    /// Lock file stopping a second watch (or an overlapping cron `kill`) on this
    /// config [default: [settings] lock_file, else <snapshot_dir>/mysqk.lock]
    #[arg(long, value_name = "PATH")]
    pub lock_file: Option<PathBuf>,
    /// Report only on every instance, whatever dry_run says, also after a reload
    #[arg(long)]
    pub dry_run: bool,
    /// Stop cleanly (exit 0) after this long: 90, 90s, 15m, 2h, 1d (pt-kill's --run-time)
    #[arg(long, value_name = "TIME", value_parser = ranged(RUN_TIME, true))]
    pub run_time: Option<u64>,
    /// Seconds between passes, replacing [settings] check_interval (pt-kill's --interval)
    #[arg(long, value_name = "SECS", value_parser = ranged(config::range_of("check_interval"), true))]
    pub interval: Option<u64>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GenKeyArgs {
    /// Write the key to this new file (mode 0600, never overwritten) instead of stdout
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct KillArgs {
    /// Instances: dbid[,dbid...] or `all` [default: the ini's only instance]
    #[arg(long = "db", conflicts_with_all = ["host", "dsn"])]
    pub db: Option<String>,
    /// Report only: match and snapshot, never KILL
    #[arg(long)]
    pub dry_run: bool,
    /// pt-kill's --print: without --kill, report only (as --dry-run); with
    /// --kill, kill and print (mysqk always prints what it matched)
    #[arg(long)]
    pub print: bool,
    /// pt-kill's --kill: `mysqk kill` kills anyway; accepted so that
    /// `--print --kill` keeps its pt-kill meaning (as `--print --kill-query` does)
    #[arg(long = "kill", conflicts_with = "kill_query")]
    pub kill: bool,
    /// Show the whole statement in the table (default: cut to 60 characters)
    #[arg(long)]
    pub wide: bool,
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
    /// threads stuck in Killed (0 = do not verify; at most 3600)
    #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = ranged(VERIFY_SECS, false))]
    pub verify_secs: u64,
    #[command(flatten)]
    pub rules: RuleFlags,
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// A server given on the command line: a one-off run without an ini.
#[derive(Args, Debug, Clone, Default)]
#[command(
    next_help_heading = "One-off run without an ini (password from --ask-pass or MYSQK_PASSWORD, never argv)"
)]
pub struct ConnFlags {
    /// Server host (then no ini is read; the instance is called HOST:PORT)
    #[arg(short = 'h', long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Server port [default: 3306]
    #[arg(short = 'P', long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// User to log in as (`--user` is whose threads may be killed)
    #[arg(short = 'u', long = "login-user", value_name = "USER")]
    pub login_user: Option<String>,
    /// pt-kill DSN `h=HOST,P=PORT,u=USER` (a `p=` password is refused)
    #[arg(long, value_name = "DSN")]
    pub dsn: Option<String>,
    /// Read the password: a no-echo prompt on a terminal, else stdin
    #[arg(long)]
    pub ask_pass: bool,
    /// Refused: a password on the command line is visible to every local
    /// user (`ps`); `-p` alone prompts, like --ask-pass
    #[arg(short = 'p', long = "password", hide = true, num_args = 0..=1, value_name = "PASS")]
    pub password: Option<Option<String>>,
    /// Seconds a login may take, TCP and handshake (connect_timeout) [default: 3]
    #[arg(long, value_name = "SECS", value_parser = ranged(config::range_of("connect_timeout"), true))]
    pub connect_timeout: Option<u64>,
    /// Write a snapshot per instance with victims here (no ini: none by default)
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DoctorArgs {
    /// Instances: dbid[,dbid...] or `all`
    #[arg(long = "db", default_value = "all")]
    pub db: String,
}

#[derive(Args, Debug, Clone, Default)]
pub struct MatchArgs {
    /// The instance whose effective rules apply [default: the ini's only
    /// instance; without an ini the rules come from the flags alone]
    #[arg(long = "db")]
    pub db: Option<String>,
    /// Processlist dump (SHOW FULL PROCESSLIST as \G, boxed table or
    /// tab-separated; several in one file are replayed one by one), a mysqk
    /// snapshot file, or a directory of them; `-` = stdin
    /// (repeat --from for several: pt-kill's `--test-matching a,b`)
    #[arg(long = "from", required = true, value_name = "DUMP")]
    pub from: Vec<String>,
    /// One JSON object per matched thread on stdout, one per line
    #[arg(long)]
    pub json: bool,
    /// Show the whole statement in the table (default: cut to 60 characters)
    #[arg(long)]
    pub wide: bool,
    #[command(flatten)]
    pub rules: RuleFlags,
}

/// Flags that replace one of the instance's `k_*` keys (`kill` and `match`).
/// A regex flag given as "" turns that key off.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Rule overrides (each replaces the instance's k_* key)")]
pub struct RuleFlags {
    /// Users whose threads may be killed: u1,u2 | all | none (k_user)
    #[arg(long, value_name = "USERS")]
    pub user: Option<String>,
    /// Regex: users whose threads may be killed, instead of --user (pt-kill's --match-user)
    #[arg(long, value_name = "RE", conflicts_with = "user")]
    pub match_user: Option<String>,
    /// A non-Sleep thread running this long is a victim (k_longtime; 0 = off).
    /// TIME: 30, 30s, 5m, 2h
    #[arg(long, visible_alias = "busy-time", value_name = "TIME", value_parser = ranged(config::range_of("k_longtime"), true))]
    pub longtime: Option<u64>,
    /// A Sleep thread idle this long is a victim (k_sleep; 0 = off)
    #[arg(long, visible_alias = "idle-time", value_name = "TIME", value_parser = ranged(config::range_of("k_sleep"), true))]
    pub sleep: Option<u64>,
    /// A thread that has blocked another's lock wait this long is a victim (k_lock; 0 = off)
    #[arg(long, value_name = "TIME", value_parser = ranged(config::range_of("k_lock"), true))]
    pub lock_wait: Option<u64>,
    /// Kill the connection or only its statement (k_mode)
    #[arg(long, value_name = "MODE", value_parser = ["connection", "query"])]
    pub mode: Option<String>,
    /// Kill only the statement, as --mode query (pt-kill's --kill-query)
    #[arg(long, conflicts_with = "mode")]
    pub kill_query: bool,
    /// KILL, or CALL mysql.rds_kill on cloud servers (k_kill_cmd)
    #[arg(long, value_name = "CMD", value_parser = ["kill", "rds"])]
    pub kill_cmd: Option<String>,
    /// Regex: matching threads are victims regardless of time (k_include)
    #[arg(long, value_name = "RE")]
    pub include: Option<String>,
    /// Every thread not excluded or ignored is a victim, as --include .
    /// (pt-kill's --match-all; narrow it with --match-* / --ignore-*)
    #[arg(long, conflicts_with = "include")]
    pub match_all: bool,
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
    #[arg(long, value_name = "N", value_parser = ranged(config::range_of("k_query_count"), false))]
    pub query_count: Option<u64>,
    /// A class needs one thread running longer than TIME (k_any_busy_time; 0 = off)
    #[arg(long, value_name = "TIME", value_parser = ranged(config::range_of("k_any_busy_time"), true))]
    pub any_busy_time: Option<u64>,
    /// A class needs every thread running longer than TIME (k_each_busy_time; 0 = off)
    #[arg(long, value_name = "TIME", value_parser = ranged(config::range_of("k_each_busy_time"), true))]
    pub each_busy_time: Option<u64>,
    /// Which threads of an abnormal class are killed (k_victims)
    #[arg(long, value_name = "WHICH", value_parser = ["all", "oldest", "all-but-oldest"])]
    pub victims: Option<String>,
}

/// `1 thread`, `3 threads`.
fn threads(n: usize) -> String {
    format!("{n} thread{}", if n == 1 { "" } else { "s" })
}

/// A time as pt-kill writes it: seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_secs(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let (digits, unit) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, 's'),
    };
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("`{v}`: the unit must be s, m, h or d")),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{v}` is not a time (30, 30s, 5m, 2h, 1d)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{v}` is too large"))
}

/// `watch --run-time`: up to a year.
const RUN_TIME: config::Range = config::Range {
    min: 1,
    max: 365 * 24 * 3600,
    unit: "seconds",
};

/// `kill --verify-secs`: 0 (off) up to an hour.
const VERIFY_SECS: config::Range = config::Range {
    min: 0,
    max: 3_600,
    unit: "seconds",
};

/// A number flag within `range` (for a flag that stands for an ini key, the
/// key's range): out of range is a usage error (exit 2), never a panic in a
/// later `Instant + Duration`. `time`: pt-kill's suffixes are accepted.
fn ranged(
    range: config::Range,
    time: bool,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |v| {
        let n = if time {
            parse_secs(v)?
        } else {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("`{v}` is not a whole number"))?
        };
        if (range.min..=range.max).contains(&n) {
            Ok(n)
        } else {
            Err(format!(
                "`{v}` is out of range: {}..={} {}",
                range.min, range.max, range.unit
            ))
        }
    }
}

impl RuleFlags {
    /// True when a flag says what is abnormal (a time, a pattern, a lock):
    /// without an ini these are the only rules.
    fn says_what_is_abnormal(&self) -> bool {
        self.longtime.is_some_and(|v| v > 0)
            || self.sleep.is_some_and(|v| v > 0)
            || self.lock_wait.is_some_and(|v| v > 0)
            || self.include.as_deref().is_some_and(|v| !v.is_empty())
            || self.match_all
    }

    /// True when a flag says whose threads may be killed.
    fn says_whose(&self) -> bool {
        self.user.is_some() || self.match_user.is_some()
    }

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
    b.format(|buf, record| crate::report::logging::format(buf, record));
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

/// True when a config file was named (`-c` or `MYSQK_CONFIG`) or the default
/// `./mysqk.ini` exists: commands that can run without one then use it.
fn config_available(cli: &Cli) -> bool {
    cli.config.is_some() || config_path(cli).exists()
}

/// "No config file" in words that say where mysqk looked and how to point
/// it elsewhere; `alternative` is what the command can do without one.
fn missing_config(cli: &Cli, alternative: &str) -> CliError {
    let path = config_path(cli);
    let from_env = std::env::var_os("MYSQK_CONFIG").is_some_and(|v| v == path.as_os_str());
    let origin = match (&cli.config, from_env) {
        (None, _) => "the default config file",
        (Some(_), true) => "the config file named by MYSQK_CONFIG",
        (Some(_), false) => "the config file given with -c",
    };
    let mut msg = format!(
        "{origin} {} does not exist; give one with -c FILE or MYSQK_CONFIG=FILE \
         (mysqk.ini.example shows every key)",
        path.display()
    );
    if !alternative.is_empty() {
        msg.push_str(", or ");
        msg.push_str(alternative);
    }
    CliError::Usage(msg)
}

pub fn load_config(cli: &Cli) -> Result<Config, CliError> {
    load_config_or(cli, "")
}

/// [`load_config`], naming `alternative` when there is no file.
fn load_config_or(cli: &Cli, alternative: &str) -> Result<Config, CliError> {
    let path = config_path(cli);
    if !path.exists() {
        return Err(missing_config(cli, alternative));
    }
    let cfg = Config::load(&path)?;
    crate::report::clock::set_utc(cfg.settings.log_utc);
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
        Command::Events(args) => events(cli, args),
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
/// Without an ini (`cfg` is `None`) `--user all` means every user: there is
/// no `[db_auth]` to expand it to.
pub fn override_rules(
    cfg: Option<&Config>,
    base: &Rules,
    args: &RuleFlags,
) -> Result<Rules, CliError> {
    let mut r = base.clone();
    if let Some(re) = &args.match_user {
        r.users = match flag_regex("--match-user", re)? {
            Some(re) => UserFilter::Matching(UserPattern(re)),
            None => UserFilter::Nobody,
        };
    }
    if let Some(u) = &args.user {
        r.users = match u.trim() {
            "none" | "" => UserFilter::Nobody,
            "all" => match cfg {
                Some(cfg) => UserFilter::Users(cfg.auth.iter().map(|a| a.user.clone()).collect()),
                None => UserFilter::Matching(UserPattern(
                    Regex::new("").map_err(|e| CliError::Runtime(e.to_string()))?,
                )),
            },
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
    if let Some(v) = args.lock_wait {
        r.lock = v;
    }
    if let Some(v) = &args.mode {
        r.mode = match v.as_str() {
            "query" => KillMode::Query,
            _ => KillMode::Connection,
        };
    }
    if args.kill_query {
        r.mode = KillMode::Query;
    }
    if let Some(v) = &args.kill_cmd {
        r.kill_cmd = match v.as_str() {
            "rds" => KillCmd::Rds,
            _ => KillCmd::Kill,
        };
    }
    if let Some(v) = &args.include {
        r.include = flag_regex("--include", v)?;
    }
    if args.match_all {
        // The empty pattern matches every row text.
        r.include = Some(Regex::new("").map_err(|e| CliError::Runtime(e.to_string()))?);
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

/// Where a one-off run (no ini) logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOff {
    pub host: String,
    pub port: u16,
    pub user: String,
}

/// The environment variable a one-off run reads its password from.
pub const PASSWORD_ENV: &str = "MYSQK_PASSWORD";

const PASSWORD_ARGV: &str = "a password on the command line is visible to every local user \
     (ps, /proc/PID/cmdline): use --ask-pass (prompt, or stdin) or MYSQK_PASSWORD";

/// The parts of a pt-kill DSN mysqk uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dsn {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
}

/// pt-kill's DSN, `h=HOST,P=PORT,u=USER`. A password in it (`p=`) is
/// refused, like `-p PASS`.
pub fn parse_dsn(dsn: &str) -> Result<Dsn, String> {
    let (mut host, mut port, mut user) = (None, None, None);
    for part in dsn.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!(
                "--dsn: `{part}` is not KEY=VALUE (h=HOST,P=PORT,u=USER)"
            ));
        };
        match k {
            "h" => host = Some(v.to_string()),
            "P" => {
                port = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("--dsn: P=`{v}` is not a port (1..=65535)"))?,
                )
            }
            "u" => user = Some(v.to_string()),
            "p" => return Err(format!("--dsn: p= refused: {PASSWORD_ARGV}")),
            other => {
                return Err(format!(
                    "--dsn: key `{other}` is not supported (h, P and u are)"
                ))
            }
        }
    }
    Ok(Dsn { host, port, user })
}

impl ConnFlags {
    /// The one-off target, or `None` when no server is named (the ini is used).
    pub fn one_off(&self) -> Result<Option<OneOff>, CliError> {
        if matches!(self.password, Some(Some(_))) {
            return Err(CliError::Usage(PASSWORD_ARGV.into()));
        }
        let dsn = match &self.dsn {
            Some(d) => parse_dsn(d).map_err(CliError::Usage)?,
            None => Dsn::default(),
        };
        let host = self.host.clone().or(dsn.host);
        let port = self.port.or(dsn.port);
        let user = self.login_user.clone().or(dsn.user);
        let Some(host) = host.filter(|h| !h.is_empty()) else {
            if user.is_some()
                || port.is_some()
                || self.asks_password()
                || self.connect_timeout.is_some()
                || self.snapshot_dir.is_some()
            {
                return Err(CliError::Usage(
                    "-P, -u, --ask-pass, --connect-timeout and --snapshot-dir are for a one-off \
                     run without an ini: name the server with -h HOST or --dsn h=HOST"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let user = user.filter(|u| !u.is_empty()).ok_or_else(|| {
            CliError::Usage(
                "a one-off run needs the user to log in as: -u USER (or u= in --dsn)".into(),
            )
        })?;
        Ok(Some(OneOff {
            host,
            port: port.unwrap_or(3306),
            user,
        }))
    }

    fn asks_password(&self) -> bool {
        self.ask_pass || matches!(self.password, Some(None))
    }
}

/// The password of a one-off run: prompted or piped (`--ask-pass`, `-p`),
/// else `MYSQK_PASSWORD`; never argv.
fn one_off_password(conn: &ConnFlags, who: &str) -> Result<Secret, CliError> {
    if conn.asks_password() {
        return read_password(&format!("Password for {who}: ")).map(Secret::new);
    }
    match std::env::var(PASSWORD_ENV) {
        Ok(p) => {
            // Not for the children (a hook, a pager): the value is read now.
            std::env::remove_var(PASSWORD_ENV);
            Ok(Secret::new(p))
        }
        Err(_) => Err(CliError::Usage(format!(
            "no password for {who}: give --ask-pass (a prompt, or the password on stdin) \
             or set {PASSWORD_ENV}"
        ))),
    }
}

/// Rules of a run without an ini: nobody and nothing until flags say so
/// (the ini's `k_longtime=10` default would be a rule nobody asked for).
fn flag_only_rules() -> Rules {
    Rules {
        users: UserFilter::Nobody,
        longtime: 0,
        ..Rules::default()
    }
}

/// The config of a one-off run: one instance, one login, the defaults of
/// every setting, no lock, no mail, no hook.
fn one_off_config(t: &OneOff, conn: &ConnFlags, password: Secret) -> Result<Config, CliError> {
    let mut cfg = Config::parse(std::path::Path::new("(command line)"), "", None)?;
    cfg.warnings.clear();
    if let Some(secs) = conn.connect_timeout {
        cfg.settings.connect_timeout = Duration::from_secs(secs);
    }
    if let Some(dir) = &conn.snapshot_dir {
        cfg.settings.snapshot_dir = dir.clone();
    }
    cfg.auth = vec![config::Auth {
        user: t.user.clone(),
        password,
    }];
    cfg.instances = vec![Instance {
        dbid: format!("{}:{}", t.host, t.port),
        host: t.host.clone(),
        port: t.port,
        puser: t.user.clone(),
        dry_run: false,
        window: None,
        rules: flag_only_rules(),
        k_user_text: "none".into(),
    }];
    Ok(cfg)
}

/// What a run without an ini must be told, or the usage error saying so.
fn require_flag_rules(rules: &RuleFlags, what: &str) -> Result<(), CliError> {
    if !rules.says_whose() {
        return Err(CliError::Usage(format!(
            "{what} needs to be told whose threads may be killed: --user U1,U2, --user all \
             or --match-user RE"
        )));
    }
    if !rules.says_what_is_abnormal() {
        return Err(CliError::Usage(format!(
            "{what} needs a rule saying what is abnormal: --busy-time, --idle-time, \
             --include, --match-all or --lock-wait"
        )));
    }
    Ok(())
}

/// `--db`, or the ini's only instance when it is not given.
fn instances_of<'a>(cfg: &'a Config, db: Option<&str>) -> Result<Vec<&'a Instance>, CliError> {
    match db {
        Some(db) => select_instances(cfg, db),
        None => match cfg.instances.as_slice() {
            [only] => Ok(vec![only]),
            [] => Err(CliError::Usage(format!(
                "{}: [db_info] lists no instance",
                cfg.path.display()
            ))),
            many => Err(CliError::Usage(format!(
                "--db is needed: {} has several instances: {} (or --db all)",
                cfg.path.display(),
                many.iter()
                    .map(|i| i.dbid.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

const MATCH_WITHOUT_INI: &str =
    "give the rules as flags (e.g. --match-user app --busy-time 60) and no ini is needed";

/// `mysqk match`: the instance's effective rules (or the flags alone) over
/// each saved processlist of a dump; never connects.
fn match_dump(cli: &Cli, args: &MatchArgs) -> Result<u8, CliError> {
    let loaded;
    let (cfg, label, base) = if config_available(cli) {
        loaded = load_config_or(cli, MATCH_WITHOUT_INI)?;
        let instances = instances_of(&loaded, args.db.as_deref())?;
        let [inst] = instances.as_slice() else {
            return Err(CliError::Usage(
                "match: --db takes one instance (a dump comes from one server)".into(),
            ));
        };
        (Some(&loaded), inst.dbid.clone(), inst.rules.clone())
    } else {
        if !(args.rules.says_whose() && args.rules.says_what_is_abnormal()) {
            return Err(missing_config(cli, MATCH_WITHOUT_INI));
        }
        let label = args.db.clone().unwrap_or_else(|| "offline".into());
        (None, label, flag_only_rules())
    };
    let rules = override_rules(cfg, &base, &args.rules)?;
    let bad_input = |e: offline::OfflineError| CliError::Usage(e.to_string());
    let mut replays = Vec::new();
    for from in &args.from {
        replays.extend(offline::load(from).map_err(bad_input)?);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for note in offline::notes(&rules) {
        eprintln!("{note}");
    }
    let width = if args.wide { usize::MAX } else { 60 };
    let several = replays.len() > 1;
    let mut total = 0;
    for (n, replay) in replays.iter().enumerate() {
        let scanned = replay.rows.len();
        let victims = offline::evaluate(replay.rows.clone(), &rules);
        total += victims.len();
        if args.json {
            for line in offline::json_lines(&label, &victims, &rules) {
                // Which processlist of the replay the thread was in.
                let line = match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(serde_json::Value::Object(mut m)) => {
                        m.insert("source".into(), replay.name.clone().into());
                        serde_json::Value::Object(m).to_string()
                    }
                    _ => line,
                };
                let _ = writeln!(out, "{line}");
            }
            continue;
        }
        if !victims.is_empty() {
            let table = offline::table(&victims, &rules, width);
            let _ = write!(out, "{}", crate::core::text::framed(&table, ""));
        }
        if several {
            let _ = writeln!(
                out,
                "{label}: snapshot {}/{} ({}): {}, {} would be killed",
                n + 1,
                replays.len(),
                replay.name,
                threads(scanned),
                victims.len()
            );
        } else {
            let _ = writeln!(
                out,
                "{label}: {} in {}, {} would be killed (offline match: nothing was killed)",
                threads(scanned),
                replay.name,
                victims.len()
            );
        }
    }
    if several && !args.json {
        let _ = writeln!(
            out,
            "{label}: {} snapshots in {}, {total} would be killed in all (each replayed on its own; \
             offline match: nothing was killed)",
            replays.len(),
            args.from.join(", ")
        );
    }
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
    /// Threads waiting for a lock that nothing here explains.
    hints: Vec<String>,
}

impl InstanceRun {
    fn skipped(dbid: &str, dry_run: bool, why: String) -> InstanceRun {
        InstanceRun {
            dbid: dbid.to_string(),
            result: Ok(pass::PassReport::default()),
            dry_run,
            skipped: Some(why),
            followups: Vec::new(),
            hints: Vec::new(),
        }
    }
}

/// `mysqk watch`: runs until SIGINT/SIGTERM (or `--run-time`); a clean stop is exit 0.
fn watch(cli: &Cli, args: &WatchArgs) -> Result<u8, CliError> {
    if !config_path(cli).exists() {
        return Err(missing_config(cli, ""));
    }
    let opts = crate::daemon::watch::WatchOpts {
        config: config_path(cli),
        lock_file: args.lock_file.clone(),
        overrides: crate::daemon::watch::Overrides {
            dry_run: args.dry_run,
            interval: args.interval.map(Duration::from_secs),
        },
        run_time: args.run_time.map(Duration::from_secs),
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

const KILL_WITHOUT_INI: &str =
    "run without one: mysqk kill -h HOST -u USER --ask-pass --match-user RE --busy-time 60";

fn kill(cli: &Cli, args: &KillArgs) -> Result<u8, CliError> {
    let one_off = args.conn.one_off()?;
    let cfg = match &one_off {
        Some(t) => {
            require_flag_rules(&args.rules, "a one-off run")?;
            let who = format!("{}@{}:{}", t.user, t.host, t.port);
            one_off_config(t, &args.conn, one_off_password(&args.conn, &who)?)?
        }
        None => load_config_or(cli, KILL_WITHOUT_INI)?,
    };
    let instances = match &one_off {
        Some(_) => cfg.instances.iter().collect(),
        None => instances_of(&cfg, args.db.as_deref())?,
    };
    // A one-off run shares no config with a `watch`: nothing to lock against
    // unless a lock file is named.
    let _lock = if one_off.is_some() && args.lock_file.is_none() {
        None
    } else {
        kill_lock(&cfg, args)?
    };
    let rules_cfg = one_off.is_none().then_some(&cfg);
    let mut plans = Vec::new();
    for inst in instances {
        plans.push((inst, override_rules(rules_cfg, &inst.rules, &args.rules)?));
    }
    // pt-kill's --print alone only reports; with --kill (or --kill-query,
    // its other action) it kills too.
    let dry_flag = args.dry_run || (args.print && !args.kill && !args.rules.kill_query);
    // Snapshots (and mail) go through the same reporter as `watch`; a
    // one-off run writes them only where it is told to.
    let reporter = (one_off.is_none() || args.conn.snapshot_dir.is_some())
        .then(|| crate::report::reporter::Reporter::start(std::sync::Arc::new(cfg.clone())));
    let mut printer = Printer {
        cfg: &cfg,
        json: args.json,
        info_width: if args.wide { usize::MAX } else { 60 },
        reporter: reporter.as_ref().map(|r| r.sender()),
        failed: false,
        ts: chrono::Local::now(),
    };
    // Instances run in parallel, and each is printed as soon as it is done:
    // a hung instance costs its own timeouts, never the others' output.
    std::thread::scope(|scope| {
        let (tx, rx) = crossbeam_channel::unbounded::<InstanceRun>();
        for (inst, rules) in &plans {
            let tx = tx.clone();
            let cfg = &cfg;
            scope.spawn(move || {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_instance(cfg, inst, rules, args, dry_flag || inst.dry_run)
                }))
                .unwrap_or_else(|_| {
                    InstanceRun::skipped(
                        &inst.dbid,
                        true,
                        "internal error in this instance's pass".into(),
                    )
                });
                let _ = tx.send(run);
            });
        }
        drop(tx);
        for run in rx {
            printer.print(run);
        }
    });
    let failed = printer.failed;
    if let Some(r) = reporter {
        r.stop();
    }
    Ok(if failed { 1 } else { 0 })
}

/// One instance of a `kill` run: the pass, then the verify window.
fn run_instance(
    cfg: &Config,
    inst: &Instance,
    rules: &Rules,
    args: &KillArgs,
    dry_run: bool,
) -> InstanceRun {
    if args.respect_window {
        if let Some(w) = inst.window {
            if !w.contains(chrono::Local::now().time()) {
                return InstanceRun::skipped(
                    &inst.dbid,
                    dry_run,
                    format!("outside run_time_window {w}"),
                );
            }
        }
    }
    let mut sessions = Sessions::new(Target::of(cfg, inst))
        .for_instance(&inst.dbid)
        .quiet();
    let result = pass::run(cfg, inst, rules, dry_run, &mut sessions, &HashSet::new());
    let mut followups = Vec::new();
    let mut hints = Vec::new();
    if let Ok(report) = &result {
        hints = lock_hints(cfg, inst, rules, &mut sessions, report);
        // A KILL only sets a flag: check that each one took effect.
        let mut tracker = crate::core::verify::Tracker::new(crate::core::verify::Policy::new(
            rules.killed_report,
        ));
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
        hints,
    }
}

/// Hints about threads stuck waiting for a metadata lock that this run did
/// not resolve (no known blocker, or a blocker the rules do not cover).
fn lock_hints(
    cfg: &Config,
    inst: &Instance,
    rules: &Rules,
    sessions: &mut Sessions,
    report: &pass::PassReport,
) -> Vec<String> {
    if crate::core::mdl::waiters(&report.rows).is_empty() {
        return Vec::new();
    }
    let Some(pw) = cfg.password(&inst.puser) else {
        return Vec::new();
    };
    let Some(s) = sessions.ensure(&inst.puser, pw) else {
        return Vec::new();
    };
    let Some((waits, source)) = crate::server::inspector::mdl_waits(s, &report.rows) else {
        return Vec::new();
    };
    let open_trx = crate::server::inspector::open_transactions(s).unwrap_or_default();
    let victims: HashSet<u64> = report.outcomes.iter().map(|o| o.victim.row.id).collect();
    crate::core::waits::mdl_hints(
        &waits,
        &report.rows,
        &open_trx,
        &victims,
        Some(rules.lock),
        source == crate::server::inspector::MdlSource::None,
    )
}

/// Prints each instance of a `kill` run as it finishes and hands its event
/// to the reporter.
struct Printer<'a> {
    cfg: &'a Config,
    json: bool,
    info_width: usize,
    reporter: Option<crate::report::reporter::ReportSender>,
    failed: bool,
    ts: chrono::DateTime<chrono::Local>,
}

impl Printer<'_> {
    /// What people read: stdout, or stderr when stdout carries JSON lines.
    fn human(&self, text: &str) {
        let _ = if self.json {
            std::io::stderr().write_all(text.as_bytes())
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|_| out.flush())
        };
    }

    fn print(&mut self, run: InstanceRun) {
        // Lines that say what happened when carry a timestamp, as log lines
        // do (a cron run appends them to one file); the table does not.
        let stamp = crate::report::clock::stamp_now;
        if let Some(why) = &run.skipped {
            self.human(&format!("{} {}: skipped ({why})\n", stamp(), run.dbid));
            return;
        }
        let mut report = match run.result {
            Err(e) => {
                self.failed = true;
                // Said once, here (not logged again): the error names its
                // instance already.
                let text = e.to_string();
                let text = text
                    .strip_prefix(&format!("{}: ", run.dbid))
                    .unwrap_or(&text);
                self.human(&format!(
                    "{} {}: ERROR {}\n",
                    stamp(),
                    run.dbid,
                    crate::core::text::neutral(text)
                ));
                return;
            }
            Ok(report) => report,
        };
        if self.json {
            let mut out = std::io::stdout().lock();
            for o in &report.outcomes {
                let rec = ThreadRecord::from_outcome(self.ts, &run.dbid, o, run.dry_run);
                let _ = writeln!(out, "{}", rec.to_line());
            }
            let _ = out.flush();
        } else if !report.outcomes.is_empty() {
            self.human(&output::instance_outcomes_table(
                &run.dbid,
                &report.outcomes,
                self.info_width,
            ));
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
            self.human(&format!(
                "{} {}: thread {} ({}): {}\n",
                stamp(),
                run.dbid,
                f.id,
                crate::core::text::neutral(&f.user),
                crate::core::text::neutral(&crate::core::redact::sql(&text))
            ));
        }
        for h in &run.hints {
            self.human(&format!(
                "{} {}: hint: {}\n",
                stamp(),
                run.dbid,
                crate::core::text::neutral(h)
            ));
        }
        self.failed |= run
            .followups
            .iter()
            .any(|f| f.kind == crate::core::verify::Kind::EscalationFailed);
        if !report.outcomes.is_empty() {
            if let Some(reporter) = &self.reporter {
                let addr = self
                    .cfg
                    .instance(&run.dbid)
                    .map(|i| i.addr())
                    .unwrap_or_default();
                let mut event = crate::report::event::Event::new(&run.dbid, &addr, run.dry_run);
                event.outcomes = report.outcomes.clone();
                event.followups = run.followups.iter().map(|f| f.followup()).collect();
                event.snapshot = report.snapshot.take();
                reporter.send(event);
            }
        }
        let tally = output::Tally::of(&report.outcomes, run.dry_run);
        self.failed |= tally.failed > 0;
        self.human(&format!(
            "{} {}: {} scanned, {}\n",
            stamp(),
            run.dbid,
            output::count(report.rows.len(), "thread"),
            tally.text()
        ));
    }
}

/// `--since`: a time ago (`2h`, `3d`) or a local date / date and time.
pub fn parse_since(
    v: &str,
    now: chrono::DateTime<chrono::Local>,
) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    use chrono::TimeZone;
    let v = v.trim();
    if let Ok(secs) = parse_secs(v) {
        // Checked all the way: `99999999999999d` is an error, not a panic.
        let too_far = || format!("--since: `{v}` is too far back");
        let ago = i64::try_from(secs)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .ok_or_else(too_far)?;
        return now
            .checked_sub_signed(ago)
            .map(|t| t.fixed_offset())
            .ok_or_else(too_far);
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(v, f).ok())
    .or_else(|| {
        chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| format!("--since: `{v}` is not 2h, 3d, 2026-11-21 or `2026-11-21 14:00`"))?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.fixed_offset())
        .ok_or_else(|| format!("--since: `{v}` does not exist in local time"))
}

/// `mysqk events`: what the snapshot files say happened.
fn events(cli: &Cli, args: &EventsArgs) -> Result<u8, CliError> {
    let (dir, known) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let cfg = load_config_or(cli, "name the snapshot directory with --dir DIR")?;
            let known: Vec<String> = cfg.instances.iter().map(|i| i.dbid.clone()).collect();
            (cfg.settings.snapshot_dir.clone(), Some(known))
        }
    };
    let dbs: Option<Vec<String>> = args.db.as_deref().filter(|d| d.trim() != "all").map(|d| {
        d.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    if let (Some(dbs), Some(known)) = (&dbs, &known) {
        // An instance removed from the ini still has its history: only warn.
        for d in dbs.iter().filter(|d| !known.contains(d)) {
            eprintln!("mysqk: note: `{d}` is not in [db_info] (now); listing its files anyway");
        }
    }
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, chrono::Local::now()))
        .transpose()
        .map_err(CliError::Usage)?;
    let list = match crate::report::history::events(&dir, dbs.as_deref(), since) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(CliError::Runtime(format!(
                "cannot read the snapshot directory {}: {e}",
                dir.display()
            )))
        }
    };
    let mut out = std::io::stdout().lock();
    for e in &list {
        let _ = writeln!(
            out,
            "{}  {}  {}  {}",
            // Shown in today's zone (log_utc), whatever zone wrote the file.
            crate::report::clock::format(
                e.time.with_timezone(&chrono::Local),
                "%Y-%m-%d %H:%M:%S %z"
            ),
            crate::core::text::neutral(&e.dbid),
            e.summary,
            crate::core::text::neutral(&e.path.display().to_string())
        );
        if !args.brief {
            for v in &e.victims {
                let _ = writeln!(out, "    {v}");
            }
        }
    }
    let _ = writeln!(
        out,
        "{} event{} in {}{}",
        list.len(),
        if list.len() == 1 { "" } else { "s" },
        dir.display(),
        since
            .map(|s| format!(" since {}", s.format("%Y-%m-%d %H:%M:%S %z")))
            .unwrap_or_default()
    );
    Ok(0)
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
            // It is read for [settings] key_file.
            return Err(missing_config(
                cli,
                "set MYSQK_KEY to encrypt without a config file",
            ));
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
    let password = read_password("Password: ")?;
    let value =
        crypto::try_encrypt(&key, &password).map_err(|e| CliError::Runtime(e.to_string()))?;
    log::info!("encrypted with the key from {source} (id {})", key.id());
    println!("{value}");
    Ok(0)
}

/// stdin when piped; otherwise `prompt` on the terminal with echo off.
fn read_password(prompt: &str) -> Result<String, CliError> {
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
        eprint!("{prompt}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_pt_kill_writes_them() {
        assert_eq!(parse_secs("60"), Ok(60));
        assert_eq!(parse_secs("60s"), Ok(60));
        assert_eq!(parse_secs("5m"), Ok(300));
        assert_eq!(parse_secs("2h"), Ok(7200));
        assert_eq!(parse_secs("1d"), Ok(86_400));
        assert!(parse_secs("5x").is_err());
        assert!(parse_secs("m").is_err());
        assert!(parse_secs("-1").is_err());
    }

    #[test]
    fn number_flags_take_their_keys_range() {
        let big = "18446744073709551615";
        for args in [
            vec!["watch", "--interval", big],
            vec!["watch", "--interval", "0"],
            vec!["watch", "--run-time", big],
            vec!["kill", "--verify-secs", big],
            vec!["kill", "--connect-timeout", "0"],
            vec!["kill", "--busy-time", "1000000d"],
            vec!["kill", "--idle-time", big],
            vec!["match", "--from", "x", "--lock-wait", big],
            vec!["match", "--from", "x", "--query-count", big],
            vec!["match", "--from", "x", "--any-busy-time", big],
            vec!["match", "--from", "x", "--each-busy-time", big],
        ] {
            let mut v = vec!["mysqk"];
            v.extend_from_slice(&args);
            let e = Cli::try_parse_from(&v).expect_err(&args.join(" "));
            assert!(e.to_string().contains("out of range"), "{args:?}: {e}");
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
        assert!(
            Cli::try_parse_from(["mysqk", "watch", "--interval", "86400", "--run-time", "1d"])
                .is_ok()
        );
        assert!(Cli::try_parse_from([
            "mysqk",
            "kill",
            "--verify-secs",
            "0",
            "--busy-time",
            "365d"
        ])
        .is_ok());
    }

    #[test]
    fn dsn_parts_and_no_password() {
        assert!(parse_dsn("h=db1,P=0").is_err());
        assert_eq!(
            parse_dsn("h=db1,P=3307,u=root"),
            Ok(Dsn {
                host: Some("db1".into()),
                port: Some(3307),
                user: Some("root".into())
            })
        );
        let e = parse_dsn("h=db1,p=secret").unwrap_err();
        assert!(e.contains("refused") && !e.contains("secret"), "{e}");
        assert!(parse_dsn("h=db1,F=/etc/my.cnf").is_err());
        assert!(parse_dsn("P=x").is_err());
    }

    #[test]
    fn since_ago_or_local_time() {
        let now = chrono::Local::now();
        let t = parse_since("2h", now).unwrap();
        assert_eq!((now.fixed_offset() - t).num_seconds(), 7200);
        let d = parse_since("2026-11-21", now).unwrap();
        assert_eq!(d.format("%Y-%m-%d %H:%M").to_string(), "2026-11-21 00:00");
        let m = parse_since("2026-11-21 14:05", now).unwrap();
        assert_eq!(m.format("%H:%M").to_string(), "14:05");
        assert!(parse_since("yesterday", now).is_err());
        for far in [
            "99999999999999d",
            "18446744073709551615",
            "9223372036854775807",
        ] {
            assert!(parse_since(far, now).is_err(), "{far}");
        }
    }

    #[test]
    fn pt_kill_spellings_parse_to_the_same_rules() {
        let parse = |args: &[&str]| {
            let mut v = vec!["mysqk", "match", "--from", "x"];
            v.extend_from_slice(args);
            match Cli::try_parse_from(v).unwrap().command {
                Command::Match(m) => override_rules(None, &flag_only_rules(), &m.rules).unwrap(),
                _ => unreachable!(),
            }
        };
        let a = parse(&["--busy-time", "1m", "--idle-time", "30", "--kill-query"]);
        let b = parse(&["--longtime", "60", "--sleep", "30s", "--mode", "query"]);
        assert_eq!((a.longtime, a.sleep, a.mode), (60, 30, KillMode::Query));
        assert_eq!((b.longtime, b.sleep, b.mode), (60, 30, KillMode::Query));
        let u = parse(&[
            "--match-user",
            "^app",
            "--lock-wait",
            "20",
            "--kill-cmd",
            "rds",
        ]);
        assert!(u.users.contains("app1") && !u.users.contains("web"));
        assert_eq!((u.lock, u.kill_cmd), (20, KillCmd::Rds));
        let all = parse(&["--match-all", "--match-command", "^Sleep$"]);
        assert!(all
            .include
            .as_ref()
            .is_some_and(|re| re.is_match("u h Sleep")));
        // Without an ini `all` is every user.
        assert!(parse(&["--user", "all"]).users.contains("anyone"));
        assert!(Cli::try_parse_from([
            "mysqk",
            "match",
            "--from",
            "x",
            "--user",
            "a",
            "--match-user",
            "b"
        ])
        .is_err());
    }

    #[test]
    fn kill_takes_h_as_host_and_keeps_help() {
        let c = Cli::try_parse_from(["mysqk", "kill", "-h", "db1", "-P", "3307", "-u", "root"])
            .unwrap();
        let Command::Kill(k) = c.command else {
            unreachable!()
        };
        assert_eq!(
            k.conn.one_off().unwrap(),
            Some(OneOff {
                host: "db1".into(),
                port: 3307,
                user: "root".into()
            })
        );
        let e = Cli::try_parse_from(["mysqk", "kill", "--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let c = Cli::try_parse_from(["mysqk", "kill", "-h", "db1", "-u", "r", "-psecret"]).unwrap();
        let Command::Kill(k) = c.command else {
            unreachable!()
        };
        let e = k.conn.one_off().unwrap_err().to_string();
        assert!(e.contains("--ask-pass") && !e.contains("secret"), "{e}");
        // `-p` alone prompts, as with the mysql client.
        let c = Cli::try_parse_from(["mysqk", "kill", "-h", "db1", "-u", "r", "-p"]).unwrap();
        let Command::Kill(k) = c.command else {
            unreachable!()
        };
        assert!(k.conn.asks_password());
    }
}
