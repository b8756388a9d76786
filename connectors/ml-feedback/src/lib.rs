//! The `MLFeedback` connector (Greengrass version 1): uploads the inputs
//! of ML models to Amazon S3, chosen by a sampling strategy, and publishes
//! the models' predictions, upload statuses and CloudWatch metrics.
//!
//! **Input.** Not MQTT: the ML SDK's `feedback` client invokes the function
//! `MLFeedback` (`arn:aws:lambda:<region>:aws:function:MLFeedback`) with the
//! model input as the body and the client context
//! `{"custom": {"ConfigId", "ModelPrediction", "Metadata"}}` ([`request`]).
//! The invocation is answered as soon as the request is queued, dropped by
//! its strategy, or refused: an unknown or invalid `ConfigId`, a bad
//! context, a prediction the strategy cannot read, or a full queue are
//! answered with a `Handled` function error (the SDK raises
//! `GreengrassFeedbackException`), as V1's handler raised. Uploads never
//! hold up an answer.
//!
//! **Parameters** ([`settings`]): `FeedbackConfigurationMap` (required):
//! configuration id → `{"s3-bucket-name", "content-type", "s3-prefix"?,
//! "file-ext"?, "sampling-strategy"?}`; without a strategy every sample is
//! uploaded. `RequestLimit` (0–999): samples waiting for upload besides
//! the one being uploaded; a request beyond it is refused (`Queue.Full`).
//! Absent or 0 means 100 here (V1: unbounded). Invalid configurations are
//! logged at start and refused per request; the valid ones work.
//!
//! **Sampling** ([`sampling`]): RANDOM_SAMPLING (draw < rate),
//! LEAST_CONFIDENCE (highest confidence ≤ threshold), MARGIN (top two
//! differ by ≤ threshold), ENTROPY (entropy in nats of the confidences
//! normalised to sum 1 > threshold). Applied on arrival ([`intake`]), so a
//! dropped sample never takes a place in the queue.
//!
//! **Output** ([`messages`], [`uploader`]): S3 PutObject of the body to
//! `s3://<bucket>/<s3-prefix>/<uuid>.<file-ext>` with the configured
//! Content-Type and the metadata (with `publish-ts`, UTC) as `x-amz-meta-*`;
//! retryable failures tried 5 times with backoff. Then
//! `feedback/message/status` (success with `s3_response`,
//! `sample_dropped_by_strategy`, or fail with `error`/`error_message`),
//! `feedback/message/prediction` after a successful upload, and CloudWatch
//! Metrics connector input on `cloudwatch/metric/put` (namespace
//! `GreengrassFeedbackConnector`, no dimensions, as V1's examples).
//!
//! **Isolation.** Greengrass container only, as in V1. It uploads with
//! the core's AWS credentials (the group role's `s3:PutObject`).

pub mod intake;
pub mod messages;
pub mod request;
pub mod sampling;
pub mod settings;
pub mod uploader;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use evergreen_aws::AwsClient;
use evergreen_connector_kit::manifest;
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use evergreen_ipc::InvokeOutcome;
use serde_json::json;
use tokio::sync::mpsc;

use crate::intake::{Admission, Intake, Output};
use crate::messages::{Metric, METRIC_TOPIC, PREDICTION_TOPIC, STATUS_TOPIC};
use crate::settings::{Settings, FEEDBACK_CONFIGURATION_MAP, REQUEST_LIMIT};

