//! CONNECT and SUBSCRIBE decisions for both protocol versions, and the handshakes that answer them.

use std::num::NonZeroU32;
use std::sync::Arc;

use ntex_mqtt::{v3, v5, QoS};

use super::deliver::{AnySink, Conn};
use super::tls::peer_cn;
use super::{peer_addr, ServerError};
use crate::admission::Admission;
use crate::filter::shared;
use crate::sessions::Grant;
use crate::will::Will;
use crate::{Connected, DeviceSession, MqttHub, Outgoing, Refusal, SubRefusal};

/// What the first bytes of a connection say about the protocol it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// Not enough bytes yet.
    NeedMore,
    /// A CONNECT for MQTT 3.1.1 (level 4) or 5.
    Supported,
    /// A CONNECT for a level this server does not speak: MQTT 3.1 (`MQIsdp`, level 3) or an
    /// `MQTT` level other than 4 and 5. MQTT-3.1.2-2: answered with CONNACK 0x01.
    UnsupportedLevel,
    /// Anything else (not a CONNECT, another protocol name): ntex-mqtt closes it.
    Other,
    /// The connection ended before it said.
    Closed,
}

/// Reads the opening of a connection from `buf` (nothing is consumed): the fixed header, the
/// protocol name and the level of a CONNECT.
pub(crate) fn opening(buf: &[u8]) -> Opening {
    let Some(&first) = buf.first() else {
        return Opening::NeedMore;
    };
    if first != 0x10 {
        return Opening::Other;
    }
    // The remaining length: 1 to 4 bytes of 7 bits.
    let mut at = 1;
    loop {
        match buf.get(at) {
            None => return Opening::NeedMore,
            Some(b) if b & 0x80 == 0 => break,
            Some(_) if at == 4 => return Opening::Other,
            Some(_) => at += 1,
        }
    }
    let header = &buf[at + 1..];
    let (Some(&hi), Some(&lo)) = (header.first(), header.get(1)) else {
        return Opening::NeedMore;
    };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    let Some(level) = header.get(2 + name_len) else {
        return Opening::NeedMore;
    };
    match (&header[2..2 + name_len], level) {
        (b"MQTT", 4 | 5) => Opening::Supported,
        (b"MQTT" | b"MQIsdp", _) => Opening::UnsupportedLevel,
        _ => Opening::Other,
    }
}

/// A QoS as a number (0, 1, 2).
pub(super) fn level(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
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
    let c = hub.connect(&pkt.client_id, cert_cn, pkt.clean_session, persistent)?;
    if persistent {
        // MQTT 3.1.1 sessions never expire.
        c.session.set_expiry(u32::MAX);
    }
    Ok(c)
}

/// [`connect_v3`] for an MQTT 5 CONNECT: Clean Start 1 discards a previous session, and a
/// Session Expiry Interval above 0 keeps this one after the connection ends (MQTT-3.1.2-4,
/// MQTT-3.1.2-23), whatever Clean Start says.
pub(crate) fn connect_v5(
    hub: &MqttHub,
    pkt: &v5::codec::Connect,
    cert_cn: Option<Option<&str>>,
) -> Result<Connected, Refusal> {
    let persistent = pkt.session_expiry_interval_secs > 0;
    let c = hub.connect(&pkt.client_id, cert_cn, pkt.clean_start, persistent)?;
    if persistent {
        c.session.set_expiry(pkt.session_expiry_interval_secs);
    }
    Ok(c)
}

/// What a SUBSCRIBE asked of one filter beyond its QoS (MQTT 5 Subscription Options; an
/// MQTT 3.1.1 filter has the defaults).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SubOptions {
    /// The SUBSCRIBE's MQTT 5 Subscription Identifier.
    pub(crate) sub_id: Option<u32>,
    pub(crate) no_local: bool,
    pub(crate) retain_as_published: bool,
    pub(crate) retained: RetainOnSubscribe,
}

/// MQTT 5 Retain Handling: whether the subscription gets the retained messages it matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum RetainOnSubscribe {
    /// 0 (and MQTT 3.1.1): at every SUBSCRIBE.
    #[default]
    Send,
    /// 1: only if the filter was not subscribed already.
    SendIfNew,
    /// 2: never.
    No,
}

