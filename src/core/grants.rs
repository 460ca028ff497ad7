//! What a login may do, read from its own `SHOW GRANTS`.
//!
//! `information_schema.USER_PRIVILEGES` lists only privileges granted to the
//! account itself, never those that come through a role, and matching its
//! `GRANTEE` against `CURRENT_USER()` breaks on names containing `@` or `'`
//! (MySQL does not double the quote there). `SHOW GRANTS` without `FOR`
//! lists, on MySQL 8+, the privileges of the session's active roles as if
//! granted directly; on MariaDB it adds the grants of the current role. Only
//! the privilege list and the object of each line are read, never the
//! grantee, so the account's name cannot confuse the parse.

/// Global privileges of a session that matter to mysqk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Privileges {
    /// SUPER or CONNECTION ADMIN (`CONNECTION_ADMIN` on MySQL): may kill
    /// other users' threads.
    pub kill_others: bool,
    /// PROCESS: sees every thread.
    pub process: bool,
}

/// The global (`ON *.*`) privileges in `SHOW GRANTS` lines. Role grants
/// (`GRANT `r`@`%` TO ...`, no `ON`) and grants on schemas, tables or
/// routines are ignored.
pub fn global_privileges<'a>(lines: impl IntoIterator<Item = &'a str>) -> Privileges {
    let mut p = Privileges::default();
    for line in lines {
        for privilege in global_privilege_list(line) {
            match privilege.as_str() {
                "ALL" | "ALL PRIVILEGES" => {
                    p.kill_others = true;
                    p.process = true;
                }
                "SUPER" | "CONNECTION ADMIN" | "CONNECTION_ADMIN" => p.kill_others = true,
                "PROCESS" => p.process = true,
                _ => {}
            }
        }
    }
    p
}

/// The upper-cased privileges of one `GRANT <list> ON *.* TO ...` line;
/// empty for any other line.
fn global_privilege_list(line: &str) -> Vec<String> {
    let line = line.trim();
    let Some(rest) = strip_prefix_ci(line, "GRANT ") else {
        return Vec::new();
    };
    // A global grant line has no column lists, so its first " ON " ends the
    // privilege list.
    let upper = rest.to_ascii_uppercase();
    let Some(on) = upper.find(" ON ") else {
        return Vec::new();
    };
    let object = rest[on + 4..].trim_start();
    if !object.starts_with("*.*") {
        return Vec::new();
    }
    upper[..on]
        .split(',')
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn privs(lines: &[&str]) -> Privileges {
        global_privileges(lines.iter().copied())
    }

    #[test]
    fn mysql_role_privileges_listed_as_the_users() {
        // MySQL 9.7, `ops` with default role `killer` (CONNECTION_ADMIN, PROCESS).
        let p = privs(&[
            "GRANT PROCESS ON *.* TO `ops`@`%`",
            "GRANT CONNECTION_ADMIN ON *.* TO `ops`@`%`",
            "GRANT `killer`@`%` TO `ops`@`%`",
        ]);
        assert_eq!(
            p,
            Privileges {
                kill_others: true,
                process: true
            }
        );
    }

    #[test]
    fn mariadb_spellings() {
        let p = privs(&[
            "GRANT USAGE ON *.* TO `ops`@`%` IDENTIFIED BY PASSWORD '*ABC'",
            "GRANT `killer` TO `ops`@`%`",
            "GRANT PROCESS, CONNECTION ADMIN ON *.* TO `killer`",
        ]);
        assert!(p.kill_others && p.process);
        assert!(
            privs(&["GRANT ALL PRIVILEGES ON *.* TO `tadmin`@`%` WITH GRANT OPTION"]).kill_others
        );
        assert!(privs(&["grant super on *.* to 'x'@'%'"]).kill_others);
    }

    #[test]
    fn names_with_at_quote_percent_and_on_do_not_confuse() {
        // The grantee is never parsed: ` ON *.*` inside a name is after TO.
        let p = privs(&["GRANT PROCESS ON *.* TO `a@b'c%d ON *.* SUPER`@`%`"]);
        assert_eq!(
            p,
            Privileges {
                kill_others: false,
                process: true
            }
        );
    }

    #[test]
    fn non_global_grants_and_role_grants_ignored() {
        let p = privs(&[
            "GRANT ALL PRIVILEGES ON `app`.* TO `app`@`%`",
            "GRANT SELECT ON `performance_schema`.* TO `mon`@`%`",
            "GRANT EXECUTE ON PROCEDURE `mysql`.`rds_kill` TO `app`@`%`",
            "GRANT `super`@`%` TO `app`@`%`",
            "GRANT PROXY ON ''@'' TO 'root'@'localhost' WITH GRANT OPTION",
        ]);
        assert_eq!(p, Privileges::default());
    }
}
