//! CONNECT and SUBSCRIBE decisions for both protocol versions, and the handshakes that answer them.

use std::num::NonZeroU32;
use std::sync::Arc;

use ntex_mqtt::{v3, v5, QoS};

use super::deliver::{AnySink, Conn};
use super::tls::peer_cn;
use super::{peer_addr, ServerError};
use crate::admission::Admission;
use crate::{Connected, DeviceSession, MqttHub, Refusal};

pub(super) fn grant(qos: QoS) -> QoS {
    // QoS 2 is granted as 1: deliveries come from the router at most once per route anyway,
    // and exactly-once would need per-session state Evergreen does not keep.
    match qos {
        QoS::AtMostOnce => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
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
            let conn = Conn::new(hub, c, AnySink::V3(hs.sink()), hs.io().get_ref());
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
            let conn = Conn::new(hub, c, AnySink::V5(hs.sink()), hs.io().get_ref());
            if let Some(peer) = peer {
                admission.connected(peer);
            }
            hs.ack(conn)
                // The idle timeout; never 0 (the cap is at least 1, checked in config).
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
