//! The OPC UA source loop against a real OPC UA server (Python `asyncua`,
//! `tests/opcua_server.py`): anonymous, username/password and certificate
//! security; a refused password; a server that goes away and comes back;
//! node filters. Each test skips loudly when `asyncua` is not installed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evergreen_connector_sitewise::client::{
    run_source, Batch, Credentials, Log, SourceRunner, SourceStatus,
};
use evergreen_connector_sitewise::config::Capability;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/opcua_server.py")
}

fn have_asyncua() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import asyncua"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: python3 with asyncua is not installed (pip install asyncua==2.1.0)");
    }
    ok
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts the test server and waits for its READY line.
async fn server(port: u16, extra: &[&str]) -> Child {
    let mut child = Command::new("python3")
        .arg(script())
        .arg(port.to_string())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "READY" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the OPC UA test server did not start");
    child
}

fn source_json(port: u16, endpoint_extra: Value, groups: Value) -> String {
    let mut endpoint = json!({
        "endpointUri": format!("opc.tcp://127.0.0.1:{port}/evergreen/"),
        "securityPolicy": "NONE",
        "messageSecurityMode": "NONE",
        "identityProvider": {"type": "Anonymous"},
        "certificateTrust": {"type": "TrustAny"},
        "nodeFilterRules": [{"action": "INCLUDE",
            "definition": {"type": "OpcUaRootPath", "rootPath": "/Plant/Line1/*"}}],
    });
    if let (Some(e), Some(x)) = (endpoint.as_object_mut(), endpoint_extra.as_object()) {
        for (k, v) in x {
            e.insert(k.clone(), v.clone());
        }
    }
    json!({"sources": [{"name": "Line 1", "endpoint": endpoint,
        "measurementDataStreamPrefix": "/Factory",
        "propertyGroups": groups}]})
    .to_string()
}

/// Fast scanning so that tests see several values quickly.
fn fast_groups() -> Value {
    json!([
        {"name": "subscribed", "nodeFilterRuleDefinitions": [{"type": "OpcUaRootPath", "rootPath": "/Plant/**"}],
         "scanMode": {"type": "EXCEPTION", "rate": 100}},
    ])
}

struct Running {
    rx: mpsc::Receiver<Batch>,
    status: Arc<SourceStatus>,
    logs: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
    _pki: tempfile::TempDir,
}

fn start(config: &str, credentials: Option<Credentials>) -> Running {
    let cap = Capability::parse(config).expect("valid configuration");
    let pki = tempfile::tempdir().expect("tempdir");
    let (tx, rx) = mpsc::channel(64);
    let status = Arc::new(SourceStatus::default());
    let logs = Arc::new(Mutex::new(Vec::new()));
    let l = logs.clone();
    let log: Log = Arc::new(move |level, m| l.lock().expect("log").push(format!("{level:?} {m}")));
    let runner = SourceRunner {
        source: Arc::new(cap.sources[0].clone()),
        pki_dir: pki.path().join("pki"),
        credentials,
        log,
        out: tx,
        status: status.clone(),
    };
    Running {
        rx,
        status,
        logs,
        task: tokio::spawn(run_source(runner)),
        _pki: pki,
    }
}

impl Running {
    /// Entries received until `done` says so, or panics after `within`.
    async fn until(&mut self, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut got: Vec<Value> = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "not done in {within:?}: {} entries, status {:?}, logs {:?}",
                got.len(),
                self.status.snapshot(),
                self.logs.lock().expect("log")
            );
            if let Ok(Some(batch)) = tokio::time::timeout(left, self.rx.recv()).await {
                assert_eq!(batch.stream_name, "SiteWise_Stream");
                got.extend(
                    batch
                        .entries
                        .iter()
                        .map(|e| serde_json::to_value(e).expect("json")),
                );
            }
        }
        got
    }

    async fn until_status(
        &self,
        within: Duration,
        done: impl Fn(&evergreen_connector_sitewise::client::StatusSnapshot) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status.snapshot();
            if done(&s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "status not reached in {within:?}: {s:?}, logs {:?}",
                self.logs.lock().expect("log")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const ALIASES: [&str; 5] = [
    "/Factory/Plant/Line1/Temperature",
    "/Factory/Plant/Line1/Count",
    "/Factory/Plant/Line1/Big",
    "/Factory/Plant/Line1/Name",
    "/Factory/Plant/Line1/Running",
];

fn alias(e: &Value) -> &str {
    e["propertyAlias"].as_str().unwrap_or("")
}

fn values_of<'a>(got: &'a [Value], a: &str) -> Vec<&'a Value> {
    got.iter()
        .filter(|e| alias(e) == a)
        .map(|e| &e["propertyValues"][0])
        .collect()
}

