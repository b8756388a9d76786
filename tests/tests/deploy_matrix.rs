//! End-to-end: the deployment matrix of issue 17. One runtime, every component kind — native
//! function (pinned and on-demand), Python function (NoContainer and container), a container
//! connector and a NoContainer connector — and a sequence of `evergreen deploy FILE` calls, each
//! making one kind of change: parameters, connector version (with the subscriptions rewritten to
//! the new ARN), isolation mode, resource grants, removal, addition. After each: the deployment
//! succeeded, the changed component runs its new configuration (seen from the component
//! itself: what a Python function publishes, a connector's log and ARN), and every untouched
//! component kept its PID. Then a failing deployment is rolled back with every PID unchanged
//! and the changed component back on its old configuration, and a second runtime on the same
//! root changes nothing.
//!
//! Greengrass V1 behaviour checked (core model §1.2, "Deployments"): a new group version
//! replaces what changed and leaves the rest running; a deployment whose components do not
//! come up is rolled back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(40);
const FIREHOSE_V5: &str = "arn:aws:greengrass:us-east-1::/connectors/KinesisFirehose/versions/5";
const FIREHOSE_V1: &str = "arn:aws:greengrass:us-east-1::/connectors/KinesisFirehose/versions/1";
const HEARTBEAT: &str = "arn:aws:greengrass:us-east-1::/connectors/Heartbeat/versions/1";
/// Connectors appear in `evergreen status` by name.
const FIREHOSE: &str = "KinesisFirehose";
const HEARTBEAT_NAME: &str = "Heartbeat";
const STREAM: &str = "arn:aws:firehose:us-east-1:123456789012:deliverystream/matrix";

/// A pinned Python function that reports, once at start, what it runs with.
const REPORTER: &str = r#"
import json
import os
import socket
import greengrasssdk

greengrasssdk.client("iot-data").publish(
    topic="matrix/" + os.environ["NAME"],
    payload=json.dumps({
        "name": os.environ["NAME"],
        "v": os.environ.get("V"),
        "hostname": socket.gethostname(),
        "grant": os.path.exists("/matrix-grant/marker"),
        "pid": os.getpid(),
    }),
)


def handler(event, context):
    return
"#;

fn cli(dir: &Path, args: &[&str]) -> Output {
    evergreen_with(&dir.join("config.json"), args)
}

fn text(out: &Output) -> String {
    output_text(out)
}

/// Component name → (state, pid, arn), from `evergreen status --json`.
type Status = BTreeMap<String, (String, u64, String)>;

