//! The writer thread's side of the log pipeline: the files behind tracing-appender's
//! non-blocking writer, the records that travel to them, the admission that bounds what
//! waits, the counts of what was dropped, and the component's handle on its log.
//!
//! A record is one `write` into the [`NonBlocking`] writer, which hands it to its worker
//! thread as one message, and the worker passes it whole to [`Files::write`] (it calls
//! `write_all`, and `Files` always takes the whole buffer). A record is text: a kind letter
//! and the log's number in 16 hex digits, then, for a line, the rendered line. The logging
//! thread renders it into a reused buffer ([`with_record`]), so a line costs one copy (the
//! writer's own) and no allocation of ours.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use evergreen_ipc::LogLevel;
use time::OffsetDateTime;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

use super::file::{render_line, LogFile};
use super::{SystemLogOptions, COMPONENT_TARGET, QUEUE_BYTES, QUEUE_LINES, SYSTEM_ARN, SYSTEM_LOG};

/// The runtime's own log's number.
pub(super) const SYSTEM_ID: u64 = 0;

/// Control records (a log closed, a flush) that may wait beside the admitted lines.
const CONTROL_ROOM: usize = 1024;

pub(super) const LINE: u8 = b'L';
/// A runtime line that is also echoed on stderr.
pub(super) const LINE_ECHO: u8 = b'E';
const CLOSE: u8 = b'C';
const BARRIER: u8 = b'B';
/// The kind letter and 16 hex digits.
const HEADER: usize = 17;

thread_local! {
    /// The record being rendered on this thread, reused from line to line.
    static RECORD: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Starts a record of `kind` for log `id` in this thread's buffer and lets `render` append
/// the line; returns what `render` returns, with the buffer then holding the whole record.
/// A nested call (a line logged while rendering one) gets a buffer of its own.
pub(super) fn with_record<T>(
    kind: u8,
    id: u64,
    render: impl FnOnce(&mut String) -> T,
) -> (T, RecordRef) {
    let mut buf = RECORD
        .try_with(|b| b.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)).ok())
        .ok()
        .flatten()
        .unwrap_or_default();
    buf.clear();
    buf.push(char::from(kind));
    let _ = write!(buf, "{id:016x}");
    let out = render(&mut buf);
    (out, RecordRef(buf))
}

/// A rendered record; its buffer goes back to the thread's when dropped.
#[derive(Debug)]
pub(super) struct RecordRef(String);

impl RecordRef {
    /// The line's bytes (the record without its header).
    pub(super) fn line_len(&self) -> usize {
        self.0.len() - HEADER
    }

    /// The line (the record without its header).
    pub(super) fn line(&self) -> &str {
        self.0.get(HEADER..).unwrap_or_default()
    }
}

impl Drop for RecordRef {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        // Keep a modest buffer only: one huge line must not pin its memory forever.
        if buf.capacity() <= 64 * 1024 {
            let _ = RECORD.try_with(|b| {
                if let Ok(mut b) = b.try_borrow_mut() {
                    *b = buf;
                }
            });
        }
    }
}

/// What the emitting side needs to render a log's lines.
#[derive(Debug)]
pub(super) struct Meta {
    pub(super) arn: String,
    pub(super) level: LogLevel,
    pub(super) cap: u64,
    /// Lines of this log dropped because the writer was behind.
    pub(super) dropped: AtomicU64,
}

/// State shared by the threads that log and the writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Every open log's rendering data, by number (the runtime's own is [`SYSTEM_ID`]).
    metas: RwLock<HashMap<u64, Arc<Meta>>>,
    /// Files opened by a logging thread, for the writer to take before their first line.
    arriving: Mutex<Vec<(u64, LogFile)>>,
    next_id: AtomicU64,
    /// Lines and bytes admitted and not yet written.
    queued_lines: AtomicUsize,
    queued_bytes: AtomicUsize,
    dropped_total: AtomicU64,
    /// Dropped lines the runtime log has not yet told of.
    pub(super) dropped_unreported: AtomicU64,
    /// The writer: one clone per record sent (a channel sender).
    writer: Mutex<Option<NonBlocking>>,
    next_barrier: AtomicU64,
    passed_barrier: Mutex<u64>,
    barrier_passed: Condvar,
    /// The writer thread is stopping or gone (the process is ending): lines go to stderr.
    stopped: std::sync::atomic::AtomicBool,
}

