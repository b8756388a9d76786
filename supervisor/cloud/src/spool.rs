//! The cloud spool: cloud-bound messages wait here, in order, until the upstream broker has
//! acknowledged them (PUBACK).
//!
//! Owns the queue of messages routed to the `cloud` target, its size limit and, with
//! `evergreen.spooler.storageType = "FileSystem"`, its durable copy. It knows nothing of MQTT:
//! the bridge (`mqtt/client.rs`) takes [`Spool::front`], sends it and calls [`Spool::remove`]
//! after the PUBACK.
//!
//! # Choices
//!
//! * **Store**: [redb](https://docs.rs/redb), an embedded copy-on-write B-tree with checksummed,
//!   atomic commits. One table maps a sequence number (`u64`, increasing) to the message
//!   (`u16` topic length, topic, payload), so iteration order is delivery order. An accepted
//!   batch is one write transaction; nothing is ever rewritten whole.
//! * **fsync policy**: a batch of appended messages is committed with
//!   `Durability::Immediate` (redb fsyncs before the commit returns), so a message counts as
//!   accepted only once it is on stable storage: it survives `kill -9` and power loss. The router
//!   hands messages to a writer thread (see [`spool_sink`]) that commits whatever has queued up in
//!   one transaction (group commit), so the fsync cost is paid per batch, not per message; a
//!   message still in that hand-off queue when the process dies is lost, as any message not yet
//!   accepted. Removals after a PUBACK are batched (every 256 deliveries, with the next accepted
//!   batch, when the spool empties, and on a clean stop) and committed with
//!   `Durability::Eventual` (no fsync): after a crash or power loss, an already delivered message
//!   may come back and be sent again. That is a duplicate, which QoS 1 allows, never a loss.
//! * **Size**: a message costs its topic length plus its payload length. When an accepted
//!   message would push the total over `maxSizeBytes`, the oldest messages are dropped (counted
//!   in [`Spool::dropped`], with a warning in the log), as Greengrass does; a single message
//!   larger than the whole spool is refused and counted the same way.
//! * **Memory** storage keeps the same queue without the store: lost on restart, as in Greengrass.
//! * **A damaged store** (redb finds it corrupted, or it is not a redb file at all; see
//!   `evergreen_durable::redb_file`) is renamed to `<file>.damaged-<unix time>` and a new one is started,
//!   with an error in the log: the runtime must still come up and deliver new messages; the
//!   damaged file is kept for inspection.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use redb::{Database, Durability, ReadableTable, TableDefinition};

use evergreen_runtime::router::{DeliverySink, Message, OfferError};

/// Sequence number -> encoded message.
const MESSAGES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("messages");

/// Most messages the writer thread commits in one transaction.
const MAX_BATCH: usize = 512;

/// Delivered messages whose deletion from the store is batched into one commit.
const REMOVE_BATCH: usize = 256;

/// Why the spool could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool store {}: {source}", path.display())]
    Store {
        path: PathBuf,
        source: Box<redb::Error>,
    },
    #[error("spool store {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One spooled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spooled {
    /// Increasing; the key in the store.
    pub seq: u64,
    pub topic: Arc<str>,
    pub payload: Arc<[u8]>,
}

impl Spooled {
    fn cost(&self) -> u64 {
        cost(&self.topic, &self.payload)
    }
}

fn cost(topic: &str, payload: &[u8]) -> u64 {
    (topic.len() + payload.len()) as u64
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Spooled>,
    bytes: u64,
    next_seq: u64,
    /// Delivered messages gone from `queue` but still in the store: deleted in batches.
    unremoved: Vec<u64>,
}

