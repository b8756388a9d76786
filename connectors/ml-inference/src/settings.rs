//! The connectors' parameters, read into [`Settings`] with the notes to log,
//! or into the list of every problem that stops the service from starting
//! (no service name, no model directory). Patterns are V1's and group
//! validation has applied them; this reader still refuses what would make
//! the service unreachable rather than guessing.

use std::path::PathBuf;
use std::time::Duration;

use evergreen_connector_kit::{Notes, Params};
use evergreen_ipc::ComponentConfig;

pub const MODEL_DESTINATION_PATH: &str = "MLModelDestinationPath";
pub const MODEL_RESOURCE_ID: &str = "MLModelResourceId";
pub const SAGEMAKER_JOB_ARN: &str = "MLModelSageMakerJobArn";
pub const SERVICE_NAME: &str = "LocalInferenceServiceName";
pub const TIMEOUT_SECONDS: &str = "LocalInferenceServiceTimeoutSeconds";
pub const MEMORY_LIMIT_KB: &str = "LocalInferenceServiceMemoryLimitKB";
pub const GPU_ACCELERATION: &str = "GPUAcceleration";
pub const FEEDBACK_CONFIG_ID: &str = "MLFeedbackConnectorConfigId";

/// `LocalInferenceServiceTimeoutSeconds` when missing or unreadable (the
/// object detection manifest's default; image classification requires it).
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;
/// The longest timeout taken: a day. Longer values are clamped with a note.
pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;

/// Which of V1's two ML inference connectors this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    ImageClassification,
    ObjectDetection,
}

impl Algo {
    /// The `AlgoType` V1's ML SDK sends and puts in the function name.
    pub fn algo_type(self) -> &'static str {
        match self {
            Algo::ImageClassification => "image-classification",
            Algo::ObjectDetection => "object-detection",
        }
    }

    /// The function name V1's ML SDK invokes for the service `service_name`
    /// (`arn:aws:lambda:<region>:aws:function:<this>`).
    pub fn function_name(self, service_name: &str) -> String {
        format!("GG-ML-INF-{}-{service_name}", self.algo_type())
    }
}

/// What the connector runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub algo: Algo,
    /// The directory holding the ONNX model: the granted ML resource's
    /// path, else `MLModelDestinationPath`.
    pub model_dir: PathBuf,
    pub service_name: String,
    /// How long one request may take, from its arrival to its answer.
    pub timeout: Duration,
    /// `MLFeedbackConnectorConfigId` (image classification v2): each
    /// classified image and its prediction go to the ML Feedback connector
    /// under this configuration.
    pub feedback_config_id: Option<String>,
    /// The group's region, for the ML Feedback connector's function ARN.
    pub region: String,
}

/// One problem that stops the service from starting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {problem}")]
pub struct ParamError {
    pub parameter: &'static str,
    pub problem: String,
}

fn is_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// What [`from_config`] gives: the settings or every problem found, and
/// the notes to log either way.
pub type Parsed = (Result<Settings, Vec<ParamError>>, Notes);

/// Reads the configuration of the `algo` connector.
pub fn from_config(config: &ComponentConfig, algo: Algo) -> Parsed {
    let mut p = Params::new(config);
    let mut errors = Vec::new();
    let service_name = p.text(SERVICE_NAME).unwrap_or_default();
    if !is_service_name(&service_name) {
        errors.push(ParamError {
            parameter: SERVICE_NAME,
            problem: format!(
                "{service_name:?} is not a service name ([a-zA-Z0-9][a-zA-Z0-9-]{{1,62}}): \
                 V1's ML SDK could not address it"
            ),
        });
    }
    let timeout = Duration::from_secs(p.clamped(
        TIMEOUT_SECONDS,
        DEFAULT_TIMEOUT_SECONDS,
        1,
        MAX_TIMEOUT_SECONDS,
    ));
    p.note_memory_size(MEMORY_LIMIT_KB);
    if p.text(GPU_ACCELERATION).as_deref() == Some("GPU") {
        p.info(format!(
            "{GPU_ACCELERATION} GPU noted: this build infers on the CPU (tract has no GPU backend)"
        ));
    }
    if let Some(arn) = p.text(SAGEMAKER_JOB_ARN) {
        p.info(format!(
            "{SAGEMAKER_JOB_ARN} {arn} noted: the model is read from the ML resource as ONNX; \
             SageMaker is never called"
        ));
    }
    let feedback_config_id = p
        .text(FEEDBACK_CONFIG_ID)
        .filter(|_| algo == Algo::ImageClassification);
    if let Some(id) = &feedback_config_id {
        p.info(format!(
            "{FEEDBACK_CONFIG_ID} {id}: classified images and their predictions go to the ML Feedback connector"
        ));
    }
    let model_dir =
        p.resource_or_parameter(MODEL_RESOURCE_ID, MODEL_DESTINATION_PATH, |path, from| {
            format!("model directory {} {from}", path.display())
        });
    if model_dir.is_none() {
        errors.push(ParamError {
            parameter: MODEL_DESTINATION_PATH,
            problem: format!(
                "required: no ML resource granted for {MODEL_RESOURCE_ID} and no {MODEL_DESTINATION_PATH}"
            ),
        });
    }
    let result = match model_dir {
        Some(model_dir) if errors.is_empty() => Ok(Settings {
            algo,
            model_dir,
            service_name,
            timeout,
            feedback_config_id,
            region: config.region.clone(),
        }),
        _ => Err(errors),
    };
    (result, p.into_notes())
}

#[cfg(test)]
// A failed unwrap is the test failing.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for ok in ["ab", "my-service-1", &"a".repeat(63)] {
            assert!(is_service_name(ok), "{ok}");
        }
        for bad in ["", "a", "-ab", "a_b", "a b", &"a".repeat(64)] {
            assert!(!is_service_name(bad), "{bad}");
        }
    }

    #[test]
    fn function_names_are_v1s() {
        assert_eq!(
            Algo::ImageClassification.function_name("cls"),
            "GG-ML-INF-image-classification-cls"
        );
        assert_eq!(
            Algo::ObjectDetection.function_name("det"),
            "GG-ML-INF-object-detection-det"
        );
    }
}
