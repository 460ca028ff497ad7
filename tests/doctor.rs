//! `mysqk doctor` on a real server (either flavour): a healthy setup passes,
//! a monitor without PROCESS (or, on MySQL, without SELECT on
//! performance_schema) and a wrong password are flagged with their fix, in
//! the flavour's own GRANT text.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::{is_mysql, mysqk_bin, run_with_timeout, server, unique, write_ini};

/// This file's ini and helpers on top of the shared test tenant.
use support::Tenant as Setup;

impl Setup {
    /// `auth` is the [db_auth] body; `puser` the db_puser.
    fn ini(&self, auth: &str, puser: &str, commkill: &str) -> PathBuf {
        write_ini(
            self.dir.path(),
            &format!(
                "[settings]\nsnapshot_dir={snap}\n\n[db_info]\nx={addr}\n\n[db_auth]\n{auth}\n\n\
                 [db_commconfig]\ndb_puser={puser}\nrun_max_count=999\ndry_run=0\n\n\
                 [db_commkill]\n{commkill}\n",
                snap = self.dir.path().join("snapshots").display(),
                addr = server().addr(),
            ),
        )
    }
}

fn doctor(ini: &std::path::Path) -> (i32, String) {
    let out = run_with_timeout(
        mysqk_bin().args(["doctor", "-c", ini.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stdout)
}

#[test]
fn healthy_setup_exits_0() {
    let t = Setup::new("Pw-dx");
    let ini = t.ini(
        &format!("{}={pw}\n{}={pw}", t.mon, t.app, pw = t.pw),
        &t.mon,
        &format!("k_user={}\nk_lock=5", t.app),
    );
    let (code, out) = doctor(&ini);
    assert_eq!(code, 0, "{out}");
    if is_mysql() {
        assert!(out.contains("MySQL 8"), "flavor and version:\n{out}");
        assert!(
            out.contains("performance_schema.processlist; SHOW PROCESSLIST from P_S: OFF"),
            "processlist source:\n{out}"
        );
    } else {
        assert!(out.contains("MariaDB"), "flavor and version:\n{out}");
        assert!(
            out.contains("information_schema.PROCESSLIST (MariaDB)"),
            "processlist source:\n{out}"
        );
    }
    assert!(out.contains("can do its job"), "{out}");
    assert!(!out.contains("ERROR"), "{out}");
    // The user table: the monitor sees all threads, the app user kills its own.
    let mon_line = out.lines().find(|l| l.contains(&t.mon)).unwrap();
    assert!(
        mon_line.contains("db_puser") && mon_line.contains("all threads"),
        "{out}"
    );
    let app_line = out.lines().find(|l| l.contains(&t.app)).unwrap();
    assert!(app_line.contains("own threads"), "{out}");
    assert!(out.contains("readable"), "lock-wait tables:\n{out}");
    assert!(!out.contains(&t.pw), "no password in the report");
}

#[test]
fn monitor_without_process_is_flagged_with_the_grant() {
    let t = Setup::new("Pw-dx");
    let nopriv = unique("mon");
    server().create_user(&nopriv, &t.pw, &[]);
    let ini = t.ini(
        &format!("{nopriv}={pw}\n{}={pw}", t.app, pw = t.pw),
        &nopriv,
        &format!("k_user={}", t.app),
    );
    let (code, out) = doctor(&ini);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "ERROR x {nopriv}: db_puser sees only its own threads (no PROCESS privilege)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("fix: GRANT PROCESS ON *.* TO '{nopriv}'@'%';")),
        "{out}"
    );
}

#[test]
fn wrong_password_is_flagged() {
    let t = Setup::new("Pw-dx");
    let ini = t.ini(
        &format!("{}={}\n{}=not-the-password", t.mon, t.pw, t.app),
        &t.mon,
        &format!("k_user={}", t.app),
    );
    let (code, out) = doctor(&ini);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("ERROR x {}: cannot log in: Access denied", t.app)),
        "{out}"
    );
    assert!(
        out.contains(&format!("ALTER USER '{}'@'%' IDENTIFIED BY", t.app)),
        "{out}"
    );
    assert!(!out.contains("not-the-password"), "{out}");
}

#[test]
fn a_k_user_nobody_can_kill_is_flagged() {
    let t = Setup::new("Pw-dx");
    // `etl` is in k_user but not in [db_auth], and no session may kill others.
    let ini = t.ini(
        &format!("{}={pw}\n{}={pw}", t.mon, t.app, pw = t.pw),
        &t.mon,
        &format!("k_user={},etl", t.app),
    );
    let (code, out) = doctor(&ini);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("threads of k_user etl cannot be killed")
            && out.contains(&format!(
                "add etl to [db_auth], or GRANT {} ON *.* TO '{}'@'%';",
                if is_mysql() {
                    "CONNECTION_ADMIN"
                } else {
                    "CONNECTION ADMIN"
                },
                t.mon
            )),
        "{out}"
    );
}

/// MySQL's lock-wait and metadata-lock tables are in performance_schema: a
/// db_puser with PROCESS only cannot read them (k_lock would be blind).
/// MariaDB's are in information_schema, readable with PROCESS.
#[test]
fn a_monitor_with_process_only_reads_lock_waits_on_mariadb_only() {
    let t = Setup::new("Pw-dx");
    let mon = unique("mon");
    server().create_user(&mon, &t.pw, &["PROCESS ON *.*"]);
    let ini = t.ini(
        &format!("{mon}={pw}\n{}={pw}", t.app, pw = t.pw),
        &mon,
        &format!("k_user={}\nk_lock=5", t.app),
    );
    let (code, out) = doctor(&ini);
    if is_mysql() {
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!("ERROR x {mon}: cannot read the lock-wait tables"))
                && out.contains(&format!(
                    "GRANT SELECT ON performance_schema.* TO '{mon}'@'%';"
                )),
            "{out}"
        );
    } else {
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("readable"), "{out}");
    }
}
