//! `evergreen check`, the operator's health check, against the real binary: a clean
//! configuration passes every check; each broken piece (an expired certificate, a key of
//! another pair, a CA that did not sign, a port another program holds, an endpoint nobody
//! listens on, a broker that refuses the core or whose CA is not caPath) gives its FAIL line and
//! exit status 1; `--json` says what the text says; and `evergreen run` with a missing core
//! certificate exits 78 so systemd does not restart into it.
//!
//! Certificates are made with rcgen in the test (expired ones included); the broker tests use
//! a real mosquitto with TLS and client certificates required (skipped loudly without it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use evergreen_tests::broker::Mosquitto;
use evergreen_tests::pki::make_pki;
use evergreen_tests::{
    containers_unavailable, evergreen_bin, free_port, group, have, merge, mosquitto_or_skip,
    output_text, test_config, wait_for, Runtime,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

/// A CA written as `<stem>.crt`/`<stem>.key`, kept to sign leaves.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write pki file");
    path
}

/// A CA named `cn` (two made with one name differ only by key: a "re-created" CA).
fn ca(dir: &Path, stem: &str, cn: &str) -> Ca {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("self-signed CA");
    write(dir, &format!("{stem}.crt"), &cert.pem());
    write(dir, &format!("{stem}.key"), &key.serialize_pem());
    Ca { cert, key }
}

/// A leaf for `cn` signed by `ca`, written as `<stem>.crt`/`<stem>.key`; `dates` as
/// (not before, not after) years, else rcgen's (1975 to 4096).
fn leaf(dir: &Path, stem: &str, cn: &str, ca: &Ca, dates: Option<(i32, i32)>) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some((from, to)) = dates {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
    let cert = params
        .signed_by(&key, &ca.cert, &ca.key)
        .expect("signed leaf");
    write(dir, &format!("{stem}.crt"), &cert.pem());
    write(dir, &format!("{stem}.key"), &key.serialize_pem());
}

/// A temporary root with a configuration (the tests' base merged with `patch`) and an empty
/// NoContainer group; the Lambda endpoint's port is a free one, so a runtime elsewhere on this
/// host holding 8000 changes nothing.
struct Setup {
    dir: tempfile::TempDir,
    daemon_port: u16,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("temp dir"),
            daemon_port: free_port().expect("a free port"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, patch: &Value) -> PathBuf {
        let mut config = test_config(&self.path("root"));
        merge(
            &mut config,
            &json!({ "coreThing": { "ggDaemonPort": self.daemon_port } }),
        );
        merge(&mut config, patch);
        let path = self.path("config.json");
        std::fs::write(&path, config.to_string()).expect("write config");
        std::fs::write(self.path("group.json"), group(vec![], vec![]).to_string())
            .expect("write group");
        path
    }

    /// `evergreen check --config … --group … <extra>`.
    fn check(&self, patch: &Value, extra: &[&str]) -> Output {
        let config = self.config(patch);
        Command::new(evergreen_bin())
            .arg("check")
            .arg("--config")
            .arg(&config)
            .arg("--group")
            .arg(self.path("group.json"))
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("run evergreen check")
    }

    /// The `--json` report.
    fn check_json(&self, patch: &Value) -> (Output, Value) {
        let out = self.check(patch, &["--json"]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("--json is JSON: {e}\n{}", output_text(&out)));
        (out, v)
    }
}

/// The named check of a `--json` report.
fn line<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check named {name:?} in {report:#}"))
}

