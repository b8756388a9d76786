//! The few MQTT 3.1.1 packets the benches' own clients speak (CONNECT, SUBSCRIBE, PUBLISH,
//! PUBACK, PINGREQ, DISCONNECT and their answers), written here so a bench knows exactly what
//! went over the wire and when. Encoding, and splitting a byte stream into packets for a reader
//! that may be interrupted by a read timeout between any two bytes. It never opens a socket.
//! The MQTT 5 forms are in [`v5`]; [`Version`] picks one or the other for a client that speaks
//! either.

pub mod v5;

/// The protocol level a bench client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V3,
    /// MQTT 5.0.
    V5,
}

impl Version {
    /// CONNECT at this level (see [`connect`] and [`v5::connect`]).
    pub fn connect(self, client_id: &str, clean: bool, keep_alive_secs: u16) -> Vec<u8> {
        match self {
            Version::V3 => connect(client_id, clean, keep_alive_secs),
            Version::V5 => v5::connect(client_id, clean, keep_alive_secs),
        }
    }

    pub fn subscribe(self, packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
        match self {
            Version::V3 => subscribe(packet_id, filter, qos),
            Version::V5 => v5::subscribe(packet_id, filter, qos),
        }
    }

    pub fn publish(self, topic: &str, payload: &[u8], id: Option<(u16, bool)>, out: &mut Vec<u8>) {
        match self {
            Version::V3 => publish(topic, payload, id, out),
            Version::V5 => v5::publish(topic, payload, id, out),
        }
    }

    pub fn decode(self, first: u8, body: &[u8]) -> Result<Incoming, FrameError> {
        match self {
            Version::V3 => decode(first, body),
            Version::V5 => v5::decode(first, body),
        }
    }

    /// "v3" or "v5", for tables.
    pub fn label(self) -> &'static str {
        match self {
            Version::V3 => "v3",
            Version::V5 => "v5",
        }
    }
}

/// Largest packet a bench client accepts: far above anything a bench sends, so a larger length
/// means the stream is out of step, and nothing that size is allocated.
pub const MAX_PACKET: usize = 1 << 20;

/// PINGREQ, whole.
pub const PINGREQ: [u8; 2] = [0xc0, 0];

/// DISCONNECT, whole.
pub const DISCONNECT: [u8; 2] = [0xe0, 0];

/// Appends MQTT's variable-length "remaining length" of `n`.
pub fn remaining_len(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

/// A packet: `first` (type and flags), the remaining length, `body`.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    remaining_len(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// Appends a length-prefixed UTF-8 string (at most 65535 bytes: longer is cut, which only a
/// bench's own constant could cause).
pub fn string(s: &str, out: &mut Vec<u8>) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

/// CONNECT as MQTT 3.1.1 with `client_id`, a clean or persistent session, no will, no
/// credentials.
pub fn connect(client_id: &str, clean_session: bool, keep_alive_secs: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(client_id.len() + 12);
    string("MQTT", &mut body);
    body.push(4);
    body.push(if clean_session { 0x02 } else { 0 });
    body.extend_from_slice(&keep_alive_secs.to_be_bytes());
    string(client_id, &mut body);
    packet(0x10, &body)
}

/// SUBSCRIBE to one filter at `qos`.
pub fn subscribe(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = Vec::with_capacity(filter.len() + 5);
    body.extend_from_slice(&packet_id.to_be_bytes());
    string(filter, &mut body);
    body.push(qos);
    packet(0x82, &body)
}

/// Appends a PUBLISH: QoS 0 without `id`, QoS 1 with `(packet id, dup)`.
pub fn publish(topic: &str, payload: &[u8], id: Option<(u16, bool)>, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    string(topic, &mut body);
    let first = match id {
        Some((id, dup)) => {
            body.extend_from_slice(&id.to_be_bytes());
            if dup {
                0x3a
            } else {
                0x32
            }
        }
        None => 0x30,
    };
    body.extend_from_slice(payload);
    out.push(first);
    remaining_len(body.len(), out);
    out.extend_from_slice(&body);
}

/// PUBACK for `packet_id`.
pub fn puback(packet_id: u16) -> [u8; 4] {
    let id = packet_id.to_be_bytes();
    [0x40, 2, id[0], id[1]]
}

/// What a peer sent, decoded as far as the benches need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// CONNACK: session present, return code (0 = accepted).
    ConnAck {
        session_present: bool,
        code: u8,
    },
    /// SUBACK: packet id and the granted QoS per filter (0x80 = refused).
    SubAck {
        packet_id: u16,
        codes: Vec<u8>,
    },
    /// PUBLISH; `packet_id` is `None` at QoS 0.
    Publish {
        qos: u8,
        dup: bool,
        packet_id: Option<u16>,
        topic: String,
        payload: Vec<u8>,
    },
    PubAck {
        packet_id: u16,
    },
    PingResp,
    /// Any other packet type (the first byte).
    Other(u8),
}

