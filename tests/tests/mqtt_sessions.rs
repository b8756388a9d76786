//! Persistent MQTT sessions survive a restart of the runtime: Debian's `mosquitto_sub -c` as the
//! device with a persistent session and `mosquitto_pub` as the publishing device, against the
//! runtime's plain loopback listener (`evergreen.listeners.mqttPlain`). The session's filters
//! and the QoS 1 messages queued while it is offline must come back after `kill -9` and after a
//! graceful stop, in order, none lost; a clean session or a deployment without the device
//! deletes the stored session.
//!
//! Needs `mosquitto-clients` (installed by `.ci/run`); without it each test says so and skips.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use evergreen_tests::{evergreen_bin, group, sub, wait_for, Runtime};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const TOPIC: &str = "sensors/a/data";

/// The publishing device's PUBACK does not wait for the session store's commit (the router
/// hands the write to the store's writer thread, which commits in batches within
/// milliseconds); before a `kill -9` the test gives it this long.
const SETTLE: Duration = Duration::from_secs(2);

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/{name}")
}

fn missing_clients() -> bool {
    let ok = Command::new("mosquitto_sub").arg("--help").output().is_ok()
        && Command::new("mosquitto_pub").arg("--help").output().is_ok();
    if !ok {
        eprintln!("SKIPPED: mosquitto_pub/mosquitto_sub not installed (Debian mosquitto-clients; .ci/run installs it)");
    }
    !ok
}

fn device(name: &str) -> Value {
    json!({
        "Id": name,
        "ThingArn": thing_arn(name),
        "CertificateArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:cert/abc123"),
    })
}

/// sensor-1 → display-1 on `sensors/+/data`, with both devices (or only the sensor).
fn the_group(with_display: bool) -> Value {
    let mut devices = vec![device("sensor-1")];
    let mut subs = vec![];
    if with_display {
        devices.push(device("display-1"));
        subs.push(sub(
            "s1",
            &thing_arn("sensor-1"),
            "sensors/+/data",
            &thing_arn("display-1"),
        ));
    }
    let mut g = group(vec![], subs);
    g["DeviceDefinitionVersion"] = json!({ "Devices": devices });
    g
}

/// The plain listener's port, once the (re)started runtime has written it.
fn plain_port(rt: &Runtime) -> u16 {
    rt.listener_port("plain", LIMIT)
        .expect("the runtime names its plain listener's port")
}

fn start() -> (Runtime, u16) {
    let rt = Runtime::start_with(
        &the_group(true),
        &json!({ "listeners": { "mqttPlain": { "enabled": true, "port": 0 } } }),
    );
    let port = plain_port(&rt);
    (rt, port)
}

