//! The one batching queue of the connectors that batch: items queued per
//! key (a delivery stream, a namespace), admitted against a capacity,
//! cut into batches by count and bytes, one call out per key, retries put
//! back with a per-key [`Backoff`]. Pure bookkeeping with the clock passed
//! in: it never calls a service and never sleeps.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::Backoff;

/// What counts against [`Policy::capacity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// Each key holds at most `capacity` items (queued or in flight).
    PerKey,
    /// All keys together hold at most `capacity` items.
    Total,
}

/// What a new item does when there is no room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// It is refused; what is queued stays.
    RefuseNew,
    /// The oldest item queued (not in flight) under the same key gives way;
    /// with none queued there, the new one is refused.
    ReplaceOldestOfKey,
}

/// Where the items of a call that must be retried go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryTo {
    /// Back to the front, in their order: they go in the next batch.
    Front,
    /// To the end, behind what arrived meanwhile.
    Back,
}

/// The rules of one connector's queue.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Most items per batch (at least 1).
    pub max_batch_items: usize,
    /// Most bytes per batch; a batch holds at least one item whatever its size.
    pub max_batch_bytes: usize,
    /// Whether a key with `max_batch_bytes` queued sends before it is due,
    /// as it does with `max_batch_items` queued.
    pub full_by_bytes: bool,
    /// Most items held, queued or in flight (at least 1); in-flight items
    /// count so that a retried batch always fits back.
    pub capacity: usize,
    pub scope: Capacity,
    pub when_full: WhenFull,
    pub retry_to: RetryTo,
    /// Send as soon as anything is queued (a publish interval of 0).
    pub immediate: bool,
    /// First wait after a retryable failure and its cap.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// What became of an offered item.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission<T> {
    Queued,
    /// There was no room: this older item of the same key was dropped.
    ReplacedOldest(T),
    /// There was no room: the new item is handed back.
    Refused(T),
}

/// Items taken from one key's queue for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<K, T> {
    pub key: K,
    pub items: Vec<T>,
}

#[derive(Debug)]
struct Lane<T> {
    queue: VecDeque<T>,
    /// Items taken for a call whose outcome is not known yet.
    in_flight: usize,
    /// A call is out; one at a time per key.
    calling: bool,
    /// The interval elapsed: send what is queued, full batch or not.
    due: bool,
    /// Retryable failures in a row, for the backoff.
    failures: u32,
    retry_at: Option<Instant>,
}

impl<T> Lane<T> {
    fn held(&self) -> usize {
        self.queue.len() + self.in_flight
    }
}

/// Every key's queue under one [`Policy`].
#[derive(Debug)]
pub struct BatchQueue<K, T> {
    policy: Policy,
    backoff: Backoff,
    /// Items held across keys (for [`Capacity::Total`]).
    held: usize,
    lanes: BTreeMap<K, Lane<T>>,
}

