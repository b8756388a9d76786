//! The on-demand slots every component shares (`maxConcurrentLimit`).

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
