//! The local MQTT server for client devices (the one module that may use ntex and ntex-mqtt):
//! who may connect, what each device may subscribe to, and delivery to devices.
//!
//! [`MqttHub`] is the protocol-free part, shared by every connection: the group's devices
//! (rebuilt from each deployed plan by `MqttHub::update_plan`), the sessions (one per thing,
//! kept across reconnects when persistent) and the counters. `server` speaks MQTT 3.1.1 and 5
//! over TLS (mutual authentication) and, when enabled, plain TCP on loopback. [`certs`] makes the
//! group CA and certificates. `client` is the cloud bridge: the upstream connection, fed by
//! the durable spool (`evergreen_cloud::spool`).
//!
//! Rules (Greengrass V1's, made explicit):
//! - a device connects only if its thing is in the group's Device definition, its client id is
//!   its thing name, and (TLS) its certificate, signed by the group CA, has that name as subject
//!   CN. On the plain listener there is no certificate: the client id alone names the thing, so
//!   the plain listener is for development on loopback only;
//! - a PUBLISH is routed with the device's thing ARN as source; one to a topic no subscription
//!   from that device accepts (or with a wildcard) is dropped and counted (v5: PUBACK reason
//!   0x87 not authorized / 0x90 topic name invalid);
//! - a QoS 1 PUBLISH routed to a durable target (the cloud spool) is acknowledged only once that
//!   target has committed it (a `Receipt` travels with the message); one it did not store gets
//!   no PUBACK (3.1.1: the connection is closed, so the device sends it again; 5: PUBACK reason
//!   0x80) and is counted in `not_stored`. At most 256 of a connection's publishes wait for
//!   the commit; past that the connection's publish lane fills and nothing more is read, so a
//!   device faster than the store is held back, never acknowledged and dropped;
//! - one device's publishes are routed in the order they arrived (MQTT-4.6.0-6), and all it
//!   sent before its connection ended is routed before the connection is let go (`server`'s
//!   publish lane and drain);
//! - a SUBSCRIBE filter is granted only if it intersects the subject of a subscription whose
//!   target is that device (SUBACK 0x80 / v5 0x87 otherwise); QoS 2 is granted as 1;
//! - a persistent session (v3 clean session 0, v5 clean start 0 with a session expiry) keeps its
//!   subscriptions, and QoS 1 messages for it wait while it is offline, at most
//!   [`OFFLINE_QUEUE`] of them (beyond that they are dropped and counted). Persistent sessions
//!   (granted filters and queued messages) are also kept in `sessions`, a redb store under
//!   `<writeDirectory>/mqtt/` (default the root, as for the cloud spool), and restored when the
//!   server starts: a restart, a crash or `kill -9` of the runtime loses neither (fsync policy
//!   in `sessions`). A session of a thing no longer in
//!   the deployed group is deleted from the store. An MQTT 5 session ends when its device has
//!   been offline longer than the CONNECT's session expiry interval (checked when the device
//!   returns, every 30 s, and when the store is loaded; a device connected when the runtime
//!   stopped counts as offline from the restart). MQTT 3.1.1 sessions never expire: they end
//!   with a clean connect or the device's removal from the group. The expiry a v5 DISCONNECT
//!   may set is not read (the CONNECT's stands);
//! - deliveries to a connected device wait in a queue of `evergreen.queueCapacity` messages;
//!   a device's publish (QoS 0 or 1) routed to a device whose queue holds `HIGH_WATER` or
//!   more waits (at most a second) for it to drain, so a fast publisher is slowed to its
//!   subscribers' pace instead of filling the queue; past that second the message is routed
//!   anyway and dropped (counted) at a full queue.

pub mod certs;

mod admission;
#[doc(hidden)]
pub mod fuzzing;
mod server;
mod sessions;

pub use admission::PeerLimits;
pub use server::TlsError;
pub use sessions::SessionStoreError;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use evergreen_ipc::topic::{filters_intersect, matches};
use tokio::sync::mpsc;

use evergreen_group::plan::GroupPlan;
use evergreen_runtime::router::{DeliverySink, Message, OfferError, Receipt, Router};
use sessions::{SessionStore, StoredSession};

