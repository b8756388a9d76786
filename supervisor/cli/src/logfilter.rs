//! `evergreen logs`' filters and JSON output: reads each log line's timestamp, level and ARN
//! (Greengrass's `[timestamp][LEVEL]-(ARN) message`, or a runtime log written with
//! `--log-format json`), keeps the lines within `--since`/`--until` and at `--level` or
//! above, and prints them as they are or as JSON objects.
//!
//! Timestamps are compared as text: every line's is UTC, RFC 3339 with milliseconds and fixed
//! width (`2026-12-07T02:05:28.638Z`), so text order is time order, and `--since`/`--until`
//! are turned into the same form. A line that cannot be read (a torn line after a crash) is
//! kept only when no time or level filter is given; with `--json` it is printed as
//! `{"raw": …}`.

use std::io::{self, Write};

use evergreen_ipc::LogLevel;
use time::OffsetDateTime;

/// What `evergreen logs` keeps and how it prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Keep lines at or after this timestamp (canonical form, see [`parse_time`]).
    pub since: Option<String>,
    /// Keep lines at or before this timestamp.
    pub until: Option<String>,
    /// Keep lines at this level or above.
    pub level: Option<LogLevel>,
    /// Print each line as a JSON object.
    pub json: bool,
}

/// One line's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    pub timestamp: &'a str,
    pub level: LogLevel,
    pub arn: &'a str,
    pub message: &'a str,
}

impl Filter {
    /// Whether nothing is filtered or changed: lines go out byte for byte.
    pub fn is_plain(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether `line` (without its newline) passes.
    pub fn keeps(&self, line: &str) -> bool {
        let filtered = self.since.is_some() || self.until.is_some() || self.level.is_some();
        let Some((timestamp, level)) = timestamp_and_level(line) else {
            return !filtered;
        };
        self.since
            .as_deref()
            .is_none_or(|s| timestamp.as_str() >= s)
            && self
                .until
                .as_deref()
                .is_none_or(|u| timestamp.as_str() <= u)
            && self.level.is_none_or(|l| level >= l)
    }

    /// Writes `line` (without its newline) as it goes out, with a newline.
    pub fn render(&self, line: &str, out: &mut dyn Write) -> io::Result<()> {
        if !self.json {
            out.write_all(line.as_bytes())?;
            return out.write_all(b"\n");
        }
        let object = if line.starts_with('{') {
            // A runtime log written with --log-format json: already an object.
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) if v.is_object() => v,
                _ => serde_json::json!({ "raw": line }),
            }
        } else {
            match parse(line) {
                Some(f) => serde_json::json!({
                    "timestamp": f.timestamp,
                    "level": f.level.as_str(),
                    "arn": f.arn,
                    "message": f.message,
                }),
                None => serde_json::json!({ "raw": line }),
            }
        };
        writeln!(out, "{object}")
    }

    /// Filters and renders whole lines of `text`; the last line may lack its newline.
    pub fn apply(&self, text: &[u8], out: &mut dyn Write) -> io::Result<()> {
        let text = String::from_utf8_lossy(text);
        for line in text.lines() {
            if self.keeps(line) {
                self.render(line, out)?;
            }
        }
        Ok(())
    }
}

/// A line's timestamp and level, in either format.
fn timestamp_and_level(line: &str) -> Option<(String, LogLevel)> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        return Some((
            v["timestamp"].as_str()?.to_string(),
            LogLevel::parse(v["level"].as_str()?)?,
        ));
    }
    let f = parse(line)?;
    Some((f.timestamp.to_string(), f.level))
}

/// `[timestamp][LEVEL]-(ARN) message`.
pub fn parse(line: &str) -> Option<Fields<'_>> {
    let rest = line.strip_prefix('[')?;
    let (timestamp, rest) = rest.split_once("][")?;
    let (level, rest) = rest.split_once("]-(")?;
    // An ARN has no ") ": the first one ends it.
    let (arn, message) = rest
        .split_once(") ")
        .or_else(|| Some((rest.strip_suffix(')')?, "")))?;
    Some(Fields {
        timestamp,
        level: LogLevel::parse(level)?,
        arn,
        message,
    })
}

/// `--since`/`--until`: `2026-12-07T02:05:28Z` (RFC 3339, any offset, fraction optional),
/// `2026-12-07 02:05:28` or `2026-12-07` (UTC), or a time ago: `90s`, `15m`, `2h`, `3d`. Returns
/// the canonical form the log lines use.
pub fn parse_time(s: &str, now: OffsetDateTime) -> Result<String, String> {
    let s = s.trim();
    let units = [('s', 1u64), ('m', 60), ('h', 3600), ('d', 86_400)];
    for (unit, seconds) in units {
        if let Some(n) = s.strip_suffix(unit).and_then(|n| n.parse::<u64>().ok()) {
            let ago = time::Duration::seconds(
                i64::try_from(n.saturating_mul(seconds)).unwrap_or(i64::MAX),
            );
            let at = now
                .checked_sub(ago)
                .ok_or_else(|| format!("{s}: too far back"))?;
            return Ok(canonical(at));
        }
    }
    let parsed = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .or_else(|_| {
            time::PrimitiveDateTime::parse(
                s,
                time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
            )
            .map(|t| t.assume_utc())
        })
        .or_else(|_| {
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                .map(|d| d.midnight().assume_utc())
        })
        .map_err(|_| {
            format!(
                "{s:?} is not a time: give 2026-12-07T02:05:28Z, \"2026-12-07 02:05:28\" (UTC), \
                 2026-12-07, or a time ago such as 90s, 15m, 2h or 3d"
            )
        })?;
    Ok(canonical(parsed))
}

