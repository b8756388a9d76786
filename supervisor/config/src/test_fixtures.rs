//! Shared by the unit tests of `load` and `check`: the fixture files under
//! `tests/fixtures/config` and the helpers that load them, plus the check
//! that no fixture sits untested.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{load, ConfigEnv, ConfigError, CoreConfig};

pub(crate) fn root_env() -> ConfigEnv {
    ConfigEnv {
        uid: 0,
        xdg_data_home: None,
        home: None,
    }
}

pub(crate) fn user_env(xdg: Option<&str>, home: Option<&str>) -> ConfigEnv {
    ConfigEnv {
        uid: 1000,
        xdg_data_home: xdg.map(PathBuf::from),
        home: home.map(PathBuf::from),
    }
}

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

pub(crate) fn good(name: &str) -> CoreConfig {
    let path = fixtures().join("good").join(name);
    match load(Some(&path), &root_env()) {
        Ok(config) => config,
        Err(e) => panic!("{name} should load: {e}"),
    }
}

pub(crate) fn bad(name: &str) -> ConfigError {
    let path = fixtures().join("bad").join(name);
    match load(Some(&path), &root_env()) {
        Ok(config) => panic!("{name} should be refused, got {config:?}"),
        Err(e) => e,
    }
}

/// The json_path of a parse error.
pub(crate) fn parse_path(e: &ConfigError) -> &str {
    match e {
        ConfigError::Parse { json_path, .. } => json_path,
        other => panic!("expected a parse error, got {other:?}"),
    }
}

pub(crate) fn invalid(e: &ConfigError) -> &[String] {
    match e {
        ConfigError::Invalid { errors, .. } => errors,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

/// Every fixture file is listed here, and the test below fails on one that
/// is not, so no fixture sits untested.
const FIXTURES: &[&str] = &[
    "good/empty-object.json",
    "good/greengrass-v1.json",
    "good/evergreen-full.json",
    "good/ephemeral-ports.json",
    "good/status-page.json",
    "bad/not-json.json",
    "bad/not-an-object.json",
    "bad/section-is-array.json",
    "bad/component-override-is-array.json",
    "bad/default-run-as-is-array.json",
    "bad/aws-credentials-is-array.json",
    "bad/duplicate-component.json",
    "bad/policy-as-object.json",
    "bad/duplicate-key.json",
    "bad/trailing-garbage.json",
    "bad/unknown-top-level-key.json",
    "bad/unknown-nested-key.json",
    "bad/wrong-type.json",
    "bad/allow-root-not-yes-no.json",
    "bad/log-level-unknown.json",
    "bad/metrics-upstream-wildcard.json",
    "bad/status-page-public-without-token.json",
    "bad/status-page-bad-token.json",
    "bad/storage-type-unknown.json",
    "bad/listener-address-not-ip.json",
    "bad/port-out-of-range.json",
    "bad/jitter-out-of-range.json",
    "bad/component-override-out-of-range.json",
    "bad/component-override-unknown-key.json",
    "bad/spool-too-small.json",
    "bad/thing-arn-malformed.json",
    "bad/keepalive-out-of-range.json",
    "bad/max-frame-too-large.json",
    "bad/backoff-inverted.json",
    "bad/relative-root.json",
    "bad/control-socket-too-long.json",
    "bad/listener-conflict.json",
    "bad/many-errors.json",
    "bad/retry-interval-zero.json",
    "bad/cloud-tls-not-bool.json",
    "bad/peer-limits-out-of-range.json",
    "bad/three-mistakes.json",
];

#[test]
fn every_fixture_has_a_test() {
    let mut on_disk = Vec::new();
    for dir in ["good", "bad"] {
        let entries = fs::read_dir(fixtures().join(dir)).expect("fixture dir");
        for entry in entries {
            let name = entry.expect("dir entry").file_name();
            on_disk.push(format!("{dir}/{}", name.to_string_lossy()));
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}
