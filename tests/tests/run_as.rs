//! End-to-end: components without a `RunAs` of their own run as the
//! configured default identity (`evergreen.defaultRunAs`), not as the
//! runtime's. Switching identity needs root: without it the test says so
//! and skips.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use evergreen_tests::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(20);

/// `Uid:` (real) of a process, from /proc.
fn uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

#[test]
fn components_run_as_the_default_identity() {
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("SKIPPED components_run_as_the_default_identity: needs root to switch identity");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("SKIPPED components_run_as_the_default_identity: no user nobody here");
        return;
    };
    // The function's program must be reachable by that user: copy it into a
    // directory anyone may traverse (the checkout may live under /root).
    let bin_dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let program = bin_dir.path().join("eg-fn");
    std::fs::copy(eg_fn_bin(), &program).expect("copy eg-fn");
    let mut f = function("lowly", "record /dev/null");
    f["FunctionConfiguration"]["Executable"] = json!(program);
    let rt = Runtime::start_with(
        &group(vec![f], vec![]),
        &json!({ "defaultRunAs": { "user": "nobody" } }),
    );
    let log = rt.function_log("lowly");
    let ready = wait_for(LIMIT, || read(&log).contains("ready after").then_some(()));
    assert!(ready.is_some(), "{}", read(&log));
    let kids = children_of(rt.pid());
    assert_eq!(kids.len(), 1, "{kids:?}");
    assert_eq!(
        uid_of(kids[0]),
        Some(nobody.uid.as_raw()),
        "the child runs as nobody"
    );
    assert_eq!(uid_of(rt.pid()), Some(0), "the runtime stays root");
}