/// Messages queued for a connected device above which publishes to it wait for it to drain.
///
/// Measured with `eg-mqtt-bench` (2-core machine): 32 gave the best QoS 0 flood throughput
/// (about 280k msg/s against 245k at 16) but a QoS 1 10→10 p99 no better than mosquitto's;
/// 16 halves the time a message spends queued. At 8 throughput fell, and under the longer
/// holds a few publishes per run whose payload arrived split across reads never got the rest
/// from ntex-mqtt 8.2.1 (hence the payload guard in `server.rs`); at 16 and 32 none did.
pub(crate) const HIGH_WATER: usize = 16;

/// QoS 1 messages kept for one offline persistent session.
pub const OFFLINE_QUEUE: usize = 1000;

/// A device of the deployed group.
#[derive(Debug, Clone)]
pub(crate) struct DeviceEntry {
    pub(crate) thing_arn: Arc<str>,
    /// Subjects of the subscriptions whose target is this device.
    pub(crate) deliverable: Vec<String>,
}

/// Counters of the server, for its periodic log line and `evergreen status` (through
/// [`MqttHub::snapshot`]): every connection refused or closed by a bound, every publish
/// dropped, by reason.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) connections_accepted: AtomicU64,
    /// CONNECTs refused: not a device of the group, a client id that is not the certificate's
    /// name, no certificate, a will.
    pub(crate) connections_refused: AtomicU64,
    /// Connections closed at accept: over `maxConnections`, over `maxConnectionsPerIp`.
    pub(crate) refused_max_connections: AtomicU64,
    pub(crate) refused_max_connections_per_ip: AtomicU64,
    /// Connections closed because no CONNECT was accepted within `connectTimeoutSecs`.
    pub(crate) connect_deadlines_expired: AtomicU64,
    /// Connections closed by the protocol layer, before or after the CONNECT: a packet over
    /// the size limit, 1.5 times the keep-alive of silence, a packet that stopped arriving
    /// (`readTimeoutSecs`), anything else that breaks the protocol.
    pub(crate) closed_packet_too_large: AtomicU64,
    pub(crate) closed_keep_alive: AtomicU64,
    pub(crate) closed_read_timeout: AtomicU64,
    pub(crate) closed_protocol_error: AtomicU64,
    pub(crate) publishes_routed: AtomicU64,
    /// Device publishes no subscription from the device accepts.
    pub(crate) dropped_not_authorized: AtomicU64,
    /// Device publishes to a topic with a wildcard, or not a valid topic.
    pub(crate) dropped_topic_invalid: AtomicU64,
    pub(crate) subscribes_refused: AtomicU64,
    pub(crate) delivered: AtomicU64,
    /// QoS 1 messages queued for an offline persistent session.
    pub(crate) queued_offline: AtomicU64,
    /// Messages lost because a session's offline queue was full.
    pub(crate) dropped_offline: AtomicU64,
    /// Messages not sent to a device because they are larger than it accepts.
    pub(crate) too_large_for_device: AtomicU64,
    /// Device publishes routed after waiting the whole hold for a full device queue.
    pub(crate) held_too_long: AtomicU64,
    /// Device publishes whose payload never finished arriving (dropped).
    pub(crate) payload_timeouts: AtomicU64,
    /// Device publishes whose payload was lost mid-packet: the connection ended before the
    /// rest arrived, or ntex-mqtt dropped it as the connection stopped (dropped).
    pub(crate) payloads_lost: AtomicU64,
    /// Copies of routed device publishes a target did not take: its queue was full (after the
    /// hold), or nothing was attached for it (e.g. `cloud` without `coreThing.iotHost`).
    pub(crate) lost_at_targets: AtomicU64,
    /// QoS 1 publishes a durable target (the cloud spool) did not store: never acknowledged
    /// (MQTT 3.1.1: the connection is closed instead; 5: a PUBACK with an error reason).
    pub(crate) not_stored: AtomicU64,
    /// Device publishes taken in but dropped unrouted because their connection ended and
    /// they were still waiting after the drain bound.
    pub(crate) lost_at_disconnect: AtomicU64,
}

