//! The MQTT 3.1.1 and 5 protocol side of the local server (ntex-mqtt 8.2 on ntex 3, tokio):
//! listeners, TLS with client certificates, CONNECT/SUBSCRIBE/PUBLISH handling, and the
//! per-connection writer that delivers routed messages to a device.
//!
//! The server runs on its own thread (`mqtt-server`) with its own ntex system, signals off:
//! the actix system on the main thread owns signals. Everything it shares with the rest of the
//! runtime goes through [`MqttHub`] (thread-safe).

mod connect;
mod deliver;
mod lane;
mod publish;
mod tls;
mod tls_layer;

pub(crate) use connect::{capped_keep_alive, connect_v3, connect_v5, subscribe, Opening};
pub(crate) use tls::tls_config;
pub use tls::TlsError;

use connect::{handshake_v3, handshake_v5, send_retained, RetainOnSubscribe, SubOptions};
use deliver::Conn;
use publish::PublishService;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroU32;
use std::sync::Arc;

use ntex::io::types::PeerAddr;
use ntex::io::IoConfig;
use ntex::service::dev::ApplyCtx;
use ntex::service::{
    apply_fn_factory, chain_factory, fn_factory_with_config, fn_service, ServiceFactory,
};
use ntex::SharedCfg;
use ntex_mqtt::{v3, v5, HandshakeError, MqttError, MqttServer, MqttServiceConfig, QoS};

use super::admission::{Admission, PeerLimits};
use super::{Counters, MqttHub, SubRefusal};

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

/// Counts why the protocol layer closed a connection: the bound it hit, or another error.
fn count_close(counters: &Counters, err: &ntex_mqtt::error::ProtocolError) {
    use ntex_mqtt::error::{DecodeError, ProtocolError};
    crate::bump(match err {
        ProtocolError::Decode(DecodeError::MaxSizeExceeded { .. }) => {
            &counters.closed_packet_too_large
        }
        ProtocolError::KeepAliveTimeout => &counters.closed_keep_alive,
        ProtocolError::ReadTimeout => &counters.closed_read_timeout,
        _ => &counters.closed_protocol_error,
    });
}

