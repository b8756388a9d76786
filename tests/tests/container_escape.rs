//! End-to-end: a container component running as uid 0 (the default of a root runtime without
//! `RunAs` or `defaultRunAs`) cannot reach the host through the kernel (issue 18, "Host root
//! from a container"). Each way out reported there is tried from inside a real container by
//! `eg-fn escape`, and each must fail:
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

#[test]
fn a_uid_0_container_component_cannot_write_kernel_settings_or_make_namespaces() {
    require_containers!();
    let scratch = tempfile::tempdir().expect("tmp");
    let record = scratch.path().join("escape.jsonl");
    let mut prober = function("prober", "escape escape/report");
    prober["FunctionConfiguration"]["MemorySize"] = json!(65536);
    prober["FunctionConfiguration"]["Environment"]["Execution"]["IsolationMode"] =
        json!("GreengrassContainer");
    let g = group(
        vec![
            prober,
            function("rec", &format!("record {}", record.display())),
        ],
        vec![sub(
            "report",
            &fn_arn("prober"),
            "escape/report",
            &fn_arn("rec"),
        )],
    );
    let core_pattern_before = std::fs::read("/proc/sys/kernel/core_pattern").expect("read");
    let _rt = Runtime::start(&g);
    let report =
        wait_for(LIMIT, || records(&record).into_iter().next()).expect("the prober reported");
    let report: Value =
        serde_json::from_str(report["payload"].as_str().expect("payload")).expect("json");
    eprintln!("escape report: {report:#}");
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
