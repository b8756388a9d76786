//! Fleet deployments over a real mosquitto, with real runtimes (issue 20, the MQTT transport):
//! the operator signs a bundle with `evergreen fleet sign` and publishes the document retained
//! with `mosquitto_pub`, as the README says; each gateway's bridge takes it, the agent checks,
//! fetches, stores and deploys it, and the gateway's retained status says how it ended.
//!
//! Checked here: a group document reaches every member, which all run the same version and
//! report `Success`; a restarted gateway gets the retained document again and does not deploy
//! it twice; unsigned, tampered, untrusted-key and replayed documents are refused with their
//! reason (on the gateway's `refused` topic) and change nothing; a bundle whose pinned function never becomes ready is rolled
//! back and reported as such. Three gateways stand in for the issue's twenty (CI time); the
//! code path per gateway is the same.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use evergreen_tests::broker::Mosquitto;
use evergreen_tests::fleet::{fleet, gateway, gateway_config, Operator};
use evergreen_tests::*;
use serde_json::{json, Value};

/// Bounds every wait; generous, since CI runs these tests in parallel on 2 cores (one of them
/// starts twenty runtimes).
const LIMIT: Duration = Duration::from_secs(120);

fn cli(config: &Path, args: &[&str]) -> Output {
    evergreen_with(config, args)
}

fn status_topic(thing: &str) -> String {
    format!("evergreen/fleet/things/{thing}/status")
}

/// Waits for `thing`'s retained status to reach `state` for `sequence`; returns it.
fn wait_status(broker: &Mosquitto, thing: &str, sequence: u64, state: &str) -> Value {
    let mut last = Value::Null;
    wait_for(LIMIT, || {
        let v: Value = serde_json::from_slice(&broker.retained(&status_topic(thing))?).ok()?;
        last = v.clone();
        (v["sequence"] == json!(sequence) && v["state"] == state).then_some(v)
    })
    .unwrap_or_else(|| panic!("{thing} did not report {state} for {sequence}; last status {last}"))
}

/// Waits for `thing`'s retained refusal report to carry `code`.
fn wait_refusal(broker: &Mosquitto, thing: &str, code: &str) -> Value {
    let mut last = Value::Null;
    wait_for(LIMIT, || {
        let topic = format!("evergreen/fleet/things/{thing}/refused");
        let v: Value = serde_json::from_slice(&broker.retained(&topic)?).ok()?;
        last = v.clone();
        (v["state"] == "Failure" && v["code"] == code).then_some(v)
    })
    .unwrap_or_else(|| panic!("{thing} did not report the refusal {code}; last status {last}"))
}

/// The runtime's deployment history (`evergreen deployments`), as JSON lines of text.
fn deployments(rt: &Runtime) -> String {
    let out = cli(&rt.dir.path().join("config.json"), &["deployments"]);
    output_text(&out)
}

fn deployment_count(rt: &Runtime) -> usize {
    deployments(rt)
        .lines()
        .filter(|l| l.contains("NewDeployment"))
        .count()
}

#[test]
fn fleet_group_document_deploys_on_every_member_once() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let state = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&bin, state.path(), free_port().expect("port"));
    let op = Operator::new();
    let things = ["gw-1", "gw-2", "gw-3"];
    let mut gateways: Vec<Runtime> = things
        .iter()
        .map(|t| gateway(&broker, t, &op.public))
        .collect();
    let (bundle, id) = op.bundle("sleeper", "sleeper");
    let document = op.sign(&bundle, 1, &["--groups", "line-1"]);
    broker.publish("evergreen/fleet/groups/line-1/deployment", &document, true);
    for (thing, rt) in things.iter().zip(&gateways) {
        let status = wait_status(&broker, thing, 1, "Success");
        assert_eq!(status["version"], json!(id), "{thing}: {status}");
        // `evergreen deployments` shows the version's first 12 digits.
        assert!(
            deployments(rt).contains(&id[..12]),
            "{thing}: {}",
            deployments(rt)
        );
    }

    // A restart: the retained document comes again with the new connection, and is not
    // deployed a second time.
    let before = deployment_count(&gateways[0]);
    let dir = {
        let rt = &mut gateways[0];
        let stopped = rt
            .stop_with(nix::sys::signal::Signal::SIGTERM, LIMIT)
            .expect("stops");
        assert!(stopped.success());
        std::mem::replace(&mut rt.dir, tempfile::tempdir().expect("tmp"))
    };
    let again = Runtime::start_config_in(
        dir,
        &group(vec![], vec![]),
        &gateway_config(&broker, "gw-1", &op.public),
        &[],
    );
    // Connected again (the log says it subscribed to the document topics), then a while.
    let log = again.log_path("system/runtime.log");
    wait_for(LIMIT, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.matches("taking deployment documents").count() >= 2)
    })
    .expect("the restarted gateway takes documents again");
    std::thread::sleep(Duration::from_secs(3));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        log_text.matches("accepted from").count(),
        1,
        "the document was accepted once, before the restart: {log_text}"
    );
    assert_eq!(deployment_count(&again), before, "{}", deployments(&again));
}

