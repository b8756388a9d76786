//! What the server counts (refusals, closes, drops by reason) and the snapshot `evergreen status` shows.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the server, for its periodic log line and `evergreen status` (through
/// [`MqttHub::snapshot`]): every connection refused or closed by a bound, every publish
/// dropped, by reason.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) connections_accepted: AtomicU64,
    /// CONNECTs refused: not a device of the group, a client id that is not the certificate's
    /// name, no certificate.
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
    /// Payload bytes of device publishes read, and of messages written to devices.
    pub(crate) payload_bytes_received: AtomicU64,
    pub(crate) payload_bytes_delivered: AtomicU64,
    /// QoS 1 messages queued for an offline persistent session.
    pub(crate) queued_offline: AtomicU64,
    /// Messages lost because a session's offline queue was full.
    pub(crate) dropped_offline: AtomicU64,
    /// Messages not sent to a device because they are larger than it accepts.
    pub(crate) too_large_for_device: AtomicU64,
    /// Device publishes routed after waiting the whole hold for a full device queue.
    pub(crate) held_too_long: AtomicU64,
    /// Messages not delivered because their MQTT 5 Message Expiry Interval had passed.
    pub(crate) expired: AtomicU64,
    /// Retained publishes not kept because the retained bounds were reached.
    pub(crate) retained_full: AtomicU64,
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
            "connections accepted {} refused {}; refused at accept over maxConnections {} over maxConnectionsPerIp {}; CONNECT deadlines expired {}; closed: packet too large {} keep-alive {} read timeout {} protocol error {}; publishes routed {} dropped: not authorized {} topic invalid {} payload timeouts {} payloads lost {} lost at disconnect {}; lost at targets {}; not stored (unacknowledged) {}; subscribes refused {}; delivered {}; queued offline {} dropped offline {}; too large for the device {}; held too long {}; expired {}; retained full {}",
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
            g(&self.expired),
            g(&self.retained_full),
        )
    }

    /// The counters now, read one by one (each is exact; together they are a moment's view,
    /// not one atomic instant).
    pub(crate) fn snapshot(&self, connected: u64) -> CounterSnapshot {
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
            payload_bytes_received: g(&self.payload_bytes_received),
            payload_bytes_delivered: g(&self.payload_bytes_delivered),
            queued_offline: g(&self.queued_offline),
            dropped_offline: g(&self.dropped_offline),
            too_large_for_device: g(&self.too_large_for_device),
            held_too_long: g(&self.held_too_long),
            expired: g(&self.expired),
            retained_full: g(&self.retained_full),
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
    /// CONNECTs refused (not a device of the group, wrong client id, no certificate).
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
    /// Payload bytes of device publishes read (routed or dropped).
    pub payload_bytes_received: u64,
    /// Payload bytes of messages written to devices.
    pub payload_bytes_delivered: u64,
    /// QoS 1 messages queued for offline persistent sessions.
    pub queued_offline: u64,
    /// Messages lost because an offline session's queue was full.
    pub dropped_offline: u64,
    /// Messages not sent to a device because they are larger than it accepts.
    pub too_large_for_device: u64,
    /// Device publishes routed after waiting the whole hold for a full device queue.
    pub held_too_long: u64,
    /// Messages not delivered because their MQTT 5 Message Expiry Interval had passed.
    pub expired: u64,
    /// Retained publishes not kept because the retained bounds were reached.
    pub retained_full: u64,
}

/// Adds `n` to a counter (bytes).
pub(crate) fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