/// One SUBSCRIBE filter of a connected device: the QoS granted (and recorded in its session,
/// with its options) and the retained messages it gets, to be queued once the SUBACK is out;
/// or why not. Both protocol versions answer with it; the fuzz target calls it on decoded
/// packets.
pub(crate) fn subscribe(
    hub: &MqttHub,
    session: &DeviceSession,
    filter: &str,
    qos: QoS,
    opts: SubOptions,
) -> Result<(QoS, Vec<Outgoing>), SubRefusal> {
    hub.may_subscribe(&session.thing_arn, filter)?;
    // Every QoS is granted as asked, 2 included (MQTT-3.8.4-6 allows less; nothing here needs
    // it).
    let q = qos;
    let existed = session.subscribe(Grant {
        filter: filter.to_owned(),
        qos1: q != QoS::AtMostOnce,
        qos2: q == QoS::ExactlyOnce,
        no_local: opts.no_local,
        retain_as_published: opts.retain_as_published,
        sub_id: opts.sub_id,
    });
    let is_shared = matches!(shared(filter), Some(Ok(_)));
    if is_shared {
        hub.join_shared(filter, session);
    }
    // No retained message for a new shared subscription (MQTT 5 §4.8.2).
    let send = !is_shared
        && match opts.retained {
            RetainOnSubscribe::Send => true,
            RetainOnSubscribe::SendIfNew => !existed,
            RetainOnSubscribe::No => false,
        };
    let retained = if send {
        hub.retained_for(session, filter, level(q), opts.sub_id)
    } else {
        Vec::new()
    };
    Ok((q, retained))
}

/// Queues retained messages for a new subscription once its SUBACK has gone out (the protocol
/// service answers first; a task that yields once runs after that answer is written). A
/// message that finds the device's queue full is counted as lost at its target.
pub(super) fn send_retained(conn: &Conn, retained: Vec<Outgoing>) {
    if retained.is_empty() {
        return;
    }
    let session = conn.session.clone();
    let counters = conn.hub.counters.clone();
    ntex::rt::spawn(async move {
        tokio::task::yield_now().await;
        for out in retained {
            if !session.send_now(out) {
                crate::bump(&counters.lost_at_targets);
            }
        }
    });
}

pub(super) async fn handshake_v3(
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
            let will = pkt.last_will.as_ref().map(Will::from_v3);
            let conn = Conn::new(hub, c, AnySink::V3(hs.sink()), hs.io().get_ref(), will);
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

pub(super) async fn handshake_v5(
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
            let will = pkt.last_will.as_ref().map(Will::from_v5);
            let conn = Conn::new(hub, c, AnySink::V5(hs.sink()), hs.io().get_ref(), will);
            if let Some(peer) = peer {
                admission.connected(peer);
            }
            hs.ack(conn)
                // The idle timeout; never 0 (the cap is at least 1, checked in config).
                .keep_alive(keep_alive.saturating_add(keep_alive / 2).max(1))
                .with(|ack| {
                    ack.session_present = present;
                    ack.retain_available = true;
                    ack.shared_subscription_available = true;
                    ack.subscription_identifiers_available = true;
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
        Err(_) => hs.failed(v5::codec::ConnectAckReason::NotAuthorized),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(name: &[u8], level: u8) -> Vec<u8> {
        let mut v = vec![0x10, 0];
        v.extend_from_slice(&u16::try_from(name.len()).expect("short").to_be_bytes());
        v.extend_from_slice(name);
        v.extend_from_slice(&[level, 2, 0, 30, 0, 1, b'x']);
        v[1] = u8::try_from(v.len() - 2).expect("short");
        v
    }

    #[test]
    fn the_opening_names_the_protocol_level() {
        assert_eq!(opening(&connect(b"MQTT", 4)), Opening::Supported);
        assert_eq!(opening(&connect(b"MQTT", 5)), Opening::Supported);
        assert_eq!(opening(&connect(b"MQTT", 3)), Opening::UnsupportedLevel);
        assert_eq!(opening(&connect(b"MQTT", 6)), Opening::UnsupportedLevel);
        assert_eq!(opening(&connect(b"MQIsdp", 3)), Opening::UnsupportedLevel);
        assert_eq!(opening(&connect(b"HTTP", 4)), Opening::Other);
        assert_eq!(opening(b"GET / HTTP/1.1"), Opening::Other);
        let full = connect(b"MQTT", 4);
        for cut in 0..9 {
            assert_eq!(opening(&full[..cut]), Opening::NeedMore, "{cut} bytes");
        }
        // A remaining length of more than 4 bytes is no MQTT.
        assert_eq!(opening(&[0x10, 0x80, 0x80, 0x80, 0x80, 1]), Opening::Other);
    }
}
