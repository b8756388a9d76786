//! The protocol-free hub every connection shares: the group's devices, the sessions by thing, and
//! connecting, subscribing and publishing under the group's authorization.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use crate::sessions::{self, SessionStore, StoredSession};
use evergreen_group::plan::GroupPlan;
use evergreen_runtime::router::{Message, Meta, Receipt, Router};

use crate::retained::{Retained, RetainedFull, MAX_RETAINED, MAX_RETAINED_BYTES};
use crate::will::Will;
use std::time::Duration;

use crate::counters::{bump, CounterSnapshot, Counters};
use crate::filter::{reachable, shared};
use crate::session::{
    delivered_qos, DeviceSession, Ended, LaneSlot, Outgoing, SessionInner, SessionSink,
};
use crate::shared::Shared;
use crate::{Connected, DeviceEntry, PublishRefusal, Refusal, SubRefusal, HIGH_WATER};

/// Writes the listeners file (logged if it cannot be).
fn write_listeners(path: &std::path::Path, doc: &str) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(path, doc) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

/// The server's shared state.
pub struct MqttHub {
    router: Arc<Router>,
    devices: RwLock<Arc<HashMap<String, DeviceEntry>>>,
    sessions: Mutex<HashMap<Arc<str>, Arc<DeviceSession>>>,
    pub(crate) counters: Arc<Counters>,
    next_conn: AtomicU64,
    /// Messages waiting to be written to one connected device (`evergreen.queueCapacity`, as
    /// for every other delivery target); past it they are dropped and the router counts them.
    queue_capacity: usize,
    /// The durable copy of the persistent sessions, once [`MqttHub::restore`] set it.
    store: OnceLock<Arc<SessionStore>>,
    /// Retained messages (`retained`).
    retained: Retained,
    /// Shared subscription groups (`shared`).
    shared: Arc<Shared>,
    /// Each thing's lane gate slot, kept across its session objects (see
    /// [`DeviceSession::lane_gate`]); one per thing that has connected.
    lane_slots: Mutex<HashMap<Arc<str>, LaneSlot>>,
    /// The listeners file (`setup::listeners_file`) and what it says, until a plan has been
    /// applied (see [`MqttHub::announce_listeners`]); `None` once written.
    listeners: Mutex<Listeners>,
}

/// Whether the hub has its devices yet, and the listeners file waiting for them.
#[derive(Debug, Default)]
struct Listeners {
    planned: bool,
    waiting: Option<(std::path::PathBuf, String)>,
}

