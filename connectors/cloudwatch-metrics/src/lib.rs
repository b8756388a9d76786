//! The `CloudWatchMetrics` connector (Greengrass versions 1–5): metrics
//! published on `cloudwatch/metric/put` go to Amazon CloudWatch with
//! `PutMetricData`.
//!
//! **Input.** `{"request": {"namespace": "…", "metricData": {"metricName",
//! "dimensions": [{"name", "value"}], "timestamp", "value", "unit"}}}`, one
//! datum per message. `namespace` must not be empty, start with `:` or with
//! `AWS/`; `metricName` and `value` are required; at most 10 dimensions;
//! `timestamp` is seconds since the epoch (fractions kept to the
//! millisecond; the receive time when absent); `value` is 0 or a magnitude
//! from 8.515920e-109 to 1.174271e+108; `unit` one of CloudWatch's units.
//! A message that breaks any of this gets
//! `{"response": {"namespace", "error": "InvalidInputException",
//! "error_message": "<the bad field and why>", "status": "fail"}}` at once
//! (`namespace` left out when the message had no string there). The
//! reference documents no `id` for this connector; none is read or echoed.
//!
//! **coreName.** Every datum gets the dimension `coreName` = the core's
//! thing name, as Greengrass adds it. A message's own `coreName` dimension
//! is replaced by it (CloudWatch refuses repeated dimension names, and the
//! connector's is the one dashboards rely on); it does not count against
//! the 10.
//!
//! **Batching.** Metrics are buffered per namespace. A namespace publishes
//! as soon as it holds 20 metrics (one `PutMetricData` takes at most 20), and
//! every `PublishInterval` seconds every namespace publishes what it holds,
//! in calls of at most 20 metrics and an estimated 40 KB. `PublishInterval`
//! 0 publishes as metrics arrive (what arrives while a call is out goes in
//! the next one). One call per namespace is out at a time; the order of
//! publishes across namespaces is not guaranteed, as the guide says.
//!
//! **Statuses.** One `{"response": {"cloudwatch_rid": <RequestId>,
//! "namespace", "status": "success"}}` per successful call, one
//! `{"response": {"namespace", "error": <service code>, "error_message",
//! "status": "fail"}}` per call that failed for good.
//!
//! **Retention.** `MaxMetricsToRetain` bounds the metrics held across all
//! namespaces, counting those whose call is out (so a retried batch always
//! fits back). When it is full, a new metric replaces the **oldest queued
//! metric of its own namespace** (the dropped ones are counted; the first
//! drop and every 1000th are logged at WARN with the count, and the total at
//! shutdown). A new metric whose namespace has nothing queued to replace is
//! refused with `{"response": {"namespace", "error":
//! "BufferFullException", …, "status": "fail"}}` (the guide does not say;
//! Evergreen's choice). Metrics are in memory only, lost on restart, as in
//! Greengrass.
//!
//! **Retries.** A call that gets no answer, a 5xx, a 429, throttling
//! (`Throttling`) or stale credentials (`evergreen_aws::AwsError::is_retryable`)
//! puts its metrics back at the front of their namespace's queue so they
//! go in the next batch, and the namespace waits 250 ms, doubling per
//! failure in a row up to 20 s. Other errors (`InvalidParameterValue`,
//! access denied) fail the batch: one fail status, the metrics dropped.
//!
//! **Parameters.** As in Greengrass. `PublishRegion`, when set, is the
//! region the metrics go to (signing region and endpoint; endpoint
//! overrides of the core configuration still apply). `PublishInterval`'s
//! pattern admits 901–999 although the guide says 0–900 (a doc
//! inconsistency): such values are used as 900, with a warning.
//! `MemorySize` is accepted and logged; Evergreen does not cap connector
//! memory with it. Version 5's fix (metrics with equal timestamps) is how
//! every version behaves here.
//!
//! **Lifecycle.** Long-lived (pinned): an on-demand stop would lose the
//! buffer. On shutdown it makes one last send within half the grace period.

