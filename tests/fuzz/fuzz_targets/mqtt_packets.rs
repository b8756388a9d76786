//! MQTT packet handling in the local server (`evergreen_mqtt`): bytes from a device decoded
//! by the ntex-mqtt codec the server uses (3.1.1 or 5, with the server's packet-size limits
//! before and after the CONNECT), and each decoded packet fed through the server's own
//! handling: admission, the CONNECT decision (group membership, certificate CN, will
//! messages, session resumption), the keep-alive cap, SUBSCRIBE grants, UNSUBSCRIBE and
//! publish routing, with a second device connected to receive what gets routed.
//!
//! Input: a flags byte, then the device's byte stream. Flags: bit 0 MQTT 5 (else 3.1.1);
//! bits 1–2 the listener: plain, TLS with the client id as certificate CN, TLS with another
//! device's CN, TLS without a certificate. A DISCONNECT ends the connection and the rest of
//! the stream is a new connection of the same device (so persistent sessions resume).
//!
//! Known upstream bug, stepped around here: ntex-mqtt 8.2.1 (the newest 8.x; 9.x needs a
//! newer rustc) subtracts a PUBLISH's header length (topic, packet id, v5 properties) from
//! the packet's remaining length without checking it fits, in both codecs
//! (`v3/codec/codec.rs`, `v5/codec/codec.rs`). With overflow checks (this build) that is a
//! panic; in a release build it wraps, and the codec reads the following bytes as a payload
//! of about 4 GiB. The server closes such a connection (`evergreen_mqtt`'s publish guard);
//! this target stops the connection before such a packet reaches the codec, as a fixed codec
//! would (see [`publish_header_overruns`]), so the fuzzer keeps exploring our code.
//!
//! Invariants: what the server grants, accepts and delivers follows the group's rules (see
//! `evergreen_mqtt`'s crate docs): only a device of the group with matching CN connects; a
//! granted filter is valid and reaches a subscription that targets the device (intersects
//! it, or through its parent level: a device's `t/#` matches `t`), at the QoS asked; a publish
//! with a wildcard is refused; a device receives only topics a subscription of the group
//! routes to it.

#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use evergreen_group::plan::{CoreSpec, DeviceSpec, GroupPlan, LoggerPlan, SubscriptionSpec};
use evergreen_ipc::topic::{filters_intersect, matches, validate_filter, validate_topic};
use evergreen_mqtt::fuzzing::{Admitted, Connection, PeerLimits, Server};
use evergreen_mqtt::Refusal;
use libfuzzer_sys::fuzz_target;
use ntex_bytes::{Bytes, BytesMut};
use ntex_codec::Decoder;
use ntex_mqtt::{v3, v5, QoS};

const ACCOUNT: &str = "arn:aws:iot:us-east-1:123456789012:thing/";
const DEVICES: &[&str] = &["sensor-1", "display-1"];
/// (source, subject, target) of the group's subscriptions.
const SUBSCRIPTIONS: &[(&str, &str, &str)] = &[
    ("sensor-1", "sensors/+/temp", "display-1"),
    ("lambda", "display/+/cmd", "display-1"),
    ("sensor-1", "sensors/#", "cloud"),
    ("display-1", "display/ack", "sensor-1"),
    (
        "sensor-1",
        "$aws/things/sensor-1/shadow/#",
        "GGShadowService",
    ),
    ("cloud", "sensor-1/#", "sensor-1"),
];
/// The observing device (`display-1`) subscribes to these at the start.
const OBSERVED: &[&str] = &["sensors/+/temp", "display/#"];

fn endpoint(name: &str) -> String {
    match name {
        "lambda" => "arn:aws:lambda:us-east-1:123456789012:function:cmd:1".to_string(),
        "cloud" | "GGShadowService" => name.to_string(),
        thing => format!("{ACCOUNT}{thing}"),
    }
}

fn plan() -> GroupPlan {
    GroupPlan {
        core: CoreSpec {
            thing_arn: format!("{ACCOUNT}core"),
            thing_name: "core".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
            sync_shadow: false,
        },
        components: BTreeMap::new(),
        subscriptions: SUBSCRIPTIONS
            .iter()
            .enumerate()
            .map(|(i, (source, subject, target))| SubscriptionSpec {
                id: format!("s{i}"),
                source: endpoint(source),
                subject: (*subject).into(),
                target: endpoint(target),
            })
            .collect(),
        devices: DEVICES
            .iter()
            .map(|name| {
                (
                    endpoint(name),
                    DeviceSpec {
                        id: (*name).into(),
                        thing_arn: endpoint(name),
                        thing_name: (*name).into(),
                        certificate_arn: String::new(),
                        sync_shadow: false,
                    },
                )
            })
            .collect(),
        resources: BTreeMap::new(),
        loggers: LoggerPlan::default(),
        stream_manager: None,
    }
}