#[test]
fn fleet_refuses_unsigned_tampered_untrusted_and_replayed_documents() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let state = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&bin, state.path(), free_port().expect("port"));
    let op = Operator::new();
    let rt = gateway(&broker, "gw-9", &op.public);
    let topic = "evergreen/fleet/things/gw-9/deployment";
    let (bundle, id) = op.bundle("sleeper", "sleeper");

    // Unsigned: the document without its envelope.
    let signed: Value =
        serde_json::from_slice(&op.sign(&bundle, 5, &["--things", "gw-9"])).expect("json");
    let inner = signed["document"].as_str().expect("document").to_string();
    broker.publish(topic, inner.as_bytes(), true);
    wait_refusal(&broker, "gw-9", "Unsigned");

    // Tampered: another URL under the same signature.
    let mut tampered = signed.clone();
    tampered["document"] = json!(inner.replace("file://", "file:///evil"));
    broker.publish(topic, tampered.to_string().as_bytes(), true);
    wait_refusal(&broker, "gw-9", "BadSignature");

    // Signed by a key the gateway does not trust.
    let other = op.dir.path().join("other.key");
    let made = fleet(&["keygen", &other.display().to_string(), "--json"]);
    assert!(made.status.success(), "{}", output_text(&made));
    let keygen: Value = serde_json::from_slice(&made.stdout).expect("keygen --json");
    assert_eq!(
        keygen["publicKey"].as_str().map(str::len),
        Some(44),
        "a 32-byte key in base64: {keygen}"
    );
    let untrusted = op.sign_with(&other, &bundle, 6, &["--things", "gw-9"]);
    broker.publish(topic, &untrusted, true);
    wait_refusal(&broker, "gw-9", "UntrustedKey");
    assert_eq!(deployment_count(&rt), 0, "{}", deployments(&rt));

    // The real one deploys; an older sequence afterwards is a replay.
    broker.publish(topic, signed.to_string().as_bytes(), true);
    let status = wait_status(&broker, "gw-9", 5, "Success");
    assert_eq!(status["version"], json!(id));
    let older = op.sign(&bundle, 4, &["--things", "gw-9"]);
    broker.publish(topic, &older, true);
    let refused = wait_refusal(&broker, "gw-9", "Replayed");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not newer than 5"),
        "{refused}"
    );
    // The status still says how the accepted deployment went: a replay does not hide it.
    let status = wait_status(&broker, "gw-9", 5, "Success");
    assert_eq!(status["version"], json!(id), "{status}");
    assert_eq!(deployment_count(&rt), 1, "{}", deployments(&rt));
}

#[test]
fn fleet_bundle_that_never_becomes_ready_is_rolled_back_and_reported() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let state = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&bin, state.path(), free_port().expect("port"));
    let op = Operator::new();
    let rt = gateway(&broker, "gw-5", &op.public);
    let topic = "evergreen/fleet/things/gw-5/deployment";
    let (good, good_id) = op.bundle("sleeper", "sleeper");
    broker.publish(topic, &op.sign(&good, 1, &["--things", "gw-5"]), true);
    wait_status(&broker, "gw-5", 1, "Success");

    // A function that never says Ready: the deployer gives up after readinessTimeoutMs and
    // rolls back. (One that says Ready and then exits can look ready to the deployer.)
    let (bad, _) = op.bundle("stalled", "stall");
    broker.publish(topic, &op.sign(&bad, 2, &["--things", "gw-5"]), true);
    let status = wait_status(&broker, "gw-5", 2, "RolledBack");
    assert_eq!(status["code"], "DeploymentFailed", "{status}");
    assert_eq!(
        status["version"],
        json!(good_id),
        "the previous version runs again: {status}"
    );
    assert_eq!(deployment_count(&rt), 2, "{}", deployments(&rt));
}

