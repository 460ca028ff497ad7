//! `mysqk match` (the binary) against processlist dumps in tests/data/:
//! every per-column key, the class keys, Execute vs k_longtime, the three dump
//! layouts, stdin, --json and malformed input. Nothing here connects to a
//! server: the instance points at a port nobody listens on.
//!
//! tests/data/incident_*.txt hold the same 15 rows in the three layouts:
//!
//! | id | user | host | db | command | time | state / info |
//! |---|---|---|---|---|---|---|
//! | 10 | app1 | 10.0.0.5 | crm | Query | 30 | Sending data, select ... orders where id = 1 |
//! | 11 | app1 | 10.0.0.6 | crm | Execute | 30 | Sending data, prepared select |
//! | 12 | app1 | 10.0.0.5 | report | Query | 30 | Creating sort index |
//! | 13 | bi_reader | 10.9.0.1 | dw | Query | 30 | Sending data |
//! | 14 | app1 | 10.0.0.7 | NULL | Query | 30 | User sleep, select sleep(60) |
//! | 15 | app1 | 10.0.0.5 | crm | Sleep | 100 | |
//! | 16 | app1 | 10.0.0.5 | crm | Query | 30 | Waiting for table metadata lock, alter table |
//! | 17 | app1 | 10.0.0.5 | crm | Query | 3 | Sending data |
//! | 18 | app1 | 10.0.0.6 | crm | Execute | 3 | Sending data, prepared select |
//! | 1, 2, 3, 19 | system user, event_scheduler, Binlog Dump, Killed: never victims |
//! | 20 | mon | localhost | NULL | Query | 0 | show full processlist |
//! | 21 | admin | 10.0.0.9 | NULL | Query | 30 | CREATE USER ... IDENTIFIED BY 'S3cret-pw' |
//!
//! tests/data/pileup_boxed.txt: 12 copies of one query with different
//! literals (ids 100-111, Time 16 down to 5; 105 runs exactly 101's text),
//! 200 (Query, 40 s), 201 (Query, 3 s), 202 (Sleep, 50 s), 203 (mon).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use support::{mysqk_bin, run_with_timeout, write_ini};

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

