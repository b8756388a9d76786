//! End-to-end: the IoT Ethernet IP Protocol Adapter connector in a group
//! with `GGStreamManager`, polling cpppo's EtherNet/IP simulator
//! (`python3 -m cpppo.server.enip`, values written by cpppo's own client);
//! an unmodified V1 Python function reads the stream through the real
//! `greengrasssdk` `StreamManagerClient` and publishes what it read to a
//! recorder. Checked: every message has the documented
//! `{"alias","messages":[{"name","value","timestamp","quality"}]}` shape,
//! the alias is `destinationPathPrefix` + path, values are typed as
//! `dstDataType` says, a tag the device does not have is `BAD` with a `null`
//! value, sequence numbers run without gaps and each tag's timestamps never
//! go back; the status names the stream. Skips loudly without cpppo.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);
const CONNECTOR: &str =
    "arn:aws:greengrass:us-east-1::/connectors/IoTEIPProtocolAdaptor/versions/2";
const LOG: &str = "user/us-east-1/aws/IoTEIPProtocolAdaptor.log";
const STREAM: &str = "EIP_Stream";
const TAGS: usize = 5;
const WANT: usize = TAGS * 6;

fn have_cpppo() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cpppo.server.enip"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: python3 with cpppo is not installed (pip install cpppo)");
    }
    ok
}

/// cpppo's simulator on a loopback port it picks; killed when dropped.
struct Simulator {
    child: Child,
    port: u16,
}

impl Simulator {
    fn start() -> Simulator {
        let mut child = Command::new("python3")
            .args(["-m", "cpppo.server.enip", "-A", "--address", "127.0.0.1:0"])
            .args([
                "Count=DINT",
                "arrayREAL=REAL[10]",
                "Name=STRING",
                "Flag=BOOL",
            ])
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cpppo");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("cpppo ended before saying where it listens")
                .expect("line");
            if let Some(rest) = line.split("TCP Server address = ").nth(1) {
                break rest
                    .trim_end_matches(')')
                    .rsplit(", ")
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("no port in {line:?}"));
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Simulator { child, port }
    }

