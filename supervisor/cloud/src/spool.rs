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
//!   accepted. A publisher that acknowledges its sender (a device's QoS 1 PUBACK) routes with a
//!   [`Receipt`]: the writer settles it after the commit, so the acknowledgement follows the
//!   fsync, and the publishers waiting meanwhile are what fills the next batch. The spool's
//!   lock is not held across that commit (a batch joins the queue once committed), so the
//!   bridge keeps sending and removing while the disk works. Removals after a PUBACK are
//!   batched (every 256 deliveries, with the next accepted batch, when the spool empties, and
//!   on a clean stop) and committed with `Durability::Eventual` (no fsync): after a crash or
//!   power loss, an already delivered message may come back and be sent again. That is a
//!   duplicate, which QoS 1 allows, never a loss.
//! * **Size**: a message costs its topic length plus its payload length. When an accepted
//!   message would push the total over `maxSizeBytes`, the oldest messages are dropped (counted
//!   in [`Spool::dropped`], with a warning in the log), as Greengrass does; a single message
//!   larger than the whole spool is refused and counted the same way.
//! * **Hand-off bound**: at most `capacity` messages (`evergreen.queueCapacity`) wait for the
//!   writer; past it a message without a receipt (QoS 0, a component) is refused and counted
//!   ([`SpoolDrops::hand_off_full`]). One with a receipt is always taken: its publisher is held
//!   until the commit, so the messages over the bound are at most one per waiting publisher, each
//!   already held in memory by that publisher, and the wait is the backpressure.
//! * **Counted**: every message that does not reach the spool or leaves it undelivered is in
//!   [`Spool::drops`], which `evergreen status` shows.
//! * **Memory** storage keeps the same queue without the store: lost on restart, as in Greengrass.
//! * **A damaged store** (redb finds it corrupted, or it is not a redb file at all; see
//!   `evergreen_durable::redb_file`) is renamed to `<file>.damaged-<unix time>` and a new one is started,
//!   with an error in the log: the runtime must still come up and deliver new messages; the
//!   damaged file is kept for inspection.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use redb::{Database, Durability, ReadableTable, TableDefinition};

use evergreen_runtime::router::{DeliverySink, Message, OfferError, Receipt};

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
    /// When this runtime took it: accepted, or (for a message restored from the store) the
    /// time the spool was opened. The store keeps no time, so after a restart a message's age
    /// counts from the restart.
    pub at: Instant,
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
    /// Dropped because the spool was full (the oldest), or larger than the whole spool.
    dropped: AtomicU64,
    /// Refused at a full hand-off queue (publishers without a receipt only).
    hand_off_full: AtomicU64,
    /// Taken by the writer but not committed (a store error), or refused by a closed hand-off.
    not_stored: AtomicU64,
    /// Called by [`Spool::push_batch`] just before a batch's commit: a test holds the commit
    /// there to see what the bridge can do meanwhile.
    #[cfg(test)]
    before_commit: Mutex<Option<Box<dyn FnMut() + Send>>>,
}

/// What waits in the spool now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolDepth {
    pub messages: usize,
    /// Topics plus payloads.
    pub bytes: u64,
    /// How long the oldest message has waited (since this runtime took it); `None` when empty.
    pub oldest_age: Option<std::time::Duration>,
}

/// Messages bound for the cloud that were lost on the way, by where, since the runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolDrops {
    /// Refused because the writer's hand-off queue was full (QoS 0 and component publishes; a
    /// publisher with a receipt is held instead).
    pub hand_off_full: u64,
    /// Dropped because the spool reached `maxSizeBytes` (the oldest go), or refused as larger
    /// than the whole spool.
    pub spool_full: u64,
    /// Not committed: the store failed, or the writer was gone.
    pub not_stored: u64,
}