/// An ini with instance `x` (never contacted) and `commkill` as [db_commkill].
fn ini(dir: &Path, commkill: &str) -> PathBuf {
    write_ini(
        dir,
        &format!(
            "[db_info]\nx=127.0.0.1:1\n[db_auth]\napp1=pw\nbi_reader=pw\nmon=pw\nadmin=pw\n\
             [db_commconfig]\ndb_puser=mon\n[db_commkill]\n{commkill}\n"
        ),
    )
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = mysqk_bin();
    cmd.args(args);
    let Some(input) = stdin else {
        return run_with_timeout(&mut cmd, Duration::from_secs(30));
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mysqk");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `mysqk match --json`: the ids it would kill, sorted.
fn matched(dump: &str, commkill: &str, flags: &[&str]) -> Vec<u64> {
    let dir = tempfile::tempdir().unwrap();
    let ini = ini(dir.path(), commkill);
    let file = data(dump);
    let mut args = vec![
        "match",
        "-c",
        ini.to_str().unwrap(),
        "--db",
        "x",
        "--from",
        &file,
        "--json",
    ];
    args.extend_from_slice(flags);
    let out = run(&args, None);
    assert_eq!(out.status.code(), Some(0), "{args:?}\n{}", text(&out));
    let mut ids: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let j: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            j["id"].as_u64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids
}

const INCIDENT_BASE: &str = "k_user=app1,bi_reader\nk_longtime=10";
const ALL_DEFAULT: &[u64] = &[10, 11, 12, 13, 14, 16];

#[test]
fn every_per_column_key_as_ini_key_and_as_flag() {
    // (key, value, expected ids)
    let cases: &[(&str, &str, &[u64])] = &[
        ("k_match_command", "^Execute$", &[11]),
        ("k_match_state", "^Sending", &[10, 11, 13]),
        // A NULL db never matches.
        ("k_match_db", "^crm$", &[10, 11, 16]),
        // The host is matched without the port ...
        ("k_match_host", r"^10\.0\.0\.5$", &[10, 12, 16]),
        // ... so the port never matches.
        ("k_match_host", ":51000", &[]),
        ("k_match_info", "^alter", &[16]),
        ("k_match_info", "(?i)SELECT", &[10, 11, 12, 13, 14]),
        ("k_ignore_command", "^Execute$", &[10, 12, 13, 14, 16]),
        ("k_ignore_state", "metadata lock", &[10, 11, 12, 13, 14]),
        // A NULL db is not ignored.
        ("k_ignore_db", "^(report|dw)$", &[10, 11, 14, 16]),
        ("k_ignore_host", r"^10\.9\.", &[10, 11, 12, 14, 16]),
        ("k_ignore_info", "(?i)^select", &[16]),
        ("k_ignore_user", "^bi_", &[10, 11, 12, 14, 16]),
        // Protected threads stay protected whatever a match key says.
        ("k_match_command", "Binlog|Killed|Daemon|Slave", &[]),
    ];
    assert_eq!(
        matched("incident_vertical.txt", INCIDENT_BASE, &[]),
        ALL_DEFAULT
    );
    for (key, value, want) in cases {
        let as_key = matched(
            "incident_vertical.txt",
            &format!("{INCIDENT_BASE}\n{key}={value}"),
            &[],
        );
        assert_eq!(as_key, *want, "{key}={value} in the ini");
        let flag = format!("--{}", key.trim_start_matches("k_").replace('_', "-"));
        let as_flag = matched("incident_vertical.txt", INCIDENT_BASE, &[&flag, value]);
        assert_eq!(as_flag, *want, "{flag} {value}");
    }
}

#[test]
fn per_column_keys_narrow_and_never_override_exclude_or_time() {
    let cases: &[(&str, &[&str], &[u64])] = &[
        // A match is no reason by itself: 17 matches but is below k_longtime.
        ("k_match_info=where id = 5", &[], &[]),
        ("k_match_info=orders", &[], &[10, 11, 16]),
        // k_exclude still wins over a match.
        ("k_match_info=orders\nk_exclude=alter", &[], &[10, 11]),
        // Sleepers need k_sleep, then k_match_command picks them alone.
        ("k_sleep=60\nk_match_command=^Sleep$", &[], &[15]),
        // Several keys: AND.
        ("k_match_db=crm\nk_ignore_command=Execute", &[], &[10, 16]),
        // An empty flag turns the ini key off.
        (
            "k_match_command=^Execute$",
            &["--match-command", ""],
            ALL_DEFAULT,
        ),
        // [id_x] overrides [db_commkill].
        (
            "k_match_command=^Execute$\n[id_x]\nk_match_command=^Query$",
            &[],
            &[10, 12, 13, 14, 16],
        ),
    ];
    for (extra, flags, want) in cases {
        let got = matched(
            "incident_vertical.txt",
            &format!("{INCIDENT_BASE}\n{extra}"),
            flags,
        );
        assert_eq!(got, *want, "{extra} {flags:?}");
    }
}

#[test]
fn prepared_statements_obey_k_longtime() {
    // 11 and 18 are Command=Execute, 30 s and 3 s.
    let cases: &[(&str, &[u64])] = &[
        ("k_longtime=10", &[11]),
        ("k_longtime=3", &[11, 18]),
        ("k_longtime=4", &[11]),
        ("k_longtime=31", &[]),
        ("k_longtime=0", &[]),
    ];
    for (rule, want) in cases {
        let got = matched(
            "incident_vertical.txt",
            &format!("k_user=app1\n{rule}\nk_match_command=^Execute$"),
            &[],
        );
        assert_eq!(got, *want, "{rule}");
    }
}

#[test]
fn pile_up_class_keys() {
    let copies: Vec<u64> = (100..=111).collect();
    let but_oldest: Vec<u64> = (101..=111).collect();
    let with_200: Vec<u64> = (100..=111).chain([200]).collect();
    let all_candidates: Vec<u64> = (100..=111).chain([200, 201]).collect();
    let base = "k_user=app1\nk_longtime=1";
    let cases: Vec<(&str, Vec<u64>)> = vec![
        ("", all_candidates.clone()),
        (
            "k_group_by=fingerprint\nk_query_count=10\nk_victims=all-but-oldest",
            but_oldest.clone(),
        ),
        (
            "k_group_by=fingerprint\nk_query_count=10\nk_victims=oldest",
            vec![100],
        ),
        ("k_group_by=fingerprint\nk_query_count=10", copies.clone()),
        ("k_group_by=fingerprint\nk_query_count=13", vec![]),
        // Exact text: only 101 and 105 share it.
        ("k_group_by=info\nk_query_count=2", vec![101, 105]),
        (
            "k_group_by=info\nk_query_count=2\nk_victims=oldest",
            vec![101],
        ),
        // "Longer than": the copies' oldest is 16 s, 16 is not > 16.
        ("k_group_by=fingerprint\nk_any_busy_time=16", vec![200]),
        (
            "k_group_by=fingerprint\nk_any_busy_time=15",
            with_200.clone(),
        ),
        // Every copy has run > 4 s (the youngest 5 s); 201 has run 3 s.
        (
            "k_group_by=fingerprint\nk_each_busy_time=4",
            with_200.clone(),
        ),
        ("k_group_by=fingerprint\nk_each_busy_time=5", vec![200]),
        // No grouping: all candidates form one class (pt-kill's default class).
        ("k_query_count=14", all_candidates.clone()),
        ("k_query_count=15", vec![]),
        ("k_victims=oldest", vec![200]),
        // k_longtime selects the candidates first: only 7 copies have run
        // >= 10 s, so the class has 7 members, below k_query_count.
        (
            "k_group_by=fingerprint\nk_query_count=10\n[id_x]\nk_longtime=10",
            vec![],
        ),
    ];
    for (extra, want) in &cases {
        let got = matched("pileup_boxed.txt", &format!("{base}\n{extra}"), &[]);
        assert_eq!(&got, want, "{extra}");
    }
    // The same through flags.
    let got = matched(
        "pileup_boxed.txt",
        base,
        &[
            "--group-by",
            "fingerprint",
            "--query-count",
            "10",
            "--victims",
            "all-but-oldest",
        ],
    );
    assert_eq!(got, but_oldest);
    assert_eq!(
        matched(
            "pileup_boxed.txt",
            base,
            &["--group-by", "fingerprint", "--any-busy-time", "16"]
        ),
        vec![200]
    );
    assert_eq!(
        matched(
            "pileup_boxed.txt",
            base,
            &["--group-by", "fingerprint", "--each-busy-time", "5"]
        ),
        vec![200]
    );
}

#[test]
fn three_layouts_and_stdin_agree() {
    for dump in [
        "incident_vertical.txt",
        "incident_boxed.txt",
        "incident_tab.txt",
    ] {
        assert_eq!(matched(dump, INCIDENT_BASE, &[]), ALL_DEFAULT, "{dump}");
    }
    let dir = tempfile::tempdir().unwrap();
    let ini = ini(dir.path(), INCIDENT_BASE);
    let input = std::fs::read_to_string(data("incident_tab.txt")).unwrap();
    let out = run(
        &[
            "match",
            "-c",
            ini.to_str().unwrap(),
            "--db",
            "x",
            "--from",
            "-",
        ],
        Some(&input),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("x: 15 threads in <stdin>, 6 would be killed"),
        "{t}"
    );
}

#[test]
fn human_output_says_what_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let ini = ini(
        dir.path(),
        "k_user=app1\nk_longtime=1\nk_group_by=fingerprint\nk_query_count=10\nk_victims=all-but-oldest\nk_lock=5",
    );
    let out = run(
        &[
            "match",
            "-c",
            ini.to_str().unwrap(),
            "--db",
            "x",
            "--from",
            &data("pileup_boxed.txt"),
        ],
        None,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("11 would be killed"), "{t}");
    assert!(
        t.contains("pile-up: 12 threads with fingerprint \"select * from cart where user_id = ? and status in(?+)\" (k_query_count>=10), k_victims=all-but-oldest"),
        "{t}"
    );
    assert!(t.contains("would kill connection"), "{t}");
    assert!(t.contains("k_lock=5 is not evaluated offline"), "{t}");
    // The oldest copy (100) is not in the table.
    assert!(!t.lines().any(|l| l.starts_with("100 ")), "{t}");

    // One thread is "1 thread", in the summary and in a class of one.
    let one = "Id\tUser\tHost\tdb\tCommand\tTime\tState\tInfo\n\
               7\tapp1\th:1\tshop\tQuery\t9\tx\tselect 1\n";
    let out = run(
        &[
            "match",
            "--from",
            "-",
            "--user",
            "all",
            "--busy-time",
            "1",
            "--group-by",
            "fingerprint",
            "--query-count",
            "1",
        ],
        Some(one),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(": 1 thread in ") && t.contains("pile-up: 1 thread with"),
        "{t}"
    );
    assert!(!t.contains("1 threads"), "{t}");
}

#[test]
fn json_lines_carry_every_field_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let ini = ini(dir.path(), "k_user=admin\nk_longtime=10");
    let out = run(
        &[
            "match",
            "-c",
            ini.to_str().unwrap(),
            "--db",
            "x",
            "--from",
            &data("incident_boxed.txt"),
            "--json",
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!stdout.contains("S3cret-pw"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let j: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    for key in [
        "instance",
        "id",
        "user",
        "host",
        "db",
        "command",
        "time",
        "state",
        "info",
        "reason",
        "action",
        "result",
        "fingerprint",
    ] {
        assert!(j.get(key).is_some(), "{key} missing: {}", lines[0]);
    }
    assert_eq!(j["instance"], "x");
    assert_eq!(j["id"], 21);
    assert_eq!(j["user"], "admin");
    assert_eq!(j["host"], "10.0.0.9:50200");
    assert_eq!(j["db"], serde_json::Value::Null);
    assert_eq!(j["command"], "Query");
    assert_eq!(j["time"], 30);
    assert_eq!(j["state"], "creating user");
    // Every literal of a password-bearing statement is masked, the account too.
    assert_eq!(j["info"], "CREATE USER '***'@'***' IDENTIFIED BY '***'");
    assert_eq!(j["reason"], "long-running 30s >= 10");
    assert_eq!(j["action"], "kill-connection");
    assert_eq!(j["result"], "offline");
    assert_eq!(j["fingerprint"], "create user ?@? identified by ?");
}

#[test]
fn bad_input_exits_2_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let ini = ini(dir.path(), INCIDENT_BASE);
    let ini = ini.to_str().unwrap();
    let out = run(
        &[
            "match",
            "-c",
            ini,
            "--db",
            "x",
            "--from",
            &data("malformed_boxed.txt"),
        ],
        None,
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("malformed_boxed.txt:8: table row has 8 columns, the header has 9"),
        "{t}"
    );
    let out = run(
        &["match", "-c", ini, "--db", "x", "--from", "-"],
        Some("Id\tUser\tHost\tCommand\tTime\n1\tapp1\th\tQuery\tlong\n"),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("<stdin>:2:"), "{t}");
    let out = run(
        &[
            "match",
            "-c",
            ini,
            "--db",
            "x",
            "--from",
            "/nonexistent/dump",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("/nonexistent/dump: cannot read"));
    let out = run(
        &[
            "match",
            "-c",
            ini,
            "--db",
            "x",
            "--from",
            &data("pileup_boxed.txt"),
            "--group-by",
            "user",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(
        &[
            "match",
            "-c",
            ini,
            "--db",
            "x",
            "--from",
            &data("pileup_boxed.txt"),
            "--match-info",
            "(",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--match-info: invalid regex `(`"),
        "{}",
        text(&out)
    );
    let bad_ini = write_ini(
        dir.path(),
        "[db_info]\nx=127.0.0.1:1\n[db_auth]\nmon=pw\n[db_commconfig]\ndb_puser=mon\n\
         [db_commkill]\nk_group_by=user\n",
    );
    let out = run(
        &[
            "match",
            "-c",
            bad_ini.to_str().unwrap(),
            "--db",
            "x",
            "--from",
            &data("pileup_boxed.txt"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out)
            .contains(":8: [db_commkill] k_group_by: `user` is not none, fingerprint or info"),
        "{}",
        text(&out)
    );
}
