//! The six manifests against V1's reference (names, versions, parameters,
//! patterns, resource kind, isolation) and what the supervisor's
//! `registry::manifest_problems` checks, and the parameter reading: the
//! model directory from the resource or the path, the notes, the refusals.

#![allow(clippy::unwrap_used)] // a failed unwrap is the test failing

use std::path::Path;
use std::time::Duration;

use evergreen_connector_kit::testing::{config, ManifestChecks};
use evergreen_connector_ml_inference::settings::{from_config, Algo, Parsed};
use evergreen_connector_ml_inference::*;
use evergreen_ipc::manifest::ResourceKind;
use evergreen_ipc::LogLevel;

const JOB_ARN: &str = "arn:aws:sagemaker:us-west-2:123456789012:training-job/my-job-1";

#[test]
fn names_versions_and_isolation_are_v1s() {
    let names: Vec<(&str, &[u32])> = MANIFESTS.iter().map(|m| (m.name, m.versions)).collect();
    assert_eq!(
        names,
        [
            ("ImageClassificationARMv7", &[1, 2][..]),
            ("ImageClassificationAarch64JTX2", &[1, 2]),
            ("ImageClassificationx86-64", &[1, 2]),
            ("ObjectDetectionARMv7", &[1]),
            ("ObjectDetectionAarch64JTX2", &[1]),
            ("ObjectDetectionx86-64", &[1]),
        ]
    );
    for m in MANIFESTS {
        assert!(
            m.isolation.container && !m.isolation.no_container,
            "{}",
            m.name
        );
        assert!(m.pinned && !m.aws, "{}", m.name);
        assert!(
            m.inputs.is_empty() && m.outputs.is_empty(),
            "{}: no MQTT",
            m.name
        );
        assert_eq!(
            m.resource_kind("MLModelResourceId"),
            Some(ResourceKind::MachineLearningModel)
        );
    }
}

#[test]
fn parameters_and_patterns_are_v1s() {
    let required = |m: &evergreen_ipc::manifest::ConnectorManifest| -> Vec<&str> {
        m.parameters
            .iter()
            .filter(|p| p.required)
            .map(|p| p.name)
            .collect()
    };
    assert_eq!(
        required(&IMAGE_CLASSIFICATION_X86_64),
        [
            "MLModelDestinationPath",
            "MLModelResourceId",
            "MLModelSageMakerJobArn",
            "LocalInferenceServiceName",
            "LocalInferenceServiceTimeoutSeconds",
            "LocalInferenceServiceMemoryLimitKB",
        ]
    );
    assert_eq!(
        required(&OBJECT_DETECTION_X86_64),
        [
            "MLModelDestinationPath",
            "MLModelResourceId",
            "LocalInferenceServiceName",
            "LocalInferenceServiceTimeoutSeconds",
            "LocalInferenceServiceMemoryLimitKB",
        ]
    );
    let ic = &IMAGE_CLASSIFICATION_ARMV7;
    assert_eq!(
        ic.parameter("MLFeedbackConnectorConfigId")
            .unwrap()
            .since_version,
        2
    );
    assert!(OBJECT_DETECTION_ARMV7
        .parameter("MLFeedbackConnectorConfigId")
        .is_none());
    assert!(OBJECT_DETECTION_ARMV7
        .parameter("MLModelSageMakerJobArn")
        .is_none());
    assert_eq!(
        OBJECT_DETECTION_ARMV7
            .parameter("LocalInferenceServiceTimeoutSeconds")
            .unwrap()
            .default,
        Some("10")
    );
    assert!(ic.admits("MLModelResourceId", "my-model:1_a"));
    assert!(!ic.admits("MLModelResourceId", "my model"));
    assert!(ic.admits("MLModelSageMakerJobArn", JOB_ARN));
    assert!(!ic.admits(
        "MLModelSageMakerJobArn",
        "arn:aws:sagemaker:us-west-2:123456789012:model/my-job"
    ));
    assert!(ic.admits("LocalInferenceServiceName", "imageClassification"));
    assert!(!ic.admits("LocalInferenceServiceName", "-x"));
    assert!(!ic.admits("LocalInferenceServiceName", "a_b"));
    for (name, ok, bad) in [
        ("LocalInferenceServiceTimeoutSeconds", "1", "0"),
        ("LocalInferenceServiceMemoryLimitKB", "500000", "-1"),
        ("GPUAcceleration", "GPU", "TPU"),
        ("MLFeedbackConnectorConfigId", "", "-x"),
    ] {
        assert!(ic.admits(name, ok), "{name}={ok}");
        assert!(!ic.admits(name, bad), "{name}={bad}");
    }
}

