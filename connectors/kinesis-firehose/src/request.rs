//! Turns what arrives on the input topics into records for a delivery
//! stream, or into the failure that names the bad field. Never panics on
//! outside input; knows nothing of queues or the service.

use evergreen_connector_kit::status::{clip, kind};
use serde_json::Value;

/// Largest record Firehose accepts (1,000 KiB before base64).
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// The JSON input topic.
pub const JSON_TOPIC: &str = "kinesisfirehose/message";
/// The binary input topics: `kinesisfirehose/message/binary/<id>`.
pub const BINARY_PREFIX: &str = "kinesisfirehose/message/binary";
/// The error code of every input the connector refuses before queueing it.
pub const INVALID_INPUT: &str = "InvalidInputException";

/// A delivery stream named by its ARN
/// (`arn:aws:firehose:<region>:<account>:deliverystream/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamArn {
    pub arn: String,
    pub region: String,
    pub name: String,
}

impl StreamArn {
    /// Parses an ARN the way the reference pattern
    /// `arn:aws:firehose:([a-z]{2}-[a-z]+-\d{1}):(\d{12}):deliverystream/([a-zA-Z0-9_\-.]+)$`
    /// does (anchored at both ends, as group validation anchors it).
    pub fn parse(arn: &str) -> Result<StreamArn, String> {
        let bad = |why: &str| {
            Err(format!(
                "`{}` is not a delivery stream ARN (arn:aws:firehose:<region>:<12-digit account>:deliverystream/<name>): {why}",
                quote(arn)
            ))
        };
        let Some(rest) = arn.strip_prefix("arn:aws:firehose:") else {
            return bad("it must start with arn:aws:firehose:");
        };
        let mut parts = rest.splitn(3, ':');
        let (Some(region), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return bad("region, account or resource missing");
        };
        if !region_ok(region) {
            return bad("the region must look like us-east-1");
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return bad("the account must be 12 digits");
        }
        let Some(name) = resource.strip_prefix("deliverystream/") else {
            return bad("the resource must be deliverystream/<name>");
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return bad("the stream name may hold only letters, digits, _, - and .");
        }
        Ok(StreamArn {
            arn: arn.to_string(),
            region: region.to_string(),
            name: name.to_string(),
        })
    }
}

/// `[a-z]{2}-[a-z]+-\d`.
fn region_ok(region: &str) -> bool {
    let mut parts = region.split('-');
    let (Some(a), Some(b), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    a.len() == 2
        && a.bytes().all(|x| x.is_ascii_lowercase())
        && !b.is_empty()
        && b.bytes().all(|x| x.is_ascii_lowercase())
        && c.len() == 1
        && c.bytes().all(|x| x.is_ascii_digit())
}

/// One record waiting for its delivery stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The request id echoed in the status (`None`: the message had none).
    pub id: Option<String>,
    pub data: Vec<u8>,
}

/// A message the connector accepted: its record, and the stream it names
/// (`None`: the default stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub stream: Option<StreamArn>,
    pub record: Record,
}

/// A message the connector refuses, with what the failure status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub id: Option<String>,
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    fn new(id: Option<String>, message: impl Into<String>) -> Self {
        Invalid {
            id,
            code: INVALID_INPUT,
            message: message.into(),
        }
    }
}

/// A message on `kinesisfirehose/message`:
/// `{"request": {"data": "…", "delivery_stream_arn": "…"}, "id": "…"}`.
pub fn parse_json(payload: &[u8]) -> Result<Accepted, Invalid> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| Invalid::new(None, format!("the message is not JSON: {e}")))?;
    let Value::Object(message) = value else {
        return Err(Invalid::new(None, "the message must be a JSON object"));
    };
    // The id first, so every later failure can echo it.
    let id = match message.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(Invalid::new(
                None,
                format!("id must be a string, got {}", kind(other)),
            ))
        }
    };
    let request = match message.get("request") {
        None | Some(Value::Null) => return Err(Invalid::new(id, "request is missing")),
        Some(Value::Object(r)) => r,
        Some(other) => {
            return Err(Invalid::new(
                id,
                format!("request must be an object, got {}", kind(other)),
            ))
        }
    };
    let data = match request.get("data") {
        None | Some(Value::Null) => return Err(Invalid::new(id, "request.data is missing")),
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(other) => {
            return Err(Invalid::new(
                id,
                format!("request.data must be a string, got {}", kind(other)),
            ))
        }
    };
    if data.len() > MAX_RECORD_BYTES {
        return Err(Invalid::new(
            id,
            format!(
                "request.data is {} bytes; a Firehose record holds at most {MAX_RECORD_BYTES}",
                data.len()
            ),
        ));
    }
    let stream =
        match request.get("delivery_stream_arn") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(StreamArn::parse(s).map_err(|e| {
                Invalid::new(id.clone(), format!("request.delivery_stream_arn: {e}"))
            })?),
            Some(other) => {
                return Err(Invalid::new(
                    id,
                    format!(
                        "request.delivery_stream_arn must be a string, got {}",
                        kind(other)
                    ),
                ))
            }
        };
    Ok(Accepted {
        stream,
        record: Record { id, data },
    })
}

/// A message on `kinesisfirehose/message/binary/<id>`: the payload as is,
/// for the default stream; the id is the rest of the topic (`binary/` alone
/// gives the empty id, `binary` none).
pub fn parse_binary(topic: &str, payload: Vec<u8>) -> Result<Accepted, Invalid> {
    let id = binary_id(topic);
    if payload.len() > MAX_RECORD_BYTES {
        return Err(Invalid::new(
            id,
            format!(
                "the binary payload is {} bytes; a Firehose record holds at most {MAX_RECORD_BYTES}",
                payload.len()
            ),
        ));
    }
    Ok(Accepted {
        stream: None,
        record: Record { id, data: payload },
    })
}

