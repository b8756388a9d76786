//! End-to-end: the built-in ModbusTCPConnector under the real runtime,
//! against a real Modbus TCP slave (`eg-modbus-tcp-slave`, tokio-modbus's
//! server) on a loopback port the kernel chose.
//!
//! An `eg-fn record` function subscribes to what the connector publishes
//! (`modbus/tcp/stream/+` readings and `modbus/tcp/status`); the slave counts
//! the requests it answers, so the test can see merged reads.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
const CONNECTOR: &str = "arn:aws:greengrass:us-east-1::/connectors/ModbusTCPConnector/versions/3";
const LOG: &str = "user/us-east-1/aws/ModbusTCPConnector.log";

/// A running `eg-modbus-tcp-slave`; killed when dropped.
struct SlaveProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl SlaveProc {
    fn start(port: u16, data: &Value) -> SlaveProc {
        let mut child =
            Command::new(find_bin("eg-modbus-tcp-slave").unwrap_or_else(|e| panic!("{e}")))
                .args(["--port", &port.to_string(), "--data", &data.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start eg-modbus-tcp-slave");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        // The slave prints this line once it listens (or exits at once).
        stdout.read_line(&mut line).expect("slave's first line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("slave did not say where it listens: {line:?}"));
        SlaveProc {
            child,
            stdin,
            stdout,
            port,
        }
    }

    /// `{"requests":N,"by_function":{"3":N,…}}`.
    fn stats(&mut self) -> Value {
        writeln!(self.stdin, "stats").expect("ask for stats");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("stats line");
        serde_json::from_str(&line).expect("stats JSON")
    }
}

impl Drop for SlaveProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn slave_data() -> Value {
    let f = 1234.5f32.to_be_bytes();
    let d = (-0.25f64).to_be_bytes();
    let word = |a: u8, b: u8| u16::from_be_bytes([a, b]);
    json!({
        // float 1234.5 stored little-endian (byteWordSwap), then int16 -2
        "input": {"0": [word(f[3], f[2]), word(f[1], f[0]), 0xfffe_u16]},
        "holding": {
            // uint32 70000, least significant register first (wordSwap)
            "0": [70000u32 & 0xffff, 70000u32 >> 16],
            "2": [word(d[0], d[1]), word(d[2], d[3]), word(d[4], d[5]), word(d[6], d[7])],
            // "PUMP-7"
            "20": [0x5055, 0x4d50, 0x2d37, 0]
        },
        "coils": {"0": [true, false]},
        "discrete": {"4": [true]},
        "len": 100
    })
}

fn capability(port: u16) -> Value {
    json!({"sources": [{"type": "ModBusTCPSource", "name": "plc",
        "measurementDataStreamPrefix": "line1_",
        "destination": {"type": "StreamManager", "streamName": "SiteWise_Stream_1", "streamBufferSize": 8},
        "endpoint": {"ipAddress": "127.0.0.1", "port": port, "unitId": 1},
        "minimumInterRequestDuration": 5,
        "propertyGroups": [{"name": "g",
            "tagPathDefinitions": [
                {"type": "ModBusTCPAddress", "tag": "temp", "address": "30001", "size": 2,
                 "srcDataType": "float", "transformation": "byteWordSwap", "dstDataType": "double"},
                {"tag": "delta", "address": "30003", "srcDataType": "int16", "dstDataType": "integer"},
                {"tag": "count", "address": "40001", "srcDataType": "uint32", "transformation": "wordSwap", "dstDataType": "integer"},
                {"tag": "level", "address": "40003", "srcDataType": "double", "dstDataType": "double"},
                {"tag": "name", "address": "40021", "size": 4, "srcDataType": "ascii", "dstDataType": "string"},
                {"tag": "run", "address": "00001", "srcDataType": "bool", "dstDataType": "boolean"},
                {"tag": "stop", "address": "00002", "srcDataType": "bool", "dstDataType": "boolean"},
                {"tag": "alarm", "address": "10005", "srcDataType": "bool", "dstDataType": "integer"}
            ],
            "scanMode": {"type": "POLL", "rate": 100}}]}]})
}

fn modbus_group(record: &Path, capability: &str) -> Value {
    let mut g = group(
        vec![function("rec", &format!("record {}", record.display()))],
        vec![
            sub("readings", CONNECTOR, "modbus/tcp/stream/+", &fn_arn("rec")),
            sub("status", CONNECTOR, "modbus/tcp/status", &fn_arn("rec")),
        ],
    );
    g["ConnectorDefinitionVersion"] = json!({"Connectors": [{
        "Id": "modbus-tcp",
        "ConnectorArn": CONNECTOR,
        "Parameters": {
            "CapabilityConfiguration": capability,
            "LocalStoragePath": "/var/sitewise",
            "MaximumBufferSize": "10"
        }
    }]});
    g
}

/// `(topic, payload JSON)` of every record.
fn published(record: &Path) -> Vec<(String, Value)> {
    records(record)
        .into_iter()
        .filter_map(|r| {
            let payload = serde_json::from_str(r["payload"].as_str()?).ok()?;
            Some((r["topic"].as_str()?.to_string(), payload))
        })
        .collect()
}

/// The readings (the first message of each payload) published so far.
fn readings(record: &Path) -> Vec<Value> {
    published(record)
        .into_iter()
        .filter(|(t, _)| t == "modbus/tcp/stream/SiteWise_Stream_1")
        .filter_map(|(_, p)| {
            let mut m = p["messages"][0].clone();
            m["alias"] = p["alias"].clone();
            (m.is_object()).then_some(m)
        })
        .collect()
}

const TAGS: [&str; 8] = [
    "temp", "delta", "count", "level", "name", "run", "stop", "alarm",
];

/// Index just past the first moment at or after `from` where every tag has
/// had a reading of `quality`.
fn all_tags(readings: &[Value], from: usize, quality: &str) -> Option<usize> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in readings.iter().enumerate().skip(from) {
        if r["quality"] == quality {
            seen.insert(r["name"].as_str().unwrap_or_default().to_string());
            if seen.len() == TAGS.len() {
                return Some(i + 1);
            }
        }
    }
    None
}

#[test]
fn modbus_tcp_polls_decode_merge_go_bad_and_recover() {
    let mut slave = SlaveProc::start(0, &slave_data());
    let port = slave.port;
    let dir = tempfile::tempdir().expect("tmp");
    let record = dir.path().join("rec.jsonl");
    let g = modbus_group(&record, &capability(port).to_string());
    assert_valid_group(dir.path(), &g);
    let mut rt = Runtime::start(&g);
    let log = rt.log_path(LOG);
    let diagnose = |what: &str| {
        format!(
            "{what}\nreadings: {:?}\nconnector log:\n{}",
            readings(&record).iter().rev().take(20).collect::<Vec<_>>(),
            read(&log)
        )
    };

    // 1. Every tag GOOD with its decoded value.
    let good = wait_for(LIMIT, || all_tags(&readings(&record), 0, "GOOD"));
    assert!(
        good.is_some(),
        "{}",
        diagnose("no GOOD reading of every tag")
    );
    let rs = readings(&record);
    let value = |tag: &str| {
        rs.iter()
            .find(|r| r["name"] == tag && r["quality"] == "GOOD")
            .map(|r| r["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(value("temp"), json!(1234.5), "float, byteWordSwap");
    assert_eq!(value("delta"), json!(-2));
    assert_eq!(value("count"), json!(70000), "uint32, wordSwap");
    assert_eq!(value("level"), json!(-0.25));
    assert_eq!(value("name"), json!("PUMP-7"));
    assert_eq!(value("run"), json!(true));
    assert_eq!(value("stop"), json!(false));
    assert_eq!(value("alarm"), json!(1));
    let temp = rs.iter().find(|r| r["name"] == "temp").expect("temp");
    assert_eq!(temp["alias"], "line1_temp", "prefix + tag");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let ts = temp["timestamp"].as_u64().expect("timestamp");
    assert!(
        ts <= now_ms && now_ms - ts < 60_000,
        "epoch ms: {ts} vs {now_ms}"
    );

    // 2. Merged requests: per poll, 8 tags in 5 requests: 1 coil read, 1
    // discrete read, 1 input-register read (2 tags) and 2 holding-register
    // reads (3 tags: registers 0..6 merged, 20..24 apart).
    let stats = slave.stats();
    let by = |fc: &str| stats["by_function"][fc].as_u64().unwrap_or(0);
    let polls = by("4");
    assert!(polls >= 1, "{stats}");
    assert!(
        by("1").abs_diff(polls) <= 1 && by("2").abs_diff(polls) <= 1,
        "{stats}"
    );
    assert!(by("3").abs_diff(2 * polls) <= 2, "{stats}");
    let requests = stats["requests"].as_u64().unwrap_or(0);
    assert!(requests <= 5 * polls + 4, "{stats}");
    assert!(requests < 8 * polls, "fewer requests than tags: {stats}");

    // The configuration was announced.
    let status: Vec<Value> = published(&record)
        .into_iter()
        .filter(|(t, _)| t == "modbus/tcp/status")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0]["status"], "success");
    assert_eq!(
        status[0]["sources"][0]["topic"],
        "modbus/tcp/stream/SiteWise_Stream_1"
    );

    // 3. The device goes away: every tag is published BAD, value null.
    drop(slave);
    let gone_at = readings(&record).len();
    let bad = wait_for(LIMIT, || all_tags(&readings(&record), gone_at, "BAD"));
    assert!(
        bad.is_some(),
        "{}",
        diagnose("no BAD readings once the slave died")
    );
    let rs = readings(&record);
    let bad_at = bad.unwrap_or_default();
    assert!(
        rs[gone_at..bad_at]
            .iter()
            .filter(|r| r["quality"] == "BAD")
            .all(|r| r["value"].is_null()),
        "BAD readings carry no value"
    );

    // 4. It comes back on the same port: GOOD again (within the backoff cap).
    let _slave = SlaveProc::start(port, &slave_data());
    let back = wait_for(LIMIT, || all_tags(&readings(&record), bad_at, "GOOD"));
    assert!(
        back.is_some(),
        "{}",
        diagnose("no GOOD readings after the slave came back")
    );

    let status = rt.stop_with(Signal::SIGTERM, LIMIT).expect("runtime stops");
    assert!(status.success(), "clean exit: {status:?}");
    let text = read(&log);
    assert!(
        text.contains("unreachable") && text.contains("[WARN]"),
        "{text}"
    );
    assert!(text.contains("answers again"), "{text}");
    assert!(
        text.contains("8 tag(s) in 5 request(s) every 100 ms"),
        "{text}"
    );
    assert!(
        text.contains("are not used"),
        "LocalStoragePath noted: {text}"
    );
}

#[test]
fn modbus_tcp_invalid_configuration_is_reported_not_crash_looped() {
    let dir = tempfile::tempdir().expect("tmp");
    let record = dir.path().join("rec.jsonl");
    let mut bad = capability(1502);
    bad["sources"][0]["propertyGroups"][0]["tagPathDefinitions"][1]["address"] = json!("20001");
    bad["sources"][0]["endpoint"]["port"] = json!("http");
    // The CLI wrapper form, with the configuration as a JSON string.
    let wrapped = json!({"version": 1, "namespace": "iotsitewise:modbuscollector:1",
        "configuration": bad.to_string()});
    let g = modbus_group(&record, &wrapped.to_string());
    // The parameter itself is a valid string: validation lets it through and
    // the connector reports what is wrong inside it.
    assert_valid_group(dir.path(), &g);
    let rt = Runtime::start(&g);
    let log = rt.log_path(LOG);
    let status = wait_for(LIMIT, || {
        published(&record)
            .into_iter()
            .find(|(t, _)| t == "modbus/tcp/status")
            .map(|(_, p)| p)
    });
    let status = status.unwrap_or_else(|| panic!("no status; log:\n{}", read(&log)));
    assert_eq!(status["status"], "fail", "{status}");
    assert_eq!(status["error"], "InvalidConfiguration", "{status}");
    let paths: Vec<&str> = status["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "configuration.sources[0].endpoint.port",
            "configuration.sources[0].propertyGroups[0].tagPathDefinitions[1].address"
        ],
        "{status}"
    );
    let logged = wait_for(LIMIT, || {
        let text = read(&log);
        text.contains("tagPathDefinitions[1].address")
            .then_some(text)
    })
    .unwrap_or_else(|| read(&log));
    assert!(
        logged.contains("[ERROR]") && logged.contains("is invalid"),
        "{logged}"
    );

    // Still the same child a while later: reported, not crash-looped.
    let child = |rt: &Runtime| {
        children_of(rt.pid())
            .into_iter()
            .find(|pid| cmdline(*pid).contains("connector ModbusTCPConnector"))
    };
    let first = child(&rt).expect("connector running");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(child(&rt), Some(first), "connector not restarted");
    assert!(readings(&record).is_empty(), "nothing polled");
}

#[test]
fn modbus_tcp_answers_adapter_requests_between_polls() {
    let mut slave = SlaveProc::start(0, &slave_data());
    let dir = tempfile::tempdir().expect("tmp");
    let record = dir.path().join("rec.jsonl");
    let feed = dir.path().join("feed.jsonl");
    let mut g = modbus_group(&record, &capability(slave.port).to_string());
    g["FunctionDefinitionVersion"]["Functions"]
        .as_array_mut()
        .expect("functions")
        .push(function("feeder", &format!("feed {}", feed.display())));
    g["SubscriptionDefinitionVersion"]["Subscriptions"]
        .as_array_mut()
        .expect("subscriptions")
        .extend([
            sub(
                "requests",
                &fn_arn("feeder"),
                "modbus/adapter/request",
                CONNECTOR,
            ),
            sub(
                "responses",
                CONNECTOR,
                "modbus/adapter/response",
                &fn_arn("rec"),
            ),
        ]);
    assert_valid_group(dir.path(), &g);
    let rt = Runtime::start(&g);
    // Polling is under way before the requests arrive.
    let polling = wait_for(LIMIT, || all_tags(&readings(&record), 0, "GOOD"));
    assert!(polling.is_some(), "polling: {}", read(&rt.log_path(LOG)));

    let requests = [
        json!({"request": {"operation": "ReadHoldingRegistersRequest", "device": 1, "address": 0, "count": 2}, "id": "read"}),
        json!({"request": {"operation": "WriteSingleRegisterRequest", "device": 1, "address": 50, "value": 1234}, "id": "write"}),
        json!({"request": {"operation": "ReadHoldingRegistersRequest", "device": 1, "address": 50, "count": 1, "source": "plc"}, "id": "readback"}),
        json!({"request": {"operation": "ReadCoilsRequest", "device": 9, "address": 0, "count": 2}, "id": "coils"}),
        json!({"request": {"operation": "ReadHoldingRegistersRequest", "device": 1, "address": 500, "count": 1}, "id": "exception"}),
        json!({"request": {"operation": "ReadHoldingRegistersRequest", "device": 1, "address": "0", "count": 1}, "id": "bad-address"}),
        json!({"request": {"operation": "ReadCoilsRequest", "device": 1, "address": 0, "count": 1, "source": "nope"}, "id": "bad-source"}),
        json!({"request": {"operation": "ReadCoilsRequest", "device": 1, "address": 0, "count": 1}}),
    ];
    let lines: String = requests
        .iter()
        .map(|r| {
            format!(
                "{}\n",
                json!({"topic": "modbus/adapter/request", "payload": r})
            )
        })
        .chain(std::iter::once(
            "{\"topic\":\"modbus/adapter/request\",\"payload\":\"{not json\"}\n".to_string(),
        ))
        .collect();
    std::fs::write(&feed, lines).expect("write feed");

    let responses = || -> Vec<Value> {
        published(&record)
            .into_iter()
            .filter(|(t, _)| t == "modbus/adapter/response")
            .map(|(_, p)| p)
            .collect()
    };
    let all = wait_for(LIMIT, || {
        let r = responses();
        (r.len() > requests.len()).then_some(r)
    });
    let all = all.unwrap_or_else(|| {
        panic!(
            "responses: {:?}\nlog:\n{}",
            responses(),
            read(&rt.log_path(LOG))
        )
    });
    let by_id = |id: &str| {
        all.iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no response {id}: {all:?}"))
    };
    let r = by_id("read");
    assert_eq!(r["response"]["status"], "success", "{r}");
    assert_eq!(
        r["response"]["payload"],
        json!({"function_code": 3, "registers": [70000 & 0xffff, 1]})
    );
    assert_eq!(by_id("write")["response"]["status"], "success");
    assert_eq!(
        by_id("readback")["response"]["payload"]["registers"],
        json!([1234])
    );
    let r = by_id("coils");
    assert_eq!(
        (
            r["response"]["device"].clone(),
            r["response"]["payload"]["bits"].clone()
        ),
        (json!(9), json!([1, 0])),
        "{r}"
    );
    let r = by_id("exception");
    assert_eq!(r["response"]["status"], "fail");
    assert_eq!(r["response"]["error"], "Exception");
    assert_eq!(
        r["response"]["payload"],
        json!({"function_code": 131, "exception_code": 2})
    );
    let r = by_id("bad-address");
    assert_eq!(r["response"]["error"], "No Response", "{r}");
    assert!(
        r["response"]["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("address"),
        "{r}"
    );
    let r = by_id("bad-source");
    assert!(
        r["response"]["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("No source named"),
        "{r}"
    );
    let unanswerable: Vec<&Value> = all.iter().filter(|r| r["id"].is_null()).collect();
    assert_eq!(unanswerable.len(), 2, "missing id and not JSON: {all:?}");
    assert!(unanswerable
        .iter()
        .all(|r| r["response"]["status"] == "fail"));

    // Exactly one write reached the slave; the rejected requests never did.
    let stats = slave.stats();
    assert_eq!(stats["by_function"]["6"], 1, "{stats}");
    // Polling went on throughout.
    let before = readings(&record).len();
    let more = wait_for(LIMIT, || {
        (readings(&record).len() > before + 8).then_some(())
    });
    assert!(more.is_some(), "polling continues after the requests");
}
