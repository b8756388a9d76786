//! The streams themselves: each a sequence of messages numbered from 0,
//! kept in memory (`Memory`) or in segment files under the store's root
//! (`File`), bounded by its `maxSize` and time to live, and watched by
//! readers and exports waiting for new messages.
//!
//! **On disk.** `<root>/<hex of the name>/definition.json` is the stream's
//! definition (written to a temporary file, synced, renamed); its segments
//! are `<first sequence number, 20 digits>.seg`, each a run of records
//! `[payload length u32 LE][CRC-32 u32 LE][sequence i64 LE][ingest ms i64
//! LE][payload]`, the CRC covering sequence, ingest time and payload. The
//! directory name is the name's hex, so a stream called `..` stays inside.
//!
//! **Durability (the fsync policy).** An append is acknowledged after its
//! record was written to the segment file with one `write`: from then on a
//! `kill -9` of the runtime loses nothing. With `flushOnWrite` the record
//! is also `fdatasync`ed before the acknowledgement, so a power loss loses
//! nothing acknowledged either; without it (the SDK's default, as in V1)
//! dirty segments are synced once a second ([`Store::sync_dirty`]), so a
//! power loss can lose at most the last second of acknowledged appends.
//! Opening a stream after a crash reads every segment, checks each record,
//! and cuts a segment at its first torn or corrupt record (a write the
//! crash interrupted, never acknowledged), logging how many bytes it cut.
//!
//! **Size.** A stream's size is the bytes of its records as stored
//! (header and payload; in memory the same count, so both persistences
//! fill at the same point). When an append would pass `maxSize`,
//! `RejectNewData` refuses it and `OverwriteOldestData` deletes the oldest
//! segments (in memory: the oldest messages) until it fits; as the SDK
//! says, data is deleted segment by segment. Past `timeToLiveMillis` a
//! segment whose newest message is older goes at the next append or sweep.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::model::{
    ExportDefinition, ExportStatus, Message, MessageStreamDefinition, MessageStreamInfo,
    Persistence, StorageStatus, StrategyOnFull,
};

/// Bytes of a record's header on disk (and counted per message in memory).
pub const RECORD_HEADER: u64 = 24;

/// Store-wide bounds (`evergreen.streamManager`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLimits {
    /// Streams that may exist at once.
    pub max_streams: usize,
    /// Bytes all `File` streams together may hold.
    pub max_file_bytes: u64,
    /// Bytes all `Memory` streams together may hold.
    pub max_memory_bytes: u64,
    /// Largest payload one append may carry.
    pub max_message_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_streams: 100,
            max_file_bytes: 2 << 30,
            max_memory_bytes: 64 << 20,
            max_message_bytes: 16 << 20,
        }
    }
}

/// Why an operation failed, each mapping to one of the SDK's status codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    UpdateNotAllowed(String),
    #[error("{0}")]
    OutOfMemory(String),
    #[error("{0}")]
    ReadError(String),
    #[error("{0}")]
    Failure(String),
}

/// A running export of one stream, as the store keeps it: dropped when the
/// stream is deleted or its exports change.
pub trait RunningExport: Send {
    fn status(&self) -> ExportStatus;
}

/// Starts a stream's exports (the `export` module's driver; tests may run
/// without one).
pub type ExportStarter =
    dyn Fn(&str, &ExportDefinition, &Path) -> Vec<Box<dyn RunningExport>> + Send + Sync;

/// All streams.
pub struct Store {
    root: PathBuf,
    limits: StoreLimits,
    streams: Mutex<BTreeMap<String, Arc<Stream>>>,
    exporter: Mutex<Option<Arc<ExportStarter>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

/// One stream: its state behind a lock, and the newest sequence number
/// for whoever waits for more.
pub struct Stream {
    name: String,
    state: Mutex<State>,
    newest: watch::Sender<i64>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("name", &self.name).finish()
    }
}

struct State {
    definition: MessageStreamDefinition,
    log: Log,
    deleted: bool,
    exports: Vec<Box<dyn RunningExport>>,
}

enum Log {
    Memory(MemoryLog),
    File(FileLog),
}

struct MemoryLog {
    messages: VecDeque<(i64, i64, Arc<[u8]>)>,
    bytes: u64,
    next: i64,
}

