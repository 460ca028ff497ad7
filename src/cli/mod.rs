//! The command line: argument parsing, the one-shot commands, `doctor`, and
//! offline matching of saved processlist dumps. The outermost shell: may use
//! every other folder, and nothing uses it but `main`.

pub mod assets;
mod commands;
pub mod doctor;
pub mod dump;
pub mod offline;

pub use commands::*;
