//! End-to-end: the built-in SNS connector under the real runtime, publishing
//! to a real `moto_server`.
//!
//! An `eg-fn feed` function publishes the requests on `sns/message`; an
//! `eg-fn record` function receives `sns/message/status`. What SNS got is
//! read back the way a subscriber would: each moto topic has an SQS queue
//! subscribed, and the test receives the SNS notifications from it (with
//! the test's own signed client). The failure paths put a
//! [`FaultProxy`] between the runtime and moto.

use std::path::{Path, PathBuf};
use std::time::Duration;

use evergreen_aws::{xml_value, AwsClient};
use evergreen_ipc::AwsCredentials;
use evergreen_tests::fault_proxy::{Fault, FaultProxy};
use evergreen_tests::{require_containers, *};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
const SNS: &str = "arn:aws:greengrass:us-east-1::/connectors/SNS/versions/4";

/// The test's own view of moto: a signed client and a tokio runtime to drive it.
struct Cloud {
    aws: AwsClient,
    rt: tokio::runtime::Runtime,
}

impl Cloud {
    fn new(moto: &Moto) -> Cloud {
        let endpoints = ["sns", "sqs"]
            .iter()
            .map(|k| (k.to_string(), moto.url()))
            .collect();
        Cloud {
            aws: AwsClient::with_credentials(
                REGION,
                endpoints,
                AwsCredentials {
                    access_key_id: MOTO_ACCESS_KEY.into(),
                    secret_access_key: MOTO_SECRET_KEY.into(),
                    session_token: None,
                    expiration_ms: None,
                },
            ),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
        }
    }

    fn query(&self, service: &str, version: &str, action: &str, params: &[(&str, &str)]) -> String {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.rt
            .block_on(self.aws.query(service, version, action, &params))
            .unwrap_or_else(|e| panic!("{service} {action}: {e}"))
    }

    /// A topic with an SQS queue subscribed: (topic ARN, queue URL).
    fn topic_with_queue(&self, name: &str) -> (String, String) {
        let topic = self.query("sns", "2010-03-31", "CreateTopic", &[("Name", name)]);
        let topic_arn = xml_value(&topic, "TopicArn").expect("TopicArn");
        let queue_name = format!("{name}-inbox");
        let queue = self.query(
            "sqs",
            "2012-11-05",
            "CreateQueue",
            &[("QueueName", &queue_name)],
        );
        let queue_url = xml_value(&queue, "QueueUrl").expect("QueueUrl");
        let queue_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_name}");
        self.query(
            "sns",
            "2010-03-31",
            "Subscribe",
            &[
                ("TopicArn", &topic_arn),
                ("Protocol", "sqs"),
                ("Endpoint", &queue_arn),
            ],
        );
        (topic_arn, queue_url)
    }

    /// The SNS notifications waiting in a queue (removed from it).
    fn receive(&self, queue_url: &str) -> Vec<Value> {
        let mut out = Vec::new();
        // Bounded: 10 rounds of at most 10 messages.
        for _ in 0..10 {
            let xml = self.query(
                "sqs",
                "2012-11-05",
                "ReceiveMessage",
                &[("QueueUrl", queue_url), ("MaxNumberOfMessages", "10")],
            );
            let bodies: Vec<(String, String)> = xml
                .split("<Message>")
                .skip(1)
                .filter_map(|m| Some((xml_value(m, "Body")?, xml_value(m, "ReceiptHandle")?)))
                .collect();
            if bodies.is_empty() {
                break;
            }
            for (body, receipt) in bodies {
                out.push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
                self.query(
                    "sqs",
                    "2012-11-05",
                    "DeleteMessage",
                    &[("QueueUrl", queue_url), ("ReceiptHandle", &receipt)],
                );
            }
        }
        out
    }
}