fn assert_line(report: &Value, name: &str, status: &str, detail_has: &str) {
    let c = line(report, name);
    assert_eq!(c["status"], status, "{name}: {c:#}");
    let detail = c["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_has),
        "{name}: {detail:?} lacks {detail_has:?}"
    );
    if status != "ok" {
        assert!(
            c["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "{name}: a {status} carries a fix hint: {c:#}"
        );
    }
}

/// Every check OK except the container lines where container mode cannot run on this host
/// (then warnings, exit 2); returns the exit status expected.
fn assert_all_ok(report: &Value) -> i32 {
    let unavailable = containers_unavailable();
    for c in report["checks"].as_array().expect("checks") {
        let name = c["name"].as_str().unwrap_or_default();
        if unavailable.is_some() && name.starts_with("container") {
            assert_ne!(c["status"], "fail", "{c:#}");
            continue;
        }
        assert_eq!(c["status"], "ok", "{c:#}\n{report:#}");
    }
    match unavailable {
        None => {
            assert_eq!(report["worst"], "ok");
            0
        }
        Some(why) => {
            eprintln!("note: container mode cannot run here ({why}): its lines may warn");
            if report["worst"] == "warn" {
                2
            } else {
                0
            }
        }
    }
}

/// Cloud identity files and the local MQTT server's, all good, under the setup's directory.
fn good_files(s: &Setup) -> Value {
    let d = s.dir.path();
    let cloud = ca(d, "cloud-ca", "cloud test CA");
    leaf(d, "core", "test-core", &cloud, None);
    let group_ca = ca(d, "group-ca", "group test CA");
    leaf(d, "server", "localhost", &group_ca, None);
    json!({
        "coreThing": {
            "caPath": d.join("cloud-ca.crt"),
            "certPath": d.join("core.crt"),
            "keyPath": d.join("core.key"),
        },
        "evergreen": { "listeners": {
            "mqttTls": {
                "address": "127.0.0.1",
                "port": free_port().expect("a free port"),
                "caPath": d.join("group-ca.crt"),
                "certPath": d.join("server.crt"),
                "keyPath": d.join("server.key"),
            },
            "mqttPlain": { "enabled": true, "port": free_port().expect("a free port") }
        }}
    })
}

#[test]
fn a_clean_configuration_passes_every_check() {
    let s = Setup::new();
    let files = good_files(&s);
    let (out, report) = s.check_json(&files);
    let expected = assert_all_ok(&report);
    assert_eq!(out.status.code(), Some(expected), "{}", output_text(&out));
    let mut names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names.len(),
        count,
        "every check's name is unique: {report:#}"
    );
    for (name, has) in [
        ("configuration", "config.json"),
        ("group", "valid (0 components"),
        ("cloud certificate", "test-core"),
        ("cloud key", "matches the certificate"),
        ("cloud CA", "signs the certificate"),
        ("local MQTT certificate", "localhost"),
        ("local MQTT key", "matches the certificate"),
        ("local MQTT CA", "signs the certificate"),
        ("port mqttTls", "free"),
        ("port mqttPlain", "free"),
        ("port Lambda endpoint", "free"),
        ("upstream", "not configured"),
        ("clock", "UTC"),
        ("disk", "free of"),
    ] {
        assert_line(&report, name, "ok", has);
    }
}

#[test]
fn without_cloud_settings_the_cloud_checks_say_not_configured() {
    let s = Setup::new();
    let (_, report) = s.check_json(&json!({}));
    assert_line(&report, "cloud certificate", "ok", "not configured");
    assert_line(&report, "upstream", "ok", "not configured");
}

#[test]
fn an_expired_core_certificate_fails_with_its_date() {
    let s = Setup::new();
    let d = s.dir.path();
    let cloud = ca(d, "cloud-ca", "cloud test CA");
    leaf(d, "core", "test-core", &cloud, Some((2020, 2021)));
    let (out, report) = s.check_json(&json!({ "coreThing": {
        "caPath": d.join("cloud-ca.crt"), "certPath": d.join("core.crt"), "keyPath": d.join("core.key"),
    }}));
    assert_line(&report, "cloud certificate", "fail", "expired on");
    assert!(line(&report, "cloud certificate")["detail"]
        .as_str()
        .is_some_and(|d| d.contains("2021")));
    assert_eq!(report["worst"], "fail");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_certificate_not_valid_yet_fails_and_so_does_the_clock() {
    let s = Setup::new();
    let d = s.dir.path();
    let cloud = ca(d, "cloud-ca", "cloud test CA");
    leaf(d, "core", "test-core", &cloud, Some((2090, 2091)));
    let (out, report) = s.check_json(&json!({ "coreThing": {
        "caPath": d.join("cloud-ca.crt"), "certPath": d.join("core.crt"), "keyPath": d.join("core.key"),
    }}));
    assert_line(&report, "cloud certificate", "fail", "not valid before");
    assert_line(&report, "clock", "fail", "core.crt");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_key_of_another_pair_fails() {
    let s = Setup::new();
    let d = s.dir.path();
    let cloud = ca(d, "cloud-ca", "cloud test CA");
    leaf(d, "core", "test-core", &cloud, None);
    leaf(d, "other", "test-core", &cloud, None);
    let (out, report) = s.check_json(&json!({ "coreThing": {
        "caPath": d.join("cloud-ca.crt"), "certPath": d.join("core.crt"), "keyPath": d.join("other.key"),
    }}));
    assert_line(&report, "cloud certificate", "ok", "test-core");
    assert_line(
        &report,
        "cloud key",
        "fail",
        "does not match the certificate",
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_missing_certificate_fails_naming_the_key_and_path() {
    let s = Setup::new();
    let d = s.dir.path();
    let cloud = ca(d, "cloud-ca", "cloud test CA");
    leaf(d, "core", "test-core", &cloud, None);
    let (out, report) = s.check_json(&json!({ "coreThing": {
        "caPath": d.join("cloud-ca.crt"), "certPath": d.join("absent.crt"), "keyPath": d.join("core.key"),
    }}));
    assert_line(&report, "cloud certificate", "fail", "absent.crt: missing");
    assert!(line(&report, "cloud certificate")["detail"]
        .as_str()
        .is_some_and(|d| d.contains("coreThing.certPath")));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_group_ca_that_did_not_sign_the_server_certificate_fails() {
    let s = Setup::new();
    let d = s.dir.path();
    let signer = ca(d, "group-ca", "group test CA");
    leaf(d, "server", "localhost", &signer, None);
    // Same name, another key: what re-running a CA script leaves behind.
    let _impostor = ca(d, "impostor-ca", "group test CA");
    let _other = ca(d, "other-ca", "another CA");
    let tls = |ca_file: &str| {
        json!({ "evergreen": { "listeners": { "mqttTls": {
            "port": 0,
            "caPath": d.join(ca_file), "certPath": d.join("server.crt"), "keyPath": d.join("server.key"),
        }}}})
    };
    let (out, report) = s.check_json(&tls("impostor-ca.crt"));
    assert_line(
        &report,
        "local MQTT CA",
        "fail",
        "did not sign the certificate",
    );
    assert_eq!(out.status.code(), Some(1));
    let (_, report) = s.check_json(&tls("other-ca.crt"));
    assert_line(&report, "local MQTT CA", "fail", "does not hold the issuer");
    let (_, report) = s.check_json(&tls("group-ca.crt"));
    assert_line(&report, "local MQTT CA", "ok", "signs the certificate");
    assert_line(&report, "port mqttTls", "ok", "port 0");
}

#[test]
fn a_port_another_program_holds_fails() {
    let s = Setup::new();
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let (out, report) = s.check_json(
        &json!({ "evergreen": { "listeners": { "mqttPlain": { "enabled": true, "port": port } } } }),
    );
    assert_line(
        &report,
        "port mqttPlain",
        "fail",
        &format!("127.0.0.1:{port}"),
    );
    assert!(line(&report, "port mqttPlain")["hint"]
        .as_str()
        .is_some_and(|h| h.contains(&format!("sport = :{port}"))));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_port_held_by_the_running_runtime_on_this_root_is_ok() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port().expect("a free port");
    let patch =
        json!({ "evergreen": { "listeners": { "mqttPlain": { "enabled": true, "port": port } } } });
    let rt = Runtime::start_config_in(dir, &group(vec![], vec![]), &patch, &[]);
    assert_eq!(
        rt.listener_port("plain", LIMIT),
        Some(port),
        "the runtime listens"
    );
    let out = Command::new(evergreen_bin())
        .arg("check")
        .arg("--json")
        .arg("--config")
        .arg(rt.path("config.json"))
        .arg("--group")
        .arg(rt.path("group.json"))
        .stdin(Stdio::null())
        .output()
        .expect("run evergreen check");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_line(
        &report,
        "port mqttPlain",
        "ok",
        "by the Evergreen running on this root",
    );
}

#[test]
fn an_endpoint_nobody_listens_on_fails_at_tcp() {
    let s = Setup::new();
    let closed = free_port().expect("a free port");
    let (out, report) = s.check_json(&json!({
        "coreThing": { "iotHost": "127.0.0.1", "iotMqttPort": closed },
        "evergreen": { "cloudTls": false }
    }));
    assert_line(&report, "upstream DNS", "ok", "127.0.0.1");
    assert_line(
        &report,
        "upstream TCP",
        "fail",
        &format!("127.0.0.1:{closed}"),
    );
    assert!(
        report["checks"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["name"] != "upstream TLS")),
        "no TLS step after a failed connect: {report:#}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn an_unknown_endpoint_name_fails_at_dns() {
    let s = Setup::new();
    let (out, report) = s.check_json(&json!({
        "coreThing": { "iotHost": "no-such-host.invalid", "iotMqttPort": 8883 },
        "evergreen": { "cloudTls": false }
    }));
    assert_line(&report, "upstream DNS", "fail", "no-such-host.invalid");
    assert_eq!(out.status.code(), Some(1));
}

/// A mosquitto with a TLS listener that requires client certificates from `cloud-ca.crt`
/// (server `server.crt` for localhost), and a plain one it is polled on until it is up.
fn tls_broker(bin: &Path, d: &Path) -> (Mosquitto, u16) {
    make_pki(
        d,
        "cloud",
        &[
            ("server", "localhost", Some("DNS:localhost,IP:127.0.0.1")),
            ("core", "test-core", None),
        ],
    );
    make_pki(d, "rogue", &[("rogue-core", "test-core", None)]);
    let tls_port = free_port().expect("a free port");
    let plain_port = free_port().expect("a free port");
    let conf = format!(
        "per_listener_settings false\nallow_anonymous true\n\
         listener {tls_port} 127.0.0.1\ncafile {d}/cloud-ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nrequire_certificate true\n\
         listener {plain_port} 127.0.0.1\n",
        d = d.display()
    );
    (Mosquitto::with_config(bin, d, plain_port, &conf), tls_port)
}

fn upstream(d: &Path, port: u16, ca: &str, cert: &str) -> Value {
    json!({ "coreThing": {
        "iotHost": "localhost",
        "iotMqttPort": port,
        "caPath": d.join(format!("{ca}.crt")),
        "certPath": d.join(format!("{cert}.crt")),
        "keyPath": d.join(format!("{cert}.key")),
    }})
}

fn broker_or_skip() -> Option<PathBuf> {
    let bin = mosquitto_or_skip()?;
    if !have("openssl") {
        eprintln!("SKIPPED: openssl is not installed (apt-get install openssl; .ci/run does)");
        return None;
    }
    Some(bin)
}

#[test]
fn a_broker_requiring_client_certificates_accepts_the_core() {
    let Some(bin) = broker_or_skip() else {
        return;
    };
    let s = Setup::new();
    let bdir = tempfile::tempdir().expect("dir");
    let (_broker, port) = tls_broker(&bin, bdir.path());
    let (out, report) = s.check_json(&upstream(bdir.path(), port, "cloud-ca", "core"));
    assert_line(&report, "upstream DNS", "ok", "localhost resolves");
    assert_line(&report, "upstream TCP", "ok", "connected");
    assert_line(&report, "upstream TLS", "ok", "accepted");
    // make_pki's certificates are valid for two days: within the 30 days that warn.
    assert_line(&report, "cloud certificate", "warn", "expires on");
    assert_line(&report, "cloud CA", "warn", "signs the certificate");
    assert_eq!(report["worst"], "warn", "{report:#}");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}

#[test]
fn a_broker_refuses_a_core_certificate_from_another_ca() {
    let Some(bin) = broker_or_skip() else {
        return;
    };
    let s = Setup::new();
    let bdir = tempfile::tempdir().expect("dir");
    let (_broker, port) = tls_broker(&bin, bdir.path());
    let (out, report) = s.check_json(&upstream(bdir.path(), port, "cloud-ca", "rogue-core"));
    assert_line(&report, "upstream TCP", "ok", "connected");
    assert_line(
        &report,
        "upstream TLS",
        "fail",
        &format!("localhost:{port}"),
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_ca_path_that_is_not_the_servers_ca_fails_the_handshake() {
    let Some(bin) = broker_or_skip() else {
        return;
    };
    let s = Setup::new();
    let bdir = tempfile::tempdir().expect("dir");
    let (_broker, port) = tls_broker(&bin, bdir.path());
    let (out, report) = s.check_json(&upstream(bdir.path(), port, "rogue-ca", "core"));
    assert_line(&report, "upstream TLS", "fail", "UnknownIssuer");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn json_says_what_the_text_says() {
    let s = Setup::new();
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let patch =
        json!({ "evergreen": { "listeners": { "mqttPlain": { "enabled": true, "port": port } } } });
    let (json_out, report) = s.check_json(&patch);
    let text_out = s.check(&patch, &[]);
    assert_eq!(json_out.status.code(), text_out.status.code());
    let text = String::from_utf8_lossy(&text_out.stdout);
    let checks = report["checks"].as_array().expect("checks");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| ["OK ", "WARN ", "FAIL "].iter().any(|p| l.starts_with(p)))
        .collect();
    assert_eq!(lines.len(), checks.len(), "one line per check:\n{text}");
    for (line, c) in lines.iter().zip(checks) {
        let status = c["status"].as_str().unwrap_or_default().to_uppercase();
        assert!(line.starts_with(&status), "{line} vs {c}");
        let name = c["name"].as_str().unwrap_or_default();
        let detail = c["detail"].as_str().unwrap_or_default();
        assert!(line.contains(&format!("  {name} ")), "{line} vs {c}");
        // The clock's detail starts with the time of each run, and the two runs may fall in
        // different seconds: it is compared from the offset on (` +00:00 (UTC)`).
        let detail = match detail.find(" +").or_else(|| detail.find(" -")) {
            Some(at) if name == "clock" => &detail[at..],
            _ => detail,
        };
        assert!(line.contains(detail), "{line} vs {c}");
        if let Some(hint) = c["hint"].as_str() {
            assert!(line.ends_with(&format!("; fix: {hint}")), "{line} vs {c}");
        }
    }
    let worst = report["worst"].as_str().unwrap_or_default().to_uppercase();
    assert!(
        text.contains(&format!("worst: {worst} (exit status 1)")),
        "{text}"
    );
}

#[test]
fn an_invalid_configuration_fails_and_the_host_checks_still_run() {
    let s = Setup::new();
    let config = s.path("config.json");
    std::fs::write(&config, r#"{ "coreThing": { "iotMqttPort": "eight" } }"#).expect("write");
    let out = Command::new(evergreen_bin())
        .args(["check", "--json", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run evergreen check");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_line(&report, "configuration", "fail", "iotMqttPort");
    assert_line(&report, "clock", "ok", "UTC");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn run_with_a_missing_core_certificate_exits_78() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_path_buf();
    let closed = free_port().expect("a free port");
    let patch = json!({ "coreThing": {
        "iotHost": "127.0.0.1", "iotMqttPort": closed,
        "caPath": d.join("absent-ca.crt"), "certPath": d.join("absent.crt"), "keyPath": d.join("absent.key"),
    }});
    let mut rt = Runtime::start_config_in(dir, &group(vec![], vec![]), &patch, &[]);
    let status = wait_for(LIMIT, || rt.child.try_wait().ok().flatten()).expect("exits");
    assert_eq!(
        status.code(),
        Some(78),
        "EX_CONFIG: systemd does not restart into it"
    );
}

#[test]
fn an_endpoint_that_never_answers_the_handshake_fails_within_the_timeout() {
    let s = Setup::new();
    let files = good_files(&s);
    // Connections are accepted by the kernel (the backlog) and never answered.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let mut patch = files;
    merge(
        &mut patch,
        &json!({ "coreThing": { "iotHost": "127.0.0.1", "iotMqttPort": port } }),
    );
    let started = std::time::Instant::now();
    let out = s.check(&patch, &["--json", "--timeout-secs", "1"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_line(&report, "upstream TCP", "ok", "connected");
    assert_line(&report, "upstream TLS", "fail", "no answer within 1 s");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded by the timeout: {:?}",
        started.elapsed()
    );
}