/// The FIFO of cloud-bound messages. Shared behind an `Arc`; every method takes `&self`.
pub struct Spool {
    state: Mutex<State>,
    store: Option<(Database, PathBuf)>,
    max_bytes: u64,
    ready: tokio::sync::Notify,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("len", &self.len())
            .field("max_bytes", &self.max_bytes)
            .field("durable", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

fn store_err(path: &Path, e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::Store {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

fn encode(topic: &str, payload: &[u8]) -> Vec<u8> {
    // Topics are at most 65535 bytes in MQTT; the router's topics are far shorter.
    let len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + topic.len() + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&topic.as_bytes()[..usize::from(len)]);
    out.extend_from_slice(payload);
    out
}

fn decode(bytes: &[u8]) -> Option<(Arc<str>, Arc<[u8]>)> {
    let len = usize::from(u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]));
    let topic = std::str::from_utf8(bytes.get(2..2 + len)?).ok()?;
    Some((Arc::from(topic), Arc::from(bytes.get(2 + len..)?)))
}

impl Spool {
    /// A spool in memory only (`storageType: "Memory"`).
    pub(crate) fn memory(max_bytes: u64) -> Spool {
        Spool {
            state: Mutex::new(State::default()),
            store: None,
            max_bytes,
            ready: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Opens (or creates) the durable spool at `path` and loads what it holds, in order. A
    /// store redb cannot open is set aside (see the module docs) and a new one started.
    pub(crate) fn open(path: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let db = evergreen_durable::redb_file::open_or_set_aside(
            path,
            "cloud spool",
            "its messages are not delivered",
        )
        .map_err(|e| match e {
            evergreen_durable::redb_file::OpenFailure::Io(path, source) => {
                SpoolError::Io { path, source }
            }
            evergreen_durable::redb_file::OpenFailure::Store(e) => store_err(path, e),
        })?;
        // The table exists from the first open on, so reads never meet a missing table.
        let txn = db.begin_write().map_err(|e| store_err(path, e))?;
        txn.open_table(MESSAGES).map_err(|e| store_err(path, e))?;
        txn.commit().map_err(|e| store_err(path, e))?;

        let mut state = State::default();
        let mut undecodable = Vec::new();
        {
            let read = db.begin_read().map_err(|e| store_err(path, e))?;
            let table = read.open_table(MESSAGES).map_err(|e| store_err(path, e))?;
            for row in table.iter().map_err(|e| store_err(path, e))? {
                let (k, v) = row.map_err(|e| store_err(path, e))?;
                let seq = k.value();
                state.next_seq = seq + 1;
                match decode(v.value()) {
                    Some((topic, payload)) => {
                        let m = Spooled {
                            seq,
                            topic,
                            payload,
                        };
                        state.bytes += m.cost();
                        state.queue.push_back(m);
                    }
                    None => undecodable.push(seq),
                }
            }
        }
        let spool = Spool {
            state: Mutex::new(State::default()),
            store: Some((db, path.to_path_buf())),
            max_bytes,
            ready: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
        };
        if !undecodable.is_empty() {
            log::error!(
                "cloud spool {}: {} unreadable records removed",
                path.display(),
                undecodable.len()
            );
        }
        // A smaller maxSizeBytes than last time: the oldest go, as when full.
        let mut excess = undecodable;
        let mut dropped = 0;
        while state.bytes > max_bytes {
            let Some(m) = state.queue.pop_front() else {
                break;
            };
            state.bytes -= m.cost();
            excess.push(m.seq);
            dropped += 1;
        }
        spool.delete(&excess, Durability::Immediate)?;
        if dropped > 0 {
            spool.dropped.fetch_add(dropped, Ordering::Relaxed);
            log::warn!(
                "cloud spool {}: {dropped} oldest messages dropped to fit evergreen.spooler.maxSizeBytes = {max_bytes}",
                path.display()
            );
        }
        if !state.queue.is_empty() {
            log::info!(
                "cloud spool {}: {} messages ({} bytes) from before the restart wait for delivery",
                path.display(),
                state.queue.len(),
                state.bytes
            );
            spool.ready.notify_one();
        }
        *spool.lock() = state;
        Ok(spool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change to the state is a single push, pop or counter update: a panic elsewhere
        // cannot leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn delete(&self, seqs: &[u64], durability: Durability) -> Result<(), SpoolError> {
        let Some((db, path)) = &self.store else {
            return Ok(());
        };
        if seqs.is_empty() {
            return Ok(());
        }
        let mut txn = db.begin_write().map_err(|e| store_err(path, e))?;
        txn.set_durability(durability);
        {
            let mut table = txn.open_table(MESSAGES).map_err(|e| store_err(path, e))?;
            for seq in seqs {
                table.remove(seq).map_err(|e| store_err(path, e))?;
            }
        }
        txn.commit().map_err(|e| store_err(path, e))
    }

    /// Accepts `msgs` at the back, in order, dropping the oldest to make room. With a store,
    /// returns once they are on stable storage. Returns how many were accepted.
    pub(crate) fn push_batch(&self, msgs: Vec<(Arc<str>, Arc<[u8]>)>) -> Result<usize, SpoolError> {
        let mut state = self.lock();
        let mut added = Vec::with_capacity(msgs.len());
        let mut dropped = Vec::new();
        let mut too_big = 0u64;
        for (topic, payload) in msgs {
            if cost(&topic, &payload) > self.max_bytes {
                too_big += 1;
                continue;
            }
            let m = Spooled {
                seq: state.next_seq,
                topic,
                payload,
            };
            state.next_seq += 1;
            state.bytes += m.cost();
            state.queue.push_back(m.clone());
            added.push(m);
            while state.bytes > self.max_bytes {
                let Some(old) = state.queue.pop_front() else {
                    break;
                };
                state.bytes -= old.cost();
                dropped.push(old.seq);
            }
        }
        if let Some((db, path)) = &self.store {
            let write = || -> Result<(), SpoolError> {
                let mut txn = db.begin_write().map_err(|e| store_err(path, e))?;
                txn.set_durability(Durability::Immediate);
                {
                    let mut table = txn.open_table(MESSAGES).map_err(|e| store_err(path, e))?;
                    for m in &added {
                        // Added and dropped in this same batch: never written.
                        if dropped.contains(&m.seq) {
                            continue;
                        }
                        table
                            .insert(m.seq, encode(&m.topic, &m.payload).as_slice())
                            .map_err(|e| store_err(path, e))?;
                    }
                    for seq in dropped.iter().chain(&state.unremoved) {
                        table.remove(seq).map_err(|e| store_err(path, e))?;
                    }
                }
                txn.commit().map_err(|e| store_err(path, e))?;
                Ok(())
            };
            if let Err(e) = write() {
                // Not accepted: take the batch back out so memory and disk agree.
                let first = added.first().map(|m| m.seq);
                if let Some(first) = first {
                    state.queue.retain(|m| m.seq < first);
                    state.bytes = state.queue.iter().map(Spooled::cost).sum();
                }
                return Err(e);
            }
        }
        state.unremoved.clear();
        let lost = dropped.len() as u64 + too_big;
        if lost > 0 {
            let total = self.dropped.fetch_add(lost, Ordering::Relaxed) + lost;
            log::warn!(
                "cloud spool full (evergreen.spooler.maxSizeBytes = {}): {} oldest messages dropped, {too_big} larger than the whole spool refused; {total} lost so far",
                self.max_bytes,
                dropped.len()
            );
        }
        let accepted = added.len();
        drop(state);
        if accepted > 0 {
            self.ready.notify_one();
        }
        Ok(accepted)
    }

    /// The oldest message, left in place.
    #[cfg(test)]
    pub(crate) fn front(&self) -> Option<Spooled> {
        self.lock().queue.front().cloned()
    }

    /// Up to `n` of the oldest messages whose sequence number is above `after`, left in place.
    pub(crate) fn next_after(&self, after: Option<u64>, n: usize) -> Vec<Spooled> {
        let state = self.lock();
        state
            .queue
            .iter()
            .filter(|m| after.is_none_or(|a| m.seq > a))
            .take(n)
            .cloned()
            .collect()
    }

    /// Removes a delivered message. One dropped meanwhile (spool full) is already gone.
    pub(crate) fn remove(&self, seq: u64) -> Result<(), SpoolError> {
        let mut state = self.lock();
        let Some(at) = state.queue.iter().position(|m| m.seq == seq) else {
            return Ok(());
        };
        if let Some(m) = state.queue.remove(at) {
            state.bytes -= m.cost();
        }
        if self.store.is_none() {
            return Ok(());
        }
        // Deleted from the store in batches (and with the next accepted batch): a commit per
        // PUBACK would cap the drain rate at the store's commit rate. Not yet deleted after a
        // crash means sent again, a duplicate QoS 1 allows. Flushed at once when the queue
        // empties, so an idle spool holds nothing delivered.
        state.unremoved.push(seq);
        if state.unremoved.len() >= REMOVE_BATCH || state.queue.is_empty() {
            let seqs = std::mem::take(&mut state.unremoved);
            // Under the lock, so a concurrent push cannot commit a state this removal misses.
            self.delete(&seqs, Durability::Eventual)?;
        }
        Ok(())
    }

    /// Commits the batched deletions of delivered messages, with fsync: called on a clean
    /// stop, so a restart does not send them again.
    pub fn flush(&self) {
        let mut state = self.lock();
        let seqs = std::mem::take(&mut state.unremoved);
        if let Err(e) = self.delete(&seqs, Durability::Immediate) {
            log::warn!(
                "cloud spool: delivered messages not removed (they will be sent again): {e}"
            );
        }
    }

    /// Waits until a message may have been added since the last wait.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (topics plus payloads).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Messages lost because the spool was full, since it was opened.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The router's sink for the `cloud` target: a bounded hand-off to the spool's writer thread,
/// so `offer` never waits for a disk commit.
#[derive(Debug, Clone)]
pub(crate) struct SpoolSink {
    tx: mpsc::SyncSender<(Arc<str>, Arc<[u8]>)>,
}

impl DeliverySink for SpoolSink {
    fn offer(&self, msg: Message) -> Result<(), OfferError> {
        self.tx
            .try_send((msg.topic, msg.payload))
            .map_err(|e| match e {
                mpsc::TrySendError::Full(_) => OfferError::Full,
                mpsc::TrySendError::Disconnected(_) => OfferError::Closed,
            })
    }
}

/// Starts the writer thread of `spool` and returns the sink that feeds it (`capacity` messages
/// may wait for the writer). The thread ends when every sink is dropped.
pub(crate) fn spool_sink(spool: Arc<Spool>, capacity: usize) -> std::io::Result<SpoolSink> {
    let (tx, rx) = mpsc::sync_channel::<(Arc<str>, Arc<[u8]>)>(capacity.max(1));
    std::thread::Builder::new()
        .name("cloud-spool".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                let n = batch.len();
                if let Err(e) = spool.push_batch(batch) {
                    log::error!("cloud spool: {n} messages not accepted: {e}");
                }
            }
        })?;
    Ok(SpoolSink { tx })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: usize) -> (Arc<str>, Arc<[u8]>) {
        (
            Arc::from(format!("t/{i}").as_str()),
            Arc::from(vec![b'x'; 100]),
        )
    }

    fn drain(spool: &Spool) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let Some(m) = spool.front() else { break };
            out.push(m.topic.to_string());
            spool.remove(m.seq).expect("remove");
        }
        out
    }

