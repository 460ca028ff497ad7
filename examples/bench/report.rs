//! The results: one row per figure, and the markdown table.

use crate::measure::{median, percentile};
use std::fmt::Write as _;

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
    pub fn ratio(&self) -> f64 {
        self.m() / self.p()
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
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

pub fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| scenario | mysqk | pt-kill | ratio mysqk/pt-kill | target | |\n|---|---:|---:|---:|---|---|\n",
    );
    for r in rows {
        let ratio = r.ratio();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario,
            fmt_num(r.m(), r.unit),
            fmt_num(r.p(), r.unit),
            if ratio.is_nan() {
                "n/a".into()
            } else {
                format!("{ratio:.3}x")
            },
            r.target,
            r.verdict()
        );
    }
    t
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
