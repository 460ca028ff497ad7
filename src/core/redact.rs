//! The one masking function for statement text: every output (terminal
//! table, log, snapshot, JSON, mail, hook, status file) shows server SQL only
//! through [`sql`].
//!
//! Matching the grammar of each password-bearing statement (`IDENTIFIED BY`,
//! `PASSWORD(…)`, `MASTER_PASSWORD=`, `CREATE SERVER … OPTIONS (PASSWORD …)`,
//! `REPLACE 'old'`, FEDERATED `CONNECTION='mysql://u:pw@…'`, …) misses the
//! next form a server version adds, and each form has spellings a pattern
//! does not foresee (`IDENTIFIED /*c*/ BY`, `FOR u@'%'='x'`, `_utf8mb4'x'`).
//! So the decision is coarse on purpose: a statement that mentions anything
//! secret-like ([`bears_secret`]) gets *every* literal masked, and wherever
//! the lexing is in doubt (a literal cut off by the server's truncation, a
//! backslash whose meaning depends on `NO_BACKSLASH_ESCAPES`, an unclosed
//! comment or identifier) the rest of the statement is masked. Statements
//! without such a word keep their literals: they are the evidence.

/// Words (lower case) that make a statement password-bearing. Substrings on
/// purpose: `master_password`, `source_password`, `aes_encrypt` all match,
/// and so does a word inside a literal or comment (over-masking is safe).
const TRIGGERS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "identified",
    // `UPDATE mysql.user SET authentication_string=…`, mysql.global_priv.
    "authentication",
    "credential",
    "token",
    // FEDERATED `CONNECTION='mysql://user:pw@host/db/t'`, CREATE SERVER.
    "connection",
    "://",
    "server",
    // Keys of the encryption functions (AES_ENCRYPT(x, 'key'), ENCODE, …).
    "encrypt",
    "decrypt",
    "encode",
    "decode",
    "secret",
    "key_",
    // Statements that carry a password by their kind: a text the server cut
    // before its PASSWORD word is still masked.
    "change master",
    "change replication",
    "start slave",
    "start replica",
    "create user",
    "alter user",
    "grant ",
    "federated",
];

/// What replaces a literal's content, and the whole rest of a statement.
const MASK: &str = "***";

/// True when `text` may carry a secret: then [`sql`] masks all its literals.
pub fn bears_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    TRIGGERS.iter().any(|t| lower.contains(t))
}

/// `text` with every literal of a password-bearing statement masked
/// (`'x'` -> `'***'`, `0x70` -> `0x***`), and the rest of the statement masked
/// from the first place where the lexing is ambiguous. Other statements are
/// returned unchanged. Works on whole statements and on blobs that quote
/// statements (`SHOW ENGINE INNODB STATUS`).
pub fn sql(text: &str) -> String {
    if !bears_secret(text) {
        return text.to_string();
    }
    mask(text)
}

