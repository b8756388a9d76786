//! The per-channel queues: admission (queue size, drop behaviour, active
//! channel limit), which batches are due, and what an answer does to them.
//!
//! Pure state with the clock passed in, so the rules are unit-tested
//! without a network or a timer. Items in flight are out of their queue but
//! still count against its size, so a retried batch always has room to go
//! back to the front: an accepted message is never lost to a retry.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use evergreen_aws::AwsError;
use evergreen_connector_kit::Backoff;
use serde_json::Value;

/// First retry delay of a channel after a transient failure.
pub const RETRY_INITIAL: Duration = Duration::from_millis(500);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// Per-message error codes of `BatchPutMessage` worth another try.
const RETRYABLE_ENTRY_CODES: &[&str] = &[
    "InternalFailureException",
    "ServiceUnavailableException",
    "ThrottlingException",
];

/// What happens to a new message when its channel's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropBehavior {
    /// The new message is refused.
    DropNewest,
    /// The oldest message waiting (not in flight) is dropped for it.
    DropOldest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    pub queue_size: usize,
    pub batch_size: usize,
    pub max_channels: usize,
    pub drop: DropBehavior,
    pub interval: Duration,
}

/// One message on its way to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The `messageId` sent, and the status message's `id`.
    pub id: String,
    pub payload: Vec<u8>,
}

/// The status to publish for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub id: String,
    /// `None` for success, else `(error, error_message)`.
    pub error: Option<(String, String)>,
}

impl Outcome {
    pub fn success(id: &str) -> Outcome {
        Outcome {
            id: id.to_string(),
            error: None,
        }
    }

    pub fn fail(id: &str, error: &str, message: impl Into<String>) -> Outcome {
        Outcome {
            id: id.to_string(),
            error: Some((error.to_string(), message.into())),
        }
    }
}

/// A batch to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub channel: String,
    pub items: Vec<Item>,
}

#[derive(Debug)]
struct Channel {
    queue: VecDeque<Item>,
    in_flight: usize,
    next_send: Instant,
    backoff: Backoff,
}

/// Every channel's queue.
#[derive(Debug)]
pub struct Queues {
    config: QueueConfig,
    channels: BTreeMap<String, Channel>,
}

impl Queues {
    pub fn new(config: QueueConfig) -> Queues {
        Queues {
            config,
            channels: BTreeMap::new(),
        }
    }

    /// Queues `item` for `channel`. Returns the statuses this causes at
    /// once: the refused new message, or the dropped oldest one.
    pub fn admit(&mut self, channel: &str, item: Item, now: Instant) -> Option<Outcome> {
        if !self.channels.contains_key(channel) {
            if self.channels.len() >= self.config.max_channels {
                return Some(Outcome::fail(
                    &item.id,
                    "TooManyChannelsException",
                    format!(
                        "the connector already has {} active channels (IotAnalyticsMaxActiveChannels); \
                         message for channel {channel} not sent",
                        self.config.max_channels
                    ),
                ));
            }
            self.channels.insert(
                channel.to_string(),
                Channel {
                    queue: VecDeque::new(),
                    in_flight: 0,
                    // The first message waits one interval for company.
                    next_send: now + self.config.interval,
                    backoff: Backoff::jittered(RETRY_INITIAL, RETRY_MAX),
                },
            );
        }
        let size = self.config.queue_size;
        let c = self.channels.get_mut(channel)?;
        if c.queue.len() + c.in_flight < size {
            c.queue.push_back(item);
            return None;
        }
        let full = |id: &str| {
            Outcome::fail(
                id,
                "QueueFullException",
                format!(
                    "the queue of channel {channel} is full ({size} messages, \
                     IotAnalyticsQueueSizePerChannel); message dropped"
                ),
            )
        };
        match self.config.drop {
            DropBehavior::DropNewest => Some(full(&item.id)),
            DropBehavior::DropOldest => match c.queue.pop_front() {
                Some(oldest) => {
                    c.queue.push_back(item);
                    Some(full(&oldest.id))
                }
                // Everything is in flight: nothing waiting can give way.
                None => Some(full(&item.id)),
            },
        }
    }

    /// The batches due at `now` (one per channel with nothing in flight),
    /// and the statuses of messages dropped because their id is already in
    /// the batch (IoT Analytics ids must be unique within a batch).
    pub fn due(&mut self, now: Instant) -> (Vec<Batch>, Vec<Outcome>) {
        let mut batches = Vec::new();
        let mut dropped = Vec::new();
        for (name, c) in &mut self.channels {
            if c.in_flight > 0 || c.queue.is_empty() || c.next_send > now {
                continue;
            }
            let mut ids = HashSet::new();
            let mut items = Vec::new();
            while items.len() < self.config.batch_size {
                let Some(item) = c.queue.pop_front() else {
                    break;
                };
                if ids.insert(item.id.clone()) {
                    items.push(item);
                } else {
                    dropped.push(Outcome::fail(
                        &item.id,
                        "InvalidInputException",
                        format!(
                            "id {} is already in this batch for channel {name} (ids must be unique \
                             within a batch); message dropped",
                            item.id
                        ),
                    ));
                }
            }
            c.in_flight = items.len();
            if !items.is_empty() {
                batches.push(Batch {
                    channel: name.clone(),
                    items,
                });
            }
        }
        self.channels
            .retain(|_, c| c.in_flight > 0 || !c.queue.is_empty());
        (batches, dropped)
    }

