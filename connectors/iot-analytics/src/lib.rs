//! The `IoTAnalytics` connector (Greengrass versions 1–4): messages for AWS
//! IoT Analytics channels, buffered in per-channel queues and sent with
//! `BatchPutMessage` (REST-JSON `POST /messages/batch`), with one status per
//! input message on `iotanalytics/messages/put/status`.
//!
//! **Input.**
//! * `iotanalytics/channels/<channel>/messages/put`, JSON:
//!   `{"request": {"message": "{\"temp\":23.33}"}, "id": "req123"}`. The
//!   message's text is the payload sent, as it is (a base64 string is sent
//!   as that text, never decoded: the connector does not guess what a
//!   string means). `id` becomes the `messageId` and the status's `id`; an
//!   omitted (or empty) id is generated.
//! * `iotanalytics/channels/<channel>/messages/binary/put`: the raw bytes are
//!   the payload; the id is generated (and still given in the status, so
//!   there is one status per message as the guide says).
//! * Any other topic a subscription routes here: raw bytes for
//!   `IotAnalyticsDefaultChannelName`, generated id. Without that parameter
//!   such a message fails (`InvalidInputException`).
//!
//! **Output.** `{"response": {"status": "success"}, "id": "req123"}` or
//! `{"response": {"status": "fail", "error": …, "error_message": …}, "id": …}`.
//! Bad input fails with `InvalidInputException` and a message naming the
//! field (`request`, `request.message`, `id`, the channel in the topic);
//! an unreadable JSON request gets a status without `id`. Service errors
//! give the service's code (e.g. `ResourceNotFoundException`).
//!
//! **Queues and batches** (choices where the guide is silent, also in the
//! docs/connectors.md):
//! * One queue per channel, at most `IotAnalyticsQueueSizePerChannel`
//!   messages (queued plus in flight). When full, `DROP_NEWEST` refuses the
//!   new message and `DROP_OLDEST` drops the oldest *waiting* one (never one
//!   in flight; if all are in flight the new one is refused); the dropped
//!   message gets a `QueueFullException` status either way.
//! * At most `IotAnalyticsMaxActiveChannels` channels have messages queued
//!   at once; a message for another channel fails with
//!   `TooManyChannelsException`. A queue is deleted once it is empty.
//! * A channel's first message waits `PublishInterval` seconds (0: none)
//!   for company; then the queue is sent in batches of at most
//!   `IotAnalyticsBatchSizePerChannel` (capped at BatchPutMessage's 100),
//!   one batch in flight per channel, until it is empty.
//! * Ids must be unique within a batch: a message whose id is already in
//!   its batch is dropped with an `InvalidInputException` status (the guide:
//!   "duplicate id ⇒ message dropped").
//! * Transient failures (no answer, 5xx, 429, throttling; per message:
//!   `InternalFailureException`, `ServiceUnavailableException`,
//!   `ThrottlingException`) put the messages back at the front of their
//!   queue, in order, and the channel waits with exponential backoff
//!   (0.5 s doubling to 10 s). In-flight messages keep their room in the
//!   queue, so a retry never loses an accepted message.
//! * Messages larger than 128 KB (BatchPutMessage's limit) fail at once.
//! * `PublishRegion` picks the region of the channels (default: the core's).
//! * On shutdown the queues are sent without waiting for the interval
//!   until the supervisor's deadline is near; what is left is lost (the
//!   queues are in memory, as in Greengrass).
//! * `MemorySize` is accepted and not used: the queue bounds are the
//!   memory bound.
//!
//! **Doc inconsistencies.** The guide's `IotAnalyticsDefaultChannelName`
//! pattern `^[a-zA-Z0-9_]$` admits one character only; we take a channel
//! name (`^[a-zA-Z0-9_]+$`, or empty). `PublishRegion`'s `\\d` (a literal
//! backslash) is read as `\d`.

pub mod queue;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use evergreen_aws::{AwsClient, AwsError};
use evergreen_connector_kit::manifest;
use evergreen_connector_kit::status as kit_status;
use evergreen_connector_kit::{Notes, Params};
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Event, SdkError};
use evergreen_ipc::ComponentConfig;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::queue::{Batch, DropBehavior, Item, Outcome, QueueConfig, Queues};

