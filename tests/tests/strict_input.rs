//! End-to-end: group and configuration files in a lenient JSON form are refused by every
//! command that reads them (issue 18, "group and config parsers refuse the sequence form of
//! objects and other serde leniencies"). serde alone reads a struct from an array of its
//! members in declaration order, so the group below was a valid function (`Executable`,
//! `ExecArgs`, `Pinned`, … taken by position) and ran; now `validate`, `run --group` and
//! `deploy` refuse it with a non-zero exit and the line naming the place, and a running
//! runtime keeps its group.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

/// The line every command prints for the group below.
const GROUP_ERROR: &str = "$.FunctionDefinitionVersion.Functions[0] (Id \"f\").FunctionConfiguration: must be an object {…} (FunctionConfiguration), not a list [ … ]";

/// A group whose one function's configuration is an array: its members in the order of the
/// API's `FunctionConfiguration` (EncodingType, Environment, ExecArgs, Executable, MemorySize,
/// Pinned, Timeout).
fn group_in_array_form() -> Value {
    let mut g = group(vec![function("f", "record /dev/null")], vec![]);
    let f = &mut g["FunctionDefinitionVersion"]["Functions"][0];
    f["FunctionConfiguration"] = json!([
        "json",
        { "Execution": { "IsolationMode": "NoContainer" } },
        "record /dev/null",
        eg_fn_bin(),
        16384,
        true,
        3
    ]);
    g
}

/// The lines of `text` that report something (not blank).
fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Runs `evergreen run` to its end (killed after [`LIMIT`]); `None` if it kept running.
fn run_to_end(config: &Path, group: &Path) -> Option<std::process::Output> {
    let mut child = Command::new(evergreen_bin())
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--group")
        .arg(group)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start evergreen run");
    let ended = wait_for(LIMIT, || child.try_wait().ok().flatten());
    if ended.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    child.wait_with_output().ok()
}

#[test]
fn a_group_with_an_array_for_an_object_is_refused_by_validate_run_and_deploy() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, group_in_array_form().to_string()).expect("write group");
    let config = dir.path().join("config.json");
    std::fs::write(&config, test_config(&dir.path().join("root")).to_string()).expect("write");

    // validate: exit 1, the heading and the one error.
    let out = evergreen_with(&config, &["validate", &bad.display().to_string()]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(GROUP_ERROR), "{text}");
    assert_eq!(
        lines(&text).iter().filter(|l| l.contains("$.")).count(),
        1,
        "one error line: {text}"
    );

    // run --group: refused before anything starts, with the line on stderr.
    let out = run_to_end(&config, &bad).expect("evergreen run --group exits");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("evergreen: invalid group") && l.contains(GROUP_ERROR)),
        "one line names the group and the place: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");

    // deploy to a running runtime: refused, and the running group stays as it was.
    let out_file = dir.path().join("seen.jsonl");
    let good = group(
        vec![function(
            "keeper",
            &format!("record {}", out_file.display()),
        )],
        vec![],
    );
    let rt = Runtime::start(&good);
    let rt_config = rt.path("config.json");
    let pid_of_keeper = || {
        let out = evergreen_with(&rt_config, &["status", "--json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
        let c = doc["components"].as_array()?.first()?.clone();
        (c["name"] == "keeper" && c["state"] == "Running").then(|| c["pid"].as_u64())?
    };
    let before = wait_for(LIMIT, pid_of_keeper).expect("the good group runs");
    let history = || output_text(&evergreen_with(&rt_config, &["deployments", "--json"]));
    let history_before = history();
    let out = evergreen_with(&rt_config, &["deploy", &bad.display().to_string()]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(GROUP_ERROR), "{text}");
    assert_eq!(
        pid_of_keeper(),
        Some(before),
        "the running group was touched"
    );
    assert_eq!(history(), history_before, "a deployment was recorded");
}

#[test]
fn a_configuration_with_an_array_for_a_section_is_refused_by_validate_and_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("group.json");
    std::fs::write(&good, group(vec![], vec![]).to_string()).expect("write group");
    let mut config = test_config(&dir.path().join("root"));
    // Taken by position, this set the default identity of components to root.
    config["evergreen"]["defaultRunAs"] = json!(["root", "root"]);
    let bad = dir.path().join("config.json");
    std::fs::write(&bad, config.to_string()).expect("write config");

    let out = evergreen_with(&bad, &["validate", &good.display().to_string()]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(
        text.contains("at evergreen.defaultRunAs: expected an object, found an array"),
        "{text}"
    );
    assert_eq!(lines(&text).len(), 1, "one line: {text}");

    let out = run_to_end(&bad, &good).expect("evergreen run exits");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(
        text.contains("evergreen.defaultRunAs: expected an object, found an array"),
        "{text}"
    );
}
