//! End-to-end: the Modbus-TCP connector with `OutputDestination`
//! `StreamManager` in a group with `GGStreamManager`, polling the real
//! Modbus TCP test slave (`eg-modbus-tcp-slave`); an unmodified V1 Python
//! function reads the stream through the real `greengrasssdk` 1.6.1
//! `StreamManagerClient` and publishes what it read to a recorder. Checked:
//! every reading is a SiteWise `PutAssetPropertyValueEntry` with the right
//! alias, typed value, quality and timestamp; entry ids are unique;
//! sequence numbers run without gaps and each tag's timestamps never go
//! back; the connector's status names the stream.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);
const CONNECTOR: &str = "arn:aws:greengrass:us-east-1::/connectors/ModbusTCPConnector/versions/3";
const LOG: &str = "user/us-east-1/aws/ModbusTCPConnector.log";
const STREAM: &str = "SiteWise_Stream_1";
const WANT: usize = 40;

/// The slave process, its port, and its stdout kept open (it answers
/// `stats` there).
struct Slave {
    child: Child,
    port: u16,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Slave {
    fn start(data: &Value) -> Slave {
        let mut child =
            Command::new(find_bin("eg-modbus-tcp-slave").unwrap_or_else(|e| panic!("{e}")))
                .args(["--port", "0", "--data", &data.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start eg-modbus-tcp-slave");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("slave's first line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("slave did not say where it listens: {line:?}"));
        Slave {
            child,
            port,
            _stdout: stdout,
        }
    }
}

impl Drop for Slave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn slave_data() -> Value {
    let f = 1234.5f32.to_be_bytes();
    let word = |a: u8, b: u8| u16::from_be_bytes([a, b]);
    json!({
        "input": {"0": [word(f[3], f[2]), word(f[1], f[0])]},
        "holding": {
            "0": [70000u32 & 0xffff, 70000u32 >> 16],
            "20": [0x5055, 0x4d50, 0x2d37, 0]
        },
        "coils": {"0": [true]},
        "len": 100
    })
}

fn capability(port: u16) -> Value {
    json!({"sources": [{"type": "ModBusTCPSource", "name": "plc",
        "measurementDataStreamPrefix": "line1_",
        "destination": {"type": "StreamManager", "streamName": STREAM, "streamBufferSize": 8},
        "endpoint": {"ipAddress": "127.0.0.1", "port": port, "unitId": 1},
        "minimumInterRequestDuration": 5,
        "propertyGroups": [{"name": "g",
            "tagPathDefinitions": [
                {"type": "ModBusTCPAddress", "tag": "temp", "address": "30001", "size": 2,
                 "srcDataType": "float", "transformation": "byteWordSwap", "dstDataType": "double"},
                {"tag": "count", "address": "40001", "srcDataType": "uint32", "transformation": "wordSwap", "dstDataType": "integer"},
                {"tag": "name", "address": "40021", "size": 4, "srcDataType": "ascii", "dstDataType": "string"},
                {"tag": "run", "address": "00001", "srcDataType": "bool", "dstDataType": "boolean"}
            ],
            "scanMode": {"type": "POLL", "rate": 100}}]}]})
}

#[test]
fn readings_go_into_the_stream_as_sitewise_entries() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let slave = Slave::start(&slave_data());
    let dir = tempfile::tempdir().expect("tmp");
    let work = tempfile::tempdir().expect("tmp");
    let code = stream_reader_package(work.path(), &sdk, STREAM, WANT, 50);
    let out = work.path().join("got.jsonl");
    let mut g = group(
        vec![
            stream_manager_function(free_port().expect("a free port")),
            python_function("reader", &code, "reader.handler", true, 60),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![
            sub("r", &fn_arn("reader"), "sm/#", &fn_arn("rec")),
            sub("status", CONNECTOR, "modbus/tcp/status", &fn_arn("rec")),
            sub("mqtt", CONNECTOR, "modbus/tcp/stream/+", &fn_arn("rec")),
        ],
    );
    g["ConnectorDefinitionVersion"] = json!({"Connectors": [{
        "Id": "modbus-tcp",
        "ConnectorArn": CONNECTOR,
        "Parameters": {
            "CapabilityConfiguration": capability(slave.port).to_string(),
            "OutputDestination": "StreamManager"
        }
    }]});
    let rt = Runtime::start_config_in(
        dir,
        &g,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
        &[],
    );
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

    let mut ids = std::collections::HashSet::new();
    let mut last_ts: std::collections::HashMap<String, f64> = Default::default();
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r["seq"], i as i64, "sequence numbers without gaps: {r}");
        let e = &r["entry"];
        assert!(
            ids.insert(e["entryId"].as_str().expect("entryId").to_string()),
            "entry ids are unique: {e}"
        );
        let alias = e["propertyAlias"].as_str().expect("alias").to_string();
        let pv = &e["propertyValues"];
        assert_eq!(pv.as_array().map(Vec::len), Some(1), "{e}");
        let v = &pv[0];
        assert_eq!(v["quality"], "GOOD", "{e}");
        let value = &v["value"];
        match alias.as_str() {
            "line1_temp" => assert_eq!(value, &json!({"doubleValue": 1234.5}), "{e}"),
            "line1_count" => assert_eq!(value, &json!({"integerValue": 70000}), "{e}"),
            "line1_name" => assert_eq!(value, &json!({"stringValue": "PUMP-7"}), "{e}"),
            "line1_run" => assert_eq!(value, &json!({"booleanValue": true}), "{e}"),
            other => panic!("unexpected alias {other}: {e}"),
        }
        let secs = v["timestamp"]["timeInSeconds"].as_i64().expect("seconds");
        let nanos = v["timestamp"]["offsetInNanos"].as_i64().expect("nanos");
        assert!((0..1_000_000_000).contains(&nanos), "{e}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        assert!((now - 120..=now + 1).contains(&secs), "{e}");
        let ts = secs as f64 + nanos as f64 / 1e9;
        if let Some(prev) = last_ts.insert(alias.clone(), ts) {
            assert!(ts >= prev, "{alias}'s timestamps never go back: {e}");
        }
    }
    assert_eq!(last_ts.len(), 4, "every tag was read: {last_ts:?}");
    // One poll's four readings are appended together, in tag order.
    let first_four: Vec<&str> = got[..4]
        .iter()
        .map(|r| r["entry"]["propertyAlias"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        first_four,
        ["line1_temp", "line1_count", "line1_name", "line1_run"]
    );

    let status = on_topic(&out, "modbus/tcp/status");
    let ok = status
        .iter()
        .find(|s| s["status"] == "success")
        .unwrap_or_else(|| panic!("no success status: {status:?}"));
    assert_eq!(ok["output"], "StreamManager", "{ok}");
    assert_eq!(ok["sources"][0]["stream"], STREAM, "{ok}");
    assert!(
        !status.iter().any(|s| s["streamManager"] == "unavailable"),
        "the stream manager was there from the start: {status:?}"
    );
    assert!(
        on_topic(&out, &format!("modbus/tcp/stream/{STREAM}")).is_empty(),
        "nothing on MQTT in StreamManager mode"
    );
}
