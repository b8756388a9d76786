//! The disk spool between the log pipeline and CloudWatch Logs: what was
//! logged and not yet accepted by CloudWatch, as numbered segment files
//! (`<seq>.jsonl`, one [`Event`] per line, each written whole with
//! `write_atomic`), oldest first. A segment is rewritten without the events
//! CloudWatch accepted and removed once empty, so a crash re-sends at most
//! one request. The spool never holds more than its budget: the oldest
//! segments are dropped (and counted) to make room, as Greengrass dropped
//! what it could not send.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::batch::Event;

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    events: u64,
}

/// The segment files in one directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    budget: u64,
    next: u64,
    segments: BTreeMap<u64, Segment>,
    bytes: u64,
}

impl Spool {
    /// Opens (creating it, private) `dir` and takes over the segments a
    /// previous run left there.
    pub fn open(dir: &Path, budget: u64) -> io::Result<Spool> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            budget,
            next: 0,
            segments: BTreeMap::new(),
            bytes: 0,
        };
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let segment = Segment {
                bytes: text.len() as u64,
                events: text.lines().count() as u64,
                path,
            };
            spool.bytes += segment.bytes;
            spool.next = spool.next.max(seq + 1);
            spool.segments.insert(seq, segment);
        }
        Ok(spool)
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Events waiting (as counted when written).
    pub fn events(&self) -> u64 {
        self.segments.values().map(|s| s.events).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Writes `events` as a new segment, then drops the oldest segments
    /// while the spool is over its budget (never the new one). Returns how
    /// many events were dropped.
    pub fn append(&mut self, events: &[Event]) -> io::Result<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        let seq = self.next;
        self.next += 1;
        let path = self.dir.join(format!("{seq:016}.jsonl"));
        let text = encode(events);
        evergreen_durable::write_atomic(&path, text.as_bytes(), evergreen_durable::Mode::Private)?;
        self.bytes += text.len() as u64;
        self.segments.insert(
            seq,
            Segment {
                path,
                bytes: text.len() as u64,
                events: events.len() as u64,
            },
        );
        let mut dropped = 0;
        while self.bytes > self.budget && self.segments.len() > 1 {
            let Some((_, oldest)) = self.segments.pop_first() else {
                break;
            };
            self.bytes -= oldest.bytes;
            dropped += oldest.events;
            let _ = std::fs::remove_file(&oldest.path);
        }
        Ok(dropped)
    }

    /// The oldest segment's number and events (lines that do not parse are
    /// skipped: a damaged file must not stop the rest).
    pub fn oldest(&self) -> Option<(u64, Vec<Event>)> {
        let (seq, segment) = self.segments.first_key_value()?;
        let text = std::fs::read_to_string(&segment.path).unwrap_or_default();
        let events = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Some((*seq, events))
    }

    /// Segment `seq` now holds only `remaining` (removed when empty). A
    /// segment dropped meanwhile stays dropped.
    pub fn replace(&mut self, seq: u64, remaining: &[Event]) -> io::Result<()> {
        let Some(segment) = self.segments.get_mut(&seq) else {
            return Ok(());
        };
        if remaining.is_empty() {
            let path = segment.path.clone();
            self.bytes -= segment.bytes;
            self.segments.remove(&seq);
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let text = encode(remaining);
        evergreen_durable::write_atomic(
            &segment.path,
            text.as_bytes(),
            evergreen_durable::Mode::Private,
        )?;
        self.bytes = self.bytes - segment.bytes + text.len() as u64;
        segment.bytes = text.len() as u64;
        segment.events = remaining.len() as u64;
        Ok(())
    }
}

fn encode(events: &[Event]) -> String {
    let mut text = String::new();
    for e in events {
        // An Event always serializes (strings and a number).
        if let Ok(line) = serde_json::to_string(e) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: i64, m: &str) -> Event {
        Event {
            group: "/g".into(),
            stream: "s".into(),
            timestamp_ms: t,
            message: m.into(),
        }
    }

    #[test]
    fn segments_survive_a_reopen_and_empty_ones_go() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut spool = Spool::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(spool.append(&[ev(1, "a"), ev(2, "b")]).expect("append"), 0);
        spool.append(&[ev(3, "c\nwith a newline")]).expect("append");
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(spool.events(), 3);
        let (seq, events) = spool.oldest().expect("oldest");
        assert_eq!(events, vec![ev(1, "a"), ev(2, "b")]);
        spool.replace(seq, &events[1..]).expect("replace");
        assert_eq!(spool.oldest().expect("oldest").1, vec![ev(2, "b")]);
        spool.replace(seq, &[]).expect("remove");
        assert_eq!(
            spool.oldest().expect("next").1,
            vec![ev(3, "c\nwith a newline")]
        );
        // Numbers keep growing after a reopen: a new segment is the newest.
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).expect("reopen");
        spool.append(&[ev(4, "d")]).expect("append");
        assert_eq!(spool.oldest().expect("oldest").1[0].timestamp_ms, 3);
    }

    #[test]
    fn the_budget_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut spool = Spool::open(dir.path(), 300).expect("open");
        let line = "x".repeat(100);
        assert_eq!(spool.append(&[ev(1, &line)]).expect("1"), 0);
        assert_eq!(spool.append(&[ev(2, &line)]).expect("2"), 0);
        assert_eq!(spool.append(&[ev(3, &line), ev(4, &line)]).expect("3"), 2);
        assert!(
            spool.bytes() <= 300 || spool.events() == 2,
            "{}",
            spool.bytes()
        );
        assert_eq!(spool.oldest().expect("oldest").1[0].timestamp_ms, 3);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }
}
