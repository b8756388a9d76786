//! The latency histogram of `eg-bench`'s receiver: log-linear, fixed size, allocation-free.

use super::*;

/// A log-linear histogram: exact below 128 ns, then 128 buckets per power of
/// two (relative error under 0.8 %). Fixed size, allocation-free recording.
#[derive(Debug)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    n: u64,
    sum: u128,
    max: u64,
}

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            counts: vec![0; (64 - SUB_BITS as usize + 1) * SUB],
            n: 0,
            sum: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros();
        let shift = exp - SUB_BITS;
        let mantissa = (v >> shift) as usize & (SUB - 1);
        ((shift as usize + 1) << SUB_BITS) | mantissa
    }

    /// The middle of bucket `idx`.
    fn value(idx: usize) -> u64 {
        let (bucket, mantissa) = (idx >> SUB_BITS, (idx & (SUB - 1)) as u64);
        if bucket == 0 {
            return mantissa;
        }
        let width = 1u64 << (bucket - 1);
        ((SUB as u64 + mantissa) << (bucket - 1)) + width / 2
    }

    pub(crate) fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(Self::index(v)) {
            *c += 1;
        }
        self.n += 1;
        self.sum += u128::from(v);
        self.max = self.max.max(v);
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (idx, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(idx).min(self.max);
            }
        }
        self.max
    }

    pub(crate) fn percentiles(&self) -> Percentiles {
        Percentiles {
            n: self.n,
            p50: self.quantile(0.50),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.max,
            mean: if self.n == 0 {
                0
            } else {
                (self.sum / u128::from(self.n)) as u64
            },
        }
    }
}
