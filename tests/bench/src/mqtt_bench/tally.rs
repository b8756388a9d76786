//! What a bench subscriber counts: the payload every bench publisher sends (publisher index,
//! sequence number, send time), and per publisher which sequence numbers arrived, how often and
//! in which order; latencies; and the percentiles of a case. Pure bookkeeping: no sockets, no
//! clocks of its own (times are passed in), so it is unit-tested.

use std::collections::HashMap;

/// Bytes of the stamp at the front of every payload: publisher (u32), sequence (u32), send time
/// in ns since the run's epoch (u64). The smallest payload a case may use.
pub const STAMP: usize = 16;

/// Sequence numbers at or above this are not a bench's (no case sends that many) and count as
/// strays: what a subscriber remembers per publisher is bounded whatever arrives.
pub const MAX_SEQ: u32 = 1 << 24;

/// One payload's stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub seq: u32,
    pub sent_ns: u64,
}

impl Stamp {
    /// The payload of `size` bytes (at least [`STAMP`]): the stamp, then filler.
    pub fn payload(&self, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size.max(STAMP));
        out.extend_from_slice(&self.publisher.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.sent_ns.to_be_bytes());
        out.resize(size.max(STAMP), b'x');
        out
    }

    /// The stamp at the front of `payload`; `None` if it is shorter (not a bench message).
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let b = payload.get(..STAMP)?;
        Some(Stamp {
            publisher: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            sent_ns: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        })
    }
}

/// The arrivals from one publisher at one subscriber.
#[derive(Debug, Default, Clone)]
struct Stream {
    seen: Vec<bool>,
    distinct: u64,
    duplicates: u64,
    /// First arrivals of a sequence number lower than one that arrived before it: each is a
    /// message overtaken by a later one of the same publisher on the same topic.
    reordered: u64,
    highest: Option<u32>,
}

impl Stream {
    fn arrive(&mut self, seq: u32) -> bool {
        let i = seq as usize;
        if i >= self.seen.len() {
            self.seen.resize(i + 1, false);
        }
        if self.seen[i] {
            self.duplicates += 1;
            return false;
        }
        self.seen[i] = true;
        self.distinct += 1;
        match self.highest {
            Some(h) if seq < h => self.reordered += 1,
            _ => self.highest = Some(seq),
        }
        true
    }
}

/// Everything one subscriber (or a whole case, after [`Tally::merge`]) counted.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Per (subscriber, publisher): one subscriber's tally has one subscriber, a merged one many.
    streams: HashMap<(u32, u32), Stream>,
    /// Latency of each first arrival, µs.
    pub latencies_us: Vec<u64>,
    /// Every PUBLISH that arrived, duplicates included (what the broker delivered).
    pub arrivals: u64,
    /// Arrivals without a bench stamp.
    pub strays: u64,
    /// Time of the last first arrival, ns since the epoch.
    pub last_ns: Option<u64>,
}

impl Tally {
    /// A PUBLISH with `payload` arrived at `subscriber` at `now_ns` since the run's epoch.
    pub fn arrive(&mut self, subscriber: u32, payload: &[u8], now_ns: u64) {
        self.arrivals += 1;
        let Some(stamp) = Stamp::read(payload).filter(|s| s.seq < MAX_SEQ) else {
            self.strays += 1;
            return;
        };
        let stream = self
            .streams
            .entry((subscriber, stamp.publisher))
            .or_default();
        if stream.arrive(stamp.seq) {
            self.latencies_us
                .push(now_ns.saturating_sub(stamp.sent_ns) / 1000);
            self.last_ns = Some(self.last_ns.map_or(now_ns, |l| l.max(now_ns)));
        }
    }

    /// Distinct messages from `publisher` that reached `subscriber`.
    pub fn distinct(&self, subscriber: u32, publisher: u32) -> u64 {
        self.streams
            .get(&(subscriber, publisher))
            .map_or(0, |s| s.distinct)
    }

    /// Distinct messages over all streams.
    pub fn received(&self) -> u64 {
        self.streams.values().map(|s| s.distinct).sum()
    }

