//! The Firehose API as this connector uses it (awsJson1.1, target prefix
//! `Firehose_20150804`): the bodies of `PutRecordBatch` and `PutRecord`,
//! and what their answers mean for each record. Pure: the call itself is
//! `evergreen_aws::AwsClient::json` in the crate root.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::queue::Batch;
use crate::status::Outcome;

pub const PUT_RECORD_BATCH: &str = "Firehose_20150804.PutRecordBatch";
pub const PUT_RECORD: &str = "Firehose_20150804.PutRecord";
/// The signing name, and the key of `ComponentConfig::endpoints`.
pub const SERVICE: &str = "firehose";

/// Per-record error codes of a `PutRecordBatch` answer that mean "try this
/// record again": Firehose names these two as transient.
pub const RETRYABLE_RECORD_CODES: &[&str] = &["ServiceUnavailableException", "InternalFailure"];

/// What became of one record of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordResult {
    Done(Outcome),
    /// A transient failure: queue it again.
    Retry,
}

/// Why a whole call failed, as far as the records care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    pub retryable: bool,
    pub code: String,
    pub message: String,
}

fn data(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `{"DeliveryStreamName": …, "Records": [{"Data": <base64>}, …]}`.
pub fn put_record_batch_body(batch: &Batch) -> Value {
    let records: Vec<Value> = batch
        .records
        .iter()
        .map(|r| json!({ "Data": data(&r.data) }))
        .collect();
    json!({ "DeliveryStreamName": batch.stream.name, "Records": records })
}

/// `{"DeliveryStreamName": …, "Record": {"Data": <base64>}}` (version 1).
pub fn put_record_body(batch: &Batch) -> Value {
    let first = batch
        .records
        .first()
        .map(|r| data(&r.data))
        .unwrap_or_default();
    json!({ "DeliveryStreamName": batch.stream.name, "Record": { "Data": first } })
}

/// What each of `n` records became, from a `PutRecordBatch` answer
/// (`{"FailedPutCount": …, "RequestResponses": [{"RecordId": …} |
/// {"ErrorCode": …, "ErrorMessage": …}, …]}`), or from the call's failure.
///
/// An answer that does not hold one entry per record cannot say which
/// records arrived: they fail with `InvalidResponse` rather than being sent
/// again (which could store them twice).
pub fn batch_results(n: usize, answer: Result<&Value, &CallFailure>) -> Vec<RecordResult> {
    let failure = match answer {
        Err(f) if f.retryable => return vec![RecordResult::Retry; n],
        Err(f) => return vec![failed(&f.code, &f.message); n],
        Ok(answer) => answer,
    };
    let entries = failure
        .get("RequestResponses")
        .and_then(Value::as_array)
        .filter(|a| a.len() == n);
    let Some(entries) = entries else {
        return vec![
            failed(
                "InvalidResponse",
                &format!("the PutRecordBatch answer does not hold {n} RequestResponses: the records may or may not have been delivered"),
            );
            n
        ];
    };
    entries.iter().map(entry_result).collect()
}

fn entry_result(entry: &Value) -> RecordResult {
    let text = |k: &str| entry.get(k).and_then(Value::as_str);
    match (text("RecordId"), text("ErrorCode")) {
        (_, Some(code)) if !code.is_empty() => {
            if RETRYABLE_RECORD_CODES.contains(&code) {
                RecordResult::Retry
            } else {
                failed(code, text("ErrorMessage").unwrap_or_default())
            }
        }
        (Some(id), _) => RecordResult::Done(Outcome::Delivered {
            record_id: id.to_string(),
        }),
        _ => failed(
            "InvalidResponse",
            "the answer's entry for this record has neither RecordId nor ErrorCode",
        ),
    }
}

/// The result of a version 1 `PutRecord` (`{"RecordId": …}`).
pub fn single_result(answer: Result<&Value, &CallFailure>) -> RecordResult {
    match answer {
        Err(f) if f.retryable => RecordResult::Retry,
        Err(f) => failed(&f.code, &f.message),
        Ok(v) => match v.get("RecordId").and_then(Value::as_str) {
            Some(id) => RecordResult::Done(Outcome::Delivered {
                record_id: id.to_string(),
            }),
            None => failed("InvalidResponse", "the PutRecord answer has no RecordId"),
        },
    }
}

fn failed(code: &str, message: &str) -> RecordResult {
    RecordResult::Done(Outcome::Failed {
        code: code.to_string(),
        message: message.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Record, StreamArn};

    fn batch(n: usize) -> Batch {
        Batch {
            stream: StreamArn::parse("arn:aws:firehose:us-east-1:123456789012:deliverystream/s1")
                .expect("arn"),
            records: (0..n)
                .map(|i| Record {
                    id: Some(i.to_string()),
                    data: vec![b'a' + i as u8],
                })
                .collect(),
        }
    }

    #[test]
    fn bodies_carry_base64_data_and_the_stream_name() {
        assert_eq!(
            put_record_batch_body(&batch(2)),
            json!({"DeliveryStreamName": "s1", "Records": [{"Data": "YQ=="}, {"Data": "Yg=="}]})
        );
        assert_eq!(
            put_record_body(&batch(1)),
            json!({"DeliveryStreamName": "s1", "Record": {"Data": "YQ=="}})
        );
    }

    #[test]
    fn per_record_answers_split_into_done_retry_and_failed() {
        let answer = json!({"FailedPutCount": 2, "Encrypted": false, "RequestResponses": [
            {"RecordId": "r0"},
            {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"},
            {"ErrorCode": "InvalidArgumentException", "ErrorMessage": "bad"},
        ]});
        let got = batch_results(3, Ok(&answer));
        assert_eq!(
            got,
            vec![
                RecordResult::Done(Outcome::Delivered {
                    record_id: "r0".into()
                }),
                RecordResult::Retry,
                RecordResult::Done(Outcome::Failed {
                    code: "InvalidArgumentException".into(),
                    message: "bad".into()
                }),
            ]
        );
        // A short answer cannot be matched to the records.
        let short = batch_results(4, Ok(&answer));
        assert!(short.iter().all(|r| matches!(r, RecordResult::Done(Outcome::Failed { code, .. }) if code == "InvalidResponse")));
    }

    #[test]
    fn call_failures_retry_or_fail_every_record() {
        let transient = CallFailure {
            retryable: true,
            code: "ConnectionError".into(),
            message: "refused".into(),
        };
        assert_eq!(
            batch_results(2, Err(&transient)),
            vec![RecordResult::Retry; 2]
        );
        let gone = CallFailure {
            retryable: false,
            code: "ResourceNotFoundException".into(),
            message: "Firehose s1 not found".into(),
        };
        assert_eq!(
            batch_results(1, Err(&gone)),
            vec![RecordResult::Done(Outcome::Failed {
                code: "ResourceNotFoundException".into(),
                message: "Firehose s1 not found".into()
            })]
        );
        assert_eq!(single_result(Err(&transient)), RecordResult::Retry);
        assert_eq!(
            single_result(Ok(&json!({"RecordId": "x", "Encrypted": false}))),
            RecordResult::Done(Outcome::Delivered {
                record_id: "x".into()
            })
        );
    }
}
