//! End-to-end: the built-in IoT Analytics connector under the real runtime.
//!
//! moto 5.2.1 does not implement AWS IoT Analytics (its server answers 500
//! for the service), so the connector calls the tests' own stand-in,
//! [`IotAnalyticsServer`]: it verifies each request's SigV4 signature from
//! scratch and the `BatchPutMessage` body's shape, and records what it
//! accepted. An `eg-fn feed` function publishes the input messages; an
//! `eg-fn record` function receives `iotanalytics/messages/put/status`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use evergreen_aws::{AwsClient, AwsError};
use evergreen_ipc::AwsCredentials;
use evergreen_tests::fault_proxy::Fault;
use evergreen_tests::iotanalytics_server::IotAnalyticsServer;
use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
const IOTA: &str = "arn:aws:greengrass:us-east-1::/connectors/IoTAnalytics/versions/4";
const STATUS: &str = "iotanalytics/messages/put/status";

fn iota_group(feed: &Path, record: &Path, parameters: Value) -> Value {
    let mut g = group(
        vec![
            function("feeder", &format!("feed {}", feed.display())),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![
            sub(
                "put",
                &fn_arn("feeder"),
                "iotanalytics/channels/+/messages/put",
                IOTA,
            ),
            sub(
                "binary",
                &fn_arn("feeder"),
                "iotanalytics/channels/+/messages/binary/put",
                IOTA,
            ),
            sub("custom", &fn_arn("feeder"), "plant/#", IOTA),
            sub("statuses", IOTA, STATUS, &fn_arn("rec")),
        ],
    );
    let mut params = json!({ "MemorySize": "65535", "IsolationMode": "NoContainer" });
    merge(&mut params, &parameters);
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
        "Id": "iota", "ConnectorArn": IOTA, "Parameters": params
    }]});
    g
}

fn feed(file: &Path, lines: &[(&str, Value)]) {
    use std::io::Write;
    let mut text = String::new();
    for (topic, payload) in lines {
        text.push_str(&json!({"topic": topic, "payload": payload}).to_string());
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("feed file");
    f.write_all(text.as_bytes()).expect("feed");
}

fn statuses(record: &Path) -> Vec<Value> {
    records(record)
        .iter()
        .filter(|r| r["topic"] == STATUS)
        .map(|r| {
            serde_json::from_str(r["payload"].as_str().unwrap_or_default()).unwrap_or(Value::Null)
        })
        .collect()
}

fn connector_log(rt: &Runtime) -> PathBuf {
    rt.log_path("user/us-east-1/aws/IoTAnalytics.log")
}

fn wait_statuses(rt: &Runtime, record: &Path, n: usize) -> Vec<Value> {
    wait_for(LIMIT, || {
        let s = statuses(record);
        (s.len() >= n).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "{n} statuses expected, got {:?}\nconnector log:\n{}\nruntime log:\n{}",
            statuses(record),
            read(&connector_log(rt)),
            read(&rt.log_path("system/runtime.log"))
        )
    })
}

fn by_id<'a>(statuses: &'a [Value], id: &str) -> &'a Value {
    statuses
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no status for {id}: {statuses:?}"))
}

fn put(channel: &str) -> String {
    format!("iotanalytics/channels/{channel}/messages/put")
}