pub mod api;
pub mod buffer;
pub mod request;
pub mod status;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evergreen_aws::{AwsClient, AwsError};
use evergreen_connector_kit::manifest;
use evergreen_connector_kit::uploader::{self, Calls, Uploader};
use evergreen_connector_kit::{Notes, Params};
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Handle, SdkError};
use evergreen_ipc::{ComponentConfig, Delivery};
use tokio::time::Instant;

use crate::buffer::{buffer, Admission, Batch, Buffer};
use crate::status::STATUS_TOPIC;

const PUBLISH_INTERVAL: &str = "PublishInterval";
const PUBLISH_REGION: &str = "PublishRegion";
const MEMORY_SIZE: &str = "MemorySize";
const MAX_METRICS: &str = "MaxMetricsToRetain";

/// The error of a metric refused because the buffer is full.
pub const BUFFER_FULL: &str = "BufferFullException";
/// The longest `PublishInterval` the guide allows.
pub const MAX_INTERVAL_S: u64 = 900;
/// The smallest `MaxMetricsToRetain` the pattern allows.
pub const MIN_RETAIN: usize = 2000;

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "CloudWatchMetrics",
    versions: &[1, 2, 3, 4, 5],
    description: "Publishes metrics received on cloudwatch/metric/put to Amazon CloudWatch (PutMetricData), \
                  batched per namespace, with a coreName dimension; statuses on cloudwatch/metric/put/status.",
    parameters: &[
        ParameterSpec::new(
            PUBLISH_INTERVAL,
            "Most seconds (0-900) a namespace's metrics wait before they are published; 0 publishes as received.",
        )
        .required()
        .pattern("[0-9]|[1-9]\\d|[1-9]\\d\\d|900"),
        ParameterSpec::new(PUBLISH_REGION, "Region to publish to, when not the core's.")
            .pattern("^$|([a-z]{2}-[a-z]+-\\d{1})"),
        ParameterSpec::new(MEMORY_SIZE, "Memory (KB) allocated to the connector; logged only.")
            .required()
            .pattern("^[0-9]+$"),
        ParameterSpec::new(
            MAX_METRICS,
            "Most metrics kept across namespaces (2000 or more); when full, a new metric replaces the oldest of its namespace.",
        )
        .required()
        .pattern("^([2-9]\\d{3}|[1-9]\\d{4,})$"),
        manifest::isolation_mode(4),
    ],
    inputs: &[request::INPUT_TOPIC],
    outputs: &[STATUS_TOPIC],
    ..manifest::AWS_SERVICE
};

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Zero: publish as received.
    pub publish_interval: Duration,
    /// The region to publish to (`PublishRegion`, else the core's).
    pub region: String,
    pub max_metrics: usize,
    /// The `coreName` dimension's value.
    pub core_name: String,
}

impl Settings {
    /// The settings, and what to log about them once the link is up.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Notes) {
        let mut p = Params::new(config);
        let interval = p.capped(
            PUBLISH_INTERVAL,
            MAX_INTERVAL_S,
            0,
            "0 (publish as received)",
        );
        let max_metrics = p.at_least(MAX_METRICS, MIN_RETAIN);
        let region = match p.raw(PUBLISH_REGION) {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => config.region.clone(),
        };
        p.note_memory_size(MEMORY_SIZE);
        p.info(format!(
            "publishing to CloudWatch in {region} {}, keeping at most {max_metrics} metrics, coreName {}",
            if interval == 0 {
                "as metrics arrive".to_string()
            } else {
                format!("every {interval} s or per 20 metrics of a namespace")
            },
            config.core_thing_name
        ));
        p.finish(Settings {
            publish_interval: Duration::from_secs(interval),
            region,
            max_metrics,
            core_name: config.core_thing_name.clone(),
        })
    }
}

