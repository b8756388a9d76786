//! Delivery to a connected device: its connection's sending side (either protocol version) and the
//! writer task that drains the session's queue into it.

use std::cell::RefCell;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use ntex::util::{ByteString, Bytes};
use ntex_mqtt::{v3, v5};

use crate::queue::QueueRx;
use crate::session::Ended;
use crate::will::Will;
use crate::{Connected, Counters, DeviceSession, MqttHub, Outgoing, HIGH_WATER};

/// The sending side of a connection, whichever protocol version it speaks.
#[derive(Clone)]
pub(super) enum AnySink {
    V3(v3::MqttSink),
    V5(v5::MqttSink),
}

pub(super) type AckFuture = Pin<Box<dyn Future<Output = Written>>>;

/// How writing a message to a device ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// Written; at QoS 1, acknowledged by the device.
    Done,
    /// Never written: the packet is larger than the device accepts (its MQTT 5 Maximum Packet
    /// Size, or `maxPacketBytes`, which ntex-mqtt's codec also applies to what it sends).
    TooLarge,
    /// The connection is gone.
    Gone,
}

impl Written {
    pub(super) fn of(result: Result<(), ntex_mqtt::error::SendPacketError>) -> Written {
        use ntex_mqtt::error::{EncodeError, SendPacketError};
        match result {
            Ok(()) => Written::Done,
            Err(SendPacketError::Encode(EncodeError::OverMaxPacketSize)) => Written::TooLarge,
            Err(_) => Written::Gone,
        }
    }
}

impl AnySink {
    pub(super) async fn ready(&self) -> bool {
        match self {
            AnySink::V3(s) => s.ready().await,
            AnySink::V5(s) => s.ready().await,
        }
    }

    /// Ends the connection; MQTT 5 tells the device why when the server ended it itself.
    pub(super) fn close(&self, why: Option<Ended>) {
        use v5::codec::{Disconnect, DisconnectReasonCode};
        match (self, why) {
            (AnySink::V3(s), _) => s.close(),
            (AnySink::V5(s), None) => s.close(),
            (AnySink::V5(s), Some(why)) => s.close_with_reason(Disconnect {
                reason_code: match why {
                    Ended::TakenOver => DisconnectReasonCode::SessionTakenOver,
                    Ended::LeftGroup => DisconnectReasonCode::NotAuthorized,
                },
                ..Disconnect::default()
            }),
        }
    }

    /// Writes a QoS 0 publish now.
    pub(super) fn send0(&self, out: &Outgoing, expiry: Option<u32>) -> Written {
        let payload = Bytes::copy_from_slice(&out.msg.payload);
        Written::of(match self {
            AnySink::V3(s) => v3_publish(s, out).send_at_most_once(payload),
            AnySink::V5(s) => v5_publish(s, out, expiry).send_at_most_once(payload),
        })
    }

    /// Writes a QoS 2 publish now (the sink must be ready); the future tells whether it was
    /// received (PUBREC), released (PUBREL) and completed (PUBCOMP).
    pub(super) fn send2(&self, out: &Outgoing, expiry: Option<u32>) -> AckFuture {
        let payload = Bytes::copy_from_slice(&out.msg.payload);
        match self {
            AnySink::V3(s) => {
                let f = v3_publish(s, out).dup(out.dup).send_exactly_once(payload);
                Box::pin(async move {
                    match f.await {
                        Ok(received) => Written::of(received.release().await),
                        Err(e) => Written::of(Err(e)),
                    }
                })
            }
            AnySink::V5(s) => {
                let f = v5_publish(s, out, expiry)
                    .dup(out.dup)
                    .send_exactly_once(payload);
                Box::pin(async move {
                    match f.await {
                        Ok(received) => Written::of(received.release().await),
                        Err(e) => Written::of(Err(e)),
                    }
                })
            }
        }
    }

    /// Writes a QoS 1 publish now (the sink must be ready); the future tells whether it was
    /// acknowledged.
    pub(super) fn send1(&self, out: &Outgoing, expiry: Option<u32>) -> AckFuture {
        let payload = Bytes::copy_from_slice(&out.msg.payload);
        match self {
            AnySink::V3(s) => {
                let f = v3_publish(s, out).dup(out.dup).send_at_least_once(payload);
                Box::pin(async move { Written::of(f.await) })
            }
            AnySink::V5(s) => {
                let f = v5_publish(s, out, expiry)
                    .dup(out.dup)
                    .send_at_least_once(payload);
                Box::pin(async move { Written::of(f.await.map(drop)) })
            }
        }
    }
}

fn topic(out: &Outgoing) -> ByteString {
    ByteString::from(&*out.msg.topic)
}