/// The issue's health check: the retained health message names the gateway's groups and
/// version and carries the status document, and a component crash shows in it at once: the
/// interval is an hour here, so only the on-change check (every 5 s) can publish it.
#[test]
fn fleet_health_names_groups_and_version_and_shows_a_crash() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let state = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&bin, state.path(), free_port().expect("port"));
    let op = Operator::new();
    let mut patch = gateway_config(&broker, "gw-7", &op.public);
    merge(
        &mut patch,
        &json!({ "evergreen": { "fleet": { "healthIntervalSecs": 3600 } } }),
    );
    let _rt = Runtime::start_config(&group(vec![], vec![]), &patch, &[]);
    let (bundle, id) = op.bundle("sleeper", "sleeper");
    broker.publish(
        "evergreen/fleet/things/gw-7/deployment",
        &op.sign(&bundle, 1, &["--things", "gw-7"]),
        true,
    );
    wait_status(&broker, "gw-7", 1, "Success");
    let health = |want: &dyn Fn(&Value) -> bool| -> Value {
        let mut last = Value::Null;
        wait_for(LIMIT, || {
            let v: Value =
                serde_json::from_slice(&broker.retained("evergreen/fleet/things/gw-7/health")?)
                    .ok()?;
            last = v.clone();
            want(&v).then_some(v)
        })
        .unwrap_or_else(|| panic!("no such health message; last {last}"))
    };
    let component = |v: &Value| v["runtime"]["components"].get(0).cloned();
    let running = health(&|v| {
        v["version"] == json!(id)
            && component(v).is_some_and(|c| c["state"] == "Running" && c["pid"].is_u64())
    });
    assert_eq!(running["groups"], json!(["line-1"]), "{running}");
    assert_eq!(running["accepted"]["factory"]["sequence"], 1, "{running}");
    let pid = component(&running)
        .and_then(|c| c["pid"].as_i64())
        .expect("the sleeper's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the sleeper");
    let after = health(&|v| component(v).is_some_and(|c| c["restarts"].as_u64() >= Some(1)));
    assert_eq!(after["version"], json!(id), "{after}");
}

/// `evergreen fleet deploy|status` against the broker, as an operator runs them.
fn operator_cli(broker: &Mosquitto, args: &[&str]) -> Output {
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--broker", &url]);
    fleet(&all)
}

fn deploy_args<'a>(op: &'a Operator, bundle: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        "deploy",
        bundle,
        "--key",
        op.key.to_str().expect("utf-8 path"),
        "--fleet",
        "factory",
        "--url",
        url,
    ]
}

