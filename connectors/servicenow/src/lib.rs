//! The `ServiceNowMetricBaseIntegration` connector (Greengrass versions
//! 1–4): metrics published on `servicenow/metricbase/metric` go to
//! ServiceNow MetricBase, in batches, answered on
//! `servicenow/metricbase/metric/status`.
//!
//! **What it calls.** The Clotho time-series API, `POST
//! <base>/api/now/v1/clotho/put` with the body the reference gives, one
//! request per series in a batch:
//! `{"seriesRef":{"subject":…,"table":…,"metric":…},"values":[{"timestamp":…,"value":…},…]}`,
//! with HTTP basic auth. `<base>` is `https://<InstanceName>.service-now.com`,
//! or the core configuration's `evergreen.aws.endpoints.servicenow` (tests;
//! `ComponentConfig::endpoints["servicenow"]`).
//!
//! **Credentials** are the secret `AuthSecretArn` (granted through
//! `AuthSecretArn-ResourceId`): a JSON text with `user` and `password`.
//! Read at start, and again before a send while it cannot be read; while
//! it cannot, metrics stay buffered and each attempt publishes a fail
//! status with `SecretError` saying which secret and why (a missing key is
//! named, a value never).
//!
//! **Input** (`request`): `subject` (string), `metric_name` (string),
//! `value` (number), optional `table` (string; default
//! `DefaultTableName`) and `timestamp` (`YYYY-MM-DDTHH:MM:SS`, UTC; default
//! the time the connector received it). The reference documents no `id`;
//! when an input has a string `id` it is echoed in its failure status.
//!
//! **Buffer and batches.** Accepted metrics wait in a buffer of
//! `MaxMetricsToRetain` (0 is taken as 1); when it is full the oldest is
//! replaced by the newer one (the reference's rule), logged at WARN and
//! reported as a fail status `MetricDroppedException` naming the dropped
//! metric. A batch of up to `PublishBatchSize` metrics (0 is taken as 1)
//! is sent when that many wait or when `PublishInterval` seconds passed
//! since the last publish. Values of the same series (table, subject,
//! metric) in a batch go in one request, in arrival order.
//!
//! **Status messages.** Per series sent, the reference's success shape
//! `{"response":{"metric_name":…,"table_name":…,"processed_on":…,"response_id":…,"status":"success","values":[…]}}`;
//! `processed_on` is the UTC time of the answer, and `response_id` is
//! Evergreen's own id for the request (the reference does not say where
//! Greengrass took it from): `sn-<unix ms>-<counter>`. Failures:
//! `{"response":{"error":…,"error_message":…,"status":"fail"}}` with
//! `InvalidInputException` (bad input, naming the field; and a 400 from
//! ServiceNow), `UnauthorizedException` (401/403), `ServiceNowException`
//! (other refusals), `SecretError`, `MetricDroppedException`.
//!
//! **[doc inconsistency] `PublishInterval`** is documented as 1–900, but
//! its pattern (`[1-9]|[1-9]\d|[1-9]\d\d|900`) also admits 901–999; the
//! pattern is kept as printed and such values are taken as 900, with a
//! warning.
//!
//! **Retries.** No answer (refused, reset, timeout), 5xx and 429 put the
//! series not yet sent back at the front of the buffer, in order, and the
//! batch is tried again after a backoff (1 s doubling to 60 s): nothing
//! accepted is lost while the buffer has room.

use std::collections::VecDeque;
use std::time::Duration;

use evergreen_connector_kit::manifest;
use evergreen_connector_kit::uploader::{Calls, Uploader, Uploads};
use evergreen_connector_kit::{status, Backoff, Notes, Params};
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Handle, SdkError};
use evergreen_ipc::{ComponentConfig, Delivery};
use serde_json::{json, Value};
use tokio::time::Instant;

pub const INPUT_TOPIC: &str = "servicenow/metricbase/metric";
pub const STATUS_TOPIC: &str = "servicenow/metricbase/metric/status";
pub const PUT_PATH: &str = "/api/now/v1/clotho/put";
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

