//! Unit tests: the manifest, settings, input checks and the queue.

use super::*;
use evergreen_connector_kit::testing::ManifestChecks;
use evergreen_ipc::manifest::ResourceKind;
use evergreen_ipc::LogLevel;

fn config(params: &[(&str, &str)]) -> ComponentConfig {
    evergreen_connector_kit::testing::config(&MANIFEST, 4, params).build()
}

#[test]
fn manifest_says_what_the_reference_says() {
    assert!(MANIFEST.admits("SplunkEndpoint", "https://myinstance.cloud.splunk.com:8088"));
    assert!(MANIFEST.admits("SplunkEndpoint", "http://localhost:8088"));
    assert!(MANIFEST.admits("SplunkEndpoint", "myinstance.cloud.splunk.com"));
    assert!(!MANIFEST.admits("SplunkEndpoint", "ftp://x.com"));
    for ok in ["0", "9", "10", "99", "100", "900"] {
        assert!(MANIFEST.admits("SplunkFlushIntervalSeconds", ok), "{ok}");
    }
    for bad in ["", "1000", "-1", "01"] {
        assert!(!MANIFEST.admits("SplunkFlushIntervalSeconds", bad), "{bad}");
    }
    assert!(MANIFEST.admits(
        "SplunkTokenSecretArn",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-SplunkToken-AbCdEf"
    ));
    assert!(MANIFEST.admits("SplunkCustomCALocation", "/etc/ssl/certs/splunk.crt"));
    assert!(MANIFEST.admits("SplunkCustomCALocation", ""));
    assert!(!MANIFEST.admits("SplunkCustomCALocation", "splunk.crt"));
    assert_eq!(
        MANIFEST.resource_kind("SplunkTokenSecretArn-ResourceId"),
        Some(ResourceKind::Secret)
    );
    assert!(!MANIFEST.aws);
    MANIFEST.assert_filters_valid();
}

#[test]
fn collector_urls() {
    assert_eq!(
        collector_url("https://myinstance.cloud.splunk.com:8088"),
        "https://myinstance.cloud.splunk.com:8088/services/collector"
    );
    assert_eq!(
        collector_url("myinstance.cloud.splunk.com:8088/"),
        "https://myinstance.cloud.splunk.com:8088/services/collector"
    );
    assert_eq!(
        collector_url("http://localhost:1/services/collector/event"),
        "http://localhost:1/services/collector/event"
    );
}

#[test]
fn settings() {
    let (s, _) = Settings::from_config(&config(&[
        ("SplunkEndpoint", "http://localhost:8088"),
        ("MemorySize", "200"),
        ("SplunkQueueSize", "0"),
        ("SplunkFlushIntervalSeconds", "0"),
        ("SplunkCustomCALocation", ""),
    ]));
    assert_eq!(s.memory_bytes, 200 * 1024);
    assert_eq!(s.queue_size, 1);
    assert_eq!(s.flush_interval, None);
    assert_eq!(s.custom_ca, None);
    let (s, notes) = Settings::from_config(&config(&[("SplunkFlushIntervalSeconds", "5")]));
    assert_eq!(s.flush_interval, Some(Duration::from_secs(5)));
    assert!(notes
        .iter()
        .any(|(l, m)| *l == LogLevel::Warn && m.contains("MemorySize")));
}