impl<K: Ord + Clone, T> BatchQueue<K, T> {
    pub fn new(policy: Policy) -> Self {
        let policy = Policy {
            max_batch_items: policy.max_batch_items.max(1),
            capacity: policy.capacity.max(1),
            ..policy
        };
        BatchQueue {
            backoff: Backoff::new(policy.backoff_initial, policy.backoff_max),
            policy,
            held: 0,
            lanes: BTreeMap::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Queues `item` under `key`, as the policy says when there is no room.
    pub fn offer(&mut self, key: &K, item: T) -> Admission<T> {
        let lane = self.lanes.entry(key.clone()).or_insert_with(|| Lane {
            queue: VecDeque::new(),
            in_flight: 0,
            calling: false,
            due: false,
            failures: 0,
            retry_at: None,
        });
        let used = match self.policy.scope {
            Capacity::PerKey => lane.held(),
            Capacity::Total => self.held,
        };
        if used < self.policy.capacity {
            lane.queue.push_back(item);
            self.held += 1;
            return Admission::Queued;
        }
        match self.policy.when_full {
            WhenFull::RefuseNew => Admission::Refused(item),
            WhenFull::ReplaceOldestOfKey => match lane.queue.pop_front() {
                Some(oldest) => {
                    lane.queue.push_back(item);
                    Admission::ReplacedOldest(oldest)
                }
                None => Admission::Refused(item),
            },
        }
    }

    /// The publish interval elapsed: every key with items queued sends them.
    pub fn mark_all_due(&mut self) {
        for lane in self.lanes.values_mut() {
            if !lane.queue.is_empty() {
                lane.due = true;
            }
        }
    }

    /// Batches to send now, `size` giving an item's bytes: one per key that
    /// has no call out, is not waiting out a backoff, and has a full batch,
    /// is due, or sends immediately.
    pub fn take_ready(&mut self, now: Instant, size: impl Fn(&T) -> usize) -> Vec<Batch<K, T>> {
        let p = self.policy;
        let mut out = Vec::new();
        for (key, lane) in &mut self.lanes {
            if lane.calling || lane.queue.is_empty() || lane.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            // Counted only below a full count, so at most a batch's worth.
            let full = lane.queue.len() >= p.max_batch_items
                || (p.full_by_bytes
                    && lane.queue.iter().map(&size).sum::<usize>() >= p.max_batch_bytes);
            if !(full || lane.due || p.immediate) {
                continue;
            }
            lane.retry_at = None;
            let mut items = Vec::new();
            let mut bytes = 0usize;
            while let Some(front) = lane.queue.front() {
                let more = size(front);
                if items.len() >= p.max_batch_items
                    || (!items.is_empty() && bytes + more > p.max_batch_bytes)
                {
                    break;
                }
                let Some(item) = lane.queue.pop_front() else {
                    break;
                };
                bytes += more;
                items.push(item);
            }
            lane.in_flight += items.len();
            lane.calling = true;
            if lane.queue.is_empty() {
                lane.due = false;
            }
            out.push(Batch {
                key: key.clone(),
                items,
            });
        }
        out
    }

    /// A call for `key` is over: `settled` items are done (delivered or
    /// failed for good) and `retry` go back where the policy says. Any
    /// retry starts (or lengthens) the key's backoff; a call with none
    /// resets it.
    pub fn finish(&mut self, key: &K, settled: usize, retry: Vec<T>, now: Instant) {
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        lane.calling = false;
        let done = (settled + retry.len()).min(lane.in_flight);
        lane.in_flight -= done;
        self.held -= settled.min(self.held);
        if retry.is_empty() {
            lane.failures = 0;
            return;
        }
        lane.failures = lane.failures.saturating_add(1);
        lane.retry_at = Some(now + self.backoff.delay_after(lane.failures));
        // The retried items were sent because the key was due (or full):
        // they stay due.
        lane.due = true;
        match self.policy.retry_to {
            RetryTo::Front => {
                for item in retry.into_iter().rev() {
                    lane.queue.push_front(item);
                }
            }
            RetryTo::Back => lane.queue.extend(retry),
        }
    }

    /// When the earliest backoff ends, if a key with items queued waits one out.
    pub fn next_retry(&self) -> Option<Instant> {
        self.lanes
            .values()
            .filter(|l| !l.calling && !l.queue.is_empty())
            .filter_map(|l| l.retry_at)
            .min()
    }

    /// Items held under `key` (queued and in flight).
    pub fn held_by(&self, key: &K) -> usize {
        self.lanes.get(key).map_or(0, Lane::held)
    }

    /// Items held across keys.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether any call is out.
    pub fn calling(&self) -> bool {
        self.lanes.values().any(|l| l.calling)
    }

    /// The wait after `failures` retryable failures in a row.
    pub fn backoff_after(&self, failures: u32) -> Duration {
        self.backoff.delay_after(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(scope: Capacity, when_full: WhenFull, retry_to: RetryTo) -> Policy {
        Policy {
            max_batch_items: 2,
            max_batch_bytes: 100,
            full_by_bytes: true,
            capacity: 3,
            scope,
            when_full,
            retry_to,
            immediate: false,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(20),
        }
    }

    #[test]
    fn per_key_capacity_refuses_new_and_retries_go_back() {
        let mut q = BatchQueue::new(policy(Capacity::PerKey, WhenFull::RefuseNew, RetryTo::Back));
        for i in 0..3 {
            assert_eq!(q.offer(&"a", i), Admission::Queued);
        }
        assert_eq!(q.offer(&"a", 3), Admission::Refused(3));
        assert_eq!(q.offer(&"b", 9), Admission::Queued);
        let now = Instant::now();
        let b = q.take_ready(now, |_| 1);
        assert_eq!(
            b,
            vec![Batch {
                key: "a",
                items: vec![0, 1]
            }]
        );
        q.finish(&"a", 0, b[0].items.clone(), now);
        assert!(q.take_ready(now, |_| 1).is_empty(), "backing off");
        assert_eq!(q.next_retry(), Some(now + Duration::from_millis(250)));
        let again = q.take_ready(now + Duration::from_millis(250), |_| 1);
        assert_eq!(again[0].items, vec![2, 0], "retries went to the back");
    }

    #[test]
    fn total_capacity_replaces_the_oldest_of_the_key_and_retries_go_first() {
        let mut q = BatchQueue::new(Policy {
            immediate: true,
            ..policy(
                Capacity::Total,
                WhenFull::ReplaceOldestOfKey,
                RetryTo::Front,
            )
        });
        q.offer(&"a", 1);
        q.offer(&"a", 2);
        q.offer(&"b", 3);
        assert_eq!(q.offer(&"a", 4), Admission::ReplacedOldest(1));
        assert_eq!(q.offer(&"c", 5), Admission::Refused(5));
        assert_eq!(q.held(), 3);
        let now = Instant::now();
        let mut b = q.take_ready(now, |_| 1);
        let a = b.remove(0);
        assert_eq!(a.items, vec![2, 4]);
        q.finish(&"a", 1, vec![4], now);
        assert_eq!(q.held(), 2);
        q.offer(&"a", 6);
        let later = now + Duration::from_secs(1);
        assert_eq!(q.take_ready(later, |_| 1)[0].items, vec![4, 6]);
    }

    #[test]
    fn bytes_cut_batches_and_fill_them() {
        let mut q = BatchQueue::new(Policy {
            max_batch_items: 10,
            capacity: 10,
            ..policy(Capacity::PerKey, WhenFull::RefuseNew, RetryTo::Back)
        });
        q.offer(&"a", 60);
        let now = Instant::now();
        assert!(q.take_ready(now, |n| *n).is_empty(), "not due, not full");
        q.offer(&"a", 60);
        let b = q.take_ready(now, |n| *n);
        assert_eq!(b[0].items, vec![60], "full by bytes; 120 > 100");
        assert!(q.calling());
        q.finish(&"a", 1, vec![], now);
        q.mark_all_due();
        assert_eq!(q.take_ready(now, |n| *n)[0].items, vec![60]);
    }
}
