//! Human-readable tables of what matched and what was done.

use crate::killer::Outcome;
use crate::redact;
use crate::row::ProcRow;

/// Cut `s` to `max` characters (not bytes: SQL may be Chinese), one line.
pub fn cut(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut t: String = flat.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The statement text as shown anywhere outside the server: redacted and cut.
pub fn info_text(row: &ProcRow, max: usize) -> String {
    row.info
        .as_deref()
        .map(|i| cut(&redact::sql(i), max))
        .unwrap_or_default()
}

/// Columns a string takes in a terminal, so tables with Chinese SQL line up.
fn width(s: &str) -> usize {
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

/// Render rows of cells as an aligned text table with a header.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(width(c));
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
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

/// The victims table: id, user, host, db, command, time, info, reason, action, result.
pub fn outcomes_table(outcomes: &[Outcome], info_width: usize) -> String {
    let header = [
        "ID", "USER", "HOST", "DB", "COMMAND", "TIME", "INFO", "REASON", "ACTION", "RESULT",
    ];
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let r = &o.victim.row;
            vec![
                r.id.to_string(),
                r.user.clone(),
                r.host.clone(),
                r.db.clone().unwrap_or_default(),
                r.command.clone(),
                r.time.to_string(),
                info_text(r, info_width),
                o.victim.reason_text(),
                o.action.label().to_string(),
                o.result.text(),
            ]
        })
        .collect();
    render(&header, &rows)
}

/// The log line written for each kill (SPEC 5).
pub fn log_line(dbid: &str, o: &Outcome) -> String {
    let r = &o.victim.row;
    format!(
        "{dbid}: thread {} user={} host={} command={} time={}s info=\"{}\" reason=\"{}\" action={} result=\"{}\"",
        r.id,
        r.user,
        r.host,
        r.command,
        r.time,
        info_text(r, 100),
        o.victim.reason_text(),
        o.action.label(),
        o.result.text()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_wide_characters() {
        let t = render(
            &["INFO", "X"],
            &[
                vec!["中文".into(), "1".into()],
                vec!["abcd".into(), "2".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        // "中文" is four terminal columns wide, like "abcd": the X column lines up.
        assert_eq!(lines[1], "中文  1");
        assert_eq!(lines[2], "abcd  2");
    }

    #[test]
    fn cut_counts_chars() {
        assert_eq!(cut("中文中文中文", 4), "中文中…");
        assert_eq!(cut("a\nb", 10), "a b");
    }
}
