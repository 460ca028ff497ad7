//! The results: one row per figure, one section of bench/results/latest.md
//! per scenario and server, and the file made of them.
//!
//! A run replaces the sections it measured and keeps the others from the
//! previous file, so each scenario (and each server) can be refreshed on
//! its own; every section says when and with what it was measured.

use crate::measure::{median, percentile};
use std::fmt::Write as _;
use std::thread;

pub struct Row {
    pub scenario: String,
    pub unit: &'static str,
    pub mysqk: Vec<f64>,
    pub ptkill: Vec<f64>,
    /// How the single figure is taken from the samples.
    pub pct: f64,
    pub target: String,
    /// Largest ratio that meets the target (None: report only).
    pub max_ratio: Option<f64>,
    /// Absolute limit on mysqk's figure (S2's 150 ms).
    pub max_abs: Option<f64>,
}

impl Row {
    pub fn new(scenario: &str, unit: &'static str, target: &str) -> Row {
        Row {
            scenario: scenario.into(),
            unit,
            mysqk: Vec::new(),
            ptkill: Vec::new(),
            pct: 50.0,
            target: target.into(),
            max_ratio: None,
            max_abs: None,
        }
    }
    pub fn m(&self) -> f64 {
        percentile(&self.mysqk, self.pct)
    }
    pub fn p(&self) -> f64 {
        percentile(&self.ptkill, self.pct)
    }
    /// NaN (shown `n/a`) unless both figures are above zero: S2's median
    /// is negative when most kills came early, and no ratio says anything
    /// then.
    pub fn ratio(&self) -> f64 {
        let (m, p) = (self.m(), self.p());
        if m > 0.0 && p > 0.0 {
            m / p
        } else {
            f64::NAN
        }
    }
    pub fn verdict(&self) -> &'static str {
        let (m, r) = (self.m(), self.ratio());
        if m.is_nan() {
            return "n/a";
        }
        let ok_ratio = self.max_ratio.is_none_or(|x| r <= x);
        let ok_abs = self.max_abs.is_none_or(|x| m <= x);
        if self.max_ratio.is_none() && self.max_abs.is_none() {
            "(report)"
        } else if ok_ratio && ok_abs {
            "met"
        } else {
            "NOT met"
        }
    }
}

pub fn fmt_num(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "n/a".into();
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

pub const TABLE_HEAD: &str =
    "| scenario | server | mysqk | pt-kill | ratio mysqk/pt-kill | target | |\n\
                              |---|---|---:|---:|---:|---|---|\n";

/// A table row of `r` measured on `server` (e.g. `MariaDB 10.11.19`).
pub fn table_line(r: &Row, server: &str) -> String {
    let ratio = r.ratio();
    format!(
        "| {} | {server} | {} | {} | {} | {} | {} |",
        r.scenario,
        fmt_num(r.m(), r.unit),
        fmt_num(r.p(), r.unit),
        // NaN: one tool has no figure; infinite: pt-kill's is 0.
        if !ratio.is_finite() {
            "n/a".into()
        } else {
            format!("{ratio:.3}x")
        },
        r.target,
        r.verdict()
    )
}

/// Every sample, or a summary when there are many (S2: one per query).
pub fn samples(v: &[f64]) -> String {
    if v.len() > 12 {
        return format!(
            "{} samples: min {:.1}, median {:.1}, p95 {:.1}, max {:.1}",
            v.len(),
            percentile(v, 0.0),
            median(v),
            percentile(v, 95.0),
            percentile(v, 100.0)
        );
    }
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
    parts.join(", ")
}

const BEGIN: &str = "<!-- bench ";
const END: &str = "<!-- /bench -->";

/// One scenario on one server, as it stands in the file.
pub struct Section {
    /// `S1`...
    pub id: String,
    /// `mariadb`, `mysql`.
    pub server: String,
    /// From its begin marker to its end marker, both included.
    pub text: String,
}

/// What a section says about the run that measured it.
pub struct Measured<'a> {
    pub server_label: &'a str,
    /// `VERSION()`.
    pub server_version: &'a str,
    pub mysqk: &'a str,
    pub ptkill: &'a str,
    /// The bench's command line.
    pub args: &'a str,
    pub secs: f64,
}

impl Section {
    pub fn new(
        id: &str,
        server: &str,
        m: &Measured,
        rows: &[Row],
        method: &str,
        notes: &[String],
    ) -> Section {
        let mut s = String::new();
        let _ = writeln!(s, "{BEGIN}{id} {server} -->");
        let _ = writeln!(s, "### {id} on {}\n", m.server_label);
        let _ = writeln!(
            s,
            "Measured {} in {:.0} s by `{}`: {}, {}, {}, {} CPUs.\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            m.secs,
            m.args,
            m.mysqk,
            m.ptkill,
            m.server_version,
            thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        );
        s.push_str(TABLE_HEAD);
        for r in rows {
            let _ = writeln!(s, "{}", table_line(r, m.server_label));
        }
        let _ = writeln!(s, "\n{method}\n\nSamples (mysqk | pt-kill):\n");
        for r in rows {
            let _ = writeln!(
                s,
                "- {}: {} | {}",
                r.scenario,
                samples(&r.mysqk),
                samples(&r.ptkill)
            );
        }
        if !notes.is_empty() {
            let _ = writeln!(s, "\nNotes:\n");
            for n in notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s.push_str(END);
        s.push('\n');
        Section {
            id: id.into(),
            server: server.into(),
            text: s,
        }
    }

    /// The rows of its table.
    fn table_lines(&self) -> impl Iterator<Item = &str> {
        self.text
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| scenario |"))
    }
}

/// The sections of a file written by [`document`] (none from any other
/// text: an older file is simply replaced).
pub fn parse(md: &str) -> Vec<Section> {
    let mut out = Vec::new();
    let mut rest = md;
    while let Some(a) = rest.find(BEGIN) {
        let Some(len) = rest[a..].find(END) else {
            break;
        };
        let text = &rest[a..a + len + END.len()];
        let head = text[BEGIN.len()..].split(" -->").next().unwrap_or("");
        let mut words = head.split_whitespace();
        if let (Some(id), Some(server)) = (words.next(), words.next()) {
            out.push(Section {
                id: id.into(),
                server: server.into(),
                text: format!("{text}\n"),
            });
        }
        rest = &rest[a + len + END.len()..];
    }
    out
}

/// The whole file: every section's rows in one table, then the sections.
pub fn document(sections: &[Section]) -> String {
    let mut md = String::from(
        "# mysqk vs pt-kill\n\n\
         Each scenario on each server is a section below, which says when and with \
         what it was measured; a run (`--only`, `--server`) replaces the sections it \
         ran and keeps the others. Figures are medians over the rounds (S2: over every \
         query of every round; S4 CPU: the sum of the rounds' windows; S6: counts over all \
         rounds).\n\n",
    );
    md.push_str(TABLE_HEAD);
    for s in sections {
        for l in s.table_lines() {
            md.push_str(l);
            md.push('\n');
        }
    }
    md.push_str("\n## Sections\n");
    for s in sections {
        md.push('\n');
        md.push_str(&s.text);
    }
    md
}
