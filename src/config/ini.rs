//! `mysqk.ini`: raw text -> one validated, typed [`Config`].
//!
//! The file is parsed and checked whole, once; the rest of the program only
//! sees the resolved per-instance [`Instance`] rules and never reads raw strings.
//! Keys and sections of the original Python tool keep their names and meaning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveTime;
use configparser::ini::Ini;
use regex::Regex;

use crate::config::crypto::{self, CryptoError, Key, KeySource, Secret};
use crate::core::classes::{ClassRules, GroupBy, Pick};
use crate::core::filters::{FieldFilters, FIELD_KEYS};
use crate::core::matcher::{KillCmd, KillMode, Rules, UserFilter};

/// A config problem, located as precisely as we can: file, line, section, key, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub section: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        match (&self.section, &self.key) {
            (Some(s), Some(k)) => write!(f, "[{s}] {k}: ")?,
            (Some(s), None) => write!(f, "[{s}]: ")?,
            _ => {}
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// How mail is protected on the wire (`mail_tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MailTls {
    /// STARTTLS when the server offers it, plain otherwise.
    #[default]
    Opportunistic,
    StartTls,
    Tls,
    None,
}

#[derive(Debug, Clone, Default)]
pub struct MailConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub pass: Option<Secret>,
    pub from: Option<String>,
    /// Empty = no mail.
    pub receivers: Vec<String>,
    pub tls: MailTls,
    /// PEM file of CAs trusted for the SMTP server's certificate, besides the
    /// built-in roots (`mail_ca_file`, e.g. a company's private CA).
    pub ca_file: Option<PathBuf>,
    /// At most one mail per instance per interval; the rest is folded into a digest.
    pub interval: Duration,
}

impl MailConfig {
    pub fn enabled(&self) -> bool {
        !self.receivers.is_empty() && self.host.is_some()
    }
}

/// `mail_ca_file` must be readable and hold at least one PEM certificate:
/// a typo would otherwise surface only as a refused mail at the first
/// incident. (The mailer reads the file again at each connection.)
fn check_ca_file(path: &Path) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub check_interval: Duration,
    pub ping_multi: u32,
    pub snapshot_dir: PathBuf,
    pub log_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub status_file: PathBuf,
    pub lock_file: PathBuf,
    /// Run per event with the event as JSON on stdin.
    pub on_kill_command: Option<String>,
    pub hook_timeout: Duration,
    /// Snapshot files older than this are deleted (0 = kept forever).
    pub snapshot_keep_days: u64,
    /// Beyond this many MB in all, the oldest snapshot files are deleted (0 = no limit).
    pub snapshot_max_mb: u64,
    /// Timestamps in UTC rather than local time with offset (`report::clock`).
    pub log_utc: bool,
}

/// A `HH:MM-HH:MM` local-time window; may cross midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl TimeWindow {
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start <= self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

/// One watched database instance with its effective rules.
#[derive(Debug, Clone)]
pub struct Instance {
    pub dbid: String,
    pub host: String,
    pub port: u16,
    /// The user whose connection reads the full processlist.
    pub puser: String,
    pub dry_run: bool,
    pub window: Option<TimeWindow>,
    pub rules: Rules,
    /// The `k_user` text as written (`all`, `none`, or a list), for display.
    pub k_user_text: String,
}

impl Instance {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub user: String,
    pub password: Secret,
}

/// The whole resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub settings: Settings,
    pub mail: MailConfig,
    pub auth: Vec<Auth>,
    /// 0 = keep-alive only; 999 = forever; N = N passes.
    pub run_max_count: u32,
    pub instances: Vec<Instance>,
    /// Non-fatal findings (plain passwords, unknown keys), logged by the caller.
    pub warnings: Vec<String>,
}

impl Config {
    pub fn instance(&self, dbid: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.dbid == dbid)
    }

    pub fn password(&self, user: &str) -> Option<&Secret> {
        self.auth
            .iter()
            .find(|a| a.user == user)
            .map(|a| &a.password)
    }

    /// Every secret value, so tests and redaction can check none leaks.
    pub fn secrets(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.auth.iter().map(|a| a.password.expose()).collect();
        if let Some(p) = &self.mail.pass {
            out.push(p.expose());
        }
        out.retain(|s| !s.is_empty());
        out
    }

    /// Load and validate a file; `MYSQK_KEY` from the environment decrypts passwords.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_text(path)?;
        let env_key = std::env::var("MYSQK_KEY").ok();
        Config::parse(path, &text, env_key.as_deref())
    }

    /// Parse `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str, env_key: Option<&str>) -> Result<Config, ConfigError> {
        Resolver::new(path, text)?.resolve(env_key)
    }

    /// Only `[settings] key_file`, without decrypting anything:
    /// `encrypt-password` needs the key before the file's passwords are usable.
    pub fn key_file_of(path: &Path) -> Result<Option<PathBuf>, ConfigError> {
        let text = read_text(path)?;
        Ok(Resolver::new(path, &text)?.settings()?.key_file)
    }
}

/// The config file's text: UTF-8, a leading byte-order mark dropped (Windows
/// editors write one). Another encoding (a GBK file from a Chinese Windows
/// box) is an error naming the first line that is not UTF-8 and the command
/// that converts the file; the line itself is not shown, it may hold a password.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    let fail = |line: Option<usize>, message: String| ConfigError {
        file: path.to_path_buf(),
        line,
        section: None,
        key: None,
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(None, format!("cannot read: {e}")))?;
    decode_text(&bytes).map_err(|line| not_utf8(path, line))
}

/// The error for a file whose line `line` is not UTF-8.
pub fn not_utf8(path: &Path, line: usize) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: Some(line),
        section: None,
        key: None,
        message: format!(
            "this line is not UTF-8 (the file is probably GBK or Latin-1 encoded); \
             convert the file, e.g. `iconv -f GBK -t UTF-8 {0} > {0}.utf8` and move it into place",
            path.display()
        ),
    }
}

/// `bytes` as text without a leading BOM; `Err(line)` (1-based) of the first
/// byte that is not UTF-8.
pub fn decode_text(bytes: &[u8]) -> Result<String, usize> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => Err(1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()),
    }
}

/// Sections mysqk reads (after folding `db_comconfig` into `db_commconfig`),
/// besides `[id_<dbid>]`.
const KNOWN_SECTIONS: &[&str] = &[
    "mail_config",
    "db_info",
    "db_auth",
    "settings",
    "db_commconfig",
    "db_commkill",
];

/// Sections whose values are (or may be) secrets: a malformed line there is
/// reported by its number and key only.
fn secret_section(section: &str) -> bool {
    section == "db_auth" || section == "mail_config"
}

/// A malformed line that starts like a secret-bearing key (`mail_pass
/// TypoPw` pasted under [settings]): its text is not shown either.
fn names_a_secret(line: &str) -> bool {
    let word = line
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "key"]
        .iter()
        .any(|w| word.contains(w))
}

/// Edit distance, for did-you-mean hints on section names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `name`, if it is close enough to be a typo.
fn closest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.chars().count() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