    #[test]
    fn memory_spool_is_fifo() {
        let spool = Spool::memory(262_144);
        spool.push_batch((0..10).map(msg).collect()).expect("push");
        spool.push_batch((10..20).map(msg).collect()).expect("push");
        let want: Vec<String> = (0..20).map(|i| format!("t/{i}")).collect();
        assert_eq!(drain(&spool), want);
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
    }

    #[test]
    fn full_spool_drops_the_oldest_and_counts_them() {
        // Each message costs 103 or 104 bytes; 262144 holds about 2520 of them.
        let spool = Spool::memory(262_144);
        spool
            .push_batch((0..3000).map(msg).collect())
            .expect("push");
        assert!(spool.bytes() <= 262_144);
        let kept = spool.len();
        assert_eq!(spool.dropped(), 3000 - kept as u64);
        let got = drain(&spool);
        // The newest survive, in order.
        let want: Vec<String> = (3000 - kept..3000).map(|i| format!("t/{i}")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_message_bigger_than_the_spool_is_refused_and_counted() {
        let spool = Spool::memory(262_144);
        let accepted = spool
            .push_batch(vec![(Arc::from("big"), Arc::from(vec![0u8; 300_000]))])
            .expect("push");
        assert_eq!(accepted, 0);
        assert_eq!(spool.dropped(), 1);
        assert!(spool.is_empty());
    }

    #[test]
    fn file_spool_survives_reopen_in_order_and_forgets_delivered() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("spool/cloud.redb");
        {
            let spool = Spool::open(&path, 262_144).expect("open");
            spool.push_batch((0..50).map(msg).collect()).expect("push");
            for _ in 0..10 {
                let m = spool.front().expect("front");
                spool.remove(m.seq).expect("remove");
            }
        }
        let spool = Spool::open(&path, 262_144).expect("reopen");
        assert_eq!(spool.len(), 40);
        // New messages go after the old ones.
        spool.push_batch((50..55).map(msg).collect()).expect("push");
        let want: Vec<String> = (10..55).map(|i| format!("t/{i}")).collect();
        assert_eq!(drain(&spool), want);
        drop(spool);
        assert!(Spool::open(&path, 262_144).expect("reopen").is_empty());
    }

    #[test]
    fn reopening_with_a_smaller_limit_drops_the_oldest() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cloud.redb");
        let big: Vec<_> = (0..4)
            .map(|i| {
                (
                    Arc::from(format!("t/{i}").as_str()),
                    Arc::from(vec![0u8; 100_000]),
                )
            })
            .collect();
        Spool::open(&path, 1_000_000)
            .expect("open")
            .push_batch(big)
            .expect("push");
        let spool = Spool::open(&path, 262_144).expect("reopen");
        assert_eq!(spool.dropped(), 2);
        assert_eq!(drain(&spool), vec!["t/2".to_string(), "t/3".to_string()]);
    }

