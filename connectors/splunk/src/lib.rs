//! The `SplunkIntegration` connector (Greengrass versions 1–4): events
//! published on `splunk/logs/put` go to a Splunk HTTP Event Collector
//! (HEC), in batches.
//!
//! **What it calls.** `POST <SplunkEndpoint>/services/collector` with
//! `Authorization: Splunk <token>` and the batch's events concatenated in
//! one body (`{"event":…}{"event":…}`), as HEC takes them. Each event is
//! the input's `request` object as it came (`event` plus any of `fields`,
//! `time`, `host`, `source`, `sourcetype`, `index`). `SplunkEndpoint` is
//! protocol, host and port; without a protocol `https://` is assumed; when
//! it already ends in `/services/collector` (or `…/event`) that path is
//! used as is.
//!
//! **The token** is the text secret `SplunkTokenSecretArn` (granted through
//! `SplunkTokenSecretArn-ResourceId`), read at start and again before a
//! send while it cannot be read; surrounding whitespace is trimmed. It is
//! never logged. While it cannot be read, events stay queued and each
//! attempt publishes a `SecretError` on `splunk/logs/put/error`.
//!
//! **TLS.** The platform's trusted roots, plus the certificates of the PEM
//! file `SplunkCustomCALocation` when it is set (a self-signed HEC).
//!
//! **Queue.** Accepted events wait in memory, at most `SplunkQueueSize`
//! events and `MemorySize` KB of event JSON (0 KB: only the count bounds
//! it; a queue size of 0 is taken as 1). When a new event does not fit,
//! the **oldest** waiting events are dropped to make room (the reference's
//! "oldest replaced by newer"); each dropped event with an `id` is reported
//! at once as `{"response":{"succeeded":[],"failed":[<id>]}}` on the status
//! topic, and logged. A batch being sent is out of the queue; if it must be
//! retried it goes back to the front, and the bounds apply again.
//!
//! **Batches.** Every `SplunkFlushIntervalSeconds` (0: as soon as events
//! are waiting) the waiting events are sent, at most [`MAX_BATCH_BYTES`]
//! per request. After each batch, `splunk/logs/put/status` gets
//! `{"response":{"succeeded":[ids…],"failed":[ids…]}}` (events without an
//! `id` are sent but cannot be listed).
//!
//! **Failures.** No answer (refused, reset, timeout), 5xx and 429 are
//! retryable: the batch goes back to the front of the queue and is sent
//! again after a backoff (1 s doubling to 60 s, without waiting for the
//! next flush), so nothing accepted is lost while the queue has room. Any other
//! error status fails the batch: its ids are in `failed`, and
//! `splunk/logs/put/error` gets `{"response":{"error":…,"error_message":…,"status":"fail"}}`
//! with `UnauthorizedException` for 401/403 (the reference's example,
//! "invalid splunk token"), `InvalidInputException` for 400 (HEC's text,
//! e.g. "Invalid data format", in the message) and `SplunkException`
//! otherwise. Invalid input (not JSON, no `request` object, no `event`, an
//! `id` that is not a string, an event larger than `MemorySize`) is
//! refused with an `InvalidInputException` on the error topic naming the
//! field, with the input's `id` when it had one; nothing is queued.
//!
//! **[doc inconsistency] `SplunkFlushIntervalSeconds`** is documented as
//! 0–900, but its pattern also admits 901–999; those are taken as 900.
//!
//! **[doc inconsistency] patterns.** `SplunkTokenSecretArn`'s pattern
//! (`…:\d{12}?:secret:[a-zA-Z0-9-_]+-[a-zA-Z0-9-_]+`, region
//! `[a-z]{2}-[a-z]+-\d{1}`) differs from the other connectors' secret ARN
//! pattern; it is kept as the reference prints it. `SplunkEndpoint`'s
//! pattern ends its host with `.[a-z]{2,5}` (an unescaped dot), so a bare
//! IP address is refused while `localhost` passes; also kept as printed.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use evergreen_connector_kit::manifest;
use evergreen_connector_kit::uploader::{Calls, Uploader, Uploads};
use evergreen_connector_kit::{secret, status, Backoff, Notes, Params};
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Handle, SdkError};
use evergreen_ipc::{ComponentConfig, Delivery};
use serde_json::{json, Value};
use tokio::time::Instant;

