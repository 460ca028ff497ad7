//! mysqk: kill abnormal MySQL/MariaDB threads through each user's own held session.
//!
//! The tree reads as the pipeline, and each layer uses only the ones above it:
//!
//! | folder | role | may use |
//! |---|---|---|
//! | [`core`] | pure decisions over rows and rules: who is a victim, what a kill's follow-up means | nothing else of mysqk |
//! | [`config`] | the ini, read once and resolved into typed rules; password encryption | `core` |
//! | [`server`] | everything that talks to MySQL: held sessions, reading state, killing | `core`, `config` |
//! | [`report`] | events, the reporter thread, snapshot files, mail, hooks, JSON, tables | `core`, `config`, `server` (data types) |
//! | [`daemon`] | one pass, the per-instance loop, `watch`, lock and status files | all of the above |
//! | [`cli`] | the commands a person or cron runs, offline dump parsing, `doctor` | all of the above |

pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod report;
pub mod server;