fn status(dir: &Path) -> Option<Status> {
    let out = cli(dir, &["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut map = BTreeMap::new();
    for c in doc["components"].as_array()? {
        map.insert(
            c["name"].as_str()?.to_string(),
            (
                c["state"].as_str()?.to_string(),
                c["pid"].as_u64().unwrap_or(0),
                c["arn"].as_str().unwrap_or_default().to_string(),
            ),
        );
    }
    Some(map)
}

/// Waits until exactly `pinned` are Running (and `on_demand` are known), returns the status.
fn settled(dir: &Path, pinned: &[&str], on_demand: &[&str]) -> Status {
    wait_for(LIMIT, || {
        let s = status(dir)?;
        let ok = s.len() == pinned.len() + on_demand.len()
            && pinned.iter().all(|n| {
                s.get(*n)
                    .is_some_and(|(st, pid, _)| st == "Running" && *pid > 0)
            })
            && on_demand.iter().all(|n| s.contains_key(*n));
        ok.then_some(s)
    })
    .unwrap_or_else(|| panic!("not settled: {:?}", status(dir)))
}

/// What the group is made of at each step; `build` turns it into a group file.
#[derive(Clone)]
struct Matrix {
    out: PathBuf,
    code: String,
    /// Python functions: name → (V, container, granted).
    python: BTreeMap<&'static str, (String, bool, bool)>,
    /// The native pinned function's V.
    native_v: String,
    on_demand: bool,
    extra: bool,
    /// Firehose (container): version and MemorySize.
    firehose: (u32, String),
    heartbeat_interval: String,
    stall: bool,
}

impl Matrix {
    fn build(&self) -> Value {
        let mut functions = vec![{
            let mut f = function("recorder", &format!("record {}", self.out.display()));
            f["FunctionConfiguration"]["Environment"]["Variables"] = json!({ "V": self.native_v });
            f
        }];
        if self.on_demand {
            let mut f = function("ondemand", "record /dev/null");
            f["FunctionConfiguration"]["Pinned"] = json!(false);
            functions.push(f);
        }
        if self.extra {
            functions.push(function("extra", "record /dev/null"));
        }
        if self.stall {
            functions.push(function("staller", "stall"));
        }
        let mut subscriptions = Vec::new();
        for (name, (v, container, granted)) in &self.python {
            let mode = if *container {
                "GreengrassContainer"
            } else {
                "NoContainer"
            };
            let mut env = json!({
                "Execution": { "IsolationMode": mode },
                "Variables": { "NAME": name, "V": v }
            });
            if *granted {
                env["ResourceAccessPolicies"] =
                    json!([{ "ResourceId": "grant", "Permission": "ro" }]);
            }
            functions.push(json!({
                "Id": name,
                "FunctionArn": fn_arn(name),
                "FunctionConfiguration": {
                    "Executable": "reporter.handler",
                    "CodeUri": self.code,
                    "Runtime": "python3.8",
                    "Pinned": true,
                    "Timeout": 5,
                    "MemorySize": 32768,
                    "Environment": env
                }
            }));
            subscriptions.push(sub(
                &format!("report-{name}"),
                &fn_arn(name),
                "matrix/#",
                &fn_arn("recorder"),
            ));
        }
        let (version, memory) = &self.firehose;
        let firehose_arn = if *version == 5 {
            FIREHOSE_V5
        } else {
            FIREHOSE_V1
        };
        let mut firehose_params = json!({ "DefaultDeliveryStreamArn": STREAM });
        if *version >= 2 {
            firehose_params["DeliveryStreamQueueSize"] = json!("5000");
            firehose_params["MemorySize"] = json!(memory);
            firehose_params["PublishInterval"] = json!("10");
            firehose_params["IsolationMode"] = json!("GreengrassContainer");
        }
        // The connector's subscription follows its ARN on an upgrade.
        subscriptions.push(sub(
            "to-firehose",
            &fn_arn("recorder"),
            "kinesisfirehose/message",
            firehose_arn,
        ));
        let mut g = group(functions, subscriptions);
        g["ConnectorDefinitionVersion"] = json!({ "Connectors": [
            { "Id": "firehose", "ConnectorArn": firehose_arn, "Parameters": firehose_params },
            { "Id": "heartbeat", "ConnectorArn": HEARTBEAT,
              "Parameters": { "IntervalSeconds": self.heartbeat_interval } }
        ]});
        // Version 1 has no IsolationMode parameter: the group's default runs it in a container.
        g["FunctionDefinitionVersion"]["DefaultConfig"] =
            json!({ "Execution": { "IsolationMode": "GreengrassContainer" } });
        g["ResourceDefinitionVersion"] = json!({ "Resources": [{
            "Id": "grant", "Name": "MatrixGrant",
            "ResourceDataContainer": { "LocalVolumeResourceData": {
                "SourcePath": self.out.parent().expect("parent").join("grant"),
                "DestinationPath": "/matrix-grant"
            }}
        }]});
        g
    }

    fn pinned(&self) -> Vec<&'static str> {
        let mut names = vec!["recorder", FIREHOSE, HEARTBEAT_NAME];
        names.extend(self.python.keys().copied());
        if self.extra {
            names.push("extra");
        }
        names
    }

    fn on_demand_names(&self) -> Vec<&'static str> {
        if self.on_demand {
            vec!["ondemand"]
        } else {
            Vec::new()
        }
    }
}

/// The reports of Python function `name`, in order.
fn reports(out: &Path, name: &str) -> Vec<Value> {
    records(out)
        .into_iter()
        .filter(|r| r["topic"] == format!("matrix/{name}"))
        .filter_map(|r| serde_json::from_str(r["payload"].as_str()?).ok())
        .collect()
}

/// Waits for a report of `name` with V = `v`, returns it.
fn report_with(out: &Path, name: &str, v: &str) -> Value {
    wait_for(LIMIT, || {
        reports(out, name).into_iter().rev().find(|r| r["v"] == v)
    })
    .unwrap_or_else(|| panic!("no report of {name} with V={v}: {:?}", reports(out, name)))
}

struct Step<'a> {
    what: &'a str,
    changed: &'a [&'a str],
}