/// Counts a connected device's connection closed by the protocol layer (ntex-mqtt tells its
/// control service before it stops). Answering `None` leaves ntex-mqtt's own reply as it is:
/// MQTT 5 gets the DISCONNECT with the reason (0x95 packet too large, 0x8D keep-alive
/// timeout, …), MQTT 3.1.1 the closed connection.
fn count_stop(counters: &Counters, control: &ntex_mqtt::Control<ServerError>) {
    if let ntex_mqtt::Control::Stop(ntex_mqtt::Reason::Protocol(err)) = control {
        count_close(counters, err.get_ref());
    }
}
/// The peer's address, as the TCP stream (under any TLS layer) knows it.
fn peer_addr(io: &ntex::io::IoBoxed) -> Option<SocketAddr> {
    io.query::<PeerAddr>().get().map(|p| p.0)
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
                .set_max_qos(QoS::ExactlyOnce)
                // `mosquitto_pub -m` sends PUBLISH then DISCONNECT at once (TOOLCHAIN.md).
                .set_handle_qos_after_disconnect(Some(QoS::ExactlyOnce))
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
            match tokio::time::timeout(admission.limits.connect_timeout, opening(&io)).await {
                Ok(Opening::Supported | Opening::Other | Opening::NeedMore) => {}
                Ok(Opening::UnsupportedLevel) => {
                    // MQTT-3.1.2-2: CONNACK 0x01 (unacceptable protocol level), then close.
                    crate::bump(&admission.counters.connections_refused);
                    tracing::warn!("MQTT: a client at {peer} asked for a protocol level this server does not speak (it speaks MQTT 3.1.1 and 5); CONNACK 0x01 sent");
                    let _ = io.encode_slice(&CONNACK_UNACCEPTABLE_LEVEL);
                    let _ = io.flush(true).await;
                    io.close();
                    return Ok(());
                }
                Ok(Opening::Closed) => return Ok(()),
                Err(_) => {
                    admission.expired(peer);
                    return Ok(());
                }
            }
            let handle = io.get_ref();
            let call = svc.call(io);
            tokio::pin!(call);
            tokio::select! {
                result = &mut call => {
                    // Before its CONNECT was accepted the connection has no control service:
                    // what closed it comes back here.
                    match &result {
                        Err(MqttError::Handshake(HandshakeError::Protocol(err))) => {
                            count_close(&admission.counters, err);
                        }
                        // ntex-mqtt's own CONNECT deadline, the same as ours, fired first.
                        Err(MqttError::Handshake(HandshakeError::Timeout)) => {
                            admission.expired(peer);
                        }
                        _ => {}
                    }
                    return result;
                }
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

/// Logs a device's failed TLS handshake: a refusal (its certificate not from the group CA, no
/// certificate, an unsupported version) as a warning with rustls's reason, since a device is
/// being kept out; a client that went away mid-handshake (a port scan, a health check) at info.
fn log_tls_failure(peer: Option<SocketAddr>, why: &tls_layer::HandshakeFailure) {
    let peer = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
    match why {
        tls_layer::HandshakeFailure::Refused(_) => {
            tracing::warn!("MQTT: TLS handshake with {peer} refused: {why}");
        }
        tls_layer::HandshakeFailure::Io(_) => {
            tracing::info!("MQTT: TLS handshake with {peer} failed: {why}");
        }
    }
}

/// An MQTT 3.1.1 CONNACK with return code 0x01, "unacceptable protocol level".
const CONNACK_UNACCEPTABLE_LEVEL: [u8; 4] = [0x20, 0x02, 0x00, 0x01];

/// Waits for a connection's first bytes (without taking them) and tells what they open with.
async fn opening<F: ntex::io::Filter>(io: &ntex::io::Io<F>) -> Opening {
    loop {
        let seen = io.with_read_buf(|buf| connect::opening(buf));
        if seen != Opening::NeedMore {
            return seen;
        }
        if !matches!(io.read_notify().await, Ok(Some(()))) {
            return Opening::Closed;
        }
    }
}

/// A v5 subscription's options as the hub takes them.
fn sub_options(o: &v5::codec::SubscriptionOptions, sub_id: Option<u32>) -> SubOptions {
    use v5::codec::RetainHandling;
    SubOptions {
        sub_id,
        no_local: o.no_local,
        retain_as_published: o.retain_as_published,
        retained: match o.retain_handling {
            RetainHandling::AtSubscribe => RetainOnSubscribe::Send,
            RetainHandling::AtSubscribeNew => RetainOnSubscribe::SendIfNew,
            RetainHandling::NoAtSubscribe => RetainOnSubscribe::No,
        },
    }
}

/// The MQTT 5 SUBACK reason for a filter not granted.
fn suback_reason(why: SubRefusal) -> v5::codec::SubscribeAckReason {
    use v5::codec::SubscribeAckReason;
    match why {
        SubRefusal::NotAuthorized => SubscribeAckReason::NotAuthorized,
        SubRefusal::FilterInvalid => SubscribeAckReason::TopicFilterInvalid,
    }
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
                // ntex-mqtt's in-flight middleware is replaced by `PublishService`'s own flow
                // control (its `Lane`): the middleware counts every publish still waiting for
                // the spool's commit against its limit of 16, so a device publishing to the
                // cloud was held to 16 commits in flight instead of `UNSTORED` (the split-payload
                // test in `cloud_ack.rs` took 72 s with it, 45 s without).
                .replace_middlewares(ntex::service::Identity)
                .protocol(fn_factory_with_config(
                    async |session: v3::Session<Conn>| {
                        Ok::<_, ServerError>(fn_service(move |msg: v3::ProtocolMessage| {
                            let conn = session.clone();
                            async move {
                                Ok::<_, ServerError>(match msg {
                                    v3::ProtocolMessage::Subscribe(mut s) => {
                                        let mut retained = Vec::new();
                                        for mut sub in s.iter_mut() {
                                            let filter = sub.topic().to_string();
                                            match subscribe(
                                                &conn.hub,
                                                &conn.session,
                                                &filter,
                                                sub.qos(),
                                                SubOptions::default(),
                                            ) {
                                                Ok((q, r)) => {
                                                    sub.confirm(q);
                                                    retained.extend(r);
                                                }
                                                Err(_) => sub.fail(),
                                            }
                                        }
                                        send_retained(&conn, retained);
                                        s.ack()
                                    }
                                    v3::ProtocolMessage::PublishRelease(r) => {
                                        conn.session.qos2_released(r.packet_id.get());
                                        r.ack()
                                    }
                                    v3::ProtocolMessage::Disconnect(d) => {
                                        // MQTT-3.1.2-10: a DISCONNECT withdraws the will.
                                        conn.withdraw_will();
                                        d.ack()
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
                .control(fn_factory_with_config(
                    async |session: v3::Session<Conn>| {
                        let counters = session.hub.counters.clone();
                        Ok::<_, ServerError>(fn_service(
                            move |control: ntex_mqtt::Control<ServerError>| {
                                count_stop(&counters, &control);
                                async { Ok::<Option<v3::codec::Encoded>, ServerError>(None) }
                            },
                        ))
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
                // As for MQTT 3.1.1 above.
                .replace_middlewares(ntex::service::Identity)
                .protocol(fn_factory_with_config(
                    async |session: v5::Session<Conn>| {
                        Ok::<_, ServerError>(fn_service(move |msg: v5::ProtocolMessage| {
                            let conn = session.clone();
                            async move {
                                Ok::<_, ServerError>(match msg {
                                    v5::ProtocolMessage::Subscribe(mut s) => {
                                        let mut retained = Vec::new();
                                        let sub_id = s.packet().id.map(NonZeroU32::get);
                                        for mut sub in s.iter_mut() {
                                            let filter = sub.topic().to_string();
                                            let options = sub.options();
                                            match subscribe(
                                                &conn.hub,
                                                &conn.session,
                                                &filter,
                                                options.qos,
                                                sub_options(options, sub_id),
                                            ) {
                                                Ok((q, r)) => {
                                                    sub.confirm(q);
                                                    retained.extend(r);
                                                }
                                                Err(why) => sub.fail(suback_reason(why)),
                                            }
                                        }
                                        send_retained(&conn, retained);
                                        s.ack()
                                    }
                                    v5::ProtocolMessage::PublishRelease(r) => {
                                        conn.session.qos2_released(r.packet().packet_id.get());
                                        r.ack()
                                    }
                                    v5::ProtocolMessage::Disconnect(d) => {
                                        // MQTT-3.1.2-8: only reason 0x04 keeps the will.
                                        if d.packet().reason_code
                                            != v5::codec::DisconnectReasonCode::DisconnectWithWillMessage
                                        {
                                            conn.withdraw_will();
                                        }
                                        if let Some(secs) = d.packet().session_expiry_interval_secs
                                        {
                                            conn.session.disconnect_expiry(secs);
                                        }
                                        d.ack()
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
                .control(fn_factory_with_config(
                    async |session: v5::Session<Conn>| {
                        let counters = session.hub.counters.clone();
                        Ok::<_, ServerError>(fn_service(
                            move |control: ntex_mqtt::Control<ServerError>| {
                                count_stop(&counters, &control);
                                async { Ok::<Option<v5::codec::Encoded>, ServerError>(None) }
                            },
                        ))
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
    let admission = Admission::new(limits, hub.counters.clone());
    let max_connections = usize::try_from(admission.limits.max_connections).unwrap_or(usize::MAX);
    // The TLS handshake is `tls_layer::accept`, not ntex-tls's acceptor: that one also let a
    // worker run only 256 handshakes at once and then stopped accepting on every listener
    // (1,500 sockets that never sent a ClientHello held new devices for seconds). Admission
    // bounds connections, and its CONNECT deadline covers the handshake.
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
                                    chain_factory(fn_service({
                                        let config = config.clone();
                                        move |io: ntex::io::Io<_>| {
                                            let config = config.clone();
                                            async move {
                                                let peer =
                                                    io.query::<PeerAddr>().get().map(|p| p.0);
                                                tls_layer::accept(io, config).await.map_err(|e| {
                                                    log_tls_failure(peer, &e);
                                                    MqttError::Service(ServerError)
                                                })
                                            }
                                        }
                                    }))
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
                    ntex::rt::spawn(async move {
                        let mut last = String::new();
                        loop {
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                            // MQTT 5 session expiry (a returning device checks its own at once).
                            hub_sweep.expire_sessions(crate::sessions::unix_now());
                            let now = counters.summary();
                            if now != last {
                                tracing::info!("MQTT server: {now}");
                                last = now;
                            }
                        }
                    });
                    if let Err(e) = builder.run().await {
                        tracing::error!("MQTT server: {e:?}");
                    }
                    Ok::<_, io::Error>(())
                });
            if let Err(e) = result {
                tracing::error!("MQTT server stopped: {e}");
            }
        })?;
    Ok(())
}