fn rollout_record(broker: &Mosquitto) -> Value {
    broker
        .retained("evergreen/fleet/fleets/factory/rollout")
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// The issue's set-up: a mosquitto that takes gateways and operators only with TLS and a client
/// certificate (`require_certificate`), signed by the test's own CA, plus a plain listener on
/// loopback from which the test itself reads retained messages.
struct TlsBroker {
    broker: Mosquitto,
    tls_port: u16,
    pki: tempfile::TempDir,
}

impl TlsBroker {
    /// Certificates for `things` and an operator, then the broker.
    fn start(bin: &Path, things: &[String]) -> TlsBroker {
        let pki = tempfile::tempdir().expect("tmp");
        let d = pki.path();
        let mut leaves: Vec<(&str, &str, Option<&str>)> = vec![
            ("server", "localhost", Some("DNS:localhost,IP:127.0.0.1")),
            ("operator", "operator", None),
        ];
        leaves.extend(things.iter().map(|t| (t.as_str(), t.as_str(), None)));
        evergreen_tests::pki::make_pki(d, "fleet", &leaves);
        let (tls_port, plain_port) = (free_port().expect("port"), free_port().expect("port"));
        let broker = Mosquitto::with_config(
            bin,
            d,
            plain_port,
            &format!(
                "per_listener_settings false\nallow_anonymous true\n\
                 listener {tls_port} 127.0.0.1\ncafile {d}/fleet-ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nrequire_certificate true\n\
                 listener {plain_port} 127.0.0.1\n",
                d = d.display()
            ),
        );
        TlsBroker {
            broker,
            tls_port,
            pki,
        }
    }

    fn file(&self, name: &str) -> String {
        self.pki.path().join(name).display().to_string()
    }

    /// A gateway connecting with its own certificate (the bridge's mutual TLS).
    fn gateway(&self, thing: &str, key: &str) -> Runtime {
        let mut patch = gateway_config(&self.broker, thing, key);
        merge(
            &mut patch,
            &json!({
                "coreThing": {
                    "iotHost": "localhost",
                    "iotMqttPort": self.tls_port,
                    "caPath": self.file("fleet-ca.crt"),
                    "certPath": self.file(&format!("{thing}.crt")),
                    "keyPath": self.file(&format!("{thing}.key"))
                },
                "evergreen": { "cloudTls": true }
            }),
        );
        Runtime::start_config(&group(vec![], vec![]), &patch, &[])
    }

    /// The operator's `--broker mqtts://… --ca --cert --cert-key`.
    fn operator_args(&self) -> Vec<String> {
        vec![
            "--broker".into(),
            format!("mqtts://localhost:{}", self.tls_port),
            "--ca".into(),
            self.file("fleet-ca.crt"),
            "--cert".into(),
            self.file("operator.crt"),
            "--cert-key".into(),
            self.file("operator.key"),
        ]
    }
}

/// `fleet deploy --group` over mutual TLS finds the group's 20 members (twenty runtimes, own
/// roots, one broker) from their health, rolls out in stages (a canary of 2, then batches of
/// 6), every gateway reports Success and the command exits 0; `fleet status --json` then shows
/// every gateway on the new version, and mosquitto_sub with a client certificate reads a
/// gateway's status over TLS.
#[test]
fn fleet_deploy_rolls_a_group_out_in_stages() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    if !have("openssl") {
        eprintln!("SKIPPED: openssl is not installed (apt-get install openssl; .ci/run does)");
        return;
    }
    let things: Vec<String> = (1..=20).map(|i| format!("gw-{i:02}")).collect();
    let tls = TlsBroker::start(&bin, &things);
    let broker = &tls.broker;
    let op = Operator::new();
    let _gateways: Vec<Runtime> = things.iter().map(|t| tls.gateway(t, &op.public)).collect();
    // Each announces itself with its health (groups included) once connected.
    for t in &things {
        wait_for(LIMIT, || {
            broker.retained(&format!("evergreen/fleet/things/{t}/health"))
        })
        .unwrap_or_else(|| panic!("{t} published no health"));
    }
    let (bundle, id) = op.bundle("sleeper", "sleeper");
    let url = format!("file://{}", bundle.display());
    let b = bundle.display().to_string();
    let mut args = deploy_args(&op, &b, &url);
    args.extend([
        "--group", "line-1", "--canary", "2", "--batch", "6", "--json",
    ]);
    let over_tls = tls.operator_args();
    args.extend(over_tls.iter().map(String::as_str));
    let out = fleet(&args);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let stages: Vec<&Value> = events.iter().filter(|e| e["event"] == "stage").collect();
    assert_eq!(
        stages.len(),
        4,
        "a canary of 2, then 3 batches of 6: {text}"
    );
    assert_eq!(stages[0]["things"], json!(["gw-01", "gw-02"]), "{text}");
    for t in &things {
        let status = wait_status(broker, t, 1, "Success");
        assert_eq!(status["version"], json!(id), "{t}: {status}");
    }
    assert_eq!(rollout_record(broker)["state"], "Completed");

    let mut status_args = vec!["status", "--json"];
    status_args.extend(over_tls.iter().map(String::as_str));
    let listed = fleet(&status_args);
    assert!(listed.status.success(), "{}", output_text(&listed));
    let view: Value = serde_json::from_slice(&listed.stdout).expect("status JSON");
    let versions: Vec<&Value> = view["gateways"]
        .as_array()
        .expect("gateways")
        .iter()
        .map(|g| &g["health"]["version"])
        .collect();
    assert_eq!(versions.len(), 20, "{view}");
    assert!(versions.iter().all(|v| **v == json!(id)), "{view}");

    let read = std::process::Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &tls.tls_port.to_string()])
        .args(["--cafile", &tls.file("fleet-ca.crt")])
        .args([
            "--cert",
            &tls.file("operator.crt"),
            "--key",
            &tls.file("operator.key"),
        ])
        .args([
            "-t",
            "evergreen/fleet/things/gw-20/status",
            "-C",
            "1",
            "-W",
            "5",
        ])
        .arg("--retained-only")
        .output()
        .expect("mosquitto_sub");
    let status: Value = serde_json::from_slice(&read.stdout).unwrap_or(Value::Null);
    assert_eq!(status["state"], "Success", "over TLS: {status}");
}