/// Why a byte stream is not MQTT the benches can follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("remaining length longer than 4 bytes")]
    LengthTooLong,
    #[error("a packet of {0} bytes announced (at most {MAX_PACKET})")]
    TooBig(usize),
    #[error("packet type {first:#04x} too short ({len} bytes)")]
    Short { first: u8, len: usize },
    #[error("PUBLISH topic is not UTF-8")]
    Topic,
}

/// Splits a byte stream into packets. Bytes are pushed as they are read; a packet is handed
/// out only once it is complete, so a read interrupted by a timeout loses nothing.
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out; dropped from the front in bulk, not per packet.
    at: usize,
}

impl Frames {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.at > 0 && self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        } else if self.at > 64 * 1024 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete packet (`first byte`, `body`), `Ok(None)` if it has not all arrived.
    pub fn next_packet(&mut self) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
        let rest = &self.buf[self.at..];
        let Some(&first) = rest.first() else {
            return Ok(None);
        };
        let mut len = 0usize;
        let mut header = 1;
        loop {
            let Some(&b) = rest.get(header) else {
                return Ok(None);
            };
            len |= usize::from(b & 0x7f) << (7 * (header - 1));
            header += 1;
            if b & 0x80 == 0 {
                break;
            }
            if header > 4 {
                return Err(FrameError::LengthTooLong);
            }
        }
        if len > MAX_PACKET {
            return Err(FrameError::TooBig(len));
        }
        let Some(body) = rest.get(header..header + len) else {
            return Ok(None);
        };
        let body = body.to_vec();
        self.at += header + len;
        Ok(Some((first, body)))
    }
}

pub(crate) fn id_at(first: u8, body: &[u8], at: usize) -> Result<u16, FrameError> {
    match body.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(FrameError::Short {
            first,
            len: body.len(),
        }),
    }
}

/// Decodes one packet from [`Frames::next_packet`].
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
        9 => Incoming::SubAck {
            packet_id: id_at(first, body, 0)?,
            codes: body.get(2..).unwrap_or_default().to_vec(),
        },
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

    fn all(frames: &mut Frames) -> Vec<Incoming> {
        let mut out = Vec::new();
        while let Some((first, body)) = frames.next_packet().expect("valid") {
            out.push(decode(first, &body).expect("decodes"));
        }
        out
    }

    #[test]
    fn a_publish_round_trips_byte_by_byte() {
        let mut wire = Vec::new();
        publish("soak/dev", b"42 xx", Some((7, true)), &mut wire);
        publish("t", &[b'x'; 300], None, &mut wire);
        wire.extend_from_slice(&puback(9));
        let mut frames = Frames::default();
        let mut got = Vec::new();
        // Split at every byte, as reads interrupted by timeouts may.
        for b in &wire {
            frames.push(std::slice::from_ref(b));
            got.extend(all(&mut frames));
        }
        assert_eq!(
            got,
            vec![
                Incoming::Publish {
                    qos: 1,
                    dup: true,
                    packet_id: Some(7),
                    topic: "soak/dev".into(),
                    payload: b"42 xx".to_vec()
                },
                Incoming::Publish {
                    qos: 0,
                    dup: false,
                    packet_id: None,
                    topic: "t".into(),
                    payload: vec![b'x'; 300]
                },
                Incoming::PubAck { packet_id: 9 },
            ]
        );
    }

    #[test]
    fn connack_and_suback_decode() {
        let mut frames = Frames::default();
        frames.push(&[0x20, 2, 1, 0, 0x90, 3, 0, 1, 1]);
        assert_eq!(
            all(&mut frames),
            vec![
                Incoming::ConnAck {
                    session_present: true,
                    code: 0
                },
                Incoming::SubAck {
                    packet_id: 1,
                    codes: vec![1]
                },
            ]
        );
    }

    #[test]
    fn a_length_past_the_maximum_is_an_error_before_the_body_arrives() {
        let mut frames = Frames::default();
        let mut wire = vec![0x30];
        remaining_len(MAX_PACKET + 1, &mut wire);
        frames.push(&wire);
        assert_eq!(
            frames.next_packet(),
            Err(FrameError::TooBig(MAX_PACKET + 1))
        );
        let mut frames = Frames::default();
        frames.push(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(frames.next_packet(), Err(FrameError::LengthTooLong));
    }

    #[test]
    fn a_truncated_publish_is_an_error_not_a_panic() {
        assert!(decode(0x32, &[0, 5, b'a']).is_err());
        assert!(decode(0x32, &[0, 1, b'a', 0]).is_err());
        assert!(decode(0x40, &[0]).is_err());
    }

    #[test]
    fn connect_sets_the_session_flag() {
        let persistent = connect("c", false, 30);
        let clean = connect("c", true, 30);
        // Fixed header (2) + "MQTT" (6) + level (1), then the flags.
        assert_eq!(persistent[9], 0);
        assert_eq!(clean[9], 0x02);
    }
}
