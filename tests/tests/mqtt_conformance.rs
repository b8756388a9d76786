//! MQTT 3.1.1 and 5 conformance of the local server, each test named after the normative
//! statement it checks, with paho-mqtt 2.x (an unmodified off-the-shelf client, driven by
//! `tests/peers/mqtt_probe.py`) as the devices on the plain listener. The probe prints what the
//! client saw; the assertions are here.
//!
//! Needs python3 with paho-mqtt (installed by `.ci/run`); without it each test says so and
//! skips.

use std::process::Command;
use std::time::Duration;

use evergreen_tests::{group, sub, Runtime, ACCOUNT, REGION};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/{name}")
}

fn paho_missing() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import paho.mqtt.client"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: python3 with paho-mqtt is not installed (pip install paho-mqtt==2.1.0)"
        );
    }
    !ok
}

/// A runtime with the plain listener on and three devices: `dev-b` may send `dev-a` the
/// topics `t`, `t/...` and `plain/...`, `dev-c` the topics `u/...`, both `s/...`, `dev-a` may send itself
/// `t/...` (for No Local), and the shadow service answers `dev-a`'s shadow requests to `dev-a`
/// and `dev-c`.
fn start() -> (Runtime, u16) {
    let (a, b, c) = (thing_arn("dev-a"), thing_arn("dev-b"), thing_arn("dev-c"));
    let shadow = "$aws/things/dev-a/shadow";
    let mut g = group(
        vec![],
        vec![
            sub("s1", &b, "t", &a),
            sub("s2", &b, "t/#", &a),
            sub("s3", &a, "t/#", &a),
            sub("s4", &b, "plain/#", &a),
            sub("s5", &b, &format!("{shadow}/get"), "GGShadowService"),
            sub("s6", "GGShadowService", &format!("{shadow}/#"), &a),
            sub("s7", "GGShadowService", &format!("{shadow}/#"), &c),
            sub("s8", &b, "u/#", &c),
            sub("s9", &b, "s/#", &a),
            sub("s10", &b, "s/#", &c),
        ],
    );
    let device = |name: &str| {
        json!({
            "Id": name,
            "ThingArn": thing_arn(name),
            "CertificateArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:cert/abc123"),
        })
    };
    g["DeviceDefinitionVersion"] =
        json!({ "Devices": [device("dev-a"), device("dev-b"), device("dev-c")] });
    let rt = Runtime::start_with(
        &g,
        &json!({ "listeners": { "mqttPlain": { "enabled": true, "port": 0 } } }),
    );
    let port = rt
        .listener_port("plain", LIMIT)
        .expect("the runtime names its plain listener's port");
    (rt, port)
}

/// Runs `probe` against a fresh runtime with MQTT `version` ("311" or "5"); `None` when paho
/// is missing (the test skips).
fn probe(name: &str, version: &str) -> Option<Value> {
    if paho_missing() {
        return None;
    }
    let (rt, port) = start();
    Some(run_probe(&rt, port, name, version))
}

/// Runs `probe` against the runtime `rt` listening on `port`.
fn run_probe(rt: &Runtime, port: u16, name: &str, version: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/mqtt_probe.py");
    let out = Command::new("timeout")
        .args(["120", "python3", script, name, &port.to_string(), version])
        .output()
        .expect("run the paho probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe {name} (MQTT {version}) failed: {}\n{stdout}\nruntime log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(rt.log_path("system/runtime.log")).unwrap_or_default()
    );
    let doc: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("probe {name} printed no JSON ({e}): {stdout}"));
    eprintln!("probe {name} (MQTT {version}): {doc}");
    // The runtime's warnings, for whoever reads a failing test's output.
    let log = std::fs::read_to_string(rt.log_path("system/runtime.log")).unwrap_or_default();
    for line in log
        .lines()
        .filter(|l| l.contains("[WARN]") || l.contains("[ERROR]"))
    {
        eprintln!("  runtime: {line}");
    }
    doc
}

