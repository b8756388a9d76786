//! The short memory behind the page's sparklines: every few seconds the sampler records each
//! component's message counters and CPU time; the ring keeps the last N samples (five minutes
//! at the default interval) and turns them into per-interval rates. Pure data: it reads no
//! clock and no runtime, so its arithmetic is tested on its own.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// One component's counters at one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Counters {
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    /// The child that was measured, and its CPU time; `None` without a child.
    pub(crate) cpu: Option<(u32, f64)>,
}

/// Every component's counters at one moment, by ARN.
#[derive(Debug, Clone)]
struct Sample {
    /// Since the runtime started (the status document's uptime), so gaps are measured, not
    /// assumed to be the interval.
    at: Duration,
    counters: BTreeMap<String, Counters>,
}

/// A component's rates over the kept samples, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rates {
    /// Messages per second into its queue, one per interval between two samples.
    pub(crate) messages_in: Vec<f64>,
    /// Messages per second it published.
    pub(crate) messages_out: Vec<f64>,
    /// Its child's CPU use over the last interval, in percent of one core; `None` without
    /// two samples of the same child.
    pub(crate) cpu_percent: Option<f64>,
}

/// The last `capacity` samples.
#[derive(Debug)]
pub(crate) struct History {
    capacity: usize,
    samples: VecDeque<Sample>,
}

impl History {
    /// Keeps `rates` points per sparkline: one more sample than that.
    pub(crate) fn new(rates: usize) -> Self {
        History {
            capacity: rates + 1,
            samples: VecDeque::with_capacity(rates + 1),
        }
    }

    pub(crate) fn record(&mut self, at: Duration, counters: BTreeMap<String, Counters>) {
        if self.samples.back().is_some_and(|last| at <= last.at) {
            // Not later than the last: no interval to divide by.
            return;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { at, counters });
    }

    /// The rates of component `arn`. An interval where it was absent (not yet deployed, or
    /// removed) counts as no traffic, so every sparkline of a page has the same time axis;
    /// a counter that went backwards (a redeployed component whose counters restarted) too.
    pub(crate) fn rates(&self, arn: &str) -> Rates {
        let mut rates = Rates::default();
        let pairs = self.samples.iter().zip(self.samples.iter().skip(1));
        for (before, after) in pairs {
            let secs = (after.at - before.at).as_secs_f64();
            let (a, b) = match (before.counters.get(arn), after.counters.get(arn)) {
                (Some(a), Some(b)) => (a, b),
                _ => {
                    rates.messages_in.push(0.0);
                    rates.messages_out.push(0.0);
                    continue;
                }
            };
            let per_sec = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
            rates
                .messages_in
                .push(per_sec(a.messages_in, b.messages_in));
            rates
                .messages_out
                .push(per_sec(a.messages_out, b.messages_out));
            rates.cpu_percent = match (a.cpu, b.cpu) {
                // The same child in both: its CPU time only grows.
                (Some((pid_a, cpu_a)), Some((pid_b, cpu_b)))
                    if pid_a == pid_b && cpu_b >= cpu_a =>
                {
                    Some((cpu_b - cpu_a) / secs * 100.0)
                }
                _ => None,
            };
        }
        rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component's ARN, messages in and out, and its child's pid and CPU seconds.
    type Row<'a> = (&'a str, u64, u64, Option<(u32, f64)>);

    fn sample(pairs: &[Row<'_>]) -> BTreeMap<String, Counters> {
        pairs
            .iter()
            .map(|(arn, i, o, cpu)| {
                (
                    arn.to_string(),
                    Counters {
                        messages_in: *i,
                        messages_out: *o,
                        cpu: *cpu,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn rates_are_per_second_over_the_measured_gap() {
        let mut h = History::new(10);
        h.record(
            Duration::from_secs(10),
            sample(&[("a", 0, 0, Some((7, 1.0)))]),
        );
        h.record(
            Duration::from_secs(12),
            sample(&[("a", 10, 4, Some((7, 1.5)))]),
        );
        // A late sample: 4 s, not the nominal 2.
        h.record(
            Duration::from_secs(16),
            sample(&[("a", 10, 12, Some((7, 1.7)))]),
        );
        let r = h.rates("a");
        assert_eq!(r.messages_in, [5.0, 0.0]);
        assert_eq!(r.messages_out, [2.0, 2.0]);
        let cpu = r.cpu_percent.expect("cpu");
        assert!((cpu - 5.0).abs() < 1e-9, "{cpu}");
    }

    #[test]
    fn the_ring_keeps_the_last_samples_and_absence_is_no_traffic() {
        let mut h = History::new(3);
        for s in 0..10u64 {
            let mut pairs = vec![("a", s * 2, s, None)];
            if s >= 8 {
                pairs.push(("b", s, s, None));
            }
            h.record(Duration::from_secs(s), sample(&pairs));
        }
        assert_eq!(h.rates("a").messages_in, [2.0, 2.0, 2.0]);
        assert_eq!(h.rates("b").messages_in, [0.0, 0.0, 1.0]);
        assert_eq!(h.rates("gone").messages_out, [0.0, 0.0, 0.0]);
        assert_eq!(h.rates("a").cpu_percent, None, "no child measured");
    }

    #[test]
    fn a_new_child_or_a_reset_counter_gives_no_negative_rate() {
        let mut h = History::new(5);
        h.record(
            Duration::from_secs(1),
            sample(&[("a", 50, 50, Some((7, 9.0)))]),
        );
        h.record(
            Duration::from_secs(2),
            sample(&[("a", 3, 1, Some((8, 0.1)))]),
        );
        // Not later than the last sample: ignored.
        h.record(Duration::from_secs(2), sample(&[("a", 99, 99, None)]));
        let r = h.rates("a");
        assert_eq!(r.messages_in, [0.0]);
        assert_eq!(r.messages_out, [0.0]);
        assert_eq!(r.cpu_percent, None, "another child");
    }
}
