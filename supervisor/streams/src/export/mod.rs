//! The stream manager's exports: one background task per enabled export
//! configuration of a stream, reading the stream through [`ExportSource`]
//! and sending it to Kinesis Data Streams, IoT Analytics, IoT SiteWise, or
//! (S3 export task executor) uploading the files its messages name.
//!
//! **Delivery: at least once, in order, nothing skipped silently.** An
//! export starts at `max(startSequenceNumber, checkpoint + 1)`, where the
//! checkpoint is the last sequence number it had acknowledged, kept in
//! `<checkpoint_dir>/<identifier>.checkpoint` (written to a temporary file,
//! fsynced, renamed, directory fsynced). It persists the checkpoint only
//! after the service acknowledged everything up to it, so a crash between
//! the send and the checkpoint sends the unacknowledged batch again after
//! the restart: consumers may see a message twice, never miss one (the
//! Kinesis partition key and the IoT Analytics message id are derived from
//! the sequence number, so duplicates can be recognised). Batches go out
//! one at a time, oldest first; a batch that fails is retried, the same
//! messages, before anything newer. The only messages an export passes
//! without the service accepting them are the ones it cannot ever accept,
//! and each is logged (`tracing` warn), counted ([`ExportHandle::skipped`])
//! and named in the status's `errorMessage`: a SiteWise message that is
//! not a valid `PutAssetPropertyValueEntry`, a Kinesis record over 1 MiB,
//! an IoT Analytics message over 128 KiB, and entries the service itself
//! rejects one by one with a non-retryable code (IoT Analytics'
//! `batchPutMessageErrorEntries`, SiteWise's `errorEntries`). Messages the
//! store evicted before they were exported (a full stream with
//! `OverwriteOldestData`, a TTL) are gone: the export goes on from the
//! oldest kept one.
//!
//! **Batching.** Each export reads at most `batchSize` messages (defaults
//! as the SDK documents them: Kinesis 500, IoT Analytics 100, SiteWise 10;
//! S3 tasks one at a time). Without `batchIntervalMillis` it sends as soon
//! as there is anything; with it, it sends when `batchSize` messages are
//! there or when the oldest unexported one was appended (its ingest time)
//! `batchIntervalMillis` ago, whichever comes first. One batch can take
//! several requests (Kinesis' 5 MiB per request, SiteWise's unique entry
//! ids per request); the checkpoint moves only over the acknowledged
//! prefix.
//!
//! **Failures.** A retryable failure ([`evergreen_aws::AwsError::is_retryable`]:
//! no answer, 5xx, 429, throttling, stale credentials; or per-record codes
//! like `ProvisionedThroughputExceededException`) is retried after 1 s,
//! doubling to 60 s (jittered). A non-retryable failure of a whole request
//! (the Kinesis stream or IoT Analytics channel does not exist, access
//! denied, a bad request) is retried every 5 minutes, like V1's stream
//! manager ("retries at intervals of up to five minutes, without limit"),
//! because an operator can fix the cloud side and the data must not be
//! lost. Either way the error is in the status's `errorMessage` until the
//! next success. A Kinesis `PutRecords` answer with `FailedRecordCount`
//! resends only the failed records, in their order.
//!
//! **S3 export tasks.** Each message is an `S3ExportTaskDefinition` (JSON).
//! The file at `inputUrl` (`file:///…` or an absolute path) is uploaded
//! with `PutObject`, or, above `sizeThresholdForMultipartUploadBytes`
//! (default and minimum 5 MiB), with a multipart upload (parts of 5 MiB or
//! more, at most 10 000; aborted when it fails). `userMetadata` goes as
//! `x-amz-meta-*` headers (values that are not strings as their JSON text;
//! a key that is not an HTTP token or a value that is not printable ASCII
//! fails the task). A file sent with one `PutObject` is read into memory
//! (SigV4 signs its hash), so a threshold of N bytes costs up to N bytes
//! of memory per upload; multipart parts are read one at a time.
//! The key's `!{timestamp:FORMAT}` placeholders are replaced with the
//! upload time in UTC; FORMAT supports `yyyy`, `YYYY` (the calendar year
//! here, not Java's week year), `yy`, `MM`, `dd`, `HH`, `mm`, `ss`, `SSS`
//! and `/`; any other letter fails the task, as does a key with a `.` or
//! `..` segment (URLs fold those). Unlike the data exports, a
//! task that fails for good (unreadable file, bad definition, a
//! non-retryable S3 answer such as `NoSuchBucket` or `AccessDenied`) is
//! reported `Failure` on the status stream and the executor goes on to the
//! next task: the file stays on disk and the function that asked can
//! submit it again. Retryable S3 failures are retried as above. Status
//! messages (`StatusMessage` JSON, `eventType` S3Task, the task in
//! `statusContext` with the export identifier, stream name and sequence
//! number) are appended to `statusConfig.statusStreamName` through
//! [`ExportSource::append`]: `InProgress` and `Success` at INFO, `Failure`
//! at ERROR, only when their level is at or below `statusLevel` (default
//! INFO); without a status stream none are written.
//!
//! **HTTP.** `http` export configurations are refused ([`specs_for`]
//! returns an error the server answers as `InvalidRequest`): the SDK calls
//! that destination unsupported and for testing only, and V1's stream
//! manager exports to AWS services alone.
//!
//! **Priority.** Every export sends through one [`ExportGate`]: at most
//! `concurrency` requests in flight for the whole stream manager; when
//! exports wait for a slot, the lowest `priority` value goes first (an
//! export without one counts as 10, the SDK's "lowest priority"), equal
//! priorities in the order they asked. It orders the use of the network,
//! not the store: a high-priority export never waits for a low one's batch
//! to fill.
//!
//! **Ids.** Kinesis partition key: the message's sequence number in
//! decimal (records spread over the shards; a resent record has the key
//! it had). IoT Analytics `messageId`: `iotMsgIdPrefix` (default empty)
//! followed by the sequence number in decimal, unique within a batch and
//! the same when resent.
//!
//! **Status and stop.** [`ExportHandle::status`] is the `ExportStatus` a
//! describe call shows; dropping the handle (or [`ExportHandle::stop`])
//! aborts the task, for a stream deleted or updated (a batch in flight is
//! sent again by the next task: at least once; a multipart upload cut off
//! is left incomplete in S3 for a lifecycle rule to remove, and redone).
//! The task also ends by itself when [`ExportSource::read_from`] says the
//! stream is gone. When a stream is deleted, [`remove_checkpoint`] its
//! exports, or a new stream of the same name would start after the old
//! checkpoint.

