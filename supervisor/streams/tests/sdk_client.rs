//! The stream manager's service against the unmodified `greengrasssdk`
//! 1.6.1 `StreamManagerClient` (Python, from PyPI): every operation and
//! the SDK exception each error becomes. The runtime's own tests deploy
//! functions that use it; this one drives the service alone.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use evergreen_streams::server::{Authorizer, ServerLimits, Service};
use evergreen_streams::store::{Store, StoreLimits};
use serde_json::Value;

struct OneToken;

impl Authorizer for OneToken {
    fn authorize(&self, token: Option<&str>) -> Result<String, String> {
        match token {
            Some("good-token") => Ok("arn:test:function".into()),
            _ => Err("the token is not one this runtime gave out".into()),
        }
    }
}

/// Runs `service` on loopback on a runtime of its own: the runtime (drop it
/// to stop) and the port.
fn serve(service: Arc<Service>) -> (tokio::runtime::Runtime, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test setup");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("test setup");
    let port = listener.local_addr().expect("test setup").port();
    rt.spawn(service.serve(listener));
    (rt, port)
}

fn sdk() -> Option<PathBuf> {
    let dir = std::env::var_os("EVERGREEN_GREENGRASSSDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/evergreen-tests/greengrasssdk-1.6.1"));
    if dir
        .join("greengrasssdk/stream_manager/__init__.py")
        .is_file()
    {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: greengrasssdk 1.6.1 is not installed in {} (pip install --target it, as .ci/run does)",
            dir.display()
        );
        None
    }
}

#[test]
fn every_operation_and_its_error_through_the_sdk_client() {
    let Some(sdk) = sdk() else { return };
    let root = tempfile::tempdir().expect("test setup");
    let store = Store::open(root.path(), StoreLimits::default()).expect("test setup");
    let limits = ServerLimits {
        max_request_bytes: 64 << 10,
        ..ServerLimits::default()
    };
    let service = Service::new(store, Arc::new(OneToken), limits);
    let (_rt, port) = serve(service);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_ops.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg((64 << 10).to_string())
        .env("PYTHONPATH", &sdk)
        .env("STREAM_MANAGER_SERVER_PORT", port.to_string())
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "good-token")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("test setup");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("test setup").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the SDK script did not finish in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("test setup");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let checks: std::collections::BTreeMap<String, Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["check"].as_str()?.to_string(), v["value"].clone())))
        .collect();
    let get = |k: &str| {
        checks
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in the script's output:\n{stdout}\n{stderr}"))
    };
    assert_eq!(get("list_empty"), serde_json::json!([]));
    assert_eq!(
        get("list"),
        serde_json::json!(["file-stream", "mem stream"])
    );
    assert_eq!(get("create_twice"), "InvalidRequestException");
    assert_eq!(get("seqs"), serde_json::json!([0, 1, 2, 3, 4]));
    assert_eq!(
        get("read"),
        serde_json::json!([
            [1, "m1", "file-stream", true],
            [2, "m2", "file-stream", true],
            [3, "m3", "file-stream", true]
        ])
    );
    assert_eq!(get("read_default"), serde_json::json!([0]));
    assert_eq!(get("not_enough"), "NotEnoughMessagesException");
    assert_eq!(get("read_waits"), serde_json::json!([[5, "late"], true]));
    for k in [
        "missing_read",
        "missing_append",
        "missing_describe",
        "missing_delete",
    ] {
        assert_eq!(get(k), "ResourceNotFoundException", "{k}");
    }
    assert_eq!(get("full_error"), "InvalidRequestException");
    assert_eq!(get("overwrite"), serde_json::json!([99, true, true]));
    assert_eq!(get("oldest_clamped"), true);
    let describe = get("describe");
    assert_eq!(describe[0], "file-stream");
    assert_eq!(describe[1], 4096);
    assert_eq!(describe[2], true);
    assert_eq!(describe[3], 0);
    assert_eq!(get("update_persistence"), "UpdateNotAllowedException");
    assert_eq!(get("update_then_append"), Value::Null);
    assert_eq!(get("update_shows"), true);
    assert_eq!(get("http_export"), "InvalidRequestException");
    assert_eq!(get("too_large"), "RequestPayloadTooLargeException");
    assert_eq!(get("still_works"), true);
    assert_eq!(get("deleted"), serde_json::json!(["file-stream"]));
    assert_eq!(get("bad_token"), "ConnectFailedException");
    assert_eq!(get("done"), true, "{stderr}");
}

const LIMITS: &str = r#"
import json
from greengrasssdk.stream_manager import (
    MessageStreamDefinition, Persistence, StrategyOnFull, StreamManagerClient, StreamManagerException,
)

