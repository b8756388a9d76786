//! End-to-end: the secret store. Values put with `evergreen secrets put`
//! (or fetched from Secrets Manager — a real `moto_server` — at deployment
//! time) reach exactly the components granted their secret resource, through
//! the stdio SDK (`eg-fn secret`) and the real greengrasssdk
//! (`get_secret_value`); everything else is refused and logged; values
//! never reach a log file; the data key changes with every deployment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

/// Values distinctive enough that finding them anywhere is a leak.
const STR_VALUE: &str = "tok-7Hq2-VERY-SECRET-string-value";
const BIN_VALUE: &[u8] = &[0x00, 0xff, 0x13, 0x37, 0xfe, 0x80, 0x01];
const OTHER_VALUE: &str = "other-42-SECRET-not-for-you";

fn secret_arn(name_with_suffix: &str) -> String {
    format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name_with_suffix}")
}

/// A test root: a temporary directory with `config.json` whose root is
/// `<dir>/root` and whose control socket is `<dir>/control.sock`.
struct Rig {
    dir: tempfile::TempDir,
}

impl Rig {
    fn new(patch: &Value) -> Rig {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = test_config(&dir.path().join("root"));
        merge(
            &mut config,
            &json!({ "evergreen": { "controlSocket": dir.path().join("control.sock") } }),
        );
        merge(&mut config, patch);
        std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config");
        Rig { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `evergreen <args> --config <config>`, feeding `stdin`.
    fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        let mut child = Command::new(evergreen_bin())
            .args(args)
            .arg("--config")
            .arg(self.path("config.json"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run evergreen");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("write stdin");
        }
        drop(input);
        child.wait_with_output().expect("wait evergreen")
    }

    fn put_file(&self, name: &str, value: &[u8]) {
        let file = self.path(&format!("value-{}", name.replace([':', '/'], "_")));
        std::fs::write(&file, value).expect("value file");
        let out = self.cli(
            &[
                "secrets",
                "put",
                name,
                "--from-file",
                &file.display().to_string(),
            ],
            None,
        );
        assert!(out.status.success(), "put {name}: {}", text(&out));
        std::fs::remove_file(&file).expect("rm value file");
    }

    fn put_stdin(&self, name: &str, value: &[u8]) {
        let out = self.cli(&["secrets", "put", name, "--stdin"], Some(value));
        assert!(out.status.success(), "put {name}: {}", text(&out));
    }

    /// Starts `evergreen run` on the rig with `group`; the returned runtime
    /// owns the directory.
    fn start(self, group: &Value) -> Runtime {
        let group_path = self.path("group.json");
        std::fs::write(&group_path, group.to_string()).expect("group");
        let child = Command::new(evergreen_bin())
            .arg("run")
            .arg("--config")
            .arg(self.path("config.json"))
            .arg("--group")
            .arg(&group_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start evergreen");
        Runtime {
            dir: self.dir,
            child,
        }
    }
}

fn text(out: &Output) -> String {
    output_text(out)
}

/// `evergreen <args>` against a started runtime's directory.
fn cli_in(dir: &Path, args: &[&str]) -> Output {
    evergreen_with(&dir.join("config.json"), args)
}

/// A secret resource.
fn secret_resource(id: &str, arn: &str, extra_labels: &[&str]) -> Value {
    let mut data = json!({ "ARN": arn });
    if !extra_labels.is_empty() {
        data["AdditionalStagingLabelsToDownload"] = json!(extra_labels);
    }
    json!({
        "Id": id,
        "Name": id,
        "ResourceDataContainer": { "SecretsManagerSecretResourceData": data }
    })
}

/// An `eg-fn secret` function granted `grants` (resource ids).
fn secret_fn(name: &str, id: &str, stage: &str, out: &Path, grants: &[&str]) -> Value {
    let mut f = function(name, &format!("secret {id} {stage} {}", out.display()));
    f["FunctionConfiguration"]["Environment"]["ResourceAccessPolicies"] = grants
        .iter()
        .map(|g| json!({ "ResourceId": g, "Permission": "ro" }))
        .collect();
    f
}

fn with_resources(mut g: Value, resources: Vec<Value>) -> Value {
    g["ResourceDefinitionVersion"] = json!({ "Resources": resources });
    g
}

/// The answers a `secret` function wrote, once there are at least `n`.
fn answers(file: &Path, n: usize) -> Vec<Value> {
    wait_for(LIMIT, || {
        let r = records(file);
        (r.len() >= n).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "fewer than {n} answers in {}: {:?}",
            file.display(),
            records(file)
        )
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t)
                    if t.is_file()
                        && std::fs::read(&p)
                            .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) =>
                {
                    found.push(p)
                }
                _ => {}
            }
        }
    }
    found
}

