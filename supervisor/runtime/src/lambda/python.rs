//! Evergreen's Python support files for Greengrass V1 functions, embedded in
//! the binary and written to `<root>/runtime/python/` at start, and the
//! command line and environment a Python function's child gets.
//!
//! The files (under `supervisor/runtime/python/`) are Evergreen's own code: the two
//! modules `greengrasssdk` imports but does not ship (`greengrass_common`,
//! `greengrass_ipc_python_sdk.ipc_client`), the service-call facade V1's ML
//! SDK imports (`greengrass_ipc_python_sdk.ipc_facade`) and the runtime loop
//! `evergreen_lambda_runtime.py`. They are rewritten at every start so an
//! upgrade never runs stale copies.

use std::ffi::OsString;
use std::path::Path;

use super::{LambdaHub, MAX_INTERFACE_VERSION, ROUTER_ARN, SECRETS_ARN, SHADOW_ARN};

/// The runtime loop's file name inside the runtime directory.
pub(crate) const RUNTIME_SCRIPT: &str = "evergreen_lambda_runtime.py";

/// Every embedded file: relative path and text.
pub(crate) const FILES: &[(&str, &str)] = &[
    (
        "greengrass_common/__init__.py",
        include_str!("../../python/greengrass_common/__init__.py"),
    ),
    (
        "greengrass_common/env_vars.py",
        include_str!("../../python/greengrass_common/env_vars.py"),
    ),
    (
        "greengrass_common/function_arn_fields.py",
        include_str!("../../python/greengrass_common/function_arn_fields.py"),
    ),
    (
        "greengrass_ipc_python_sdk/__init__.py",
        include_str!("../../python/greengrass_ipc_python_sdk/__init__.py"),
    ),
    (
        "greengrass_ipc_python_sdk/ipc_client.py",
        include_str!("../../python/greengrass_ipc_python_sdk/ipc_client.py"),
    ),
    (
        "greengrass_ipc_python_sdk/ipc_facade.py",
        include_str!("../../python/greengrass_ipc_python_sdk/ipc_facade.py"),
    ),
    (
        RUNTIME_SCRIPT,
        include_str!("../../python/evergreen_lambda_runtime.py"),
    ),
];

/// Writes the support files under `dir` (created if needed), world-readable
/// so functions running as another user can import them.
pub fn install(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // The Node.js functions' files live beside these (`node/`).
    for (relative, text) in FILES.iter().chain(super::node::FILES) {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
        }
        // Write-then-rename: a function starting meanwhile never imports a
        // half-written file.
        evergreen_durable::write_atomic(&path, text.as_bytes(), evergreen_durable::Mode::Public)?;
    }
    Ok(())
}

/// The interpreter every Python function runs on: the gateway's `python3`
/// (from `PATH`), whatever `Runtime` says. Greengrass V1 offered
/// `python3.7` and `python3.8`; their functions run on any newer Python 3,
/// and version-named programs are unreliable (pyenv shims exist for
/// versions that are not installed).
pub(crate) const INTERPRETER: &str = "python3";

/// The interpreter for a function in a container, where only the system
/// directories are bound: the first `python3` on `PATH` under `/usr` or
/// `/bin` (a pyenv or venv one under `/root` or `/opt` would not be there),
/// else `/usr/bin/python3`.
pub(crate) fn container_interpreter(path_var: Option<&std::ffi::OsStr>) -> std::path::PathBuf {
    path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.starts_with("/usr") || dir.starts_with("/bin"))
        .map(|dir| dir.join(INTERPRETER))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| std::path::PathBuf::from("/usr/bin/python3"))
}

/// What a Python function's child needs beyond the common environment.
#[derive(Debug, Clone)]
pub(crate) struct PythonLaunch<'a> {
    pub handler: &'a str,
    pub code: &'a Path,
    pub binary: bool,
    pub timeout_ms: u64,
    pub token: &'a str,
}

/// The environment variables of the contract (§1.2) plus Evergreen's own.
pub(crate) fn environment(hub: &LambdaHub, launch: &PythonLaunch<'_>) -> Vec<(OsString, OsString)> {
    let mut python_path = OsString::from(hub.runtime_dir().as_os_str());
    python_path.push(":");
    python_path.push(launch.code.as_os_str());
    let mut pairs = link_environment(hub, launch);
    pairs.extend([
        ("EVERGREEN_HANDLER", launch.handler.into()),
        ("PYTHONPATH", python_path),
        // Lines reach the log as they are written, not at exit.
        ("PYTHONUNBUFFERED", "1".into()),
    ]);
    pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()
}

/// What every worker of the lambda link gets (Python and native): the contract's variables
/// (§1.2) and the function's timeout.
pub(crate) fn link_environment(
    hub: &LambdaHub,
    launch: &PythonLaunch<'_>,
) -> Vec<(&'static str, OsString)> {
    let mut pairs = vec![
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", launch.token.into()),
        // The token exchange (Greengrass V1's GGTES): boto3 fetches the
        // core's credentials from the endpoint with the token above.
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            super::credentials::full_uri(hub.port()).into(),
        ),
        ("GG_DAEMON_PORT", hub.port().to_string().into()),
        ("ROUTER_FUNCTION_ARN", ROUTER_ARN.into()),
        ("SHADOW_FUNCTION_ARN", SHADOW_ARN.into()),
        ("SECRETS_MANAGER_FUNCTION_ARN", SECRETS_ARN.into()),
        ("GGC_MAX_INTERFACE_VERSION", MAX_INTERFACE_VERSION.into()),
        (
            "ENCODING_TYPE",
            if launch.binary { "binary" } else { "json" }.into(),
        ),
        (
            "EVERGREEN_FUNCTION_TIMEOUT_MS",
            launch.timeout_ms.to_string().into(),
        ),
    ];
    if let Some(port) = hub.stream_manager_port() {
        // The SDK's StreamManagerClient reads it (default 8088).
        pairs.push(("STREAM_MANAGER_SERVER_PORT", port.to_string().into()));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_use_a_system_python() {
        let path = std::ffi::OsString::from("/root/.pyenv/shims:/nonexistent/usr:/usr/bin");
        let got = container_interpreter(Some(&path));
        assert!(got.starts_with("/usr"), "{}", got.display());
        assert_eq!(
            container_interpreter(None),
            std::path::PathBuf::from("/usr/bin/python3")
        );
    }

    #[test]
    fn files_install_and_overwrite() {
        let dir = tempfile::tempdir().expect("tmp");
        install(dir.path()).expect("install");
        install(dir.path()).expect("again");
        for (relative, text) in FILES.iter().chain(crate::lambda::node::FILES) {
            let got = std::fs::read_to_string(dir.path().join(relative)).expect("read");
            assert_eq!(&got, text);
        }
    }
}
