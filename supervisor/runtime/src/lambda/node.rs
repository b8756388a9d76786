//! Evergreen's Node.js support files for Greengrass V1 Node.js functions (`Runtime`
//! `nodejs12.x`, `nodejs8.10`, …), embedded in the binary and written beside the Python ones
//! (`<root>/runtime/python/node/`, see [`super::python::install`]), and what a Node.js
//! function's child runs.
//!
//! The files (under `supervisor/runtime/node/`) are Evergreen's own code: the two modules
//! `aws-greengrass-core-sdk` (npm) requires but does not ship (`aws-greengrass-common-js`,
//! `aws-greengrass-ipc-sdk-js`, found through `NODE_PATH`) and the runtime loop
//! `evergreen_lambda_runtime.js`. The function ships the SDK itself in its own
//! `node_modules`, as V1 users deployed it. Everything else (the endpoint, tokens, workers,
//! `Timeout`) is the same as for Python functions: only the program differs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The Node.js files' directory inside the runtime directory.
pub(crate) const DIR: &str = "node";
/// The runtime loop's file name inside [`DIR`].
pub(crate) const RUNTIME_SCRIPT: &str = "evergreen_lambda_runtime.js";

/// Every embedded file: path relative to the runtime directory, and text.
pub(crate) const FILES: &[(&str, &str)] = &[
    (
        "node/node_modules/aws-greengrass-common-js/index.js",
        include_str!("../../node/aws-greengrass-common-js/index.js"),
    ),
    (
        "node/node_modules/aws-greengrass-ipc-sdk-js/index.js",
        include_str!("../../node/aws-greengrass-ipc-sdk-js/index.js"),
    ),
    (
        "node/evergreen_lambda_runtime.js",
        include_str!("../../node/evergreen_lambda_runtime.js"),
    ),
];

/// Whether a function's `Runtime` is a Node.js one (`nodejs12.x`, `nodejs8.10`, …).
pub fn is_node(runtime: &str) -> bool {
    runtime.starts_with("nodejs")
}

/// The program every Node.js function runs on: the gateway's `node` (from `PATH`),
/// whatever version `Runtime` names (V1's nodejs8.10 and nodejs12.x code runs on newer Node.js).
pub(crate) const INTERPRETER: &str = "node";

/// The program for a function in a container, where only the system directories are bound:
/// the first `node` on `PATH` under `/usr` or `/bin`, else `/usr/bin/node`.
pub(crate) fn container_interpreter(path_var: Option<&std::ffi::OsStr>) -> PathBuf {
    path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.starts_with("/usr") || dir.starts_with("/bin"))
        .map(|dir| dir.join(INTERPRETER))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/node"))
}

/// The runtime loop's path under the runtime directory.
pub(crate) fn script(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(DIR).join(RUNTIME_SCRIPT)
}

/// What a Node.js function's child gets beyond the Python functions' environment: where the
/// core's modules are (`NODE_PATH`) and the function's directory the handler is loaded from.
pub(crate) fn environment(runtime_dir: &Path, code: &Path) -> Vec<(OsString, OsString)> {
    vec![
        (
            "NODE_PATH".into(),
            runtime_dir.join(DIR).join("node_modules").into_os_string(),
        ),
        ("EVERGREEN_CODE_DIR".into(), code.as_os_str().to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_runtimes_are_recognised() {
        assert!(is_node("nodejs12.x"));
        assert!(is_node("nodejs8.10"));
        assert!(!is_node("python3.8"));
    }
}