/// Asserts no file under the runtime root holds any of the values in clear.
fn assert_no_leak(root: &Path) {
    for value in [STR_VALUE.as_bytes(), BIN_VALUE, OTHER_VALUE.as_bytes()] {
        let leaks = files_containing(root, value);
        assert!(leaks.is_empty(), "a secret value in clear in {leaks:?}");
    }
    // And the log files exist, so the check looked at something.
    assert!(
        !files_containing(&root.join("var/log"), b"secret").is_empty(),
        "no log mentions secrets at all"
    );
}

fn deployed(root: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(root.join("secrets/deployed.json")).expect("deployed.json"),
    )
    .expect("deployed.json is JSON")
}

/// Functions: `reader` (granted STR and BIN) asks for STR by name; `binary`
/// (granted STR and BIN) asks for BIN by ARN; `nosy` (granted STR only)
/// asks for OTHER, which is deployed but granted to nobody.
fn store_group(rig_dir: &Path) -> Value {
    let str_arn = secret_arn("greengrass-str-AbCdEf");
    let bin_arn = secret_arn("greengrass-bin-XyZ123");
    let other_arn = secret_arn("greengrass-other-QwErTy");
    with_resources(
        group(
            vec![
                secret_fn(
                    "reader",
                    "greengrass-str",
                    "-",
                    &rig_dir.join("reader.jsonl"),
                    &["Str", "Bin"],
                ),
                secret_fn(
                    "binary",
                    &bin_arn,
                    "-",
                    &rig_dir.join("binary.jsonl"),
                    &["Str", "Bin"],
                ),
                secret_fn(
                    "nosy",
                    "greengrass-other",
                    "-",
                    &rig_dir.join("nosy.jsonl"),
                    &["Str"],
                ),
                function(
                    "feeder",
                    &format!("feed {}", rig_dir.join("feed.jsonl").display()),
                ),
            ],
            vec![sub(
                "poke",
                &fn_arn("feeder"),
                "poke/reader",
                &fn_arn("reader"),
            )],
        ),
        vec![
            secret_resource("Str", &str_arn, &[]),
            secret_resource("Bin", &bin_arn, &[]),
            secret_resource("Other", &other_arn, &[]),
        ],
    )
}

#[test]
fn granted_functions_read_string_and_binary_secrets_and_the_rest_is_refused_and_logged() {
    let rig = Rig::new(&json!({}));
    rig.put_file("greengrass-str", STR_VALUE.as_bytes());
    rig.put_stdin("greengrass-bin", BIN_VALUE);
    rig.put_file(
        &secret_arn("greengrass-other-QwErTy"),
        OTHER_VALUE.as_bytes(),
    );

    // `list` shows names, types and sizes, never values.
    let listed = rig.cli(&["secrets", "list"], None);
    let listing = text(&listed);
    assert!(listed.status.success(), "{listing}");
    assert!(
        listing.contains("greengrass-str") && listing.contains("string"),
        "{listing}"
    );
    assert!(
        listing.contains("greengrass-bin") && listing.contains("binary"),
        "{listing}"
    );
    assert!(
        listing.contains(&format!(" {} ", BIN_VALUE.len())),
        "{listing}"
    );
    assert!(
        !listing.contains(STR_VALUE) && !listing.contains(OTHER_VALUE),
        "{listing}"
    );

    let group = store_group(rig.dir.path());
    let rt = rig.start(&group);
    let dir = rt.dir.path().to_path_buf();

    let reader = answers(&dir.join("reader.jsonl"), 1);
    let ok = &reader[0]["ok"];
    assert_eq!(ok["SecretString"], STR_VALUE, "{reader:?}");
    assert_eq!(ok["ARN"], secret_arn("greengrass-str-AbCdEf"));
    assert_eq!(ok["Name"], "greengrass-str");
    assert_eq!(ok["VersionStages"], json!(["AWSCURRENT"]));
    assert!(ok["SecretBinaryHex"].is_null());
    assert!(ok["CreatedDate"]
        .as_u64()
        .is_some_and(|ms| ms > 1_600_000_000_000));

    let binary = answers(&dir.join("binary.jsonl"), 1);
    assert_eq!(
        binary[0]["ok"]["SecretBinaryHex"],
        hex(BIN_VALUE),
        "{binary:?}"
    );
    assert!(binary[0]["ok"]["SecretString"].is_null());
    assert_eq!(binary[0]["ok"]["Name"], "greengrass-bin");

    let nosy = answers(&dir.join("nosy.jsonl"), 1);
    let refusal = nosy[0]["error"].as_str().expect("refused");
    assert!(
        refusal.contains("not granted") && refusal.contains("greengrass-other"),
        "{refusal}"
    );
    assert!(!refusal.contains(OTHER_VALUE));

    // The refusal is logged: the component's log and the runtime's, naming
    // the component and the secret id.
    let nosy_log = wait_for(LIMIT, || {
        let t = read(&rt.function_log("nosy"));
        t.contains("secret request refused").then_some(t)
    })
    .expect("refusal in nosy's log");
    assert!(nosy_log.contains("\"greengrass-other\""), "{nosy_log}");
    let system = read(&rt.log_path("system/runtime.log"));
    assert!(
        system.contains(&fn_arn("nosy")) && system.contains("secret request refused"),
        "{system}"
    );

    // An id the group does not have is not found, as Secrets Manager says it.
    std::fs::write(
        dir.join("feed.jsonl"),
        "{\"topic\":\"poke/reader\",\"payload\":\"greengrass-nope\"}\n",
    )
    .expect("feed");
    let reader = answers(&dir.join("reader.jsonl"), 2);
    assert!(
        reader[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ResourceNotFoundException: ")
                && e.contains("not a secret resource of this group")),
        "{reader:?}"
    );

    // `evergreen status` shows no value either.
    let status = text(&cli_in(&dir, &["status", "--json"]));
    assert!(status.contains("reader"), "{status}");
    assert!(!status.contains(STR_VALUE) && !status.contains(OTHER_VALUE));
    assert_no_leak(&rt.dir.path().join("root"));
}

