//! Admission of one request: read it, find its configuration, apply the
//! sampling strategy, and put a kept sample into the bounded upload queue.
//! It never waits: the invocation is answered as soon as this returns, and
//! what it publishes (statuses and metrics for requests that end here) is
//! handed back as [`Output`]s for the caller to send.
//!
//! **Sampling happens here, not in the uploader** (V1 sampled in its
//! upload thread): a sample the strategy drops never takes a place in the
//! queue, so with a low sampling rate a slow S3 does not get requests that
//! would have been dropped anyway refused as throttled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use evergreen_ipc::LogLevel;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::messages::{self, Metric, INVALID_INPUT, QUEUE_FULL, STATUS_TOPIC};
use crate::request::parse_context;
use crate::settings::{FeedbackConfig, Settings};

/// Something to publish or log.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Publish { topic: &'static str, payload: Value },
    Log(LogLevel, String),
}

impl Output {
    pub fn status(payload: Value) -> Output {
        Output::Publish {
            topic: STATUS_TOPIC,
            payload,
        }
    }

    pub fn metric(m: Metric, value: u64) -> Output {
        Output::Publish {
            topic: messages::METRIC_TOPIC,
            payload: messages::metric(m, value),
        }
    }
}

/// A kept sample, waiting for its upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The invocation's id: the status messages' `id`.
    pub request_id: String,
    pub config_id: String,
    pub config: Arc<FeedbackConfig>,
    pub prediction: Value,
    /// The caller's metadata with `publish-ts`.
    pub metadata: Map<String, Value>,
    /// The model input.
    pub body: Vec<u8>,
}

/// What became of a request; the answer to the invocation follows from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Queued for upload.
    Queued,
    /// Dropped by the sampling strategy (a success for the caller).
    Dropped,
    /// Refused: the invocation fails with this exception type and message
    /// (V1 raised `ValueError` for bad input, `Full` for a full queue).
    Refused {
        error_type: &'static str,
        message: String,
    },
}

/// The entry of the upload queue.
#[derive(Debug)]
pub struct Intake {
    settings: Arc<Settings>,
    queue: mpsc::Sender<Sample>,
    /// Samples queued or being uploaded, shared with the uploader (which
    /// takes one off when it is done), so a stop can say how many are lost.
    held: Arc<AtomicUsize>,
}

impl Intake {
    /// An intake over a queue of `settings.request_limit` samples; the
    /// receiver goes to the uploader.
    pub fn new(settings: Arc<Settings>) -> (Intake, mpsc::Receiver<Sample>, Arc<AtomicUsize>) {
        // A tokio channel needs room for one; the limit is at least 1.
        let (queue, rx) = mpsc::channel(settings.request_limit.max(1));
        let held = Arc::new(AtomicUsize::new(0));
        (
            Intake {
                settings,
                queue,
                held: held.clone(),
            },
            rx,
            held,
        )
    }