/// A call's outcome, sent back to the main loop by the task that made it.
#[derive(Debug)]
struct Done {
    batch: Batch,
    answer: Result<String, AwsError>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn error_code(e: &AwsError) -> (String, String) {
    e.code_and_detail()
}

/// The connector's state between events.
struct Connector {
    settings: Settings,
    handle: Handle,
    client: AwsClient,
    buffer: Buffer,
    /// Metrics dropped to make room (the oldest of their namespace).
    replaced: u64,
    /// New metrics refused (their namespace had nothing to replace).
    refused: u64,
}

impl Connector {
    async fn publish(&self, payload: Vec<u8>) -> Result<(), SdkError> {
        self.handle.publish_or_log(STATUS_TOPIC, payload).await
    }

    /// Counts a metric lost to the bound and logs the first and then every
    /// 1000th of each kind, not one line per metric.
    fn count_drop(&mut self, replaced: bool, what: &str) {
        let count = if replaced {
            self.replaced += 1;
            self.replaced
        } else {
            self.refused += 1;
            self.refused
        };
        if count % 1000 == 1 {
            self.handle.warn(format!(
                "{MAX_METRICS} ({}) reached: {what} ({count} {} so far)",
                self.settings.max_metrics,
                if replaced {
                    "metrics dropped"
                } else {
                    "metrics refused"
                }
            ));
        }
    }
}

impl Uploader for Connector {
    type Done = Done;

    async fn on_message(&mut self, m: Delivery) -> Result<(), SdkError> {
        let payload = m.payload.as_slice();
        let metric = match request::parse(payload, &self.settings.core_name, now_ms()) {
            Ok(m) => m,
            Err(e) => {
                self.handle.warn(format!("refused a metric: {}", e.message));
                return self
                    .publish(status::failure(
                        e.namespace.as_deref(),
                        request::INVALID_INPUT,
                        &e.message,
                    ))
                    .await;
            }
        };
        match self.buffer.offer(&metric.namespace, metric.datum) {
            Admission::Queued => Ok(()),
            Admission::ReplacedOldest(old) => {
                self.count_drop(
                    true,
                    &format!(
                        "dropped the oldest queued metric of namespace {} ({})",
                        metric.namespace, old.metric_name
                    ),
                );
                Ok(())
            }
            Admission::Refused(_) => {
                let message = format!(
                    "{MAX_METRICS} ({}) reached and namespace {} has no queued metric to replace; metric refused",
                    self.settings.max_metrics, metric.namespace
                );
                self.count_drop(false, "refused a metric");
                self.publish(status::failure(
                    Some(&metric.namespace),
                    BUFFER_FULL,
                    &message,
                ))
                .await
            }
        }
    }

    async fn send_ready(&mut self, calls: &Calls<Done>) -> Result<(), SdkError> {
        for batch in self
            .buffer
            .take_ready(Instant::now().into_std(), api::estimated_size)
        {
            let client = self.client.clone();
            calls.spawn(async move {
                let params = api::params(&batch.key, &batch.items);
                let answer = client
                    .query(api::SERVICE, api::VERSION, api::ACTION, &params)
                    .await;
                Done { batch, answer }
            });
        }
        Ok(())
    }

    async fn on_done(&mut self, done: Done) -> Result<(), SdkError> {
        let Done { batch, answer } = done;
        let n = batch.items.len();
        let now = Instant::now().into_std();
        match answer {
            Ok(xml) => {
                self.buffer.finish(&batch.key, n, vec![], now);
                let rid = evergreen_aws::xml_value(&xml, "RequestId").unwrap_or_default();
                self.publish(status::success(&batch.key, &rid)).await
            }
            Err(e) if e.is_retryable() => {
                let (code, message) = error_code(&e);
                self.handle.warn(format!(
                    "{n} metrics of namespace {}: {code} ({message}); will retry",
                    batch.key
                ));
                self.buffer.finish(&batch.key, 0, batch.items, now);
                Ok(())
            }
            Err(e) => {
                let (code, message) = error_code(&e);
                self.handle.error(format!(
                    "{n} metrics of namespace {} dropped: {code} ({message})",
                    batch.key
                ));
                self.buffer.finish(&batch.key, n, vec![], now);
                self.publish(status::failure(Some(&batch.key), &code, &message))
                    .await
            }
        }
    }

