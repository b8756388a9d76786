//! One device's MQTT session in memory: granted filters, the connection's queue, the offline queue,
//! and its router sink; the store keeps the durable copy (`sessions`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use crate::filter::{matching_part, mqtt_matches, reachable, shared};
use crate::queue::{QueueTx, TrySendError};
use crate::sessions::{Grant, SessionStore};
use crate::shared::Shared;
use evergreen_runtime::router::{DeliverySink, Message, OfferError};

use crate::counters::{bump, Counters};
use crate::OFFLINE_QUEUE;

/// One message on its way to a device.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) msg: Message,
    /// Delivered at least once (QoS 1, or 2 with `qos2`).
    pub(crate) qos1: bool,
    /// Delivered exactly once (QoS 2: PUBREC, PUBREL, PUBCOMP).
    pub(crate) qos2: bool,
    /// Its key in the session store, if it was queued there (removed once acknowledged).
    pub(crate) stored: Option<u64>,
    /// Sent before to a connection that ended without acknowledging it: sent again with DUP
    /// set (MQTT-3.3.1-1).
    pub(crate) dup: bool,
    /// Sent with the RETAIN flag: a retained message for a new subscription, or a live one
    /// to a v5 subscription with Retain As Published.
    pub(crate) retain: bool,
    /// MQTT 5 Subscription Identifiers of the subscriptions it matched.
    pub(crate) sub_ids: Vec<u32>,
}

/// Why the server ended a device's connection itself (the writer tells the device, in an
/// MQTT 5 DISCONNECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Another connection with the same client id took the session over (MQTT-3.1.4-3;
    /// MQTT 5 reason 0x8E Session taken over).
    TakenOver,
    /// The device left the deployed group (MQTT 5 reason 0x87 Not authorized).
    LeftGroup,
}

#[derive(Debug, Default)]
pub(crate) struct SessionInner {
    /// Granted filters.
    pub(crate) subs: Vec<Grant>,
    pub(crate) online: Option<(u64, QueueTx)>,
    pub(crate) persistent: bool,
    pub(crate) offline: VecDeque<Outgoing>,
    /// MQTT 5 session expiry interval in seconds; `None`: never (MQTT 3.1.1, or 0xFFFFFFFF).
    pub(crate) expiry: Option<u32>,
    /// Since when (unix seconds) the device of this persistent session is offline.
    pub(crate) offline_since: Option<u64>,
}

impl SessionInner {
    /// Whether this persistent session's device has been offline longer than its expiry.
    pub(crate) fn expired(&self, now: u64) -> bool {
        match (&self.online, self.expiry, self.offline_since) {
            (None, Some(secs), Some(since)) => since.saturating_add(u64::from(secs)) <= now,
            _ => false,
        }
    }
}

/// One thing's MQTT session: its subscriptions and, while it is offline and persistent, its
/// queued QoS 1 messages. Also the router's delivery sink for the thing's ARN.
#[derive(Debug)]
pub(crate) struct DeviceSession {
    pub(crate) thing_arn: Arc<str>,
    pub(crate) inner: Mutex<SessionInner>,
    pub(crate) counters: Arc<Counters>,
    /// Signalled by the connection's writer when its queue drains below half of
    /// [`HIGH_WATER`].
    pub(crate) room: tokio::sync::Notify,
    /// The gate of the device's latest connection's publish lane: the next connection routes
    /// nothing before it opens (see `server::Lane`). One slot per thing, shared by all its
    /// session objects: a clean session is a new object at each connection, and its burst
    /// must still be routed before the next connection's (the bench saw tens of thousands of
    /// inversions at QoS 0 when the slot was per session).
    pub(crate) lane_gate: LaneSlot,
    /// The durable copy of the session while it is persistent (none in unit tests).
    pub(crate) store: Option<Arc<SessionStore>>,
    /// Connections the server ended itself, and why (read by their writers).
    pub(crate) ended: Mutex<Vec<(u64, Ended)>>,
    /// Packet ids of the device's QoS 2 publishes routed and acknowledged with PUBREC, not yet
    /// released by its PUBREL: a PUBLISH sent again with one of them (after a reconnect) is
    /// not routed twice (MQTT-4.3.3-9 / -10). In memory: across reconnects, not restarts.
    pub(crate) qos2_received: Mutex<std::collections::HashSet<u16>>,
    /// The server's shared subscription groups, which this session's shared filters join.
    pub(crate) shared: Arc<Shared>,
    /// Held while the session lives: the groups hold it weakly, so a session that ended leaves
    /// them by itself.
    pub(crate) alive: Arc<()>,
}

