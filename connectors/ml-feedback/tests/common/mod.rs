//! What the connector's integration tests share: a `moto_server` of their
//! own on a free loopback port (the approach of `evergreen-tests`' `Moto`,
//! without that crate's supervisor dependencies), an S3 client on it,
//! settings from a feedback configuration map, and collecting outputs with
//! a deadline.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evergreen_aws::{AwsClient, AwsError, Method, RawAnswer};
use evergreen_connector_ml_feedback::intake::Output;
use evergreen_connector_ml_feedback::settings::{
    Settings, FEEDBACK_CONFIGURATION_MAP, REQUEST_LIMIT,
};
use evergreen_connector_ml_feedback::MANIFEST;
use evergreen_ipc::AwsCredentials;
use serde_json::Value;
use tokio::sync::mpsc;

/// A `moto_server` (PyPI `moto[server]`), killed when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts moto, or `None` after saying loudly why the test skips.
    pub fn start() -> Option<Moto> {
        if Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            eprintln!(
                "\n*** SKIP: moto_server is not installed \
                 (pip install 'moto[server]==5.2.1', as .ci/run does) ***\n"
            );
            return None;
        }
        // A port freed just before moto binds it can be taken in between:
        // moto then exits, and we try another.
        for _ in 0..3 {
            let Some(port) = free_port() else { continue };
            let Ok(child) = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let mut moto = Moto { child, port };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = moto.child.try_wait() {
                    break;
                }
                if get_status(port, "/moto-api/data.json") == Some(200) {
                    return Some(moto);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = moto.child.kill();
            let _ = moto.child.wait();
        }
        eprintln!("\n*** SKIP: moto_server did not answer on loopback within 30 s ***\n");
        None
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client with moto's static test credentials, S3 pointed at moto.
    pub fn client(&self) -> AwsClient {
        client_for(&self.url())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An S3 client with test credentials whose S3 endpoint is `url`.
pub fn client_for(url: &str) -> AwsClient {
    AwsClient::with_credentials(
        "us-east-1",
        BTreeMap::from([("s3".to_string(), url.to_string())]),
        AwsCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
            expiration_ms: None,
        },
    )
}

fn free_port() -> Option<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    l.local_addr().ok().map(|a| a.port())
}

/// The status of a plain `GET path`, if anything answered.
fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub async fn create_bucket(aws: &AwsClient, bucket: &str) {
    let url = format!(
        "{}/{bucket}",
        aws.endpoint_override("s3").expect("an S3 endpoint")
    );
    aws.signed_request("s3", Method::PUT, &url, &[], Vec::new())
        .await
        .unwrap_or_else(|e| panic!("CreateBucket {bucket}: {e}"));
}

pub async fn get_object(aws: &AwsClient, bucket: &str, key: &str) -> Result<RawAnswer, AwsError> {
    let url = format!(
        "{}/{bucket}/{key}",
        aws.endpoint_override("s3").expect("an S3 endpoint")
    );
    aws.signed_request("s3", Method::GET, &url, &[], Vec::new())
        .await
}

/// Settings from a feedback configuration map and a request limit.
pub fn settings(map: &Value, limit: &str) -> Arc<Settings> {
    let map = map.to_string();
    let config = evergreen_connector_kit::testing::config(
        &MANIFEST,
        1,
        &[
            (FEEDBACK_CONFIGURATION_MAP, map.as_str()),
            (REQUEST_LIMIT, limit),
        ],
    )
    .build();
    let (settings, notes) = Settings::from_config(&config);
    assert!(
        settings.unusable.is_empty() && settings.map_error.is_none(),
        "{notes:?}"
    );
    Arc::new(settings)
}

/// A client context as the ML SDK's feedback client sends it.
pub fn context(config_id: &str, prediction: Value, metadata: Value) -> Vec<u8> {
    serde_json::json!({"custom": {"ConfigId": config_id, "ModelPrediction": prediction,
        "Metadata": metadata}})
    .to_string()
    .into_bytes()
}

/// Outputs until one satisfies `last` (included), or panics after `within`.
pub async fn collect_until(
    rx: &mut mpsc::Receiver<Output>,
    within: Duration,
    last: impl Fn(&Output) -> bool,
) -> Vec<Output> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(o)) => {
                let done = last(&o);
                got.push(o);
                if done {
                    return got;
                }
            }
            Ok(None) => panic!("the uploader stopped; got {got:#?}"),
            Err(_) => panic!("no final output within {within:?}; got {got:#?}"),
        }
    }
}

/// The payloads published on `topic`, in order.
pub fn published(outputs: &[Output], topic: &str) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Publish { topic: t, payload } if *t == topic => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

/// The metric names published, in order.
pub fn metric_names(outputs: &[Output]) -> Vec<String> {
    published(outputs, "cloudwatch/metric/put")
        .iter()
        .filter_map(|m| {
            m["request"]["metricData"]["metricName"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// Whether `o` is the metric `name`.
pub fn is_metric(o: &Output, name: &str) -> bool {
    matches!(o, Output::Publish { topic, payload } if *topic == "cloudwatch/metric/put"
        && payload["request"]["metricData"]["metricName"] == name)
}