mod checkpoint;
mod driver;
mod gate;
mod iotanalytics;
mod kinesis;
mod s3;
mod sitewise;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::{
    ExportDefinition, ExportStatus, IoTAnalyticsConfig, IoTSiteWiseConfig, KinesisConfig, Message,
    S3ExportTaskExecutorConfig,
};

pub use checkpoint::{load_checkpoint, remove_checkpoint, store_checkpoint};
pub use gate::{ExportGate, GatePermit};
pub use iotanalytics::message_id;
pub use s3::expand_key;

/// What an export reads from and (for S3 task status) appends to.
pub trait ExportSource: Send + Sync + 'static {
    /// Messages of `stream` with sequence numbers >= `from`, oldest first, at most `max` (may be fewer; empty when none yet).
    /// Err when the stream does not exist any more. If `from` is below the oldest kept message, starts at the oldest.
    fn read_from(&self, stream: &str, from: i64, max: usize) -> Result<Vec<Message>, String>;
    /// Changes whenever a message is appended to `stream` (value: newest sequence number, -1 when empty).
    fn watch(&self, stream: &str) -> Option<tokio::sync::watch::Receiver<i64>>;
    /// Appends to a stream (the S3 executor's status stream); returns the sequence number.
    fn append(&self, stream: &str, payload: Vec<u8>) -> Result<i64, String>;
}

/// Where one export sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportKind {
    Kinesis(KinesisConfig),
    IotAnalytics(IoTAnalyticsConfig),
    SiteWise(IoTSiteWiseConfig),
    S3Task(S3ExportTaskExecutorConfig),
}

impl ExportKind {
    pub fn identifier(&self) -> &str {
        match self {
            ExportKind::Kinesis(c) => &c.identifier,
            ExportKind::IotAnalytics(c) => &c.identifier,
            ExportKind::SiteWise(c) => &c.identifier,
            ExportKind::S3Task(c) => &c.identifier,
        }
    }

    fn disabled(&self) -> bool {
        match self {
            ExportKind::Kinesis(c) => c.disabled,
            ExportKind::IotAnalytics(c) => c.disabled,
            ExportKind::SiteWise(c) => c.disabled,
            ExportKind::S3Task(c) => c.disabled,
        }
        .unwrap_or(false)
    }

    /// 1 (first) to 10 (last, also when unset).
    pub fn priority(&self) -> i64 {
        match self {
            ExportKind::Kinesis(c) => c.priority,
            ExportKind::IotAnalytics(c) => c.priority,
            ExportKind::SiteWise(c) => c.priority,
            ExportKind::S3Task(c) => c.priority,
        }
        .unwrap_or(10)
        .clamp(1, 10)
    }

    /// `batchSize`, or the SDK's default for the destination.
    pub fn batch_size(&self) -> usize {
        let (size, default) = match self {
            ExportKind::Kinesis(c) => (c.batch_size, 500),
            ExportKind::IotAnalytics(c) => (c.batch_size, 100),
            ExportKind::SiteWise(c) => (c.batch_size, 10),
            ExportKind::S3Task(_) => (None, 1),
        };
        usize::try_from(size.unwrap_or(default).clamp(1, default)).unwrap_or(1)
    }

