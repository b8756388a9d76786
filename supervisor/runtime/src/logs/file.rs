//! One log file and its rotated predecessors: the line format, the escaping of messages, the
//! size-bounded rotation within `Space`, and the modes of files and directories. This is the
//! writer under tracing-appender's non-blocking one (tracing-appender rotates by time only;
//! Greengrass bounds a log by size), and the direct writer before [`super::install`].

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use evergreen_ipc::LogLevel;
use std::fmt::Write as _;

use time::OffsetDateTime;

use super::{MAX_MESSAGE_BYTES, MIN_SPACE_KB, ROTATED_FILES};

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
        let mut line = String::new();
        render_line(
            &mut line,
            OffsetDateTime::now_utc(),
            level,
            &self.arn,
            self.cap,
            None,
            message,
        );
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

    /// Bytes each file may hold (`Space / 4`): no line is rendered longer.
    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    /// The current file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Formats one line for this file (see [`render_line`]).
    #[cfg(test)]
    fn render(
        &self,
        now: OffsetDateTime,
        level: LogLevel,
        target: Option<&str>,
        message: &str,
    ) -> String {
        let mut line = String::new();
        render_line(&mut line, now, level, &self.arn, self.cap, target, message);
        line
    }

    /// Writes one rendered line with a single `write` in the usual case, after
    /// rotating if it would not fit.
    pub(crate) fn append(&mut self, line: &str) -> io::Result<()> {
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

/// Appends one line to `line`: `[timestamp][LEVEL]-(arn) `, then `context: ` when given (the
/// runtime's own lines name their target and spans), then the escaped message, cut to fit
/// `MAX_MESSAGE_BYTES` and a file of `cap` bytes, then a newline.
pub(crate) fn render_line(
    line: &mut String,
    now: OffsetDateTime,
    level: LogLevel,
    arn: &str,
    cap: u64,
    context: Option<&str>,
    message: &str,
) {
    let start = line.len();
    let message = strip_line_end(message);
    line.reserve(64 + arn.len() + message.len().min(MAX_MESSAGE_BYTES));
    line.push('[');
    push_timestamp(line, now);
    line.push_str("][");
    line.push_str(level.as_str());
    line.push_str("]-(");
    line.push_str(arn);
    line.push_str(") ");
    if let Some(context) = context {
        push_escaped(line, context, usize::MAX);
        line.push_str(": ");
    }
    let fits = usize::try_from(cap)
        .unwrap_or(usize::MAX)
        .saturating_sub(line.len() - start + MARKER_ROOM + 1);
    if let Some(left_out) = push_escaped(line, message, MAX_MESSAGE_BYTES.min(fits)) {
        line.push_str(&format!(" [truncated {left_out} bytes]"));
    }
    line.push('\n');
}

/// UTC, RFC 3339 with milliseconds, written in place (every line has one: no allocation).
pub(crate) fn push_timestamp(out: &mut String, now: OffsetDateTime) {
    let now = now.to_offset(time::UtcOffset::UTC);
    let (year, month, day) = now.to_calendar_date();
    if !(0..=9999).contains(&year) {
        // A year RFC 3339 cannot write; keep the line anyway.
        out.push_str("????-??-??T??:??:??.???Z");
        return;
    }
    let _ = write!(
        out,
        "{year:04}-{:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        u8::from(month),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    );
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

pub(crate) fn strip_line_end(message: &str) -> &str {
    match message.strip_suffix('\n') {
        Some(rest) => rest.strip_suffix('\r').unwrap_or(rest),
        None => message,
    }
}

/// Appends `message` with control characters escaped, writing at most
/// `budget` bytes. Returns how many bytes of `message` were left out, if
/// any; escapes are never split.
pub(crate) fn push_escaped(out: &mut String, message: &str, budget: usize) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::{lines, parse_line};
    use super::super::DEFAULT_SPACE_KB;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
    }
}
