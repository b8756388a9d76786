//! Unit tests: the manifest, settings, input checks, series and statuses.

use super::*;
use evergreen_connector_kit::testing::ManifestChecks;
use evergreen_ipc::manifest::ResourceKind;
use evergreen_ipc::LogLevel;

fn config(params: &[(&str, &str)], endpoints: &[(&str, &str)]) -> ComponentConfig {
    evergreen_connector_kit::testing::config(&MANIFEST, 4, params)
        .endpoints(endpoints)
        .build()
}

#[test]
fn manifest_says_what_the_reference_says() {
    for ok in ["1", "9", "10", "99", "100", "900"] {
        assert!(MANIFEST.admits("PublishInterval", ok), "{ok}");
    }
    for bad in ["0", "", "1000"] {
        assert!(!MANIFEST.admits("PublishInterval", bad), "{bad}");
    }
    // [doc inconsistency] the pattern admits 901-999; settings clamp them.
    assert!(MANIFEST.admits("PublishInterval", "999"));
    let (s, notes) = Settings::from_config(&config(&[("PublishInterval", "999")], &[]));
    assert_eq!(s.interval, Duration::from_secs(900));
    assert!(notes
        .iter()
        .any(|(l, m)| *l == LogLevel::Warn && m.contains("PublishInterval 999")));
    assert!(MANIFEST.admits(
        "AuthSecretArn",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-ServiceNowAuth-AbCdEf"
    ));
    assert_eq!(
        MANIFEST.resource_kind("AuthSecretArn-ResourceId"),
        Some(ResourceKind::Secret)
    );
    assert!(!MANIFEST.aws);
    MANIFEST.assert_filters_valid();
}

#[test]
fn settings() {
    let params = [
        ("PublishInterval", "5"),
        ("PublishBatchSize", "0"),
        ("InstanceName", "myinstance"),
        ("DefaultTableName", "u_greengrass_app"),
        ("MaxMetricsToRetain", "100"),
    ];
    let (s, notes) = Settings::from_config(&config(&params, &[]));
    assert_eq!(s.base, "https://myinstance.service-now.com");
    assert_eq!(s.batch_size, 1, "{notes:?}");
    assert_eq!(s.interval, Duration::from_secs(5));
    let (s, _) = Settings::from_config(&config(&params, &[("servicenow", "http://127.0.0.1:1/")]));
    assert_eq!(s.base, "http://127.0.0.1:1");
}

#[test]
fn inputs() {
    let m = parse_input(
        br#"{"request": {"subject": "ef43c6d40a0a0b5700c77f9bf387afe3", "metric_name": "u_count",
            "table": "u_greengrass_app", "value": 1.0, "timestamp": "2018-10-14T10:30:00"}}"#,
        "default",
        "2020-01-01T00:00:00",
    )
    .expect("valid");
    assert_eq!(
        m,
        Metric {
            subject: "ef43c6d40a0a0b5700c77f9bf387afe3".into(),
            metric_name: "u_count".into(),
            table: "u_greengrass_app".into(),
            value: 1.0,
            timestamp: "2018-10-14T10:30:00".into(),
        }
    );
    let m = parse_input(
        br#"{"request": {"subject": "s", "metric_name": "m", "value": 3}}"#,
        "default",
        "2020-01-01T00:00:00",
    )
    .expect("defaults");
    assert_eq!(
        (m.table.as_str(), m.timestamp.as_str()),
        ("default", "2020-01-01T00:00:00")
    );
    for (payload, expected) in [
        (&b"{"[..], "not JSON"),
        (br#"{"request":1}"#, "request must be an object"),
        (br#"{}"#, "request is required"),
        (br#"{"request":{"metric_name":"m","value":1}}"#, "request.subject is required"),
        (br#"{"request":{"subject":"s","value":1}}"#, "request.metric_name is required"),
        (br#"{"request":{"subject":"s","metric_name":"m"}}"#, "request.value is required"),
        (br#"{"request":{"subject":"s","metric_name":"m","value":"1"}}"#, "request.value must be a number"),
        (br#"{"request":{"subject":"s","metric_name":"m","value":1,"table":5}}"#, "request.table must be a string"),
        (br#"{"request":{"subject":"s","metric_name":"m","value":1,"timestamp":"yesterday"}}"#, "request.timestamp"),
        (br#"{"request":{"subject":"s","metric_name":"m","value":1,"timestamp":"2018-13-14T10:30:00"}}"#, "request.timestamp"),
    ] {
        let err = parse_input(payload, "t", "now").expect_err(expected);
        assert!(err.message.contains(expected), "{} vs {expected}", err.message);
    }
    let err = parse_input(br#"{"id":"x","request":{}}"#, "t", "now").expect_err("no subject");
    assert_eq!(err.id.as_deref(), Some("x"));
}

#[test]
fn batches_group_by_series_in_order() {
    let m = |metric: &str, v: f64, t: &str| Metric {
        subject: "s".into(),
        metric_name: metric.into(),
        table: "t".into(),
        value: v,
        timestamp: t.into(),
    };
    let series = group(vec![m("a", 1.0, "1"), m("b", 2.0, "2"), m("a", 3.0, "3")]);
    assert_eq!(series.len(), 2);
    assert_eq!(
        series[0].body(),
        json!({"seriesRef": {"subject": "s", "table": "t", "metric": "a"},
               "values": [{"timestamp": "1", "value": 1.0}, {"timestamp": "3", "value": 3.0}]})
    );
    assert_eq!(
        success_status(&series[1], "2018-10-14T10:35:00", "sn-1"),
        json!({"response": {"metric_name": "b", "table_name": "t", "processed_on": "2018-10-14T10:35:00",
            "response_id": "sn-1", "status": "success", "values": [{"timestamp": "2", "value": 2.0}]}})
    );
    let back: Vec<Metric> = series.into_iter().flat_map(Series::into_metrics).collect();
    assert_eq!(back.len(), 3);
}

#[test]
fn credentials_never_quote_the_secret() {
    let c = parse_credentials("arn", r#"{"user":"admin","password":"pw"}"#).expect("ok");
    assert_eq!((c.user.as_str(), c.password.as_str()), ("admin", "pw"));
    assert!(!format!("{c:?}").contains("pw"));
    let e =
        parse_credentials("arn", r#"{"user":"admin","pass":"hunter2"}"#).expect_err("no password");
    assert!(e.contains("\"password\"") && !e.contains("hunter2"), "{e}");
    let e = parse_credentials("arn", "hunter2").expect_err("not JSON");
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn timestamps() {
    assert!(is_timestamp("2018-10-14T10:30:00"));
    assert!(!is_timestamp("2018-10-14 10:30:00"));
    let t = time::macros::datetime!(2018-10-14 10:30:05 UTC);
    assert_eq!(format_time(t), "2018-10-14T10:30:05");
    assert_eq!(
        fail_status("InvalidInputException", "metric value is invalid", None),
        json!({"response": {"error": "InvalidInputException", "error_message": "metric value is invalid", "status": "fail"}})
    );
}