pub const INPUT_TOPIC: &str = "splunk/logs/put";
pub const STATUS_TOPIC: &str = "splunk/logs/put/status";
pub const ERROR_TOPIC: &str = "splunk/logs/put/error";
/// Largest body sent in one request.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

const ENDPOINT: &str = "SplunkEndpoint";
const MEMORY_SIZE: &str = "MemorySize";
const QUEUE_SIZE: &str = "SplunkQueueSize";
const FLUSH_INTERVAL: &str = "SplunkFlushIntervalSeconds";
const SECRET_ARN: &str = "SplunkTokenSecretArn";
const SECRET_RESOURCE: &str = "SplunkTokenSecretArn-ResourceId";
const CUSTOM_CA: &str = "SplunkCustomCALocation";

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "SplunkIntegration",
    versions: &[1, 2, 3, 4],
    description: "Sends events published on splunk/logs/put to a Splunk HTTP Event Collector in \
                  batches, with the HEC token from a secret; reports on splunk/logs/put/status and \
                  splunk/logs/put/error.",
    parameters: &[
        ParameterSpec::new(
            ENDPOINT,
            "The HEC endpoint: protocol, host and port, e.g. https://myinstance.cloud.splunk.com:8088.",
        )
        .required()
        .pattern("^(http:\\/\\/|https:\\/\\/)?[a-z0-9]+([-.]{1}[a-z0-9]+)*.[a-z]{2,5}(:[0-9]{1,5})?(\\/.*)?$"),
        ParameterSpec::new(MEMORY_SIZE, "Memory for waiting events, in KB.")
            .required()
            .pattern("^[0-9]+$"),
        ParameterSpec::new(
            QUEUE_SIZE,
            "Most events waiting; when full, the oldest are replaced by newer ones.",
        )
        .required()
        .pattern("^[0-9]+$"),
        ParameterSpec::new(
            FLUSH_INTERVAL,
            "Seconds between batches (0-900); 0 sends as soon as events arrive.",
        )
        .required()
        .pattern("[0-9]|[1-9]\\d|[1-9]\\d\\d|900"),
        ParameterSpec::new(SECRET_ARN, "ARN of the text secret holding the HEC token.")
            .required()
            .pattern("arn:aws:secretsmanager:[a-z]{2}-[a-z]+-\\d{1}:\\d{12}?:secret:[a-zA-Z0-9-_]+-[a-zA-Z0-9-_]+"),
        manifest::secret_resource(SECRET_RESOURCE),
        ParameterSpec::new(
            CUSTOM_CA,
            "A PEM file of CA certificates to trust besides the system's (e.g. /etc/ssl/certs/splunk.crt).",
        )
        .pattern("^$|/.*"),
        manifest::isolation_mode(4),
    ],
    inputs: &[INPUT_TOPIC],
    outputs: &[STATUS_TOPIC, ERROR_TOPIC],
    isolation: manifest::EITHER_MODE,
    pinned: true,
    aws: false,
};

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The full collector URL.
    pub url: String,
    /// Bytes of event JSON that may wait; 0 = no byte bound.
    pub memory_bytes: usize,
    pub queue_size: usize,
    /// `None`: send as soon as events wait.
    pub flush_interval: Option<Duration>,
    pub secret_arn: String,
    pub custom_ca: Option<PathBuf>,
}

/// The collector URL for a `SplunkEndpoint` value.
pub fn collector_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim().trim_end_matches('/');
    let with_scheme = if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    if with_scheme.ends_with("/services/collector")
        || with_scheme.ends_with("/services/collector/event")
    {
        with_scheme
    } else {
        format!("{with_scheme}/services/collector")
    }
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Notes) {
        let mut p = Params::new(config);
        let url = collector_url(p.raw(ENDPOINT).unwrap_or(""));
        let memory_kb: usize = p.number(MEMORY_SIZE, 0);
        let mut queue_size: usize = p.number(QUEUE_SIZE, 1000);
        if queue_size == 0 {
            p.warn(format!("{QUEUE_SIZE} 0 is taken as 1"));
            queue_size = 1;
        }
        let flush = p.number::<usize>(FLUSH_INTERVAL, 0).min(900);
        let secret_arn = p.raw(SECRET_ARN).unwrap_or_default().to_string();
        let custom_ca = p
            .raw(CUSTOM_CA)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from);
        p.info(format!(
            "sending to {url}: up to {queue_size} events{} waiting, {}",
            if memory_kb > 0 {
                format!(" and {memory_kb} KB")
            } else {
                String::new()
            },
            if flush == 0 {
                "sent as they arrive".to_string()
            } else {
                format!("a batch every {flush} s")
            }
        ));
        p.finish(Settings {
            url,
            memory_bytes: memory_kb.saturating_mul(1024),
            queue_size,
            flush_interval: (flush > 0).then(|| Duration::from_secs(flush as u64)),
            secret_arn,
            custom_ca,
        })
    }
}