    /// Applies `BatchPutMessage`'s answer for `batch`: the statuses to
    /// publish. Retryable failures go back to the front of the queue and
    /// the channel waits its backoff; nothing is reported for them yet.
    pub fn completed(
        &mut self,
        batch: Batch,
        answer: Result<Value, AwsError>,
        now: Instant,
    ) -> (Vec<Outcome>, Option<String>) {
        let Some(c) = self.channels.get_mut(&batch.channel) else {
            return (Vec::new(), None);
        };
        c.in_flight = 0;
        let mut outcomes = Vec::new();
        let mut retry = Vec::new();
        let mut note = None;
        match answer {
            Err(e) if e.is_retryable() => {
                note = Some(format!(
                    "channel {}: {e}; {} messages will be retried",
                    batch.channel,
                    batch.items.len()
                ));
                retry = batch.items;
            }
            Err(e) => {
                let message = e.message();
                outcomes.extend(
                    batch
                        .items
                        .iter()
                        .map(|i| Outcome::fail(&i.id, e.code(), message.clone())),
                );
            }
            Ok(body) => {
                let errors = error_entries(&body);
                for item in batch.items {
                    match errors.iter().find(|(id, _, _)| *id == item.id) {
                        None => outcomes.push(Outcome::success(&item.id)),
                        Some((_, code, _)) if RETRYABLE_ENTRY_CODES.contains(&code.as_str()) => {
                            retry.push(item)
                        }
                        Some((_, code, message)) => {
                            outcomes.push(Outcome::fail(&item.id, code, message.clone()))
                        }
                    }
                }
                if !retry.is_empty() {
                    note = Some(format!(
                        "channel {}: {} messages failed transiently and will be retried",
                        batch.channel,
                        retry.len()
                    ));
                }
            }
        }
        if retry.is_empty() {
            c.backoff.reset();
            c.next_send = now;
        } else {
            c.next_send = now + c.backoff.next_delay();
            for item in retry.into_iter().rev() {
                c.queue.push_front(item);
            }
        }
        if c.queue.is_empty() {
            self.channels.remove(&batch.channel);
        }
        (outcomes, note)
    }

    /// When the next batch may be due (`None`: nothing is waiting).
    pub fn next_due(&self) -> Option<Instant> {
        self.channels
            .values()
            .filter(|c| c.in_flight == 0 && !c.queue.is_empty())
            .map(|c| c.next_send)
            .min()
    }

    /// Sends everything waiting without waiting for the interval (shutdown).
    pub fn hurry(&mut self, now: Instant) {
        for c in self.channels.values_mut() {
            c.next_send = c.next_send.min(now);
        }
    }

    /// Messages queued or in flight.
    pub fn len(&self) -> usize {
        self.channels
            .values()
            .map(|c| c.queue.len() + c.in_flight)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channels with messages queued or in flight.
    pub fn active_channels(&self) -> usize {
        self.channels.len()
    }
}

/// `batchPutMessageErrorEntries`: (messageId, errorCode, errorMessage).
fn error_entries(body: &Value) -> Vec<(String, String, String)> {
    body.get("batchPutMessageErrorEntries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let s = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (s("messageId"), s("errorCode"), s("errorMessage"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(drop: DropBehavior) -> QueueConfig {
        QueueConfig {
            queue_size: 3,
            batch_size: 2,
            max_channels: 2,
            drop,
            interval: Duration::from_secs(1),
        }
    }

    fn item(id: &str) -> Item {
        Item {
            id: id.into(),
            payload: id.as_bytes().to_vec(),
        }
    }

    fn ids(b: &Batch) -> Vec<&str> {
        b.items.iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn batches_wait_for_the_interval_and_hold_at_most_batch_size() {
        let t0 = Instant::now();
        let mut q = Queues::new(config(DropBehavior::DropNewest));
        for id in ["a", "b", "c"] {
            assert_eq!(q.admit("ch", item(id), t0), None);
        }
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(1)));
        assert!(q.due(t0).0.is_empty(), "not before the interval");
        let (batches, dropped) = q.due(t0 + Duration::from_secs(1));
        assert!(dropped.is_empty());
        assert_eq!(batches.len(), 1);
        assert_eq!(ids(&batches[0]), ["a", "b"]);
        assert!(
            q.due(t0 + Duration::from_secs(2)).0.is_empty(),
            "one in flight per channel"
        );
        let t1 = t0 + Duration::from_secs(2);
        let (out, note) = q.completed(
            batches[0].clone(),
            Ok(json!({"batchPutMessageErrorEntries": []})),
            t1,
        );
        assert_eq!(out, vec![Outcome::success("a"), Outcome::success("b")]);
        assert_eq!(note, None);
        let (batches, _) = q.due(t1);
        assert_eq!(ids(&batches[0]), ["c"], "the rest goes right after");
        let (out, _) = q.completed(batches[0].clone(), Ok(Value::Null), t1);
        assert_eq!(out, vec![Outcome::success("c")]);
        assert!(q.is_empty());
        assert_eq!(q.active_channels(), 0, "an emptied queue is deleted");
    }

