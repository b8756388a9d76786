//! End-to-end: the built-in ServiceNowMetricBaseIntegration connector under
//! the real runtime, against the local HTTP recorder standing in for a
//! ServiceNow instance (`evergreen.aws.endpoints.servicenow`). The
//! credentials are a JSON secret `{"user","password"}` put into the store
//! before the runtime starts.
//!
//! Checked on the wire: `POST /api/now/v1/clotho/put`, basic auth, the
//! JSON body `{"seriesRef":{subject,table,metric},"values":[{timestamp,value}]}`.
//! Failure paths: 5xx and 429 retried, the endpoint down then up, a full
//! buffer (the oldest replaced), refused credentials, bad input.

use std::time::Duration;

use evergreen_tests::http_recorder::{
    basic_auth, ConnectorRig, HttpRecorder, Recorded, Reply, SecretSpec,
};
use serde_json::{json, Value};

const ARN: &str =
    "arn:aws:greengrass:us-east-1::/connectors/ServiceNowMetricBaseIntegration/versions/4";
const INPUT: &str = "servicenow/metricbase/metric";
const STATUS: &str = "servicenow/metricbase/metric/status";
const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-ServiceNowAuth-AbCdEf";
const PASSWORD: &str = "pw-7c1d-metricbase";
const SUBJECT: &str = "ef43c6d40a0a0b5700c77f9bf387afe3";
// Bounds, not delays: a retry may wait out a backoff of up to 16 s here.
const LIMIT: Duration = Duration::from_secs(40);

fn servicenow(_: &Recorded) -> Reply {
    Reply::json(201, &json!({ "result": {} }))
}

fn metric(name: &str, value: f64, timestamp: &str) -> Value {
    json!({ "request": { "subject": SUBJECT, "metric_name": name, "table": "u_greengrass_app",
        "value": value, "timestamp": timestamp } })
}

