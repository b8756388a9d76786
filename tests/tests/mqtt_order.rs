//! Per-topic order and no silent loss through the local MQTT server, with Debian's unmodified
//! `mosquitto_pub`/`mosquitto_sub` as the devices on the plain listener, MQTT 3.1.1 and 5 each.
//!
//! - MQTT 3.1.1 §4.6 / MQTT 5 MQTT-4.6.0-6: a server forwards the messages of one topic from one
//!   client in the order it received them (an "Ordered Topic").
//! - Issue 19 defect 11: everything a client sent before it disconnected is processed: a device
//!   that sends a QoS 0 burst and disconnects at once (`seq 1 100 | mosquitto_pub -l -q 0`) has
//!   every message delivered.
//!
//! Needs `mosquitto-clients` (installed by `.ci/run`); without them each test says so and skips.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use evergreen_tests::{group, have, sub, Runtime, ACCOUNT, REGION};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/{name}")
}

fn clients_missing() -> bool {
    if have("mosquitto_pub") && have("mosquitto_sub") {
        return false;
    }
    eprintln!("SKIPPED: mosquitto_pub/mosquitto_sub not installed (Debian mosquitto-clients)");
    true
}

/// A runtime whose plain listener is on, routing `order/#` from `sensor-1` to `display-1`.
fn start() -> (Runtime, String) {
    let mut g = group(
        vec![],
        vec![sub(
            "s1",
            &thing_arn("sensor-1"),
            "order/#",
            &thing_arn("display-1"),
        )],
    );
    let device = |name: &str| {
        json!({
            "Id": name,
            "ThingArn": thing_arn(name),
            "CertificateArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:cert/abc123"),
        })
    };
    g["DeviceDefinitionVersion"] = json!({ "Devices": [device("sensor-1"), device("display-1")] });
    let rt = Runtime::start_with(
        &g,
        &json!({ "listeners": { "mqttPlain": { "enabled": true, "port": 0 } } }),
    );
    let port = rt
        .listener_port("plain", LIMIT)
        .expect("the runtime names its plain listener's port");
    (rt, port.to_string())
}

/// `mosquitto_sub` as `display-1` on `order/#` (MQTT `version`), its `topic payload` lines
/// arriving on the returned channel.
fn subscriber(port: &str, version: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-i",
            "display-1",
            "-V",
            version,
        ])
        .args(["-t", "order/#", "-q", "1", "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Runs `mosquitto_pub -l` as `sensor-1` with `lines` on its stdin (one message per line), then
/// it disconnects at once.
fn publish_lines(port: &str, version: &str, topic: &str, qos: &str, lines: &str) {
    let mut child = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-i",
            "sensor-1",
            "-V",
            version,
        ])
        .args(["-t", topic, "-q", qos, "-M", "20", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(lines.as_bytes())
        .expect("write mosquitto_pub's stdin");
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "mosquitto_pub exited {status}");
            return;
        }
        assert!(Instant::now() < deadline, "mosquitto_pub did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Publishes probes until the subscriber hears one, so its subscription is in place.
fn wait_subscribed(port: &str, version: &str, rx: &mpsc::Receiver<String>) {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        publish_lines(port, version, "order/probe", "1", "probe\n");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            if line.starts_with("order/probe") {
                // Drain any further probes already on their way.
                while rx.recv_timeout(Duration::from_millis(200)).is_ok() {}
                return;
            }
        }
    }
    panic!("the subscriber never received a probe");
}

/// The sequence numbers received on `topic`, until `expected` arrived or nothing came for 3 s.
fn collect(rx: &mpsc::Receiver<String>, topic: &str, expected: usize) -> Vec<u64> {
    let mut got = Vec::with_capacity(expected);
    let deadline = Instant::now() + LIMIT;
    while got.len() < expected && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(3)) {
            Ok(line) => {
                if let Some(n) = line
                    .strip_prefix(topic)
                    .and_then(|rest| rest.trim().parse().ok())
                {
                    got.push(n);
                }
            }
            Err(_) => break,
        }
    }
    got
}

/// How many received numbers are lower than one received before them.
fn inversions(got: &[u64]) -> usize {
    let mut highest = 0;
    let mut count = 0;
    for &n in got {
        if n < highest {
            count += 1;
        }
        highest = highest.max(n);
    }
    count
}

fn numbers(from: u64, to: u64) -> String {
    (from..=to).map(|n| format!("{n}\n")).collect()
}

/// One publisher, one topic: the subscriber gets every message in the order sent.
fn order_per_topic(version: &str, qos: &str) {
    if clients_missing() {
        return;
    }
    const N: u64 = 3000;
    let (rt, port) = start();
    let (mut sub, rx) = subscriber(&port, version);
    wait_subscribed(&port, version, &rx);
    publish_lines(&port, version, "order/t", qos, &numbers(1, N));
    let got = collect(&rx, "order/t", N as usize);
    let _ = sub.kill();
    let _ = sub.wait();
    let inv = inversions(&got);
    let mut unique = got.clone();
    unique.sort_unstable();
    unique.dedup();
    let missing: Vec<u64> = (1..=N)
        .filter(|n| unique.binary_search(n).is_err())
        .take(10)
        .collect();
    assert_eq!(
        (inv, unique.len()),
        (0, N as usize),
        "MQTT {version} QoS {qos}: {inv} inversions, {} distinct of {N} received (missing, first ten: {missing:?})",
        unique.len()
    );
    drop(rt);
}

#[test]
fn mqtt_4_6_0_6_order_per_topic_qos1_v311() {
    order_per_topic("mqttv311", "1");
}

#[test]
fn mqtt_4_6_0_6_order_per_topic_qos1_v5() {
    order_per_topic("mqttv5", "1");
}

#[test]
fn mqtt_4_6_0_6_order_per_topic_qos0_v311() {
    order_per_topic("mqttv311", "0");
}

#[test]
fn mqtt_4_6_0_6_order_per_topic_qos0_v5() {
    order_per_topic("mqttv5", "0");
}

/// Twenty devices' worth of "send a burst, disconnect": every QoS 0 message arrives.
fn burst_then_disconnect(version: &str) {
    if clients_missing() {
        return;
    }
    const BURSTS: u64 = 20;
    const EACH: u64 = 100;
    let (rt, port) = start();
    let (mut sub, rx) = subscriber(&port, version);
    wait_subscribed(&port, version, &rx);
    for b in 0..BURSTS {
        publish_lines(
            &port,
            version,
            "order/burst",
            "0",
            &numbers(b * EACH + 1, (b + 1) * EACH),
        );
    }
    let got = collect(&rx, "order/burst", (BURSTS * EACH) as usize);
    let _ = sub.kill();
    let _ = sub.wait();
    assert_eq!(
        got.len(),
        (BURSTS * EACH) as usize,
        "MQTT {version}: {} of {} QoS 0 messages sent before DISCONNECT were delivered",
        got.len(),
        BURSTS * EACH
    );
    assert_eq!(inversions(&got), 0, "MQTT {version}: out of order");
    drop(rt);
}

#[test]
fn qos0_burst_before_disconnect_is_delivered_v311() {
    burst_then_disconnect("mqttv311");
}

#[test]
fn qos0_burst_before_disconnect_is_delivered_v5() {
    burst_then_disconnect("mqttv5");
}