    #[test]
    fn a_full_queue_drops_the_newest_or_the_oldest_waiting() {
        let t0 = Instant::now();
        let mut q = Queues::new(config(DropBehavior::DropNewest));
        for id in ["a", "b", "c"] {
            q.admit("ch", item(id), t0);
        }
        let refused = q.admit("ch", item("d"), t0).expect("full");
        assert_eq!(refused.id, "d");
        assert_eq!(
            refused.error.as_ref().map(|e| e.0.as_str()),
            Some("QueueFullException")
        );

        let mut q = Queues::new(config(DropBehavior::DropOldest));
        for id in ["a", "b", "c"] {
            q.admit("ch", item(id), t0);
        }
        // a and b go in flight; c is the oldest waiting.
        let (batches, _) = q.due(t0 + Duration::from_secs(1));
        assert_eq!(ids(&batches[0]), ["a", "b"]);
        let dropped = q.admit("ch", item("d"), t0).expect("full");
        assert_eq!(
            dropped.id, "c",
            "the oldest waiting gives way, not one in flight"
        );
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn retryable_failures_go_back_to_the_front_and_wait() {
        let t0 = Instant::now();
        let mut q = Queues::new(config(DropBehavior::DropNewest));
        for id in ["a", "b", "c"] {
            q.admit("ch", item(id), t0);
        }
        let t1 = t0 + Duration::from_secs(1);
        let (batches, _) = q.due(t1);
        // While a and b are out, the queue is still full: they keep their room.
        assert!(q.admit("ch", item("d"), t1).is_some());
        let (out, note) = q.completed(
            batches[0].clone(),
            Err(AwsError::Transport("connection refused".into())),
            t1,
        );
        assert!(out.is_empty(), "nothing reported yet");
        assert!(note.is_some_and(|n| n.contains("retried")));
        let wake = q.next_due().expect("waiting");
        assert!(wake > t1 && wake <= t1 + RETRY_INITIAL, "backoff");
        assert!(q.due(t1).0.is_empty());
        let (batches, _) = q.due(wake);
        assert_eq!(ids(&batches[0]), ["a", "b"], "same order");

        // A per-message throttle retries that message only; a per-message
        // error that cannot be cured fails it.
        let answer = json!({"batchPutMessageErrorEntries": [
            {"messageId": "a", "errorCode": "ThrottlingException", "errorMessage": "slow"},
            {"messageId": "b", "errorCode": "InvalidRequestException", "errorMessage": "bad payload"}]});
        let (out, _) = q.completed(batches[0].clone(), Ok(answer), wake);
        assert_eq!(
            out,
            vec![Outcome::fail("b", "InvalidRequestException", "bad payload")]
        );
        let later = q.next_due().expect("a waits");
        let (batches, _) = q.due(later);
        assert_eq!(ids(&batches[0]), ["a", "c"]);

        // A service error that retrying cannot cure fails the whole batch.
        let err = AwsError::Service {
            status: 404,
            code: "ResourceNotFoundException".into(),
            message: "A resource with the specified name could not be found.".into(),
        };
        let (out, _) = q.completed(batches[0].clone(), Err(err), later);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|o| o
            .error
            .as_ref()
            .is_some_and(|e| e.0 == "ResourceNotFoundException")));
        assert!(q.is_empty());
    }

    #[test]
    fn duplicate_ids_in_a_batch_are_dropped_and_channels_are_limited() {
        let t0 = Instant::now();
        let mut q = Queues::new(config(DropBehavior::DropNewest));
        q.admit("ch", item("x"), t0);
        q.admit("ch", item("x"), t0);
        q.admit("ch", item("y"), t0);
        let (batches, dropped) = q.due(t0 + Duration::from_secs(1));
        assert_eq!(ids(&batches[0]), ["x", "y"]);
        assert_eq!(dropped.len(), 1);
        assert!(dropped[0]
            .error
            .as_ref()
            .is_some_and(|e| e.1.contains("unique")));

        q.admit("two", item("a"), t0);
        let refused = q.admit("three", item("b"), t0).expect("limit");
        assert_eq!(
            refused.error.map(|e| e.0).as_deref(),
            Some("TooManyChannelsException")
        );
        q.hurry(t0);
        assert_eq!(q.next_due(), Some(t0));
    }
}