#[test]
fn a_version_stage_not_downloaded_is_refused() {
    let rig = Rig::new(&json!({}));
    rig.put_file("greengrass-str", STR_VALUE.as_bytes());
    let out = rig.path("staged.jsonl");
    let g = with_resources(
        group(
            vec![secret_fn(
                "staged",
                "greengrass-str",
                "AWSPREVIOUS",
                &out,
                &["Str"],
            )],
            vec![],
        ),
        vec![secret_resource(
            "Str",
            &secret_arn("greengrass-str-AbCdEf"),
            &[],
        )],
    );
    let rt = rig.start(&g);
    let a = answers(&rt.path("staged.jsonl"), 1);
    let e = a[0]["error"].as_str().expect("refused");
    assert!(
        e.contains("AWSPREVIOUS") && e.contains("AdditionalStagingLabelsToDownload"),
        "{e}"
    );
}

#[test]
fn a_secret_without_the_prefix_is_refused_by_default_and_allowed_when_the_prefix_is_changed() {
    let arn = secret_arn("TwilioAuthToken-AbCdEf");
    let g = |dir: &Path| {
        with_resources(
            group(
                vec![secret_fn(
                    "reader",
                    &arn,
                    "-",
                    &dir.join("reader.jsonl"),
                    &["Tok"],
                )],
                vec![],
            ),
            vec![secret_resource("Tok", &arn, &[])],
        )
    };
    // Default: validation refuses the group, naming the rule.
    let rig = Rig::new(&json!({}));
    let file = rig.path("group.json");
    std::fs::write(&file, g(rig.dir.path()).to_string()).expect("group");
    let out = rig.cli(&["validate", &file.display().to_string()], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("does not start with `greengrass-`"), "{t}");

    // With the prefix lifted, the same group runs and the function reads it.
    let rig = Rig::new(&json!({ "evergreen": { "secretNamePrefix": "" } }));
    rig.put_file("TwilioAuthToken", STR_VALUE.as_bytes());
    let group = g(rig.dir.path());
    let rt = rig.start(&group);
    let a = answers(&rt.path("reader.jsonl"), 1);
    assert_eq!(a[0]["ok"]["SecretString"], STR_VALUE, "{a:?}");
    assert_eq!(a[0]["ok"]["Name"], "TwilioAuthToken");
}

