//! Log files: one per component and one for the runtime itself, every line
//! tagged with the ARN of whoever wrote it, every file bounded in size.
//!
//! This module owns the line format, the escaping of messages, rotation, the
//! modes of log files and directories, and the `log` crate backend that
//! writes the runtime's own log ([`SystemLogger`]). Where each component's
//! file lives (`user/<region>/<account>/<function>.log`, …) and its level and
//! `Space` come from the caller. It must never panic on a failed write (a
//! full disk must not take the runtime down), never let one message become
//! more or less than one line (a component must not be able to forge a line
//! that looks like someone else's; only the runtime's own log splits a
//! multi-line message into lines, each with the full prefix), never buffer a line (`tail -f` sees it
//! at once), and never write outside the log root it is given.
//!
//! # Line format
//!
//! ```text
//! [2026-11-26T07:11:02.123Z][INFO]-(arn:aws:lambda:us-east-1:123456789012:function:f:1) hello
//! ```
//!
//! The timestamp is UTC, RFC 3339 with milliseconds. In the message, one
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
//! file under the open descriptor).
//!
//! # The runtime's own log
//!
//! [`SystemLogger`] writes `system/runtime.log`. Every line carries the tag
//! [`SYSTEM_ARN`] (Greengrass's name for its runtime), and the message starts
//! with the record's target (the module path unless the caller set one),
//! so lines can be grepped by the part of the runtime that wrote them:
//!
//! ```text
//! [2026-11-26T07:11:02.123Z][WARN]-(arn:aws:lambda:::function:GGRuntime) evergreen::router: queue full
//! ```
//!
//! `log`'s `TRACE` has no Greengrass level and is dropped; Greengrass's
//! `FATAL` has no `log` level and is written with [`SystemLogger::write`].
//!
//! **Repeated warnings** are limited, so a peer that makes the runtime warn
//! on every connection or message cannot rotate its history away: each
//! `WARN` or `ERROR` call site (file and line) writes at most [`REPEAT_BURST`]
//! lines per [`REPEAT_WINDOW`]; what it would have written beyond that is
//! counted, and once the window is over one line says so
//! (`… 1234 more like this from <target> in the last 60 s were not written`).

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use evergreen_ipc::LogLevel;
use time::macros::format_description;
use time::OffsetDateTime;

/// The runtime's own log, relative to the log root.
pub const SYSTEM_LOG: &str = "system/runtime.log";

/// The tag on every line of the runtime's own log.
pub const SYSTEM_ARN: &str = "arn:aws:lambda:::function:GGRuntime";

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

/// Greengrass's `Space` when no Logger definition is deployed.
#[cfg(test)]
pub(crate) const DEFAULT_SPACE_KB: u64 = 128;

/// Smallest `Space` honoured: 4 KiB per file holds a few full lines.
pub(crate) const MIN_SPACE_KB: u64 = 16;

/// A component's log, shared on the actor system's thread by its actor, its
/// tasks and the Lambda endpoint.
pub(crate) type SharedLog = std::rc::Rc<std::cell::RefCell<LogFile>>;

/// Room kept for ` [truncated <n> bytes]` (n has at most 20 digits).
const MARKER_ROOM: usize = 40;

/// One log file with its rotated predecessors.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    arn: String,
    level: LogLevel,
    file: File,
    /// Bytes in the current file, to decide rotation without a stat per line.
    size: u64,
    /// Cap of each file: `Space / (ROTATED_FILES + 1)`.
    cap: u64,
    /// A failed write may have left part of a line; the next line starts on
    /// a fresh line so it is not glued to the fragment.
    torn: bool,
}

