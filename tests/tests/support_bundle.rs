//! End-to-end: `evergreen support-bundle`, the real binary against a real runtime and then
//! against its files alone. The archive holds every part its manifest lists, the running
//! runtime's status and logs, and none of the secrets the configuration, the key file and the
//! secret store hold: the whole decompressed archive is searched for them byte by byte.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);

const AWS_SECRET: &str = "SECRETKEY-must-not-leak-5f1c9e";
const AWS_TOKEN: &str = "SESSIONTOKEN-must-not-leak-a83d27";
const KEY_MATERIAL: &str = "KEYMATERIAL-must-not-leak-0c6b44";
const SECRET_VALUE: &str = "SECRETVALUE-must-not-leak-9e2f10";
const LEAKS: &[&str] = &[AWS_SECRET, AWS_TOKEN, KEY_MATERIAL, SECRET_VALUE];

/// The parts every bundle of a configured root has, whether a runtime answers or not.
const ALWAYS: &[&str] = &[
    "MANIFEST.txt",
    "version.txt",
    "config.json",
    "group.json",
    "deployments.json",
    "check.txt",
    "host.txt",
];

fn secret_arn() -> String {
    format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:greengrass-bundle-AbCdEf")
}

/// `quiet` (says Ready, then nothing) and a secret resource granted to it.
fn bundle_group() -> Value {
    let mut quiet = function("quiet", "record /dev/null");
    quiet["FunctionConfiguration"]["Environment"]["ResourceAccessPolicies"] =
        json!([{ "ResourceId": "Bundle", "Permission": "ro" }]);
    let mut g = group(vec![quiet], vec![]);
    g["ResourceDefinitionVersion"] = json!({ "Resources": [{
        "Id": "Bundle",
        "Name": "Bundle",
        "ResourceDataContainer": { "SecretsManagerSecretResourceData": { "ARN": secret_arn() } }
    }]});
    g
}

fn support_bundle(config: &Path, output: &Path) -> Output {
    Command::new(evergreen_bin())
        .args(["support-bundle", "--lines", "50", "--config"])
        .arg(config)
        .arg("--output")
        .arg(output)
        .stdin(Stdio::null())
        .output()
        .expect("run evergreen support-bundle")
}

/// Unpacks `archive` with the system's `tar` into a new directory; returns it (kept alive by
/// the returned guard) and the archive's top directory.
fn unpack(archive: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new("tar")
        .arg("xzf")
        .arg(archive)
        .arg("-C")
        .arg(dir.path())
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar xzf: {out:?}");
    let tops: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("read unpacked")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(tops.len(), 1, "one top directory: {tops:?}");
    let top = tops[0].clone();
    (dir, top)
}

