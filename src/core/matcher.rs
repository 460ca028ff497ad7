//! Which threads are victims: pure code over processlist rows and rules.
//!
//! No I/O happens here, so every rule (and above all the never-kill list) can be
//! tested exhaustively. The shell reads rows from a server or a dump, calls
//! [`select_victims`], and acts on what comes back.

use std::collections::{BTreeSet, HashMap, HashSet};

use regex::Regex;
use serde::Serialize;

use crate::core::classes::ClassRules;
use crate::core::filters::FieldFilters;
use crate::core::pileup;
use crate::core::row::ProcRow;
pub use crate::core::victim::{Reason, Victim};

/// Whose threads may be killed (`k_user`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UserFilter {
    /// `none`: nobody (the default).
    #[default]
    Nobody,
    /// A list, or `all` already expanded to the `[db_auth]` users.
    Users(BTreeSet<String>),
    /// Every user whose name matches (pt-kill's `--match-user`; `all`
    /// without an ini, where there is no `[db_auth]` to expand it to).
    Matching(UserPattern),
}

/// A user-name regex, compared by its text (so rules stay `Eq`).
#[derive(Debug, Clone)]
pub struct UserPattern(pub Regex);

impl PartialEq for UserPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for UserPattern {}

impl UserFilter {
    pub fn contains(&self, user: &str) -> bool {
        match self {
            UserFilter::Nobody => false,
            UserFilter::Users(set) => set.contains(user),
            UserFilter::Matching(p) => p.0.is_match(user),
        }
    }

    /// How `check-config` and notes show it: `none`, `a,b`, `/RE/`.
    pub fn describe(&self) -> String {
        match self {
            UserFilter::Nobody => "none".to_string(),
            UserFilter::Users(set) => set.iter().cloned().collect::<Vec<_>>().join(","),
            UserFilter::Matching(p) => format!("/{}/", p.0.as_str()),
        }
    }
}

/// How a victim is killed (`k_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KillMode {
    #[default]
    Connection,
    Query,
}

/// Which statement performs the kill (`k_kill_cmd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KillCmd {
    /// `KILL [QUERY|CONNECTION] id`
    #[default]
    Kill,
    /// `CALL mysql.rds_kill(id)` / `CALL mysql.rds_kill_query(id)` (cloud servers).
    Rds,
}

/// The resolved, validated kill rules of one instance.
#[derive(Debug, Clone)]
pub struct Rules {
    pub users: UserFilter,
    /// `k_longtime`: seconds; 0 = off.
    pub longtime: u64,
    /// `k_sleep`: seconds; 0 = never kill sleepers.
    pub sleep: u64,
    /// `k_lock`: seconds a lock wait must last before its blocker is a victim; 0 = off.
    pub lock: u64,
    pub exclude: Option<Regex>,
    pub include: Option<Regex>,
    pub mode: KillMode,
    pub kill_cmd: KillCmd,
    /// `k_killed_report`: seconds in `Command=Killed` before it is reported as stuck.
    pub killed_report: u64,
    /// `k_match_*` / `k_ignore_*`: per-column regexes that narrow the victims.
    pub fields: FieldFilters,
    /// `k_group_by`, `k_query_count`, `k_any_busy_time`, `k_each_busy_time`, `k_victims`.
    pub classes: ClassRules,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            users: UserFilter::Nobody,
            longtime: 10,
            sleep: 0,
            lock: 0,
            exclude: None,
            include: None,
            mode: KillMode::Connection,
            kill_cmd: KillCmd::Kill,
            killed_report: 10,
            fields: FieldFilters::default(),
            classes: ClassRules::default(),
        }
    }
}

/// One InnoDB lock wait: `waiting` has waited `wait_secs` for a lock `blocking` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockWait {
    pub waiting: u64,
    pub blocking: u64,
    pub wait_secs: u64,
}

/// Everything the matcher looks at for one pass on one instance.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub rows: Vec<ProcRow>,
    /// Connection ids of mysqk's own sessions on this instance.
    pub own_ids: HashSet<u64>,
    pub lock_waits: Vec<LockWait>,
}

