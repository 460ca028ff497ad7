//! Text as shown outside the server: one line, cut by characters (SQL may be
//! Chinese), redacted, measured in terminal columns.

use crate::core::redact;
use crate::core::row::ProcRow;

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
    }
}
