//! End-to-end: a container component cannot reach the host through the kernel (issue 18, "Host
//! root from a container"). A container component of a root runtime no longer runs as uid 0 by
//! default (it gets `nobody`); one whose group asks for uid 0 (`RunAs` 0 with
//! `allowFunctionsToRunAsRoot`) — the worst case, and the default before — is still contained.
//! Each way out reported there is tried from inside a real container by `eg-fn escape`, and
//! each must fail:
//!
//! * writing `kernel.core_pattern` (a pipe there runs a program on the host as root) and
//!   `vm.overcommit_memory`: `/proc/sys` is read-only in the container, as runc makes it;
//! * the SysRq trigger (read-only) and `/proc/kcore` (masked: reads nothing);
//! * `/proc` itself (read-only: `/proc/self/oom_score_adj` cannot be written);
//! * new namespaces — `unshare(CLONE_NEWUSER)`, `unshare(CLONE_NEWNS)`, `clone(CLONE_NEWUSER)` —
//!   a `mount`, and the kernel keyring (`keyctl`): refused by the seccomp filter.
//!
//! Writes that succeed would change nothing: the probe writes back the value it read.

use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `eg-fn escape` in a container (as `run_as`, if given) and returns its report.
fn escape_report(run_as: Option<u32>) -> Value {
    container_report("escape", run_as)
}

/// Runs `eg-fn COMMAND COMMAND/report` in a container (as `run_as`, if given) and returns the
/// report it publishes.
fn container_report(command: &str, run_as: Option<u32>) -> Value {
    let scratch = tempfile::tempdir().expect("tmp");
    let record = scratch.path().join("report.jsonl");
    let topic = format!("{command}/report");
    let mut prober = function("prober", &format!("{command} {topic}"));
    prober["FunctionConfiguration"]["MemorySize"] = json!(65536);
    let execution = &mut prober["FunctionConfiguration"]["Environment"]["Execution"];
    execution["IsolationMode"] = json!("GreengrassContainer");
    if let Some(id) = run_as {
        execution["RunAs"] = json!({ "Uid": id, "Gid": id });
    }
    let g = group(
        vec![
            prober,
            function("rec", &format!("record {}", record.display())),
        ],
        vec![sub("report", &fn_arn("prober"), &topic, &fn_arn("rec"))],
    );
    let _rt = Runtime::start_config(
        &g,
        &json!({ "runtime": { "allowFunctionsToRunAsRoot": "yes" } }),
        &[],
    );
    let report =
        wait_for(LIMIT, || records(&record).into_iter().next()).expect("the prober reported");
    let report: Value =
        serde_json::from_str(report["payload"].as_str().expect("payload")).expect("json");
    eprintln!("{command} report: {report:#}");
    report
}

/// Issue 28: the capability sets a jailed component really has (`/proc/self/status`) are the
/// plan the runtime computed with the `caps` crate before the fork, for uid 0 (which holds
/// every capability outside a container) as for another user.
#[test]
fn jailed_capabilities_are_the_computed_plan_as_root_and_as_another_user() {
    require_containers!();
    let plan = evergreen_runtime::sandbox::CapabilityPlan::container().masks();
    for run_as in [0, 65534] {
        let report = container_report("caps", Some(run_as));
        assert!(
            report["uid"]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("{run_as}\t"))),
            "runs as {run_as}: {report}"
        );
        for (field, mask) in [
            ("CapEff", plan.effective),
            ("CapPrm", plan.permitted),
            ("CapInh", plan.inheritable),
            ("CapBnd", plan.bounding),
            ("CapAmb", plan.ambient),
        ] {
            assert_eq!(
                report[field],
                format!("{mask:016x}"),
                "uid {run_as}: {field} is not the plan's"
            );
        }
    }
}

#[test]
fn a_container_component_without_run_as_is_not_root() {
    require_containers!();
    let report = escape_report(None);
    assert!(
        report["uid"]
            .as_str()
            .is_some_and(|u| u.starts_with("65534\t")),
        "nobody, not root: {report}"
    );
    let core_pattern = report["core_pattern"].as_str().unwrap_or_default();
    assert!(core_pattern.starts_with("error"), "{core_pattern}");
}

#[test]
fn a_uid_0_container_component_cannot_write_kernel_settings_or_make_namespaces() {
    require_containers!();
    let core_pattern_before = std::fs::read("/proc/sys/kernel/core_pattern").expect("read");
    let report = escape_report(Some(0));
    assert!(
        report["uid"].as_str().is_some_and(|u| u.starts_with("0\t")),
        "the threat is uid 0 in the container: {report}"
    );
    for attempt in [
        "core_pattern",
        "overcommit_memory",
        "sysrq_trigger",
        "kcore",
        "oom_score_adj",
        "unshare_user",
        "unshare_mount",
        "clone_newuser",
        "mount",
        "keyctl",
    ] {
        let got = report[attempt].as_str().unwrap_or("missing");
        assert!(
            got.starts_with("error"),
            "{attempt} must fail from a container, got {got:?}"
        );
    }
    for refused_by_seccomp in ["unshare_user", "unshare_mount", "clone_newuser", "keyctl"] {
        let got = report[refused_by_seccomp].as_str().unwrap_or_default();
        assert!(
            got.contains("Operation not permitted"),
            "{refused_by_seccomp}: EPERM from the filter, got {got:?}"
        );
    }
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").expect("read"),
        core_pattern_before,
        "the host's core_pattern is unchanged"
    );
}
