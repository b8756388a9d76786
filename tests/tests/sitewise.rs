//! End-to-end: the IoT SiteWise connector in a group with `GGStreamManager`
//! reads a real OPC UA server (Python `asyncua`, the crate's
//! `tests/opcua_server.py`) that only admits a user whose name and password
//! are a key-value secret in Secrets Manager (a real `moto_server`), named
//! by the connector's `AWSSecretsArnList` and fetched at deployment. An
//! unmodified V1 Python function reads `SiteWise_Stream` through the real
//! `greengrasssdk` `StreamManagerClient` and publishes what it read.
//! Checked: aliases are the prefix + browse paths under the root path only,
//! values are typed, quality GOOD, timestamps recent, entry ids unique; the
//! status names the source and the stream.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(90);
const CONNECTOR: &str = "arn:aws:greengrass:us-east-1::/connectors/IoTSiteWise/versions/12";
const LOG: &str = "user/us-east-1/aws/IoTSiteWise.log";
const STREAM: &str = "SiteWise_Stream";
const WANT: usize = 30;

/// The asyncua test server, killed when dropped.
struct OpcUaServer(Child);

impl OpcUaServer {
    fn start(port: u16, user: &str) -> Option<OpcUaServer> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../connectors/sitewise/tests/opcua_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .args(["--user", user])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut out = BufReader::new(child.stdout.take()?);
        let mut line = String::new();
        // The script prints READY once it listens, or exits (no asyncua).
        while out.read_line(&mut line).ok()? > 0 {
            if line.trim() == "READY" {
                return Some(OpcUaServer(child));
            }
            line.clear();
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for OpcUaServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have_asyncua() -> bool {
    Command::new("python3")
        .args(["-c", "import asyncua"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn capability(port: u16, secret_arn: &str) -> Value {
    json!({"sources": [{"name": "Line 1",
        "endpoint": {
            "certificateTrust": {"type": "TrustAny"},
            "endpointUri": format!("opc.tcp://127.0.0.1:{port}/evergreen/"),
            "securityPolicy": "NONE", "messageSecurityMode": "NONE",
            "identityProvider": {"type": "Username", "usernameSecretArn": secret_arn},
            "nodeFilterRules": [{"action": "INCLUDE",
                "definition": {"type": "OpcUaRootPath", "rootPath": "/Plant/Line1/*"}}]},
        "measurementDataStreamPrefix": "/Factory",
        "propertyGroups": [{"name": "fast",
            "nodeFilterRuleDefinitions": [{"type": "OpcUaRootPath", "rootPath": "/Plant/**"}],
            "scanMode": {"type": "EXCEPTION", "rate": 100}}]}]})
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(f)
}

#[test]
fn opc_ua_values_go_into_sitewise_stream_with_a_username_from_secrets_manager() {
    if !have_asyncua() {
        eprintln!("SKIP: python3 with asyncua is not installed (pip install asyncua==2.1.0)");
        return;
    }
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let Some(moto) = Moto::start() else { return };
    let sm = evergreen_aws::AwsClient::with_credentials(
        "us-east-1",
        [("secretsmanager".to_string(), moto.url())]
            .into_iter()
            .collect(),
        evergreen_ipc::AwsCredentials {
            access_key_id: MOTO_ACCESS_KEY.into(),
            secret_access_key: MOTO_SECRET_KEY.into(),
            session_token: None,
            expiration_ms: None,
        },
    );
    let created = block_on(sm.json(
        "secretsmanager",
        "secretsmanager.CreateSecret",
        &json!({"Name": "greengrass-opcua-line1",
                "SecretString": json!({"username": "operator", "password": "s3cret"}).to_string()}),
    ))
    .expect("CreateSecret");
    let secret_arn = created["ARN"].as_str().expect("ARN").to_string();

    let port = free_port().expect("a free port");
    let server = OpcUaServer::start(port, "operator:s3cret").expect("the OPC UA test server");
    let dir = tempfile::tempdir().expect("tmp");
    let work = tempfile::tempdir().expect("tmp");
    let storage = work.path().join("sitewise");
    let code = stream_reader_package(work.path(), &sdk, STREAM, WANT, 80);
    let out = work.path().join("got.jsonl");
    let mut g = group(
        vec![
            stream_manager_function(free_port().expect("a free port")),
            python_function("reader", &code, "reader.handler", true, 90),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![
            sub("r", &fn_arn("reader"), "sm/#", &fn_arn("rec")),
            sub("status", CONNECTOR, "sitewise/status", &fn_arn("rec")),
        ],
    );
    g["ResourceDefinitionVersion"] = json!({"Resources": [{
        "Id": "OpcUaUser", "Name": "OpcUaUser",
        "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": secret_arn}}}]});
    g["ConnectorDefinitionVersion"] = json!({"Connectors": [{
        "Id": "sitewise",
        "ConnectorArn": CONNECTOR,
        "Parameters": {
            "SiteWiseLocalStoragePath": storage.display().to_string(),
            "AWSSecretsArnList": json!([secret_arn]).to_string(),
            "MaximumBufferSize": "10",
            "CapabilityConfiguration": capability(port, &secret_arn).to_string()
        }
    }]});
    let mut config = moto.core_config();
    merge(
        &mut config,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
    );
    let rt = Runtime::start_config_in(dir, &g, &config, &[]);
    let report = wait_for(LIMIT, || {
        on_topic(&out, "sm/read")
            .into_iter()
            .find(|r| r["phase"] == "read" || r["phase"] == "error")
    })
    .unwrap_or_else(|| {
        panic!(
            "no report from the reader:\n{}\nconnector:\n{}",
            read(&rt.function_log("reader")),
            read(&rt.log_path(LOG))
        )
    });
    assert_eq!(
        report["phase"],
        "read",
        "{report}\nconnector:\n{}",
        read(&rt.log_path(LOG))
    );
    let got = report["got"].as_array().expect("got");
    assert_eq!(got.len(), WANT, "{report}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut ids = std::collections::HashSet::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r["seq"], i as i64, "sequence numbers without gaps: {r}");
        let e = &r["entry"];
        assert!(
            ids.insert(e["entryId"].as_str().expect("entryId").to_string()),
            "entry ids are unique: {e}"
        );
        let alias = e["propertyAlias"].as_str().expect("alias").to_string();
        let v = &e["propertyValues"][0];
        assert_eq!(v["quality"], "GOOD", "{e}");
        let key = match alias.as_str() {
            "/Factory/Plant/Line1/Temperature" | "/Factory/Plant/Line1/Big" => "doubleValue",
            "/Factory/Plant/Line1/Count" => "integerValue",
            "/Factory/Plant/Line1/Name" => "stringValue",
            "/Factory/Plant/Line1/Running" => "booleanValue",
            other => panic!("unexpected alias {other} (outside the root path?): {e}"),
        };
        assert!(!v["value"][key].is_null(), "{alias} carries {key}: {e}");
        let secs = v["timestamp"]["timeInSeconds"].as_i64().expect("seconds");
        assert!((now - 120..=now + 5).contains(&secs), "{e}");
        seen.insert(alias);
    }
    assert_eq!(seen.len(), 5, "every variable arrived: {seen:?}");
    let status = on_topic(&out, "sitewise/status");
    let ok = status
        .iter()
        .find(|s| s["status"] == "success")
        .unwrap_or_else(|| panic!("no success status: {status:?}"));
    assert_eq!(ok["sources"][0]["stream"], STREAM, "{ok}");
    assert!(ok["sources"][0].get("error").is_none(), "{ok}");
    // The client's PKI lives under SiteWiseLocalStoragePath.
    assert!(storage.join("pki").is_dir(), "{}", storage.display());
    let log = read(&rt.log_path(LOG));
    assert!(log.contains("connected to opc.tcp://127.0.0.1"), "{log}");
    assert!(
        !log.contains("s3cret"),
        "the password never reaches the log"
    );
    print_connector_rss(&rt, "IoTSiteWise");
    drop(server);
}
