//! What mysqk tells people: events, the one reporter thread, snapshot files,
//! mail, hooks, JSON lines, terminal tables and log lines. May use `core`,
//! `config` and the data types of `server`; never the daemon or the CLI.

pub mod clock;
pub mod event;
pub mod flood;
pub mod history;
pub mod hook;
pub mod jsonl;
pub mod logging;
pub mod mail;
pub mod output;
pub mod reporter;
pub mod retention;
