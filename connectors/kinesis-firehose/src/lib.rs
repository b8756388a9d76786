//! The `KinesisFirehose` connector (Greengrass versions 1–5): records
//! published on MQTT topics go to Amazon Data Firehose delivery streams.
//!
//! **Input.** `kinesisfirehose/message` carries JSON
//! `{"request": {"data": "…", "delivery_stream_arn": "…"}, "id": "…"}`
//! (`data` required, sent as its UTF-8 bytes; `delivery_stream_arn`
//! optional, else `DefaultDeliveryStreamArn`; `id` optional, echoed in the
//! status). `kinesisfirehose/message/binary/<id>` carries raw bytes sent
//! as they are; the id is the rest of the topic (`…/binary/` gives the
//! empty id). The reference only implies where binary records go: they go
//! to the default stream (there is no way to name another).
//!
//! **Queues and batching (versions 2–5).** Each delivery stream has its own
//! queue of at most `DeliveryStreamQueueSize` records. The count includes
//! records whose call is still out, so a record accepted is never dropped
//! for lack of room when it has to be queued again; when the queue is full,
//! **new** records for that stream are refused at once with the status
//! `{"response": [{"ErrorCode": "QueueFullException", "ErrorMessage": "…",
//! "id": "…", "status": "fail"}]}` (the reference says new records are
//! rejected but not with what; this is Evergreen's choice). Every
//! `PublishInterval` seconds each stream sends what it holds with
//! `PutRecordBatch`, at most 500 records and 4 MiB of data (counted before
//! base64) per call, calls following each other until the queue is empty.
//! A stream that holds a full batch sends it without waiting for the
//! interval (a full batch cannot grow; waiting would only fill the queue).
//! `PublishInterval` 0 sends as soon as anything is queued; what arrives
//! while a call is out goes in the next one. One call per stream is out at
//! a time.
//!
//! **Statuses.** Versions 2–5: one message per call on
//! `kinesisfirehose/message/status`, `{"response": [...]}` with one entry
//! per record that is done, `{"firehose_record_id", "id", "status":
//! "success"}` or `{"ErrorCode", "ErrorMessage", "id", "status": "fail"}`
//! (`id` left out when the message had none). Version 1 sends each record
//! with `PutRecord` and publishes `{"response": {"firehose_record_id",
//! "status"}, "id"}` / `{"response": {"error", "error_message", "status":
//! "fail"}, "id"}` per record. A refused input gets the same shapes with
//! `InvalidInputException` and a message that names the bad field
//! (`request.data is missing`, `id must be a string`, …).
//!
//! **Retries.** A call that gets no answer, a 5xx, a 429, throttling or
//! stale credentials (`evergreen_aws::AwsError::is_retryable`), and the
//! records a `PutRecordBatch` answer marks `ServiceUnavailableException` or
//! `InternalFailure`, go back to the end of their stream's queue, as the
//! reference says, and the stream waits 250 ms, doubling per failure in a
//! row up to 20 s, before it sends again. No status is published for a
//! record until it is delivered or fails for good; retries have no count
//! limit (a record is only ever lost by a restart, as in Greengrass).
//! Other errors (`ResourceNotFoundException`, `InvalidArgumentException`,
//! access denied) fail the records with the service's code and message.
//!
//! **Streams in other regions.** A stream ARN's region picks the endpoint
//! and the signing region; the endpoint overrides of the core
//! configuration (`evergreen.aws.endpoints.firehose`) apply to all.
//!
//! **Parameters.** As in Greengrass. The reference prints the
//! `DeliveryStreamQueueSize` and `PublishInterval` patterns with doubled
//! backslashes (`\\d`), which would match a backslash; the manifest uses
//! `\d` (a doc inconsistency, decided so groups that worked in Greengrass
//! validate). `PublishInterval`'s pattern also admits 901–999 although the
//! guide says 0–900: such values are accepted and used as 900, with a
//! warning. `MemorySize` is accepted and logged; Evergreen does not cap
//! connector memory with it (the connector uses a few MiB, see the
//! figures in docs/connectors.md). Version 1 has only `DefaultDeliveryStreamArn`; it
//! queues up to 2000 records per stream and sends one per call.
//!
//! **Lifecycle.** The connector is long-lived (pinned): its queues live in
//! memory, so an on-demand start and stop would lose them. On shutdown it
//! makes one last send of what is queued within the grace period and logs
//! how many records were left.