#[test]
fn manifests_pass_the_registry_checks() {
    // What the supervisor's `registry::manifest_problems` checks (this
    // crate cannot depend on the supervisor): valid filters, no parameter
    // twice, defaults matching their pattern, none newer than the newest
    // version, and an isolation mode.
    for m in MANIFESTS {
        m.assert_filters_valid();
        let newest = m.versions.iter().copied().max().unwrap();
        for (i, p) in m.parameters.iter().enumerate() {
            assert!(
                !m.parameters[..i].iter().any(|q| q.name == p.name),
                "{}: {} twice",
                m.name,
                p.name
            );
            assert!(p.since_version <= newest, "{}: {}", m.name, p.name);
            if p.pattern.is_some() {
                // Compiles (admits panics otherwise).
                let _ = m.admits(p.name, "");
            }
            if let Some(default) = p.default {
                assert!(
                    m.admits(p.name, default),
                    "{}: default of {}",
                    m.name,
                    p.name
                );
            }
        }
    }
}

fn settings(parameters: &[(&str, &str)], grant: Option<&str>) -> Parsed {
    let c = config(&IMAGE_CLASSIFICATION_X86_64, 2, parameters)
        .maybe_grant("model-resource", grant, false)
        .build();
    from_config(&c, Algo::ImageClassification)
}

const V1_EXAMPLE: [(&str, &str); 8] = [
    ("MLModelDestinationPath", "/path-to-model"),
    ("MLModelResourceId", "model-resource"),
    ("MLModelSageMakerJobArn", JOB_ARN),
    ("LocalInferenceServiceName", "imageClassification"),
    ("LocalInferenceServiceTimeoutSeconds", "10"),
    ("LocalInferenceServiceMemoryLimitKB", "500000"),
    ("GPUAcceleration", "GPU"),
    ("MLFeedbackConnectorConfigId", "feedback-1"),
];

#[test]
fn v1s_example_configuration_with_its_notes() {
    let (s, notes) = settings(&V1_EXAMPLE, Some("/ml/model"));
    let s = s.unwrap();
    assert_eq!(
        s.model_dir,
        Path::new("/ml/model"),
        "the granted path first"
    );
    assert_eq!(s.service_name, "imageClassification");
    assert_eq!(s.timeout, Duration::from_secs(10));
    assert_eq!(s.feedback_config_id.as_deref(), Some("feedback-1"));
    assert_eq!(s.region, "us-east-1");
    let text: Vec<&str> = notes.iter().map(|(_, n)| n.as_str()).collect();
    for expected in [
        "LocalInferenceServiceMemoryLimitKB 500000 KB noted",
        "GPUAcceleration GPU noted: this build infers on the CPU",
        "SageMaker is never called",
        "MLFeedbackConnectorConfigId feedback-1: classified images",
        "model directory /ml/model (resource model-resource)",
    ] {
        assert!(
            text.iter().any(|n| n.contains(expected)),
            "{expected}: {text:?}"
        );
    }
    // Without the grant, MLModelDestinationPath.
    let (s, _) = settings(&V1_EXAMPLE, None);
    assert_eq!(s.unwrap().model_dir, Path::new("/path-to-model"));
}

#[test]
fn an_unreachable_service_is_refused() {
    let (s, _) = settings(
        &[
            ("LocalInferenceServiceName", "bad_name"),
            ("LocalInferenceServiceTimeoutSeconds", "0"),
        ],
        None,
    );
    let errors = s.unwrap_err();
    let params: Vec<&str> = errors.iter().map(|e| e.parameter).collect();
    assert_eq!(
        params,
        ["LocalInferenceServiceName", "MLModelDestinationPath"]
    );
    // A timeout out of range is taken as 1 with a note, not refused.
    let (s, notes) = settings(
        &[
            ("LocalInferenceServiceName", "svc"),
            ("MLModelDestinationPath", "/m"),
            ("LocalInferenceServiceTimeoutSeconds", "0"),
        ],
        None,
    );
    assert_eq!(s.unwrap().timeout, Duration::from_secs(1));
    assert!(notes
        .iter()
        .any(|(l, n)| *l == LogLevel::Warn
            && n == "LocalInferenceServiceTimeoutSeconds 0 is taken as 1"));
}
