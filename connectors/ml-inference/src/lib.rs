//! The ML Image Classification and ML Object Detection connectors
//! (`ImageClassification{ARMv7,Aarch64JTX2,x86-64}` versions 1 and 2,
//! `ObjectDetection{ARMv7,Aarch64JTX2,x86-64}` version 1): a local
//! inference service over an ONNX model, run with tract.
//!
//! **Why ONNX.** V1 ran MXNet models from SageMaker training jobs (image
//! classification) and SageMaker Neo DLR models (object detection); both
//! runtimes are retired. This connector keeps V1's parameters, service
//! names, request and reply, and takes the model as ONNX: export MXNet
//! (`mx.onnx.export_model`), GluonCV, PyTorch or TensorFlow models to ONNX
//! and deploy the `.onnx` file as the ML resource. `MLModelSageMakerJobArn`
//! is accepted and noted; SageMaker is never called. `GPUAcceleration` GPU
//! is noted: inference runs on the CPU. With `MLFeedbackConnectorConfigId`
//! (image classification v2) each classified image and its prediction are
//! handed to the ML Feedback connector (`MLFeedback`), as the ML SDK's
//! `feedback.publish` would, after the caller has its answer.
//!
//! **The service.** V1's ML SDK
//! (`ml.client('inference').invoke_inference_service(AlgoType, ServiceName,
//! ContentType, Accept, Body)`) invokes the function
//! `GG-ML-INF-<AlgoType>-<LocalInferenceServiceName>` with client context
//! `{"custom": {"Content-Type": …, "Accept": …}}` and the body as payload;
//! the connector serves that name ([`Handle::serve`]). Bodies are
//! `image/jpeg` or `image/png` (V1's), or a float32 tensor as
//! `application/x-npy` or raw little-endian `application/octet-stream`.
//! The answer is `{"Body": "<result>", "ContentType": "application/json"}`
//! with the result as in [`output`]; a failure is a `Handled` function
//! error whose payload is the message (the SDK raises
//! `GreengrassInferenceException` with it). See [`service`] for the
//! queue and `LocalInferenceServiceTimeoutSeconds`.
//!
//! **The model** ([`model`]): the directory is the granted ML resource's
//! path (`MLModelResourceId`), else `MLModelDestinationPath`; the model is
//! its `model.onnx`, else its only `*.onnx` (or, when it holds just one
//! folder, as an unpacked archive may, the same in that folder). It is
//! loaded and optimised once
//! at start, for a batch of one image.
//!
//! **Preprocessing** ([`preprocess`]): the image is decoded to 8-bit RGB,
//! resized (stretched, bilinear) to the model's input width and height,
//! laid out as the model's input and normalised as
//! `(pixel * scale - mean[c]) / std[c]`. Without a sidecar the defaults
//! are: size and layout from the model's input declaration (NCHW unless
//! only the last dimension is 3), RGB, `scale` 1, `mean` 0, `std` 1: raw
//! pixel values 0–255. Those are what V1 fed: SageMaker's MXNet image
//! classification networks take unnormalised RGB 0–255 in NCHW (they
//! normalise inside the network), and V1's connector passed the decoded,
//! resized image as it was; an MXNet model exported to ONNX then answers as
//! it did on V1. Models trained otherwise (torchvision: `scale` 1/255 and
//! ImageNet `mean`/`std`; Caffe/OpenCV: BGR) say so in
//! `evergreen-model.json` beside the model:
//!
//! ```json
//! {"width": 224, "height": 224, "layout": "NCHW", "channel_order": "RGB",
//!  "scale": 0.00392156862745098, "mean": [0.485, 0.456, 0.406],
//!  "std": [0.229, 0.224, 0.225], "boxes": "normalized"}
//! ```
//!
//! Every field is optional; `width`/`height` are required only when the
//! model's input does not fix them; `boxes` (`normalized` | `pixels`) is
//! for detection models (see [`output`]).
//!
//! **Isolation.** Greengrass container only, as in V1. Logs carry the
//! `LocalInferenceServiceName` as their prefix, as V1's did.

pub mod error;
pub mod model;
pub mod output;
pub mod preprocess;
pub mod service;
pub mod settings;

use std::time::Duration;

use evergreen_connector_kit::manifest;
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec, ResourceKind};
use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use evergreen_ipc::LogLevel;

pub use error::InferenceError;
pub use model::{LoadError, Model};
pub use settings::Algo;

use crate::service::{Request, Service, QUEUE};
use crate::settings::*;
pub use crate::settings::{ParamError, Settings};

