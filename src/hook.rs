//! `on_kill_command`: run a command per event with the event as JSON on stdin.
//!
//! Placeholder until the hooks issue lands.

use std::path::Path;

use crate::config::Settings;
use crate::event::Event;

pub struct Hook {
    command: Option<String>,
}

impl Hook {
    pub fn new(settings: &Settings) -> Hook {
        Hook {
            command: settings.on_kill_command.clone(),
        }
    }

    /// Called by the reporter thread once per event.
    pub fn run(&self, e: &Event, _snapshot: Option<&Path>) {
        if let Some(cmd) = &self.command {
            log::debug!("hook `{cmd}` not implemented yet for {}", e.dbid);
        }
    }
}