    fn on_tick(&mut self) {
        self.buffer.mark_all_due();
    }

    fn next_wake(&self) -> Option<Instant> {
        self.buffer.next_retry().map(Instant::from_std)
    }

    fn calling(&self) -> bool {
        self.buffer.calling()
    }
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let base = AwsClient::new(component.config(), handle.clone());
    let client = if base.region() == settings.region {
        base
    } else {
        base.with_region(&settings.region)
    };
    let immediate = settings.publish_interval.is_zero();
    // Interval 0 never ticks: `immediate` sends at once.
    let interval = (!immediate).then_some(settings.publish_interval);
    let mut connector = Connector {
        buffer: buffer(settings.max_metrics, immediate),
        settings,
        handle: handle.clone(),
        client,
        replaced: 0,
        refused: 0,
    };
    uploader::run(&mut component, &handle, &mut connector, interval).await?;
    let left = connector.buffer.held();
    handle.info(format!(
        "stopping: {left} metrics not published; while the buffer was full {} were dropped and {} refused",
        connector.replaced, connector.refused
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::manifest::ISOLATION_MODE;
    use evergreen_connector_kit::testing::ManifestChecks;
    use evergreen_ipc::LogLevel;

    fn config(params: &[(&str, &str)]) -> ComponentConfig {
        evergreen_connector_kit::testing::config(&MANIFEST, 5, params)
            .core("test-core")
            .build()
    }

    #[test]
    fn manifest_patterns_say_what_the_reference_says() {
        for ok in ["0", "10", "900", "999"] {
            assert!(MANIFEST.admits(PUBLISH_INTERVAL, ok), "{ok}");
        }
        for bad in ["", "1000", "-1", "05"] {
            assert!(!MANIFEST.admits(PUBLISH_INTERVAL, bad), "{bad}");
        }
        for ok in ["", "us-west-2", "eu-central-1"] {
            assert!(MANIFEST.admits(PUBLISH_REGION, ok), "{ok}");
        }
        assert!(!MANIFEST.admits(PUBLISH_REGION, "uswest2"));
        for ok in ["2000", "9999", "10000"] {
            assert!(MANIFEST.admits(MAX_METRICS, ok), "{ok}");
        }
        for bad in ["1999", "100", "abc"] {
            assert!(!MANIFEST.admits(MAX_METRICS, bad), "{bad}");
        }
        assert_eq!(
            MANIFEST.parameter(ISOLATION_MODE).map(|p| p.since_version),
            Some(4)
        );
        MANIFEST.assert_filters_valid();
        assert!(MANIFEST.aws && MANIFEST.pinned);
    }

    #[test]
    fn settings_follow_the_parameters() {
        let (s, notes) = Settings::from_config(&config(&[
            (PUBLISH_INTERVAL, "10"),
            (MEMORY_SIZE, "65535"),
            (MAX_METRICS, "5000"),
        ]));
        assert_eq!(
            s,
            Settings {
                publish_interval: Duration::from_secs(10),
                region: "us-east-1".into(),
                max_metrics: 5000,
                core_name: "test-core".into(),
            }
        );
        assert!(notes.iter().all(|(l, _)| *l == LogLevel::Info), "{notes:?}");
        let (s, notes) = Settings::from_config(&config(&[
            (PUBLISH_INTERVAL, "999"),
            (PUBLISH_REGION, "eu-west-1"),
            (MAX_METRICS, "2000"),
        ]));
        assert_eq!(s.publish_interval, Duration::from_secs(900));
        assert_eq!(s.region, "eu-west-1");
        assert!(notes
            .iter()
            .any(|(l, m)| *l == LogLevel::Warn && m.contains("above 900")));
    }
}