struct FileLog {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    next: i64,
    dirty: bool,
}

struct Segment {
    first: i64,
    path: PathBuf,
    file: File,
    /// Offset, payload length and ingest time of each record, in order.
    entries: Vec<(u64, u32, i64)>,
    bytes: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a stream's lock leaves a state that is still
    // consistent record by record; keep serving rather than poison forever.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn dir_name(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn name_of_dir(dir: &str) -> Option<String> {
    if !dir.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..dir.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(dir.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Failure(format!("{what} {}: {e}", path.display()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io("cannot write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io("cannot rename", &tmp, e))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn crc(seq: i64, ingest: i64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&ingest.to_le_bytes());
    h.update(payload);
    h.finalize()
}

impl Segment {
    fn create(dir: &Path, first: i64) -> Result<Segment, StoreError> {
        let path = dir.join(format!("{first:020}.seg"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("cannot create segment", &path, e))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(Segment {
            first,
            path,
            file,
            entries: Vec::new(),
            bytes: 0,
        })
    }

    /// Reads a segment back, cutting it at its first bad record.
    fn open(path: PathBuf, first: i64) -> Result<Segment, StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("cannot open segment", &path, e))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| io("cannot read segment", &path, e))?;
        let mut entries = Vec::new();
        let mut at = 0usize;
        let mut expect = first;
        while at + RECORD_HEADER as usize <= data.len() {
            let h = &data[at..at + RECORD_HEADER as usize];
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let sum = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let mut n = [0u8; 8];
            n.copy_from_slice(&h[8..16]);
            let seq = i64::from_le_bytes(n);
            n.copy_from_slice(&h[16..24]);
            let ingest = i64::from_le_bytes(n);
            let start = at + RECORD_HEADER as usize;
            let Some(payload) = data.get(start..start + len as usize) else {
                break;
            };
            if seq != expect || crc(seq, ingest, payload) != sum {
                break;
            }
            entries.push((at as u64, len, ingest));
            expect += 1;
            at = start + len as usize;
        }
        if at < data.len() {
            tracing::warn!(
                "stream manager: {} ends in {} bytes of a record a crash interrupted (never acknowledged); cut",
                path.display(),
                data.len() - at
            );
            file.set_len(at as u64)
                .and_then(|_| file.sync_all())
                .map_err(|e| io("cannot cut segment", &path, e))?;
        }
        Ok(Segment {
            first,
            path,
            file,
            entries,
            bytes: at as u64,
        })
    }

    fn last_seq(&self) -> i64 {
        self.first + self.entries.len() as i64 - 1
    }

    fn read(&self, seq: i64, stream: &str) -> Result<Message, StoreError> {
        let (offset, len, ingest) = self.entries[(seq - self.first) as usize];
        let mut payload = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut payload, offset + RECORD_HEADER)
            .map_err(|e| {
                StoreError::ReadError(format!("cannot read {}: {e}", self.path.display()))
            })?;
        Ok(Message {
            stream_name: stream.to_string(),
            sequence_number: seq,
            ingest_time: ingest,
            payload,
        })
    }
}

impl Log {
    fn bytes(&self) -> u64 {
        match self {
            Log::Memory(m) => m.bytes,
            Log::File(f) => f.segments.iter().map(|s| s.bytes).sum(),
        }
    }

    fn next(&self) -> i64 {
        match self {
            Log::Memory(m) => m.next,
            Log::File(f) => f.next,
        }
    }

    fn oldest(&self) -> i64 {
        match self {
            Log::Memory(m) => m.messages.front().map(|m| m.0).unwrap_or(m.next),
            Log::File(f) => f
                .segments
                .iter()
                .find(|s| !s.entries.is_empty())
                .map(|s| s.first)
                .unwrap_or(f.next),
        }
    }

    /// Drops the oldest unit (a message in memory, a closed segment on
    /// disk); false when nothing can go.
    fn drop_oldest(&mut self) -> bool {
        match self {
            Log::Memory(m) => match m.messages.pop_front() {
                Some((_, _, p)) => {
                    m.bytes -= RECORD_HEADER + p.len() as u64;
                    true
                }
                None => false,
            },
            Log::File(f) => {
                if f.segments.len() < 2 {
                    return false;
                }
                if let Some(s) = f.segments.pop_front() {
                    if let Err(e) = fs::remove_file(&s.path) {
                        tracing::warn!("stream manager: cannot remove {}: {e}", s.path.display());
                    }
                }
                true
            }
        }
    }

