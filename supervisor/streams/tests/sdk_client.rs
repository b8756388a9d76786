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