/// Starts the writer thread with the runtime's own log open; returns the shared state, the
/// worker's guard and the writer the layer sends into.
pub(super) fn start(
    log_root: &Path,
    options: &SystemLogOptions,
) -> io::Result<(Arc<Shared>, WorkerGuard, NonBlocking)> {
    let system = LogFile::open(
        log_root,
        Path::new(SYSTEM_LOG),
        SYSTEM_ARN,
        options.level,
        options.space_kb,
    )?;
    let shared = Arc::new(Shared {
        metas: RwLock::new(HashMap::new()),
        arriving: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(SYSTEM_ID + 1),
        queued_lines: AtomicUsize::new(0),
        queued_bytes: AtomicUsize::new(0),
        dropped_total: AtomicU64::new(0),
        dropped_unreported: AtomicU64::new(0),
        writer: Mutex::new(None),
        next_barrier: AtomicU64::new(1),
        passed_barrier: Mutex::new(0),
        barrier_passed: Condvar::new(),
        stopped: std::sync::atomic::AtomicBool::new(false),
    });
    write_lock(&shared.metas).insert(
        SYSTEM_ID,
        Arc::new(Meta {
            arn: SYSTEM_ARN.to_owned(),
            level: options.level,
            cap: system.cap(),
            dropped: AtomicU64::new(0),
        }),
    );
    let mut open = HashMap::new();
    open.insert(SYSTEM_ID, system);
    let files = Files {
        shared: shared.clone(),
        open,
        system_failing: false,
        failing: HashMap::new(),
    };
    // Blocking mode: our admission keeps lines below the channel's room, so a send never
    // waits in practice, and the writer itself never drops what it was given.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUE_LINES + CONTROL_ROOM)
        .thread_name("evergreen-log")
        .finish(files);
    *lock(&shared.writer) = Some(writer.clone());
    Ok((shared, guard, writer))
}

impl Shared {
    /// Rendering data of log `id`, if it is open.
    pub(super) fn meta(&self, id: u64) -> Option<Arc<Meta>> {
        read_lock(&self.metas).get(&id).cloned()
    }

