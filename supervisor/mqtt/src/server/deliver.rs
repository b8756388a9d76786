//! Delivery to a connected device: its connection's sending side (either protocol version) and the
//! writer task that drains the session's queue into it.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use ntex::util::{ByteString, Bytes};
use ntex_mqtt::{v3, v5};
use tokio::sync::mpsc;

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

    pub(super) fn close(&self) {
        match self {
            AnySink::V3(s) => s.close(),
            AnySink::V5(s) => s.close(),
        }
    }

    pub(super) fn send0(&self, topic: ByteString, payload: Bytes) -> Written {
        Written::of(match self {
            AnySink::V3(s) => s.publish(topic).send_at_most_once(payload),
            AnySink::V5(s) => s.publish(topic).send_at_most_once(payload),
        })
    }

    /// Writes a QoS 1 publish now (the sink must be ready); the future tells whether it was
    /// acknowledged.
    pub(super) fn send1(&self, topic: ByteString, payload: Bytes) -> AckFuture {
        match self {
            AnySink::V3(s) => {
                let f = s.publish(topic).send_at_least_once(payload);
                Box::pin(async move { Written::of(f.await) })
            }
            AnySink::V5(s) => {
                let f = s.publish(topic).send_at_least_once(payload);
                Box::pin(async move { Written::of(f.await.map(drop)) })
            }
        }
    }
}

/// Ends the session's connection in the hub when the last handle of the connection drops.
pub(super) struct Guard {
    hub: Arc<MqttHub>,
    session: Arc<DeviceSession>,
    conn_id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.hub.disconnected(&self.session, self.conn_id);
    }
}

/// Per-connection state handed to every service of the connection.
#[derive(Clone)]
pub(super) struct Conn {
    pub(super) hub: Arc<MqttHub>,
    pub(super) session: Arc<DeviceSession>,
    sink: AnySink,
    /// The connection's stream, to see whether the peer has gone.
    io: ntex::io::IoRef,
    /// Taken by the writer once the CONNACK is out.
    rx: Rc<RefCell<Option<mpsc::Receiver<Outgoing>>>>,
    _guard: Rc<Guard>,
}

impl Conn {
    pub(super) fn new(hub: Arc<MqttHub>, c: Connected, sink: AnySink, io: ntex::io::IoRef) -> Conn {
        Conn {
            _guard: Rc::new(Guard {
                hub: hub.clone(),
                session: c.session.clone(),
                conn_id: c.conn_id,
            }),
            hub,
            session: c.session,
            sink,
            io,
            rx: Rc::new(RefCell::new(Some(c.rx))),
        }
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
        ));
    }
}

pub(super) async fn writer(
    mut rx: mpsc::Receiver<Outgoing>,
    sink: AnySink,
    session: Arc<DeviceSession>,
    hub: Arc<MqttHub>,
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
    sink.close();
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
    let topic = ByteString::from(&*out.msg.topic);
    let payload = Bytes::copy_from_slice(&out.msg.payload);
    if !out.qos1 {
        // `ready` also waits out the connection's write backpressure: without it a QoS 0
        // flood piles up in the write buffer (unbounded, and seconds deep) instead of
        // holding the queue, and through it the publishers.
        if !sink.ready().await {
            return false;
        }
        return match sink.send0(topic, payload) {
            Written::Done => {
                crate::bump(&hub.counters.delivered);
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
    let acked = sink.send1(topic, payload);
    let session = session.clone();
    let counters = hub.counters.clone();
    ntex::rt::spawn(async move {
        match acked.await {
            Written::Done => {
                crate::bump(&counters.delivered);
                // A stored (offline-queued) message leaves the session store once acknowledged.
                session.acked(&out);
            }
            Written::TooLarge => {
                too_large(&counters, &session, &out);
                // As if it had been delivered: kept, it would be tried again at every reconnect.
                session.acked(&out);
            }
            Written::Gone => session.requeue(out),
        }
    });
    true
}

/// A message larger than its device accepts: discarded and counted, the connection kept, as
/// MQTT 5 says ([MQTT-3.1.2-25]: discard it and behave as if it had been sent). Closing the
/// connection instead would let one large message disconnect every device it is routed to.
pub(super) fn too_large(counters: &Counters, session: &DeviceSession, out: &Outgoing) {
    crate::bump(&counters.too_large_for_device);
    log::warn!(
        "MQTT: a message on {:?} ({} bytes of payload) is larger than {} accepts (its MQTT 5 Maximum Packet Size, or evergreen.mqttLimits.maxPacketBytes); not sent",
        out.msg.topic,
        out.msg.payload.len(),
        session.thing_arn
    );
}
