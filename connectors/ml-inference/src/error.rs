//! What can go wrong with one inference request. Each message is what the
//! caller reads: V1's ML SDK raises it as `GreengrassInferenceException`,
//! so it names what was sent and what was expected.

use std::time::Duration;

/// One request's failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferenceError {
    #[error("unsupported ContentType {0:?}: send image/jpeg, image/png, application/x-npy or application/octet-stream (float32)")]
    ContentType(String),
    #[error("unsupported Accept {0:?}: this service answers application/json")]
    Accept(String),
    #[error("the request carries no ContentType (the ML SDK's ContentType argument)")]
    NoContentType,
    #[error("the client context is not the ML SDK's JSON: {0}")]
    ClientContext(String),
    #[error("cannot decode the body as {format}: {reason}")]
    Decode {
        format: &'static str,
        reason: String,
    },
    #[error("the tensor has shape {got:?} but the model takes {expected:?}")]
    Shape {
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the model's output is not what this connector reads: {0}")]
    Output(String),
    #[error("the model produced a value that is not a finite number")]
    NotFinite,
    #[error("no result within {0:?} (LocalInferenceServiceTimeoutSeconds)")]
    Timeout(Duration),
    #[error("the service is busy: {0} requests are already waiting")]
    QueueFull(usize),
    #[error("the inference service has stopped")]
    Stopped,
}
