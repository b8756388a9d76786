//! Unit tests of the manifest and the settings.

use super::*;
use evergreen_connector_kit::manifest::ISOLATION_MODE;
use evergreen_connector_kit::testing;
use evergreen_connector_kit::testing::ManifestChecks;

fn config(version: u32, params: &[(&str, &str)]) -> ComponentConfig {
    testing::config(&MANIFEST, version, params)
        .core("test-core")
        .build()
}

const ARN: &str = "arn:aws:firehose:us-east-1:123456789012:deliverystream/s1";

#[test]
fn manifest_patterns_say_what_the_reference_says() {
    assert!(MANIFEST.admits(DEFAULT_STREAM, ARN));
    assert!(!MANIFEST.admits(
        DEFAULT_STREAM,
        "arn:aws:firehose:us-east-1:1234:deliverystream/s1"
    ));
    for ok in ["2000", "5000", "9999", "10000", "123456"] {
        assert!(MANIFEST.admits(QUEUE_SIZE, ok), "{ok}");
    }
    for bad in ["0", "1999", "999", "02000", "", "5k"] {
        assert!(!MANIFEST.admits(QUEUE_SIZE, bad), "{bad}");
    }
    for ok in ["0", "9", "10", "99", "100", "900", "999"] {
        assert!(MANIFEST.admits(PUBLISH_INTERVAL, ok), "{ok}");
    }
    for bad in ["", "01", "1000", "-1", "10s"] {
        assert!(!MANIFEST.admits(PUBLISH_INTERVAL, bad), "{bad}");
    }
    assert!(MANIFEST.admits(MEMORY_SIZE, "65535"));
    assert!(!MANIFEST.admits(MEMORY_SIZE, "64k"));
    assert!(MANIFEST.admits(ISOLATION_MODE, "NoContainer"));
    assert!(!MANIFEST.admits(ISOLATION_MODE, "Container"));
    let since = |name: &str| MANIFEST.parameter(name).map(|p| p.since_version);
    assert_eq!(since(DEFAULT_STREAM), Some(1));
    assert_eq!(since(QUEUE_SIZE), Some(2));
    assert_eq!(since(PUBLISH_INTERVAL), Some(2));
    assert_eq!(since(MEMORY_SIZE), Some(2));
    assert_eq!(since(ISOLATION_MODE), Some(5));
    MANIFEST.assert_filters_valid();
    assert!(MANIFEST.aws && MANIFEST.pinned);
    assert!(MANIFEST.isolation.container && MANIFEST.isolation.no_container);
}

#[test]
fn settings_follow_the_parameters() {
    let (s, notes) = Settings::from_config(&config(
        5,
        &[
            (DEFAULT_STREAM, ARN),
            (QUEUE_SIZE, "5000"),
            (MEMORY_SIZE, "65535"),
            (PUBLISH_INTERVAL, "10"),
        ],
    ));
    assert_eq!(s.version, 5);
    assert_eq!(
        s.default_stream.as_ref().map(|d| d.name.as_str()),
        Some("s1")
    );
    assert_eq!(s.queue_size, 5000);
    assert_eq!(s.publish_interval, Duration::from_secs(10));
    assert!(notes.iter().all(|(l, _)| *l == LogLevel::Info), "{notes:?}");

    let (s, notes) = Settings::from_config(&config(
        4,
        &[
            (DEFAULT_STREAM, ARN),
            (QUEUE_SIZE, "2000"),
            (MEMORY_SIZE, "1"),
            (PUBLISH_INTERVAL, "950"),
        ],
    ));
    assert_eq!(s.publish_interval, Duration::from_secs(MAX_INTERVAL_S));
    assert!(notes
        .iter()
        .any(|(l, m)| *l == LogLevel::Warn && m.contains("above 900")));
}

#[test]
fn version_one_sends_each_record_alone() {
    let (s, _) = Settings::from_config(&config(1, &[(DEFAULT_STREAM, ARN)]));
    assert_eq!(s.version, 1);
    assert!(!s.batched());
    assert_eq!(s.queue_size, V1_QUEUE_SIZE);
    assert!(s.publish_interval.is_zero());
}

#[test]
fn a_bad_default_stream_is_an_error_not_a_panic() {
    let (s, notes) = Settings::from_config(&config(5, &[(DEFAULT_STREAM, "nope")]));
    assert_eq!(s.default_stream, None);
    assert!(notes.iter().any(|(l, _)| *l == LogLevel::Error));
}
