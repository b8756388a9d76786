//! Fleet deployments as an operator and a gateway do them in tests and benches: the operator's
//! key and bundles (through the `evergreen` command line) and gateways whose bridge goes to a
//! test mosquitto.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};

use crate::broker::Mosquitto;
use crate::*;

/// `evergreen fleet …` (no configuration needed).
pub fn fleet(args: &[&str]) -> Output {
    std::process::Command::new(evergreen_bin())
        .arg("fleet")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run evergreen fleet")
}

/// The operator's workspace: a key, and bundles made with `group create-version` + `export`.
#[derive(Debug)]
pub struct Operator {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub public: String,
    pub config: PathBuf,
}

impl Default for Operator {
    fn default() -> Self {
        Operator::new()
    }
}

impl Operator {
    pub fn new() -> Operator {
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("fleet.key");
        let made = fleet(&["keygen", &key.display().to_string()]);
        assert!(made.status.success(), "{}", output_text(&made));
        let public = String::from_utf8_lossy(&made.stdout).trim().to_string();
        let config = dir.path().join("config.json");
        std::fs::write(&config, test_config(&dir.path().join("root")).to_string()).expect("config");
        Operator {
            dir,
            key,
            public,
            config,
        }
    }

    /// A bundle of a group with one pinned function running eg-fn `args`; its version id.
    pub fn bundle(&self, name: &str, args: &str) -> (PathBuf, String) {
        let file = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&file, group(vec![function(name, args)], vec![]).to_string())
            .expect("group file");
        let created = evergreen_with(
            &self.config,
            &["group", "create-version", &file.display().to_string()],
        );
        assert!(created.status.success(), "{}", output_text(&created));
        let id = String::from_utf8_lossy(&created.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let bundle = self.dir.path().join(format!("{name}.tar"));
        let exported = evergreen_with(
            &self.config,
            &["group", "export", &id, "-o", &bundle.display().to_string()],
        );
        assert!(exported.status.success(), "{}", output_text(&exported));
        (bundle, id)
    }

    /// `evergreen fleet sign` of `bundle` (fetched from a file:// URL) for `target`.
    pub fn sign(&self, bundle: &Path, sequence: u64, target: &[&str]) -> Vec<u8> {
        self.sign_with(&self.key, bundle, sequence, target)
    }

    pub fn sign_with(&self, key: &Path, bundle: &Path, sequence: u64, target: &[&str]) -> Vec<u8> {
        let url = format!("file://{}", bundle.display());
        let mut args = vec![
            "sign".to_string(),
            bundle.display().to_string(),
            "--key".into(),
            key.display().to_string(),
            "--fleet".into(),
            "factory".into(),
            "--sequence".into(),
            sequence.to_string(),
            "--url".into(),
            url,
        ];
        args.extend(target.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let signed = fleet(&refs);
        assert!(signed.status.success(), "{}", output_text(&signed));
        signed.stdout
    }
}

/// A gateway: a runtime named `thing` whose bridge goes to `broker`, trusting `key`.
pub fn gateway(broker: &Mosquitto, thing: &str, key: &str) -> Runtime {
    Runtime::start_config(
        &group(vec![], vec![]),
        &gateway_config(broker, thing, key),
        &[],
    )
}

pub fn gateway_config(broker: &Mosquitto, thing: &str, key: &str) -> Value {
    json!({
        "coreThing": {
            "thingArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/{thing}"),
            "iotHost": "127.0.0.1",
            "iotMqttPort": broker.port
        },
        "mqttMaxConnectionRetryInterval": 1,
        "evergreen": {
            "cloudTls": false,
            // A deployment (and its rollback) waits this long for Ready: room for the load of
            // many runtimes starting at once on a 2-core CI machine (and the time a function
            // that never says Ready takes to fail).
            "readinessTimeoutMs": 10000,
            "fleet": { "trustedKeys": [key], "groups": ["line-1"], "healthIntervalSecs": 1 }
        }
    })
}

/// A release of the evergreen binary under test: a copy stamped with `version`
/// (`evergreen_ops::release::stamp`, the same code, another version), as
/// `<dir>/<version>/evergreen`.
pub fn stamped_release(dir: &Path, version: &str) -> PathBuf {
    let bytes = std::fs::read(evergreen_bin()).expect("read the evergreen binary");
    let stamped = evergreen_ops::release::stamp(&bytes, version).expect("the binary has a stamp");
    let path = dir.join(version).join("evergreen");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("release dir");
    std::fs::write(&path, stamped).expect("write the release");
    make_executable(&path);
    path
}

/// A "release" that answers `--version` with `version` and exits 1 at any other command: a
/// build that dies at start, as `<dir>/<version>/evergreen`.
pub fn crashing_release(dir: &Path, version: &str) -> PathBuf {
    let path = dir.join(version).join("evergreen");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("release dir");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && echo 'evergreen {version}' && exit 0\necho 'this build exits at start' >&2\nexit 1\n"
        ),
    )
    .expect("write the release");
    make_executable(&path);
    path
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
