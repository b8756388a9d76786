//! What arrives on the input topics: the topic's parts
//! (`serial/<core thing>/read|write/<port path>`) and the JSON read and
//! write requests, parsed into [`Request`]s or into a [`Rejection`] whose
//! message names the bad field. Outside input: nothing here panics.
//!
//! Choices where the Greengrass guide is loose (also in the crate docs):
//! `type` is matched in any case for both reads and writes (the guide's
//! read pattern is case-insensitive, its write pattern lists only
//! `ascii|hex|ASCII|HEX`); `data` is any non-empty string (the guide's
//! `^[1-9][0-9]*$` contradicts its own examples); `readLength` and `data`
//! must be JSON strings, as the guide types them; `id`, when present, must
//! be a non-empty string, and is echoed as given either way.

use base64::Engine as _;
use evergreen_connector_kit::status::kind as kind_of;
use serde_json::{Map, Value};

use crate::{MAX_READ_LENGTH, MAX_WRITE_LENGTH};

/// How data is carried in JSON: as text, or base64 of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Ascii,
    /// Called `hex` by the guide; the data is base64.
    Hex,
}

impl Encoding {
    /// `ascii` or `hex`, in any case.
    pub fn parse(value: &str) -> Option<Encoding> {
        if value.eq_ignore_ascii_case("ascii") {
            Some(Encoding::Ascii)
        } else if value.eq_ignore_ascii_case("hex") {
            Some(Encoding::Hex)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Ascii => "ascii",
            Encoding::Hex => "hex",
        }
    }
}

/// Which input topic a message came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
}

/// An input topic split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub thing: &'a str,
    pub operation: Operation,
    /// The port path without its leading `/` (`dev/ttyS0`).
    pub port: &'a str,
}

impl<'a> Target<'a> {
    /// `serial/<thing>/read|write/<port path>`, or `None` for any other
    /// shape (no port path, another operation).
    pub fn parse(topic: &'a str) -> Option<Target<'a>> {
        let rest = topic.strip_prefix("serial/")?;
        let (thing, rest) = rest.split_once('/')?;
        let (operation, port) = rest.split_once('/')?;
        let operation = match operation {
            "read" => Operation::Read,
            "write" => Operation::Write,
            _ => return None,
        };
        if thing.is_empty() || port.is_empty() {
            return None;
        }
        Some(Target {
            thing,
            operation,
            port,
        })
    }

    /// `serial/<thing>/status/<port>`: where this request's status goes.
    pub fn status_topic(&self) -> String {
        format!("serial/{}/status/{}", self.thing, self.port)
    }

    /// `serial/<thing>/read_response/<port>`: where its data goes.
    pub fn read_response_topic(&self) -> String {
        format!("serial/{}/read_response/{}", self.thing, self.port)
    }
}

/// A valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Read {
        length: usize,
        encoding: Encoding,
        id: Option<Value>,
    },
    Write {
        data: Vec<u8>,
        id: Option<Value>,
    },
}

/// A request that cannot be carried out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The request's `id`, echoed as given (whatever its type).
    pub id: Option<Value>,
    pub message: String,
}

impl Rejection {
    fn new(id: &Option<Value>, message: impl Into<String>) -> Rejection {
        Rejection {
            id: id.clone(),
            message: message.into(),
        }
    }
}

/// Parses a request that came on a `read` or `write` topic.
pub fn parse(operation: Operation, payload: &[u8]) -> Result<Request, Rejection> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| Rejection {
        id: None,
        message: format!("the request is not valid JSON ({e})"),
    })?;
    let Value::Object(fields) = value else {
        return Err(Rejection {
            id: None,
            message: format!("the request must be a JSON object, got {}", kind_of(&value)),
        });
    };
    let id = fields.get("id").cloned();
    match &id {
        None => {}
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::String(_)) => return Err(Rejection::new(&id, "id must not be empty")),
        Some(other) => {
            return Err(Rejection::new(
                &id,
                format!("id must be a string, got {}", kind_of(other)),
            ))
        }
    }
    let encoding = encoding(&fields, &id)?;
    match operation {
        Operation::Read => Ok(Request::Read {
            length: read_length(&fields, &id)?,
            encoding,
            id,
        }),
        Operation::Write => Ok(Request::Write {
            data: write_data(&fields, encoding, &id)?,
            id,
        }),
    }
}

