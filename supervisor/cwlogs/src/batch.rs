//! Cutting log events into `PutLogEvents` requests within CloudWatch Logs'
//! limits: one log group and stream per request, events in time order, at
//! most [`MAX_EVENTS`] events and [`MAX_BATCH_BYTES`] bytes (each event's
//! UTF-8 message plus [`EVENT_OVERHEAD`]), and no more than 24 hours between
//! the first and the last event.

use serde::{Deserialize, Serialize};

/// Events per `PutLogEvents` request.
pub const MAX_EVENTS: usize = 10_000;
/// Bytes per `PutLogEvents` request, counted as CloudWatch counts them.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What CloudWatch adds to each event's message when it counts a batch.
pub const EVENT_OVERHEAD: usize = 26;
/// Longest message kept: CloudWatch's event limit (256 KiB with the overhead).
pub const MAX_MESSAGE_BYTES: usize = 262_144 - EVENT_OVERHEAD;
/// Widest time span of one request.
const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;

/// One log line on its way to CloudWatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Log group.
    #[serde(rename = "g")]
    pub group: String,
    /// Log stream.
    #[serde(rename = "s")]
    pub stream: String,
    /// Milliseconds since the Unix epoch.
    #[serde(rename = "t")]
    pub timestamp_ms: i64,
    #[serde(rename = "m")]
    pub message: String,
}

impl Event {
    /// Its size as CloudWatch counts it.
    pub fn size(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD
    }
}

/// Cuts `message` to [`MAX_MESSAGE_BYTES`] at a character boundary.
pub fn clip(message: &mut String) {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
}

/// The first request's worth of `events` (which may mix groups and
/// streams): the events of the group and stream of the oldest event, in
/// time order, within the limits. Returns the indexes into `events` it took,
/// in the order to send them; empty only if `events` is.
pub fn first_batch(events: &[Event]) -> Vec<usize> {
    let Some(first) = events
        .iter()
        .enumerate()
        .min_by_key(|(i, e)| (e.timestamp_ms, *i))
        .map(|(i, _)| i)
    else {
        return Vec::new();
    };
    let key = (&events[first].group, &events[first].stream);
    let mut same: Vec<usize> = (0..events.len())
        .filter(|i| (&events[*i].group, &events[*i].stream) == key)
        .collect();
    // Stable: lines logged in the same millisecond keep their order.
    same.sort_by_key(|i| events[*i].timestamp_ms);
    let start = events[first].timestamp_ms;
    let mut bytes = 0;
    let mut taken = Vec::new();
    for i in same {
        let e = &events[i];
        if taken.len() == MAX_EVENTS
            || bytes + e.size() > MAX_BATCH_BYTES
            || e.timestamp_ms - start > MAX_SPAN_MS
        {
            break;
        }
        bytes += e.size();
        taken.push(i);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(stream: &str, t: i64, len: usize) -> Event {
        Event {
            group: "g".into(),
            stream: stream.into(),
            timestamp_ms: t,
            message: "x".repeat(len),
        }
    }

    #[test]
    fn one_stream_in_time_order() {
        let events = vec![ev("b", 5, 1), ev("a", 3, 1), ev("a", 1, 1), ev("b", 0, 1)];
        assert_eq!(first_batch(&events), vec![3, 0]);
        let events = vec![ev("a", 3, 1), ev("a", 1, 1), ev("a", 1, 2)];
        assert_eq!(first_batch(&events), vec![1, 2, 0], "same ms keeps order");
        assert!(first_batch(&[]).is_empty());
    }

    #[test]
    fn the_limits_cut_a_batch() {
        let many: Vec<Event> = (0..MAX_EVENTS as i64 + 5).map(|t| ev("a", t, 1)).collect();
        assert_eq!(first_batch(&many).len(), MAX_EVENTS);
        // 1 MiB: 4 events of 256 KiB - 26 - 1 fit with the overhead; a fifth does not.
        let big: Vec<Event> = (0..6).map(|t| ev("a", t, MAX_MESSAGE_BYTES - 1)).collect();
        let taken = first_batch(&big);
        assert_eq!(taken.len(), 4);
        let bytes: usize = taken.iter().map(|i| big[*i].size()).sum();
        assert!(bytes <= MAX_BATCH_BYTES);
        let wide = vec![
            ev("a", 0, 1),
            ev("a", MAX_SPAN_MS, 1),
            ev("a", MAX_SPAN_MS + 1, 1),
        ];
        assert_eq!(first_batch(&wide), vec![0, 1]);
    }

    #[test]
    fn long_messages_are_clipped_on_a_character() {
        let mut m = "é".repeat(MAX_MESSAGE_BYTES);
        clip(&mut m);
        assert!(m.len() <= MAX_MESSAGE_BYTES);
        assert!(m.is_char_boundary(m.len()));
    }
}
