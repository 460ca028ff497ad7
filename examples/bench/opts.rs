//! Command-line options of the bench.

use crate::server::Flavor;
use std::path::PathBuf;
use std::process::exit;

pub struct Opts {
    pub mysqk: PathBuf,
    pub rounds: usize,
    pub out: PathBuf,
    pub only: Option<Vec<String>>,
    /// The servers to run on, in this order (`--server`).
    pub servers: Vec<Flavor>,
    pub s1_conns: usize,
    pub s2_queries: usize,
    pub s2_spread: f64,
    pub s3_conns: usize,
    pub s3_window: u64,
    pub s4_instances: usize,
    pub s4_window: u64,
    pub s4_settle: u64,
    pub s4_big: usize,
    pub s4_ptkill_big: bool,
    pub s5_rounds: usize,
    pub s6_conns: usize,
    pub s6_window: u64,
    pub s7_tries: usize,
    pub keep: bool,
}

pub const USAGE: &str =
    "usage: bench [--mysqk PATH] [--rounds N (3)] [--out FILE] [--only S1,S2,...]\n\
    [--server mariadb|mysql|both (both)]\n\
    [--s1-conns N (2000)] [--s2-queries N (20)] [--s2-spread SECS (6)]\n\
    [--s3-conns N (3000)] [--s3-window SECS (20)] [--s4-instances N (50)]\n\
    [--s4-settle SECS (600)] [--s4-window SECS (60)] [--s4-big N (500)]\n\
    [--s4-ptkill-big] [--s5-rounds N (5)] [--s6-conns N (40)]\n\
    [--s6-window SECS (22)] [--s7-tries N (25)] [--keep]";

pub fn usage_error(msg: &str) -> ! {
    eprintln!("bench: {msg}\n{USAGE}");
    exit(2);
}

pub fn parse_opts() -> Opts {
    let mut o = Opts {
        // target/release/examples/bench -> target/release/mysqk
        mysqk: std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("mysqk")))
            .unwrap_or_else(|| PathBuf::from("target/release/mysqk")),
        rounds: 3,
        out: PathBuf::from("bench/results/latest.md"),
        only: None,
        servers: vec![Flavor::MariaDb, Flavor::MySql],
        s1_conns: 2000,
        s2_queries: 20,
        s2_spread: 6.0,
        s3_conns: 3000,
        s3_window: 20,
        s4_instances: 50,
        s4_window: 60,
        s4_settle: 600,
        s4_big: 500,
        s4_ptkill_big: false,
        s5_rounds: 5,
        s6_conns: 40,
        s6_window: 22,
        s7_tries: 25,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0);
            }
            "--keep" => {
                o.keep = true;
                continue;
            }
            "--s4-ptkill-big" => {
                o.s4_ptkill_big = true;
                continue;
            }
            _ => {}
        }
        let v = it
            .next()
            .unwrap_or_else(|| usage_error(&format!("{flag} needs a value")));
        let n = || -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage_error(&format!("{flag}: not a number: {v}")))
        };
        match flag.as_str() {
            "--mysqk" => o.mysqk = PathBuf::from(&v),
            "--rounds" => o.rounds = n().max(1) as usize,
            "--out" => o.out = PathBuf::from(&v),
            "--only" => {
                o.only = Some(v.split(',').map(|s| s.trim().to_uppercase()).collect());
            }
            "--server" => {
                o.servers = match v.as_str() {
                    "mariadb" => vec![Flavor::MariaDb],
                    "mysql" => vec![Flavor::MySql],
                    "both" => vec![Flavor::MariaDb, Flavor::MySql],
                    _ => usage_error(&format!("--server: mariadb, mysql or both, not {v}")),
                }
            }
            "--s1-conns" => o.s1_conns = n() as usize,
            "--s2-queries" => o.s2_queries = n() as usize,
            "--s2-spread" => {
                o.s2_spread = v
                    .parse()
                    .unwrap_or_else(|_| usage_error(&format!("{flag}: not a number: {v}")))
            }
            "--s3-conns" => o.s3_conns = n() as usize,
            "--s3-window" => o.s3_window = n().max(1),
            "--s4-instances" => o.s4_instances = n().max(1) as usize,
            "--s4-window" => o.s4_window = n().max(1),
            "--s4-settle" => o.s4_settle = n(),
            "--s4-big" => o.s4_big = n().max(1) as usize,
            "--s5-rounds" => o.s5_rounds = n().max(1) as usize,
            "--s6-conns" => o.s6_conns = n().max(1) as usize,
            "--s6-window" => o.s6_window = n().max(1),
            "--s7-tries" => o.s7_tries = n().max(1) as usize,
            _ => usage_error(&format!("unknown flag {flag}")),
        }
    }
    o
}

impl Opts {
    pub fn wants(&self, s: &str) -> bool {
        self.only.as_ref().is_none_or(|l| l.iter().any(|x| x == s))
    }
}