def out(name, value):
    print(json.dumps({"check": name, "value": value}), flush=True)

def err(f):
    try:
        f()
        return None
    except StreamManagerException as e:
        return type(e).__name__

a = StreamManagerClient()
b = StreamManagerClient()
out("third_connection", err(lambda: StreamManagerClient(connect_timeout=2, request_timeout=5)))
mk = lambda n, p: a.create_message_stream(MessageStreamDefinition(
    name=n, strategy_on_full=StrategyOnFull.RejectNewData, persistence=p, max_size=1 << 30))
mk("m1", Persistence.Memory)
mk("m2", Persistence.Memory)
out("third_stream", err(lambda: mk("m3", Persistence.Memory)))
n = 0
while n < 1000 and err(lambda: a.append_message("m1", b"x" * 65536)) is None:
    n += 1
out("memory_full_after", n)
out("memory_full", err(lambda: b.append_message("m2", b"x" * 65536)))
a.delete_message_stream("m1")
out("room_again", err(lambda: b.append_message("m2", b"x" * 65536)))
out("done", True)
"#;

/// The service's limits hold against the SDK client: `maxConnections`
/// (the SDK raises `ConnectFailedException`), `maxStreams`
/// (`InvalidRequestException`) and the bytes all Memory streams may hold
/// together (`ServerOutOfMemoryException`, freed by a delete).
#[test]
fn limits_on_connections_streams_and_bytes_hold_through_the_sdk_client() {
    let Some(sdk) = sdk() else { return };
    let root = tempfile::tempdir().expect("test setup");
    let store = Store::open(
        root.path(),
        StoreLimits {
            max_streams: 2,
            max_memory_bytes: 1 << 20,
            ..StoreLimits::default()
        },
    )
    .expect("test setup");
    let service = Service::new(
        store,
        Arc::new(OneToken),
        ServerLimits {
            max_connections: 2,
            ..ServerLimits::default()
        },
    );
    let (_rt, port) = serve(service);
    let output = Command::new("timeout")
        .args(["60", "python3", "-c", LIMITS])
        .env("PYTHONPATH", &sdk)
        .env("STREAM_MANAGER_SERVER_PORT", port.to_string())
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "good-token")
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let checks: std::collections::BTreeMap<String, Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["check"].as_str()?.to_string(), v["value"].clone())))
        .collect();
    let get = |k: &str| {
        checks.get(k).cloned().unwrap_or_else(|| {
            panic!(
                "no {k}:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
    };
    assert_eq!(get("third_connection"), "ConnectFailedException");
    assert_eq!(get("third_stream"), "InvalidRequestException");
    // 1 MiB of 64 KiB messages, each with its 24-byte record header.
    assert_eq!(get("memory_full_after"), 15);
    assert_eq!(get("memory_full"), "ServerOutOfMemoryException");
    assert_eq!(get("room_again"), Value::Null);
    assert_eq!(get("done"), true);
}

/// Bad input gets the SDK's error statuses and never ends the connection
/// or the service: an unknown operation (`UnknownOperationError`), a
/// payload that is not CBOR (`InvalidRequest`, with the request id read
/// from what could be read), then a good request on the same connection;
/// a wrong connect version is refused with `UnsupportedConnectVersion`.
#[test]
fn malformed_requests_are_answered_and_the_connection_goes_on() {
    use evergreen_streams::model::{
        ListStreamsRequest, Operation, ResponseStatusCode, StatusResponse,
    };
    use evergreen_streams::wire;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let root = tempfile::tempdir().expect("test setup");
    let store = Store::open(root.path(), StoreLimits::default()).expect("test setup");
    let service = Service::new(store, Arc::new(OneToken), ServerLimits::default());
    let (rt, port) = serve(service);
    rt.block_on(async {
        let connect = |version: u8| async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let request = evergreen_streams::model::ConnectRequest {
                request_id: Some("c".into()),
                protocol_version: Some("1.1.0".into()),
                auth_token: Some("good-token".into()),
                ..Default::default()
            };
            let mut bytes = vec![version];
            bytes.extend(wire::encode(Operation::Connect, &request));
            s.write_all(&bytes).await.expect("write");
            assert_eq!(
                s.read_u8().await.expect("version byte"),
                wire::CONNECT_VERSION
            );
            let frame = wire::read_frame(&mut s, 1 << 20)
                .await
                .expect("frame")
                .expect("a frame");
            let answer: evergreen_streams::model::ConnectResponse =
                wire::decode(&frame.payload).expect("connect response");
            (s, answer.status)
        };
        let (_, status) = connect(7).await;
        assert_eq!(status, ResponseStatusCode::UnsupportedConnectVersion);

        let (mut s, status) = connect(wire::CONNECT_VERSION).await;
        assert_eq!(status, ResponseStatusCode::Success);
        // An operation the service does not know.
        let mut unknown = wire::encode(
            Operation::ListStreams,
            &ListStreamsRequest {
                request_id: "u1".into(),
            },
        );
        unknown[4] = 99;
        s.write_all(&unknown).await.expect("write");
        let frame = wire::read_frame(&mut s, 1 << 20)
            .await
            .expect("frame")
            .expect("a frame");
        assert_eq!(frame.operation, Operation::UnknownOperationError);
        let answer: StatusResponse = wire::decode(&frame.payload).expect("status");
        assert_eq!(
            (answer.request_id.as_str(), answer.status),
            ("u1", ResponseStatusCode::UnknownOperation)
        );
        // An append whose payload is a CBOR map with the id but the wrong shape.
        let mut bad = wire::encode(
            Operation::AppendMessage,
            &ListStreamsRequest {
                request_id: "b1".into(),
            },
        );
        bad[4] = Operation::AppendMessage as u8;
        s.write_all(&bad).await.expect("write");
        let frame = wire::read_frame(&mut s, 1 << 20)
            .await
            .expect("frame")
            .expect("a frame");
        assert_eq!(frame.operation, Operation::AppendMessageResponse);
        let answer: StatusResponse = wire::decode(&frame.payload).expect("status");
        assert_eq!(
            (answer.request_id.as_str(), answer.status),
            ("b1", ResponseStatusCode::InvalidRequest)
        );
        // Bytes that are not CBOR at all.
        let mut garbage = vec![0, 0, 0, 5, Operation::CreateMessageStream as u8];
        garbage.extend([0xff, 0x00, 0x13, 0x37]);
        s.write_all(&garbage).await.expect("write");
        let frame = wire::read_frame(&mut s, 1 << 20)
            .await
            .expect("frame")
            .expect("a frame");
        let answer: StatusResponse = wire::decode(&frame.payload).expect("status");
        assert_eq!(answer.status, ResponseStatusCode::InvalidRequest);
        // The connection still serves.
        s.write_all(&wire::encode(
            Operation::ListStreams,
            &ListStreamsRequest {
                request_id: "ok".into(),
            },
        ))
        .await
        .expect("write");
        let frame = wire::read_frame(&mut s, 1 << 20)
            .await
            .expect("frame")
            .expect("a frame");
        let answer: StatusResponse = wire::decode(&frame.payload).expect("status");
        assert_eq!(
            (answer.request_id.as_str(), answer.status),
            ("ok", ResponseStatusCode::Success)
        );
    });
}

/// The npm `aws-greengrass-core-sdk` 1.7.0 (V1's Node.js SDK) ships the
/// same client for Node.js functions; it speaks the same protocol.
#[test]
fn the_nodejs_sdk_client_works_too() {
    let sdk = std::env::var_os("EVERGREEN_NODE_SDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from("/var/cache/evergreen-tests/aws-greengrass-core-sdk-1.7.0")
        });
    let modules = sdk.join("node_modules");
    if !modules
        .join("aws-greengrass-core-sdk/stream-manager")
        .is_dir()
        || Command::new("node").arg("--version").output().is_err()
    {
        eprintln!(
            "SKIP: node or aws-greengrass-core-sdk 1.7.0 is not installed in {} (npm install --prefix it, as .ci/run does)",
            sdk.display()
        );
        return;
    }
    let root = tempfile::tempdir().expect("test setup");
    let store = Store::open(root.path(), StoreLimits::default()).expect("test setup");
    let service = Service::new(store, Arc::new(OneToken), ServerLimits::default());
    let (_rt, port) = serve(service);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node_ops.js");
    let output = Command::new("timeout")
        .arg("60")
        .arg("node")
        .arg(&script)
        .env("NODE_PATH", &modules)
        .env("STREAM_MANAGER_SERVER_PORT", port.to_string())
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "good-token")
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let got: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no result:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert_eq!(got["seqs"], serde_json::json!([0, 1, 2]), "{got}");
    assert_eq!(
        got["read"],
        serde_json::json!([[1, "n1"], [2, "n2"]]),
        "{got}"
    );
    assert_eq!(got["list"], serde_json::json!(["node stream"]), "{got}");
    assert_eq!(got["newest"], 2, "{got}");
    assert_eq!(got["missing"], "ResourceNotFoundException", "{got}");
    assert_eq!(got["notEnough"], "NotEnoughMessagesException", "{got}");
    assert_eq!(got["after"], serde_json::json!([]), "{got}");
}
