//! One time zone for every timestamp mysqk writes: log lines, one-shot
//! output, snapshot names and headers, mail, JSON, the status file. Local
//! time with its UTC offset by default; UTC with `[settings] log_utc = 1`.
//! (Only what is *shown* changes: `run_time_window` stays local time.)
//!
//! A process-wide switch rather than a parameter: the logger formats lines
//! from every thread and is set up before the config is read.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Local, SecondsFormat, Utc};

static UTC: AtomicBool = AtomicBool::new(false);

/// Show every timestamp in UTC (`true`) or local time (`false`) from now on.
pub fn set_utc(utc: bool) {
    UTC.store(utc, Ordering::Relaxed);
}

pub fn utc() -> bool {
    UTC.load(Ordering::Relaxed)
}

/// `t` formatted with a chrono format string in the chosen zone.
pub fn format(t: DateTime<Local>, fmt: &str) -> String {
    format_in(t, fmt, utc())
}

fn format_in(t: DateTime<Local>, fmt: &str, utc: bool) -> String {
    if utc {
        t.with_timezone(&Utc).format(fmt).to_string()
    } else {
        t.format(fmt).to_string()
    }
}

/// RFC 3339 in the chosen zone: `2026-12-01T10:14:17+01:00`, or `...Z` in UTC.
pub fn rfc3339(t: DateTime<Local>, precision: SecondsFormat) -> String {
    rfc3339_in(t, precision, utc())
}

fn rfc3339_in(t: DateTime<Local>, precision: SecondsFormat, utc: bool) -> String {
    if utc {
        t.with_timezone(&Utc).to_rfc3339_opts(precision, true)
    } else {
        t.to_rfc3339_opts(precision, false)
    }
}

/// The stamp at the start of a log line or a one-shot output line: RFC 3339
/// to the millisecond, so lines of one pass can be told apart.
pub fn stamp(t: DateTime<Local>) -> String {
    rfc3339(t, SecondsFormat::Millis)
}

pub fn stamp_now() -> String {
    stamp(Local::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn local_with_offset_or_utc() {
        // The switch itself is process-wide; the formats are tested per zone.
        let t = Local.timestamp_opt(1_800_000_000, 0).unwrap();
        let offset = t.format("%:z").to_string();
        let local = rfc3339_in(t, SecondsFormat::Millis, false);
        assert!(local.ends_with(&format!(".000{offset}")), "{local}");
        assert_eq!(format_in(t, "%z", false), t.format("%z").to_string());
        assert_eq!(
            rfc3339_in(t, SecondsFormat::Millis, true),
            "2027-01-15T08:00:00.000Z"
        );
        assert_eq!(
            rfc3339_in(t, SecondsFormat::Secs, true),
            "2027-01-15T08:00:00Z"
        );
        assert_eq!(
            format_in(t, "%Y%m%d-%H%M%S %z", true),
            "20270115-080000 +0000"
        );
    }
}