    pub fn duplicates(&self) -> u64 {
        self.streams.values().map(|s| s.duplicates).sum()
    }

    pub fn reordered(&self) -> u64 {
        self.streams.values().map(|s| s.reordered).sum()
    }

    /// Adds `other`'s counts (from another subscriber) to these.
    pub fn merge(&mut self, other: Tally) {
        for (key, stream) in other.streams {
            // Subscribers have distinct indexes, so a key is never in both.
            self.streams.insert(key, stream);
        }
        self.latencies_us.extend(other.latencies_us);
        self.arrivals += other.arrivals;
        self.strays += other.strays;
        self.last_ns = match (self.last_ns, other.last_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// p50, p95 and p99 of `values` (sorted here), nearest rank; `None` if empty.
pub fn percentiles(values: &mut [u64]) -> Option<[u64; 3]> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let at = |p: f64| {
        let rank = ((values.len() as f64) * p).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1]
    };
    Some([at(0.50), at(0.95), at(0.99)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(publisher: u32, seq: u32, sent_ns: u64) -> Vec<u8> {
        Stamp {
            publisher,
            seq,
            sent_ns,
        }
        .payload(64)
    }

    #[test]
    fn a_stamp_round_trips_and_a_short_payload_has_none() {
        let s = Stamp {
            publisher: 7,
            seq: 1_000_000,
            sent_ns: u64::MAX - 3,
        };
        assert_eq!(Stamp::read(&s.payload(16)), Some(s));
        assert_eq!(s.payload(64).len(), 64);
        assert_eq!(s.payload(4).len(), STAMP);
        assert_eq!(Stamp::read(&[0; 15]), None);
    }

    #[test]
    fn order_duplicates_and_loss_are_counted_per_publisher() {
        let mut t = Tally::default();
        // Publisher 0: 0 1 3 2 4 (one overtaken), 1 again (a duplicate).
        for seq in [0, 1, 3, 2, 4, 1] {
            t.arrive(0, &stamp(0, seq, 1000), 5000);
        }
        // Publisher 1 interleaved with its own order kept: no reorder across publishers.
        for seq in [0, 1, 2] {
            t.arrive(0, &stamp(1, seq, 0), 2000);
        }
        t.arrive(0, b"short", 3000);
        t.arrive(0, &stamp(0, MAX_SEQ, 0), 3000);
        assert_eq!(t.distinct(0, 0), 5);
        assert_eq!(t.distinct(0, 1), 3);
        assert_eq!(t.received(), 8);
        assert_eq!(t.duplicates(), 1);
        assert_eq!(t.reordered(), 1);
        assert_eq!(t.arrivals, 11);
        assert_eq!(t.strays, 2);
        assert_eq!(t.latencies_us.len(), 8);
        assert_eq!(t.latencies_us[0], 4);
        assert_eq!(t.last_ns, Some(5000));
    }

    #[test]
    fn a_late_message_after_several_later_ones_is_one_reorder() {
        let mut t = Tally::default();
        for seq in [1, 2, 3, 0] {
            t.arrive(0, &stamp(0, seq, 0), 0);
        }
        assert_eq!(t.reordered(), 1);
    }

    #[test]
    fn merged_subscribers_keep_their_own_streams() {
        let mut a = Tally::default();
        a.arrive(0, &stamp(9, 0, 0), 10_000);
        let mut b = Tally::default();
        b.arrive(1, &stamp(9, 0, 0), 20_000);
        b.arrive(1, &stamp(9, 1, 0), 30_000);
        a.merge(b);
        assert_eq!(a.distinct(0, 9), 1);
        assert_eq!(a.distinct(1, 9), 2);
        assert_eq!(a.duplicates(), 0);
        assert_eq!(a.last_ns, Some(30_000));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentiles(&mut v), Some([50, 95, 99]));
        assert_eq!(percentiles(&mut [7]), Some([7, 7, 7]));
        assert_eq!(percentiles(&mut []), None);
    }
}