/// feed → SNS → record, with the connector's extra `parameters`.
fn sns_group(feed: &Path, record: &Path, parameters: Value) -> Value {
    let mut g = group(
        vec![
            function("feeder", &format!("feed {}", feed.display())),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![
            sub("requests", &fn_arn("feeder"), "sns/message", SNS),
            sub("statuses", SNS, "sns/message/status", &fn_arn("rec")),
        ],
    );
    let mut params = json!({ "IsolationMode": "NoContainer" });
    merge(&mut params, &parameters);
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
        "Id": "sns", "ConnectorArn": SNS, "Parameters": params
    }]});
    g
}

/// Appends requests to the feed file (one line each, one write).
fn feed(file: &Path, payloads: &[Value]) {
    use std::io::Write;
    let mut text = String::new();
    for p in payloads {
        text.push_str(&json!({"topic": "sns/message", "payload": p}).to_string());
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("feed file");
    f.write_all(text.as_bytes()).expect("feed");
}

/// The statuses recorded so far, parsed.
fn statuses(record: &Path) -> Vec<Value> {
    records(record)
        .iter()
        .filter(|r| r["topic"] == "sns/message/status")
        .map(|r| {
            serde_json::from_str(r["payload"].as_str().unwrap_or_default()).unwrap_or(Value::Null)
        })
        .collect()
}

fn wait_statuses(rt: &Runtime, record: &Path, n: usize) -> Vec<Value> {
    let got = wait_for(LIMIT, || {
        let s = statuses(record);
        (s.len() >= n).then_some(s)
    });
    got.unwrap_or_else(|| {
        panic!(
            "{n} statuses expected, got {:?}\nconnector log:\n{}\nruntime log:\n{}",
            statuses(record),
            read(&connector_log(rt)),
            read(&rt.log_path("system/runtime.log"))
        )
    })
}

fn connector_log(rt: &Runtime) -> PathBuf {
    rt.log_path("user/us-east-1/aws/SNS.log")
}

fn by_id<'a>(statuses: &'a [Value], id: &str) -> &'a Value {
    statuses
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no status for {id}: {statuses:?}"))
}