    /// Admits one request. `request_id` is the invocation's id, `context`
    /// its client context, `body` the model input; `now` stamps
    /// `publish-ts`; `draw` is RANDOM_SAMPLING's uniform number in `[0, 1)`.
    pub fn admit(
        &self,
        request_id: &str,
        context: &[u8],
        body: Vec<u8>,
        now: OffsetDateTime,
        draw: f64,
        out: &mut Vec<Output>,
    ) -> Admission {
        let refuse = |message: String, out: &mut Vec<Output>| {
            out.push(Output::Log(
                LogLevel::Warn,
                format!("[RequestId: {request_id}] request refused: {message}"),
            ));
            out.push(Output::metric(Metric::ErrorInvalidInput, 1));
            out.push(Output::status(messages::failure_status(
                request_id,
                INVALID_INPUT,
                &message,
            )));
            Admission::Refused {
                error_type: INVALID_INPUT,
                message,
            }
        };
        let request = match parse_context(context) {
            Ok(r) => r,
            Err(e) => return refuse(e, out),
        };
        let config = match self.settings.lookup(&request.config_id) {
            Ok(c) => c,
            Err(e) => return refuse(e, out),
        };
        if let Some(strategy) = &config.strategy {
            if let Err(e) = strategy.check(&request.prediction) {
                return refuse(
                    format!(
                        "ModelPrediction {e} (feedback configuration {:?} samples by {})",
                        request.config_id,
                        strategy.name()
                    ),
                    out,
                );
            }
            if !strategy.keeps(&request.prediction, draw) {
                out.push(Output::Log(
                    LogLevel::Info,
                    format!(
                        "[RequestId: {request_id}] Model input and model prediction were dropped \
                         by the configured sampling strategy for feedback configuration with id: {}",
                        request.config_id
                    ),
                ));
                out.push(Output::metric(Metric::SampleNotUsed, 1));
                out.push(Output::status(messages::dropped_status(request_id)));
                return Admission::Dropped;
            }
        }
        let mut metadata = request.metadata;
        metadata.retain(|k, _| !k.eq_ignore_ascii_case(messages::PUBLISH_TS));
        metadata.insert(
            messages::PUBLISH_TS.into(),
            Value::String(messages::publish_ts(now)),
        );
        let sample = Sample {
            request_id: request_id.to_string(),
            config_id: request.config_id,
            config,
            prediction: request.prediction,
            metadata,
            body,
        };
        // Counted before it is queued: the uploader may finish it (and
        // count it off) before `try_send` returns on another thread.
        self.held.fetch_add(1, Ordering::SeqCst);
        match self.queue.try_send(sample) {
            Ok(()) => {
                out.push(Output::Log(
                    LogLevel::Debug,
                    format!("[RequestId: {request_id}] queued for upload"),
                ));
                Admission::Queued
            }
            Err(e) => {
                self.held.fetch_sub(1, Ordering::SeqCst);
                let message = match e {
                    mpsc::error::TrySendError::Full(_) => {
                        messages::queue_full_message(self.settings.request_limit)
                    }
                    // The uploader has stopped: only while the connector stops.
                    mpsc::error::TrySendError::Closed(_) => {
                        "The connector is stopping. Dropping request.".to_string()
                    }
                };
                out.push(Output::Log(
                    LogLevel::Warn,
                    format!("[RequestId: {request_id}] {message}"),
                ));
                out.push(Output::metric(Metric::ErrorRequestThrottled, 1));
                out.push(Output::status(messages::failure_status(
                    request_id, QUEUE_FULL, &message,
                )));
                Admission::Refused {
                    error_type: "Full",
                    message,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(map: Value, limit: &str) -> Arc<Settings> {
        let map = map.to_string();
        let config = evergreen_connector_kit::testing::config(
            &crate::MANIFEST,
            1,
            &[
                (crate::settings::FEEDBACK_CONFIGURATION_MAP, map.as_str()),
                (crate::settings::REQUEST_LIMIT, limit),
            ],
        )
        .build();
        Arc::new(Settings::from_config(&config).0)
    }

    fn context(config_id: &str, prediction: Value) -> Vec<u8> {
        json!({"custom": {"ConfigId": config_id, "ModelPrediction": prediction,
            "Metadata": {"camera": "front", "Publish-TS": "old"}}})
        .to_string()
        .into_bytes()
    }

    fn statuses(out: &[Output]) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                Output::Publish { topic, payload } if *topic == STATUS_TOPIC => {
                    Some(payload.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn metrics(out: &[Output]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Publish { topic, payload } if *topic == messages::METRIC_TOPIC => payload
                    ["request"]["metricData"]["metricName"]
                    .as_str()
                    .map(str::to_string),
                _ => None,
            })
            .collect()
    }

    const NOW: OffsetDateTime = time::macros::datetime!(2019-07-11 00:12:48.816752 UTC);

    #[test]
    fn the_request_limit_refuses_what_does_not_fit() {
        let s = settings(
            json!({"all": {"s3-bucket-name": "bkt", "content-type": "image/png"}}),
            "2",
        );
        let (intake, mut rx, held) = Intake::new(s);
        let mut out = Vec::new();
        for i in 0..2 {
            let a = intake.admit(
                &format!("r{i}"),
                &context("all", json!([0.5])),
                vec![1, 2],
                NOW,
                0.0,
                &mut out,
            );
            assert_eq!(a, Admission::Queued);
        }
        assert!(
            statuses(&out).is_empty(),
            "a queued request has no status yet"
        );
        let a = intake.admit(
            "r2",
            &context("all", json!([0.5])),
            vec![3],
            NOW,
            0.0,
            &mut out,
        );
        assert_eq!(
            a,
            Admission::Refused {
                error_type: "Full",
                message: "Request limit has been reached (max request: 2 ). Dropping request."
                    .into()
            }
        );
        assert_eq!(
            statuses(&out),
            vec![json!({"response": {"status": "fail", "error": "Queue.Full",
                "error_message": "Request limit has been reached (max request: 2 ). Dropping request."},
                "id": "r2"})]
        );
        assert_eq!(metrics(&out), vec!["ErrorRequestThrottled"]);
        assert_eq!(held.load(Ordering::SeqCst), 2);
        // The uploader takes one: there is room again.
        let first = rx.try_recv().expect("queued");
        assert_eq!(first.request_id, "r0");
        assert_eq!(first.body, vec![1, 2]);
        assert_eq!(first.metadata["publish-ts"], "2019-07-11 00:12:48.816752");
        assert_eq!(first.metadata["camera"], "front");
        assert!(
            !first.metadata.contains_key("Publish-TS"),
            "the caller's stamp is replaced"
        );
        let a = intake.admit(
            "r3",
            &context("all", json!([0.5])),
            vec![4],
            NOW,
            0.0,
            &mut out,
        );
        assert_eq!(a, Admission::Queued);
    }

    #[test]
    fn the_strategy_drops_before_the_queue() {
        let s = settings(
            json!({"lc": {"s3-bucket-name": "bkt", "content-type": "image/png",
                "sampling-strategy": {"strategy-name": "LEAST_CONFIDENCE", "threshold": 0.6}},
                "rnd": {"s3-bucket-name": "bkt", "content-type": "image/png",
                "sampling-strategy": {"strategy-name": "RANDOM_SAMPLING", "rate": 0.5}}}),
            "1",
        );
        let (intake, _rx, held) = Intake::new(s);
        let mut out = Vec::new();
        // Confident: dropped, and it took no place in the queue of one.
        for i in 0..3 {
            let a = intake.admit(
                &format!("d{i}"),
                &context("lc", json!([0.9, 0.1])),
                vec![],
                NOW,
                0.0,
                &mut out,
            );
            assert_eq!(a, Admission::Dropped);
        }
        assert_eq!(held.load(Ordering::SeqCst), 0);
        assert_eq!(
            statuses(&out)[0],
            json!({"response": {"status": "sample_dropped_by_strategy"}, "id": "d0"})
        );
        assert_eq!(metrics(&out), vec!["SampleNotUsed"; 3]);
        assert_eq!(
            intake.admit(
                "r",
                &context("rnd", json!({"x": 1})),
                vec![],
                NOW,
                0.7,
                &mut out
            ),
            Admission::Dropped
        );
        assert_eq!(
            intake.admit(
                "k",
                &context("lc", json!([0.4, 0.3, 0.3])),
                vec![],
                NOW,
                0.0,
                &mut out
            ),
            Admission::Queued
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_status() {
        let s = settings(
            json!({"lc": {"s3-bucket-name": "bkt", "content-type": "image/png",
                "sampling-strategy": {"strategy-name": "LEAST_CONFIDENCE", "threshold": 0.6}},
                "bad": {"content-type": "image/png"}}),
            "",
        );
        let (intake, _rx, _held) = Intake::new(s);
        let cases = [
            (
                context("nope", json!([1])),
                "does not contain config_id: nope",
            ),
            (
                context("bad", json!([1])),
                "feedback configuration \"bad\" is invalid: s3-bucket-name is required",
            ),
            (
                context("lc", json!({"label": "cat"})),
                "ModelPrediction is a dictionary without",
            ),
            (b"{}".to_vec(), "custom is missing"),
        ];
        for (ctx, expected) in cases {
            let mut out = Vec::new();
            match intake.admit("r1", &ctx, vec![], NOW, 0.0, &mut out) {
                Admission::Refused {
                    error_type,
                    message,
                } => {
                    assert_eq!(error_type, "ValueError");
                    assert!(message.contains(expected), "{expected}: {message}");
                    let status = &statuses(&out)[0];
                    assert_eq!(status["response"]["error"], "ValueError");
                    assert_eq!(status["response"]["error_message"], message.as_str());
                    assert_eq!(metrics(&out), vec!["ErrorInvalidInput"]);
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
    }
}
