//! Statement text that carries a password (`IDENTIFIED BY '…'`,
//! `PASSWORD('…')`, `MASTER_PASSWORD='…'`) is masked before it reaches a log,
//! a snapshot, a mail or a hook.

use std::sync::OnceLock;

use regex::Regex;

fn patterns() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // Quoted literal with backslash or doubled-quote escapes.
        let lit = r#"(?:'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")"#;
        let re = format!(
            r"(?i)(identified\s+(?:with\s+\S+\s+)?(?:by|as)\s+(?:password\s+)?|password\s*\(\s*|(?:master_|primary_)?password\s*=\s*|set\s+password\s+(?:for\s+\S+\s+)?=\s*(?:password\s*\(\s*)?){lit}"
        );
        Regex::new(&re).expect("static redaction regex")
    })
}

/// `info` with every password literal replaced by `'***'`.
pub fn sql(info: &str) -> String {
    patterns().replace_all(info, "$1'***'").into_owned()
}

#[cfg(test)]
mod tests {
    use super::sql;

    #[test]
    fn masks_password_literals() {
        let cases = [
            (
                "CREATE USER u IDENTIFIED BY 's3cret'",
                "CREATE USER u IDENTIFIED BY '***'",
            ),
            (
                "alter user 'u'@'%' identified by \"p'w\"",
                "alter user 'u'@'%' identified by '***'",
            ),
            (
                "SET PASSWORD FOR u = PASSWORD('abc')",
                "SET PASSWORD FOR u = PASSWORD('***')",
            ),
            (
                "CHANGE MASTER TO MASTER_PASSWORD='x\\'y', MASTER_USER='r'",
                "CHANGE MASTER TO MASTER_PASSWORD='***', MASTER_USER='r'",
            ),
            (
                "GRANT ALL ON *.* TO u IDENTIFIED WITH mysql_native_password AS '*ABC'",
                "GRANT ALL ON *.* TO u IDENTIFIED WITH mysql_native_password AS '***'",
            ),
            ("select sleep(60) /* 中文 */", "select sleep(60) /* 中文 */"),
        ];
        for (input, want) in cases {
            assert_eq!(sql(input), want, "{input}");
        }
    }
}
