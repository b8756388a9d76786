//! The `tracing` layer of the log pipeline: which events are kept, how a component's line
//! and a runtime line (with its target and spans) are rendered, the limit on repeated
//! warnings, the report of dropped lines, and the process-wide subscriber it runs in.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use evergreen_ipc::LogLevel;
use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Level, Metadata, Subscriber};
use tracing_appender::non_blocking::NonBlocking;
use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::appender::{with_record, RecordRef, Shared, LINE, LINE_ECHO, SYSTEM_ID};
use super::file::{push_timestamp, render_line, strip_line_end};
use super::{
    LogFormat, SystemLogOptions, COMPONENT_TARGET, MAX_MESSAGE_BYTES, REPEAT_BURST, REPEAT_WINDOW,
    SYSTEM_ARN,
};

/// How often at most the runtime log tells of dropped lines.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Renders events into lines and sends them to the writer thread.
#[derive(Debug)]
pub(super) struct GreengrassLayer {
    shared: Arc<Shared>,
    writer: NonBlocking,
    level: LogLevel,
    echo: bool,
    format: LogFormat,
    repeats: Mutex<Repeats>,
    last_drop_report: Mutex<Option<Instant>>,
}

/// Makes `layer` the process's subscriber and bridges the `log` records of the libraries
/// underneath into it, at `level` and above.
pub(super) fn set_global(layer: GreengrassLayer, level: LogLevel) -> io::Result<()> {
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| io::Error::new(io::ErrorKind::AlreadyExists, e.to_string()))?;
    tracing_log::LogTracer::builder()
        .with_max_level(log_filter(level))
        .init()
        .map_err(|e| io::Error::new(io::ErrorKind::AlreadyExists, e.to_string()))
}

impl GreengrassLayer {
    pub(super) fn new(
        shared: Arc<Shared>,
        writer: NonBlocking,
        options: &SystemLogOptions,
    ) -> GreengrassLayer {
        GreengrassLayer {
            shared,
            writer,
            level: options.level,
            echo: options.to_stderr,
            format: options.format,
            repeats: Mutex::new(Repeats::new(REPEAT_WINDOW)),
            last_drop_report: Mutex::new(None),
        }
    }

    /// The window of the limit on repeated warnings (tests shorten it).
    #[cfg(test)]
    pub(super) fn repeat_window(self, window: Duration) -> GreengrassLayer {
        *lock(&self.repeats) = Repeats::new(window);
        self
    }

    /// Components' lines are filtered by their own log's level before they become events;
    /// the runtime's by the system log's level. Spans are always kept: they are context.
    fn wants(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_span()
            || metadata.target() == COMPONENT_TARGET
            || from_level(*metadata.level()).is_some_and(|level| level >= self.level)
    }

    fn component_line(&self, event: &Event<'_>) {
        let mut line = ComponentLine {
            shared: &self.shared,
            level: from_level(*event.metadata().level()),
            log: None,
            fatal: false,
            early: None,
            rendered: None,
        };
        event.record(&mut line);
        if let Some(message) = line.early.take() {
            line.render(&message);
        }
        if let Some((record, meta)) = line.rendered {
            self.hand_over(&record, &meta);
        }
    }