pub mod api;
pub mod queue;
pub mod request;
pub mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use evergreen_aws::{AwsClient, AwsError};
use evergreen_connector_kit::manifest;
use evergreen_connector_kit::uploader::{self, Calls, Uploader};
use evergreen_connector_kit::{Notes, Params};
use evergreen_ipc::manifest::{parse_connector_arn, ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Handle, SdkError};
use evergreen_ipc::{ComponentConfig, Delivery, LogLevel};
use tokio::time::Instant;

use crate::api::{CallFailure, RecordResult};
use crate::queue::{Batch, Queues};
use crate::request::{Accepted, Invalid, StreamArn};
use crate::status::{Outcome, STATUS_TOPIC};

const DEFAULT_STREAM: &str = "DefaultDeliveryStreamArn";
const QUEUE_SIZE: &str = "DeliveryStreamQueueSize";
const MEMORY_SIZE: &str = "MemorySize";
const PUBLISH_INTERVAL: &str = "PublishInterval";

/// The status code of a record refused because its stream's queue is full.
pub const QUEUE_FULL: &str = "QueueFullException";
/// The longest `PublishInterval` the guide allows.
pub const MAX_INTERVAL_S: u64 = 900;
/// Version 1 has no `DeliveryStreamQueueSize`: the smallest allowed later.
pub const V1_QUEUE_SIZE: usize = 2000;

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "KinesisFirehose",
    versions: &[1, 2, 3, 4, 5],
    description: "Sends records published on kinesisfirehose/message (JSON) and \
                  kinesisfirehose/message/binary/# (raw bytes) to Amazon Data Firehose delivery streams, \
                  batched with PutRecordBatch; per-record statuses on kinesisfirehose/message/status.",
    parameters: &[
        ParameterSpec::new(
            DEFAULT_STREAM,
            "ARN of the delivery stream records go to unless a message names another.",
        )
        .required()
        .pattern("arn:aws:firehose:([a-z]{2}-[a-z]+-\\d{1}):(\\d{12}):deliverystream/([a-zA-Z0-9_\\-.]+)$"),
        ParameterSpec::new(
            QUEUE_SIZE,
            "Most records kept in memory per delivery stream (2000 or more); new records are refused when full.",
        )
        .required()
        .pattern("^([2-9]\\d{3}|[1-9]\\d{4,})$")
        .since(2),
        ParameterSpec::new(MEMORY_SIZE, "Memory (KB) allocated to the connector; logged only.")
            .required()
            .pattern("^[0-9]+$")
            .since(2),
        ParameterSpec::new(
            PUBLISH_INTERVAL,
            "Seconds between batch publishes (0-900); 0 sends records as they arrive.",
        )
        .required()
        .pattern("[0-9]|[1-9]\\d|[1-9]\\d\\d|900")
        .since(2),
        manifest::isolation_mode(5),
    ],
    inputs: &[request::JSON_TOPIC, "kinesisfirehose/message/binary/#"],
    outputs: &[STATUS_TOPIC],
    ..manifest::AWS_SERVICE
};

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The connector version, from its ARN (5 when unreadable).
    pub version: u32,
    /// `None` when the parameter is missing or not a stream ARN (validation
    /// prevents it; every record is then refused).
    pub default_stream: Option<StreamArn>,
    pub queue_size: usize,
    /// Zero: no batching.
    pub publish_interval: Duration,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Notes) {
        let mut p = Params::new(config);
        let version = parse_connector_arn(&config.arn).map_or(5, |(_, v)| v);

        let default_stream = match p.raw(DEFAULT_STREAM).map(StreamArn::parse) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                p.error(format!(
                    "{DEFAULT_STREAM}: {e}; records without a delivery_stream_arn are refused"
                ));
                None
            }
            None => {
                p.error(format!("{DEFAULT_STREAM} is missing; records without a delivery_stream_arn are refused"));
                None
            }
        };
        let (queue_size, interval) = if version < 2 {
            (V1_QUEUE_SIZE, 0)
        } else {
            let queue_size = p.at_least(QUEUE_SIZE, V1_QUEUE_SIZE);
            let interval = p.capped(PUBLISH_INTERVAL, MAX_INTERVAL_S, 0, "0 (no batching)");
            p.note_memory_size(MEMORY_SIZE);
            (queue_size, interval)
        };
        p.info(format!(
            "version {version}: default stream {}, queue {queue_size} records per stream, {}",
            default_stream.as_ref().map_or("(none)", |s| s.arn.as_str()),
            if version < 2 {
                "one PutRecord per record".to_string()
            } else if interval == 0 {
                "PutRecordBatch as records arrive".to_string()
            } else {
                format!("PutRecordBatch every {interval} s or per full batch")
            }
        ));
        p.finish(Settings {
            version,
            default_stream,
            queue_size,
            publish_interval: Duration::from_secs(interval),
        })
    }

    fn batched(&self) -> bool {
        self.version >= 2
    }
}