    /// Drops what is past its time to live.
    fn expire(&mut self, ttl_ms: Option<i64>) {
        self.expire_at(ttl_ms, now_ms());
    }

    /// [`Log::expire`] as of `now` (ms since the epoch).
    fn expire_at(&mut self, ttl_ms: Option<i64>, now: i64) {
        let Some(ttl) = ttl_ms else { return };
        let limit = now - ttl;
        loop {
            let expired = match self {
                Log::Memory(m) => m.messages.front().is_some_and(|(_, t, _)| *t < limit),
                Log::File(f) => {
                    f.segments.len() > 1
                        && f.segments
                            .front()
                            .and_then(|s| s.entries.last())
                            .is_some_and(|e| e.2 < limit)
                }
            };
            if !expired || !self.drop_oldest() {
                return;
            }
        }
    }
}

impl Store {
    /// Opens the store under `root`, reading back every `File` stream.
    pub fn open(root: &Path, limits: StoreLimits) -> Result<Arc<Store>, StoreError> {
        fs::create_dir_all(root).map_err(|e| io("cannot create", root, e))?;
        let store = Arc::new(Store {
            root: root.to_path_buf(),
            limits,
            streams: Mutex::new(BTreeMap::new()),
            exporter: Mutex::new(None),
        });
        let entries = fs::read_dir(root).map_err(|e| io("cannot list", root, e))?;
        let mut streams = lock(&store.streams);
        for entry in entries.flatten() {
            let dir = entry.path();
            let Some(name) = entry.file_name().to_str().and_then(name_of_dir) else {
                continue;
            };
            match open_stream(&dir, &name) {
                Ok(Some(stream)) => {
                    streams.insert(name, stream);
                }
                Ok(None) => {}
                Err(e) => tracing::error!("stream manager: stream {name:?} not opened: {e}"),
            }
        }
        drop(streams);
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Sets what starts exports, and starts those of the streams already
    /// open.
    pub fn set_exporter(&self, starter: Arc<ExportStarter>) {
        *lock(&self.exporter) = Some(starter.clone());
        for stream in lock(&self.streams).values() {
            let mut state = lock(&stream.state);
            let exports = starter(
                &stream.name,
                &state.definition.exports(),
                &self.export_dir(&stream.name),
            );
            state.exports = exports;
        }
    }

    fn export_dir(&self, name: &str) -> PathBuf {
        self.root.join(dir_name(name)).join("exports")
    }

    fn start_exports(&self, name: &str, exports: &ExportDefinition) -> Vec<Box<dyn RunningExport>> {
        let starter = lock(&self.exporter).clone();
        match starter {
            Some(start) => start(name, exports, &self.export_dir(name)),
            None => Vec::new(),
        }
    }

    fn stream(&self, name: &str) -> Result<Arc<Stream>, StoreError> {
        lock(&self.streams)
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("stream {name:?} does not exist")))
    }

    pub fn list(&self) -> Vec<String> {
        lock(&self.streams).keys().cloned().collect()
    }

