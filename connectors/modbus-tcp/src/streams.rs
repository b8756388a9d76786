//! Readings into stream manager streams (`OutputDestination` =
//! `StreamManager`): each reading becomes one SiteWise
//! `PutAssetPropertyValueEntry` (JSON) appended to the source's
//! `destination.streamName`, so a stream with an IoT SiteWise export sends
//! it to `BatchPutAssetPropertyValue` unchanged.
//!
//! Choices (the SiteWise Modbus guide leaves them open):
//! * **Entry.** `entryId` is unique per connector run (a run prefix and a
//!   counter, `[A-Za-z0-9_-]`, under SiteWise's 64 characters);
//!   `propertyAlias` is the reading's alias; one `propertyValues` entry with
//!   the value in the field its `dstDataType` names (`doubleValue`,
//!   `integerValue`, `stringValue`, `booleanValue`), the timestamp as
//!   `timeInSeconds` + `offsetInNanos`, quality `GOOD`.
//! * **A `BAD` reading has no value**, and SiteWise requires one: it is not
//!   appended, and counted as `skippedBad` on `modbus/tcp/status` and in the
//!   log (MQTT mode still publishes it with a `null` value).
//! * **The stream is created when it does not exist**: `File` persistence,
//!   `OverwriteOldestData` (a full buffer drops the oldest readings, as an
//!   edge gateway's buffer does, rather than refusing new ones and stalling
//!   every source), no export (a stream that should reach SiteWise is
//!   created beforehand with its `IoTSiteWiseConfig`; an existing stream is
//!   used as it is). `streamBufferSize` is its `maxSize` in **MiB** (the
//!   guide gives no unit; its example's 8 is taken as 8 MiB); absent, the
//!   SDK's default of 256 MiB.
//! * **A stream manager that is absent, unreachable or refusing** loses
//!   nothing silently: readings wait in a bounded in-memory queue
//!   ([`QUEUE_LIMIT`]) while appends are retried with backoff (0.2 s
//!   doubling to 5 s); when the queue is full the oldest reading is dropped
//!   and counted. Each outage and each recovery is logged and published on
//!   `modbus/tcp/status` as
//!   `{"streamManager":"unavailable"|"ok","error_message","queued","dropped","skippedBad","appended"}`.
//!   A reading the stream manager refuses for itself (`InvalidRequest`,
//!   `RequestPayloadTooLarge`) is dropped and counted, not retried forever.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evergreen_connector_kit::Backoff;
use evergreen_ipc::LogLevel;
use evergreen_streams::client::{ClientError, StreamClient};
use evergreen_streams::model::{
    AssetPropertyValue, MessageStreamDefinition, Persistence, PutAssetPropertyValueEntry,
    ResponseStatusCode, StrategyOnFull, TimeInNanos, Variant,
};
use serde_json::json;
use tokio::sync::Notify;

use crate::decode::Value;
use crate::output::{Quality, Reading};
use crate::source::Batch;