/// The status topic.
pub const STATUS_TOPIC: &str = "iotanalytics/messages/put/status";
/// JSON requests; `+` is the channel name.
pub const PUT_FILTER: &str = "iotanalytics/channels/+/messages/put";
/// Raw bytes; `+` is the channel name.
pub const BINARY_PUT_FILTER: &str = "iotanalytics/channels/+/messages/binary/put";
/// BatchPutMessage's per-message limit.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;
/// BatchPutMessage's per-call limit.
pub const MAX_BATCH: usize = 100;
/// Longest `messageId` IoT Analytics takes.
pub const MAX_ID_LEN: usize = 128;
/// The signing name (and endpoint key).
pub const SERVICE: &str = "iotanalytics";
/// Time kept back from the shutdown deadline for a clean exit.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(300);

const MEMORY_SIZE: &str = "MemorySize";
const PUBLISH_REGION: &str = "PublishRegion";
const PUBLISH_INTERVAL: &str = "PublishInterval";
const MAX_CHANNELS: &str = "IotAnalyticsMaxActiveChannels";
const DROP_BEHAVIOR: &str = "IotAnalyticsQueueDropBehavior";
const QUEUE_SIZE: &str = "IotAnalyticsQueueSizePerChannel";
const BATCH_SIZE: &str = "IotAnalyticsBatchSizePerChannel";
const DEFAULT_CHANNEL: &str = "IotAnalyticsDefaultChannelName";

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "IoTAnalytics",
    versions: &[1, 2, 3, 4],
    description: "Sends messages to AWS IoT Analytics channels with BatchPutMessage, buffered in \
                  per-channel queues; one status per message on iotanalytics/messages/put/status.",
    parameters: &[
        ParameterSpec::new(
            MEMORY_SIZE,
            "Memory (KB) for the connector; the queue bounds limit it.",
        )
        .required()
        .pattern("^[0-9]+$"),
        ParameterSpec::new(
            PUBLISH_REGION,
            "Region of the channels (default: the core's).",
        )
        .pattern(r"^$|([a-z]{2}-[a-z]+-\d{1})"),
        ParameterSpec::new(
            PUBLISH_INTERVAL,
            "Seconds a channel's first message waits before its batch is sent.",
        )
        .pattern("$|^[0-9]+$")
        .default_value("1"),
        ParameterSpec::new(MAX_CHANNELS, "Most channels with queued messages at once.")
            .pattern("^$|^[1-9][0-9]*$")
            .default_value("50"),
        ParameterSpec::new(
            DROP_BEHAVIOR,
            "DROP_NEWEST or DROP_OLDEST, when a channel's queue is full.",
        )
        .pattern("^DROP_NEWEST$|^DROP_OLDEST$")
        .default_value("DROP_NEWEST"),
        ParameterSpec::new(QUEUE_SIZE, "Most messages queued per channel.")
            .pattern("^$|^[1-9][0-9]*$")
            .default_value("2048"),
        ParameterSpec::new(
            BATCH_SIZE,
            "Most messages per BatchPutMessage (at most 100).",
        )
        .pattern("^$|^[1-9][0-9]*$")
        .default_value("5"),
        ParameterSpec::new(
            DEFAULT_CHANNEL,
            "Channel for messages on topics other than iotanalytics/channels/+/messages/…",
        )
        .pattern("^$|^[a-zA-Z0-9_]+$"),
        manifest::isolation_mode(4),
    ],
    // Any topic: customer-defined topics go to the default channel.
    inputs: &[PUT_FILTER, BINARY_PUT_FILTER, "#"],
    outputs: &[STATUS_TOPIC],
    ..manifest::AWS_SERVICE
};

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub queues: QueueConfig,
    pub region: Option<String>,
    pub default_channel: Option<String>,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Notes) {
        let mut p = Params::new(config);
        // Unlike Params::clamped, a missing value is the default without a
        // note, and one below the range is the default, not the minimum.
        let number = |p: &mut Params<'_>, name: &str, default: u64, min: u64, max: u64| -> u64 {
            match p.text(name).map(|v| v.parse::<u64>()) {
                None => default,
                Some(Ok(n)) if (min..=max).contains(&n) => n,
                Some(Ok(n)) if n > max => {
                    p.warn(format!("{name} {n} is above {max}; using {max}"));
                    max
                }
                Some(_) => {
                    p.warn(format!(
                        "{name} is not a number from {min} to {max}; using {default}"
                    ));
                    default
                }
            }
        };
        let interval = number(&mut p, PUBLISH_INTERVAL, 1, 0, 24 * 3600);
        let max_channels = number(&mut p, MAX_CHANNELS, 50, 1, 100_000);
        let queue_size = number(&mut p, QUEUE_SIZE, 2048, 1, 10_000_000);
        let batch_size = number(&mut p, BATCH_SIZE, 5, 1, MAX_BATCH as u64);
        let drop = match p.text(DROP_BEHAVIOR).as_deref() {
            None | Some("DROP_NEWEST") => DropBehavior::DropNewest,
            Some("DROP_OLDEST") => DropBehavior::DropOldest,
            Some(other) => {
                p.warn(format!("{DROP_BEHAVIOR} {other:?} is not DROP_NEWEST or DROP_OLDEST; using DROP_NEWEST"));
                DropBehavior::DropNewest
            }
        };
        let default_channel = match p.text(DEFAULT_CHANNEL) {
            None => None,
            Some(c) if valid_channel(&c) => Some(c),
            Some(c) => {
                p.error(format!("{DEFAULT_CHANNEL} {c:?} is not a channel name; messages on other topics will fail"));
                None
            }
        };
        let region = p.text(PUBLISH_REGION);
        let settings = Settings {
            queues: QueueConfig {
                queue_size: usize::try_from(queue_size).unwrap_or(usize::MAX),
                batch_size: usize::try_from(batch_size).unwrap_or(MAX_BATCH),
                max_channels: usize::try_from(max_channels).unwrap_or(usize::MAX),
                drop,
                interval: Duration::from_secs(interval),
            },
            region,
            default_channel,
        };
        p.info(format!(
            "batches of up to {batch_size} every {interval} s, {queue_size} messages per channel ({drop:?} when \
             full), up to {max_channels} channels, region {}, default channel {}",
            settings.region.as_deref().unwrap_or(&config.region),
            settings.default_channel.as_deref().unwrap_or("(none)")
        ));
        p.finish(settings)
    }
}