    pub fn create(&self, definition: MessageStreamDefinition) -> Result<(), StoreError> {
        definition.validate().map_err(StoreError::Invalid)?;
        if !definition.exports().http.is_empty() {
            return Err(StoreError::Invalid(
                "HTTP exports are not offered by this stream manager (Greengrass V1's was internal-only); use kinesis, iotAnalytics, IotSitewise or s3TaskExecutor".into(),
            ));
        }
        let mut streams = lock(&self.streams);
        if streams.contains_key(&definition.name) {
            return Err(StoreError::Invalid(format!(
                "stream {:?} already exists",
                definition.name
            )));
        }
        if streams.len() >= self.limits.max_streams {
            return Err(StoreError::Invalid(format!(
                "this stream manager holds at most {} streams (evergreen.streamManager.maxStreams)",
                self.limits.max_streams
            )));
        }
        let name = definition.name.clone();
        // A stream of the same name before this one may have left its
        // directory (export checkpoints, segments): they are not this one's.
        let dir = self.root.join(dir_name(&name));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| io("cannot clear", &dir, e))?;
        }
        let log = match definition.persistence() {
            Persistence::Memory => Log::Memory(MemoryLog {
                messages: VecDeque::new(),
                bytes: 0,
                next: 0,
            }),
            Persistence::File => {
                fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
                let segment = Segment::create(&dir, 0)?;
                write_definition(&dir, &definition)?;
                Log::File(FileLog {
                    dir,
                    segments: VecDeque::from([segment]),
                    next: 0,
                    dirty: false,
                })
            }
        };
        let exports = self.start_exports(&name, &definition.exports());
        let (newest, _) = watch::channel(-1);
        streams.insert(
            name.clone(),
            Arc::new(Stream {
                name,
                state: Mutex::new(State {
                    definition,
                    log,
                    deleted: false,
                    exports,
                }),
                newest,
            }),
        );
        Ok(())
    }

    /// Changes a stream's definition. Its persistence cannot change (the
    /// data would have to move between memory and disk); everything else
    /// can, and exports whose configuration changed restart from their
    /// checkpoints.
    pub fn update(&self, definition: MessageStreamDefinition) -> Result<(), StoreError> {
        definition.validate().map_err(StoreError::Invalid)?;
        let stream = self.stream(&definition.name)?;
        let mut state = lock(&stream.state);
        if state.definition.persistence() != definition.persistence() {
            return Err(StoreError::UpdateNotAllowed(format!(
                "the persistence of stream {:?} cannot change ({:?} to {:?}): create a new stream",
                definition.name,
                state.definition.persistence(),
                definition.persistence()
            )));
        }
        if !definition.exports().http.is_empty() {
            return Err(StoreError::Invalid(
                "HTTP exports are not offered by this stream manager".into(),
            ));
        }
        if let Log::File(f) = &state.log {
            write_definition(&f.dir, &definition)?;
        }
        let exports_changed = state.definition.exports() != definition.exports();
        state.definition = definition;
        if exports_changed {
            // Stop the old ones first: two drivers of one export must never
            // share a checkpoint.
            state.exports.clear();
            state.exports = self.start_exports(&stream.name, &state.definition.exports());
        }
        let ttl = state.definition.time_to_live_millis;
        state.log.expire(ttl);
        Ok(())
    }

    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let stream = lock(&self.streams)
            .remove(name)
            .ok_or_else(|| StoreError::NotFound(format!("stream {name:?} does not exist")))?;
        let mut state = lock(&stream.state);
        state.deleted = true;
        state.exports.clear();
        // Segments and export checkpoints (a Memory stream's exports keep theirs on disk too).
        let dir = self.root.join(dir_name(name));
        if dir.exists() {
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!("stream manager: cannot remove {}: {e}", dir.display());
            }
        }
        drop(state);
        // Readers waiting on it wake and find it gone.
        stream.newest.send_modify(|_| {});
        Ok(())
    }

    pub fn describe(&self, name: &str) -> Result<MessageStreamInfo, StoreError> {
        let stream = self.stream(name)?;
        let state = lock(&stream.state);
        Ok(MessageStreamInfo {
            definition: state.definition.clone(),
            storage_status: StorageStatus {
                oldest_sequence_number: state.log.oldest(),
                newest_sequence_number: state.log.next() - 1,
                total_bytes: state.log.bytes() as i64,
            },
            export_statuses: state.exports.iter().map(|e| e.status()).collect(),
        })
    }

    /// Bytes held by all streams of one persistence, other than `except`.
    fn held(&self, persistence: Persistence, except: &str) -> u64 {
        let streams: Vec<Arc<Stream>> = lock(&self.streams)
            .iter()
            .filter(|(n, _)| n.as_str() != except)
            .map(|(_, s)| s.clone())
            .collect();
        streams
            .iter()
            .map(|s| {
                let st = lock(&s.state);
                if st.definition.persistence() == persistence {
                    st.log.bytes()
                } else {
                    0
                }
            })
            .sum()
    }

    /// Appends one message; returns its sequence number once it is as
    /// durable as the stream's definition asks (see the module's doc).
    pub fn append(&self, name: &str, payload: &[u8]) -> Result<i64, StoreError> {
        if payload.is_empty() {
            return Err(StoreError::Invalid("payload must not be empty".into()));
        }
        if payload.len() > self.limits.max_message_bytes {
            return Err(StoreError::Invalid(format!(
                "a message is at most {} bytes (evergreen.streamManager.maxMessageBytes); this one is {}",
                self.limits.max_message_bytes,
                payload.len()
            )));
        }
        let stream = self.stream(name)?;
        let persistence = lock(&stream.state).definition.persistence();
        let others = self.held(persistence, name);
        let mut state = lock(&stream.state);
        if state.deleted {
            return Err(StoreError::NotFound(format!(
                "stream {name:?} does not exist"
            )));
        }
        let record = RECORD_HEADER + payload.len() as u64;
        let max = state.definition.max_size();
        if record > max {
            return Err(StoreError::Invalid(format!(
                "a message of {} bytes cannot fit stream {name:?} (maxSize {max} bytes, {RECORD_HEADER} bytes of which per message)",
                payload.len()
            )));
        }
        let ttl = state.definition.time_to_live_millis;
        state.log.expire(ttl);
        let (store_limit, what) = match persistence {
            Persistence::File => (self.limits.max_file_bytes, "maxFileBytes"),
            Persistence::Memory => (self.limits.max_memory_bytes, "maxMemoryBytes"),
        };
        let segment_size = state.definition.segment_size();
        let strategy = state.definition.strategy_on_full;
        let flush = state.definition.flush_on_write();
        loop {
            let held = state.log.bytes();
            let stream_full = held + record > max;
            let store_full = others + held + record > store_limit;
            if !stream_full && !store_full {
                break;
            }
            if strategy == StrategyOnFull::OverwriteOldestData && state.log.drop_oldest() {
                continue;
            }
            if store_full && !stream_full {
                let message = format!(
                    "the stream manager's {} streams hold their limit of {store_limit} bytes (evergreen.streamManager.{what})",
                    if persistence == Persistence::File { "File" } else { "Memory" }
                );
                return Err(match persistence {
                    Persistence::Memory => StoreError::OutOfMemory(message),
                    Persistence::File => StoreError::Failure(message),
                });
            }
            return Err(StoreError::Invalid(format!(
                "stream {name:?} is full ({held} of its maxSize {max} bytes held) and its strategyOnFull is {strategy:?}"
            )));
        }
        let ingest = now_ms();
        let seq = match &mut state.log {
            Log::Memory(m) => {
                let seq = m.next;
                m.messages.push_back((seq, ingest, Arc::from(payload)));
                m.bytes += record;
                m.next += 1;
                seq
            }
            Log::File(f) => {
                let seq = f.next;
                let roll = f
                    .segments
                    .back()
                    .is_none_or(|s| !s.entries.is_empty() && s.bytes + record > segment_size);
                if roll {
                    if let Some(s) = f.segments.back() {
                        s.file
                            .sync_data()
                            .map_err(|e| io("cannot sync", &s.path, e))?;
                    }
                    let segment = Segment::create(&f.dir, seq)?;
                    f.segments.push_back(segment);
                }
                let Some(segment) = f.segments.back_mut() else {
                    return Err(StoreError::Failure("no segment to write to".into()));
                };
                let mut buf = Vec::with_capacity(record as usize);
                buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                buf.extend_from_slice(&crc(seq, ingest, payload).to_le_bytes());
                buf.extend_from_slice(&seq.to_le_bytes());
                buf.extend_from_slice(&ingest.to_le_bytes());
                buf.extend_from_slice(payload);
                let offset = segment.bytes;
                if let Err(e) = segment.file.write_all_at(&buf, offset) {
                    // Nothing acknowledged; a partial record is cut at the
                    // next open and overwritten by the next append.
                    return Err(io("cannot write to", &segment.path, e));
                }
                if flush {
                    segment
                        .file
                        .sync_data()
                        .map_err(|e| io("cannot sync", &segment.path, e))?;
                } else {
                    f.dirty = true;
                }
                segment.entries.push((offset, payload.len() as u32, ingest));
                segment.bytes += record;
                f.next += 1;
                seq
            }
        };
        drop(state);
        stream.newest.send_replace(seq);
        Ok(seq)
    }

    /// Messages from `from` (or the oldest kept, if `from` is older), at
    /// most `max` of them and at most `max_bytes` of payload (at least one,
    /// whatever its size).
    pub fn read(
        &self,
        name: &str,
        from: i64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let stream = self.stream(name)?;
        let state = lock(&stream.state);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut seq = from.max(state.log.oldest());
        let next = state.log.next();
        while seq < next && out.len() < max {
            let message = match &state.log {
                Log::Memory(m) => {
                    let first = m.messages.front().map(|m| m.0).unwrap_or(next);
                    let Some((s, t, p)) = m.messages.get((seq - first) as usize) else {
                        break;
                    };
                    Message {
                        stream_name: name.to_string(),
                        sequence_number: *s,
                        ingest_time: *t,
                        payload: p.to_vec(),
                    }
                }
                Log::File(f) => {
                    let Some(segment) = f
                        .segments
                        .iter()
                        .rev()
                        .find(|s| s.first <= seq && !s.entries.is_empty())
                    else {
                        break;
                    };
                    if seq > segment.last_seq() {
                        break;
                    }
                    segment.read(seq, name)?
                }
            };
            bytes += message.payload.len();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(message);
            seq += 1;
        }
        Ok(out)
    }

    /// A receiver that changes at every append to `name` (and at its
    /// deletion).
    pub fn watch(&self, name: &str) -> Result<watch::Receiver<i64>, StoreError> {
        Ok(self.stream(name)?.newest.subscribe())
    }

    /// Syncs the segments written since the last sync and drops what
    /// passed its time to live; the server calls it once a second.
    pub fn sync_dirty(&self) {
        let streams: Vec<Arc<Stream>> = lock(&self.streams).values().cloned().collect();
        for stream in streams {
            let mut state = lock(&stream.state);
            let ttl = state.definition.time_to_live_millis;
            state.log.expire(ttl);
            if let Log::File(f) = &mut state.log {
                if f.dirty {
                    if let Some(s) = f.segments.back() {
                        if let Err(e) = s.file.sync_data() {
                            tracing::warn!("stream manager: cannot sync {}: {e}", s.path.display());
                            continue;
                        }
                    }
                    f.dirty = false;
                }
            }
        }
    }

    /// The persistence of a stream, if it exists.
    pub fn persistence(&self, name: &str) -> Option<Persistence> {
        let stream = self.stream(name).ok()?;
        let p = lock(&stream.state).definition.persistence();
        Some(p)
    }
}

