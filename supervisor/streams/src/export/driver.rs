//! One export's task: gathers a batch from the stream, sends it through
//! the destination's sink until every message of it is settled, persists
//! the checkpoint and the status, and goes on (see the module docs of
//! `export` for the rules).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evergreen_aws::{AwsError, Backoff};

use super::{checkpoint, ExportEnv, ExportKind, ExportSpec, Shared};
use crate::model::Message;

/// First retry delay of a retryable failure; it doubles up to [`RETRY_MAX`].
pub(crate) const RETRY_INITIAL: Duration = Duration::from_secs(1);
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(60);
/// Retry delay after a failure retrying cannot fix by itself (V1: "retries
/// at intervals of up to five minutes").
pub(crate) const PERMANENT_RETRY: Duration = Duration::from_secs(300);
/// Longest wait for new messages without a wake-up (a missed watch change
/// costs at most this).
const POLL: Duration = Duration::from_secs(5);
/// Poll period when the source offers no watch for the stream.
const POLL_NO_WATCH: Duration = Duration::from_millis(250);

/// What became of one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    Pending,
    Delivered,
    /// Passed without the destination accepting it, and why.
    Skipped(String),
}

/// The messages being sent, with each one's fate; sinks send the pending
/// ones, oldest first, and settle them.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) messages: Vec<Message>,
    pub(crate) fates: Vec<Fate>,
    /// Per message, whether the sink already announced it (S3 `InProgress`).
    pub(crate) announced: Vec<bool>,
    /// Leading messages already counted in the status and the checkpoint.
    accounted: usize,
}

impl Batch {
    pub(crate) fn new(messages: Vec<Message>) -> Self {
        let n = messages.len();
        Batch {
            messages,
            fates: vec![Fate::Pending; n],
            announced: vec![false; n],
            accounted: 0,
        }
    }

    /// Indices of the messages still to send, in order.
    pub(crate) fn pending(&self) -> Vec<usize> {
        (0..self.messages.len())
            .filter(|i| self.fates[*i] == Fate::Pending)
            .collect()
    }

    pub(crate) fn deliver(&mut self, i: usize) {
        self.fates[i] = Fate::Delivered;
    }

    pub(crate) fn skip(&mut self, i: usize, why: String) {
        tracing::warn!(
            stream = %self.messages[i].stream_name,
            sequence_number = self.messages[i].sequence_number,
            "export passes a message the destination cannot accept: {why}"
        );
        self.fates[i] = Fate::Skipped(why);
    }

    /// How many leading messages are settled.
    fn settled_prefix(&self) -> usize {
        self.fates
            .iter()
            .take_while(|f| **f != Fate::Pending)
            .count()
    }
}

/// Why a send did not settle the whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendError {
    pub(crate) retryable: bool,
    pub(crate) message: String,
}

