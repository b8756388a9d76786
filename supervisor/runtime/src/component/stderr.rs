//! The stderr task: free text from the child, one log line per line, each
//! capped so a child that never writes a newline cannot make us buffer
//! without bound; for a Python function, each line at the level its runtime's logger
//! printed ([`LevelReader`]).

use evergreen_ipc::LogLevel;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::logs::ComponentLog;

/// Longest stderr line kept whole; longer ones are cut so a child that never
/// writes a newline cannot make us buffer without bound.
const MAX_STDERR_LINE: usize = 16 << 10;

/// Copies the child's stderr (or, on the lambda link, its stdout) into its log: every line at
/// INFO, or with `levels` (Python functions) at the level read from it.
pub(super) async fn stderr_task<R: AsyncRead + Unpin>(stderr: R, log: ComponentLog, levels: bool) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut level_of = LevelReader::default();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line, MAX_STDERR_LINE).await {
            Ok(0) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                if levels {
                    let (level, message) = level_of.read(text);
                    log.write(level, message);
                } else {
                    log.write(LogLevel::Info, text);
                }
            }
            Err(_) => return,
        }
    }
}

/// The level of a Python function's stderr line. Evergreen's Python runtime configures
/// `logging` to print `[LEVEL] logger: message` (`python/evergreen_lambda_runtime.py`); such a
/// line is logged at that level (`WARNING` as WARN, `CRITICAL` as FATAL) without the prefix,
/// which the log line's own level field now says. The traceback `logging.exception` or an
/// uncaught exception prints (`Traceback (most recent call last):`, its indented frames and
/// the exception's line) keeps the level of the line before it, ERROR for one of its own.
/// Any other line (a `print`) is INFO.
#[derive(Debug, Default)]
pub(crate) struct LevelReader {
    last: Option<LogLevel>,
    in_traceback: bool,
}

impl LevelReader {
    pub(crate) fn read<'a>(&mut self, line: &'a str) -> (LogLevel, &'a str) {
        for (prefix, level) in [
            ("[DEBUG] ", LogLevel::Debug),
            ("[INFO] ", LogLevel::Info),
            ("[WARNING] ", LogLevel::Warn),
            ("[ERROR] ", LogLevel::Error),
            ("[CRITICAL] ", LogLevel::Fatal),
        ] {
            if let Some(message) = line.strip_prefix(prefix) {
                self.last = Some(level);
                self.in_traceback = false;
                return (level, message);
            }
        }
        if line.starts_with("Traceback (most recent call last):") {
            let level = self
                .last
                .filter(|l| *l >= LogLevel::Error)
                .unwrap_or(LogLevel::Error);
            self.last = Some(level);
            self.in_traceback = true;
            return (level, line);
        }
        if self.in_traceback {
            let level = self.last.unwrap_or(LogLevel::Error);
            // Frames are indented; the first line that is not ends the traceback.
            if !line.starts_with([' ', '\t']) {
                self.in_traceback = false;
                self.last = None;
            }
            return (level, line);
        }
        self.last = None;
        (LogLevel::Info, line)
    }
}

/// Reads one line into `buf`, keeping at most `cap` bytes of it (the rest of
/// an over-long line is read and dropped). Returns the bytes consumed.
async fn read_line_capped<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            return Ok(consumed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stderr_lines_are_capped() {
        let data = format!("short\n{}\nnext\n", "x".repeat(100));
        let mut reader = BufReader::with_capacity(8, data.as_bytes());
        let mut line = Vec::new();
        let mut got = Vec::new();
        loop {
            line.clear();
            let n = read_line_capped(&mut reader, &mut line, 10)
                .await
                .expect("read");
            if n == 0 {
                break;
            }
            got.push(String::from_utf8_lossy(&line).into_owned());
        }
        assert_eq!(got, vec!["short\n", "xxxxxxxxxx", "next\n"]);
    }

    #[test]
    fn python_runtime_lines_keep_their_level_and_tracebacks_their_lines() {
        let mut r = LevelReader::default();
        let lines = [
            "[DEBUG] root: details",
            "[WARNING] mylib: careful",
            "printed by print()",
            "[ERROR] root: handler main.handler raised",
            "Traceback (most recent call last):",
            "  File \"/code/main.py\", line 3, in handler",
            "    raise ValueError(\"boom\")",
            "ValueError: boom",
            "printed after",
            "[CRITICAL] root: giving up",
            "Traceback (most recent call last):",
            "  File \"<stdin>\", line 1",
            "KeyError: 'x'",
            "[INFO] root: a [WARNING] inside is not a prefix",
        ];
        let got: Vec<(LogLevel, &str)> = lines.iter().map(|l| r.read(l)).collect();
        use LogLevel::*;
        assert_eq!(
            got,
            [
                (Debug, "root: details"),
                (Warn, "mylib: careful"),
                (Info, "printed by print()"),
                (Error, "root: handler main.handler raised"),
                (Error, "Traceback (most recent call last):"),
                (Error, "  File \"/code/main.py\", line 3, in handler"),
                (Error, "    raise ValueError(\"boom\")"),
                (Error, "ValueError: boom"),
                (Info, "printed after"),
                (Fatal, "root: giving up"),
                (Fatal, "Traceback (most recent call last):"),
                (Fatal, "  File \"<stdin>\", line 1"),
                (Fatal, "KeyError: 'x'"),
                (Info, "root: a [WARNING] inside is not a prefix"),
            ]
        );
    }
}