/// What exports read from: the store, held weakly (the store holds the
/// exports), so a dropped store ends them.
#[derive(Debug, Clone)]
pub struct StoreSource(pub std::sync::Weak<Store>);

/// The most payload one export read brings into memory.
const EXPORT_READ_BYTES: usize = 16 << 20;

impl crate::export::ExportSource for StoreSource {
    fn read_from(&self, stream: &str, from: i64, max: usize) -> Result<Vec<Message>, String> {
        let store = self.0.upgrade().ok_or("the stream manager stopped")?;
        store
            .read(stream, from, max, EXPORT_READ_BYTES)
            .map_err(|e| e.to_string())
    }

    fn watch(&self, stream: &str) -> Option<watch::Receiver<i64>> {
        self.0.upgrade()?.watch(stream).ok()
    }

    fn append(&self, stream: &str, payload: Vec<u8>) -> Result<i64, String> {
        let store = self.0.upgrade().ok_or("the stream manager stopped")?;
        store.append(stream, &payload).map_err(|e| e.to_string())
    }
}

/// How long [`Store::sync_dirty`] may leave acknowledged appends of
/// streams without `flushOnWrite` unsynced.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

fn write_definition(dir: &Path, definition: &MessageStreamDefinition) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(definition)
        .map_err(|e| StoreError::Failure(format!("cannot encode the definition: {e}")))?;
    write_atomically(&dir.join("definition.json"), &json)
}

