//! The EtherNet/IP and CIP bytes this connector speaks, as pure functions:
//! the encapsulation header, RegisterSession, SendRRData with its Common
//! Packet Format items, and the CIP Read Tag service with symbolic paths.
//!
//! It owns encoding and decoding only; sockets are [`crate::client`]'s. A
//! decoder never panics and never allocates by a length it has not checked
//! against the bytes it holds: every reply comes from outside (the
//! `no_panic` test feeds it random bytes).
//!
//! Requests go straight to the target's Message Router inside SendRRData
//! (UCMM, no Unconnected Send and no route path), which is what a
//! CompactLogix, a Micro800 or cpppo's simulator answers; a ControlLogix
//! reached through a separate Ethernet module would need a backplane route,
//! which the Greengrass configuration has no field for.

use thiserror::Error;

/// Encapsulation commands used here.
pub const REGISTER_SESSION: u16 = 0x0065;
pub const UNREGISTER_SESSION: u16 = 0x0066;
pub const SEND_RR_DATA: u16 = 0x006F;
/// The encapsulation header's length.
pub const HEADER_LEN: usize = 24;
/// Largest encapsulation payload accepted: the length field is 16 bits, so
/// this is the protocol's own limit, checked before any allocation.
pub const MAX_PAYLOAD: usize = 65_535 - HEADER_LEN;
/// CIP Read Tag service and its reply code.
pub const READ_TAG: u8 = 0x4C;
const REPLY_BIT: u8 = 0x80;
/// CPF item types: the null address item and the unconnected data item.
const NULL_ADDRESS_ITEM: u16 = 0x0000;
const UNCONNECTED_DATA_ITEM: u16 = 0x00B2;
/// The `structure` type prefix and the handle of Logix's built-in STRING.
const STRUCT_TYPE: u16 = 0x02A0;
const LOGIX_STRING_HANDLE: u16 = 0x0FCE;

/// The 24-byte header of every encapsulation message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub command: u16,
    pub length: u16,
    pub session: u32,
    pub status: u32,
    pub context: [u8; 8],
    pub options: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&self.command.to_le_bytes());
        b[2..4].copy_from_slice(&self.length.to_le_bytes());
        b[4..8].copy_from_slice(&self.session.to_le_bytes());
        b[8..12].copy_from_slice(&self.status.to_le_bytes());
        b[12..20].copy_from_slice(&self.context);
        b[20..24].copy_from_slice(&self.options.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Header {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut context = [0u8; 8];
        context.copy_from_slice(&b[12..20]);
        Header {
            command: u16_at(0),
            length: u16_at(2),
            session: u32_at(4),
            status: u32_at(8),
            context,
            options: u32_at(20),
        }
    }
}

/// What is wrong with a reply (the device's bytes, not its answer).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("reply too short: {what} needs {need} byte(s), {have} left")]
    Short {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

/// A CIP error the device answered with (a normal answer, not a broken link).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("CIP general status 0x{status:02X} ({}){}", general_status_text(*status), extended_text(extended))]
pub struct CipStatus {
    pub status: u8,
    pub extended: Vec<u16>,
}

fn extended_text(extended: &[u16]) -> String {
    if extended.is_empty() {
        String::new()
    } else {
        let words: Vec<String> = extended.iter().map(|w| format!("0x{w:04X}")).collect();
        format!(", extended status {}", words.join(" "))
    }
}

/// The CIP specification's names for the general status codes a tag read
/// meets (Vol. 1, Appendix B).
pub fn general_status_text(status: u8) -> &'static str {
    match status {
        0x00 => "success",
        0x01 => "connection failure",
        0x02 => "resource unavailable",
        0x03 => "invalid parameter value",
        0x04 => "path segment error: the tag does not exist or its path is malformed",
        0x05 => "path destination unknown: no such tag, member or element",
        0x06 => "partial transfer",
        0x08 => "service not supported",
        0x09 => "invalid attribute value",
        0x0A => "attribute list error",
        0x0C => "object state conflict",
        0x0E => "attribute not settable",
        0x0F => "privilege violation",
        0x10 => "device state conflict",
        0x11 => "reply data too large",
        0x13 => "not enough data",
        0x14 => "attribute not supported",
        0x15 => "too much data",
        0x1E => "embedded service error",
        0x1F => "vendor specific error",
        0x20 => "invalid parameter",
        0x26 => "path size invalid",
        _ => "other error",
    }
}

/// A symbolic tag path: `name`, `name[3]`, `name[1,2]`, `udt.member`,
/// `arr[2].member`, `Program:Main.tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPath {
    pub segments: Vec<PathSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Symbol(String),
    Element(u32),
}

