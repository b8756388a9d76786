//! A device's publishes: taken in, routed in their lane's order, acknowledged after a durable
//! target's commit, and the connection's read flow control.

use std::future::Future;
use std::rc::Rc;

use ntex::service::{Service, ServiceCtx};
use ntex::util::{ByteString, Bytes};
use ntex_mqtt::{v3, v5, QoS};

use super::deliver::Conn;
use super::lane::{Lane, Reading, Ticket};
use super::ServerError;
use crate::{meta, MqttHub, PublishRefusal, HIGH_WATER};
use evergreen_runtime::router::{Meta, PublishProps, Receipt, Stored};
use std::sync::Arc;

/// How long a device's publish waits for a full device queue it is routed to.
pub(super) const ROOM_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits (at most [`ROOM_WAIT`]) until every connected device queue the publish would reach
/// is below [`HIGH_WATER`]; past the wait the message is routed anyway and a full queue drops
/// (and counts) it, and the wait is counted in `held_too_long`. QoS 0 and QoS 1 publishes both
/// wait, in the connection's [`Lane`]: the publishes behind it queue (at most [`LANE_DEPTH`])
/// and then the connection reads no further, so the wait throttles the publishing device over
/// TCP with bounded memory instead of dropping its QoS 0 messages under a burst.
pub(super) async fn wait_for_room(hub: &MqttHub, source: &str, topic: &str) {
    let busy = hub.busy_targets(source, topic);
    if busy.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + ROOM_WAIT;
    for session in busy {
        loop {
            let notified = session.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if session.queued() < HIGH_WATER {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                crate::bump(&hub.counters.held_too_long);
                return;
            }
        }
    }
}

/// Publishes of one connection taken in but not yet routed, at most; with more the connection
/// reads nothing further (see [`PublishService`]'s readiness).
pub(super) const LANE_DEPTH: u64 = 64;

/// QoS 1 publishes of one connection routed to a durable target and waiting for its commit, at
/// most. Group commit takes whatever waits, so this is what one device can put into one fsync;
/// more than a device's usual in-flight window (mosquitto's 20, paho's 65535 is rarely reached).
pub(super) const UNSTORED: usize = 256;

