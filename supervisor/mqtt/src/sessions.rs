//! The durable store of the local MQTT server's persistent sessions: per thing ARN, the granted
//! filters (with their QoS) and the QoS 1 messages queued for it while it is offline, so a
//! restart of the runtime (an upgrade, a crash, `kill -9`, power loss) forgets neither.
//!
//! The hub (`mqtt/mod.rs`) keeps the sessions in memory as before and tells this store about
//! every change; the store never decides anything about MQTT.
//!
//! # Choices
//!
//! * **Store**: [redb](https://docs.rs/redb), as for the cloud spool (`evergreen_cloud::spool`), in its
//!   own file `<writeDirectory>/mqtt/sessions.redb` (default the root: state goes where the
//!   spool goes, not into a root that may be read-only; one file per concern, so a damaged
//!   session store does not take the spool with it). Tables: `sessions` maps a thing ARN to
//!   its granted filters (a row exists exactly while the thing has a persistent session,
//!   filters or not), and `queued` maps `(thing ARN, seq)` to a message (topic, source,
//!   payload). `seq` is one increasing
//!   counter for the whole store, so iterating a thing's key range gives its messages in the
//!   order they were queued. A third, `expiry`, holds an MQTT 5 session's expiry interval and
//!   when its device went offline (0 while connected: after a restart it counts from the load);
//!   a session past it is deleted when the store is loaded. `queued_meta` holds, beside a
//!   queued message, what it carries beyond its bytes when it has any (QoS 2, MQTT 5
//!   properties: `crate::record`), and `retained` the retained messages (`crate::retained`).
//! * **fsync policy**: a message counts as queued for an offline device only once it is
//!   committed with `Durability::Immediate` (redb fsyncs before the commit returns). Session
//!   changes (new persistent session, filters granted or removed, a session ended) are committed
//!   the same way. The router's path ([`SessionStore::queue`], called from the session's
//!   `DeliverySink::offer`) never waits for the disk: it hands the write to the store's writer
//!   thread over a bounded channel ([`HANDOFF`] entries). The writer commits whatever has queued
//!   up in one transaction (group commit), so a burst costs one fsync per batch, not per message.
//!   A message still in the hand-off when the process dies is lost, as any message not yet
//!   queued. A full hand-off is never waited for: that message is kept in memory only (it is
//!   still delivered unless the runtime stops first), counted in `SessionStore::not_stored`
//!   and logged.
//! * **Removals** after the device's PUBACK are committed with `Durability::Eventual` (no fsync)
//!   unless the same batch holds other writes: after a crash or power loss an already delivered
//!   message may be delivered again. That is a duplicate, which QoS 1 allows, never a loss. A
//!   clean stop flushes them with an fsync ([`SessionStore::flush`]), so a graceful restart
//!   sends nothing twice.
//! * **Bound**: the hub keeps at most `OFFLINE_QUEUE` (1000) messages per session in memory and
//!   stores only those; on load, a session holding more (a store written by a build with a larger
//!   bound) keeps its newest `OFFLINE_QUEUE` and the rest is deleted, counted and logged. Queued
//!   rows of a thing without a session row (its session ended while the write was in flight) are
//!   deleted on load.
//! * **A damaged store** (redb finds it corrupted, or it is not a redb file) is renamed to
//!   `<file>.damaged-<unix time>` and a new one is started, with an error in the log, as the
//!   spool does (`evergreen_durable::redb_file`): devices must still be able to connect; the damaged file is kept for inspection. A store held by
//!   another runtime is an error for the operator, not damage.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use tokio::sync::mpsc as handoff;

use evergreen_runtime::router::{Message, Meta};

use crate::record::{self, Reader};

/// Thing ARN -> granted filters (see [`encode_subs`]).
const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");

/// (thing ARN, seq) -> a queued message (see [`encode_msg`]).
const QUEUED: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("queued");

/// Thing ARN -> (MQTT 5 session expiry interval in seconds, unix time the device went offline
/// or 0 while it was connected). No row: the session never expires (MQTT 3.1.1, or v5 with
/// the interval 0xFFFFFFFF).
const EXPIRY: TableDefinition<'_, &str, (u32, u64)> = TableDefinition::new("expiry");

/// (thing ARN, seq) -> the metadata of a queued message that has any (QoS 2, MQTT 5
/// properties; `crate::record`), beside its row in [`QUEUED`]. Stores written before it have
/// none: their messages come back as QoS 1 without properties.
const QUEUED_META: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("queued_meta");

/// Topic -> its retained message, as `crate::retained` encodes it (the store keeps the bytes).
const RETAINED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("retained");

/// Writes waiting for the writer thread; past it a queued message is kept in memory only.
/// The channel (tokio's, which the writer thread reads with `blocking_recv`) takes memory for
/// what is waiting, 32 slots at a time; std's `sync_channel` would hold all 4,096 slots
/// (about 420 KB) from the start, for a store that is idle on most gateways.
pub(crate) const HANDOFF: usize = 4096;

/// Most writes the writer thread commits in one transaction.
const MAX_BATCH: usize = 1024;