/// Reads a `File` stream back from its directory (`None`: not a stream).
fn open_stream(dir: &Path, name: &str) -> Result<Option<Arc<Stream>>, StoreError> {
    let def_path = dir.join("definition.json");
    let bytes = match fs::read(&def_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot read", &def_path, e)),
    };
    let definition: MessageStreamDefinition = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Failure(format!("{}: {e}", def_path.display())))?;
    if definition.name != name {
        return Err(StoreError::Failure(format!(
            "{} names stream {:?}",
            def_path.display(),
            definition.name
        )));
    }
    let mut firsts: Vec<(i64, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| io("cannot list", dir, e))?
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let first = path
                .file_name()?
                .to_str()?
                .strip_suffix(".seg")?
                .parse::<i64>()
                .ok()?;
            Some((first, path))
        })
        .collect();
    firsts.sort();
    let mut segments = VecDeque::new();
    let mut next = 0;
    for (first, path) in firsts {
        if !segments.is_empty() && first != next {
            // A gap means the segments after it cannot be trusted to follow.
            tracing::error!(
                "stream manager: stream {name:?}: segment {} does not follow sequence {next}; it and later ones are set aside",
                path.display()
            );
            let _ = fs::rename(&path, path.with_extension("seg.orphan"));
            continue;
        }
        let segment = Segment::open(path, first)?;
        next = segment.first + segment.entries.len() as i64;
        segments.push_back(segment);
    }
    if segments.is_empty() {
        segments.push_back(Segment::create(dir, next)?);
    }
    let newest_value = next - 1;
    let (newest, _) = watch::channel(newest_value);
    Ok(Some(Arc::new(Stream {
        name: name.to_string(),
        state: Mutex::new(State {
            definition,
            log: Log::File(FileLog {
                dir: dir.to_path_buf(),
                segments,
                next,
                dirty: false,
            }),
            deleted: false,
            exports: Vec::new(),
        }),
        newest,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, persistence: Persistence) -> MessageStreamDefinition {
        MessageStreamDefinition {
            name: name.into(),
            max_size: None,
            stream_segment_size: None,
            time_to_live_millis: None,
            strategy_on_full: StrategyOnFull::RejectNewData,
            persistence: Some(persistence),
            flush_on_write: None,
            export_definition: None,
        }
    }

    #[test]
    fn file_streams_come_back_after_reopening_with_every_message() {
        let dir = tempfile::tempdir().expect("test");
        {
            let store = Store::open(dir.path(), StoreLimits::default()).expect("test");
            let mut d = def("a stream", Persistence::File);
            d.stream_segment_size = Some(1024);
            store.create(d).expect("test");
            for i in 0..100u32 {
                assert_eq!(
                    store.append("a stream", &i.to_le_bytes()).expect("test"),
                    i as i64
                );
            }
        }
        let store = Store::open(dir.path(), StoreLimits::default()).expect("test");
        let read = store.read("a stream", 0, 1000, 1 << 20).expect("test");
        assert_eq!(read.len(), 100);
        for (i, m) in read.iter().enumerate() {
            assert_eq!(m.sequence_number, i as i64);
            assert_eq!(m.payload, (i as u32).to_le_bytes());
        }
        assert_eq!(store.append("a stream", b"x").expect("test"), 100);
    }

    #[test]
    fn a_torn_last_record_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().expect("test");
        {
            let store = Store::open(dir.path(), StoreLimits::default()).expect("test");
            store.create(def("s", Persistence::File)).expect("test");
            for _ in 0..3 {
                store.append("s", b"hello").expect("test");
            }
        }
        let seg = dir
            .path()
            .join(dir_name("s"))
            .join(format!("{:020}.seg", 0));
        let mut f = OpenOptions::new().append(true).open(&seg).expect("test");
        f.write_all(&[9, 0, 0, 0, 1, 2]).expect("test");
        drop(f);
        let store = Store::open(dir.path(), StoreLimits::default()).expect("test");
        assert_eq!(store.read("s", 0, 10, 1 << 20).expect("test").len(), 3);
        assert_eq!(store.append("s", b"next").expect("test"), 3);
        assert_eq!(
            store.read("s", 3, 10, 1 << 20).expect("test")[0].payload,
            b"next"
        );
    }

    #[test]
    fn reject_new_data_refuses_and_overwrite_drops_the_oldest() {
        let dir = tempfile::tempdir().expect("test");
        let store = Store::open(dir.path(), StoreLimits::default()).expect("test");
        for (name, p) in [("m", Persistence::Memory), ("f", Persistence::File)] {
            let mut d = def(name, p);
            d.max_size = Some(1024);
            d.stream_segment_size = Some(1024);
            store.create(d.clone()).expect("test");
            let mut n = 0;
            while store.append(name, &[1; 100]).is_ok() {
                n += 1;
                assert!(n < 100);
            }
            assert_eq!(n, 1024 / 124);
            let o = format!("{name}o");
            d.name = o.clone();
            d.strategy_on_full = StrategyOnFull::OverwriteOldestData;
            d.stream_segment_size = Some(1024);
            d.max_size = Some(2048);
            store.create(d).expect("test");
            for _ in 0..100 {
                store.append(&o, &[2; 100]).expect("test");
            }
            let info = store.describe(&o).expect("test");
            assert_eq!(info.storage_status.newest_sequence_number, 99);
            assert!(info.storage_status.oldest_sequence_number > 80);
            assert!(info.storage_status.total_bytes <= 2048);
        }
    }

    /// "Time to live for each message … Data may be deleted at any time
    /// after the TTL expires" (the SDK): in memory message by message, on
    /// disk whole segments once their newest message is past it, never the
    /// segment being written.
    #[test]
    fn messages_past_their_time_to_live_go_by_message_in_memory_and_by_segment_on_disk() {
        let dir = tempfile::tempdir().expect("test");
        let store = Store::open(dir.path(), StoreLimits::default()).expect("test");
        const TTL: i64 = 60_000;
        for (name, p) in [("m", Persistence::Memory), ("f", Persistence::File)] {
            let mut d = def(name, p);
            d.time_to_live_millis = Some(TTL);
            d.stream_segment_size = Some(1024);
            store.create(d).expect("test");
            for _ in 0..40 {
                store.append(name, &[7; 100]).expect("test");
            }
        }
        let stream = |n: &str| store.stream(n).expect("test");
        let newest_ingest = |n: &str| match &lock(&stream(n).state).log {
            Log::Memory(m) => m.messages.back().map(|m| m.1).unwrap_or(0),
            Log::File(f) => f
                .segments
                .back()
                .and_then(|s| s.entries.last())
                .map(|e| e.2)
                .unwrap_or(0),
        };
        // Not yet past: nothing goes.
        for n in ["m", "f"] {
            let now = newest_ingest(n) + TTL - 1_000;
            lock(&stream(n).state).log.expire_at(Some(TTL), now);
            assert_eq!(
                store
                    .describe(n)
                    .expect("test")
                    .storage_status
                    .oldest_sequence_number,
                0,
                "{n}"
            );
        }
        // Past it: every message of the Memory stream, every closed segment of the File one.
        for n in ["m", "f"] {
            let now = newest_ingest(n) + TTL + 1_000;
            lock(&stream(n).state).log.expire_at(Some(TTL), now);
        }
        let m = store.describe("m").expect("test").storage_status;
        assert_eq!(
            (
                m.oldest_sequence_number,
                m.newest_sequence_number,
                m.total_bytes
            ),
            (40, 39, 0)
        );
        let f = store.describe("f").expect("test").storage_status;
        assert!(f.oldest_sequence_number > 30, "{f:?}");
        assert_eq!(f.newest_sequence_number, 39);
        assert!(
            f.total_bytes <= 1024,
            "only the segment being written is left: {f:?}"
        );
        // Numbering goes on.
        assert_eq!(store.append("f", b"next").expect("test"), 40);
        assert_eq!(store.append("m", b"next").expect("test"), 40);
    }

    #[test]
    fn persistence_cannot_change_and_a_dot_dot_name_stays_inside() {
        let dir = tempfile::tempdir().expect("test");
        let store = Store::open(&dir.path().join("root"), StoreLimits::default()).expect("test");
        store.create(def("..", Persistence::File)).expect("test");
        assert!(dir.path().join("root").join("2e2e").is_dir());
        assert!(matches!(
            store.update(def("..", Persistence::Memory)),
            Err(StoreError::UpdateNotAllowed(_))
        ));
        store.delete("..").expect("test");
        assert!(matches!(store.describe(".."), Err(StoreError::NotFound(_))));
    }
}