/// One accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: Option<String>,
    /// The HEC event JSON.
    pub body: String,
}

/// Why an input is refused (the kit's, shared with the other connectors that echo an `id`).
pub use evergreen_connector_kit::status::Invalid;

/// Checks an input against the reference.
pub fn parse_input(payload: &[u8]) -> Result<Item, Invalid> {
    let top =
        status::json_object(payload, "payload").map_err(|message| Invalid { id: None, message })?;
    let id = match top.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(Invalid {
                id: None,
                message: "id must be a string".into(),
            })
        }
    };
    let fail = |message: &str| {
        Err(Invalid {
            id: id.clone(),
            message: message.to_string(),
        })
    };
    match top.get("request") {
        None | Some(Value::Null) => fail("request is required"),
        Some(Value::Object(request)) => match request.get("event") {
            None | Some(Value::Null) => fail("request.event is required"),
            Some(Value::String(s)) if s.is_empty() => fail("request.event cannot be empty"),
            Some(_) => Ok(Item {
                id: id.clone(),
                body: Value::Object(request.clone()).to_string(),
            }),
        },
        Some(_) => fail("request must be an object (an HEC event)"),
    }
}

/// The waiting events, bounded by count and bytes; the oldest go first.
#[derive(Debug)]
pub struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
}

