//! What is measured: CPU and memory from /proc, server counters, and the
//! statistics taken over the samples.

use mysql::prelude::*;
use mysql::Conn;
use std::fs;

/// CPU time (user+system) of a process, read two ways: clock ticks from
/// /proc/PID/stat (10 ms steps, but they include threads that have exited)
/// and the scheduler's per-thread runtime from /proc/PID/task/*/sched
/// (nanoseconds, live threads only; needs CONFIG_SCHED_DEBUG).
#[derive(Clone, Copy)]
pub struct Cpu {
    pub ticks: f64,
    pub precise: Option<f64>,
}

pub fn read_cpu(pid: i32) -> Cpu {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`, which may itself hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut precise = None;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let text = fs::read_to_string(t.path().join("sched")).unwrap_or_default();
            let ms = text
                .lines()
                .find(|l| l.starts_with("se.sum_exec_runtime"))
                .and_then(|l| l.rsplit(':').next())
                .and_then(|v| v.trim().parse::<f64>().ok());
            if let Some(ms) = ms {
                precise = Some(precise.unwrap_or(0.0) + ms / 1000.0);
            }
        }
    }
    Cpu {
        ticks: (tick(11) + tick(12)) / hz,
        precise,
    }
}

/// CPU seconds spent between two readings: the precise figure unless a
/// thread exited in between (the tick count is then ahead by more than its
/// 10 ms steps can explain).
pub fn cpu_spent(a: &[Cpu], b: &[Cpu]) -> f64 {
    let ticks: f64 = b.iter().zip(a).map(|(b, a)| b.ticks - a.ticks).sum();
    let precise: Option<f64> = b
        .iter()
        .zip(a)
        .map(|(b, a)| Some(b.precise? - a.precise?))
        .sum();
    match precise {
        Some(p) if (ticks - p).abs() <= 0.011 * b.len() as f64 + 0.05 * ticks => p,
        _ => ticks,
    }
}

/// A `kB` field of /proc/PID/status or smaps_rollup, in kB.
pub fn proc_kb(pid: i32, file: &str, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn global_status(c: &mut Conn, name: &str) -> u64 {
    let row: Option<(String, u64)> = c
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .unwrap_or_else(|e| panic!("SHOW GLOBAL STATUS: {e}"));
    row.map(|r| r.1).unwrap_or(0)
}

pub fn median(v: &[f64]) -> f64 {
    percentile(v, 50.0)
}

/// Nearest-rank percentile.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// xorshift64*: random start moments without a crate.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Rng(seed | 1)
    }
    /// One generator per client thread, seeded from another.
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