/// What the group delivers to `thing_arn`: the subjects of subscriptions targeting it.
fn deliverable(thing_arn: &str) -> Vec<&'static str> {
    SUBSCRIPTIONS
        .iter()
        .filter(|(_, _, target)| endpoint(target) == thing_arn)
        .map(|(_, subject, _)| *subject)
        .collect()
}

/// Whether `buf` starts with a PUBLISH whose header (topic, packet id, v5 properties) is
/// longer than the packet: the input on which ntex-mqtt 8.2.1's codecs underflow (see the
/// crate docs). Only meaningful at a packet boundary; incomplete headers are not judged.
fn publish_header_overruns(buf: &[u8], v5: bool) -> bool {
    /// An MQTT variable byte integer at the front of `b`: value and length.
    fn varint(b: &[u8]) -> Option<(u32, usize)> {
        let mut value = 0u32;
        for (i, byte) in b.iter().take(4).enumerate() {
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((value, i + 1));
            }
        }
        None
    }
    let Some(&first) = buf.first() else {
        return false;
    };
    if first >> 4 != 3 {
        return false;
    }
    let Some((remaining, used)) = varint(&buf[1..]) else {
        return false;
    };
    let body = &buf[1 + used..];
    let Some(topic) = body.get(..2) else {
        return false;
    };
    let mut header = 2 + u64::from(u16::from_be_bytes([topic[0], topic[1]]));
    if (first >> 1) & 3 != 0 {
        header += 2;
    }
    if v5 {
        let Some((props, props_used)) = usize::try_from(header)
            .ok()
            .and_then(|h| body.get(h..))
            .and_then(varint)
        else {
            // The properties' length is not there yet: the header already runs past the
            // packet if what precedes it does.
            return header > u64::from(remaining);
        };
        header += u64::from(props) + props_used as u64;
    }
    header > u64::from(remaining)
}

/// One device connection's bytes, the packets decoded so far and the state the server
/// keeps for it.
struct Device<'s> {
    server: &'s Server,
    /// `display-1`, connected first over TLS with a persistent session and subscribed to
    /// [`OBSERVED`]: it receives what the device's publishes are routed to it.
    observer: (Connection, Admitted),
    cert: u8,
    port: u16,
    conn: Option<Connection>,
    /// A publish whose payload is still arriving: topic, payload so far, bytes to come.
    pending: Option<(String, Vec<u8>, usize)>,
}

/// What the device does next, after a packet.
enum Next {
    Continue,
    /// The connection ended (the server closes it, or the device disconnected).
    Closed,
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let limits = PeerLimits {
        // Small enough that reconnecting inputs reach the per-IP limit.
        max_connections_per_ip: 3,
        ..PeerLimits::default()
    };
    let server = Server::new(&plan(), limits, 16).expect("the group's table builds");
    let mut device = Device {
        server: &server,
        observer: observer(&server),
        cert: (flags >> 1) & 3,
        port: 40000,
        conn: None,
        pending: None,
    };
    let mut buf = BytesMut::from(stream);
    // Each connection: a fresh codec with the pre-CONNECT limit, until the bytes run out or
    // the server would close the connection without a DISCONNECT.
    loop {
        let closed = if flags & 1 == 1 {
            device.run_v5(&mut buf)
        } else {
            device.run_v3(&mut buf)
        };
        device.check_deliveries();
        device.conn = None;
        device.pending = None;
        if !closed || buf.is_empty() {
            break;
        }
        device.port = device.port.wrapping_add(1);
    }
});

/// The observing device (see [`Device::observer`]).
fn observer(server: &Server) -> (Connection, Admitted) {
    let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 1883);
    let admitted = server
        .admit(peer)
        .expect("the first connection is admitted");
    let connect = v3::codec::Connect::default().client_id("display-1");
    let conn = server
        .connect_v3(&admitted, &connect, Some(Some("display-1")))
        .expect("display-1 connects");
    for filter in OBSERVED {
        assert_eq!(
            server.subscribe(&conn, filter, QoS::AtLeastOnce),
            Some(QoS::AtLeastOnce)
        );
    }
    (conn, admitted)
}

/// Whatever was delivered to `conn` since the last look was routed to its thing by a
/// subscription of the group.
fn check_delivered(conn: &mut Connection) {
    let arn = conn.thing_arn().to_string();
    for d in conn.drain() {
        assert!(
            deliverable(&arn).iter().any(|s| matches(s, &d.topic)),
            "{arn} got {:?}, which no subscription routes to it",
            d.topic
        );
    }
}

