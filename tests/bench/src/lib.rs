//! What every benchmark binary shares: the build hint, the check that the
//! programs a bench runs are built, and the configuration that keeps a
//! bench's runtime off fixed ports. The benches report; they assert nothing,
//! and nothing here may make one fail silently.
//!
//! The test harness itself (starting `evergreen run`, group builders, moto)
//! stays in `evergreen_tests`, which the integration tests also use. Here are
//! only what several benches share beyond it: the MQTT 3.1.1 packets of the
//! benches' own clients ([`mqtt`]), mosquitto as the upstream broker with
//! persistence ([`mosquitto`]), what `eg-soak` counts ([`soak`]),
//! `eg-mqtt-bench`'s cases and brokers ([`mqtt_bench`]) and `eg-lambda-bench`'s C functions
//! ([`lambda_c`]).

pub mod lambda_c;
pub mod mosquitto;
pub mod mqtt;
pub mod mqtt_bench;
pub mod soak;

use std::path::{Path, PathBuf};

use evergreen_tests::Runtime;
use serde_json::{json, Value};

/// The one command that builds everything a bench runs: the runtime, the
/// tests' `eg-fn` function (a binary of `evergreen-tests`, which a bench's
/// build does not produce by itself) and the benches.
pub const BUILD: &str = "cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench";

/// The program `name` next to this executable (`target/<profile>/`), or
/// which one is missing and the command that builds it.
pub fn require_bin(name: &str) -> Result<PathBuf, String> {
    evergreen_tests::find_bin(name)
        .map_err(|_| format!("{name} is not built next to this bench: run `{BUILD}`"))
}

/// A configuration patch (for `Runtime::start_config`, or merged over
/// `test_config`) that puts every listener the runtime opens by default on
/// a port nobody holds: the Lambda IPC endpoint (`coreThing.ggDaemonPort`,
/// 8000 by default, bound on every start) gets a free port read back from a
/// port-0 bind, because the runtime takes no 0 there; the MQTT TLS listener
/// (8883, bound when the root has certificates) gets 0. Other processes on
/// the machine may hold the defaults, and two benches may run at once.
pub fn free_ports() -> Result<Value, String> {
    let daemon = evergreen_tests::free_port()
        .ok_or("cannot bind a loopback port to find a free one for coreThing.ggDaemonPort")?;
    Ok(json!({
        "coreThing": { "ggDaemonPort": daemon },
        "evergreen": { "listeners": { "mqttTls": { "port": 0 } } }
    }))
}

/// `patch` with [`free_ports`] merged over it (the patch's own ports win,
/// e.g. a bench that enables the plain MQTT listener on port 0).
pub fn with_free_ports(patch: &Value) -> Result<Value, String> {
    let mut out = free_ports()?;
    evergreen_tests::merge(&mut out, patch);
    Ok(out)
}

/// `Runtime::start_config` (a temporary root, the tests' configuration with
/// `patch` merged over it) with [`free_ports`] under `patch`.
pub fn start_runtime(group: &Value, patch: &Value) -> Result<Runtime, String> {
    Ok(Runtime::start_config(group, &with_free_ports(patch)?, &[]))
}

/// The tests' configuration for a runtime rooted at `root`, with
/// [`free_ports`]: what a bench writes when it starts `evergreen run` itself.
pub fn bench_config(root: &Path) -> Result<Value, String> {
    let mut config = evergreen_tests::test_config(root);
    evergreen_tests::merge(&mut config, &free_ports()?);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_config_moves_the_default_listeners_off_fixed_ports() {
        let config = bench_config(Path::new("/tmp/root")).expect("a free port");
        let daemon = config["coreThing"]["ggDaemonPort"]
            .as_u64()
            .expect("a port");
        assert_ne!(daemon, 8000);
        assert!(daemon > 0);
        assert_eq!(config["evergreen"]["listeners"]["mqttTls"]["port"], 0);
        // The tests' settings are kept.
        assert_eq!(config["evergreen"]["root"], "/tmp/root");
    }

    #[test]
    fn a_bench_patch_keeps_its_own_settings() {
        let patch = json!({ "evergreen": { "listeners": { "mqttPlain": { "enabled": true, "port": 0 } } } });
        let merged = with_free_ports(&patch).expect("a free port");
        assert_eq!(merged["evergreen"]["listeners"]["mqttPlain"]["port"], 0);
        assert_eq!(merged["evergreen"]["listeners"]["mqttTls"]["port"], 0);
        assert!(merged["coreThing"]["ggDaemonPort"].is_u64());
    }
}
