//! The metric buffer: per-namespace queues under one `MaxMetricsToRetain`
//! bound, the oldest metric of the same namespace dropped when it is full,
//! batches of at most 20 metrics (one `PutMetricData`), retries put back at
//! the front so they go in the next batch, and the backoff between them,
//! as rules for the kit's batching queue. Pure bookkeeping with the clock passed in; it never calls the service.

use std::time::{Duration, Instant};

use evergreen_connector_kit::batch::{self, BatchQueue, Capacity, Policy, RetryTo, WhenFull};
use evergreen_connector_kit::Backoff;

use crate::request::Datum;

/// `PutMetricData` takes at most 20 metrics…
pub const MAX_BATCH_METRICS: usize = 20;
/// …and a request of at most 40 KB (the guide's figure; estimated from the
/// parameters before URL encoding).
pub const MAX_BATCH_BYTES: usize = 40 * 1024;
/// First wait after a retryable failure; doubled per failure in a row.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
/// Longest wait between retries of one namespace.
pub const BACKOFF_MAX: Duration = Duration::from_secs(20);

/// What became of a metric offered to the buffer.
pub type Admission = batch::Admission<Datum>;

/// Metrics taken from one namespace for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub namespace: String,
    pub data: Vec<Datum>,
}

/// The buffer of every namespace: the kit's batching queue with
/// CloudWatch's rules (one bound across namespaces, the namespace's oldest
/// replaced when full, 20 metrics per call, retries first in the next).
#[derive(Debug)]
pub struct Buffer {
    inner: BatchQueue<String, Datum>,
}

impl Buffer {
    pub fn new(max: usize, immediate: bool) -> Self {
        Buffer {
            inner: BatchQueue::new(Policy {
                max_batch_items: MAX_BATCH_METRICS,
                max_batch_bytes: MAX_BATCH_BYTES,
                // Only a count of 20 makes a batch full: the byte estimate
                // cuts batches but never sends one early.
                full_by_bytes: false,
                capacity: max,
                scope: Capacity::Total,
                when_full: WhenFull::ReplaceOldestOfKey,
                retry_to: RetryTo::Front,
                immediate,
                backoff_initial: BACKOFF_INITIAL,
                backoff_max: BACKOFF_MAX,
            }),
        }
    }

    /// Buffers `datum` for `namespace`, dropping that namespace's oldest
    /// queued metric when the buffer is full.
    pub fn offer(&mut self, namespace: &str, datum: Datum) -> Admission {
        self.inner.offer(&namespace.to_string(), datum)
    }

    /// The publish interval elapsed: every namespace sends what it has.
    pub fn mark_all_due(&mut self) {
        self.inner.mark_all_due();
    }

    /// Batches to send now: one per namespace that has no call out, is not
    /// backing off, and has 20 metrics, is due, or sends immediately.
    pub fn take_ready(&mut self, now: Instant, size: impl Fn(&Datum) -> usize) -> Vec<Batch> {
        self.inner
            .take_ready(now, size)
            .into_iter()
            .map(|b| Batch {
                namespace: b.key,
                data: b.items,
            })
            .collect()
    }

    /// A call for `namespace` is over: `settled` metrics are done and
    /// `retry` go back to the front of the queue, in their order, for the
    /// next batch. Any retry starts (or lengthens) the backoff.
    pub fn finish(&mut self, namespace: &str, settled: usize, retry: Vec<Datum>, now: Instant) {
        self.inner
            .finish(&namespace.to_string(), settled, retry, now);
    }

    /// When the earliest backoff ends, if a namespace waits one out.
    pub fn next_retry(&self) -> Option<Instant> {
        self.inner.next_retry()
    }

    /// Metrics held (queued and in flight) across namespaces.
    pub fn held(&self) -> usize {
        self.inner.held()
    }

    pub fn calling(&self) -> bool {
        self.inner.calling()
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

    fn d(v: f64) -> Datum {
        Datum {
            metric_name: "m".into(),
            dimensions: vec![],
            timestamp_ms: 0,
            value: v,
            unit: None,
        }
    }

    fn values(b: &Batch) -> Vec<f64> {
        b.data.iter().map(|d| d.value).collect()
    }

    #[test]
    fn twenty_in_a_namespace_go_at_once_the_rest_at_the_interval() {
        let mut b = Buffer::new(2000, false);
        let now = Instant::now();
        for i in 0..19 {
            assert_eq!(b.offer("A", d(f64::from(i))), Admission::Queued);
        }
        b.offer("B", d(100.0));
        assert!(b.take_ready(now, |_| 10).is_empty());
        b.offer("A", d(19.0));
        b.offer("A", d(20.0));
        let batches = b.take_ready(now, |_| 10);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].namespace, "A");
        assert_eq!(
            values(&batches[0]),
            (0..20).map(f64::from).collect::<Vec<_>>()
        );
        b.finish("A", 20, vec![], now);
        b.mark_all_due();
        let mut batches = b.take_ready(now, |_| 10);
        batches.sort_by(|x, y| x.namespace.cmp(&y.namespace));
        assert_eq!(
            batches.iter().map(values).collect::<Vec<_>>(),
            vec![vec![20.0], vec![100.0]]
        );
    }

    #[test]
    fn when_full_the_oldest_of_the_same_namespace_is_dropped() {
        let mut b = Buffer::new(3, false);
        b.offer("A", d(1.0));
        b.offer("A", d(2.0));
        b.offer("B", d(3.0));
        assert_eq!(b.offer("A", d(4.0)), Admission::ReplacedOldest(d(1.0)));
        assert_eq!(b.offer("C", d(5.0)), Admission::Refused(d(5.0)));
        assert_eq!(b.held(), 3);
        b.mark_all_due();
        let now = Instant::now();
        let batches = b.take_ready(now, |_| 10);
        let a = batches.iter().find(|x| x.namespace == "A").expect("A");
        assert_eq!(values(a), vec![2.0, 4.0]);
    }

    #[test]
    fn retries_go_first_in_the_next_batch_after_a_backoff() {
        let mut b = Buffer::new(2000, true);
        let now = Instant::now();
        b.offer("A", d(1.0));
        b.offer("A", d(2.0));
        let first = b.take_ready(now, |_| 10).remove(0);
        b.offer("A", d(3.0));
        assert!(b.take_ready(now, |_| 10).is_empty(), "one call at a time");
        b.finish("A", 0, first.data, now);
        assert_eq!(b.held(), 3);
        assert!(b.take_ready(now, |_| 10).is_empty(), "backing off");
        assert_eq!(b.next_retry(), Some(now + BACKOFF_INITIAL));
        let again = b.take_ready(now + BACKOFF_INITIAL, |_| 10).remove(0);
        assert_eq!(values(&again), vec![1.0, 2.0, 3.0]);
        b.finish("A", 3, vec![], now);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn batches_respect_the_byte_estimate() {
        let mut b = Buffer::new(2000, true);
        for i in 0..5 {
            b.offer("A", d(f64::from(i)));
        }
        let batch = b.take_ready(Instant::now(), |_| 15 * 1024).remove(0);
        assert_eq!(batch.data.len(), 2, "2 x 15 KiB <= 40 KiB < 3 x");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