fn payloads(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|l| {
            l.iter()
                .map(|m| m["payload"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// MQTT-3.3.2-x (v5): user properties (in order, a name repeated), response topic, correlation
/// data, content type and payload format indicator reach the subscriber unaltered; the
/// Message Expiry Interval arrives reduced by the time waited (MQTT-3.3.2-6), never above it.
#[test]
fn mqtt_3_3_2_publish_properties_are_forwarded_v5() {
    let Some(doc) = probe("properties", "5") else {
        return;
    };
    let got = &doc["received"][0];
    assert_eq!(
        got["user"],
        json!([["a", "1"], ["b", "2"], ["a", "3"]]),
        "{doc}"
    );
    assert_eq!(got["response_topic"], "reply/dev-b", "{doc}");
    assert_eq!(got["correlation_data"], hex(b"\x01\x02req-7"), "{doc}");
    assert_eq!(got["content_type"], "text/plain", "{doc}");
    assert_eq!(got["payload_format"], 1, "{doc}");
    let expiry = got["expiry"].as_u64().expect("a Message Expiry Interval");
    assert!((55..=60).contains(&expiry), "{doc}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// MQTT-3.1.2-4 and MQTT-3.1.2-23 (v5): Clean Start 1 with a Session Expiry Interval above 0
/// starts a new session (CONNACK session present 0) that outlives the connection: messages
/// queue while the device is away and the next connection (Clean Start 0) resumes it.
#[test]
fn mqtt_3_1_2_23_clean_start_session_with_expiry_is_kept_v5() {
    let Some(doc) = probe("clean_start_expiry", "5") else {
        return;
    };
    assert_eq!(doc["first_connack"], json!([false, 0]), "{doc}");
    assert_eq!(doc["second_connack"], json!([true, 0]), "{doc}");
    assert_eq!(
        payloads(&doc["received"]),
        ["offline-0", "offline-1", "offline-2"],
        "{doc}"
    );
}

/// MQTT-3.1.4-3: a CONNECT with the client id of a connected client makes the server
/// disconnect the existing one (v5 with DISCONNECT reason 0x8E Session taken over); the new
/// connection works.
fn takeover(version: &str) {
    let Some(doc) = probe("takeover", version) else {
        return;
    };
    assert_eq!(doc["first_disconnected"], true, "{doc}");
    if version == "5" {
        assert_eq!(doc["reason"], 0x8E, "{doc}");
    }
    assert_eq!(
        payloads(&doc["second_received"]),
        ["after takeover"],
        "{doc}"
    );
}

#[test]
fn mqtt_3_1_4_3_takeover_disconnects_the_older_connection_v311() {
    takeover("311");
}

#[test]
fn mqtt_3_1_4_3_takeover_disconnects_the_older_connection_v5() {
    takeover("5");
}

/// MQTT-4.7.2-1: a filter starting with a wildcard does not match a `$` topic: the device on
/// `#` does not get the shadow's `$aws/...` answer routed to it, a device on
/// `$aws/things/dev-a/shadow/#` does, and `#` still gets a plain topic.
fn dollar(version: &str) {
    let Some(doc) = probe("dollar", version) else {
        return;
    };
    let wild: Vec<String> = doc["wildcard"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["topic"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(wild, ["plain/x"], "{doc}");
    let exact = doc["exact"][0]["topic"].as_str().unwrap_or_default();
    assert!(
        exact.starts_with("$aws/things/dev-a/shadow/get/"),
        "the shadow's answer reaches the filter naming $aws: {doc}"
    );
}

#[test]
fn mqtt_4_7_2_1_wildcard_filters_do_not_match_dollar_topics_v311() {
    dollar("311");
}

#[test]
fn mqtt_4_7_2_1_wildcard_filters_do_not_match_dollar_topics_v5() {
    dollar("5");
}

/// MQTT-4.7.1-2: a device's filter `t/#` matches `t` (its parent level) as well as `t/x`.
/// The group's subjects keep Greengrass's rule; this is the device's own filter.
fn parent_level(version: &str) {
    let Some(doc) = probe("parent_level", version) else {
        return;
    };
    assert_eq!(doc["suback"], json!([1]), "{doc}");
    assert_eq!(payloads(&doc["received"]), ["parent", "child"], "{doc}");
}

#[test]
fn mqtt_4_7_1_2_multi_level_wildcard_matches_parent_v311() {
    parent_level("311");
}

#[test]
fn mqtt_4_7_1_2_multi_level_wildcard_matches_parent_v5() {
    parent_level("5");
}

/// MQTT 3.1.1 §3.8.4 and 5 §3.8.4 (MQTT-3.8.4-8 in 5): a message is delivered at the lower of
/// its published QoS and the subscription's granted QoS: QoS 0 to a QoS 1 subscriber stays 0.
fn qos_min(version: &str) {
    let Some(doc) = probe("qos_min", version) else {
        return;
    };
    let got: Vec<(String, u64)> = doc["received"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["payload"].as_str().unwrap_or_default().to_owned(),
                m["qos"].as_u64().unwrap_or(9),
            )
        })
        .collect();
    assert_eq!(got, [("zero".into(), 0), ("one".into(), 1)], "{doc}");
}

#[test]
fn mqtt_3_8_4_delivered_qos_is_the_minimum_v311() {
    qos_min("311");
}

#[test]
fn mqtt_3_8_4_delivered_qos_is_the_minimum_v5() {
    qos_min("5");
}

/// MQTT-3.8.3-3 (v5): with No Local set, the device's own publishes are not sent back to it;
/// subscribed again without it, they are.
#[test]
fn mqtt_3_8_3_3_no_local_v5() {
    let Some(doc) = probe("no_local", "5") else {
        return;
    };
    assert_eq!(payloads(&doc["with_no_local"]), ["other"], "{doc}");
    assert_eq!(payloads(&doc["without"]), ["own2"], "{doc}");
}

/// MQTT 5 §4.8.2 shared subscriptions (MQTT-4.8.2-x; accepted from MQTT 3.1.1 clients as
/// mosquitto does): `dev-a` and `dev-c` on `$share/g/s/#` get each of ten messages exactly
/// once between them, five each (round robin), and a malformed `$share/g` is refused
/// (v5 0x8F Topic Filter invalid, v3 0x80).
fn shared(version: &str) {
    let Some(doc) = probe("shared", version) else {
        return;
    };
    assert_eq!(doc["granted"], json!([[1], [1]]), "{doc}");
    let refused = if version == "5" { 0x8F } else { 0x80 };
    assert_eq!(doc["malformed"], json!([refused]), "{doc}");
    let mut all: Vec<String> = payloads_of(&doc["a"]);
    let c = payloads_of(&doc["c"]);
    assert_eq!((all.len(), c.len()), (5, 5), "round robin: {doc}");
    all.extend(c);
    all.sort_by_key(|p| p.parse::<u32>().unwrap_or(u32::MAX));
    let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(all, want, "each message once: {doc}");
}

fn payloads_of(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn mqtt_4_8_2_shared_subscription_delivers_each_message_once_v311() {
    shared("311");
}

#[test]
fn mqtt_4_8_2_shared_subscription_delivers_each_message_once_v5() {
    shared("5");
}

/// MQTT-3.3.1-1: a QoS 1 message the device did not acknowledge before its connection ended
/// is sent again on its persistent session's next connection, with DUP 1.
fn dup(version: &str) {
    let Some(doc) = probe("dup", version) else {
        return;
    };
    assert_eq!(doc["first"][0]["dup"], false, "{doc}");
    assert_eq!(doc["again"][0]["payload"], "first", "{doc}");
    assert_eq!(doc["again"][0]["dup"], true, "{doc}");
}

#[test]
fn mqtt_3_3_1_1_redelivery_sets_dup_v311() {
    dup("311");
}

#[test]
fn mqtt_3_3_1_1_redelivery_sets_dup_v5() {
    dup("5");
}

/// MQTT-3.3.4-9 (v5): the server never has more unacknowledged QoS 1 PUBLISHes out to a
/// client than the Receive Maximum its CONNECT set; acknowledging lets the rest through.
#[test]
fn mqtt_3_3_4_9_receive_maximum_is_honoured_v5() {
    let Some(doc) = probe("receive_max", "5") else {
        return;
    };
    let windows: Vec<u64> = doc["windows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(windows.first(), Some(&2), "{doc}");
    assert!(windows.iter().all(|&w| w <= 2), "{doc}");
    assert_eq!(doc["total"], 10, "{doc}");
}

/// MQTT-3.1.2-2: an unsupported protocol level (MQTT 3.1's `MQIsdp` 3, `MQTT` 3 or 6) gets
/// CONNACK 0x01 and the connection is closed.
#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level_gets_connack_0x01() {
    let Some(doc) = probe("unsupported_level", "311") else {
        return;
    };
    for case in ["MQIsdp/3", "MQTT/3", "MQTT/6"] {
        assert_eq!(doc[case]["connack"], json!([0x20, 0, 1]), "{case}: {doc}");
        assert_eq!(doc[case]["closed_after"], true, "{case}: {doc}");
    }
}

/// MQTT-3.2.2-21 (v5): a connection asking for Keep Alive 0 is told the Server Keep Alive it
/// must use (the runtime bounds idle connections by `maxKeepAliveSecs`), instead of being
/// closed without warning.
#[test]
fn mqtt_3_2_2_21_keep_alive_0_gets_a_server_keep_alive_v5() {
    let Some(doc) = probe("keep_alive_0", "5") else {
        return;
    };
    assert!(
        doc["server_keep_alive"].as_u64().is_some_and(|s| s > 0),
        "{doc}"
    );
}

/// MQTT-3.3.2-2: a PUBLISH whose topic holds a wildcard is a protocol violation: the
/// connection is closed (v5 after a DISCONNECT with reason 0x82 Protocol Error), nothing is
/// routed. (docs/mqtt-server.md's feature table says the same.)
fn wildcard_publish(version: &str) {
    let Some(doc) = probe("wildcard_publish", version) else {
        return;
    };
    assert_eq!(doc["closed"], true, "{doc}");
    if version == "5" {
        assert_eq!(doc["reply"][0], 0xE0, "a DISCONNECT: {doc}");
        assert_eq!(doc["reply"][1], 0x82, "Protocol Error: {doc}");
    } else {
        assert_eq!(doc["reply"], Value::Null, "no answer but the close: {doc}");
    }
}

#[test]
fn mqtt_3_3_2_2_wildcard_in_a_publish_topic_closes_the_connection_v311() {
    wildcard_publish("311");
}

#[test]
fn mqtt_3_3_2_2_wildcard_in_a_publish_topic_closes_the_connection_v5() {
    wildcard_publish("5");
}

/// MQTT-3.3.2-5 (v5): a message whose Message Expiry Interval passes while it is queued for an
/// offline session is not delivered; one still valid arrives with what is left of its interval
/// (MQTT-3.3.2-6).
#[test]
fn mqtt_3_3_2_5_expired_messages_are_not_delivered_v5() {
    let Some(doc) = probe("expiry", "5") else {
        return;
    };
    assert_eq!(payloads(&doc["received"]), ["long"], "{doc}");
    let left = doc["received"][0]["expiry"].as_u64().unwrap_or(0);
    assert!((50..=58).contains(&left), "{doc}");
}

fn flags(list: &Value) -> Vec<(String, bool)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["payload"].as_str().unwrap_or_default().to_owned(),
                m["retain"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// MQTT-3.3.1-5 and -6: the last retained message of a topic goes to a new subscription with
/// RETAIN 1; MQTT-3.3.1-9 (3.1.1) / -12 (5): a live delivery has RETAIN 0; MQTT-3.3.1-10
/// (3.1.1: a zero-byte retained message clears the topic). The group decides at delivery
/// time: `dev-c` on `#` gets the retained `u/x` the group routes to it, never `t/r`.
fn retained(version: &str) {
    let Some(doc) = probe("retained", version) else {
        return;
    };
    assert_eq!(
        flags(&doc["on_subscribe"]),
        [("keep".into(), true)],
        "{doc}"
    );
    assert_eq!(flags(&doc["live"]), [("live".into(), false)], "{doc}");
    assert_eq!(flags(&doc["for_c"]), [("for c".into(), true)], "{doc}");
    assert_eq!(flags(&doc["after_clear"]), [], "{doc}");
}

#[test]
fn mqtt_3_3_1_5_retained_message_to_new_subscribers_under_the_group_v311() {
    retained("311");
}

#[test]
fn mqtt_3_3_1_5_retained_message_to_new_subscribers_under_the_group_v5() {
    retained("5");
}

/// MQTT 5 Retain Handling (MQTT-3.3.1-9: 0 sends, -10: 1 only for a new subscription, -11: 2
/// never) and Retain As Published (MQTT-3.3.1-13: the live delivery keeps RETAIN 1).
#[test]
fn mqtt_3_3_1_9_retain_handling_and_retain_as_published_v5() {
    let Some(doc) = probe("retain_handling", "5") else {
        return;
    };
    assert_eq!(flags(&doc["never"]), [], "{doc}");
    assert_eq!(flags(&doc["existing"]), [], "{doc}");
    assert_eq!(flags(&doc["new"]), [("kept".into(), true)], "{doc}");
    assert_eq!(flags(&doc["live_rap"]), [("live".into(), true)], "{doc}");
}

/// Retained messages are durable: after `kill -9` and a restart on the same root a new
/// subscription still gets the retained message (docs/mqtt-server.md: committed in the session store's
/// next batch, milliseconds after the PUBACK).
/// `kill -9` of the runtime (after giving the session store's writer time for its commit: it
/// commits off the publish path, milliseconds after the PUBACK) and a restart on the same root
/// and group; the plain listener's new port.
fn kill_and_restart(rt: &mut Runtime) -> u16 {
    std::thread::sleep(Duration::from_millis(500));
    assert!(rt
        .stop_with(nix::sys::signal::Signal::SIGKILL, LIMIT)
        .is_some());
    let _ = std::fs::remove_file(rt.listeners_file());
    rt.child = Command::new(evergreen_tests::evergreen_bin())
        .arg("run")
        .arg("--config")
        .arg(rt.path("config.json"))
        .arg("--group")
        .arg(rt.path("group.json"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("restart evergreen");
    rt.listener_port("plain", LIMIT)
        .expect("the restarted runtime names its port")
}

fn retained_survives_kill_9(version: &str) {
    if paho_missing() {
        return;
    }
    let (mut rt, port) = start();
    run_probe(&rt, port, "retain_set", version);
    let port = kill_and_restart(&mut rt);
    let doc = run_probe(&rt, port, "retain_get", version);
    assert_eq!(flags(&doc["received"]), [("durable".into(), true)], "{doc}");
}

#[test]
fn retained_message_survives_kill_9_v311() {
    retained_survives_kill_9("311");
}

#[test]
fn retained_message_survives_kill_9_v5() {
    retained_survives_kill_9("5");
}

/// MQTT-3.1.2-8 and -10: a will is published when the connection ends without a DISCONNECT
/// and withdrawn by one (v5: except with reason 0x04 Disconnect with Will Message). Evergreen
/// authorizes it as a publish from the device when it fires: a will to `x/nope`, which the
/// group does not route from `dev-b`, reaches nobody.
fn will(version: &str) {
    let Some(doc) = probe("will", version) else {
        return;
    };
    assert_eq!(payloads(&doc["abrupt"]), ["gone-abrupt"], "{doc}");
    assert_eq!(payloads(&doc["graceful"]), Vec::<String>::new(), "{doc}");
    assert_eq!(payloads(&doc["not_routed"]), Vec::<String>::new(), "{doc}");
    if version == "5" {
        assert_eq!(
            payloads(&doc["disconnect_with_will"]),
            ["gone-0x04"],
            "{doc}"
        );
    }
}

#[test]
fn mqtt_3_1_2_8_will_published_unless_disconnected_v311() {
    will("311");
}

#[test]
fn mqtt_3_1_2_8_will_published_unless_disconnected_v5() {
    will("5");
}

/// MQTT-3.1.3-9 (v5 Will Delay Interval): a new connection of the session within the delay
/// cancels the will; without one it is published once the delay has passed.
#[test]
fn mqtt_3_1_3_9_will_delay_interval_v5() {
    let Some(doc) = probe("will_delay", "5") else {
        return;
    };
    assert_eq!(payloads(&doc["cancelled"]), Vec::<String>::new(), "{doc}");
    assert_eq!(payloads(&doc["delayed"]), ["delayed"], "{doc}");
    assert!(doc["waited"].as_f64().is_some_and(|w| w >= 0.9), "{doc}");
}

fn qos_of(list: &Value) -> Vec<(String, u64)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["payload"].as_str().unwrap_or_default().to_owned(),
                m["qos"].as_u64().unwrap_or(9),
            )
        })
        .collect()
}

/// QoS 2 (MQTT 3.1.1 and 5 §4.3.3): a filter is granted QoS 2 (MQTT-3.9.3 SUBACK 0x02), a
/// QoS 2 publish is received with PUBREC/PUBREL/PUBCOMP and delivered at QoS 2 with the same
/// flow, a QoS 1 publish goes at QoS 1.
fn qos2(version: &str) {
    let Some(doc) = probe("qos2", version) else {
        return;
    };
    assert_eq!(doc["granted"], json!([2]), "{doc}");
    // Two topics: no order between them is promised, and paho hands a QoS 2 message to the
    // application only after its PUBREL, so the QoS 1 one may come first.
    let mut got = qos_of(&doc["received"]);
    got.sort();
    assert_eq!(got, [("one".into(), 1), ("two".into(), 2)], "{doc}");
}

#[test]
fn mqtt_4_3_3_qos2_both_ways_v311() {
    qos2("311");
}

#[test]
fn mqtt_4_3_3_qos2_both_ways_v5() {
    qos2("5");
}

/// MQTT-4.3.3-9/-10 (5; 4.3.3 in 3.1.1): a QoS 2 PUBLISH resent after a reconnect with the
/// same packet id, before its PUBREL, gets PUBREC again but is not delivered a second time;
/// the PUBREL gets PUBCOMP.
fn qos2_resent(version: &str) {
    let Some(doc) = probe("qos2_resent", version) else {
        return;
    };
    assert_eq!(doc["pubrec"], json!([0x50, 0x50]), "{doc}");
    assert_eq!(doc["pubcomp"], 0x70, "{doc}");
    assert_eq!(payloads(&doc["received"]), ["once"], "{doc}");
}

#[test]
fn mqtt_4_3_3_qos2_resent_publish_is_delivered_once_v311() {
    qos2_resent("311");
}

#[test]
fn mqtt_4_3_3_qos2_resent_publish_is_delivered_once_v5() {
    qos2_resent("5");
}

/// MQTT-3.3.4-3 (v5): a message that matches several subscriptions of a client carries their
/// Subscription Identifiers (here in one PUBLISH); MQTT-3.3.4-4: only those it matched.
#[test]
fn mqtt_3_3_4_3_subscription_identifiers_v5() {
    let Some(doc) = probe("sub_ids", "5") else {
        return;
    };
    assert_eq!(
        doc["received"],
        json!([{"payload": "both", "ids": [7, 9]}, {"payload": "one", "ids": [7]}]),
        "{doc}"
    );
}

/// MQTT-3.3.2-12 (v5 Topic Alias from the client): a PUBLISH with an empty topic and an alias
/// set earlier on the connection is routed to the aliased topic.
#[test]
fn mqtt_3_3_2_12_topic_alias_from_the_client_v5() {
    let Some(doc) = probe("topic_alias", "5") else {
        return;
    };
    let got: Vec<(String, String)> = doc["received"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["topic"].as_str().unwrap_or_default().to_owned(),
                m["payload"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("t/aliased".into(), "named".into()),
            ("t/aliased".into(), "by alias".into())
        ],
        "{doc}"
    );
}

/// MQTT-3.3.2-x across a restart (v5): a message queued for an offline persistent session keeps
/// its properties through `kill -9` of the runtime and arrives with them.
#[test]
fn mqtt_3_3_2_properties_of_queued_messages_survive_kill_9_v5() {
    if paho_missing() {
        return;
    }
    let (mut rt, port) = start();
    run_probe(&rt, port, "props_offline_set", "5");
    let port = kill_and_restart(&mut rt);
    let doc = run_probe(&rt, port, "props_offline_get", "5");
    assert_eq!(doc["received"][0]["payload"], "queued", "{doc}");
    assert_eq!(doc["received"][0]["user"], json!([["k", "v"]]), "{doc}");
    assert_eq!(doc["received"][0]["response_topic"], "reply/x", "{doc}");
}

/// MQTT 5 §3.14.2.2.2 (DISCONNECT Session Expiry Interval): it replaces the CONNECT's from the
/// disconnection on; 0 ends the session with the connection (Eclipse Paho's interoperability
/// `test_session_expiry`).
#[test]
fn mqtt_3_14_2_disconnect_session_expiry_replaces_the_connects_v5() {
    let Some(doc) = probe("disconnect_expiry", "5") else {
        return;
    };
    assert_eq!(
        doc["longer"],
        json!([true, 0]),
        "session kept past 1 s: {doc}"
    );
    assert_eq!(payloads(&doc["received"]), ["kept"], "{doc}");
    assert_eq!(doc["ended"], json!([false, 0]), "ended by expiry 0: {doc}");
}
