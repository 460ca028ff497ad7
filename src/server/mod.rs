//! Everything that talks to MySQL/MariaDB: the held sessions, the inspector
//! that reads server state, the killer that sends KILLs. Thin I/O around
//! `core`; may use `core` and `config`.

pub mod buffers;
pub mod inspector;
pub mod killer;
pub mod resync;
pub mod session;
pub mod testhook;
