//! The per-stream queues: admission against `DeliveryStreamQueueSize`,
//! cutting batches (at most 500 records / 4 MiB per `PutRecordBatch`),
//! putting retryable failures back, and the backoff that spaces retries,
//! as rules for the kit's batching queue. Pure bookkeeping with the clock
//! passed in; it never calls the service.

use std::time::{Duration, Instant};

use evergreen_connector_kit::batch::{Admission, BatchQueue, Capacity, Policy, RetryTo, WhenFull};
use evergreen_connector_kit::Backoff;

use crate::request::{Record, StreamArn};

/// `PutRecordBatch` takes at most this many records…
pub const MAX_BATCH_RECORDS: usize = 500;
/// …and at most this many bytes of data (before base64).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// First wait after a retryable failure; doubled per failure in a row.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
/// Longest wait between retries of one stream.
pub const BACKOFF_MAX: Duration = Duration::from_secs(20);

/// Records taken from one stream's queue for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub stream: StreamArn,
    pub records: Vec<Record>,
}

/// Every stream's queue: the kit's batching queue with Firehose's rules
/// (capacity per stream, new records refused when full, a full batch by
/// count or bytes sent at once, retries to the end of the queue).
#[derive(Debug)]
pub struct Queues {
    inner: BatchQueue<StreamArn, Record>,
}

fn size(record: &Record) -> usize {
    record.data.len()
}

impl Queues {
    /// `capacity` records per stream (queued or in flight); batches of at
    /// most `max_records` (1 for the unbatched version 1).
    pub fn new(capacity: usize, max_records: usize, immediate: bool) -> Self {
        Queues {
            inner: BatchQueue::new(Policy {
                max_batch_items: max_records.clamp(1, MAX_BATCH_RECORDS),
                max_batch_bytes: MAX_BATCH_BYTES,
                full_by_bytes: true,
                capacity,
                scope: Capacity::PerKey,
                when_full: WhenFull::RefuseNew,
                retry_to: RetryTo::Back,
                immediate,
                backoff_initial: BACKOFF_INITIAL,
                backoff_max: BACKOFF_MAX,
            }),
        }
    }

    /// Queues `record` for `stream`, or hands it back when the stream
    /// already holds `capacity` records (new records are the ones refused).
    pub fn offer(&mut self, stream: &StreamArn, record: Record) -> Result<(), Record> {
        match self.inner.offer(stream, record) {
            Admission::Queued => Ok(()),
            Admission::Refused(r) | Admission::ReplacedOldest(r) => Err(r),
        }
    }

    /// The publish interval elapsed: every stream sends what it has.
    pub fn mark_all_due(&mut self) {
        self.inner.mark_all_due();
    }

    /// Batches to send now: one per stream that has no call out, is not
    /// waiting out a backoff, and has a full batch, is due, or sends
    /// immediately.
    pub fn take_ready(&mut self, now: Instant) -> Vec<Batch> {
        self.inner
            .take_ready(now, size)
            .into_iter()
            .map(|b| Batch {
                stream: b.key,
                records: b.items,
            })
            .collect()
    }

    /// A call for `stream` is over: `settled` records are done (delivered
    /// or failed for good) and `retry` go back to the end of the queue, as
    /// the Greengrass connector does. Any retry starts (or lengthens) the
    /// stream's backoff; a call with none resets it.
    pub fn finish(&mut self, stream: &StreamArn, settled: usize, retry: Vec<Record>, now: Instant) {
        self.inner.finish(stream, settled, retry, now);
    }

    /// When the earliest backoff ends, if any stream is waiting one out
    /// with records queued.
    pub fn next_retry(&self) -> Option<Instant> {
        self.inner.next_retry()
    }

    /// Records held for `stream` (queued and in flight).
    pub fn held(&self, stream: &StreamArn) -> usize {
        self.inner.held_by(stream)
    }

    /// Records held across all streams.
    pub fn total_held(&self) -> usize {
        self.inner.held()
    }

    /// Whether any call is out.
    pub fn calling(&self) -> bool {
        self.inner.calling()
    }

    pub fn capacity(&self) -> usize {
        self.inner.policy().capacity
    }
}