/// The function name the ML SDK's feedback client invokes.
pub const FUNCTION_NAME: &str = "MLFeedback";
/// The function error of a refused request (the SDK raises on any).
pub const HANDLED: &str = "Handled";
/// How long a caller waits for the answer. Invocations are answered on
/// arrival, never after an upload, so this only covers a busy link.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// Outputs of the uploader that may wait for the link.
const OUTBOX: usize = 64;
/// Time kept back from the shutdown deadline for a clean exit.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(300);

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "MLFeedback",
    versions: &[1],
    description: "Uploads ML model inputs sent by the ML SDK's feedback client to Amazon S3, chosen by a \
                  sampling strategy; publishes predictions on feedback/message/prediction, statuses on \
                  feedback/message/status and metrics for the CloudWatch Metrics connector.",
    parameters: &[
        ParameterSpec::new(
            FEEDBACK_CONFIGURATION_MAP,
            "JSON object: configuration id -> {\"s3-bucket-name\", \"content-type\", \"s3-prefix\", \
             \"file-ext\", \"sampling-strategy\": {\"strategy-name\": RANDOM_SAMPLING|LEAST_CONFIDENCE|\
             MARGIN|ENTROPY, \"rate\"|\"threshold\"}}.",
        )
        .required()
        // A JSON object; its fields are checked when the connector starts.
        .pattern(r"\s*\{[\s\S]*\}\s*"),
        ParameterSpec::new(
            REQUEST_LIMIT,
            "Requests waiting for upload before new ones are refused (0-999; absent or 0: 100).",
        )
        .pattern("^$|^[0-9]{1,3}$"),
    ],
    inputs: &[],
    outputs: &[STATUS_TOPIC, PREDICTION_TOPIC, METRIC_TOPIC],
    isolation: manifest::CONTAINER_ONLY,
    pinned: true,
    aws: true,
};

/// The function error and payload that answer an invocation: success with
/// no payload, or `Handled` with Lambda's error document
/// `{"errorMessage", "errorType"}`.
pub fn answer_for(admission: &Admission) -> (String, Vec<u8>) {
    match admission {
        Admission::Queued | Admission::Dropped => (String::new(), Vec::new()),
        Admission::Refused {
            error_type,
            message,
        } => (
            HANDLED.to_string(),
            json!({"errorMessage": message, "errorType": error_type})
                .to_string()
                .into_bytes(),
        ),
    }
}

/// Publishes or logs one output; only a closed link is an error.
pub async fn emit(handle: &Handle, output: Output) -> Result<(), SdkError> {
    match output {
        Output::Publish { topic, payload } => {
            handle.publish_or_log(topic, payload.to_string()).await
        }
        Output::Log(level, text) => {
            handle.log(level, text);
            Ok(())
        }
    }
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    if settings.map_error.is_some() {
        emit(
            &handle,
            Output::metric(Metric::ErrorInvalidConnectorConfig, 1),
        )
        .await?;
    }
    let aws = AwsClient::new(component.config(), handle.clone());
    serve(
        &mut component,
        &handle,
        Arc::new(settings),
        aws,
        uploader::RETRY,
    )
    .await
}

