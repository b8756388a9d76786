//! Log files: one per component and one for the runtime itself, every line
//! tagged with the ARN of whoever wrote it, every file bounded in size, all
//! written through `tracing` and tracing-appender's non-blocking writer.
//!
//! This module owns the line format, the escaping of messages, rotation, the
//! modes of log files and directories ([`file`]), the `tracing` layer that
//! renders the runtime's events and the components' lines ([`layer`]), and
//! the writer thread's side: the files behind tracing-appender's
//! non-blocking writer, the admission that bounds what waits for it, and the
//! count of what it had to drop ([`appender`]). Where each component's file
//! lives (`user/<region>/<account>/<function>.log`, …) and its level and
//! `Space` come from the caller. It must never panic on a failed write (a
//! full disk must not take the runtime down), never let one message become
//! more or less than one line (a component must not be able to forge a line
//! that looks like someone else's; only the runtime's own log splits a
//! multi-line message into lines, each with the full prefix), never block the
//! thread that logs on the disk, never lose a line without counting it, and
//! never write outside the log root it is given.
//!
//! # Line format
//!
//! ```text
//! [2026-11-26T07:11:02.123Z][INFO]-(arn:aws:lambda:us-east-1:123456789012:function:f:1) hello
//! ```
//!
//! The timestamp is UTC, RFC 3339 with milliseconds, taken when the line is
//! logged (not when the writer thread writes it). In the message, one
//! trailing newline is dropped (it is the end of line we add anyway), and
//! every other control character is escaped: `\n`, `\r`, `\t`, `\xNN` for
//! the rest of C0, DEL and C1, and `\u{NNNN}` for the Unicode line and
//! paragraph separators and the bidirectional overrides, which some viewers
//! also honour. Backslashes are not doubled: the escaping is there to keep
//! lines whole, not to make them reversible. A message whose escaped form
//! is longer than [`MAX_MESSAGE_BYTES`] (or than what fits in one file
//! under a small `Space`) is cut at a character boundary and ends with
//! ` [truncated <n> bytes]`, `n` counting the bytes of the message left out.
//!
//! # Rotation
//!
//! A log keeps the current file plus at most [`ROTATED_FILES`] older ones,
//! `<name>.log.1` (newest) to `<name>.log.3` (oldest). Each is capped at
//! `Space / 4`, so all of them together stay within the Logger definition's
//! `Space`. When the next line would take the current file over its cap the
//! files shift by renaming and the oldest is deleted. `Space` below
//! [`MIN_SPACE_KB`] is raised to it so a file still holds a few long lines.
//! These files must not also be rotated by logrotate (it would rename the
//! file under the open descriptor). tracing-appender's own appenders rotate
//! by time only, so the size policy is ours ([`file::LogFile`]), the writer
//! that tracing-appender's non-blocking worker writes into.
//!
//! # The path of a line
//!
//! A component's line (from its stderr, its IPC log frames, the Lambda
//! endpoint, or the runtime about that component) is a `tracing` event with
//! target [`COMPONENT_TARGET`], the log's number and the message
//! ([`ComponentLog::write`]); the runtime's own lines are every other
//! `tracing` event, and the `log` records of the libraries underneath (ntex,
//! rustls, …) bridged by `tracing-log`. The [`layer`] renders each into its
//! line on the thread that logged it and hands it to tracing-appender's
//! [`NonBlocking`](tracing_appender::non_blocking::NonBlocking) writer; its
//! worker thread writes it into the right file. So a slow or stalled disk
//! holds up that one thread, never the actors' thread, the router or the MQTT
//! server.
//!
//! What waits for the writer is bounded by our own admission
//! ([`QUEUE_LINES`] lines and [`QUEUE_BYTES`] bytes), not by the writer's
//! lossy mode: a line that finds the queue full is dropped, counted for its
//! component and in total, and reported: a `WARN` line in the runtime log
//! once the writer catches up (`… log lines were not written …`), the
//! counts in `evergreen status` (`logDropped` per component,
//! `logLinesDropped` for the runtime), and on stderr at exit for any line
//! still unwritten then. The writer itself runs in its blocking mode with
//! room for the admitted lines and the few control records (a log closed, a
//! flush), so nothing it is given is lost.
//!
//! # The runtime's own log
//!
//! Its lines go to `system/runtime.log`, each tagged [`SYSTEM_ARN`]
//! (Greengrass's name for its runtime). The message starts with the event's
//! target (the module path unless the caller set one) and then the spans it
//! happened in, so lines can be grepped by the part of the runtime that wrote
//! them and by the component, deployment or connection they concern:
//!
//! ```text
//! [2026-11-26T07:11:02.123Z][WARN]-(arn:aws:lambda:::function:GGRuntime) evergreen_runtime::component: component{name=Heartbeat}: exited with status 1
//! ```
//!
//! With `--log-format json` each runtime line is instead one JSON object
//! (`timestamp`, `level`, `arn`, `target`, `spans`, `message`): for journald
//! or Loki. Component logs keep Greengrass's format whatever the option.
//!
//! `tracing`'s `TRACE` has no Greengrass level and is dropped; Greengrass's
//! `FATAL` has no `tracing` level: it is an `ERROR` event with `fatal = true`.
//!
//! **Repeated warnings** are limited, so a peer that makes the runtime warn
//! on every connection or message cannot rotate its history away: each
//! `WARN` or `ERROR` call site (file and line) writes at most [`REPEAT_BURST`]
//! lines per [`REPEAT_WINDOW`]; what it would have written beyond that is
//! counted, and once the window is over one line says so
//! (`… 1234 more like this from <target> in the last 60 s were not written`).