/// Every alias seen at least `n` times.
fn each_seen(n: usize) -> impl Fn(&[Value]) -> bool {
    move |got| ALIASES.iter().all(|a| values_of(got, a).len() >= n)
}

/// The checks every successful variant makes on what arrived.
fn check_entries(got: &[Value]) {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    for e in got {
        assert!(ALIASES.contains(&alias(e)), "unexpected alias in {e}");
        let v = &e["propertyValues"][0];
        assert_eq!(v["quality"], "GOOD", "{e}");
        let t = v["timestamp"]["timeInSeconds"].as_i64().expect("seconds");
        assert!(
            (t - now_s).abs() < 300,
            "source timestamp {t} far from now {now_s}"
        );
    }
    let typed = |a: &str, key: &str| values_of(got, a).iter().all(|v| !v["value"][key].is_null());
    assert!(typed(ALIASES[0], "doubleValue"));
    assert!(typed(ALIASES[1], "integerValue"));
    // Int64 beyond SiteWise's 32-bit integers goes as a double.
    assert!(typed(ALIASES[2], "doubleValue"));
    assert!(typed(ALIASES[3], "stringValue"));
    assert!(typed(ALIASES[4], "booleanValue"));
    let counts: Vec<i64> = values_of(got, ALIASES[1])
        .iter()
        .filter_map(|v| v["value"]["integerValue"].as_i64())
        .collect();
    assert!(
        counts.windows(2).all(|w| w[1] >= w[0]),
        "Count goes up: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_without_security_collects_each_type_under_the_root_path_only() {
    if !have_asyncua() {
        return;
    }
    let port = free_port();
    let _server = server(port, &[]).await;
    // Count is polled, the rest subscribed.
    let groups = json!([
        {"name": "poll", "nodeFilterRuleDefinitions": [{"type": "OpcUaRootPath", "rootPath": "/Plant/Line1/Count"}],
         "scanMode": {"type": "POLL", "rate": 150}},
        {"name": "sub", "nodeFilterRuleDefinitions": [{"type": "OpcUaRootPath", "rootPath": "/**"}],
         "scanMode": {"type": "EXCEPTION", "rate": 100}},
    ]);
    let mut r = start(&source_json(port, json!({}), groups), None);
    let got = r.until(Duration::from_secs(30), each_seen(3)).await;
    check_entries(&got);
    assert!(!got.iter().any(|e| alias(e).contains("Hidden")));
    let s = r.status.snapshot();
    assert!(s.connected);
    assert_eq!(s.nodes, 5, "only the variables under /Plant/Line1/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password_log_in() {
    if !have_asyncua() {
        return;
    }
    let port = free_port();
    let _server = server(port, &["--user", "operator:s3cret"]).await;
    let config = source_json(
        port,
        json!({"identityProvider": {"type": "Username",
            "usernameSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-opc-AbCdEf"}}),
        fast_groups(),
    );
    let creds = Credentials {
        username: "operator".into(),
        password: "s3cret".into(),
    };
    let mut r = start(&config, Some(creds));
    let got = r.until(Duration::from_secs(30), each_seen(2)).await;
    check_entries(&got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error_and_nothing_is_collected() {
    if !have_asyncua() {
        return;
    }
    let port = free_port();
    let _server = server(port, &["--user", "operator:s3cret"]).await;
    let config = source_json(
        port,
        json!({"identityProvider": {"type": "Username", "usernameSecretArn": "arn:x"}}),
        fast_groups(),
    );
    let creds = Credentials {
        username: "operator".into(),
        password: "wrong".into(),
    };
    let mut r = start(&config, Some(creds));
    r.until_status(Duration::from_secs(30), |s| s.last_error.is_some())
        .await;
    let s = r.status.snapshot();
    let why = s.last_error.unwrap_or_default();
    assert!(
        why.contains("cannot connect")
            && (why.contains("BadUserAccessDenied")
                || why.contains("BadIdentityTokenRejected")
                || why.contains("BadIdentityTokenInvalid")),
        "{why}"
    );
    assert!(!s.connected);
    assert!(r.rx.try_recv().is_err(), "no values without a session");
    let logs = r.logs.lock().expect("log").join("\n");
    assert!(
        logs.contains("Error source \"Line 1\": cannot connect"),
        "{logs}"
    );
}

fn secure(extra: Value) -> Value {
    let mut v =
        json!({"securityPolicy": "BASIC256_SHA256", "messageSecurityMode": "SIGN_AND_ENCRYPT"});
    if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in x {
            o.insert(k.clone(), val.clone());
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic256sha256_sign_and_encrypt_trusting_any_certificate() {
    if !have_asyncua() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = server(port, &["--secure", dir.path().to_str().expect("utf8")]).await;
    let mut r = start(&source_json(port, secure(json!({})), fast_groups()), None);
    let got = r.until(Duration::from_secs(60), each_seen(2)).await;
    check_entries(&got);
    // The client made its own application certificate in its PKI directory.
    let pki = r._pki.path().join("pki");
    assert!(pki.join("own/cert.der").is_file());
    assert!(pki.join("private/private.pem").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_x509_certificate_is_trusted_and_another_one_refused() {
    if !have_asyncua() {
        return;
    }
    // A certificate of another server, to pin wrongly.
    let other = tempfile::tempdir().expect("tempdir");
    {
        let port = free_port();
        let _s = server(port, &["--secure", other.path().to_str().expect("utf8")]).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = server(port, &["--secure", dir.path().to_str().expect("utf8")]).await;
    let pem = std::fs::read_to_string(dir.path().join("server_cert.pem")).expect("pem");
    let pinned = secure(json!({"certificateTrust": {"type": "X509", "certificateBody": pem}}));
    let mut r = start(&source_json(port, pinned, fast_groups()), None);
    let got = r.until(Duration::from_secs(60), each_seen(2)).await;
    check_entries(&got);
    drop(r);

    let wrong = std::fs::read_to_string(other.path().join("server_cert.pem")).expect("pem");
    let pinned = secure(json!({"certificateTrust": {"type": "X509", "certificateBody": wrong}}));
    let r = start(&source_json(port, pinned, fast_groups()), None);
    r.until_status(Duration::from_secs(60), |s| s.last_error.is_some())
        .await;
    let why = r.status.snapshot().last_error.unwrap_or_default();
    assert!(why.contains("cannot connect"), "{why}");
    assert!(!r.status.snapshot().connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_down_and_comes_back_is_reconnected() {
    if !have_asyncua() {
        return;
    }
    let port = free_port();
    let mut first = server(port, &[]).await;
    let mut r = start(&source_json(port, json!({}), fast_groups()), None);
    r.until(Duration::from_secs(30), each_seen(1)).await;
    first.kill().await.expect("kill");
    r.until_status(Duration::from_secs(30), |s| {
        !s.connected && s.last_error.is_some()
    })
    .await;
    let why = r.status.snapshot().last_error.unwrap_or_default();
    assert!(
        why.contains("lost") || why.contains("cannot connect"),
        "{why}"
    );
    // Whatever was queued before the loss is not counted as after it.
    while r.rx.try_recv().is_ok() {}
    let _second = server(port, &[]).await;
    r.until_status(Duration::from_secs(60), |s| {
        s.connected && s.connections == 2
    })
    .await;
    let got = r.until(Duration::from_secs(30), each_seen(1)).await;
    check_entries(&got);
    let logs = r.logs.lock().expect("log").join("\n");
    assert!(logs.contains("retrying with backoff"), "{logs}");
}

/// Values per second through browse, Read, conversion and batching (no
/// stream manager): 1000 variables polled every 10 ms. Run with
/// `cargo test -p evergreen-connector-sitewise --release --test opcua -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn bench_values_per_second_polling_1000_variables() {
    if !have_asyncua() {
        return;
    }
    let port = free_port();
    let _server = server(port, &["--bulk", "1000"]).await;
    let config = json!({"sources": [{"name": "bench", "endpoint": {
        "endpointUri": format!("opc.tcp://127.0.0.1:{port}/evergreen/"),
        "nodeFilterRules": [{"action": "INCLUDE",
            "definition": {"type": "OpcUaRootPath", "rootPath": "/Bulk/*"}}]},
        "propertyGroups": [{"name": "poll",
            "nodeFilterRuleDefinitions": [{"type": "OpcUaRootPath", "rootPath": "/Bulk/*"}],
            "scanMode": {"type": "POLL", "rate": 10}}]}]})
    .to_string();
    let mut r = start(&config, None);
    r.until_status(Duration::from_secs(60), |s| s.connected)
        .await;
    // Warm up, then count for 10 s.
    r.until(Duration::from_secs(30), |got| got.len() >= 1000)
        .await;
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(b)) = tokio::time::timeout(Duration::from_secs(1), r.rx.recv()).await {
            n += b.entries.len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "BENCH sitewise poll: {n} values in {secs:.1} s = {:.0} values/s ({} nodes)",
        n as f64 / secs,
        r.status.snapshot().nodes
    );
    assert_eq!(r.status.snapshot().nodes, 1000);
    assert!(n > 0);
}