impl LogFile {
    /// Opens `<log_root>/<relative>` for appending, creating it (mode 0640)
    /// and its missing parent directories (mode 0750). `relative` must stay
    /// under `log_root`: no `..`, no absolute path.
    pub(crate) fn open(
        log_root: &Path,
        relative: &Path,
        arn: &str,
        level: LogLevel,
        space_kb: u64,
    ) -> io::Result<LogFile> {
        check_relative(relative)?;
        let path = log_root.join(relative);
        if let Some(parent) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(parent)
                .map_err(|e| with_path(e, "cannot create log directory", parent))?;
        }
        let file = open_append(&path)?;
        let size = file
            .metadata()
            .map_err(|e| with_path(e, "cannot stat log file", &path))?
            .len();
        let files = u64::from(ROTATED_FILES) + 1;
        Ok(LogFile {
            path,
            arn: arn.to_owned(),
            level,
            file,
            size,
            cap: space_kb.max(MIN_SPACE_KB) * 1024 / files,
            torn: false,
        })
    }

    /// Appends one line, unless `level` is below the file's level (then it
    /// is dropped and this returns `Ok`). An error (disk full, file removed
    /// from under us with no way to recreate it) is returned, never a panic.
    pub(crate) fn write(&mut self, level: LogLevel, message: &str) -> io::Result<()> {
        if level < self.level {
            return Ok(());
        }
        let line = self.render(OffsetDateTime::now_utc(), level, None, message);
        self.append(&line)
    }

    /// Changes the lowest level kept. Only tests change it: a deployment's
    /// Logger definition applies to the next component actor's new file.
    #[cfg(test)]
    pub(crate) fn set_level(&mut self, level: LogLevel) {
        self.level = level;
    }

    /// The lowest level kept.
    #[cfg(test)]
    pub(crate) fn level(&self) -> LogLevel {
        self.level
    }

    /// The current file.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Formats one line: prefix, optional `target: `, escaped message,
    /// newline; never longer than the file cap when the ARN is sane.
    fn render(
        &self,
        now: OffsetDateTime,
        level: LogLevel,
        target: Option<&str>,
        message: &str,
    ) -> String {
        let message = strip_line_end(message);
        let mut line =
            String::with_capacity(64 + self.arn.len() + message.len().min(MAX_MESSAGE_BYTES));
        line.push('[');
        match now.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        )) {
            Ok(stamp) => line.push_str(&stamp),
            // Only a year beyond 9999 fails to format; keep the line anyway.
            Err(_) => line.push_str("????-??-??T??:??:??.???Z"),
        }
        line.push_str("][");
        line.push_str(level.as_str());
        line.push_str("]-(");
        line.push_str(&self.arn);
        line.push_str(") ");
        if let Some(target) = target {
            push_escaped(&mut line, target, usize::MAX);
            line.push_str(": ");
        }
        let fits = usize::try_from(self.cap)
            .unwrap_or(usize::MAX)
            .saturating_sub(line.len() + MARKER_ROOM + 1);
        if let Some(left_out) = push_escaped(&mut line, message, MAX_MESSAGE_BYTES.min(fits)) {
            line.push_str(&format!(" [truncated {left_out} bytes]"));
        }
        line.push('\n');
        line
    }

    /// Writes one rendered line with a single `write` in the usual case, after
    /// rotating if it would not fit.
    fn append(&mut self, line: &str) -> io::Result<()> {
        let torn = std::mem::take(&mut self.torn);
        let len = line.len() as u64 + u64::from(torn);
        if self.size > 0 && self.size.saturating_add(len) > self.cap {
            if let Err(e) = self.rotate() {
                self.torn = torn;
                return Err(e);
            }
        }
        // After a rotation the new file starts clean; no fragment to end.
        let result = if torn && self.size > 0 {
            let mut whole = String::with_capacity(line.len() + 1);
            whole.push('\n');
            whole.push_str(line);
            self.file.write_all(whole.as_bytes()).map(|()| whole.len())
        } else {
            self.file.write_all(line.as_bytes()).map(|()| line.len())
        };
        match result {
            Ok(written) => {
                self.size += written as u64;
                Ok(())
            }
            Err(e) => {
                // Part of the line may be on disk: learn the real size and
                // remember to start the next line afresh.
                let before = self.size;
                self.size = self.file.metadata().map_or(self.size, |m| m.len());
                self.torn = torn || self.size > before;
                Err(with_path(e, "cannot write log file", &self.path))
            }
        }
    }

    /// `x.log.3` is deleted, `x.log.2` → `.3`, `x.log.1` → `.2`,
    /// `x.log` → `.1`, and a new `x.log` is opened. A missing file in the
    /// chain is skipped, so an interrupted rotation finishes on the next one.
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let oldest = numbered(ROTATED_FILES);
        match fs::remove_file(&oldest) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(with_path(e, "cannot remove old log file", &oldest));
            }
            _ => {}
        }
        for n in (1..ROTATED_FILES).rev() {
            rename_if_present(&numbered(n), &numbered(n + 1))?;
        }
        rename_if_present(&self.path, &numbered(1))?;
        // Until this succeeds we keep writing to the renamed file; the next
        // line retries the rotation.
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| with_path(e, "cannot open log file", path))
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(with_path(e, "cannot rotate log file", from))
        }
        _ => Ok(()),
    }
}