/// Readings that may wait for the stream manager.
pub const QUEUE_LIMIT: usize = 10_000;
/// Appends sent at once (pipelined) to one stream.
pub const APPEND_CHUNK: usize = 128;
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where readings go (the `OutputDestination` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputDestination {
    /// Published on `modbus/tcp/stream/<streamName>` (the default).
    #[default]
    Mqtt,
    /// Appended to stream `<streamName>` of the group's stream manager.
    StreamManager,
}

impl OutputDestination {
    pub fn parse(text: &str) -> Result<OutputDestination, String> {
        match text.trim() {
            "" | "MQTT" => Ok(OutputDestination::Mqtt),
            "StreamManager" => Ok(OutputDestination::StreamManager),
            other => Err(format!(
                "OutputDestination {other:?} is neither MQTT nor StreamManager"
            )),
        }
    }
}

/// The entry for a reading; `None` for a `BAD` reading without a value.
pub fn entry(reading: &Reading, entry_id: String) -> Option<PutAssetPropertyValueEntry> {
    let value = match (&reading.value, reading.quality) {
        (Some(v), Quality::Good) => v,
        _ => return None,
    };
    let mut variant = Variant {
        string_value: None,
        integer_value: None,
        double_value: None,
        boolean_value: None,
    };
    match value {
        Value::Boolean(b) => variant.boolean_value = Some(*b),
        Value::Integer(i) => variant.integer_value = Some(*i),
        Value::Double(d) => variant.double_value = Some(*d),
        Value::String(s) => variant.string_value = Some(s.clone()),
    }
    let ms = reading.timestamp_ms;
    Some(PutAssetPropertyValueEntry {
        entry_id,
        asset_id: None,
        property_id: None,
        property_alias: Some(reading.alias.clone()),
        property_values: vec![AssetPropertyValue {
            value: variant,
            timestamp: TimeInNanos {
                time_in_seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
                offset_in_nanos: Some(((ms % 1000) * 1_000_000) as i64),
            },
            quality: Some(Quality::Good.as_str().to_string()),
        }],
    })
}

/// The definition used when the stream does not exist.
pub fn definition(stream_name: &str, buffer_mib: Option<u64>) -> MessageStreamDefinition {
    MessageStreamDefinition {
        name: stream_name.to_string(),
        // At least the SDK's minimum of 1024 bytes.
        max_size: buffer_mib
            .map(|m| i64::try_from(m.saturating_mul(1 << 20).max(1024)).unwrap_or(i64::MAX)),
        stream_segment_size: None,
        time_to_live_millis: None,
        strategy_on_full: StrategyOnFull::OverwriteOldestData,
        persistence: Some(Persistence::File),
        flush_on_write: None,
        export_definition: None,
    }
}

/// What one reading becomes in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntryFormat {
    /// A SiteWise `PutAssetPropertyValueEntry` ([`entry`]); `BAD` readings
    /// are skipped (this connector's format).
    #[default]
    SiteWiseEntry,
    /// The reading's own `{"alias","messages":[…]}` document
    /// ([`Reading::to_payload`]), `BAD` readings included with a `null`
    /// value (the EtherNet/IP adapter's documented stream output).
    Messages,
}

/// What the sink reports: a log line, and a status document to publish.
pub type Report = Arc<dyn Fn(LogLevel, String, Option<Vec<u8>>) + Send + Sync>;

/// How the sink reaches the stream manager: `connect` is called for each
/// new connection (the environment in the connector; a port in tests).
pub type Connect = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<StreamClient, ClientError>> + Send>,
        > + Send
        + Sync,
>;