const KNOWN_KILL_KEYS: &[&str] = &[
    "k_user",
    "k_longtime",
    "k_sleep",
    "k_lock",
    "k_exclude",
    "k_include",
    "k_mode",
    "k_kill_cmd",
    "k_killed_report",
    // Per-column filters (pt-kill's --match-* / --ignore-*): crate::core::filters::FIELD_KEYS.
    "k_match_command",
    "k_match_state",
    "k_match_db",
    "k_match_host",
    "k_match_info",
    "k_ignore_command",
    "k_ignore_state",
    "k_ignore_db",
    "k_ignore_host",
    "k_ignore_info",
    "k_ignore_user",
    // Query pile-ups (pt-kill's --group-by, class matches, --victims): crate::core::classes.
    "k_group_by",
    "k_query_count",
    "k_any_busy_time",
    "k_each_busy_time",
    "k_victims",
];
const INSTANCE_CONFIG_KEYS: &[&str] = &["dry_run", "run_time_window", "db_puser"];
const KNOWN_SETTINGS: &[&str] = &[
    "check_interval",
    "ping_multi",
    "snapshot_dir",
    "log_file",
    "key_file",
    "connect_timeout",
    "read_timeout",
    "status_file",
    "lock_file",
    "on_kill_command",
    "hook_timeout",
    "snapshot_keep_days",
    "snapshot_max_mb",
    "log_utc",
];
const KNOWN_MAIL: &[&str] = &[
    "mail_host",
    "mail_user",
    "mail_pass",
    "mail_receiver",
    "mail_port",
    "mail_from",
    "mail_tls",
    "mail_ca_file",
    "mail_interval",
];

/// Strip a comment that follows a value, as Python's ConfigParser did: `;` or
/// `#` preceded by whitespace. A `#` inside a regex (`a#b`) is kept.
fn strip_inline_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for i in 1..bytes.len() {
        if (bytes[i] == b';' || bytes[i] == b'#') && bytes[i - 1].is_ascii_whitespace() {
            return line[..i].trim_end();
        }
    }
    line
}

/// Works over the parsed map, remembering where each key was for messages.
struct Resolver {
    file: PathBuf,
    /// section (lowercase) -> key -> value, with `db_comconfig` folded into `db_commconfig`.
    map: HashMap<String, HashMap<String, String>>,
    /// (section, key) -> 1-based line number.
    lines: HashMap<(String, String), usize>,
    section_lines: HashMap<String, usize>,
    /// Sections in file order, as written (for `[db_info]` order and `[id_*]`).
    order: BTreeMap<String, Vec<String>>,
    warnings: Vec<String>,
}

/// Sections whose keys are names (dbids, users) and keep their case.
fn case_sensitive_keys(section: &str) -> bool {
    section == "db_info" || section == "db_auth"
}

fn canonical_section(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    if lower == "db_comconfig" {
        "db_commconfig".to_string()
    } else {
        lower
    }
}