#[test]
fn sns_requests_reach_their_topics_and_bad_ones_fail_naming_the_field() {
    let Some(moto) = Moto::start() else { return };
    let cloud = Cloud::new(&moto);
    let (alerts, alerts_q) = cloud.topic_with_queue("alerts");
    let (other, other_q) = cloud.topic_with_queue("other");
    let dir = tempfile::tempdir().expect("tmp");
    let (feed_file, record) = (dir.path().join("feed"), dir.path().join("rec"));
    let g = sns_group(&feed_file, &record, json!({ "DefaultSNSArn": alerts }));
    assert_valid_group(dir.path(), &g);
    let rt = Runtime::start_config(&g, &moto.core_config(), &[]);

    feed(
        &feed_file,
        &[
            json!({"request": {"message": "plain"}, "id": "r1"}),
            json!({"request": {"subject": "Message subject", "message": "to the other topic",
                "sns_topic_arn": other}, "id": "r2"}),
            json!({"request": {"subject": "Structured", "message": "{ \"default\": \"Message data\" }",
                "message_structure": "json"}, "id": "r3"}),
            json!("not json at all"),
            json!({"request": {"subject": "s"}, "id": "bad-message"}),
            json!({"request": {"message": "m", "sns_topic_arn": "arn:aws:sns:nowhere"}, "id": "bad-arn"}),
            json!({"request": {"message": "m", "subject": "two\nlines"}, "id": "bad-subject"}),
            json!({"request": {"message": "m",
                "sns_topic_arn": format!("arn:aws:sns:{REGION}:{ACCOUNT}:missing")}, "id": "no-topic"}),
        ],
    );
    let got = wait_statuses(&rt, &record, 8);
    print_connector_rss(&rt, "SNS");

    // Successes carry the id SNS gave the message, which is what the
    // subscriber received.
    let alerts_got = cloud.receive(&alerts_q);
    let other_got = cloud.receive(&other_q);
    for (id, queue, message, subject) in [
        ("r1", &alerts_got, "plain", None),
        (
            "r2",
            &other_got,
            "to the other topic",
            Some("Message subject"),
        ),
        ("r3", &alerts_got, "Message data", Some("Structured")),
    ] {
        let status = by_id(&got, id);
        assert_eq!(status["response"]["status"], "success", "{status}");
        let message_id = status["response"]["sns_message_id"]
            .as_str()
            .expect("sns_message_id");
        let delivered = queue
            .iter()
            .find(|n| n["MessageId"] == message_id)
            .unwrap_or_else(|| panic!("{id} ({message_id}) not delivered: {queue:?}"));
        assert_eq!(delivered["Message"], message, "{delivered}");
        if let Some(subject) = subject {
            assert_eq!(delivered["Subject"], subject, "{delivered}");
        }
    }
    assert_eq!(alerts_got.len(), 2, "{alerts_got:?}");
    assert_eq!(other_got.len(), 1, "{other_got:?}");

    // Bad input: the documented failure, naming the field, nothing sent.
    let unreadable = got
        .iter()
        .find(|s| s.get("id").is_none())
        .expect("a status without id for the unreadable request");
    assert_eq!(unreadable["response"]["status"], "fail");
    assert_eq!(unreadable["response"]["error"], "InvalidInputException");
    assert!(unreadable["response"]["error_message"]
        .as_str()
        .is_some_and(|m| m.contains("not JSON")));
    for (id, field) in [
        ("bad-message", "request.message is missing"),
        ("bad-arn", "request.sns_topic_arn: SNS Topic Arn is invalid"),
        ("bad-subject", "request.subject"),
    ] {
        let s = by_id(&got, id);
        assert_eq!(s["response"]["status"], "fail", "{s}");
        assert_eq!(s["response"]["error"], "InvalidInputException", "{s}");
        let text = s["response"]["error_message"].as_str().unwrap_or_default();
        assert!(text.contains(field), "{id}: {text}");
    }
    // A topic SNS does not have: the service's own error, not retried.
    let s = by_id(&got, "no-topic");
    assert_eq!(s["response"]["status"], "fail", "{s}");
    assert_eq!(s["response"]["error"], "NotFound", "{s}");
}

#[test]
fn sns_endpoint_down_fills_the_queue_then_everything_accepted_is_delivered() {
    let Some(moto) = Moto::start() else { return };
    let cloud = Cloud::new(&moto);
    let (alerts, alerts_q) = cloud.topic_with_queue("alerts");
    // The runtime is pointed at a port where nothing listens yet.
    let port = free_port().expect("free port");
    let dir = tempfile::tempdir().expect("tmp");
    let (feed_file, record) = (dir.path().join("feed"), dir.path().join("rec"));
    let g = sns_group(
        &feed_file,
        &record,
        json!({ "DefaultSNSArn": alerts, "MessageQueueSize": "2" }),
    );
    let rt = Runtime::start_config(
        &g,
        &aws_core_config(&format!("http://127.0.0.1:{port}")),
        &[],
    );

    // The first request is taken off the queue and retried...
    feed(
        &feed_file,
        &[json!({"request": {"message": "m1"}, "id": "m1"})],
    );
    let retrying = wait_for(LIMIT, || {
        read(&connector_log(&rt))
            .contains("retrying in")
            .then_some(())
    });
    assert!(
        retrying.is_some(),
        "retry logged:\n{}",
        read(&connector_log(&rt))
    );
    // ...so two more fit in the queue, and the rest are turned away.
    let more: Vec<Value> = (2..=6)
        .map(|i| json!({"request": {"message": format!("m{i}")}, "id": format!("m{i}")}))
        .collect();
    feed(&feed_file, &more);
    let full = wait_statuses(&rt, &record, 3);
    for id in ["m4", "m5", "m6"] {
        let s = by_id(&full, id);
        assert_eq!(s["response"]["status"], "fail", "{s}");
        assert_eq!(s["response"]["error"], "QueueFullException", "{s}");
    }
    assert_eq!(full.len(), 3, "nothing else answered while down: {full:?}");

    // The endpoint comes up: the three accepted messages go out, in order.
    let _proxy = FaultProxy::start_on(port, moto.port()).expect("proxy on the runtime's port");
    let got = wait_statuses(&rt, &record, 6);
    let delivered = cloud.receive(&alerts_q);
    let mut order = Vec::new();
    for id in ["m1", "m2", "m3"] {
        let s = by_id(&got, id);
        assert_eq!(s["response"]["status"], "success", "{s}");
        order.push(got.iter().position(|x| x["id"] == id).expect("position"));
        let message_id = &s["response"]["sns_message_id"];
        assert!(
            delivered
                .iter()
                .any(|n| &n["MessageId"] == message_id && n["Message"] == id),
            "{id} delivered: {delivered:?}"
        );
    }
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert_eq!(
        delivered.len(),
        3,
        "the rejected ones were not sent: {delivered:?}"
    );
}