const PUBLISH_INTERVAL: &str = "PublishInterval";
const BATCH_SIZE: &str = "PublishBatchSize";
const INSTANCE: &str = "InstanceName";
const DEFAULT_TABLE: &str = "DefaultTableName";
const MAX_RETAIN: &str = "MaxMetricsToRetain";
const SECRET_ARN: &str = "AuthSecretArn";
const SECRET_RESOURCE: &str = "AuthSecretArn-ResourceId";

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "ServiceNowMetricBaseIntegration",
    versions: &[1, 2, 3, 4],
    description: "Sends metrics published on servicenow/metricbase/metric to ServiceNow MetricBase \
                  in batches, with basic auth from a secret; reports on \
                  servicenow/metricbase/metric/status.",
    parameters: &[
        ParameterSpec::new(PUBLISH_INTERVAL, "Most seconds between publishes (1-900).")
            .required()
            .pattern("[1-9]|[1-9]\\d|[1-9]\\d\\d|900"),
        ParameterSpec::new(
            BATCH_SIZE,
            "Most metric values per batch; a batch goes when this many wait or the interval passed.",
        )
        .required()
        .pattern("^[0-9]+$"),
        ParameterSpec::new(INSTANCE, "The ServiceNow instance name (myinstance for myinstance.service-now.com).")
            .required()
            .pattern(".+"),
        ParameterSpec::new(DEFAULT_TABLE, "The table holding the series' GlideRecord, e.g. u_greengrass_app.")
            .required()
            .pattern(".+"),
        ParameterSpec::new(
            MAX_RETAIN,
            "Most metrics kept while they cannot be sent; the oldest are replaced by newer ones.",
        )
        .required()
        .pattern("^[0-9]+$"),
        ParameterSpec::new(SECRET_ARN, "ARN of the secret with the keys user and password.")
            .required()
            .pattern(manifest::SECRET_ARN_PATTERN),
        manifest::secret_resource(SECRET_RESOURCE),
        manifest::isolation_mode(4),
    ],
    inputs: &[INPUT_TOPIC],
    outputs: &[STATUS_TOPIC],
    isolation: manifest::EITHER_MODE,
    pinned: true,
    aws: false,
};

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub batch_size: usize,
    pub max_retain: usize,
    pub default_table: String,
    /// The instance's base URL, without a trailing `/`.
    pub base: String,
    pub secret_arn: String,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Notes) {
        let mut p = Params::new(config);
        let text = |p: &Params<'_>, name: &str| p.trimmed(name).unwrap_or_default().to_string();
        let interval = p.clamped(PUBLISH_INTERVAL, 10, 1, 900);
        let batch_size = p.clamped(BATCH_SIZE, 100, 1, 100_000) as usize;
        let max_retain = p.clamped(MAX_RETAIN, 1000, 1, 10_000_000) as usize;
        let instance = text(&p, INSTANCE);
        let base = p
            .endpoint_override("servicenow", "MetricBase")
            .unwrap_or_else(|| format!("https://{instance}.service-now.com"));
        if max_retain < batch_size {
            p.warn(format!(
                "{MAX_RETAIN} {max_retain} is below {BATCH_SIZE} {batch_size}: batches never fill"
            ));
        }
        let default_table = text(&p, DEFAULT_TABLE);
        let secret_arn = text(&p, SECRET_ARN);
        p.finish(Settings {
            interval: Duration::from_secs(interval),
            batch_size,
            max_retain,
            default_table,
            base,
            secret_arn,
        })
    }
}

/// One accepted metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub subject: String,
    pub metric_name: String,
    pub table: String,
    pub value: f64,
    pub timestamp: String,
}

/// Why an input is refused (the kit's, shared with the other connectors that echo an `id`).
pub use evergreen_connector_kit::status::Invalid;

/// `YYYY-MM-DDTHH:MM:SS` in UTC.
pub fn format_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Whether `s` is a `YYYY-MM-DDTHH:MM:SS` date and time.
pub fn is_timestamp(s: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s, &format).is_ok()
}