/// Why a thread can never be a victim, whatever the config says (SPEC 2).
/// This is the one place the never-kill list lives.
pub fn protected(row: &ProcRow, own_ids: &HashSet<u64>) -> Option<&'static str> {
    let command = row.command.as_str();
    if own_ids.contains(&row.id) {
        Some("mysqk's own connection")
    } else if row.user == "system user" {
        Some("server system thread (replica IO/SQL or background)")
    } else if row.user == "event_scheduler" || command == "Daemon" {
        Some("event scheduler / daemon thread")
    } else if command.starts_with("Binlog Dump") {
        Some("replication: binlog dump to a replica")
    } else if command.starts_with("Slave_") || command == "Register Slave" {
        Some("replication: replica thread")
    } else if command == "Connect" {
        // A client still logging in (replication threads are `system user`
        // on MySQL, `Slave_*` on MariaDB). MySQL already shows the user name
        // the client claims, even one that does not exist.
        Some("logging in (Command=Connect)")
    } else if command == "Killed" {
        Some("already killed (verified, never killed twice)")
    } else {
        None
    }
}

/// The rules' verdict on a single row, lock waits aside.
fn row_reasons(row: &ProcRow, rules: &Rules) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let sleeping = row.command == "Sleep";
    // Never early: compared with the time the thread has certainly spent.
    let secs = row.secs_at_least();
    if !sleeping && rules.longtime > 0 && secs >= rules.longtime {
        reasons.push(Reason::LongRunning {
            secs: row.time,
            limit: rules.longtime,
        });
    }
    if sleeping && rules.sleep > 0 && secs >= rules.sleep {
        reasons.push(Reason::Sleeping {
            secs: row.time,
            limit: rules.sleep,
        });
    }
    if let Some(re) = &rules.include {
        if re.is_match(&row.row_text()) {
            reasons.push(Reason::Included {
                pattern: re.as_str().to_string(),
            });
        }
    }
    reasons
}

/// Lock blockers whose oldest wait has lasted at least `k_lock` seconds,
/// with the waiting thread ids.
fn lock_blockers(scan: &Scan, limit: u64) -> HashMap<u64, (Vec<u64>, u64)> {
    let mut out: HashMap<u64, (Vec<u64>, u64)> = HashMap::new();
    if limit == 0 {
        return out;
    }
    for w in scan.lock_waits.iter().filter(|w| w.wait_secs >= limit) {
        let entry = out.entry(w.blocking).or_default();
        if !entry.0.contains(&w.waiting) {
            entry.0.push(w.waiting);
        }
        entry.1 = entry.1.max(w.wait_secs);
    }
    out
}

