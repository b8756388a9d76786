//! End-to-end: restart policies and the crash-loop limit, with the real
//! binary and short backoffs from the configuration (no long sleeps).

use std::time::Duration;

use evergreen_tests::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(20);

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_crash_loop_ends_failed_with_the_backoff_in_the_log() {
    let rt = Runtime::start_with(
        &group(vec![function("crasher", "exit 10 3")], vec![]),
        &json!({ "restart": { "crashLoopLimit": 3, "crashLoopWindowMs": 60000, "failedCooldownMs": 600000 } }),
    );
    let log = rt.function_log("crasher");
    let failed = wait_for(LIMIT, || read(&log).contains("marked Failed").then_some(()));
    let text = read(&log);
    assert!(failed.is_some(), "crasher log:\n{text}");
    assert!(
        text.contains("crash loop: 3 failures within 60 s; marked Failed, next attempt in 600 s"),
        "{text}"
    );
    assert_eq!(
        count(&text, "started pid"),
        3,
        "three starts, then no more: {text}"
    );
    // The backoff between them is visible and grows (50 ms, then ~100 ms).
    assert_eq!(count(&text, "restarting in"), 2, "{text}");
}

#[test]
fn policy_never_leaves_an_exited_component_stopped() {
    let rt = Runtime::start_with(
        &group(
            vec![
                function("once", "exit 10 3"),
                function("other", "exit 10 3"),
            ],
            vec![],
        ),
        // Overrides by Id and by ARN; `other` keeps the default policy.
        &json!({ "components": { "once": { "restart": { "policy": "never" } } } }),
    );
    let log = rt.function_log("once");
    let stopped = wait_for(LIMIT, || read(&log).contains("not restarted").then_some(()));
    let text = read(&log);
    assert!(stopped.is_some(), "{text}");
    assert!(
        text.contains("not restarted: its restart policy is never"),
        "{text}"
    );
    // Meanwhile `other` (policy always) restarted; by then `once` would have too.
    let other = rt.function_log("other");
    assert!(
        wait_for(LIMIT, || (count(&read(&other), "started pid") >= 3)
            .then_some(()))
        .is_some()
    );
    assert_eq!(count(&read(&log), "started pid"), 1, "{}", read(&log));
}

#[test]
fn policy_on_failure_restarts_crashes_but_not_clean_exits() {
    let on_failure = json!({ "restart": { "policy": "on-failure" } });
    let arn = fn_arn("crashes");
    let rt = Runtime::start_with(
        &group(
            vec![
                function("clean", "exit 10 0"),
                function("crashes", "exit 10 4"),
            ],
            vec![],
        ),
        &json!({ "components": { "clean": on_failure, arn: on_failure } }),
    );
    let clean = rt.function_log("clean");
    let crashes = rt.function_log("crashes");
    assert!(wait_for(LIMIT, || read(&clean)
        .contains("not restarted")
        .then_some(()))
    .is_some());
    assert!(
        read(&clean).contains(
            "not restarted: it exited with status 0 and its restart policy is on-failure"
        ),
        "{}",
        read(&clean)
    );
    assert!(
        wait_for(LIMIT, || (count(&read(&crashes), "started pid") >= 3)
            .then_some(()))
        .is_some()
    );
    assert!(read(&crashes).contains("exited with status 4"));
    assert_eq!(count(&read(&clean), "started pid"), 1);
}

#[test]
fn policy_always_restarts_a_clean_exit_too() {
    let rt = Runtime::start(&group(vec![function("done", "exit 10 0")], vec![]));
    let log = rt.function_log("done");
    let seen = wait_for(LIMIT, || {
        (count(&read(&log), "started pid") >= 3).then_some(())
    });
    assert!(seen.is_some(), "{}", read(&log));
    assert!(read(&log).contains("exited with status 0"));
    assert!(
        !read(&log).contains("marked Failed"),
        "clean exits are not crashes"
    );
}

#[test]
fn an_operator_restart_revives_a_failed_component_and_restarts_a_running_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let socket = dir.path().join("control.sock");
    let rt = Runtime::start_with(
        &group(
            vec![
                function("crasher", "exit 10 3"),
                function("steady", "record /dev/null"),
            ],
            vec![],
        ),
        &json!({
            "controlSocket": socket,
            "restart": { "crashLoopLimit": 2, "crashLoopWindowMs": 60000, "failedCooldownMs": 600000 }
        }),
    );
    let log = rt.function_log("crasher");
    assert!(wait_for(LIMIT, || read(&log).contains("marked Failed").then_some(())).is_some());
    let restart = |name: &str| {
        std::process::Command::new(evergreen_bin())
            .args(["restart", name, "--socket"])
            .arg(&socket)
            .output()
            .expect("run evergreen restart")
    };
    let out = restart("crasher");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("started (was Failed)"), "{said}");
    assert!(
        wait_for(LIMIT, || (count(&read(&log), "started pid") >= 3)
            .then_some(()))
        .is_some(),
        "{}",
        read(&log)
    );
    assert!(read(&log).contains("restarted by an operator (was Failed)"));

    let steady = rt.function_log("steady");
    assert!(wait_for(LIMIT, || read(&steady)
        .contains("ready after")
        .then_some(()))
    .is_some());
    let out = restart("steady");
    assert!(out.status.success());
    let restarted = wait_for(LIMIT, || {
        (count(&read(&steady), "ready after") >= 2).then_some(())
    });
    assert!(restarted.is_some(), "{}", read(&steady));
    assert!(
        !read(&steady).contains("restarting in"),
        "a graceful restart, not a failure"
    );

    let out = restart("nobody");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no component named \"nobody\""));
}

/// Issue 17: `evergreen restart --json` ignored `--json` and printed text.
/// It prints the answer as a JSON object with the component's ARN and what
/// the runtime did.
#[test]
fn restart_with_json_prints_the_answer_as_json() {
    let rt = Runtime::start(&group(vec![function("steady", "record /dev/null")], vec![]));
    let steady = rt.function_log("steady");
    let ready = wait_for(LIMIT, || {
        read(&steady).contains("ready after").then_some(())
    });
    assert!(ready.is_some(), "{}", read(&steady));
    let out = std::process::Command::new(evergreen_bin())
        .args(["restart", "steady", "--json", "--config"])
        .arg(rt.path("config.json"))
        .output()
        .expect("run evergreen restart --json");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(doc["arn"], fn_arn("steady"), "{doc}");
    assert_eq!(
        doc["message"], "stopping gracefully, then starting again",
        "{doc}"
    );
    let restarted = wait_for(LIMIT, || {
        (count(&read(&steady), "ready after") >= 2).then_some(())
    });
    assert!(restarted.is_some(), "{}", read(&steady));
}