/// The connector's loop over a connected component: invocations in,
/// answers and outputs out, the uploader on its own task. Public so that
/// tests can run it over in-memory pipes with their own client and retry.
pub async fn serve(
    component: &mut Component,
    handle: &Handle,
    settings: Arc<Settings>,
    aws: AwsClient,
    retry: uploader::Retry,
) -> Result<(), SdkError> {
    handle.serve(FUNCTION_NAME, SERVICE_TIMEOUT).await?;
    let (intake, queue, held) = Intake::new(settings);
    let (out_tx, mut out_rx) = mpsc::channel(OUTBOX);
    let mut worker = tokio::spawn(uploader::run(aws, retry, queue, held.clone(), out_tx));
    let mut deadline = None;
    let mut worker_ended = false;
    loop {
        tokio::select! {
            Some(output) = out_rx.recv() => emit(handle, output).await?,
            // It ends only with its queue, which lives until this loop ends:
            // anything else is a panic. Stop, so that the supervisor starts
            // the (pinned) connector again, instead of refusing every request.
            ended = &mut worker => {
                worker_ended = true;
                handle.error(format!(
                    "the upload task ended unexpectedly ({}); stopping",
                    match ended {
                        Ok(()) => "its queue closed".to_string(),
                        Err(e) => e.to_string(),
                    }
                ));
                break;
            }
            event = component.next_event() => match event {
                None => break,
                Some(Event::Shutdown { deadline: d }) => {
                    deadline = Some(d);
                    break;
                }
                Some(Event::Refused { topic, reason }) => {
                    handle.warn(format!("publish on {topic} refused: {reason}"))
                }
                Some(Event::Invoke(invocation)) => {
                    let mut outputs = Vec::new();
                    let outcome = if invocation.function_name == FUNCTION_NAME {
                        let admission = intake.admit(
                            &invocation.invocation_id,
                            &invocation.client_context,
                            invocation.payload,
                            time::OffsetDateTime::now_utc(),
                            fastrand::f64(),
                            &mut outputs,
                        );
                        answer_for(&admission)
                    } else {
                        answer_for(&Admission::Refused {
                            error_type: "ValueError",
                            message: format!(
                                "{} serves {FUNCTION_NAME}, not {}",
                                MANIFEST.name, invocation.function_name
                            ),
                        })
                    };
                    // The caller first: what follows is for the subscribers.
                    let (function_error, payload) = outcome;
                    handle
                        .answer(
                            &invocation.invocation_id,
                            InvokeOutcome {
                                function_error,
                                payload,
                            },
                        )
                        .await?;
                    for output in outputs {
                        emit(handle, output).await?;
                    }
                }
                Some(Event::Message(m)) => handle.warn(format!(
                    "{} accepts no MQTT messages (the ML SDK's feedback client invokes it): \
                     dropping the message on {} from {}",
                    MANIFEST.name, m.topic, m.source
                )),
            },
        }
    }
    // Let the uploader finish what is queued before the deadline, and say
    // what is lost when it cannot.
    drop(intake);
    if let (Some(d), false) = (deadline, worker_ended) {
        let until = tokio::time::Instant::now() + d.saturating_sub(SHUTDOWN_MARGIN) / 2;
        loop {
            tokio::select! {
                Some(output) = out_rx.recv() => emit(handle, output).await?,
                _ = &mut worker => break,
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        while let Ok(output) = out_rx.try_recv() {
            emit(handle, output).await?;
        }
    }
    if !worker_ended && !worker.is_finished() {
        worker.abort();
    }
    let lost = held.load(Ordering::SeqCst);
    if lost > 0 {
        handle.warn(format!(
            "stopping with {lost} samples not uploaded; they are lost"
        ));
    }
    handle.info("stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::testing::ManifestChecks;

    #[test]
    fn manifest_says_what_the_reference_says() {
        assert!(MANIFEST.admits(REQUEST_LIMIT, ""));
        for ok in ["0", "10", "999", "007"] {
            assert!(MANIFEST.admits(REQUEST_LIMIT, ok), "{ok}");
        }
        for bad in ["1000", "-1", "ten", "1.5"] {
            assert!(!MANIFEST.admits(REQUEST_LIMIT, bad), "{bad}");
        }
        assert!(MANIFEST.admits(FEEDBACK_CONFIGURATION_MAP, "{\n \"a1\": {}\n}"));
        assert!(!MANIFEST.admits(FEEDBACK_CONFIGURATION_MAP, "[]"));
        assert!(!MANIFEST.admits(FEEDBACK_CONFIGURATION_MAP, ""));
        MANIFEST.assert_filters_valid();
        assert!(MANIFEST.aws && MANIFEST.pinned);
        assert!(MANIFEST.isolation.container && !MANIFEST.isolation.no_container);
        assert!(MANIFEST.inputs.is_empty());
        assert_eq!(
            MANIFEST.arn("us-west-2", 1),
            "arn:aws:greengrass:us-west-2::/connectors/MLFeedback/versions/1"
        );
    }

    #[test]
    fn answers_are_success_or_a_handled_error() {
        assert_eq!(answer_for(&Admission::Queued), (String::new(), Vec::new()));
        assert_eq!(answer_for(&Admission::Dropped), (String::new(), Vec::new()));
        let (error, payload) = answer_for(&Admission::Refused {
            error_type: "Full",
            message: "Request limit has been reached (max request: 1 ). Dropping request.".into(),
        });
        assert_eq!(error, "Handled");
        let doc: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
        assert_eq!(doc["errorType"], "Full");
        assert_eq!(
            doc["errorMessage"],
            "Request limit has been reached (max request: 1 ). Dropping request."
        );
    }
}
