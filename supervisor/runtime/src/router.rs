//! The subscription router: who receives a message published by whom on which topic.
//!
//! Owns the group's subscription table (an immutable topic trie per source, swapped whole on a
//! deployment), the mapping from target endpoints to the sinks that deliver to them, and the
//! delivery counters. A message published by `source` on `topic` goes to every target of a
//! subscription whose source is exactly `source` and whose subject matches `topic` (see
//! [`evergreen_ipc::topic::matches`], which this table must agree with), each target at most once.
//!
//! It must never block a publisher or know what an endpoint is: it sees plain strings (component
//! ARNs, thing ARNs, `cloud`, `GGShadowService`) and [`DeliverySink`]s. It knows nothing of
//! processes, MQTT servers or actors; whoever owns those attaches a sink. A full sink loses the
//! message for that target only, and the loss is counted rather than waited out.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use evergreen_ipc::topic::{validate_filter, validate_topic, TopicError};
use tokio::sync::mpsc;

mod receipt;

pub use receipt::{Receipt, Stored};

/// Deepest subject accepted, in levels. The lookup recurses once per level of the trie, so this
/// bounds its stack use; 256 levels is more than the 255 slashes of a 256-byte AWS IoT topic.
pub(crate) const MAX_FILTER_LEVELS: usize = 256;

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// One `(Source, Subject, Target)` triple of a group's subscription definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The subscription's id in the definition, quoted in errors.
    pub id: String,
    pub source: String,
    /// A topic filter: `+` is one level, `#` (last only) one or more levels.
    pub subject: String,
    pub target: String,
}

impl Subscription {
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        subject: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        Subscription {
            id: id.into(),
            source: source.into(),
            subject: subject.into(),
            target: target.into(),
        }
    }
}

/// Why a subscription cannot enter the table. Each names the subscription's id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("subscription {id}: subject {subject:?} is not a valid topic filter: {reason}")]
    InvalidSubject {
        id: String,
        subject: String,
        reason: TopicError,
    },
    #[error("subscription {id}: subject {subject:?} has {levels} levels, more than the {max} allowed", max = MAX_FILTER_LEVELS)]
    TooDeep {
        id: String,
        subject: String,
        levels: usize,
    },
    #[error("subscription {id}: the {role} endpoint is empty")]
    EmptyEndpoint { id: String, role: &'static str },
}

/// A target endpoint's position in one [`SubscriptionTable`]. Only meaningful for the table that
/// produced it: a new table numbers its targets afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetIdx(usize);

impl TargetIdx {
    pub fn index(self) -> usize {
        self.0
    }
}

/// Hash for topic levels and endpoint names. The std SipHash costs more than the rest of a
/// lookup's walk; its resistance to chosen keys buys nothing here because every key in these
/// maps comes from the deployed configuration, and a publisher's topic is only ever looked up,
/// never inserted. Word-at-a-time multiply-rotate in the manner of rustc's FxHash, with a final
/// mix so the top bits, which the hash table's probe uses, depend on every input byte.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Assembled in a register: copying into a stack buffer and reading it back as one
            // word stalls on store forwarding, which cost more than the whole hash.
            let word = rest
                .iter()
                .rev()
                .fold(0u64, |word, &byte| (word << 8) | u64::from(byte));
            // The length keeps "a" and "a\0" apart.
            self.add(word ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// Index of a node in [`SubscriptionTable::nodes`]; the trie is an arena so it has no pointers.
type NodeId = usize;

#[derive(Debug, Default)]
struct Node {
    /// Children by literal level. Empty for most leaves, and an empty map neither allocates nor
    /// hashes on lookup.
    children: KeyMap<Box<str>, NodeId>,
    /// The `+` child.
    plus: Option<NodeId>,
    /// Targets of filters that end exactly at this node.
    targets: Vec<TargetIdx>,
    /// Targets of filters that end with `#` right below this node: they match whenever at least
    /// one level of the topic remains.
    hash_targets: Vec<TargetIdx>,
}

/// The immutable, indexed form of a group's subscriptions: one topic trie per source, so a lookup
/// walks the topic's levels instead of scanning every subscription.
#[derive(Default)]
pub struct SubscriptionTable {
    nodes: Vec<Node>,
    /// Source name -> position in `sources`.
    source_index: KeyMap<Arc<str>, usize>,
    /// Source names (shared with every [`Message`] they publish) and their trie roots.
    sources: Vec<(Arc<str>, NodeId)>,
    target_names: Vec<Box<str>>,
    target_index: KeyMap<Box<str>, TargetIdx>,
    len: usize,
}

impl fmt::Debug for SubscriptionTable {
    // The trie itself would print thousands of lines; its size is what a log needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTable")
            .field("subscriptions", &self.len)
            .field("sources", &self.sources.len())
            .field("targets", &self.target_names.len())
            .field("trie_nodes", &self.nodes.len())
            .finish()
    }
}

