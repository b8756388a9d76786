//! The stream manager's exports against real peers on loopback: moto for
//! Kinesis Data Streams and S3, SigV4-verifying stand-ins for IoT Analytics
//! and IoT SiteWise; streams kept by an in-memory `ExportSource`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use evergreen_aws::Method;
use evergreen_streams::export::{
    load_checkpoint, spawn_export, specs_for, ExportEnv, ExportGate, ExportHandle, ExportKind,
    ExportSpec,
};
use evergreen_streams::model::{
    ExportDefinition, HttpConfig, IoTAnalyticsConfig, IoTSiteWiseConfig, KinesisConfig,
    S3ExportTaskExecutorConfig, StatusConfig, StatusLevel, StatusMessage,
};
use evergreen_tests::aws_standin::{
    self as common, aws, wait_async as wait_for, MemSource, StandIn,
};
use evergreen_tests::Moto;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

fn env(source: &Arc<MemSource>, endpoints: &[(&str, String)]) -> ExportEnv {
    ExportEnv {
        source: source.clone(),
        aws: aws(endpoints),
        gate: ExportGate::new(4),
        s3_min_part_size: None,
    }
}

fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

async fn exported_up_to(handle: &ExportHandle, last: i64) -> bool {
    wait_for(LIMIT, || {
        (handle.status().last_exported_sequence_number >= last).then_some(())
    })
    .await
    .is_some()
}

fn iota(identifier: &str, channel: &str) -> IoTAnalyticsConfig {
    IoTAnalyticsConfig {
        identifier: identifier.into(),
        iot_channel: channel.into(),
        iot_msg_id_prefix: Some("dev1-".into()),
        batch_size: Some(4),
        batch_interval_millis: None,
        priority: None,
        start_sequence_number: None,
        disabled: None,
    }
}

/// The IoT Analytics stand-in: `POST /messages/batch` of channel `chan`.
fn iota_handler() -> Arc<common::Handler> {
    Arc::new(|r: &common::Request| {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        if r.method != "POST" || r.path != "/messages/batch" {
            return (
                404,
                json!({"__type": "UnknownOperationException"}).to_string(),
            );
        }
        if body["channelName"] != "chan" {
            return (
                404,
                json!({"__type": "ResourceNotFoundException", "message": "no channel"}).to_string(),
            );
        }
        (200, json!({"batchPutMessageErrorEntries": []}).to_string())
    })
}

