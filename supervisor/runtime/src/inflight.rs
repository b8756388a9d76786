//! The deliveries in a child's hands: written to it (by a component's
//! writer, or handed out by the Lambda endpoint) and not yet answered. The
//! component actor reads it for a function's `Timeout` and the idle stop of
//! on-demand functions. It lives apart from both so that neither the
//! component actor nor the Lambda endpoint has to import the other's
//! internals; only the actor system's thread touches it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Delivery times kept per child while it has not acknowledged them.
const MAX_UNACKNOWLEDGED: usize = 4096;

/// Deliveries written to a child and not yet acknowledged with `Done`,
/// shared by its writer (which pushes) and reader (which pops). Only the
/// actor's thread touches it.
#[derive(Debug)]
pub(crate) struct InFlight {
    sent: std::collections::VecDeque<Instant>,
    /// When the last `Done` arrived: the next delivery is being handled since.
    last_done: Option<Instant>,
    /// The last delivery written or acknowledged, for the idle stop.
    last_activity: Instant,
}

impl InFlight {
    pub(crate) fn new() -> Self {
        InFlight {
            sent: std::collections::VecDeque::new(),
            last_done: None,
            last_activity: Instant::now(),
        }
    }

    /// How long the delivery being handled has been in the child's hands:
    /// since it was written, or since the previous one was done if later
    /// (deliveries queue in the pipe; each one's time starts when it is next).
    pub(crate) fn handling_for(&self, now: Instant) -> Option<Duration> {
        let sent = *self.sent.front()?;
        let since = self.last_done.map_or(sent, |done| done.max(sent));
        Some(now.saturating_duration_since(since))
    }

    /// How long the child has had nothing to do, if nothing is in its hands.
    pub(crate) fn idle_for(&self, now: Instant) -> Option<Duration> {
        self.sent
            .is_empty()
            .then(|| now.saturating_duration_since(self.last_activity))
    }

    /// A delivery was handed to the child (written to its stdin, or the
    /// lambda link's `…/work`).
    pub(crate) fn begin(&mut self, now: Instant) {
        // A child that never acknowledges (a connector on the raw protocol)
        // must not grow this without bound; its oldest times only matter for
        // a function's Timeout, which would have fired long before.
        if self.sent.len() >= MAX_UNACKNOWLEDGED {
            self.sent.pop_front();
        }
        self.sent.push_back(now);
        self.last_activity = now;
    }

    /// The child answered the oldest delivery (`Done`, or the lambda link's
    /// result). One with nothing outstanding is harmless and ignored.
    pub(crate) fn finish(&mut self, now: Instant) {
        if self.sent.pop_front().is_some() {
            self.last_done = Some(now);
            self.last_activity = now;
        }
    }
}

pub(crate) type SharedInFlight = Rc<RefCell<InFlight>>;