#[test]
fn sns_5xx_and_throttling_answers_are_retried() {
    let Some(moto) = Moto::start() else { return };
    let cloud = Cloud::new(&moto);
    let (alerts, alerts_q) = cloud.topic_with_queue("alerts");
    let proxy = FaultProxy::start(moto.port()).expect("proxy");
    proxy.fail_next(2, Fault::unavailable());
    proxy.fail_next(2, Fault::throttling_xml());
    let dir = tempfile::tempdir().expect("tmp");
    let (feed_file, record) = (dir.path().join("feed"), dir.path().join("rec"));
    let g = sns_group(&feed_file, &record, json!({ "DefaultSNSArn": alerts }));
    let rt = Runtime::start_config(&g, &aws_core_config(&proxy.url()), &[]);

    feed(
        &feed_file,
        &[
            json!({"request": {"message": "first"}, "id": "a"}),
            json!({"request": {"message": "second"}, "id": "b"}),
        ],
    );
    let got = wait_statuses(&rt, &record, 2);
    for id in ["a", "b"] {
        assert_eq!(by_id(&got, id)["response"]["status"], "success", "{got:?}");
    }
    assert_eq!(proxy.faults_served(), 4, "every fault was met and retried");
    let delivered = cloud.receive(&alerts_q);
    let mut messages: Vec<&str> = delivered
        .iter()
        .filter_map(|n| n["Message"].as_str())
        .collect();
    messages.sort_unstable();
    assert_eq!(messages, ["first", "second"], "each once: {delivered:?}");
    let log = read(&connector_log(&rt));
    assert!(
        log.contains("ServiceUnavailable") && log.contains("Throttling"),
        "{log}"
    );
}

#[test]
fn sns_runs_in_a_greengrass_container_too() {
    require_containers!();
    let Some(moto) = Moto::start() else { return };
    let cloud = Cloud::new(&moto);
    let (alerts, alerts_q) = cloud.topic_with_queue("alerts");
    let dir = tempfile::tempdir().expect("tmp");
    let (feed_file, record) = (dir.path().join("feed"), dir.path().join("rec"));
    let g = sns_group(
        &feed_file,
        &record,
        json!({ "DefaultSNSArn": alerts, "IsolationMode": "GreengrassContainer" }),
    );
    let rt = Runtime::start_config(&g, &moto.core_config(), &[]);
    feed(
        &feed_file,
        &[json!({"request": {"message": "from a container"}, "id": "c1"})],
    );
    let got = wait_statuses(&rt, &record, 1);
    let status = by_id(&got, "c1");
    assert_eq!(status["response"]["status"], "success", "{status}");
    let delivered = cloud.receive(&alerts_q);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["Message"], "from a container");
    assert_eq!(
        delivered[0]["MessageId"],
        status["response"]["sns_message_id"]
    );
}
