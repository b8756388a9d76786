//! End-to-end: deployments to a running runtime over the control socket.
//! Only what changed restarts, nothing sent to unchanged components is lost,
//! a version that does not come up is rolled back, reset and redeploy work,
//! and a runtime killed with SIGKILL comes back with the last good deployment.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

fn settings(rt_dir: &Path) -> Value {
    json!({ "controlSocket": rt_dir.join("control.sock"), "readinessTimeoutMs": 1500 })
}

/// Runs an `evergreen` subcommand against the runtime in `dir`.
fn cli(dir: &Path, args: &[&str]) -> Output {
    evergreen_with(&dir.join("config.json"), args)
}

fn text(out: &Output) -> String {
    output_text(out)
}

/// Component name → (state, pid), from `evergreen status --json`.
fn status(dir: &Path) -> Option<BTreeMap<String, (String, u64)>> {
    let out = cli(dir, &["status", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut map = BTreeMap::new();
    for c in doc["components"].as_array()? {
        map.insert(
            c["name"].as_str()?.to_string(),
            (
                c["state"].as_str()?.to_string(),
                c["pid"].as_u64().unwrap_or(0),
            ),
        );
    }
    Some(map)
}

fn all_running(dir: &Path, names: &[&str]) -> Option<BTreeMap<String, (String, u64)>> {
    wait_for(LIMIT, || {
        let s = status(dir)?;
        (s.len() == names.len()
            && names
                .iter()
                .all(|n| s.get(*n).is_some_and(|(st, _)| st == "Running")))
        .then_some(s)
    })
}

/// publisher -> recorder, plus an idle `x` whose variable `V` we change.
fn base_group(out: &Path, v: &str) -> Value {
    let mut g = group(
        vec![
            function("publisher", "publish data/n 100000 5"),
            function("recorder", &format!("record {}", out.display())),
            function("x", "record /dev/null"),
        ],
        vec![sub(
            "flow",
            &fn_arn("publisher"),
            "data/#",
            &fn_arn("recorder"),
        )],
    );
    g["FunctionDefinitionVersion"]["Functions"][2]["FunctionConfiguration"]["Environment"]
        ["Variables"] = json!({ "V": v });
    g
}

fn seqs(out: &Path) -> Vec<u64> {
    records(out)
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(r["payload"].as_str()?).ok()?["seq"].as_u64())
        .collect()
}

#[test]
fn a_changed_function_restarts_alone_and_unchanged_ones_lose_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("flow.jsonl");
    let rt = Runtime::start_with(&base_group(&out, "1"), &settings(dir.path()));
    let rd = rt.dir.path();
    let before = all_running(rd, &["publisher", "recorder", "x"]).expect("all running");
    assert!(wait_for(LIMIT, || (seqs(&out).len() > 20).then_some(())).is_some());

    let v2 = rd.join("v2.json");
    std::fs::write(&v2, base_group(&out, "2").to_string()).expect("write");
    let deployed = cli(rd, &["deploy", &v2.display().to_string()]);
    assert!(deployed.status.success(), "{}", text(&deployed));
    assert!(text(&deployed).contains("Success"), "{}", text(&deployed));

    let after = all_running(rd, &["publisher", "recorder", "x"]).expect("all running");
    assert_eq!(
        after["publisher"].1, before["publisher"].1,
        "unchanged: same process"
    );
    assert_eq!(
        after["recorder"].1, before["recorder"].1,
        "unchanged: same process"
    );
    assert_ne!(after["x"].1, before["x"].1, "changed: restarted");

    // Every message published across the deployment reached the recorder.
    let n = seqs(&out).len();
    assert!(wait_for(LIMIT, || (seqs(&out).len() > n + 20).then_some(())).is_some());
    let got = seqs(&out);
    let expected: Vec<u64> = (0..got.len() as u64).collect();
    assert_eq!(got, expected, "a gap or duplicate in the sequence");

    // The history names it; reset stops everything; redeploy brings it back.
    let history = text(&cli(rd, &["deployments"]));
    assert!(
        history.contains("NewDeployment") && history.contains("Success"),
        "{history}"
    );
    let id = history
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a deployment id")
        .to_string();
    // A script confirms with --yes: without a terminal, `reset` alone refuses.
    let reset = cli(rd, &["reset", "--yes"]);
    assert!(reset.status.success(), "{}", text(&reset));
    assert!(
        wait_for(LIMIT, || status(rd).filter(|s| s.is_empty())).is_some(),
        "reset stops all"
    );
    let redeploy = cli(rd, &["redeploy", &id]);
    assert!(redeploy.status.success(), "{}", text(&redeploy));
    assert!(all_running(rd, &["publisher", "recorder", "x"]).is_some());
    let history = text(&cli(rd, &["deployments", "--json"]));
    for kind in ["ResetDeployment", "Redeployment", "NewDeployment"] {
        assert!(history.contains(kind), "{history}");
    }
}

#[test]
fn a_version_that_never_becomes_ready_is_rolled_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("flow.jsonl");
    let rt = Runtime::start_with(&base_group(&out, "1"), &settings(dir.path()));
    let rd = rt.dir.path();
    let before = all_running(rd, &["publisher", "recorder", "x"]).expect("running");

    let mut bad = base_group(&out, "1");
    bad["FunctionDefinitionVersion"]["Functions"]
        .as_array_mut()
        .expect("functions")
        .push(function("staller", "stall"));
    let file = rd.join("bad.json");
    std::fs::write(&file, bad.to_string()).expect("write");
    let deployed = cli(rd, &["deploy", &file.display().to_string()]);
    let t = text(&deployed);
    assert_eq!(deployed.status.code(), Some(1), "{t}");
    assert!(t.contains("Failure"), "{t}");
    assert!(t.contains("staller") && t.contains("rolled back to"), "{t}");

    let after = all_running(rd, &["publisher", "recorder", "x"]).expect("previous group runs");
    assert_eq!(
        after, before,
        "the previous components kept running, same processes"
    );
    let history = text(&cli(rd, &["deployments", "--json"]));
    assert!(history.contains("\"RolledBack\": true"), "{history}");
}

#[test]
fn sigkill_then_start_restores_the_last_good_deployment() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("flow.jsonl");
    let mut rt = Runtime::start_with(&base_group(&out, "1"), &settings(dir.path()));
    let rd = rt.dir.path().to_path_buf();
    all_running(&rd, &["publisher", "recorder", "x"]).expect("running");
    let mut next = base_group(&out, "1");
    next["FunctionDefinitionVersion"]["Functions"]
        .as_array_mut()
        .expect("functions")
        .push(function("newcomer", "record /dev/null"));
    let file = rd.join("next.json");
    std::fs::write(&file, next.to_string()).expect("write");
    let deployed = cli(&rd, &["deploy", &file.display().to_string()]);
    assert!(deployed.status.success(), "{}", text(&deployed));

    rt.stop_with(Signal::SIGKILL, LIMIT).expect("killed");
    // Same configuration and root, no --group: the last good deployment returns.
    rt.child = Command::new(evergreen_bin())
        .arg("run")
        .arg("--config")
        .arg(rd.join("config.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restart");
    let back = all_running(&rd, &["publisher", "recorder", "x", "newcomer"]);
    assert!(
        back.is_some(),
        "status: {:?}\n{}",
        status(&rd),
        read(&rt.log_path("system/runtime.log"))
    );
    assert!(read(&rt.log_path("system/runtime.log")).contains("(the last good deployment)"));
}