impl SubscriptionTable {
    /// Indexes `subs`. Every invalid subscription is reported, not just the first. Duplicate
    /// triples are harmless: a target still receives each message once.
    pub fn build(subs: impl IntoIterator<Item = Subscription>) -> Result<Self, Vec<TableError>> {
        let mut table = SubscriptionTable::default();
        let mut errors = Vec::new();
        for sub in subs {
            if let Err(e) = check(&sub) {
                errors.push(e);
                continue;
            }
            if !errors.is_empty() {
                // The table will be thrown away; keep checking but stop building.
                continue;
            }
            let root = table.root_for(&sub.source);
            let target = table.target_for(&sub.target);
            table.insert(root, &sub.subject, target);
            table.len += 1;
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for node in &mut table.nodes {
            // Sorted and unique per node, so a lookup only dedups across nodes.
            for list in [&mut node.targets, &mut node.hash_targets] {
                list.sort_unstable();
                list.dedup();
                list.shrink_to_fit();
            }
            node.children.shrink_to_fit();
        }
        table.nodes.shrink_to_fit();
        Ok(table)
    }

    fn root_for(&mut self, source: &str) -> NodeId {
        if let Some(&s) = self.source_index.get(source) {
            return self.sources[s].1;
        }
        let root = self.new_node();
        let name: Arc<str> = Arc::from(source);
        self.source_index.insert(name.clone(), self.sources.len());
        self.sources.push((name, root));
        root
    }

    fn target_for(&mut self, target: &str) -> TargetIdx {
        if let Some(&t) = self.target_index.get(target) {
            return t;
        }
        let t = TargetIdx(self.target_names.len());
        self.target_names.push(target.into());
        self.target_index.insert(target.into(), t);
        t
    }

    fn new_node(&mut self) -> NodeId {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// Adds a subject already checked by [`check`], so `#` can only be its last level.
    fn insert(&mut self, root: NodeId, subject: &str, target: TargetIdx) {
        let mut node = root;
        for level in subject.split('/') {
            node = match level {
                "#" => {
                    self.nodes[node].hash_targets.push(target);
                    return;
                }
                "+" => match self.nodes[node].plus {
                    Some(next) => next,
                    None => {
                        let next = self.new_node();
                        self.nodes[node].plus = Some(next);
                        next
                    }
                },
                literal => match self.nodes[node].children.get(literal) {
                    Some(&next) => next,
                    None => {
                        let next = self.new_node();
                        self.nodes[node].children.insert(literal.into(), next);
                        next
                    }
                },
            };
        }
        self.nodes[node].targets.push(target);
    }

    /// Replaces `out` with the targets that `topic` published by `source` reaches, sorted by
    /// index and without duplicates. `topic` is taken as a valid topic (see
    /// [`validate_topic`]); [`Router::publish`] checks it first. Allocates nothing once `out`
    /// has grown to the largest fan-out.
    pub fn targets(&self, source: &str, topic: &str, out: &mut Vec<TargetIdx>) {
        out.clear();
        if let Some(s) = self.source_index.get(source) {
            self.targets_of(*s, topic, out);
        }
    }

    fn targets_of(&self, source: usize, topic: &str, out: &mut Vec<TargetIdx>) {
        out.clear();
        if let Some(&(_, root)) = self.sources.get(source) {
            self.collect(root, topic, out);
        }
        // Several subscriptions (through `+`, `#` and literal branches) can name one target.
        // An in-place sort is cheap for a fan-out of a handful and needs no scratch set.
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }

    /// Collects what matches `rest` (one or more levels) below `node`. Recursion depth is
    /// bounded by the trie's depth, which [`MAX_FILTER_LEVELS`] bounds, whatever the topic.
    fn collect(&self, node: NodeId, rest: &str, out: &mut Vec<TargetIdx>) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        // At least one level remains, which is exactly what `#` needs.
        out.extend_from_slice(&n.hash_targets);
        // Levels are short, so a plain byte scan beats `split_once`'s memchr call; `/` is ASCII,
        // so both slices stay on char boundaries.
        let (level, tail) = match rest.bytes().position(|b| b == b'/') {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        if let Some(&next) = n.children.get(level) {
            self.step(next, tail, out);
        }
        if let Some(next) = n.plus {
            self.step(next, tail, out);
        }
    }

    fn step(&self, node: NodeId, tail: Option<&str>, out: &mut Vec<TargetIdx>) {
        match tail {
            Some(rest) => self.collect(node, rest, out),
            None => {
                if let Some(n) = self.nodes.get(node) {
                    out.extend_from_slice(&n.targets);
                }
            }
        }
    }

    /// The endpoint name of `idx`; empty if `idx` came from another table.
    pub fn target_name(&self, idx: TargetIdx) -> &str {
        self.target_names.get(idx.0).map_or("", |name| name)
    }

    /// The index of a target endpoint, if any subscription names it.
    #[cfg(test)]
    pub(crate) fn target_idx(&self, name: &str) -> Option<TargetIdx> {
        self.target_index.get(name).copied()
    }

    /// Every target endpoint, in index order.
    pub(crate) fn targets_list(&self) -> impl ExactSizeIterator<Item = (TargetIdx, &str)> + '_ {
        self.target_names
            .iter()
            .enumerate()
            .map(|(i, name)| (TargetIdx(i), &**name))
    }

    /// Every source endpoint, in order of first appearance.
    pub fn sources(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.sources.iter().map(|(name, _)| &**name)
    }

    /// Number of subscriptions indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn check(sub: &Subscription) -> Result<(), TableError> {
    for (role, value) in [("source", &sub.source), ("target", &sub.target)] {
        if value.is_empty() {
            return Err(TableError::EmptyEndpoint {
                id: sub.id.clone(),
                role,
            });
        }
    }
    validate_filter(&sub.subject).map_err(|reason| TableError::InvalidSubject {
        id: sub.id.clone(),
        subject: sub.subject.clone(),
        reason,
    })?;
    let levels = sub.subject.split('/').count();
    if levels > MAX_FILTER_LEVELS {
        return Err(TableError::TooDeep {
            id: sub.id.clone(),
            subject: sub.subject.clone(),
            levels,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------------

/// A routed message. Every field is shared, so fanning out to N targets copies no bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Arc<[u8]>,
    pub source: Arc<str>,
    /// How it was published, beyond topic and payload (default for components).
    pub meta: Meta,
    /// Which routing this copy comes from: every copy one [`Router`] call hands its targets
    /// has the same number, and no other call's does (0: not from a router). The MQTT server's
    /// shared subscriptions pick one member per routed message by it.
    pub route: u64,
}

/// What a publisher said about a message beyond its topic and payload: an MQTT device's QoS 0
/// and, from an MQTT 5 device, its PUBLISH properties. The router carries it to every target
/// untouched; only the local MQTT server reads it (components and the cloud ignore it, as the
/// IPC carries topic and payload only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Published at QoS 0: delivered at most once, whatever QoS a subscriber was granted
    /// (MQTT: the delivered QoS is the lower of the two).
    pub at_most_once: bool,
    /// Published at QoS 2 (exactly once): delivered at QoS 2 to a subscription granted QoS 2.
    pub exactly_once: bool,
    /// Published with MQTT's RETAIN flag (the local MQTT server keeps it for later
    /// subscribers; v5 subscriptions with Retain As Published see the flag).
    pub retain: bool,
    /// MQTT 5 PUBLISH properties, forwarded unaltered to MQTT devices (MQTT-3.3.2-x).
    pub props: Option<Arc<PublishProps>>,
}

/// The MQTT 5 PUBLISH properties a server forwards to subscribers (topic alias and
/// subscription identifiers are per connection, so not among them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProps {
    /// User properties, in order (a name may repeat).
    pub user: Vec<(String, String)>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub content_type: Option<String>,
    /// Payload Format Indicator: `Some(true)` UTF-8 text, `Some(false)` unspecified bytes.
    pub utf8_payload: Option<bool>,
    /// When the message expires (Unix seconds), from its Message Expiry Interval: a server
    /// delivers it only until then, with the interval that is left.
    pub expires_at: Option<u64>,
}

/// Why a sink did not take a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the target's queue is full")]
    Full,
    #[error("the target's receiver is gone")]
    Closed,
}

/// Where the router hands messages for one target endpoint. `offer` is called on the
/// publisher's thread and must return at once: queue the message or refuse it.
pub trait DeliverySink: Send + Sync + 'static {
    fn offer(&self, msg: Message) -> Result<(), OfferError>;