/// `2026-12-07T02:05:28.638Z`: the log lines' own form.
fn canonical(at: OffsetDateTime) -> String {
    evergreen_runtime::logs::timestamp(at)
}

/// A writer that passes on only the lines `filter` keeps, rendered: for a follower, whose
/// copies may end mid-line (the rest of the line is held until it comes).
#[derive(Debug)]
pub struct FilteredWriter<'a, W: Write> {
    filter: &'a Filter,
    inner: W,
    pending: Vec<u8>,
}

impl<'a, W: Write> FilteredWriter<'a, W> {
    pub fn new(filter: &'a Filter, inner: W) -> Self {
        FilteredWriter {
            filter,
            inner,
            pending: Vec::new(),
        }
    }
}

impl<W: Write> Write for FilteredWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') {
            let whole: Vec<u8> = self.pending.drain(..=end).collect();
            self.filter.apply(&whole, &mut self.inner)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:f:1";

    fn line(ts: &str, level: &str, message: &str) -> String {
        format!("[{ts}][{level}]-({ARN}) {message}")
    }

    #[test]
    fn lines_are_read_in_both_formats() {
        let l = line("2026-12-07T02:05:28.638Z", "WARN", "a (b) c");
        assert_eq!(
            parse(&l),
            Some(Fields {
                timestamp: "2026-12-07T02:05:28.638Z",
                level: LogLevel::Warn,
                arn: ARN,
                message: "a (b) c",
            })
        );
        assert_eq!(parse("a torn li"), None);
        let json = r#"{"arn":"x","level":"ERROR","message":"m","spans":[],"target":"t","timestamp":"2026-12-07T02:05:28.638Z"}"#;
        assert_eq!(
            timestamp_and_level(json),
            Some(("2026-12-07T02:05:28.638Z".into(), LogLevel::Error))
        );
    }

    #[test]
    fn time_level_and_unreadable_lines_are_filtered() {
        let filter = Filter {
            since: Some("2026-12-07T02:00:00.000Z".into()),
            until: Some("2026-12-07T03:00:00.000Z".into()),
            level: Some(LogLevel::Warn),
            json: false,
        };
        assert!(filter.keeps(&line("2026-12-07T02:00:00.000Z", "WARN", "at since")));
        assert!(filter.keeps(&line("2026-12-07T03:00:00.000Z", "FATAL", "at until")));
        assert!(!filter.keeps(&line("2026-12-07T01:59:59.999Z", "ERROR", "before")));
        assert!(!filter.keeps(&line("2026-12-07T03:00:00.001Z", "ERROR", "after")));
        assert!(!filter.keeps(&line("2026-12-07T02:30:00.000Z", "INFO", "below")));
        assert!(!filter.keeps("a torn li"));
        assert!(Filter::default().keeps("a torn li"));
    }

    #[test]
    fn json_output_has_the_fields_and_passes_json_lines_through() {
        let filter = Filter {
            json: true,
            ..Filter::default()
        };
        let mut out = Vec::new();
        filter
            .apply(
                format!(
                    "{}\n{{\"level\":\"INFO\",\"message\":\"m\",\"timestamp\":\"t\"}}\ntorn",
                    line("2026-12-07T02:05:28.638Z", "INFO", "hello")
                )
                .as_bytes(),
                &mut out,
            )
            .expect("apply");
        let got: Vec<serde_json::Value> = String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(got[0]["timestamp"], "2026-12-07T02:05:28.638Z");
        assert_eq!(got[0]["level"], "INFO");
        assert_eq!(got[0]["arn"], ARN);
        assert_eq!(got[0]["message"], "hello");
        assert_eq!(got[1]["message"], "m");
        assert_eq!(got[2]["raw"], "torn");
    }

    #[test]
    fn times_are_read_in_every_documented_form() {
        let now = time::macros::datetime!(2026-12-07 12:00:00.250 UTC);
        assert_eq!(
            parse_time("90s", now).as_deref(),
            Ok("2026-12-07T11:58:30.250Z")
        );
        assert_eq!(
            parse_time("2h", now).as_deref(),
            Ok("2026-12-07T10:00:00.250Z")
        );
        assert_eq!(
            parse_time("1d", now).as_deref(),
            Ok("2026-12-06T12:00:00.250Z")
        );
        assert_eq!(
            parse_time("2026-12-07T02:05:28+01:00", now).as_deref(),
            Ok("2026-12-07T01:05:28.000Z")
        );
        assert_eq!(
            parse_time("2026-12-07 02:05:28", now).as_deref(),
            Ok("2026-12-07T02:05:28.000Z")
        );
        assert_eq!(
            parse_time("2026-12-07", now).as_deref(),
            Ok("2026-12-07T00:00:00.000Z")
        );
        assert!(parse_time("yesterday", now)
            .expect_err("not a time")
            .contains("is not a time"));
    }

    #[test]
    fn a_follower_copy_that_ends_mid_line_is_held_until_the_line_ends() {
        let filter = Filter {
            level: Some(LogLevel::Error),
            ..Filter::default()
        };
        let mut out = Vec::new();
        {
            let mut w = FilteredWriter::new(&filter, &mut out);
            let l = line("2026-12-07T02:05:28.638Z", "ERROR", "whole");
            let (a, b) = l.split_at(10);
            w.write_all(a.as_bytes()).expect("write");
            w.write_all(format!("{b}\n").as_bytes()).expect("write");
            w.write_all(format!("{}\n", line("2026-12-07T02:05:29.000Z", "INFO", "no")).as_bytes())
                .expect("write");
        }
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.ends_with("whole\n"), "{text}");
    }
}
