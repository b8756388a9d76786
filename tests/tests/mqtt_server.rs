//! The local MQTT server for client devices, with Debian's `mosquitto_pub`/`mosquitto_sub` as
//! the devices against the TLS listener (mutual authentication): who may connect, what a device
//! may subscribe to, device → device and device → function → device flows by subscription,
//! and QoS 1 messages queued for a persistent session while it is offline.
//!
//! Needs `mosquitto-clients` (installed by `.ci/run`); without it each test says so and skips.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use evergreen_tests::{evergreen_bin, fn_arn, function, group, records, sub, wait_for, Runtime};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/{name}")
}

fn missing_clients() -> bool {
    let ok = Command::new("mosquitto_pub").arg("--help").output().is_ok();
    if !ok {
        eprintln!("SKIPPED: mosquitto_pub/mosquitto_sub not installed (Debian mosquitto-clients; .ci/run installs it)");
    }
    !ok
}

/// `evergreen certs <args>` with `--root root`.
fn certs(root: &Path, args: &[&str]) -> Output {
    let out = Command::new(evergreen_bin())
        .arg("certs")
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .expect("run evergreen certs");
    assert!(
        out.status.success(),
        "evergreen certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A group CA, server certificate and device certificates under `dir`.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path, things: &[&str]) -> Pki {
        certs(dir, &["init"]);
        for t in things {
            certs(dir, &["device", t]);
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }
    fn local(&self) -> PathBuf {
        self.dir.join("certs/local")
    }
    fn ca(&self) -> PathBuf {
        self.local().join("ca.pem")
    }
    fn cert(&self, thing: &str) -> PathBuf {
        self.local().join(format!("devices/{thing}.pem"))
    }
    fn key(&self, thing: &str) -> PathBuf {
        self.local().join(format!("devices/{thing}.key"))
    }
}

fn device(name: &str) -> Value {
    json!({
        "Id": name,
        "ThingArn": thing_arn(name),
        "CertificateArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:cert/abc123"),
    })
}

/// Starts a runtime with `g` plus `devices`, the TLS listener on a free port with `pki`'s files.
fn start(mut g: Value, devices: &[&str], pki: &Pki) -> (Runtime, u16) {
    g["DeviceDefinitionVersion"] =
        json!({ "Devices": devices.iter().map(|d| device(d)).collect::<Vec<_>>() });
    let local = pki.local();
    let rt = Runtime::start_with(
        &g,
        &json!({ "listeners": { "mqttTls": {
            "address": "127.0.0.1", "port": 0,
            "caPath": local.join("ca.pem"),
            "certPath": local.join("server.pem"),
            "keyPath": local.join("server.key"),
        }}}),
    );
    let port = rt
        .listener_port("tls", LIMIT)
        .expect("the runtime names its TLS listener's port");
    (rt, port)
}

/// Common mosquitto client arguments: TLS with `cert_of`'s certificate, client id `id`.
fn tls_args(pki: &Pki, port: u16, cert_of: &str, id: &str) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "--cafile".into(),
        pki.ca().display().to_string(),
        "--cert".into(),
        pki.cert(cert_of).display().to_string(),
        "--key".into(),
        pki.key(cert_of).display().to_string(),
        "-i".into(),
        id.into(),
    ]
}

fn publish(args: &[String], topic: &str, msg: &str, qos: &str) -> Output {
    Command::new("mosquitto_pub")
        .args(args)
        .args(["-t", topic, "-m", msg, "-q", qos])
        .output()
        .expect("mosquitto_pub")
}

