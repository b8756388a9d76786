//! The upload task: takes queued samples one at a time, puts each into S3
//! (PutObject, retried with backoff a bounded number of times), and hands
//! back the statuses, prediction messages, metrics and log lines that
//! follow, in V1's order: `SampleSize` before the upload; then
//! `SampleUploadSuccess`, the success status, the prediction message and
//! `SampleAndPredictionPublished`; or `SampleUploadFailure` and the
//! failure status. It never answers invocations and never sees the link:
//! what it produces goes to the connector's loop as [`Output`]s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use evergreen_aws::{AwsClient, AwsError, Method, RawAnswer};
use evergreen_connector_kit::Backoff;
use evergreen_ipc::LogLevel;
use tokio::sync::mpsc;

use crate::intake::{Output, Sample};
use crate::messages::{self, Metric, PREDICTION_TOPIC};

/// How a failed PutObject is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all (at least 1).
    pub tries: u32,
    /// The first wait and its cap (jittered, doubling).
    pub initial: Duration,
    pub max: Duration,
}

/// Five tries over at most 7.5 s of waiting: an S3 outage longer than that
/// fails the sample rather than holding the queue (each try is also bounded
/// by the client's 30 s call timeout).
pub const RETRY: Retry = Retry {
    tries: 5,
    initial: Duration::from_millis(500),
    max: Duration::from_secs(4),
};

/// One PutObject of `sample` under `key`, tried as `retry` says while the
/// failure is retryable: the answer or the last error, with the tries made.
pub async fn put_object(
    aws: &AwsClient,
    sample: &Sample,
    key: &str,
    retry: &Retry,
    log: &mpsc::Sender<Output>,
) -> (Result<RawAnswer, AwsError>, u32) {
    let url = aws.s3_object_url(&sample.config.bucket, key);
    let meta = messages::metadata_headers(&sample.metadata);
    let mut headers: Vec<(&str, &str)> =
        vec![("content-type", sample.config.content_type.as_str())];
    headers.extend(meta.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut backoff = Backoff::jittered(retry.initial, retry.max);
    let mut tries = 0;
    loop {
        tries += 1;
        let result = aws
            .signed_request("s3", Method::PUT, &url, &headers, sample.body.clone())
            .await;
        match result {
            Err(e) if e.is_retryable() && tries < retry.tries.max(1) => {
                let wait = backoff.next_delay();
                let _ = log
                    .send(Output::Log(
                        LogLevel::Warn,
                        format!(
                            "[RequestId: {}] upload to s3://{}/{key}: {e}; try {tries} of {}, \
                             retrying in {} ms",
                            sample.request_id,
                            sample.config.bucket,
                            retry.tries,
                            wait.as_millis()
                        ),
                    ))
                    .await;
                tokio::time::sleep(wait).await;
            }
            other => return (other, tries),
        }
    }
}

/// Uploads one sample under a fresh UUID key and reports what follows.
/// `Err` when the connector's loop is gone.
pub async fn process(
    aws: &AwsClient,
    retry: &Retry,
    sample: Sample,
    out: &mpsc::Sender<Output>,
) -> Result<(), mpsc::error::SendError<Output>> {
    let id = sample.request_id.clone();
    let key = messages::object_key(&sample.config, &uuid::Uuid::new_v4().to_string());
    let bucket = sample.config.bucket.clone();
    out.send(Output::metric(
        Metric::SampleSize,
        u64::try_from(sample.body.len()).unwrap_or(u64::MAX),
    ))
    .await?;
    let (result, tries) = put_object(aws, &sample, &key, retry, out).await;
    match result {
        Ok(answer) => {
            out.send(Output::metric(Metric::SampleUploadSuccess, 1))
                .await?;
            out.send(Output::status(messages::success_status(
                &id,
                messages::s3_response(&answer, &bucket, &key, tries - 1),
            )))
            .await?;
            out.send(Output::Publish {
                topic: PREDICTION_TOPIC,
                payload: messages::prediction_message(
                    &bucket,
                    &key,
                    &sample.prediction,
                    &sample.config_id,
                    &sample.metadata,
                ),
            })
            .await?;
            out.send(Output::metric(Metric::SampleAndPredictionPublished, 1))
                .await?;
            out.send(Output::Log(
                LogLevel::Info,
                format!(
                    "[RequestId: {id}] Successfully uploaded model input to s3://{bucket}/{key} \
                     and published model prediction."
                ),
            ))
            .await
        }
        Err(e) => {
            let (code, detail) = e.code_and_detail();
            let message = messages::upload_failed_message(&id, &code, &detail, tries);
            out.send(Output::Log(LogLevel::Warn, message.clone()))
                .await?;
            out.send(Output::metric(Metric::SampleUploadFailure, 1))
                .await?;
            out.send(Output::status(messages::failure_status(
                &id, &code, &message,
            )))
            .await
        }
    }
}

/// Uploads queued samples until the queue's senders are gone, counting
/// each one off `held` when it is done.
pub async fn run(
    aws: AwsClient,
    retry: Retry,
    mut queue: mpsc::Receiver<Sample>,
    held: Arc<AtomicUsize>,
    out: mpsc::Sender<Output>,
) {
    while let Some(sample) = queue.recv().await {
        let result = process(&aws, &retry, sample, &out).await;
        held.fetch_sub(1, Ordering::SeqCst);
        if result.is_err() {
            return;
        }
    }
}