    /// Offers a message whose publisher acknowledges it only once it is stored (see
    /// [`Receipt`]). A sink that stores messages durably keeps a clone of `receipt` with the
    /// message and settles it after its commit; if it does not take the message it must leave
    /// a clone unsettled (drop one), or the publisher would take a refusal for a store. The
    /// default is for sinks that store nothing: they take the message as `offer` does and what
    /// they promise is unchanged, so the receipt is not theirs to hold.
    fn offer_acked(&self, msg: Message, receipt: &Receipt) -> Result<(), OfferError> {
        let _ = receipt;
        self.offer(msg)
    }

    /// Messages waiting in this sink, if it queues them (for status displays).
    fn queued(&self) -> Option<usize> {
        None
    }
}

/// The sending half of a bounded per-target queue.
#[derive(Debug, Clone)]
pub struct QueueSink {
    tx: mpsc::Sender<Message>,
}

/// The receiving half of a bounded per-target queue, read by whoever delivers to the target.
#[derive(Debug)]
pub struct QueueReceiver {
    rx: mpsc::Receiver<Message>,
}

/// Why [`QueueReceiver::try_recv`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    #[error("the queue is empty")]
    Empty,
    #[error("the queue is empty and every sender is gone")]
    Closed,
}

/// A queue holding at most `capacity` messages for one target. The bound is what keeps a slow
/// target from growing memory without limit; past it, messages for that target are dropped and
/// counted. `capacity` is clamped to what tokio accepts (at least 1) instead of panicking.
pub fn bounded_queue(capacity: usize) -> (QueueSink, QueueReceiver) {
    let capacity = capacity.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let (tx, rx) = mpsc::channel(capacity);
    (QueueSink { tx }, QueueReceiver { rx })
}

