//! The inference thread and what surrounds a request on the IPC side: a
//! bounded queue in front of one thread that owns the model (tract is
//! synchronous and a model run takes a core), the per-request timeout, and
//! the translation between V1's ML SDK invokes and [`Handler::handle`].
//!
//! A request's time (`LocalInferenceServiceTimeoutSeconds`) runs from its
//! arrival: the caller stops waiting then, and the thread skips a request
//! whose time has passed before it starts, so a backlog drains quickly. A
//! run that has started cannot be interrupted; its late result is dropped.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use evergreen_ipc::InvokeOutcome;
use tokio::sync::oneshot;

use crate::error::InferenceError;
use crate::model::Model;

/// Requests that may wait for the inference thread. A model run takes
/// milliseconds to a second; sixteen waiting covers bursts from a few
/// cameras while a caller of a saturated service hears "busy" at once
/// rather than a timeout later.
pub const QUEUE: usize = 16;

/// What the inference thread runs for each request ([`Model`] in the
/// connector; slow or blocking stand-ins in tests of the queue and timeout).
pub trait Handler: Send + 'static {
    fn handle(
        &self,
        content_type: &str,
        accept: &str,
        body: &[u8],
    ) -> Result<String, InferenceError>;
}

impl Handler for Model {
    fn handle(
        &self,
        content_type: &str,
        accept: &str,
        body: &[u8],
    ) -> Result<String, InferenceError> {
        Model::handle(self, content_type, accept, body)
    }
}

/// One request as V1's ML SDK sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub content_type: String,
    pub accept: String,
    pub body: Vec<u8>,
}

impl Request {
    /// Reads an invoke: the client context is V1's
    /// `{"custom": {"Content-Type": …, "Accept": …}}` (JSON, already
    /// base64-decoded), the payload is the body.
    pub fn from_invoke(client_context: &[u8], payload: Vec<u8>) -> Result<Self, InferenceError> {
        if client_context.iter().all(u8::is_ascii_whitespace) {
            return Err(InferenceError::NoContentType);
        }
        let context: serde_json::Value = serde_json::from_slice(client_context)
            .map_err(|e| InferenceError::ClientContext(e.to_string()))?;
        let header = |name: &str| -> Result<String, InferenceError> {
            match context.get("custom").and_then(|c| c.get(name)) {
                None | Some(serde_json::Value::Null) => Ok(String::new()),
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(InferenceError::ClientContext(format!(
                    "custom.{name} is {other}, not a string"
                ))),
            }
        };
        let content_type = header("Content-Type")?;
        if content_type.trim().is_empty() {
            return Err(InferenceError::NoContentType);
        }
        Ok(Request {
            content_type,
            accept: header("Accept")?,
            body: payload,
        })
    }
}

/// The invoke result for a request's outcome: on success V1's
/// `{"Body": "<result>", "ContentType": "application/json"}` (the ML SDK
/// `json.loads` it and wraps `Body`), else a `Handled` function error whose
/// payload is the message (the SDK raises `GreengrassInferenceException`).
pub fn outcome(result: Result<String, InferenceError>) -> InvokeOutcome {
    match result {
        Ok(body) => InvokeOutcome::ok(
            serde_json::json!({ "Body": body, "ContentType": "application/json" }).to_string(),
        ),
        Err(e) => InvokeOutcome::handled(e.to_string()),
    }
}

/// The ML Feedback connector's function name (V1's ML SDK feedback client
/// invokes `arn:aws:lambda:<region>:aws:function:MLFeedback`).
pub const FEEDBACK_FUNCTION: &str = "MLFeedback";

/// What image classification v2 sends the ML Feedback connector for one
/// classified image (`MLFeedbackConnectorConfigId`): the function ARN, the
/// client context the ML SDK's `feedback.publish` sends
/// (`{"custom": {"ConfigId", "ModelPrediction", "Metadata"}}`) and the
/// image as payload. `None` when the body is not a classification result.
pub fn feedback_invoke(
    region: &str,
    config_id: &str,
    service_name: &str,
    request: &Request,
    body: &str,
) -> Option<(String, Vec<u8>, Vec<u8>)> {
    let prediction: Vec<f32> = serde_json::from_str(body).ok()?;
    let context = serde_json::json!({"custom": {
        "ConfigId": config_id,
        "ModelPrediction": prediction,
        "Metadata": {"service-name": service_name, "content-type": request.content_type},
    }});
    Some((
        format!("arn:aws:lambda:{region}:aws:function:{FEEDBACK_FUNCTION}"),
        context.to_string().into_bytes(),
        request.body.clone(),
    ))
}

struct Job {
    request: Request,
    deadline: Instant,
    reply: oneshot::Sender<Result<String, InferenceError>>,
}

/// The running inference thread: requests go in through a bounded queue.
/// Dropping the service closes the queue; the thread ends after the
/// request it is running.
#[derive(Debug)]
pub struct Service {
    queue: SyncSender<Job>,
    capacity: usize,
    timeout: Duration,
}