/// Starts the runtime again on the same root and configuration, with `group_file`.
fn restart(rt: &mut Runtime, group_file: &Path) -> u16 {
    // The stopped runtime's file names a port nobody listens on any more.
    let _ = std::fs::remove_file(rt.listeners_file());
    rt.child = Command::new(evergreen_bin())
        .arg("run")
        .arg("--config")
        .arg(rt.path("config.json"))
        .arg("--group")
        .arg(group_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("restart evergreen");
    plain_port(rt)
}

/// `kill -9` of the runtime, then a restart on the same root and group; the port and what the
/// runtime logged from the restart until its MQTT server was up.
fn kill_and_restart(rt: &mut Runtime) -> (u16, String) {
    let before = system_log(rt).len();
    assert!(rt.stop_with(Signal::SIGKILL, LIMIT).is_some());
    let group_file = rt.path("group.json");
    let port = restart(rt, &group_file);
    let ready = wait_for(LIMIT, || {
        system_log(rt)
            .get(before..)?
            .contains("MQTT server (plain TCP")
            .then_some(())
    });
    assert!(ready.is_some(), "{}", system_log(rt));
    let after = system_log(rt).get(before..).unwrap_or_default().to_owned();
    (port, after)
}

fn system_log(rt: &Runtime) -> String {
    std::fs::read_to_string(rt.log_path("system/runtime.log")).unwrap_or_default()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn client_args(port: u16, id: &str, extra: &[&str]) -> Vec<String> {
    ["-h", "127.0.0.1", "-p", &port.to_string(), "-i", id]
        .iter()
        .chain(extra)
        .map(|s| (*s).to_owned())
        .collect()
}

/// `display-1` subscribes to `sensors/#` at QoS 1 with `session` flags and leaves at once.
fn subscribe_and_leave(port: u16, session: &[&str]) {
    let out = Command::new("mosquitto_sub")
        .args(client_args(port, "display-1", session))
        .args(["-t", "sensors/#", "-q", "1", "-E", "-W", "10"])
        .output()
        .expect("mosquitto_sub");
    assert!(out.status.success(), "subscribe: {}", text(&out));
}

/// `sensor-1` publishes `first..first+n` as QoS 1 messages, in order, on one connection.
fn publish_numbered(port: u16, first: usize, n: usize) {
    let mut child = Command::new("mosquitto_pub")
        .args(client_args(port, "sensor-1", &[]))
        .args(["-t", TOPIC, "-q", "1", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for i in first..first + n {
            writeln!(stdin, "{i}").expect("write to mosquitto_pub");
        }
    }
    let out = wait_for(LIMIT, || child.try_wait().ok().flatten());
    if out.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("mosquitto_pub output");
    assert!(out.status.success(), "publish: {}", text(&out));
}

/// `display-1` reconnects with `session` flags and reads up to `count` messages, at most
/// `secs` seconds. Returns the payloads received, in order.
fn reconnect_and_read(port: u16, session: &[&str], count: usize, secs: u32) -> Vec<String> {
    let child = Command::new("mosquitto_sub")
        .args(client_args(port, "display-1", session))
        .args(["-t", "sensors/#", "-q", "1", "-v"])
        .args(["-C", &count.to_string(), "-W", &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    let mut child = child;
    // -W bounds it; this bounds it again should the client hang.
    let limit = Duration::from_secs(u64::from(secs) + 10);
    if wait_for(limit, || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("mosquitto_sub output");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.strip_prefix(&format!("{TOPIC} ")).unwrap_or(l).to_owned())
        .collect()
}

fn numbers(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

fn restored_line(queued: usize) -> String {
    format!(
        "restored the persistent session of {}: 1 filters, {queued} queued messages",
        thing_arn("display-1")
    )
}

/// Persistent session (`-c`, MQTT 3.1.1), 50 messages queued while offline, then the runtime
/// is stopped with `stop` and restarted: the device gets all of them, in order, then the ones
/// published after the restart.
fn survives(stop: Signal, session: &[&str]) {
    let (mut rt, port) = start();
    subscribe_and_leave(port, session);
    publish_numbered(port, 0, 50);
    std::thread::sleep(SETTLE);
    let status = rt.stop_with(stop, LIMIT);
    assert!(status.is_some(), "the runtime did not stop on {stop}");

    let group_file = rt.path("group.json");
    let port = restart(&mut rt, &group_file);
    let restored = wait_for(LIMIT, || {
        system_log(&rt).contains(&restored_line(50)).then_some(())
    });
    assert!(
        restored.is_some(),
        "no restored session in the log:\n{}",
        system_log(&rt)
    );
    // Still offline after the restart: these queue behind the restored ones.
    publish_numbered(port, 50, 10);
    let got = reconnect_and_read(port, session, 60, 15);
    assert_eq!(
        got,
        numbers(0..60),
        "all 60, in order, none lost, no duplicates\n{}",
        system_log(&rt)
    );
}

#[test]
fn queued_messages_survive_kill_9() {
    if missing_clients() {
        return;
    }
    survives(Signal::SIGKILL, &["-c"]);
}

#[test]
fn queued_messages_survive_a_graceful_restart_mqtt5() {
    if missing_clients() {
        return;
    }
    // MQTT 5: clean start 0 with a session expiry makes the session persistent.
    survives(Signal::SIGTERM, &["-c", "-V", "mqttv5", "-x", "3600"]);
}

#[test]
fn a_clean_session_discards_the_stored_one() {
    if missing_clients() {
        return;
    }
    let (mut rt, port) = start();
    subscribe_and_leave(port, &["-c"]);
    publish_numbered(port, 0, 5);
    std::thread::sleep(SETTLE);
    // The same device connects with a clean session: the 5 queued are not delivered.
    let got = reconnect_and_read(port, &[], 1, 3);
    assert!(got.is_empty(), "a clean session got {got:?}");
    // Nor do they come back after a restart: the store no longer has the session.
    let (port, after) = kill_and_restart(&mut rt);
    assert!(
        !after.contains("restored the persistent session"),
        "the clean session's predecessor was restored:\n{after}"
    );
    let got = reconnect_and_read(port, &["-c"], 1, 3);
    assert!(got.is_empty(), "after the restart, -c got {got:?}");
}

#[test]
fn a_device_removed_by_a_deployment_loses_its_stored_session() {
    if missing_clients() {
        return;
    }
    let (mut rt, port) = start();
    subscribe_and_leave(port, &["-c"]);
    publish_numbered(port, 0, 5);
    let without = rt.path("group-without-display.json");
    std::fs::write(&without, the_group(false).to_string()).expect("write group");
    let deployed = Command::new(evergreen_bin())
        .arg("deploy")
        .arg(&without)
        .arg("--config")
        .arg(rt.path("config.json"))
        .stdin(Stdio::null())
        .output()
        .expect("evergreen deploy");
    assert!(deployed.status.success(), "deploy: {}", text(&deployed));
    let deleted = wait_for(LIMIT, || {
        system_log(&rt)
            .contains(&format!(
                "the stored session of {} is deleted",
                thing_arn("display-1")
            ))
            .then_some(())
    });
    assert!(deleted.is_some(), "{}", system_log(&rt));
    std::thread::sleep(SETTLE);

    // Back in the group after a restart: a new device as far as sessions go.
    let (port, after) = kill_and_restart(&mut rt);
    assert!(
        !after.contains("restored the persistent session"),
        "the removed device's session was restored:\n{after}"
    );
    let got = reconnect_and_read(port, &["-c"], 1, 3);
    assert!(
        got.is_empty(),
        "the removed device's messages came back: {got:?}"
    );
}

#[test]
fn restored_sessions_of_things_not_in_the_group_are_dropped() {
    if missing_clients() {
        return;
    }
    let (mut rt, port) = start();
    subscribe_and_leave(port, &["-c"]);
    publish_numbered(port, 0, 3);
    std::thread::sleep(SETTLE);
    assert!(rt.stop_with(Signal::SIGKILL, LIMIT).is_some());
    // Restarted with a group that no longer has the device.
    let without = rt.path("group-without-display.json");
    std::fs::write(&without, the_group(false).to_string()).expect("write group");
    let _ = restart(&mut rt, &without);
    let dropped = wait_for(LIMIT, || {
        let log = system_log(&rt);
        (log.contains(&restored_line(3))
            && log.contains(&format!(
                "the stored session of {} is deleted",
                thing_arn("display-1")
            )))
        .then_some(())
    });
    assert!(dropped.is_some(), "{}", system_log(&rt));
}

#[test]
fn an_mqtt5_session_expires_after_its_interval_offline() {
    if missing_clients() {
        return;
    }
    let (mut rt, port) = start();
    // Expiry 1 s: the device is away longer than that, so its session and queue are gone.
    subscribe_and_leave(port, &["-c", "-V", "mqttv5", "-x", "1"]);
    publish_numbered(port, 0, 3);
    std::thread::sleep(Duration::from_millis(2500));
    let got = reconnect_and_read(port, &["-c", "-V", "mqttv5", "-x", "3600"], 1, 3);
    assert!(got.is_empty(), "an expired session delivered {got:?}");
    assert!(
        system_log(&rt).contains(&format!(
            "the persistent session of {} expired",
            thing_arn("display-1")
        )),
        "{}",
        system_log(&rt)
    );

    // Expiry 2 s, and the runtime is down for longer: deleted when the store is loaded.
    subscribe_and_leave(port, &["-c", "-V", "mqttv5", "-x", "2"]);
    publish_numbered(port, 10, 3);
    std::thread::sleep(SETTLE);
    assert!(rt.stop_with(Signal::SIGKILL, LIMIT).is_some());
    std::thread::sleep(Duration::from_secs(1));
    let group_file = rt.path("group.json");
    let port = restart(&mut rt, &group_file);
    let gone = wait_for(LIMIT, || {
        system_log(&rt)
            .contains(&format!(
                "the stored session of {} expired while the runtime was down",
                thing_arn("display-1")
            ))
            .then_some(())
    });
    assert!(gone.is_some(), "{}", system_log(&rt));
    let got = reconnect_and_read(port, &["-c", "-V", "mqttv5", "-x", "3600"], 1, 3);
    assert!(got.is_empty(), "an expired session delivered {got:?}");
}
