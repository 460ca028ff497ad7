//! Running mysqk over time: one pass (scan, match, snapshot, kill), the
//! per-instance loop, the `watch` supervisor, the lock and status files.
//! May use `core`, `config`, `server` and `report`; never the CLI.

pub mod instance;
pub mod lockfile;
pub mod pass;
pub mod status;
pub mod watch;