/// The longest name of one tag or member (the SiteWise EIP guide's limit).
pub const MAX_NAME_LEN: usize = 40;

impl TagPath {
    /// Parses and checks a path; the error says what is wrong where.
    pub fn parse(text: &str) -> Result<TagPath, String> {
        if text.is_empty() {
            return Err("is empty".into());
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (name, rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            check_name(name).map_err(|e| format!("{e} in {text:?}"))?;
            segments.push(PathSegment::Symbol(name.to_string()));
            if !rest.is_empty() {
                let inner = rest
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .ok_or_else(|| format!("{part:?}: an index is written [n] or [n,m]"))?;
                for index in inner.split(',') {
                    let n: u32 = index
                        .trim()
                        .parse()
                        .map_err(|_| format!("{part:?}: index {index:?} is not a whole number"))?;
                    segments.push(PathSegment::Element(n));
                }
            }
        }
        Ok(TagPath { segments })
    }

    /// The path as CIP request path bytes (always an even length): ANSI
    /// extended symbolic segments (0x91), padded to a word, and element
    /// segments of 8, 16 or 32 bits.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for s in &self.segments {
            match s {
                PathSegment::Symbol(name) => {
                    b.push(0x91);
                    // Names are checked to 40 bytes at parse time.
                    b.push(name.len() as u8);
                    b.extend_from_slice(name.as_bytes());
                    if name.len() % 2 == 1 {
                        b.push(0);
                    }
                }
                PathSegment::Element(n) => {
                    if let Ok(n) = u8::try_from(*n) {
                        b.extend_from_slice(&[0x28, n]);
                    } else if let Ok(n) = u16::try_from(*n) {
                        b.extend_from_slice(&[0x29, 0]);
                        b.extend_from_slice(&n.to_le_bytes());
                    } else {
                        b.extend_from_slice(&[0x2A, 0]);
                        b.extend_from_slice(&n.to_le_bytes());
                    }
                }
            }
        }
        b
    }
}

/// One name of a path: a letter or `_` first, then letters, digits and `_`
/// (and the `:` of `Program:Name`), at most 40 characters, no `__` and no
/// trailing `_` (the SiteWise EIP guide's rules).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty tag or member name".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("{name:?} is longer than {MAX_NAME_LEN} characters"));
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return Err(format!("{name:?} must start with a letter or `_`"));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
    {
        return Err(format!(
            "{name:?} may hold only letters, digits, `_` and `:`"
        ));
    }
    if name.contains("__") || name.ends_with('_') {
        return Err(format!(
            "{name:?} must not have consecutive or trailing underscores"
        ));
    }
    Ok(())
}

/// An encapsulation message: header and payload.
pub fn frame(command: u16, session: u32, context: [u8; 8], payload: &[u8]) -> Vec<u8> {
    let header = Header {
        command,
        // Payloads built here are a few hundred bytes at most.
        length: u16::try_from(payload.len()).unwrap_or(u16::MAX),
        session,
        status: 0,
        context,
        options: 0,
    };
    let mut b = Vec::with_capacity(HEADER_LEN + payload.len());
    b.extend_from_slice(&header.encode());
    b.extend_from_slice(payload);
    b
}

/// RegisterSession's payload: protocol version 1, no options.
pub fn register_session_payload() -> [u8; 4] {
    [1, 0, 0, 0]
}

/// The CIP Read Tag request for one element of `path`.
pub fn read_tag_request(path: &TagPath) -> Vec<u8> {
    let p = path.encode();
    let mut b = Vec::with_capacity(4 + p.len());
    b.push(READ_TAG);
    // Paths are a few tags of at most 40 bytes: well under 255 words.
    b.push((p.len() / 2) as u8);
    b.extend_from_slice(&p);
    b.extend_from_slice(&1u16.to_le_bytes());
    b
}

/// SendRRData's payload around a CIP request: interface handle 0, the
/// router's own timeout, and two CPF items (null address, unconnected data).
pub fn send_rr_data_payload(cip: &[u8], timeout_secs: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + cip.len());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&timeout_secs.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&NULL_ADDRESS_ITEM.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&UNCONNECTED_DATA_ITEM.to_le_bytes());
    b.extend_from_slice(&u16::try_from(cip.len()).unwrap_or(u16::MAX).to_le_bytes());
    b.extend_from_slice(cip);
    b
}

/// A little cursor that turns running out of bytes into [`DecodeError::Short`].
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Short {
                what,
                need: n,
                have: self.b.len(),
            });
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
}

