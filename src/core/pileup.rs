//! Applies the class rules of [`crate::core::classes`] to the per-thread
//! candidates: keeps the members of abnormal classes that `k_victims` picks.

use std::collections::{BTreeSet, HashMap};

use crate::core::classes::{class_key, ClassReason, ClassRules, GroupBy, Pick};
use crate::core::redact;
use crate::core::row::ProcRow;
use crate::core::text;
use crate::core::victim::{Reason, Victim};

/// Thread age for `oldest`: longest-running first; `TIME_MS` breaks ties
/// between equal seconds, then the lower (earlier) thread id.
fn older_first(a: &ProcRow, b: &ProcRow) -> std::cmp::Ordering {
    b.time
        .cmp(&a.time)
        .then(b.elapsed_ms().cmp(&a.elapsed_ms()))
        .then(a.id.cmp(&b.id))
}

/// Keep the candidates whose class is abnormal and that `k_victims` picks;
/// each keeps its per-thread reasons and gains a [`Reason::Class`].
pub fn apply(candidates: Vec<Victim>, rules: &ClassRules) -> Vec<Victim> {
    if !rules.is_active() {
        return candidates;
    }
    let mut classes: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, v) in candidates.iter().enumerate() {
        classes
            .entry(class_key(rules.group_by, &v.row))
            .or_default()
            .push(i);
    }
    let mut chosen: HashMap<usize, ClassReason> = HashMap::new();
    for (key, mut members) in classes {
        let rows =
            |m: &[usize]| -> Vec<&ProcRow> { m.iter().map(|&i| &candidates[i].row).collect() };
        let n = members.len();
        if rules.query_count > 0 && (n as u64) < rules.query_count {
            continue;
        }
        // pt-kill: "longer than", i.e. strictly greater than N seconds.
        if rules.any_busy_time > 0
            && !rows(&members)
                .iter()
                .any(|r| r.secs_at_least() > rules.any_busy_time)
        {
            continue;
        }
        if rules.each_busy_time > 0
            && !rows(&members)
                .iter()
                .all(|r| r.secs_at_least() > rules.each_busy_time)
        {
            continue;
        }
        members.sort_by(|&a, &b| older_first(&candidates[a].row, &candidates[b].row));
        let picked: &[usize] = match rules.victims {
            Pick::All => &members,
            Pick::Oldest => &members[..1],
            Pick::AllButOldest => &members[1..],
        };
        let class = if rules.group_by == GroupBy::Info {
            redact::sql(&key)
        } else {
            key
        };
        let reason = ClassReason {
            group_by: rules.group_by,
            class: text::cut(&class, 80),
            members: n,
            conditions: rules.conditions(),
            victims: rules.victims,
        };
        for &i in picked {
            chosen.insert(i, reason.clone());
        }
    }
    let keep: BTreeSet<usize> = chosen.keys().copied().collect();
    candidates
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(i, mut v)| {
            if let Some(r) = chosen.remove(&i) {
                v.reasons.push(Reason::Class(r));
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: u64, time: u64, info: Option<&str>) -> Victim {
        Victim {
            row: ProcRow {
                query_id: None,
                id,
                user: "app1".into(),
                host: "h:1".into(),
                db: None,
                command: if info.is_some() { "Query" } else { "Sleep" }.into(),
                time,
                time_ms: None,
                time_high: false,
                state: None,
                info: info.map(Into::into),
            },
            reasons: vec![Reason::LongRunning {
                secs: time,
                limit: 1,
            }],
        }
    }

    fn ids(v: &[Victim]) -> Vec<u64> {
        v.iter().map(|v| v.row.id).collect()
    }

    /// 4 copies of one query (ids 1-4, id 2 oldest), 2 of another, 1 sleeper.
    fn pile() -> Vec<Victim> {
        vec![
            cand(1, 5, Some("select * from t where id = 1")),
            cand(2, 9, Some("SELECT *  FROM t WHERE id = 22")),
            cand(3, 3, Some("select * from t where id = 3")),
            cand(4, 5, Some("select * from t where id = 1")),
            cand(5, 20, Some("update u set a = 1")),
            cand(6, 2, Some("update u set a = 2")),
            cand(7, 30, None),
        ]
    }

    #[test]
    fn table() {
        let fp = |n: u64, v: Pick| ClassRules {
            group_by: GroupBy::Fingerprint,
            query_count: n,
            victims: v,
            ..ClassRules::default()
        };
        // (name, rules, expected victim ids)
        let cases: Vec<(&str, ClassRules, Vec<u64>)> = vec![
            (
                "defaults: no-op",
                ClassRules::default(),
                vec![1, 2, 3, 4, 5, 6, 7],
            ),
            ("fingerprint, count 4", fp(4, Pick::All), vec![1, 2, 3, 4]),
            ("count 2", fp(2, Pick::All), vec![1, 2, 3, 4, 5, 6]),
            ("count 5: nothing", fp(5, Pick::All), vec![]),
            ("oldest", fp(4, Pick::Oldest), vec![2]),
            ("all-but-oldest", fp(4, Pick::AllButOldest), vec![1, 3, 4]),
            (
                "all-but-oldest of one",
                fp(1, Pick::AllButOldest),
                vec![1, 3, 4, 6],
            ),
            (
                "info: exact text only",
                ClassRules {
                    group_by: GroupBy::Info,
                    query_count: 2,
                    ..ClassRules::default()
                },
                vec![1, 4],
            ),
            (
                "none: one class of all, count 7",
                ClassRules {
                    query_count: 7,
                    ..ClassRules::default()
                },
                vec![1, 2, 3, 4, 5, 6, 7],
            ),
            (
                "none: one class of all, count 8",
                ClassRules {
                    query_count: 8,
                    ..ClassRules::default()
                },
                vec![],
            ),
            (
                "none: oldest of everything",
                ClassRules {
                    victims: Pick::Oldest,
                    ..ClassRules::default()
                },
                vec![7],
            ),
            (
                "any_busy_time is strict (9 is not > 9)",
                ClassRules {
                    any_busy_time: 9,
                    ..fp(0, Pick::All)
                },
                vec![5, 6, 7],
            ),
            (
                "any_busy_time 8",
                ClassRules {
                    any_busy_time: 8,
                    ..fp(0, Pick::All)
                },
                vec![1, 2, 3, 4, 5, 6, 7],
            ),
            (
                "each_busy_time 2: the update class has a 2 s member",
                ClassRules {
                    each_busy_time: 2,
                    ..fp(0, Pick::All)
                },
                vec![1, 2, 3, 4, 7],
            ),
            (
                "each_busy_time and count together",
                ClassRules {
                    each_busy_time: 2,
                    ..fp(2, Pick::All)
                },
                vec![1, 2, 3, 4],
            ),
        ];
        for (name, rules, want) in cases {
            assert_eq!(ids(&apply(pile(), &rules)), want, "case {name}");
        }
    }

    #[test]
    fn oldest_ties_broken_by_time_ms_then_id() {
        let mut v = vec![cand(8, 5, Some("select 1")), cand(9, 5, Some("select 2"))];
        let r = ClassRules {
            group_by: GroupBy::Fingerprint,
            victims: Pick::Oldest,
            ..ClassRules::default()
        };
        assert_eq!(ids(&apply(v.clone(), &r)), vec![8]);
        v[0].row.time_ms = Some(5100);
        v[1].row.time_ms = Some(5900);
        assert_eq!(ids(&apply(v, &r)), vec![9]);
    }

    #[test]
    fn class_reason_is_explained_and_redacted() {
        let r = ClassRules {
            group_by: GroupBy::Fingerprint,
            query_count: 4,
            victims: Pick::AllButOldest,
            ..ClassRules::default()
        };
        let v = apply(pile(), &r);
        assert_eq!(
            v[0].reason_text(),
            "long-running 5s >= 1; pile-up: 4 threads with fingerprint \"select * from t where id = ?\" (k_query_count>=4), k_victims=all-but-oldest"
        );
        let secret = "create user u identified by 'S3cret'";
        let v = apply(
            vec![cand(1, 5, Some(secret)), cand(2, 5, Some(secret))],
            &ClassRules {
                group_by: GroupBy::Info,
                ..ClassRules::default()
            },
        );
        assert!(
            !v[0].reason_text().contains("S3cret"),
            "{}",
            v[0].reason_text()
        );
    }

    #[test]
    fn parse_names() {
        assert_eq!(GroupBy::parse("Fingerprint"), Some(GroupBy::Fingerprint));
        assert_eq!(GroupBy::parse("user"), None);
        assert_eq!(Pick::parse("all-but-oldest"), Some(Pick::AllButOldest));
        assert_eq!(Pick::parse("newest"), None);
    }
}