const MODEL_DESTINATION: ParameterSpec = ParameterSpec::new(
    MODEL_DESTINATION_PATH,
    "Where the ML resource's model is inside the connector (the directory holding the .onnx file).",
)
.required();
const MODEL_RESOURCE: ParameterSpec = ParameterSpec::new(
    MODEL_RESOURCE_ID,
    "Id of the group's ML resource holding the ONNX model.",
)
.required()
.pattern("[a-zA-Z0-9:_-]+")
.resource(ResourceKind::MachineLearningModel);
const SERVICE: ParameterSpec = ParameterSpec::new(
    SERVICE_NAME,
    "The name the ML SDK's invoke_inference_service calls (ServiceName).",
)
.required()
.pattern("[a-zA-Z0-9][a-zA-Z0-9-]{1,62}");
const MEMORY: ParameterSpec = ParameterSpec::new(
    MEMORY_LIMIT_KB,
    "Memory for the service in KB (noted; not enforced by Evergreen).",
)
.required()
.pattern("[1-9][0-9]*");
const GPU: ParameterSpec = ParameterSpec::new(
    GPU_ACCELERATION,
    "CPU or GPU (V1's JTX2 context); this build always infers on the CPU.",
)
.pattern("CPU|GPU");

/// The parameters of every ImageClassification variant.
const IMAGE_CLASSIFICATION_PARAMETERS: &[ParameterSpec] = &[
    MODEL_DESTINATION,
    MODEL_RESOURCE,
    ParameterSpec::new(
        SAGEMAKER_JOB_ARN,
        "The SageMaker training job that made the model (noted; SageMaker is never called).",
    )
    .required()
    .pattern("^arn:aws:sagemaker:[a-zA-Z0-9-]+:[0-9]+:training-job/[a-zA-Z0-9][a-zA-Z0-9-]+$"),
    SERVICE,
    ParameterSpec::new(
        TIMEOUT_SECONDS,
        "Seconds a request may take from its arrival to its answer.",
    )
    .required()
    .pattern("[1-9][0-9]*"),
    MEMORY,
    GPU,
    ParameterSpec::new(
        FEEDBACK_CONFIG_ID,
        "The ML Feedback connector's configuration id: classified images and predictions go there.",
    )
    .pattern("^$|^[a-zA-Z0-9][a-zA-Z0-9-]{1,62}$")
    .since(2),
];

/// The parameters of every ObjectDetection variant.
const OBJECT_DETECTION_PARAMETERS: &[ParameterSpec] = &[
    MODEL_DESTINATION,
    MODEL_RESOURCE,
    SERVICE,
    ParameterSpec::new(
        TIMEOUT_SECONDS,
        "Seconds a request may take from its arrival to its answer (default 10).",
    )
    .required()
    .pattern("[1-9][0-9]*")
    .default_value("10"),
    MEMORY,
    GPU,
];