/// `mosquitto_sub` that prints `topic payload` lines and exits after `count` messages or 15 s.
fn subscriber(args: &[String], filter: &str, count: usize, extra: &[&str]) -> Child {
    Command::new("mosquitto_sub")
        .args(args)
        .args([
            "-t",
            filter,
            "-q",
            "1",
            "-v",
            "-C",
            &count.to_string(),
            "-W",
            "15",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub")
}

/// Waits (bounded) for `child` to exit, calling `poke` every 300 ms meanwhile (e.g. to publish
/// again until a late subscriber has its subscription in place).
fn finish(mut child: Child, mut poke: impl FnMut()) -> Output {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        poke();
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = child.kill();
    child.wait_with_output().expect("subscriber output")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn certs_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), &["lamp-1"]);
    for p in [
        pki.ca(),
        pki.cert("lamp-1"),
        pki.key("lamp-1"),
        pki.local().join("ca.key"),
        pki.local().join("server.key"),
    ] {
        let mode = std::fs::metadata(&p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    let out = Command::new(evergreen_bin())
        .args(["certs", "device", "bad/name", "--root"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("thing name"));
}

#[test]
fn device_to_device_by_subscription_and_refusals() {
    if missing_clients() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), &["sensor-1", "display-1", "ghost-1"]);
    let other = tempfile::tempdir().expect("tempdir");
    let foreign = Pki::new(other.path(), &["sensor-1"]);
    let g = group(
        vec![],
        vec![sub(
            "s1",
            &thing_arn("sensor-1"),
            "sensors/+/temp",
            &thing_arn("display-1"),
        )],
    );
    let (_rt, port) = start(g, &["sensor-1", "display-1"], &pki);
    let sensor = tls_args(&pki, port, "sensor-1", "sensor-1");
    let display = tls_args(&pki, port, "display-1", "display-1");

    // Accepted device, delivery by subscription (QoS 1 end to end, and QoS 0).
    let rx = subscriber(&display, "sensors/#", 2, &[]);
    let mut n = 0;
    let out = finish(rx, || {
        n += 1;
        let qos = if n % 2 == 0 { "0" } else { "1" };
        let p = publish(&sensor, "sensors/kitchen/temp", &format!("21.{n}"), qos);
        assert!(
            p.status.success(),
            "accepted device publishes: {}",
            text(&p)
        );
    });
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(got.lines().count(), 2, "{}", text(&out));
    assert!(
        got.lines()
            .all(|l| l.starts_with("sensors/kitchen/temp 21.")),
        "{got}"
    );

    // A topic no subscription accepts is dropped: the subscriber sees nothing of it.
    let rx = subscriber(&display, "sensors/#", 1, &[]);
    let out = finish(rx, || {
        let _ = publish(&sensor, "sensors/kitchen/humidity", "dropped", "1");
        let _ = publish(&sensor, "sensors/hall/temp", "kept", "1");
    });
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(got.trim(), "sensors/hall/temp kept", "{}", text(&out));
    // MQTT 5 says why: PUBACK reason 0x87, which mosquitto_pub reports as "Not authorized".
    let mut v5 = sensor.clone();
    v5.extend(["-V".to_owned(), "mqttv5".to_owned()]);
    let out = publish(&v5, "sensors/kitchen/humidity", "dropped", "1");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("not authori"),
        "{}",
        text(&out)
    );

    // Unauthorised subscribe: no subscription delivers `secret/#` to display-1 (0x80, and v5
    // reason 0x87).
    for version in ["mqttv311", "mqttv5"] {
        let out = finish(subscriber(&display, "secret/#", 1, &["-V", version]), || {});
        // mosquitto_sub reports a SUBACK with only failure codes this way (and exits).
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("All subscription requests were denied"),
            "{version}: {}",
            text(&out)
        );
        assert!(out.stdout.is_empty(), "{version}: {}", text(&out));
    }

    // Refused: a certificate from another CA, a thing not in the group, a client id that is not
    // the certificate's thing.
    let wrong_ca = {
        let mut a = tls_args(&foreign, port, "sensor-1", "sensor-1");
        // Trust the real server, present the foreign device certificate.
        a[5] = pki.ca().display().to_string();
        a
    };
    for (what, args) in [
        ("certificate from another CA", wrong_ca),
        (
            "thing not in the group",
            tls_args(&pki, port, "ghost-1", "ghost-1"),
        ),
        (
            "client id not the certificate's thing",
            tls_args(&pki, port, "sensor-1", "display-1"),
        ),
    ] {
        for version in ["mqttv311", "mqttv5"] {
            let out = Command::new("mosquitto_pub")
                .args(&args)
                .args(["-t", "sensors/x/temp", "-m", "x", "-q", "1", "-V", version])
                .output()
                .expect("mosquitto_pub");
            assert!(
                !out.status.success(),
                "{what} ({version}) must be refused: {}",
                text(&out)
            );
        }
    }
}

