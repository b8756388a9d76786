//! JSON helpers for the status and error messages connectors publish, and
//! for describing bad input in them. The shapes are the reference's
//! (`{"response":{…,"status":"fail"},"id":…}`); helpers build values only,
//! the connectors choose topics and when to publish.

use serde_json::{json, Map, Value};

/// Why an input is refused: the message names the field, and `id` is the
/// input's own `id` (when it had a string one), which the failure status
/// echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub id: Option<String>,
    pub message: String,
}

/// `{"error":…,"error_message":…,"status":"fail"}`: the failure response
/// most connectors answer with.
pub fn fail_response(error: &str, message: &str) -> Value {
    json!({ "error": error, "error_message": message, "status": "fail" })
}

/// `{"response":<response>,"id":<id>}`, without `id` when there is none.
pub fn with_id(response: Value, id: Option<Value>) -> Value {
    let mut out = Map::new();
    out.insert("response".into(), response);
    if let Some(id) = id {
        out.insert("id".into(), id);
    }
    Value::Object(out)
}

/// A failure message: `{"response":{"error":…,"error_message":…,"status":"fail"}}`
/// with the input's string `id` when it had one.
pub fn failure(error: &str, message: &str, id: Option<&str>) -> Value {
    with_id(
        fail_response(error, message),
        id.map(|i| Value::String(i.to_string())),
    )
}

/// An input payload read as a JSON object, or why not: "the `<what>` is
/// not JSON: …" or "the `<what>` is not a JSON object" (`what` is how the
/// connector's reference names its input: payload, message).
pub fn json_object(payload: &[u8], what: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(payload) {
        Ok(Value::Object(top)) => Ok(top),
        Ok(_) => Err(format!("the {what} is not a JSON object")),
        Err(e) => Err(format!("the {what} is not JSON: {e}")),
    }
}

/// The object under `key` of an input (`request` in most connectors' messages), or why not:
/// "`key` must be an object" / "`key` is missing".
pub fn object_field<'a>(
    root: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Map<String, Value>, String> {
    match root.get(key) {
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(format!("{key} must be an object")),
        None => Err(format!("{key} is missing")),
    }
}

/// A string field of `object` that must be present and not empty; `what` names it in the
/// message (`request.message`).
pub fn nonempty_string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<&'a str, String> {
    match object.get(key) {
        Some(Value::String(s)) if s.is_empty() => Err(format!("{what} must not be empty")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{what} must be a string")),
        None => Err(format!("{what} is missing")),
    }
}

/// What kind of JSON value `v` is, for "must be a string, not …" messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most `chars` characters of `s`, with `…` when cut: outside input is
/// quoted in messages, and must not make them unbounded.
pub fn clip(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// Publishes a status document on `topic`; only a closed link is an error (see
/// `Handle::publish_or_log`).
pub async fn publish(
    handle: &evergreen_ipc::sdk::Handle,
    topic: &str,
    status: Value,
) -> Result<(), evergreen_ipc::sdk::SdkError> {
    handle.publish_or_log(topic, status.to_string()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            failure("E", "m", Some("r1")).to_string(),
            r#"{"id":"r1","response":{"error":"E","error_message":"m","status":"fail"}}"#
        );
        assert_eq!(
            failure("E", "m", None),
            json!({"response": {"error": "E", "error_message": "m", "status": "fail"}})
        );
        assert_eq!(with_id(json!(1), Some(json!(7)))["id"], 7);
        assert_eq!(kind(&json!([])), "an array");
        assert_eq!(json_object(b"{}", "payload"), Ok(Map::new()));
        assert_eq!(
            json_object(b"[1]", "message"),
            Err("the message is not a JSON object".to_string())
        );
        assert!(
            json_object(b"x", "payload").is_err_and(|e| e.starts_with("the payload is not JSON: "))
        );
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hé", 2), "hé");
    }
}
