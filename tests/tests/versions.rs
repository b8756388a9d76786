//! End-to-end: group versions carry their code (issue 17, item 1). A group with a Greengrass V1
//! Python function deploys to a running runtime; editing the code on disk afterwards changes
//! nothing until it is stored again; an earlier deployment redeployed runs its own, older code;
//! a version exported as a bundle deploys on another runtime (another root) under the same id
//! with its source gone; and `run --group FILE` stores the same version `create-version FILE`
//! does.
//!
//! Greengrass V1 behaviour checked (core model §1.2): a group version is immutable — all
//! change is a new version — and a deployment or redeployment runs exactly that version.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

/// Publishes its code's `MARK` once at start.
fn handler_source(mark: &str) -> String {
    format!(
        r#"
import json
import greengrasssdk

MARK = "{mark}"
greengrasssdk.client("iot-data").publish(topic="code/mark", payload=json.dumps({{"mark": MARK}}))


def handler(event, context):
    return
"#
    )
}

/// A runtime on its own control socket and Lambda port (the defaults are shared by every
/// runtime that does not set them, and tests run in parallel).
fn start(g: &Value) -> Runtime {
    let dir = tempfile::tempdir().expect("tmp");
    let socket = dir.path().join("control.sock");
    let port = free_port().expect("a free port for the Lambda endpoint");
    Runtime::start_config_in(
        dir,
        g,
        &json!({ "coreThing": { "ggDaemonPort": port }, "evergreen": { "controlSocket": socket } }),
        &[],
    )
}

fn cli(config: &Path, args: &[&str]) -> Output {
    evergreen_with(config, args)
}

fn text(out: &Output) -> String {
    output_text(out)
}

/// A group: the Python function `marker` (code in `functions/marker`, relative to the group
/// file) reporting to the recorder.
fn marker_group(out: &Path) -> Value {
    group(
        vec![
            json!({
                "Id": "marker",
                "FunctionArn": fn_arn("marker"),
                "FunctionConfiguration": {
                    "Executable": "marker.handler",
                    "CodeUri": "functions/marker",
                    "Runtime": "python3.8",
                    "Pinned": true,
                    "Timeout": 5,
                    "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
                }
            }),
            function("recorder", &format!("record {}", out.display())),
        ],
        vec![sub("m", &fn_arn("marker"), "code/#", &fn_arn("recorder"))],
    )
}

fn marks(out: &Path) -> Vec<String> {
    records(out)
        .into_iter()
        .filter_map(|r| {
            let p: Value = serde_json::from_str(r["payload"].as_str()?).ok()?;
            p["mark"].as_str().map(str::to_string)
        })
        .collect()
}

fn wait_mark(out: &Path, mark: &str, count: usize) {
    let seen = wait_for(LIMIT, || {
        (marks(out).iter().filter(|m| *m == mark).count() >= count).then_some(())
    });
    assert!(
        seen.is_some(),
        "waiting for mark {mark} x{count}: {:?}",
        marks(out)
    );
}

fn write_code(dir: &Path, sdk: &Path, mark: &str) {
    let code = dir.join("functions/marker");
    if !code.join("greengrasssdk").exists() {
        vendor_greengrasssdk(sdk, &code).expect("vendor greengrasssdk");
    }
    std::fs::write(code.join("marker.py"), handler_source(mark)).expect("write");
}