    /// `batchIntervalMillis` (none: send as soon as there is anything).
    pub fn batch_interval_millis(&self) -> Option<i64> {
        match self {
            ExportKind::Kinesis(c) => c.batch_interval_millis,
            ExportKind::IotAnalytics(c) => c.batch_interval_millis,
            ExportKind::SiteWise(c) => c.batch_interval_millis,
            ExportKind::S3Task(_) => None,
        }
    }

    pub fn start_sequence_number(&self) -> i64 {
        match self {
            ExportKind::Kinesis(c) => c.start_sequence_number,
            ExportKind::IotAnalytics(c) => c.start_sequence_number,
            ExportKind::SiteWise(c) => c.start_sequence_number,
            ExportKind::S3Task(_) => None,
        }
        .unwrap_or(0)
        .max(0)
    }
}

/// One export of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSpec {
    pub stream: String,
    pub kind: ExportKind,
    /// Where the checkpoint file of this export lives (created if missing);
    /// one directory per stream is enough (files are named by identifier).
    pub checkpoint_dir: PathBuf,
}

/// Why a stream's export definition cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("HTTP export ({0:?}) is not supported: Evergreen's stream manager, like V1's, exports only to IoT Analytics, Kinesis Data Streams, IoT SiteWise and S3")]
    HttpUnsupported(String),
}

/// The enabled exports of a stream's definition (`disabled: true` ones left
/// out), or why the definition cannot be run (an `http` export).
pub fn specs_for(
    stream: &str,
    definition: &ExportDefinition,
    checkpoint_dir: impl Into<PathBuf>,
) -> Result<Vec<ExportSpec>, ExportError> {
    if let Some(h) = definition.http.first() {
        return Err(ExportError::HttpUnsupported(h.identifier.clone()));
    }
    let dir = checkpoint_dir.into();
    let kinds = definition
        .kinesis
        .iter()
        .cloned()
        .map(ExportKind::Kinesis)
        .chain(
            definition
                .iot_analytics
                .iter()
                .cloned()
                .map(ExportKind::IotAnalytics),
        )
        .chain(
            definition
                .iot_sitewise
                .iter()
                .cloned()
                .map(ExportKind::SiteWise),
        )
        .chain(
            definition
                .s3_task_executor
                .iter()
                .cloned()
                .map(ExportKind::S3Task),
        );
    Ok(kinds
        .filter(|k| !k.disabled())
        .map(|kind| ExportSpec {
            stream: stream.to_string(),
            kind,
            checkpoint_dir: dir.clone(),
        })
        .collect())
}

/// What every export of one stream manager shares.
#[derive(Clone)]
pub struct ExportEnv {
    pub source: Arc<dyn ExportSource>,
    pub aws: evergreen_aws::AwsClient,
    pub gate: Arc<ExportGate>,
    /// The smallest part of an S3 multipart upload (GGStreamManager's
    /// `STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES`;
    /// `None`: S3's minimum, 5 MiB).
    pub s3_min_part_size: Option<u64>,
}

impl std::fmt::Debug for ExportEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportEnv")
            .field("aws", &self.aws)
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

/// What the task shares with its handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    status: Mutex<ExportStatus>,
    skipped: AtomicU64,
}

impl Shared {
    pub(crate) fn update(&self, f: impl FnOnce(&mut ExportStatus)) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
    }

    pub(crate) fn add_skipped(&self, n: u64) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
    }
}

/// A running export; dropping it stops the task.
#[derive(Debug)]
pub struct ExportHandle {
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ExportHandle {
    /// The export's progress, as `describe_message_stream` shows it.
    pub fn status(&self) -> ExportStatus {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Messages passed without the service accepting them (see the module
    /// docs: invalid or rejected one by one), since this handle started.
    pub fn skipped(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// Whether the task has ended (its stream is gone).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the task now; the checkpoint stays as last persisted.
    pub fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for ExportHandle {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Starts the export's task on the current tokio runtime (panics outside
/// one, as `tokio::spawn` does). The status starts
/// from the persisted checkpoint (`lastExportedSequenceNumber` -1: nothing
/// exported yet).
pub fn spawn_export(spec: ExportSpec, env: &ExportEnv) -> ExportHandle {
    let shared = Arc::new(Shared::default());
    let checkpoint = load_checkpoint(&spec.checkpoint_dir, spec.kind.identifier());
    shared.update(|s| {
        s.export_config_identifier = spec.kind.identifier().to_string();
        s.last_exported_sequence_number = checkpoint.unwrap_or(-1);
    });
    // `disabled: true`: no task (specs_for already leaves these out).
    let task = (!spec.kind.disabled())
        .then(|| tokio::spawn(driver::run(spec, env.clone(), shared.clone(), checkpoint)));
    ExportHandle { shared, task }
}