/// Checks an input against the reference; `now` is the default timestamp.
pub fn parse_input(payload: &[u8], default_table: &str, now: &str) -> Result<Metric, Invalid> {
    let top =
        status::json_object(payload, "payload").map_err(|message| Invalid { id: None, message })?;
    let id = top.get("id").and_then(Value::as_str).map(str::to_string);
    let fail = |message: String| {
        Err(Invalid {
            id: id.clone(),
            message,
        })
    };
    let request = match top.get("request") {
        Some(Value::Object(r)) => r,
        None | Some(Value::Null) => return fail("request is required".into()),
        Some(_) => return fail("request must be an object".into()),
    };
    let text = |key: &str, required: bool| -> Result<Option<String>, String> {
        match request.get(key) {
            None | Some(Value::Null) if required => Err(format!("request.{key} is required")),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(format!("request.{key} cannot be empty")),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("request.{key} must be a string")),
        }
    };
    let subject = match text("subject", true) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return fail(e),
    };
    let metric_name = match text("metric_name", true) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return fail(e),
    };
    let table = match text("table", false) {
        Ok(t) => t.unwrap_or_else(|| default_table.to_string()),
        Err(e) => return fail(e),
    };
    let value = match request.get("value") {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => v,
            _ => return fail(format!("request.value {n} is not a finite number")),
        },
        None | Some(Value::Null) => return fail("request.value is required".into()),
        Some(_) => return fail("request.value must be a number (metric value is invalid)".into()),
    };
    let timestamp = match text("timestamp", false) {
        Ok(Some(t)) if is_timestamp(&t) => t,
        Ok(Some(t)) => {
            return fail(format!(
                "request.timestamp {t:?} is not YYYY-MM-DDTHH:MM:SS (e.g. 2018-10-14T10:30:00)"
            ))
        }
        Ok(None) => now.to_string(),
        Err(e) => return fail(e),
    };
    Ok(Metric {
        subject,
        metric_name,
        table,
        value,
        timestamp,
    })
}

/// One request's worth: the values of one series, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub subject: String,
    pub table: String,
    pub metric: String,
    pub values: Vec<(String, f64)>,
}

impl Series {
    /// The Clotho body.
    pub fn body(&self) -> Value {
        json!({
            "seriesRef": { "subject": self.subject, "table": self.table, "metric": self.metric },
            "values": self.values_json(),
        })
    }

    fn values_json(&self) -> Vec<Value> {
        self.values
            .iter()
            .map(|(t, v)| json!({ "timestamp": t, "value": v }))
            .collect()
    }

    fn into_metrics(self) -> impl Iterator<Item = Metric> {
        let (subject, table, metric) = (self.subject, self.table, self.metric);
        self.values
            .into_iter()
            .map(move |(timestamp, value)| Metric {
                subject: subject.clone(),
                metric_name: metric.clone(),
                table: table.clone(),
                value,
                timestamp,
            })
    }
}

/// Groups a batch by series, keeping the order of first appearance.
pub fn group(batch: Vec<Metric>) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for m in batch {
        match out
            .iter_mut()
            .find(|s| s.subject == m.subject && s.table == m.table && s.metric == m.metric_name)
        {
            Some(s) => s.values.push((m.timestamp, m.value)),
            None => out.push(Series {
                subject: m.subject,
                table: m.table,
                metric: m.metric_name,
                values: vec![(m.timestamp, m.value)],
            }),
        }
    }
    out
}

/// The success status for a series.
pub fn success_status(series: &Series, processed_on: &str, response_id: &str) -> Value {
    json!({ "response": {
        "metric_name": series.metric,
        "table_name": series.table,
        "processed_on": processed_on,
        "response_id": response_id,
        "status": "success",
        "values": series.values_json(),
    }})
}

/// A failure status.
pub fn fail_status(error: &str, message: &str, id: Option<&str>) -> Value {
    status::failure(error, message, id)
}

/// Basic-auth credentials from the secret's JSON.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Reads `user` and `password` from the secret text; errors never quote it.
pub fn parse_credentials(arn: &str, text: &str) -> Result<Credentials, String> {
    let json: Value = serde_json::from_str(text)
        .map_err(|_| format!("secret {arn} is not JSON with the keys user and password"))?;
    let key = |k: &str| {
        json.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("secret {arn} has no string key {k:?}"))
    };
    Ok(Credentials {
        user: key("user")?,
        password: key("password")?,
    })
}

/// How a series' request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    Retry(String),
    Fail {
        error: &'static str,
        message: String,
    },
}

