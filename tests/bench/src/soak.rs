//! What `eg-soak` counts, apart from how it drives the runtime: which sequence numbers were
//! acknowledged and in what order they reached the cloud, and the verdict drawn from them (lost,
//! duplicated, reordered). Pure data, so the arithmetic the soak's exit status rests on is
//! unit-tested. It never decides what a fault is; the binary does.

/// A set of sequence numbers `0..n`, one bit each: an hour at thousands of messages a second is
/// millions of them, too many for a hash set per message.
#[derive(Debug, Default, Clone)]
pub struct SeqSet {
    words: Vec<u64>,
    len: u64,
}

impl SeqSet {
    /// Adds `seq`; whether it was new.
    pub fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.words.len() {
            // Doubling keeps the cost of growing by one message at a time linear.
            self.words.resize((word + 1).max(self.words.len() * 2), 0);
        }
        let mask = 1u64 << bit;
        let new = self.words[word] & mask == 0;
        if new {
            self.words[word] |= mask;
            self.len += 1;
        }
        new
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many members of `self` are not in `other`: a word at a time, so checking millions
    /// of acknowledged messages against the arrivals is cheap enough to poll during a drain.
    pub fn count_not_in(&self, other: &SeqSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.words.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

/// The verdict of a soak run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Distinct sequence numbers the device put on the wire at least once.
    pub sent: u64,
    /// Distinct sequence numbers the runtime acknowledged (PUBACK).
    pub acknowledged: u64,
    /// Distinct sequence numbers the cloud side received.
    pub received: u64,
    /// Acknowledged and never received: what the runtime promised and did not keep.
    pub lost: u64,
    /// Arrivals of a sequence number already received (QoS 1 allows them after a fault).
    pub duplicated: u64,
    /// Inversions among first arrivals: pairs received in the opposite order to their sequence
    /// numbers. A duplicate is not an inversion (it is counted above).
    pub reordered: u64,
    /// First arrivals with a lower number than one already received (each counted once,
    /// however many it overtook): how many messages came late, where `reordered` says how far.
    pub late: u64,
    /// Arrivals the device never sent (a number at or past `sent`): never expected.
    pub unexpected: u64,
}

/// Counts `arrivals` (sequence numbers in the order the cloud side received them) against what
/// the device `sent` (`0..sent`) and what was `acked`.
pub fn tally(sent: u64, acked: &SeqSet, arrivals: &[u64]) -> Outcome {
    let mut seen = SeqSet::default();
    // A Fenwick tree over 0..sent counts, for each first arrival, how many earlier first
    // arrivals had a higher number: the inversions, in O(n log n) for millions of messages.
    let size = usize::try_from(sent).unwrap_or(usize::MAX);
    let mut tree = vec![0u32; size + 1];
    let mut out = Outcome {
        sent,
        acknowledged: acked.len(),
        ..Outcome::default()
    };
    let mut first_arrivals = 0u64;
    let mut highest: Option<u64> = None;
    for &seq in arrivals {
        if seq >= sent {
            out.unexpected += 1;
            continue;
        }
        if !seen.insert(seq) {
            out.duplicated += 1;
            continue;
        }
        // Earlier first arrivals at or below `seq`.
        let mut below = 0u64;
        let mut i = seq as usize + 1;
        while i > 0 {
            below += u64::from(tree[i]);
            i &= i - 1;
        }
        out.reordered += first_arrivals - below;
        let mut i = seq as usize + 1;
        while i <= size {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
        first_arrivals += 1;
        if highest.is_some_and(|h| seq < h) {
            out.late += 1;
        }
        highest = highest.max(Some(seq));
    }
    out.received = seen.len();
    out.lost = acked.count_not_in(&seen);
    out
}

/// The acknowledged sequence numbers never received, at most `limit` of them (for the report).
pub fn first_lost(sent: u64, acked: &SeqSet, arrivals: &[u64], limit: usize) -> Vec<u64> {
    let mut seen = SeqSet::default();
    for &seq in arrivals {
        seen.insert(seq);
    }
    (0..sent)
        .filter(|&s| acked.contains(s) && !seen.contains(s))
        .take(limit)
        .collect()
}

/// A small seeded generator (SplitMix64): the soak's fault schedule must replay from its seed,
/// and the workspace carries no `rand`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponentially distributed interval with mean `mean` seconds (a Poisson process of
    /// faults: no fixed period the system could fall into step with), at most `cap` times the
    /// mean so every wait is bounded.
    pub fn exponential(&mut self, mean: f64, cap: f64) -> f64 {
        (-(1.0 - self.unit()).ln() * mean).min(mean * cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(seqs: &[u64]) -> SeqSet {
        let mut s = SeqSet::default();
        for &q in seqs {
            s.insert(q);
        }
        s
    }

    #[test]
    fn in_order_delivery_is_clean() {
        let out = tally(5, &set(&[0, 1, 2, 3, 4]), &[0, 1, 2, 3, 4]);
        assert_eq!(
            out,
            Outcome {
                sent: 5,
                acknowledged: 5,
                received: 5,
                ..Outcome::default()
            }
        );
    }

    #[test]
    fn lost_counts_only_acknowledged_messages_never_received() {
        // 3 was acknowledged and never arrived: lost. 4 was neither: the device still had it.
        let out = tally(5, &set(&[0, 1, 2, 3]), &[0, 1, 2]);
        assert_eq!(out.lost, 1);
        assert_eq!(first_lost(5, &set(&[0, 1, 2, 3]), &[0, 1, 2], 10), vec![3]);
        // Received without an acknowledgement (stored, then the PUBACK died with the runtime).
        let out = tally(3, &set(&[0]), &[0, 1, 2]);
        assert_eq!((out.lost, out.received), (0, 3));
    }

    #[test]
    fn a_resent_run_is_duplicates_not_reordering() {
        // After a crash the spool sends 2..4 again.
        let out = tally(6, &set(&[0, 1, 2, 3, 4, 5]), &[0, 1, 2, 3, 4, 2, 3, 4, 5]);
        assert_eq!(out.duplicated, 3);
        assert_eq!(out.reordered, 0);
        assert_eq!(out.late, 0);
        assert_eq!(out.received, 6);
    }

    #[test]
    fn each_inversion_counts() {
        // 3 overtook 1 and 2: two pairs out of order, two late arrivals.
        let out = tally(4, &SeqSet::default(), &[0, 3, 1, 2]);
        assert_eq!(out.reordered, 2);
        assert_eq!(out.late, 2);
        let out = tally(4, &SeqSet::default(), &[3, 2, 1, 0]);
        assert_eq!(out.reordered, 6);
        assert_eq!(out.late, 3);
    }

    #[test]
    fn numbers_never_sent_are_unexpected() {
        let out = tally(2, &SeqSet::default(), &[0, 1, 7]);
        assert_eq!(out.unexpected, 1);
        assert_eq!(out.received, 2);
    }

    #[test]
    fn seq_set_grows_and_counts_distinct() {
        let mut s = SeqSet::default();
        assert!(s.insert(1_000_000));
        assert!(!s.insert(1_000_000));
        assert!(s.insert(0));
        assert_eq!(s.len(), 2);
        assert!(s.contains(0) && s.contains(1_000_000) && !s.contains(1));
        assert!(!s.contains(u64::MAX));
        let other = set(&[0, 5]);
        assert_eq!(s.count_not_in(&other), 1);
        assert_eq!(other.count_not_in(&s), 1);
        assert_eq!(SeqSet::default().count_not_in(&s), 0);
    }

    #[test]
    fn the_generator_replays_from_its_seed_and_bounds_its_waits() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        let mut r = Rng::new(1);
        let waits: Vec<f64> = (0..10_000).map(|_| r.exponential(10.0, 5.0)).collect();
        assert!(waits.iter().all(|w| (0.0..=50.0).contains(w)));
        let mean = waits.iter().sum::<f64>() / waits.len() as f64;
        assert!((9.0..11.0).contains(&mean), "mean {mean}");
    }
}
