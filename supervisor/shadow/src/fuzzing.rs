//! Entry point for the fuzz target of `tests/fuzz` (hidden from the docs; not an API other
//! crates may use): the service's handling of one message, without the router and the
//! service thread. It owns no logic: [`Service::handle`] is the call the service thread
//! makes for every message, so the fuzzer exercises requests, merges, deltas, deletes, the
//! files they are stored in and the cloud's answers exactly as they run.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::Core;

/// A shadow service on a directory of its own.
#[derive(Debug)]
pub struct Service(Core);

/// What one message produced (see the crate's `Handled`).
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// Published locally, in order.
    pub local: Vec<(String, Value)>,
    /// Offered to the cloud bridge, in order.
    pub cloud: Vec<(String, Value)>,
    /// For a request: accepted or not, and the `/accepted` or `/rejected` payload.
    pub answer: Option<(bool, Value)>,
}

impl Service {
    /// Opens (creating it) the shadow directory `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Service> {
        Core::open(dir).map(Service)
    }

    /// Sets the things whose shadows are synced with the cloud.
    pub fn set_synced(&mut self, things: BTreeSet<String>) {
        self.0.set_synced(things);
    }

    /// Handles one message on `topic` from `source` (`"cloud"` for the cloud bridge) at
    /// `now` (unix seconds).
    pub fn handle(&mut self, source: &str, topic: &str, payload: &[u8], now: u64) -> Handled {
        let h = self.0.handle(source, topic, payload, now);
        Handled {
            local: h.local,
            cloud: h.cloud,
            answer: h.answer,
        }
    }
}