/// IoT Analytics channel names: 1–128 of `[a-zA-Z0-9_]`.
pub fn valid_channel(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Generates the ids of messages that come without one: unique within this
/// process (start time, then a counter).
#[derive(Debug)]
pub struct IdGenerator {
    prefix: String,
    next: u64,
}

impl IdGenerator {
    pub fn new() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        IdGenerator {
            prefix: format!("{ms:x}"),
            next: 0,
        }
    }

    pub fn next_id(&mut self) -> String {
        self.next += 1;
        format!("{}-{}", self.prefix, self.next)
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

/// A message read from its topic: the channel and the item to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub channel: String,
    pub item: Item,
}

/// Why an input message was not accepted: its status.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub id: Option<Value>,
    pub message: String,
}

/// Reads one input message.
pub fn read_input(
    topic: &str,
    payload: &[u8],
    default_channel: Option<&str>,
    ids: &mut IdGenerator,
) -> Result<Accepted, Rejected> {
    let levels: Vec<&str> = topic.split('/').collect();
    let (channel, json) = match levels.as_slice() {
        ["iotanalytics", "channels", ch, "messages", "put"] => (Some(*ch), true),
        ["iotanalytics", "channels", ch, "messages", "binary", "put"] => (Some(*ch), false),
        _ => (None, false),
    };
    if !json {
        let id = ids.next_id();
        let reject = |message: String| Rejected {
            id: Some(Value::String(id.clone())),
            message,
        };
        let channel = match (channel, default_channel) {
            (Some(ch), _) if valid_channel(ch) => ch,
            (Some(ch), _) => {
                return Err(reject(format!(
                "channel {ch:?} in topic {topic} is not a channel name (1-128 letters, digits, _)"
            )))
            }
            (None, Some(ch)) => ch,
            (None, None) => {
                return Err(reject(format!(
                    "topic {topic} names no channel and {DEFAULT_CHANNEL} is not set"
                )))
            }
        };
        check_size(payload.len(), "the message").map_err(reject)?;
        if payload.is_empty() {
            return Err(reject("the message is empty".into()));
        }
        return Ok(Accepted {
            channel: channel.to_string(),
            item: Item {
                id,
                payload: payload.to_vec(),
            },
        });
    }
    let channel = channel.unwrap_or_default();
    let root = kit_status::json_object(payload, "message")
        .map_err(|message| Rejected { id: None, message })?;
    let raw_id = root.get("id").cloned();
    let fail = |message: String| Rejected {
        id: raw_id.clone(),
        message,
    };
    let id = match &raw_id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s.len() > MAX_ID_LEN || !s.is_ascii() => {
            return Err(fail(format!("id must be 1-{MAX_ID_LEN} ASCII characters")))
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(fail("id must be a string".into())),
    };
    if !valid_channel(channel) {
        return Err(fail(format!(
            "channel {channel:?} in topic {topic} is not a channel name (1-128 letters, digits, _)"
        )));
    }
    let request = kit_status::object_field(&root, "request").map_err(fail)?;
    let message =
        kit_status::nonempty_string(request, "message", "request.message").map_err(fail)?;
    check_size(message.len(), "request.message").map_err(fail)?;
    Ok(Accepted {
        channel: channel.to_string(),
        item: Item {
            id: id.unwrap_or_else(|| ids.next_id()),
            payload: message.as_bytes().to_vec(),
        },
    })
}