mod appender;
pub(crate) mod file;
mod layer;
#[cfg(test)]
mod tests;

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use evergreen_ipc::LogLevel;

pub(crate) use appender::ComponentLog;

use appender::Shared;

/// The runtime's own log, relative to the log root.
pub const SYSTEM_LOG: &str = "system/runtime.log";

/// The tag on every line of the runtime's own log.
pub const SYSTEM_ARN: &str = "arn:aws:lambda:::function:GGRuntime";

/// The `tracing` target of a component's line (see [`ComponentLog::write`]).
pub const COMPONENT_TARGET: &str = "evergreen::component_log";

/// Longest message part of a line, after escaping. Long enough for a stack
/// trace line or a JSON document, short enough that a looping component
/// cannot fill `Space` with a handful of writes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Lines one `WARN`/`ERROR` call site of the runtime writes per [`REPEAT_WINDOW`].
pub const REPEAT_BURST: u32 = 10;
/// The window over which repeated warnings are counted.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// Rotated files kept besides the current one.
pub const ROTATED_FILES: u32 = 3;

/// Lines that may wait for the writer thread; more are dropped and counted.
/// A burst of this many lines from a component that logs at full speed rides out a
/// writer stalled for a moment.
pub const QUEUE_LINES: usize = 8192;
/// Bytes that may wait for the writer thread: bounds the memory of the queue when the lines
/// are long (8192 lines of 16 KiB would be 128 MiB, too much for a 1 GB gateway).
pub const QUEUE_BYTES: usize = 4 << 20;

/// How long the end of the process waits for the writer thread to write what it was given.
const DRAIN_AT_EXIT: Duration = Duration::from_secs(5);

/// Greengrass's `Space` when no Logger definition is deployed.
#[cfg(test)]
pub(crate) const DEFAULT_SPACE_KB: u64 = 128;

/// Smallest `Space` honoured: 4 KiB per file holds a few full lines.
pub(crate) const MIN_SPACE_KB: u64 = 16;