/// How long a connection that ended waits for the publishes it took in to be routed (see
/// [`PublishService::drain`]). Each waits at most [`ROOM_WAIT`] for room, so a lane of
/// [`LANE_DEPTH`] behind a stalled subscriber could take longer; past this they are counted.
pub(super) const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a publish waits for the rest of its payload (see [`PublishService::payload`]).
pub(super) const PAYLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A device's publishes: routed with the device's thing ARN as source, in arrival order (see
/// [`Lane`]).
///
/// Its readiness is the connection's flow control: while [`LANE_DEPTH`] publishes of the
/// connection wait for their turn (behind one waiting in [`wait_for_room`] for a full
/// subscriber queue), the service is not ready, so ntex-mqtt's dispatcher decodes nothing more
/// and the device is held back by TCP. ntex-mqtt 8.2.1's own in-flight middleware does not do
/// this for a stream of publishes: its readiness check is skipped whenever the previous request
/// was a publish (it waits for that publish's payload chunks), so under a QoS 0 flood it
/// started thousands of handlers at once, each with its own hold deadline, which then all
/// expired together and overflowed the subscriber's queue.
///
/// Two exceptions keep it ready: a payload that is arriving (its chunks must get through or
/// the publish waiting for them never finishes), and a connection whose peer has gone. The
/// dispatcher discards whatever it has read but not decoded when the peer goes while the
/// service is not ready; a device that sends a burst and disconnects (a cron script, a sleepy
/// sensor) would lose its tail. Ready then, everything it sent is decoded and routed (bounded
/// by the read buffer and the packet limit).
#[derive(Clone)]
pub(super) struct PublishService {
    conn: Conn,
    lane: Rc<Lane>,
    /// QoS 1 publishes routed and waiting for a durable target's commit (see
    /// [`PublishService::route`]).
    unstored: Rc<tokio::sync::Semaphore>,
}

impl PublishService {
    pub(super) fn new(conn: &Conn) -> PublishService {
        PublishService {
            conn: conn.clone(),
            lane: Rc::new(Lane::new(conn.hub.counters.clone(), &conn.session)),
            unstored: Rc::new(tokio::sync::Semaphore::new(UNSTORED)),
        }
    }

    pub(super) async fn ready(&self) {
        std::future::poll_fn(|cx| {
            let lane = &self.lane;
            if lane.depth() < LANE_DEPTH || lane.reading.get() > 0 || self.conn.peer_gone() {
                std::task::Poll::Ready(())
            } else {
                lane.wait(cx);
                std::task::Poll::Pending
            }
        })
        .await;
    }

    /// Resolves once every publish taken in has been routed, or after [`DRAIN_WAIT`].
    ///
    /// ntex-mqtt calls this when the connection ends (the device disconnected, or it went away),
    /// and only then cancels the publishes still running: so everything the device sent before
    /// it left is routed first, as MQTT expects of a server (issue 19: a burst sent just before
    /// DISCONNECT used to be lost). A publish still waiting at the bound is dropped and counted
    /// (`lost at disconnect`).
    pub(super) async fn drain(&self) {
        let drained = std::future::poll_fn(|cx| {
            if self.lane.depth() == 0 {
                std::task::Poll::Ready(())
            } else {
                self.lane.wait(cx);
                std::task::Poll::Pending
            }
        });
        let _ = tokio::time::timeout(DRAIN_WAIT, drained).await;
    }

    /// The publish's whole payload, or `None` (logged and counted as dropped) if it did not
    /// finish arriving within [`PAYLOAD_WAIT`]. The bound is a guard: a payload that never
    /// completes would otherwise hold this publish forever and, through `reading`, switch the
    /// connection's flow control off.
    pub(super) async fn payload(
        &self,
        n: u64,
        topic: &str,
        payload: ntex_mqtt::Payload,
    ) -> Result<Option<Bytes>, ServerError> {
        let _reading = Reading::new(&self.lane);
        match tokio::time::timeout(PAYLOAD_WAIT, payload.read_all()).await {
            Ok(Ok(payload)) => Ok(Some(payload)),
            Ok(Err(e)) => {
                // The connection ended with the packet incomplete, or ntex-mqtt dropped the
                // payload when the connection stopped: nothing to route.
                crate::bump(&self.conn.hub.counters.payloads_lost);
                let _context = self.conn.span().entered();
                tracing::debug!(
                    "MQTT: {} published to {topic:?} but its payload was lost: {e:?}",
                    self.conn.session.thing_arn
                );
                Err(ServerError)
            }
            Err(_) => {
                crate::bump(&self.conn.hub.counters.payload_timeouts);
                let _context = self.conn.span().entered();
                tracing::warn!(
                    "MQTT: {} published to {topic:?} but its payload did not arrive within {PAYLOAD_WAIT:?}; dropped (ticket {n}; lane: {} taken in, turn {}, {} reading, {} unstored permits free)",
                    self.conn.session.thing_arn,
                    self.lane.next.get(),
                    self.lane.turn.get(),
                    self.lane.reading.get(),
                    self.unstored.available_permits(),
                );
                Ok(None)
            }
        }
    }

    /// Everything a publish does once taken in (`ticket`): its payload, its turn, its route.
    /// `None`: its payload did not arrive (counted).
    pub(super) async fn take_in(
        self,
        mut ticket: Ticket,
        topic: ByteString,
        payload: ntex_mqtt::Payload,
        meta: Meta,
    ) -> Result<Option<Result<(), PublishRefusal>>, ServerError> {
        let payload = self.payload(ticket.n, &topic, payload).await;
        // A payload that failed is counted where it failed.
        ticket.settled = !matches!(payload, Ok(Some(_)));
        let Some(payload) = payload? else {
            return Ok(None);
        };
        ticket.turn().await;
        Ok(Some(self.route(ticket, &topic, &payload, meta).await))
    }

    /// Takes a QoS 0 publish in without holding the dispatcher: what is left of it once it
    /// waits (for its payload's rest, its turn, room) goes on in a task of its own, and the
    /// call ends (there is no acknowledgement to wait for).
    ///
    /// A call that stays pending occupies ntex-mqtt's one inline response slot, and while it
    /// does the dispatcher hands every later packet, payload chunks included, to spawned tasks
    /// that run only after its loop yields. When the device closes the connection right after
    /// (a burst then DISCONNECT), that loop reaches the end of the stream first and drops the
    /// pending payload before its chunk was handed over: a split publish was lost (issue 19,
    /// defect 11).
    pub(super) async fn take_in_qos0(
        &self,
        ticket: Ticket,
        topic: ByteString,
        payload: ntex_mqtt::Payload,
        meta: Meta,
    ) {
        let mut work = Box::pin(self.clone().take_in(ticket, topic, payload, meta));
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx))).await;
        if first.is_pending() {
            ntex::rt::spawn(work);
        }
    }

    /// Routes the publish in its turn and, for QoS 1, returns only once every durable target
    /// (the cloud spool) has committed it, so the PUBACK the caller then sends follows the
    /// fsync.
    ///
    /// The commit is waited for after the turn is passed on, holding one of [`UNSTORED`]
    /// permits instead: a device with that many publishes unstored is held (its next publish
    /// waits for a permit in its turn, so the lane fills and nothing more is read), while the
    /// lane never waits on the disk in the common case.
    pub(super) async fn route(
        &self,
        mut ticket: Ticket,
        topic: &str,
        payload: &[u8],
        meta: Meta,
    ) -> Result<(), PublishRefusal> {
        let hub = &self.conn.hub;
        let thing = &self.conn.session.thing_arn;
        crate::add(&hub.counters.payload_bytes_received, payload.len());
        wait_for_room(hub, thing, topic).await;
        if meta.at_most_once {
            ticket.settled = true;
            return hub.publish(thing, topic, payload, meta, None);
        }
        // Closed never: the semaphore lives as long as the service.
        let Ok(_unstored) = self.unstored.acquire().await else {
            return Err(PublishRefusal::NotStored);
        };
        let (receipt, stored) = Receipt::new();
        ticket.settled = true;
        hub.publish(thing, topic, payload, meta, Some(receipt))?;
        drop(ticket);
        let mut stored = stored;
        // No durable target held it (a device-to-device publish): the receipt is answered
        // already. Without this check every QoS 1 publish spawned the forwarding task of
        // `committed`. Polled with a waker that does nothing, so no wake from the spool's
        // thread can reach this task (see `committed`).
        let now = std::pin::Pin::new(&mut stored)
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        let stored = match now {
            std::task::Poll::Ready(stored) => stored,
            std::task::Poll::Pending => committed(stored).await,
        };
        if stored {
            Ok(())
        } else {
            crate::bump(&hub.counters.not_stored);
            tracing::warn!(
                "MQTT: a QoS 1 publish of {thing} to {topic:?} was not stored for the cloud; not acknowledged"
            );
            Err(PublishRefusal::NotStored)
        }
    }
}

