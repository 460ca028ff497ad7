//! The functional core: which threads are victims and what a kill's follow-up
//! means, as pure code over processlist rows and resolved rules. No I/O and no
//! `use` of any other mysqk folder, so every rule can be tested exhaustively.

pub mod classes;
pub mod filters;
pub mod fingerprint;
pub mod grants;
pub mod matcher;
pub mod mdl;
pub mod outcome;
pub mod pileup;
pub mod recheck;
pub mod redact;
pub mod row;
pub mod text;
pub mod verify;
pub mod victim;
pub mod waits;
