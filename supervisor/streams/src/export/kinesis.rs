//! The Kinesis Data Streams sink: `PutRecords` (awsJson1.1, signing name
//! `kinesis`), the payload as the record's data and the sequence number as
//! its partition key; failed records of a partly failed call are resent,
//! alone and in order.

use base64::Engine;
use evergreen_aws::AwsClient;
use serde_json::{json, Value};

use super::driver::{retryable_code, Batch, SendError};
use crate::model::KinesisConfig;

/// Kinesis' limits: a record's data and partition key together, and a call.
const RECORD_MAX: usize = 1 << 20;
const CALL_MAX_BYTES: usize = 5 << 20;
const CALL_MAX_RECORDS: usize = 500;

/// The partition key of a message: its sequence number in decimal.
pub(crate) fn partition_key(sequence_number: i64) -> String {
    sequence_number.to_string()
}

pub(crate) async fn send(
    aws: &AwsClient,
    config: &KinesisConfig,
    batch: &mut Batch,
) -> Result<(), SendError> {
    for i in batch.pending() {
        let m = &batch.messages[i];
        let size = m.payload.len() + partition_key(m.sequence_number).len();
        if size > RECORD_MAX {
            batch.skip(
                i,
                format!(
                    "{size} bytes with its partition key: Kinesis takes at most 1 MiB a record"
                ),
            );
        }
    }
    let engine = base64::engine::general_purpose::STANDARD;
    loop {
        let mut call = Vec::new();
        let mut bytes = 0;
        for i in batch.pending() {
            let m = &batch.messages[i];
            let size = m.payload.len() + partition_key(m.sequence_number).len();
            if call.len() == CALL_MAX_RECORDS || (!call.is_empty() && bytes + size > CALL_MAX_BYTES)
            {
                break;
            }
            bytes += size;
            call.push(i);
        }
        if call.is_empty() {
            return Ok(());
        }
        let records: Vec<Value> = call
            .iter()
            .map(|i| {
                let m = &batch.messages[*i];
                json!({
                    "Data": engine.encode(&m.payload),
                    "PartitionKey": partition_key(m.sequence_number),
                })
            })
            .collect();
        let answer = aws
            .json(
                "kinesis",
                "Kinesis_20131202.PutRecords",
                &json!({ "StreamName": config.kinesis_stream_name, "Records": records }),
            )
            .await?;
        let results = answer["Records"].as_array().cloned().unwrap_or_default();
        if results.len() != call.len() {
            return Err(SendError {
                retryable: true,
                message: format!(
                    "PutRecords answered {} results for {} records",
                    results.len(),
                    call.len()
                ),
            });
        }
        let mut failure: Option<(String, String)> = None;
        for (i, r) in call.iter().zip(&results) {
            match r.get("ErrorCode").and_then(Value::as_str) {
                None => batch.deliver(*i),
                Some(code) => {
                    if failure.is_none() {
                        let message = r["ErrorMessage"].as_str().unwrap_or_default();
                        failure = Some((code.to_string(), message.to_string()));
                    }
                }
            }
        }
        if let Some((code, message)) = failure {
            let failed = batch.pending().len();
            return Err(SendError {
                retryable: retryable_code(&code),
                message: format!(
                    "PutRecords: {failed} records failed, first with {code}: {message}"
                ),
            });
        }
    }
}