    fn write(&self, assignments: &[&str]) {
        let out = Command::new("python3")
            .args(["-m", "cpppo.server.enip.client", "-a"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(assignments)
            .output()
            .expect("run cpppo client");
        assert!(
            out.status.success(),
            "cpppo client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn configuration(port: u16) -> Value {
    json!({"sources": [{"type": "EIPSource", "name": "plc",
    "endpoint": {"ipAddress": "127.0.0.1", "port": port},
    "destination": {"type": "StreamManager", "streamName": STREAM, "streamBufferSize": 8},
    "destinationPathPrefix": "line1_",
    "propertyGroups": [{"name": "g", "scanMode": {"type": "POLL", "rate": 100},
        "tagPathDefinitions": [
            {"type": "EIPTagPath", "path": "arrayREAL[2]", "dstDataType": "double"},
            {"type": "EIPTagPath", "path": "Count", "dstDataType": "integer"},
            {"type": "EIPTagPath", "path": "Name", "dstDataType": "string"},
            {"type": "EIPTagPath", "path": "Flag", "dstDataType": "boolean"},
            {"type": "EIPTagPath", "path": "Missing", "dstDataType": "integer"}
        ]}]}]})
}

#[test]
fn tag_readings_go_into_the_stream_in_the_documented_message_structure() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    if !have_cpppo() {
        return;
    }
    let sim = Simulator::start();
    sim.write(&[
        "arrayREAL[2]=(REAL)1234.5",
        "Count=(DINT)70000",
        "Name=(STRING)PUMP-7",
        "Flag=(BOOL)1",
    ]);
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
            sub("status", CONNECTOR, "ethernetip/status", &fn_arn("rec")),
        ],
    );
    // The guide's CLI example's spelling of the parameter.
    g["ConnectorDefinitionVersion"] = json!({"Connectors": [{
        "Id": "eip",
        "ConnectorArn": CONNECTOR,
        "Parameters": {
            "ProtocolAdaptorConfiguration": configuration(sim.port).to_string(),
            "LocalStoragePath": "/var/sitewise"
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
    // Idle between polls by now: the connector's footprint, for the record.
    print_connector_rss(&rt, "IoTEIPProtocolAdaptor");
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
        .as_millis() as i64;
    let mut last_ts: std::collections::HashMap<String, i64> = Default::default();
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r["seq"], i as i64, "sequence numbers without gaps: {r}");
        let m = &r["entry"];
        let alias = m["alias"].as_str().expect("alias").to_string();
        let messages = m["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 1, "{m}");
        let msg = &messages[0];
        let name = msg["name"].as_str().expect("name");
        assert_eq!(alias, format!("line1_{name}"), "{m}");
        let (value, quality) = (&msg["value"], &msg["quality"]);
        match name {
            "arrayREAL[2]" => assert_eq!(value, &json!(1234.5), "{m}"),
            "Count" => assert_eq!(value, &json!(70000), "{m}"),
            "Name" => assert_eq!(value, &json!("PUMP-7"), "{m}"),
            "Flag" => assert_eq!(value, &json!(true), "{m}"),
            "Missing" => {
                assert_eq!(value, &Value::Null, "{m}");
                assert_eq!(quality, "BAD", "{m}");
            }
            other => panic!("unexpected tag {other}: {m}"),
        }
        if name != "Missing" {
            assert_eq!(quality, "GOOD", "{m}");
        }
        let ts = msg["timestamp"].as_i64().expect("timestamp in ms");
        assert!((now - 120_000..=now + 1000).contains(&ts), "{m}");
        if let Some(prev) = last_ts.insert(alias.clone(), ts) {
            assert!(ts >= prev, "{alias}'s timestamps never go back: {m}");
        }
    }
    assert_eq!(last_ts.len(), TAGS, "every tag was read: {last_ts:?}");
    // One poll's readings are appended together, in tag order.
    let first: Vec<&str> = got[..TAGS]
        .iter()
        .map(|r| r["entry"]["messages"][0]["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(first, ["arrayREAL[2]", "Count", "Name", "Flag", "Missing"]);

    let status = on_topic(&out, "ethernetip/status");
    let ok = status
        .iter()
        .find(|s| s["status"] == "success")
        .unwrap_or_else(|| panic!("no success status: {status:?}"));
    assert_eq!(ok["sources"][0]["stream"], STREAM, "{ok}");
    assert!(
        !status.iter().any(|s| s["streamManager"] == "unavailable"),
        "the stream manager was there from the start: {status:?}"
    );
    let log = read(&rt.log_path(LOG));
    assert!(
        log.contains("tag \"Missing\" is BAD"),
        "the reason is logged:\n{log}"
    );
}

#[test]
fn a_configuration_without_its_destination_is_reported_on_the_status_topic_with_its_path() {
    // The guide's CLI example, which leaves `destination` out.
    let dir = tempfile::tempdir().expect("tmp");
    let work = tempfile::tempdir().expect("tmp");
    let out = work.path().join("got.jsonl");
    let mut g = group(
        vec![function("rec", &format!("record {}", out.display()))],
        vec![sub(
            "status",
            CONNECTOR,
            "ethernetip/status",
            &fn_arn("rec"),
        )],
    );
    let mut doc = configuration(44818);
    doc["sources"][0]
        .as_object_mut()
        .expect("source")
        .remove("destination");
    g["ConnectorDefinitionVersion"] = json!({"Connectors": [{
        "Id": "eip",
        "ConnectorArn": CONNECTOR,
        "Parameters": {"ProtocolAdapterConfiguration": doc.to_string()}
    }]});
    let rt = Runtime::start_config_in(
        dir,
        &g,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
        &[],
    );
    let status = wait_for(LIMIT, || {
        on_topic(&out, "ethernetip/status")
            .into_iter()
            .find(|s| s["status"] == "fail")
    })
    .unwrap_or_else(|| panic!("no failure status:\n{}", read(&rt.log_path(LOG))));
    assert_eq!(status["error"], "InvalidConfiguration", "{status}");
    assert_eq!(
        status["errors"],
        json!([{"path": "sources[0].destination", "message": "is required"}]),
        "{status}"
    );
    let log = read(&rt.log_path(LOG));
    assert!(
        log.contains("sources[0].destination: is required"),
        "logged with its path:\n{log}"
    );
}