/// Keeps the kind (callers match on it) and adds what failed and where.
fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// The relative path comes from a component's ARN; refuse anything that
/// could leave the log root.
fn check_relative(relative: &Path) -> io::Result<()> {
    let plain = relative.file_name().is_some()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "log path {} must be relative and stay under the log root",
                relative.display()
            ),
        ))
    }
}

fn strip_line_end(message: &str) -> &str {
    match message.strip_suffix('\n') {
        Some(rest) => rest.strip_suffix('\r').unwrap_or(rest),
        None => message,
    }
}

/// Appends `message` with control characters escaped, writing at most
/// `budget` bytes. Returns how many bytes of `message` were left out, if
/// any; escapes are never split.
fn push_escaped(out: &mut String, message: &str, budget: usize) -> Option<usize> {
    let start = out.len();
    for (at, c) in message.char_indices() {
        let before = out.len();
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // C0, DEL and C1: all below 0x100.
            c if c.is_control() => push_hex(out, "\\x", c as u32, 2, ""),
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                push_hex(out, "\\u{", c as u32, 4, "}")
            }
            c => out.push(c),
        }
        if out.len() - start > budget {
            out.truncate(before);
            return Some(message.len() - at);
        }
    }
    None
}

fn push_hex(out: &mut String, open: &str, value: u32, digits: u32, close: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str(open);
    for i in (0..digits).rev() {
        out.push(char::from(HEX[((value >> (4 * i)) & 0xf) as usize]));
    }
    out.push_str(close);
}

/// The runtime's own log: a `log` backend writing `system/runtime.log`, and
/// echoing each line to stderr when asked (for journald).
#[derive(Debug)]
pub struct SystemLogger {
    inner: Mutex<SystemInner>,
    to_stderr: bool,
    /// Only the installed logger moves `log`'s global maximum level.
    installed: bool,
}

#[derive(Debug)]
struct SystemInner {
    file: LogFile,
    /// The last write failed; reported once on stderr, not once per line.
    failing: bool,
    repeats: Repeats,
}

/// Counts of `WARN`/`ERROR` lines per call site, for the limit on repeats.
#[derive(Debug)]
struct Repeats {
    window: Duration,
    sites: HashMap<(&'static str, u32), Site>,
}

#[derive(Debug)]
struct Site {
    started: Instant,
    written: u32,
    suppressed: u64,
    level: LogLevel,
    target: String,
}

impl Repeats {
    fn new(window: Duration) -> Self {
        Repeats {
            window,
            sites: HashMap::new(),
        }
    }