impl QueueSink {
    /// Messages waiting in the queue: the used part of its bound, read from
    /// the channel's free permits without touching the messages.
    pub fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl DeliverySink for QueueSink {
    fn offer(&self, msg: Message) -> Result<(), OfferError> {
        self.tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => OfferError::Full,
            mpsc::error::TrySendError::Closed(_) => OfferError::Closed,
        })
    }

    fn queued(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl QueueReceiver {
    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The next message; `None` once every sender (the router's included) is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        self.rx.try_recv().map_err(|e| match e {
            mpsc::error::TryRecvError::Empty => TryRecvError::Empty,
            mpsc::error::TryRecvError::Disconnected => TryRecvError::Closed,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The router
// ---------------------------------------------------------------------------------------------

/// Why a publish was refused. Returned to the publisher, never dropped silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("cannot publish to this topic: {0}")]
    InvalidTopic(#[from] TopicError),
}

/// What happened to one published message, per matching target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Accepted by the target's sink.
    pub delivered: usize,
    /// The target's queue was full.
    pub dropped_full: usize,
    /// The target matched but no sink is attached for it (e.g. `cloud` before the bridge runs).
    pub dropped_unattached: usize,
    /// The target's sink is attached but its receiver is gone.
    pub closed: usize,
}

impl PublishOutcome {
    /// Number of distinct targets the message matched.
    pub fn matched(&self) -> usize {
        self.delivered + self.dropped_full + self.dropped_unattached + self.closed
    }
}

/// Counters of one target endpoint, summed over every table it appeared in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetStats {
    pub delivered: u64,
    pub dropped_full: u64,
    pub dropped_unattached: u64,
    pub closed: u64,
}

/// Counters of one source endpoint, summed over every table it appeared in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Publishes accepted (valid topic), routed or not.
    pub published: u64,
    /// Accepted publishes that matched no subscription.
    pub unrouted: u64,
    /// Publishes refused for an invalid topic.
    pub refused: u64,
}