#[test]
fn iot_analytics_messages_go_out_in_signed_batches_per_channel() {
    let server =
        IotAnalyticsServer::start_on(0, REGION, MOTO_SECRET_KEY, &["telemetry", "raw", "plant"])
            .expect("IoT Analytics stand-in");
    let dir = tempfile::tempdir().expect("tmp");
    let (feed_file, record) = (dir.path().join("feed"), dir.path().join("rec"));
    let g = iota_group(
        &feed_file,
        &record,
        json!({ "IotAnalyticsBatchSizePerChannel": "2", "IotAnalyticsDefaultChannelName": "plant" }),
    );
    assert_valid_group(dir.path(), &g);
    let rt = Runtime::start_config(&g, &aws_core_config(&server.url()), &[]);

    let telemetry = put("telemetry");
    feed(
        &feed_file,
        &[
            (
                &telemetry,
                json!({"request": {"message": "{\"temp\":21.5}"}, "id": "t1"}),
            ),
            (
                &telemetry,
                json!({"request": {"message": "{\"temp\":22.5}"}, "id": "t2"}),
            ),
            (
                &telemetry,
                json!({"request": {"message": "{\"temp\":23.5}"}, "id": "t3"}),
            ),
            (
                "iotanalytics/channels/raw/messages/binary/put",
                json!("raw bytes \u{1}"),
            ),
            ("plant/line1/temp", json!("21.5")),
            (
                &put("missing"),
                json!({"request": {"message": "{}"}, "id": "m1"}),
            ),
            (&telemetry, json!("not json")),
            (&telemetry, json!({"request": {"msg": "typo"}, "id": "bad"})),
            (
                "iotanalytics/channels/no-dash/messages/put",
                json!({"request": {"message": "{}"}, "id": "badch"}),
            ),
        ],
    );
    let got = wait_statuses(&rt, &record, 9);
    print_connector_rss(&rt, "IoTAnalytics");

    for id in ["t1", "t2", "t3"] {
        assert_eq!(
            by_id(&got, id)["response"],
            json!({"status": "success"}),
            "{got:?}"
        );
    }
    let missing = by_id(&got, "m1");
    assert_eq!(missing["response"]["status"], "fail");
    assert_eq!(
        missing["response"]["error"], "ResourceNotFoundException",
        "{missing}"
    );
    assert_eq!(
        missing["response"]["error_message"],
        "A resource with the specified name could not be found."
    );
    let unreadable = got
        .iter()
        .find(|s| s.get("id").is_none())
        .expect("status without id");
    assert_eq!(unreadable["response"]["error"], "InvalidInputException");
    let bad = by_id(&got, "bad");
    assert!(
        bad["response"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("request.message is missing")),
        "{bad}"
    );
    let badch = by_id(&got, "badch");
    assert!(
        badch["response"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("\"no-dash\"")),
        "{badch}"
    );
    // The binary and custom-topic messages have generated ids and succeeded.
    let successes = got
        .iter()
        .filter(|s| s["response"]["status"] == "success")
        .count();
    assert_eq!(successes, 5, "{got:?}");

    // What the service got: each payload as sent, in order, batched by 2.
    assert_eq!(
        server.problems(),
        Vec::<String>::new(),
        "every request well signed and shaped"
    );
    let received = server.received();
    let of = |channel: &str| -> Vec<(String, Vec<u8>)> {
        received
            .iter()
            .filter(|r| r.channel == channel)
            .map(|r| (r.message_id.clone(), r.payload.clone()))
            .collect()
    };
    assert_eq!(
        of("telemetry"),
        vec![
            ("t1".to_string(), br#"{"temp":21.5}"#.to_vec()),
            ("t2".to_string(), br#"{"temp":22.5}"#.to_vec()),
            ("t3".to_string(), br#"{"temp":23.5}"#.to_vec()),
        ]
    );
    assert_eq!(of("raw").len(), 1);
    assert_eq!(of("raw")[0].1, "raw bytes \u{1}".as_bytes());
    assert_eq!(of("plant").len(), 1);
    assert_eq!(of("plant")[0].1, b"21.5");
    let telemetry_batches: Vec<usize> = server
        .batches()
        .into_iter()
        .filter(|(c, _)| c == "telemetry")
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        telemetry_batches,
        [2, 1],
        "IotAnalyticsBatchSizePerChannel 2"
    );
}

#[test]
fn iot_analytics_stand_in_refuses_a_wrong_signature() {
    // The stand-in's check can fail: the same client with another secret.
    let server =
        IotAnalyticsServer::start_on(0, REGION, MOTO_SECRET_KEY, &["telemetry"]).expect("server");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let call = |secret: &str| {
        let aws = AwsClient::with_credentials(
            REGION,
            BTreeMap::from([("iotanalytics".to_string(), server.url())]),
            AwsCredentials {
                access_key_id: MOTO_ACCESS_KEY.into(),
                secret_access_key: secret.into(),
                session_token: Some("token".into()),
                expiration_ms: None,
            },
        );
        let body = json!({"channelName": "telemetry", "messages": [{"messageId": "1", "payload": "e30="}]});
        rt.block_on(aws.rest_json(
            "iotanalytics",
            evergreen_aws::Method::POST,
            "/messages/batch",
            Some(&body),
        ))
    };
    assert_eq!(
        call(MOTO_SECRET_KEY).expect("right secret"),
        json!({"batchPutMessageErrorEntries": []})
    );
    let err = call("wrong").expect_err("wrong secret");
    assert!(
        matches!(&err, AwsError::Service { status: 403, code, .. } if code == "InvalidSignatureException"),
        "{err:?}"
    );
    assert_eq!(server.problems().len(), 1);
}

#[test]
fn iot_analytics_endpoint_down_full_queue_then_5xx_and_throttling_lose_nothing_accepted() {
    let port = free_port().expect("free port");
    let dir = tempfile::tempdir().expect("tmp");
    let (feed_file, record) = (dir.path().join("feed"), dir.path().join("rec"));
    let g = iota_group(
        &feed_file,
        &record,
        json!({ "IotAnalyticsQueueSizePerChannel": "2", "PublishInterval": "0" }),
    );
    let rt = Runtime::start_config(
        &g,
        &aws_core_config(&format!("http://127.0.0.1:{port}")),
        &[],
    );
    let telemetry = put("telemetry");
    let message =
        |id: &str| json!({"request": {"message": format!("{{\"n\":\"{id}\"}}")}, "id": id});

    // Nothing listens: the first message goes out, fails, and waits to retry...
    feed(&feed_file, &[(&telemetry, message("a"))]);
    let retrying = wait_for(LIMIT, || {
        read(&connector_log(&rt))
            .contains("will be retried")
            .then_some(())
    });
    assert!(
        retrying.is_some(),
        "retry logged:\n{}",
        read(&connector_log(&rt))
    );
    // ...keeping its room in the queue of 2: one more fits, the rest are refused.
    feed(
        &feed_file,
        &[
            (&telemetry, message("b")),
            (&telemetry, message("c")),
            (&telemetry, message("d")),
        ],
    );
    let refused = wait_statuses(&rt, &record, 2);
    for id in ["c", "d"] {
        let s = by_id(&refused, id);
        assert_eq!(s["response"]["status"], "fail", "{s}");
        assert_eq!(s["response"]["error"], "QueueFullException", "{s}");
    }

    // The endpoint comes up, answering a 503 and then a throttle first.
    let server = IotAnalyticsServer::start_failing(
        port,
        REGION,
        MOTO_SECRET_KEY,
        &["telemetry"],
        &[Fault::unavailable(), Fault::throttling_json()],
    )
    .expect("stand-in on the runtime's port");
    let got = wait_statuses(&rt, &record, 4);
    for id in ["a", "b"] {
        assert_eq!(by_id(&got, id)["response"]["status"], "success", "{got:?}");
    }
    assert_eq!(got.len(), 4, "one status per message: {got:?}");
    let ids: Vec<String> = server
        .received()
        .into_iter()
        .map(|r| r.message_id)
        .collect();
    assert_eq!(ids, ["a", "b"], "each accepted message once, in order");
    assert_eq!(
        server.faults_served(),
        2,
        "the 503 and the throttle were met and retried"
    );
    assert_eq!(server.problems(), Vec::<String>::new());
}
