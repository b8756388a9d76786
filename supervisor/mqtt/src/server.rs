//! The MQTT 3.1.1 and 5 protocol side of the local server (ntex-mqtt 8.2 on ntex 3, tokio):
//! listeners, TLS with client certificates, CONNECT/SUBSCRIBE/PUBLISH handling, and the
//! per-connection writer that delivers routed messages to a device.
//!
//! The server runs on its own thread (`mqtt-server`) with its own ntex system, signals off:
//! the actix system on the main thread owns signals. Everything it shares with the rest of the
//! runtime goes through [`MqttHub`] (thread-safe).

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroU32;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use ntex::io::types::PeerAddr;
use ntex::io::IoConfig;
use ntex::server::rustls::{PeerCert, TlsAcceptor};
use ntex::service::dev::ApplyCtx;
use ntex::service::{
    apply_fn_factory, chain_factory, fn_factory_with_config, fn_service, Service, ServiceCtx,
    ServiceFactory,
};
use ntex::util::{ByteString, Bytes};
use ntex::SharedCfg;
use ntex_mqtt::{v3, v5, MqttError, MqttServer, MqttServiceConfig, QoS};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;

use super::admission::{Admission, PeerLimits};
use super::certs::ServerFiles;
use super::{Connected, DeviceSession, MqttHub, Outgoing, PublishRefusal, Refusal, HIGH_WATER};
use evergreen_runtime::router::Receipt;

/// The error type of every service; the details are logged where they happen.
#[derive(Debug, Clone, Copy)]
pub struct ServerError;

impl From<()> for ServerError {
    fn from((): ()) -> Self {
        ServerError
    }
}

impl From<ntex_mqtt::error::PayloadError> for ServerError {
    fn from(_: ntex_mqtt::error::PayloadError) -> Self {
        ServerError
    }
}

impl TryFrom<ServerError> for v5::PublishAck {
    type Error = ServerError;

    fn try_from(err: ServerError) -> Result<Self, Self::Error> {
        Err(err)
    }
}

/// Why the TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("{}: {what}", path.display())]
    Bad {
        path: std::path::PathBuf,
        what: String,
    },
    #[error("TLS settings: {0}")]
    Rustls(String),
}

fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.into(),
        source,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Bad {
            path: path.into(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Bad {
            path: path.into(),
            what: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The server's rustls settings: its certificate, and client certificates required and
/// verified against the group CA.
pub(crate) fn tls_config(files: &ServerFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_certs(&files.ca)? {
        roots.add(ca).map_err(|e| TlsError::Bad {
            path: files.ca.clone(),
            what: e.to_string(),
        })?;
    }
    let chain = pem_certs(&files.cert)?;
    let key_data = std::fs::read(&files.key).map_err(|source| TlsError::Io {
        path: files.key.clone(),
        source,
    })?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_data[..])
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Bad {
            path: files.key.clone(),
            what: "no PEM private key in the file".into(),
        })?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The subject CN of the TLS peer's certificate, if any.
fn peer_cn(io: &ntex::io::IoBoxed) -> Option<String> {
    let item = io.query::<PeerCert<'static>>();
    let cert = item.as_ref()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.0.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    cn
}

/// The sending side of a connection, whichever protocol version it speaks.
#[derive(Clone)]
enum AnySink {
    V3(v3::MqttSink),
    V5(v5::MqttSink),
}

type AckFuture = Pin<Box<dyn Future<Output = bool>>>;

impl AnySink {
    async fn ready(&self) -> bool {
        match self {
            AnySink::V3(s) => s.ready().await,
            AnySink::V5(s) => s.ready().await,
        }
    }

    fn close(&self) {
        match self {
            AnySink::V3(s) => s.close(),
            AnySink::V5(s) => s.close(),
        }
    }

    fn send0(&self, topic: ByteString, payload: Bytes) -> bool {
        match self {
            AnySink::V3(s) => s.publish(topic).send_at_most_once(payload).is_ok(),
            AnySink::V5(s) => s.publish(topic).send_at_most_once(payload).is_ok(),
        }
    }

    /// Writes a QoS 1 publish now (the sink must be ready); the future tells whether it was
    /// acknowledged.
    fn send1(&self, topic: ByteString, payload: Bytes) -> AckFuture {
        match self {
            AnySink::V3(s) => {
                let f = s.publish(topic).send_at_least_once(payload);
                Box::pin(async move { f.await.is_ok() })
            }
            AnySink::V5(s) => {
                let f = s.publish(topic).send_at_least_once(payload);
                Box::pin(async move { f.await.is_ok() })
            }
        }
    }
}

/// Ends the session's connection in the hub when the last handle of the connection drops.
struct Guard {
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
struct Conn {
    hub: Arc<MqttHub>,
    session: Arc<DeviceSession>,
    sink: AnySink,
    /// Taken by the writer once the CONNACK is out.
    rx: Rc<RefCell<Option<mpsc::Receiver<Outgoing>>>>,
    _guard: Rc<Guard>,
}

impl Conn {
    fn new(hub: Arc<MqttHub>, c: Connected, sink: AnySink) -> Conn {
        Conn {
            _guard: Rc::new(Guard {
                hub: hub.clone(),
                session: c.session.clone(),
                conn_id: c.conn_id,
            }),
            hub,
            session: c.session,
            sink,
            rx: Rc::new(RefCell::new(Some(c.rx))),
        }
    }

    /// Starts delivering to the device: first what queued while it was offline, then what
    /// the router sends.
    fn start_writer(&self) {
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

async fn writer(
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

async fn deliver(
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
        let ok = sink.send0(topic, payload);
        if ok {
            hub.counters
                .delivered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        return ok;
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
        if acked.await {
            counters
                .delivered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A stored (offline-queued) message leaves the session store once acknowledged.
            session.acked(&out);
        } else {
            session.requeue(out);
        }
    });
    true
}

/// How long a device's publish waits for a full device queue it is routed to.
const ROOM_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits (at most [`ROOM_WAIT`]) until every connected device queue the publish would reach
/// is below [`HIGH_WATER`]; past the wait the message is routed anyway and a full queue drops
/// (and counts) it, and the wait is counted in `held_too_long`. QoS 0 and QoS 1 publishes both
/// wait: [`PublishService`] runs at most [`PUBLISH_SLOTS`] of them per connection and reads no
/// further while they are busy, so the wait throttles the publishing device over TCP with
/// bounded memory instead of dropping its QoS 0 messages under a burst.
async fn wait_for_room(hub: &MqttHub, source: &str, topic: &str) {
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
                super::bump(&hub.counters.held_too_long);
                return;
            }
        }
    }
}

/// Publish handlers of one connection that run at once.
const PUBLISH_SLOTS: usize = 16;

/// QoS 1 publishes of one connection routed to a durable target and waiting for its commit, at
/// most. Group commit takes whatever waits, so this is what one device can put into one fsync;
/// more than a device's usual in-flight window (mosquitto's 20, paho's 65535 is rarely reached).
const UNSTORED: usize = 256;

/// How long a publish waits for the rest of its payload (see [`PublishService::payload`]).
const PAYLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A device's publishes: routed with the device's thing ARN as source.
///
/// Its readiness is the connection's flow control: while [`PUBLISH_SLOTS`] publishes of the
/// connection are still being handled (waiting in [`wait_for_room`] for a full subscriber
/// queue), the service is not ready, so ntex-mqtt's dispatcher decodes nothing more and the
/// device is held back by TCP. ntex-mqtt 8.2.1's own in-flight middleware does not do this for
/// a stream of publishes: its readiness check is skipped whenever the previous request was a
/// publish (it waits for that publish's payload chunks), so under a QoS 0 flood it started
/// thousands of handlers at once, each with its own hold deadline, which then all expired
/// together and overflowed the subscriber's queue.
struct PublishService {
    conn: Conn,
    slots: Rc<tokio::sync::Semaphore>,
    /// Publishes whose payload is still arriving (a packet split across reads comes as
    /// payload chunks, which the dispatcher hands over only while the service is ready).
    reading: Rc<std::cell::Cell<usize>>,
    /// Woken when a publish starts reading its payload, so a readiness check already waiting
    /// for a slot lets that payload's chunks through (see [`PublishService::slot_free`]).
    reading_started: Rc<tokio::sync::Notify>,
    /// QoS 1 publishes routed and waiting for a durable target's commit (see
    /// [`PublishService::route`]).
    unstored: Rc<tokio::sync::Semaphore>,
}

/// Counts a publish as reading its payload while it lives.
struct Reading(Rc<std::cell::Cell<usize>>);

impl Reading {
    fn new(count: &Rc<std::cell::Cell<usize>>, started: &tokio::sync::Notify) -> Reading {
        count.set(count.get() + 1);
        started.notify_waiters();
        Reading(count.clone())
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl PublishService {
    fn new(conn: &Conn) -> PublishService {
        PublishService {
            conn: conn.clone(),
            slots: Rc::new(tokio::sync::Semaphore::new(PUBLISH_SLOTS)),
            reading: Rc::default(),
            reading_started: Rc::default(),
            unstored: Rc::new(tokio::sync::Semaphore::new(UNSTORED)),
        }
    }

    /// Ready once a slot is free, and always while a payload is arriving: its chunks must get
    /// through or the publish waiting for them never finishes (ntex-mqtt would wait forever).
    ///
    /// The dispatcher may ask for readiness before the publish it just handed over has begun
    /// to read its payload; a check then waiting for a slot must notice that publish start
    /// reading, or its chunks would wait for a slot that only the commits of earlier
    /// publishes free (with a slow spool, longer than [`PAYLOAD_WAIT`]).
    async fn slot_free(&self) -> Result<(), ServerError> {
        loop {
            let started = self.reading_started.notified();
            let mut started = std::pin::pin!(started);
            // Registered before the check, so a publish that starts reading after it wakes us.
            started.as_mut().enable();
            if self.slots.available_permits() > 0 || self.reading.get() > 0 {
                return Ok(());
            }
            tokio::select! {
                permit = self.slots.acquire() => {
                    drop(permit.map_err(|_| ServerError)?);
                    return Ok(());
                }
                () = started => {}
            }
        }
    }

    /// The publish's whole payload, or `None` (logged and counted as dropped) if it did not
    /// finish arriving within [`PAYLOAD_WAIT`]. The bound is a guard: a payload that never
    /// completes would otherwise hold this publish forever and, through `reading`, switch the
    /// connection's flow control off.
    async fn payload(
        &self,
        topic: &str,
        read: impl Future<Output = Result<Bytes, ntex_mqtt::error::PayloadError>>,
    ) -> Result<Option<Bytes>, ServerError> {
        let _reading = Reading::new(&self.reading, &self.reading_started);
        match tokio::time::timeout(PAYLOAD_WAIT, read).await {
            Ok(payload) => Ok(Some(payload?)),
            Err(_) => {
                super::bump(&self.conn.hub.counters.payload_timeouts);
                super::bump(&self.conn.hub.counters.publishes_dropped);
                log::warn!(
                    "MQTT: {} published to {topic:?} but its payload did not arrive within {PAYLOAD_WAIT:?}; dropped",
                    self.conn.session.thing_arn
                );
                Ok(None)
            }
        }
    }

    /// Routes the publish (in one of the connection's slots) and, for QoS 1, returns only once
    /// every durable target (the cloud spool) has committed it, so the PUBACK the caller then
    /// sends follows the fsync.
    ///
    /// The commit is waited for after the slot is given back, holding one of [`UNSTORED`]
    /// permits instead: a device with that many publishes unstored is held (its next publish
    /// waits for a permit in its slot, so the slots fill and nothing more is read), while a
    /// slot never waits on the disk in the common case.
    async fn route(
        &self,
        slot: tokio::sync::SemaphorePermit<'_>,
        topic: &str,
        payload: &[u8],
        qos1: bool,
    ) -> Result<(), PublishRefusal> {
        let hub = &self.conn.hub;
        let thing = &self.conn.session.thing_arn;
        wait_for_room(hub, thing, topic).await;
        if !qos1 {
            return hub.publish(thing, topic, payload, None);
        }
        // Closed never: the semaphore lives as long as the service.
        let Ok(_unstored) = self.unstored.acquire().await else {
            return Err(PublishRefusal::NotStored);
        };
        let (receipt, stored) = Receipt::new();
        hub.publish(thing, topic, payload, Some(receipt))?;
        drop(slot);
        if stored.await {
            Ok(())
        } else {
            super::bump(&hub.counters.not_stored);
            log::warn!(
                "MQTT: a QoS 1 publish of {thing} to {topic:?} was not stored for the cloud; not acknowledged"
            );
            Err(PublishRefusal::NotStored)
        }
    }
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
fn payload_fits(packet_size: u32, payload_size: usize) -> bool {
    u64::try_from(payload_size).is_ok_and(|p| p <= u64::from(packet_size))
}

/// Logs and counts a publish refused by [`payload_fits`].
fn malformed_publish(conn: &Conn, packet_size: u32, payload_size: usize) -> ServerError {
    super::bump(&conn.hub.counters.publishes_dropped);
    log::warn!(
        "MQTT: {} sent a PUBLISH whose header is longer than its packet ({payload_size} payload bytes in a packet of {packet_size}); connection closed",
        conn.session.thing_arn
    );
    ServerError
}

impl Service<v3::Publish> for PublishService {
    type Response = ();
    type Error = ServerError;

    async fn ready(&self, _: ServiceCtx<'_, Self>) -> Result<(), ServerError> {
        self.slot_free().await
    }

    async fn call(&self, p: v3::Publish, _: ServiceCtx<'_, Self>) -> Result<(), ServerError> {
        if !payload_fits(p.packet_size(), p.payload_size()) {
            return Err(malformed_publish(
                &self.conn,
                p.packet_size(),
                p.payload_size(),
            ));
        }
        let qos1 = p.qos() != QoS::AtMostOnce;
        let Some(payload) = self.payload(p.publish_topic(), p.read_all()).await? else {
            // A PUBACK would say it was taken: a QoS 1 publish ends the connection instead.
            return if qos1 { Err(ServerError) } else { Ok(()) };
        };
        let slot = self.slots.acquire().await.map_err(|_| ServerError)?;
        match self.route(slot, p.publish_topic(), &payload, qos1).await {
            // MQTT 3.1.1 cannot refuse a publish in its PUBACK, and a PUBACK would say it is
            // safe: the connection is closed instead, so the device sends it again.
            Err(PublishRefusal::NotStored) => Err(ServerError),
            // Other refusals are counted by the hub; MQTT 3.1.1 has no way to tell the device.
            Ok(()) | Err(_) => Ok(()),
        }
    }
}

impl Service<v5::Publish> for PublishService {
    type Response = v5::PublishAck;
    type Error = ServerError;

    async fn ready(&self, _: ServiceCtx<'_, Self>) -> Result<(), ServerError> {
        self.slot_free().await
    }

    async fn call(
        &self,
        p: v5::Publish,
        _: ServiceCtx<'_, Self>,
    ) -> Result<v5::PublishAck, ServerError> {
        if !payload_fits(p.packet_size(), p.payload_size()) {
            return Err(malformed_publish(
                &self.conn,
                p.packet_size(),
                p.payload_size(),
            ));
        }
        let Some(payload) = self.payload(p.publish_topic(), p.read_all()).await? else {
            return Ok(p
                .ack()
                .reason_code(v5::codec::PublishAckReason::UnspecifiedError)
                .reason("the payload did not arrive in time".into()));
        };
        let slot = self.slots.acquire().await.map_err(|_| ServerError)?;
        let qos1 = p.qos() != QoS::AtMostOnce;
        let result = self.route(slot, p.publish_topic(), &payload, qos1).await;
        let ack = p.ack();
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

fn grant(qos: QoS) -> QoS {
    // QoS 2 is granted as 1: deliveries come from the router at most once per route anyway,
    // and exactly-once would need per-session state Evergreen does not keep.
    match qos {
        QoS::AtMostOnce => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// The peer's address, as the TCP stream (under any TLS layer) knows it.
fn peer_addr(io: &ntex::io::IoBoxed) -> Option<SocketAddr> {
    io.query::<PeerAddr>().get().map(|p| p.0)
}

/// The idle timeout of a connection whose device asked for `keep_alive` seconds (0: none),
/// with the keep-alive capped at `max`: MQTT's 1.5 times the keep-alive, so a half-open
/// connection is closed instead of held for up to 65535 s.
pub(crate) fn capped_keep_alive(keep_alive: u16, max: u16) -> u16 {
    if keep_alive == 0 || keep_alive > max {
        max
    } else {
        keep_alive
    }
}

/// Checks an MQTT 3.1.1 CONNECT and opens (or resumes) the device's session: the decision of
/// the v3 handshake, apart from ntex's handshake object so the fuzz target
/// (`crate::fuzzing`) runs the same code on decoded packets. `cert_cn` as for
/// [`MqttHub::connect`].
pub(crate) fn connect_v3(
    hub: &MqttHub,
    pkt: &v3::codec::Connect,
    cert_cn: Option<Option<&str>>,
) -> Result<Connected, Refusal> {
    let persistent = !pkt.clean_session;
    let c = hub.connect(&pkt.client_id, cert_cn, persistent, pkt.last_will.is_some())?;
    if persistent {
        // MQTT 3.1.1 sessions never expire.
        c.session.set_expiry(u32::MAX);
    }
    Ok(c)
}

/// [`connect_v3`] for an MQTT 5 CONNECT: a session is persistent with clean start 0 and a
/// session expiry interval above 0.
pub(crate) fn connect_v5(
    hub: &MqttHub,
    pkt: &v5::codec::Connect,
    cert_cn: Option<Option<&str>>,
) -> Result<Connected, Refusal> {
    let persistent = !pkt.clean_start && pkt.session_expiry_interval_secs > 0;
    let c = hub.connect(&pkt.client_id, cert_cn, persistent, pkt.last_will.is_some())?;
    if persistent {
        c.session.set_expiry(pkt.session_expiry_interval_secs);
    }
    Ok(c)
}

/// One SUBSCRIBE filter of a connected device: the QoS granted (and recorded in its session),
/// or `None` when the group delivers nothing it matches to this device. Both protocol
/// versions answer with it; the fuzz target calls it on decoded packets.
pub(crate) fn subscribe(
    hub: &MqttHub,
    session: &DeviceSession,
    filter: &str,
    qos: QoS,
) -> Option<QoS> {
    if !hub.may_subscribe(&session.thing_arn, filter) {
        return None;
    }
    let q = grant(qos);
    session.subscribe(filter, q == QoS::AtLeastOnce);
    Some(q)
}

async fn handshake_v3(
    hub: Arc<MqttHub>,
    admission: Arc<Admission>,
    tls: bool,
    hs: v3::Handshake,
) -> Result<v3::HandshakeAck<Conn>, ServerError> {
    let pkt = hs.packet();
    let peer = peer_addr(hs.io());
    let cn = tls.then(|| peer_cn(hs.io()));
    let result = connect_v3(&hub, pkt, cn.as_ref().map(Option::as_deref));
    Ok(match result {
        Ok(c) => {
            let present = c.session_present;
            let keep_alive =
                capped_keep_alive(pkt.keep_alive, admission.limits.max_keep_alive_secs);
            let conn = Conn::new(hub, c, AnySink::V3(hs.sink()));
            if let Some(peer) = peer {
                admission.connected(peer);
            }
            let ack = hs.ack(conn, present).idle_timeout(ntex::time::Seconds(
                keep_alive.saturating_add(keep_alive / 2),
            ));
            // Trusted now: the connected device's packet limit replaces the CONNECT's.
            match NonZeroU32::new(admission.limits.max_packet_bytes) {
                Some(max) => ack.max_packet_size(max),
                None => ack,
            }
        }
        Err(Refusal::IdMismatch) => hs.identifier_rejected(),
        Err(_) => hs.not_authorized(),
    })
}

async fn handshake_v5(
    hub: Arc<MqttHub>,
    admission: Arc<Admission>,
    tls: bool,
    hs: v5::Handshake,
) -> Result<v5::HandshakeAck<Conn>, ServerError> {
    let pkt = hs.packet();
    let peer = peer_addr(hs.io());
    let asked_keep_alive = pkt.keep_alive;
    let cn = tls.then(|| peer_cn(hs.io()));
    let result = connect_v5(&hub, pkt, cn.as_ref().map(Option::as_deref));
    Ok(match result {
        Ok(c) => {
            let present = c.session_present;
            let limits = &admission.limits;
            let keep_alive = capped_keep_alive(asked_keep_alive, limits.max_keep_alive_secs);
            let max_packet = NonZeroU32::new(limits.max_packet_bytes).map(NonZeroU32::get);
            let conn = Conn::new(hub, c, AnySink::V5(hs.sink()));
            if let Some(peer) = peer {
                admission.connected(peer);
            }
            hs.ack(conn)
                // The idle timeout; never 0 (keep_alive is at least 30, checked in config).
                .keep_alive(keep_alive.saturating_add(keep_alive / 2).max(1))
                .with(|ack| {
                    ack.session_present = present;
                    ack.retain_available = false;
                    ack.shared_subscription_available = false;
                    ack.subscription_identifiers_available = false;
                    // Told to the device (MQTT 5 Server Keep Alive) when it differs from
                    // what it asked.
                    if keep_alive != asked_keep_alive {
                        ack.server_keepalive_sec = Some(keep_alive);
                    }
                    // Trusted now: ntex-mqtt sets the codec's limit from this field after
                    // the CONNACK, replacing the CONNECT's.
                    ack.max_packet_size = max_packet;
                })
        }
        Err(Refusal::IdMismatch) => {
            hs.failed(v5::codec::ConnectAckReason::ClientIdentifierNotValid)
        }
        Err(Refusal::Unsupported(_)) => {
            hs.failed(v5::codec::ConnectAckReason::ImplementationSpecificError)
        }
        Err(_) => hs.failed(v5::codec::ConnectAckReason::NotAuthorized),
    })
}

/// Rate, in bytes per read-timeout period, at which a packet that keeps arriving has its read
/// timeout extended (ntex's frame read rate): a device on a slow link gets its large publish
/// through, a peer trickling a byte now and then does not hold the connection.
const READ_RATE: u32 = 1024;

fn mqtt_config(limits: &PeerLimits) -> impl Into<SharedCfg> {
    let deadline = ntex::time::Seconds(
        u16::try_from(limits.connect_timeout.as_secs())
            .unwrap_or(u16::MAX)
            .max(1),
    );
    SharedCfg::new("MQTT")
        .add(
            MqttServiceConfig::new()
                .set_max_qos(QoS::AtLeastOnce)
                // `mosquitto_pub -m` sends PUBLISH then DISCONNECT at once (TOOLCHAIN.md).
                .set_handle_qos_after_disconnect(Some(QoS::AtLeastOnce))
                // Until the CONNECT is accepted a peer is nobody: its packets (the CONNECT)
                // are small, and a bigger length closes the connection at the fixed header,
                // before anything is buffered (ntex-mqtt reserves a non-PUBLISH packet's whole
                // length at once). The handshakes raise it to `max_packet_bytes`.
                .set_max_size(limits.max_packet_bytes_before_connect)
                // The admission deadline (`admitted`) covers accept to CONNECT; these are
                // ntex-mqtt's own, each bounding one step by the same time.
                .protocol_version_timeout(deadline)
                .set_connect_timeout(deadline),
        )
        .add(IoConfig::new().set_frame_read_rate(
            ntex::time::Seconds(limits.read_timeout_secs.max(1)),
            ntex::time::Seconds::ZERO,
            READ_RATE,
        ))
        .add(ntex::tls::TlsConfig::new().set_handshake_timeout(deadline))
}

/// Admission in front of a listener's service: the connection limits, checked at accept
/// before a byte is read (or a TLS handshake started), and the CONNECT deadline, which
/// closes a connection whose CONNECT was not accepted in time.
fn admitted<F, S>(
    admission: Arc<Admission>,
    inner: S,
) -> impl ServiceFactory<
    ntex::io::Io<F>,
    SharedCfg,
    Response = (),
    Error = MqttError<ServerError>,
    InitError = (),
> + 'static
where
    F: ntex::io::Filter,
    S: ServiceFactory<
            ntex::io::Io<F>,
            SharedCfg,
            Response = (),
            Error = MqttError<ServerError>,
            InitError = (),
        > + 'static,
{
    apply_fn_factory(
        inner,
        async move |io: ntex::io::Io<F>, svc: &ApplyCtx<'_, S::Service>| {
            let Some(peer) = io.query::<PeerAddr>().get().map(|p| p.0) else {
                // Not a TCP stream (never on these listeners): nothing to count it by.
                return svc.call(io).await;
            };
            let Ok(ticket) = admission.admit(peer) else {
                // Dropping the stream closes it: nothing was read, nothing is answered.
                return Ok(());
            };
            let handle = io.get_ref();
            let call = svc.call(io);
            tokio::pin!(call);
            tokio::select! {
                result = &mut call => return result,
                () = tokio::time::sleep(admission.limits.connect_timeout) => {}
            }
            if !ticket.connected() {
                admission.expired(peer);
                handle.terminate();
            }
            call.await
        },
    )
}

/// The MQTT service (both protocol versions) for one listener.
fn mqtt_service<F: ntex::io::Filter>(
    hub: Arc<MqttHub>,
    admission: Arc<Admission>,
    tls: bool,
) -> impl ServiceFactory<
    ntex::io::Io<F>,
    SharedCfg,
    Response = (),
    Error = MqttError<ServerError>,
    InitError = (),
> + 'static {
    let (h3, h5) = (hub.clone(), hub);
    let (a3, a5) = (admission.clone(), admission);
    MqttServer::new()
        .v3(
            v3::MqttServer::new(move |hs| handshake_v3(h3.clone(), a3.clone(), tls, hs))
                .protocol(fn_factory_with_config(
                    async |session: v3::Session<Conn>| {
                        Ok::<_, ServerError>(fn_service(move |msg: v3::ProtocolMessage| {
                            let conn = session.clone();
                            async move {
                                Ok::<_, ServerError>(match msg {
                                    v3::ProtocolMessage::Subscribe(mut s) => {
                                        for mut sub in s.iter_mut() {
                                            let filter = sub.topic().to_string();
                                            match subscribe(
                                                &conn.hub,
                                                &conn.session,
                                                &filter,
                                                sub.qos(),
                                            ) {
                                                Some(q) => sub.confirm(q),
                                                None => sub.fail(),
                                            }
                                        }
                                        s.ack()
                                    }
                                    v3::ProtocolMessage::Unsubscribe(u) => {
                                        for t in u.iter() {
                                            conn.session.unsubscribe(t);
                                        }
                                        u.ack()
                                    }
                                    other => other.ack(),
                                })
                            }
                        }))
                    },
                ))
                .publish(fn_factory_with_config(
                    async |session: v3::Session<Conn>| {
                        session.start_writer();
                        Ok::<_, ServerError>(PublishService::new(&session))
                    },
                )),
        )
        .v5(
            v5::MqttServer::new(move |hs| handshake_v5(h5.clone(), a5.clone(), tls, hs))
                .protocol(fn_factory_with_config(
                    async |session: v5::Session<Conn>| {
                        Ok::<_, ServerError>(fn_service(move |msg: v5::ProtocolMessage| {
                            let conn = session.clone();
                            async move {
                                Ok::<_, ServerError>(match msg {
                                    v5::ProtocolMessage::Subscribe(mut s) => {
                                        for mut sub in s.iter_mut() {
                                            let filter = sub.topic().to_string();
                                            let qos = sub.options().qos;
                                            match subscribe(&conn.hub, &conn.session, &filter, qos)
                                            {
                                                Some(q) => sub.confirm(q),
                                                None => sub.fail(
                                                    v5::codec::SubscribeAckReason::NotAuthorized,
                                                ),
                                            }
                                        }
                                        s.ack()
                                    }
                                    v5::ProtocolMessage::Unsubscribe(u) => {
                                        for t in u.iter() {
                                            conn.session.unsubscribe(t);
                                        }
                                        u.ack()
                                    }
                                    other => other.ack(),
                                })
                            }
                        }))
                    },
                ))
                .publish(fn_factory_with_config(
                    async |session: v5::Session<Conn>| {
                        session.start_writer();
                        Ok::<_, ServerError>(PublishService::new(&session))
                    },
                )),
        )
}

/// Listeners bound before the deployment (so a busy port is a start-up error).
#[derive(Debug, Default)]
pub(crate) struct Bound {
    pub tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    pub plain: Option<TcpListener>,
}

impl Bound {
    pub(crate) fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }
    pub(crate) fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(|l| l.local_addr().ok())
    }
}

/// Binds a listener as the server wants it (non-blocking, address reuse left to the OS).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves the bound listeners on the `mqtt-server` thread until the process exits.
pub(crate) fn serve(hub: Arc<MqttHub>, bound: Bound, limits: PeerLimits) -> io::Result<()> {
    if bound.tls.is_none() && bound.plain.is_none() {
        return Ok(());
    }
    let admission = Admission::new(limits);
    let max_connections = usize::try_from(admission.limits.max_connections).unwrap_or(usize::MAX);
    // ntex-tls lets a worker run 256 TLS handshakes at once and, past that, stops accepting
    // on every listener of the worker until one ends: 256 sockets that never send a
    // ClientHello held new devices (and the plain listener) for the handshake timeout, and
    // 1,500 of them for many seconds. Admission bounds connections itself, so the handshake
    // counter is set to that bound and never stops the accept loop. Set before the worker
    // thread starts: the counter is thread-local, initialised from this value.
    ntex::tls::max_concurrent_ssl_accept(max_connections);
    std::thread::Builder::new()
        .name("mqtt-server".into())
        .spawn(move || {
            let result = ntex::rt::System::build()
                .name("mqtt-server")
                .disable_signals()
                .build(ntex::rt::DefaultRuntime)
                .block_on(async move {
                    let mut builder = ntex::server::build()
                        .workers(1)
                        .disable_signals()
                        // ntex's own per-worker limit stops the accept loop; it sits above
                        // admission's so that admission refuses (counted, logged) first.
                        .maxconn(max_connections.saturating_add(64));
                    if let Some((listener, config)) = bound.tls {
                        let hub = hub.clone();
                        let admission = admission.clone();
                        let cfg = mqtt_config(&admission.limits);
                        builder = builder
                            .listen("mqtt-tls", listener, async move |_| {
                                admitted(
                                    admission.clone(),
                                    chain_factory(TlsAcceptor::new(config.clone()))
                                        .map_err(|e| {
                                            log::info!("MQTT: TLS handshake failed: {e}");
                                            MqttError::Service(ServerError)
                                        })
                                        .and_then(mqtt_service(
                                            hub.clone(),
                                            admission.clone(),
                                            true,
                                        )),
                                )
                            })?
                            .config("mqtt-tls", cfg);
                    }
                    if let Some(listener) = bound.plain {
                        let hub = hub.clone();
                        let admission = admission.clone();
                        let cfg = mqtt_config(&admission.limits);
                        builder = builder
                            .listen("mqtt-plain", listener, async move |_| {
                                admitted(
                                    admission.clone(),
                                    mqtt_service(hub.clone(), admission.clone(), false),
                                )
                            })?
                            .config("mqtt-plain", cfg);
                    }
                    // The counters, logged when they changed (every 30 s at most).
                    let counters = hub.counters.clone();
                    let hub_sweep = hub.clone();
                    let admission_log = admission.clone();
                    ntex::rt::spawn(async move {
                        let mut last = String::new();
                        loop {
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                            // MQTT 5 session expiry (a returning device checks its own at once).
                            hub_sweep.expire_sessions(super::sessions::unix_now());
                            let now =
                                format!("{}; {}", counters.summary(), admission_log.summary());
                            if now != last {
                                log::info!("MQTT server: {now}");
                                last = now;
                            }
                        }
                    });
                    if let Err(e) = builder.run().await {
                        log::error!("MQTT server: {e:?}");
                    }
                    Ok::<_, io::Error>(())
                });
            if let Err(e) = result {
                log::error!("MQTT server stopped: {e}");
            }
        })?;
    Ok(())
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