/// The CIP reply inside a SendRRData reply's payload (its unconnected data item).
pub fn unconnected_data(payload: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader { b: payload };
    r.take(6, "interface handle and timeout")?;
    let count = r.u16("item count")?;
    for _ in 0..count {
        let kind = r.u16("item type")?;
        let len = usize::from(r.u16("item length")?);
        let data = r.take(len, "item data")?;
        if kind == UNCONNECTED_DATA_ITEM {
            return Ok(data);
        }
    }
    Err(DecodeError::Unexpected(
        "no unconnected data item in the reply".into(),
    ))
}

/// A tag's value as the device typed it.
#[derive(Debug, Clone, PartialEq)]
pub enum CipValue {
    Bool(bool),
    Int(i64),
    /// ULINT above `i64::MAX` stays exact here; conversion decides.
    UInt(u64),
    Real(f64),
    Text(String),
}

impl CipValue {
    /// The CIP type's name, for log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            CipValue::Bool(_) => "BOOL",
            CipValue::Int(_) | CipValue::UInt(_) => "integer",
            CipValue::Real(_) => "REAL/LREAL",
            CipValue::Text(_) => "STRING",
        }
    }
}

/// A Read Tag reply: the value, or the device's CIP error.
pub fn read_tag_reply(cip: &[u8]) -> Result<Result<CipValue, CipStatus>, DecodeError> {
    let mut r = Reader { b: cip };
    let service = r.u8("reply service")?;
    if service != READ_TAG | REPLY_BIT {
        return Err(DecodeError::Unexpected(format!(
            "reply service 0x{service:02X}, expected 0x{:02X}",
            READ_TAG | REPLY_BIT
        )));
    }
    r.u8("reserved byte")?;
    let status = r.u8("general status")?;
    let words = usize::from(r.u8("extended status size")?);
    let mut extended = Vec::with_capacity(words);
    for _ in 0..words {
        extended.push(r.u16("extended status")?);
    }
    // 0x06 (partial transfer) still carries the first element.
    if status != 0 && status != 0x06 {
        return Ok(Err(CipStatus { status, extended }));
    }
    let kind = r.u16("data type")?;
    let value = match kind {
        0xC1 => CipValue::Bool(r.u8("BOOL")? != 0),
        0xC2 => CipValue::Int(i64::from(r.u8("SINT")? as i8)),
        0xC3 => CipValue::Int(i64::from(r.u16("INT")? as i16)),
        0xC4 => CipValue::Int(i64::from(r.u32("DINT")? as i32)),
        0xC5 => CipValue::Int(i64::from_le_bytes(r.array::<8>("LINT")?)),
        0xC6 => CipValue::Int(i64::from(r.u8("USINT")?)),
        0xC7 => CipValue::Int(i64::from(r.u16("UINT")?)),
        0xC8 => CipValue::Int(i64::from(r.u32("UDINT")?)),
        0xC9 => CipValue::UInt(u64::from_le_bytes(r.array::<8>("ULINT")?)),
        0xCA => CipValue::Real(f64::from(f32::from_le_bytes(r.array::<4>("REAL")?))),
        0xCB => CipValue::Real(f64::from_le_bytes(r.array::<8>("LREAL")?)),
        // BYTE, WORD, DWORD, LWORD: bit strings, read as unsigned numbers.
        0xD1 => CipValue::Int(i64::from(r.u8("BYTE")?)),
        0xD2 => CipValue::Int(i64::from(r.u16("WORD")?)),
        0xD3 => CipValue::Int(i64::from(r.u32("DWORD")?)),
        0xD4 => CipValue::UInt(u64::from_le_bytes(r.array::<8>("LWORD")?)),
        // CIP STRING: a 16-bit length, then the characters.
        0xD0 => {
            let len = usize::from(r.u16("STRING length")?);
            text(r.take(len, "STRING characters")?)
        }
        // SHORT_STRING: an 8-bit length.
        0xDA => {
            let len = usize::from(r.u8("SHORT_STRING length")?);
            text(r.take(len, "SHORT_STRING characters")?)
        }
        STRUCT_TYPE => {
            let handle = r.u16("structure handle")?;
            if handle != LOGIX_STRING_HANDLE {
                return Err(DecodeError::Unexpected(format!(
                    "a structure (handle 0x{handle:04X}) is not a value: read one of its members"
                )));
            }
            // Logix STRING: DINT LEN, then SINT DATA[82].
            let len = r.u32("STRING LEN")? as usize;
            let have = r.b.len();
            text(r.take(len.min(have), "STRING DATA")?)
        }
        other => {
            return Err(DecodeError::Unexpected(format!(
                "data type 0x{other:04X} is not one this connector reads"
            )))
        }
    };
    Ok(Ok(value))
}

