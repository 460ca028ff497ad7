//! mysqk: kill abnormal MySQL/MariaDB threads through each user's own held session.
//!
//! The functional core is [`matcher`] (which threads are victims, pure code over
//! [`row::ProcRow`]s and [`matcher::Rules`]); everything else is a thin shell
//! around it: [`config`] resolves the ini once into typed rules, [`session`]
//! holds the connections, [`inspector`] reads server state, [`killer`] acts.

pub mod classes;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod doctor;
pub mod dump;
pub mod event;
pub mod filters;
pub mod fingerprint;
pub mod hook;
pub mod inspector;
pub mod instance;
pub mod jsonl;
pub mod killer;
pub mod lockfile;
pub mod logging;
pub mod mail;
pub mod matcher;
pub mod mdl;
pub mod offline;
pub mod output;
pub mod pass;
pub mod redact;
pub mod reporter;
pub mod row;
pub mod session;
pub mod status;
pub mod verify;
pub mod watch;
