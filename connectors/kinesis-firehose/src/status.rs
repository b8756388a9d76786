//! The status messages on `kinesisfirehose/message/status`, in the shapes
//! the reference gives: versions 2–5 publish one message per batch whose
//! `response` is an array with one entry per record; version 1 publishes
//! one object per record.

use serde_json::{json, Map, Value};

/// The status topic.
pub const STATUS_TOPIC: &str = "kinesisfirehose/message/status";

/// What finally became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Firehose took it, under this record id.
    Delivered { record_id: String },
    /// It failed for good (or was refused before queueing).
    Failed { code: String, message: String },
}

/// One record's entry in a version 2–5 status:
/// `{"firehose_record_id": …, "id": …, "status": "success"}` or
/// `{"ErrorCode": …, "ErrorMessage": …, "id": …, "status": "fail"}`.
/// `id` is left out when the message had none.
pub fn entry(id: Option<&str>, outcome: &Outcome) -> Value {
    let mut m = Map::new();
    match outcome {
        Outcome::Delivered { record_id } => {
            m.insert("firehose_record_id".into(), json!(record_id));
            m.insert("status".into(), json!("success"));
        }
        Outcome::Failed { code, message } => {
            m.insert("ErrorCode".into(), json!(code));
            m.insert("ErrorMessage".into(), json!(message));
            m.insert("status".into(), json!("fail"));
        }
    }
    if let Some(id) = id {
        m.insert("id".into(), json!(id));
    }
    Value::Object(m)
}

/// A version 2–5 status: `{"response": [entry, …]}`.
pub fn batch_status(entries: Vec<Value>) -> Vec<u8> {
    json!({ "response": entries }).to_string().into_bytes()
}

/// A version 1 status:
/// `{"response": {"firehose_record_id": …, "status": "success"}, "id": …}` or
/// `{"response": {"error": …, "error_message": …, "status": "fail"}, "id": …}`.
pub fn single_status(id: Option<&str>, outcome: &Outcome) -> Vec<u8> {
    let response = match outcome {
        Outcome::Delivered { record_id } => {
            json!({ "firehose_record_id": record_id, "status": "success" })
        }
        Outcome::Failed { code, message } => {
            json!({ "error": code, "error_message": message, "status": "fail" })
        }
    };
    let mut m = Map::new();
    m.insert("response".into(), response);
    if let Some(id) = id {
        m.insert("id".into(), json!(id));
    }
    Value::Object(m).to_string().into_bytes()
}

/// The status for one record refused before it was queued, in the shape
/// of `version`: a one-entry array for versions 2–5.
pub fn refusal(version: u32, id: Option<&str>, code: &str, message: &str) -> Vec<u8> {
    let outcome = Outcome::Failed {
        code: code.to_string(),
        message: message.to_string(),
    };
    if version >= 2 {
        batch_status(vec![entry(id, &outcome)])
    } else {
        single_status(id, &outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::testing::json;

    #[test]
    fn batched_statuses_match_the_reference_example() {
        let got = json(&batch_status(vec![
            entry(
                Some("request123"),
                &Outcome::Failed {
                    code: "error".into(),
                    message: "test error".into(),
                },
            ),
            entry(
                Some("request456"),
                &Outcome::Delivered {
                    record_id: "xyz2".into(),
                },
            ),
        ]));
        assert_eq!(
            got,
            json!({"response": [
                {"ErrorCode": "error", "ErrorMessage": "test error", "id": "request123", "status": "fail"},
                {"firehose_record_id": "xyz2", "id": "request456", "status": "success"}]})
        );
        assert_eq!(
            entry(
                None,
                &Outcome::Delivered {
                    record_id: "r".into()
                }
            ),
            json!({"firehose_record_id": "r", "status": "success"})
        );
    }

    #[test]
    fn version_one_statuses_match_the_reference_example() {
        assert_eq!(
            json(&single_status(
                Some("request123"),
                &Outcome::Delivered {
                    record_id: "1lxfuuu".into()
                }
            )),
            json!({"response": {"firehose_record_id": "1lxfuuu", "status": "success"}, "id": "request123"})
        );
        assert_eq!(
            json(&refusal(1, Some("r"), "ResourceNotFoundException", "gone")),
            json!({"response": {"error": "ResourceNotFoundException", "error_message": "gone", "status": "fail"}, "id": "r"})
        );
        assert_eq!(
            json(&refusal(5, None, "QueueFullException", "full")),
            json!({"response": [{"ErrorCode": "QueueFullException", "ErrorMessage": "full", "status": "fail"}]})
        );
    }
}
