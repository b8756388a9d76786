//! State a component's child shares between the actor, its I/O tasks and
//! the Lambda endpoint, all on the actor system's thread: the deliveries in
//! flight (for `Timeout` and the idle stop), the component's log, and the
//! on-demand slots every component shares.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::logs::LogFile;

pub(crate) type SharedLog = Rc<RefCell<LogFile>>;

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
    pub(super) fn new() -> Self {
        InFlight {
            sent: std::collections::VecDeque::new(),
            last_done: None,
            last_activity: Instant::now(),
        }
    }

    /// How long the delivery being handled has been in the child's hands:
    /// since it was written, or since the previous one was done if later
    /// (deliveries queue in the pipe; each one's time starts when it is next).
    pub(super) fn handling_for(&self, now: Instant) -> Option<Duration> {
        let sent = *self.sent.front()?;
        let since = self.last_done.map_or(sent, |done| done.max(sent));
        Some(now.saturating_duration_since(since))
    }

    /// How long the child has had nothing to do, if nothing is in its hands.
    pub(super) fn idle_for(&self, now: Instant) -> Option<Duration> {
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

/// A counting limit on running on-demand children (Greengrass's
/// `maxConcurrentLimit`): a component takes a slot to start a child and gives
/// it back when the child exits; components waiting for one are woken then.
#[derive(Debug)]
pub struct Slots {
    limit: usize,
    taken: std::sync::atomic::AtomicUsize,
    freed: tokio::sync::Notify,
}

impl Slots {
    pub fn new(limit: usize) -> Self {
        Slots {
            limit: limit.max(1),
            taken: std::sync::atomic::AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes a slot if one is free.
    pub(super) fn try_take(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Returns a slot and wakes the components waiting for one.
    pub(super) fn give_back(&self) {
        use std::sync::atomic::Ordering;
        let _ = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.freed.notify_waiters();
    }

    /// Resolves at the next `give_back`.
    pub(super) async fn freed(&self) {
        self.freed.notified().await;
    }
}

/// Delivery times kept per child while it has not acknowledged them.
const MAX_UNACKNOWLEDGED: usize = 4096;
