//! The IoT SiteWise sink: each message is one `PutAssetPropertyValueEntry`
//! (JSON, as the SDK's `Util.validate_and_serialize_to_json_bytes` writes
//! it), sent with `BatchPutAssetPropertyValue` (REST-JSON `POST
//! /properties`, signing name `iotsitewise`). Messages that are not a valid
//! entry are passed with their reason; `errorEntries` are resent when
//! retryable, else passed with their reason.

use std::collections::{HashMap, HashSet};

use evergreen_aws::{AwsClient, Method};
use serde_json::{json, Value};

use super::driver::{retryable_code, Batch, SendError};
use crate::model::{IoTSiteWiseConfig, PutAssetPropertyValueEntry};

/// SiteWise takes at most 10 entries a call, with unique entry ids.
const CALL_MAX: usize = 10;

fn no_control(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

/// The entry a message carries, or why it is not one SiteWise can take
/// (the SDK's bounds and SiteWise's own rules).
pub(crate) fn parse_entry(payload: &[u8]) -> Result<PutAssetPropertyValueEntry, String> {
    let e: PutAssetPropertyValueEntry = serde_json::from_slice(payload)
        .map_err(|err| format!("not a PutAssetPropertyValueEntry (JSON): {err}"))?;
    let id_ok = (1..=64).contains(&e.entry_id.len())
        && e.entry_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !id_ok {
        return Err(format!(
            "entryId {:?} must be 1 to 64 of [a-zA-Z0-9_-]",
            e.entry_id
        ));
    }
    match (&e.property_alias, &e.asset_id, &e.property_id) {
        (Some(alias), _, _) => {
            if alias.is_empty() || alias.chars().count() > 2048 || !no_control(alias) {
                return Err(
                    "propertyAlias must be 1 to 2048 characters without control characters".into(),
                );
            }
        }
        (None, Some(_), Some(_)) => {}
        _ => return Err("an entry needs propertyAlias, or assetId and propertyId".into()),
    }
    if e.property_values.is_empty() || e.property_values.len() > 10 {
        return Err(format!(
            "propertyValues has {} values: 1 to 10 are allowed",
            e.property_values.len()
        ));
    }
    for v in &e.property_values {
        let x = &v.value;
        let set = [
            x.string_value.is_some(),
            x.integer_value.is_some(),
            x.double_value.is_some(),
            x.boolean_value.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            return Err(format!("a value must have exactly one of stringValue, integerValue, doubleValue, booleanValue ({set} set)"));
        }
        if let Some(s) = &x.string_value {
            if s.is_empty() || s.chars().count() > 1024 || !no_control(s) {
                return Err(
                    "stringValue must be 1 to 1024 characters without control characters".into(),
                );
            }
        }
        if let Some(i) = x.integer_value {
            if i32::try_from(i).is_err() {
                return Err(format!("integerValue {i} is not a 32-bit integer"));
            }
        }
        if x.double_value.is_some_and(|d| !d.is_finite()) {
            return Err("doubleValue must be finite".into());
        }
        let t = &v.timestamp;
        if !(1..=31_556_889_864_403_199).contains(&t.time_in_seconds) {
            return Err(format!(
                "timeInSeconds {} is out of range",
                t.time_in_seconds
            ));
        }
        if t.offset_in_nanos
            .is_some_and(|n| !(0..=999_999_999).contains(&n))
        {
            return Err("offsetInNanos must be 0 to 999999999".into());
        }
        if let Some(q) = &v.quality {
            if !matches!(q.as_str(), "GOOD" | "BAD" | "UNCERTAIN") {
                return Err(format!("quality {q:?} is not GOOD, BAD or UNCERTAIN"));
            }
        }
    }
    Ok(e)
}

pub(crate) async fn send(
    aws: &AwsClient,
    _config: &IoTSiteWiseConfig,
    batch: &mut Batch,
) -> Result<(), SendError> {
    let mut entries: HashMap<usize, PutAssetPropertyValueEntry> = HashMap::new();
    for i in batch.pending() {
        match parse_entry(&batch.messages[i].payload) {
            Ok(e) => {
                entries.insert(i, e);
            }
            Err(why) => batch.skip(i, why),
        }
    }
    loop {
        // The longest run of pending entries with distinct entry ids.
        let mut call = Vec::new();
        let mut ids = HashSet::new();
        for i in batch.pending() {
            let Some(e) = entries.get(&i) else { continue };
            if call.len() == CALL_MAX || !ids.insert(e.entry_id.clone()) {
                break;
            }
            call.push(i);
        }
        if call.is_empty() {
            return Ok(());
        }
        let body: Vec<Value> = call
            .iter()
            .filter_map(|i| serde_json::to_value(entries.get(i)?).ok())
            .collect();
        let answer = aws
            .rest_json(
                "iotsitewise",
                Method::POST,
                "/properties",
                Some(&json!({ "entries": body })),
            )
            .await?;
        let by_id: HashMap<&str, usize> = call
            .iter()
            .filter_map(|i| Some((entries.get(i)?.entry_id.as_str(), *i)))
            .collect();
        let mut retry: Option<String> = None;
        let mut failed = Vec::new();
        let mut skips = Vec::new();
        for e in answer["errorEntries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let Some(i) = e["entryId"].as_str().and_then(|id| by_id.get(id)).copied() else {
                continue;
            };
            failed.push(i);
            let errors = e["errors"].as_array().cloned().unwrap_or_default();
            let text: Vec<String> = errors
                .iter()
                .map(|x| {
                    format!(
                        "{}: {}",
                        x["errorCode"].as_str().unwrap_or("UnknownError"),
                        x["errorMessage"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            // One retryable error resends the whole entry (SiteWise keeps
            // one value per timestamp, so the accepted ones are not doubled).
            if errors
                .iter()
                .any(|x| retryable_code(x["errorCode"].as_str().unwrap_or_default()))
            {
                retry.get_or_insert(format!(
                    "BatchPutAssetPropertyValue: message {} failed: {}",
                    batch.messages[i].sequence_number,
                    text.join("; ")
                ));
            } else {
                skips.push((i, format!("IoT SiteWise rejected it: {}", text.join("; "))));
            }
        }
        for (i, why) in skips {
            batch.skip(i, why);
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
    fn entries_as_the_sdk_writes_them_parse_and_bad_ones_say_why() {
        let good = br#"{"entryId":"e1","propertyAlias":"/plant/temp","propertyValues":[{"value":{"doubleValue":21.5},"timestamp":{"timeInSeconds":1700000000,"offsetInNanos":5},"quality":"GOOD"}]}"#;
        let e = parse_entry(good).expect("should succeed");
        assert_eq!(e.entry_id, "e1");
        let back = serde_json::to_value(&e).expect("should succeed");
        assert_eq!(back["propertyValues"][0]["value"]["doubleValue"], 21.5);
        assert!(back.get("assetId").is_none());

        for (bad, why) in [
            (&b"not json"[..], "JSON"),
            (br#"{"entryId":"e 1","propertyAlias":"a","propertyValues":[{"value":{"booleanValue":true},"timestamp":{"timeInSeconds":1}}]}"#, "entryId"),
            (br#"{"entryId":"e1","propertyValues":[{"value":{"booleanValue":true},"timestamp":{"timeInSeconds":1}}]}"#, "propertyAlias"),
            (br#"{"entryId":"e1","propertyAlias":"a","propertyValues":[]}"#, "propertyValues"),
            (br#"{"entryId":"e1","propertyAlias":"a","propertyValues":[{"value":{},"timestamp":{"timeInSeconds":1}}]}"#, "exactly one"),
            (br#"{"entryId":"e1","propertyAlias":"a","propertyValues":[{"value":{"integerValue":1},"timestamp":{"timeInSeconds":0}}]}"#, "timeInSeconds"),
            (br#"{"entryId":"e1","propertyAlias":"a","propertyValues":[{"value":{"integerValue":1},"timestamp":{"timeInSeconds":1},"quality":"OK"}]}"#, "quality"),
        ] {
            let err = parse_entry(bad).expect_err("should fail");
            assert!(err.contains(why), "{err} should mention {why}");
        }
    }
}
