//! The status messages on `cloudwatch/metric/put/status`, in the shapes the
//! reference gives: one per `PutMetricData` call (or refused message),
//! naming the namespace.

use serde_json::{json, Map, Value};

/// The status topic.
pub const STATUS_TOPIC: &str = "cloudwatch/metric/put/status";

/// `{"response": {"cloudwatch_rid": …, "namespace": …, "status": "success"}}`.
pub fn success(namespace: &str, request_id: &str) -> Vec<u8> {
    json!({ "response": { "cloudwatch_rid": request_id, "namespace": namespace, "status": "success" } })
        .to_string()
        .into_bytes()
}

/// `{"response": {"namespace": …, "error": …, "error_message": …, "status": "fail"}}`;
/// `namespace` is left out when the message had none.
pub fn failure(namespace: Option<&str>, error: &str, message: &str) -> Vec<u8> {
    let mut r = Map::new();
    if let Some(ns) = namespace {
        r.insert("namespace".into(), json!(ns));
    }
    r.insert("error".into(), json!(error));
    r.insert("error_message".into(), json!(message));
    r.insert("status".into(), json!("fail"));
    json!({ "response": Value::Object(r) })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_the_reference_examples() {
        let parse = |b: Vec<u8>| serde_json::from_slice::<Value>(&b).expect("JSON");
        assert_eq!(
            parse(success(
                "Greengrass",
                "70573243-d723-11e8-b095-75ff2EXAMPLE"
            )),
            json!({"response": {"cloudwatch_rid": "70573243-d723-11e8-b095-75ff2EXAMPLE", "namespace": "Greengrass", "status": "success"}})
        );
        assert_eq!(
            parse(failure(
                Some("Greengrass"),
                "InvalidInputException",
                "cw metric is invalid"
            )),
            json!({"response": {"namespace": "Greengrass", "error": "InvalidInputException", "error_message": "cw metric is invalid", "status": "fail"}})
        );
        assert_eq!(
            parse(failure(None, "InvalidInputException", "x")),
            json!({"response": {"error": "InvalidInputException", "error_message": "x", "status": "fail"}})
        );
    }
}
