//! The stream manager's data model as the `greengrasssdk` 1.6.1 client
//! puts it on the wire: CBOR maps with the SDK's camelCase keys (absent
//! when `None`), enums as their integer values, payloads as byte strings.
//!
//! Names and bounds are the SDK's (`greengrasssdk/stream_manager/data`);
//! [`MessageStreamDefinition::validate`] re-checks on the server what the
//! client checks before sending, because not every client is that one.
//! One key is spelled as the SDK spells it, not as its siblings:
//! `ExportDefinition`'s SiteWise list is `IotSitewise`.

use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};

/// The protocol version this server speaks (the SDK's `VersionInfo`).
pub const PROTOCOL_VERSION: &str = "1.1.0";
/// Older protocol versions the SDK offers and this server also accepts:
/// 1.0.0 lacks only fields a 1.1.0 server treats as optional.
pub const OLD_PROTOCOL_VERSIONS: &[&str] = &["1.0.0"];

/// A frame's operation byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Unknown = 0,
    Connect = 1,
    CreateMessageStream = 2,
    DeleteMessageStream = 3,
    AppendMessage = 4,
    ReadMessages = 5,
    ConnectResponse = 6,
    CreateMessageStreamResponse = 7,
    DeleteMessageStreamResponse = 8,
    AppendMessageResponse = 9,
    ReadMessagesResponse = 10,
    ListStreams = 11,
    ListStreamsResponse = 12,
    DescribeMessageStream = 13,
    DescribeMessageStreamResponse = 14,
    UpdateMessageStream = 15,
    UpdateMessageStreamResponse = 16,
    UnknownOperationError = 17,
}

impl Operation {
    pub fn from_byte(b: u8) -> Operation {
        use Operation::*;
        match b {
            1 => Connect,
            2 => CreateMessageStream,
            3 => DeleteMessageStream,
            4 => AppendMessage,
            5 => ReadMessages,
            6 => ConnectResponse,
            7 => CreateMessageStreamResponse,
            8 => DeleteMessageStreamResponse,
            9 => AppendMessageResponse,
            10 => ReadMessagesResponse,
            11 => ListStreams,
            12 => ListStreamsResponse,
            13 => DescribeMessageStream,
            14 => DescribeMessageStreamResponse,
            15 => UpdateMessageStream,
            16 => UpdateMessageStreamResponse,
            17 => UnknownOperationError,
            _ => Unknown,
        }
    }
}