/// How long [`SessionStore::flush`] waits for the writer.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionStoreError {
    #[error("MQTT session store {}: {source}", path.display())]
    Store {
        path: PathBuf,
        source: Box<redb::Error>,
    },
    #[error("MQTT session store {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn store_err(path: &Path, e: impl Into<redb::Error>) -> SessionStoreError {
    SessionStoreError::Store {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

/// A persistent session as the store holds it.
#[derive(Debug, Clone)]
pub(crate) struct StoredSession {
    pub thing_arn: Arc<str>,
    /// Granted filters and whether at QoS 1.
    pub subs: Vec<Grant>,
    /// Queued QoS 1 messages, oldest first, with their key.
    pub queued: Vec<(u64, Message)>,
    /// MQTT 5 session expiry: the interval and when the device went offline (unix seconds;
    /// for a device connected when the runtime stopped, the time of this load).
    pub expiry: Option<(u32, u64)>,
}

/// What [`SessionStore::open`] found: the store, its persistent sessions and its retained
/// messages (topic, encoded).
pub(crate) struct Opened {
    pub store: Arc<SessionStore>,
    pub sessions: Vec<StoredSession>,
    pub retained: Vec<(String, Vec<u8>)>,
}

#[cfg(test)]
impl Opened {
    /// The store and its sessions (what most tests look at).
    pub(crate) fn pair(self) -> (Arc<SessionStore>, Vec<StoredSession>) {
        (self.store, self.sessions)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One write for the writer thread.
#[derive(Debug)]
enum Op {
    /// The session's granted filters (creates the session row).
    Subs { arn: Arc<str>, subs: Vec<Grant> },
    /// Ends the stored session (row and queue); with `persistent`, a new empty one begins.
    Reset { arn: Arc<str>, persistent: bool },
    Queue {
        arn: Arc<str>,
        seq: u64,
        msg: Message,
    },
    /// A delivered message.
    Remove { arn: Arc<str>, seq: u64 },
    /// The session's expiry: `None` never; `Some((secs, offline since or 0))`.
    Expiry {
        arn: Arc<str>,
        expiry: Option<(u32, u64)>,
    },
    /// A topic's retained message (encoded), or none.
    Retain {
        topic: Arc<str>,
        value: Option<Vec<u8>>,
    },
    /// Commits with an fsync and answers.
    Flush(mpsc::SyncSender<()>),
    /// Commits, closes the database (releasing its lock) and answers; the writer ends.
    /// Only the tests close a store (to open its file again); the runtime flushes.
    #[cfg(test)]
    Close(mpsc::SyncSender<()>),
}

/// The store: a hand-off to its writer thread, shared by the hub and every session.
#[derive(Debug)]
pub(crate) struct SessionStore {
    tx: handoff::Sender<Op>,
    next_seq: AtomicU64,
    not_stored: AtomicU64,
    path: PathBuf,
    /// Things with a stored session: a clean connect of any other writes nothing (no fsync per
    /// connection of devices that never use persistent sessions).
    known: Mutex<HashSet<Arc<str>>>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Topics and filters are at most 65535 bytes in MQTT; ARNs far shorter.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn get_str<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a str> {
    let len = usize::from(u16::from_le_bytes([*bytes.get(*at)?, *bytes.get(*at + 1)?]));
    let s = std::str::from_utf8(bytes.get(*at + 2..*at + 2 + len)?).ok()?;
    *at += 2 + len;
    Some(s)
}

/// A filter granted to a device, with what its SUBSCRIBE asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) filter: String,
    /// Granted QoS 1 or 2 (else 0).
    pub(crate) qos1: bool,
    /// Granted QoS 2.
    pub(crate) qos2: bool,
    /// MQTT 5 No Local: the device's own publishes are not delivered to it on this filter.
    pub(crate) no_local: bool,
    /// MQTT 5 Retain As Published: live messages keep the RETAIN flag they were published with.
    pub(crate) retain_as_published: bool,
    /// MQTT 5 Subscription Identifier of the SUBSCRIBE that granted it (sent with each message
    /// it matches, MQTT-3.3.4-3).
    pub(crate) sub_id: Option<u32>,
}

/// A plain grant of `filter` at QoS 0 or 1, no options (for the tests of this crate).
#[cfg(test)]
pub(crate) fn grant(filter: &str, qos1: bool) -> Grant {
    Grant {
        filter: filter.into(),
        qos1,
        qos2: false,
        no_local: false,
        retain_as_published: false,
        sub_id: None,
    }
}

/// Bit of a grant's flags byte: granted QoS 1.
const GRANT_QOS1: u8 = 1;
/// Bit of a grant's flags byte: No Local. Stores written before it have only 0 or 1 there.
const GRANT_NO_LOCAL: u8 = 2;
/// Bit of a grant's flags byte: Retain As Published.
const GRANT_RAP: u8 = 4;
/// Bit of a grant's flags byte: granted QoS 2 (with [`GRANT_QOS1`]).
const GRANT_QOS2: u8 = 8;
/// Bit of a grant's flags byte: a subscription identifier follows (`u32` little-endian).
const GRANT_SUB_ID: u8 = 16;

/// `[flags u8][sub id u32, if GRANT_SUB_ID][u16 length][filter]…` (flags: [`GRANT_QOS1`],
/// [`GRANT_NO_LOCAL`], [`GRANT_RAP`], [`GRANT_QOS2`], [`GRANT_SUB_ID`]).
fn encode_subs(subs: &[Grant]) -> Vec<u8> {
    let mut out = Vec::new();
    for g in subs {
        let mut flags = 0;
        if g.qos1 {
            flags |= GRANT_QOS1;
        }
        if g.no_local {
            flags |= GRANT_NO_LOCAL;
        }
        if g.retain_as_published {
            flags |= GRANT_RAP;
        }
        if g.qos2 {
            flags |= GRANT_QOS2;
        }
        if g.sub_id.is_some() {
            flags |= GRANT_SUB_ID;
        }
        out.push(flags);
        if let Some(id) = g.sub_id {
            out.extend_from_slice(&id.to_le_bytes());
        }
        put_str(&mut out, &g.filter);
    }
    out
}

fn decode_subs(bytes: &[u8]) -> Option<Vec<Grant>> {
    let mut subs = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let flags = *bytes.get(at)?;
        at += 1;
        let sub_id = if flags & GRANT_SUB_ID == 0 {
            None
        } else {
            let id = bytes.get(at..at + 4)?;
            at += 4;
            Some(u32::from_le_bytes(id.try_into().ok()?))
        };
        subs.push(Grant {
            sub_id,
            filter: get_str(bytes, &mut at)?.to_owned(),
            qos1: flags & GRANT_QOS1 != 0,
            qos2: flags & GRANT_QOS2 != 0,
            no_local: flags & GRANT_NO_LOCAL != 0,
            retain_as_published: flags & GRANT_RAP != 0,
        });
    }
    Some(subs)
}

/// `[u16 length][topic][u16 length][source][payload]`
fn encode_msg(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + msg.topic.len() + msg.source.len() + msg.payload.len());
    put_str(&mut out, &msg.topic);
    put_str(&mut out, &msg.source);
    out.extend_from_slice(&msg.payload);
    out
}

fn decode_msg(bytes: &[u8]) -> Option<Message> {
    let mut at = 0;
    let topic = Arc::from(get_str(bytes, &mut at)?);
    let source = Arc::from(get_str(bytes, &mut at)?);
    Some(Message {
        topic,
        source,
        payload: Arc::from(bytes.get(at..)?),
        meta: Default::default(),
        route: 0,
    })
}

/// Opens `path` with redb, setting a damaged file aside (see the module docs).
fn open_db(path: &Path) -> Result<Database, SessionStoreError> {
    evergreen_durable::redb_file::open_or_set_aside(
        path,
        "MQTT session store",
        "persistent sessions and their queued messages from before are lost",
    )
    .map_err(|e| match e {
        evergreen_durable::redb_file::OpenFailure::Io(path, source) => {
            SessionStoreError::Io { path, source }
        }
        evergreen_durable::redb_file::OpenFailure::Store(e) => store_err(path, e),
    })
}

/// What [`load`] found, and the rows it deletes (orphans and beyond the bound).
struct Loaded {
    sessions: Vec<StoredSession>,
    next_seq: u64,
    delete: Vec<(Arc<str>, u64)>,
    over_bound: usize,
    unreadable: usize,
    /// Sessions whose MQTT 5 expiry passed while the runtime was down (or stopped).
    expired: Vec<Arc<str>>,
    /// Sessions whose device was connected when the runtime stopped: offline from now on.
    stamped: Vec<(Arc<str>, (u32, u64))>,
    /// Retained messages, by topic (encoded).
    retained: Vec<(String, Vec<u8>)>,
}

impl Loaded {
    /// What a store that does not exist yet holds.
    fn empty() -> Loaded {
        Loaded {
            sessions: Vec::new(),
            next_seq: 0,
            delete: Vec::new(),
            over_bound: 0,
            unreadable: 0,
            expired: Vec::new(),
            stamped: Vec::new(),
            retained: Vec::new(),
        }
    }
}

/// A session's filters and queue while loading.
type Loading = (Vec<Grant>, VecDeque<(u64, Message)>);

/// Creates every table, so reads never meet a missing one.
fn create_tables(db: &Database, path: &Path) -> Result<(), SessionStoreError> {
    let txn = db.begin_write().map_err(|e| store_err(path, e))?;
    txn.open_table(SESSIONS).map_err(|e| store_err(path, e))?;
    txn.open_table(QUEUED).map_err(|e| store_err(path, e))?;
    txn.open_table(EXPIRY).map_err(|e| store_err(path, e))?;
    txn.open_table(RETAINED).map_err(|e| store_err(path, e))?;
    txn.open_table(QUEUED_META)
        .map_err(|e| store_err(path, e))?;
    txn.commit().map_err(|e| store_err(path, e))
}

/// Creates every table (a store written by an older build may lack one), then reads the store.
fn load(db: &Database, path: &Path, bound: usize) -> Result<Loaded, SessionStoreError> {
    create_tables(db, path)?;
    let read = db.begin_read().map_err(|e| store_err(path, e))?;
    let sessions_t = read.open_table(SESSIONS).map_err(|e| store_err(path, e))?;
    let queued_t = read.open_table(QUEUED).map_err(|e| store_err(path, e))?;
    let expiry_t = read.open_table(EXPIRY).map_err(|e| store_err(path, e))?;
    let retained_t = read.open_table(RETAINED).map_err(|e| store_err(path, e))?;
    let meta_t = read
        .open_table(QUEUED_META)
        .map_err(|e| store_err(path, e))?;
    let mut metas = BTreeMap::new();
    for row in meta_t.iter().map_err(|e| store_err(path, e))? {
        let (k, v) = row.map_err(|e| store_err(path, e))?;
        let (arn, seq) = k.value();
        if let Some(meta) = record::read_meta(&mut Reader::new(v.value())) {
            metas.insert((arn.to_owned(), seq), meta);
        }
    }
    let mut retained = Vec::new();
    for row in retained_t.iter().map_err(|e| store_err(path, e))? {
        let (k, v) = row.map_err(|e| store_err(path, e))?;
        retained.push((k.value().to_owned(), v.value().to_vec()));
    }
    let now = unix_now();
    let mut expiries = BTreeMap::new();
    for row in expiry_t.iter().map_err(|e| store_err(path, e))? {
        let (k, v) = row.map_err(|e| store_err(path, e))?;
        expiries.insert(Arc::<str>::from(k.value()), v.value());
    }
    let mut by_arn: BTreeMap<Arc<str>, Loading> = BTreeMap::new();
    let mut unreadable = 0;
    for row in sessions_t.iter().map_err(|e| store_err(path, e))? {
        let (k, v) = row.map_err(|e| store_err(path, e))?;
        let subs = decode_subs(v.value()).unwrap_or_else(|| {
            // The session is kept (its queue is what matters); the device subscribes again.
            unreadable += 1;
            Vec::new()
        });
        by_arn.insert(Arc::from(k.value()), (subs, VecDeque::new()));
    }
    let mut next_seq = 0;
    let mut delete = Vec::new();
    let mut over_bound = 0;
    for row in queued_t.iter().map_err(|e| store_err(path, e))? {
        let (k, v) = row.map_err(|e| store_err(path, e))?;
        let (arn, seq) = k.value();
        next_seq = next_seq.max(seq + 1);
        let arn: Arc<str> = Arc::from(arn);
        let decoded = decode_msg(v.value()).map(|mut msg| {
            if let Some(meta) = metas.remove(&(arn.to_string(), seq)) {
                msg.meta = meta;
            }
            msg
        });
        match (by_arn.get_mut(&arn), decoded) {
            (Some((_, queue)), Some(msg)) => {
                queue.push_back((seq, msg));
                if queue.len() > bound {
                    if let Some((old, _)) = queue.pop_front() {
                        delete.push((arn, old));
                        over_bound += 1;
                    }
                }
            }
            (Some(_), None) => {
                unreadable += 1;
                delete.push((arn, seq));
            }
            // A queued row without its session: the session ended while the write was on
            // its way.
            (None, _) => delete.push((arn, seq)),
        }
    }
    let mut sessions = Vec::new();
    let mut expired = Vec::new();
    let mut stamped = Vec::new();
    for (thing_arn, (subs, queued)) in by_arn {
        let expiry = match expiries.get(&thing_arn) {
            Some(&(secs, 0)) => {
                stamped.push((thing_arn.clone(), (secs, now)));
                Some((secs, now))
            }
            other => other.copied(),
        };
        if let Some((secs, since)) = expiry {
            if since.saturating_add(u64::from(secs)) <= now {
                expired.push(thing_arn);
                continue;
            }
        }
        sessions.push(StoredSession {
            thing_arn,
            subs,
            queued: queued.into(),
            expiry,
        });
    }
    Ok(Loaded {
        sessions,
        next_seq,
        delete,
        over_bound,
        unreadable,
        expired,
        stamped,
        retained,
    })
}

fn boxed(e: impl Into<redb::Error>) -> Box<redb::Error> {
    Box::new(e.into())
}

/// Applies one batch in one transaction; `Immediate` unless it only removes delivered messages.
fn apply(db: &Database, batch: &[Op]) -> Result<(), Box<redb::Error>> {
    let eventual = batch.iter().all(|op| matches!(op, Op::Remove { .. }));
    let mut txn = db.begin_write().map_err(boxed)?;
    txn.set_durability(if eventual {
        Durability::Eventual
    } else {
        Durability::Immediate
    });
    {
        let mut sessions = txn.open_table(SESSIONS).map_err(boxed)?;
        let mut queued = txn.open_table(QUEUED).map_err(boxed)?;
        let mut expiry = txn.open_table(EXPIRY).map_err(boxed)?;
        let mut retained = txn.open_table(RETAINED).map_err(boxed)?;
        let mut queued_meta = txn.open_table(QUEUED_META).map_err(boxed)?;
        for op in batch {
            match op {
                Op::Subs { arn, subs } => {
                    sessions
                        .insert(&**arn, encode_subs(subs).as_slice())
                        .map_err(boxed)?;
                }
                Op::Reset { arn, persistent } => {
                    sessions.remove(&**arn).map_err(boxed)?;
                    let arn: &str = arn;
                    queued
                        .retain_in((arn, 0u64)..=(arn, u64::MAX), |_, _| false)
                        .map_err(boxed)?;
                    queued_meta
                        .retain_in((arn, 0u64)..=(arn, u64::MAX), |_, _| false)
                        .map_err(boxed)?;
                    expiry.remove(arn).map_err(boxed)?;
                    if *persistent {
                        sessions.insert(arn, &[][..]).map_err(boxed)?;
                    }
                }
                Op::Queue { arn, seq, msg } => {
                    queued
                        .insert((&**arn, *seq), encode_msg(msg).as_slice())
                        .map_err(boxed)?;
                    if msg.meta != Meta::default() {
                        let mut meta = Vec::new();
                        record::put_meta(&mut meta, &msg.meta);
                        queued_meta
                            .insert((&**arn, *seq), meta.as_slice())
                            .map_err(boxed)?;
                    }
                }
                Op::Remove { arn, seq } => {
                    queued.remove((&**arn, *seq)).map_err(boxed)?;
                    queued_meta.remove((&**arn, *seq)).map_err(boxed)?;
                }
                Op::Expiry { arn, expiry: None } => {
                    expiry.remove(&**arn).map_err(boxed)?;
                }
                Op::Expiry {
                    arn,
                    expiry: Some(e),
                } => {
                    expiry.insert(&**arn, *e).map_err(boxed)?;
                }
                Op::Retain { topic, value: None } => {
                    retained.remove(&**topic).map_err(boxed)?;
                }
                Op::Retain {
                    topic,
                    value: Some(v),
                } => {
                    retained.insert(&**topic, v.as_slice()).map_err(boxed)?;
                }
                Op::Flush(_) => {}
                #[cfg(test)]
                Op::Close(_) => {}
            }
        }
    }
    txn.commit().map_err(boxed)?;
    Ok(())
}

/// The writer thread: commits each batch of what was handed off. `db` is `None` until the
/// store file exists; the first batch that writes anything creates it.
fn writer(mut db: Option<Database>, path: PathBuf, mut rx: handoff::Receiver<Op>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let writes = batch
            .iter()
            .any(|op| !matches!(op, Op::Flush(_)) && !is_close(op));
        if db.is_none() && writes {
            match open_db(&path).and_then(|created| {
                create_tables(&created, &path)?;
                Ok(created)
            }) {
                Ok(created) => db = Some(created),
                Err(e) => tracing::error!(
                    "MQTT session store {}: cannot create it ({e}); {} writes not stored",
                    path.display(),
                    batch.len()
                ),
            }
        }
        if let Some(Err(e)) = db.as_ref().filter(|_| writes).map(|db| apply(db, &batch)) {
            let queued = batch
                .iter()
                .filter(|op| matches!(op, Op::Queue { .. }))
                .count();
            tracing::error!(
                "MQTT session store {}: a batch of {} writes ({queued} queued messages) not stored: {e}",
                path.display(),
                batch.len()
            );
        }
        // Only the tests close a store; the runtime's clean stop flushes it.
        #[cfg(test)]
        let mut closing = None;
        for op in batch {
            match op {
                Op::Flush(done) => {
                    let _ = done.try_send(());
                }
                #[cfg(test)]
                Op::Close(done) => closing = Some(done),
                _ => {}
            }
        }
        #[cfg(test)]
        if let Some(done) = closing {
            drop(db.take());
            let _ = done.try_send(());
            return;
        }
    }
}