/// A call's outcome, sent back to the main loop by the task that made it.
#[derive(Debug)]
struct Done {
    batch: Batch,
    answer: Result<serde_json::Value, CallFailure>,
}

fn failure(e: &AwsError) -> CallFailure {
    let (code, message) = e.code_and_detail();
    CallFailure {
        retryable: e.is_retryable(),
        code,
        message,
    }
}

/// The connector's state between events.
struct Connector {
    settings: Settings,
    handle: Handle,
    client: AwsClient,
    /// One client per region a stream lives in.
    regional: BTreeMap<String, AwsClient>,
    queues: Queues,
    /// Records refused because their queue was full, for the log.
    refused_full: u64,
}

impl Connector {
    async fn publish(&self, payload: Vec<u8>) -> Result<(), SdkError> {
        self.handle.publish_or_log(STATUS_TOPIC, payload).await
    }

    async fn refuse(&self, id: Option<&str>, code: &str, message: &str) -> Result<(), SdkError> {
        self.publish(status::refusal(self.settings.version, id, code, message))
            .await
    }

    fn client_for(&mut self, region: &str) -> AwsClient {
        if region == self.client.region() {
            return self.client.clone();
        }
        self.regional
            .entry(region.to_string())
            .or_insert_with(|| self.client.with_region(region))
            .clone()
    }
}

impl Uploader for Connector {
    type Done = Done;

    /// One message from an input topic.
    async fn on_message(&mut self, m: Delivery) -> Result<(), SdkError> {
        let (topic, payload) = (m.topic.as_str(), m.payload);
        let parsed = if request::is_binary(topic) {
            request::parse_binary(topic, payload)
        } else {
            request::parse_json(&payload)
        };
        let Accepted { stream, record } = match parsed {
            Ok(a) => a,
            Err(Invalid { id, code, message }) => {
                self.handle
                    .warn(format!("refused a message on {topic}: {message}"));
                return self.refuse(id.as_deref(), code, &message).await;
            }
        };
        let Some(stream) = stream.or_else(|| self.settings.default_stream.clone()) else {
            let message =
                format!("no delivery_stream_arn in the request and no valid {DEFAULT_STREAM}");
            return self
                .refuse(record.id.as_deref(), request::INVALID_INPUT, &message)
                .await;
        };
        let id = record.id.clone();
        if self.queues.offer(&stream, record).is_err() {
            self.refused_full += 1;
            let message = format!(
                "the queue for delivery stream {} is full ({} records, {QUEUE_SIZE}); record refused",
                stream.name,
                self.queues.capacity()
            );
            // The first refusal and then every 1000th, not one line each.
            if self.refused_full % 1000 == 1 {
                self.handle
                    .warn(format!("{message} ({} refused so far)", self.refused_full));
            }
            return self.refuse(id.as_deref(), QUEUE_FULL, &message).await;
        }
        Ok(())
    }