/// Waits for a durable target's commit of a publish (`stored`, found pending).
async fn committed(stored: Stored) -> bool {
    // The commit is signalled from the spool's writer thread. A wake from another thread
    // queues the woken task on tokio's `LocalSet` apart from (and possibly ahead of) the
    // tasks spawned on this thread; when this publish is the dispatcher's inline call,
    // that lets the dispatcher run before the publishes it spawned have started, so a
    // payload chunk could be handed over before its publish took its payload (ntex-mqtt
    // then fails the connection; seen as a stall of split payloads). A local task takes
    // the remote wake and passes it on from this thread, so the order stays first in,
    // first out.
    let (tx, rx) = tokio::sync::oneshot::channel();
    ntex::rt::spawn(async move {
        let _ = tx.send(stored.await);
    });
    rx.await.unwrap_or(false)
}

impl PublishService {
    /// The packet id of a QoS 2 publish (exactly once: a resent one is not routed again).
    fn qos2_id(&self, qos: QoS, id: Option<std::num::NonZeroU16>) -> Option<u16> {
        (qos == QoS::ExactlyOnce)
            .then_some(id)
            .flatten()
            .map(std::num::NonZeroU16::get)
    }
}

/// The properties of an MQTT 5 PUBLISH that travel with the message to its subscribers. The
/// expiry interval becomes a deadline, so the time a message waits counts against it.
fn v5_props(p: &v5::codec::PublishProperties) -> Option<Arc<PublishProps>> {
    let expires_at = p
        .message_expiry_interval
        .map(|secs| crate::sessions::unix_now().saturating_add(u64::from(secs.get())));
    meta::props(
        &p.user_properties,
        p.response_topic.as_ref(),
        p.correlation_data.as_ref(),
        p.content_type.as_ref(),
        p.is_utf8_payload,
        expires_at,
    )
}

