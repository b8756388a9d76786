//! Reads one invocation of the ML SDK's `feedback.publish`: the client
//! context `{"custom": {"ConfigId", "ModelPrediction", "Metadata"}}` into a
//! [`FeedbackRequest`], or the reason to refuse it. Pure; outside input
//! never panics here.
//!
//! Checked on arrival, so that a request is refused at once (the SDK
//! raises `GreengrassFeedbackException`) rather than failing later where
//! the caller cannot see it: `ConfigId` is a string; `ModelPrediction` is
//! a non-empty list or dictionary (V1's checks); `Metadata`, when given, is
//! a dictionary whose keys are HTTP header names and whose values (strings
//! as they are, anything else as JSON) are printable ASCII, within S3's
//! 2 KB of user metadata including `publish-ts` (V1 sent them to S3 and
//! reported the failure after the fact).

use serde_json::{Map, Value};

use crate::messages::{metadata_value, PUBLISH_TS};
use crate::settings::header_safe;

/// S3's limit on user-defined metadata: the bytes of every key and value.
pub const MAX_METADATA_BYTES: usize = 2048;
/// The length of a `publish-ts` value (`2019-07-11 00:12:48.816752`).
const PUBLISH_TS_LEN: usize = 26;

pub const CONFIG_ID: &str = "ConfigId";
pub const MODEL_PREDICTION: &str = "ModelPrediction";
pub const METADATA: &str = "Metadata";

/// One request, read.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRequest {
    pub config_id: String,
    /// A non-empty list or dictionary, as the caller gave it.
    pub prediction: Value,
    /// The caller's metadata (`publish-ts` not yet added).
    pub metadata: Map<String, Value>,
}