#[test]
fn inputs() {
    let item = parse_input(
        br#"{"request": {"event": "some event", "fields": {"severity": "INFO"}}, "id": "request123"}"#,
    )
    .expect("valid");
    assert_eq!(item.id.as_deref(), Some("request123"));
    let event: Value = serde_json::from_str(&item.body).expect("json");
    assert_eq!(
        event,
        json!({"event": "some event", "fields": {"severity": "INFO"}})
    );
    assert_eq!(
        parse_input(br#"{"request":{"event":{"a":1}}}"#)
            .expect("no id")
            .id,
        None
    );
    for (payload, expected) in [
        (&b"nope"[..], "not JSON"),
        (b"[]", "not a JSON object"),
        (br#"{"id":"a"}"#, "request is required"),
        (br#"{"id":"a","request":"x"}"#, "request must be an object"),
        (
            br#"{"id":"a","request":{"fields":{}}}"#,
            "request.event is required",
        ),
        (
            br#"{"id":"a","request":{"event":""}}"#,
            "request.event cannot be empty",
        ),
        (
            br#"{"id":5,"request":{"event":"x"}}"#,
            "id must be a string",
        ),
    ] {
        let err = parse_input(payload).expect_err(expected);
        assert!(
            err.message.contains(expected),
            "{} vs {expected}",
            err.message
        );
    }
    assert_eq!(
        parse_input(br#"{"id":"a","request":{}}"#)
            .expect_err("no event")
            .id
            .as_deref(),
        Some("a")
    );
}

fn item(id: &str, size: usize) -> Item {
    Item {
        id: Some(id.into()),
        body: "x".repeat(size),
    }
}

#[test]
fn a_full_queue_replaces_the_oldest() {
    let mut q = Queue::new(3, 0);
    for i in 0..3 {
        assert!(q.push(item(&i.to_string(), 10)).expect("fits").is_empty());
    }
    let dropped = q.push(item("3", 10)).expect("fits");
    assert_eq!(ids(&dropped), vec!["0"]);
    assert_eq!(q.len(), 3);

    // The byte bound too.
    let mut q = Queue::new(100, 25);
    q.push(item("a", 10)).expect("fits");
    q.push(item("b", 10)).expect("fits");
    let dropped = q.push(item("c", 10)).expect("fits");
    assert_eq!(ids(&dropped), vec!["a"]);
    assert!(
        q.push(item("huge", 26)).is_err(),
        "larger than the whole bound"
    );
}

#[test]
fn batches_and_requeue_keep_order() {
    let mut q = Queue::new(4, 0);
    for i in 0..4 {
        q.push(item(&i.to_string(), 10)).expect("fits");
    }
    let batch = q.take_batch(25);
    assert_eq!(ids(&batch), vec!["0", "1"]);
    q.push(item("4", 10)).expect("fits");
    q.push(item("5", 10)).expect("fits");
    // Back at the front, and the bound applies again: the oldest go.
    let dropped = q.requeue(batch);
    assert_eq!(ids(&dropped), vec!["0", "1"]);
    assert_eq!(ids(&q.take_batch(1000)), vec!["2", "3", "4", "5"]);
    let mut q = Queue::new(4, 0);
    q.push(item("big", 100)).expect("fits");
    assert_eq!(
        q.take_batch(10).len(),
        1,
        "one event even when larger than a batch"
    );
}

#[test]
fn messages() {
    assert_eq!(
        status(
            &[item("a", 1)],
            &[
                item("b", 1),
                Item {
                    id: None,
                    body: String::new()
                }
            ]
        ),
        json!({"response": {"succeeded": ["a"], "failed": ["b"]}})
    );
    assert_eq!(
        error_message("UnauthorizedException", "invalid splunk token", None),
        json!({"response": {"error": "UnauthorizedException", "error_message": "invalid splunk token", "status": "fail"}})
    );
}

#[test]
fn a_custom_ca_file_adds_roots() {
    let dir = tempfile::tempdir().expect("tmp");
    let cert = rcgen::generate_simple_self_signed(vec!["splunk.local".to_string()])
        .expect("self-signed certificate");
    let pem = dir.path().join("splunk.crt");
    std::fs::write(&pem, cert.cert.pem()).expect("write");
    let roots = load_ca(&pem).expect("PEM with one certificate");
    assert_eq!(roots, vec![cert.cert.der().to_vec()]);
    evergreen_aws::try_http_client_with_roots(&roots).expect("a client trusting it");

    let not_pem = dir.path().join("not.crt");
    std::fs::write(&not_pem, "hello").expect("write");
    assert!(load_ca(&not_pem)
        .expect_err("no certificate")
        .contains("no certificate"));
    assert!(load_ca(&dir.path().join("missing.crt"))
        .expect_err("missing")
        .contains("cannot read"));
}
