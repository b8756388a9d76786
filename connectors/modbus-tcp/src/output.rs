//! What the connector publishes: readings in the SiteWise message structure
//! on a topic per destination stream, and the configuration status.
//!
//! Builds payloads only; publishing is the caller's.

use serde_json::json;

use crate::config::ConfigError;
use crate::decode::Value;

/// Readings of destination stream `<streamName>` are published on
/// `modbus/tcp/stream/<streamName>` (stream names are one valid topic level).
pub const STREAM_TOPIC_PREFIX: &str = "modbus/tcp/stream/";
/// The output filter for readings.
pub const STREAM_FILTER: &str = "modbus/tcp/stream/+";
/// The configuration status, published once at start.
pub const STATUS_TOPIC: &str = "modbus/tcp/status";

/// The topic for a destination stream.
pub fn stream_topic(stream_name: &str) -> String {
    format!("{STREAM_TOPIC_PREFIX}{stream_name}")
}

/// SiteWise's qualities; `UNCERTAIN` is never produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    Good,
    Bad,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "GOOD",
            Quality::Bad => "BAD",
        }
    }
}

/// One tag's reading at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// `measurementDataStreamPrefix` + tag.
    pub alias: String,
    /// The tag.
    pub name: String,
    /// `None` exactly when the quality is `BAD`.
    pub value: Option<Value>,
    pub quality: Quality,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl Reading {
    /// `{"alias":…,"messages":[{"name":…,"value":…,"timestamp":…,"quality":…}]}`;
    /// a `BAD` reading's value is `null`.
    pub fn to_payload(&self) -> Vec<u8> {
        json!({
            "alias": self.alias,
            "messages": [{
                "name": self.name,
                "value": self.value.as_ref().map_or(serde_json::Value::Null, Value::to_json),
                "timestamp": self.timestamp_ms,
                "quality": self.quality.as_str(),
            }]
        })
        .to_string()
        .into_bytes()
    }
}

/// The status document for a configuration that was accepted.
pub fn status_ok(sources: &[(String, String, String)]) -> Vec<u8> {
    json!({
        "status": "success",
        "sources": sources
            .iter()
            .map(|(name, endpoint, topic)| json!({"name": name, "endpoint": endpoint, "topic": topic}))
            .collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

/// The status document for an accepted configuration whose readings go
/// into stream manager streams: `{"name","endpoint","stream"}` per source.
pub fn status_ok_streams(sources: &[(String, String, String)]) -> Vec<u8> {
    json!({
        "status": "success",
        "output": "StreamManager",
        "sources": sources
            .iter()
            .map(|(name, endpoint, stream)| json!({"name": name, "endpoint": endpoint, "stream": stream}))
            .collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

/// The status document for a configuration that was refused.
pub fn status_invalid(errors: &[ConfigError]) -> Vec<u8> {
    json!({
        "status": "fail",
        "error": "InvalidConfiguration",
        "error_message": errors.first().map(ToString::to_string).unwrap_or_default(),
        "errors": errors
            .iter()
            .map(|e| json!({"path": e.path, "message": e.message}))
            .collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_have_the_documented_shape() {
        let r = Reading {
            alias: "P_TT-001".into(),
            name: "TT-001".into(),
            value: Some(Value::Double(1.5)),
            quality: Quality::Good,
            timestamp_ms: 1_700_000_000_123,
        };
        let v: serde_json::Value = evergreen_connector_kit::testing::json(&r.to_payload());
        assert_eq!(
            v,
            json!({"alias":"P_TT-001","messages":[{"name":"TT-001","value":1.5,"timestamp":1_700_000_000_123u64,"quality":"GOOD"}]})
        );
        let bad = Reading {
            value: None,
            quality: Quality::Bad,
            ..r
        };
        let v: serde_json::Value = evergreen_connector_kit::testing::json(&bad.to_payload());
        assert_eq!(v["messages"][0]["value"], serde_json::Value::Null);
        assert_eq!(v["messages"][0]["quality"], "BAD");
        evergreen_ipc::topic::validate_topic(&stream_topic("SiteWise_Stream 1.a-b,c"))
            .expect("topic");
    }
}
