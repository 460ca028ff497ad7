//! What every scenario gets (`Ctx`) and what it is (`Scenario`): a new
//! scenario is a file `sN.rs` with its `pub const SCENARIO` (naming its
//! `run` and `method`), a `mod sN;` and one line in main.rs's `SCENARIOS`.

use crate::opts::Opts;
use crate::report::Row;
use crate::server::{Flavor, Server};
use std::path::PathBuf;

pub struct Scenario {
    /// `S1`...: what `--only` names.
    pub id: &'static str,
    /// Needs `mysqk watch` (an older mysqk may not have it).
    pub needs_watch: bool,
    /// The servers it runs on (of those `--server` names).
    pub servers: &'static [Flavor],
    /// Runs every round of both tools; the rows it measured.
    pub run: fn(&mut Ctx) -> Vec<Row>,
    /// How it is measured: one markdown bullet for the report.
    pub method: fn(&Opts) -> String,
}

pub const BOTH: &[Flavor] = &[Flavor::MariaDb, Flavor::MySql];
pub const MARIADB_ONLY: &[Flavor] = &[Flavor::MariaDb];

pub struct Ctx<'a> {
    pub o: &'a Opts,
    pub srv: &'a Server,
    pub dir: PathBuf,
    pub notes: Vec<String>,
}

pub fn progress(msg: &str) {
    eprintln!("[{}] {msg}", chrono::Local::now().format("%H:%M:%S"));
}
