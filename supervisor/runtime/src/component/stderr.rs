//! The stderr task: free text from the child, one log line per line, each
//! capped so a child that never writes a newline cannot make us buffer
//! without bound.

use evergreen_ipc::LogLevel;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::logs::ComponentLog;

/// Longest stderr line kept whole; longer ones are cut so a child that never
/// writes a newline cannot make us buffer without bound.
const MAX_STDERR_LINE: usize = 16 << 10;

/// Copies the child's stderr (or, on the lambda link, its stdout) into its log.
pub(super) async fn stderr_task<R: AsyncRead + Unpin>(stderr: R, log: ComponentLog) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line, MAX_STDERR_LINE).await {
            Ok(0) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                log.write(LogLevel::Info, text);
            }
            Err(_) => return,
        }
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
}