/// Where a thing's latest lane gate is kept (see [`DeviceSession::lane_gate`]).
pub(crate) type LaneSlot = Arc<Mutex<Option<Arc<LaneGate>>>>;

/// Opens once a connection's publish lane is gone, that is once everything the connection
/// took in has been routed (or counted as lost). A device's next connection waits for it
/// before routing, so what it sent before a reconnect is routed before what it sends after
/// (MQTT-4.6.0-6 across connections: a burst, DISCONNECT, a new connection, another burst).
#[derive(Debug, Default)]
pub(crate) struct LaneGate {
    open: std::sync::atomic::AtomicBool,
    opened: tokio::sync::Notify,
}

impl LaneGate {
    pub(crate) fn open(&self) {
        self.open.store(true, Ordering::Release);
        self.opened.notify_waiters();
    }

    pub(crate) async fn wait(&self) {
        loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if self.open.load(Ordering::Acquire) {
                return;
            }
            opened.await;
        }
    }
}

impl DeviceSession {
    /// Makes `gate` the latest connection's, returning the one before it (to wait for).
    pub(crate) fn next_lane(&self, gate: Arc<LaneGate>) -> Option<Arc<LaneGate>> {
        self.lane_gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(gate)
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SessionInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Messages waiting for the connected device (0 when offline).
    pub(crate) fn queued(&self) -> usize {
        self.lock().online.as_ref().map_or(0, |(_, tx)| tx.len())
    }

    /// Ends connection `conn_id` for `why`: its queue closes (the writer then ends the
    /// connection) and the writer finds out why ([`DeviceSession::why_ended`]).
    pub(crate) fn end(&self, conn_id: u64, why: Ended) {
        let tx = {
            let mut inner = self.lock();
            match &inner.online {
                Some((id, _)) if *id == conn_id => inner.online.take(),
                _ => None,
            }
        };
        if tx.is_some() {
            let mut ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
            // Bounded: one entry per connection ended and not yet looked at by its writer.
            ended.retain(|(id, _)| *id != conn_id);
            ended.push((conn_id, why));
        }
    }

    /// Whether a QoS 2 publish with packet id `id` was routed already and awaits its PUBREL.
    pub(crate) fn qos2_seen(&self, id: u16) -> bool {
        self.qos2_received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
    }

    /// A QoS 2 publish with packet id `id` was routed; its PUBREC goes out.
    pub(crate) fn qos2_routed(&self, id: u16) {
        self.qos2_received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
    }

    /// The device's PUBREL for packet id `id`: the id may be used again.
    pub(crate) fn qos2_released(&self, id: u16) {
        self.qos2_received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Why the server ended connection `conn_id`, if it did (asked once, by its writer).
    pub(crate) fn why_ended(&self, conn_id: u64) -> Option<Ended> {
        let mut ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        let at = ended.iter().position(|(id, _)| *id == conn_id)?;
        Some(ended.swap_remove(at).1)
    }

    /// Records a granted filter (replacing the same filter subscribed again, MQTT-3.8.4-3).
    /// Returns whether the filter was subscribed already (MQTT 5 Retain Handling 1).
    pub(crate) fn subscribe(&self, grant: Grant) -> bool {
        let (existed, changed) = {
            let mut inner = self.lock();
            let before = inner.subs.len();
            inner.subs.retain(|g| g.filter != grant.filter);
            let existed = inner.subs.len() != before;
            inner.subs.push(grant);
            (existed, persisted_subs(&inner))
        };
        self.store_subs(changed);
        existed
    }

    /// Queues `out` for the connected device now (retained messages for a new subscription).
    /// `false`: not connected, or its queue is full.
    pub(crate) fn send_now(&self, out: Outgoing) -> bool {
        let inner = self.lock();
        inner
            .online
            .as_ref()
            .is_some_and(|(_, tx)| tx.try_send(out).is_ok())
    }

    pub(crate) fn unsubscribe(&self, filter: &str) {
        let changed = {
            let mut inner = self.lock();
            inner.subs.retain(|g| g.filter != filter);
            persisted_subs(&inner)
        };
        if let Some(Ok(_)) = shared(filter) {
            self.shared.leave(filter, &self.thing_arn);
        }
        self.store_subs(changed);
    }

    /// Joins the shared subscription groups of this session's shared filters (a session
    /// restored from the store).
    pub(crate) fn join_shared(&self) {
        let filters: Vec<String> = self
            .lock()
            .subs
            .iter()
            .filter(|g| matches!(shared(&g.filter), Some(Ok(_))))
            .map(|g| g.filter.clone())
            .collect();
        for f in filters {
            self.shared.join(&f, &self.thing_arn, &self.alive);
        }
    }

    /// Takes the messages queued while offline, oldest first.
    pub(crate) fn take_offline(&self) -> Vec<Outgoing> {
        self.lock().offline.drain(..).collect()
    }

    /// A QoS 1 message the device did not acknowledge: kept for the next connection if the
    /// session is persistent (stored, unless it already is).
    pub(crate) fn requeue(&self, mut out: Outgoing) {
        let mut inner = self.lock();
        if inner.persistent && inner.offline.len() < OFFLINE_QUEUE {
            if let (None, Some(store)) = (out.stored, &self.store) {
                out.stored = Some(store.queue(&self.thing_arn, &out.msg));
            }
            inner.offline.push_back(out);
        } else {
            bump(&self.counters.dropped_offline);
            self.unstore(&out);
        }
    }

    /// The session expiry interval of the MQTT 5 CONNECT that opened or resumed this session
    /// (`u32::MAX`: never, as for MQTT 3.1.1), counted from the device's disconnection.
    pub(crate) fn set_expiry(&self, secs: u32) {
        let (persistent, old, new) = {
            let mut inner = self.lock();
            let old = inner.expiry;
            inner.expiry = (secs != u32::MAX).then_some(secs);
            (inner.persistent, old, inner.expiry)
        };
        // Outside the session's lock (the router's path takes it): this may wait for room in
        // the store's hand-off.
        if let (true, Some(store)) = (persistent, &self.store) {
            if old.is_some() || new.is_some() {
                store.set_expiry(&self.thing_arn, new.map(|s| (s, None)));
            }
        }
    }

    /// The Session Expiry Interval of an MQTT 5 DISCONNECT (MQTT-3.14.2-x): it replaces the
    /// CONNECT's, from this disconnection on. 0 ends the session with the connection. A session
    /// opened without one (expiry 0) cannot be given one now (a protocol error the server
    /// ignores, logged).
    pub(crate) fn disconnect_expiry(&self, secs: u32) {
        let persistent = self.lock().persistent;
        if !persistent {
            if secs != 0 {
                tracing::warn!(
                    "MQTT: {} set a session expiry in its DISCONNECT after connecting without one (MQTT-3.14.2-2); ignored",
                    self.thing_arn
                );
            }
            return;
        }
        if secs == 0 {
            self.lock().persistent = false;
            if let Some(store) = &self.store {
                store.reset(&self.thing_arn, false);
            }
            return;
        }
        self.set_expiry(secs);
    }

    /// The device acknowledged `out`: its stored copy goes.
    pub(crate) fn acked(&self, out: &Outgoing) {
        self.unstore(out);
    }

    fn unstore(&self, out: &Outgoing) {
        if let (Some(seq), Some(store)) = (out.stored, &self.store) {
            store.remove(&self.thing_arn, seq);
        }
    }

    /// Stores the filters of a persistent session, outside its lock (the router's path takes
    /// it, and this may wait for room in the store's hand-off).
    fn store_subs(&self, subs: Option<Vec<Grant>>) {
        if let (Some(subs), Some(store)) = (subs, &self.store) {
            store.set_subs(&self.thing_arn, subs);
        }
    }

    pub(crate) fn drop_unauthorized(&self, deliverable: &[String]) {
        let changed = {
            let mut inner = self.lock();
            let before = inner.subs.len();
            inner.subs.retain(|g| {
                deliverable
                    .iter()
                    .any(|d| reachable(d, matching_part(&g.filter)))
            });
            if inner.subs.len() == before {
                None
            } else {
                persisted_subs(&inner)
            }
        };
        self.store_subs(changed);
    }
}

/// The filters to store, if the session is persistent.
fn persisted_subs(inner: &SessionInner) -> Option<Vec<Grant>> {
    inner.persistent.then(|| inner.subs.clone())
}

/// A grant's QoS as a number.
fn grant_level(g: &Grant) -> u8 {
    u8::from(g.qos1) + u8::from(g.qos2)
}

/// (at least once, exactly once) for a message published with `meta` to a subscription
/// granted `granted` (0, 1, 2): the lower of the two QoS.
pub(crate) fn delivered_qos(granted: u8, meta: &evergreen_runtime::router::Meta) -> (bool, bool) {
    let published = if meta.at_most_once {
        0
    } else if meta.exactly_once {
        2
    } else {
        1
    };
    let level = granted.min(published);
    (level >= 1, level == 2)
}

pub(crate) struct SessionSink(pub(crate) Arc<DeviceSession>);

impl DeliverySink for SessionSink {
    fn offer(&self, msg: Message) -> Result<(), OfferError> {
        let session = &self.0;
        let mut inner = session.lock();
        // The highest QoS granted among the matching filters (0, 1 or 2).
        let mut want: Option<u8> = None;
        let mut retain = false;
        let mut sub_ids = Vec::new();
        for g in &inner.subs {
            let matched = match shared(&g.filter) {
                // A shared subscription: one member of its group gets the message.
                Some(Ok((_, inner_filter))) => {
                    mqtt_matches(inner_filter, &msg.topic)
                        && session.shared.picks(&g.filter, &session.thing_arn, &msg)
                }
                Some(Err(())) => false,
                // No Local (MQTT-3.8.3-3): not the device's own publishes on this filter.
                None => {
                    !(g.no_local && msg.source == session.thing_arn)
                        && mqtt_matches(&g.filter, &msg.topic)
                }
            };
            if matched {
                want = Some(want.unwrap_or(0).max(grant_level(g)));
                // MQTT-3.3.1-12/-13: the flag is 0 on a live delivery unless Retain As
                // Published (MQTT 3.1.1: always 0, MQTT-3.3.1-9).
                retain |= g.retain_as_published && msg.meta.retain;
                sub_ids.extend(g.sub_id);
            }
        }
        // Routed to the device but not subscribed to by it: MQTT delivers nothing.
        let Some(granted) = want else {
            return Ok(());
        };
        // The delivered QoS is the lower of the published and the granted (MQTT 3.1.1 §3.8.4,
        // MQTT 5 §3.8.4): a QoS 0 publish goes out at QoS 0 to a QoS 1 subscription too.
        let (qos1, qos2) = delivered_qos(granted, &msg.meta);
        if let Some((_, tx)) = &inner.online {
            match tx.try_send(Outgoing {
                msg: msg.clone(),
                qos1,
                qos2,
                stored: None,
                dup: false,
                retain,
                sub_ids: sub_ids.clone(),
            }) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full) => return Err(OfferError::Full),
                Err(TrySendError::Closed) => {}
            }
        }
        if inner.persistent && qos1 {
            if inner.offline.len() >= OFFLINE_QUEUE {
                bump(&session.counters.dropped_offline);
                return Err(OfferError::Full);
            }
            let stored = session
                .store
                .as_ref()
                .map(|store| store.queue(&session.thing_arn, &msg));
            inner.offline.push_back(Outgoing {
                msg,
                qos1: true,
                qos2,
                stored,
                dup: false,
                retain,
                sub_ids,
            });
            bump(&session.counters.queued_offline);
            return Ok(());
        }
        Err(OfferError::Closed)
    }

    fn queued(&self) -> Option<usize> {
        Some(self.0.lock().offline.len())
    }
}
