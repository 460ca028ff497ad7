//! Mail alerts (SPEC 4). Driven by the reporter thread only.
//!
//! Placeholder until the mail issue lands: it logs what it would send.

use std::path::Path;

use crate::config::MailConfig;
use crate::event::Event;

pub struct Mailer {
    cfg: MailConfig,
}

impl Mailer {
    pub fn new(cfg: &MailConfig) -> Mailer {
        Mailer { cfg: cfg.clone() }
    }

    pub fn reconfigure(&mut self, cfg: &MailConfig) {
        self.cfg = cfg.clone();
    }

    /// Called once per event, after its snapshot was written.
    pub fn on_event(&mut self, e: &Event, _snapshot: Option<&Path>) {
        if self.cfg.enabled() {
            log::debug!("mail not implemented yet: {}", e.summary());
        }
    }

    /// Called about twice a second: send due digests and retries.
    pub fn tick(&mut self) {}

    /// Called once when the reporter stops: last attempt for pending mail.
    pub fn shutdown(&mut self) {}
}