/// Whether a decoded PUBLISH's payload fits in its packet (`packet_size`: the remaining length).
///
/// ntex-mqtt 8.2.1 (the newest 8.x) computes the payload's length as the remaining length
/// minus the header's (topic, packet id, v5 properties) without checking that the header
/// fits: a header longer than its packet wraps, in a release build, to a payload of about
/// 4 GiB that the codec then reads from the bytes that follow, past every packet-size limit
/// (a debug build panics in the codec instead). A payload larger than its packet is that,
/// never a real publish, so the connection is closed before any of it is read. Found by the
/// `mqtt_packets` fuzz target.
pub(super) fn payload_fits(packet_size: u32, payload_size: usize) -> bool {
    u64::try_from(payload_size).is_ok_and(|p| p <= u64::from(packet_size))
}

/// Logs and counts a publish refused by [`payload_fits`].
pub(super) fn malformed_publish(conn: &Conn, packet_size: u32, payload_size: usize) -> ServerError {
    crate::bump(&conn.hub.counters.closed_protocol_error);
    let _context = conn.span().entered();
    tracing::warn!(
        "MQTT: {} sent a PUBLISH whose header is longer than its packet ({payload_size} payload bytes in a packet of {packet_size}); connection closed",
        conn.session.thing_arn
    );
    ServerError
}

impl Service<v3::Publish> for PublishService {
    type Response = ();
    type Error = ServerError;

    async fn ready(&self, _: ServiceCtx<'_, Self>) -> Result<(), ServerError> {
        self.ready().await;
        Ok(())
    }

    async fn shutdown(&self) {
        self.drain().await;
    }

    async fn call(&self, mut p: v3::Publish, _: ServiceCtx<'_, Self>) -> Result<(), ServerError> {
        if !payload_fits(p.packet_size(), p.payload_size()) {
            return Err(malformed_publish(
                &self.conn,
                p.packet_size(),
                p.payload_size(),
            ));
        }
        let qos2_id = self.qos2_id(p.qos(), p.id());
        if qos2_id.is_some_and(|id| self.conn.session.qos2_seen(id)) {
            // Routed before the reconnect; only its PUBREC is sent again.
            return Ok(());
        }
        let ticket = Ticket::take(&self.lane);
        let topic = p.packet().topic.clone();
        let payload = p.take_payload();
        let meta = meta::meta(p.qos(), p.retain(), None);
        if meta.at_most_once {
            self.take_in_qos0(ticket, topic, payload, meta).await;
            return Ok(());
        }
        match self.clone().take_in(ticket, topic, payload, meta).await? {
            // A PUBACK would say it was taken: a QoS 1 publish whose payload did not arrive
            // ends the connection instead.
            None => Err(ServerError),
            // MQTT 3.1.1 cannot refuse a publish in its PUBACK, and a PUBACK would say it is
            // safe: the connection is closed instead, so the device sends it again.
            Some(Err(PublishRefusal::NotStored)) => Err(ServerError),
            // Other refusals are counted by the hub; MQTT 3.1.1 has no way to tell the device.
            Some(Ok(()) | Err(_)) => {
                if let Some(id) = qos2_id {
                    self.conn.session.qos2_routed(id);
                }
                Ok(())
            }
        }
    }
}

impl Service<v5::Publish> for PublishService {
    type Response = v5::PublishAck;
    type Error = ServerError;

    async fn ready(&self, _: ServiceCtx<'_, Self>) -> Result<(), ServerError> {
        self.ready().await;
        Ok(())
    }