impl Device<'_> {
    fn check_deliveries(&mut self) {
        check_delivered(&mut self.observer.0);
        if let Some(conn) = self.conn.as_mut() {
            check_delivered(conn);
        }
    }

    fn peer(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port)
    }

    fn cert_cn<'a>(&self, client_id: &'a str) -> Option<Option<&'a str>> {
        match self.cert {
            0 => None,
            1 => Some(Some(client_id)),
            2 => Some(Some(if client_id == "display-1" {
                "sensor-1"
            } else {
                "display-1"
            })),
            _ => Some(None),
        }
    }

    /// Checks the server's CONNECT decision against the rules.
    fn connected(
        &mut self,
        client_id: &str,
        keep_alive: u16,
        result: Result<Connection, Refusal>,
    ) -> Next {
        let granted = self.server.keep_alive(keep_alive);
        let max = self.server.limits().max_keep_alive_secs;
        assert!(granted >= 1 && granted <= max && (keep_alive == 0 || granted <= keep_alive));
        let member = DEVICES.contains(&client_id);
        let cn_ok = match self.cert_cn(client_id) {
            None => true,
            Some(cn) => cn == Some(client_id),
        };
        match result {
            Ok(conn) => {
                // A will does not refuse a CONNECT: it is authorized when it fires.
                assert!(member && cn_ok, "{client_id:?} connected");
                assert_eq!(conn.thing_arn(), endpoint(client_id));
                self.conn = Some(conn);
                Next::Continue
            }
            Err(refusal) => {
                assert!(!member || !cn_ok, "{client_id:?} refused: {refusal:?}");
                Next::Closed
            }
        }
    }

    fn subscribe(&self, filter: &str, qos: QoS) {
        let Some(conn) = &self.conn else { return };
        let Some(granted) = self.server.subscribe(conn, filter, qos) else {
            return;
        };
        assert!(
            validate_filter(filter).is_ok(),
            "granted invalid filter {filter:?}"
        );
        // A shared subscription is authorized by its inner filter (`$share/{name}/{filter}`,
        // MQTT 5 §4.8.2).
        let matching = filter
            .strip_prefix("$share/")
            .and_then(|rest| rest.split_once('/'))
            .map_or(filter, |(_, inner)| inner);
        // A device's filter follows MQTT: `t/#` also matches `t` (MQTT-4.7.1-2).
        let parent = matching.strip_suffix("/#");
        assert!(
            deliverable(conn.thing_arn()).iter().any(|s| {
                filters_intersect(s, matching) || parent.is_some_and(|p| filters_intersect(s, p))
            }),
            "{} granted {filter:?}, which nothing delivers to it",
            conn.thing_arn()
        );
        assert_eq!(granted, qos, "granted another QoS than asked");
    }

    fn unsubscribe(&self, filter: &str) {
        if let Some(conn) = &self.conn {
            self.server.unsubscribe(conn, filter);
        }
    }

    /// A complete publish of the connected device.
    fn publish(&mut self, topic: &str, payload: &[u8]) {
        let Some(conn) = &self.conn else { return };
        let routed = self.server.publish(conn, topic, payload);
        if topic.contains(['+', '#']) {
            assert!(routed.is_err(), "a wildcard topic {topic:?} was routed");
        }
        if routed.is_ok() {
            assert!(
                validate_topic(topic).is_ok(),
                "invalid topic {topic:?} routed"
            );
            // A filter that matches a topic also intersects it.
            for (_, subject, _) in SUBSCRIPTIONS {
                if matches(subject, topic) {
                    assert!(filters_intersect(subject, topic), "{subject} / {topic}");
                }
            }
        }
        self.check_deliveries();
    }

    /// A PUBLISH header and the payload bytes that came with it.
    fn publish_start(&mut self, topic: &str, payload: Bytes, size: u32) {
        if payload.len() >= size as usize {
            self.publish(topic, &payload);
        } else {
            self.pending = Some((topic.to_string(), payload.to_vec(), size as usize));
        }
    }

    fn publish_chunk(&mut self, chunk: Bytes, eof: bool) {
        let Some((topic, mut payload, size)) = self.pending.take() else {
            return;
        };
        payload.extend_from_slice(&chunk);
        if eof || payload.len() >= size {
            self.publish(&topic, &payload);
        } else {
            self.pending = Some((topic, payload, size));
        }
    }

    /// One MQTT 3.1.1 connection; `true` when it ended with a DISCONNECT.
    fn run_v3(&mut self, buf: &mut BytesMut) -> bool {
        use v3::codec::{Codec, Decoded, Packet};
        let codec = Codec::new();
        codec.set_max_size(self.server.limits().max_packet_bytes_before_connect);
        let mut admitted = None;
        loop {
            if self.pending.is_none() && publish_header_overruns(buf, false) {
                return false; // The upstream codec bug (see the crate docs).
            }
            let Ok(Some(item)) = codec.decode(buf) else {
                return false;
            };
            let next = match item {
                Decoded::Packet(Packet::Connect(c), _) => {
                    if self.conn.is_some() {
                        return false; // A second CONNECT is a protocol error.
                    }
                    let Some(a) = self.server.admit(self.peer()) else {
                        return false;
                    };
                    let cn = self.cert_cn(&c.client_id);
                    let result = self.server.connect_v3(&a, &c, cn);
                    admitted = Some(a);
                    let next =
                        self.connected(&c.client_id, c.keep_alive, result);
                    codec.set_max_size(self.server.limits().max_packet_bytes);
                    next
                }
                _ if self.conn.is_none() => return false,
                Decoded::Packet(Packet::Subscribe { topic_filters, .. }, _) => {
                    for (filter, qos) in &topic_filters {
                        self.subscribe(filter, *qos);
                    }
                    Next::Continue
                }
                Decoded::Packet(Packet::Unsubscribe { topic_filters, .. }, _) => {
                    for filter in &topic_filters {
                        self.unsubscribe(filter);
                    }
                    Next::Continue
                }
                Decoded::Packet(Packet::Disconnect, _) => return true,
                Decoded::Packet(Packet::PingRequest, _) => {
                    self.server.expire_sessions(u64::MAX / 2);
                    Next::Continue
                }
                Decoded::Packet(..) => Next::Continue,
                Decoded::Publish(p, payload, _) => {
                    self.publish_start(&p.topic, payload, p.payload_size);
                    Next::Continue
                }
                Decoded::PayloadChunk(chunk, eof) => {
                    self.publish_chunk(chunk, eof);
                    Next::Continue
                }
            };
            if let Some(a) = &admitted {
                assert_eq!(a.connected(), self.conn.is_some());
            }
            if let Next::Closed = next {
                return false;
            }
        }
    }

    /// One MQTT 5 connection; `true` when it ended with a DISCONNECT.
    fn run_v5(&mut self, buf: &mut BytesMut) -> bool {
        use v5::codec::{Codec, Decoded, Packet};
        let codec = Codec::new();
        codec.set_max_inbound_size(self.server.limits().max_packet_bytes_before_connect);
        let mut admitted = None;
        loop {
            if self.pending.is_none() && publish_header_overruns(buf, true) {
                return false; // The upstream codec bug (see the crate docs).
            }
            let Ok(Some(item)) = codec.decode(buf) else {
                return false;
            };
            let next = match item {
                Decoded::Packet(Packet::Connect(c), _) => {
                    if self.conn.is_some() {
                        return false;
                    }
                    let Some(a) = self.server.admit(self.peer()) else {
                        return false;
                    };
                    let cn = self.cert_cn(&c.client_id);
                    let result = self.server.connect_v5(&a, &c, cn);
                    admitted = Some(a);
                    let next =
                        self.connected(&c.client_id, c.keep_alive, result);
                    codec.set_max_inbound_size(self.server.limits().max_packet_bytes);
                    next
                }
                _ if self.conn.is_none() => return false,
                Decoded::Packet(Packet::Subscribe(s), _) => {
                    for (filter, options) in &s.topic_filters {
                        self.subscribe(filter, options.qos);
                    }
                    Next::Continue
                }
                Decoded::Packet(Packet::Unsubscribe(u), _) => {
                    for filter in &u.topic_filters {
                        self.unsubscribe(filter);
                    }
                    Next::Continue
                }
                Decoded::Packet(Packet::Disconnect(_), _) => return true,
                Decoded::Packet(Packet::PingRequest, _) => {
                    self.server.expire_sessions(u64::MAX / 2);
                    Next::Continue
                }
                Decoded::Packet(..) => Next::Continue,
                Decoded::Publish(p, payload, _) => {
                    self.publish_start(&p.topic, payload, p.payload_size);
                    Next::Continue
                }
                Decoded::PayloadChunk(chunk, eof) => {
                    self.publish_chunk(chunk, eof);
                    Next::Continue
                }
            };
            if let Some(a) = &admitted {
                assert_eq!(a.connected(), self.conn.is_some());
            }
            if let Next::Closed = next {
                return false;
            }
        }
    }
}