#[test]
fn device_function_device_and_persistent_session() {
    if missing_clients() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), &["sensor-1", "display-1"]);
    let work = tempfile::tempdir().expect("tempdir");
    let seen = work.path().join("seen.jsonl");
    let feed = work.path().join("feed.jsonl");
    let g = group(
        vec![
            function("rec", &format!("record {}", seen.display())),
            function("cmd", &format!("feed {}", feed.display())),
        ],
        vec![
            sub("s1", &thing_arn("sensor-1"), "sensors/#", &fn_arn("rec")),
            sub(
                "s2",
                &fn_arn("cmd"),
                "display/+/cmd",
                &thing_arn("display-1"),
            ),
        ],
    );
    let (rt, port) = start(g, &["sensor-1", "display-1"], &pki);
    let sensor = tls_args(&pki, port, "sensor-1", "sensor-1");
    let display = tls_args(&pki, port, "display-1", "display-1");
    let say = |payload: &str| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&feed)
            .expect("feed file");
        writeln!(
            f,
            "{}",
            json!({ "topic": "display/1/cmd", "payload": payload })
        )
        .expect("feed");
    };

    // device → function: the sensor's publish reaches the recording function, from its thing.
    let p = publish(&sensor, "sensors/a/temp", "22", "1");
    assert!(p.status.success(), "{}", text(&p));
    let got = wait_for(LIMIT, || records(&seen).into_iter().next());
    let rec = got.expect("the function received the device's message");
    assert_eq!(rec["topic"], "sensors/a/temp", "{rec}");
    assert!(rec.to_string().contains(&thing_arn("sensor-1")), "{rec}");

    // function → device.
    let out = finish(subscriber(&display, "display/#", 1, &[]), || say("on"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("display/1/cmd on"),
        "{}",
        text(&out)
    );

    // Persistent session: subscribe with clean session off, go away, messages arrive meanwhile,
    // they are delivered on reconnect.
    let out = finish(
        subscriber(&display, "display/#", 1, &["-c", "-W", "2"]),
        || {},
    );
    // -W 2 ends it (timeout) or a late "on" ends it; either way it is offline now.
    let _ = out;
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        say(&format!("queued-{i}"));
    }
    // The function publishes them while no device is connected.
    std::thread::sleep(Duration::from_secs(2));
    let out = finish(subscriber(&display, "display/#", 3, &["-c"]), || {});
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for i in 0..3 {
        assert!(
            got.contains(&format!("display/1/cmd queued-{i}")),
            "queued-{i} missing: {}",
            text(&out)
        );
    }
    drop(rt);
}