/// How the runtime's own lines are written (components keep Greengrass's format).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `[timestamp][LEVEL]-(arn) target: spans: message`, as Greengrass wrote its runtime log.
    #[default]
    Greengrass,
    /// One JSON object per line.
    Json,
}

/// The installed pipeline: set once by [`install`], read by every [`ComponentLog::open`].
static INSTALLED: OnceLock<Arc<Shared>> = OnceLock::new();

/// What [`install`] sets up for the runtime's own log.
#[derive(Debug, Clone)]
pub struct SystemLogOptions {
    /// Lowest level of the runtime's own lines (the group's system Logger definition).
    pub level: LogLevel,
    /// The system Logger definition's `Space`, in KB.
    pub space_kb: u64,
    /// Also echo each runtime line on stderr (for journald).
    pub to_stderr: bool,
    /// Greengrass lines or JSON.
    pub format: LogFormat,
}

/// Keeps the writer thread alive; dropping it waits (up to 5 s) for every line already
/// given to the writer, says on stderr how many could not be written, and stops the thread;
/// a line logged after that goes to stderr. Hold it until the process ends, and drop it
/// before an `exec`.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard {
    shared: Arc<Shared>,
    worker: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let unwritten = self.shared.drain(DRAIN_AT_EXIT);
        self.shared.stop();
        let dropped = self.shared.dropped_total();
        if unwritten > 0 || dropped > 0 {
            eprintln!(
                "evergreen: log lines not written: {dropped} dropped while the writer was behind, \
                 {unwritten} still waiting at exit"
            );
        }
        drop(self.worker.take());
    }
}

/// Opens `<log_root>/system/runtime.log`, starts the writer thread and makes the layer the
/// process's `tracing` subscriber, with the `log` records of the libraries bridged into it.
/// Fails if the file cannot be opened or a subscriber is already installed.
pub fn install(log_root: &Path, options: SystemLogOptions) -> io::Result<LogGuard> {
    let (shared, worker, writer) = appender::start(log_root, &options)?;
    let layer = layer::GreengrassLayer::new(shared.clone(), writer, &options);
    layer::set_global(layer, options.level)?;
    if INSTALLED.set(shared.clone()).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the log pipeline is already installed",
        ));
    }
    Ok(LogGuard {
        shared,
        worker: Some(worker),
    })
}

/// Waits until the writer thread has written every line given to it so far, at most
/// `timeout`; false if it did not (a stalled disk). Nothing to wait for before [`install`].
pub fn flush(timeout: Duration) -> bool {
    INSTALLED
        .get()
        .is_none_or(|shared| shared.drain(timeout) == 0)
}

/// `at` as every log line's timestamp: UTC, RFC 3339 with milliseconds, fixed width.
pub fn timestamp(at: time::OffsetDateTime) -> String {
    let mut out = String::with_capacity(24);
    file::push_timestamp(&mut out, at);
    out
}