/// Deploys `m` as a file; checks success and that every untouched component kept its PID.
fn deploy(
    rd: &Path,
    m: &Matrix,
    step: &Step<'_>,
    before: &Status,
    times: &mut Vec<(String, Duration)>,
) -> Status {
    let file = rd.join(format!("{}.json", step.what.replace(' ', "-")));
    std::fs::write(&file, m.build().to_string()).expect("write group");
    let started = Instant::now();
    let out = cli(rd, &["deploy", &file.display().to_string()]);
    times.push((step.what.to_string(), started.elapsed()));
    let t = text(&out);
    assert!(
        out.status.success() && t.contains("Success"),
        "{}: {t}",
        step.what
    );
    let after = settled(rd, &m.pinned(), &m.on_demand_names());
    for (name, (_, pid, _)) in before {
        if step.changed.contains(&name.as_str()) || !after.contains_key(name) {
            continue;
        }
        assert_eq!(
            after[name].1, *pid,
            "{}: untouched {name} must keep its process ({before:?} → {after:?})",
            step.what
        );
    }
    for name in step.changed {
        if let (Some(b), Some(a)) = (before.get(*name), after.get(*name)) {
            if b.1 != 0 {
                assert_ne!(a.1, b.1, "{}: changed {name} must restart", step.what);
            }
        }
    }
    after
}

fn log_has(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle))
}