impl From<AwsError> for SendError {
    fn from(e: AwsError) -> Self {
        SendError {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

/// Per-record and per-entry error codes (Kinesis `ErrorCode`, IoT
/// Analytics and SiteWise `errorCode`) that a later try may get through.
pub(crate) fn retryable_code(code: &str) -> bool {
    [
        "Throttl",
        "ProvisionedThroughputExceeded",
        "Internal",
        "ServiceUnavailable",
        "LimitExceeded",
        "Timeout",
        "ConflictingOperation",
        "TooManyRequests",
    ]
    .iter()
    .any(|p| code.contains(p))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// When a batch of `messages` (read with room for `max`) is due: `None`
/// now, else after how long (the batching rules of the module docs).
pub(crate) fn due_in(
    messages: &[Message],
    max: usize,
    interval_ms: Option<i64>,
    now_ms: i64,
) -> Option<Duration> {
    let first = messages.first()?;
    if messages.len() >= max {
        return None;
    }
    let interval = interval_ms?;
    let due = first.ingest_time.saturating_add(interval);
    if now_ms >= due {
        None
    } else {
        Some(Duration::from_millis(
            u64::try_from(due - now_ms).unwrap_or(0),
        ))
    }
}

enum Gathered {
    Batch(Vec<Message>),
    Gone(String),
}

/// Waits for the next batch starting at `next`.
async fn gather(
    spec: &ExportSpec,
    env: &ExportEnv,
    next: i64,
    watch: &mut Option<tokio::sync::watch::Receiver<i64>>,
) -> Gathered {
    let max = spec.kind.batch_size();
    let interval = spec.kind.batch_interval_millis();
    loop {
        // Mark the current value seen before reading: an append after the
        // read then wakes us.
        if let Some(w) = watch.as_mut() {
            w.borrow_and_update();
        }
        let source = env.source.clone();
        let stream = spec.stream.clone();
        let read = tokio::task::spawn_blocking(move || source.read_from(&stream, next, max)).await;
        let messages = match read {
            Ok(Ok(m)) => m,
            Ok(Err(gone)) => return Gathered::Gone(gone),
            Err(e) => return Gathered::Gone(format!("reading the stream failed: {e}")),
        };
        let wait = if messages.is_empty() {
            POLL
        } else {
            match due_in(&messages, max, interval, now_ms()) {
                None => return Gathered::Batch(messages),
                Some(d) => d.min(POLL),
            }
        };
        match watch.as_mut() {
            Some(w) => {
                tokio::select! {
                    changed = w.changed() => if changed.is_err() {
                        // The store dropped the sender: poll from now on
                        // (a deleted stream shows as a read error).
                        *watch = None;
                    },
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            None => tokio::time::sleep(wait.min(POLL_NO_WATCH)).await,
        }
    }
}

/// Sends the batch's pending messages once through the destination's sink.
async fn send(spec: &ExportSpec, env: &ExportEnv, batch: &mut Batch) -> Result<(), SendError> {
    match &spec.kind {
        ExportKind::Kinesis(c) => super::kinesis::send(&env.aws, c, batch).await,
        ExportKind::IotAnalytics(c) => super::iotanalytics::send(&env.aws, c, batch).await,
        ExportKind::SiteWise(c) => super::sitewise::send(&env.aws, c, batch).await,
        ExportKind::S3Task(c) => super::s3::send(env, &spec.stream, c, batch).await,
    }
}

/// Counts the newly settled prefix of `batch` in the status and persists
/// the checkpoint over it.
async fn account(spec: &ExportSpec, shared: &Shared, batch: &mut Batch) {
    let settled = batch.settled_prefix();
    if settled <= batch.accounted {
        return;
    }
    let newly = batch.accounted..settled;
    batch.accounted = settled;
    let last = batch.messages[settled - 1].sequence_number;
    let (mut messages, mut bytes, mut skipped) = (0i64, 0i64, Vec::new());
    for i in newly {
        match &batch.fates[i] {
            Fate::Delivered => {
                messages += 1;
                bytes += i64::try_from(batch.messages[i].payload.len()).unwrap_or(i64::MAX);
            }
            Fate::Skipped(why) => skipped.push(format!(
                "message {} skipped: {why}",
                batch.messages[i].sequence_number
            )),
            Fate::Pending => {}
        }
    }
    let dir = spec.checkpoint_dir.clone();
    let id = spec.kind.identifier().to_string();
    let stored = tokio::task::spawn_blocking(move || checkpoint::store_checkpoint(&dir, &id, last))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
    if let Err(e) = &stored {
        // The export goes on; after a restart it resends from the older
        // checkpoint (at least once).
        tracing::warn!(stream = %spec.stream, export = spec.kind.identifier(), "cannot persist the export checkpoint: {e}");
    }
    shared.add_skipped(skipped.len() as u64);
    shared.update(|s| {
        s.last_exported_sequence_number = last;
        s.last_export_time = Some(now_ms());
        s.exported_messages_count = s.exported_messages_count.saturating_add(messages);
        s.exported_bytes_from_stream = s.exported_bytes_from_stream.saturating_add(bytes);
        if !skipped.is_empty() {
            s.error_message = Some(skipped.join("; "));
        }
        if let Err(e) = &stored {
            s.error_message = Some(format!("cannot persist the checkpoint: {e}"));
        }
    });
}

/// The export's task.
pub(crate) async fn run(
    spec: ExportSpec,
    env: ExportEnv,
    shared: Arc<Shared>,
    checkpoint: Option<i64>,
) {
    let mut next = spec
        .kind
        .start_sequence_number()
        .max(checkpoint.map_or(0, |c| c.saturating_add(1)));
    let mut watch = env.source.watch(&spec.stream);
    let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
    let priority = spec.kind.priority();
    loop {
        let messages = match gather(&spec, &env, next, &mut watch).await {
            Gathered::Batch(m) => m,
            Gathered::Gone(why) => {
                tracing::info!(stream = %spec.stream, export = spec.kind.identifier(), "export ends: {why}");
                shared.update(|s| s.error_message = Some(format!("export ended: {why}")));
                return;
            }
        };
        let mut batch = Batch::new(messages);
        let mut had_skips = false;
        loop {
            let result = {
                let _permit = env.gate.acquire(priority).await;
                send(&spec, &env, &mut batch).await
            }
            .and_then(|()| {
                // Sinks settle every message or fail; never spin on one
                // that returned early.
                if batch.pending().is_empty() {
                    Ok(())
                } else {
                    Err(SendError {
                        retryable: true,
                        message: "the destination left messages unacknowledged".into(),
                    })
                }
            });
            had_skips |= batch.fates.iter().any(|f| matches!(f, Fate::Skipped(_)));
            account(&spec, &shared, &mut batch).await;
            match result {
                Ok(()) => {
                    backoff.reset();
                    if !had_skips {
                        shared.update(|s| s.error_message = None);
                    }
                    break;
                }
                Err(e) => {
                    let delay = if e.retryable {
                        backoff.next_delay()
                    } else {
                        PERMANENT_RETRY
                    };
                    tracing::warn!(
                        stream = %spec.stream,
                        export = spec.kind.identifier(),
                        retry_in_ms = delay.as_millis() as u64,
                        "export failed: {}", e.message
                    );
                    shared.update(|s| s.error_message = Some(e.message.clone()));
                    tokio::time::sleep(delay).await;
                }
            }
        }
        if let Some(last) = batch.messages.last() {
            next = last.sequence_number.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(n: usize, ingest: i64) -> Vec<Message> {
        (0..n)
            .map(|i| Message {
                stream_name: "s".into(),
                sequence_number: i as i64,
                ingest_time: ingest,
                payload: vec![1],
            })
            .collect()
    }

    #[test]
    fn without_an_interval_anything_is_sent_at_once() {
        assert_eq!(due_in(&msgs(1, 0), 10, None, 0), None);
        assert_eq!(due_in(&msgs(0, 0), 10, None, 0), None);
    }

    #[test]
    fn with_an_interval_a_full_batch_or_an_old_message_is_due() {
        let iv = Some(60_000);
        // Full batch: due at once, however young.
        assert_eq!(due_in(&msgs(10, 1_000), 10, iv, 1_000), None);
        // Not full, oldest 10 s old: due in 50 s.
        assert_eq!(
            due_in(&msgs(3, 1_000), 10, iv, 11_000),
            Some(Duration::from_secs(50))
        );
        // Oldest exactly the interval old: due.
        assert_eq!(due_in(&msgs(3, 1_000), 10, iv, 61_000), None);
    }

    #[test]
    fn retryable_codes() {
        for c in [
            "ProvisionedThroughputExceededException",
            "InternalFailure",
            "InternalFailureException",
            "ThrottlingException",
            "ServiceUnavailableException",
            "LimitExceededException",
        ] {
            assert!(retryable_code(c), "{c}");
        }
        for c in [
            "InvalidRequestException",
            "ResourceNotFoundException",
            "TimestampOutOfRangeException",
            "AccessDeniedException",
        ] {
            assert!(!retryable_code(c), "{c}");
        }
    }

    #[test]
    fn the_settled_prefix_stops_at_the_first_pending() {
        let mut b = Batch::new(msgs(4, 0));
        b.deliver(0);
        b.deliver(2);
        assert_eq!(b.settled_prefix(), 1);
        b.skip(1, "bad".into());
        assert_eq!(b.settled_prefix(), 3);
        assert_eq!(b.pending(), vec![3]);
    }
}