fn encoding(fields: &Map<String, Value>, id: &Option<Value>) -> Result<Encoding, Rejection> {
    match fields.get("type") {
        None => Err(Rejection::new(
            id,
            "type is missing: it must be \"ascii\" or \"hex\"",
        )),
        Some(Value::String(s)) => Encoding::parse(s).ok_or_else(|| {
            Rejection::new(
                id,
                format!("type {:?} is not \"ascii\" or \"hex\"", quote(s)),
            )
        }),
        Some(other) => Err(Rejection::new(
            id,
            format!(
                "type must be the string \"ascii\" or \"hex\", got {}",
                kind_of(other)
            ),
        )),
    }
}

fn read_length(fields: &Map<String, Value>, id: &Option<Value>) -> Result<usize, Rejection> {
    let text =
        match fields.get("readLength") {
            None => return Err(Rejection::new(
                id,
                "readLength is missing: give the number of bytes to read as a string, e.g. \"30\"",
            )),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(Rejection::new(
                    id,
                    format!(
                        "readLength must be a string of digits such as \"30\", got {}",
                        kind_of(other)
                    ),
                ))
            }
        };
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || text.starts_with('0') {
        return Err(Rejection::new(
            id,
            format!(
                "readLength {:?} is not a whole number of bytes from 1 to {MAX_READ_LENGTH}",
                quote(text)
            ),
        ));
    }
    // All digits: a parse failure can only be an overflow, which is above
    // the limit too.
    match text.parse::<usize>() {
        Ok(n) if n <= MAX_READ_LENGTH => Ok(n),
        _ => Err(Rejection::new(
            id,
            format!(
                "readLength {} is above the read limit of {MAX_READ_LENGTH} bytes",
                quote(text)
            ),
        )),
    }
}

fn write_data(
    fields: &Map<String, Value>,
    encoding: Encoding,
    id: &Option<Value>,
) -> Result<Vec<u8>, Rejection> {
    let text = match fields.get("data") {
        None => {
            return Err(Rejection::new(
                id,
                "data is missing: give the text to write (type ascii) or its bytes in base64 (type hex)",
            ))
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(Rejection::new(
                id,
                format!("data must be a string, got {}", kind_of(other)),
            ))
        }
    };
    if text.is_empty() {
        return Err(Rejection::new(id, "data is empty: nothing to write"));
    }
    let bytes = match encoding {
        // The text's UTF-8 bytes, as they are: non-ASCII characters are
        // not refused (a device may well speak UTF-8).
        Encoding::Ascii => text.as_bytes().to_vec(),
        Encoding::Hex => {
            // Line breaks and spaces from base64 tools are not data.
            let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            // Refuse before decoding what would be too long decoded.
            if compact.len() / 4 * 3 > MAX_WRITE_LENGTH + 2 {
                return Err(too_long(id, compact.len() / 4 * 3));
            }
            base64::engine::general_purpose::STANDARD
                .decode(&compact)
                .map_err(|e| {
                    Rejection::new(id, format!("data is not valid base64 (type hex): {e}"))
                })?
        }
    };
    if bytes.is_empty() {
        // Base64 text of whitespace only (type hex) decodes to nothing.
        return Err(Rejection::new(id, "data is empty: nothing to write"));
    }
    if bytes.len() > MAX_WRITE_LENGTH {
        return Err(too_long(id, bytes.len()));
    }
    Ok(bytes)
}

fn too_long(id: &Option<Value>, len: usize) -> Rejection {
    Rejection::new(
        id,
        format!("data is {len} bytes, above the write limit of {MAX_WRITE_LENGTH} bytes"),
    )
}