/// An MQTT 3.1.1 PUBLISH, with the RETAIN flag for a retained message.
fn v3_publish(sink: &v3::MqttSink, out: &Outgoing) -> v3::PublishBuilder {
    let builder = sink.publish(topic(out));
    if out.retain {
        builder.retain()
    } else {
        builder
    }
}

/// An MQTT 5 PUBLISH with the properties its publisher sent, unaltered (MQTT-3.3.2-x: user
/// properties in order, response topic, correlation data, content type, payload format
/// indicator), and the Message Expiry Interval that is left (`expiry`, MQTT-3.3.2-6).
fn v5_publish(sink: &v5::MqttSink, out: &Outgoing, expiry: Option<u32>) -> v5::PublishBuilder {
    let builder = sink.publish(topic(out)).retain(out.retain);
    let props = out.msg.meta.props.as_deref();
    if props.is_none() && out.sub_ids.is_empty() {
        return builder;
    }
    builder.properties(|p| {
        p.subscription_ids = out
            .sub_ids
            .iter()
            .filter_map(|&id| NonZeroU32::new(id))
            .collect();
        let Some(props) = props else {
            return;
        };
        p.user_properties = props
            .user
            .iter()
            .map(|(k, v)| (ByteString::from(k.as_str()), ByteString::from(v.as_str())))
            .collect();
        p.response_topic = props.response_topic.as_deref().map(ByteString::from);
        p.correlation_data = props
            .correlation_data
            .as_deref()
            .map(Bytes::copy_from_slice);
        p.content_type = props.content_type.as_deref().map(ByteString::from);
        p.is_utf8_payload = props.utf8_payload == Some(true);
        p.message_expiry_interval = expiry.and_then(NonZeroU32::new);
    })
}

/// Ends the session's connection in the hub when the last handle of the connection drops,
/// and publishes the connection's will unless a DISCONNECT withdrew it.
pub(super) struct Guard {
    hub: Arc<MqttHub>,
    session: Arc<DeviceSession>,
    conn_id: u64,
    will: RefCell<Option<Will>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.hub.disconnected(&self.session, self.conn_id);
        let Some(will) = self.will.take() else {
            return;
        };
        match self.hub.will_delay(&self.session, &will) {
            None => self.hub.publish_will(&self.session, &will),
            Some(delay) => {
                let (hub, session) = (self.hub.clone(), self.session.clone());
                ntex::rt::spawn(async move {
                    tokio::time::sleep(delay).await;
                    hub.publish_will(&session, &will);
                });
            }
        }
    }
}

/// Per-connection state handed to every service of the connection.
#[derive(Clone)]
pub(super) struct Conn {
    pub(super) hub: Arc<MqttHub>,
    pub(super) session: Arc<DeviceSession>,
    conn_id: u64,
    sink: AnySink,
    /// The connection's stream, to see whether the peer has gone.
    io: ntex::io::IoRef,
    /// Taken by the writer once the CONNACK is out.
    rx: Rc<RefCell<Option<QueueRx>>>,
    guard: Rc<Guard>,
}

impl Conn {
    pub(super) fn new(
        hub: Arc<MqttHub>,
        c: Connected,
        sink: AnySink,
        io: ntex::io::IoRef,
        will: Option<Will>,
    ) -> Conn {
        Conn {
            guard: Rc::new(Guard {
                hub: hub.clone(),
                session: c.session.clone(),
                conn_id: c.conn_id,
                will: RefCell::new(will),
            }),
            hub,
            session: c.session,
            conn_id: c.conn_id,
            sink,
            io,
            rx: Rc::new(RefCell::new(Some(c.rx))),
        }
    }

    /// The context of a line logged about this connection: made when a line is logged, not
    /// kept, so an idle connection costs no span.
    pub(super) fn span(&self) -> tracing::Span {
        tracing::info_span!(parent: None, "connection", thing = %self.session.thing_arn, id = self.conn_id)
    }

    /// A DISCONNECT (MQTT 5: other than 0x04 "with Will Message") withdrew the will
    /// (MQTT-3.1.2-8 / MQTT-3.1.2-10).
    pub(super) fn withdraw_will(&self) {
        self.guard.will.borrow_mut().take();
    }

    /// The peer closed the connection (or it failed): what it sent before is still to be
    /// decoded and handled.
    pub(super) fn peer_gone(&self) -> bool {
        self.io.is_closed()
    }

    /// Starts delivering to the device: first what queued while it was offline, then what
    /// the router sends.
    pub(super) fn start_writer(&self) {
        let Some(rx) = self.rx.borrow_mut().take() else {
            return;
        };
        ntex::rt::spawn(writer(
            rx,
            self.sink.clone(),
            self.session.clone(),
            self.hub.clone(),
            self.conn_id,
        ));
    }
}