/// Candidate = user in `k_user` AND not protected AND not excluded AND
/// passes every `k_match_*` / `k_ignore_*` AND (long-running OR long-sleeping
/// OR included OR lock-blocker). Victims = the candidates the class rules
/// keep ([`classes::apply`]; with the class keys at their defaults, all of them).
pub fn select_victims(scan: &Scan, rules: &Rules) -> Vec<Victim> {
    let blockers = lock_blockers(scan, rules.lock);
    let mut victims = Vec::new();
    for row in &scan.rows {
        if !rules.users.contains(&row.user) || protected(row, &scan.own_ids).is_some() {
            continue;
        }
        if rules
            .exclude
            .as_ref()
            .is_some_and(|re| re.is_match(&row.row_text()))
        {
            continue;
        }
        if rules.fields.rejects(row).is_some() {
            continue;
        }
        let mut reasons = Vec::new();
        if let Some((waiting, wait_secs)) = blockers.get(&row.id) {
            reasons.push(Reason::LockBlocker {
                waiting: waiting.clone(),
                wait_secs: *wait_secs,
                limit: rules.lock,
            });
        }
        reasons.extend(row_reasons(row, rules));
        if !reasons.is_empty() {
            victims.push(Victim {
                row: row.clone(),
                reasons,
            });
        }
    }
    pileup::apply(victims, &rules.classes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::classes::{GroupBy, Pick};
    use crate::core::filters::{Column, Kind};
    use proptest::prelude::*;

    fn row(id: u64, user: &str, command: &str, time: u64, info: Option<&str>) -> ProcRow {
        ProcRow {
            query_id: None,
            id,
            user: user.into(),
            host: "10.0.0.5:51000".into(),
            db: Some("crm".into()),
            command: command.into(),
            time,
            time_ms: None,
            time_high: false,
            state: Some(if command == "Sleep" { "" } else { "User sleep" }.into()),
            info: info.map(Into::into),
        }
    }

    fn field(kind: Kind, column: Column, re: &str) -> FieldFilters {
        let mut f = FieldFilters::default();
        f.set(kind, column, Some(Regex::new(re).unwrap()));
        f
    }

    fn users(list: &[&str]) -> UserFilter {
        UserFilter::Users(list.iter().map(|s| s.to_string()).collect())
    }

    fn rules(list: &[&str]) -> Rules {
        Rules {
            users: users(list),
            ..Rules::default()
        }
    }

    fn ids(scan: &Scan, rules: &Rules) -> Vec<u64> {
        select_victims(scan, rules)
            .iter()
            .map(|v| v.row.id)
            .collect()
    }

    fn scan(rows: Vec<ProcRow>) -> Scan {
        Scan {
            rows,
            ..Scan::default()
        }
    }

    /// MySQL's TIME may be 1 s high (TIME=1 after 0.4 s): a rule only fires
    /// once the time has certainly passed; TIME_MS is taken as exact.
    #[test]
    fn never_early_on_a_coarse_time() {
        let q = Some("select sleep(60)");
        let r = |time: u64, time_high: bool, time_ms: Option<u64>, command: &str| ProcRow {
            time_high,
            time_ms,
            ..row(1, "app1", command, time, q)
        };
        let rules = |longtime, sleep| Rules {
            longtime,
            sleep,
            ..rules(&["app1"])
        };
        let victim = |row: ProcRow, rules: &Rules| !ids(&scan(vec![row]), rules).is_empty();
        assert!(!victim(r(1, true, None, "Query"), &rules(1, 0)));
        assert!(victim(r(2, true, None, "Query"), &rules(1, 0)));
        assert!(!victim(r(10, true, None, "Query"), &rules(10, 0)));
        assert!(victim(r(11, true, None, "Query"), &rules(10, 0)));
        assert!(!victim(r(5, true, None, "Sleep"), &rules(0, 5)));
        assert!(victim(r(6, true, None, "Sleep"), &rules(0, 5)));
        // MariaDB: TIME_MS decides, TIME is a floor already.
        assert!(!victim(r(1, false, Some(999), "Query"), &rules(1, 0)));
        assert!(victim(r(1, false, Some(1000), "Query"), &rules(1, 0)));
        assert!(victim(r(1, false, None, "Query"), &rules(1, 0)));
    }

    #[test]
    fn table() {
        let q = Some("select sleep(60)");
        // (name, row, rules, expected victim?)
        let cases: Vec<(&str, ProcRow, Rules, bool)> = vec![
            (
                "long query",
                row(1, "app1", "Query", 12, q),
                rules(&["app1"]),
                true,
            ),
            (
                "at the limit",
                row(1, "app1", "Query", 10, q),
                rules(&["app1"]),
                true,
            ),
            (
                "below the limit",
                row(1, "app1", "Query", 9, q),
                rules(&["app1"]),
                false,
            ),
            (
                "other user",
                row(1, "app2", "Query", 99, q),
                rules(&["app1"]),
                false,
            ),
            (
                "k_user none",
                row(1, "app1", "Query", 99, q),
                Rules::default(),
                false,
            ),
            (
                "longtime 0 disables",
                row(1, "app1", "Query", 99, q),
                Rules {
                    longtime: 0,
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "sleep not long-running",
                row(1, "app1", "Sleep", 99, None),
                rules(&["app1"]),
                false,
            ),
            (
                "sleep killed with k_sleep",
                row(1, "app1", "Sleep", 31, None),
                Rules {
                    sleep: 30,
                    ..rules(&["app1"])
                },
                true,
            ),
            (
                "sleep below k_sleep",
                row(1, "app1", "Sleep", 29, None),
                Rules {
                    sleep: 30,
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "prepared statement is long-running",
                row(1, "app1", "Execute", 11, q),
                rules(&["app1"]),
                true,
            ),
            (
                "prepared statement below the limit",
                row(1, "app1", "Execute", 9, q),
                rules(&["app1"]),
                false,
            ),
            (
                "k_match_command narrows: a match alone is no reason",
                row(1, "app1", "Query", 1, q),
                Rules {
                    fields: field(Kind::Match, Column::Command, "^Query$"),
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "k_match_command keeps a long query",
                row(1, "app1", "Query", 11, q),
                Rules {
                    fields: field(Kind::Match, Column::Command, "^Query$"),
                    ..rules(&["app1"])
                },
                true,
            ),
            (
                "k_match_command drops other commands",
                row(1, "app1", "Execute", 11, q),
                Rules {
                    fields: field(Kind::Match, Column::Command, "^Query$"),
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "k_ignore_user spares a long query",
                row(1, "app1", "Query", 99, q),
                Rules {
                    fields: field(Kind::Ignore, Column::User, "^app"),
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "k_ignore_host matches without the port",
                row(1, "app1", "Query", 99, q),
                Rules {
                    fields: field(Kind::Ignore, Column::Host, r"^10\.0\.0\.5$"),
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "k_match_info narrows k_include",
                row(1, "app1", "Query", 1, Some("select sleep(17)")),
                Rules {
                    include: Some(Regex::new("sleep").unwrap()),
                    fields: field(Kind::Match, Column::Info, "update"),
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "k_match_* cannot rescue an excluded thread",
                row(1, "app1", "Query", 99, Some("select /* ecdba */ 1")),
                Rules {
                    exclude: Some(Regex::new("ecdba").unwrap()),
                    fields: field(Kind::Match, Column::Info, "ecdba"),
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "k_match_command cannot reach a protected thread",
                row(1, "repl", "Binlog Dump", 999, None),
                Rules {
                    fields: field(Kind::Match, Column::Command, "Binlog"),
                    ..rules(&["repl"])
                },
                false,
            ),
            (
                "include below longtime",
                row(1, "app1", "Query", 1, Some("select sleep(17)")),
                Rules {
                    include: Some(Regex::new(r"select sleep\(17\)").unwrap()),
                    ..rules(&["app1"])
                },
                true,
            ),
            (
                "include needs k_user",
                row(1, "app2", "Query", 1, Some("select sleep(17)")),
                Rules {
                    include: Some(Regex::new(r"sleep").unwrap()),
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "exclude wins over long-running",
                row(1, "app1", "Query", 99, Some("select /* ecdba */ 1")),
                Rules {
                    exclude: Some(Regex::new("ecdba").unwrap()),
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "exclude wins over include",
                row(1, "app1", "Query", 1, Some("select sleep(17)")),
                Rules {
                    include: Some(Regex::new("sleep").unwrap()),
                    exclude: Some(Regex::new("sleep").unwrap()),
                    ..rules(&["app1"])
                },
                false,
            ),
            (
                "binlog dump",
                row(1, "repl", "Binlog Dump", 999, None),
                rules(&["repl"]),
                false,
            ),
            (
                "binlog dump gtid",
                row(1, "repl", "Binlog Dump GTID", 999, None),
                rules(&["repl"]),
                false,
            ),
            (
                "replica io",
                row(1, "system user", "Slave_IO", 999, None),
                rules(&["system user"]),
                false,
            ),
            // Replica threads as MariaDB 10.11 shows them (checked on a real
            // replica, slave_parallel_threads=2): user `system user`, empty host.
            (
                "replica sql",
                row(1, "system user", "Slave_SQL", 999, None),
                rules(&["system user"]),
                false,
            ),
            (
                "replica parallel worker",
                row(1, "system user", "Slave_worker", 999, None),
                rules(&["system user"]),
                false,
            ),
            (
                "mysql 8 replica thread (Command=Connect)",
                row(1, "system user", "Connect", 999, None),
                Rules {
                    include: Some(Regex::new(".").unwrap()),
                    ..rules(&["system user"])
                },
                false,
            ),
            (
                "binlog dump of a k_user replication user, include everything",
                row(1, "repl", "Binlog Dump", 999, None),
                Rules {
                    include: Some(Regex::new(".").unwrap()),
                    longtime: 1,
                    ..rules(&["repl"])
                },
                false,
            ),
            (
                "replica registering with its primary",
                row(1, "repl", "Register Slave", 999, None),
                rules(&["repl"]),
                false,
            ),
            (
                "logging in (MySQL names the claimed user)",
                row(1, "app1", "Connect", 999, None),
                rules(&["app1"]),
                false,
            ),
            (
                "killed",
                row(1, "app1", "Killed", 999, q),
                rules(&["app1"]),
                false,
            ),
            (
                "daemon",
                row(1, "event_scheduler", "Daemon", 999, None),
                rules(&["event_scheduler"]),
                false,
            ),
        ];
        for (name, r, rules, want) in cases {
            let got = !select_victims(&scan(vec![r]), &rules).is_empty();
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn reasons_are_explained() {
        let s = scan(vec![
            row(7, "app1", "Query", 12, Some("x")),
            row(8, "app1", "Sleep", 31, None),
        ]);
        let v = select_victims(
            &s,
            &Rules {
                sleep: 30,
                ..rules(&["app1"])
            },
        );
        assert_eq!(v[0].reason_text(), "long-running 12s >= 10");
        assert_eq!(v[1].reason_text(), "sleeping 31s >= 30");
        let v = select_victims(
            &scan(vec![row(9, "app1", "Query", 1, Some("select 17"))]),
            &Rules {
                include: Some(Regex::new("17").unwrap()),
                ..rules(&["app1"])
            },
        );
        assert_eq!(v[0].reason_text(), "included by /17/");
    }

    #[test]
    fn own_connections_never_victims() {
        let mut s = scan(vec![row(5, "app1", "Query", 99, Some("select sleep(60)"))]);
        s.own_ids.insert(5);
        assert!(ids(&s, &rules(&["app1"])).is_empty());
    }

    #[test]
    fn lock_blocker_idle_in_transaction() {
        let mut s = scan(vec![
            row(1, "app1", "Sleep", 4, None),
            row(2, "app2", "Query", 4, Some("update t set v=2 where id=1")),
        ]);
        s.lock_waits.push(LockWait {
            waiting: 2,
            blocking: 1,
            wait_secs: 4,
        });
        let r = Rules {
            lock: 2,
            longtime: 0,
            ..rules(&["app1", "app2"])
        };
        let v = select_victims(&s, &r);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].row.id, 1);
        assert_eq!(v[0].reason_text(), "blocks thread 2 for 4s >= 2");
        // Too young a wait, or k_lock off: nothing.
        assert!(ids(
            &s,
            &Rules {
                lock: 5,
                ..r.clone()
            }
        )
        .is_empty());
        assert!(ids(&s, &Rules { lock: 0, ..r }).is_empty());
    }

    #[test]
    fn lock_blocker_still_obeys_never_kill_and_exclude() {
        let mut s = scan(vec![row(1, "repl", "Binlog Dump", 4, None)]);
        s.lock_waits.push(LockWait {
            waiting: 2,
            blocking: 1,
            wait_secs: 100,
        });
        assert!(ids(
            &s,
            &Rules {
                lock: 1,
                ..rules(&["repl"])
            }
        )
        .is_empty());
    }

    #[test]
    fn pile_up_counts_only_candidates() {
        // 10 copies; one excluded, one below k_longtime, one mysqk's own: 7 candidates.
        let mut rows: Vec<ProcRow> = (1..=10)
            .map(|i| {
                row(
                    i,
                    "app1",
                    "Query",
                    10 + i,
                    Some(&format!("select * from t where id = {i}")),
                )
            })
            .collect();
        rows[0].info = Some("select * from t where id = 1 /* keep */".into());
        rows[1].time = 1;
        let mut s = scan(rows);
        s.own_ids.insert(3);
        let r = Rules {
            exclude: Some(Regex::new("keep").unwrap()),
            classes: ClassRules {
                group_by: GroupBy::Fingerprint,
                query_count: 7,
                victims: Pick::AllButOldest,
                ..ClassRules::default()
            },
            ..rules(&["app1"])
        };
        // Oldest candidate is 10 (time 20): spared.
        assert_eq!(ids(&s, &r), vec![4, 5, 6, 7, 8, 9]);
        let eight = Rules {
            classes: ClassRules {
                query_count: 8,
                ..r.classes
            },
            ..r.clone()
        };
        assert!(ids(&s, &eight).is_empty());
    }

    fn arb_row() -> impl Strategy<Value = ProcRow> {
        let users = prop::sample::select(vec![
            "app1",
            "app2",
            "system user",
            "event_scheduler",
            "repl",
            "root",
        ]);
        let commands = prop::sample::select(vec![
            "Query",
            "Sleep",
            "Execute",
            "Killed",
            "Daemon",
            "Binlog Dump",
            "Binlog Dump GTID",
            "Slave_IO",
            "Slave_SQL",
            "Connect",
        ]);
        let text = prop::sample::select(vec![
            "select sleep(60)",
            "Binlog",
            "/* ecdba */ select 1",
            "update t set a=1",
            "中文注释 select 1",
        ]);
        (0u64..40, users, commands, 0u64..100, prop::option::of(text)).prop_map(
            |(id, u, c, t, i)| ProcRow {
                query_id: None,
                id,
                user: u.into(),
                host: "h:1".into(),
                db: None,
                command: c.into(),
                time: t,
                time_high: false,
                time_ms: None,
                state: None,
                info: i.map(Into::into),
            },
        )
    }

    fn arb_rules() -> impl Strategy<Value = Rules> {
        let pats = prop::sample::select(vec![
            ".*",
            "sleep",
            "Binlog",
            "ecdba",
            "select|update",
            "^app",
        ]);
        (
            prop::sample::subsequence(
                vec![
                    "app1",
                    "app2",
                    "system user",
                    "event_scheduler",
                    "repl",
                    "root",
                ],
                0..6,
            ),
            0u64..50,
            0u64..50,
            0u64..5,
            prop::option::of(pats.clone()),
            prop::option::of(pats.clone()),
            prop::option::of(pats),
            (
                prop::sample::select(vec![GroupBy::None, GroupBy::Fingerprint, GroupBy::Info]),
                0u64..4,
                0u64..30,
                0u64..30,
                prop::sample::select(vec![Pick::All, Pick::Oldest, Pick::AllButOldest]),
            ),
        )
            .prop_map(
                |(u, longtime, sleep, lock, inc, exc, ign, (g, n, any, each, pick))| {
                    let mut fields = FieldFilters::default();
                    fields.set(
                        Kind::Ignore,
                        Column::Info,
                        ign.map(|p| Regex::new(p).unwrap()),
                    );
                    Rules {
                        users: users(&u),
                        longtime,
                        sleep,
                        lock,
                        include: inc.map(|p| Regex::new(p).unwrap()),
                        exclude: exc.map(|p| Regex::new(p).unwrap()),
                        fields,
                        classes: ClassRules {
                            group_by: g,
                            query_count: n,
                            any_busy_time: any,
                            each_busy_time: each,
                            victims: pick,
                        },
                        ..Rules::default()
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn never_kills_protected_excluded_or_foreign(
            rows in prop::collection::vec(arb_row(), 0..30),
            rules in arb_rules(),
            own in prop::collection::hash_set(0u64..40, 0..5),
            waits in prop::collection::vec((0u64..40, 0u64..40, 0u64..20), 0..5),
        ) {
            let scan = Scan {
                rows: rows.clone(),
                own_ids: own.clone(),
                lock_waits: waits.into_iter().map(|(w, b, s)| LockWait { waiting: w, blocking: b, wait_secs: s }).collect(),
            };
            // The class step only ever removes candidates.
            let candidates: HashSet<u64> = select_victims(
                &scan,
                &Rules { classes: ClassRules::default(), ..rules.clone() },
            )
            .iter()
            .map(|v| v.row.id)
            .collect();
            for v in select_victims(&scan, &rules) {
                prop_assert!(candidates.contains(&v.row.id));
                prop_assert!(rules.fields.rejects(&v.row).is_none());
                prop_assert!(protected(&v.row, &own).is_none(), "protected row returned: {:?}", v.row);
                prop_assert!(!own.contains(&v.row.id));
                prop_assert!(rules.users.contains(&v.row.user));
                if let Some(re) = &rules.exclude {
                    prop_assert!(!re.is_match(&v.row.row_text()));
                }
                prop_assert!(!v.reasons.is_empty());
            }
        }
    }
}