/// A value quoted in a message, cut short: requests may be large.
fn quote(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(payload: &str) -> Result<Request, Rejection> {
        parse(Operation::Read, payload.as_bytes())
    }

    fn write(payload: &str) -> Result<Request, Rejection> {
        parse(Operation::Write, payload.as_bytes())
    }

    fn message(result: Result<Request, Rejection>) -> String {
        match result {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(r) => r.message,
        }
    }

    #[test]
    fn topics() {
        assert_eq!(
            Target::parse("serial/core-1/read/dev/ttyS0"),
            Some(Target {
                thing: "core-1",
                operation: Operation::Read,
                port: "dev/ttyS0"
            })
        );
        let t = Target::parse("serial/core/write/dev/pts/3").expect("write topic");
        assert_eq!(t.operation, Operation::Write);
        assert_eq!(t.status_topic(), "serial/core/status/dev/pts/3");
        assert_eq!(
            t.read_response_topic(),
            "serial/core/read_response/dev/pts/3"
        );
        for bad in [
            "serial/core/read",
            "serial/core/read/",
            "serial//read/dev/x",
            "serial/core/status/dev/x",
            "other/core/read/dev/x",
            "serial",
            "",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_guide_s_examples_parse() {
        assert_eq!(
            read(r#"{"readLength": "30", "type": "ascii", "id": "abc123"}"#),
            Ok(Request::Read {
                length: 30,
                encoding: Encoding::Ascii,
                id: Some(json!("abc123"))
            })
        );
        assert_eq!(
            write(r#"{"data": "random serial data", "type": "ascii", "id": "abc123"}"#),
            Ok(Request::Write {
                data: b"random serial data".to_vec(),
                id: Some(json!("abc123"))
            })
        );
        assert_eq!(
            write(r#"{"data": "AAEC/w==", "type": "HEX"}"#),
            Ok(Request::Write {
                data: vec![0, 1, 2, 255],
                id: None
            })
        );
        assert_eq!(
            write("{\"data\": \"AAEC\\n/w==\", \"type\": \"Hex\"}"),
            Ok(Request::Write {
                data: vec![0, 1, 2, 255],
                id: None
            }),
            "line breaks in base64 and any case of type"
        );
    }

    #[test]
    fn malformed_requests_are_rejected_naming_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("not json", "not valid JSON"),
            ("", "not valid JSON"),
            ("[1,2]", "must be a JSON object, got an array"),
            ("\"text\"", "must be a JSON object, got a string"),
            (r#"{"type":"ascii"}"#, "readLength is missing"),
            (
                r#"{"readLength":30,"type":"ascii"}"#,
                "readLength must be a string of digits such as \"30\", got a number",
            ),
            (
                r#"{"readLength":"0","type":"ascii"}"#,
                "readLength \"0\" is not a whole number",
            ),
            (
                r#"{"readLength":"abc","type":"ascii"}"#,
                "readLength \"abc\" is not a whole number",
            ),
            (
                r#"{"readLength":"-1","type":"ascii"}"#,
                "readLength \"-1\" is not a whole number",
            ),
            (
                r#"{"readLength":"","type":"ascii"}"#,
                "readLength \"\" is not a whole number",
            ),
            (
                r#"{"readLength":"07","type":"ascii"}"#,
                "readLength \"07\" is not a whole number",
            ),
            (
                r#"{"readLength":"63995","type":"ascii"}"#,
                "readLength 63995 is above the read limit of 63994 bytes",
            ),
            (
                r#"{"readLength":"99999999999999999999999","type":"ascii"}"#,
                "above the read limit of 63994 bytes",
            ),
            (r#"{"readLength":"3"}"#, "type is missing"),
            (
                r#"{"readLength":"3","type":"binary"}"#,
                "type \"binary\" is not \"ascii\" or \"hex\"",
            ),
            (
                r#"{"readLength":"3","type":1}"#,
                "type must be the string \"ascii\" or \"hex\", got a number",
            ),
            (
                r#"{"readLength":"3","type":"ascii","id":""}"#,
                "id must not be empty",
            ),
            (
                r#"{"readLength":"3","type":"ascii","id":7}"#,
                "id must be a string, got a number",
            ),
        ];
        for (payload, expected) in cases {
            let got = message(read(payload));
            assert!(got.contains(expected), "{payload}: {got}");
        }
        let cases: &[(&str, &str)] = &[
            (r#"{"type":"ascii"}"#, "data is missing"),
            (
                r#"{"data":12,"type":"ascii"}"#,
                "data must be a string, got a number",
            ),
            (
                r#"{"data":null,"type":"ascii"}"#,
                "data must be a string, got null",
            ),
            (r#"{"data":"","type":"ascii"}"#, "data is empty"),
            (r#"{"data":"abc"}"#, "type is missing"),
            (r#"{"data":"abc","type":"utf8"}"#, "type \"utf8\" is not"),
            (
                r#"{"data":"!!!","type":"hex"}"#,
                "data is not valid base64 (type hex)",
            ),
            (
                r#"{"data":"QUJD=","type":"hex"}"#,
                "data is not valid base64 (type hex)",
            ),
        ];
        for (payload, expected) in cases {
            let got = message(write(payload));
            assert!(got.contains(expected), "{payload}: {got}");
        }
    }

    #[test]
    fn the_id_is_echoed_even_when_the_request_is_bad() {
        let r = read(r#"{"readLength":"0","type":"ascii","id":"x1"}"#).expect_err("bad");
        assert_eq!(r.id, Some(json!("x1")));
        let r = read(r#"{"readLength":"1","type":"ascii","id":42}"#).expect_err("bad");
        assert_eq!(r.id, Some(json!(42)));
        assert_eq!(read("nope").expect_err("bad").id, None);
    }

    #[test]
    fn the_limits_are_exact() {
        let ok = format!(r#"{{"readLength":"{MAX_READ_LENGTH}","type":"hex"}}"#);
        assert!(matches!(
            read(&ok),
            Ok(Request::Read {
                length: MAX_READ_LENGTH,
                ..
            })
        ));

        let at = "a".repeat(MAX_WRITE_LENGTH);
        let over = "a".repeat(MAX_WRITE_LENGTH + 1);
        let w = |data: &str, kind: &str| write(&json!({"data": data, "type": kind}).to_string());
        assert!(
            matches!(w(&at, "ascii"), Ok(Request::Write { data, .. }) if data.len() == MAX_WRITE_LENGTH)
        );
        assert!(message(w(&over, "ascii"))
            .contains("data is 128001 bytes, above the write limit of 128000 bytes"));
        // The limit counts decoded bytes for hex.
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        assert!(
            matches!(w(&b64(MAX_WRITE_LENGTH), "hex"), Ok(Request::Write { data, .. }) if data.len() == MAX_WRITE_LENGTH)
        );
        assert!(message(w(&b64(MAX_WRITE_LENGTH + 1), "hex"))
            .contains("data is 128001 bytes, above the write limit"));
        assert!(message(w(&b64(10 * MAX_WRITE_LENGTH), "hex"))
            .contains("above the write limit of 128000 bytes"));
        // Whitespace only is no data once decoded (found by `any_field_values_are_answered`).
        assert!(message(w(" \n ", "hex")).contains("data is empty"));
    }

    proptest::proptest! {
        // Outside input: whatever the bytes, a request or a rejection, and
        // never a panic.
        #[test]
        fn any_bytes_are_answered(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse(Operation::Read, &payload);
            let _ = parse(Operation::Write, &payload);
        }

        #[test]
        fn any_field_values_are_answered(
            length in proptest::option::of(".{0,12}"),
            kind in proptest::option::of("(?i)(ascii|hex|[a-z]{0,5})"),
            data in proptest::option::of("[A-Za-z0-9+/=!é ]{0,40}"),
            id in proptest::option::of(".{0,4}"),
            numeric in proptest::bool::ANY,
        ) {
            let mut fields = serde_json::Map::new();
            if let Some(l) = length {
                let value = match (numeric, l.parse::<i64>()) {
                    (true, Ok(n)) => json!(n),
                    _ => json!(l),
                };
                fields.insert("readLength".into(), value);
            }
            for (key, value) in [("type", kind), ("data", data), ("id", id)] {
                if let Some(v) = value {
                    fields.insert(key.into(), json!(v));
                }
            }
            let payload = Value::Object(fields).to_string();
            for operation in [Operation::Read, Operation::Write] {
                match parse(operation, payload.as_bytes()) {
                    Ok(Request::Read { length, .. }) => {
                        proptest::prop_assert!((1..=MAX_READ_LENGTH).contains(&length))
                    }
                    Ok(Request::Write { data, .. }) => {
                        proptest::prop_assert!(!data.is_empty() && data.len() <= MAX_WRITE_LENGTH)
                    }
                    Err(r) => proptest::prop_assert!(!r.message.is_empty()),
                }
            }
        }
    }

    #[test]
    fn unicode_text_is_written_as_utf8_and_long_values_are_cut_in_messages() {
        assert_eq!(
            write(r#"{"data":"héllo","type":"ascii"}"#),
            Ok(Request::Write {
                data: "héllo".as_bytes().to_vec(),
                id: None
            })
        );
        let long = format!(r#"{{"readLength":"{}","type":"ascii"}}"#, "é".repeat(100));
        let m = message(read(&long));
        assert!(m.len() < 200 && m.contains('…'), "{m}");
    }
}