impl Counters {
    /// One line with every counter, for the periodic log.
    pub(crate) fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "connections accepted {} refused {}; refused at accept over maxConnections {} over maxConnectionsPerIp {}; CONNECT deadlines expired {}; closed: packet too large {} keep-alive {} read timeout {} protocol error {}; publishes routed {} dropped: not authorized {} topic invalid {} payload timeouts {} payloads lost {} lost at disconnect {}; lost at targets {}; not stored (unacknowledged) {}; subscribes refused {}; delivered {}; queued offline {} dropped offline {}; too large for the device {}; held too long {}",
            g(&self.connections_accepted),
            g(&self.connections_refused),
            g(&self.refused_max_connections),
            g(&self.refused_max_connections_per_ip),
            g(&self.connect_deadlines_expired),
            g(&self.closed_packet_too_large),
            g(&self.closed_keep_alive),
            g(&self.closed_read_timeout),
            g(&self.closed_protocol_error),
            g(&self.publishes_routed),
            g(&self.dropped_not_authorized),
            g(&self.dropped_topic_invalid),
            g(&self.payload_timeouts),
            g(&self.payloads_lost),
            g(&self.lost_at_disconnect),
            g(&self.lost_at_targets),
            g(&self.not_stored),
            g(&self.subscribes_refused),
            g(&self.delivered),
            g(&self.queued_offline),
            g(&self.dropped_offline),
            g(&self.too_large_for_device),
            g(&self.held_too_long),
        )
    }

    /// The counters now, read one by one (each is exact; together they are a moment's view,
    /// not one atomic instant).
    fn snapshot(&self, connected: u64) -> CounterSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            connected,
            connections_accepted: g(&self.connections_accepted),
            connections_refused: g(&self.connections_refused),
            refused_max_connections: g(&self.refused_max_connections),
            refused_max_connections_per_ip: g(&self.refused_max_connections_per_ip),
            connect_deadlines_expired: g(&self.connect_deadlines_expired),
            closed_packet_too_large: g(&self.closed_packet_too_large),
            closed_keep_alive: g(&self.closed_keep_alive),
            closed_read_timeout: g(&self.closed_read_timeout),
            closed_protocol_error: g(&self.closed_protocol_error),
            publishes_routed: g(&self.publishes_routed),
            dropped_not_authorized: g(&self.dropped_not_authorized),
            dropped_topic_invalid: g(&self.dropped_topic_invalid),
            payload_timeouts: g(&self.payload_timeouts),
            payloads_lost: g(&self.payloads_lost),
            lost_at_disconnect: g(&self.lost_at_disconnect),
            lost_at_targets: g(&self.lost_at_targets),
            not_stored: g(&self.not_stored),
            subscribes_refused: g(&self.subscribes_refused),
            delivered: g(&self.delivered),
            queued_offline: g(&self.queued_offline),
            dropped_offline: g(&self.dropped_offline),
            too_large_for_device: g(&self.too_large_for_device),
            held_too_long: g(&self.held_too_long),
        }
    }
}

/// What the server counted since the runtime started, and the devices connected now: the
/// numbers `evergreen status` shows (the composition root maps them onto its report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Devices connected now.
    pub connected: u64,
    /// CONNECTs accepted.
    pub connections_accepted: u64,
    /// CONNECTs refused (not a device of the group, wrong client id, no certificate, a will).
    pub connections_refused: u64,
    /// Connections closed at accept, over `maxConnections` / `maxConnectionsPerIp`.
    pub refused_max_connections: u64,
    pub refused_max_connections_per_ip: u64,
    /// Connections closed with no CONNECT accepted within `connectTimeoutSecs`.
    pub connect_deadlines_expired: u64,
    /// Connections closed for a packet over the limit (before or after the CONNECT).
    pub closed_packet_too_large: u64,
    /// Connections closed after 1.5 times the keep-alive without a packet.
    pub closed_keep_alive: u64,
    /// Connections closed because a started packet did not arrive within `readTimeoutSecs`.
    pub closed_read_timeout: u64,
    /// Connections closed for another protocol error.
    pub closed_protocol_error: u64,
    /// Device publishes routed (reached at least one subscription).
    pub publishes_routed: u64,
    /// Device publishes dropped: no subscription from the device accepts the topic.
    pub dropped_not_authorized: u64,
    /// Device publishes dropped: a wildcard or invalid topic.
    pub dropped_topic_invalid: u64,
    /// Device publishes dropped: the payload never finished arriving.
    pub payload_timeouts: u64,
    /// Device publishes whose payload was lost mid-packet as their connection ended.
    pub payloads_lost: u64,
    /// Device publishes taken in and still unrouted when their connection's drain bound passed.
    pub lost_at_disconnect: u64,
    /// Copies of routed device publishes a target did not take (its queue full, or nothing
    /// attached for it).
    pub lost_at_targets: u64,
    /// QoS 1 device publishes the cloud spool did not store (never acknowledged).
    pub not_stored: u64,
    /// SUBSCRIBE filters refused.
    pub subscribes_refused: u64,
    /// Messages written to devices (QoS 1: acknowledged by the device).
    pub delivered: u64,
    /// QoS 1 messages queued for offline persistent sessions.
    pub queued_offline: u64,
    /// Messages lost because an offline session's queue was full.
    pub dropped_offline: u64,
    /// Messages not sent to a device because they are larger than it accepts.
    pub too_large_for_device: u64,
    /// Device publishes routed after waiting the whole hold for a full device queue.
    pub held_too_long: u64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One message on its way to a device.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) msg: Message,
    pub(crate) qos1: bool,
    /// Its key in the session store, if it was queued there (removed once acknowledged).
    pub(crate) stored: Option<u64>,
}