const IMAGE_CLASSIFICATION: ConnectorManifest = ConnectorManifest {
    name: "",
    versions: &[1, 2],
    description: "A local image classification service over an ONNX model (V1: MXNet): the ML SDK's \
                  invoke_inference_service(AlgoType='image-classification') with a JPEG or PNG gets the \
                  model's class probabilities as [p0,p1,...].",
    parameters: IMAGE_CLASSIFICATION_PARAMETERS,
    inputs: &[],
    outputs: &[],
    isolation: manifest::CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

const OBJECT_DETECTION: ConnectorManifest = ConnectorManifest {
    name: "",
    versions: &[1],
    description: "A local object detection service over an ONNX model (V1: SageMaker Neo DLR): the ML \
                  SDK's invoke_inference_service(AlgoType='object-detection') with a JPEG or PNG gets \
                  {\"prediction\": [[class_id, confidence, xmin, ymin, xmax, ymax], ...]} with boxes in 0..1.",
    parameters: OBJECT_DETECTION_PARAMETERS,
    ..IMAGE_CLASSIFICATION
};

pub static IMAGE_CLASSIFICATION_ARMV7: ConnectorManifest = ConnectorManifest {
    name: "ImageClassificationARMv7",
    ..IMAGE_CLASSIFICATION
};
pub static IMAGE_CLASSIFICATION_AARCH64_JTX2: ConnectorManifest = ConnectorManifest {
    name: "ImageClassificationAarch64JTX2",
    ..IMAGE_CLASSIFICATION
};
pub static IMAGE_CLASSIFICATION_X86_64: ConnectorManifest = ConnectorManifest {
    name: "ImageClassificationx86-64",
    ..IMAGE_CLASSIFICATION
};
pub static OBJECT_DETECTION_ARMV7: ConnectorManifest = ConnectorManifest {
    name: "ObjectDetectionARMv7",
    ..OBJECT_DETECTION
};
pub static OBJECT_DETECTION_AARCH64_JTX2: ConnectorManifest = ConnectorManifest {
    name: "ObjectDetectionAarch64JTX2",
    ..OBJECT_DETECTION
};
pub static OBJECT_DETECTION_X86_64: ConnectorManifest = ConnectorManifest {
    name: "ObjectDetectionx86-64",
    ..OBJECT_DETECTION
};

/// Every manifest of this crate: the three image classification variants,
/// then the three object detection ones (each runs with the `run_*` of its
/// kind; the variant only names the platform V1 built it for).
pub static MANIFESTS: [&ConnectorManifest; 6] = [
    &IMAGE_CLASSIFICATION_ARMV7,
    &IMAGE_CLASSIFICATION_AARCH64_JTX2,
    &IMAGE_CLASSIFICATION_X86_64,
    &OBJECT_DETECTION_ARMV7,
    &OBJECT_DETECTION_AARCH64_JTX2,
    &OBJECT_DETECTION_X86_64,
];

/// How much longer than a request's own timeout the supervisor lets a
/// caller wait, so that the caller hears this service's timeout message
/// rather than the supervisor's.
const SERVE_MARGIN: Duration = Duration::from_secs(2);

/// Runs an ImageClassification connector over stdio until the supervisor
/// says stop.
pub async fn run_image_classification() -> Result<(), SdkError> {
    run(Algo::ImageClassification).await
}

/// Runs an ObjectDetection connector over stdio until the supervisor says
/// stop.
pub async fn run_object_detection() -> Result<(), SdkError> {
    run(Algo::ObjectDetection).await
}

/// Logs with the service name as prefix, as V1's ML connectors did.
#[derive(Clone)]
struct Log {
    handle: Handle,
    prefix: String,
}

impl Log {
    fn log(&self, level: LogLevel, message: impl std::fmt::Display) {
        self.handle.log(level, format!("{}{message}", self.prefix));
    }
}

async fn run(algo: Algo) -> Result<(), SdkError> {
    let (mut component, handle, parsed) =
        Component::start(|c| settings::from_config(c, algo)).await?;
    serve(&mut component, &handle, parsed).await
}

/// The connector over a connected, ready component, once its settings are
/// read: loads the model, serves the service name and answers invokes
/// until the supervisor says stop. Public so that tests can run it over
/// in-memory pipes with their side of the link.
pub async fn serve(
    component: &mut Component,
    handle: &Handle,
    parsed: Result<Settings, Vec<ParamError>>,
) -> Result<(), SdkError> {
    let mut log = Log {
        handle: handle.clone(),
        prefix: String::new(),
    };
    let settings = match parsed {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                log.log(LogLevel::Error, format_args!("invalid parameter {e}"));
            }
            return idle(component, &log).await;
        }
    };
    log.prefix = format!("[{}] ", settings.service_name);
    // Loading and optimising a large model takes seconds: off the IPC
    // thread, while a stop is still heard.
    let dir = settings.model_dir.clone();
    let algo = settings.algo;
    let mut loading = tokio::task::spawn_blocking(move || Model::load(&dir, algo));
    let model = loop {
        tokio::select! {
            loaded = &mut loading => break loaded,
            event = component.next_event() => match event {
                None | Some(Event::Shutdown { .. }) => return Ok(()),
                Some(event) => refuse_early(handle, &log, event).await?,
            }
        }
    };
    let model = match model {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            log.log(LogLevel::Error, e);
            return idle(component, &log).await;
        }
        Err(e) => {
            log.log(
                LogLevel::Error,
                format_args!("loading the model failed: {e}"),
            );
            return idle(component, &log).await;
        }
    };
    log.log(LogLevel::Info, model.describe());
    let service = match Service::spawn(model, QUEUE, settings.timeout) {
        Ok(s) => s,
        Err(e) => {
            log.log(
                LogLevel::Error,
                format_args!("cannot start the inference thread: {e}"),
            );
            return idle(component, &log).await;
        }
    };
    let function_name = algo.function_name(&settings.service_name);
    handle
        .serve(&function_name, settings.timeout + SERVE_MARGIN)
        .await?;
    log.log(
        LogLevel::Info,
        format_args!(
            "serving {function_name} (timeout {:?}, {QUEUE} requests may wait)",
            settings.timeout
        ),
    );
    while let Some(event) = component.next_event().await {
        match event {
            Event::Shutdown { .. } => break,
            Event::Invoke(invocation) => {
                let request = Request::from_invoke(&invocation.client_context, invocation.payload);
                // The image is kept for ML Feedback only when it is wanted.
                let feedback = match (&settings.feedback_config_id, &request) {
                    (Some(id), Ok(r)) => Some((id.clone(), r.clone())),
                    _ => None,
                };
                let submitted = request.and_then(|r| service.submit(r));
                let handle = handle.clone();
                let log = log.clone();
                let region = settings.region.clone();
                let service_name = settings.service_name.clone();
                // Each answer waits on its own task so a slow one does not
                // hold the next invoke back from the queue.
                tokio::spawn(async move {
                    let result = match submitted {
                        Ok(pending) => pending.answer().await,
                        Err(e) => Err(e),
                    };
                    if let (Some((id, request)), Ok(body)) = (feedback, &result) {
                        send_feedback(&handle, &log, &region, &id, &service_name, &request, body);
                    }
                    if let Err(e) = &result {
                        log.log(
                            LogLevel::Warn,
                            format_args!("request from {} failed: {e}", invocation.caller),
                        );
                    }
                    let outcome = service::outcome(result);
                    if let Err(e) = handle.answer(&invocation.invocation_id, outcome).await {
                        log.log(LogLevel::Warn, format_args!("cannot answer: {e}"));
                    }
                });
            }
            Event::Message(m) => log.log(
                LogLevel::Warn,
                format_args!(
                    "this connector takes no MQTT messages (V1's ML SDK invokes it): dropping one on {}",
                    m.topic
                ),
            ),
            Event::Refused { topic, reason } => log.log(
                LogLevel::Warn,
                format_args!("publish on {topic} refused: {reason}"),
            ),
        }
    }
    log.log(LogLevel::Info, "stopping");
    Ok(())
}