    /// Whether a line from `site` may be written now, and the summaries of the windows
    /// that are over (of every site: a site that went quiet still gets its summary).
    fn admit(
        &mut self,
        site: (&'static str, u32),
        level: LogLevel,
        target: &str,
        now: Instant,
    ) -> (bool, Vec<(LogLevel, String, String)>) {
        let window = self.window;
        let mut summaries = Vec::new();
        self.sites.retain(|_, s| {
            if now.duration_since(s.started) < window {
                return true;
            }
            if s.suppressed > 0 {
                summaries.push((
                    s.level,
                    s.target.clone(),
                    format!(
                        "… {} more like this from {} in the last {} s were not written",
                        s.suppressed,
                        s.target,
                        window.as_secs()
                    ),
                ));
            }
            false
        });
        let entry = self.sites.entry(site).or_insert_with(|| Site {
            started: now,
            written: 0,
            suppressed: 0,
            level,
            target: target.to_string(),
        });
        let write = entry.written < REPEAT_BURST;
        if write {
            entry.written += 1;
        } else {
            entry.suppressed += 1;
        }
        (write, summaries)
    }
}

impl SystemLogger {
    /// Opens `<log_root>/system/runtime.log` without installing it as the
    /// `log` backend (for tests, or to write to it directly).
    pub fn open(
        log_root: &Path,
        level: LogLevel,
        space_kb: u64,
        to_stderr: bool,
    ) -> io::Result<SystemLogger> {
        let file = LogFile::open(log_root, Path::new(SYSTEM_LOG), SYSTEM_ARN, level, space_kb)?;
        Ok(SystemLogger {
            inner: Mutex::new(SystemInner {
                file,
                failing: false,
                repeats: Repeats::new(REPEAT_WINDOW),
            }),
            to_stderr,
            installed: false,
        })
    }

    /// Opens the runtime log and makes it the process's `log` backend. Fails
    /// if the file cannot be opened or a logger is already installed. The
    /// logger lives for the rest of the process (the `log` crate needs a
    /// `'static` one).
    pub fn install(
        log_root: &Path,
        level: LogLevel,
        space_kb: u64,
        to_stderr: bool,
    ) -> io::Result<&'static SystemLogger> {
        let mut logger = SystemLogger::open(log_root, level, space_kb, to_stderr)?;
        logger.installed = true;
        let logger: &'static SystemLogger = Box::leak(Box::new(logger));
        log::set_logger(logger)
            .map_err(|e| io::Error::new(io::ErrorKind::AlreadyExists, e.to_string()))?;
        log::set_max_level(level_filter(level));
        Ok(logger)
    }

    /// Changes the lowest level kept (only tests do, today).
    #[cfg(test)]
    pub(crate) fn set_level(&self, level: LogLevel) {
        lock(&self.inner).file.set_level(level);
        if self.installed {
            log::set_max_level(level_filter(level));
        }
    }

    /// Writes one line at any level, including `FATAL`, which the `log`
    /// crate lacks. `target` names the part of the runtime speaking.
    pub fn write(&self, level: LogLevel, target: &str, message: &str) {
        let mut inner = lock(&self.inner);
        if level < inner.file.level {
            return;
        }
        // The runtime's own multi-line messages (a refused deployment lists
        // its problems, one per line) become one line per line, each with
        // the full prefix: no line holds a literal `\n`, and a line cannot
        // pass for another writer's, since every one starts with ours.
        let now = OffsetDateTime::now_utc();
        let line: String = strip_line_end(message)
            .split('\n')
            .map(|part| {
                let part = part.strip_suffix('\r').unwrap_or(part);
                inner.file.render(now, level, Some(target), part)
            })
            .collect();
        let result = inner.file.append(&line);
        // Holding the lock while echoing keeps stderr in the file's order.
        let mut stderr = io::stderr().lock();
        match result {
            Ok(()) => {
                inner.failing = false;
                if self.to_stderr {
                    let _ = stderr.write_all(line.as_bytes());
                }
            }
            Err(e) => {
                // The line must not be lost: stderr gets it even when not
                // echoing, with one notice when the failures start.
                if !std::mem::replace(&mut inner.failing, true) {
                    let _ = writeln!(
                        stderr,
                        "evergreen: {e}; runtime log lines go to stderr until it works again"
                    );
                }
                let _ = stderr.write_all(line.as_bytes());
            }
        }
    }
}

impl log::Log for SystemLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        from_log_level(metadata.level()).is_some_and(|level| level >= lock(&self.inner).file.level)
    }

    fn log(&self, record: &log::Record<'_>) {
        let Some(level) = from_log_level(record.level()) else {
            return;
        };
        if level >= LogLevel::Warn {
            if let (Some(file), Some(line)) = (record.file_static(), record.line()) {
                let (write, summaries) = lock(&self.inner).repeats.admit(
                    (file, line),
                    level,
                    record.target(),
                    Instant::now(),
                );
                for (level, target, summary) in summaries {
                    self.write(level, &target, &summary);
                }
                if !write {
                    return;
                }
            }
        }
        match record.args().as_str() {
            Some(message) => self.write(level, record.target(), message),
            None => self.write(level, record.target(), &record.args().to_string()),
        }
    }

    /// Every line is written when logged; nothing is buffered.
    fn flush(&self) {}
}