#[test]
fn plain_listener_is_off_by_default_and_trusts_the_client_id_when_on() {
    if missing_clients() {
        return;
    }
    let mut g = group(
        vec![],
        vec![sub(
            "s1",
            &thing_arn("sensor-1"),
            "sensors/+/temp",
            &thing_arn("display-1"),
        )],
    );
    g["DeviceDefinitionVersion"] = json!({ "Devices": [device("sensor-1"), device("display-1")] });

    // Default configuration (no certificates in this root): no plain listener, and the TLS one
    // stays off without a CA, saying so in the listeners file.
    let rt = Runtime::start(&g);
    let file = rt.dir.path().join("root/run/mqtt-listeners.json");
    let doc = wait_for(LIMIT, || {
        serde_json::from_str::<Value>(&std::fs::read_to_string(&file).ok()?).ok()
    })
    .expect("listeners file");
    assert_eq!(doc, json!({ "tls": null, "plain": null }));
    drop(rt);

    let rt = Runtime::start_with(
        &g,
        &json!({ "listeners": { "mqttPlain": { "enabled": true, "port": 0 } } }),
    );
    let file = rt.dir.path().join("root/run/mqtt-listeners.json");
    let addr = wait_for(LIMIT, || {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
        doc["plain"].as_str().map(str::to_owned)
    })
    .expect("plain listener address");
    assert!(addr.starts_with("127.0.0.1:"), "loopback only: {addr}");
    let port = addr.rsplit(':').next().expect("port").to_owned();
    let args = |id: &str| -> Vec<String> {
        ["-h", "127.0.0.1", "-p", &port, "-i", id]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    };
    let out = finish(subscriber(&args("display-1"), "sensors/#", 1, &[]), || {
        let p = publish(&args("sensor-1"), "sensors/a/temp", "5", "1");
        assert!(p.status.success(), "{}", text(&p));
    });
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sensors/a/temp 5",
        "{}",
        text(&out)
    );
    let out = publish(&args("ghost-1"), "sensors/a/temp", "5", "1");
    assert!(
        !out.status.success(),
        "unknown client id refused: {}",
        text(&out)
    );
}

/// A TLS client (Python's `ssl`, OpenSSL underneath) that presents `cert` (none if `None`),
/// completes its side of the handshake, sends an MQTT 3.1.1 CONNECT and reports what it read:
/// `OK <bytes>`, or `ALERT <OpenSSL's reason>` when the server answered with a TLS alert.
fn tls_probe(pki: &Pki, port: u16, cert: Option<(&Path, &Path)>) -> String {
    let script = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
if len(sys.argv) > 3:
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
try:
    # TLS 1.3: the client is done before the server has judged its certificate, so the
    # refusal arrives on the first read.
    s.sendall(bytes([0x10, 0x15, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 9]) + b"sensor-1x")
    print("OK", s.recv(16).hex())
except ssl.SSLError as e:
    print("ALERT", e.reason)
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, &port.to_string()]).arg(pki.ca());
    if let Some((c, k)) = cert {
        cmd.arg(c).arg(k);
    }
    let out = cmd.output().expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// RFC 8446 §6.2 / §4.4.2.4: a server that refuses the client's certificate aborts the
