//! The metric buffer: per-namespace queues under one `MaxMetricsToRetain`
//! bound, the oldest metric of the same namespace dropped when it is full,
//! batches of at most 20 metrics (one `PutMetricData`), retries put back at
//! the front so they go in the next batch, and the backoff between them,
//! as rules for the kit's batching queue. Pure bookkeeping with the clock passed in; it never calls the service.

use std::time::Duration;

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

/// Metrics taken from one namespace (the key) for one call.
pub type Batch = batch::Batch<String, Datum>;

/// The buffer of every namespace, keyed by namespace.
pub type Buffer = BatchQueue<String, Datum>;

/// The kit's batching queue with CloudWatch's rules: one bound (`max`) across namespaces, the
/// namespace's oldest metric replaced when full, 20 metrics per call, retries first in the
/// next; `immediate` sends without waiting for the interval.
pub fn buffer(max: usize, immediate: bool) -> Buffer {
    BatchQueue::new(Policy {
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
    })
}

/// The wait after `failures` retryable failures in a row:
/// 250 ms, 500 ms, 1 s, … up to 20 s.
pub fn backoff(failures: u32) -> Duration {
    Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX).delay_after(failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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
        b.items.iter().map(|d| d.value).collect()
    }

    #[test]
    fn twenty_in_a_namespace_go_at_once_the_rest_at_the_interval() {
        let mut b = buffer(2000, false);
        let now = Instant::now();
        for i in 0..19 {
            assert_eq!(b.offer(&"A".into(), d(f64::from(i))), Admission::Queued);
        }
        b.offer(&"B".into(), d(100.0));
        assert!(b.take_ready(now, |_| 10).is_empty());
        b.offer(&"A".into(), d(19.0));
        b.offer(&"A".into(), d(20.0));
        let batches = b.take_ready(now, |_| 10);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].key, "A");
        assert_eq!(
            values(&batches[0]),
            (0..20).map(f64::from).collect::<Vec<_>>()
        );
        b.finish(&"A".into(), 20, vec![], now);
        b.mark_all_due();
        let mut batches = b.take_ready(now, |_| 10);
        batches.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(
            batches.iter().map(values).collect::<Vec<_>>(),
            vec![vec![20.0], vec![100.0]]
        );
    }

    #[test]
    fn when_full_the_oldest_of_the_same_namespace_is_dropped() {
        let mut b = buffer(3, false);
        b.offer(&"A".into(), d(1.0));
        b.offer(&"A".into(), d(2.0));
        b.offer(&"B".into(), d(3.0));
        assert_eq!(
            b.offer(&"A".into(), d(4.0)),
            Admission::ReplacedOldest(d(1.0))
        );
        assert_eq!(b.offer(&"C".into(), d(5.0)), Admission::Refused(d(5.0)));
        assert_eq!(b.held(), 3);
        b.mark_all_due();
        let now = Instant::now();
        let batches = b.take_ready(now, |_| 10);
        let a = batches.iter().find(|x| x.key == "A").expect("A");
        assert_eq!(values(a), vec![2.0, 4.0]);
    }

    #[test]
    fn retries_go_first_in_the_next_batch_after_a_backoff() {
        let mut b = buffer(2000, true);
        let now = Instant::now();
        b.offer(&"A".into(), d(1.0));
        b.offer(&"A".into(), d(2.0));
        let first = b.take_ready(now, |_| 10).remove(0);
        b.offer(&"A".into(), d(3.0));
        assert!(b.take_ready(now, |_| 10).is_empty(), "one call at a time");
        b.finish(&"A".into(), 0, first.items, now);
        assert_eq!(b.held(), 3);
        assert!(b.take_ready(now, |_| 10).is_empty(), "backing off");
        assert_eq!(b.next_retry(), Some(now + BACKOFF_INITIAL));
        let again = b.take_ready(now + BACKOFF_INITIAL, |_| 10).remove(0);
        assert_eq!(values(&again), vec![1.0, 2.0, 3.0]);
        b.finish(&"A".into(), 3, vec![], now);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn batches_respect_the_byte_estimate() {
        let mut b = buffer(2000, true);
        for i in 0..5 {
            b.offer(&"A".into(), d(f64::from(i)));
        }
        let batch = b.take_ready(Instant::now(), |_| 15 * 1024).remove(0);
        assert_eq!(batch.items.len(), 2, "2 x 15 KiB <= 40 KiB < 3 x");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
