//! The IoT Analytics sink: `BatchPutMessage` (REST-JSON `POST
//! /messages/batch`, signing name `iotanalytics`), message ids made of
//! `iotMsgIdPrefix` and the sequence number; the answer's
//! `batchPutMessageErrorEntries` are resent when retryable, else passed
//! with their reason.

use std::collections::HashMap;

use base64::Engine;
use evergreen_aws::{AwsClient, Method};
use serde_json::{json, Value};

use super::driver::{retryable_code, Batch, SendError};
use crate::model::IoTAnalyticsConfig;

/// IoT Analytics takes at most 128 KiB a message and 100 a call.
const MESSAGE_MAX: usize = 128 << 10;
const CALL_MAX: usize = 100;

/// A message's `messageId`: the configured prefix (≤ 32 characters) and the
/// sequence number in decimal, unique within a batch and the same when the
/// message is resent.
pub fn message_id(prefix: Option<&str>, sequence_number: i64) -> String {
    format!("{}{sequence_number}", prefix.unwrap_or_default())
}

pub(crate) async fn send(
    aws: &AwsClient,
    config: &IoTAnalyticsConfig,
    batch: &mut Batch,
) -> Result<(), SendError> {
    for i in batch.pending() {
        let size = batch.messages[i].payload.len();
        if size > MESSAGE_MAX {
            batch.skip(
                i,
                format!("{size} bytes: IoT Analytics takes at most 128 KiB a message"),
            );
        }
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let prefix = config.iot_msg_id_prefix.as_deref();
    // Retryable entries stay pending: the driver resends them after its
    // backoff, before anything newer.
    loop {
        let call: Vec<usize> = batch.pending().into_iter().take(CALL_MAX).collect();
        if call.is_empty() {
            return Ok(());
        }
        let mut by_id = HashMap::new();
        let messages: Vec<Value> = call
            .iter()
            .map(|i| {
                let m = &batch.messages[*i];
                let id = message_id(prefix, m.sequence_number);
                by_id.insert(id.clone(), *i);
                json!({ "messageId": id, "payload": engine.encode(&m.payload) })
            })
            .collect();
        let answer = aws
            .rest_json(
                "iotanalytics",
                Method::POST,
                "/messages/batch",
                Some(&json!({ "channelName": config.iot_channel, "messages": messages })),
            )
            .await?;
        let mut retry: Option<String> = None;
        let mut failed: Vec<usize> = Vec::new();
        for e in answer["batchPutMessageErrorEntries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let Some(i) = e["messageId"]
                .as_str()
                .and_then(|id| by_id.get(id))
                .copied()
            else {
                continue;
            };
            let code = e["errorCode"]
                .as_str()
                .unwrap_or("UnknownError")
                .to_string();
            let text = e["errorMessage"].as_str().unwrap_or_default().to_string();
            failed.push(i);
            if retryable_code(&code) {
                retry.get_or_insert(format!(
                    "BatchPutMessage: message {} failed with {code}: {text}",
                    batch.messages[i].sequence_number
                ));
            } else {
                batch.skip(i, format!("IoT Analytics rejected it: {code}: {text}"));
            }
        }
        for i in call {
            if !failed.contains(&i) {
                batch.deliver(i);
            }
        }
        if let Some(message) = retry {
            return Err(SendError {
                retryable: true,
                message,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_the_prefix_and_the_sequence_number() {
        assert_eq!(message_id(Some("dev1-"), 42), "dev1-42");
        assert_eq!(message_id(None, 0), "0");
        let ids: std::collections::HashSet<_> =
            (0..100).map(|n| message_id(Some("p"), n)).collect();
        assert_eq!(ids.len(), 100);
    }
}