/// handshake with the alert that says why (`unknown_ca` for an unknown issuer, `decrypt_error`
/// for a signature that does not verify, `certificate_required` for none), and the runtime's
/// log names the reason (issue 19, defect 10: the connection was closed without an alert and
/// the log said only "disconnected"). The accepted device's traffic crosses the same layer.
#[test]
fn tls_refusals_send_their_alert_and_log_the_reason() {
    if missing_clients() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), &["sensor-1", "display-1"]);
    let other = tempfile::tempdir().expect("tempdir");
    let foreign = Pki::new(other.path(), &["sensor-1"]);
    let g = group(
        vec![],
        vec![sub(
            "s1",
            &thing_arn("sensor-1"),
            "big/t",
            &thing_arn("display-1"),
        )],
    );
    let (rt, port) = start(g, &["sensor-1", "display-1"], &pki);

    let got = tls_probe(
        &pki,
        port,
        Some((&pki.cert("sensor-1"), &pki.key("sensor-1"))),
    );
    assert!(
        got.starts_with("OK 2002"),
        "the group's device gets its CONNACK: {got}"
    );
    // The accepted connection carries a message of several TLS records (16 KiB each) both
    // ways, whole (under the 64 KiB a pipe holds: the subscriber's output is read at its end).
    let sensor = tls_args(&pki, port, "sensor-1", "sensor-1");
    let display = tls_args(&pki, port, "display-1", "display-1");
    let big: String = (0..50_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let rx = subscriber(&display, "big/t", 1, &[]);
    let out = finish(rx, || {
        let p = publish(&sensor, "big/t", &big, "1");
        assert!(p.status.success(), "{}", text(&p));
    });
    let got = String::from_utf8_lossy(&out.stdout);
    let want = format!("big/t {big}");
    let first_difference = got.bytes().zip(want.bytes()).position(|(a, b)| a != b);
    assert!(
        got.trim_end() == want,
        "{} bytes received, {} sent; first difference at {first_difference:?}; {}",
        got.len(),
        want.len(),
        String::from_utf8_lossy(&out.stderr)
    );

    // A certificate issued by another group's CA: the same issuer name as the group's CA, so
    // the chain is built and its signature fails (decrypt_error, RFC 8446 §6.2).
    let got = tls_probe(
        &pki,
        port,
        Some((&foreign.cert("sensor-1"), &foreign.key("sensor-1"))),
    );
    assert_eq!(
        got, "ALERT TLSV1_ALERT_DECRYPT_ERROR",
        "another group CA's certificate"
    );
    // A self-signed device certificate (not a CA): an issuer the server does not know
    // (unknown_ca).
    let (cert, key) = (other.path().join("self.pem"), other.path().join("self.key"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=sensor-1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", text(&made));
    let got = tls_probe(&pki, port, Some((&cert, &key)));
    assert_eq!(
        got, "ALERT TLSV1_ALERT_UNKNOWN_CA",
        "a self-signed certificate"
    );
    // No certificate at all (certificate_required, RFC 8446 §4.4.2.4).
    let got = tls_probe(&pki, port, None);
    assert_eq!(
        got, "ALERT TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "no certificate"
    );

    let log = rt.log_path("system/runtime.log");
    let seen = wait_for(LIMIT, || {
        let text = std::fs::read_to_string(&log).ok()?;
        let refused: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("TLS handshake with 127.0.0.1:") && l.contains("refused"))
            .collect();
        (refused.len() >= 3).then(|| refused.join("\n"))
    })
    .expect("the three refusals are logged");
    for reason in ["BadSignature", "UnknownIssuer", "peer sent no certificates"] {
        assert!(seen.contains(reason), "{reason}: {seen}");
    }
    assert!(seen.contains("TLS alert sent"), "{seen}");
}

/// The runtime's CPU time (user + system) so far, in seconds, from /proc.
fn cpu_secs(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// Not a check: device → device over mutual TLS, `mosquitto_pub -l` at QoS 1 (20 in flight)
/// to `mosquitto_sub`, and the runtime's CPU per message, to compare TLS layers between
/// builds (`cargo test -p evergreen-tests --test mqtt_server tls_throughput -- --ignored
/// --nocapture`, then again with another build's `evergreen` next to the test).
#[test]
#[ignore = "a measurement, run by hand"]
fn tls_throughput() {
    if missing_clients() {
        return;
    }
    const N: usize = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), &["sensor-1", "display-1"]);
    let g = group(
        vec![],
        vec![sub(
            "s1",
            &thing_arn("sensor-1"),
            "t",
            &thing_arn("display-1"),
        )],
    );
    let (rt, port) = start(g, &["sensor-1", "display-1"], &pki);
    let sensor = tls_args(&pki, port, "sensor-1", "sensor-1");
    let display = tls_args(&pki, port, "display-1", "display-1");
    let lines: String = (0..N).map(|i| format!("{i:064}\n")).collect();
    let rx = subscriber(&display, "t", N, &["-W", "120"]);
    std::thread::sleep(Duration::from_secs(1));
    let (start, cpu0) = (Instant::now(), cpu_secs(rt.pid()));
    let mut publisher = Command::new("mosquitto_pub")
        .args(&sensor)
        .args(["-t", "t", "-q", "1", "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    if let Some(mut stdin) = publisher.stdin.take() {
        stdin.write_all(lines.as_bytes()).expect("write lines");
    }
    let out = rx.wait_with_output().expect("subscriber");
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs(rt.pid()) - cpu0;
    let _ = publisher.wait();
    let got = String::from_utf8_lossy(&out.stdout).lines().count();
    println!(
        "TLS QoS 1, {got}/{N} received in {secs:.2} s: {:.0} msg/s, runtime CPU {:.1} µs/msg",
        got as f64 / secs,
        cpu * 1e6 / got.max(1) as f64
    );
    assert_eq!(got, N, "{}", text(&out));
}