/// The issue's failure case: a bundle whose pinned function never becomes ready fails on the
/// canaries, which roll back; the rollout halts (exit 2) and the other gateways never get the
/// document: they stay on the previous version with its status.
#[test]
fn fleet_deploy_halts_when_the_canaries_fail_and_leaves_the_rest_untouched() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let state = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&bin, state.path(), free_port().expect("port"));
    let op = Operator::new();
    let things = ["gw-p", "gw-q", "gw-r", "gw-s"];
    let _gateways: Vec<Runtime> = things
        .iter()
        .map(|t| gateway(&broker, t, &op.public))
        .collect();
    let (good, good_id) = op.bundle("sleeper", "sleeper");
    let good_url = format!("file://{}", good.display());
    let g = good.display().to_string();
    let mut args = deploy_args(&op, &g, &good_url);
    args.extend(["--things", "gw-p,gw-q,gw-r,gw-s", "--sequence", "1"]);
    let out = operator_cli(&broker, &args);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let (bad, _) = op.bundle("stalled", "stall");
    let bad_url = format!("file://{}", bad.display());
    let b = bad.display().to_string();
    let mut args = deploy_args(&op, &b, &bad_url);
    args.extend(["--things", "gw-p,gw-q,gw-r,gw-s", "--canary", "2"]);
    let out = operator_cli(&broker, &args);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(2), "halted: {text}");
    assert!(text.contains("Halted"), "{text}");
    for t in ["gw-p", "gw-q"] {
        let status = wait_status(&broker, t, 2, "RolledBack");
        assert_eq!(status["version"], json!(good_id), "{t}: {status}");
    }
    for t in ["gw-r", "gw-s"] {
        assert!(
            broker
                .retained(&format!("evergreen/fleet/things/{t}/deployment"))
                .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
                .and_then(|d| d["document"].as_str().map(str::to_string))
                .is_some_and(|d| d.contains("\"sequence\":1")),
            "{t} still has only the first document"
        );
        let status = wait_status(&broker, t, 1, "Success");
        assert_eq!(status["version"], json!(good_id), "{t}: {status}");
    }
    let record = rollout_record(&broker);
    assert_eq!(record["state"], "Halted", "{record}");
    // In the order they reported.
    let mut failed: Vec<&str> = record["failed"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    failed.sort_unstable();
    assert_eq!(failed, ["gw-p", "gw-q"], "{record}");
}