    /// Starts a call for every batch that is ready.
    async fn send_ready(&mut self, calls: &Calls<Done>) -> Result<(), SdkError> {
        for batch in self.queues.take_ready(Instant::now().into_std()) {
            let client = self.client_for(&batch.stream.region);
            let batched = self.settings.batched();
            calls.spawn(async move {
                let answer = if batched {
                    client
                        .json(
                            api::SERVICE,
                            api::PUT_RECORD_BATCH,
                            &api::put_record_batch_body(&batch),
                        )
                        .await
                } else {
                    client
                        .json(api::SERVICE, api::PUT_RECORD, &api::put_record_body(&batch))
                        .await
                };
                Done {
                    batch,
                    answer: answer.map_err(|e| failure(&e)),
                }
            });
        }
        Ok(())
    }

    /// A call is over: statuses for the records that are done, the others
    /// back in the queue.
    async fn on_done(&mut self, done: Done) -> Result<(), SdkError> {
        let Done { batch, answer } = done;
        let n = batch.records.len();
        let results = if self.settings.batched() {
            api::batch_results(n, answer.as_ref())
        } else {
            vec![api::single_result(answer.as_ref()); n.min(1)]
        };
        let mut retry = Vec::new();
        let mut entries = Vec::new();
        let mut failed = 0usize;
        for (record, result) in batch.records.into_iter().zip(results) {
            match result {
                RecordResult::Retry => retry.push(record),
                RecordResult::Done(outcome) => {
                    if matches!(outcome, Outcome::Failed { .. }) {
                        failed += 1;
                    }
                    if self.settings.batched() {
                        entries.push(status::entry(record.id.as_deref(), &outcome));
                    } else {
                        self.publish(status::single_status(record.id.as_deref(), &outcome))
                            .await?;
                    }
                }
            }
        }
        if let Err(f) = &answer {
            let level = if f.retryable {
                LogLevel::Warn
            } else {
                LogLevel::Error
            };
            self.handle.log(
                level,
                format!(
                    "{} records for {}: {} ({}){}",
                    n,
                    batch.stream.name,
                    f.code,
                    f.message,
                    if f.retryable { "; will retry" } else { "" }
                ),
            );
        } else if !retry.is_empty() || failed > 0 {
            self.handle.warn(format!(
                "{} of {n} records for {} failed: {} to retry, {failed} for good",
                retry.len() + failed,
                batch.stream.name,
                retry.len()
            ));
        }
        let settled = n - retry.len();
        self.queues
            .finish(&batch.stream, settled, retry, Instant::now().into_std());
        if !entries.is_empty() {
            self.publish(status::batch_status(entries)).await?;
        }
        Ok(())
    }

    fn on_tick(&mut self) {
        self.queues.mark_all_due();
    }

    fn next_wake(&self) -> Option<Instant> {
        self.queues.next_retry().map(Instant::from_std)
    }

    fn calling(&self) -> bool {
        self.queues.calling()
    }
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let client = AwsClient::new(component.config(), handle.clone());
    let max_records = if settings.batched() {
        queue::MAX_BATCH_RECORDS
    } else {
        1
    };
    let immediate = settings.publish_interval.is_zero();
    // Interval 0 never ticks: `immediate` sends at once.
    let interval = (!immediate).then_some(settings.publish_interval);
    let mut connector = Connector {
        queues: Queues::new(settings.queue_size, max_records, immediate),
        settings,
        handle: handle.clone(),
        client,
        regional: BTreeMap::new(),
        refused_full: 0,
    };
    uploader::run(&mut component, &handle, &mut connector, interval).await?;
    let left = connector.queues.total_held();
    if left > 0 {
        handle.warn(format!("stopping with {left} records not delivered"));
    } else {
        handle.info("stopping");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
