//! End-to-end: the built-in SplunkIntegration connector under the real
//! runtime, against the local HTTP recorder standing in for a Splunk HTTP
//! Event Collector (`SplunkEndpoint` = `http://localhost:<port>`; the
//! reference's pattern refuses a bare IP address). The HEC token is a
//! secret put into the store before the runtime starts.
//!
//! Checked on the wire as HEC expects it: `POST /services/collector`,
//! `Authorization: Splunk <token>`, the events' JSON concatenated in the
//! body. Failure paths: 5xx and 429 retried, the endpoint down then up
//! (nothing lost), a full queue (the oldest replaced, reported as failed),
//! a refused token, bad input.

use std::time::Duration;

use evergreen_tests::http_recorder::{ConnectorRig, HttpRecorder, Recorded, Reply, SecretSpec};
use serde_json::{json, Value};

const ARN: &str = "arn:aws:greengrass:us-east-1::/connectors/SplunkIntegration/versions/4";
const INPUT: &str = "splunk/logs/put";
const STATUS: &str = "splunk/logs/put/status";
const ERROR: &str = "splunk/logs/put/error";
const TOKEN: &str = "0f1e2d3c-hec-token-4b5a";
const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-SplunkToken-AbCdEf";
// Bounds, not delays: a retry may wait out a backoff of up to 16 s here.
const LIMIT: Duration = Duration::from_secs(40);

fn hec(_: &Recorded) -> Reply {
    Reply::json(200, &json!({ "text": "Success", "code": 0 }))
}

/// The events in a HEC body (concatenated JSON objects).
fn events(r: &Recorded) -> Vec<Value> {
    serde_json::Deserializer::from_slice(&r.body)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("HEC body is concatenated JSON: {e}: {}", r.text()))
}

fn event(id: &str) -> Value {
    json!({ "request": { "event": format!("event {id}"), "fields": { "severity": "INFO" } }, "id": id })
}

