//! Text as shown outside the server: the one neutralising function
//! ([`neutral`]) every output passes server text through, one-line cuts by
//! characters (SQL may be Chinese), redaction, terminal columns.
//!
//! Server text is attacker-controlled (a database named `\x1b[31m`, a
//! statement carrying `\n== victims and actions ==`): it never reaches a
//! terminal or a file with a control character in it, and multi-line server
//! text is framed ([`framed`]) so no line of it can pass for mysqk's own.

use std::fmt::Write;

use crate::core::redact;
use crate::core::row::ProcRow;

/// Characters that change how text is shown rather than what it says: C0
/// (newline, tab, CR included), DEL, C1, and the Unicode line/paragraph
/// separators and bidirectional overrides (which reorder what a reader sees).
pub fn is_unsafe(c: char) -> bool {
    matches!(u32::from(c),
        0x00..=0x1F | 0x7F..=0x9F | 0x2028 | 0x2029 | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)
}

/// `s` on one line with every [`is_unsafe`] character written as a visible
/// escape (`\n`, `\t`, `\r`, `\e` for ESC, else `\xNN` / `\u{NNNN}`), so an
/// ANSI sequence is shown, not obeyed. The one neutralising function: every
/// output of server text goes through it (or through [`framed`]).
pub fn neutral(s: &str) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            c if is_unsafe(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Multi-line server text for a snapshot: every line [`neutral`] and behind
/// `prefix`, so `== victims and actions ==` inside a statement reads
/// `  | == victims and actions ==` and never as a section of mysqk's own.
pub fn framed(s: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(s.len() + 64);
    for line in s.trim_end_matches('\n').split('\n') {
        out.push_str(prefix);
        out.push_str(&neutral(line));
        out.push('\n');
    }
    out
}

/// A value in a `key=value` log line: [`neutral`], and quoted (with `\"`,
/// `\\`) when it is empty or holds a space, quote, `=` or backslash, so a
/// user or host name with spaces cannot fake another field.
pub fn log_value(s: &str) -> String {
    let n = neutral(s);
    if !n.is_empty()
        && !n
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\')
    {
        return n;
    }
    let mut out = String::with_capacity(n.len() + 2);
    out.push('"');
    for c in n.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Cut `s` to `max` characters (not bytes: SQL may be Chinese), one line:
/// line breaks and tabs read as spaces, other unsafe characters as escapes.
pub fn cut(s: &str, max: usize) -> String {
    let spaced: String = s
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let flat = neutral(&spaced);
    if flat.chars().count() <= max {
        flat
    } else {
        let mut t: String = flat.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The statement text as shown anywhere outside the server: redacted, then
/// neutralised and cut.
pub fn info_text(row: &ProcRow, max: usize) -> String {
    row.info
        .as_deref()
        .map(|i| cut(&redact::sql(i), max))
        .unwrap_or_default()
}

/// Rows of cells as an aligned text table under a header: each column as
/// wide as its widest cell (in terminal columns), two spaces between.
pub fn align(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(width(c));
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - width(c) + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Columns a string takes in a terminal, so tables with Chinese SQL line up.
pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// Terminal columns of a character as the mysql client counts them: two for
/// East Asian wide/fullwidth characters, one otherwise.
pub fn char_width(c: char) -> usize {
    let wide = matches!(u32::from(c),
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6);
    if wide {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_counts_chars() {
        assert_eq!(cut("中文中文中文", 4), "中文中…");
        assert_eq!(cut("a\nb", 10), "a b");
        assert_eq!(cut("a\x1b[31mb", 20), "a\\e[31mb");
    }

    #[test]
    fn neutral_shows_what_would_be_obeyed() {
        assert_eq!(
            neutral("db\x1b[31m\x07\x7f\u{85}\u{202e}"),
            "db\\e[31m\\x07\\x7f\\x85\\u{202e}"
        );
        assert_eq!(neutral("中文 ok"), "中文 ok");
        assert_eq!(
            framed("a\n== victims and actions ==\n", "  | "),
            "  | a\n  | == victims and actions ==\n"
        );
        assert_eq!(log_value("app"), "app");
        assert_eq!(log_value("a b"), "\"a b\"");
        assert_eq!(log_value("x\" y=\\"), "\"x\\\" y=\\\\\"");
        assert_eq!(log_value(""), "\"\"");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2_000, ..Default::default() })]
        #[test]
        fn neutral_leaves_no_control_character(s in "\\PC*|[\\x00-\\x{9f}\\x{2028}\\x{202e}a \\x22\\x5c=]*") {
            for out in [neutral(&s), cut(&s, 50), log_value(&s)] {
                proptest::prop_assert!(!out.chars().any(is_unsafe), "{s:?} -> {out:?}");
            }
            // A log value reads back as exactly the neutral text, whatever it holds.
            let v = log_value(&s);
            let back = match v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
                Some(inner) => {
                    let mut out = String::new();
                    let mut it = inner.chars();
                    while let Some(c) = it.next() {
                        match c {
                            '\\' => out.extend(it.next()),
                            '"' => proptest::prop_assert!(false, "raw quote inside {v:?}"),
                            c => out.push(c),
                        }
                    }
                    out
                }
                None => {
                    proptest::prop_assert!(!v.contains(' ') && !v.contains('"'), "{v:?}");
                    v.clone()
                }
            };
            proptest::prop_assert_eq!(back, neutral(&s));
            let f = framed(&s, "  | ");
            proptest::prop_assert!(f.lines().all(|l| l.starts_with("  | ")));
            proptest::prop_assert!(!f.chars().any(|c| c != '\n' && is_unsafe(c)));
        }
    }
}
