//! End-to-end: one runtime per root (issue 17). A second `evergreen run` on
//! the root of a running one (`sudo evergreen run` beside the service) used to
//! take the first one's container cgroups for leftovers and kill its
//! components, then fail on a database lock. Now it finds the root locked
//! before it touches anything, says which PID holds it, and exits 75; the
//! first runtime's components keep their processes and keep working.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

/// `evergreen status --json` of the runtime whose files are in `dir`.
fn status(dir: &Path) -> Option<Value> {
    let out = Command::new(evergreen_bin())
        .args(["status", "--json", "--config"])
        .arg(dir.join("config.json"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Name -> (state, pid, restarts) once all `n` components run with a pid.
fn running(dir: &Path, n: usize) -> Option<BTreeMap<String, (String, u64, u64)>> {
    let doc = status(dir)?;
    let mut map = BTreeMap::new();
    for c in doc["components"].as_array()? {
        map.insert(
            c["name"].as_str()?.to_string(),
            (
                c["state"].as_str()?.to_string(),
                c["pid"].as_u64()?,
                c["restarts"].as_u64()?,
            ),
        );
    }
    (map.len() == n && map.values().all(|(state, _, _)| state == "Running")).then_some(map)
}

fn feed(file: &Path, topic: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("feed file");
    f.write_all(format!("{}\n", json!({ "topic": topic, "payload": "x" })).as_bytes())
        .expect("feed");
}

fn arrived(file: &Path, topic: &str) -> bool {
    records(file).iter().any(|r| r["topic"] == topic)
}

#[test]
fn a_second_runtime_on_the_same_root_exits_75_naming_the_first_pid_and_touches_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("feed.jsonl");
    let out = dir.path().join("out.jsonl");
    let mut boxed = function("boxed", "echo out");
    match containers_unavailable() {
        None => {
            boxed["FunctionConfiguration"]["Environment"]["Execution"]["IsolationMode"] =
                json!("GreengrassContainer")
        }
        // The lock matters without containers too; the cgroup clean-up it
        // guards against is what this host cannot show.
        Some(why) => eprintln!(
            "NOTE: container mode unavailable ({why}); the middle component runs NoContainer"
        ),
    }
    let g = group(
        vec![
            function("feeder", &format!("feed {}", input.display())),
            boxed,
            function("recorder", &format!("record {}", out.display())),
        ],
        vec![
            sub("in", &fn_arn("feeder"), "in/#", &fn_arn("boxed")),
            sub("out", &fn_arn("boxed"), "out/#", &fn_arn("recorder")),
        ],
    );
    let rt = Runtime::start(&g);
    let before = wait_for(LIMIT, || running(rt.dir.path(), 3))
        .unwrap_or_else(|| panic!("every component Running: {:?}", status(rt.dir.path())));
    let flowing = wait_for(LIMIT, || {
        feed(&input, "in/first");
        wait_for(Duration::from_millis(500), || {
            arrived(&out, "out/in/first").then_some(())
        })
    });
    assert!(flowing.is_some(), "feeder -> boxed -> recorder");
    let system_log = rt.log_path("system/runtime.log");
    // The first runtime's own last start-up line ("start-up over", written once every
    // component left Starting) must be in before the log is taken as it was.
    let settled = wait_for(LIMIT, || {
        let log = read(&system_log);
        (log.contains("start-up over") || log.contains("cannot unmap the start-up code"))
            .then_some(())
    });
    assert!(
        settled.is_some(),
        "the first runtime never finished its start-up"
    );
    let log_before = read(&system_log);

    // The second runtime: same configuration, same root, same group.
    let mut second = Command::new(evergreen_bin())
        .arg("run")
        .arg("--config")
        .arg(rt.path("config.json"))
        .arg("--group")
        .arg(rt.path("group.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the second runtime");
    let exited = wait_for(LIMIT, || second.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = second.kill();
    }
    let output = second.wait_with_output().expect("second runtime output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        exited.is_some(),
        "the second runtime kept running: {stderr}"
    );
    assert_eq!(output.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("another evergreen runtime")
            && stderr.contains(&format!("(pid {})", rt.pid()))
            && stderr.contains("evergreen.lock"),
        "names the first runtime's pid: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The first runtime's components: same processes, never restarted, working.
    let after = running(rt.dir.path(), 3).expect("still all Running");
    assert_eq!(after, before, "pids, states and restarts unchanged");
    for (name, (_, pid, _)) in &after {
        assert!(
            alive(i32::try_from(*pid).expect("pid")),
            "{name} pid {pid} is gone"
        );
    }
    feed(&input, "in/second");
    let still = wait_for(LIMIT, || arrived(&out, "out/in/second").then_some(()));
    assert!(
        still.is_some(),
        "messages still flow through the first runtime"
    );
    // Nothing of the second runtime reached the first one's log.
    let log_after = read(&system_log);
    assert!(log_after.starts_with(&log_before), "log rewritten");
    let added = &log_after[log_before.len()..];
    assert!(
        !added.contains("left by a previous run") && !added.contains("evergreen::run:"),
        "{added}"
    );
}
