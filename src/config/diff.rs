//! What a reload changed, in words, for the one line `watch` logs about it:
//! `crm0: k_longtime 10 -> 3, dry_run 1 -> 0; check_interval 5s -> 1s;
//! [db_auth] +app2`. Pure: two configs in, text out. Passwords never appear,
//! only that one changed.

use regex::Regex;

use crate::config::{Config, Instance};
use crate::core::matcher::UserFilter;

/// The longest value shown; a long regex is cut, the change still shows.
const MAX_VALUE: usize = 60;

fn cut(v: String) -> String {
    if v.chars().count() <= MAX_VALUE {
        v
    } else {
        v.chars().take(MAX_VALUE).collect::<String>() + "…"
    }
}

fn re(r: &Option<Regex>) -> String {
    r.as_ref()
        .map(|r| format!("/{}/", r.as_str()))
        .unwrap_or_else(|| "-".into())
}

/// Every setting of an instance that a reload can change, as (key, value).
fn instance_keys(i: &Instance) -> Vec<(&'static str, String)> {
    let r = &i.rules;
    let users = match &r.users {
        UserFilter::Nobody => "none".to_string(),
        UserFilter::Users(set) => set.iter().cloned().collect::<Vec<_>>().join(","),
        UserFilter::Matching(p) => format!("/{}/", p.0.as_str()),
    };
    vec![
        ("db_puser", i.puser.clone()),
        ("dry_run", u8::from(i.dry_run).to_string()),
        (
            "run_time_window",
            i.window
                .map(|w| w.to_string())
                .unwrap_or_else(|| "always".into()),
        ),
        ("k_user", users),
        ("k_longtime", r.longtime.to_string()),
        ("k_sleep", r.sleep.to_string()),
        ("k_lock", r.lock.to_string()),
        ("k_include", re(&r.include)),
        ("k_exclude", re(&r.exclude)),
        ("k_mode", format!("{:?}", r.mode).to_lowercase()),
        ("k_kill_cmd", format!("{:?}", r.kill_cmd).to_lowercase()),
        ("k_killed_report", r.killed_report.to_string()),
        ("filters", r.fields.describe()),
        ("classes", r.classes.describe()),
    ]
}

fn settings_keys(c: &Config) -> Vec<(&'static str, String)> {
    let s = &c.settings;
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into())
    };
    vec![
        ("run_max_count", c.run_max_count.to_string()),
        ("check_interval", format!("{}s", s.check_interval.as_secs())),
        ("ping_multi", s.ping_multi.to_string()),
        (
            "connect_timeout",
            format!("{}s", s.connect_timeout.as_secs()),
        ),
        ("read_timeout", format!("{}s", s.read_timeout.as_secs())),
        ("snapshot_dir", s.snapshot_dir.display().to_string()),
        ("log_file", path(&s.log_file)),
        ("key_file", path(&s.key_file)),
        ("status_file", s.status_file.display().to_string()),
        ("lock_file", s.lock_file.display().to_string()),
        ("hook_timeout", format!("{}s", s.hook_timeout.as_secs())),
        ("log_utc", u8::from(s.log_utc).to_string()),
    ]
}

fn changed(old: &[(&'static str, String)], new: &[(&'static str, String)]) -> Vec<String> {
    old.iter()
        .zip(new)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((k, a), (_, b))| format!("{k} {} -> {}", cut(a.clone()), cut(b.clone())))
        .collect()
}

/// The changes from `old` to `new`, one item per instance or area; empty
/// when nothing that takes effect changed (a comment, the order of lines).
/// Instances added or removed are the caller's to say (it starts and stops them).
pub fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for ni in &new.instances {
        let Some(oi) = old.instance(&ni.dbid) else {
            continue;
        };
        let mut items = Vec::new();
        if oi.addr() != ni.addr() {
            items.push(format!("address {} -> {}", oi.addr(), ni.addr()));
        }
        items.extend(changed(&instance_keys(oi), &instance_keys(ni)));
        if !items.is_empty() {
            out.push(format!("{}: {}", ni.dbid, items.join(", ")));
        }
    }
    out.extend(changed(&settings_keys(old), &settings_keys(new)));
    if old.settings.on_kill_command != new.settings.on_kill_command {
        // A command line may hold a token: say that it changed, not what to.
        out.push("on_kill_command changed".into());
    }
    let mut auth = Vec::new();
    for a in &new.auth {
        match old.auth.iter().find(|o| o.user == a.user) {
            None => auth.push(format!("+{}", a.user)),
            Some(o) if o.password.expose() != a.password.expose() => {
                auth.push(format!("{} password changed", a.user))
            }
            Some(_) => {}
        }
    }
    for o in &old.auth {
        if !new.auth.iter().any(|a| a.user == o.user) {
            auth.push(format!("-{}", o.user));
        }
    }
    if !auth.is_empty() {
        out.push(format!("[db_auth] {}", auth.join(", ")));
    }
    match (old.mail.enabled(), new.mail.enabled()) {
        (false, true) => out.push("mail on".into()),
        (true, false) => out.push("mail off".into()),
        (true, true)
            if format!("{:?}", old.mail) != format!("{:?}", new.mail)
                || old.mail.pass.as_ref().map(|p| p.expose())
                    != new.mail.pass.as_ref().map(|p| p.expose()) =>
        {
            out.push("mail settings changed".into())
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(extra_commkill: &str, extra: &str) -> Config {
        let text = format!(
            "[db_info]\ncrm0=10.0.0.1:3306\ncrm1=10.0.0.2:3306\n\
             [db_auth]\nmon=pw1\napp1=pw2\n{extra}\n\
             [db_commconfig]\ndb_puser=mon\nrun_max_count=999\ndry_run=1\n\
             [db_commkill]\nk_user=app1\nk_longtime=10\n{extra_commkill}\n"
        );
        Config::parse(Path::new("t.ini"), &text, None).unwrap()
    }

    #[test]
    fn names_what_changed_and_nothing_else() {
        let old = cfg("", "");
        assert!(changes(&old, &cfg("", "")).is_empty());
        let new = cfg("k_include=select sleep\n", "");
        assert_eq!(
            changes(&old, &new),
            vec![
                "crm0: k_include - -> /select sleep/",
                "crm1: k_include - -> /select sleep/"
            ]
        );
        let text =
            "[db_info]\ncrm0=10.0.0.1:3306\n[db_auth]\nmon=pw1\napp1=changed-secret\napp2=pw3\n\
                    [db_commconfig]\ndb_puser=mon\nrun_max_count=999\ndry_run=1\n\
                    [db_commkill]\nk_user=app1\nk_longtime=3\n[id_crm0]\ndry_run=0\n\
                    [settings]\ncheck_interval=1\n";
        let new = Config::parse(Path::new("t.ini"), text, None).unwrap();
        let c = changes(&old, &new);
        assert_eq!(
            c,
            vec![
                "crm0: dry_run 1 -> 0, k_longtime 10 -> 3",
                "check_interval 5s -> 1s",
                "[db_auth] app1 password changed, +app2",
            ]
        );
        assert!(!c.concat().contains("changed-secret") && !c.concat().contains("pw2"));
    }
}