/// The status of every response (the SDK raises one exception type per
/// code, see `UtilInternal.raise_on_error_response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum ResponseStatusCode {
    Success = 0,
    UnknownFailure = 1,
    Unauthorized = 2,
    InvalidRequest = 3,
    RequestPayloadTooLarge = 4,
    ResourceNotFound = 5,
    ServerTimeout = 6,
    ResponsePayloadTooLarge = 7,
    UnsupportedConnectVersion = 8,
    UnexpectedOperation = 9,
    UnsupportedProtocolVersion = 10,
    InvalidProtocolVersion = 11,
    FailedToConnect = 12,
    NotEnoughMessages = 13,
    MessageStoreReadError = 14,
    OutOfMemoryError = 15,
    UpdateFailed = 16,
    UpdateNotAllowed = 17,
    UnknownOperation = 18,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum StrategyOnFull {
    #[default]
    RejectNewData = 0,
    OverwriteOldestData = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum Persistence {
    #[default]
    File = 0,
    Memory = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum ExportFormat {
    RawNotBatched = 0,
    JsonBatched = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum StatusLevel {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum Status {
    Success = 0,
    Failure = 1,
    InProgress = 2,
    Warning = 3,
    Canceled = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum EventType {
    S3Task = 0,
}

/// The first frame a client sends.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectRequest {
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub protocol_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_supported_protocol_versions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub status: ResponseStatusCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_protocol_versions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_identifier: Option<String>,
}

/// Every stream-level response: the request it answers, its status and,
/// on failure, why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub request_id: String,
    pub status: ResponseStatusCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisConfig {
    pub identifier: String,
    pub kinesis_stream_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_interval_millis: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_sequence_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IoTAnalyticsConfig {
    pub identifier: String,
    pub iot_channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_msg_id_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_interval_millis: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_sequence_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IoTSiteWiseConfig {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_interval_millis: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_sequence_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpConfig {
    pub identifier: String,
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_interval_millis: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_sequence_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_format: Option<ExportFormat>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_level: Option<StatusLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_stream_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3ExportTaskExecutorConfig {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_threshold_for_multipart_upload_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_config: Option<StatusConfig>,
}

/// Where a stream's messages go. Lists the SDK omits when empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportDefinition {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iot_analytics: Vec<IoTAnalyticsConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinesis: Vec<KinesisConfig>,
    /// The SDK's own spelling (`d["IotSitewise"]`).
    #[serde(default, rename = "IotSitewise", skip_serializing_if = "Vec::is_empty")]
    pub iot_sitewise: Vec<IoTSiteWiseConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub s3_task_executor: Vec<S3ExportTaskExecutorConfig>,
}

/// A stream as created or updated by a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStreamDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_segment_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_live_millis: Option<i64>,
    #[serde(default)]
    pub strategy_on_full: StrategyOnFull,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_on_write: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_definition: Option<ExportDefinition>,
}

/// The SDK's defaults for what a definition leaves out (its docstrings:
/// 256 MiB, 16 MiB segments, no TTL, File persistence, no flush).
pub const DEFAULT_MAX_SIZE: i64 = 256 << 20;
pub const DEFAULT_SEGMENT_SIZE: i64 = 16 << 20;

impl MessageStreamDefinition {
    pub fn max_size(&self) -> u64 {
        self.max_size.unwrap_or(DEFAULT_MAX_SIZE).max(0) as u64
    }
    pub fn segment_size(&self) -> u64 {
        self.stream_segment_size
            .unwrap_or(DEFAULT_SEGMENT_SIZE)
            .max(0) as u64
    }
    pub fn persistence(&self) -> Persistence {
        self.persistence.unwrap_or_default()
    }
    pub fn flush_on_write(&self) -> bool {
        self.flush_on_write.unwrap_or(false)
    }
    pub fn exports(&self) -> ExportDefinition {
        self.export_definition.clone().unwrap_or_default()
    }

    /// The SDK's validations (`_validations_map`), as the server's
    /// `InvalidRequest` message.
    pub fn validate(&self) -> Result<(), String> {
        check_name("name", &self.name)?;
        check_range("maxSize", self.max_size, 1024, i64::MAX)?;
        check_range(
            "streamSegmentSize",
            self.stream_segment_size,
            1024,
            i32::MAX as i64,
        )?;
        check_range(
            "timeToLiveMillis",
            self.time_to_live_millis,
            60_000,
            9_223_372_036_854,
        )?;
        let e = self.exports();
        let mut ids = std::collections::BTreeSet::new();
        let mut batch = |id: &str,
                         size: Option<i64>,
                         max: i64,
                         interval: Option<i64>,
                         prio: Option<i64>,
                         start: Option<i64>|
         -> Result<(), String> {
            check_name("identifier", id)?;
            if !ids.insert(id.to_string()) {
                return Err(format!("export identifier {id:?} is used twice"));
            }
            check_range("batchSize", size, 1, max)?;
            check_range("batchIntervalMillis", interval, 60_000, 9_223_372_036_854)?;
            check_range("priority", prio, 1, 10)?;
            check_range("startSequenceNumber", start, 0, i64::MAX)
        };
        for k in &e.kinesis {
            batch(
                &k.identifier,
                k.batch_size,
                500,
                k.batch_interval_millis,
                k.priority,
                k.start_sequence_number,
            )?;
            if k.kinesis_stream_name.is_empty() {
                return Err("kinesisStreamName must not be empty".into());
            }
        }
        for a in &e.iot_analytics {
            batch(
                &a.identifier,
                a.batch_size,
                100,
                a.batch_interval_millis,
                a.priority,
                a.start_sequence_number,
            )?;
            if a.iot_channel.is_empty() {
                return Err("iotChannel must not be empty".into());
            }
            if a.iot_msg_id_prefix.as_deref().is_some_and(|p| p.len() > 32) {
                return Err("iotMsgIdPrefix must be at most 32 characters".into());
            }
        }
        for s in &e.iot_sitewise {
            batch(
                &s.identifier,
                s.batch_size,
                10,
                s.batch_interval_millis,
                s.priority,
                s.start_sequence_number,
            )?;
        }
        for h in &e.http {
            batch(
                &h.identifier,
                h.batch_size,
                500,
                h.batch_interval_millis,
                h.priority,
                h.start_sequence_number,
            )?;
        }
        for t in &e.s3_task_executor {
            batch(&t.identifier, None, 1, None, t.priority, None)?;
            check_range(
                "sizeThresholdForMultipartUploadBytes",
                t.size_threshold_for_multipart_upload_bytes,
                5 << 20,
                i64::MAX,
            )?;
            if let Some(name) = t
                .status_config
                .as_ref()
                .and_then(|c| c.status_stream_name.as_deref())
            {
                check_name("statusStreamName", name)?;
            }
        }
        Ok(())
    }
}

/// Stream and identifier names: 1 to 255 of `[\w ,.\-_]` (the SDK's pattern).
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 255 {
        return Err(format!("{what} must be 1 to 255 characters long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | ' ' | ',' | '.' | '-')))
    {
        return Err(format!("{what} {name:?} has {c:?}: only letters, digits, space, ',', '.', '-' and '_' are allowed"));
    }
    Ok(())
}

fn check_range(what: &str, value: Option<i64>, min: i64, max: i64) -> Result<(), String> {
    match value {
        Some(v) if v < min => Err(format!("{what} must be at least {min}, not {v}")),
        Some(v) if v > max => Err(format!("{what} must be at most {max}, not {v}")),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionRequest {
    pub request_id: String,
    pub definition: MessageStreamDefinition,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameRequest {
    pub request_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppendMessageRequest {
    pub request_id: String,
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppendMessageResponse {
    pub request_id: String,
    pub status: ResponseStatusCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadMessagesOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_start_sequence_number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_message_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout_millis: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadMessagesRequest {
    pub request_id: String,
    pub stream_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_messages_options: Option<ReadMessagesOptions>,
}

/// One message of a stream, as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub stream_name: String,
    pub sequence_number: i64,
    /// Milliseconds since the Unix epoch when the server accepted it.
    pub ingest_time: i64,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadMessagesResponse {
    pub request_id: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    pub status: ResponseStatusCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListStreamsRequest {
    pub request_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListStreamsResponse {
    pub request_id: String,
    pub status: ResponseStatusCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default)]
    pub streams: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatus {
    pub oldest_sequence_number: i64,
    pub newest_sequence_number: i64,
    pub total_bytes: i64,
}

/// One export's progress, as `describe_message_stream` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportStatus {
    pub export_config_identifier: String,
    pub last_exported_sequence_number: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_export_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default)]
    pub exported_bytes_from_stream: i64,
    #[serde(default)]
    pub exported_messages_count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStreamInfo {
    pub definition: MessageStreamDefinition,
    pub storage_status: StorageStatus,
    #[serde(default)]
    pub export_statuses: Vec<ExportStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeMessageStreamResponse {
    pub request_id: String,
    pub status: ResponseStatusCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_stream_info: Option<MessageStreamInfo>,
}

/// What a function appends to an S3 export task executor's stream (JSON,
/// as the SDK's `Util.validate_and_serialize_to_json_bytes` writes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3ExportTaskDefinition {
    pub input_url: String,
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_export_task_definition: Option<S3ExportTaskDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<i64>,
}

/// An S3 task's progress, appended (as JSON) to the executor's status stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusMessage {
    pub event_type: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_level: Option<StatusLevel>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_context: Option<StatusContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_epoch_ms: Option<i64>,
}

/// A SiteWise entry as functions append it (JSON) to a stream exported to
/// IoT SiteWise; the export sends it as `BatchPutAssetPropertyValue`'s entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutAssetPropertyValueEntry {
    pub entry_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_alias: Option<String>,
    pub property_values: Vec<AssetPropertyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetPropertyValue {
    pub value: Variant,
    pub timestamp: TimeInNanos,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integer_value: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub double_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boolean_value: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeInNanos {
    pub time_in_seconds: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_in_nanos: Option<i64>,
}