/// Every byte of the archive's tar, decompressed by the system's gzip.
fn decompressed(archive: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(archive)
        .output()
        .expect("run gzip");
    assert!(out.status.success(), "gzip -dc: {out:?}");
    out.stdout
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// No secret anywhere in the archive.
fn assert_no_leaks(archive: &Path) {
    let bytes = decompressed(archive);
    assert!(bytes.len() > 1024, "a real archive: {} bytes", bytes.len());
    // The search finds what is there: the access key id, which is no secret, stays.
    assert!(
        contains(&bytes, "AKIABUNDLETEST"),
        "the grep sees the config"
    );
    for leak in LEAKS {
        assert!(
            !contains(&bytes, leak),
            "{leak} is in {}",
            archive.display()
        );
    }
}

/// The files under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The `collected:` section of the manifest: one name per line.
fn manifest_files(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .skip_while(|l| *l != "collected:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.trim().split(" (").next().map(str::to_string))
        .collect()
}

#[test]
fn the_bundle_holds_everything_and_no_secret_with_the_runtime_up_and_down() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("root");
    put_secret(&root, "greengrass-bundle", SECRET_VALUE.as_bytes()).expect("put secret");
    let key = dir.path().join("core.private.key");
    std::fs::write(
        &key,
        format!("-----BEGIN PRIVATE KEY-----\n{KEY_MATERIAL}\n-----END PRIVATE KEY-----\n"),
    )
    .expect("write key");
    let sock = dir.path().join("ctl/control.sock");
    let patch = json!({
        "coreThing": { "keyPath": key },
        "evergreen": {
            "controlSocket": sock,
            "aws": { "credentials": {
                "accessKeyId": "AKIABUNDLETEST",
                "secretAccessKey": AWS_SECRET,
                "sessionToken": AWS_TOKEN
            } }
        }
    });
    let mut rt = Runtime::start_config_in(dir, &bundle_group(), &patch, &[]);
    let config = rt.dir.path().join("config.json");
    let ready = wait_for(LIMIT, || {
        let out = Command::new(evergreen_bin())
            .args(["status", "--json", "--socket"])
            .arg(&sock)
            .output()
            .ok()?;
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        let text = status.to_string();
        (text.contains("quiet") && read(&rt.function_log("quiet")).contains("ready after"))
            .then_some(())
    });
    assert!(ready.is_some(), "the runtime runs quiet");

    // Up: every part, status from the socket.
    let archive = rt.path("up.tar.gz");
    let out = support_bundle(&config, &archive);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        archive.display().to_string()
    );
    let mode = std::fs::metadata(&archive)
        .expect("archive")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let (_unpacked, top) = unpack(&archive);
    assert_eq!(top.file_name().and_then(|n| n.to_str()), Some("up"));
    let files = listing(&top);
    let manifest = read(&top.join("MANIFEST.txt"));
    for name in ALWAYS.iter().chain(&["status.json"]) {
        assert!(files.iter().any(|f| f == name), "{name} in {files:?}");
    }
    for name in manifest_files(&manifest) {
        assert!(files.contains(&name), "{name} listed but absent: {files:?}");
    }
    let status: Value =
        serde_json::from_str(&read(&top.join("status.json"))).expect("status.json parses");
    assert!(
        status.to_string().contains(&fn_arn("quiet")),
        "status names quiet: {status}"
    );
    let quiet_log = format!("logs/user/{REGION}/{ACCOUNT}/quiet.log");
    assert!(
        read(&top.join(&quiet_log)).contains("ready after"),
        "{quiet_log} in {files:?}"
    );
    assert!(
        !read(&top.join("logs/system/runtime.log")).is_empty(),
        "the runtime's log: {files:?}"
    );
    let config_json: Value =
        serde_json::from_str(&read(&top.join("config.json"))).expect("config.json parses");
    let creds = &config_json["evergreen"]["aws"]["credentials"];
    assert_eq!(creds["accessKeyId"], "AKIABUNDLETEST", "{config_json}");
    assert_eq!(creds["secretAccessKey"], "<redacted>", "{config_json}");
    assert_eq!(creds["sessionToken"], "<redacted>", "{config_json}");
    assert_eq!(
        config_json["coreThing"]["keyPath"],
        json!(key),
        "the key's path stays"
    );
    let group_json = read(&top.join("group.json"));
    assert!(group_json.contains(&secret_arn()), "{group_json}");
    let deployments: Value =
        serde_json::from_str(&read(&top.join("deployments.json"))).expect("deployments parse");
    assert!(deployments.is_array(), "{deployments}");
    assert!(read(&top.join("version.txt")).starts_with("evergreen "));
    assert!(read(&top.join("check.txt")).contains("configuration"));
    assert!(read(&top.join("host.txt")).contains("cgroup"));
    assert_no_leaks(&archive);

    // Down: still a bundle, from the files; the manifest says no runtime answered.
    let stopped = rt.stop_with(Signal::SIGTERM, LIMIT);
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    let archive = rt.path("down.tar.gz");
    let out = support_bundle(&config, &archive);
    assert!(out.status.success(), "{}", output_text(&out));
    let (_unpacked, top) = unpack(&archive);
    let files = listing(&top);
    for name in ALWAYS {
        assert!(files.iter().any(|f| f == name), "{name} in {files:?}");
    }
    assert!(!files.iter().any(|f| f == "status.json"), "{files:?}");
    let manifest = read(&top.join("MANIFEST.txt"));
    assert!(
        manifest.contains("status.json: the runtime did not answer"),
        "{manifest}"
    );
    for name in manifest_files(&manifest) {
        assert!(files.contains(&name), "{name} listed but absent: {files:?}");
    }
    assert!(read(&top.join(&quiet_log)).contains("ready after"));
    assert!(
        read(&top.join("logs/system/runtime.log")).contains("all components stopped"),
        "the stop is in the runtime's log"
    );
    assert_no_leaks(&archive);
}