fn mask(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    // Start of the plain run not yet copied; every cut is at an ASCII byte,
    // so every slice is on a char boundary.
    let mut plain = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            b'\'' | b'"' => {
                out.push_str(&s[plain..i]);
                match literal_end(b, i) {
                    // A word glued to the closing quote (`'BY 'pw''`, as a
                    // server error quotes a statement) means the quotes are
                    // not SQL's: in doubt, the rest is masked.
                    Some(end) if b.get(end).is_some_and(|&c| is_word(c) || c >= 0x80) => {
                        out.push_str(MASK);
                        return out;
                    }
                    Some(end) => {
                        out.push('\'');
                        out.push_str(MASK);
                        out.push('\'');
                        i = end;
                        plain = i;
                    }
                    // Cut off or escape-ambiguous: the rest may all be secret.
                    None => {
                        out.push_str(MASK);
                        return out;
                    }
                }
            }
            b'`' => match b[i + 1..].iter().position(|&x| x == b'`') {
                // `` `a``b` `` reads as two identifiers here: same text either way.
                Some(p) => i += p + 2,
                None => {
                    out.push_str(&s[plain..i]);
                    out.push_str(MASK);
                    return out;
                }
            },
            b'/' if next == Some(b'*') => {
                let after = &b[i + 2..];
                let executable =
                    matches!(after.first(), Some(b'!' | b'+')) || after.starts_with(b"M!");
                if executable {
                    // `/*!80000 IDENTIFIED BY 'x' */` is SQL the server runs:
                    // lex on inside it; its `*/` is plain text.
                    i += 2;
                    continue;
                }
                out.push_str(&s[plain..i]);
                match after.windows(2).position(|w| w == b"*/") {
                    Some(p) => {
                        // The server ends a comment at the first `*/`; its
                        // text is masked on its own, so a quote in it (`it's`)
                        // cannot shift the lexing of what follows.
                        out.push_str("/*");
                        out.push_str(&mask(&s[i + 2..i + 2 + p]));
                        out.push_str("*/");
                        i += 2 + p + 2;
                        plain = i;
                    }
                    None => {
                        out.push_str(MASK);
                        return out;
                    }
                }
            }
            b'#' => {
                out.push_str(&s[plain..i]);
                let end = line_end(b, i);
                out.push('#');
                out.push_str(&mask(&s[i + 1..end]));
                i = end;
                plain = i;
            }
            b'-' if next == Some(b'-')
                && b.get(i + 2)
                    .is_none_or(|x| x.is_ascii_whitespace() || *x < 0x20) =>
            {
                out.push_str(&s[plain..i]);
                let end = line_end(b, i);
                out.push_str("--");
                out.push_str(&mask(&s[i + 2..end]));
                i = end;
                plain = i;
            }
            b'0' if matches!(next, Some(b'x' | b'X' | b'b' | b'B'))
                && (i == 0 || !is_word(b[i - 1]))
                && b.get(i + 2).is_some_and(|x| x.is_ascii_hexdigit()) =>
            {
                out.push_str(&s[plain..i + 2]);
                out.push_str(MASK);
                i += 2;
                while i < b.len() && is_word(b[i]) {
                    i += 1;
                }
                plain = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&s[plain..]);
    out
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

fn line_end(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&x| x == b'\n')
        .map_or(b.len(), |p| from + p)
}