/// Sends one series.
pub async fn send_series(
    client: &reqwest::Client,
    base: &str,
    credentials: &Credentials,
    series: &Series,
) -> Result<(), SendError> {
    let response = client
        .post(format!("{base}{PUT_PATH}"))
        .basic_auth(&credentials.user, Some(&credentials.password))
        .header("Accept", "application/json")
        .json(&series.body())
        .send()
        .await
        .map_err(|e| SendError::Retry(evergreen_aws::describe_reqwest(&e)))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    if (200..300).contains(&status) {
        return Ok(());
    }
    // ServiceNow's error body: {"error":{"message":…,"detail":…},"status":"failure"}.
    let text = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|j| {
            j.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| evergreen_aws::quote_body(&body));
    let message = format!("HTTP {status}: {text}");
    Err(match status {
        429 | 500.. => SendError::Retry(message),
        401 | 403 => SendError::Fail {
            error: "UnauthorizedException",
            message,
        },
        400 => SendError::Fail {
            error: "InvalidInputException",
            message,
        },
        _ => SendError::Fail {
            error: "ServiceNowException",
            message,
        },
    })
}

/// What a batch's sender hands back.
#[derive(Debug, Default)]
struct Outcome {
    /// Statuses to publish, in order.
    statuses: Vec<Value>,
    /// Series not sent because of a retryable failure, and why.
    retry: Option<(Vec<Series>, String)>,
}

async fn send_all(
    client: reqwest::Client,
    base: String,
    credentials: Credentials,
    batch: Vec<Series>,
    counter: u64,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut rest = batch.into_iter();
    let mut n = counter;
    while let Some(series) = rest.next() {
        match send_series(&client, &base, &credentials, &series).await {
            Ok(()) => {
                n += 1;
                let now = time::OffsetDateTime::now_utc();
                let id = format!("sn-{}-{n}", now.unix_timestamp_nanos() / 1_000_000);
                outcome
                    .statuses
                    .push(success_status(&series, &format_time(now), &id));
            }
            Err(SendError::Retry(message)) => {
                let mut unsent = vec![series];
                unsent.extend(rest);
                outcome.retry = Some((unsent, message));
                break;
            }
            Err(SendError::Fail { error, message }) => {
                outcome.statuses.push(fail_status(
                    error,
                    &format!(
                        "{} values of {} ({}/{}) refused: {message}",
                        series.values.len(),
                        series.metric,
                        series.table,
                        series.subject
                    ),
                    None,
                ));
            }
        }
    }
    outcome
}

async fn publish(handle: &Handle, status: &Value) -> Result<(), SdkError> {
    handle
        .publish_or_log(STATUS_TOPIC, status.to_string())
        .await
}

async fn read_credentials(handle: &Handle, arn: &str) -> Result<Credentials, String> {
    match handle.get_secret(arn, None).await {
        Ok(secret) => match secret.secret_string {
            Some(s) => parse_credentials(arn, &s),
            None => Err(format!("secret {arn} is binary; it must be JSON text")),
        },
        Err(e) => Err(format!("cannot read the credentials secret {arn}: {e}")),
    }
}

/// The connector's state between events.
struct Connector {
    settings: Settings,
    handle: Handle,
    client: reqwest::Client,
    /// `None` while the secret cannot be read; read again before a send.
    credentials: Option<Credentials>,
    buffer: VecDeque<Metric>,
    /// A batch is out; one at a time.
    calling: bool,
    backoff: Backoff,
    /// No send (nor secret read) before this, after a failure.
    not_before: Instant,
    last_publish: Instant,
    /// Series counted so far, for the response ids.
    counter: u64,
    /// A retryable failure: try again once the backoff ends.
    retry_pending: bool,
}

impl Uploader for Connector {
    type Done = Outcome;

    async fn on_message(&mut self, m: Delivery) -> Result<(), SdkError> {
        let now = format_time(time::OffsetDateTime::now_utc());
        match parse_input(&m.payload, &self.settings.default_table, &now) {
            Ok(metric) => {
                if self.buffer.len() >= self.settings.max_retain {
                    if let Some(old) = self.buffer.pop_front() {
                        report_dropped(&self.handle, &old, self.settings.max_retain).await?;
                    }
                }
                self.buffer.push_back(metric);
                Ok(())
            }
            Err(invalid) => {
                self.handle
                    .warn(format!("input refused: {}", invalid.message));
                publish(
                    &self.handle,
                    &fail_status(
                        "InvalidInputException",
                        &invalid.message,
                        invalid.id.as_deref(),
                    ),
                )
                .await
            }
        }
    }