/// Every id reported as succeeded / failed so far.
fn reported(rig: &ConnectorRig, key: &str) -> Vec<String> {
    rig.published(STATUS)
        .iter()
        .flat_map(|s| s["response"][key].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn wait_reported(rig: &ConnectorRig, key: &str, ids: &[&str]) {
    let got = evergreen_tests::wait_for(LIMIT, || {
        let all = reported(rig, key);
        ids.iter()
            .all(|id| all.iter().any(|a| a == id))
            .then_some(())
    });
    assert!(
        got.is_some(),
        "{ids:?} {key}: {:?}\nconnector log:\n{}\nruntime log:\n{}",
        rig.published(STATUS),
        rig.log(),
        rig.runtime_log()
    );
}

#[test]
fn events_reach_the_collector_with_the_token_and_survive_failures() {
    let mut hec_server = HttpRecorder::start(hec);
    let started = ConnectorRig::start(
        ARN,
        json!({
            "SplunkEndpoint": format!("http://localhost:{}", hec_server.port()),
            "MemorySize": "64",
            "SplunkQueueSize": "5",
            "SplunkFlushIntervalSeconds": "0",
            "SplunkTokenSecretArn": SECRET_ARN,
            "SplunkTokenSecretArn-ResourceId": "SplunkToken",
        }),
        &[INPUT],
        &[STATUS, ERROR],
        &SecretSpec {
            resource_id: "SplunkToken".into(),
            arn: SECRET_ARN.into(),
            value: Some(TOKEN.as_bytes().to_vec()),
        },
        json!({}),
    );
    let rig = match started {
        Ok(r) => r,
        Err(why) => {
            eprintln!("\n*** SKIPPED: cannot put the HEC token into the secret store: {why} ***\n");
            return;
        }
    };

    // One event: the HEC request as Splunk expects it.
    rig.send(INPUT, event("e1"));
    wait_reported(&rig, "succeeded", &["e1"]);
    let sent = hec_server.delivered();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].path, "/services/collector");
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Splunk {TOKEN}").as_str())
    );
    assert_eq!(
        events(&sent[0]),
        vec![json!({ "event": "event e1", "fields": { "severity": "INFO" } })]
    );

    // 503, 429, then accepted.
    let before = hec_server.requests().len();
    hec_server.fail_next(1, 503);
    hec_server.fail_next(1, 429);
    rig.send(INPUT, event("e2"));
    wait_reported(&rig, "succeeded", &["e2"]);
    let attempts: Vec<u16> = hec_server.requests()[before..]
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(attempts, vec![503, 429, 200]);

    // Down, then up: both events arrive after.
    let retries_before = rig.log().matches("retrying").count();
    hec_server.stop();
    rig.send(INPUT, event("e3"));
    rig.send(INPUT, event("e4"));
    // A failed attempt while it is down, before it comes back.
    let retrying = evergreen_tests::wait_for(LIMIT, || {
        (rig.log().matches("retrying").count() > retries_before).then_some(())
    });
    assert!(retrying.is_some(), "{}", rig.log());
    hec_server.restart();
    wait_reported(&rig, "succeeded", &["e3", "e4"]);
    let bodies: Vec<Value> = hec_server.delivered().iter().flat_map(events).collect();
    for id in ["e3", "e4"] {
        assert!(
            bodies.iter().any(|e| e["event"] == format!("event {id}")),
            "{id} in {bodies:?}"
        );
    }

    // A full queue (5): eight events while the collector is down; the
    // three oldest are replaced and reported failed, the newest five
    // arrive once it is back.
    hec_server.stop();
    let ids: Vec<String> = (1..=8).map(|i| format!("q{i}")).collect();
    for id in &ids {
        rig.send(INPUT, event(id));
    }
    wait_reported(&rig, "failed", &["q1", "q2", "q3"]);
    hec_server.restart();
    wait_reported(&rig, "succeeded", &["q4", "q5", "q6", "q7", "q8"]);
    let failed = reported(&rig, "failed");
    let succeeded = reported(&rig, "succeeded");
    for id in ["q1", "q2", "q3"] {
        assert!(
            !succeeded.iter().any(|s| s == id),
            "{id} was dropped: {succeeded:?}"
        );
    }
    for id in ["q4", "q5", "q6", "q7", "q8"] {
        assert!(!failed.iter().any(|s| s == id), "{id} was kept: {failed:?}");
    }
    assert!(rig.log().contains("queue full"), "{}", rig.log());

    // A refused token: the batch fails, the error topic says why.
    hec_server.fail_next(1, 403);
    rig.send(INPUT, event("u1"));
    wait_reported(&rig, "failed", &["u1"]);
    let unauthorized = rig
        .wait_published(ERROR, LIMIT, |e| {
            e["response"]["error"] == "UnauthorizedException"
        })
        .expect("an UnauthorizedException");
    assert_eq!(unauthorized["response"]["status"], "fail");
    assert!(unauthorized["response"]["error_message"]
        .as_str()
        .is_some_and(|m| m.contains("invalid splunk token")));

    // Bad input: refused on the error topic, naming the field; nothing sent.
    let sent_before = hec_server.requests().len();
    rig.send(INPUT, json!({ "request": { "fields": {} }, "id": "bad1" }));
    let bad = rig
        .wait_published(ERROR, LIMIT, |e| e["id"] == "bad1")
        .expect("an error for bad1");
    assert_eq!(bad["response"]["error"], "InvalidInputException", "{bad}");
    assert!(bad["response"]["error_message"]
        .as_str()
        .is_some_and(|m| m.contains("request.event")));
    rig.send(INPUT, json!("{not json"));
    rig.wait_published(ERROR, LIMIT, |e| {
        e["response"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("not JSON"))
    })
    .expect("an error for a payload that is not JSON");
    assert_eq!(hec_server.requests().len(), sent_before);

    eprintln!(
        "{} connector VmRSS after the test's traffic: {} KiB",
        rig.name,
        rig.connector_rss_kb()
            .map_or("?".to_string(), |k| k.to_string())
    );
    assert!(!rig.log().contains(TOKEN), "the token leaked into the log");
    assert!(!rig.runtime_log().contains(TOKEN));
}