fn check_size(len: usize, what: &str) -> Result<(), String> {
    if len > MAX_PAYLOAD_BYTES {
        Err(format!(
            "{what} is {len} bytes, more than IoT Analytics' {MAX_PAYLOAD_BYTES}"
        ))
    } else {
        Ok(())
    }
}

/// The `BatchPutMessage` body for a batch.
pub fn batch_body(batch: &Batch) -> Value {
    let engine = base64::engine::general_purpose::STANDARD;
    json!({
        "channelName": batch.channel,
        "messages": batch.items.iter().map(|i| json!({
            "messageId": i.id,
            "payload": engine.encode(&i.payload),
        })).collect::<Vec<_>>(),
    })
}

/// The status message for one outcome.
pub fn status(outcome: &Outcome) -> Value {
    let response = match &outcome.error {
        None => json!({"status": "success"}),
        Some((error, message)) => kit_status::fail_response(error, message),
    };
    json!({"response": response, "id": outcome.id})
}

fn rejected_status(r: &Rejected) -> Value {
    kit_status::with_id(
        kit_status::fail_response("InvalidInputException", &r.message),
        r.id.clone(),
    )
}

type Sent = (Batch, Result<Value, AwsError>);

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let mut aws = AwsClient::new(component.config(), handle.clone());
    if let Some(region) = &settings.region {
        aws = aws.with_region(region);
    }
    let mut queues = Queues::new(settings.queues);
    let mut ids = IdGenerator::new();
    let mut in_flight: JoinSet<Sent> = JoinSet::new();
    let mut stop_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let (batches, dropped) = queues.due(now);
        for o in &dropped {
            evergreen_connector_kit::status::publish(&handle, STATUS_TOPIC, status(o)).await?;
        }
        for batch in batches {
            let aws = aws.clone();
            in_flight.spawn(async move {
                let body = batch_body(&batch);
                let result = aws
                    .rest_json(
                        SERVICE,
                        evergreen_aws::Method::POST,
                        "/messages/batch",
                        Some(&body),
                    )
                    .await;
                (batch, result)
            });
        }
        if let Some(stop) = stop_at {
            if (queues.is_empty() && in_flight.is_empty()) || Instant::now() >= stop {
                break;
            }
        }
        let wake = match (queues.next_due(), stop_at) {
            (Some(d), Some(s)) => Some(d.min(s)),
            (d, s) => d.or(s),
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = component.next_event(), if stop_at.is_none() => match event {
                None => break,
                Some(Event::Shutdown { deadline }) => {
                    if queues.is_empty() && in_flight.is_empty() {
                        break;
                    }
                    handle.info(format!("stopping: sending the {} queued messages first", queues.len()));
                    stop_at = Some(Instant::now() + deadline.saturating_sub(SHUTDOWN_MARGIN));
                    queues.hurry(Instant::now());
                }
                // Only a component that serves a function name gets invokes.
                Some(Event::Invoke(_)) => {}
                Some(Event::Refused { topic, reason }) => {
                    handle.warn(format!("publish on {topic} refused: {reason}"))
                }
                Some(Event::Message(m)) => {
                    match read_input(&m.topic, &m.payload, settings.default_channel.as_deref(), &mut ids) {
                        Err(r) => {
                            handle.warn(format!("message on {} rejected: {}", m.topic, r.message));
                            evergreen_connector_kit::status::publish(&handle, STATUS_TOPIC, rejected_status(&r)).await?;
                        }
                        Ok(a) => {
                            if let Some(o) = queues.admit(&a.channel, a.item, Instant::now()) {
                                if let Some((_, text)) = &o.error {
                                    handle.warn(format!("message {}: {text}", o.id));
                                }
                                evergreen_connector_kit::status::publish(&handle, STATUS_TOPIC, status(&o)).await?;
                            }
                            if stop_at.is_some() {
                                queues.hurry(Instant::now());
                            }
                        }
                    }
                }
            },
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                let (batch, result) = match joined {
                    Ok(sent) => sent,
                    Err(e) => {
                        // Only a panic in the HTTP stack gets here; the
                        // batch's messages cannot be given back.
                        handle.error(format!("a BatchPutMessage task failed: {e}"));
                        continue;
                    }
                };
                let channel = batch.channel.clone();
                let count = batch.items.len();
                let (outcomes, note) = queues.completed(batch, result, Instant::now());
                if let Some(note) = note {
                    handle.warn(note);
                } else {
                    handle.debug(format!("channel {channel}: batch of {count} answered"));
                }
                for o in &outcomes {
                    evergreen_connector_kit::status::publish(&handle, STATUS_TOPIC, status(o)).await?;
                }
                if stop_at.is_some() {
                    queues.hurry(Instant::now());
                }
            }
            _ = sleep => {}
        }
    }
    if !queues.is_empty() {
        handle.warn(format!("stopping with {} messages not sent", queues.len()));
    }
    in_flight.abort_all();
    handle.info("stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::testing::ManifestChecks;
    use evergreen_ipc::LogLevel;

    fn config(params: &[(&str, &str)]) -> ComponentConfig {
        evergreen_connector_kit::testing::config(&MANIFEST, 4, params).build()
    }

    #[test]
    fn manifest_patterns_say_what_the_reference_says() {
        assert!(MANIFEST.admits(MEMORY_SIZE, "65535") && !MANIFEST.admits(MEMORY_SIZE, "64k"));
        assert!(
            MANIFEST.admits(PUBLISH_REGION, "") && MANIFEST.admits(PUBLISH_REGION, "eu-west-1")
        );
        assert!(!MANIFEST.admits(PUBLISH_REGION, "eu-west-x"));
        assert!(MANIFEST.admits(PUBLISH_INTERVAL, "0") && MANIFEST.admits(PUBLISH_INTERVAL, ""));
        assert!(!MANIFEST.admits(PUBLISH_INTERVAL, "1.5"));
        for p in [MAX_CHANNELS, QUEUE_SIZE, BATCH_SIZE] {
            assert!(MANIFEST.admits(p, "") && MANIFEST.admits(p, "10"), "{p}");
            assert!(
                !MANIFEST.admits(p, "0") && !MANIFEST.admits(p, "010"),
                "{p}"
            );
        }
        assert!(
            MANIFEST.admits(DROP_BEHAVIOR, "DROP_OLDEST")
                && !MANIFEST.admits(DROP_BEHAVIOR, "DROP")
        );
        assert!(
            MANIFEST.admits(DEFAULT_CHANNEL, "my_channel1")
                && !MANIFEST.admits(DEFAULT_CHANNEL, "a-b")
        );
        MANIFEST.assert_filters_valid();
        for p in MANIFEST.parameters {
            if let Some(d) = p.default {
                assert!(MANIFEST.admits(p.name, d), "{} default {d}", p.name);
            }
        }
    }

    #[test]
    fn settings_defaults_and_clamps() {
        let (s, notes) = Settings::from_config(&config(&[(MEMORY_SIZE, "65535")]));
        assert_eq!(
            s.queues,
            QueueConfig {
                queue_size: 2048,
                batch_size: 5,
                max_channels: 50,
                drop: DropBehavior::DropNewest,
                interval: Duration::from_secs(1),
            }
        );
        assert_eq!((s.region, s.default_channel), (None, None));
        assert!(notes.iter().all(|(l, _)| *l == LogLevel::Info), "{notes:?}");
        let (s, notes) = Settings::from_config(&config(&[
            (BATCH_SIZE, "500"),
            (DROP_BEHAVIOR, "DROP_OLDEST"),
            (PUBLISH_INTERVAL, "0"),
            (DEFAULT_CHANNEL, "plant_1"),
            (PUBLISH_REGION, "eu-west-1"),
        ]));
        assert_eq!(s.queues.batch_size, MAX_BATCH);
        assert_eq!(s.queues.drop, DropBehavior::DropOldest);
        assert_eq!(s.queues.interval, Duration::ZERO);
        assert_eq!(s.default_channel.as_deref(), Some("plant_1"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert!(notes
            .iter()
            .any(|(l, m)| *l == LogLevel::Warn && m.contains(BATCH_SIZE)));
    }

    #[test]
    fn inputs_are_read_by_topic() {
        let mut ids = IdGenerator::new();
        let a = read_input(
            "iotanalytics/channels/telemetry/messages/put",
            br#"{"request": {"message": "{\"temp\":23.33}"}, "id": "req123"}"#,
            None,
            &mut ids,
        )
        .expect("the guide's example");
        assert_eq!(a.channel, "telemetry");
        assert_eq!(a.item.id, "req123");
        assert_eq!(a.item.payload, br#"{"temp":23.33}"#);

        let a = read_input(
            "iotanalytics/channels/telemetry/messages/put",
            br#"{"request": {"message": "x"}}"#,
            None,
            &mut ids,
        )
        .expect("no id");
        let b = read_input(
            "iotanalytics/channels/raw/messages/binary/put",
            &[0, 159, 146, 150],
            None,
            &mut ids,
        )
        .expect("binary");
        assert_eq!(b.channel, "raw");
        assert_eq!(b.item.payload, [0, 159, 146, 150]);
        assert_ne!(a.item.id, b.item.id, "generated ids differ");

        let c =
            read_input("plant/line1/temp", b"21.5", Some("plant"), &mut ids).expect("custom topic");
        assert_eq!(
            (c.channel.as_str(), c.item.payload.as_slice()),
            ("plant", &b"21.5"[..])
        );
        let r = read_input("plant/line1/temp", b"21.5", None, &mut ids)
            .expect_err("no default channel");
        assert!(r.message.contains(DEFAULT_CHANNEL), "{}", r.message);

        let body = batch_body(&Batch {
            channel: "raw".into(),
            items: vec![b.item.clone()],
        });
        assert_eq!(body["channelName"], "raw");
        assert_eq!(body["messages"][0]["messageId"], b.item.id.as_str());
        assert_eq!(body["messages"][0]["payload"], "AJ+Slg==");
    }

    #[test]
    fn bad_input_names_the_field() {
        let mut ids = IdGenerator::new();
        let put = "iotanalytics/channels/telemetry/messages/put";
        let cases: &[(&str, &str)] = &[
            ("nope", "not JSON"),
            ("[]", "not a JSON object"),
            (r#"{"id": "a"}"#, "request is missing"),
            (r#"{"request": 1}"#, "request must be an object"),
            (r#"{"request": {}}"#, "request.message is missing"),
            (
                r#"{"request": {"message": 1}}"#,
                "request.message must be a string",
            ),
            (
                r#"{"request": {"message": ""}}"#,
                "request.message must not be empty",
            ),
            (
                r#"{"request": {"message": "m"}, "id": 3}"#,
                "id must be a string",
            ),
            (
                r#"{"request": {"message": "m"}, "id": "é"}"#,
                "id must be 1-128 ASCII",
            ),
        ];
        for (payload, expected) in cases {
            let r = read_input(put, payload.as_bytes(), None, &mut ids).expect_err(payload);
            assert!(r.message.contains(expected), "{payload}: {}", r.message);
        }
        let big = format!(
            r#"{{"request": {{"message": "{}"}}, "id": "big"}}"#,
            "x".repeat(MAX_PAYLOAD_BYTES + 1)
        );
        let r = read_input(put, big.as_bytes(), None, &mut ids).expect_err("big");
        assert!(
            r.message.contains("request.message is 131073 bytes"),
            "{}",
            r.message
        );
        assert_eq!(r.id, Some(json!("big")));
        let r = read_input(
            "iotanalytics/channels/bad-name/messages/put",
            br#"{"request": {"message": "m"}, "id": "x"}"#,
            None,
            &mut ids,
        )
        .expect_err("bad channel");
        assert!(r.message.contains("channel \"bad-name\""), "{}", r.message);
        let r = read_input(
            "iotanalytics/channels/raw/messages/binary/put",
            b"",
            None,
            &mut ids,
        )
        .expect_err("empty binary");
        assert!(r.message.contains("empty"));
        assert_eq!(
            rejected_status(&Rejected {
                id: None,
                message: "m".into()
            }),
            json!({"response": {"status": "fail", "error": "InvalidInputException", "error_message": "m"}})
        );
    }

    #[test]
    fn statuses_have_the_guide_shape() {
        assert_eq!(
            status(&Outcome::success("req123")),
            json!({"response": {"status": "success"}, "id": "req123"})
        );
        assert_eq!(
            status(&Outcome::fail(
                "req123",
                "ResourceNotFoundException",
                "A resource with the specified name could not be found."
            )),
            json!({"response": {"status": "fail", "error": "ResourceNotFoundException",
                "error_message": "A resource with the specified name could not be found."}, "id": "req123"})
        );
    }
}
