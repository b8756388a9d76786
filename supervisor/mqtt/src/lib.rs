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
//!   target is that device (SUBACK 0x80 / v5 0x87 otherwise), at the QoS asked; a
//!   device's filter matches by MQTT's rules, a group subject by Greengrass's (`filter`);
//! - retained messages and wills are authorized when they are delivered or fire, as a publish
//!   from their device would be at that moment (`retained`, `will`);
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
//!   with a clean connect or the device's removal from the group. A v5 DISCONNECT's session
//!   expiry replaces the CONNECT's (0 ends the session with the connection);
//! - deliveries to a connected device wait in a queue of `evergreen.queueCapacity` messages;
//!   a device's publish (QoS 0 or 1) routed to a device whose queue holds `HIGH_WATER` or
//!   more waits (at most a second) for it to drain, so a fast publisher is slowed to its
//!   subscribers' pace instead of filling the queue; past that second the message is routed
//!   anyway and dropped (counted) at a full queue.

pub mod certs;

mod admission;
mod counters;
mod filter;
#[doc(hidden)]
pub mod fuzzing;
mod hub;
mod meta;
mod queue;
mod record;
mod retained;
mod server;
mod session;
mod sessions;
mod setup;
mod shared;
mod will;

pub use admission::PeerLimits;
pub use counters::{CounterSnapshot, Counters};
pub use hub::MqttHub;
pub use server::TlsError;
pub use sessions::SessionStoreError;
pub use setup::{listeners_file, start, Setup, StartError};

pub(crate) use counters::{add, bump};
pub(crate) use session::{DeviceSession, LaneGate, Outgoing};

use std::sync::Arc;

use evergreen_group::plan::GroupPlan;

/// Messages queued for a connected device above which publishes to it wait for it to drain.
///
/// Measured with `eg-mqtt-bench` (2-core machine): 32 gave the best QoS 0 flood throughput
/// (about 280k msg/s against 245k at 16) but a QoS 1 10→10 p99 no better than mosquitto's;
/// 16 halves the time a message spends queued. At 8 throughput fell, and under the longer
/// holds a few publishes per run whose payload arrived split across reads never got the rest
/// from ntex-mqtt 8.2.1 (hence the payload guard in `server::publish`); at 16 and 32 none did.
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

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The client id names no device of the group.
    UnknownThing,
    /// The client id is not the certificate's subject CN.
    IdMismatch,
    /// No usable client certificate (TLS listener).
    NoCertificate,
}

/// A connected device, as the protocol side sees it.
#[derive(Debug)]
pub(crate) struct Connected {
    pub(crate) session: Arc<DeviceSession>,
    pub(crate) conn_id: u64,
    pub(crate) session_present: bool,
    pub(crate) rx: queue::QueueRx,
}

/// Why a device's publish was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishRefusal {
    TopicInvalid,
    NotAuthorized,
    /// Routed, but a durable target (the cloud spool) did not store it: not to be acknowledged.
    NotStored,
}

/// Why a SUBSCRIBE filter was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubRefusal {
    /// No subscription of the group delivers what it matches to this device (v5 0x87).
    NotAuthorized,
    /// Not a valid topic filter, or a malformed `$share/...` one (v5 0x8F).
    FilterInvalid,
}

/// Each deployed plan says which devices may connect and what they may hear.
impl evergreen_runtime::services::PlanListener for MqttHub {
    fn deployed(&self, plan: &GroupPlan) {
        self.update_plan(plan);
    }
}

#[cfg(test)]
mod tests;