#[derive(Debug, Default)]
struct SessionInner {
    /// Granted filters and whether at QoS 1.
    subs: Vec<(String, bool)>,
    online: Option<(u64, mpsc::Sender<Outgoing>)>,
    persistent: bool,
    offline: VecDeque<Outgoing>,
    /// MQTT 5 session expiry interval in seconds; `None`: never (MQTT 3.1.1, or 0xFFFFFFFF).
    expiry: Option<u32>,
    /// Since when (unix seconds) the device of this persistent session is offline.
    offline_since: Option<u64>,
}

impl SessionInner {
    /// Whether this persistent session's device has been offline longer than its expiry.
    fn expired(&self, now: u64) -> bool {
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
    inner: Mutex<SessionInner>,
    counters: Arc<Counters>,
    /// Signalled by the connection's writer when its queue drains below half of
    /// [`HIGH_WATER`].
    pub(crate) room: tokio::sync::Notify,
    /// The gate of the device's latest connection's publish lane: the next connection routes
    /// nothing before it opens (see `server::Lane`).
    lane_gate: Mutex<Option<Arc<LaneGate>>>,
    /// The durable copy of the session while it is persistent (none in unit tests).
    store: Option<Arc<SessionStore>>,
}

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

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Messages waiting for the connected device (0 when offline).
    pub(crate) fn queued(&self) -> usize {
        self.lock()
            .online
            .as_ref()
            .map_or(0, |(_, tx)| tx.max_capacity() - tx.capacity())
    }

    /// Records granted filters (replacing a filter subscribed again).
    pub(crate) fn subscribe(&self, filter: &str, qos1: bool) {
        let changed = {
            let mut inner = self.lock();
            inner.subs.retain(|(f, _)| f != filter);
            inner.subs.push((filter.to_owned(), qos1));
            persisted_subs(&inner)
        };
        self.store_subs(changed);
    }