    async fn send_ready(&mut self, calls: &Calls<Outcome>) -> Result<(), SdkError> {
        let due = self.retry_pending
            || self.buffer.len() >= self.settings.batch_size
            || self.last_publish.elapsed() >= self.settings.interval;
        if self.calling || !due || self.buffer.is_empty() || Instant::now() < self.not_before {
            return Ok(());
        }
        let handle = &self.handle;
        let arn = &self.settings.secret_arn;
        if self.credentials.is_none() {
            match read_credentials(handle, arn).await {
                Ok(c) => {
                    handle.info(format!("credentials secret {arn} read"));
                    self.credentials = Some(c);
                }
                Err(e) => {
                    handle.warn(format!("{e}; {} metrics kept buffered", self.buffer.len()));
                    publish(handle, &fail_status("SecretError", &e, None)).await?;
                    self.not_before = Instant::now() + self.backoff.next_delay();
                }
            }
        }
        if let Some(creds) = self.credentials.clone() {
            let n = self.settings.batch_size.min(self.buffer.len());
            let batch: Vec<Metric> = self.buffer.drain(..n).collect();
            let series = group(batch);
            let first = self.counter;
            self.counter += series.len() as u64;
            self.last_publish = Instant::now();
            self.retry_pending = false;
            self.calling = true;
            calls.spawn(send_all(
                self.client.clone(),
                self.settings.base.clone(),
                creds,
                series,
                first,
            ));
        }
        Ok(())
    }

    async fn on_done(&mut self, outcome: Outcome) -> Result<(), SdkError> {
        self.calling = false;
        for status in &outcome.statuses {
            publish(&self.handle, status).await?;
        }
        match outcome.retry {
            None => self.backoff.reset(),
            Some((unsent, message)) => {
                let count: usize = unsent.iter().map(|s| s.values.len()).sum();
                self.handle.warn(format!(
                    "{count} metric values not sent ({message}); retrying in {} ms",
                    self.backoff.peek().as_millis()
                ));
                let metrics: Vec<Metric> =
                    unsent.into_iter().flat_map(Series::into_metrics).collect();
                for m in metrics.into_iter().rev() {
                    self.buffer.push_front(m);
                }
                while self.buffer.len() > self.settings.max_retain {
                    if let Some(old) = self.buffer.pop_front() {
                        report_dropped(&self.handle, &old, self.settings.max_retain).await?;
                    }
                }
                self.not_before = Instant::now() + self.backoff.next_delay();
                self.retry_pending = true;
            }
        }
        Ok(())
    }

    fn on_lost(&mut self) {
        self.calling = false;
        self.handle.error("a batch's sender stopped unexpectedly");
    }

    /// No publish-interval ticker: the interval runs from the last
    /// publish, which [`Uploader::next_wake`] follows.
    fn on_tick(&mut self) {}

    fn next_wake(&self) -> Option<Instant> {
        // The interval's end, or the end of a backoff.
        if self.buffer.is_empty() || self.calling {
            None
        } else if self.retry_pending {
            Some(self.not_before)
        } else {
            Some((self.last_publish + self.settings.interval).max(self.not_before))
        }
    }

    fn calling(&self) -> bool {
        self.calling
    }
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let client = evergreen_aws::http_client();
    let credentials = match read_credentials(&handle, &settings.secret_arn).await {
        Ok(c) => Some(c),
        Err(e) => {
            handle.error(format!(
                "{e}; metrics are kept buffered until it can be read"
            ));
            None
        }
    };
    let mut connector = Connector {
        settings,
        handle: handle.clone(),
        client,
        credentials,
        buffer: VecDeque::new(),
        calling: false,
        backoff: Backoff::new(FIRST_BACKOFF, MAX_BACKOFF),
        not_before: Instant::now(),
        last_publish: Instant::now(),
        counter: 0,
        retry_pending: false,
    };
    // No last send at shutdown: what is buffered is reported as not sent.
    Uploads::new()
        .run(&mut component, &handle, &mut connector, None)
        .await?;
    if !connector.buffer.is_empty() {
        handle.warn(format!(
            "stopping with {} metrics not sent",
            connector.buffer.len()
        ));
    }
    handle.info("stopping");
    Ok(())
}

async fn report_dropped(handle: &Handle, old: &Metric, max: usize) -> Result<(), SdkError> {
    let message = format!(
        "buffer full ({MAX_RETAIN} {max}): dropped the oldest metric {} of {}/{} at {}",
        old.metric_name, old.table, old.subject, old.timestamp
    );
    handle.warn(&message);
    publish(
        handle,
        &fail_status("MetricDroppedException", &message, None),
    )
    .await
}

#[cfg(test)]
mod tests;