impl Queue {
    pub fn new(max_items: usize, max_bytes: usize) -> Queue {
        Queue {
            items: VecDeque::new(),
            bytes: 0,
            max_items: max_items.max(1),
            max_bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn fits(&self, extra: usize) -> bool {
        self.items.len() < self.max_items
            && (self.max_bytes == 0 || self.bytes + extra <= self.max_bytes)
    }

    /// Adds `item` at the back, dropping the oldest events to make room;
    /// returns those dropped. `Err` when the item alone exceeds the byte bound.
    pub fn push(&mut self, item: Item) -> Result<Vec<Item>, Item> {
        if self.max_bytes > 0 && item.body.len() > self.max_bytes {
            return Err(item);
        }
        let mut dropped = Vec::new();
        while !self.fits(item.body.len()) {
            match self.items.pop_front() {
                Some(old) => {
                    self.bytes -= old.body.len();
                    dropped.push(old);
                }
                None => break,
            }
        }
        self.bytes += item.body.len();
        self.items.push_back(item);
        Ok(dropped)
    }

    /// Takes a batch from the front: at least one event, at most
    /// `max_bytes` of bodies.
    pub fn take_batch(&mut self, max_bytes: usize) -> Vec<Item> {
        let mut batch = Vec::new();
        let mut size = 0;
        while let Some(front) = self.items.front() {
            if !batch.is_empty() && size + front.body.len() > max_bytes {
                break;
            }
            size += front.body.len();
            self.bytes -= front.body.len();
            if let Some(item) = self.items.pop_front() {
                batch.push(item);
            }
        }
        batch
    }

    /// Puts a batch that must be retried back at the front, then drops the
    /// oldest beyond the bounds; returns those dropped.
    pub fn requeue(&mut self, batch: Vec<Item>) -> Vec<Item> {
        for item in batch.into_iter().rev() {
            self.bytes += item.body.len();
            self.items.push_front(item);
        }
        let mut dropped = Vec::new();
        while self.items.len() > self.max_items
            || (self.max_bytes > 0 && self.bytes > self.max_bytes)
        {
            match self.items.pop_front() {
                Some(old) => {
                    self.bytes -= old.body.len();
                    dropped.push(old);
                }
                None => break,
            }
        }
        dropped
    }
}

/// How a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again: no answer, 5xx, 429, or no token yet.
    Retry {
        error: &'static str,
        message: String,
    },
    /// The batch is refused for good.
    Fail {
        error: &'static str,
        message: String,
    },
}

/// Sends one batch.
pub async fn send_batch(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    batch: &[Item],
) -> Result<(), SendError> {
    let body: String = batch.iter().map(|i| i.body.as_str()).collect();
    let response = client
        .post(url)
        .header("Authorization", format!("Splunk {token}"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| SendError::Retry {
            error: "ConnectionError",
            message: evergreen_aws::describe_reqwest(&e),
        })?;
    let status = response.status().as_u16();
    let text = response.bytes().await.unwrap_or_default();
    if (200..300).contains(&status) {
        return Ok(());
    }
    // HEC's error body: {"text":"Invalid token","code":4}.
    let hec = serde_json::from_slice::<Value>(&text)
        .ok()
        .and_then(|j| j.get("text").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| evergreen_aws::quote_body(&text));
    let message = format!("HTTP {status}: {hec}");
    Err(match status {
        429 | 500.. => SendError::Retry {
            error: "ServiceUnavailableException",
            message,
        },
        401 | 403 => SendError::Fail {
            error: "UnauthorizedException",
            message: format!("invalid splunk token ({message})"),
        },
        400 => SendError::Fail {
            error: "InvalidInputException",
            message,
        },
        _ => SendError::Fail {
            error: "SplunkException",
            message,
        },
    })
}

fn ids(items: &[Item]) -> Vec<String> {
    items.iter().filter_map(|i| i.id.clone()).collect()
}

/// The status message after a batch (or for dropped events).
pub fn status(succeeded: &[Item], failed: &[Item]) -> Value {
    json!({ "response": { "succeeded": ids(succeeded), "failed": ids(failed) } })
}

/// A message for the error topic.
pub fn error_message(error: &str, message: &str, id: Option<&str>) -> Value {
    status::failure(error, message, id)
}

async fn publish(handle: &Handle, topic: &str, message: &Value) -> Result<(), SdkError> {
    handle.publish_or_log(topic, message.to_string()).await
}

async fn read_token(handle: &Handle, arn: &str) -> Result<String, String> {
    secret::read_text(handle, arn, "HEC token", "HEC token secret").await
}

fn load_ca(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
    let certs = certs.map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

/// A batch's call, as it comes back: the batch and how it ended.
type Sent = (Vec<Item>, Result<(), SendError>);

/// The connector's state between events.
struct Connector {
    settings: Settings,
    handle: Handle,
    client: reqwest::Client,
    /// `None` while the secret cannot be read; read again before a send.
    token: Option<String>,
    queue: Queue,
    /// A batch is out; one at a time.
    calling: bool,
    backoff: Backoff,
    /// No send (nor secret read) before this, after a failure.
    not_before: Instant,
    /// The flush interval elapsed (or a retry or more events are waiting).
    flush_due: bool,
}

impl Connector {
    /// Whether a batch should go now: nothing out, events waiting, and
    /// either no flush interval or one that elapsed.
    fn due(&self) -> bool {
        !self.calling
            && (self.settings.flush_interval.is_none() || self.flush_due)
            && !self.queue.is_empty()
    }
}

impl Uploader for Connector {
    type Done = Sent;

    async fn on_message(&mut self, m: Delivery) -> Result<(), SdkError> {
        let handle = &self.handle;
        match parse_input(&m.payload) {
            Ok(item) => match self.queue.push(item) {
                Ok(dropped) => report_dropped(handle, &dropped).await,
                Err(item) => {
                    let message = format!(
                        "request is {} bytes, more than {MEMORY_SIZE} allows ({} bytes)",
                        item.body.len(),
                        self.settings.memory_bytes
                    );
                    handle.warn(format!("input refused: {message}"));
                    publish(
                        handle,
                        ERROR_TOPIC,
                        &error_message("InvalidInputException", &message, item.id.as_deref()),
                    )
                    .await
                }
            },
            Err(invalid) => {
                handle.warn(format!("input refused: {}", invalid.message));
                publish(
                    handle,
                    ERROR_TOPIC,
                    &error_message(
                        "InvalidInputException",
                        &invalid.message,
                        invalid.id.as_deref(),
                    ),
                )
                .await
            }
        }
    }

    async fn send_ready(&mut self, calls: &Calls<Sent>) -> Result<(), SdkError> {
        if !self.due() || Instant::now() < self.not_before {
            return Ok(());
        }
        let handle = &self.handle;
        let arn = &self.settings.secret_arn;
        if self.token.is_none() {
            match read_token(handle, arn).await {
                Ok(t) => {
                    handle.info(format!("HEC token secret {arn} read"));
                    self.token = Some(t);
                }
                Err(e) => {
                    handle.warn(format!("{e}; {} events kept queued", self.queue.len()));
                    publish(handle, ERROR_TOPIC, &error_message("SecretError", &e, None)).await?;
                    self.not_before = Instant::now() + self.backoff.next_delay();
                }
            }
        }
        if let Some(tok) = self.token.clone() {
            let batch = self.queue.take_batch(MAX_BATCH_BYTES);
            let client = self.client.clone();
            let url = self.settings.url.clone();
            self.flush_due = false;
            self.calling = true;
            calls.spawn(async move {
                let result = send_batch(&client, &url, &tok, &batch).await;
                (batch, result)
            });
        }
        Ok(())
    }

    async fn on_done(&mut self, (batch, result): Sent) -> Result<(), SdkError> {
        self.calling = false;
        let handle = &self.handle;
        match result {
            Ok(()) => {
                self.backoff.reset();
                handle.debug(format!("{} events sent", batch.len()));
                publish(handle, STATUS_TOPIC, &status(&batch, &[])).await?;
                // More waiting than one batch: keep going.
                self.flush_due = self.flush_due || !self.queue.is_empty();
            }
            Err(SendError::Retry { error, message }) => {
                handle.warn(format!(
                    "batch of {} events not sent ({error}: {message}); retrying in {} ms",
                    batch.len(),
                    self.backoff.peek().as_millis()
                ));
                let dropped = self.queue.requeue(batch);
                report_dropped(handle, &dropped).await?;
                self.not_before = Instant::now() + self.backoff.next_delay();
                self.flush_due = true;
            }
            Err(SendError::Fail { error, message }) => {
                self.backoff.reset();
                handle.error(format!(
                    "batch of {} events refused ({error}): {message}",
                    batch.len()
                ));
                publish(handle, STATUS_TOPIC, &status(&[], &batch)).await?;
                publish(handle, ERROR_TOPIC, &error_message(error, &message, None)).await?;
                self.flush_due = self.flush_due || !self.queue.is_empty();
            }
        }
        Ok(())
    }

    fn on_lost(&mut self) {
        self.calling = false;
        self.handle.error("a batch's sender stopped unexpectedly");
    }

    fn on_tick(&mut self) {
        self.flush_due = true;
    }

    fn next_wake(&self) -> Option<Instant> {
        // The end of a backoff with a batch waiting for it.
        (self.due() && Instant::now() < self.not_before).then_some(self.not_before)
    }

    fn calling(&self) -> bool {
        self.calling
    }
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let mut extra_roots = Vec::new();
    if let Some(ca) = &settings.custom_ca {
        match load_ca(ca) {
            Ok(roots) => {
                handle.info(format!(
                    "trusting {} certificate(s) from {}",
                    roots.len(),
                    ca.display()
                ));
                extra_roots = roots;
            }
            Err(e) => handle.error(format!("{CUSTOM_CA}: {e}; using the system's roots only")),
        }
    }
    let client = match evergreen_aws::try_http_client_with_roots(&extra_roots) {
        Ok(c) => c,
        Err(e) => {
            handle.error(e);
            return Err(SdkError::Closed);
        }
    };
    let token = match read_token(&handle, &settings.secret_arn).await {
        Ok(t) => Some(t),
        Err(e) => {
            handle.error(format!("{e}; events are kept queued until it can be read"));
            None
        }
    };
    let interval = settings.flush_interval;
    let mut connector = Connector {
        queue: Queue::new(settings.queue_size, settings.memory_bytes),
        settings,
        handle: handle.clone(),
        client,
        token,
        calling: false,
        backoff: Backoff::new(FIRST_BACKOFF, MAX_BACKOFF),
        not_before: Instant::now(),
        flush_due: false,
    };
    // No last send at shutdown: what is queued is reported as not sent.
    Uploads::new()
        .run(&mut component, &handle, &mut connector, interval)
        .await?;
    if !connector.queue.is_empty() {
        handle.warn(format!(
            "stopping with {} events not sent",
            connector.queue.len()
        ));
    }
    handle.info("stopping");
    Ok(())
}

async fn report_dropped(handle: &Handle, dropped: &[Item]) -> Result<(), SdkError> {
    if dropped.is_empty() {
        return Ok(());
    }
    handle.warn(format!(
        "queue full: the {} oldest events dropped for newer ones ({:?})",
        dropped.len(),
        ids(dropped)
    ));
    publish(handle, STATUS_TOPIC, &status(&[], dropped)).await
}

#[cfg(test)]
mod tests;