/// The request id of a binary topic, or `None` if `topic` is not one.
pub fn binary_id(topic: &str) -> Option<String> {
    topic
        .strip_prefix(BINARY_PREFIX)
        .and_then(|rest| rest.strip_prefix('/'))
        .map(str::to_string)
}

/// Whether `topic` is one of the binary input topics.
pub fn is_binary(topic: &str) -> bool {
    topic == BINARY_PREFIX || topic.starts_with(&format!("{BINARY_PREFIX}/"))
}

/// At most 200 characters of `s`, for messages.
fn quote(s: &str) -> String {
    clip(s, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:firehose:us-east-1:123456789012:deliverystream/stream2-name";

    #[test]
    fn the_reference_example_parses() {
        let msg = format!(
            r#"{{"request": {{"delivery_stream_arn": "{ARN}", "data": "Data to send to the delivery stream."}}, "id": "request123"}}"#
        );
        let a = parse_json(msg.as_bytes()).expect("valid");
        assert_eq!(a.record.id.as_deref(), Some("request123"));
        assert_eq!(a.record.data, b"Data to send to the delivery stream.");
        let s = a.stream.expect("stream");
        assert_eq!(
            (s.region.as_str(), s.name.as_str()),
            ("us-east-1", "stream2-name")
        );

        let a = parse_json(br#"{"request": {"data": ""}, "id": ""}"#).expect("valid");
        assert_eq!(a.stream, None);
        assert_eq!(a.record.id.as_deref(), Some(""));
        let a = parse_json(br#"{"request": {"data": "x"}}"#).expect("no id");
        assert_eq!(a.record.id, None);
    }

    #[test]
    fn bad_messages_name_the_bad_field() {
        let cases: &[(&[u8], &str, Option<&str>)] = &[
            (b"not json", "not JSON", None),
            (b"[1]", "JSON object", None),
            (br#"{"id": 5, "request": {"data": "x"}}"#, "id must be a string", None),
            (br#"{"id": "a"}"#, "request is missing", Some("a")),
            (br#"{"id": "a", "request": "x"}"#, "request must be an object", Some("a")),
            (br#"{"id": "a", "request": {}}"#, "request.data is missing", Some("a")),
            (br#"{"id": "a", "request": {"data": 1}}"#, "request.data must be a string", Some("a")),
            (
                br#"{"id": "a", "request": {"data": "x", "delivery_stream_arn": 3}}"#,
                "request.delivery_stream_arn must be a string",
                Some("a"),
            ),
            (
                br#"{"id": "a", "request": {"data": "x", "delivery_stream_arn": "arn:aws:sns:us-east-1:123456789012:t"}}"#,
                "request.delivery_stream_arn: ",
                Some("a"),
            ),
        ];
        for (payload, needle, id) in cases {
            let e = parse_json(payload).expect_err(needle);
            assert_eq!(e.code, INVALID_INPUT);
            assert!(e.message.contains(needle), "{needle}: {}", e.message);
            assert_eq!(e.id.as_deref(), *id, "{needle}");
        }
        let big = format!(
            r#"{{"request": {{"data": "{}"}}}}"#,
            "x".repeat(MAX_RECORD_BYTES + 1)
        );
        let e = parse_json(big.as_bytes()).expect_err("too big");
        assert!(
            e.message.starts_with("request.data is 1024001 bytes"),
            "{}",
            e.message
        );
    }

    #[test]
    fn arns_follow_the_reference_pattern() {
        assert!(StreamArn::parse(ARN).is_ok());
        assert!(
            StreamArn::parse("arn:aws:firehose:eu-west-3:000000000000:deliverystream/a.b_c-9")
                .is_ok()
        );
        for bad in [
            "",
            "arn:aws:firehose:us-east-1:12345678901:deliverystream/s",
            "arn:aws:firehose:useast-1:123456789012:deliverystream/s",
            "arn:aws:firehose:us-east-12:123456789012:deliverystream/s",
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/",
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/a/b",
            "arn:aws:firehose:us-east-1:123456789012:stream/s",
            "arn:aws:kinesis:us-east-1:123456789012:deliverystream/s",
        ] {
            assert!(StreamArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binary_topics_carry_the_id() {
        let a =
            parse_binary("kinesisfirehose/message/binary/request123", vec![0, 255]).expect("ok");
        assert_eq!(a.record.id.as_deref(), Some("request123"));
        assert_eq!(a.record.data, vec![0, 255]);
        assert_eq!(
            binary_id("kinesisfirehose/message/binary/"),
            Some(String::new())
        );
        assert_eq!(
            binary_id("kinesisfirehose/message/binary/a/b"),
            Some("a/b".into())
        );
        assert_eq!(binary_id("kinesisfirehose/message/binary"), None);
        assert!(is_binary("kinesisfirehose/message/binary"));
        assert!(is_binary("kinesisfirehose/message/binary/x"));
        assert!(!is_binary("kinesisfirehose/message/binaryx"));
        assert!(!is_binary(JSON_TOPIC));
        let e = parse_binary(
            "kinesisfirehose/message/binary/big",
            vec![0; MAX_RECORD_BYTES + 1],
        )
        .expect_err("too big");
        assert_eq!(e.id.as_deref(), Some("big"));
    }
}