fn text(bytes: &[u8]) -> CipValue {
    CipValue::Text(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode_as_symbolic_and_element_segments() {
        let p = TagPath::parse("arrayREAL[0]").expect("path");
        assert_eq!(
            p.encode(),
            [&[0x91, 9][..], b"arrayREAL", &[0, 0x28, 0]].concat()
        );
        let p = TagPath::parse("Motor.Speed[300]").expect("path");
        assert_eq!(
            p.encode(),
            [
                &[0x91, 5][..],
                b"Motor",
                &[0],
                &[0x91, 5],
                b"Speed",
                &[0, 0x29, 0, 0x2C, 0x01]
            ]
            .concat()
        );
        let p = TagPath::parse("a[1,70000]").expect("path");
        assert_eq!(
            p.segments,
            vec![
                PathSegment::Symbol("a".into()),
                PathSegment::Element(1),
                PathSegment::Element(70000)
            ]
        );
        assert_eq!(p.encode().len() % 2, 0);
    }

    #[test]
    fn paths_follow_the_sitewise_naming_rules() {
        for bad in [
            "",
            "1abc",
            "a__b",
            "a_",
            "a[",
            "a[x]",
            "a.",
            ".a",
            "a b",
            &"x".repeat(41),
        ] {
            assert!(TagPath::parse(bad).is_err(), "{bad:?}");
        }
        for ok in ["_a", "a_b", "Program:Main.x", &"x".repeat(40), "a[0].b[2]"] {
            assert!(TagPath::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn read_tag_replies_decode_each_type_and_each_error() {
        let ok = |data: &[u8]| [&[0xCC, 0, 0, 0][..], data].concat();
        let cases: Vec<(Vec<u8>, CipValue)> = vec![
            (ok(&[0xC1, 0, 1]), CipValue::Bool(true)),
            (ok(&[0xC2, 0, 0xFF]), CipValue::Int(-1)),
            (ok(&[0xC3, 0, 0xFE, 0xFF]), CipValue::Int(-2)),
            (ok(&[0xC4, 0, 0x70, 0x11, 0x01, 0]), CipValue::Int(70000)),
            (
                ok(&[&[0xC5, 0][..], &(-5i64).to_le_bytes()].concat()),
                CipValue::Int(-5),
            ),
            (ok(&[0xC7, 0, 0xFF, 0xFF]), CipValue::Int(65535)),
            (
                ok(&[&[0xC9, 0][..], &u64::MAX.to_le_bytes()].concat()),
                CipValue::UInt(u64::MAX),
            ),
            (
                ok(&[&[0xCA, 0][..], &2.5f32.to_le_bytes()].concat()),
                CipValue::Real(2.5),
            ),
            (
                ok(&[&[0xCB, 0][..], &0.1f64.to_le_bytes()].concat()),
                CipValue::Real(0.1),
            ),
            (
                ok(&[0xD0, 0, 2, 0, b'h', b'i']),
                CipValue::Text("hi".into()),
            ),
            (ok(&[0xDA, 0, 1, b'x']), CipValue::Text("x".into())),
            (
                ok(&[&[0xA0, 0x02, 0xCE, 0x0F, 3, 0, 0, 0][..], b"abc", &[0; 79]].concat()),
                CipValue::Text("abc".into()),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(read_tag_reply(&bytes), Ok(Ok(want)), "{bytes:02X?}");
        }
        let e = read_tag_reply(&[0xCC, 0, 0x05, 1, 0x34, 0x12])
            .expect("decodes")
            .expect_err("a CIP error");
        assert_eq!(e.status, 5);
        assert_eq!(e.extended, vec![0x1234]);
        assert!(e.to_string().contains("path destination unknown"), "{e}");
        assert!(matches!(
            read_tag_reply(&[0xCC, 0, 0, 0, 0xC4, 0, 1]),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            read_tag_reply(&[0xD2, 0, 0, 0]),
            Err(DecodeError::Unexpected(_))
        ));
    }

    #[test]
    fn send_rr_data_round_trips_through_its_items() {
        let req = read_tag_request(&TagPath::parse("Count").expect("path"));
        let payload = send_rr_data_payload(&req, 5);
        assert_eq!(unconnected_data(&payload), Ok(&req[..]));
        assert!(unconnected_data(&payload[..payload.len() - 1]).is_err());
        let f = frame(SEND_RR_DATA, 7, [1; 8], &payload);
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&f[..HEADER_LEN]);
        let h = Header::decode(&h);
        assert_eq!(
            (h.command, h.session, usize::from(h.length)),
            (SEND_RR_DATA, 7, payload.len())
        );
    }
}