/// Reads the client context (JSON text, as the supervisor decoded it from
/// the invocation's base64).
pub fn parse_context(context: &[u8]) -> Result<FeedbackRequest, String> {
    if context.is_empty() {
        return Err(
            "the invocation has no client context: call the connector through the \
                    ML SDK's feedback client"
                .into(),
        );
    }
    let root = evergreen_connector_kit::status::json_object(context, "client context")?;
    let custom = evergreen_connector_kit::status::object_field(&root, "custom")
        .map_err(|e| format!("client context: {e}"))?;
    let config_id = match custom.get(CONFIG_ID) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "{CONFIG_ID} must be a string, not {}",
                evergreen_connector_kit::status::kind(other)
            ))
        }
        None => return Err(format!("Context is missing param: {CONFIG_ID}")),
    };
    let prediction = match custom.get(MODEL_PREDICTION) {
        None => return Err(format!("Context is missing param: {MODEL_PREDICTION}")),
        Some(v @ (Value::Array(_) | Value::Object(_))) => {
            if is_empty(v) {
                return Err(format!("{MODEL_PREDICTION} param cannot be empty."));
            }
            v.clone()
        }
        Some(_) => {
            return Err(format!(
                "{MODEL_PREDICTION} param must be a list or a dict."
            ))
        }
    };
    let metadata = match custom.get(METADATA) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(format!("{METADATA} param must be a dict.")),
    };
    check_metadata(&metadata)?;
    Ok(FeedbackRequest {
        config_id,
        prediction,
        metadata,
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// HTTP token characters (RFC 9110), what a header name holds.
fn header_name(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// Whether `metadata` can go to S3 as `x-amz-meta-*` headers.
pub fn check_metadata(metadata: &Map<String, Value>) -> Result<(), String> {
    let mut bytes = PUBLISH_TS.len() + PUBLISH_TS_LEN;
    for (k, v) in metadata {
        let quoted = evergreen_connector_kit::status::clip(k, 40);
        if !header_name(k) {
            return Err(format!(
                "{METADATA} key {quoted:?} cannot be sent to S3: keys must be letters, digits \
                 and !#$%&'*+-.^_`|~ (HTTP header names)"
            ));
        }
        if k.eq_ignore_ascii_case(PUBLISH_TS) {
            // The connector's own stamp replaces it.
            continue;
        }
        let value = metadata_value(v);
        if !header_safe(&value) {
            return Err(format!(
                "{METADATA} value of {quoted:?} cannot be sent to S3: it must be printable ASCII"
            ));
        }
        bytes += k.len() + value.len();
    }
    if bytes > MAX_METADATA_BYTES {
        return Err(format!(
            "{METADATA} is {bytes} bytes with {PUBLISH_TS}, more than S3's {MAX_METADATA_BYTES}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn the_sdk_context_is_read() {
        let r = parse_context(&ctx(json!({"custom": {"ConfigId": "ConfigID1",
            "ModelPrediction": [0.25, 0.6, 0.15], "Metadata": {"some-key": "some value"}}})))
        .expect("valid");
        assert_eq!(r.config_id, "ConfigID1");
        assert_eq!(r.prediction, json!([0.25, 0.6, 0.15]));
        assert_eq!(r.metadata["some-key"], "some value");
        let r = parse_context(&ctx(json!({"custom": {"ConfigId": "c1",
            "ModelPrediction": {"prediction": [[1, 0.5, 0, 0, 1, 1]]}, "Metadata": {}}})))
        .expect("dict");
        assert!(r.metadata.is_empty());
        let r = parse_context(&ctx(
            json!({"custom": {"ConfigId": "c1", "ModelPrediction": [1]}}),
        ))
        .expect("no metadata");
        assert!(r.metadata.is_empty());
    }

    #[test]
    fn bad_contexts_say_what_is_wrong() {
        let cases = [
            (Vec::new(), "no client context"),
            (b"nope".to_vec(), "client context is not JSON"),
            (ctx(json!({"ConfigId": "c1"})), "custom is missing"),
            (
                ctx(json!({"custom": {"ModelPrediction": [1]}})),
                "missing param: ConfigId",
            ),
            (
                ctx(json!({"custom": {"ConfigId": 7, "ModelPrediction": [1]}})),
                "ConfigId must be a string",
            ),
            (
                ctx(json!({"custom": {"ConfigId": "c1"}})),
                "missing param: ModelPrediction",
            ),
            (
                ctx(json!({"custom": {"ConfigId": "c1", "ModelPrediction": []}})),
                "cannot be empty",
            ),
            (
                ctx(json!({"custom": {"ConfigId": "c1", "ModelPrediction": {}}})),
                "cannot be empty",
            ),
            (
                ctx(json!({"custom": {"ConfigId": "c1", "ModelPrediction": "0.5"}})),
                "must be a list or a dict",
            ),
            (
                ctx(json!({"custom": {"ConfigId": "c1", "ModelPrediction": [1], "Metadata": [1]}})),
                "Metadata param must be a dict",
            ),
            (
                ctx(
                    json!({"custom": {"ConfigId": "c1", "ModelPrediction": [1], "Metadata": {"a b": "x"}}}),
                ),
                "HTTP header names",
            ),
            (
                ctx(
                    json!({"custom": {"ConfigId": "c1", "ModelPrediction": [1], "Metadata": {"k": "é"}}}),
                ),
                "printable ASCII",
            ),
            (
                ctx(
                    json!({"custom": {"ConfigId": "c1", "ModelPrediction": [1], "Metadata": {"k": "x".repeat(2048)}}}),
                ),
                "more than S3's 2048",
            ),
        ];
        for (context, expected) in cases {
            let e = parse_context(&context).expect_err(expected);
            assert!(e.contains(expected), "{expected}: {e}");
        }
    }

    #[test]
    fn metadata_values_may_be_any_json_and_publish_ts_is_replaced() {
        let meta: Map<String, Value> =
            serde_json::from_value(json!({"n": 3, "list": [1, 2], "publish-ts": "é"}))
                .expect("object");
        assert_eq!(check_metadata(&meta), Ok(()));
    }
}