/// A broker restart in the middle of a rollout: the second stage's gateway is offline when its
/// document is published (retained), the broker restarts, the gateway comes up afterwards and
/// gets it; the operator's command reconnects and sees the rollout complete.
#[test]
fn fleet_deploy_completes_across_a_broker_restart() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let state = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::start(&bin, state.path(), free_port().expect("port"));
    let op = Operator::new();
    let _first = gateway(&broker, "gw-x", &op.public);
    let (bundle, id) = op.bundle("sleeper", "sleeper");
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let file_url = format!("file://{}", bundle.display());
    let mut deploy = std::process::Command::new(evergreen_bin())
        .args(["fleet", "deploy", &bundle.display().to_string()])
        .args(["--key", &op.key.display().to_string(), "--fleet", "factory"])
        .args(["--url", &file_url, "--things", "gw-x,gw-y", "--canary", "1"])
        .args(["--batch", "1", "--broker", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("fleet deploy");
    wait_status(&broker, "gw-x", 1, "Success");
    wait_for(LIMIT, || {
        broker.retained("evergreen/fleet/things/gw-y/deployment")
    })
    .expect("the second stage's document is published");
    assert!(
        deploy.try_wait().expect("poll").is_none(),
        "the rollout waits for gw-y"
    );
    broker.restart(Duration::from_secs(1));
    let _second = gateway(&broker, "gw-y", &op.public);
    let status = wait_status(&broker, "gw-y", 1, "Success");
    assert_eq!(status["version"], json!(id));
    let exited = wait_for(LIMIT, || deploy.try_wait().ok().flatten()).expect("deploy ends");
    let out = deploy.wait_with_output().expect("output");
    assert_eq!(exited.code(), Some(0), "{}", output_text(&out));
    assert_eq!(rollout_record(&broker)["state"], "Completed");
}

/// The issue's interrupted download: the gateway is killed with `kill -9` while it downloads
/// the bundle over HTTP (a slow server, `tests/peers/range_server.py`), and after a restart it
/// gets the retained document again, continues the download with a `Range` request from where
/// it stopped, and deploys.
#[test]
fn fleet_download_killed_mid_way_resumes_after_a_restart() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let state = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&bin, state.path(), free_port().expect("port"));
    let op = Operator::new();
    let (bundle, id) = op.bundle("sleeper", "sleeper");
    let size = std::fs::metadata(&bundle).expect("bundle").len();
    // About eight seconds for the whole bundle.
    let rate = (size / 8).max(1024);
    let log = op.dir.path().join("ranges.log");
    let port_file = op.dir.path().join("port");
    let mut server = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/peers/range_server.py"
        ))
        .args([&bundle, Path::new(&rate.to_string()), &log, &port_file])
        .spawn()
        .expect("range_server.py");
    let port = wait_for(LIMIT, || {
        std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
    })
    .expect("the HTTP server's port");
    let url = format!("http://127.0.0.1:{port}/v1.tar");
    let b = bundle.display().to_string();
    let signed = fleet(&[
        "sign",
        &b,
        "--key",
        &op.key.display().to_string(),
        "--fleet",
        "factory",
        "--sequence",
        "1",
        "--url",
        &url,
        "--things",
        "gw-k",
    ]);
    assert!(signed.status.success(), "{}", output_text(&signed));

    let mut rt = gateway(&broker, "gw-k", &op.public);
    broker.publish(
        "evergreen/fleet/things/gw-k/deployment",
        &signed.stdout,
        true,
    );
    let sha = serde_json::from_slice::<Value>(&signed.stdout)
        .ok()
        .and_then(|e| serde_json::from_str::<Value>(e["document"].as_str()?).ok())
        .and_then(|d| d["bundle"]["sha256"].as_str().map(str::to_string))
        .expect("the document's digest");
    let part = rt
        .dir
        .path()
        .join(format!("root/fleet/downloads/{sha}.part"));
    let had = wait_for(LIMIT, || {
        let len = std::fs::metadata(&part).ok()?.len();
        (len > 0 && len < size / 2).then_some(len)
    })
    .expect("the download is under way");
    rt.stop_with(nix::sys::signal::Signal::SIGKILL, LIMIT)
        .expect("killed");
    let kept = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(kept >= had, "the partial download stays: {kept} bytes");

    let dir = std::mem::replace(&mut rt.dir, tempfile::tempdir().expect("tmp"));
    let _again = Runtime::start_config_in(
        dir,
        &group(vec![], vec![]),
        &gateway_config(&broker, "gw-k", &op.public),
        &[],
    );
    let status = wait_status(&broker, "gw-k", 1, "Success");
    assert_eq!(status["version"], json!(id), "{status}");
    let ranges = std::fs::read_to_string(&log).unwrap_or_default();
    let resumed: Vec<u64> = ranges
        .lines()
        .filter_map(|l| l.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .collect();
    assert!(
        resumed.iter().any(|from| *from >= had),
        "a request continued from byte {had} or later: {ranges:?}"
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// The AWS IoT Jobs transport against `tests/peers/jobs_standin.py`, a stand-in for the Jobs
/// MQTT API on mosquitto (its docstring lists what it emulates). Two gateways with
/// `transport: jobs` get a job whose document is the signed deployment document: both
/// executions end `SUCCEEDED` with the version in `statusDetails`; a second job with a tampered
/// document ends `FAILED` with `BadSignature`, and nothing is deployed for it.
#[test]
fn fleet_jobs_transport_runs_job_documents_and_updates_executions() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let state = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&bin, state.path(), free_port().expect("port"));
    let ready = state.path().join("standin.ready");
    let mut standin = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/peers/jobs_standin.py"
        ))
        .arg(broker.port.to_string())
        .arg(&ready)
        .spawn()
        .expect("jobs_standin.py");
    wait_for(LIMIT, || ready.exists().then_some(())).expect("the stand-in is subscribed");
    let op = Operator::new();
    let jobs_gateway = |thing: &str| {
        let mut patch = gateway_config(&broker, thing, &op.public);
        merge(
            &mut patch,
            &json!({ "evergreen": { "fleet": { "transport": "jobs" } } }),
        );
        Runtime::start_config(&group(vec![], vec![]), &patch, &[])
    };
    let gateways = [jobs_gateway("gw-j1"), jobs_gateway("gw-j2")];
    let (bundle, id) = op.bundle("sleeper", "sleeper");
    let document: Value =
        serde_json::from_slice(&op.sign(&bundle, 1, &["--things", "gw-j1,gw-j2"])).expect("json");
    let create = |job: &str, doc: &Value| {
        broker.publish(
            "standin/jobs/create",
            json!({ "jobId": job, "things": ["gw-j1", "gw-j2"], "document": doc })
                .to_string()
                .as_bytes(),
            false,
        );
    };
    let execution = |thing: &str, job: &str, status: &str| -> Value {
        let mut last = Value::Null;
        wait_for(LIMIT, || {
            let all: Value =
                serde_json::from_slice(&broker.retained(&format!("standin/jobs/things/{thing}"))?)
                    .ok()?;
            last = all.clone();
            all.as_array()?
                .iter()
                .find(|e| e["jobId"] == job && e["status"] == status)
                .cloned()
        })
        .unwrap_or_else(|| panic!("{thing}: job {job} did not reach {status}; executions {last}"))
    };
    create("deploy-1", &document);
    for thing in ["gw-j1", "gw-j2"] {
        let e = execution(thing, "deploy-1", "SUCCEEDED");
        assert_eq!(e["statusDetails"]["state"], "Success", "{e}");
        assert_eq!(e["statusDetails"]["version"], json!(id), "{e}");
        assert_eq!(e["statusDetails"]["sequence"], "1", "{e}");
    }
    let mut tampered = document.clone();
    tampered["document"] = json!(document["document"]
        .as_str()
        .expect("document")
        .replace("\"sequence\":1", "\"sequence\":2"));
    create("deploy-2", &tampered);
    for (thing, rt) in ["gw-j1", "gw-j2"].iter().zip(&gateways) {
        let e = execution(thing, "deploy-2", "FAILED");
        assert_eq!(e["statusDetails"]["code"], "BadSignature", "{e}");
        let listed = output_text(&evergreen_with(
            &rt.dir.path().join("config.json"),
            &["deployments"],
        ));
        assert_eq!(
            listed.matches("NewDeployment").count(),
            1,
            "{thing}: only the first job deployed: {listed}"
        );
    }
    let _ = standin.kill();
    let _ = standin.wait();
}