/// The connector's connection: `STREAM_MANAGER_SERVER_PORT` and
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN`, as the runtime sets them.
pub fn connect_from_env() -> Connect {
    Arc::new(|| {
        Box::pin(async {
            StreamClient::from_env()
                .await
                .map(|c| c.with_request_timeout(Duration::from_secs(10)))
        })
    })
}

/// Counters, for the status documents and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub appended: u64,
    pub dropped: u64,
    pub skipped_bad: u64,
    pub queued: usize,
}

struct Queued {
    stream: String,
    buffer_mib: Option<u64>,
    payload: Vec<u8>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    counts: Counts,
    closed: bool,
    /// The front readings being appended now: overflow drops the oldest
    /// reading behind them, so the drain's pops stay exact.
    in_flight: usize,
}

/// The readings queue and the task that drains it into streams.
#[derive(Clone)]
pub struct StreamSink {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    run_id: String,
    next_entry: Arc<std::sync::atomic::AtomicU64>,
    limit: usize,
    format: EntryFormat,
}

impl std::fmt::Debug for StreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink")
            .field("counts", &self.counts())
            .finish()
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StreamSink {
    /// Starts the draining task; readings pushed wait at most `limit` deep.
    pub fn start(connect: Connect, report: Report, limit: usize) -> StreamSink {
        StreamSink::start_with_format(connect, report, limit, EntryFormat::SiteWiseEntry)
    }

    /// [`StreamSink::start`] with readings appended in `format`.
    pub fn start_with_format(
        connect: Connect,
        report: Report,
        limit: usize,
        format: EntryFormat,
    ) -> StreamSink {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let sink = StreamSink {
            state: Arc::new(Mutex::new(State::default())),
            wake: Arc::new(Notify::new()),
            run_id: format!("{started:x}-{:x}", std::process::id()),
            next_entry: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            limit: limit.max(1),
            format,
        };
        tokio::spawn(sink.clone().drain(connect, report));
        sink
    }

    pub fn counts(&self) -> Counts {
        let s = lock(&self.state);
        Counts {
            queued: s.queue.len(),
            ..s.counts.clone()
        }
    }

    /// Stops the task once the queue is empty (or at once if it cannot
    /// drain); what is still queued is reported then.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_one();
    }

    /// Queues a poll's readings (oldest dropped beyond the limit).
    pub fn push(&self, batch: &Batch, buffer_mib: Option<u64>) {
        let mut s = lock(&self.state);
        for reading in &batch.readings {
            let payload = match self.format {
                EntryFormat::Messages => reading.to_payload(),
                EntryFormat::SiteWiseEntry => {
                    let Some(e) = entry(reading, self.entry_id()) else {
                        s.counts.skipped_bad += 1;
                        continue;
                    };
                    match serde_json::to_vec(&e) {
                        Ok(p) => p,
                        Err(_) => continue,
                    }
                }
            };
            self.enqueue(&mut s, &batch.stream_name, buffer_mib, payload);
        }
        drop(s);
        self.wake.notify_one();
    }

    /// Queues entries built elsewhere (another connector's readings, e.g.
    /// OPC UA values with `UNCERTAIN` quality); their `entryId` is replaced
    /// by one unique in this run.
    pub fn push_entries(
        &self,
        stream: &str,
        buffer_mib: Option<u64>,
        entries: Vec<PutAssetPropertyValueEntry>,
    ) {
        let mut s = lock(&self.state);
        for mut e in entries {
            e.entry_id = self.entry_id();
            if let Ok(payload) = serde_json::to_vec(&e) {
                self.enqueue(&mut s, stream, buffer_mib, payload);
            }
        }
        drop(s);
        self.wake.notify_one();
    }

    fn entry_id(&self) -> String {
        let n = self
            .next_entry
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{n}", self.run_id)
    }

    fn enqueue(&self, s: &mut State, stream: &str, buffer_mib: Option<u64>, payload: Vec<u8>) {
        if s.queue.len() >= self.limit {
            let oldest = s.in_flight;
            if oldest < s.queue.len() {
                s.queue.remove(oldest);
                s.counts.dropped += 1;
            } else {
                // Everything queued is being sent: the new one goes.
                s.counts.dropped += 1;
                return;
            }
        }
        s.queue.push_back(Queued {
            stream: stream.to_string(),
            buffer_mib,
            payload,
        });
    }

    fn status(&self, state: &str, error: Option<&str>) -> Vec<u8> {
        let c = self.counts();
        json!({
            "streamManager": state,
            "error_message": error,
            "queued": c.queued,
            "dropped": c.dropped,
            "skippedBad": c.skipped_bad,
            "appended": c.appended,
        })
        .to_string()
        .into_bytes()
    }

    async fn drain(self, connect: Connect, report: Report) {
        let mut client: Option<StreamClient> = None;
        let mut known: HashSet<String> = HashSet::new();
        let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
        // Why the stream manager is failing, while it is.
        let mut outage: Option<String> = None;
        let mut dropped_reported = 0;
        let mut skipped_reported = 0;
        loop {
            // The front run of readings for one stream.
            let (stream, buffer_mib, payloads) = {
                let mut s = lock(&self.state);
                match s.queue.front() {
                    None if s.closed => return,
                    None => (String::new(), None, Vec::new()),
                    Some(f) => {
                        let stream = f.stream.clone();
                        let payloads: Vec<Vec<u8>> = s
                            .queue
                            .iter()
                            .take_while(|q| q.stream == stream)
                            .take(APPEND_CHUNK)
                            .map(|q| q.payload.clone())
                            .collect();
                        let buffer_mib = f.buffer_mib;
                        s.in_flight = payloads.len();
                        (stream, buffer_mib, payloads)
                    }
                }
            };
            {
                let c = self.counts();
                if c.skipped_bad > skipped_reported {
                    report(
                        LogLevel::Info,
                        format!(
                            "{} BAD reading(s) without a value were not appended (SiteWise entries need a value); {} in all",
                            c.skipped_bad - skipped_reported,
                            c.skipped_bad
                        ),
                        None,
                    );
                    skipped_reported = c.skipped_bad;
                }
            }
            if payloads.is_empty() {
                self.wake.notified().await;
                continue;
            }
            if lock(&self.state).closed && outage.is_some() {
                let c = self.counts();
                report(
                    LogLevel::Error,
                    format!(
                        "stopping with {} reading(s) not appended: the stream manager is unavailable",
                        c.queued
                    ),
                    None,
                );
                return;
            }
            let result = self
                .append(
                    &mut client,
                    &connect,
                    &mut known,
                    &stream,
                    buffer_mib,
                    &payloads,
                )
                .await;
            match result {
                Ok(()) => {
                    backoff.reset();
                    let c = self.counts();
                    if outage.is_none() && c.dropped > dropped_reported {
                        report(
                            LogLevel::Warn,
                            format!("{} reading(s) dropped so far (refused by the stream manager or beyond the queue)", c.dropped),
                            Some(self.status("ok", None)),
                        );
                        dropped_reported = c.dropped;
                    }
                    if let Some(why) = outage.take() {
                        report(
                            LogLevel::Info,
                            format!("the stream manager is reachable again (it failed: {why})"),
                            Some(self.status("ok", None)),
                        );
                    }
                }
                Err(why) => {
                    let c = self.counts();
                    if outage.is_none() || c.dropped > dropped_reported {
                        report(
                            LogLevel::Error,
                            format!(
                                "cannot append to stream {stream:?}: {why}; {} reading(s) queued, {} dropped so far; retrying",
                                c.queued, c.dropped
                            ),
                            Some(self.status("unavailable", Some(&why))),
                        );
                        dropped_reported = c.dropped;
                    }
                    outage = Some(why);
                    let delay = backoff.next_delay();
                    // A close ends the wait early: the loop then gives up.
                    let closing = async {
                        while !lock(&self.state).closed {
                            self.wake.notified().await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = closing => {}
                    }
                }
            }
        }
    }

    /// Appends `payloads` (the queue's front) and pops what was appended or
    /// refused for good; `Err` is a reason to retry later.
    async fn append(
        &self,
        client: &mut Option<StreamClient>,
        connect: &Connect,
        known: &mut HashSet<String>,
        stream: &str,
        buffer_mib: Option<u64>,
        payloads: &[Vec<u8>],
    ) -> Result<(), String> {
        let result = self
            .try_append(client, connect, known, stream, buffer_mib, payloads)
            .await;
        lock(&self.state).in_flight = 0;
        result
    }

    async fn try_append(
        &self,
        client: &mut Option<StreamClient>,
        connect: &Connect,
        known: &mut HashSet<String>,
        stream: &str,
        buffer_mib: Option<u64>,
        payloads: &[Vec<u8>],
    ) -> Result<(), String> {
        if client.is_none() {
            *client = Some(connect().await.map_err(|e| e.to_string())?);
            known.clear();
        }
        let Some(c) = client.as_ref() else {
            return Err("no stream manager client".into());
        };
        if !known.contains(stream) {
            match c.describe_message_stream(stream).await {
                Ok(_) => {}
                Err(ClientError::Status {
                    code: ResponseStatusCode::ResourceNotFound,
                    ..
                }) => match c
                    .create_message_stream(&definition(stream, buffer_mib))
                    .await
                {
                    Ok(()) => {}
                    // Created meanwhile by someone else: fine.
                    Err(ClientError::Status {
                        code: ResponseStatusCode::InvalidRequest,
                        ..
                    }) if c.describe_message_stream(stream).await.is_ok() => {}
                    Err(e) => return Err(self.broken(client, e)),
                },
                Err(e) => return Err(self.broken(client, e)),
            }
            known.insert(stream.to_string());
        }
        let results = c.append_messages(stream, payloads).await;
        let mut done = 0;
        let mut refused = 0;
        let mut failure = None;
        for r in results {
            match r {
                Ok(_) => done += 1,
                Err(ClientError::Status {
                    code:
                        ResponseStatusCode::InvalidRequest | ResponseStatusCode::RequestPayloadTooLarge,
                    message,
                }) => {
                    refused += 1;
                    failure.get_or_insert(format!("refused: {message}"));
                }
                Err(ClientError::Status {
                    code: ResponseStatusCode::ResourceNotFound,
                    ..
                }) => {
                    // Deleted under us: created again on the retry.
                    known.remove(stream);
                    failure = Some(format!("stream {stream:?} does not exist any more"));
                    break;
                }
                Err(e) => {
                    failure = Some(self.broken(client, e));
                    break;
                }
            }
        }
        {
            let mut s = lock(&self.state);
            // Only the front readings were sent and nothing else pops: the
            // first done + refused are exactly those answered.
            for _ in 0..(done + refused) {
                s.queue.pop_front();
            }
            s.in_flight = 0;
            s.counts.appended += done as u64;
            s.counts.dropped += refused as u64;
        }
        match failure {
            Some(why) if done + refused < payloads.len() => Err(why),
            _ => Ok(()),
        }
    }

    /// A failure's reason; a broken connection is dropped for a fresh one.
    fn broken(&self, client: &mut Option<StreamClient>, e: ClientError) -> String {
        if !matches!(e, ClientError::Status { .. }) {
            *client = None;
        }
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_streams::model::ReadMessagesOptions;
    use evergreen_streams::server::{Authorizer, ServerLimits, Service};
    use evergreen_streams::store::{Store, StoreLimits};
    use std::time::Instant;

    struct Anyone;
    impl Authorizer for Anyone {
        fn authorize(&self, _: Option<&str>) -> Result<String, String> {
            Ok("arn:test:connector".into())
        }
    }

    fn reading(alias: &str, value: Option<Value>, ms: u64) -> Reading {
        Reading {
            alias: alias.into(),
            name: alias.into(),
            quality: if value.is_some() {
                Quality::Good
            } else {
                Quality::Bad
            },
            value,
            timestamp_ms: ms,
        }
    }

    #[test]
    fn entries_have_the_sitewise_shape_and_bad_ones_none() {
        let e = entry(
            &reading("p_temp", Some(Value::Double(1.5)), 1_700_000_000_123),
            "id-1".into(),
        )
        .expect("test");
        let v = serde_json::to_value(&e).expect("test");
        assert_eq!(
            v,
            json!({"entryId": "id-1", "propertyAlias": "p_temp", "propertyValues": [{
                "value": {"doubleValue": 1.5},
                "timestamp": {"timeInSeconds": 1_700_000_000i64, "offsetInNanos": 123_000_000i64},
                "quality": "GOOD"}]})
        );
        for (value, key) in [
            (Value::Integer(-3), "integerValue"),
            (Value::String("x".into()), "stringValue"),
            (Value::Boolean(true), "booleanValue"),
        ] {
            let v = serde_json::to_value(entry(&reading("a", Some(value), 0), "i".into()))
                .expect("test");
            assert!(
                v["propertyValues"][0]["value"][key].is_string()
                    || v["propertyValues"][0]["value"][key].is_number()
                    || v["propertyValues"][0]["value"][key].is_boolean(),
                "{v}"
            );
        }
        assert!(entry(&reading("a", None, 0), "i".into()).is_none());
        assert_eq!(definition("s", Some(8)).max_size, Some(8 << 20));
        assert_eq!(definition("s", None).max_size, None);
        assert_eq!(
            OutputDestination::parse("StreamManager"),
            Ok(OutputDestination::StreamManager)
        );
        assert!(OutputDestination::parse("Kinesis").is_err());
    }

    type Reports = Arc<Mutex<Vec<(LogLevel, String, Option<serde_json::Value>)>>>;

    fn recorder() -> (Report, Reports) {
        let got: Reports = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        (
            Arc::new(move |l, m, s: Option<Vec<u8>>| {
                g.lock().expect("test").push((
                    l,
                    m,
                    s.map(|s| serde_json::from_slice(&s).expect("test")),
                ))
            }),
            got,
        )
    }

    fn connect_to(port: u16) -> Connect {
        Arc::new(move || {
            Box::pin(async move {
                StreamClient::connect(port, None)
                    .await
                    .map(|c| c.with_request_timeout(Duration::from_secs(2)))
            })
        })
    }

    async fn serve(root: &std::path::Path, port: u16) -> (tokio::task::JoinHandle<()>, u16) {
        let store = Store::open(root, StoreLimits::default()).expect("test");
        let service = Service::new(store, Arc::new(Anyone), ServerLimits::default());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("test");
        let port = listener.local_addr().expect("test").port();
        (tokio::spawn(service.serve(listener)), port)
    }

    async fn read_all(port: u16, stream: &str, n: i64) -> Vec<serde_json::Value> {
        let c = StreamClient::connect(port, None).await.expect("test");
        let deadline = Instant::now() + Duration::from_secs(10);
        // The sink creates the stream when it gets to it.
        let messages = loop {
            let r = c
                .read_messages(
                    stream,
                    Some(ReadMessagesOptions {
                        desired_start_sequence_number: Some(0),
                        min_message_count: Some(n),
                        max_message_count: Some(n),
                        read_timeout_millis: Some(5000),
                    }),
                )
                .await;
            match r {
                Err(e) if e.code() == Some(ResponseStatusCode::ResourceNotFound) => {
                    assert!(Instant::now() < deadline, "stream {stream} never created");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other.expect("test"),
            }
        };
        messages
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).expect("test"))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readings_are_appended_in_order_to_a_created_stream() {
        let root = tempfile::tempdir().expect("test");
        let (_server, port) = serve(root.path(), 0).await;
        let (report, _) = recorder();
        let sink = StreamSink::start(connect_to(port), report, 100);
        for i in 0..20 {
            sink.push(
                &Batch {
                    stream_name: "SiteWise_Stream_1".into(),
                    readings: vec![
                        reading("a", Some(Value::Integer(i)), 1000 + i as u64),
                        reading("b", None, 1000),
                    ],
                },
                Some(1),
            );
        }
        let got = read_all(port, "SiteWise_Stream_1", 20).await;
        let values: Vec<i64> = got
            .iter()
            .map(|v| {
                v["propertyValues"][0]["value"]["integerValue"]
                    .as_i64()
                    .expect("test")
            })
            .collect();
        assert_eq!(values, (0..20).collect::<Vec<_>>());
        let ids: HashSet<&str> = got
            .iter()
            .map(|v| v["entryId"].as_str().expect("test"))
            .collect();
        assert_eq!(ids.len(), 20);
        let c = StreamClient::connect(port, None).await.expect("test");
        let d = c
            .describe_message_stream("SiteWise_Stream_1")
            .await
            .expect("test");
        assert_eq!(d.definition.max_size, Some(1 << 20));
        assert_eq!(
            d.definition.strategy_on_full,
            StrategyOnFull::OverwriteOldestData
        );
        // The sink counts an append when its answer is back, which may be
        // just after the reader saw the message.
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink.counts().appended < 20 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let counts = sink.counts();
        assert_eq!(counts.skipped_bad, 20);
        assert_eq!(counts.appended, 20);
        assert_eq!(counts.queued, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_messages_format_appends_each_readings_document_bad_ones_included() {
        let root = tempfile::tempdir().expect("test");
        let (_server, port) = serve(root.path(), 0).await;
        let (report, _) = recorder();
        let sink =
            StreamSink::start_with_format(connect_to(port), report, 100, EntryFormat::Messages);
        sink.push(
            &Batch {
                stream_name: "eip".into(),
                readings: vec![
                    reading("p_a", Some(Value::Double(1.5)), 1000),
                    reading("p_b", None, 1001),
                ],
            },
            None,
        );
        let got = read_all(port, "eip", 2).await;
        assert_eq!(
            got,
            vec![
                json!({"alias": "p_a", "messages": [{"name": "p_a", "value": 1.5, "timestamp": 1000, "quality": "GOOD"}]}),
                json!({"alias": "p_b", "messages": [{"name": "p_b", "value": null, "timestamp": 1001, "quality": "BAD"}]}),
            ]
        );
        assert_eq!(sink.counts().skipped_bad, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_absent_stream_manager_queues_drops_oldest_reports_and_recovers() {
        let root = tempfile::tempdir().expect("test");
        // A port nobody listens on yet.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("test");
            l.local_addr().expect("test").port()
        };
        let (report, reports) = recorder();
        let sink = StreamSink::start(connect_to(port), report, 5);
        // One batch: the drain cannot take readings in between (readings it
        // is sending are never the ones dropped).
        sink.push(
            &Batch {
                stream_name: "s".into(),
                readings: (0..8)
                    .map(|i| reading("a", Some(Value::Integer(i)), 0))
                    .collect(),
            },
            None,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while reports.lock().expect("test").is_empty() {
            assert!(Instant::now() < deadline, "no report of the outage");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let first = reports.lock().expect("test")[0].clone();
        assert_eq!(first.0, LogLevel::Error);
        let status = first.2.expect("test");
        assert_eq!(status["streamManager"], "unavailable");
        assert_eq!(sink.counts().dropped, 3);
        assert_eq!(sink.counts().queued, 5);

        let (_server, _) = serve(root.path(), port).await;
        let got = read_all(port, "s", 5).await;
        let values: Vec<i64> = got
            .iter()
            .map(|v| {
                v["propertyValues"][0]["value"]["integerValue"]
                    .as_i64()
                    .expect("test")
            })
            .collect();
        assert_eq!(values, vec![3, 4, 5, 6, 7], "the oldest were dropped");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ok = reports
                .lock()
                .expect("test")
                .iter()
                .any(|r| r.2.as_ref().is_some_and(|s| s["streamManager"] == "ok"));
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "no report of the recovery");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sink.counts().appended, 5);
    }
}