pub(super) async fn writer(
    mut rx: QueueRx,
    sink: AnySink,
    session: Arc<DeviceSession>,
    hub: Arc<MqttHub>,
    conn_id: u64,
) {
    let mut alive = true;
    for out in session.take_offline() {
        if alive {
            alive = deliver(&sink, out, &session, &hub).await;
        } else {
            session.requeue(out);
        }
    }
    while alive {
        let Some(out) = rx.recv().await else { break };
        if rx.len() < HIGH_WATER / 2 {
            session.room.notify_waiters();
        }
        alive = deliver(&sink, out, &session, &hub).await;
    }
    session.room.notify_waiters();
    // The queue closes when this connection ended, when another connection with the same
    // client id took the session over (MQTT: the older one is disconnected) and when the
    // device left the group: in each case this connection is done.
    sink.close(session.why_ended(conn_id));
    // Whatever is still queued for a connection that is gone waits for the next one (QoS 1).
    rx.close();
    while let Ok(out) = rx.try_recv() {
        if out.qos1 {
            session.requeue(out);
        }
    }
}

pub(super) async fn deliver(
    sink: &AnySink,
    out: Outgoing,
    session: &Arc<DeviceSession>,
    hub: &MqttHub,
) -> bool {
    // A message past its MQTT 5 Message Expiry Interval is not delivered (MQTT-3.3.2-5); one
    // still valid goes with the interval that is left (MQTT-3.3.2-6).
    let expiry = match out.msg.meta.props.as_ref().and_then(|p| p.expires_at) {
        None => None,
        Some(at) => {
            let now = crate::sessions::unix_now();
            if at <= now {
                crate::bump(&hub.counters.expired);
                session.acked(&out);
                return true;
            }
            Some(u32::try_from(at - now).unwrap_or(u32::MAX))
        }
    };
    if !out.qos1 {
        // `ready` also waits out the connection's write backpressure: without it a QoS 0
        // flood piles up in the write buffer (unbounded, and seconds deep) instead of
        // holding the queue, and through it the publishers.
        if !sink.ready().await {
            return false;
        }
        return match sink.send0(&out, expiry) {
            Written::Done => {
                crate::bump(&hub.counters.delivered);
                crate::add(&hub.counters.payload_bytes_delivered, out.msg.payload.len());
                true
            }
            Written::TooLarge => {
                too_large(&hub.counters, session, &out);
                true
            }
            Written::Gone => false,
        };
    }
    // Waits for the device's receive window; then the publish is written at once, so
    // messages leave in order while up to a window of them await their PUBACK.
    if !sink.ready().await {
        session.requeue(out);
        return false;
    }
    let mut acked = if out.qos2 {
        sink.send2(&out, expiry)
    } else {
        sink.send1(&out, expiry)
    };
    // ntex-mqtt writes the publish and counts it against the device's Receive Maximum only
    // when its future first runs: run it once now, so the next `ready` sees it in flight (left
    // to the task alone, a backlog went out all at once past the device's window:
    // `mqtt_3_3_4_9_receive_maximum_is_honoured_v5`).
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(acked.as_mut().poll(cx))).await;
    let counters = hub.counters.clone();
    match first {
        std::task::Poll::Ready(written) => settle(written, out, session, &counters),
        std::task::Poll::Pending => {
            let session = session.clone();
            ntex::rt::spawn(async move { settle(acked.await, out, &session, &counters) });
        }
    }
    true
}

/// What a QoS 1 delivery's outcome does to the session.
fn settle(written: Written, out: Outgoing, session: &DeviceSession, counters: &Counters) {
    match written {
        Written::Done => {
            crate::bump(&counters.delivered);
            crate::add(&counters.payload_bytes_delivered, out.msg.payload.len());
            // A stored (offline-queued) message leaves the session store once acknowledged.
            session.acked(&out);
        }
        Written::TooLarge => {
            too_large(counters, session, &out);
            // As if it had been delivered: kept, it would be tried again at every reconnect.
            session.acked(&out);
        }
        Written::Gone => {
            // Sent and not acknowledged: the next connection gets it again, marked as a
            // duplicate (MQTT-3.3.1-1).
            let mut out = out;
            out.dup = true;
            session.requeue(out);
        }
    }
}

/// A message larger than its device accepts: discarded and counted, the connection kept, as
/// MQTT 5 says ([MQTT-3.1.2-25]: discard it and behave as if it had been sent). Closing the
/// connection instead would let one large message disconnect every device it is routed to.
pub(super) fn too_large(counters: &Counters, session: &DeviceSession, out: &Outgoing) {
    crate::bump(&counters.too_large_for_device);
    tracing::warn!(
        "MQTT: a message on {:?} ({} bytes of payload) is larger than {} accepts (its MQTT 5 Maximum Packet Size, or evergreen.mqttLimits.maxPacketBytes); not sent",
        out.msg.topic,
        out.msg.payload.len(),
        session.thing_arn
    );
}