/// Hands one classified image and its prediction to the ML Feedback
/// connector without delaying the caller's answer; a failure is logged
/// (the feedback connector samples and uploads; V1 did not fail the
/// inference for it either).
fn send_feedback(
    handle: &Handle,
    log: &Log,
    region: &str,
    config_id: &str,
    service_name: &str,
    request: &Request,
    body: &str,
) {
    let Some((arn, context, payload)) =
        service::feedback_invoke(region, config_id, service_name, request, body)
    else {
        return;
    };
    let handle = handle.clone();
    let log = log.clone();
    tokio::spawn(async move {
        match handle
            .invoke(&arn, context, payload, FEEDBACK_TIMEOUT)
            .await
        {
            Ok(outcome) if outcome.function_error.is_empty() => {}
            Ok(outcome) => log.log(
                LogLevel::Warn,
                format_args!(
                    "ML Feedback refused the sample: {}",
                    String::from_utf8_lossy(&outcome.payload)
                ),
            ),
            Err(e) => log.log(LogLevel::Warn, format_args!("ML Feedback: {e}")),
        }
    });
}

/// How long a hand-off to the ML Feedback connector may take (it queues
/// the upload and answers at once).
const FEEDBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// An event before the service is up: an invoke is answered with a
/// "not ready" error (none should come before `serve`), a message dropped.
async fn refuse_early(handle: &Handle, log: &Log, event: Event) -> Result<(), SdkError> {
    match event {
        Event::Invoke(invocation) => {
            handle
                .answer(
                    &invocation.invocation_id,
                    evergreen_ipc::InvokeOutcome::handled("the inference service is not ready"),
                )
                .await
        }
        Event::Message(m) => {
            log.log(
                LogLevel::Warn,
                format_args!("not ready: dropping the message on {}", m.topic),
            );
            Ok(())
        }
        Event::Refused { .. } | Event::Shutdown { .. } => Ok(()),
    }
}

/// Waits for the end of the link after a start that cannot serve, so a
/// pinned connector is not restarted in a loop; says why to each caller.
async fn idle(component: &mut Component, log: &Log) -> Result<(), SdkError> {
    let handle = component.handle();
    while let Some(event) = component.next_event().await {
        match event {
            Event::Shutdown { .. } => break,
            Event::Invoke(invocation) => {
                handle
                    .answer(
                        &invocation.invocation_id,
                        evergreen_ipc::InvokeOutcome::handled(
                            "the inference service did not start: see the connector's log",
                        ),
                    )
                    .await?
            }
            Event::Message(m) => log.log(
                LogLevel::Warn,
                format_args!("not configured: dropping the message on {}", m.topic),
            ),
            Event::Refused { .. } => {}
        }
    }
    Ok(())
}