    #[test]
    fn a_spool_in_use_is_an_error_not_damage() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cloud.redb");
        let first = Spool::open(&path, 262_144).expect("open");
        first.push_batch((0..3).map(msg).collect()).expect("push");
        assert!(Spool::open(&path, 262_144).is_err());
        assert_eq!(first.len(), 3);
        drop(first);
        assert_eq!(Spool::open(&path, 262_144).expect("reopen").len(), 3);
    }

    #[test]
    fn a_crash_before_removals_are_committed_resends_never_loses() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cloud.redb");
        let spool = Spool::open(&path, 262_144).expect("open");
        spool.push_batch((0..20).map(msg).collect()).expect("push");
        for _ in 0..5 {
            let m = spool.front().expect("front");
            spool.remove(m.seq).expect("remove");
        }
        // A crash: the batched removals were never committed.
        spool.lock().unremoved.clear();
        drop(spool);
        let spool = Spool::open(&path, 262_144).expect("reopen");
        let got = drain(&spool);
        let want: Vec<String> = (0..20).map(|i| format!("t/{i}")).collect();
        assert_eq!(
            got, want,
            "the 5 delivered ones come again, then the rest, in order"
        );
    }

    /// Opens a spool whose file was damaged by `damage` after 100 committed messages: it must
    /// open (never panic), and either hold all 100 in order or have set the file aside.
    fn reopen_after(damage: impl FnOnce(&Path)) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cloud.redb");
        Spool::open(&path, 262_144)
            .expect("open")
            .push_batch((0..100).map(msg).collect())
            .expect("push");
        damage(&path);
        let spool = Spool::open(&path, 262_144).expect("a damaged spool must not stop the runtime");
        let recovered = spool.len();
        if recovered > 0 {
            let want: Vec<String> = (0..100).map(|i| format!("t/{i}")).collect();
            assert_eq!(drain(&spool), want);
        } else {
            let aside = std::fs::read_dir(dir.path())
                .expect("list")
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains("damaged-"));
            assert!(aside, "the damaged file is kept for inspection");
        }
        // The new spool works.
        spool.push_batch((0..3).map(msg).collect()).expect("push");
        assert_eq!(spool.len(), recovered + 3);
    }

    #[test]
    fn a_truncated_tail_is_survived() {
        reopen_after(|path| {
            let len = std::fs::metadata(path).expect("meta").len();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .expect("open file");
            f.set_len(len / 2).expect("truncate");
        });
    }

    #[test]
    fn a_torn_tail_of_garbage_is_survived() {
        reopen_after(|path| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .expect("open file");
            f.write_all(&[0xA5; 5000]).expect("append");
        });
    }

    #[test]
    fn the_sink_hands_messages_to_the_spool_in_order() {
        let spool = Arc::new(Spool::memory(262_144));
        let sink = spool_sink(spool.clone(), 16).expect("sink");
        let mut sent = 0;
        for i in 0..200 {
            let (topic, payload) = msg(i);
            // A full hand-off queue refuses at once; retry after the writer catches up.
            for _ in 0..1000 {
                let offer = sink.offer(Message {
                    topic: topic.clone(),
                    payload: payload.clone(),
                    source: Arc::from("src"),
                });
                if offer.is_ok() {
                    sent += 1;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        assert_eq!(sent, 200);
        for _ in 0..500 {
            if spool.len() == 200 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let want: Vec<String> = (0..200).map(|i| format!("t/{i}")).collect();
        assert_eq!(drain(&spool), want);
    }
}
