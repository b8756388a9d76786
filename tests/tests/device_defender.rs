//! End-to-end: the built-in DeviceDefender connector under the real runtime.
//!
//! The group is what a Greengrass user would write (the host's `/proc` as a
//! LocalVolumeResourceData mounted at `/host_proc`), plus the Evergreen
//! development interval of one second so reports arrive within the test. An
//! `eg-fn record` function stands in for the cloud: it receives what the
//! connector publishes on `$aws/things/+/defender/metrics/json`, and an
//! `eg-fn publish` function plays the service's `rejected` answer back.

use std::net::TcpListener;
use std::time::Duration;

use evergreen_tests::{require_containers, *};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
const DEFENDER: &str = "arn:aws:greengrass:us-east-1::/connectors/DeviceDefender/versions/3";
const TOPIC: &str = "$aws/things/test-core/defender/metrics/json";

fn defender_group(record: &std::path::Path) -> Value {
    let mut g = group(
        vec![
            function("rec", &format!("record {}", record.display())),
            function("answer", &format!("publish {TOPIC}/rejected 1 0")),
        ],
        vec![
            sub(
                "metrics",
                DEFENDER,
                "$aws/things/+/defender/metrics/json",
                &fn_arn("rec"),
            ),
            sub(
                "answers",
                &fn_arn("answer"),
                "$aws/things/+/defender/metrics/json/rejected",
                DEFENDER,
            ),
        ],
    );
    // Volumes have no read-only flag in the Greengrass schema: connectors
    // are granted volumes read-only.
    g["ResourceDefinitionVersion"] = json!({ "Resources": [{
        "Id": "host-proc",
        "Name": "HostProc",
        "ResourceDataContainer": { "LocalVolumeResourceData": {
            "SourcePath": "/proc",
            "DestinationPath": "/host_proc",
            "GroupOwnerSetting": { "AutoAddGroupOwner": true }
        }}
    }]});
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
        "Id": "defender",
        "ConnectorArn": DEFENDER,
        "Parameters": {
            "SampleIntervalSeconds": "300",
            "ProcDestinationPath-ResourceId": "host-proc",
            "ProcDestinationPath": "/host_proc",
            "DevelopmentSampleIntervalSeconds": "1"
        }
    }]});
    g
}

fn listening_tcp(report: &Value) -> Vec<(u64, String)> {
    report["metrics"]["listening_tcp_ports"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["port"].as_u64().unwrap_or_default(),
                p["interface"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn device_defender_reports_flow_with_increasing_ids_and_our_listener() {
    // DeviceDefender runs only in a container, as in Greengrass.
    require_containers!();
    // Opened before the runtime starts, so even the first report has it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = u64::from(listener.local_addr().expect("addr").port());
    let dir = tempfile::tempdir().expect("tmp");
    let record = dir.path().join("reports.jsonl");
    let g = defender_group(&record);

    // The group passes the real validation (real manifest, real registry).
    assert_valid_group(dir.path(), &g);

    let mut rt = Runtime::start(&g);
    let log = rt.log_path("user/us-east-1/aws/DeviceDefender.log");
    let got = wait_for(LIMIT, || (records(&record).len() >= 2).then_some(()));
    assert!(
        got.is_some(),
        "no reports: {:?}\nconnector log:\n{}\nruntime log:\n{}",
        records(&record),
        read(&log),
        read(&rt.log_path("system/runtime.log"))
    );

    // The connector's footprint once it is running, for the record.
    // In its container, under the container's waiter and the namespace's init.
    let connector = children_of(rt.pid())
        .into_iter()
        .flat_map(|p| std::iter::once(p).chain(children_of(p)))
        .flat_map(|p| std::iter::once(p).chain(children_of(p)))
        .find(|pid| cmdline(*pid).contains("connector DeviceDefender"));
    match connector {
        Some(pid) => eprintln!(
            "DeviceDefender child pid {pid}: VmRSS {} KiB (runtime VmRSS {} KiB)",
            vm_rss_kb(pid).map_or("?".to_string(), |k| k.to_string()),
            vm_rss_kb(rt.pid()).map_or("?".to_string(), |k| k.to_string()),
        ),
        None => eprintln!("DeviceDefender child not found among the runtime's children"),
    }

    let answered = wait_for(LIMIT, || {
        read(&log)
            .lines()
            .any(|l| l.contains("[WARN]") && l.contains("rejected by AWS IoT Device Defender"))
            .then_some(())
    });
    let status = rt
        .stop_with(Signal::SIGTERM, LIMIT)
        .expect("runtime stops on SIGTERM");
    assert!(status.success(), "clean exit, got {status:?}");
    let text = read(&log);
    assert!(answered.is_some(), "rejected answer logged:\n{text}");
    assert!(
        text.contains("[WARN]")
            && text.contains("DevelopmentSampleIntervalSeconds 1 overrides")
            && text.contains("rejects reports sent more often than every 300 s"),
        "development interval warned about:\n{text}"
    );
    assert!(
        text.contains("reading /proc from /host_proc (resource host-proc)"),
        "in its container the connector reads the volume at its destination:\n{text}"
    );

    let recs = records(&record);
    assert!(recs.len() >= 2, "{recs:?}");
    let mut ids = Vec::new();
    for r in &recs {
        assert_eq!(r["topic"], TOPIC, "{r}");
        assert_eq!(r["source"], DEFENDER, "{r}");
        let report: Value =
            serde_json::from_str(r["payload"].as_str().unwrap_or_default()).expect("JSON report");
        assert_eq!(report["header"]["version"], "1.0", "{report}");
        ids.push(report["header"]["report_id"].as_u64().expect("report_id"));
        assert!(
            listening_tcp(&report).contains(&(port, "lo".to_string())),
            "listener 127.0.0.1:{port} in {report}"
        );
        for key in ["listening_udp_ports", "network_stats", "tcp_connections"] {
            assert!(report["metrics"].get(key).is_some(), "{key} in {report}");
        }
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "increasing ids: {ids:?}"
    );
    drop(listener);
}