/// (messageId, payload) of every accepted IoT Analytics message, in order.
fn iota_received(server: &StandIn) -> Vec<(String, Vec<u8>)> {
    server
        .requests()
        .iter()
        .flat_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).expect("json");
            body["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|m| {
                    (
                        m["messageId"].as_str().expect("id").to_string(),
                        unb64(m["payload"].as_str().expect("payload")),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_analytics_through_an_outage_then_a_restart_sends_each_message_once_in_order() {
    let server = StandIn::start(0, "iotanalytics", iota_handler());
    // Down: the first 3 requests get 503.
    server.fail_next(
        3,
        503,
        r#"{"__type":"ServiceUnavailableException","message":"down"}"#,
    );
    let source = MemSource::new();
    source.create("s");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(&source, &[("iotanalytics", server.url())]);
    let spec = ExportSpec {
        stream: "s".into(),
        kind: ExportKind::IotAnalytics(iota("to-iota", "chan")),
        checkpoint_dir: dir.path().to_path_buf(),
    };
    let handle = spawn_export(spec.clone(), &env);
    for i in 0..10 {
        source.push("s", format!("m{i}").as_bytes());
    }
    // While it is down the status says why and nothing is acknowledged.
    let error = wait_for(LIMIT, || handle.status().error_message).await;
    assert!(error
        .expect("an error while down")
        .contains("ServiceUnavailable"));
    assert!(exported_up_to(&handle, 9).await, "{:?}", handle.status());
    assert_eq!(server.faults_served(), 3);
    assert!(server.problems().is_empty(), "{:?}", server.problems());
    let got = iota_received(&server);
    let want: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("dev1-{i}"), format!("m{i}").into_bytes()))
        .collect();
    assert_eq!(got, want, "each message once, in order");
    assert!(server.requests().iter().all(|r| {
        let b: Value = serde_json::from_slice(&r.body).expect("json");
        b["messages"].as_array().is_some_and(|m| m.len() <= 4)
    }));
    let status = handle.status();
    assert_eq!(status.exported_messages_count, 10);
    assert_eq!(status.exported_bytes_from_stream, 20);
    assert_eq!(status.error_message, None);
    assert!(status.last_export_time.is_some());
    assert_eq!(load_checkpoint(dir.path(), "to-iota"), Some(9));

    // Restart with the same checkpoint directory: only new messages go.
    drop(handle);
    let handle = spawn_export(spec, &env);
    assert_eq!(handle.status().last_exported_sequence_number, 9);
    source.push("s", b"m10");
    assert!(exported_up_to(&handle, 10).await);
    let got = iota_received(&server);
    assert_eq!(got.len(), 11, "nothing acknowledged was sent again");
    assert_eq!(got[10], ("dev1-10".to_string(), b"m10".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_that_comes_up_gets_everything() {
    // Nothing listens on the port at first: connection refused.
    let port = evergreen_tests::free_port().expect("a free port");
    let source = MemSource::new();
    source.create("s");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(
        &source,
        &[("iotanalytics", format!("http://127.0.0.1:{port}"))],
    );
    let handle = spawn_export(
        ExportSpec {
            stream: "s".into(),
            kind: ExportKind::IotAnalytics(iota("x", "chan")),
            checkpoint_dir: dir.path().to_path_buf(),
        },
        &env,
    );
    for i in 0..6 {
        source.push("s", format!("p{i}").as_bytes());
    }
    let error = wait_for(LIMIT, || handle.status().error_message).await;
    assert!(error
        .expect("an error while unreachable")
        .contains("no answer"));
    assert_eq!(handle.status().last_exported_sequence_number, -1);
    let server = StandIn::start(port, "iotanalytics", iota_handler());
    assert!(exported_up_to(&handle, 5).await, "{:?}", handle.status());
    let ids: Vec<String> = iota_received(&server)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, (0..6).map(|i| format!("dev1-{i}")).collect::<Vec<_>>());
    assert_eq!(load_checkpoint(dir.path(), "x"), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_interval_holds_messages_until_the_batch_is_full() {
    let server = StandIn::start(0, "iotanalytics", iota_handler());
    let source = MemSource::new();
    source.create("s");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(&source, &[("iotanalytics", server.url())]);
    let mut config = iota("held", "chan");
    config.batch_size = Some(5);
    config.batch_interval_millis = Some(60_000);
    let handle = spawn_export(
        ExportSpec {
            stream: "s".into(),
            kind: ExportKind::IotAnalytics(config),
            checkpoint_dir: dir.path().to_path_buf(),
        },
        &env,
    );
    for i in 0..3 {
        source.push("s", format!("h{i}").as_bytes());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        server.requests().is_empty(),
        "3 of 5 within the interval: held"
    );
    source.push("s", b"h3");
    source.push("s", b"h4");
    assert!(exported_up_to(&handle, 4).await);
    assert_eq!(server.requests().len(), 1, "one full batch");
    assert_eq!(iota_received(&server).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_channel_is_retried_not_skipped_and_a_start_sequence_number_is_kept() {
    let server = StandIn::start(0, "iotanalytics", iota_handler());
    let source = MemSource::new();
    source.create("s");
    for i in 0..5 {
        source.push("s", format!("q{i}").as_bytes());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(&source, &[("iotanalytics", server.url())]);
    let missing = spawn_export(
        ExportSpec {
            stream: "s".into(),
            kind: ExportKind::IotAnalytics(iota("missing", "nochan")),
            checkpoint_dir: dir.path().to_path_buf(),
        },
        &env,
    );
    let mut config = iota("from3", "chan");
    config.start_sequence_number = Some(3);
    let from3 = spawn_export(
        ExportSpec {
            stream: "s".into(),
            kind: ExportKind::IotAnalytics(config),
            checkpoint_dir: dir.path().to_path_buf(),
        },
        &env,
    );
    assert!(exported_up_to(&from3, 4).await);
    let ids: Vec<String> = iota_received(&server)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["dev1-3", "dev1-4"]);
    let error = wait_for(LIMIT, || missing.status().error_message).await;
    assert!(error.expect("missing channel").contains("ResourceNotFound"));
    assert_eq!(missing.status().last_exported_sequence_number, -1);
    assert_eq!(missing.skipped(), 0);

    // A deleted stream ends the task.
    source.delete("s");
    assert!(wait_for(LIMIT, || from3.is_finished().then_some(()))
        .await
        .is_some());
}

fn entry(id: &str, alias: &str, value: f64) -> Vec<u8> {
    json!({
        "entryId": id,
        "propertyAlias": alias,
        "propertyValues": [{
            "value": {"doubleValue": value},
            "timestamp": {"timeInSeconds": 1_700_000_000, "offsetInNanos": 0},
            "quality": "GOOD"
        }]
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sitewise_entries_go_once_invalid_and_rejected_ones_are_counted_retryable_ones_resent() {
    // Throttles entry "t" the first time it is seen; rejects alias "/bad".
    let throttled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler: Arc<common::Handler> = {
        let throttled = throttled.clone();
        Arc::new(move |r: &common::Request| {
            if r.method != "POST" || r.path != "/properties" {
                return (
                    404,
                    json!({"__type": "UnknownOperationException"}).to_string(),
                );
            }
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let entries = body["entries"].as_array().cloned().unwrap_or_default();
            let mut ids = std::collections::HashSet::new();
            if entries.is_empty()
                || entries.len() > 10
                || !entries.iter().all(|e| ids.insert(e["entryId"].to_string()))
            {
                return (
                    400,
                    json!({"__type": "InvalidRequestException"}).to_string(),
                );
            }
            let mut errors = Vec::new();
            for e in &entries {
                if e["entryId"] == "t" && !throttled.swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    errors.push(json!({"entryId": "t", "errors": [{"errorCode": "ThrottlingException", "errorMessage": "slow", "timestamps": []}]}));
                }
                if e["propertyAlias"] == "/bad" {
                    errors.push(json!({"entryId": e["entryId"], "errors": [{"errorCode": "ResourceNotFoundException", "errorMessage": "no alias", "timestamps": []}]}));
                }
            }
            (200, json!({ "errorEntries": errors }).to_string())
        })
    };
    let server = StandIn::start(0, "iotsitewise", handler);
    let source = MemSource::new();
    source.create("sw");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(&source, &[("iotsitewise", server.url())]);
    // All appended before the export starts, so the first batch holds them all.
    source.push("sw", &entry("a", "/p/a", 1.0)); // 0
    source.push("sw", b"not an entry"); // 1: skipped
    source.push("sw", &entry("t", "/p/t", 2.0)); // 2: throttled once
    source.push("sw", &entry("r", "/bad", 3.0)); // 3: rejected
    source.push("sw", &entry("a", "/p/a", 4.0)); // 4: same entryId as 0
    let handle = spawn_export(
        ExportSpec {
            stream: "sw".into(),
            kind: ExportKind::SiteWise(IoTSiteWiseConfig {
                identifier: "sw".into(),
                batch_size: None,
                batch_interval_millis: None,
                priority: None,
                start_sequence_number: None,
                disabled: None,
            }),
            checkpoint_dir: dir.path().to_path_buf(),
        },
        &env,
    );
    assert!(exported_up_to(&handle, 4).await, "{:?}", handle.status());
    assert!(server.problems().is_empty(), "{:?}", server.problems());
    let sent: Vec<(String, f64)> = server
        .requests()
        .iter()
        .flat_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).expect("json");
            body["entries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|e| {
                    (
                        e["entryId"].as_str().expect("id").to_string(),
                        e["propertyValues"][0]["value"]["doubleValue"]
                            .as_f64()
                            .expect("value"),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    // First call: a, t, r (the second "a" waits for the next call); then
    // t again (throttled) with the second a.
    assert_eq!(
        sent,
        vec![
            ("a".to_string(), 1.0),
            ("t".to_string(), 2.0),
            ("r".to_string(), 3.0),
            ("t".to_string(), 2.0),
            ("a".to_string(), 4.0),
        ]
    );
    assert_eq!(handle.skipped(), 2);
    let status = handle.status();
    assert_eq!(status.exported_messages_count, 3);
    let error = status.error_message.expect("skips are reported");
    assert!(
        error.contains("message 3 skipped") && error.contains("ResourceNotFound"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_gets_every_record_in_order_with_sequence_number_keys_and_no_resend_after_restart()
{
    let Some(moto) = Moto::start() else { return };
    let client = aws(&[("kinesis", moto.url())]);
    client
        .json(
            "kinesis",
            "Kinesis_20131202.CreateStream",
            &json!({"StreamName": "ks", "ShardCount": 1}),
        )
        .await
        .expect("CreateStream");
    let mut active = false;
    for _ in 0..100 {
        let d = client
            .json(
                "kinesis",
                "Kinesis_20131202.DescribeStreamSummary",
                &json!({"StreamName": "ks"}),
            )
            .await
            .expect("DescribeStreamSummary");
        if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
            active = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(active, "the Kinesis stream never became ACTIVE");
    let source = MemSource::new();
    source.create("s");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(&source, &[("kinesis", moto.url())]);
    let spec = ExportSpec {
        stream: "s".into(),
        kind: ExportKind::Kinesis(KinesisConfig {
            identifier: "k".into(),
            kinesis_stream_name: "ks".into(),
            batch_size: Some(7),
            batch_interval_millis: None,
            priority: Some(1),
            start_sequence_number: None,
            disabled: None,
        }),
        checkpoint_dir: dir.path().to_path_buf(),
    };
    let handle = spawn_export(spec.clone(), &env);
    for i in 0..20 {
        source.push("s", format!("record-{i}").as_bytes());
    }
    assert!(exported_up_to(&handle, 19).await, "{:?}", handle.status());
    drop(handle);
    let handle = spawn_export(spec, &env);
    for i in 20..25 {
        source.push("s", format!("record-{i}").as_bytes());
    }
    assert!(exported_up_to(&handle, 24).await, "{:?}", handle.status());

    let iterator = client
        .json(
            "kinesis",
            "Kinesis_20131202.GetShardIterator",
            &json!({"StreamName": "ks", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await
        .expect("GetShardIterator");
    let records = client
        .json(
            "kinesis",
            "Kinesis_20131202.GetRecords",
            &json!({"ShardIterator": iterator["ShardIterator"], "Limit": 1000}),
        )
        .await
        .expect("GetRecords");
    let got: Vec<(String, String)> = records["Records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                String::from_utf8(unb64(r["Data"].as_str().expect("data"))).expect("utf8"),
                r["PartitionKey"].as_str().expect("key").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = (0..25)
        .map(|i| (format!("record-{i}"), i.to_string()))
        .collect();
    assert_eq!(
        got, want,
        "every record once, in order, keyed by sequence number"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_tasks_upload_small_and_multipart_files_with_metadata_and_report_status() {
    let Some(moto) = Moto::start() else { return };
    let client = aws(&[("s3", moto.url())]);
    client
        .signed_request(
            "s3",
            Method::PUT,
            &format!("{}/bkt", moto.url()),
            &[],
            Vec::new(),
        )
        .await
        .expect("CreateBucket");
    let files = tempfile::tempdir().expect("tempdir");
    let small = files.path().join("small.txt");
    std::fs::write(&small, b"hello from the edge").expect("write");
    let big = files.path().join("big.bin");
    let big_bytes: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &big_bytes).expect("write");

    let source = MemSource::new();
    source.create("tasks");
    source.create("status");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(&source, &[("s3", moto.url())]);
    let handle = spawn_export(
        ExportSpec {
            stream: "tasks".into(),
            kind: ExportKind::S3Task(S3ExportTaskExecutorConfig {
                identifier: "s3".into(),
                size_threshold_for_multipart_upload_bytes: Some(5 << 20),
                priority: None,
                disabled: None,
                status_config: Some(StatusConfig {
                    status_level: Some(StatusLevel::Info),
                    status_stream_name: Some("status".into()),
                }),
            }),
            checkpoint_dir: dir.path().to_path_buf(),
        },
        &env,
    );
    let task = |path: &std::path::Path, key: &str| {
        json!({
            "inputUrl": format!("file://{}", path.display()),
            "bucket": "bkt",
            "key": key,
            "userMetadata": {"Owner": "line-3", "count": 2}
        })
        .to_string()
        .into_bytes()
    };
    source.push("tasks", &task(&small, "small/!{timestamp:yyyy}/a.txt"));
    source.push("tasks", &task(&big, "big.bin"));
    source.push("tasks", &task(&files.path().join("missing"), "never"));
    assert!(exported_up_to(&handle, 2).await, "{:?}", handle.status());

    let year = time::OffsetDateTime::now_utc().year();
    let got = client
        .signed_request(
            "s3",
            Method::GET,
            &format!("{}/bkt/small/{year}/a.txt", moto.url()),
            &[],
            Vec::new(),
        )
        .await
        .expect("GetObject small");
    assert_eq!(got.body, b"hello from the edge");
    assert_eq!(got.header("x-amz-meta-owner"), Some("line-3"));
    assert_eq!(got.header("x-amz-meta-count"), Some("2"));
    let got = client
        .signed_request(
            "s3",
            Method::GET,
            &format!("{}/bkt/big.bin", moto.url()),
            &[],
            Vec::new(),
        )
        .await
        .expect("GetObject big");
    assert!(got.body == big_bytes, "the 12 MiB object differs");
    let etag = got.header("etag").unwrap_or_default().to_string();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "multipart in 3 parts: ETag {etag}"
    );
    assert_eq!(got.header("x-amz-meta-owner"), Some("line-3"));

    let statuses: Vec<StatusMessage> = source
        .messages("status")
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).expect("StatusMessage JSON"))
        .collect();
    let summary: Vec<(i64, u8)> = statuses
        .iter()
        .map(|s| {
            (
                s.status_context
                    .as_ref()
                    .and_then(|c| c.sequence_number)
                    .unwrap_or(-1),
                s.status as u8,
            )
        })
        .collect();
    // InProgress = 2, Success = 0, Failure = 1.
    assert_eq!(
        summary,
        vec![(0, 2), (0, 0), (1, 2), (1, 0), (2, 2), (2, 1)]
    );
    let failure = &statuses[5];
    assert!(failure
        .message
        .as_deref()
        .is_some_and(|m| m.contains("cannot read")));
    let context = failure.status_context.as_ref().expect("context");
    assert_eq!(context.export_identifier.as_deref(), Some("s3"));
    assert_eq!(context.stream_name.as_deref(), Some("tasks"));
    assert_eq!(
        context
            .s3_export_task_definition
            .as_ref()
            .map(|t| t.key.as_str()),
        Some("never")
    );
    assert_eq!(handle.skipped(), 1);
    assert_eq!(handle.status().exported_messages_count, 2);
}

#[tokio::test]
async fn http_exports_are_refused_and_disabled_ones_left_out() {
    let mut def = ExportDefinition {
        iot_analytics: vec![iota("on", "c"), {
            let mut off = iota("off", "c");
            off.disabled = Some(true);
            off
        }],
        ..ExportDefinition::default()
    };
    let specs = specs_for("s", &def, "/tmp/x").expect("specs");
    assert_eq!(
        specs
            .iter()
            .map(|s| s.kind.identifier())
            .collect::<Vec<_>>(),
        ["on"]
    );
    def.http.push(HttpConfig {
        identifier: "h".into(),
        uri: "http://127.0.0.1/".into(),
        batch_size: None,
        batch_interval_millis: None,
        priority: None,
        start_sequence_number: None,
        disabled: None,
        export_format: None,
    });
    let err = specs_for("s", &def, "/tmp/x").expect_err("http refused");
    assert!(err.to_string().contains("not supported"), "{err}");

    // A disabled spec handed to spawn_export anyway starts nothing.
    let source = MemSource::new();
    source.create("s");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut off = iota("off", "c");
    off.disabled = Some(true);
    let handle = spawn_export(
        ExportSpec {
            stream: "s".into(),
            kind: ExportKind::IotAnalytics(off),
            checkpoint_dir: dir.path().to_path_buf(),
        },
        &env(&source, &[]),
    );
    assert!(handle.is_finished());
    assert_eq!(handle.status().export_config_identifier, "off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_resends_only_the_failed_records_of_a_partly_failed_call_in_order() {
    // The first PutRecords fails records 1 and 3 (of 0..5) with throughput errors.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler: Arc<common::Handler> = {
        let calls = calls.clone();
        Arc::new(move |r: &common::Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let records = body["Records"].as_array().cloned().unwrap_or_default();
            let first = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            let mut failed = 0;
            let results: Vec<Value> = records
                .iter()
                .map(|rec| {
                    if first && (rec["PartitionKey"] == "1" || rec["PartitionKey"] == "3") {
                        failed += 1;
                        json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
                    } else {
                        json!({"SequenceNumber": "1", "ShardId": "shardId-000000000000"})
                    }
                })
                .collect();
            (
                200,
                json!({"FailedRecordCount": failed, "Records": results}).to_string(),
            )
        })
    };
    let server = StandIn::start(0, "kinesis", handler);
    let source = MemSource::new();
    source.create("s");
    for i in 0..5 {
        source.push("s", format!("r{i}").as_bytes());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(&source, &[("kinesis", server.url())]);
    let handle = spawn_export(
        ExportSpec {
            stream: "s".into(),
            kind: ExportKind::Kinesis(KinesisConfig {
                identifier: "k".into(),
                kinesis_stream_name: "ks".into(),
                batch_size: None,
                batch_interval_millis: None,
                priority: None,
                start_sequence_number: None,
                disabled: None,
            }),
            checkpoint_dir: dir.path().to_path_buf(),
        },
        &env,
    );
    assert!(exported_up_to(&handle, 4).await, "{:?}", handle.status());
    assert!(server.problems().is_empty(), "{:?}", server.problems());
    let keys: Vec<Vec<String>> = server
        .requests()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).expect("json");
            assert_eq!(body["StreamName"], "ks");
            body["Records"]
                .as_array()
                .expect("records")
                .iter()
                .map(|rec| rec["PartitionKey"].as_str().expect("key").to_string())
                .collect()
        })
        .collect();
    assert_eq!(keys, vec![vec!["0", "1", "2", "3", "4"], vec!["1", "3"]]);
    assert_eq!(handle.status().exported_messages_count, 5);
    assert_eq!(handle.skipped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_put_object_is_signed_the_s3_way_and_the_core_credential_chain_is_used() {
    let server = StandIn::start(
        0,
        "s3",
        Arc::new(|_r: &common::Request| (200, String::new())),
    );
    // Down at first: the upload is retried, not failed.
    server.fail_next(2, 503, "<Error><Code>ServiceUnavailable</Code></Error>");
    let files = tempfile::tempdir().expect("tempdir");
    let file = files.path().join("f.txt");
    std::fs::write(&file, b"signed bytes").expect("write");
    let source = MemSource::new();
    source.create("tasks");
    source.create("status");
    // The supervisor's own chain: static keys and one endpoint for every service.
    let settings = evergreen_aws::credentials::AwsSettings {
        credentials: Some(evergreen_aws::credentials::StaticKeys {
            access_key_id: common::ACCESS_KEY.into(),
            secret_access_key: common::SECRET_KEY.into(),
            session_token: None,
        }),
        endpoint_url: Some(server.url()),
        ..Default::default()
    };
    let access = evergreen_aws::credentials::AwsAccess::resolve(
        &settings,
        &evergreen_aws::credentials::AwsEnv::default(),
        common::REGION,
    )
    .expect("resolve");
    let env = ExportEnv {
        source: source.clone(),
        aws: evergreen_aws::AwsClient::with_access(access),
        gate: ExportGate::new(1),
        s3_min_part_size: None,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let handle = spawn_export(
        ExportSpec {
            stream: "tasks".into(),
            kind: ExportKind::S3Task(S3ExportTaskExecutorConfig {
                identifier: "s3".into(),
                size_threshold_for_multipart_upload_bytes: None,
                priority: None,
                disabled: None,
                // Default level (INFO).
                status_config: Some(StatusConfig {
                    status_level: None,
                    status_stream_name: Some("status".into()),
                }),
            }),
            checkpoint_dir: dir.path().to_path_buf(),
        },
        &env,
    );
    source.push(
        "tasks",
        json!({"inputUrl": format!("file://{}", file.display()), "bucket": "bkt", "key": "dir/a b.txt"})
            .to_string()
            .as_bytes(),
    );
    assert!(exported_up_to(&handle, 0).await, "{:?}", handle.status());
    assert!(server.problems().is_empty(), "{:?}", server.problems());
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "PUT");
    assert_eq!(requests[0].path, "/bkt/dir/a%20b.txt");
    assert_eq!(requests[0].body, b"signed bytes");
    assert_eq!(server.faults_served(), 2);
    let statuses: Vec<u8> = source
        .messages("status")
        .iter()
        .map(|m| {
            serde_json::from_slice::<StatusMessage>(&m.payload)
                .expect("status")
                .status as u8
        })
        .collect();
    assert_eq!(statuses, vec![2, 0], "InProgress once, then Success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_multipart_upload_is_aborted_and_reported_and_the_next_task_goes() {
    let handler: Arc<common::Handler> = Arc::new(|r: &common::Request| {
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/bkt/big?uploads") => (
                200,
                "<InitiateMultipartUploadResult><UploadId>u+1</UploadId></InitiateMultipartUploadResult>"
                    .to_string(),
            ),
            ("PUT", p) if p.contains("partNumber") => (
                400,
                "<Error><Code>InvalidArgument</Code><Message>no parts today</Message></Error>"
                    .to_string(),
            ),
            ("DELETE", "/bkt/big?uploadId=u%2B1") => (204, String::new()),
            ("PUT", "/bkt/small") => (200, String::new()),
            _ => (404, "<Error><Code>NoSuchKey</Code></Error>".to_string()),
        }
    });
    let server = StandIn::start(0, "s3", handler);
    let files = tempfile::tempdir().expect("tempdir");
    let big = files.path().join("big");
    std::fs::write(&big, vec![7u8; 6 << 20]).expect("write");
    let small = files.path().join("small");
    std::fs::write(&small, b"s").expect("write");
    let source = MemSource::new();
    source.create("tasks");
    source.create("status");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(&source, &[("s3", server.url())]);
    let handle = spawn_export(
        ExportSpec {
            stream: "tasks".into(),
            kind: ExportKind::S3Task(S3ExportTaskExecutorConfig {
                identifier: "s3".into(),
                size_threshold_for_multipart_upload_bytes: None,
                priority: None,
                disabled: None,
                // Errors only: no InProgress or Success messages.
                status_config: Some(StatusConfig {
                    status_level: Some(StatusLevel::Error),
                    status_stream_name: Some("status".into()),
                }),
            }),
            checkpoint_dir: dir.path().to_path_buf(),
        },
        &env,
    );
    for (file, key) in [(&big, "big"), (&small, "small")] {
        source.push(
            "tasks",
            json!({"inputUrl": format!("file://{}", file.display()), "bucket": "bkt", "key": key})
                .to_string()
                .as_bytes(),
        );
    }
    assert!(exported_up_to(&handle, 1).await, "{:?}", handle.status());
    assert!(server.problems().is_empty(), "{:?}", server.problems());
    let calls: Vec<String> = server
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        calls,
        [
            "POST /bkt/big?uploads",
            "DELETE /bkt/big?uploadId=u%2B1",
            "PUT /bkt/small"
        ]
    );
    let statuses: Vec<StatusMessage> = source
        .messages("status")
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).expect("status"))
        .collect();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].status as u8, 1, "Failure");
    assert_eq!(statuses[0].status_level, Some(StatusLevel::Error));
    assert!(statuses[0]
        .message
        .as_deref()
        .is_some_and(|m| m.contains("InvalidArgument")));
    assert_eq!(handle.skipped(), 1);
    assert_eq!(handle.status().exported_messages_count, 1);
}
