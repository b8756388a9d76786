//! The document `/api/status` answers and the page renders: the status document of
//! `evergreen status` with, per component, its CPU use and message-rate history and the tail
//! of its log; the recent deployments; the tail of the runtime's own log. Log lines are
//! untrusted text (a component writes what it likes): they are sent as JSON strings, cut to a
//! bounded length, and the JSON is written with `<`, `>` and `&` escaped, so even a client
//! that mistook it for HTML would find no markup in it.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

use super::history::History;
use crate::control::{ComponentReport, RuntimeStatus};
use crate::deploy::DeploymentRecord;

/// Lines of the runtime's own log shown.
pub(crate) const RUNTIME_LOG_LINES: usize = 40;
/// Lines of each component's log shown.
pub(crate) const COMPONENT_LOG_LINES: usize = 12;
/// Deployments shown, newest first.
pub(crate) const DEPLOYMENTS: usize = 10;
/// Bytes read from the end of a log to find its last lines: a bound on the disk read per
/// file and poll, whatever the lines' length.
const TAIL_BYTES: u64 = 64 << 10;
/// Characters kept of one log line; the rest is replaced by `…`.
const LINE_CHARS: usize = 2000;

/// The whole document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Snapshot {
    /// The core thing's name, the page's title.
    pub(crate) title: String,
    /// Seconds between two points of a sparkline.
    pub(crate) sample_secs: u64,
    /// Points a sparkline holds once the runtime has run long enough.
    pub(crate) sample_points: usize,
    /// The status document, its components moved to `components`.
    pub(crate) runtime: RuntimeStatus,
    pub(crate) components: Vec<PageComponent>,
    pub(crate) deployments: Vec<DeploymentRecord>,
    /// The last lines of the runtime's own log.
    pub(crate) log: Vec<String>,
}

/// A component as the page shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageComponent {
    #[serde(flatten)]
    pub(crate) report: ComponentReport,
    /// Percent of one core over the last sample interval.
    pub(crate) cpu_percent: Option<f64>,
    /// Messages per second in and out, one point per sample interval, oldest first.
    pub(crate) rate_in: Vec<f64>,
    pub(crate) rate_out: Vec<f64>,
    /// The last lines of its log.
    pub(crate) log: Vec<String>,
}

/// Puts the document together, without the log lines ([`Snapshot::read_logs`] adds them).
pub(crate) fn build(
    title: &str,
    sample_secs: u64,
    sample_points: usize,
    mut status: RuntimeStatus,
    history: &History,
    mut deployments: Vec<DeploymentRecord>,
) -> Snapshot {
    let components = std::mem::take(&mut status.components)
        .into_iter()
        .map(|report| {
            let rates = history.rates(&report.arn);
            PageComponent {
                cpu_percent: rates.cpu_percent,
                rate_in: rates.messages_in,
                rate_out: rates.messages_out,
                log: Vec::new(),
                report,
            }
        })
        .collect();
    deployments.truncate(DEPLOYMENTS);
    Snapshot {
        title: title.to_string(),
        sample_secs,
        sample_points,
        runtime: status,
        components,
        deployments,
        log: Vec::new(),
    }
}

impl Snapshot {
    /// Reads the tails of the runtime's and every component's log: disk reads, so the server
    /// calls it off the actors' thread.
    pub(crate) fn read_logs(&mut self) {
        if let Some(file) = &self.runtime.log_file {
            self.log = tail(Path::new(file), RUNTIME_LOG_LINES);
        }
        for c in &mut self.components {
            c.log = tail(Path::new(&c.report.log_file), COMPONENT_LOG_LINES);
        }
    }

    /// The JSON text, markup characters escaped (see [`escape_markup`]).
    pub(crate) fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self).map(|text| escape_markup(&text))
    }
}

/// JSON text with `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`. Outside strings JSON has
/// none of them, so this only ever changes string contents, and means the same to a JSON
/// reader.
pub(crate) fn escape_markup(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The last `n` lines of the file at `path` (empty when it cannot be read: a component that
/// never logged has no file yet).
pub(crate) fn tail(path: &Path, n: usize) -> Vec<String> {
    tail_of(path, n).unwrap_or_default()
}

fn tail_of(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The read began inside a line.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..].iter().map(|l| cut(l)).collect())
}

fn cut(line: &str) -> String {
    match line.char_indices().nth(LINE_CHARS) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_is_the_last_lines_each_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("x.log");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str(&"y".repeat(LINE_CHARS + 5));
        text.push('\n');
        std::fs::write(&path, &text).expect("write");
        let lines = tail(&path, 3);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "line 98");
        assert_eq!(lines[2].chars().count(), LINE_CHARS + 1);
        assert!(lines[2].ends_with('…'));
        assert!(tail(&dir.path().join("none.log"), 3).is_empty());

        // Longer than the bytes read: the partial first line is dropped.
        let big = dir.path().join("big.log");
        let line = format!("{}\n", "z".repeat(999));
        std::fs::write(&big, line.repeat(200)).expect("write");
        let lines = tail(&big, 1000);
        assert_eq!(lines.len(), (TAIL_BYTES as usize) / 1000);
        assert!(lines.iter().all(|l| l.len() == 999));
    }

    #[test]
    fn markup_in_strings_is_escaped_in_the_json() {
        let line = "<script>alert(1)</script> & more";
        let text = escape_markup(&serde_json::json!({ "line": line }).to_string());
        assert!(!text.contains(['<', '>', '&']), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(back["line"], line);
    }
}