impl Resolver {
    fn new(path: &Path, text: &str) -> Result<Resolver, ConfigError> {
        let file = path.to_path_buf();
        let mut cleaned = String::with_capacity(text.len());
        let mut lines = HashMap::new();
        let mut section_lines = HashMap::new();
        let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut section = String::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, raw) in text.lines().enumerate() {
            let line = strip_inline_comment(raw.trim());
            let lineno = n + 1;
            if line.starts_with('[') {
                if !line.ends_with(']') {
                    return Err(ConfigError {
                        file,
                        line: Some(lineno),
                        section: None,
                        key: None,
                        message: format!("malformed section header `{line}` (expected `[name]`)"),
                    });
                }
                section = canonical_section(&line[1..line.len() - 1]);
                section_lines.entry(section.clone()).or_insert(lineno);
                order.entry(section.clone()).or_default();
            } else if !line.is_empty() && !line.starts_with(';') && !line.starts_with('#') {
                let Some((k, _)) = line.split_once(['=', ':']) else {
                    // `app TypoPw_S3cr3t!` in [db_auth]: the text is the password.
                    let message =
                        if secret_section(&section) || section.is_empty() || names_a_secret(line) {
                            "expected `key=value` but this line has no `=` (its text is not \
                         shown: it may hold a password)"
                                .to_string()
                        } else {
                            format!("expected `key=value`, found `{line}`")
                        };
                    return Err(ConfigError {
                        file,
                        line: Some(lineno),
                        section: Some(section.clone()).filter(|s| !s.is_empty()),
                        key: None,
                        message,
                    });
                };
                if k.trim().is_empty() {
                    // `=TypoPw`: what follows may be a password.
                    return Err(ConfigError {
                        file,
                        line: Some(lineno),
                        section: Some(section.clone()).filter(|s| !s.is_empty()),
                        key: None,
                        message: "no key before the `=` (its text is not shown: it may hold a \
                                  password)"
                            .into(),
                    });
                }
                if section.is_empty() {
                    return Err(ConfigError {
                        file,
                        line: Some(lineno),
                        section: None,
                        key: Some(k.trim().to_string()),
                        message: format!("`{}=…` is outside any [section]", k.trim()),
                    });
                }
                let key = if case_sensitive_keys(&section) {
                    k.trim().to_string()
                } else {
                    k.trim().to_ascii_lowercase()
                };
                lines.insert((section.clone(), key.clone()), lineno);
                order.entry(section.clone()).or_default().push(key);
            }
            // Keep every line (blank if dropped) so configparser's numbering matches.
            if line.starts_with('[') {
                cleaned.push_str(&format!("[{section}]"));
            } else {
                cleaned.push_str(line);
            }
            cleaned.push('\n');
        }
        let mut ini = Ini::new_cs();
        ini.set_comment_symbols(&[';', '#']);
        ini.set_multiline(false);
        // Inline comments were already stripped the Python way above.
        let mut defaults = ini.defaults();
        defaults.enable_inline_comments = false;
        defaults.delimiters = vec!['=', ':'];
        ini.load_defaults(defaults);
        // configparser's messages quote the offending line: not shown, it may
        // be a password (the checks above should leave it nothing to reject).
        let parsed = ini.read(cleaned).map_err(|_| ConfigError {
            file: file.clone(),
            line: None,
            section: None,
            key: None,
            message: "not a valid ini file".into(),
        })?;
        let mut map: HashMap<String, HashMap<String, String>> = HashMap::new();
        for (sec, kv) in parsed {
            let sec = canonical_section(&sec);
            let entry = map.entry(sec.clone()).or_default();
            for (k, v) in kv {
                let key = if case_sensitive_keys(&sec) {
                    k
                } else {
                    k.to_ascii_lowercase()
                };
                entry.insert(key, v.unwrap_or_default());
            }
        }
        Ok(Resolver {
            file,
            map,
            lines,
            section_lines,
            order,
            warnings: Vec::new(),
        })
    }

    fn err(&self, section: &str, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self
                .lines
                .get(&(section.to_string(), key.to_string()))
                .or_else(|| self.section_lines.get(section))
                .copied(),
            section: Some(section.to_string()),
            key: if key.is_empty() {
                None
            } else {
                Some(key.to_string())
            },
            message,
        }
    }

    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.map
            .get(section)
            .and_then(|s| s.get(key))
            .map(String::as_str)
    }

    /// Look a key up in the instance section first, then the common one.
    fn get_layered<'a>(
        &'a self,
        inst_section: &'a str,
        common: &'a str,
        key: &str,
    ) -> Option<(&'a str, &'a str)> {
        self.get(inst_section, key)
            .map(|v| (inst_section, v))
            .or_else(|| self.get(common, key).map(|v| (common, v)))
    }

    /// A whole number within the key's documented range ([`range_of`]).
    fn parse_u64(&self, section: &str, key: &str, value: &str) -> Result<u64, ConfigError> {
        let r = range_of(key);
        let v = value.trim().parse::<u64>().map_err(|_| {
            self.err(
                section,
                key,
                format!(
                    "`{}` is not a whole number ({key}: {}..={} {})",
                    value.trim(),
                    r.min,
                    r.max,
                    r.unit
                ),
            )
        })?;
        if !(r.min..=r.max).contains(&v) {
            return Err(self.err(
                section,
                key,
                format!(
                    "`{v}` is out of range: {key} must be {}..={} {}",
                    r.min, r.max, r.unit
                ),
            ));
        }
        Ok(v)
    }

    fn num_or(&self, section: &str, key: &str, default: u64) -> Result<u64, ConfigError> {
        match self.get(section, key) {
            Some(v) if !v.trim().is_empty() => self.parse_u64(section, key, v),
            _ => Ok(default),
        }
    }

    fn regex(&self, section: &str, key: &str, value: &str) -> Result<Option<Regex>, ConfigError> {
        if value.trim().is_empty() {
            return Ok(None);
        }
        Regex::new(value).map(Some).map_err(|e| {
            self.err(
                section,
                key,
                format!("invalid regex `{value}`: {}", first_line(&e.to_string())),
            )
        })
    }

    fn warn_unknown(&mut self, section: &str, known: &[&str]) {
        let Some(keys) = self.order.get(section) else {
            return;
        };
        let unknown: Vec<String> = keys
            .iter()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            let line = self
                .lines
                .get(&(section.to_string(), k.clone()))
                .copied()
                .unwrap_or(0);
            self.warnings.push(format!(
                "{}:{line}: [{section}] unknown key `{k}` ignored",
                self.file.display()
            ));
        }
    }

    /// Every section is one mysqk reads: a misspelled one (`[db_commkil]`,
    /// `[id_crm00]`) would silently drop its rules and protections.
    fn check_sections(&self) -> Result<(), ConfigError> {
        let dbids: Vec<String> = self
            .order
            .get("db_info")
            .map(|ids| ids.iter().map(|d| d.to_ascii_lowercase()).collect())
            .unwrap_or_default();
        let mut candidates: Vec<String> = KNOWN_SECTIONS.iter().map(|s| s.to_string()).collect();
        candidates.extend(dbids.iter().map(|d| format!("id_{d}")));
        let mut sections: Vec<(&String, &usize)> = self.section_lines.iter().collect();
        sections.sort_by_key(|(_, line)| **line);
        for (sec, line) in sections {
            if candidates.contains(sec) {
                continue;
            }
            let hint = match closest(sec, &candidates) {
                Some(c) => format!("did you mean [{c}]?"),
                None => format!(
                    "mysqk reads [{}] and [id_<dbid>] for each [db_info] entry",
                    KNOWN_SECTIONS.join("], [")
                ),
            };
            let message = match sec.strip_prefix("id_") {
                Some(id) => format!(
                    "unknown section: `{id}` is not in [db_info], so these rules would apply \
                     to nothing; {hint}"
                ),
                None => format!("unknown section, its keys would be ignored; {hint}"),
            };
            return Err(ConfigError {
                file: self.file.clone(),
                line: Some(*line),
                section: Some(sec.clone()),
                key: None,
                message,
            });
        }
        Ok(())
    }

    fn resolve(mut self, env_key: Option<&str>) -> Result<Config, ConfigError> {
        self.check_sections()?;
        let settings = self.settings()?;
        let key = self.key(env_key, settings.key_file.as_deref())?;
        let auth = self.auth(key.as_ref())?;
        let mail = self.mail(key.as_ref())?;
        let run_max_count = self.num_or("db_commconfig", "run_max_count", 999)?;
        // In range (parse_u64), so it fits.
        let run_max_count = u32::try_from(run_max_count).unwrap_or(u32::MAX);

        let mut instances = Vec::new();
        let dbids: Vec<String> = self.order.get("db_info").cloned().unwrap_or_default();
        for dbid in dbids {
            instances.push(self.instance(&dbid, &auth)?);
        }
        self.warn_users_without_auth(&instances, &auth);
        if instances.is_empty() {
            self.warnings.push(format!(
                "{}: [db_info] lists no instance",
                self.file.display()
            ));
        }
        let mut common_kill = KNOWN_KILL_KEYS.to_vec();
        common_kill.extend_from_slice(INSTANCE_CONFIG_KEYS);
        self.warn_unknown("db_commkill", KNOWN_KILL_KEYS);
        self.warn_unknown(
            "db_commconfig",
            &["db_puser", "run_max_count", "dry_run", "run_time_window"],
        );
        self.warn_unknown("settings", KNOWN_SETTINGS);
        self.warn_unknown("mail_config", KNOWN_MAIL);
        let id_sections: Vec<String> = self
            .map
            .keys()
            .filter(|s| s.starts_with("id_"))
            .cloned()
            .collect();
        for sec in id_sections {
            self.warn_unknown(&sec, &common_kill);
        }
        Ok(Config {
            path: self.file.clone(),
            settings,
            mail,
            auth,
            run_max_count,
            instances,
            warnings: self.warnings,
        })
    }

    /// A `k_user` user mysqk holds no session for: its threads can only be
    /// killed through a session with SUPER / CONNECTION ADMIN, which a
    /// cloud instance usually does not grant. Said before the incident.
    fn warn_users_without_auth(&mut self, instances: &[Instance], auth: &[Auth]) {
        let mut seen = BTreeSet::new();
        for inst in instances {
            let UserFilter::Users(users) = &inst.rules.users else {
                continue;
            };
            let sec = format!("id_{}", inst.dbid.to_ascii_lowercase());
            let (section, _) = self
                .get_layered(&sec, "db_commkill", "k_user")
                .unwrap_or(("db_commkill", ""));
            let section = section.to_string();
            for u in users {
                if auth.iter().any(|a| &a.user == u) || !seen.insert((section.clone(), u.clone())) {
                    continue;
                }
                let line = self
                    .lines
                    .get(&(section.clone(), "k_user".to_string()))
                    .copied()
                    .unwrap_or(0);
                self.warnings.push(format!(
                    "{}:{line}: [{section}] k_user: `{u}` is not in [db_auth]: mysqk holds no \
                     session of it, so its threads can only be killed through a session with \
                     SUPER or CONNECTION ADMIN",
                    self.file.display()
                ));
            }
        }
    }

    fn settings(&self) -> Result<Settings, ConfigError> {
        let s = "settings";
        let secs = |key: &str, default: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(self.num_or(s, key, default)?))
        };
        let path = |key: &str| {
            self.get(s, key)
                .filter(|v| !v.trim().is_empty())
                .map(|v| PathBuf::from(v.trim()))
        };
        let snapshot_dir = path("snapshot_dir").unwrap_or_else(|| PathBuf::from("snapshots"));
        Ok(Settings {
            check_interval: secs("check_interval", 5)?,
            ping_multi: u32::try_from(self.num_or(s, "ping_multi", 6)?)
                .map_err(|_| self.err(s, "ping_multi", "too large".into()))?,
            log_file: path("log_file"),
            key_file: path("key_file"),
            connect_timeout: secs("connect_timeout", 3)?,
            read_timeout: secs("read_timeout", 10)?,
            status_file: path("status_file").unwrap_or_else(|| snapshot_dir.join("mysqk.status")),
            lock_file: path("lock_file").unwrap_or_else(|| snapshot_dir.join("mysqk.lock")),
            on_kill_command: self
                .get(s, "on_kill_command")
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from),
            hook_timeout: secs("hook_timeout", 10)?,
            snapshot_keep_days: self.num_or(s, "snapshot_keep_days", 90)?,
            snapshot_max_mb: self.num_or(s, "snapshot_max_mb", 1024)?,
            log_utc: match self
                .get(s, "log_utc")
                .map(|v| v.trim().to_ascii_lowercase())
            {
                None => false,
                Some(v) => match v.as_str() {
                    "" | "0" | "no" | "false" | "off" => false,
                    "1" | "yes" | "true" | "on" => true,
                    _ => return Err(self.err(s, "log_utc", format!("`{v}`: use 0 or 1"))),
                },
            },
            snapshot_dir,
        })
    }

    /// The first encrypted value in file order, as (section, key): where a
    /// missing or unusable key is reported.
    fn first_encrypted(&self) -> Option<(String, String)> {
        ["db_auth", "mail_config"].iter().find_map(|sec| {
            self.order.get(*sec)?.iter().find_map(|k| {
                self.get(sec, k)
                    .filter(|v| crypto::is_encrypted(v.trim()))
                    .map(|_| (sec.to_string(), k.clone()))
            })
        })
    }

    fn key(
        &self,
        env_key: Option<&str>,
        key_file: Option<&Path>,
    ) -> Result<Option<(Key, KeySource)>, ConfigError> {
        let Some((sec, name)) = self.first_encrypted() else {
            return Ok(None);
        };
        match crypto::load_key(env_key.filter(|k| !k.trim().is_empty()), key_file) {
            Ok(found) => found.map(Some).ok_or_else(|| {
                self.err(
                    &sec,
                    &name,
                    "encrypted password but no key: set MYSQK_KEY or [settings] key_file \
                     (the key it was encrypted with; see `mysqk gen-key`)"
                        .into(),
                )
            }),
            // A bad key file is the key_file line's problem; a bad MYSQK_KEY
            // has no line, so point at the value that needs it.
            Err(
                e @ (CryptoError::KeyFileRead { .. }
                | CryptoError::InvalidKeyIn {
                    origin: KeySource::File(_),
                    ..
                }),
            ) => Err(self.err("settings", "key_file", format!("cannot load the key: {e}"))),
            Err(e) => Err(self.err(&sec, &name, format!("cannot load the key: {e}"))),
        }
    }

    fn secret(
        &mut self,
        key: Option<&(Key, KeySource)>,
        section: &str,
        name: &str,
        value: &str,
    ) -> Result<Secret, ConfigError> {
        if crypto::is_encrypted(value) {
            let Some((key, source)) = key else {
                return Err(self.err(section, name, "encrypted value but no key".into()));
            };
            // Reads "[db_auth] app1: wrong key: ..."; the crypto errors never
            // carry plaintext or key material.
            crypto::decrypt(key, value).map(Secret::new).map_err(|e| {
                let msg = match (&e, crypto::encrypted_key_id(value)) {
                    (CryptoError::WrongKey, Some(id)) => format!(
                        "wrong key: this value was encrypted with key id {id}, but the key from \
                         {source} has id {}; use that key, or re-encrypt the password with \
                         `mysqk encrypt-password`",
                        key.id()
                    ),
                    _ => e.to_string(),
                };
                self.err(section, name, msg)
            })
        } else {
            if !value.is_empty() {
                let line = self
                    .lines
                    .get(&(section.to_string(), name.to_string()))
                    .copied()
                    .unwrap_or(0);
                self.warnings.push(format!(
                    "{}:{line}: [{section}] {name}: plain-text password; encrypt it with `mysqk encrypt-password`",
                    self.file.display()
                ));
            }
            Ok(Secret::new(value.to_string()))
        }
    }

    fn auth(&mut self, key: Option<&(Key, KeySource)>) -> Result<Vec<Auth>, ConfigError> {
        let users: Vec<String> = self.order.get("db_auth").cloned().unwrap_or_default();
        let mut out = Vec::new();
        for user in users {
            let value = self.get("db_auth", &user).unwrap_or_default().to_string();
            let password = self.secret(key, "db_auth", &user, &value)?;
            out.retain(|a: &Auth| a.user != user);
            out.push(Auth { user, password });
        }
        Ok(out)
    }

    fn mail(&mut self, key: Option<&(Key, KeySource)>) -> Result<MailConfig, ConfigError> {
        let s = "mail_config";
        let get = |k: &str| {
            self.get(s, k)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
        };
        let receivers: Vec<String> = get("mail_receiver")
            .map(|v| {
                v.split([',', ';'])
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let mut host = get("mail_host");
        let mut port = None;
        if let Some(h) = host.clone() {
            if let Some((name, p)) = h.rsplit_once(':') {
                port = Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    self.err(
                        s,
                        "mail_host",
                        format!("bad port in `{h}`: out of range 1..=65535"),
                    )
                })?);
                host = Some(name.to_string());
            }
        }
        if let Some(p) = get("mail_port") {
            // In range (1..=65535), so it fits.
            port = Some(u16::try_from(self.parse_u64(s, "mail_port", &p)?).unwrap_or(u16::MAX));
        }
        let tls = match get("mail_tls").map(|v| v.to_ascii_lowercase()).as_deref() {
            None => MailTls::Opportunistic,
            Some("starttls") => MailTls::StartTls,
            Some("tls") => MailTls::Tls,
            Some("none") => MailTls::None,
            Some(other) => {
                return Err(self.err(
                    s,
                    "mail_tls",
                    format!("`{other}` is not one of starttls, tls, none"),
                ));
            }
        };
        if !receivers.is_empty() && host.is_none() {
            return Err(self.err(
                s,
                "mail_host",
                "mail_receiver is set but mail_host is empty".into(),
            ));
        }
        let user = get("mail_user");
        let from = get("mail_from");
        // A mistyped address would otherwise show up only as a log line at
        // the first incident; `Name <a@b>` is accepted too.
        let addresses = receivers
            .iter()
            .map(|r| ("mail_receiver", r))
            .chain(from.iter().map(|f| ("mail_from", f)));
        for (k, a) in addresses {
            if let Err(e) = a.parse::<lettre::message::Mailbox>() {
                return Err(self.err(s, k, format!("`{a}` is not a mail address ({e})")));
            }
        }
        let ca_file = get("mail_ca_file").map(PathBuf::from);
        if let Some(p) = &ca_file {
            check_ca_file(p).map_err(|e| self.err(s, "mail_ca_file", e))?;
        }
        let pass_raw = get("mail_pass");
        let interval = Duration::from_secs(self.num_or(s, "mail_interval", 60)?);
        let pass = match pass_raw {
            Some(v) => Some(self.secret(key, s, "mail_pass", &v)?),
            None => None,
        };
        Ok(MailConfig {
            host,
            port,
            user,
            pass,
            from,
            receivers,
            tls,
            ca_file,
            interval,
        })
    }

    fn instance(&self, dbid: &str, auth: &[Auth]) -> Result<Instance, ConfigError> {
        let addr = self.get("db_info", dbid).unwrap_or_default().trim();
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim(), p.trim().parse::<u16>().ok()?)))
            .filter(|(h, p)| !h.is_empty() && *p > 0)
            .ok_or_else(|| {
                self.err(
                    "db_info",
                    dbid,
                    format!("`{addr}` is not host:port (the port is required)"),
                )
            })?;
        let sec = format!("id_{}", dbid.to_ascii_lowercase());
        let kill = |key: &str| self.get_layered(&sec, "db_commkill", key);
        let conf = |key: &str| self.get_layered(&sec, "db_commconfig", key);

        let puser = match conf("db_puser") {
            Some((_, v)) if !v.trim().is_empty() => v.trim().to_string(),
            _ => {
                return Err(self.err(
                    "db_commconfig",
                    "db_puser",
                    "missing: the user that reads the processlist".into(),
                ))
            }
        };
        if !auth.iter().any(|a| a.user == puser) {
            let (s, _) = conf("db_puser").unwrap_or(("db_commconfig", ""));
            return Err(self.err(s, "db_puser", format!("`{puser}` is not in [db_auth]")));
        }
        let dry_run = match conf("dry_run") {
            Some((_, v)) => v.trim() != "0",
            None => false,
        };
        let window = match conf("run_time_window") {
            Some((s, v)) if !v.trim().is_empty() => Some(self.window(s, v)?),
            _ => None,
        };

        let (users, k_user_text) = match kill("k_user") {
            None => (UserFilter::Nobody, "none".to_string()),
            Some((_, v)) => {
                let v = v.trim();
                match v.to_ascii_lowercase().as_str() {
                    "" | "none" => (UserFilter::Nobody, "none".to_string()),
                    "all" => (
                        UserFilter::Users(auth.iter().map(|a| a.user.clone()).collect()),
                        "all".to_string(),
                    ),
                    _ => {
                        let set: BTreeSet<String> = v
                            .split(',')
                            .map(str::trim)
                            .filter(|u| !u.is_empty())
                            .map(String::from)
                            .collect();
                        (UserFilter::Users(set), v.to_string())
                    }
                }
            }
        };
        let num = |key: &str, default: u64| -> Result<u64, ConfigError> {
            match kill(key) {
                Some((s, v)) if !v.trim().is_empty() => self.parse_u64(s, key, v),
                _ => Ok(default),
            }
        };
        let re = |key: &str| -> Result<Option<Regex>, ConfigError> {
            match kill(key) {
                Some((s, v)) => self.regex(s, key, v),
                None => Ok(None),
            }
        };
        let mode = match kill("k_mode") {
            None => KillMode::Connection,
            Some((s, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "connection" => KillMode::Connection,
                "query" => KillMode::Query,
                other => {
                    return Err(self.err(
                        s,
                        "k_mode",
                        format!("`{other}` is not connection or query"),
                    ))
                }
            },
        };
        let kill_cmd = match kill("k_kill_cmd") {
            None => KillCmd::Kill,
            Some((s, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "kill" => KillCmd::Kill,
                "rds" => KillCmd::Rds,
                other => {
                    return Err(self.err(s, "k_kill_cmd", format!("`{other}` is not kill or rds")))
                }
            },
        };
        let mut fields = FieldFilters::default();
        for (key, kind, column) in FIELD_KEYS {
            fields.set(*kind, *column, re(key)?);
        }
        let group_by = match kill("k_group_by") {
            None => GroupBy::None,
            Some((s, v)) => GroupBy::parse(v).ok_or_else(|| {
                self.err(
                    s,
                    "k_group_by",
                    format!("`{}` is not none, fingerprint or info", v.trim()),
                )
            })?,
        };
        let victims = match kill("k_victims") {
            None => Pick::All,
            Some((s, v)) => Pick::parse(v).ok_or_else(|| {
                self.err(
                    s,
                    "k_victims",
                    format!("`{}` is not all, oldest or all-but-oldest", v.trim()),
                )
            })?,
        };
        let classes = ClassRules {
            group_by,
            query_count: num("k_query_count", 0)?,
            any_busy_time: num("k_any_busy_time", 0)?,
            each_busy_time: num("k_each_busy_time", 0)?,
            victims,
        };
        let rules = Rules {
            users,
            longtime: num("k_longtime", 10)?,
            sleep: num("k_sleep", 0)?,
            lock: num("k_lock", 0)?,
            exclude: re("k_exclude")?,
            include: re("k_include")?,
            mode,
            kill_cmd,
            killed_report: num("k_killed_report", 10)?,
            fields,
            classes,
        };
        Ok(Instance {
            dbid: dbid.to_string(),
            host: host.to_string(),
            port,
            puser,
            dry_run,
            window,
            rules,
            k_user_text,
        })
    }

    fn window(&self, section: &str, value: &str) -> Result<TimeWindow, ConfigError> {
        parse_window(value).ok_or_else(|| {
            self.err(
                section,
                "run_time_window",
                format!("`{value}` is not HH:MM-HH:MM (e.g. 08:00-22:00)"),
            )
        })
    }
}

