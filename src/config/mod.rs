//! The configuration: the raw `mysqk.ini` is read and validated once into a
//! [`Config`] of typed rules that the rest of the program uses; passwords are
//! decrypted here. May use `core` (the rule types) and nothing else of mysqk.

pub mod crypto;
pub mod diff;
mod ini;

pub use ini::*;