/// A copy of the router's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub targets: BTreeMap<String, TargetStats>,
    pub sources: BTreeMap<String, SourceStats>,
    /// Publishes from sources that no subscription of the current table names, summed: a name
    /// per such source would let the map grow with whatever the caller passes.
    pub unknown_sources: SourceStats,
}

// Counters are statistics read by nobody on the delivery path, so `Relaxed` is enough: no other
// memory is published through them.
#[derive(Debug, Default)]
struct TargetCounters {
    delivered: AtomicU64,
    dropped_full: AtomicU64,
    dropped_unattached: AtomicU64,
    closed: AtomicU64,
}

impl TargetCounters {
    fn load(&self) -> TargetStats {
        TargetStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            dropped_unattached: self.dropped_unattached.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
struct SourceCounters {
    published: AtomicU64,
    unrouted: AtomicU64,
    refused: AtomicU64,
}

impl SourceCounters {
    fn load(&self) -> SourceStats {
        SourceStats {
            published: self.published.load(Ordering::Relaxed),
            unrouted: self.unrouted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Everything a publish reads, resolved to indices of the current table so the hot path does
/// one hash lookup (the source) plus one per topic level, and none per target.
struct Snapshot {
    table: Arc<SubscriptionTable>,
    /// By [`TargetIdx`]: each target's slot, which attach and detach fill and empty in place.
    sinks: Vec<Arc<SinkSlot>>,
    /// By [`TargetIdx`].
    target_counters: Vec<Arc<TargetCounters>>,
    /// By the table's source position.
    source_counters: Vec<Arc<SourceCounters>>,
}

/// Where an endpoint's sink is attached, one per endpoint name for the router's life.
///
/// Attaching or detaching a sink changes its slot and nothing else: the snapshot is rebuilt
/// only when the table changes. A rebuild per attach (a hash of every target's name, a new
/// vector per kind) made each device connection cost O(targets): with 2,000 devices a storm
/// of connections and disconnections took 44 % of the MQTT server's thread, and the publishes
/// that arrived meanwhile waited hundreds of milliseconds behind it (eg-mqtt-bench p2p: the
/// first second's messages were its whole p99).
#[derive(Default)]
struct SinkSlot(RwLock<Option<Arc<dyn DeliverySink>>>);

impl SinkSlot {
    fn get(&self) -> Option<Arc<dyn DeliverySink>> {
        // A panic while holding the lock cannot leave the `Option` half-written.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, sink: Option<Arc<dyn DeliverySink>>) -> Option<Arc<dyn DeliverySink>> {
        std::mem::replace(
            &mut *self.0.write().unwrap_or_else(PoisonError::into_inner),
            sink,
        )
    }
}

/// The state that outlives a table: sink slots and counters by endpoint name.
#[derive(Default)]
struct Registry {
    table: Arc<SubscriptionTable>,
    sinks: HashMap<String, Arc<SinkSlot>>,
    targets: HashMap<String, Arc<TargetCounters>>,
    sources: HashMap<String, Arc<SourceCounters>>,
}

impl Registry {
    fn snapshot(&mut self) -> Snapshot {
        let table = self.table.clone();
        let sinks = table
            .targets_list()
            .map(|(_, name)| self.slot(name))
            .collect();
        let target_counters = table
            .targets_list()
            .map(|(_, name)| self.targets.entry(name.to_owned()).or_default().clone())
            .collect();
        let source_counters = table
            .sources()
            .map(|name| self.sources.entry(name.to_owned()).or_default().clone())
            .collect();
        Snapshot {
            table,
            sinks,
            target_counters,
            source_counters,
        }
    }

    /// The slot of `endpoint`, made empty at its first mention (by a table or an attach).
    fn slot(&mut self, endpoint: &str) -> Arc<SinkSlot> {
        if let Some(slot) = self.sinks.get(endpoint) {
            return slot.clone();
        }
        self.sinks.entry(endpoint.to_owned()).or_default().clone()
    }
}

thread_local! {
    /// Per-thread lookup buffer so a publish does not allocate for its target list. Taken out
    /// while in use: a sink that publishes from inside `offer` gets a fresh buffer instead of a
    /// borrow conflict.
    static SCRATCH: Cell<Vec<TargetIdx>> = const { Cell::new(Vec::new()) };
}

/// Routes published messages to attached sinks. Share it behind an `Arc`; every method takes
/// `&self`.
pub struct Router {
    /// What publishes read. A read lock held only long enough to clone the `Arc`, so a swap
    /// never waits for a delivery and a sink may call back into the router.
    current: RwLock<Arc<Snapshot>>,
    /// Serialises attach, detach and table swaps so none of them loses another's change.
    registry: Mutex<Registry>,
    unknown_sources: SourceCounters,
    /// The last [`Message::route`] handed out.
    routes: AtomicU64,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        let attached = snapshot.sinks.iter().filter(|s| s.get().is_some()).count();
        f.debug_struct("Router")
            .field("table", &snapshot.table)
            .field("attached_targets", &attached)
            .finish_non_exhaustive()
    }
}

impl Router {
    pub fn new(table: SubscriptionTable) -> Self {
        let mut registry = Registry {
            table: Arc::new(table),
            ..Registry::default()
        };
        let snapshot = registry.snapshot();
        Router {
            current: RwLock::new(Arc::new(snapshot)),
            registry: Mutex::new(registry),
            unknown_sources: SourceCounters::default(),
            routes: AtomicU64::new(0),
        }
    }

    /// Swaps in a new table atomically: each publish sees the old table or the new one, whole.
    /// Sinks stay attached by endpoint name; counters carry on by name.
    pub(crate) fn replace_table(&self, table: SubscriptionTable) {
        self.update(|registry| registry.table = Arc::new(table));
    }

    /// Attaches (or replaces) the sink for `endpoint`. Allowed before any subscription names
    /// it, so a sink can be ready before the deployment that routes to it. O(1): it fills the
    /// endpoint's slot, which the current snapshot already holds if its table names it.
    pub fn attach(&self, endpoint: &str, sink: Arc<dyn DeliverySink>) {
        let replaced = {
            let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            registry.slot(endpoint).set(Some(sink))
        };
        // The sink it replaced (if any) is dropped outside the registry's lock.
        drop(replaced);
    }

    /// Detaches the sink for `endpoint`; messages for it are then counted as unattached.
    pub fn detach(&self, endpoint: &str) {
        let detached = {
            let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            registry.sinks.get(endpoint).and_then(|slot| slot.set(None))
        };
        drop(detached);
    }

    /// The table publishes currently route by.
    pub fn table(&self) -> Arc<SubscriptionTable> {
        self.snapshot().table.clone()
    }

    fn update(&self, change: impl FnOnce(&mut Registry)) {
        // A panic elsewhere while holding either lock cannot leave them half-updated: the
        // registry's maps are changed by single inserts and the snapshot is swapped whole. So a
        // poisoned lock is still consistent, and routing goes on.
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut registry);
        let snapshot = Arc::new(registry.snapshot());
        // The old snapshot is dropped after the write lock is released, outside both locks'
        // critical path for publishers.
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(PoisonError::into_inner),
            snapshot,
        );
        drop(registry);
        drop(old);
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Routes one message from `source`. Never blocks: a target whose sink is full, closed or
    /// missing loses this message and the loss is counted. A topic with a wildcard, a NUL or
    /// nothing at all is refused.
    pub fn publish(
        &self,
        source: &str,
        topic: &str,
        payload: Arc<[u8]>,
    ) -> Result<PublishOutcome, PublishError> {
        self.route(source, topic, payload, Meta::default(), None)
    }

    /// [`Router::publish`] for a publisher that acknowledges only what is stored: every
    /// durable target (the cloud spool) holds a clone of `receipt` until its commit, and the
    /// publisher's [`Stored`] tells whether all of them stored it. Never blocks either: the
    /// publisher waits on its `Stored`, which is what holds it back when the store is slow.
    pub fn publish_acked(
        &self,
        source: &str,
        topic: &str,
        payload: Arc<[u8]>,
        receipt: Receipt,
    ) -> Result<PublishOutcome, PublishError> {
        self.publish_with(source, topic, payload, Meta::default(), Some(receipt))
    }

    /// [`Router::publish`] (without `receipt`) or [`Router::publish_acked`] (with it) of a
    /// message that carries `meta` (an MQTT device's publish).
    pub fn publish_with(
        &self,
        source: &str,
        topic: &str,
        payload: Arc<[u8]>,
        meta: Meta,
        receipt: Option<Receipt>,
    ) -> Result<PublishOutcome, PublishError> {
        let Some(receipt) = receipt else {
            return self.route(source, topic, payload, meta, None);
        };
        let outcome = self.route(source, topic, payload, meta, Some(&receipt));
        // The router's own hold is no store: only the sinks' clones decide.
        receipt.stored();
        outcome
    }

    fn route(
        &self,
        source: &str,
        topic: &str,
        payload: Arc<[u8]>,
        meta: Meta,
        receipt: Option<&Receipt>,
    ) -> Result<PublishOutcome, PublishError> {
        let snapshot = self.snapshot();
        let table = &snapshot.table;
        let source_idx = table.source_index.get(source).copied();
        let source_counters = source_idx
            .and_then(|s| snapshot.source_counters.get(s))
            .map_or(&self.unknown_sources, |c| &**c);

        if let Err(e) = validate_topic(topic) {
            bump(&source_counters.refused);
            return Err(PublishError::InvalidTopic(e));
        }
        bump(&source_counters.published);

        let mut outcome = PublishOutcome::default();
        let Some((source_idx, source_name)) =
            source_idx.and_then(|s| table.sources.get(s).map(|(name, _)| (s, name)))
        else {
            bump(&source_counters.unrouted);
            return Ok(outcome);
        };

        let mut targets = SCRATCH.with(Cell::take);
        table.targets_of(source_idx, topic, &mut targets);
        if targets.is_empty() {
            bump(&source_counters.unrouted);
        }

        // Built on the first attached target so an unrouted publish allocates nothing.
        let mut message: Option<Message> = None;
        for &target in &targets {
            let Some(counters) = snapshot.target_counters.get(target.0) else {
                continue;
            };
            let Some(sink) = snapshot.sinks.get(target.0).and_then(|slot| slot.get()) else {
                outcome.dropped_unattached += 1;
                bump(&counters.dropped_unattached);
                continue;
            };
            let msg = message
                .get_or_insert_with(|| Message {
                    topic: Arc::from(topic),
                    payload: payload.clone(),
                    source: source_name.clone(),
                    meta: meta.clone(),
                    route: self.routes.fetch_add(1, Ordering::Relaxed) + 1,
                })
                .clone();
            let offered = match receipt {
                Some(receipt) => sink.offer_acked(msg, receipt),
                None => sink.offer(msg),
            };
            match offered {
                Ok(()) => {
                    outcome.delivered += 1;
                    bump(&counters.delivered);
                }
                Err(OfferError::Full) => {
                    outcome.dropped_full += 1;
                    bump(&counters.dropped_full);
                }
                Err(OfferError::Closed) => {
                    outcome.closed += 1;
                    bump(&counters.closed);
                }
            }
        }

        targets.clear();
        SCRATCH.with(|scratch| scratch.set(targets));
        Ok(outcome)
    }

    /// Messages waiting for each attached endpoint whose sink queues them.
    pub fn queue_depths(&self) -> BTreeMap<String, usize> {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        registry
            .sinks
            .iter()
            .filter_map(|(name, slot)| slot.get()?.queued().map(|n| (name.clone(), n)))
            .collect()
    }

    /// A copy of every counter: targets and sources of any table this router has routed by.
    pub fn stats(&self) -> RouterStats {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        RouterStats {
            targets: registry
                .targets
                .iter()
                .map(|(name, c)| (name.clone(), c.load()))
                .collect(),
            sources: registry
                .sources
                .iter()
                .map(|(name, c)| (name.clone(), c.load()))
                .collect(),
            unknown_sources: self.unknown_sources.load(),
        }
    }
}

#[cfg(test)]
mod tests;