/// The accepted values of a numeric key (README "Numeric settings", and
/// mysqk.ini.example). The bounds keep every derived time (`check_interval *
/// ping_multi`, a deadline `now + read_timeout`, a limit in milliseconds)
/// far from overflowing, so a number in range can never panic later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
    pub unit: &'static str,
}

/// A year, the longest a time-based rule may ask a thread to have run.
const YEAR: u64 = 365 * 24 * 3600;

/// Every numeric key and its range.
pub const RANGES: &[(&str, Range)] = &[
    (
        "check_interval",
        Range {
            min: 1,
            max: 86_400,
            unit: "seconds",
        },
    ),
    (
        "ping_multi",
        Range {
            min: 1,
            max: 1_000,
            unit: "intervals",
        },
    ),
    (
        "connect_timeout",
        Range {
            min: 1,
            max: 3_600,
            unit: "seconds",
        },
    ),
    (
        "read_timeout",
        Range {
            min: 1,
            max: 3_600,
            unit: "seconds",
        },
    ),
    (
        "hook_timeout",
        Range {
            min: 1,
            max: 3_600,
            unit: "seconds",
        },
    ),
    (
        "mail_interval",
        Range {
            min: 0,
            max: 86_400,
            unit: "seconds",
        },
    ),
    (
        "run_max_count",
        Range {
            min: 0,
            max: u32::MAX as u64,
            unit: "passes",
        },
    ),
    (
        "k_longtime",
        Range {
            min: 0,
            max: YEAR,
            unit: "seconds",
        },
    ),
    (
        "k_sleep",
        Range {
            min: 0,
            max: YEAR,
            unit: "seconds",
        },
    ),
    (
        "k_lock",
        Range {
            min: 0,
            max: YEAR,
            unit: "seconds",
        },
    ),
    (
        "k_any_busy_time",
        Range {
            min: 0,
            max: YEAR,
            unit: "seconds",
        },
    ),
    (
        "k_each_busy_time",
        Range {
            min: 0,
            max: YEAR,
            unit: "seconds",
        },
    ),
    (
        "k_killed_report",
        Range {
            min: 0,
            max: 86_400,
            unit: "seconds",
        },
    ),
    (
        "k_query_count",
        Range {
            min: 0,
            max: 1_000_000,
            unit: "threads",
        },
    ),
    (
        "snapshot_keep_days",
        Range {
            min: 0,
            max: 36_500,
            unit: "days",
        },
    ),
    (
        "snapshot_max_mb",
        Range {
            min: 0,
            max: 16_777_216,
            unit: "MB",
        },
    ),
    (
        "mail_port",
        Range {
            min: 1,
            max: 65_535,
            unit: "",
        },
    ),
];