/// A poisoned lock only means another thread panicked mid-log; the file is
/// still usable and logging must go on.
fn lock(m: &Mutex<SystemInner>) -> MutexGuard<'_, SystemInner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn from_log_level(level: log::Level) -> Option<LogLevel> {
    match level {
        log::Level::Error => Some(LogLevel::Error),
        log::Level::Warn => Some(LogLevel::Warn),
        log::Level::Info => Some(LogLevel::Info),
        log::Level::Debug => Some(LogLevel::Debug),
        log::Level::Trace => None,
    }
}

/// `log`'s global filter for a level, so filtered records cost nothing.
fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
        // No `log` record is FATAL; only `SystemLogger::write` can be.
        LogLevel::Fatal => log::LevelFilter::Off,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn warn_from(logger: &SystemLogger, line: u32, n: u32) {
        for i in 0..n {
            log::Log::log(
                logger,
                &log::Record::builder()
                    .level(log::Level::Warn)
                    .target("evergreen_mqtt::server")
                    .file_static(Some("supervisor/mqtt/src/server.rs"))
                    .line(Some(line))
                    .args(format_args!("refused a connection from 127.0.0.1:{i}"))
                    .build(),
            );
        }
    }

    #[test]
    fn repeated_warnings_are_limited_per_call_site_and_summarised() {
        let dir = tempfile::tempdir().expect("tmp");
        let logger = SystemLogger::open(dir.path(), LogLevel::Info, 128, false).expect("open");
        lock(&logger.inner).repeats = Repeats::new(Duration::from_millis(300));
        warn_from(&logger, 10, 1000);
        warn_from(&logger, 20, 3);
        let text = fs::read_to_string(dir.path().join(SYSTEM_LOG)).expect("read");
        let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(
            count("refused a connection"),
            REPEAT_BURST as usize + 3,
            "{text}"
        );
        // Once the window is over, the next warning from anywhere brings the summary.
        std::thread::sleep(Duration::from_millis(350));
        warn_from(&logger, 20, 1);
        let text = fs::read_to_string(dir.path().join(SYSTEM_LOG)).expect("read");
        let summary = text
            .lines()
            .find(|l| l.contains("more like this"))
            .unwrap_or_else(|| panic!("no summary in {text}"));
        assert!(
            summary.contains("[WARN]")
                && summary.contains(&format!("{} more like this", 1000 - REPEAT_BURST))
                && summary.contains("evergreen_mqtt::server"),
            "{summary}"
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("more like this"))
                .count(),
            1
        );
    }

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:f:1";

    fn open(root: &Path, level: LogLevel, space_kb: u64) -> LogFile {
        LogFile::open(
            root,
            Path::new("user/us-east-1/123456789012/f.log"),
            ARN,
            level,
            space_kb,
        )
        .expect("open log")
    }

    fn lines(path: &Path) -> Vec<String> {
        let text = fs::read_to_string(path).expect("read log");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "last line unterminated: {text:?}"
        );
        text.lines().map(str::to_owned).collect()
    }

    /// `[YYYY-MM-DDTHH:MM:SS.mmmZ][LEVEL]-(<arn>) <message>`, checked by hand
    /// (the crate has no regex dependency); returns the message.
    fn parse_line<'a>(line: &'a str, level: &str, arn: &str) -> &'a str {
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

    #[test]
    fn line_format_is_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path(), LogLevel::Info, DEFAULT_SPACE_KB);
        let at = time::macros::datetime!(2026-11-26 07:11:02.123456 UTC);
        assert_eq!(
            log.render(at, LogLevel::Info, None, "hello"),
            "[2026-11-26T07:11:02.123Z][INFO]-(arn:aws:lambda:us-east-1:123456789012:function:f:1) hello\n"
        );
        assert_eq!(
            log.render(at, LogLevel::Warn, Some("evergreen::router"), "full\n"),
            "[2026-11-26T07:11:02.123Z][WARN]-(arn:aws:lambda:us-east-1:123456789012:function:f:1) evergreen::router: full\n"
        );
    }

    #[test]
    fn written_lines_have_the_format_and_are_visible_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path(), LogLevel::Debug, DEFAULT_SPACE_KB);
        assert_eq!(
            log.path(),
            dir.path().join("user/us-east-1/123456789012/f.log")
        );
        log.write(LogLevel::Info, "hello").expect("write");
        log.write(LogLevel::Fatal, "bye").expect("write");
        // Read while the file is still open: nothing may sit in a buffer.
        let got = lines(log.path());
        assert_eq!(got.len(), 2);
        assert_eq!(parse_line(&got[0], "INFO", ARN), "hello");
        assert_eq!(parse_line(&got[1], "FATAL", ARN), "bye");
    }

    #[test]
    fn lines_below_the_level_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path(), LogLevel::Warn, DEFAULT_SPACE_KB);
        for level in [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
            LogLevel::Fatal,
        ] {
            log.write(level, level.as_str()).expect("write");
        }
        log.set_level(LogLevel::Debug);
        assert_eq!(log.level(), LogLevel::Debug);
        log.write(LogLevel::Debug, "now kept").expect("write");
        let got = lines(log.path());
        let messages: Vec<&str> = got
            .iter()
            .map(|l| l.rsplit(") ").next().unwrap_or(""))
            .collect();
        assert_eq!(messages, ["WARN", "ERROR", "FATAL", "now kept"]);
    }

    #[test]
    fn control_characters_are_escaped_so_lines_cannot_be_forged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path(), LogLevel::Info, DEFAULT_SPACE_KB);
        let forged =
            "ok\n[2026-11-26T07:11:02.123Z][INFO]-(arn:aws:lambda:::function:GGRuntime) forged";
        log.write(LogLevel::Info, forged).expect("write");
        log.write(
            LogLevel::Info,
            "a\rb\x1b[31mc\td\x7fe\u{85}f\u{2028}g\u{202e}h\0",
        )
        .expect("write");
        log.write(LogLevel::Info, "trailing newline\r\n")
            .expect("write");
        log.write(LogLevel::Info, "two\n\n").expect("write");
        log.write(LogLevel::Info, "back\\slash é ✓").expect("write");
        let got = lines(log.path());
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(
            parse_line(&got[0], "INFO", ARN),
            "ok\\n[2026-11-26T07:11:02.123Z][INFO]-(arn:aws:lambda:::function:GGRuntime) forged"
        );
        assert_eq!(
            parse_line(&got[1], "INFO", ARN),
            "a\\rb\\x1b[31mc\\td\\x7fe\\x85f\\u{2028}g\\u{202e}h\\x00"
        );
        assert_eq!(parse_line(&got[2], "INFO", ARN), "trailing newline");
        assert_eq!(parse_line(&got[3], "INFO", ARN), "two\\n");
        assert_eq!(parse_line(&got[4], "INFO", ARN), "back\\slash é ✓");
    }

    #[test]
    fn long_messages_are_truncated_with_a_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Space for both long lines in the current file.
        let mut log = open(dir.path(), LogLevel::Info, 1024);
        // Multi-byte characters, so the cut must land on a char boundary.
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        log.write(LogLevel::Info, &long).expect("write");
        // Escapes expand (1 byte → 4); the limit is on what is written.
        let escapes = "\x01".repeat(MAX_MESSAGE_BYTES);
        log.write(LogLevel::Info, &escapes).expect("write");
        let got = lines(log.path());
        assert_eq!(got.len(), 2);

        let message = parse_line(&got[0], "INFO", ARN);
        let (kept, marker) = message.split_once(" [truncated ").expect("marker");
        assert_eq!(kept.len(), MAX_MESSAGE_BYTES);
        assert_eq!(marker, format!("{} bytes]", long.len() - kept.len()));

        let message = parse_line(&got[1], "INFO", ARN);
        let (kept, marker) = message.split_once(" [truncated ").expect("marker");
        assert_eq!(kept.len(), MAX_MESSAGE_BYTES);
        assert_eq!(
            marker,
            format!("{} bytes]", MAX_MESSAGE_BYTES - MAX_MESSAGE_BYTES / 4)
        );
        assert!(kept.ends_with("\\x01"), "an escape was split");
    }

    #[test]
    fn a_small_space_truncates_lines_to_fit_one_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path(), LogLevel::Info, 1);
        log.write(LogLevel::Info, &"x".repeat(10_000))
            .expect("write");
        let len = fs::metadata(log.path()).expect("stat").len();
        let cap = MIN_SPACE_KB * 1024 / u64::from(ROTATED_FILES + 1);
        assert!(len <= cap, "{len} > {cap}");
        assert!(fs::read_to_string(log.path())
            .expect("read")
            .contains(" [truncated "));
    }

    #[test]
    fn rotation_keeps_the_total_within_space_and_the_newest_lines_current() {
        let dir = tempfile::tempdir().expect("tempdir");
        let space_kb = 32;
        let mut log = open(dir.path(), LogLevel::Info, space_kb);
        let count = 2_000;
        for i in 0..count {
            log.write(LogLevel::Info, &format!("line {i:05} {}", "y".repeat(80)))
                .expect("write");
        }
        let rotated = |n: u32| {
            dir.path()
                .join(format!("user/us-east-1/123456789012/f.log.{n}"))
        };
        let mut files = vec![log.path().to_owned()];
        files.extend((1..=ROTATED_FILES).map(rotated));
        let total: u64 = files
            .iter()
            .map(|f| fs::metadata(f).expect("rotated file exists").len())
            .sum();
        assert!(total <= space_kb * 1024, "{total} > {}", space_kb * 1024);
        assert!(!rotated(ROTATED_FILES + 1).exists());

        // Oldest to newest: .3, .2, .1, current; numbers strictly rising and
        // the very last line written is the last line of the current file.
        let mut seen = Vec::new();
        for f in files.iter().rev() {
            for line in lines(f) {
                let message = parse_line(&line, "INFO", ARN);
                let n: u32 = message[5..10].parse().expect("line number");
                seen.push(n);
            }
        }
        assert!(
            seen.windows(2).all(|w| w[1] == w[0] + 1),
            "lines out of order or missing"
        );
        assert_eq!(seen.last(), Some(&(count - 1)));
    }

    #[test]
    fn reopening_appends_and_counts_the_existing_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path(), LogLevel::Info, MIN_SPACE_KB);
        log.write(LogLevel::Info, "first").expect("write");
        drop(log);
        let mut log = open(dir.path(), LogLevel::Info, MIN_SPACE_KB);
        log.write(LogLevel::Info, "second").expect("write");
        let got = lines(log.path());
        assert_eq!(got.len(), 2);
        assert_eq!(parse_line(&got[1], "INFO", ARN), "second");

        // A file already at its cap when opened rotates on the first write.
        let cap = MIN_SPACE_KB * 1024 / u64::from(ROTATED_FILES + 1);
        fs::write(log.path(), "z".repeat(cap as usize)).expect("fill");
        let mut log = open(dir.path(), LogLevel::Info, MIN_SPACE_KB);
        log.write(LogLevel::Info, "third").expect("write");
        assert_eq!(lines(log.path()).len(), 1);
        let mut old = log.path().as_os_str().to_owned();
        old.push(".1");
        assert_eq!(fs::metadata(old).expect("rotated").len(), cap);
    }

    #[test]
    fn files_are_0640_and_directories_0750() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path(), LogLevel::Info, DEFAULT_SPACE_KB);
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        // The umask can only take bits away.
        assert_eq!(mode(log.path()) & !0o640, 0);
        assert_eq!(mode(log.path()) & 0o600, 0o600);
        for d in ["user", "user/us-east-1", "user/us-east-1/123456789012"] {
            let m = mode(&dir.path().join(d));
            assert_eq!(m & !0o750, 0, "{d}: {m:o}");
            assert_eq!(m & 0o700, 0o700, "{d}: {m:o}");
        }
    }

    #[test]
    fn paths_leaving_the_log_root_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in [
            "../escape.log",
            "user/../../escape.log",
            "/etc/escape.log",
            "",
            ".",
        ] {
            let err =
                LogFile::open(dir.path(), Path::new(bad), ARN, LogLevel::Info, 128).expect_err(bad);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        // /dev/full fails every write with ENOSPC; reached through a link so
        // a rotation could only ever rename the link.
        std::os::unix::fs::symlink("/dev/full", dir.path().join("full.log")).expect("symlink");
        let mut log = LogFile::open(dir.path(), Path::new("full.log"), ARN, LogLevel::Info, 16)
            .expect("open /dev/full");
        for _ in 0..3 {
            let err = log.write(LogLevel::Info, "lost").expect_err("disk full");
            assert_eq!(err.kind(), io::ErrorKind::StorageFull);
            assert!(err.to_string().contains("full.log"), "{err}");
        }
        let logger = SystemLogger {
            inner: Mutex::new(SystemInner {
                file: log,
                failing: false,
                repeats: Repeats::new(REPEAT_WINDOW),
            }),
            to_stderr: false,
            installed: false,
        };
        logger.write(LogLevel::Error, "test", "goes to stderr instead");
        logger.write(
            LogLevel::Error,
            "test",
            "and again, without a second notice",
        );
        assert!(lock(&logger.inner).failing);
    }

    #[test]
    fn system_logger_tags_lines_and_names_the_target() {
        use log::Log as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let logger =
            SystemLogger::open(dir.path(), LogLevel::Info, DEFAULT_SPACE_KB, false).expect("open");
        // A fn, not a closure: each call's arguments have their own lifetime.
        fn record(
            logger: &SystemLogger,
            level: log::Level,
            target: &str,
            args: std::fmt::Arguments<'_>,
        ) {
            logger.log(
                &log::Record::builder()
                    .level(level)
                    .target(target)
                    .args(args)
                    .build(),
            );
        }
        let n = 3;
        // Formatted at run time (to_string path) and a plain literal (as_str path).
        record(
            &logger,
            log::Level::Warn,
            "evergreen::router",
            format_args!("queue {n} full"),
        );
        record(
            &logger,
            log::Level::Info,
            "evergreen::supervisor",
            format_args!("started"),
        );
        record(
            &logger,
            log::Level::Debug,
            "evergreen::supervisor",
            format_args!("dropped: below INFO"),
        );
        record(
            &logger,
            log::Level::Trace,
            "evergreen::supervisor",
            format_args!("dropped: no TRACE"),
        );
        logger.write(LogLevel::Fatal, "evergreen", "cannot go on");
        logger.set_level(LogLevel::Debug);
        assert!(logger.enabled(&log::Metadata::builder().level(log::Level::Debug).build()));
        assert!(!logger.enabled(&log::Metadata::builder().level(log::Level::Trace).build()));
        record(
            &logger,
            log::Level::Debug,
            "evergreen::supervisor",
            format_args!("kept\nnow"),
        );

        let got = lines(&dir.path().join(SYSTEM_LOG));
        let messages: Vec<(&str, &str)> = ["WARN", "INFO", "FATAL", "DEBUG", "DEBUG"]
            .iter()
            .zip(&got)
            .map(|(level, line)| (*level, parse_line(line, level, SYSTEM_ARN)))
            .collect();
        assert_eq!(got.len(), 5, "{got:?}");
        // A multi-line message is split into lines, each with the full prefix,
        // never one line with a literal `\n`.
        assert_eq!(
            messages,
            [
                ("WARN", "evergreen::router: queue 3 full"),
                ("INFO", "evergreen::supervisor: started"),
                ("FATAL", "evergreen: cannot go on"),
                ("DEBUG", "evergreen::supervisor: kept"),
                ("DEBUG", "evergreen::supervisor: now"),
            ]
        );
    }
}
