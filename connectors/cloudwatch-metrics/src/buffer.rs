//! The metric buffer: per-namespace queues under one `MaxMetricsToRetain`
//! bound, the oldest metric of the same namespace dropped when it is full,
//! batches of at most 20 metrics (one `PutMetricData`), retries put back at
//! the front so they go in the next batch, and the backoff between them.
//! Pure bookkeeping with the clock passed in; it never calls the service.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

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
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Queued,
    /// The buffer was full: the namespace's oldest queued metric was dropped.
    ReplacedOldest(Datum),
    /// The buffer was full and this namespace has nothing queued to drop.
    Refused(Datum),
}

/// Metrics taken from one namespace for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub namespace: String,
    pub data: Vec<Datum>,
}

#[derive(Debug, Default)]
struct Namespace {
    queue: VecDeque<Datum>,
    /// Metrics whose call is out; they count against the bound, so putting
    /// them back always fits.
    in_flight: usize,
    calling: bool,
    due: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

/// The buffer of every namespace.
#[derive(Debug)]
pub struct Buffer {
    max: usize,
    /// `PublishInterval` 0: send as soon as anything is queued.
    immediate: bool,
    held: usize,
    namespaces: BTreeMap<String, Namespace>,
}

impl Buffer {
    pub fn new(max: usize, immediate: bool) -> Self {
        Buffer {
            max: max.max(1),
            immediate,
            held: 0,
            namespaces: BTreeMap::new(),
        }
    }

    /// Buffers `datum` for `namespace`, dropping that namespace's oldest
    /// queued metric when the buffer is full.
    pub fn offer(&mut self, namespace: &str, datum: Datum) -> Admission {
        let ns = self.namespaces.entry(namespace.to_string()).or_default();
        if self.held < self.max {
            ns.queue.push_back(datum);
            self.held += 1;
            return Admission::Queued;
        }
        match ns.queue.pop_front() {
            Some(oldest) => {
                ns.queue.push_back(datum);
                Admission::ReplacedOldest(oldest)
            }
            None => Admission::Refused(datum),
        }
    }

    /// The publish interval elapsed: every namespace sends what it has.
    pub fn mark_all_due(&mut self) {
        for ns in self.namespaces.values_mut() {
            if !ns.queue.is_empty() {
                ns.due = true;
            }
        }
    }

    /// Batches to send now: one per namespace that has no call out, is not
    /// backing off, and has 20 metrics, is due, or sends immediately.
    pub fn take_ready(&mut self, now: Instant, size: impl Fn(&Datum) -> usize) -> Vec<Batch> {
        let mut out = Vec::new();
        for (name, ns) in &mut self.namespaces {
            if ns.calling || ns.queue.is_empty() || ns.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            if !(ns.queue.len() >= MAX_BATCH_METRICS || ns.due || self.immediate) {
                continue;
            }
            ns.retry_at = None;
            let mut data = Vec::new();
            let mut bytes = 0;
            while let Some(front) = ns.queue.front() {
                let more = size(front);
                if data.len() >= MAX_BATCH_METRICS
                    || (!data.is_empty() && bytes + more > MAX_BATCH_BYTES)
                {
                    break;
                }
                let Some(datum) = ns.queue.pop_front() else {
                    break;
                };
                bytes += more;
                data.push(datum);
            }
            ns.in_flight += data.len();
            ns.calling = true;
            if ns.queue.is_empty() {
                ns.due = false;
            }
            out.push(Batch {
                namespace: name.clone(),
                data,
            });
        }
        out
    }

    /// A call for `namespace` is over: `settled` metrics are done and
    /// `retry` go back to the front of the queue, in their order, for the
    /// next batch. Any retry starts (or lengthens) the backoff.
    pub fn finish(&mut self, namespace: &str, settled: usize, retry: Vec<Datum>, now: Instant) {
        let Some(ns) = self.namespaces.get_mut(namespace) else {
            return;
        };
        ns.calling = false;
        let done = (settled + retry.len()).min(ns.in_flight);
        ns.in_flight -= done;
        self.held -= settled.min(self.held);
        if retry.is_empty() {
            ns.failures = 0;
            return;
        }
        ns.failures = ns.failures.saturating_add(1);
        ns.retry_at = Some(now + backoff(ns.failures));
        ns.due = true;
        for datum in retry.into_iter().rev() {
            ns.queue.push_front(datum);
        }
    }

    /// When the earliest backoff ends, if a namespace waits one out.
    pub fn next_retry(&self) -> Option<Instant> {
        self.namespaces
            .values()
            .filter(|ns| !ns.calling && !ns.queue.is_empty())
            .filter_map(|ns| ns.retry_at)
            .min()
    }

    /// Metrics held (queued and in flight) across namespaces.
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn calling(&self) -> bool {
        self.namespaces.values().any(|ns| ns.calling)
    }
}

/// The wait after `failures` retryable failures in a row:
/// 250 ms, 500 ms, 1 s, … up to 20 s.
pub fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    BACKOFF_INITIAL
        .saturating_mul(1u32 << shift)
        .min(BACKOFF_MAX)
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