    fn runtime_line<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = RuntimeFields::default();
        event.record(&mut fields);
        let Some(level) = (match from_level(*metadata.level()) {
            _ if fields.fatal => Some(LogLevel::Fatal),
            level => level,
        }) else {
            return;
        };
        if level >= LogLevel::Warn {
            if let (Some(file), Some(line)) = (metadata.file(), metadata.line()) {
                let (write, summaries) = lock(&self.repeats).admit(
                    (file, line),
                    level,
                    metadata.target(),
                    Instant::now(),
                );
                for (level, target, summary) in summaries {
                    self.send_runtime(level, &target, &[], &summary);
                }
                if !write {
                    return;
                }
            }
        }
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let fields = extensions
                    .get::<SpanFields>()
                    .map(|f| f.0.clone())
                    .unwrap_or_default();
                spans.push((span.name(), fields));
            }
        }
        self.send_runtime(level, metadata.target(), &spans, &fields.message);
    }

    /// Renders and sends one runtime line (or, in the Greengrass format, one line per line
    /// of a multi-line message).
    fn send_runtime(
        &self,
        level: LogLevel,
        target: &str,
        spans: &[(&str, Vec<(String, String)>)],
        message: &str,
    ) {
        let now = OffsetDateTime::now_utc();
        if let Some(shipper) = super::shipper_for(true, level) {
            let mut context = target.to_owned();
            for (name, fields) in spans {
                context.push_str(": ");
                context.push_str(name);
                for (i, (key, value)) in fields.iter().enumerate() {
                    context.push(if i == 0 { '{' } else { ' ' });
                    let _ = write!(context, "{key}={value}");
                }
                if !fields.is_empty() {
                    context.push('}');
                }
            }
            let line = super::cloud_line(now, level, Some(&context), message);
            shipper.ship(super::LineSource::Runtime(target), now.into(), line);
        }
        let Some(meta) = self.shared.meta(SYSTEM_ID) else {
            return;
        };
        let kind = if self.echo { LINE_ECHO } else { LINE };
        let ((), record) = with_record(kind, SYSTEM_ID, |out| match self.format {
            LogFormat::Greengrass => {
                let mut context = target.to_owned();
                for (name, fields) in spans {
                    context.push_str(": ");
                    context.push_str(name);
                    if !fields.is_empty() {
                        context.push('{');
                        for (i, (key, value)) in fields.iter().enumerate() {
                            if i > 0 {
                                context.push(' ');
                            }
                            let _ = write!(context, "{key}={value}");
                        }
                        context.push('}');
                    }
                }
                // The runtime's own multi-line messages (a refused deployment lists its
                // problems, one per line) become one line per line, each with the full
                // prefix: no line holds a literal `\n`, and a line cannot pass for another
                // writer's, since every one starts with ours.
                for part in strip_line_end(message).split('\n') {
                    let part = part.strip_suffix('\r').unwrap_or(part);
                    render_line(out, now, level, SYSTEM_ARN, meta.cap, Some(&context), part);
                }
            }
            LogFormat::Json => {
                let mut stamp = String::new();
                push_timestamp(&mut stamp, now);
                let mut text = String::new();
                if let Some(left_out) = push_escaped_json_budget(&mut text, message) {
                    text.push_str(&format!(" [truncated {left_out} bytes]"));
                }
                let spans: Vec<serde_json::Value> = spans
                    .iter()
                    .map(|(name, fields)| {
                        let fields: serde_json::Map<String, serde_json::Value> = fields
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                            .collect();
                        serde_json::json!({ "name": name, "fields": fields })
                    })
                    .collect();
                let object = serde_json::json!({
                    "timestamp": stamp,
                    "level": level.as_str(),
                    "arn": SYSTEM_ARN,
                    "target": target,
                    "spans": spans,
                    "message": text,
                });
                out.push_str(&object.to_string());
                out.push('\n');
            }
        });
        self.hand_over(&record, &meta);
    }

    /// Gives a rendered line to the writer thread, if the queue admits it; once the writer is
    /// stopping (the process ends), to stderr instead, so a line logged then is not lost.
    fn hand_over(&self, record: &RecordRef, meta: &super::appender::Meta) {
        if self.shared.is_stopped() {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), record.line().as_bytes());
        } else if self.shared.admit(record.line_len(), meta) {
            self.shared.send_record(&mut self.writer.clone(), record);
        }
    }

    /// Tells of dropped lines once the queue has room again, at most once a second.
    fn report_drops(&self) {
        if self.shared.dropped_unreported.load(Ordering::Relaxed) == 0 || !self.shared.has_room() {
            return;
        }
        {
            let mut last = lock(&self.last_drop_report);
            let now = Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < DROP_REPORT_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let dropped = self.shared.dropped_unreported.swap(0, Ordering::Relaxed);
        self.send_runtime(
            LogLevel::Warn,
            "evergreen_runtime::logs",
            &[],
            &format!(
                "{dropped} log lines were not written: the log writer fell behind (a slow or \
                 stalled disk, or a component logging faster than the disk takes); {} since \
                 the start",
                self.shared.dropped_total()
            ),
        );
    }
}