/// `fleet abort` stops a rollout before its next stage: the rollout waits on a gateway that is
/// offline, the operator aborts, and `fleet deploy` exits 2 with the record `Aborted`; a second
/// abort finds nothing in progress (exit 1).
#[test]
fn fleet_abort_stops_a_rollout_in_progress() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let state = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&bin, state.path(), free_port().expect("port"));
    let op = Operator::new();
    let _online = gateway(&broker, "gw-on", &op.public);
    let (bundle, _) = op.bundle("sleeper", "sleeper");
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let file_url = format!("file://{}", bundle.display());
    let deploy = std::process::Command::new(evergreen_bin())
        .args(["fleet", "deploy", &bundle.display().to_string()])
        .args(["--key", &op.key.display().to_string(), "--fleet", "factory"])
        .args(["--url", &file_url, "--things", "gw-on,gw-off,gw-later"])
        .args(["--canary", "1", "--batch", "1", "--broker", &url])
        // Bounds the wait if the abort were not seen.
        .args(["--stage-timeout-secs", "90"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("fleet deploy");
    wait_status(&broker, "gw-on", 1, "Success");
    wait_for(LIMIT, || {
        broker.retained("evergreen/fleet/things/gw-off/deployment")
    })
    .expect("the second stage is published and waits for gw-off");
    let aborted = operator_cli(&broker, &["abort", "--fleet", "factory"]);
    assert_eq!(aborted.status.code(), Some(0), "{}", output_text(&aborted));
    let out = deploy.wait_with_output().expect("deploy ends");
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert_eq!(rollout_record(&broker)["state"], "Aborted");
    assert!(
        broker
            .retained("evergreen/fleet/things/gw-later/deployment")
            .is_none(),
        "the stage after the abort was never published"
    );
    let again = operator_cli(&broker, &["abort", "--fleet", "factory"]);
    assert_eq!(again.status.code(), Some(1), "{}", output_text(&again));
}
