//! End-to-end: the built-in KinesisFirehose connector under the real
//! runtime, against a real `moto_server`. An `eg-fn feed` function
//! publishes chosen messages to the connector; an `eg-fn record` function
//! receives its statuses; what the delivery stream wrote is read back from
//! moto's S3 bucket. Failure paths go through a small fault proxy
//! (`evergreen_tests::fault_proxy`) between the connector and moto.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use evergreen_aws::AwsClient;
use evergreen_ipc::AwsCredentials;
use evergreen_tests::fault_proxy::{Fault, FaultProxy};
use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
const FIREHOSE: &str = "arn:aws:greengrass:us-east-1::/connectors/KinesisFirehose/versions/5";
const STATUS: &str = "kinesisfirehose/message/status";
const BUCKET: &str = "evergreen-firehose";

fn stream_arn(name: &str) -> String {
    format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{name}")
}

fn firehose_group(dir: &Path, interval: &str) -> Value {
    let feed = dir.join("feed.jsonl");
    let record = dir.join("status.jsonl");
    let mut g = group(
        vec![
            function("feed", &format!("feed {}", feed.display())),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![
            sub("json", &fn_arn("feed"), "kinesisfirehose/message", FIREHOSE),
            sub(
                "binary",
                &fn_arn("feed"),
                "kinesisfirehose/message/binary/#",
                FIREHOSE,
            ),
            sub("status", FIREHOSE, STATUS, &fn_arn("rec")),
        ],
    );
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
        "Id": "firehose",
        "ConnectorArn": FIREHOSE,
        "Parameters": {
            "DefaultDeliveryStreamArn": stream_arn("s1"),
            "DeliveryStreamQueueSize": "2000",
            "MemorySize": "65535",
            "PublishInterval": interval,
            "IsolationMode": "NoContainer"
        }
    }]});
    g
}

fn aws(url: &str) -> AwsClient {
    AwsClient::with_credentials(
        REGION,
        BTreeMap::from([("firehose".to_string(), url.to_string())]),
        AwsCredentials {
            access_key_id: MOTO_ACCESS_KEY.into(),
            secret_access_key: MOTO_SECRET_KEY.into(),
            session_token: None,
            expiration_ms: None,
        },
    )
}

/// The S3 bucket and a DirectPut stream writing to it under `<name>/`.
fn create_stream(moto: &Moto, name: &str) {
    let (status, _) =
        http_request("PUT", moto.port(), &format!("/{BUCKET}"), "", b"").expect("bucket");
    assert!(status == 200 || status == 409, "CreateBucket: {status}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(aws(&moto.url()).json(
        "firehose",
        "Firehose_20150804.CreateDeliveryStream",
        &json!({
            "DeliveryStreamName": name,
            "DeliveryStreamType": "DirectPut",
            "ExtendedS3DestinationConfiguration": {
                "RoleARN": format!("arn:aws:iam::{ACCOUNT}:role/firehose"),
                "BucketARN": format!("arn:aws:s3:::{BUCKET}"),
                "Prefix": format!("{name}/")
            }
        }),
    ))
    .expect("CreateDeliveryStream");
}

/// Everything the stream `name` wrote to S3, one object after another.
fn delivered(moto: &Moto, name: &str) -> Vec<u8> {
    let Ok((_, listing)) = http_request(
        "GET",
        moto.port(),
        &format!("/{BUCKET}?list-type=2&prefix={name}/"),
        "",
        b"",
    ) else {
        return Vec::new();
    };
    let listing = String::from_utf8_lossy(&listing);
    let mut out = Vec::new();
    for part in listing.split("<Key>").skip(1) {
        let Some((key, _)) = part.split_once("</Key>") else {
            continue;
        };
        if let Some(body) = s3_object(moto.port(), &format!("/{BUCKET}/{key}")) {
            out.extend_from_slice(&body);
        }
    }
    out
}

/// An object's bytes. moto refuses anonymous reads of the objects a
/// stream writes, and checks the shape of a SigV4 header, not the
/// signature: a header naming the s3 scope is enough.
fn s3_object(port: u16, path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={MOTO_ACCESS_KEY}/20240101/{REGION}/s3/aws4_request, \
         SignedHeaders=host, Signature=00\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    raw.starts_with(b"HTTP/1.1 200")
        .then(|| raw[split + 4..].to_vec())
}

