//! Entry points for the fuzz target of `tests/fuzz` (hidden from the docs; not an API other
//! crates may use): the server's own handling of decoded MQTT packets, without sockets, TLS
//! or ntex's dispatcher. It owns no rule: admission, the CONNECT decision, SUBSCRIBE grants
//! and publish routing are the calls the `server` module makes ([`crate::server::connect_v3`],
//! [`crate::server::subscribe`], [`MqttHub::publish`], …), so the fuzzer exercises exactly
//! that code on what ntex-mqtt's codecs decode.

use std::net::SocketAddr;
use std::sync::Arc;

use evergreen_group::plan::GroupPlan;
use evergreen_runtime::router::{Meta, Router, Subscription, SubscriptionTable};
use ntex_mqtt::{v3, v5, QoS};

use crate::admission::{Admission, Ticket};
use crate::server::{capped_keep_alive, connect_v3, connect_v5, subscribe};
use crate::{Connected, DeviceSession, MqttHub, Outgoing, PublishRefusal, Refusal};

pub use crate::admission::PeerLimits;

/// A server's shared state (hub, router, admission) for one deployed group.
#[derive(Debug)]
pub struct Server {
    hub: Arc<MqttHub>,
    admission: Arc<Admission>,
}

/// An admitted connection's place in the connection counts (freed when dropped).
#[derive(Debug)]
pub struct Admitted {
    ticket: Ticket,
    peer: SocketAddr,
}

impl Admitted {
    /// Whether the CONNECT of this connection was accepted (its deadline no longer applies).
    pub fn connected(&self) -> bool {
        self.ticket.connected()
    }
}

/// A device connection with an accepted CONNECT; dropping it is the connection ending, as
/// the server's per-connection guard does.
#[derive(Debug)]
pub struct Connection {
    hub: Arc<MqttHub>,
    session: Arc<DeviceSession>,
    conn_id: u64,
    rx: crate::queue::QueueRx,
    /// The CONNACK's session-present flag.
    pub session_present: bool,
}

/// A message the server would write to a connected device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos1: bool,
}

impl Connection {
    /// The thing ARN the connection's publishes are routed with.
    pub fn thing_arn(&self) -> &str {
        &self.session.thing_arn
    }

    /// What the connection's writer would send now: what queued while the device was
    /// offline, then what the router delivered.
    pub fn drain(&mut self) -> Vec<Delivered> {
        let mut out: Vec<Delivered> = self
            .session
            .take_offline()
            .into_iter()
            .map(delivered)
            .collect();
        while let Ok(o) = self.rx.try_recv() {
            out.push(delivered(o));
        }
        out
    }
}

fn delivered(o: Outgoing) -> Delivered {
    Delivered {
        topic: o.msg.topic.to_string(),
        payload: o.msg.payload.to_vec(),
        qos1: o.qos1,
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.disconnected(&self.session, self.conn_id);
    }
}

impl Server {
    /// A server whose group is `plan`, with at most `queue_capacity` messages queued per
    /// connected device. `Err` when the plan's subscriptions do not build a routing table.
    pub fn new(
        plan: &GroupPlan,
        limits: PeerLimits,
        queue_capacity: usize,
    ) -> Result<Server, String> {
        let table = SubscriptionTable::build(
            plan.subscriptions
                .iter()
                .map(|s| Subscription::new(&s.id, &s.source, &s.subject, &s.target)),
        )
        .map_err(|errors| format!("{errors:?}"))?;
        let hub = MqttHub::new(Arc::new(Router::new(table)), queue_capacity);
        hub.update_plan(plan);
        let admission = Admission::new(limits, hub.counters.clone());
        Ok(Server { hub, admission })
    }

    /// The limits the server was made with.
    pub fn limits(&self) -> &PeerLimits {
        &self.admission.limits
    }

    /// A connection accepted from `peer`, or `None` when it is over a connection limit.
    pub fn admit(&self, peer: SocketAddr) -> Option<Admitted> {
        let ticket = self.admission.admit(peer).ok()?;
        Some(Admitted { ticket, peer })
    }

    /// The keep-alive the server grants a device that asked for `asked` seconds.
    pub fn keep_alive(&self, asked: u16) -> u16 {
        capped_keep_alive(asked, self.admission.limits.max_keep_alive_secs)
    }

    /// An MQTT 3.1.1 CONNECT on `admitted`; `cert_cn` as for the TLS listener (`None` on the
    /// plain one).
    pub fn connect_v3(
        &self,
        admitted: &Admitted,
        pkt: &v3::codec::Connect,
        cert_cn: Option<Option<&str>>,
    ) -> Result<Connection, Refusal> {
        let c = connect_v3(&self.hub, pkt, cert_cn)?;
        Ok(self.accepted(admitted, c))
    }

    /// An MQTT 5 CONNECT on `admitted`.
    pub fn connect_v5(
        &self,
        admitted: &Admitted,
        pkt: &v5::codec::Connect,
        cert_cn: Option<Option<&str>>,
    ) -> Result<Connection, Refusal> {
        let c = connect_v5(&self.hub, pkt, cert_cn)?;
        Ok(self.accepted(admitted, c))
    }

    fn accepted(&self, admitted: &Admitted, c: Connected) -> Connection {
        self.admission.connected(admitted.peer);
        Connection {
            hub: self.hub.clone(),
            session: c.session,
            conn_id: c.conn_id,
            rx: c.rx,
            session_present: c.session_present,
        }
    }

    /// One SUBSCRIBE filter: the QoS granted, or `None` (refused).
    pub fn subscribe(&self, conn: &Connection, filter: &str, qos: QoS) -> Option<QoS> {
        subscribe(&self.hub, &conn.session, filter, qos, Default::default())
            .ok()
            .map(|(q, _)| q)
    }

    /// One UNSUBSCRIBE filter.
    pub fn unsubscribe(&self, conn: &Connection, filter: &str) {
        conn.session.unsubscribe(filter);
    }

    /// A PUBLISH of the connected device: `Err` says why it was dropped.
    pub fn publish(&self, conn: &Connection, topic: &str, payload: &[u8]) -> Result<(), String> {
        self.hub
            .publish(
                &conn.session.thing_arn,
                topic,
                payload,
                Meta::default(),
                None,
            )
            .map_err(|why: PublishRefusal| format!("{why:?}"))
    }

    /// Ends the persistent sessions offline longer than their expiry at `now` (unix seconds).
    pub fn expire_sessions(&self, now: u64) {
        self.hub.expire_sessions(now);
    }
}