#[test]
fn a_secret_that_cannot_be_resolved_fails_the_start_naming_resource_and_secret() {
    let rig = Rig::new(&json!({}));
    let arn = secret_arn("greengrass-missing-AbCdEf");
    let g = with_resources(
        group(
            vec![secret_fn(
                "reader",
                &arn,
                "-",
                &rig.path("r.jsonl"),
                &["Gone"],
            )],
            vec![],
        ),
        vec![secret_resource("Gone", &arn, &[])],
    );
    std::fs::write(rig.path("group.json"), g.to_string()).expect("group");
    let out = Command::new(evergreen_bin())
        .arg("run")
        .arg("--config")
        .arg(rig.path("config.json"))
        .arg("--group")
        .arg(rig.path("group.json"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env("HOME", rig.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(78), "{t}");
    assert!(
        t.contains("\"Gone\"") && t.contains(&arn) && t.contains("secret can't be found"),
        "{t}"
    );
    assert!(!rig.path("r.jsonl").exists(), "nothing started");
    // Issue 17: a clear error, not a Rust panic after it.
    assert!(
        !t.contains("panicked") && !t.contains("stack backtrace"),
        "{t}"
    );
    assert!(
        t.contains("evergreen: deployment refused:\n  secret resource \"Gone\""),
        "{t}"
    );
    // Issue 17: in the runtime log, the refusal's lines are lines of their
    // own, each with the full prefix, not one line holding a literal `\n`.
    let log = read(&rig.path("root/var/log/system/runtime.log"));
    assert!(!log.contains("\\n"), "{log}");
    let refusal: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.ends_with("evergreen::run: deployment refused:"))
        .take(2)
        .collect();
    assert_eq!(refusal.len(), 2, "{log}");
    assert!(
        refusal
            .iter()
            .all(|l| l.starts_with('[') && l.contains("][ERROR]-(")),
        "{refusal:?}"
    );
    assert!(
        refusal[1].contains("secret resource \"Gone\""),
        "{refusal:?}"
    );
}

#[test]
fn each_deployment_rotates_the_data_key_new_values_apply_and_removed_resources_leave() {
    let rig = Rig::new(&json!({}));
    rig.put_file("greengrass-str", STR_VALUE.as_bytes());
    rig.put_stdin("greengrass-bin", BIN_VALUE);
    rig.put_file(
        &secret_arn("greengrass-other-QwErTy"),
        OTHER_VALUE.as_bytes(),
    );
    let group = store_group(rig.dir.path());
    let rt = rig.start(&group);
    let dir = rt.dir.path().to_path_buf();
    let root = dir.join("root");
    answers(&dir.join("reader.jsonl"), 1);
    let first = deployed(&root);
    let key1 = first["dataKey"].as_str().expect("dataKey").to_string();
    assert_eq!(first["secrets"].as_array().map(Vec::len), Some(3));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(root.join("secrets/core.key"))
            .expect("core.key")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The same group again: a new data key; the running reader (unchanged,
    // so not restarted) still reads the value.
    let same = dir.join("same.json");
    std::fs::write(&same, group.to_string()).expect("write");
    let d = cli_in(&dir, &["deploy", &same.display().to_string()]);
    assert!(d.status.success(), "{}", text(&d));
    let key2 = deployed(&root)["dataKey"]
        .as_str()
        .expect("dataKey")
        .to_string();
    assert_ne!(key1, key2, "the data key was not rotated");
    std::fs::write(
        dir.join("feed.jsonl"),
        "{\"topic\":\"poke/reader\",\"payload\":{}}\n",
    )
    .expect("feed");
    let a = answers(&dir.join("reader.jsonl"), 2);
    assert_eq!(a[1]["ok"]["SecretString"], STR_VALUE, "{a:?}");

    // A new local value is used from the next deployment on.
    let put = cli_in(&dir, &["secrets", "rm", "greengrass-str"]);
    assert!(put.status.success(), "{}", text(&put));
    let newer = "tok-NEWER-VALUE-after-redeploy";
    let f = dir.join("newer");
    std::fs::write(&f, newer).expect("write");
    let put = cli_in(
        &dir,
        &[
            "secrets",
            "put",
            "greengrass-str",
            "--from-file",
            &f.display().to_string(),
        ],
    );
    assert!(put.status.success(), "{}", text(&put));
    std::fs::remove_file(&f).expect("rm");
    let d = cli_in(&dir, &["deploy", &same.display().to_string()]);
    assert!(d.status.success(), "{}", text(&d));
    let mut feed = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("feed.jsonl"))
        .expect("feed");
    std::io::Write::write_all(&mut feed, b"{\"topic\":\"poke/reader\",\"payload\":{}}\n")
        .expect("feed");
    let a = answers(&dir.join("reader.jsonl"), 3);
    assert_eq!(a[2]["ok"]["SecretString"], newer, "{a:?}");
    assert!(files_containing(&root, newer.as_bytes()).is_empty());

    // Without the Other resource (and nosy, which was granted nothing of
    // it), its deployed copy is gone.
    let mut smaller = group.clone();
    smaller["ResourceDefinitionVersion"]["Resources"]
        .as_array_mut()
        .expect("resources")
        .retain(|r| r["Id"] != "Other");
    let small = dir.join("small.json");
    std::fs::write(&small, smaller.to_string()).expect("write");
    let d = cli_in(&dir, &["deploy", &small.display().to_string()]);
    assert!(d.status.success(), "{}", text(&d));
    let now = deployed(&root);
    let ids: Vec<&str> = now["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .filter_map(|s| s["resourceId"].as_str())
        .collect();
    assert_eq!(ids, ["Bin", "Str"]);
    assert!(!read(&root.join("secrets/deployed.json")).contains("greengrass-other"));

    // A deployment whose secret cannot be resolved fails, names it, and
    // changes nothing.
    let mut broken = smaller.clone();
    broken["ResourceDefinitionVersion"]["Resources"]
        .as_array_mut()
        .expect("resources")
        .push(secret_resource(
            "Lost",
            &secret_arn("greengrass-lost-AbCdEf"),
            &[],
        ));
    let bad = dir.join("bad.json");
    std::fs::write(&bad, broken.to_string()).expect("write");
    let d = cli_in(&dir, &["deploy", &bad.display().to_string()]);
    let t = text(&d);
    assert_eq!(d.status.code(), Some(1), "{t}");
    assert!(
        t.contains("\"Lost\"") && t.contains("secret can't be found"),
        "{t}"
    );
    assert_no_leak(&root);

    // A group without secret resources leaves no deployed copies at all.
    let none = dir.join("none.json");
    std::fs::write(
        &none,
        evergreen_tests::group(vec![function("idle", "record /dev/null")], vec![]).to_string(),
    )
    .expect("write");
    let d = cli_in(&dir, &["deploy", &none.display().to_string()]);
    assert!(d.status.success(), "{}", text(&d));
    assert!(!root.join("secrets/deployed.json").exists());
    assert!(root.join("secrets/core.key").exists(), "the core key stays");
}

#[test]
fn cli_refuses_bad_names_oversize_values_and_unknown_removals() {
    let rig = Rig::new(&json!({}));
    let out = rig.cli(&["secrets", "put", "bad name", "--stdin"], Some(b"x"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is not a secret name"),
        "{}",
        text(&out)
    );
    let big = vec![b'a'; 65537];
    let out = rig.cli(&["secrets", "put", "greengrass-big", "--stdin"], Some(&big));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("at most 65536 bytes"), "{}", text(&out));
    let out = rig.cli(&["secrets", "put", "greengrass-x"], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "neither --from-file nor --stdin: {}",
        text(&out)
    );
    let out = rig.cli(&["secrets", "rm", "greengrass-never"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = rig.cli(&["secrets", "put", "plain-name", "--stdin"], Some(b"v"));
    assert!(out.status.success());
    assert!(
        text(&out).contains("does not start with \"greengrass-\""),
        "{}",
        text(&out)
    );
}

// A pinned Python function that reads secrets with the real greengrasssdk
// at start and writes each answer (or the SDK's exception) to $OUT.
const PY_READER: &str = r#"
import json
import os
import threading

import greengrasssdk
from greengrass_common.env_vars import SECRETS_MANAGER_FUNCTION_ARN
from greengrasssdk import Lambda

sm = greengrasssdk.client("secretsmanager")


def run():
    asks = [
        ("greengrass-str", None),
        (os.environ["BIN_ARN"], None),
        ("greengrass-other", None),
        ("greengrass-str", "AWSPREVIOUS"),
    ]
    for secret_id, stage in asks:
        try:
            kwargs = {"SecretId": secret_id}
            if stage:
                kwargs["VersionStage"] = stage
            r = sm.get_secret_value(**kwargs)
            r["CreatedDate"] = r["CreatedDate"].timestamp()
            result = {"ok": r}
        except Exception as e:
            result = {"error": "%s: %s" % (type(e).__name__, e)}
        result["id"] = secret_id
        with open(os.environ["OUT"], "a") as f:
            f.write(json.dumps(result) + "\n")
    # Malformed requests, sent as raw invokes of the secret service.
    raw = Lambda.Client()
    bodies = [
        b"not json",
        b'{"SecretId": 5}',
        b'{"SecretId": "greengrass-str", "VersionId": "v1"}',
        b'{"SecretId": "greengrass-str", "VersionStage": 7}',
    ]
    for body in bodies:
        r = raw._invoke_internal(SECRETS_MANAGER_FUNCTION_ARN, body, b"")
        result = {"raw": json.loads(r["Payload"].read().decode()), "id": body.decode()}
        with open(os.environ["OUT"], "a") as f:
            f.write(json.dumps(result) + "\n")


threading.Thread(target=run).start()


def handler(event, context):
    return None
"#;

#[test]
fn a_python_function_reads_granted_secrets_with_the_greengrasssdk() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let port = free_port().expect("a free port");
    let rig = Rig::new(&json!({ "coreThing": { "ggDaemonPort": port } }));
    rig.put_file("greengrass-str", STR_VALUE.as_bytes());
    rig.put_stdin("greengrass-bin", BIN_VALUE);
    rig.put_file("greengrass-other", OTHER_VALUE.as_bytes());
    let code = rig.path("functions/pyreader");
    vendor_greengrasssdk(&sdk, &code).expect("vendor greengrasssdk");
    std::fs::write(code.join("pyreader.py"), PY_READER).expect("function");
    let out = rig.path("py.jsonl");
    let bin_arn = secret_arn("greengrass-bin-XyZ123");
    let g = with_resources(
        group(
            vec![json!({
                "Id": "pyreader",
                "FunctionArn": fn_arn("pyreader"),
                "FunctionConfiguration": {
                    "Executable": "pyreader.handler",
                    "CodeUri": code,
                    "Runtime": "python3.8",
                    "Pinned": true,
                    "Timeout": 10,
                    "EncodingType": "json",
                    "Environment": {
                        "Variables": { "OUT": out, "BIN_ARN": bin_arn },
                        "Execution": { "IsolationMode": "NoContainer" },
                        "ResourceAccessPolicies": [
                            { "ResourceId": "Str", "Permission": "ro" },
                            { "ResourceId": "Bin", "Permission": "ro" }
                        ]
                    }
                }
            })],
            vec![],
        ),
        vec![
            secret_resource("Str", &secret_arn("greengrass-str-AbCdEf"), &[]),
            secret_resource("Bin", &bin_arn, &[]),
            secret_resource("Other", &secret_arn("greengrass-other-QwErTy"), &[]),
        ],
    );
    let rt = rig.start(&g);
    let a = answers(&out, 4);
    assert_eq!(a[0]["ok"]["SecretString"], STR_VALUE, "{a:?}");
    assert_eq!(a[0]["ok"]["Name"], "greengrass-str");
    assert_eq!(a[0]["ok"]["ARN"], secret_arn("greengrass-str-AbCdEf"));
    assert_eq!(a[0]["ok"]["VersionStages"], json!(["AWSCURRENT"]));
    assert!(a[0]["ok"]["CreatedDate"]
        .as_f64()
        .is_some_and(|s| s > 1_600_000_000.0));
    // Binary secrets travel as base64, as Secrets Manager returns them.
    assert_eq!(a[1]["ok"]["SecretBinary"], "AP8TN/6AAQ==", "{a:?}");
    let refused = a[2]["error"].as_str().expect("refused");
    assert!(
        refused.starts_with("SecretsManagerError")
            && refused.contains("403")
            && refused.contains("not granted"),
        "{refused}"
    );
    let stage = a[3]["error"].as_str().expect("refused");
    assert!(
        stage.contains("404") && stage.contains("AWSPREVIOUS"),
        "{stage}"
    );
    // Malformed requests get {"Status": 400, "Message": <the bad field>}.
    let a = answers(&out, 8);
    for (i, field) in [
        (4, "JSON object"),
        (5, "SecretId"),
        (6, "VersionId"),
        (7, "VersionStage"),
    ] {
        assert_eq!(a[i]["raw"]["Status"], 400, "{:?}", a[i]);
        assert!(
            a[i]["raw"]["Message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{:?}",
            a[i]
        );
    }
    let log = wait_for(LIMIT, || {
        let t = read(&rt.function_log("pyreader"));
        t.contains("secret request refused").then_some(t)
    })
    .expect("refusal logged");
    assert!(log.contains("\"greengrass-other\""), "{log}");
    assert_no_leak(&rt.dir.path().join("root"));
}

/// A Secrets Manager client for `moto`.
fn moto_client(moto: &Moto) -> evergreen_aws::AwsClient {
    evergreen_aws::AwsClient::with_credentials(
        REGION,
        [("secretsmanager".to_string(), moto.url())]
            .into_iter()
            .collect(),
        evergreen_ipc::AwsCredentials {
            access_key_id: MOTO_ACCESS_KEY.into(),
            secret_access_key: MOTO_SECRET_KEY.into(),
            session_token: None,
            expiration_ms: None,
        },
    )
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(f)
}

#[test]
fn secrets_are_fetched_from_secrets_manager_at_deployment_with_their_staging_labels() {
    let Some(moto) = Moto::start() else { return };
    let sm = moto_client(&moto);
    let newer = "tok-BETA-version-SECRET";
    let (str_arn, bin_arn) = block_on(async {
        let created = sm
            .json(
                "secretsmanager",
                "secretsmanager.CreateSecret",
                &json!({ "Name": "greengrass-moto", "SecretString": STR_VALUE }),
            )
            .await
            .expect("CreateSecret");
        let str_arn = created["ARN"].as_str().expect("ARN").to_string();
        sm.json(
            "secretsmanager",
            "secretsmanager.PutSecretValue",
            &json!({ "SecretId": str_arn, "SecretString": newer, "VersionStages": ["BETA"] }),
        )
        .await
        .expect("PutSecretValue");
        let bin = sm
            .json(
                "secretsmanager",
                "secretsmanager.CreateSecret",
                &json!({ "Name": "greengrass-moto-bin", "SecretBinary": "AP8TN/6AAQ==" }),
            )
            .await
            .expect("CreateSecret binary");
        (str_arn, bin["ARN"].as_str().expect("ARN").to_string())
    });
    // Moto makes ARNs as Secrets Manager does: the name and a random suffix.
    assert!(str_arn.contains(":secret:greengrass-moto-"), "{str_arn}");

    let rig = Rig::new(&moto.core_config());
    let dir = rig.dir.path().to_path_buf();
    let group = with_resources(
        group(
            vec![
                secret_fn(
                    "current",
                    "greengrass-moto",
                    "-",
                    &dir.join("current.jsonl"),
                    &["Tok", "Bin"],
                ),
                secret_fn("beta", &str_arn, "BETA", &dir.join("beta.jsonl"), &["Tok"]),
                secret_fn(
                    "binary",
                    "greengrass-moto-bin",
                    "-",
                    &dir.join("binary.jsonl"),
                    &["Bin"],
                ),
                function(
                    "feeder",
                    &format!("feed {}", dir.join("feed.jsonl").display()),
                ),
            ],
            vec![sub(
                "poke",
                &fn_arn("feeder"),
                "poke/current",
                &fn_arn("current"),
            )],
        ),
        vec![
            secret_resource("Tok", &str_arn, &["BETA"]),
            secret_resource("Bin", &bin_arn, &[]),
        ],
    );
    let rt = rig.start(&group);
    let current = answers(&dir.join("current.jsonl"), 1);
    assert_eq!(current[0]["ok"]["SecretString"], STR_VALUE, "{current:?}");
    assert_eq!(current[0]["ok"]["ARN"], str_arn.as_str());
    assert_eq!(current[0]["ok"]["Name"], "greengrass-moto");
    assert_eq!(current[0]["ok"]["VersionStages"], json!(["AWSCURRENT"]));
    let beta = answers(&dir.join("beta.jsonl"), 1);
    assert_eq!(beta[0]["ok"]["SecretString"], newer, "{beta:?}");
    assert_eq!(beta[0]["ok"]["VersionStages"], json!(["BETA"]));
    assert_ne!(beta[0]["ok"]["VersionId"], current[0]["ok"]["VersionId"]);
    let binary = answers(&dir.join("binary.jsonl"), 1);
    assert_eq!(
        binary[0]["ok"]["SecretBinaryHex"],
        hex(BIN_VALUE),
        "{binary:?}"
    );
    let root = dir.join("root");
    assert!(files_containing(&root, newer.as_bytes()).is_empty());
    assert_no_leak(&root);

    // Secrets Manager unreachable: a redeployment keeps the copies of the
    // previous deployment (re-encrypted under a new data key), with a warning.
    let key1 = deployed(&root)["dataKey"].clone();
    drop(moto);
    let same = dir.join("same.json");
    std::fs::write(&same, group.to_string()).expect("write");
    let d = cli_in(&dir, &["deploy", &same.display().to_string()]);
    assert!(d.status.success(), "{}", text(&d));
    assert_ne!(deployed(&root)["dataKey"], key1);
    std::fs::write(
        dir.join("feed.jsonl"),
        "{\"topic\":\"poke/current\",\"payload\":{}}\n",
    )
    .expect("feed");
    let current = answers(&dir.join("current.jsonl"), 2);
    assert_eq!(current[1]["ok"]["SecretString"], STR_VALUE, "{current:?}");
    let system = read(&rt.log_path("system/runtime.log"));
    assert!(system.contains("keeping the copy"), "{system}");
}

#[test]
fn a_secret_missing_from_secrets_manager_fails_the_deployment() {
    let Some(moto) = Moto::start() else { return };
    let rig = Rig::new(&moto.core_config());
    let arn = secret_arn("greengrass-absent-AbCdEf");
    let g = with_resources(
        group(
            vec![secret_fn(
                "reader",
                &arn,
                "-",
                &rig.path("r.jsonl"),
                &["Absent"],
            )],
            vec![],
        ),
        vec![secret_resource("Absent", &arn, &[])],
    );
    std::fs::write(rig.path("group.json"), g.to_string()).expect("group");
    let out = Command::new(evergreen_bin())
        .arg("run")
        .arg("--config")
        .arg(rig.path("config.json"))
        .arg("--group")
        .arg(rig.path("group.json"))
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(78), "{t}");
    assert!(
        t.contains("\"Absent\"")
            && t.contains(&arn)
            && t.contains("secret can't be found")
            && t.contains("ResourceNotFoundException"),
        "{t}"
    );
}

/// A Python function asking, at start, for a secret of the group it was not
/// granted and for one the group does not have, writing each answer (or the
/// SDK's error) to `$OUT` as a JSON line.
const PY_ASKER: &str = r#"
import json
import os

import greengrasssdk

sm = greengrasssdk.client("secretsmanager")

for secret_id in ["greengrass-other", "greengrass-absent"]:
    try:
        sm.get_secret_value(SecretId=secret_id)
        result = {"ok": True}
    except Exception as e:
        result = {"error": "%s: %s" % (type(e).__name__, e)}
    result["id"] = secret_id
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(result) + "\n")


def handler(event, context):
    return None
"#;

/// Issue 17: a Python function asking for a secret that is not in the group
/// got 403. As Secrets Manager does, a secret the group does not have is
/// answered 404 `ResourceNotFoundException`; one the group has but did not
/// grant to the function stays 403 `AccessDeniedException`. With the real
/// greengrasssdk, whose `SecretsManagerError` carries both.
#[test]
fn a_python_function_asking_for_a_secret_not_in_the_group_gets_404_and_an_ungranted_one_403() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let port = free_port().expect("a free port");
    let rig = Rig::new(&json!({ "coreThing": { "ggDaemonPort": port } }));
    rig.put_file("greengrass-str", STR_VALUE.as_bytes());
    rig.put_file("greengrass-other", OTHER_VALUE.as_bytes());
    let code = rig.path("functions/asker");
    vendor_greengrasssdk(&sdk, &code).expect("vendor greengrasssdk");
    std::fs::write(code.join("asker.py"), PY_ASKER).expect("function");
    let out = rig.path("asker.jsonl");
    let g = with_resources(
        group(
            vec![json!({
                "Id": "asker",
                "FunctionArn": fn_arn("asker"),
                "FunctionConfiguration": {
                    "Executable": "asker.handler",
                    "CodeUri": code,
                    "Runtime": "python3.8",
                    "Pinned": true,
                    "Timeout": 10,
                    "EncodingType": "json",
                    "Environment": {
                        "Variables": { "OUT": out },
                        "Execution": { "IsolationMode": "NoContainer" },
                        "ResourceAccessPolicies": [ { "ResourceId": "Str", "Permission": "ro" } ]
                    }
                }
            })],
            vec![],
        ),
        vec![
            secret_resource("Str", &secret_arn("greengrass-str-AbCdEf"), &[]),
            secret_resource("Other", &secret_arn("greengrass-other-QwErTy"), &[]),
        ],
    );
    let rt = rig.start(&g);
    let a = answers(&out, 2);
    let denied = a[0]["error"].as_str().unwrap_or_default();
    assert_eq!(a[0]["id"], "greengrass-other", "{a:?}");
    assert!(
        denied.starts_with("SecretsManagerError")
            && denied.contains("error code 403")
            && denied.contains("AccessDeniedException")
            && denied.contains("not granted"),
        "{denied}"
    );
    let missing = a[1]["error"].as_str().unwrap_or_default();
    assert_eq!(a[1]["id"], "greengrass-absent", "{a:?}");
    assert!(
        missing.starts_with("SecretsManagerError")
            && missing.contains("error code 404")
            && missing.contains("ResourceNotFoundException")
            && missing.contains("\"greengrass-absent\""),
        "{missing}"
    );
    assert!(!denied.contains(OTHER_VALUE) && !missing.contains(OTHER_VALUE));
    drop(rt);
}