    async fn shutdown(&self) {
        self.drain().await;
    }

    async fn call(
        &self,
        mut p: v5::Publish,
        _: ServiceCtx<'_, Self>,
    ) -> Result<v5::PublishAck, ServerError> {
        if !payload_fits(p.packet_size(), p.payload_size()) {
            return Err(malformed_publish(
                &self.conn,
                p.packet_size(),
                p.payload_size(),
            ));
        }
        let qos2_id = self.qos2_id(p.qos(), p.id());
        if qos2_id.is_some_and(|id| self.conn.session.qos2_seen(id)) {
            // Routed before the reconnect; only its PUBREC is sent again.
            return Ok(p.ack());
        }
        let ticket = Ticket::take(&self.lane);
        let topic = p.packet().topic.clone();
        let payload = p.take_payload();
        let meta = meta::meta(p.qos(), p.retain(), v5_props(&p.packet().properties));
        if meta.at_most_once {
            // No acknowledgement goes out for QoS 0.
            self.take_in_qos0(ticket, topic, payload, meta).await;
            return Ok(p.ack());
        }
        let Some(result) = self.clone().take_in(ticket, topic, payload, meta).await? else {
            return Ok(p
                .ack()
                .reason_code(v5::codec::PublishAckReason::UnspecifiedError)
                .reason("the payload did not arrive in time".into()));
        };
        let ack = p.ack();
        if let (Some(id), Ok(())) = (qos2_id, &result) {
            self.conn.session.qos2_routed(id);
        }
        Ok(match result {
            Ok(()) => ack,
            Err(PublishRefusal::TopicInvalid) => {
                ack.reason_code(v5::codec::PublishAckReason::TopicNameInvalid)
            }
            Err(PublishRefusal::NotAuthorized) => ack
                .reason_code(v5::codec::PublishAckReason::NotAuthorized)
                .reason("no subscription in the group accepts this topic from this device".into()),
            Err(PublishRefusal::NotStored) => ack
                .reason_code(v5::codec::PublishAckReason::UnspecifiedError)
                .reason("not stored for the cloud; send it again".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntex::codec::Decoder;
    use ntex::util::BytesMut;

    /// A PUBLISH of remaining length 3 whose header claims 8 bytes (topic length 0, a
    /// properties length of 5): ntex-mqtt 8.2.1's v5 codec computes its payload as 3 - 8.
    const V5_HEADER_PAST_PACKET: &[u8] = &[0x30, 0x03, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0];
    /// The same for 3.1.1: remaining length 2, a topic of 5 bytes.
    const V3_HEADER_PAST_PACKET: &[u8] = &[0x30, 0x02, 0x00, 0x05, b'a', b'b', b'c', b'd', b'e'];

    // The upstream bug the publish guard exists for, as the fuzz target found it: with
    // overflow checks (test builds) the codec panics; a release build wraps. When a new
    // ntex-mqtt refuses these packets instead, these tests fail: the guard can then go.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "subtract with overflow")]
    fn ntex_mqtt_v5_codec_underflows_on_a_publish_header_past_its_packet() {
        let mut buf = BytesMut::from(V5_HEADER_PAST_PACKET);
        let _ = v5::codec::Codec::new().decode(&mut buf);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "subtract with overflow")]
    fn ntex_mqtt_v3_codec_underflows_on_a_publish_header_past_its_packet() {
        let mut buf = BytesMut::from(V3_HEADER_PAST_PACKET);
        let _ = v3::codec::Codec::new().decode(&mut buf);
    }

    #[test]
    fn a_payload_longer_than_its_packet_is_refused() {
        // What the release codec hands over for the packets above.
        assert!(!payload_fits(3, 3u32.wrapping_sub(8) as usize));
        assert!(!payload_fits(2, 2u32.wrapping_sub(7) as usize));
        assert!(!payload_fits(0, 1));
        // Real publishes: a payload is at most the packet less its header.
        assert!(payload_fits(16, 14));
        assert!(payload_fits(1 << 20, (1 << 20) - 2));
        assert!(payload_fits(2, 0));
    }
}
