//! End-to-end: the Prometheus metrics endpoint (issue 23). The real binary serves
//! `GET /metrics` on `evergreen.metricsAddress`; what it answers is read by
//! `prometheus_client`'s own parser (the reference implementation, from PyPI, through
//! `tests/peers/prom_parse.py`), and the numbers must be the runtime's: messages routed
//! between two functions, their states, the MQTT server's counters.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
const MESSAGES: usize = 7;

/// The metric families `text` parses into, or why the parser refused it; `None` when
/// python3 or prometheus_client is missing.
fn parse(text: &str) -> Option<Result<Vec<Value>, String>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/prom_parse.py");
    let probe = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return None;
    }
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to the parser");
    let out = child.wait_with_output().expect("parser output");
    Some(if out.status.success() {
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

/// The value of the sample `name` whose labels include `labels`.
fn value(families: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| f["samples"].as_array().cloned().unwrap_or_default())
        .find(|s| {
            s["name"] == name
                && labels
                    .iter()
                    .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
        })?["value"]
        .as_f64()
}

#[test]
fn metrics_are_served_in_the_prometheus_format_with_the_runtimes_numbers() {
    let Some(port) = free_port() else {
        panic!("no free loopback port");
    };
    let record = tempfile::tempdir().expect("tmp");
    let out = record.path().join("got.jsonl");
    let g = group(
        vec![
            function("pub", &format!("publish m/x {MESSAGES} 0")),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("s", &fn_arn("pub"), "m/x", &fn_arn("rec"))],
    );
    let _rt = Runtime::start_with(
        &g,
        &json!({ "metricsAddress": format!("127.0.0.1:{port}") }),
    );
    assert!(
        wait_for(LIMIT, || (records(&out).len() == MESSAGES).then_some(())).is_some(),
        "the messages were not routed"
    );
    let (code, body) = wait_for(LIMIT, || {
        http_request("GET", port, "/metrics", "text/plain", b"").ok()
    })
    .expect("the metrics endpoint answers");
    let text = String::from_utf8(body).expect("utf-8");
    assert_eq!(code, 200, "{text}");
    let Some(parsed) = parse(&text) else {
        eprintln!(
            "SKIPPED: python3 with prometheus_client is missing (pip install prometheus_client); \
             the exposition was not parsed"
        );
        return;
    };
    let families = parsed.unwrap_or_else(|e| panic!("{e}\n{text}"));
    let n = MESSAGES as f64;
    assert_eq!(
        value(
            &families,
            "evergreen_component_messages_in_total",
            &[("component", "rec")]
        ),
        Some(n),
        "{text}"
    );
    assert_eq!(
        value(
            &families,
            "evergreen_component_messages_out_total",
            &[("component", "pub")]
        ),
        Some(n),
        "{text}"
    );
    for name in ["pub", "rec"] {
        assert_eq!(
            value(
                &families,
                "evergreen_component_state",
                &[
                    ("component", name),
                    ("state", "running"),
                    ("arn", &fn_arn(name))
                ]
            ),
            Some(1.0),
            "{name} running: {text}"
        );
        assert!(
            value(
                &families,
                "evergreen_component_resident_memory_bytes",
                &[("component", name)]
            )
            .is_some_and(|b| b > 0.0),
            "{text}"
        );
        assert!(
            value(
                &families,
                "evergreen_component_cpu_seconds_total",
                &[("component", name)]
            )
            .is_some(),
            "{text}"
        );
        assert_eq!(
            value(
                &families,
                "evergreen_component_workers",
                &[("component", name)]
            ),
            Some(1.0),
            "one worker each: {text}"
        );
    }
    for counter in [
        "evergreen_mqtt_connected",
        "evergreen_mqtt_connections_accepted_total",
        "evergreen_mqtt_connections_refused_not_authorized_total",
        "evergreen_mqtt_drops_not_authorized_total",
        "evergreen_log_lines_dropped_total",
        "evergreen_cloudwatch_log_lines_dropped_total",
        "evergreen_uptime_seconds",
    ] {
        assert!(
            value(&families, counter, &[]).is_some(),
            "{counter}: {text}"
        );
    }
    let types: Vec<(&str, &str)> = families
        .iter()
        .filter_map(|f| Some((f["name"].as_str()?, f["type"].as_str()?)))
        .collect();
    assert!(
        types.contains(&("evergreen_component_messages_in", "counter")),
        "{types:?}"
    );
    assert!(
        types.contains(&("evergreen_component_queue_depth", "gauge")),
        "{types:?}"
    );

    // Only GET /metrics.
    let (code, _) = http_request("GET", port, "/", "text/plain", b"").expect("GET /");
    assert_eq!(code, 404);
    let (code, _) = http_request("POST", port, "/metrics", "text/plain", b"x").expect("POST");
    assert_eq!(code, 405);
}

#[test]
fn metrics_are_off_unless_configured() {
    let g = group(vec![function("idle", "sleeper")], vec![]);
    let rt = Runtime::start(&g);
    let started = wait_for(LIMIT, || {
        std::fs::read_to_string(rt.log_path("system/runtime.log"))
            .ok()?
            .contains("control socket listening")
            .then_some(())
    });
    assert!(started.is_some(), "the runtime did not start");
    let log = std::fs::read_to_string(rt.log_path("system/runtime.log")).expect("log");
    assert!(!log.contains("metrics on http://"), "{log}");
}

/// Issue 23: with `evergreen.metricsUpstream`, the same exposition is published on its topic of
/// the upstream broker (a real mosquitto here) at the interval.
#[test]
fn metrics_are_published_upstream_at_the_interval() {
    let Some(bin) = mosquitto_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port().expect("port");
    let _broker = evergreen_tests::broker::Mosquitto::start(&bin, dir.path(), port);
    let sub_out = dir.path().join("metrics.txt");
    let file = std::fs::File::create(&sub_out).expect("out");
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "gw/metrics",
            "-C",
            "1",
            "-W",
            "30",
        ])
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    let g = group(vec![function("idle", "sleeper")], vec![]);
    let _rt = Runtime::start_config(
        &g,
        &json!({
            "coreThing": { "iotHost": "127.0.0.1", "iotMqttPort": port },
            "mqttMaxConnectionRetryInterval": 1,
            "evergreen": {
                "cloudTls": false,
                "metricsUpstream": { "topic": "gw/metrics", "intervalSecs": 1 }
            }
        }),
        &[],
    );
    let done = wait_for(Duration::from_secs(30), || sub.try_wait().ok().flatten());
    assert!(
        done.is_some_and(|s| s.success()),
        "no metrics on gw/metrics"
    );
    let text = std::fs::read_to_string(&sub_out).expect("payload");
    let Some(parsed) = parse(&text) else {
        eprintln!("SKIPPED: python3 with prometheus_client is missing; the payload was not parsed");
        return;
    };
    let families = parsed.unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        value(&families, "evergreen_cloud_connected", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &families,
            "evergreen_component_state",
            &[("component", "idle"), ("state", "running")]
        ),
        Some(1.0),
        "{text}"
    );
}

