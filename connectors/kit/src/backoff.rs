//! The one retry spacing every connector uses: a delay that doubles per
//! failure in a row up to a cap, optionally jittered, back to the start
//! after a success. It only computes delays; callers own the sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Exponential backoff: `initial`, `2 × initial`, … up to `max`.
///
/// With [`Backoff::jittered`] each delay is drawn from the upper half of its
/// step (equal jitter), so retries of several clients after the same outage
/// spread out without ever retrying at once.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    /// xorshift state when jittered.
    seed: Option<u64>,
    /// When the next attempt may be made, after [`Backoff::fail`].
    not_before: Option<Instant>,
}

impl Backoff {
    /// Plain doubling, no jitter: the delays are exactly `initial << n`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
            seed: None,
            not_before: None,
        }
    }

    /// Doubling with equal jitter.
    pub fn jittered(initial: Duration, max: Duration) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // Process id and a per-process counter so two backoffs made in the
        // same millisecond (or by two connectors) do not draw alike.
        let seed = now_ms
            ^ (u64::from(std::process::id()) << 32)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Backoff {
            seed: Some(seed | 1),
            ..Backoff::new(initial, max)
        }
    }

    /// The step the next failure waits (before jitter), without taking it.
    pub fn peek(&self) -> Duration {
        self.current
    }

    /// The delay before the next try; the one after it is twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        match &mut self.seed {
            None => base,
            Some(seed) => {
                // xorshift64: jitter needs spread, not quality.
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                let half = base / 2;
                let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
                half + Duration::from_nanos(*seed % nanos.saturating_add(1))
            }
        }
    }

    /// Records a failure at `now`: the next attempt waits the next delay,
    /// which is returned.
    pub fn fail(&mut self, now: Instant) -> Duration {
        let wait = self.next_delay();
        self.not_before = Some(now + wait);
        wait
    }

    /// Whether an attempt may be made at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// When the wait after the last failure ends, if one was recorded.
    pub fn not_before(&self) -> Option<Instant> {
        self.not_before
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
        self.not_before = None;
    }

    /// The plain delay after `failures` failures in a row (0 or 1: the
    /// initial delay), without changing any state.
    pub fn delay_after(&self, failures: u32) -> Duration {
        // 2^16 × any initial delay in use is far above every cap.
        let shift = failures.saturating_sub(1).min(16);
        self.initial.saturating_mul(1u32 << shift).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(b.ready(t0));
        let waits: Vec<u128> = (0..8).map(|_| b.fail(t0).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
        assert!(!b.ready(t0));
        assert!(b.ready(t0 + Duration::from_secs(10)));
        b.reset();
        assert!(b.ready(t0));
        assert_eq!(b.peek(), Duration::from_millis(250));
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let mut b = Backoff::jittered(Duration::from_millis(100), Duration::from_millis(1000));
        for base in [100u64, 200, 400, 800, 1000, 1000] {
            let d = b.next_delay().as_millis() as u64;
            assert!(d >= base / 2 && d <= base, "{d} for base {base}");
        }
    }

    #[test]
    fn delay_after_a_count_of_failures() {
        let b = Backoff::new(Duration::from_millis(250), Duration::from_secs(20));
        assert_eq!(b.delay_after(1), Duration::from_millis(250));
        assert_eq!(b.delay_after(4), Duration::from_secs(2));
        assert_eq!(b.delay_after(u32::MAX), Duration::from_secs(20));
    }
}