#[test]
fn deployment_matrix_every_kind_every_change_untouched_pids_kept() {
    require_containers!();
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let out = work.path().join("reports.jsonl");
    std::fs::create_dir_all(work.path().join("grant")).expect("mkdir");
    std::fs::write(work.path().join("grant/marker"), "x").expect("write");

    let mut m = Matrix {
        out: out.clone(),
        code: String::new(),
        python: BTreeMap::from([
            ("pyn", ("1".to_string(), false, false)),
            ("pyc", ("1".to_string(), true, false)),
        ]),
        native_v: "1".into(),
        on_demand: true,
        extra: false,
        firehose: (5, "65535".into()),
        heartbeat_interval: "30".into(),
        stall: false,
    };
    let port = free_port().expect("a free port for the Lambda endpoint");
    let rt = Runtime::start_config(
        &json!({}),
        &json!({
            "coreThing": { "ggDaemonPort": port },
            "evergreen": { "controlSocket": work.path().join("control.sock"), "readinessTimeoutMs": 8000 }
        }),
        &[],
    );
    let rd = rt.dir.path().to_path_buf();
    // The function's code lives beside the group files, named relatively as V1 users do.
    let code_dir = rd.join("functions/reporter");
    vendor_greengrasssdk(&sdk, &code_dir).expect("vendor greengrasssdk");
    std::fs::write(code_dir.join("reporter.py"), REPORTER).expect("write");
    m.code = "functions/reporter".into();
    let firehose_log = rt.log_path("user/us-east-1/aws/KinesisFirehose.log");
    let runtime_log = rt.log_path("system/runtime.log");
    let mut times = Vec::new();

    // Addition of everything to an empty runtime.
    let empty = settled(&rd, &[], &[]);
    let mut s = deploy(
        &rd,
        &m,
        &Step {
            what: "addition of every kind",
            changed: &[],
        },
        &empty,
        &mut times,
    );
    report_with(&out, "pyn", "1");
    let boxed = report_with(&out, "pyc", "1");
    assert_eq!(
        boxed["hostname"], "pyc",
        "pyc runs in its container: {boxed}"
    );
    assert!(
        wait_for(LIMIT, || log_has(&firehose_log, "MemorySize 65535 KB")
            .then_some(()))
        .is_some()
    );

    // Parameters of a Python function (NoContainer) and of the container one.
    for name in ["pyn", "pyc"] {
        m.python.get_mut(name).expect("fn").0 = "2".into();
        s = deploy(
            &rd,
            &m,
            &Step {
                what: &format!("parameters of {name}"),
                changed: &[name],
            },
            &s,
            &mut times,
        );
        report_with(&out, name, "2");
    }
    // Parameters of the native pinned function: its environment shows the new value.
    m.native_v = "2".into();
    s = deploy(
        &rd,
        &m,
        &Step {
            what: "parameters of native",
            changed: &["recorder"],
        },
        &s,
        &mut times,
    );
    let environ = std::fs::read(format!("/proc/{}/environ", s["recorder"].1)).expect("environ");
    assert!(
        environ.split(|b| *b == 0).any(|kv| kv == b"V=2"),
        "recorder runs with V=2"
    );

    // Parameters of the container connector: no clash with its previous instance.
    m.firehose.1 = "70000".into();
    s = deploy(
        &rd,
        &m,
        &Step {
            what: "parameters of container connector",
            changed: &[FIREHOSE],
        },
        &s,
        &mut times,
    );
    assert!(
        wait_for(LIMIT, || log_has(&firehose_log, "MemorySize 70000 KB")
            .then_some(()))
        .is_some()
    );

    // Parameters of the NoContainer connector.
    m.heartbeat_interval = "20".into();
    s = deploy(
        &rd,
        &m,
        &Step {
            what: "parameters of NoContainer connector",
            changed: &[HEARTBEAT_NAME],
        },
        &s,
        &mut times,
    );

    // Version: KinesisFirehose 5 → 1 (the documented upgrade path, run backwards), with the
    // subscription rewritten to the new ARN.
    m.firehose.0 = 1;
    s = deploy(
        &rd,
        &m,
        &Step {
            what: "version of container connector",
            changed: &[FIREHOSE],
        },
        &s,
        &mut times,
    );
    assert_eq!(s[FIREHOSE].2, FIREHOSE_V1);

    // Isolation mode: pyn moves into a container.
    m.python.get_mut("pyn").expect("fn").1 = true;
    m.python.get_mut("pyn").expect("fn").0 = "3".into();
    s = deploy(
        &rd,
        &m,
        &Step {
            what: "isolation of pyn",
            changed: &["pyn"],
        },
        &s,
        &mut times,
    );
    assert_eq!(report_with(&out, "pyn", "3")["hostname"], "pyn");

    // Resource grant: pyc is granted the volume and sees it.
    m.python.get_mut("pyc").expect("fn").2 = true;
    m.python.get_mut("pyc").expect("fn").0 = "3".into();
    s = deploy(
        &rd,
        &m,
        &Step {
            what: "grant to pyc",
            changed: &["pyc"],
        },
        &s,
        &mut times,
    );
    assert_eq!(report_with(&out, "pyc", "3")["grant"], true);

    // Removal of the on-demand function; addition of a pinned one.
    m.on_demand = false;
    s = deploy(
        &rd,
        &m,
        &Step {
            what: "removal of on-demand",
            changed: &[],
        },
        &s,
        &mut times,
    );
    assert!(!s.contains_key("ondemand"));
    m.extra = true;
    s = deploy(
        &rd,
        &m,
        &Step {
            what: "addition of pinned",
            changed: &[],
        },
        &s,
        &mut times,
    );

    // A failing deployment: pyc changes and a function that never becomes ready is added.
    // Rolled back: everything untouched keeps its PID, pyc is back on V=3.
    let mut bad = m.clone();
    bad.stall = true;
    bad.python.get_mut("pyc").expect("fn").0 = "4".into();
    let file = rd.join("bad.json");
    std::fs::write(&file, bad.build().to_string()).expect("write");
    let out_bad = cli(&rd, &["deploy", &file.display().to_string()]);
    let t = text(&out_bad);
    assert_eq!(out_bad.status.code(), Some(1), "{t}");
    assert!(t.contains("rolled back to"), "{t}");
    let after = settled(&rd, &m.pinned(), &m.on_demand_names());
    for (name, (_, pid, _)) in &s {
        if name != "pyc" {
            assert_eq!(after[name].1, *pid, "rollback: {name} kept its process");
        }
    }
    let last = wait_for(LIMIT, || {
        let r = reports(&out, "pyc");
        r.last()
            .filter(|l| l["v"] == "3" && l["pid"] != Value::Null)
            .cloned()
            .filter(|_| r.iter().any(|x| x["v"] == "4"))
    });
    assert!(
        last.is_some(),
        "pyc ran V=4 during the deployment and V=3 after the rollback: {:?}",
        reports(&out, "pyc")
    );

    // A second runtime on the same root changes nothing.
    let second = Command::new(evergreen_bin())
        .args(["run", "--config"])
        .arg(rd.join("config.json"))
        .stdin(Stdio::null())
        .output()
        .expect("second runtime");
    assert!(
        !second.status.success(),
        "the second runtime must refuse: {}",
        text(&second)
    );
    let still = settled(&rd, &m.pinned(), &m.on_demand_names());
    for (name, (_, pid, _)) in &after {
        assert_eq!(
            still[name].1, *pid,
            "second runtime: {name} kept its process"
        );
    }

    // No instance of a container component was killed by a clash with its predecessor.
    let log = read(&runtime_log);
    assert!(
        !log.contains("killed by signal 9"),
        "a SIGKILL in the runtime log:\n{log}"
    );
    for (what, took) in &times {
        eprintln!("deploy wall time: {what}: {} ms", took.as_millis());
    }
}