/// The index just past the literal that opens at `start`, or `None` when it
/// never closes (truncated) or holds a backslash: `'a\'` is a whole literal
/// under `NO_BACKSLASH_ESCAPES` and the start of a longer one without it, so
/// what follows cannot be told apart from the literal.
fn literal_end(b: &[u8], start: usize) -> Option<usize> {
    let q = b[start];
    let mut j = start + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => return None,
            x if x == q => {
                if b.get(j + 1) == Some(&q) {
                    j += 2;
                } else {
                    return Some(j + 1);
                }
            }
            _ => j += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_every_form_of_the_issue() {
        let cases = [
            (
                "CREATE USER u IDENTIFIED BY 's3cret'",
                "CREATE USER u IDENTIFIED BY '***'",
            ),
            (
                "alter user 'u'@'%' identified by \"p'w\"",
                "alter user '***'@'***' identified by '***'",
            ),
            (
                "SET PASSWORD FOR u = PASSWORD('abc')",
                "SET PASSWORD FOR u = PASSWORD('***')",
            ),
            (
                "CHANGE MASTER TO MASTER_PASSWORD='x\\'y', MASTER_USER='r'",
                "CHANGE MASTER TO MASTER_PASSWORD=***",
            ),
            (
                "GRANT ALL ON *.* TO u IDENTIFIED WITH mysql_native_password AS '*ABC'",
                "GRANT ALL ON *.* TO u IDENTIFIED WITH mysql_native_password AS '***'",
            ),
            (
                "ALTER USER u IDENTIFIED /*c*/ BY 'x1'",
                "ALTER USER u IDENTIFIED /*c*/ BY '***'",
            ),
            (
                "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (HOST 'h', PASSWORD 'x2')",
                "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (HOST '***', PASSWORD '***')",
            ),
            (
                "ALTER USER u IDENTIFIED BY 'new' REPLACE 'old'",
                "ALTER USER u IDENTIFIED BY '***' REPLACE '***'",
            ),
            (
                "SET PASSWORD = 'n' REPLACE 'old'",
                "SET PASSWORD = '***' REPLACE '***'",
            ),
            (
                "SET PASSWORD FOR u@'%'='x3'",
                "SET PASSWORD FOR u@'***'='***'",
            ),
            (
                "SET PASSWORD FOR 'a b'@'%' = 'x4'",
                "SET PASSWORD FOR '***'@'***' = '***'",
            ),
            (
                "CREATE TABLE t (a int) ENGINE=FEDERATED CONNECTION='mysql://r:pw@h:3306/d/t'",
                "CREATE TABLE t (a int) ENGINE=FEDERATED CONNECTION='***'",
            ),
            (
                "SET PASSWORD = _utf8mb4'x5' ",
                "SET PASSWORD = _utf8mb4'***' ",
            ),
            ("SET PASSWORD = N'x6'", "SET PASSWORD = N'***'"),
            ("SET PASSWORD = x'7836'", "SET PASSWORD = x'***'"),
            ("SET PASSWORD = 0x7836", "SET PASSWORD = 0x***"),
            // Cut off by the server's truncation.
            (
                "ALTER USER u IDENTIFIED BY 'Trunc",
                "ALTER USER u IDENTIFIED BY ***",
            ),
            (
                "ALTER USER u /*!80000 IDENTIFIED BY 'x7' */",
                "ALTER USER u /*!80000 IDENTIFIED BY '***' */",
            ),
            (
                "ALTER USER u IDENTIFIED BY /* unclosed 'x8'",
                "ALTER USER u IDENTIFIED BY ***",
            ),
            ("select sleep(60) /* 中文 */", "select sleep(60) /* 中文 */"),
            ("select 'kept' from t", "select 'kept' from t"),
            (
                "You have an error in your SQL syntax near 'IDENTIFIED BY 'pw1'' at line 1",
                "You have an error in your SQL syntax near ***",
            ),
            (
                "UPDATE mysql.user SET authentication_string='*AB12' WHERE user='u'",
                "UPDATE mysql.user SET authentication_string='***' WHERE user='***'",
            ),
            (
                "SELECT id FROM users WHERE name='bob' AND pwd=MD5('hunter2')",
                "SELECT id FROM users WHERE name='***' AND pwd=MD5('***')",
            ),
            (
                "SELECT SLEEP(60) /* ALTER USER x IDENTIFIED BY 'lit' */",
                "SELECT SLEEP(60) /* ALTER USER x IDENTIFIED BY '***' */",
            ),
            (
                "/* it's */ ALTER USER u IDENTIFIED BY 'pw' # it's 'x'\n-- 'y",
                "/* it****/ ALTER USER u IDENTIFIED BY '***' # it***\n-- ***",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(sql(input), want, "{input}");
        }
    }

    /// SQL quoting of `s` in one of the two escape styles.
    fn quote(s: &str, backslash: bool, q: char) -> String {
        let body = if backslash {
            s.replace('\\', "\\\\").replace(q, &format!("\\{q}"))
        } else {
            s.replace(q, &format!("{q}{q}"))
        };
        format!("{q}{body}{q}")
    }

    /// Every secret starts and ends with a marker no template contains, so
    /// "no part of it survives" is checkable without knowing where it was cut.
    const HEAD: &str = "S3c";
    const TAIL: &str = "Zk9";

    fn secret() -> impl Strategy<Value = String> {
        // Quotes, backslashes, comment markers, spaces, newlines, Chinese.
        proptest::string::string_regex(r"[a-zA-Z0-9 '\x22\\/*#\-;=@%()\n中文]{0,12}")
            .expect("regex")
            .prop_map(|m| format!("{HEAD}{m}{TAIL}"))
    }

    fn user() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("u".to_string()),
            Just("'a b'@'%'".to_string()),
            Just("u@'%'".to_string()),
            Just("`app`@`10.0.0.%`".to_string()),
            Just("'o''k'@localhost".to_string()),
        ]
    }

    /// A password-bearing statement with `pw` (already quoted) in it.
    fn statement() -> impl Strategy<Value = (String, String)> {
        let forms = prop_oneof![
            Just("CREATE USER {u} IDENTIFIED BY {pw}"),
            Just("ALTER USER {u} IDENTIFIED /*c*/ BY {pw}"),
            Just("alter user {u} identified by {pw} replace {pw}"),
            Just("GRANT ALL ON *.* TO {u} IDENTIFIED WITH mysql_native_password AS {pw}"),
            Just("CREATE USER {u} IDENTIFIED VIA ed25519 USING PASSWORD({pw})"),
            Just("SET PASSWORD FOR {u}={pw}"),
            Just("SET PASSWORD FOR {u} = PASSWORD({pw})"),
            Just("SET PASSWORD = {pw} REPLACE {pw}"),
            Just("CHANGE MASTER TO MASTER_HOST='h', MASTER_PASSWORD={pw}, MASTER_PORT=3306"),
            Just("CHANGE REPLICATION SOURCE TO SOURCE_PASSWORD = {pw}"),
            Just("CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (USER 'r', PASSWORD {pw})"),
            Just("CREATE TABLE t (a int) ENGINE=FEDERATED CONNECTION={pw}"),
            Just("ALTER USER {u} /*!80000 IDENTIFIED BY {pw} */ ACCOUNT UNLOCK"),
            Just("SELECT AES_ENCRYPT(c, {pw}) FROM t"),
            Just("ALTER USER {u} IDENTIFIED BY _utf8mb4{pw}"),
            Just("ALTER USER {u} IDENTIFIED BY N{pw}"),
        ];
        (
            forms,
            user(),
            secret(),
            any::<bool>(),
            prop_oneof![Just('\''), Just('"')],
            prop_oneof![Just(""), Just("/* note */ "), Just("-- x\n"), Just("# x\n")],
        )
            .prop_map(|(form, u, pw, backslash, q, lead)| {
                let lit = quote(&pw, backslash, q);
                let stmt = format!("{lead}{}", form.replace("{u}", &u).replace("{pw}", &lit));
                (stmt, pw)
            })
    }

    fn assert_masked(out: &str, input: &str) {
        assert!(
            !out.contains(HEAD) && !out.contains(TAIL),
            "secret survived:\n in: {input:?}\nout: {out:?}"
        );
        if !bears_secret(input) {
            // Cut before anything tells what it is (`SELECT AES_EN`): the
            // secret, which follows, is cut away too (checked above).
            return;
        }
        // Not only the generated secret: no literal at all is left (every
        // quote in the output belongs to a `'***'`).
        let rest = out.replace("'***'", "");
        assert!(
            !rest.contains('\'') && !rest.contains('"'),
            "a literal survived:\n in: {input:?}\nout: {out:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

        /// No literal of a password-bearing statement survives, whole or cut
        /// anywhere (the server truncates INFO), alone or inside a blob.
        #[test]
        fn no_password_literal_survives((stmt, _pw) in statement(), cut in any::<prop::sample::Index>()) {
            prop_assert!(bears_secret(&stmt), "{stmt}");
            assert_masked(&sql(&stmt), &stmt);
            let chars: Vec<char> = stmt.chars().collect();
            let cut: String = chars[..cut.index(chars.len() + 1)].iter().collect();
            assert_masked(&sql(&cut), &cut);
            let blob = format!("---TRANSACTION 42, ACTIVE 3 sec\nMySQL thread id 7, query id 9 localhost app\n{stmt}\n--------\n");
            assert_masked(&sql(&blob), &blob);
        }

        /// Hex literals carry a password as digits.
        #[test]
        fn hex_literals_are_masked(bytes in proptest::collection::vec(any::<u8>(), 4..16)) {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            for stmt in [format!("SET PASSWORD = x'{hex}'"), format!("SET PASSWORD = 0x{hex}")] {
                let out = sql(&stmt);
                prop_assert!(!out.contains(&hex), "{stmt} -> {out}");
            }
        }
    }
}