/// Newline-terminated records in what was delivered, sorted.
fn lines(bytes: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// The AWS settings for an endpoint on `port`, and a router queue deep
/// enough for the test's burst of 2000+ messages (the default 1024 would
/// drop part of the burst before the connector sees it; this test is about
/// the connector's own bound).
fn burst_config(port: u16) -> Value {
    let mut config = aws_core_config(&format!("http://127.0.0.1:{port}"));
    merge(&mut config, &json!({"evergreen": {"queueCapacity": 8192}}));
    config
}

fn feed(dir: &Path, lines: &[Value]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("feed.jsonl"))
        .expect("feed file");
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    f.write_all(text.as_bytes()).expect("feed");
}

fn json_record(id: &str, data: &str) -> Value {
    json!({"topic": "kinesisfirehose/message", "payload": {"request": {"data": data}, "id": id}})
}

/// Every per-record entry of every status received so far.
fn entries(dir: &Path) -> Vec<Value> {
    records(&dir.join("status.jsonl"))
        .iter()
        .filter(|r| r["topic"] == STATUS && r["source"] == FIREHOSE)
        .filter_map(|r| serde_json::from_str::<Value>(r["payload"].as_str()?).ok())
        .flat_map(|s| s["response"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn entry_for<'a>(all: &'a [Value], id: &str) -> Option<&'a Value> {
    all.iter().find(|e| e["id"] == id)
}

#[test]
fn firehose_records_reach_s3_with_per_record_statuses() {
    let Some(moto) = Moto::start() else { return };
    create_stream(&moto, "s1");
    create_stream(&moto, "s2");
    let work = tempfile::tempdir().expect("tmp");
    let g = firehose_group(work.path(), "1");
    assert_valid_group(work.path(), &g);
    let rt = Runtime::start_config(&g, &moto.core_config(), &[]);

    let mut msgs: Vec<Value> = (0..30)
        .map(|i| json_record(&format!("j{i}"), &format!("json-{i}\n")))
        .collect();
    msgs.push(json!({"topic": "kinesisfirehose/message/binary/b1", "payload": "binary-1\n"}));
    msgs.push(json!({"topic": "kinesisfirehose/message",
        "payload": {"request": {"data": "other-stream\n", "delivery_stream_arn": stream_arn("s2")}, "id": "to-s2"}}));
    msgs.push(json!({"topic": "kinesisfirehose/message",
        "payload": {"request": {"data": "nowhere\n", "delivery_stream_arn": stream_arn("missing")}, "id": "to-missing"}}));
    // Bad input: each refused at once, naming the bad field.
    msgs.push(
        json!({"topic": "kinesisfirehose/message", "payload": {"id": "no-data", "request": {}}}),
    );
    msgs.push(json!({"topic": "kinesisfirehose/message", "payload": {"id": "num-data", "request": {"data": 5}}}));
    msgs.push(json!({"topic": "kinesisfirehose/message",
        "payload": {"id": "bad-arn", "request": {"data": "x", "delivery_stream_arn": "arn:aws:sns:us-east-1:1:x"}}}));
    msgs.push(json!({"topic": "kinesisfirehose/message", "payload": "not json {"}));
    feed(work.path(), &msgs);

    let expected_ids: Vec<String> = (0..30)
        .map(|i| format!("j{i}"))
        .chain(
            [
                "b1",
                "to-s2",
                "to-missing",
                "no-data",
                "num-data",
                "bad-arn",
            ]
            .map(String::from),
        )
        .collect();
    let got = wait_for(LIMIT, || {
        let all = entries(work.path());
        (expected_ids.iter().all(|id| entry_for(&all, id).is_some())
            && all.len() > expected_ids.len())
        .then_some(all)
    });
    let log = rt.log_path("user/us-east-1/aws/KinesisFirehose.log");
    let Some(all) = got else {
        panic!(
            "statuses missing: {:?}\nconnector log:\n{}",
            entries(work.path()),
            read(&log)
        );
    };
    for i in 0..30 {
        let e = entry_for(&all, &format!("j{i}")).expect("entry");
        assert_eq!(e["status"], "success", "{e}");
        assert!(
            e["firehose_record_id"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{e}"
        );
    }
    assert_eq!(entry_for(&all, "b1").expect("b1")["status"], "success");
    assert_eq!(entry_for(&all, "to-s2").expect("s2")["status"], "success");
    let missing = entry_for(&all, "to-missing").expect("missing");
    assert_eq!(missing["status"], "fail", "{missing}");
    assert_eq!(
        missing["ErrorCode"], "ResourceNotFoundException",
        "{missing}"
    );
    for (id, needle) in [
        ("no-data", "request.data is missing"),
        ("num-data", "request.data must be a string"),
        ("bad-arn", "request.delivery_stream_arn"),
    ] {
        let e = entry_for(&all, id).expect(id);
        assert_eq!(e["status"], "fail", "{e}");
        assert_eq!(e["ErrorCode"], "InvalidInputException", "{e}");
        assert!(
            e["ErrorMessage"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{id}: {e}"
        );
    }
    assert!(
        all.iter().any(|e| e.get("id").is_none()
            && e["ErrorCode"] == "InvalidInputException"
            && e["ErrorMessage"]
                .as_str()
                .unwrap_or_default()
                .contains("not JSON")),
        "the non-JSON message is refused: {all:?}"
    );

    // What the delivery streams wrote.
    let mut want: Vec<String> = (0..30).map(|i| format!("json-{i}")).collect();
    want.push("binary-1".into());
    want.sort();
    let s1 = wait_for(LIMIT, || {
        let got = lines(&delivered(&moto, "s1"));
        (got.len() >= want.len()).then_some(got)
    });
    assert_eq!(s1.as_ref(), Some(&want), "s1 holds every record once");
    assert_eq!(
        lines(&delivered(&moto, "s2")),
        vec!["other-stream".to_string()]
    );
}

#[test]
fn firehose_endpoint_down_then_up_then_503_and_throttling_lose_nothing() {
    let Some(moto) = Moto::start() else { return };
    create_stream(&moto, "s1");
    let work = tempfile::tempdir().expect("tmp");
    // The endpoint: a port nobody listens on yet.
    let port = free_port().expect("port");
    let g = firehose_group(work.path(), "0");
    let rt = Runtime::start_config(
        &g,
        &aws_core_config(&format!("http://127.0.0.1:{port}")),
        &[],
    );
    let log = rt.log_path("user/us-east-1/aws/KinesisFirehose.log");

    feed(
        work.path(),
        &(0..10)
            .map(|i| json_record(&format!("d{i}"), &format!("down-{i}\n")))
            .collect::<Vec<_>>(),
    );
    let retried = wait_for(LIMIT, || read(&log).contains("will retry").then_some(()));
    assert!(
        retried.is_some(),
        "connection refused is retried:\n{}",
        read(&log)
    );
    assert!(
        entries(work.path()).is_empty(),
        "no status while retrying: {:?}",
        entries(work.path())
    );

    // The endpoint comes up: first two 503s and two throttling answers.
    let proxy = FaultProxy::start_on(port, moto.port()).expect("proxy");
    proxy.fail_next(2, Fault::unavailable());
    proxy.fail_next(2, Fault::throttling_awsjson());
    let delivered_all = wait_for(LIMIT, || {
        let all = entries(work.path());
        (0..10)
            .all(|i| entry_for(&all, &format!("d{i}")).is_some_and(|e| e["status"] == "success"))
            .then_some(())
    });
    assert!(
        delivered_all.is_some(),
        "every record delivered after the faults: {:?}\n{}",
        entries(work.path()),
        read(&log)
    );
    assert_eq!(
        proxy.faults_served(),
        4,
        "the 503s and throttling answers were met"
    );
    assert!(entries(work.path())
        .iter()
        .all(|e| e["status"] == "success"));
    let want: Vec<String> = {
        let mut w: Vec<String> = (0..10).map(|i| format!("down-{i}")).collect();
        w.sort();
        w
    };
    assert_eq!(
        lines(&delivered(&moto, "s1")),
        want,
        "each record exactly once"
    );
    let text = read(&log);
    assert!(
        text.contains("ThrottlingException") && text.contains("will retry"),
        "{text}"
    );
}

#[test]
fn firehose_full_queue_refuses_new_records_and_keeps_the_rest() {
    let Some(moto) = Moto::start() else { return };
    create_stream(&moto, "s1");
    let work = tempfile::tempdir().expect("tmp");
    let port = free_port().expect("port");
    let g = firehose_group(work.path(), "1");
    let rt = Runtime::start_config(&g, &burst_config(port), &[]);
    let log = rt.log_path("user/us-east-1/aws/KinesisFirehose.log");

    // 2050 records while the endpoint is down: the queue holds 2000.
    feed(
        work.path(),
        &(0..2050)
            .map(|i| json_record(&format!("q{i}"), &format!("q-{i}\n")))
            .collect::<Vec<_>>(),
    );
    let refused = wait_for(LIMIT, || {
        let all = entries(work.path());
        (all.len() >= 50).then_some(all)
    });
    let Some(refused) = refused else {
        panic!(
            "no refusals: {}\n{}\nruntime:\n{}",
            entries(work.path()).len(),
            read(&log),
            read(&rt.log_path("system/runtime.log"))
        );
    };
    assert_eq!(refused.len(), 50, "exactly the records beyond 2000");
    for e in &refused {
        assert_eq!(e["status"], "fail", "{e}");
        assert_eq!(e["ErrorCode"], "QueueFullException", "{e}");
        assert!(
            e["ErrorMessage"]
                .as_str()
                .unwrap_or_default()
                .contains("DeliveryStreamQueueSize"),
            "{e}"
        );
    }
    assert!(read(&log).contains("is full"), "logged:\n{}", read(&log));

    // The endpoint comes up: the 2000 queued records are all delivered.
    let _proxy = FaultProxy::start_on(port, moto.port()).expect("proxy");
    let done = wait_for(Duration::from_secs(60), || {
        let all = entries(work.path());
        (all.iter().filter(|e| e["status"] == "success").count() >= 2000).then_some(all)
    });
    let Some(all) = done else {
        panic!(
            "not delivered: {} successes\n{}",
            entries(work.path())
                .iter()
                .filter(|e| e["status"] == "success")
                .count(),
            read(&log)
        );
    };
    let refused_ids: Vec<&Value> = all
        .iter()
        .filter(|e| e["status"] == "fail")
        .map(|e| &e["id"])
        .collect();
    assert_eq!(refused_ids.len(), 50);
    assert_eq!(
        lines(&delivered(&moto, "s1")).len(),
        2000,
        "2000 records in S3, none twice"
    );
}

#[test]
fn firehose_version_1_sends_each_record_alone_with_its_own_status() {
    const V1: &str = "arn:aws:greengrass:us-east-1::/connectors/KinesisFirehose/versions/1";
    let Some(moto) = Moto::start() else { return };
    create_stream(&moto, "s1");
    let work = tempfile::tempdir().expect("tmp");
    let status_file = work.path().join("status.jsonl");
    let mut g = group(
        vec![
            function(
                "feed",
                &format!("feed {}", work.path().join("feed.jsonl").display()),
            ),
            function("rec", &format!("record {}", status_file.display())),
        ],
        vec![
            sub("json", &fn_arn("feed"), "kinesisfirehose/message", V1),
            sub("status", V1, STATUS, &fn_arn("rec")),
        ],
    );
    // Version 1 has no IsolationMode parameter: the group default runs it
    // without a container.
    g["FunctionDefinitionVersion"]["DefaultConfig"] =
        json!({"Execution": {"IsolationMode": "NoContainer"}});
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
        "Id": "firehose", "ConnectorArn": V1,
        "Parameters": { "DefaultDeliveryStreamArn": stream_arn("s1") }
    }]});
    assert_valid_group(work.path(), &g);
    let rt = Runtime::start_config(&g, &moto.core_config(), &[]);
    let mut msgs: Vec<Value> = (0..3)
        .map(|i| json_record(&format!("v1-{i}"), &format!("one-{i}\n")))
        .collect();
    msgs.push(json!({"topic": "kinesisfirehose/message", "payload": {"id": "bad", "request": {}}}));
    feed(work.path(), &msgs);
    let got = wait_for(LIMIT, || {
        let s: Vec<Value> = records(&status_file)
            .iter()
            .filter(|r| r["source"] == V1)
            .filter_map(|r| serde_json::from_str::<Value>(r["payload"].as_str()?).ok())
            .collect();
        (s.len() >= 4).then_some(s)
    });
    let Some(s) = got else {
        panic!(
            "{:?}\n{}",
            records(&status_file),
            read(&rt.log_path("user/us-east-1/aws/KinesisFirehose.log"))
        );
    };
    assert_eq!(s.len(), 4, "one status per record: {s:?}");
    for i in 0..3 {
        let st = s
            .iter()
            .find(|x| x["id"] == format!("v1-{i}"))
            .expect("status");
        assert_eq!(st["response"]["status"], "success", "{st}");
        assert!(st["response"]["firehose_record_id"].is_string(), "{st}");
    }
    let bad = s.iter().find(|x| x["id"] == "bad").expect("bad");
    assert_eq!(bad["response"]["status"], "fail", "{bad}");
    assert_eq!(bad["response"]["error"], "InvalidInputException", "{bad}");
    assert!(bad["response"]["error_message"]
        .as_str()
        .unwrap_or_default()
        .contains("request.data is missing"));
    let mut want: Vec<String> = (0..3).map(|i| format!("one-{i}")).collect();
    want.sort();
    let delivered_v1 = wait_for(LIMIT, || {
        let got = lines(&delivered(&moto, "s1"));
        (got.len() >= 3).then_some(got)
    });
    assert_eq!(delivered_v1, Some(want));
}