/// Where lines also go when the group has an `AWSCloudWatch` logger: the CloudWatch Logs
/// uploader (`evergreen_cwlogs`), set once by the composition root. Both calls are made on
/// the thread that logs, for every line: they must be cheap and never block.
pub trait LogShipper: Send + Sync + std::fmt::Debug {
    /// Whether lines of `level` are wanted, from the runtime (`system`) or a component.
    fn wants(&self, system: bool, level: LogLevel) -> bool;
    /// One line, logged `at`, from `source`.
    fn ship(&self, source: LineSource<'_>, at: std::time::SystemTime, line: String);
    /// Lines it could not send, since the start (for `evergreen status`).
    fn dropped(&self) -> u64;
}

/// Lines the shipper could not send, since the start (0 without one).
pub fn shipper_dropped() -> u64 {
    SHIPPER.get().map_or(0, |s| s.dropped())
}

/// Who wrote a shipped line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineSource<'a> {
    /// A component, by its CloudWatch log group ([`cloud_group`] of its file).
    Component(&'a str),
    /// The runtime, by the event's `tracing` target (the shipper names the system component).
    Runtime(&'a str),
}

static SHIPPER: OnceLock<Arc<dyn LogShipper>> = OnceLock::new();

/// Sends every line that `shipper` wants to it too, from now on; false if one is set already.
pub fn set_shipper(shipper: Arc<dyn LogShipper>) -> bool {
    SHIPPER.set(shipper).is_ok()
}

/// The shipper, if one is set and wants lines of `level` (from the runtime if `system`).
pub(crate) fn shipper_for(system: bool, level: LogLevel) -> Option<&'static Arc<dyn LogShipper>> {
    SHIPPER.get().filter(|s| s.wants(system, level))
}

/// The CloudWatch log group (V1's names) of the log file at `relative` under the log root:
/// `user/<region>/<account>/<name>.log` → `/aws/greengrass/Lambda/<region>/<account>/<name>`,
/// `system/<name>.log` → `/aws/greengrass/GreengrassSystem/<name>`.
pub fn cloud_group(relative: &Path) -> Option<String> {
    let parts: Vec<&str> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        ["user", region, account, file] => Some(format!(
            "/aws/greengrass/Lambda/{region}/{account}/{}",
            file.strip_suffix(".log")?
        )),
        ["system", file] => Some(format!(
            "/aws/greengrass/GreengrassSystem/{}",
            file.strip_suffix(".log")?
        )),
        _ => None,
    }
}

/// A line as CloudWatch gets it: `[timestamp][LEVEL]-` then `context: ` when given, then the
/// message, escaped and cut as file lines are (V1's format, without the file line's ARN:
/// the log group names the writer).
pub(crate) fn cloud_line(
    at: time::OffsetDateTime,
    level: LogLevel,
    context: Option<&str>,
    message: &str,
) -> String {
    let message = file::strip_line_end(message);
    let mut line = String::with_capacity(40 + message.len().min(MAX_MESSAGE_BYTES));
    line.push('[');
    file::push_timestamp(&mut line, at);
    line.push_str("][");
    line.push_str(level.as_str());
    line.push_str("]-");
    if let Some(context) = context {
        file::push_escaped(&mut line, context, MAX_MESSAGE_BYTES);
        line.push_str(": ");
    }
    if let Some(left_out) = file::push_escaped(&mut line, message, MAX_MESSAGE_BYTES) {
        line.push_str(&format!(" [truncated {left_out} bytes]"));
    }
    line
}

/// Lines dropped because the writer thread was behind, since the runtime started.
pub fn dropped_lines() -> u64 {
    INSTALLED.get().map_or(0, |shared| shared.dropped_total())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Reading log files back in tests.
    use std::path::Path;

    /// The file's lines; fails if the last one is unterminated.
    pub(crate) fn lines(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).expect("read log");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "last line unterminated: {text:?}"
        );
        text.lines().map(str::to_owned).collect()
    }

    /// `[YYYY-MM-DDTHH:MM:SS.mmmZ][LEVEL]-(<arn>) <message>`, checked by hand
    /// (the crate has no regex dependency); returns the message.
    pub(crate) fn parse_line<'a>(line: &'a str, level: &str, arn: &str) -> &'a str {
        let bytes = line.as_bytes();
        assert!(line.len() > 27, "{line}");
        for (i, b) in bytes[1..25].iter().enumerate() {
            let ok = match i {
                4 | 7 => *b == b'-',
                10 => *b == b'T',
                13 | 16 => *b == b':',
                19 => *b == b'.',
                23 => *b == b'Z',
                _ => b.is_ascii_digit(),
            };
            assert!(ok, "bad timestamp at {i} in {line}");
        }
        assert_eq!(bytes[0], b'[', "{line}");
        let rest = &line[25..];
        let head = format!("][{level}]-({arn}) ");
        rest.strip_prefix(&head)
            .unwrap_or_else(|| panic!("bad head in {line}"))
    }
}