/// Whether `op` closes the store (only the tests do).
fn is_close(op: &Op) -> bool {
    #[cfg(test)]
    if matches!(op, Op::Close(_)) {
        return true;
    }
    let _ = op;
    false
}

/// `SyncSender::send` with a bound: retries `try_send` for up to [`FLUSH_WAIT`].
fn send_bounded(tx: &handoff::Sender<Op>, mut op: Op) -> bool {
    let deadline = std::time::Instant::now() + FLUSH_WAIT;
    loop {
        match tx.try_send(op) {
            Ok(()) => return true,
            Err(handoff::error::TrySendError::Closed(_)) => return false,
            Err(handoff::error::TrySendError::Full(back)) => {
                if std::time::Instant::now() >= deadline {
                    return false;
                }
                op = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl SessionStore {
    /// Opens (or creates) the store at `path`, returns what it holds (at most `bound` queued
    /// messages per session, oldest first) and starts its writer thread.
    ///
    /// A store that does not exist yet is not created here: the writer thread creates it with
    /// its first write. A gateway whose devices never have a persistent session or a retained
    /// message has no file and spends no memory on one (redb holds about 1 MB for an open
    /// store: its allocator's bitmaps and cached pages).
    pub(crate) fn open(path: &Path, bound: usize) -> Result<Opened, SessionStoreError> {
        let (db, loaded) = if path.exists() {
            let db = open_db(path)?;
            let loaded = load(&db, path, bound)?;
            (Some(db), loaded)
        } else {
            // Where it will be created must exist (and a bad root shows now, not later).
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| SessionStoreError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            (None, Loaded::empty())
        };
        if let Some(db) = &db {
            Self::tidy(db, path, &loaded, bound)?;
        }
        let (tx, rx) = handoff::channel(HANDOFF);
        let thread_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("mqtt-sessions".into())
            .spawn(move || writer(db, thread_path, rx))
            .map_err(|source| SessionStoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let store = Arc::new(SessionStore {
            tx,
            next_seq: AtomicU64::new(loaded.next_seq),
            not_stored: AtomicU64::new(0),
            path: path.to_path_buf(),
            known: Mutex::new(
                loaded
                    .sessions
                    .iter()
                    .map(|s| s.thing_arn.clone())
                    .collect(),
            ),
        });
        Ok(Opened {
            store,
            sessions: loaded.sessions,
            retained: loaded.retained,
        })
    }

    /// Deletes what [`load`] found stale (orphans, rows past the bound, expired sessions),
    /// stamps sessions offline, and logs what was dropped.
    fn tidy(
        db: &Database,
        path: &Path,
        loaded: &Loaded,
        bound: usize,
    ) -> Result<(), SessionStoreError> {
        let ops: Vec<Op> = loaded
            .delete
            .iter()
            .map(|(arn, seq)| Op::Remove {
                arn: arn.clone(),
                seq: *seq,
            })
            .chain(loaded.expired.iter().map(|arn| Op::Reset {
                arn: arn.clone(),
                persistent: false,
            }))
            .chain(loaded.stamped.iter().map(|(arn, e)| Op::Expiry {
                arn: arn.clone(),
                expiry: Some(*e),
            }))
            .collect();
        if !ops.is_empty() {
            apply(db, &ops).map_err(|source| SessionStoreError::Store {
                path: path.to_path_buf(),
                source,
            })?;
        }
        for arn in &loaded.expired {
            tracing::info!(
                "MQTT: the stored session of {arn} expired while the runtime was down (MQTT 5 session expiry); deleted"
            );
        }
        if loaded.unreadable > 0 {
            tracing::error!(
                "MQTT session store {}: {} unreadable records ignored",
                path.display(),
                loaded.unreadable
            );
        }
        if loaded.over_bound > 0 {
            tracing::warn!(
                "MQTT session store {}: {} oldest queued messages dropped to keep at most {bound} per session",
                path.display(),
                loaded.over_bound
            );
        }
        Ok(())
    }

    /// Stores `topic`'s retained message (`value`, encoded), or deletes it (`None`). Waits
    /// (bounded) for room in the hand-off, never for the disk; the commit fsyncs.
    pub(crate) fn set_retained(&self, topic: &str, value: Option<Vec<u8>>) {
        let op = Op::Retain {
            topic: Arc::from(topic),
            value,
        };
        if !send_bounded(&self.tx, op) {
            self.not_stored.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "MQTT session store {}: the retained message of {topic:?} was not stored (hand-off full or writer gone)",
                self.path.display()
            );
        }
    }

    /// A session change: waits (bounded) for room in the hand-off, never for the disk, so it is
    /// not lost to a burst of queued messages. Called on connection events, not the router's
    /// path.
    fn control(&self, op: Op) {
        if !send_bounded(&self.tx, op) {
            tracing::error!(
                "MQTT session store {}: its writer stopped or is stuck; a session change is not stored",
                self.path.display()
            );
        }
    }

    /// Stores the session's granted filters (and creates its row if needed).
    pub(crate) fn set_subs(&self, arn: &Arc<str>, subs: Vec<Grant>) {
        self.known().insert(arn.clone());
        self.control(Op::Subs {
            arn: arn.clone(),
            subs,
        });
    }

    /// A new session for `arn`: whatever was stored for it goes; a persistent one begins empty.
    pub(crate) fn reset(&self, arn: &Arc<str>, persistent: bool) {
        let had = if persistent {
            !self.known().insert(arn.clone())
        } else {
            self.known().remove(arn)
        };
        if !persistent && !had {
            return;
        }
        self.control(Op::Reset {
            arn: arn.clone(),
            persistent,
        });
    }

    /// The session of `arn` ended for good (a clean session took over, or the device left the
    /// group).
    pub(crate) fn forget(&self, arn: &Arc<str>) {
        self.reset(arn, false);
    }

    /// Queues `msg` for the offline session of `arn` and returns its key. Never waits: a full
    /// hand-off leaves the message in memory only (counted and logged).
    pub(crate) fn queue(&self, arn: &Arc<str>, msg: &Message) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let op = Op::Queue {
            arn: arn.clone(),
            seq,
            msg: msg.clone(),
        };
        if let Err(e) = self.tx.try_send(op) {
            let n = self.not_stored.fetch_add(1, Ordering::Relaxed) + 1;
            // The first and then one in a thousand: a burst must not flood the log.
            if n == 1 || n.is_multiple_of(1000) {
                let why = match e {
                    handoff::error::TrySendError::Full(_) => "the store's writer is behind",
                    handoff::error::TrySendError::Closed(_) => "the store's writer stopped",
                };
                tracing::warn!(
                    "MQTT session store {}: a message queued for offline {arn} is kept in memory only ({why}); {n} so far would not survive a restart",
                    self.path.display()
                );
            }
        }
        seq
    }

    /// The session's MQTT 5 expiry (`None`: never) and since when its device is offline
    /// (`None`: connected).
    pub(crate) fn set_expiry(&self, arn: &Arc<str>, expiry: Option<(u32, Option<u64>)>) {
        self.control(Op::Expiry {
            arn: arn.clone(),
            expiry: expiry.map(|(secs, since)| (secs, since.unwrap_or(0))),
        });
    }

    /// The message `seq` of `arn` was delivered (PUBACK): removed without an fsync.
    pub(crate) fn remove(&self, arn: &Arc<str>, seq: u64) {
        // A full hand-off only costs a duplicate after a restart.
        let _ = self.tx.try_send(Op::Remove {
            arn: arn.clone(),
            seq,
        });
    }

    /// Commits everything handed off so far with an fsync (a clean stop). Bounded wait.
    pub(crate) fn flush(&self) -> bool {
        let (done, wait) = mpsc::sync_channel(1);
        send_bounded(&self.tx, Op::Flush(done)) && wait.recv_timeout(FLUSH_WAIT).is_ok()
    }

    /// Commits everything handed off so far and closes the file (its lock released); later
    /// writes are not stored. Bounded wait.
    #[cfg(test)]
    pub(crate) fn close(&self) -> bool {
        let (done, wait) = mpsc::sync_channel(1);
        send_bounded(&self.tx, Op::Close(done)) && wait.recv_timeout(FLUSH_WAIT).is_ok()
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<Arc<str>>> {
        // Single inserts and removals: a poisoned set is still consistent.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queued messages kept in memory only because the hand-off was full.
    // Read only by the tests; the runtime logs each message not stored.
    #[cfg(test)]
    pub(crate) fn not_stored(&self) -> u64 {
        self.not_stored.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "arn:aws:iot:us-east-1:123456789012:thing/a";
    const B: &str = "arn:aws:iot:us-east-1:123456789012:thing/b";

    fn msg(i: usize) -> Message {
        Message {
            topic: Arc::from(format!("t/{i}").as_str()),
            payload: Arc::from(format!("payload {i}").into_bytes()),
            source: Arc::from("src"),
            meta: Default::default(),
            route: 0,
        }
    }

    /// Opens the store at `path` (bound 1000): the store and its sessions.
    fn open_pair(path: &Path) -> (Arc<SessionStore>, Vec<StoredSession>) {
        SessionStore::open(path, 1000)
            .map(Opened::pair)
            .expect("the store opens")
    }

    fn arn(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn topics(s: &StoredSession) -> Vec<String> {
        s.queued.iter().map(|(_, m)| m.topic.to_string()).collect()
    }

    fn find<'a>(all: &'a [StoredSession], thing: &str) -> Option<&'a StoredSession> {
        all.iter().find(|s| &*s.thing_arn == thing)
    }

    #[test]
    fn a_store_is_created_by_its_first_write_only() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("mqtt/sessions.redb");
        let (store, found) = open_pair(&path);
        assert!(found.is_empty());
        // A flush writes nothing: no file, and none after a reopen either.
        assert!(store.flush());
        assert!(store.close());
        assert!(!path.exists(), "nothing was stored, so there is no file");
        let (store, _) = open_pair(&path);
        let a = arn(A);
        store.reset(&a, true);
        store.queue(&a, &msg(1));
        assert!(store.close());
        assert!(path.exists(), "the first write created the store");
        let (_, found) = open_pair(&path);
        assert_eq!(found.len(), 1);
        assert_eq!(topics(&found[0]), ["t/1"]);
    }

    #[test]
    fn reopen_keeps_sessions_filters_and_order() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("mqtt/sessions.redb");
        let (store, found) = open_pair(&path);
        assert!(found.is_empty());
        let (a, b) = (arn(A), arn(B));
        store.reset(&a, true);
        store.set_subs(&a, vec![grant("x/#", true), grant("y", false)]);
        store.reset(&b, true);
        // Interleaved: each session keeps its own order.
        for i in 0..100 {
            store.queue(if i % 3 == 0 { &b } else { &a }, &msg(i));
        }
        assert!(store.close());

        let (store, found) = open_pair(&path);
        assert_eq!(found.len(), 2);
        let sa = find(&found, A).expect("a");
        assert_eq!(sa.subs, vec![grant("x/#", true), grant("y", false)]);
        let want_a: Vec<String> = (0..100)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("t/{i}"))
            .collect();
        assert_eq!(topics(sa), want_a);
        assert_eq!(&*sa.queued[0].1.payload, b"payload 1");
        assert_eq!(&*sa.queued[0].1.source, "src");
        let sb = find(&found, B).expect("b");
        assert!(sb.subs.is_empty());
        assert_eq!(sb.queued.len(), 34);
        // New messages get keys after the old ones.
        let next = store.queue(&a, &msg(100));
        assert!(sa.queued.iter().all(|(seq, _)| *seq < next));
        assert!(store.close());
        let (_, found) = open_pair(&path);
        let sa = find(&found, A).expect("a");
        assert_eq!(topics(sa).last().map(String::as_str), Some("t/100"));
    }

    #[test]
    fn delivered_messages_and_ended_sessions_are_removed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sessions.redb");
        let (store, _) = open_pair(&path);
        let (a, b) = (arn(A), arn(B));
        store.reset(&a, true);
        store.reset(&b, true);
        let seqs: Vec<u64> = (0..10).map(|i| store.queue(&a, &msg(i))).collect();
        store.queue(&b, &msg(99));
        for seq in &seqs[..4] {
            store.remove(&a, *seq);
        }
        // A clean session for b: nothing of it stays.
        store.forget(&b);
        assert!(store.close());
        let (store, found) = open_pair(&path);
        assert_eq!(found.len(), 1);
        let want: Vec<String> = (4..10).map(|i| format!("t/{i}")).collect();
        assert_eq!(topics(&found[0]), want);
        // A new persistent session replaces the old one: empty.
        store.reset(&a, true);
        assert!(store.close());
        let (_, found) = open_pair(&path);
        assert_eq!(found.len(), 1);
        assert!(found[0].queued.is_empty() && found[0].subs.is_empty());
    }

    /// A queued message's QoS 2 flag and MQTT 5 properties come back with it after a restart;
    /// a delivered one's go with it.
    #[test]
    fn queued_metadata_survives_a_reopen() {
        use evergreen_runtime::router::PublishProps;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sessions.redb");
        let (store, _) = open_pair(&path);
        let a = arn(A);
        store.reset(&a, true);
        let mut with_props = msg(1);
        with_props.meta.exactly_once = true;
        with_props.meta.props = Some(Arc::new(PublishProps {
            user: vec![("k".into(), "v".into())],
            response_topic: Some("r".into()),
            correlation_data: Some(vec![1, 2]),
            content_type: Some("c".into()),
            utf8_payload: Some(true),
            expires_at: Some(1_900_000_000),
        }));
        let first = store.queue(&a, &with_props);
        store.queue(&a, &msg(2));
        let delivered = store.queue(&a, &with_props);
        store.remove(&a, delivered);
        assert!(store.close());
        let (_, found) = open_pair(&path);
        let queued = &found[0].queued;
        assert_eq!(queued.len(), 2);
        assert_eq!(queued[0].0, first);
        assert_eq!(queued[0].1.meta, with_props.meta);
        assert_eq!(queued[1].1.meta, Meta::default());
    }

    #[test]
    fn flush_makes_the_writes_visible_to_the_next_open() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sessions.redb");
        let (store, _) = open_pair(&path);
        let a = arn(A);
        store.reset(&a, true);
        store.queue(&a, &msg(1));
        assert!(store.flush());
        // Still open: a second open is refused (a runtime on the same root), not damage.
        assert!(SessionStore::open(&path, 1000).is_err());
        assert!(store.close());
        let (_, found) = open_pair(&path);
        assert_eq!(found[0].queued.len(), 1);
        let aside = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains("damaged-"));
        assert!(!aside, "a store in use is not set aside");
    }

    #[test]
    fn loading_is_bounded_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sessions.redb");
        let (store, _) = open_pair(&path);
        let a = arn(A);
        store.reset(&a, true);
        for i in 0..50 {
            store.queue(&a, &msg(i));
        }
        assert!(store.close());
        let (store, found) = SessionStore::open(&path, 20)
            .map(Opened::pair)
            .expect("reopen bounded");
        let want: Vec<String> = (30..50).map(|i| format!("t/{i}")).collect();
        assert_eq!(topics(&found[0]), want);
        assert!(store.close());
        // The excess was deleted, not only skipped.
        let (_, found) = open_pair(&path);
        assert_eq!(topics(&found[0]), want);
    }

    #[test]
    fn queued_rows_without_a_session_are_dropped_on_load() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sessions.redb");
        let (store, _) = open_pair(&path);
        // Queued for a thing whose session row never made it.
        store.queue(&arn(B), &msg(1));
        assert!(store.close());
        let (store, found) = open_pair(&path);
        assert!(found.is_empty());
        // And a later session of that thing does not inherit it.
        store.reset(&arn(B), true);
        assert!(store.close());
        let (_, found) = open_pair(&path);
        assert!(found[0].queued.is_empty());
    }

    #[test]
    fn a_damaged_store_is_set_aside_and_a_new_one_works() {
        for damage in ["truncate", "garbage"] {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("sessions.redb");
            let (store, _) = open_pair(&path);
            let a = arn(A);
            store.reset(&a, true);
            for i in 0..100 {
                store.queue(&a, &msg(i));
            }
            assert!(store.close());
            match damage {
                "truncate" => {
                    let len = std::fs::metadata(&path).expect("meta").len();
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .expect("open file");
                    f.set_len(len / 2).expect("truncate");
                }
                _ => std::fs::write(&path, vec![0xA5u8; 8192]).expect("overwrite"),
            }
            let (store, found) = open_pair(&path);
            if found.is_empty() {
                let aside = std::fs::read_dir(dir.path())
                    .expect("list")
                    .filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().contains("damaged-"));
                assert!(aside, "{damage}: the damaged file is kept for inspection");
            } else {
                // Whatever redb recovered is whole and in order.
                let want: Vec<String> = (0..100).map(|i| format!("t/{i}")).collect();
                assert_eq!(topics(&found[0]), want, "{damage}");
            }
            store.reset(&a, true);
            store.queue(&a, &msg(7));
            assert!(store.close());
            let (_, found) = open_pair(&path);
            assert_eq!(topics(&found[0]), vec!["t/7".to_string()], "{damage}");
        }
    }

    #[test]
    fn a_full_hand_off_never_blocks_the_router() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sessions.redb");
        let (store, _) = SessionStore::open(&path, 100_000)
            .map(Opened::pair)
            .expect("open");
        let a = arn(A);
        store.reset(&a, true);
        // Far more than the hand-off holds, as fast as possible: every call returns at once
        // (the test would hang otherwise); what did not fit is counted, the rest stored.
        let n = HANDOFF * 4;
        for i in 0..n {
            store.queue(&a, &msg(i));
        }
        assert!(store.close());
        let (_, found) = SessionStore::open(&path, 100_000)
            .map(Opened::pair)
            .expect("reopen");
        let stored = found[0].queued.len() as u64;
        assert_eq!(stored + store.not_stored(), n as u64);
    }

    #[test]
    fn sessions_expired_while_the_runtime_was_down_are_deleted() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sessions.redb");
        let (store, _) = open_pair(&path);
        let (a, b) = (arn(A), arn(B));
        let now = unix_now();
        store.reset(&a, true);
        store.queue(&a, &msg(1));
        store.set_expiry(&a, Some((5, Some(now - 10))));
        // b's device was connected when the runtime stopped: offline from the next load on.
        store.reset(&b, true);
        store.queue(&b, &msg(2));
        store.set_expiry(&b, Some((3600, None)));
        assert!(store.close());
        let (store, found) = open_pair(&path);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(&*found[0].thing_arn, B);
        let (secs, since) = found[0].expiry.expect("b's expiry");
        assert_eq!(secs, 3600);
        assert!(since >= now, "offline since the load");
        assert!(store.close());
        // a is gone from the store, not only skipped; b's offline time was written back.
        let (_, found) = open_pair(&path);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].expiry, Some((secs, since)));
    }

    #[test]
    fn encodings_round_trip_and_reject_garbage() {
        let mut subs = vec![grant("a/+/b", true), grant("#", false), grant("c", true)];
        subs[2].no_local = true;
        subs[1].retain_as_published = true;
        subs[0].sub_id = Some(268_435_455);
        assert_eq!(decode_subs(&encode_subs(&subs)), Some(subs));
        // A store written before No Local has only 0 or 1 as a grant's flags byte.
        assert_eq!(
            decode_subs(&[1, 1, 0, b'x', 0, 1, 0, b'y']),
            Some(vec![grant("x", true), grant("y", false)])
        );
        let m = msg(3);
        let back = decode_msg(&encode_msg(&m)).expect("decode");
        assert_eq!(back.topic, m.topic);
        assert_eq!(back.payload, m.payload);
        assert!(decode_msg(&[5, 0, b'a']).is_none());
        assert!(decode_subs(&[1, 9, 0, b'x']).is_none());
    }
}