/// The wait after `failures` retryable failures in a row:
/// 250 ms, 500 ms, 1 s, … up to 20 s.
pub fn backoff(failures: u32) -> Duration {
    Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX).delay_after(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str) -> StreamArn {
        StreamArn::parse(&format!(
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/{name}"
        ))
        .expect("arn")
    }

    fn rec(i: usize, len: usize) -> Record {
        Record {
            id: Some(i.to_string()),
            data: vec![b'x'; len],
        }
    }

    #[test]
    fn a_full_stream_refuses_new_records_and_in_flight_ones_count() {
        let s = stream("a");
        let mut q = Queues::new(3, 500, true);
        for i in 0..3 {
            q.offer(&s, rec(i, 1)).expect("room");
        }
        assert_eq!(q.offer(&s, rec(3, 1)), Err(rec(3, 1)));
        // Another stream has its own room.
        q.offer(&stream("b"), rec(9, 1)).expect("other stream");
        let now = Instant::now();
        let batches = q.take_ready(now);
        assert_eq!(batches.len(), 2);
        assert_eq!(q.held(&s), 3, "in flight still counts");
        assert!(q.offer(&s, rec(4, 1)).is_err());
        // Everything fails retryably: it all fits back.
        let a = batches.into_iter().find(|b| b.stream == s).expect("a");
        q.finish(&s, 0, a.records, now);
        assert_eq!(q.held(&s), 3);
        assert!(q.take_ready(now).is_empty(), "backing off");
        assert_eq!(q.next_retry(), Some(now + BACKOFF_INITIAL));
        let later = now + BACKOFF_INITIAL;
        let again = q.take_ready(later);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].records.len(), 3);
        q.finish(&s, 3, vec![], later);
        assert_eq!(q.held(&s), 0);
        q.offer(&s, rec(5, 1)).expect("room again");
    }

    #[test]
    fn batches_wait_for_the_interval_unless_full() {
        let s = stream("a");
        let mut q = Queues::new(5000, 500, false);
        let now = Instant::now();
        for i in 0..499 {
            q.offer(&s, rec(i, 1)).expect("room");
        }
        assert!(q.take_ready(now).is_empty(), "not due, not full");
        q.offer(&s, rec(499, 1)).expect("room");
        q.offer(&s, rec(500, 1)).expect("room");
        let b = q.take_ready(now);
        assert_eq!(b.len(), 1);
        assert_eq!(
            b[0].records.len(),
            MAX_BATCH_RECORDS,
            "a full batch goes at once"
        );
        assert_eq!(b[0].records[0].id.as_deref(), Some("0"), "in order");
        q.finish(&s, 500, vec![], now);
        assert!(q.take_ready(now).is_empty(), "the rest waits");
        q.mark_all_due();
        let b = q.take_ready(now);
        assert_eq!(b[0].records.len(), 1);
        q.finish(&s, 1, vec![], now);
        q.offer(&s, rec(501, 1)).expect("room");
        assert!(q.take_ready(now).is_empty(), "drained: no longer due");
    }

    #[test]
    fn batches_respect_the_byte_limit_and_one_call_per_stream() {
        let s = stream("a");
        let mut q = Queues::new(5000, 500, true);
        let big = 1_000_000;
        for i in 0..6 {
            q.offer(&s, rec(i, big)).expect("room");
        }
        let now = Instant::now();
        let b = q.take_ready(now);
        assert_eq!(b[0].records.len(), 4, "4 x 1,000,000 <= 4 MiB < 5 x");
        assert!(q.take_ready(now).is_empty(), "one call at a time");
        q.finish(&s, 4, vec![], now);
        assert_eq!(q.take_ready(now)[0].records.len(), 2);
    }

    #[test]
    fn version_one_sends_one_record_per_call() {
        let s = stream("a");
        let mut q = Queues::new(2000, 1, true);
        q.offer(&s, rec(0, 1)).expect("room");
        q.offer(&s, rec(1, 1)).expect("room");
        assert_eq!(q.take_ready(Instant::now())[0].records.len(), 1);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(4), Duration::from_secs(2));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