    pub(crate) fn unsubscribe(&self, filter: &str) {
        let changed = {
            let mut inner = self.lock();
            inner.subs.retain(|(f, _)| f != filter);
            persisted_subs(&inner)
        };
        self.store_subs(changed);
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
    fn store_subs(&self, subs: Option<Vec<(String, bool)>>) {
        if let (Some(subs), Some(store)) = (subs, &self.store) {
            store.set_subs(&self.thing_arn, subs);
        }
    }

    fn drop_unauthorized(&self, deliverable: &[String]) {
        let changed = {
            let mut inner = self.lock();
            let before = inner.subs.len();
            inner
                .subs
                .retain(|(f, _)| deliverable.iter().any(|d| filters_intersect(d, f)));
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
fn persisted_subs(inner: &SessionInner) -> Option<Vec<(String, bool)>> {
    inner.persistent.then(|| inner.subs.clone())
}

struct SessionSink(Arc<DeviceSession>);

impl DeliverySink for SessionSink {
    fn offer(&self, msg: Message) -> Result<(), OfferError> {
        let session = &self.0;
        let mut inner = session.lock();
        let mut want: Option<bool> = None;
        for (filter, qos1) in &inner.subs {
            if matches(filter, &msg.topic) {
                want = Some(want.unwrap_or(false) || *qos1);
            }
        }
        // Routed to the device but not subscribed to by it: MQTT delivers nothing.
        let Some(qos1) = want else {
            return Ok(());
        };
        if let Some((_, tx)) = &inner.online {
            match tx.try_send(Outgoing {
                msg: msg.clone(),
                qos1,
                stored: None,
            }) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => return Err(OfferError::Full),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
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
                stored,
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
}

impl std::fmt::Debug for MqttHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttHub")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The client id names no device of the group.
    UnknownThing,
    /// The client id is not the certificate's subject CN.
    IdMismatch,
    /// No usable client certificate (TLS listener).
    NoCertificate,
    /// A feature Evergreen refuses (a will message).
    Unsupported(&'static str),
}

/// A connected device, as the protocol side sees it.
#[derive(Debug)]
pub(crate) struct Connected {
    pub(crate) session: Arc<DeviceSession>,
    pub(crate) conn_id: u64,
    pub(crate) session_present: bool,
    pub(crate) rx: mpsc::Receiver<Outgoing>,
}

impl MqttHub {
    pub fn new(router: Arc<Router>, queue_capacity: usize) -> Arc<Self> {
        Arc::new(MqttHub {
            router,
            devices: RwLock::new(Arc::default()),
            sessions: Mutex::default(),
            counters: Arc::default(),
            next_conn: AtomicU64::new(1),
            queue_capacity: queue_capacity.max(1),
            store: OnceLock::new(),
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
                    log::info!("MQTT: {arn} left the group; its session ends");
                    session.lock().online = None;
                    self.router.detach(arn);
                    if let Some(store) = &session.store {
                        store.forget(arn);
                        log::info!("MQTT: the stored session of {arn} is deleted");
                    }
                    false
                }
            },
        );
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
    pub(crate) fn connect(
        &self,
        client_id: &str,
        cert_cn: Option<Option<&str>>,
        persistent: bool,
        has_will: bool,
    ) -> Result<Connected, Refusal> {
        let result = self.connect_inner(client_id, cert_cn, persistent, has_will);
        match &result {
            Ok(c) => {
                bump(&self.counters.connections_accepted);
                log::info!(
                    "MQTT: {client_id} connected ({} session{})",
                    if persistent { "persistent" } else { "clean" },
                    if c.session_present { ", resumed" } else { "" }
                );
            }
            Err(why) => {
                bump(&self.counters.connections_refused);
                log::warn!("MQTT: connection from client id {client_id:?} refused: {why:?}");
            }
        }
        result
    }

    fn connect_inner(
        &self,
        client_id: &str,
        cert_cn: Option<Option<&str>>,
        persistent: bool,
        has_will: bool,
    ) -> Result<Connected, Refusal> {
        match cert_cn {
            Some(None) => return Err(Refusal::NoCertificate),
            Some(Some(cn)) if cn != client_id => return Err(Refusal::IdMismatch),
            _ => {}
        }
        let entry = self.device(client_id).ok_or(Refusal::UnknownThing)?;
        if has_will {
            return Err(Refusal::Unsupported("will messages"));
        }
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let existing = sessions.get(&entry.thing_arn).cloned();
        let resumable = |s: &DeviceSession| {
            let inner = s.lock();
            if inner.expired(sessions::unix_now()) {
                log::info!("MQTT: the persistent session of {} expired (MQTT 5 session expiry); a new one begins", s.thing_arn);
                return false;
            }
            inner.persistent
        };
        let (session, session_present) = match existing {
            Some(s) if persistent && resumable(&s) => (s, true),
            _ => (
                Arc::new(DeviceSession {
                    thing_arn: entry.thing_arn.clone(),
                    inner: Mutex::default(),
                    counters: self.counters.clone(),
                    room: tokio::sync::Notify::new(),
                    lane_gate: Mutex::default(),
                    store: self.store.get().cloned(),
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
        log::info!("MQTT: {} disconnected", session.thing_arn);
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
    pub(crate) fn restore(&self, store: Arc<SessionStore>, stored: Vec<StoredSession>) {
        if self.store.set(store.clone()).is_err() {
            log::error!("MQTT: the session store was opened twice; the second is ignored");
            return;
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        for s in stored {
            log::info!(
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
                    stored: Some(seq),
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
                lane_gate: Mutex::default(),
                store: Some(store.clone()),
            });
            self.router
                .attach(&s.thing_arn, Arc::new(SessionSink(session.clone())));
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
            log::info!("MQTT: the persistent session of {arn} expired (MQTT 5 session expiry); its queued messages are dropped");
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
                log::warn!("MQTT: the session store could not be flushed; delivered messages may be sent again after the restart");
            }
        }
    }

    /// Whether `filter` may be granted to the device `entry`.
    pub(crate) fn may_subscribe(&self, thing_arn: &str, filter: &str) -> bool {
        let devices = self.devices.read().unwrap_or_else(PoisonError::into_inner);
        let ok = evergreen_ipc::topic::validate_filter(filter).is_ok()
            && devices.values().any(|d| {
                &*d.thing_arn == thing_arn
                    && d.deliverable.iter().any(|s| filters_intersect(s, filter))
            });
        if !ok {
            bump(&self.counters.subscribes_refused);
            log::warn!("MQTT: {thing_arn} may not subscribe to {filter:?}: no subscription in the group delivers it to this device");
        }
        ok
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
        receipt: Option<Receipt>,
    ) -> Result<(), PublishRefusal> {
        if topic.contains(['+', '#']) {
            bump(&self.counters.dropped_topic_invalid);
            return Err(PublishRefusal::TopicInvalid);
        }
        let payload = Arc::from(payload);
        let routed = match receipt {
            Some(receipt) => self
                .router
                .publish_acked(thing_arn, topic, payload, receipt),
            None => self.router.publish(thing_arn, topic, payload),
        };
        match routed {
            Ok(outcome) if outcome.matched() > 0 => {
                bump(&self.counters.publishes_routed);
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
                log::debug!("MQTT: {thing_arn} published to {topic:?}, which no subscription from it accepts; dropped");
                Err(PublishRefusal::NotAuthorized)
            }
            Err(_) => {
                bump(&self.counters.dropped_topic_invalid);
                Err(PublishRefusal::TopicInvalid)
            }
        }
    }
}

/// Why a device's publish was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishRefusal {
    TopicInvalid,
    NotAuthorized,
    /// Routed, but a durable target (the cloud spool) did not store it: not to be acknowledged.
    NotStored,
}

/// Where the server listens, from the core configuration.
#[derive(Debug, Clone)]
pub struct Setup {
    pub(crate) tls_addr: std::net::SocketAddr,
    pub(crate) files: certs::ServerFiles,
    /// Whether any of the TLS files was named in the configuration.
    pub(crate) files_configured: bool,
    pub(crate) plain_addr: Option<std::net::SocketAddr>,
    pub(crate) root: std::path::PathBuf,
    /// `writeDirectory` (default the root): where the persistent sessions are stored, as the
    /// cloud spool is (state, not configuration).
    pub(crate) write_dir: std::path::PathBuf,
    pub queue_capacity: usize,
    /// Bounds on peers before and after they are trusted (`evergreen.mqttLimits`).
    pub limits: PeerLimits,
}

impl From<&evergreen_config::MqttLimits> for PeerLimits {
    fn from(m: &evergreen_config::MqttLimits) -> Self {
        PeerLimits {
            max_packet_bytes_before_connect: m.max_packet_bytes_before_connect,
            max_packet_bytes: m.max_packet_bytes,
            connect_timeout: std::time::Duration::from_secs(u64::from(m.connect_timeout_secs)),
            max_connections: m.max_connections,
            max_connections_per_ip: m.max_connections_per_ip,
            max_keep_alive_secs: m.max_keep_alive_secs,
            read_timeout_secs: m.read_timeout_secs,
        }
    }
}

impl Setup {
    pub fn from_config(cfg: &evergreen_config::CoreConfig) -> Setup {
        let root = cfg.root().to_path_buf();
        let tls = &cfg.evergreen.listeners.mqtt_tls;
        let defaults = certs::ServerFiles::default_under(&root);
        // A relative path is under `<root>/certs`, as for `coreThing.caPath`.
        let resolve = |p: &Option<std::path::PathBuf>, default: std::path::PathBuf| match p {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => root.join("certs").join(p),
            None => default,
        };
        Setup {
            tls_addr: cfg.mqtt_tls_addr(),
            files: certs::ServerFiles {
                ca: resolve(&tls.ca_path, defaults.ca),
                cert: resolve(&tls.cert_path, defaults.cert),
                key: resolve(&tls.key_path, defaults.key),
            },
            files_configured: tls.ca_path.is_some()
                || tls.cert_path.is_some()
                || tls.key_path.is_some(),
            plain_addr: cfg.mqtt_plain_addr(),
            write_dir: cfg.write_dir().to_path_buf(),
            root,
            queue_capacity: cfg.evergreen.queue_capacity,
            limits: PeerLimits::from(&cfg.evergreen.mqtt_limits),
        }
    }
}

/// The durable store of persistent sessions ([`sessions`]), under `writeDirectory` (default
/// the root).
pub(crate) fn sessions_file(write_dir: &std::path::Path) -> std::path::PathBuf {
    write_dir.join("mqtt").join("sessions.redb")
}

/// The file naming the bound listeners (port 0 in the configuration = any free port).
pub fn listeners_file(root: &std::path::Path) -> std::path::PathBuf {
    root.join("run").join("mqtt-listeners.json")
}

/// Binds the listeners and starts serving. Without certificates the TLS listener stays off
/// (with a warning when the group has devices); a listener that cannot be bound, or TLS files
/// that are named but unusable, stop the start-up.
/// Why the local MQTT server could not start; each message names the setting or file to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the local MQTT server's persistent sessions: {0}")]
    Sessions(#[source] sessions::SessionStoreError),
    #[error("cannot listen on {addr} (evergreen.listeners.{listener}) for MQTT: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        /// `mqttPlain` or `mqttTls`, the key under `evergreen.listeners`.
        listener: &'static str,
        source: std::io::Error,
    },
    #[error("the local MQTT server's TLS files: {0}")]
    Tls(#[source] server::TlsError),
    #[error("cannot start the MQTT server thread: {0}")]
    Thread(#[source] std::io::Error),
}

pub fn start(setup: &Setup, hub: Arc<MqttHub>, has_devices: bool) -> Result<(), StartError> {
    let store_path = sessions_file(&setup.write_dir);
    let (store, stored) =
        SessionStore::open(&store_path, OFFLINE_QUEUE).map_err(StartError::Sessions)?;
    hub.restore(store, stored);
    let mut bound = server::Bound::default();
    if let Some(addr) = setup.plain_addr {
        let l = server::bind(addr).map_err(|source| StartError::Bind {
            addr,
            listener: "mqttPlain",
            source,
        })?;
        bound.plain = Some(l);
    }
    let files = &setup.files;
    let present = files.ca.exists() && files.cert.exists() && files.key.exists();
    if present || setup.files_configured {
        let config = server::tls_config(files).map_err(StartError::Tls)?;
        match server::bind(setup.tls_addr) {
            Ok(l) => bound.tls = Some((l, config)),
            Err(source) => {
                let what = StartError::Bind {
                    addr: setup.tls_addr,
                    listener: "mqttTls",
                    source,
                };
                if has_devices {
                    return Err(what);
                }
                log::warn!("{what}; the group has no devices, going on without it");
            }
        }
    } else if has_devices {
        log::warn!(
            "the MQTT TLS listener is off: no group CA and server certificate at {} (run `evergreen certs init`); devices cannot connect",
            files.ca.display()
        );
    }
    let tls = bound.tls_addr();
    let plain = bound.plain_addr();
    if let Some(a) = tls {
        log::info!("MQTT server (TLS, client certificates required) on {a}");
    }
    if let Some(a) = plain {
        log::info!("MQTT server (plain TCP, client id = thing name, no certificate) on {a}");
    }
    let doc = serde_json::json!({
        "tls": tls.map(|a| a.to_string()),
        "plain": plain.map(|a| a.to_string()),
    });
    let path = listeners_file(&setup.root);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&path, doc.to_string()) {
        log::warn!("cannot write {}: {e}", path.display());
    }
    server::serve(hub, bound, setup.limits.clone()).map_err(StartError::Thread)
}

/// Each deployed plan says which devices may connect and what they may hear.
impl evergreen_runtime::services::PlanListener for MqttHub {
    fn deployed(&self, plan: &GroupPlan) {
        self.update_plan(plan);
    }
}

#[cfg(test)]
mod tests;
