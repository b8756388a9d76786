//! The upload path against real peers: moto's S3 (the object, its content
//! type and metadata, NoSuchBucket), a loopback S3 stand-in that answers
//! 503 SlowDown before it accepts (the bounded retry), and one that never
//! answers (the request limit holds while an upload hangs, and admission
//! never waits for it).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use evergreen_connector_ml_feedback::intake::{Admission, Intake, Output};
use evergreen_connector_ml_feedback::uploader::{self, Retry};
use serde_json::json;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const FAST: Retry = Retry {
    tries: 3,
    initial: Duration::from_millis(20),
    max: Duration::from_millis(50),
};

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_sample_lands_in_s3_with_its_content_type_and_metadata() {
    let Some(moto) = Moto::start() else { return };
    let aws = moto.client();
    create_bucket(&aws, "feedback-bkt").await;
    let settings = settings(
        &json!({"ConfigID5": {"s3-bucket-name": "feedback-bkt", "s3-prefix": "DeviceA/",
            "content-type": "image/png", "file-ext": ".png",
            "sampling-strategy": {"strategy-name": "ENTROPY", "threshold": 0.75}}}),
        "10",
    );
    let (intake, queue, held) = Intake::new(settings);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let worker = tokio::spawn(uploader::run(
        aws.clone(),
        FAST,
        queue,
        held.clone(),
        out_tx,
    ));
    let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let mut outputs = Vec::new();
    let admission = intake.admit(
        "5aaa913f-97a3-48ac-5907-18cd96b89eeb",
        &context(
            "ConfigID5",
            json!([0.5, 0.25, 0.25]),
            json!({"camera": "front door", "frame": 42}),
        ),
        body.clone(),
        OffsetDateTime::now_utc(),
        0.0,
        &mut outputs,
    );
    assert_eq!(admission, Admission::Queued);
    let outputs = collect_until(&mut out_rx, WITHIN, |o| {
        is_metric(o, "SampleAndPredictionPublished") || is_metric(o, "SampleUploadFailure")
    })
    .await;
    assert_eq!(
        metric_names(&outputs),
        [
            "SampleSize",
            "SampleUploadSuccess",
            "SampleAndPredictionPublished"
        ]
    );
    assert_eq!(
        published(&outputs, "cloudwatch/metric/put")[0]["request"]["metricData"],
        json!({"value": 5000, "unit": "Bytes", "metricName": "SampleSize"})
    );
    let status = &published(&outputs, "feedback/message/status")[0];
    assert_eq!(status["id"], "5aaa913f-97a3-48ac-5907-18cd96b89eeb");
    assert_eq!(status["response"]["status"], "success", "{status}");
    let s3 = &status["response"]["s3_response"];
    assert_eq!(s3["bucket"], "feedback-bkt");
    assert_eq!(s3["ResponseMetadata"]["HTTPStatusCode"], 200);
    assert!(s3["ETag"].is_string(), "{s3}");
    let key = s3["key"].as_str().expect("key").to_string();
    let uuid = key
        .strip_prefix("DeviceA/")
        .and_then(|k| k.strip_suffix(".png"))
        .unwrap_or_else(|| panic!("key {key}"));
    assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{uuid}");
    let prediction = &published(&outputs, "feedback/message/prediction")[0];
    assert_eq!(
        prediction["source-ref"],
        format!("s3://feedback-bkt/{key}").as_str()
    );
    assert_eq!(prediction["model-prediction"], json!([0.5, 0.25, 0.25]));
    assert_eq!(prediction["config-id"], "ConfigID5");
    assert_eq!(prediction["metadata"]["camera"], "front door");
    assert_eq!(prediction["metadata"]["frame"], 42);
    let ts = prediction["metadata"]["publish-ts"]
        .as_str()
        .expect("publish-ts");
    assert_eq!(ts.len(), 26, "{ts}");

    let object = get_object(&aws, "feedback-bkt", &key)
        .await
        .expect("the object");
    assert_eq!(object.body, body);
    assert_eq!(object.header("content-type"), Some("image/png"));
    assert_eq!(object.header("x-amz-meta-camera"), Some("front door"));
    assert_eq!(object.header("x-amz-meta-frame"), Some("42"));
    assert_eq!(object.header("x-amz-meta-publish-ts"), Some(ts));
    assert_eq!(held.load(Ordering::SeqCst), 0);
    drop(intake);
    tokio::time::timeout(WITHIN, worker)
        .await
        .expect("the uploader ends with its queue")
        .expect("no panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_fails_with_nosuchbucket_and_publishes_no_prediction() {
    let Some(moto) = Moto::start() else { return };
    let aws = moto.client();
    let settings = settings(
        &json!({"c1": {"s3-bucket-name": "no-such-bkt", "content-type": "application/json"}}),
        "",
    );
    let (intake, queue, held) = Intake::new(settings);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let _worker = tokio::spawn(uploader::run(aws, FAST, queue, held, out_tx));
    let mut outputs = Vec::new();
    let admission = intake.admit(
        "r-nosuch",
        &context("c1", json!({"x": 1}), json!(null)),
        b"{}".to_vec(),
        OffsetDateTime::now_utc(),
        0.0,
        &mut outputs,
    );
    assert_eq!(admission, Admission::Queued);
    let outputs = collect_until(
        &mut out_rx,
        WITHIN,
        |o| matches!(o, Output::Publish { topic, .. } if *topic == "feedback/message/status"),
    )
    .await;
    assert_eq!(
        metric_names(&outputs),
        ["SampleSize", "SampleUploadFailure"]
    );
    let status = &published(&outputs, "feedback/message/status")[0];
    assert_eq!(status["id"], "r-nosuch");
    assert_eq!(status["response"]["status"], "fail");
    assert_eq!(status["response"]["error"], "NoSuchBucket", "{status}");
    let message = status["response"]["error_message"].as_str().expect("text");
    assert!(
        message.starts_with(
            "[RequestId: r-nosuch] Failed to upload model input data due to exception. Model \
             prediction will not be published. Exception type: NoSuchBucket, error: An error \
             occurred (NoSuchBucket) when calling the PutObject operation: "
        ),
        "{message}"
    );
    assert!(!message.contains("tries"), "not retried: {message}");
    assert!(published(&outputs, "feedback/message/prediction").is_empty());
}

/// A loopback S3 stand-in: answers `failures` requests with 503 SlowDown,
/// then 200 with an ETag. Counts the requests.
async fn flaky_s3(failures: usize) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        // Bounded: the test makes a handful of requests.
        for _ in 0..20 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then the body by Content-Length.
            let body_len = loop {
                let Ok(n) = stream.read(&mut buf).await else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    break Some((end + 4, len));
                }
            };
            let Some((start, len)) = body_len else {
                continue;
            };
            while request.len() < start + len {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let answer = if n < failures {
                let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                format!(
                    "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 200 OK\r\nETag: \"d41d8cd98f00b204e9800998ecf8427e\"\r\nx-amz-request-id: STANDIN\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            };
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (url, count, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowdown_is_retried_with_backoff_and_counted_in_the_status() {
    let (url, count, server) = flaky_s3(2).await;
    let settings = settings(
        &json!({"c1": {"s3-bucket-name": "bkt", "content-type": "text/plain"}}),
        "",
    );
    let (intake, queue, held) = Intake::new(settings);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let _worker = tokio::spawn(uploader::run(client_for(&url), FAST, queue, held, out_tx));
    let mut outputs = Vec::new();
    intake.admit(
        "r1",
        &context("c1", json!([1.0]), json!({})),
        b"hello".to_vec(),
        OffsetDateTime::now_utc(),
        0.0,
        &mut outputs,
    );
    let outputs = collect_until(
        &mut out_rx,
        WITHIN,
        |o| matches!(o, Output::Publish { topic, .. } if *topic == "feedback/message/status"),
    )
    .await;
    assert_eq!(count.load(Ordering::SeqCst), 3, "two 503s, then the 200");
    let status = &published(&outputs, "feedback/message/status")[0];
    assert_eq!(status["response"]["status"], "success", "{status}");
    let meta = &status["response"]["s3_response"]["ResponseMetadata"];
    assert_eq!(meta["RetryAttempts"], 2);
    assert_eq!(meta["RequestId"], "STANDIN");
    let retries = outputs
        .iter()
        .filter(
            |o| matches!(o, Output::Log(_, t) if t.contains("SlowDown") && t.contains("retrying")),
        )
        .count();
    assert_eq!(retries, 2, "{outputs:#?}");

    // Past the tries, the last error fails the sample.
    let (url, count, _server2) = flaky_s3(usize::MAX).await;
    let settings = settings_for_bkt();
    let (intake, queue, held) = Intake::new(settings);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let _worker = tokio::spawn(uploader::run(client_for(&url), FAST, queue, held, out_tx));
    intake.admit(
        "r2",
        &context("c1", json!([1.0]), json!({})),
        b"hello".to_vec(),
        OffsetDateTime::now_utc(),
        0.0,
        &mut Vec::new(),
    );
    let outputs = collect_until(
        &mut out_rx,
        WITHIN,
        |o| matches!(o, Output::Publish { topic, .. } if *topic == "feedback/message/status"),
    )
    .await;
    assert_eq!(count.load(Ordering::SeqCst), 3, "FAST makes three tries");
    let status = &published(&outputs, "feedback/message/status")[0];
    assert_eq!(status["response"]["error"], "SlowDown", "{status}");
    assert!(status["response"]["error_message"]
        .as_str()
        .is_some_and(|m| m.ends_with("(after 3 tries)")));
    server.abort();
}

fn settings_for_bkt() -> Arc<evergreen_connector_ml_feedback::settings::Settings> {
    settings(
        &json!({"c1": {"s3-bucket-name": "bkt", "content-type": "text/plain"}}),
        "",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_limit_holds_while_an_upload_hangs() {
    // An S3 that accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (accepted_tx, mut accepted) = mpsc::channel(4);
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..4 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            held.push(stream);
            let _ = accepted_tx.send(()).await;
        }
    });
    let limit = 3;
    let settings = settings(
        &json!({"c1": {"s3-bucket-name": "bkt", "content-type": "text/plain"}}),
        &limit.to_string(),
    );
    let (intake, queue, held) = Intake::new(settings);
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let one_try = Retry { tries: 1, ..FAST };
    let _worker = tokio::spawn(uploader::run(
        client_for(&url),
        one_try,
        queue,
        held.clone(),
        out_tx,
    ));
    let admit = |id: &str, out: &mut Vec<Output>| {
        intake.admit(
            id,
            &context("c1", json!([0.1]), json!({})),
            vec![0; 1000],
            OffsetDateTime::now_utc(),
            0.0,
            out,
        )
    };
    let mut out = Vec::new();
    assert_eq!(admit("first", &mut out), Admission::Queued);
    tokio::time::timeout(WITHIN, accepted.recv())
        .await
        .expect("the upload reached the stand-in");
    // The hanging upload is out of the queue: `limit` more fit, then no more.
    let started = std::time::Instant::now();
    for i in 0..limit {
        assert_eq!(admit(&format!("q{i}"), &mut out), Admission::Queued, "{i}");
    }
    for i in 0..2 {
        let a = admit(&format!("over{i}"), &mut out);
        assert_eq!(
            a,
            Admission::Refused {
                error_type: "Full",
                message: "Request limit has been reached (max request: 3 ). Dropping request."
                    .into()
            }
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "admission waited for the upload"
    );
    assert_eq!(held.load(Ordering::SeqCst), limit + 1);
    let statuses = published(&out, "feedback/message/status");
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[0]["id"], "over0");
    assert_eq!(statuses[0]["response"]["error"], "Queue.Full");
    assert_eq!(metric_names(&out), ["ErrorRequestThrottled"; 2]);
    // The stand-in goes away: the hanging upload fails (one try), and the
    // queue moves on.
    server.abort();
    let outputs = collect_until(&mut out_rx, WITHIN, |o| is_metric(o, "SampleUploadFailure")).await;
    let status = &published(&outputs, "feedback/message/status");
    assert!(
        status.is_empty() || status[0]["id"] == "first",
        "{status:?}"
    );
}