impl SpoolDrops {
    pub fn total(&self) -> u64 {
        self.hand_off_full + self.spool_full + self.not_stored
    }
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
            hand_off_full: AtomicU64::new(0),
            not_stored: AtomicU64::new(0),
            #[cfg(test)]
            before_commit: Mutex::new(None),
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
        let opened = Instant::now();
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
                            at: opened,
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
            hand_off_full: AtomicU64::new(0),
            not_stored: AtomicU64::new(0),
            #[cfg(test)]
            before_commit: Mutex::new(None),
        };
        if !undecodable.is_empty() {
            tracing::error!(
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
            tracing::warn!(
                "cloud spool {}: {dropped} oldest messages dropped to fit evergreen.spooler.maxSizeBytes = {max_bytes}",
                path.display()
            );
        }
        if !state.queue.is_empty() {
            tracing::info!(
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
    /// returns once they are on stable storage, and only then can the bridge take them
    /// ([`Spool::next_after`]). Returns, per message, whether it was accepted (and, with a
    /// store, is on stable storage): not when it is larger than the whole spool, nor when later
    /// messages of the same batch pushed it out before it was written.
    ///
    /// The state lock is not held across the commit: the batch is numbered and room made under
    /// it before, and the committed batch appended under it after. Meanwhile the bridge takes
    /// the next messages and removes delivered ones, so the drain upstream does not stop for
    /// every commit (with devices acknowledged per commit there are hundreds a second, each an
    /// fsync). Only the writer thread appends, so the queue stays in sequence order.
    pub(crate) fn push_batch(
        &self,
        msgs: Vec<(Arc<str>, Arc<[u8]>)>,
    ) -> Result<Vec<bool>, SpoolError> {
        let mut added: VecDeque<Spooled> = VecDeque::with_capacity(msgs.len());
        // Pushed out to make room: from the queue (in the store) or from this batch (never
        // written).
        let mut dropped = Vec::new();
        let mut too_big = 0u64;
        let now = Instant::now();
        // Per message: its sequence number, `None` if refused.
        let mut seqs = Vec::with_capacity(msgs.len());
        let unremoved = {
            let mut state = self.lock();
            for (topic, payload) in msgs {
                if cost(&topic, &payload) > self.max_bytes {
                    too_big += 1;
                    seqs.push(None);
                    continue;
                }
                let m = Spooled {
                    seq: state.next_seq,
                    topic,
                    payload,
                    at: now,
                };
                seqs.push(Some(m.seq));
                state.next_seq += 1;
                state.bytes += m.cost();
                added.push_back(m);
                while state.bytes > self.max_bytes {
                    // The oldest go first: the queue's, then this batch's own.
                    let Some(old) = state.queue.pop_front().or_else(|| added.pop_front()) else {
                        break;
                    };
                    state.bytes -= old.cost();
                    dropped.push(old.seq);
                }
            }
            // Deleted by this commit; a removal arriving meanwhile waits for the next one.
            std::mem::take(&mut state.unremoved)
        };
        if let Some((db, path)) = &self.store {
            let write = || -> Result<(), SpoolError> {
                let mut txn = db.begin_write().map_err(|e| store_err(path, e))?;
                txn.set_durability(Durability::Immediate);
                {
                    let mut table = txn.open_table(MESSAGES).map_err(|e| store_err(path, e))?;
                    for m in &added {
                        table
                            .insert(m.seq, encode(&m.topic, &m.payload).as_slice())
                            .map_err(|e| store_err(path, e))?;
                    }
                    for seq in dropped.iter().chain(&unremoved) {
                        table.remove(seq).map_err(|e| store_err(path, e))?;
                    }
                }
                txn.commit().map_err(|e| store_err(path, e))?;
                Ok(())
            };
            #[cfg(test)]
            if let Some(hook) = self
                .before_commit
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
            {
                hook();
            }
            if let Err(e) = write() {
                // Not accepted: the batch never enters the queue, and the deletions wait for
                // the next commit. (What it pushed out of the queue stays out: on disk it is
                // still there, so after a restart it is sent, a duplicate at worst.)
                let mut state = self.lock();
                state.bytes -= added.iter().map(Spooled::cost).sum::<u64>();
                state.unremoved.extend(unremoved);
                return Err(e);
            }
        }
        let accepted: Vec<bool> = seqs
            .iter()
            .map(|seq| seq.is_some_and(|seq| !dropped.contains(&seq)))
            .collect();
        let any = !added.is_empty();
        self.lock().queue.extend(added);
        let lost = dropped.len() as u64 + too_big;
        if lost > 0 {
            let total = self.dropped.fetch_add(lost, Ordering::Relaxed) + lost;
            tracing::warn!(
                "cloud spool full (evergreen.spooler.maxSizeBytes = {}): {} oldest messages dropped, {too_big} larger than the whole spool refused; {total} lost so far",
                self.max_bytes,
                dropped.len()
            );
        }
        if any {
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
            tracing::warn!(
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

    /// How much waits, and for how long the oldest has (for `evergreen status` and the
    /// metrics).
    pub fn depth(&self) -> SpoolDepth {
        let state = self.lock();
        SpoolDepth {
            messages: state.queue.len(),
            bytes: state.bytes,
            oldest_age: state.queue.front().map(|m| m.at.elapsed()),
        }
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

    /// Every message lost on its way to the cloud so far, by where.
    pub fn drops(&self) -> SpoolDrops {
        SpoolDrops {
            hand_off_full: self.hand_off_full.load(Ordering::Relaxed),
            spool_full: self.dropped.load(Ordering::Relaxed),
            not_stored: self.not_stored.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One message waiting for the writer thread, with its publisher's receipt if it waits.
struct Entry {
    topic: Arc<str>,
    payload: Arc<[u8]>,
    receipt: Option<Receipt>,
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<Entry>,
    /// Every sink is gone: the writer stops once the queue is empty.
    closed: bool,
    /// The writer thread is gone: nothing more can be stored.
    writer_gone: bool,
}

/// The queue between publishers and the writer thread. A `Mutex` and a `Condvar` rather than a
/// channel because its bound applies only to messages without a receipt (see the module docs).
struct HandOff {
    queue: Mutex<Queue>,
    wake: Condvar,
    capacity: usize,
}

impl HandOff {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Each change is one push, one drain or one flag: consistent even after a panic.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes the hand-off when the last sink goes, so the writer thread ends.
struct Closer(Arc<HandOff>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.wake.notify_all();
    }
}

/// Marks the hand-off dead if the writer thread ends (or panics), so no later message waits
/// on it, and what it still held is answered as not stored (its receipts drop unsettled).
struct WriterGone {
    hand_off: Arc<HandOff>,
    spool: Arc<Spool>,
}

impl Drop for WriterGone {
    fn drop(&mut self) {
        let left = {
            let mut q = self.hand_off.lock();
            q.writer_gone = true;
            std::mem::take(&mut q.entries)
        };
        if !left.is_empty() {
            self.spool
                .not_stored
                .fetch_add(left.len() as u64, Ordering::Relaxed);
        }
    }
}

/// The router's sink for the `cloud` target: the hand-off to the spool's writer thread, so
/// `offer` never waits for a disk commit.
#[derive(Clone)]
pub(crate) struct SpoolSink {
    hand_off: Arc<HandOff>,
    spool: Arc<Spool>,
    _closer: Arc<Closer>,
}

impl std::fmt::Debug for SpoolSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolSink")
            .field("capacity", &self.hand_off.capacity)
            .finish_non_exhaustive()
    }
}

impl SpoolSink {
    fn enqueue(&self, msg: Message, receipt: Option<&Receipt>) -> Result<(), OfferError> {
        let mut q = self.hand_off.lock();
        if q.writer_gone {
            drop(q);
            bump(&self.spool.not_stored);
            // `receipt` is not cloned: the router's settled hold alone would read as stored.
            if let Some(r) = receipt {
                r.clone().lost();
            }
            return Err(OfferError::Closed);
        }
        if receipt.is_none() && q.entries.len() >= self.hand_off.capacity {
            drop(q);
            bump(&self.spool.hand_off_full);
            return Err(OfferError::Full);
        }
        q.entries.push_back(Entry {
            topic: msg.topic,
            payload: msg.payload,
            receipt: receipt.cloned(),
        });
        drop(q);
        self.hand_off.wake.notify_one();
        Ok(())
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl DeliverySink for SpoolSink {
    fn offer(&self, msg: Message) -> Result<(), OfferError> {
        self.enqueue(msg, None)
    }

    fn offer_acked(&self, msg: Message, receipt: &Receipt) -> Result<(), OfferError> {
        self.enqueue(msg, Some(receipt))
    }

    fn queued(&self) -> Option<usize> {
        Some(self.hand_off.lock().entries.len())
    }
}

/// Starts the writer thread of `spool` and returns the sink that feeds it (`capacity` messages
/// without a receipt may wait for the writer). The thread ends when every sink is dropped.
pub(crate) fn spool_sink(spool: Arc<Spool>, capacity: usize) -> std::io::Result<SpoolSink> {
    let hand_off = Arc::new(HandOff {
        queue: Mutex::new(Queue::default()),
        wake: Condvar::new(),
        capacity: capacity.max(1),
    });
    let writer = WriterGone {
        hand_off: hand_off.clone(),
        spool: spool.clone(),
    };
    std::thread::Builder::new()
        .name("cloud-spool".into())
        .spawn(move || write_loop(&writer))?;
    Ok(SpoolSink {
        _closer: Arc::new(Closer(hand_off.clone())),
        hand_off,
        spool,
    })
}

/// The writer thread: commits whatever waits, up to [`MAX_BATCH`], in one transaction, then
/// answers each message's receipt.
fn write_loop(w: &WriterGone) {
    loop {
        let batch: Vec<Entry> = {
            let mut q = w.hand_off.lock();
            while q.entries.is_empty() && !q.closed {
                q = w
                    .hand_off
                    .wake
                    .wait(q)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if q.entries.is_empty() {
                return;
            }
            let n = q.entries.len().min(MAX_BATCH);
            q.entries.drain(..n).collect()
        };
        let msgs = batch
            .iter()
            .map(|e| (e.topic.clone(), e.payload.clone()))
            .collect();
        match w.spool.push_batch(msgs) {
            Ok(accepted) => {
                for (entry, ok) in batch.into_iter().zip(accepted) {
                    match (entry.receipt, ok) {
                        (Some(r), true) => r.stored(),
                        // Too big, or pushed out by its own batch: counted as spool full.
                        (Some(r), false) => r.lost(),
                        (None, _) => {}
                    }
                }
            }
            Err(e) => {
                let n = batch.len();
                w.spool.not_stored.fetch_add(n as u64, Ordering::Relaxed);
                tracing::error!("cloud spool: {n} messages not stored: {e}");
                // Their receipts drop unsettled with `batch`: no publisher acknowledges them.
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        assert_eq!(accepted, vec![false]);
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
    fn the_drain_is_not_held_by_a_commit_and_sees_a_batch_only_after_it() {
        let dir = tempfile::tempdir().expect("dir");
        let spool = Arc::new(Spool::open(&dir.path().join("cloud.redb"), 262_144).expect("open"));
        spool.push_batch((0..10).map(msg).collect()).expect("push");
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        *spool.before_commit.lock().expect("hook") = Some(Box::new(move || {
            let _ = entered_tx.send(());
            // Bounded, so a failing test ends.
            let _ = released
                .lock()
                .expect("release")
                .recv_timeout(Duration::from_secs(10));
        }));
        let writer = {
            let spool = spool.clone();
            std::thread::spawn(move || spool.push_batch((10..20).map(msg).collect()))
        };
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the second batch's commit began");
        // While that commit runs (an fsync, milliseconds on a busy disk, hundreds a second with
        // devices acknowledged per commit), the bridge takes the next messages and removes a
        // delivered one.
        let (done_tx, done) = std::sync::mpsc::channel();
        let bridge = {
            let spool = spool.clone();
            std::thread::spawn(move || {
                let next = spool.next_after(Some(8), 5);
                if let Some(first) = spool.next_after(None, 1).pop() {
                    spool.remove(first.seq).expect("remove");
                }
                let _ = done_tx.send(next.iter().map(|m| m.topic.to_string()).collect::<Vec<_>>());
            })
        };
        let during = done.recv_timeout(Duration::from_secs(5));
        let _ = release.send(());
        writer.join().expect("writer").expect("stored");
        bridge.join().expect("bridge");
        assert_eq!(
            during,
            Ok(vec!["t/9".to_string()]),
            "the bridge went on during the commit, and saw only committed messages"
        );
        // Once committed, the batch follows what was left, in order.
        let want: Vec<String> = (1..20).map(|i| format!("t/{i}")).collect();
        assert_eq!(drain(&spool), want);
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
                    meta: Default::default(),
                    route: 0,
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

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn message(i: usize) -> Message {
        let (topic, payload) = msg(i);
        Message {
            topic,
            payload,
            source: Arc::from("src"),
            meta: Default::default(),
            route: 0,
        }
    }

    #[test]
    fn an_acked_message_is_answered_stored_only_after_the_commit() {
        let dir = tempfile::tempdir().expect("dir");
        let spool = Arc::new(Spool::open(&dir.path().join("cloud.redb"), 262_144).expect("open"));
        let sink = spool_sink(spool.clone(), 1).expect("sink");
        let mut waits = Vec::new();
        for i in 0..300 {
            let (receipt, stored) = Receipt::new();
            // Never refused for a full hand-off: the publisher waits on `stored` instead.
            sink.offer_acked(message(i), &receipt).expect("taken");
            receipt.stored();
            waits.push(stored);
        }
        for stored in waits {
            assert!(block_on(stored), "every acked message is stored");
        }
        // Answered stored means committed: the spool holds every one.
        assert_eq!(spool.len(), 300);
        assert_eq!(spool.drops(), SpoolDrops::default());
        drop(sink);
    }

    #[test]
    fn a_message_too_big_for_the_spool_is_answered_not_stored_and_counted() {
        let spool = Arc::new(Spool::memory(1000));
        let sink = spool_sink(spool.clone(), 16).expect("sink");
        let (receipt, stored) = Receipt::new();
        let big = Message {
            topic: Arc::from("t"),
            payload: Arc::from(vec![0u8; 2000]),
            source: Arc::from("src"),
            meta: Default::default(),
            route: 0,
        };
        sink.offer_acked(big, &receipt).expect("taken");
        receipt.stored();
        assert!(!block_on(stored));
        assert_eq!(spool.drops().spool_full, 1);
    }

    #[test]
    fn a_full_hand_off_refuses_unacked_messages_and_counts_each() {
        let spool = Arc::new(Spool::memory(10_000_000));
        let sink = spool_sink(spool.clone(), 1).expect("sink");
        let mut refused = 0;
        for i in 0..5000 {
            if sink.offer(message(i)) == Err(OfferError::Full) {
                refused += 1;
            }
        }
        for _ in 0..500 {
            if spool.len() + refused == 5000 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(spool.drops().hand_off_full, refused as u64);
        assert_eq!(
            spool.len() + refused,
            5000,
            "each message stored or counted"
        );
    }
}
