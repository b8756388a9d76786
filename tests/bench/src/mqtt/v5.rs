//! The MQTT 5.0 forms of the packets the benches' clients speak, where they differ from 3.1.1:
//! a property length in CONNECT, SUBSCRIBE, PUBLISH and their answers (always empty when a
//! bench sends, skipped when it reads), subscription options instead of a bare QoS, reason
//! codes instead of return codes. PUBACK, PINGREQ and DISCONNECT without properties are the
//! same bytes as in 3.1.1 (reason 0x00 implied), so [`super::puback`] and the constants serve
//! both. Reading keeps only what a client must honour (the server's Receive Maximum); every
//! length is checked against the body, so a packet from a broker never panics the bench.

use super::{id_at, packet, remaining_len, string, FrameError, Incoming};

/// CONNECT as MQTT 5 with `client_id`, Clean Start set or not, no properties (so Session
/// Expiry 0: the session ends with the connection), no will, no credentials.
pub fn connect(client_id: &str, clean_start: bool, keep_alive_secs: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(client_id.len() + 13);
    string("MQTT", &mut body);
    body.push(5);
    body.push(if clean_start { 0x02 } else { 0 });
    body.extend_from_slice(&keep_alive_secs.to_be_bytes());
    body.push(0);
    string(client_id, &mut body);
    packet(0x10, &body)
}

/// SUBSCRIBE to one filter at maximum `qos`, other options 0 (No Local off, Retain As Published
/// off, Retain Handling 0), no properties.
pub fn subscribe(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = Vec::with_capacity(filter.len() + 6);
    body.extend_from_slice(&packet_id.to_be_bytes());
    body.push(0);
    string(filter, &mut body);
    body.push(qos & 3);
    packet(0x82, &body)
}

/// Appends a PUBLISH without properties: QoS 0 without `id`, QoS 1 with `(packet id, dup)`.
pub fn publish(topic: &str, payload: &[u8], id: Option<(u16, bool)>, out: &mut Vec<u8>) {
    let id_len = if id.is_some() { 2 } else { 0 };
    let len = 2 + topic.len() + id_len + 1 + payload.len();
    out.push(match id {
        Some((_, true)) => 0x3a,
        Some((_, false)) => 0x32,
        None => 0x30,
    });
    remaining_len(len, out);
    string(topic, out);
    if let Some((id, _)) = id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.push(0);
    out.extend_from_slice(payload);
}

/// A variable byte integer at `at`: `(value, bytes it took)`.
fn varint(body: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for i in 0..4 {
        let b = *body.get(at + i)?;
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// One property: its identifier and its value's bytes.
type Property<'a> = (u8, &'a [u8]);

/// The properties at `at` (length included) as `(identifier, value bytes)`, and where they end.
/// `None` if a property is unknown or runs past the body: the caller then ignores them all.
fn properties(body: &[u8], at: usize) -> Option<(Vec<Property<'_>>, usize)> {
    let (len, took) = varint(body, at)?;
    let start = at + took;
    let end = start.checked_add(len)?;
    let props = body.get(start..end)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < props.len() {
        let id = props[i];
        i += 1;
        let size = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2a => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x0b => varint(props, i)?.1,
            // UTF-8 strings and binary data: a two-byte length, then the bytes.
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1a | 0x1c | 0x1f => {
                2 + usize::from(u16::from_be_bytes([*props.get(i)?, *props.get(i + 1)?]))
            }
            // A user property: two strings.
            0x26 => {
                let k = usize::from(u16::from_be_bytes([*props.get(i)?, *props.get(i + 1)?]));
                let v_at = i + 2 + k;
                let v = usize::from(u16::from_be_bytes([
                    *props.get(v_at)?,
                    *props.get(v_at + 1)?,
                ]));
                4 + k + v
            }
            _ => return None,
        };
        out.push((id, props.get(i..i + size)?));
        i += size;
    }
    Some((out, end))
}

/// The server's Receive Maximum from a v5 CONNACK body (65535 when absent, as MQTT 5 says).
pub fn connack_receive_maximum(body: &[u8]) -> u16 {
    properties(body, 2)
        .and_then(|(props, _)| {
            props
                .iter()
                .find(|(id, _)| *id == 0x21)
                .map(|(_, v)| u16::from_be_bytes([v[0], v[1]]))
        })
        .unwrap_or(u16::MAX)
}