    /// Takes a line of `len` bytes into the queue, or counts it dropped (for `meta`).
    pub(super) fn admit(&self, len: usize, meta: &Meta) -> bool {
        let lines = self.queued_lines.fetch_add(1, Ordering::AcqRel);
        let bytes = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if lines < QUEUE_LINES && bytes + len <= QUEUE_BYTES {
            return true;
        }
        self.queued_lines.fetch_sub(1, Ordering::AcqRel);
        self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
        meta.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_total.fetch_add(1, Ordering::Relaxed);
        self.dropped_unreported.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Whether the queue has room for at least half its lines again (a drop report waits
    /// for it, so the report is not dropped in turn).
    pub(super) fn has_room(&self) -> bool {
        self.queued_lines.load(Ordering::Acquire) < QUEUE_LINES / 2
    }

    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Sends a control record: `kind` for log `id`.
    fn send(&self, writer: &mut NonBlocking, kind: u8, id: u64) {
        let (_, record) = with_record(kind, id, |_| ());
        self.send_record(writer, &record);
    }

    /// From now on lines go to stderr: the writer thread stops (see [`super::LogGuard`]).
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// Whether the writer thread is stopping or gone.
    pub(super) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Sends a rendered record (see [`with_record`]); a line's must have been admitted.
    pub(super) fn send_record(&self, writer: &mut NonBlocking, record: &RecordRef) {
        // The worker is gone only after the guard dropped (the process is ending): the line
        // has nowhere to go; it was counted as queued and `drain` reports it.
        let _ = writer.write(record.0.as_bytes());
    }

    /// Waits until every record sent before this call is written, at most `timeout`;
    /// returns the lines still waiting then (0 when all were written).
    pub(crate) fn drain(&self, timeout: Duration) -> usize {
        let Some(mut writer) = lock(&self.writer).clone() else {
            return 0;
        };
        let barrier = self.next_barrier.fetch_add(1, Ordering::Relaxed);
        self.send(&mut writer, BARRIER, barrier);
        let deadline = Instant::now() + timeout;
        let mut passed = lock(&self.passed_barrier);
        while *passed < barrier {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            passed = self
                .barrier_passed
                .wait_timeout(passed, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        self.queued_lines.load(Ordering::Acquire)
    }
}

/// The files, owned by the writer thread.
#[derive(Debug)]
struct Files {
    shared: Arc<Shared>,
    open: HashMap<u64, LogFile>,
    /// The runtime log's last write failed; told once on stderr, not once per line.
    system_failing: bool,
    /// Component logs whose last write failed, with the failures since, told once per
    /// streak in the runtime log.
    failing: HashMap<u64, u64>,
}

impl Files {
    fn handle(&mut self, record: &[u8]) {
        let Ok(record) = std::str::from_utf8(record) else {
            return;
        };
        let (Some(kind), Some(id), Some(payload)) = (
            record.as_bytes().first().copied(),
            record
                .get(1..HEADER)
                .and_then(|h| u64::from_str_radix(h, 16).ok()),
            record.get(HEADER..),
        ) else {
            return;
        };
        match kind {
            LINE | LINE_ECHO => {
                self.shared.queued_lines.fetch_sub(1, Ordering::AcqRel);
                self.shared
                    .queued_bytes
                    .fetch_sub(payload.len(), Ordering::AcqRel);
                self.write_line(id, kind == LINE_ECHO, payload);
            }
            CLOSE => {
                self.open.remove(&id);
                self.failing.remove(&id);
            }
            BARRIER => {
                let mut passed = lock(&self.shared.passed_barrier);
                *passed = (*passed).max(id);
                self.shared.barrier_passed.notify_all();
            }
            _ => {}
        }
    }

    fn write_line(&mut self, id: u64, echo: bool, line: &str) {
        if !self.open.contains_key(&id) {
            let arrived = std::mem::take(&mut *lock(&self.shared.arriving));
            self.open.extend(arrived);
        }
        let Some(file) = self.open.get_mut(&id) else {
            return;
        };
        let result = file.append(line);
        let path = if result.is_err() || self.failing.contains_key(&id) {
            file.path().display().to_string()
        } else {
            String::new()
        };
        if id == SYSTEM_ID {
            let mut stderr = io::stderr().lock();
            match result {
                Ok(()) => {
                    self.system_failing = false;
                    if echo {
                        let _ = stderr.write_all(line.as_bytes());
                    }
                }
                Err(e) => {
                    // The line must not be lost: stderr gets it even when not echoing, with
                    // one notice when the failures start.
                    if !std::mem::replace(&mut self.system_failing, true) {
                        let _ = writeln!(
                            stderr,
                            "evergreen: {e}; runtime log lines go to stderr until it works again"
                        );
                    }
                    let _ = stderr.write_all(line.as_bytes());
                }
            }
            return;
        }
        match result {
            Ok(()) => {
                if let Some(failures) = self.failing.remove(&id) {
                    self.system_note(&format!(
                        "the log {path} is written again ({failures} lines were lost while it failed)"
                    ));
                }
            }
            Err(e) => {
                let failures = self.failing.entry(id).or_insert(0);
                *failures += 1;
                if *failures == 1 {
                    self.system_note(&format!("{e}; lines are lost until it works again"));
                }
            }
        }
    }

    /// A line of the writer's own in the runtime log, written at once (not through the
    /// queue: the writer must not wait on itself).
    fn system_note(&mut self, message: &str) {
        let Some(system) = self.open.get_mut(&SYSTEM_ID) else {
            return;
        };
        let mut line = String::new();
        render_line(
            &mut line,
            OffsetDateTime::now_utc(),
            LogLevel::Warn,
            SYSTEM_ARN,
            system.cap(),
            Some("evergreen_runtime::logs"),
            message,
        );
        if system.append(&line).is_err() {
            let _ = io::stderr().write_all(line.as_bytes());
        }
    }
}

impl Write for Files {
    /// Takes one whole record (see the module's docs); never fails, so the worker never
    /// splits or retries a record.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handle(buf);
        Ok(buf.len())
    }

    /// Every line is written when it arrives; nothing is buffered here.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A component's log: cheap to clone, shared by its actor, its tasks and the Lambda
/// endpoint. Once [`super::install`]ed, [`write`](Self::write) is a `tracing` event that the
/// writer thread writes; before (unit tests of other modules) it writes the file directly.
#[derive(Debug, Clone)]
pub(crate) struct ComponentLog {
    inner: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    meta: Arc<Meta>,
    mode: Mode,
    /// Its CloudWatch log group, for an `AWSCloudWatch` logger.
    cloud_group: Option<String>,
}

#[derive(Debug)]
enum Mode {
    Queued { id: u64, shared: Arc<Shared> },
    Direct(Mutex<LogFile>),
}

impl ComponentLog {
    /// Opens `<log_root>/<relative>` (see [`LogFile::open`]) for the component `arn`.
    pub(crate) fn open(
        log_root: &Path,
        relative: &Path,
        arn: &str,
        level: LogLevel,
        space_kb: u64,
    ) -> io::Result<ComponentLog> {
        Self::open_in(
            super::INSTALLED.get(),
            log_root,
            relative,
            arn,
            level,
            space_kb,
        )
    }

    /// [`Self::open`] in the pipeline `shared`, or writing directly without one.
    pub(super) fn open_in(
        shared: Option<&Arc<Shared>>,
        log_root: &Path,
        relative: &Path,
        arn: &str,
        level: LogLevel,
        space_kb: u64,
    ) -> io::Result<ComponentLog> {
        let file = LogFile::open(log_root, relative, arn, level, space_kb)?;
        let meta = Arc::new(Meta {
            arn: arn.to_owned(),
            level,
            cap: file.cap(),
            dropped: AtomicU64::new(0),
        });
        let mode = match shared {
            Some(shared) => {
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                lock(&shared.arriving).push((id, file));
                write_lock(&shared.metas).insert(id, meta.clone());
                Mode::Queued {
                    id,
                    shared: shared.clone(),
                }
            }
            None => Mode::Direct(Mutex::new(file)),
        };
        Ok(ComponentLog {
            inner: Arc::new(Handle {
                meta,
                mode,
                cloud_group: super::cloud_group(relative),
            }),
        })
    }

    /// Logs one line, unless `level` is below the log's level. Never blocks on the disk
    /// once installed; a failed write is told in the runtime log by the writer.
    pub(crate) fn write(&self, level: LogLevel, message: &str) {
        // CloudWatch first: its logger's level may be below the file's.
        if let Some(group) = &self.inner.cloud_group {
            if let Some(shipper) = super::shipper_for(false, level) {
                let at = std::time::SystemTime::now();
                let line = super::cloud_line(at.into(), level, None, message);
                shipper.ship(super::LineSource::Component(group), at, line);
            }
        }
        if level < self.inner.meta.level {
            return;
        }
        match &self.inner.mode {
            Mode::Queued { id, .. } => {
                let id = *id;
                let fatal = level == LogLevel::Fatal;
                match level {
                    LogLevel::Debug => {
                        tracing::debug!(target: COMPONENT_TARGET, log = id, fatal, message)
                    }
                    LogLevel::Info => {
                        tracing::info!(target: COMPONENT_TARGET, log = id, fatal, message)
                    }
                    LogLevel::Warn => {
                        tracing::warn!(target: COMPONENT_TARGET, log = id, fatal, message)
                    }
                    LogLevel::Error | LogLevel::Fatal => {
                        tracing::error!(target: COMPONENT_TARGET, log = id, fatal, message)
                    }
                }
            }
            Mode::Direct(file) => {
                if let Err(e) = lock(file).write(level, message) {
                    tracing::warn!("{}: cannot write its log: {e}", self.inner.meta.arn);
                }
            }
        }
    }

    /// Lines of this log dropped because the writer was behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.inner.meta.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Mode::Queued { id, shared } = &self.mode {
            write_lock(&shared.metas).remove(id);
            if let Some(mut writer) = lock(&shared.writer).clone() {
                shared.send(&mut writer, CLOSE, *id);
            }
        }
    }
}

/// A poisoned lock only means another thread panicked mid-log; the state is
/// still usable and logging must go on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lock<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}