/// The first line of stdout: an id or a path.
fn first_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_python_function_deploys_live_and_each_version_keeps_its_own_code() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let rt = start(&json!({}));
    let rd = rt.dir.path();
    let config = rd.join("config.json");
    let out = rd.join("marks.jsonl");
    let file = rd.join("python-group.json");
    std::fs::write(&file, marker_group(&out).to_string()).expect("write");
    write_code(rd, &sdk, "one");

    // Once `group create-version` has stored it, the code on disk may change freely.
    let v1 = cli(
        &config,
        &["group", "create-version", &file.display().to_string()],
    );
    assert!(v1.status.success(), "{}", text(&v1));
    let v1 = first_line(&v1);
    write_code(rd, &sdk, "two");
    let deployed = wait_for(LIMIT, || {
        let o = cli(&config, &["deploy", &v1]);
        o.status.success().then_some(o)
    });
    assert!(
        deployed.is_some(),
        "the stored Python group deploys to the running runtime"
    );
    wait_mark(&out, "one", 1);

    // Deploying the file stores what is on disk now: a new version, the new code.
    let again = cli(&config, &["deploy", &file.display().to_string()]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        !text(&again).contains(&v1),
        "a different version: {}",
        text(&again)
    );
    wait_mark(&out, "two", 1);

    // Redeploying the first deployment runs the first version's code, not what is on disk.
    let history = cli(&config, &["deployments", "--json"]);
    let history: Value = serde_json::from_slice(&history.stdout).expect("history json");
    let first = history
        .as_array()
        .and_then(|h| h.iter().find(|d| d["GroupVersion"] == v1.as_str()))
        .and_then(|d| d["DeploymentId"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no deployment of {v1} in {history}"));
    let redeploy = cli(&config, &["redeploy", &first]);
    assert!(redeploy.status.success(), "{}", text(&redeploy));
    wait_mark(&out, "one", 2);
    assert_eq!(marks(&out).iter().filter(|m| *m == "two").count(), 1);
}

#[test]
fn an_exported_bundle_deploys_on_another_root_under_the_same_id_without_its_source() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    // Gateway A stores the version; its bundle is all gateway B gets.
    let a = tempfile::tempdir().expect("tmp");
    let a_config = a.path().join("config.json");
    std::fs::write(&a_config, test_config(&a.path().join("root")).to_string()).expect("write");
    let src = a.path().join("src");
    let out = a.path().join("marks.jsonl");
    std::fs::create_dir_all(&src).expect("mkdir");
    let file = src.join("group.json");
    std::fs::write(&file, marker_group(&out).to_string()).expect("write");
    write_code(&src, &sdk, "bundled");
    let created = cli(
        &a_config,
        &["group", "create-version", &file.display().to_string()],
    );
    assert!(created.status.success(), "{}", text(&created));
    let id = first_line(&created);
    let bundle = a.path().join("v.tar");
    let exported = cli(
        &a_config,
        &["group", "export", &id, "-o", &bundle.display().to_string()],
    );
    assert!(exported.status.success(), "{}", text(&exported));
    std::fs::remove_dir_all(&src).expect("the source is gone");

    let b = start(&json!({}));
    let b_config = b.dir.path().join("config.json");
    let mut last = String::new();
    let deployed = wait_for(LIMIT, || {
        let o = cli(&b_config, &["deploy", &bundle.display().to_string()]);
        last = text(&o);
        o.status.success().then_some(o)
    })
    .unwrap_or_else(|| panic!("the bundle deploys: {last}"));
    assert!(
        text(&deployed).contains(&id),
        "same version id: {}",
        text(&deployed)
    );
    wait_mark(&out, "bundled", 1);

    // A damaged bundle is refused and changes nothing.
    let mut bytes = std::fs::read(&bundle).expect("read");
    let at = bytes
        .windows(6)
        .position(|w| w == b"MARK =")
        .expect("the handler is in the bundle");
    bytes[at + 8] ^= 0x20;
    let damaged = a.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes).expect("write");
    let refused = cli(&b_config, &["deploy", &damaged.display().to_string()]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("corrupt"), "{}", text(&refused));
}

#[test]
fn run_group_stores_the_version_deploy_would() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("rec.jsonl");
    let g = group(
        vec![function("recorder", &format!("record {}", out.display()))],
        vec![],
    );
    let rt = start(&g);
    let config = rt.dir.path().join("config.json");
    let listed = wait_for(LIMIT, || {
        let o = cli(&config, &["group", "list", "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        let ids: Vec<String> = v
            .as_array()?
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect();
        (!ids.is_empty()).then_some(ids)
    })
    .expect("run --group stored a version");
    let created = cli(
        &config,
        &[
            "group",
            "create-version",
            &rt.dir.path().join("group.json").display().to_string(),
        ],
    );
    assert!(created.status.success(), "{}", text(&created));
    assert!(
        text(&created).contains("already stored"),
        "{}",
        text(&created)
    );
    assert_eq!(listed, vec![first_line(&created)]);
}