/// Decodes one MQTT 5 packet from [`super::Frames::next_packet`] into the same [`Incoming`] as
/// 3.1.1: a CONNACK's reason code is its `code` (0 = success), a SUBACK's reason codes its
/// `codes`; properties are skipped.
pub fn decode(first: u8, body: &[u8]) -> Result<Incoming, FrameError> {
    let short = || FrameError::Short {
        first,
        len: body.len(),
    };
    Ok(match first >> 4 {
        2 => Incoming::ConnAck {
            session_present: body.first().ok_or_else(short)? & 1 == 1,
            code: *body.get(1).ok_or_else(short)?,
        },
        9 => {
            let (_, end) = properties(body, 2).ok_or_else(short)?;
            Incoming::SubAck {
                packet_id: id_at(first, body, 0)?,
                codes: body.get(end..).unwrap_or_default().to_vec(),
            }
        }
        3 => {
            let qos = (first >> 1) & 3;
            let topic_len = usize::from(id_at(first, body, 0)?);
            let topic = body.get(2..2 + topic_len).ok_or_else(short)?;
            let topic = std::str::from_utf8(topic).map_err(|_| FrameError::Topic)?;
            let mut at = 2 + topic_len;
            let packet_id = if qos > 0 {
                at += 2;
                Some(id_at(first, body, at - 2)?)
            } else {
                None
            };
            // The length is what matters: a property this reader does not know must not lose
            // the payload behind it.
            let (len, took) = varint(body, at).ok_or_else(short)?;
            at += took + len;
            Incoming::Publish {
                qos,
                dup: first & 0x08 != 0,
                packet_id,
                topic: topic.to_string(),
                payload: body.get(at..).ok_or_else(short)?.to_vec(),
            }
        }
        4 => Incoming::PubAck {
            packet_id: id_at(first, body, 0)?,
        },
        13 => Incoming::PingResp,
        _ => Incoming::Other(first),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::Frames;

    fn one(wire: &[u8]) -> Incoming {
        let mut frames = Frames::default();
        frames.push(wire);
        let (first, body) = frames
            .next_packet()
            .expect("valid")
            .expect("a whole packet");
        decode(first, &body).expect("decodes")
    }

    #[test]
    fn a_publish_round_trips_with_its_empty_properties() {
        let mut wire = Vec::new();
        publish("a/b", b"payload", Some((3, false)), &mut wire);
        assert_eq!(
            one(&wire),
            Incoming::Publish {
                qos: 1,
                dup: false,
                packet_id: Some(3),
                topic: "a/b".into(),
                payload: b"payload".to_vec()
            }
        );
    }

    #[test]
    fn a_publish_with_properties_keeps_its_payload() {
        // Topic "t", QoS 0, properties: payload format indicator 1, user property ("k", "v").
        let body = [
            0, 1, b't', 9, 0x01, 1, 0x26, 0, 1, b'k', 0, 1, b'v', b'x', b'y',
        ];
        let mut wire = vec![0x30];
        remaining_len(body.len(), &mut wire);
        wire.extend_from_slice(&body);
        match one(&wire) {
            Incoming::Publish { payload, .. } => assert_eq!(payload, b"xy"),
            other => panic!("not a publish: {other:?}"),
        }
    }

    #[test]
    fn connack_receive_maximum_is_read_and_defaults_to_65535() {
        // Flags 0, reason 0, properties: maximum QoS 1, receive maximum 20.
        assert_eq!(
            connack_receive_maximum(&[0, 0, 5, 0x24, 1, 0x21, 0, 20]),
            20
        );
        assert_eq!(connack_receive_maximum(&[0, 0, 0]), u16::MAX);
        // Truncated properties are ignored, not a panic.
        assert_eq!(connack_receive_maximum(&[0, 0, 5, 0x21]), u16::MAX);
    }

    #[test]
    fn suback_codes_follow_the_properties() {
        assert_eq!(
            // Properties: an empty reason string; then "not authorized".
            one(&[0x90, 7, 0, 7, 3, 0x1f, 0, 0, 0x87]),
            Incoming::SubAck {
                packet_id: 7,
                codes: vec![0x87]
            }
        );
        assert_eq!(
            one(&[0x90, 4, 0, 7, 0, 1]),
            Incoming::SubAck {
                packet_id: 7,
                codes: vec![1]
            }
        );
    }

    #[test]
    fn connect_says_level_5_and_has_an_empty_property_length() {
        let wire = connect("dev", true, 60);
        // Fixed header (2) + "MQTT" (6), then level, flags, keep-alive (2), properties (1).
        assert_eq!(&wire[8..13], &[5, 0x02, 0, 60, 0]);
        assert_eq!(&wire[13..], &[0, 3, b'd', b'e', b'v']);
    }

    #[test]
    fn truncated_packets_are_errors_not_panics() {
        assert!(decode(0x32, &[0, 1, b't', 0]).is_err());
        assert!(decode(0x32, &[0, 1, b't', 0, 1, 0x80]).is_err());
        assert!(decode(0x90, &[0, 1, 5]).is_err());
    }
}