impl<S> Layer<S> for GreengrassLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.wants(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.wants(metadata)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // Components' lines may be DEBUG whatever the system log's level.
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<SpanFields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() == COMPONENT_TARGET {
            self.component_line(event);
        } else {
            self.runtime_line(event, &ctx);
        }
        self.report_drops();
    }
}

/// A component's line (see [`super::ComponentLog::write`]): its fields are `log`, `fatal` and
/// `message` in that order, so the message is rendered into the record as it is visited,
/// without a copy of its own.
struct ComponentLine<'a> {
    shared: &'a Shared,
    level: Option<LogLevel>,
    log: Option<u64>,
    fatal: bool,
    /// A message visited before its log's number (not the macro's order): rendered after.
    early: Option<String>,
    rendered: Option<(RecordRef, Arc<super::appender::Meta>)>,
}

impl ComponentLine<'_> {
    fn render(&mut self, message: &str) {
        let Some(id) = self.log else {
            self.early = Some(message.to_owned());
            return;
        };
        let Some(meta) = self.shared.meta(id) else {
            return;
        };
        let Some(level) = (if self.fatal {
            Some(LogLevel::Fatal)
        } else {
            self.level
        }) else {
            return;
        };
        let ((), record) = with_record(LINE, id, |buf| {
            render_line(
                buf,
                OffsetDateTime::now_utc(),
                level,
                &meta.arn,
                meta.cap,
                None,
                message,
            )
        });
        self.rendered = Some((record, meta));
    }
}

impl Visit for ComponentLine<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "log" {
            self.log = Some(value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "fatal" {
            self.fatal = value;
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.render(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.render(&format!("{value:?}"));
        }
    }
}

/// A runtime event's message, then its other fields as ` key=value`.
#[derive(Default)]
struct RuntimeFields {
    message: String,
    fatal: bool,
}

impl Visit for RuntimeFields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "fatal" {
            self.fatal = value;
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.insert_str(0, value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name == "message" {
            self.message.insert_str(0, &format!("{value:?}"));
        } else if !name.starts_with("log.") {
            // `log.target`, `log.file`, … are the bridged record's metadata, not fields.
            let _ = write!(self.message, " {name}={value:?}");
        }
    }
}

/// A span's fields, kept in its extensions for the lines logged inside it.
#[derive(Default, Debug)]
struct SpanFields(Vec<(String, String)>);

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

/// The JSON format's message: control characters are left to JSON's escaping, the length is
/// bounded as in the Greengrass format. Returns the bytes left out, if any.
fn push_escaped_json_budget(out: &mut String, message: &str) -> Option<usize> {
    let message = strip_line_end(message);
    if message.len() <= MAX_MESSAGE_BYTES {
        out.push_str(message);
        return None;
    }
    let mut cut = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    out.push_str(&message[..cut]);
    Some(message.len() - cut)
}

/// Counts of `WARN`/`ERROR` lines per call site, for the limit on repeats.
#[derive(Debug)]
struct Repeats {
    window: Duration,
    sites: HashMap<(String, u32), Site>,
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
        site: (&str, u32),
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
        let entry = self
            .sites
            .entry((site.0.to_owned(), site.1))
            .or_insert_with(|| Site {
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Greengrass's level of a `tracing` level; `TRACE` has none.
fn from_level(level: Level) -> Option<LogLevel> {
    match level {
        Level::ERROR => Some(LogLevel::Error),
        Level::WARN => Some(LogLevel::Warn),
        Level::INFO => Some(LogLevel::Info),
        Level::DEBUG => Some(LogLevel::Debug),
        Level::TRACE => None,
    }
}

/// `log`'s global filter for the system level, so the libraries' filtered records cost
/// nothing.
fn log_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
        // No `log` record is FATAL.
        LogLevel::Fatal => log::LevelFilter::Off,
    }
}