impl std::fmt::Debug for MqttHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttHub")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl MqttHub {
    pub fn new(router: Arc<Router>, queue_capacity: usize) -> Arc<Self> {
        Arc::new(MqttHub {
            devices: RwLock::new(Arc::default()),
            sessions: Mutex::default(),
            counters: Arc::default(),
            next_conn: AtomicU64::new(1),
            queue_capacity: queue_capacity.max(1),
            store: OnceLock::new(),
            retained: Retained::default(),
            shared: Arc::new(Shared::new(&router)),
            lane_slots: Mutex::default(),
            listeners: Mutex::default(),
            router,
        })
    }

    /// The server's counters now, with the number of devices connected.
    pub fn snapshot(&self) -> CounterSnapshot {
        let connected = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|s| s.lock().online.is_some())
            .count();
        self.counters.snapshot(connected as u64)
    }

    // Only the tests look at the hub's router; the hub itself keeps it private.
    #[cfg(test)]
    pub(crate) fn router(&self) -> &Router {
        &self.router
    }

    /// Follows a deployed plan: its devices and what may be delivered to each. Sessions of
    /// things no longer in the group end; granted filters no longer deliverable are removed.
    pub(crate) fn update_plan(&self, plan: &GroupPlan) {
        let mut map = HashMap::new();
        for device in plan.devices.values() {
            let deliverable = plan
                .subscriptions
                .iter()
                .filter(|s| s.target == device.thing_arn)
                .map(|s| s.subject.clone())
                .collect();
            map.insert(
                device.thing_name.clone(),
                DeviceEntry {
                    thing_arn: Arc::from(device.thing_arn.as_str()),
                    deliverable,
                },
            );
        }
        let map = Arc::new(map);
        *self.devices.write().unwrap_or_else(PoisonError::into_inner) = map.clone();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(
            |arn, session| match map.values().find(|d| &d.thing_arn == arn) {
                Some(entry) => {
                    session.drop_unauthorized(&entry.deliverable);
                    true
                }
                None => {
                    tracing::info!("MQTT: {arn} left the group; its session ends");
                    let conn = session.lock().online.as_ref().map(|(id, _)| *id);
                    if let Some(conn) = conn {
                        session.end(conn, Ended::LeftGroup);
                    }
                    self.router.detach(arn);
                    if let Some(store) = &session.store {
                        store.forget(arn);
                        tracing::info!("MQTT: the stored session of {arn} is deleted");
                    }
                    false
                }
            },
        );
        drop(sessions);
        let waiting = {
            let mut listeners = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            listeners.planned = true;
            listeners.waiting.take()
        };
        if let Some((path, doc)) = waiting {
            write_listeners(&path, &doc);
        }
    }

    /// Writes the listeners file `path` (`doc`: the bound addresses) once the first plan has
    /// been applied, or now if it has. Clients wait for this file to connect: written when the
    /// listeners were bound, before the deployment, it let a device that connected at once be
    /// refused as unknown (CONNACK 0x05: eg-mqtt-bench's p2p case failed to start that way).
    pub(crate) fn announce_listeners(&self, path: std::path::PathBuf, doc: String) {
        {
            let mut listeners = self
                .listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !listeners.planned {
                listeners.waiting = Some((path, doc));
                return;
            }
        }
        write_listeners(&path, &doc);
    }

    /// The device named `thing`, if it is in the group.
    pub(crate) fn device(&self, thing: &str) -> Option<DeviceEntry> {
        self.devices
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(thing)
            .cloned()
    }

    /// Checks a CONNECT and, if accepted, opens (or resumes) the thing's session. `cert_cn` is
    /// the client certificate's subject CN on the TLS listener, `None` on the plain one.
    /// `clean_start` discards a previous session (MQTT 3.1.1 clean session 1, MQTT 5 Clean
    /// Start 1); `persistent` keeps this one after the connection ends (3.1.1 clean session 0,
    /// 5 a Session Expiry Interval above 0). In MQTT 5 the two are independent: Clean Start 1
    /// with an expiry starts afresh *and* is kept.
    pub(crate) fn connect(
        &self,
        client_id: &str,
        cert_cn: Option<Option<&str>>,
        clean_start: bool,
        persistent: bool,
    ) -> Result<Connected, Refusal> {
        let result = self.connect_inner(client_id, cert_cn, clean_start, persistent);
        match &result {
            Ok(c) => {
                bump(&self.counters.connections_accepted);
                tracing::info!(
                    "MQTT: {client_id} connected ({} session{})",
                    if persistent { "persistent" } else { "clean" },
                    if c.session_present { ", resumed" } else { "" }
                );
            }
            Err(why) => {
                bump(&self.counters.connections_refused);
                tracing::warn!("MQTT: connection from client id {client_id:?} refused: {why:?}");
            }
        }
        result
    }

    fn connect_inner(
        &self,
        client_id: &str,
        cert_cn: Option<Option<&str>>,
        clean_start: bool,
        persistent: bool,
    ) -> Result<Connected, Refusal> {
        match cert_cn {
            Some(None) => return Err(Refusal::NoCertificate),
            Some(Some(cn)) if cn != client_id => return Err(Refusal::IdMismatch),
            _ => {}
        }
        let entry = self.device(client_id).ok_or(Refusal::UnknownThing)?;
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crate::queue::channel(self.queue_capacity);
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let existing = sessions.get(&entry.thing_arn).cloned();
        let resumable = |s: &DeviceSession| {
            let inner = s.lock();
            if inner.expired(sessions::unix_now()) {
                tracing::info!("MQTT: the persistent session of {} expired (MQTT 5 session expiry); a new one begins", s.thing_arn);
                return false;
            }
            inner.persistent
        };
        // A connection with the same client id is taken over, whatever either's session
        // (MQTT-3.1.4-3): the server ends the older one.
        if let Some(old) = &existing {
            let conn = old.lock().online.as_ref().map(|(id, _)| *id);
            if let Some(conn) = conn {
                tracing::info!("MQTT: a new connection of {client_id} takes its session over; the older one is closed");
                old.end(conn, Ended::TakenOver);
            }
        }
        let (session, session_present) = match existing {
            Some(s) if !clean_start && resumable(&s) => (s, true),
            _ => (
                Arc::new(DeviceSession {
                    thing_arn: entry.thing_arn.clone(),
                    inner: Mutex::default(),
                    counters: self.counters.clone(),
                    room: tokio::sync::Notify::new(),
                    lane_gate: self.lane_slot(&entry.thing_arn),
                    store: self.store.get().cloned(),
                    ended: Mutex::default(),
                    qos2_received: Mutex::default(),
                    shared: self.shared.clone(),
                    alive: Arc::default(),
                }),
                false,
            ),
        };
        {
            let mut inner = session.lock();
            // A second connection with the same client id takes over: the old one's queue
            // closes, which ends its writer.
            inner.online = Some((conn_id, tx));
            inner.persistent = persistent;
            inner.offline_since = None;
        }
        sessions.insert(entry.thing_arn.clone(), session.clone());
        self.router
            .attach(&entry.thing_arn, Arc::new(SessionSink(session.clone())));
        drop(sessions);
        // A new session replaces whatever the store held for the thing. After the hub's lock
        // (this may wait for room in the store's hand-off); nothing is queued for the session
        // meanwhile (it is online) and its SUBSCRIBEs come after the CONNACK, so the store
        // still sees the reset first.
        if let (false, Some(store)) = (session_present, &session.store) {
            store.reset(&entry.thing_arn, persistent);
        }
        Ok(Connected {
            session,
            conn_id,
            session_present,
            rx,
        })
    }

    /// Connection `conn_id` of `session` ended. A clean session ends with it; a persistent one
    /// stays attached so QoS 1 messages queue for its return.
    pub(crate) fn disconnected(&self, session: &Arc<DeviceSession>, conn_id: u64) {
        let (persistent, expiry) = {
            let mut inner = session.lock();
            match &inner.online {
                Some((id, _)) if *id == conn_id => inner.online = None,
                _ => return,
            }
            let now = sessions::unix_now();
            if inner.persistent {
                inner.offline_since = Some(now);
            }
            (inner.persistent, inner.expiry.map(|secs| (secs, Some(now))))
        };
        // The expiry counts from now, after a restart too. Outside the session's lock: this may
        // wait for room in the store's hand-off.
        if let (true, Some(expiry), Some(store)) = (persistent, expiry, &session.store) {
            store.set_expiry(&session.thing_arn, Some(expiry));
        }
        tracing::info!("MQTT: {} disconnected", session.thing_arn);
        if !persistent {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            if sessions
                .get(&session.thing_arn)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                sessions.remove(&session.thing_arn);
                self.router.detach(&session.thing_arn);
            }
        }
    }

    /// Takes the persistent sessions the store held at start-up: each is attached to the router
    /// at once, so messages for a device still offline after the restart keep queueing. The
    /// first deployed plan ([`MqttHub::update_plan`]) then ends those of things not in the
    /// group. Called once, before the first deployment.
    pub(crate) fn restore(
        &self,
        store: Arc<SessionStore>,
        stored: Vec<StoredSession>,
        retained: Vec<(String, Vec<u8>)>,
    ) {
        if self.store.set(store.clone()).is_err() {
            tracing::error!("MQTT: the session store was opened twice; the second is ignored");
            return;
        }
        let (kept, dropped) = self.retained.restore(store.clone(), retained);
        if kept + dropped > 0 {
            tracing::info!("MQTT: restored {kept} retained messages ({dropped} expired, unreadable or over the bounds, deleted)");
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        for s in stored {
            tracing::info!(
                "MQTT: restored the persistent session of {}: {} filters, {} queued messages",
                s.thing_arn,
                s.subs.len(),
                s.queued.len()
            );
            let offline = s
                .queued
                .into_iter()
                .map(|(seq, msg)| Outgoing {
                    msg,
                    qos1: true,
                    // The store keeps no QoS: after a restart a QoS 2 message goes at QoS 1.
                    qos2: false,
                    stored: Some(seq),
                    // Whether it was sent before the restart is not stored.
                    dup: false,
                    retain: false,
                    // Nor which subscriptions it matched.
                    sub_ids: Vec::new(),
                })
                .collect();
            let session = Arc::new(DeviceSession {
                thing_arn: s.thing_arn.clone(),
                inner: Mutex::new(SessionInner {
                    subs: s.subs,
                    online: None,
                    persistent: true,
                    offline,
                    expiry: s.expiry.map(|(secs, _)| secs),
                    offline_since: Some(s.expiry.map_or_else(sessions::unix_now, |(_, t)| t)),
                }),
                counters: self.counters.clone(),
                room: tokio::sync::Notify::new(),
                lane_gate: self.lane_slot(&s.thing_arn),
                store: Some(store.clone()),
                ended: Mutex::default(),
                qos2_received: Mutex::default(),
                shared: self.shared.clone(),
                alive: Arc::default(),
            });
            self.router
                .attach(&s.thing_arn, Arc::new(SessionSink(session.clone())));
            session.join_shared();
            sessions.insert(s.thing_arn, session);
        }
    }

    /// Ends the persistent sessions whose device has been offline longer than their MQTT 5
    /// session expiry (in memory and in the store). Called periodically by the server.
    pub(crate) fn expire_sessions(&self, now: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|arn, session| {
            if !session.lock().expired(now) {
                return true;
            }
            tracing::info!("MQTT: the persistent session of {arn} expired (MQTT 5 session expiry); its queued messages are dropped");
            self.router.detach(arn);
            if let Some(store) = &session.store {
                store.forget(arn);
            }
            false
        });
    }

    /// Commits the session store with an fsync (a clean stop: nothing delivered comes again).
    pub fn flush_sessions(&self) {
        if let Some(store) = self.store.get() {
            if !store.flush() {
                tracing::warn!("MQTT: the session store could not be flushed; delivered messages may be sent again after the restart");
            }
        }
    }

    /// Whether `filter` may be granted to the device `thing_arn`: a valid filter (of a shared
    /// subscription: its inner filter) that can match a topic some subscription of the group
    /// delivers to the device (the group decides who hears what).
    pub(crate) fn may_subscribe(&self, thing_arn: &str, filter: &str) -> Result<(), SubRefusal> {
        // A shared subscription is authorized by its filter.
        let inner = match shared(filter) {
            None => Some(filter),
            Some(Ok((_, inner))) => Some(inner),
            Some(Err(())) => None,
        };
        let why = match inner {
            Some(f) if evergreen_ipc::topic::validate_filter(f).is_ok() => {
                let devices = self.devices.read().unwrap_or_else(PoisonError::into_inner);
                let deliverable = devices.values().any(|d| {
                    &*d.thing_arn == thing_arn && d.deliverable.iter().any(|s| reachable(s, f))
                });
                if deliverable {
                    Ok(())
                } else {
                    Err(SubRefusal::NotAuthorized)
                }
            }
            _ => Err(SubRefusal::FilterInvalid),
        };
        if let Err(why) = why {
            bump(&self.counters.subscribes_refused);
            tracing::warn!(
                "MQTT: {thing_arn} may not subscribe to {filter:?}: {}",
                match why {
                    SubRefusal::FilterInvalid => "not a valid topic filter",
                    SubRefusal::NotAuthorized =>
                        "no subscription in the group delivers it to this device",
                }
            );
        }
        why
    }

    /// Sessions of connected devices that `topic` from `source` would reach and whose queue
    /// holds [`HIGH_WATER`] messages or more. A device's publish waits (bounded) for them to
    /// drain before it is routed: flow control back to the publishing device (its PUBACK and
    /// its next packets wait), instead of a long queue (latency) or drops at a subscriber that
    /// is only momentarily slower.
    pub(crate) fn busy_targets(&self, source: &str, topic: &str) -> Vec<Arc<DeviceSession>> {
        let table = self.router.table();
        let mut targets = Vec::new();
        table.targets(source, topic, &mut targets);
        if targets.is_empty() {
            return Vec::new();
        }
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        targets
            .iter()
            .filter_map(|idx| sessions.get(table.target_name(*idx)))
            .filter(|session| session.queued() >= HIGH_WATER)
            .cloned()
            .collect()
    }

    /// Routes a device's publish. `Err` names why it was dropped (and counted). With a
    /// `receipt` (QoS 1), durable targets hold it until their commit (see [`Receipt`]).
    pub(crate) fn publish(
        &self,
        thing_arn: &str,
        topic: &str,
        payload: &[u8],
        meta: Meta,
        receipt: Option<Receipt>,
    ) -> Result<(), PublishRefusal> {
        if topic.contains(['+', '#']) {
            bump(&self.counters.dropped_topic_invalid);
            return Err(PublishRefusal::TopicInvalid);
        }
        let payload: Arc<[u8]> = Arc::from(payload);
        let keep = meta.retain.then(|| (payload.clone(), meta.clone()));
        let routed = self
            .router
            .publish_with(thing_arn, topic, payload, meta, receipt);
        match routed {
            Ok(outcome) if outcome.matched() > 0 => {
                bump(&self.counters.publishes_routed);
                // Kept only once the group accepted the publish from this device.
                if let Some((payload, meta)) = keep {
                    self.retain(thing_arn, topic, payload, meta);
                }
                // `closed` is not counted: a device target that is offline without a
                // persistent session gets nothing, as MQTT says; its loss is no drop.
                let lost = outcome.dropped_full + outcome.dropped_unattached;
                if lost > 0 {
                    self.counters
                        .lost_at_targets
                        .fetch_add(lost as u64, Ordering::Relaxed);
                }
                Ok(())
            }
            Ok(_) => {
                bump(&self.counters.dropped_not_authorized);
                tracing::debug!("MQTT: {thing_arn} published to {topic:?}, which no subscription from it accepts; dropped");
                Err(PublishRefusal::NotAuthorized)
            }
            Err(_) => {
                bump(&self.counters.dropped_topic_invalid);
                Err(PublishRefusal::TopicInvalid)
            }
        }
    }

    /// How long a will of `session` waits before it is published (see `will`): `None` at
    /// once (no MQTT 5 Will Delay Interval, or a clean session, which ends with its
    /// connection), else the delay or the session's expiry, whichever is shorter.
    pub(crate) fn will_delay(&self, session: &DeviceSession, will: &Will) -> Option<Duration> {
        let inner = session.lock();
        if will.delay_secs == 0 || !inner.persistent {
            return None;
        }
        let secs = will.delay_secs.min(inner.expiry.unwrap_or(u32::MAX));
        Some(Duration::from_secs(u64::from(secs)))
    }

    /// Publishes `session`'s will as a publish from its device now (authorized by the group
    /// as any publish), unless a new connection resumed the session meanwhile.
    pub(crate) fn publish_will(&self, session: &DeviceSession, will: &Will) {
        if session.lock().online.is_some() {
            tracing::info!(
                "MQTT: the will of {} is not published: the device reconnected within its Will Delay Interval",
                session.thing_arn
            );
            return;
        }
        let meta = will.fired_meta(sessions::unix_now());
        let result = self.publish(&session.thing_arn, &will.topic, &will.payload, meta, None);
        tracing::info!(
            "MQTT: the will of {} on {:?}: {}",
            session.thing_arn,
            will.topic,
            match result {
                Ok(()) => "published",
                Err(PublishRefusal::NotAuthorized) =>
                    "not published: no subscription in the group accepts it from this device",
                Err(_) => "not published: not a valid topic",
            }
        );
    }

    /// Keeps a device's authorized retained publish (or clears its topic, empty payload).
    fn retain(&self, thing_arn: &str, topic: &str, payload: Arc<[u8]>, meta: Meta) {
        let msg = Message {
            topic: Arc::from(topic),
            payload,
            source: Arc::from(thing_arn),
            meta,
            route: 0,
        };
        if self.retained.set(msg) == Err(RetainedFull) {
            bump(&self.counters.retained_full);
            tracing::warn!("MQTT: the retained message of {thing_arn} on {topic:?} is not kept: {MAX_RETAINED} topics or {MAX_RETAINED_BYTES} bytes are retained already (it was routed as usual)");
        }
    }

    /// The retained messages a new subscription `filter` of `session` gets: those whose topic it
    /// matches and that the deployed group routes from their source to this device now, each
    /// at the lower of its published QoS and `granted` (0, 1, 2), with the RETAIN flag.
    pub(crate) fn retained_for(
        &self,
        session: &DeviceSession,
        filter: &str,
        granted: u8,
        sub_id: Option<u32>,
    ) -> Vec<Outgoing> {
        let found = self.retained.matching(filter);
        if found.is_empty() {
            return Vec::new();
        }
        let table = self.router.table();
        let mut targets = Vec::new();
        found
            .into_iter()
            .filter(|m| {
                targets.clear();
                table.targets(&m.source, &m.topic, &mut targets);
                targets
                    .iter()
                    .any(|t| table.target_name(*t) == &*session.thing_arn)
            })
            .map(|msg| {
                let (qos1, qos2) = delivered_qos(granted, &msg.meta);
                Outgoing {
                    qos1,
                    qos2,
                    msg,
                    stored: None,
                    dup: false,
                    retain: true,
                    sub_ids: sub_id.into_iter().collect(),
                }
            })
            .collect()
    }

    /// The lane gate slot of `thing_arn` (created at its first connection).
    fn lane_slot(&self, thing_arn: &Arc<str>) -> LaneSlot {
        self.lane_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(thing_arn.clone())
            .or_default()
            .clone()
    }

    /// `session` joins the group of the shared subscription `filter` (granted).
    pub(crate) fn join_shared(&self, filter: &str, session: &DeviceSession) {
        self.shared.join(filter, &session.thing_arn, &session.alive);
    }

    /// Topics with a retained message now.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }
}
