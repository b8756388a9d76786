//! The publish lane: one connection's publishes routed one at a time, in the order they arrived.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::DeviceSession;

/// The order in which one connection's publishes are routed: the order they arrived in.
///
/// MQTT 3.1.1 §4.6 and MQTT 5 (MQTT-4.6.0-6) make every topic an Ordered Topic: a server
/// forwards one client's messages on a topic in the order it received them. ntex-mqtt hands
/// each publish to [`PublishService`] as its own future, and those run concurrently (the first
/// inline in the dispatcher, later ones as spawned tasks) whenever one of them waits (for its
/// payload's chunks, for room at a subscriber, for a commit permit). So each publish takes a
/// ticket when it first runs, and routes only when the tickets before it have: one routing at
/// a time, in ticket order. A QoS 1 publish's wait for the cloud spool's commit comes after
/// its turn, so acknowledgements still overlap.
///
/// Tickets follow the order in which the publishes' futures are first polled. The dispatcher
/// creates them in arrival order and the runtime (tokio's `LocalSet`) runs tasks woken on this
/// thread first in, first out; a wake from another thread could let the dispatcher run ahead of
/// the publishes it spawned, so none reaches a publish directly (see
/// [`PublishService::route`]). `mqtt_4_6_0_6_order_per_topic_*` checks the order end to end.
pub(super) struct Lane {
    /// The next ticket to hand out.
    pub(super) next: std::cell::Cell<u64>,
    /// The ticket whose turn it is to route.
    pub(super) turn: std::cell::Cell<u64>,
    /// Publishes whose payload is still arriving (a packet split across reads comes as
    /// payload chunks, which the dispatcher hands over only while the service is ready).
    pub(super) reading: std::cell::Cell<usize>,
    /// Tickets given up before their turn came (few: only a publish dropped mid-way).
    abandoned: RefCell<Vec<u64>>,
    /// Readiness checks and the drain, waiting for `turn` or `reading` to change (one or two:
    /// the dispatcher's, the shutdown's).
    waiters: RefCell<Vec<std::task::Waker>>,
    /// Publishes waiting for their turn, by ticket: only the one whose turn came is woken, so
    /// a full lane costs one wake per routed publish, not one per waiting publish.
    turn_wakers: RefCell<std::collections::HashMap<u64, std::task::Waker>>,
    counters: Arc<crate::Counters>,
    /// Opened when this lane is dropped (see [`crate::LaneGate`]).
    gate: Arc<crate::LaneGate>,
    /// The device's previous connection's gate: the first publish waits for it.
    after: RefCell<Option<Arc<crate::LaneGate>>>,
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.gate.open();
    }
}

impl Lane {
    pub(super) fn new(counters: Arc<crate::Counters>, session: &DeviceSession) -> Lane {
        let gate = Arc::new(crate::LaneGate::default());
        let after = session.next_lane(gate.clone());
        Lane {
            gate,
            after: RefCell::new(after),
            next: std::cell::Cell::new(0),
            turn: std::cell::Cell::new(0),
            reading: std::cell::Cell::new(0),
            abandoned: RefCell::default(),
            waiters: RefCell::default(),
            turn_wakers: RefCell::default(),
            counters,
        }
    }

    /// Publishes taken in and not yet routed.
    pub(super) fn depth(&self) -> u64 {
        self.next.get() - self.turn.get()
    }

    pub(super) fn wait(&self, cx: &std::task::Context<'_>) {
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
    }

    pub(super) fn wake(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    /// `ticket` is done with the lane: the turn moves past it (and past any later ticket given
    /// up before its turn came), or, if its turn has not come, it is skipped when it does.
    pub(super) fn pass(&self, ticket: u64) {
        if self.turn.get() != ticket {
            self.turn_wakers.borrow_mut().remove(&ticket);
            self.abandoned.borrow_mut().push(ticket);
            return;
        }
        let mut turn = ticket + 1;
        {
            let mut abandoned = self.abandoned.borrow_mut();
            while let Some(i) = abandoned.iter().position(|&t| t == turn) {
                abandoned.swap_remove(i);
                turn += 1;
            }
        }
        self.turn.set(turn);
        let next = self.turn_wakers.borrow_mut().remove(&turn);
        if let Some(w) = next {
            w.wake();
        }
        self.wake();
    }
}

/// A publish's place in its connection's [`Lane`], taken when its future first runs and given
/// back when dropped, whatever the publish's outcome: a publish that ends early (its payload
/// failed, its connection went) must not stop the lane.
pub(super) struct Ticket {
    lane: Rc<Lane>,
    pub(super) n: u64,
    /// The publish was routed (or refused, or its loss counted elsewhere): dropping the ticket
    /// loses nothing.
    pub(super) settled: bool,
}

impl Ticket {
    pub(super) fn take(lane: &Rc<Lane>) -> Ticket {
        let n = lane.next.get();
        lane.next.set(n + 1);
        Ticket {
            lane: lane.clone(),
            n,
            settled: false,
        }
    }

    /// Resolves when it is this ticket's turn to route.
    pub(super) async fn turn(&self) {
        // Only the lane's first ticket can find a previous connection's gate here.
        let after = self.lane.after.borrow().clone();
        if let Some(after) = after {
            after.wait().await;
            self.lane.after.borrow_mut().take();
        }
        std::future::poll_fn(|cx| {
            if self.lane.turn.get() == self.n {
                std::task::Poll::Ready(())
            } else {
                self.lane
                    .turn_wakers
                    .borrow_mut()
                    .insert(self.n, cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            // Taken in and never routed: its connection's dispatcher dropped it, which it does
            // only past the drain wait (see `PublishService::drain`).
            crate::bump(&self.lane.counters.lost_at_disconnect);
        }
        self.lane.pass(self.n);
    }
}

/// Counts a publish as reading its payload while it lives.
pub(super) struct Reading<'a>(&'a Lane);

impl<'a> Reading<'a> {
    pub(super) fn new(lane: &'a Lane) -> Reading<'a> {
        lane.reading.set(lane.reading.get() + 1);
        lane.wake();
        Reading(lane)
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.reading.set(self.0.reading.get().saturating_sub(1));
    }
}