/// A submitted request's answer, to be awaited within the timeout.
#[derive(Debug)]
pub struct Pending {
    reply: oneshot::Receiver<Result<String, InferenceError>>,
    timeout: Duration,
}

impl Pending {
    /// The answer, or [`InferenceError::Timeout`] once the request's time
    /// (counted from its submission) has passed.
    pub async fn answer(self) -> Result<String, InferenceError> {
        match tokio::time::timeout(self.timeout, self.reply).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(InferenceError::Stopped),
            Err(_) => Err(InferenceError::Timeout(self.timeout)),
        }
    }
}

impl Service {
    /// Starts the inference thread over `handler` with `queue` places and
    /// `timeout` per request.
    pub fn spawn(
        handler: impl Handler,
        queue: usize,
        timeout: Duration,
    ) -> std::io::Result<Service> {
        let (tx, rx) = sync_channel::<Job>(queue);
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || {
                for job in rx {
                    // The caller has gone (its time passed): do not run it.
                    if job.reply.is_closed() || Instant::now() >= job.deadline {
                        continue;
                    }
                    let r = &job.request;
                    // A panic inside tract on one odd input must not take
                    // the service down for every later caller: it becomes
                    // that request's error. (Nothing is shared across the
                    // boundary but the model, which a run does not mutate.)
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        handler.handle(&r.content_type, &r.accept, &r.body)
                    }))
                    .unwrap_or_else(|_| {
                        Err(InferenceError::Inference(
                            "the inference engine panicked on this request".into(),
                        ))
                    });
                    let _ = job.reply.send(result);
                }
            })?;
        Ok(Service {
            queue: tx,
            capacity: queue,
            timeout,
        })
    }

    /// Queues `request`: refused at once when the queue is full.
    pub fn submit(&self, request: Request) -> Result<Pending, InferenceError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            request,
            deadline: Instant::now() + self.timeout,
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => Ok(Pending {
                reply: rx,
                timeout: self.timeout,
            }),
            Err(TrySendError::Full(_)) => Err(InferenceError::QueueFull(self.capacity)),
            Err(TrySendError::Disconnected(_)) => Err(InferenceError::Stopped),
        }
    }

    /// Submits `request` and waits for its answer within the timeout.
    pub async fn infer(&self, request: Request) -> Result<String, InferenceError> {
        self.submit(request)?.answer().await
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
// A failed unwrap is the test failing.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_contexts() {
        let r = Request::from_invoke(
            br#"{"custom": {"Content-Type": "image/png", "Accept": "application/json"}}"#,
            b"x".to_vec(),
        )
        .unwrap();
        assert_eq!(r.content_type, "image/png");
        assert_eq!(r.accept, "application/json");
        assert_eq!(r.body, b"x");
        let r =
            Request::from_invoke(br#"{"custom": {"Content-Type": "image/jpeg"}}"#, vec![]).unwrap();
        assert_eq!(r.accept, "");
        assert_eq!(
            Request::from_invoke(b"", vec![]),
            Err(InferenceError::NoContentType)
        );
        assert_eq!(
            Request::from_invoke(br#"{"custom": {}}"#, vec![]),
            Err(InferenceError::NoContentType)
        );
        assert!(matches!(
            Request::from_invoke(br#"{"custom": {"Content-Type": 5}}"#, vec![]),
            Err(InferenceError::ClientContext(_))
        ));
        assert!(matches!(
            Request::from_invoke(b"eyJjdXN0b20iOiB7fX0=", vec![]),
            Err(InferenceError::ClientContext(_))
        ));
    }

    #[test]
    fn feedback_invokes_are_the_ml_sdks() {
        let request = Request {
            content_type: "image/png".into(),
            accept: String::new(),
            body: b"png".to_vec(),
        };
        let (arn, context, payload) =
            feedback_invoke("eu-west-1", "cfg-1", "svc", &request, "[0.25,0.75]").unwrap();
        assert_eq!(arn, "arn:aws:lambda:eu-west-1:aws:function:MLFeedback");
        assert_eq!(payload, b"png");
        let v: serde_json::Value = serde_json::from_slice(&context).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"custom": {"ConfigId": "cfg-1", "ModelPrediction": [0.25, 0.75],
                "Metadata": {"service-name": "svc", "content-type": "image/png"}}})
        );
        assert!(feedback_invoke("r", "c", "s", &request, "{}").is_none());
    }

    #[test]
    fn outcomes_are_what_the_ml_sdk_reads() {
        let ok = outcome(Ok("[0.5,0.5]".into()));
        assert_eq!(ok.function_error, "");
        let v: serde_json::Value = serde_json::from_slice(&ok.payload).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Body": "[0.5,0.5]", "ContentType": "application/json"})
        );
        let err = outcome(Err(InferenceError::Timeout(Duration::from_secs(3))));
        assert_eq!(err.function_error, "Handled");
        assert_eq!(
            String::from_utf8(err.payload).unwrap(),
            "no result within 3s (LocalInferenceServiceTimeoutSeconds)"
        );
    }
}