/// The range of a numeric key (any whole number for a key not listed).
pub fn range_of(key: &str) -> Range {
    RANGES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, r)| *r)
        .unwrap_or(Range {
            min: 0,
            max: u64::MAX,
            unit: "",
        })
}

/// `08:00-22:00` -> window; `None` when malformed.
pub fn parse_window(value: &str) -> Option<TimeWindow> {
    let (a, b) = value.trim().split_once('-')?;
    let t = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").ok();
    Some(TimeWindow {
        start: t(a)?,
        end: t(b)?,
    })
}

fn first_line(s: &str) -> String {
    // regex errors are multi-line with a caret diagram; keep the summary line.
    s.lines()
        .rev()
        .find(|l| l.trim_start().starts_with("error:"))
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// The effective rules of every instance, as `check-config` prints them.
pub fn describe(cfg: &Config) -> String {
    let mut out = String::new();
    let st = &cfg.settings;
    out.push_str(&format!("config: {}\n", cfg.path.display()));
    out.push_str(&format!(
        "settings: check_interval={}s ping_multi={} connect_timeout={}s read_timeout={}s snapshot_dir={} snapshot_keep_days={} snapshot_max_mb={} run_max_count={}\n",
        st.check_interval.as_secs(),
        st.ping_multi,
        st.connect_timeout.as_secs(),
        st.read_timeout.as_secs(),
        st.snapshot_dir.display(),
        st.snapshot_keep_days,
        st.snapshot_max_mb,
        cfg.run_max_count
    ));
    // Where this config makes mysqk write, as absolute paths: a relative
    // path depends on the directory cron or systemd starts it in.
    let shown = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    out.push_str(&format!(
        "paths: log={} status={} lock={} snapshots={}\n",
        st.log_file
            .as_deref()
            .map(shown)
            .unwrap_or_else(|| "stderr".into()),
        shown(&st.status_file),
        shown(&st.lock_file),
        shown(&st.snapshot_dir),
    ));
    let users: Vec<&str> = cfg.auth.iter().map(|a| a.user.as_str()).collect();
    out.push_str(&format!("db_auth users: {}\n", users.join(", ")));
    out.push_str(&format!(
        "mail: {}\n",
        if cfg.mail.enabled() {
            let m = &cfg.mail;
            // Never the password itself: only whether one is set.
            format!(
                "to {} via {}:{} tls={}{} login={} interval={}s",
                m.receivers.join(", "),
                m.host.as_deref().unwrap_or("-"),
                m.port
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| if m.tls == MailTls::Tls { "465" } else { "25" }.into()),
                match m.tls {
                    MailTls::Opportunistic => "starttls-if-offered",
                    MailTls::StartTls => "starttls",
                    MailTls::Tls => "tls",
                    MailTls::None => "none",
                },
                m.ca_file
                    .as_ref()
                    .map(|p| format!(" ca_file={}", p.display()))
                    .unwrap_or_default(),
                match (&m.user, m.pass.as_ref().is_some_and(|p| !p.is_empty())) {
                    (Some(u), true) => format!("{u} (password set)"),
                    (Some(u), false) => format!("{u} (no password)"),
                    (None, _) => "none".into(),
                },
                m.interval.as_secs()
            )
        } else {
            "off".into()
        }
    ));
    for i in &cfg.instances {
        let r = &i.rules;
        let users = r.users.describe();
        let re = |r: &Option<Regex>| {
            r.as_ref()
                .map(|r| format!("/{}/", r.as_str()))
                .unwrap_or_else(|| "-".into())
        };
        out.push_str(&format!(
            "[{}] {} puser={} dry_run={} window={}\n  k_user={} ({}) k_longtime={} k_sleep={} k_lock={} k_include={} k_exclude={} k_mode={:?} k_kill_cmd={:?}\n",
            i.dbid,
            i.addr(),
            i.puser,
            if i.dry_run { 1 } else { 0 },
            i.window.map(|w| w.to_string()).unwrap_or_else(|| "always".into()),
            i.k_user_text,
            users,
            r.longtime,
            r.sleep,
            r.lock,
            re(&r.include),
            re(&r.exclude),
            r.mode,
            r.kill_cmd,
        ));
        out.push_str(&format!(
            "  filters: {}
  classes: {}
",
            r.fields.describe(),
            r.classes.describe()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.ini"), text, None)
    }

    const ORIGINAL: &str = r"
[mail_config]
mail_host=smtp.exmail.qq.com
mail_user=xxx@ecqun.com
mail_pass=xxxxxx

mail_receiver=

[db_info]
crm0=192.168.1.125:3306
crm1=192.168.1.126:3306
base=10.0.200.142:3306

[db_auth]
ecuser=pw1
app1=pw2

[db_commconfig]
db_puser=ecuser

; how many kill times once this config file changed
run_max_count=999
dry_run=1
run_time_window=08:00-22:00

[db_commkill]
k_user=all
k_longtime=10   ; seconds
k_lock=1
k_sleep=0
k_exclude=Binlog|ecdba|Daemon
k_include=select sleep\(17\)

[id_crm0]
; k_user: who's threads to be killed. use comma to separate
k_user=app1
k_longtime=20
dry_run=0

[id_crm1]
";

    #[test]
    fn original_file_loads() {
        let c = parse(ORIGINAL).unwrap();
        assert_eq!(c.instances.len(), 3);
        assert_eq!(c.run_max_count, 999);
        let crm0 = c.instance("crm0").unwrap();
        assert_eq!(crm0.rules.longtime, 20);
        assert!(!crm0.dry_run);
        assert!(crm0.rules.users.contains("app1"));
        assert!(!crm0.rules.users.contains("ecuser"));
        let crm1 = c.instance("crm1").unwrap();
        assert_eq!(crm1.rules.longtime, 10, "inline comment stripped");
        assert!(crm1.dry_run);
        assert!(crm1.rules.users.contains("ecuser") && crm1.rules.users.contains("app1"));
        assert_eq!(
            crm1.rules.include.as_ref().unwrap().as_str(),
            r"select sleep\(17\)"
        );
        assert_eq!(crm1.window.unwrap().to_string(), "08:00-22:00");
        assert!(!c.mail.enabled());
        assert_eq!(crm1.port, 3306);
    }

    #[test]
    fn shipped_example_loads() {
        // The example carries placeholders for encrypted values; plain ones load with a warning.
        let text = include_str!("../../mysqk.ini.example").replace("enc:v1:REPLACE_ME", "pw");
        let c = parse(&text).unwrap();
        assert_eq!(c.instances.len(), 2);
        assert!(c.instance("crm0").unwrap().rules.users.contains("app1"));
        assert!(
            c.warnings.iter().all(|w| !w.contains("unknown key")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn comconfig_alias() {
        let c = parse(&ORIGINAL.replace("[db_commconfig]", "[db_comconfig]")).unwrap();
        assert_eq!(c.instances[0].puser, "ecuser");
    }

    #[test]
    fn bad_regex_is_located() {
        let e = parse(&ORIGINAL.replace(r"k_exclude=Binlog|ecdba|Daemon", "k_exclude=Binlog|("))
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("t.ini:"), "{msg}");
        assert!(
            msg.contains("[db_commkill] k_exclude: invalid regex `Binlog|(`"),
            "{msg}"
        );
        assert_eq!(e.line, Some(31));
    }

    #[test]
    fn puser_must_be_in_auth() {
        let e = parse(&ORIGINAL.replace("db_puser=ecuser", "db_puser=nobody")).unwrap_err();
        assert!(
            e.to_string()
                .contains("[db_commconfig] db_puser: `nobody` is not in [db_auth]"),
            "{e}"
        );
    }

    #[test]
    fn port_required() {
        let e =
            parse(&ORIGINAL.replace("base=10.0.200.142:3306", "base=10.0.200.142")).unwrap_err();
        assert!(e.to_string().contains("[db_info] base:"), "{e}");
    }

    #[test]
    fn bad_numbers_and_windows() {
        let e = parse(&ORIGINAL.replace("k_sleep=0", "k_sleep=ten")).unwrap_err();
        assert!(
            e.to_string().contains("[db_commkill] k_sleep: `ten`"),
            "{e}"
        );
        let e = parse(&ORIGINAL.replace("08:00-22:00", "8-22")).unwrap_err();
        assert!(e.to_string().contains("run_time_window"), "{e}");
        let e = parse("[db_info]\nx 1.2.3.4\n").unwrap_err();
        assert!(e.to_string().contains("t.ini:2"), "{e}");
        let e = parse("[db_info\n").unwrap_err();
        assert!(e.to_string().contains("malformed section header"), "{e}");
    }

    #[test]
    fn hash_inside_regex_is_kept() {
        let c = parse(&ORIGINAL.replace(
            "k_exclude=Binlog|ecdba|Daemon",
            "k_exclude=a#b|c;d  # comment",
        ))
        .unwrap();
        assert_eq!(
            c.instances[1].rules.exclude.as_ref().unwrap().as_str(),
            "a#b|c;d"
        );
    }

    #[test]
    fn user_names_keep_case() {
        let c = parse(
            &ORIGINAL
                .replace("app1=pw2", "App1=pw2")
                .replace("k_user=app1", "k_user=App1"),
        )
        .unwrap();
        assert!(c.password("App1").is_some());
        assert!(c.instance("crm0").unwrap().rules.users.contains("App1"));
    }

    #[test]
    fn windows_cross_midnight() {
        let w = parse_window("22:00-06:00").unwrap();
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(
            w.contains(t(23, 0))
                && w.contains(t(5, 59))
                && !w.contains(t(6, 0))
                && !w.contains(t(12, 0))
        );
        let w = parse_window("08:00-22:00").unwrap();
        assert!(w.contains(t(8, 0)) && !w.contains(t(22, 0)) && !w.contains(t(7, 59)));
    }

    #[test]
    fn pt_kill_keys_parse_layer_and_are_known() {
        use crate::core::filters::{Column, Kind};
        let text = ORIGINAL.replace(
            "k_include=select sleep\\(17\\)",
            "k_include=select sleep\\(17\\)\nk_match_command=^(Query|Execute)$\nk_ignore_user=^bi_\n\
             k_ignore_host=^10\\.9\\.\nk_group_by=fingerprint\nk_query_count=10\nk_any_busy_time=5\n\
             k_victims=all-but-oldest",
        ) + "k_match_db=^crm\nk_match_command=\nk_group_by=none\nk_each_busy_time=3\n";
        let c = parse(&text).unwrap();
        assert!(
            c.warnings.iter().all(|w| !w.contains("unknown key")),
            "{:?}",
            c.warnings
        );
        // [id_crm1] (last section) adds k_match_db, clears k_match_command, regroups.
        let crm1 = &c.instance("crm1").unwrap().rules;
        assert!(crm1.fields.get(Kind::Match, Column::Command).is_none());
        let re = |k, c| crm1.fields.get(k, c).map(|r| r.as_str().to_string());
        assert_eq!(re(Kind::Match, Column::Db).as_deref(), Some("^crm"));
        assert_eq!(re(Kind::Ignore, Column::User).as_deref(), Some("^bi_"));
        assert_eq!(crm1.classes.group_by, GroupBy::None);
        assert_eq!(crm1.classes.each_busy_time, 3);
        assert_eq!(crm1.classes.query_count, 10);
        let crm0 = &c.instance("crm0").unwrap().rules;
        let cmd = crm0.fields.get(Kind::Match, Column::Command);
        assert_eq!(cmd.map(|r| r.as_str()), Some("^(Query|Execute)$"));
        assert_eq!(crm0.classes.group_by, GroupBy::Fingerprint);
        assert_eq!(crm0.classes.victims, Pick::AllButOldest);
        assert_eq!(crm0.classes.any_busy_time, 5);
        let d = describe(&c);
        assert!(d.contains("k_match_command=/^(Query|Execute)$/"), "{d}");
        assert!(d.contains("k_group_by=fingerprint k_query_count=10 k_any_busy_time=5 k_each_busy_time=0 k_victims=all-but-oldest"), "{d}");
    }

    #[test]
    fn pt_kill_keys_bad_values_are_located() {
        let with = |line: &str| {
            parse(&ORIGINAL.replace("k_sleep=0", &format!("k_sleep=0\n{line}")))
                .unwrap_err()
                .to_string()
        };
        let e = with("k_match_info=(");
        let want = "t.ini:31: [db_commkill] k_match_info: invalid regex `(`";
        assert!(e.contains(want), "{e}");
        let e = with("k_ignore_user=[");
        let want = "[db_commkill] k_ignore_user: invalid regex";
        assert!(e.contains(want), "{e}");
        let e = with("k_group_by=user");
        let want = "k_group_by: `user` is not none, fingerprint or info";
        assert!(e.contains(want), "{e}");
        let e = with("k_victims=newest");
        let want = "k_victims: `newest` is not all, oldest or all-but-oldest";
        assert!(e.contains(want), "{e}");
        let e = with("k_query_count=many");
        assert!(e.contains("[db_commkill] k_query_count: `many`"), "{e}");
        let e = with("k_each_busy_time=-1");
        assert!(e.contains("k_each_busy_time: `-1`"), "{e}");
    }

    #[test]
    fn plain_passwords_warn_once_each() {
        let c = parse(ORIGINAL).unwrap();
        let n = c
            .warnings
            .iter()
            .filter(|w| w.contains("plain-text password"))
            .count();
        assert_eq!(n, 3, "{:?}", c.warnings);
        assert!(c
            .warnings
            .iter()
            .all(|w| !w.contains("pw1") && !w.contains("xxxxxx")));
    }

    /// ORIGINAL with `app1` and `mail_pass` encrypted under `key`.
    fn encrypted(key: &Key) -> String {
        ORIGINAL
            .replace("app1=pw2", &format!("app1={}", crypto::encrypt(key, "pw2")))
            .replace(
                "mail_pass=xxxxxx",
                &format!("mail_pass={}", crypto::encrypt(key, "mail-secret")),
            )
    }

    #[test]
    fn encrypted_values_decrypt_with_the_right_key() {
        let k = Key::from_bytes([7; 32]);
        let c = Config::parse(Path::new("t.ini"), &encrypted(&k), Some(&k.to_hex())).unwrap();
        assert_eq!(c.password("app1").unwrap().expose(), "pw2");
        assert_eq!(c.mail.pass.as_ref().unwrap().expose(), "mail-secret");
        // Only the one remaining plain value warns.
        let plain: Vec<&String> = c
            .warnings
            .iter()
            .filter(|w| w.contains("plain-text password"))
            .collect();
        assert_eq!(plain.len(), 1, "{plain:?}");
        assert!(plain[0].contains("[db_auth] ecuser"), "{plain:?}");
    }

    #[test]
    fn key_problems_each_have_their_own_message() {
        let k = Key::from_bytes([7; 32]);
        let other = Key::from_bytes([8; 32]);
        let text = encrypted(&k);
        let e = Config::parse(Path::new("t.ini"), &text, Some(&other.to_hex()))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.ini:16: [db_auth] app1: wrong key: "),
            "{e}"
        );
        assert!(e.contains(&k.id()) && e.contains(&other.id()), "{e}");
        assert!(e.contains("environment variable MYSQK_KEY"), "{e}");

        let e = Config::parse(Path::new("t.ini"), &text, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.ini:16: [db_auth] app1: encrypted password but no key: set MYSQK_KEY"),
            "{e}"
        );

        let value = crypto::encrypt(&k, "pw2");
        let body = value.strip_prefix("enc:v1:").unwrap();
        let flip = if body.starts_with('A') { "B" } else { "A" };
        let tampered = format!("enc:v1:{flip}{}", &body[1..]);
        let e = Config::parse(
            Path::new("t.ini"),
            &ORIGINAL.replace("app1=pw2", &format!("app1={tampered}")),
            Some(&k.to_hex()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.ini:16: [db_auth] app1: encrypted value was modified"),
            "{e}"
        );

        let truncated = &value[..value.len() - 8];
        let e = Config::parse(
            Path::new("t.ini"),
            &ORIGINAL.replace("app1=pw2", &format!("app1={truncated}")),
            Some(&k.to_hex()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.ini:16: [db_auth] app1: corrupt encrypted value"),
            "{e}"
        );

        let e = Config::parse(Path::new("t.ini"), &text, Some("not-a-key"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[db_auth] app1: cannot load the key: invalid key in environment variable MYSQK_KEY"),
            "{e}"
        );
        assert!(!e.contains("not-a-key"), "{e}");
    }

    #[test]
    fn bad_mail_addresses_are_config_errors() {
        let with = |line: &str| {
            parse(&ORIGINAL.replace("mail_receiver=", line))
                .unwrap_err()
                .to_string()
        };
        let e = with("mail_receiver=dba@example.com, not an address");
        assert!(
            e.contains("[mail_config] mail_receiver: `not an address` is not a mail address"),
            "{e}"
        );
        let e = with("mail_receiver=dba@example.com\nmail_from=@@");
        assert!(e.contains("[mail_config] mail_from: `@@`"), "{e}");
        let c = parse(&ORIGINAL.replace(
            "mail_receiver=",
            "mail_receiver=DBA <dba@example.com>; ops@example.com\nmail_tls=tls",
        ))
        .unwrap();
        assert_eq!(c.mail.receivers.len(), 2);
        let d = describe(&c);
        assert!(
            d.contains("mail: to DBA <dba@example.com>, ops@example.com via smtp.exmail.qq.com:465 tls=tls login=xxx@ecqun.com (password set) interval=60s"),
            "{d}"
        );
        assert!(!d.contains("xxxxxx"), "{d}");
    }

    #[test]
    fn mail_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let with = |path: &Path| {
            parse(&ORIGINAL.replace(
                "mail_receiver=",
                &format!(
                    "mail_receiver=dba@example.com\nmail_ca_file={}",
                    path.display()
                ),
            ))
        };
        let missing = dir.path().join("missing.pem");
        let e = with(&missing).unwrap_err().to_string();
        assert!(
            e.contains("[mail_config] mail_ca_file: cannot read") && e.contains("missing.pem"),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = with(&empty).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");

        // Any well-formed PEM certificate block passes the load-time check;
        // whether it is the right CA shows at the TLS handshake.
        let der = b"\x30\x03\x02\x01\x01";
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der)
            ),
        )
        .expect("write");
        let c = with(&pem).expect("loads");
        assert_eq!(c.mail.ca_file.as_deref(), Some(pem.as_path()));
        let d = describe(&c);
        assert!(
            d.contains(&format!(
                "tls=starttls-if-offered ca_file={}",
                pem.display()
            )),
            "{d}"
        );
    }

    #[test]
    fn unknown_sections_are_errors_with_a_suggestion() {
        let e = parse(&ORIGINAL.replace("[db_commkill]", "[db_commkil]")).unwrap_err();
        assert_eq!(e.line, Some(26), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("t.ini:26: [db_commkil]: unknown section"),
            "{msg}"
        );
        assert!(msg.contains("did you mean [db_commkill]?"), "{msg}");

        let e = parse(&ORIGINAL.replace("[id_crm0]", "[id_crm00]")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("[id_crm00]: unknown section: `crm00` is not in [db_info]"),
            "{msg}"
        );
        assert!(msg.contains("did you mean [id_crm0]?"), "{msg}");

        let e = parse(&format!("{ORIGINAL}\n[nonsense_here]\nx=1\n")).unwrap_err();
        assert!(e.to_string().contains("mysqk reads [mail_config]"), "{e}");
        // The documented alias and any case are sections mysqk reads.
        parse(
            &ORIGINAL
                .replace("[db_commconfig]", "[db_comconfig]")
                .replace("[id_crm0]", "[ID_CRM0]"),
        )
        .unwrap();
    }

    #[test]
    fn a_bom_is_accepted_and_other_encodings_are_located() {
        let c = parse(&format!("\u{feff}{ORIGINAL}")).unwrap();
        assert_eq!(c.instances.len(), 3);
        assert_eq!(
            decode_text(b"\xEF\xBB\xBF[db_info]\n").unwrap(),
            "[db_info]\n"
        );
        // "; 注释" in GBK on line 3.
        let gbk = b"[db_info]\nx=1.2.3.4:3306\n; \xd7\xa2\xca\xcd\n";
        assert_eq!(decode_text(gbk), Err(3));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gbk.ini");
        std::fs::write(&path, gbk).unwrap();
        let e = read_text(&path).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("iconv -f GBK -t UTF-8"), "{e}");
    }

    #[test]
    fn malformed_secret_lines_are_not_echoed() {
        for (from, to) in [
            ("app1=pw2", "app1 TypoPw_S3cr3t!"),
            ("mail_pass=xxxxxx", "mail_pass TypoPw_S3cr3t!"),
        ] {
            let e = parse(&ORIGINAL.replace(from, to)).unwrap_err();
            let msg = e.to_string();
            assert!(!msg.contains("TypoPw"), "{msg}");
            assert!(msg.contains("has no `=`"), "{msg}");
            assert!(e.line.is_some(), "{msg}");
        }
        let e = parse(&format!("app1=TypoPw_S3cr3t!\n{ORIGINAL}")).unwrap_err();
        assert!(!e.to_string().contains("TypoPw"), "{e}");
        assert!(
            e.to_string()
                .contains("t.ini:1: `app1=…` is outside any [section]"),
            "{e}"
        );
        // A secret key's line under another section, and a line with no key.
        for (from, to) in [
            ("k_sleep=0", "mail_pass TypoPw_S3cr3t!"),
            ("k_sleep=0", "=TypoPw_S3cr3t!"),
            ("app1=pw2", "=TypoPw_S3cr3t!"),
        ] {
            let e = parse(&ORIGINAL.replace(from, to)).unwrap_err();
            assert!(!e.to_string().contains("TypoPw"), "{to}: {e}");
            assert!(e.line.is_some(), "{to}: {e}");
        }
        // Elsewhere the text helps and is shown.
        let e = parse(&ORIGINAL.replace("k_sleep=0", "k_sleep 0")).unwrap_err();
        assert!(e.to_string().contains("found `k_sleep 0`"), "{e}");
    }

    #[test]
    fn k_user_outside_db_auth_warns_and_paths_are_shown() {
        let c = parse(&ORIGINAL.replace("k_user=app1", "k_user=app1,app9")).unwrap();
        let w: Vec<&String> = c.warnings.iter().filter(|w| w.contains("app9")).collect();
        assert_eq!(w.len(), 1, "{:?}", c.warnings);
        assert!(
            w[0].contains("[id_crm0] k_user: `app9` is not in [db_auth]"),
            "{w:?}"
        );
        let d = describe(&c);
        let cwd = std::env::current_dir().unwrap();
        assert!(
            d.contains(&format!(
                "paths: log=stderr status={0}/snapshots/mysqk.status lock={0}/snapshots/mysqk.lock snapshots={0}/snapshots",
                cwd.display()
            )),
            "{d}"
        );
    }
}

#[cfg(test)]
mod range_tests {
    use super::*;

    fn with(line: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[settings]\n{}\n[db_info]\na=127.0.0.1:3306\n[db_auth]\nmon=pw\n[db_commconfig]\ndb_puser=mon\n[db_commkill]\n{}\n",
            if line.starts_with("k_") { "" } else { line },
            if line.starts_with("k_") { line } else { "" },
        );
        Config::parse(Path::new("t.ini"), &text, None)
    }

    #[test]
    fn every_numeric_key_rejects_values_out_of_its_range_naming_the_line() {
        for (key, r) in RANGES {
            if matches!(*key, "run_max_count" | "mail_interval" | "mail_port") {
                continue; // other sections, below
            }
            let e = with(&format!("{key}=18446744073709551615")).expect_err(key);
            assert!(e.to_string().contains("out of range"), "{key}: {e}");
            assert!(e.line.is_some(), "{key}: {e}");
            assert!(with(&format!("{key}={}", r.max)).is_ok(), "{key} max");
            if r.min > 0 {
                assert!(with(&format!("{key}={}", r.min - 1)).is_err(), "{key} min");
            }
            assert!(with(&format!("{key}=-1")).is_err(), "{key} negative");
        }
        let e = Config::parse(
            Path::new("t.ini"),
            "[db_info]\n[db_auth]\n[db_commconfig]\nrun_max_count=4294967296\n",
            None,
        )
        .expect_err("run_max_count");
        assert_eq!(e.line, Some(4), "{e}");
        for bad in [
            "mail_port=0",
            "mail_port=65536",
            "mail_interval=86401",
            "mail_host=h:0",
        ] {
            let e = Config::parse(
                Path::new("t.ini"),
                &format!("[mail_config]\n{bad}\n[db_info]\n[db_auth]\n[db_commconfig]\n"),
                None,
            )
            .expect_err(bad);
            assert!(e.to_string().contains("out of range"), "{bad}: {e}");
            assert_eq!(e.line, Some(2), "{e}");
        }
    }

    /// README "Numeric settings" lists every key with the range enforced here.
    #[test]
    fn the_readme_documents_every_range() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        for (key, r) in RANGES {
            let row =
                format!("| `{key}` | {}..={} {} |", r.min, r.max, r.unit).replace("  |", " |");
            assert!(readme.contains(&row), "README lacks `{row}`");
        }
    }
}