/// Every (timestamp, value) of `name` reported as sent.
fn sent_values(rig: &ConnectorRig, name: &str) -> Vec<(String, f64)> {
    rig.published(STATUS)
        .iter()
        .filter(|s| s["response"]["status"] == "success" && s["response"]["metric_name"] == name)
        .flat_map(|s| {
            s["response"]["values"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|v| {
            (
                v["timestamp"].as_str().unwrap_or_default().to_string(),
                v["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

fn wait_values(rig: &ConnectorRig, name: &str, n: usize) -> Vec<(String, f64)> {
    evergreen_tests::wait_for(LIMIT, || {
        let got = sent_values(rig, name);
        (got.len() >= n).then_some(got)
    })
    .unwrap_or_else(|| {
        panic!(
            "{n} values of {name}: {:?}\nconnector log:\n{}\nruntime log:\n{}",
            rig.published(STATUS),
            rig.log(),
            rig.runtime_log()
        )
    })
}

#[test]
fn metrics_reach_metricbase_with_basic_auth_and_survive_failures() {
    let mut api = HttpRecorder::start(servicenow);
    let started = ConnectorRig::start(
        ARN,
        json!({
            "PublishInterval": "1",
            "PublishBatchSize": "2",
            "InstanceName": "myinstance",
            "DefaultTableName": "u_default",
            "MaxMetricsToRetain": "4",
            "AuthSecretArn": SECRET_ARN,
            "AuthSecretArn-ResourceId": "ServiceNowAuth",
        }),
        &[INPUT],
        &[STATUS],
        &SecretSpec {
            resource_id: "ServiceNowAuth".into(),
            arn: SECRET_ARN.into(),
            value: Some(
                json!({ "user": "admin", "password": PASSWORD })
                    .to_string()
                    .into_bytes(),
            ),
        },
        json!({ "aws": { "endpoints": { "servicenow": api.url() } } }),
    );
    let rig = match started {
        Ok(r) => r,
        Err(why) => {
            eprintln!(
                "\n*** SKIPPED: cannot put the credentials into the secret store: {why} ***\n"
            );
            return;
        }
    };

    // Two values of one series: one batch, one request.
    rig.send(INPUT, metric("u_count", 1.0, "2018-10-14T10:30:00"));
    rig.send(INPUT, metric("u_count", 1.5, "2018-10-14T10:31:00"));
    let got = wait_values(&rig, "u_count", 2);
    assert_eq!(
        got,
        vec![
            ("2018-10-14T10:30:00".to_string(), 1.0),
            ("2018-10-14T10:31:00".to_string(), 1.5)
        ]
    );
    let status = rig
        .wait_published(STATUS, LIMIT, |s| s["response"]["metric_name"] == "u_count")
        .expect("status");
    assert_eq!(status["response"]["table_name"], "u_greengrass_app");
    assert!(status["response"]["response_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(status["response"]["processed_on"]
        .as_str()
        .is_some_and(|s| s.len() == 19));
    // Usually one request with both values; two when the interval had
    // already passed as the first arrived (the batch goes at size 2 or
    // after PublishInterval, whichever comes first).
    let sent = api.delivered();
    assert!((1..=2).contains(&sent.len()), "{sent:?}");
    let mut values = Vec::new();
    for r in &sent {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/now/v1/clotho/put");
        assert_eq!(
            r.header("authorization"),
            Some(basic_auth("admin", PASSWORD).as_str())
        );
        assert!(r
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")));
        let body = r.json().expect("JSON body");
        assert_eq!(
            body["seriesRef"],
            json!({ "subject": SUBJECT, "table": "u_greengrass_app", "metric": "u_count" })
        );
        values.extend(body["values"].as_array().cloned().unwrap_or_default());
    }
    assert_eq!(
        values,
        vec![
            json!({ "timestamp": "2018-10-14T10:30:00", "value": 1.0 }),
            json!({ "timestamp": "2018-10-14T10:31:00", "value": 1.5 })
        ]
    );
    // The default table and timestamp.
    rig.send(
        INPUT,
        json!({ "request": { "subject": SUBJECT, "metric_name": "u_defaults", "value": 7 } }),
    );
    wait_values(&rig, "u_defaults", 1);
    let body = api.delivered().pop().and_then(|r| r.json()).expect("body");
    assert_eq!(body["seriesRef"]["table"], "u_default");
    assert!(body["values"][0]["timestamp"]
        .as_str()
        .is_some_and(|t| t.len() == 19 && t.contains('T')));

    // 503 and 429: retried.
    let before = api.requests().len();
    api.fail_next(1, 503);
    api.fail_next(1, 429);
    rig.send(INPUT, metric("u_retry", 2.0, "2018-10-14T10:32:00"));
    wait_values(&rig, "u_retry", 1);
    let attempts: Vec<u16> = api.requests()[before..].iter().map(|r| r.status).collect();
    assert_eq!(attempts, vec![503, 429, 201]);

    // Down then up: delivered after.
    let retries_before = rig.log().matches("retrying").count();
    api.stop();
    rig.send(INPUT, metric("u_outage", 3.0, "2018-10-14T10:33:00"));
    // A failed attempt while it is down, before it comes back.
    let retrying = evergreen_tests::wait_for(LIMIT, || {
        (rig.log().matches("retrying").count() > retries_before).then_some(())
    });
    assert!(retrying.is_some(), "{}", rig.log());
    api.restart();
    wait_values(&rig, "u_outage", 1);

    // A full buffer (4): six values while down; the two oldest replaced.
    api.stop();
    for i in 0..6 {
        rig.send(
            INPUT,
            metric("u_full", f64::from(i), &format!("2018-10-14T11:00:0{i}")),
        );
    }
    let dropped = evergreen_tests::wait_for(LIMIT, || {
        let n = rig
            .published(STATUS)
            .iter()
            .filter(|s| s["response"]["error"] == "MetricDroppedException")
            .count();
        (n >= 2).then_some(n)
    });
    assert_eq!(
        dropped,
        Some(2),
        "{:?}\n{}",
        rig.published(STATUS),
        rig.log()
    );
    api.restart();
    let got = wait_values(&rig, "u_full", 4);
    let values: Vec<f64> = got.iter().map(|(_, v)| *v).collect();
    assert_eq!(
        values,
        vec![2.0, 3.0, 4.0, 5.0],
        "the newest four, in order"
    );

    // Refused credentials.
    api.fail_next(1, 401);
    rig.send(INPUT, metric("u_denied", 1.0, "2018-10-14T12:00:00"));
    let denied = rig
        .wait_published(STATUS, LIMIT, |s| {
            s["response"]["error"] == "UnauthorizedException"
        })
        .expect("UnauthorizedException");
    assert_eq!(denied["response"]["status"], "fail");

    // Bad input names the field; nothing is sent.
    let sent_before = api.requests().len();
    rig.send(
        INPUT,
        json!({ "request": { "subject": SUBJECT, "metric_name": "m", "value": "high" }, "id": "bad1" }),
    );
    let bad = rig
        .wait_published(STATUS, LIMIT, |s| s["id"] == "bad1")
        .expect("a failure for bad1");
    assert_eq!(bad["response"]["error"], "InvalidInputException", "{bad}");
    assert!(bad["response"]["error_message"]
        .as_str()
        .is_some_and(|m| m.contains("request.value")));
    rig.send(
        INPUT,
        json!({ "request": { "subject": SUBJECT, "metric_name": "m", "value": 1, "timestamp": "noon" } }),
    );
    rig.wait_published(STATUS, LIMIT, |s| {
        s["response"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("request.timestamp"))
    })
    .expect("a failure naming request.timestamp");
    assert_eq!(api.requests().len(), sent_before);

    eprintln!(
        "{} connector VmRSS after the test's traffic: {} KiB",
        rig.name,
        rig.connector_rss_kb()
            .map_or("?".to_string(), |k| k.to_string())
    );
    assert!(
        !rig.log().contains(PASSWORD),
        "the password leaked into the log"
    );
    assert!(!rig.runtime_log().contains(PASSWORD));
}