/// Issue 23 item 3: the MQTT server's bytes and the cloud spool's depth in bytes and age. A
/// device (`mosquitto_pub`, unmodified, on the plain listener) publishes messages of known
/// payload sizes, routed to a second device (`mosquitto_sub`) and to the cloud, whose broker
/// is down, so they wait in the spool. The payload bytes read and written must be exactly what
/// the devices sent and got, the spool's bytes exactly the topics and payloads it holds, and
/// its oldest message's age must grow while the broker stays away.
#[test]
fn metrics_count_mqtt_payload_bytes_and_the_spools_oldest_message() {
    if !have("mosquitto_pub") || !have("mosquitto_sub") {
        eprintln!("SKIPPED: mosquitto_pub/mosquitto_sub not installed (Debian mosquitto-clients)");
        return;
    }
    if parse("").is_none() {
        eprintln!(
            "SKIPPED: python3 with prometheus_client is missing; the exposition was not parsed"
        );
        return;
    }
    let thing = |name: &str| format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/{name}");
    let device = |name: &str| {
        json!({
            "Id": name,
            "ThingArn": thing(name),
            "CertificateArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:cert/abc123"),
        })
    };
    let mut g = group(
        vec![],
        vec![
            sub(
                "to-display",
                &thing("sensor-1"),
                "bytes/#",
                &thing("display-1"),
            ),
            sub("to-cloud", &thing("sensor-1"), "bytes/#", "cloud"),
        ],
    );
    g["DeviceDefinitionVersion"] = json!({ "Devices": [device("sensor-1"), device("display-1")] });
    let metrics = free_port().expect("a port for the metrics");
    // Nothing listens on the upstream port: the bridge keeps trying, the spool keeps them.
    let upstream = free_port().expect("a port nobody listens on");
    let rt = Runtime::start_config(
        &g,
        &json!({
            "coreThing": { "iotHost": "127.0.0.1", "iotMqttPort": upstream },
            "evergreen": {
                "cloudTls": false,
                "metricsAddress": format!("127.0.0.1:{metrics}"),
                "listeners": { "mqttPlain": { "enabled": true, "port": 0 } }
            }
        }),
        &[],
    );
    let port = rt
        .listener_port("plain", LIMIT)
        .expect("the plain listener's port")
        .to_string();
    let mut display = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-i",
            "display-1",
            "-t",
            "bytes/#",
            "-q",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    let lines = {
        let out = display.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let publish = |payload: &str| {
        let ok = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-i", "sensor-1", "-q", "1"])
            .args(["-t", "bytes/x", "-m", payload])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mosquitto_pub failed");
    };
    // Probes until the display's subscription is in place; each is counted too.
    let mut sent: Vec<String> = Vec::new();
    let mut got: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + LIMIT;
    while got.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the display never subscribed"
        );
        let probe = format!("probe-{}", sent.len());
        publish(&probe);
        sent.push(probe);
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(300)) {
            got.push(line);
        }
    }
    for size in [1usize, 100, 1000, 4000] {
        let payload = "p".repeat(size);
        publish(&payload);
        sent.push(payload);
    }
    // Probes published before the subscription took hold reached nobody; from the first one
    // heard on, everything arrives, in order (one topic), the largest payload last.
    let last = sent.last().cloned().unwrap_or_default();
    while got.last() != Some(&last) {
        match lines.recv_timeout(LIMIT) {
            Ok(line) => got.push(line),
            Err(_) => panic!("the display got {} lines of {} sent", got.len(), sent.len()),
        }
    }
    let sent_bytes: usize = sent.iter().map(String::len).sum();
    let got_bytes: usize = got.iter().map(String::len).sum();
    // The spool holds every message: topic `bytes/x` (7 bytes) and its payload.
    let spooled_bytes = sent_bytes + 7 * sent.len();

    let scrape = || -> Option<Vec<Value>> {
        let (code, body) = http_request("GET", metrics, "/metrics", "text/plain", b"").ok()?;
        (code == 200).then_some(())?;
        parse(&String::from_utf8(body).ok()?)?.ok()
    };
    let families = wait_for(LIMIT, || {
        let f = scrape()?;
        let delivered = value(
            &f,
            "evergreen_mqtt_publishes_delivered_payload_bytes_total",
            &[],
        )?;
        (delivered == got_bytes as f64).then_some(f)
    })
    .unwrap_or_else(|| {
        panic!(
            "delivered payload bytes never reached {got_bytes}: {:?}",
            scrape()
        )
    });
    assert_eq!(
        value(
            &families,
            "evergreen_mqtt_publishes_received_payload_bytes_total",
            &[]
        ),
        Some(sent_bytes as f64)
    );
    assert_eq!(
        value(&families, "evergreen_cloud_spool_depth", &[]),
        Some(sent.len() as f64)
    );
    assert_eq!(
        value(&families, "evergreen_cloud_spool_bytes", &[]),
        Some(spooled_bytes as f64)
    );
    let age = |f: &[Value]| value(f, "evergreen_cloud_spool_oldest_age_seconds", &[]);
    let first = age(&families).expect("the spool's oldest age");
    // The oldest keeps waiting while the broker stays away: its age grows.
    let later = wait_for(LIMIT, || {
        let a = age(&scrape()?)?;
        (a >= first + 1.0).then_some(a)
    });
    assert!(
        later.is_some(),
        "the oldest message's age did not grow from {first}"
    );
    // Killed only now: its acknowledgements count in the delivered bytes.
    let _ = display.kill();
    let _ = display.wait();
}
