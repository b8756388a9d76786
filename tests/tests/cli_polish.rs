//! End-to-end: the command line's polish (issue 23 item 6) against the real binary and a real
//! running runtime: `stop`/`start` over the control socket, `reset`'s confirmation, every
//! schema error of a group in one pass with its element's `Id`, messages without Rust type
//! names, `--json` documents, and the generated completions and man page.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);

/// A runtime with two long-running functions, and its configuration file.
fn running_pair() -> (Runtime, PathBuf) {
    let rt = Runtime::start(&group(
        vec![
            function("worker", "record /dev/null"),
            function("other", "record /dev/null"),
        ],
        vec![],
    ));
    let config = rt.path("config.json");
    wait_running(&config, "worker");
    wait_running(&config, "other");
    (rt, config)
}

/// `evergreen status --json`, parsed; `None` while no runtime answers.
fn status(config: &Path) -> Option<Value> {
    let out = evergreen_with(config, &["status", "--json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn component(status: &Value, name: &str) -> Value {
    status["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits for `name` to be Running with a pid; its component report.
fn wait_running(config: &Path, name: &str) -> Value {
    wait_for(LIMIT, || {
        let c = component(&status(config)?, name);
        (c["state"] == "Running" && c["pid"].is_u64()).then_some(c)
    })
    .unwrap_or_else(|| panic!("{name} Running; last status: {:?}", status(config)))
}

/// The one JSON document a `--json` command printed.
fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            output_text(out)
        )
    })
}

#[test]
fn stop_keeps_a_component_stopped_until_start() {
    let (rt, config) = running_pair();
    let before = wait_running(&config, "worker");
    let pid = i32::try_from(before["pid"].as_u64().unwrap_or(0)).unwrap_or(0);

    let out = evergreen_with(&config, &["stop", "worker", "--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let answer = json_out(&out);
    assert_eq!(answer["arn"], fn_arn("worker"));
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("stopped"),
        "{answer}"
    );
    // The answer comes once the child is gone.
    assert!(!alive(pid), "the child {pid} is gone when stop answers");

    let stopped = component(&status(&config).expect("status"), "worker");
    assert_eq!(stopped["state"], "Stopped", "{stopped}");
    assert_eq!(stopped["stoppedByOperator"], true, "{stopped}");
    assert!(stopped["pid"].is_null(), "{stopped}");
    // No restart policy brings it back: the restart backoff of the test configuration is
    // 50 ms, so a second is many chances.
    let restarted = wait_for(Duration::from_secs(1), || {
        (component(&status(&config)?, "worker")["state"] != "Stopped").then_some(())
    });
    assert!(restarted.is_none(), "{:?}", status(&config));
    let text = output_text(&evergreen_with(&config, &["status"]));
    assert!(text.contains("Stopped (operator)"), "{text}");
    assert!(
        read(&rt.function_log("worker")).contains("stopped by an operator")
            || read(&rt.function_log("worker")).contains("stop requested by an operator"),
        "{}",
        read(&rt.function_log("worker"))
    );
    // The other component was not touched.
    assert_eq!(
        component(&status(&config).expect("status"), "other")["state"],
        "Running"
    );

    // `restart` does not override an operator's stop; it says how to start it.
    let out = evergreen_with(&config, &["restart", "worker"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("evergreen start"),
        "{}",
        output_text(&out)
    );

    let out = evergreen_with(&config, &["start", "worker"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains(&format!("{}: started", fn_arn("worker"))),
        "{}",
        output_text(&out)
    );
    let again = wait_running(&config, "worker");
    assert_ne!(again["pid"], before["pid"]);
    assert_eq!(again["stoppedByOperator"], false);

    // Starting what runs is no error, and changes nothing.
    let out = evergreen_with(&config, &["start", "worker"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("nothing to do"),
        "{}",
        output_text(&out)
    );
    assert_eq!(wait_running(&config, "worker")["pid"], again["pid"]);
}

#[test]
fn a_new_deployment_starts_what_an_operator_stopped() {
    let (rt, config) = running_pair();
    let out = evergreen_with(&config, &["stop", "worker"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        component(&status(&config).expect("status"), "worker")["state"],
        "Stopped"
    );
    // The same group again: `worker` is unchanged, so kept, and the deployment starts it.
    let group_file = rt.path("group.json");
    let group_arg = group_file.to_str().expect("utf-8 path");
    let out = evergreen_with(&config, &["deploy", group_arg]);
    assert!(out.status.success(), "{}", output_text(&out));
    let worker = wait_running(&config, "worker");
    assert_eq!(worker["stoppedByOperator"], false);
    assert!(
        read(&rt.function_log("worker")).contains("started again by a new deployment"),
        "{}",
        read(&rt.function_log("worker"))
    );
}

#[test]
fn stop_and_start_of_an_unknown_component_fail_naming_it() {
    let (_rt, config) = running_pair();
    for op in ["stop", "start"] {
        let out = evergreen_with(&config, &[op, "nosuch"]);
        assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
        assert!(
            output_text(&out).contains(r#"no component named "nosuch" runs"#),
            "{}",
            output_text(&out)
        );
    }
}

#[test]
fn reset_without_yes_refuses_when_stdin_is_not_a_terminal() {
    let (_rt, config) = running_pair();
    // `evergreen_with` closes stdin: no terminal to ask on.
    let out = evergreen_with(&config, &["reset"]);
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(text.contains("not a terminal"), "{text}");
    assert!(text.contains("--yes"), "{text}");
    // Nothing was reset.
    wait_running(&config, "worker");
    wait_running(&config, "other");

    let out = evergreen_with(&config, &["reset", "--yes", "--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        json_out(&out)["DeploymentStatus"],
        "Success",
        "{}",
        output_text(&out)
    );
    let emptied = wait_for(LIMIT, || {
        status(&config)?["components"]
            .as_array()?
            .is_empty()
            .then_some(())
    });
    assert!(emptied.is_some(), "{:?}", status(&config));
}

/// Runs `evergreen reset` on a pseudo-terminal (util-linux `script`) answering `answer`.
fn reset_on_a_terminal(config: &Path, answer: &str) -> Option<Output> {
    if !have("script") {
        eprintln!("SKIPPED: `script` (util-linux) is not installed: no terminal to answer on");
        return None;
    }
    let command = format!(
        "{} reset --config {}",
        evergreen_bin().display(),
        config.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    if let Some(mut stdin) = child.stdin.take() {
        // Typed once the question is asked: the terminal buffers the line until it is read.
        let _ = stdin.write_all(format!("{answer}\n").as_bytes());
    }
    Some(child.wait_with_output().expect("script's output"))
}

#[test]
fn reset_on_a_terminal_asks_and_takes_only_yes() {
    let (_rt, config) = running_pair();
    let Some(out) = reset_on_a_terminal(&config, "no") else {
        return;
    };
    let text = output_text(&out);
    assert!(text.contains("[y/N]"), "{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not reset"), "{text}");
    wait_running(&config, "worker");

    let Some(out) = reset_on_a_terminal(&config, "yes") else {
        return;
    };
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Success"), "{text}");
    let emptied = wait_for(LIMIT, || {
        status(&config)?["components"]
            .as_array()?
            .is_empty()
            .then_some(())
    });
    assert!(emptied.is_some(), "{:?}", status(&config));
}

/// A group with several schema errors (unknown member, wrong types, a missing member) and a
/// validation error, in elements with and without an `Id`.
fn group_with_many_errors() -> Value {
    json!({
        "FunctionDefinitionVersion": { "Functions": [
            { "Id": "reader", "FunctionArn": fn_arn("reader"),
              "FunctionConfiguration": { "Executable": "/bin/true", "Pined": true, "MemorySize": "big" } },
            { "FunctionArn": fn_arn("nameless") }
        ]},
        "SubscriptionDefinitionVersion": { "Subscriptions": [
            { "Id": "temp-to-cloud", "Source": fn_arn("reader"), "Target": "cloud" }
        ]},
        "LoggerDefinitionVersion": { "Loggers": [
            { "Id": "sys", "Component": "GreengrassSystem", "Level": "INFO", "Type": "FileSystem", "Space": "lots" }
        ]}
    })
}

fn write_file(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).expect("write");
    path
}

fn evergreen(args: &[&str]) -> Output {
    Command::new(evergreen_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run evergreen")
}

#[test]
fn validate_reports_every_schema_error_at_once_with_the_element_id() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = write_file(dir.path(), "g.json", &group_with_many_errors());
    let file_arg = file.to_str().expect("utf-8");
    let out = evergreen(&["validate", file_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let text = output_text(&out);
    for line in [
        r#"$.FunctionDefinitionVersion.Functions[0] (Id "reader").FunctionConfiguration.Pined: unknown member "Pined" in FunctionConfiguration; did you mean Pinned?"#,
        r#"$.FunctionDefinitionVersion.Functions[0] (Id "reader").FunctionConfiguration.MemorySize: must be a whole number, not the string "big""#,
        "$.FunctionDefinitionVersion.Functions[1].Id: is required: a function must have Id",
        r#"$.SubscriptionDefinitionVersion.Subscriptions[0] (Id "temp-to-cloud").Subject: is required: a subscription must have Subject"#,
        r#"$.LoggerDefinitionVersion.Loggers[0] (Id "sys").Space: must be a whole number, not the string "lots""#,
    ] {
        assert!(text.contains(line), "missing:\n{line}\nin:\n{text}");
    }
    assert!(text.contains("5 error(s)"), "{text}");

    let out = evergreen(&["validate", file_arg, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let doc = json_out(&out);
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["file"], file_arg);
    let errors = doc["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 5, "{doc:#}");
    let subject = errors
        .iter()
        .find(|e| e["path"] == "$.SubscriptionDefinitionVersion.Subscriptions[0].Subject")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(subject["id"], "temp-to-cloud");
    assert!(subject["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("is required"));
    let nameless = errors
        .iter()
        .find(|e| e["path"] == "$.FunctionDefinitionVersion.Functions[1].Id")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert!(nameless["id"].is_null(), "{nameless}");

    // Once the shape is right, validation's own errors carry the Id too.
    let mut g = group(
        vec![function("f", "record /dev/null")],
        vec![sub("to-nowhere", &fn_arn("f"), "t", "nowhere")],
    );
    g["FunctionDefinitionVersion"]["Functions"][0]["FunctionConfiguration"]["MemorySize"] =
        json!(-5);
    let file = write_file(dir.path(), "v.json", &g);
    let out = evergreen(&["validate", file.to_str().expect("utf-8")]);
    let text = output_text(&out);
    assert!(
        text.contains(r#"Subscriptions[0] (Id "to-nowhere").Target: "#),
        "{text}"
    );
    assert!(
        text.contains(r#"Functions[0] (Id "f").FunctionConfiguration.MemorySize: "#),
        "{text}"
    );
}

/// Phrases of Rust and serde that must never reach an operator.
const RUST_WORDS: &[&str] = &[
    "invalid type",
    "invalid value",
    "expected u8",
    "expected u16",
    "expected u32",
    "expected u64",
    "expected i32",
    "expected i64",
    "expected f64",
    "expected usize",
    "expected a sequence",
    "expected a map",
    "expected struct",
    "expected enum",
    "struct ",
    "enum ",
    "unknown field",
    "missing field",
    "unknown variant",
    "Option<",
    "Vec<",
];

fn assert_in_words(what: &str, out: &Output) {
    let text = output_text(out);
    assert!(!out.status.success(), "{what} should fail: {text}");
    for word in RUST_WORDS {
        assert!(!text.contains(word), "{what}: {word:?} in:\n{text}");
    }
}

#[test]
fn bad_inputs_are_explained_without_rust_type_names() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("root");
    let good_config = write_file(dir.path(), "good-config.json", &test_config(&root));
    let good_config_arg = good_config.to_str().expect("utf-8");

    // Groups: through validate, run and deploy (to a runtime that is not there: the file is
    // judged first).
    let mut groups = vec![group_with_many_errors()];
    for bad in [
        json!({"CoreDefinitionVersion": {"Cores": "core"}}),
        json!({"CoreDefinitionVersion": {"Cores": [{"Id": 1, "ThingArn": true, "CertificateArn": null}]}}),
        json!({"FunctionDefinitionVersion": {"Functions": [{"Id": "f", "FunctionConfiguration":
            {"Environment": {"Variables": {"N": 1}, "Execution": {"RunAs": {"Uid": "root"}}}, "Timeout": 1e99}}]}}),
        json!({"ConnectorDefinitionVersion": {"Connectors": [{"Id": "c", "ConnectorArn": 5, "Parameters": {"A": null}}]}}),
        json!({"ResourceDefinitionVersion": {"Resources": [{"Id": "r", "Name": "R", "ResourceDataContainer":
            {"LocalDeviceResourceData": {"SourcePath": ["/dev/tty0"]}}}]}}),
    ] {
        groups.push(bad);
    }
    for (i, g) in groups.iter().enumerate() {
        let file = write_file(dir.path(), &format!("group-{i}.json"), g);
        let file_arg = file.to_str().expect("utf-8");
        assert_in_words(
            &format!("validate group-{i}"),
            &evergreen(&["validate", file_arg]),
        );
        assert_in_words(
            &format!("run group-{i}"),
            &evergreen_with(&good_config, &["run", "--group", file_arg]),
        );
        assert_in_words(
            &format!("deploy group-{i}"),
            &evergreen_with(&good_config, &["deploy", file_arg]),
        );
    }

    // Configurations: each stops at its first problem, in words too.
    for (i, patch) in [
        json!({"evergreen": {"readinessTimeoutMs": "soon"}}),
        json!({"evergreen": {"logToStderr": 3}}),
        json!({"evergreen": {"restart": {"multiplier": "two"}}}),
        json!({"evergreen": {"restart": {"policy": "sometimes"}}}),
        json!({"evergreen": {"restart": [1, 2]}}),
        json!({"evergreen": {"shutdownGraceMs": -1}}),
        json!({"evergreen": {"shutdownGraceMs": 1.5}}),
        json!({"evergreen": {"nosuchKey": 1}}),
        json!({"coreThing": {"ggMqttPort": 70000}}),
        json!({"coreThing": {"ggMqttPort": "8883"}}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut config = test_config(&root);
        merge(&mut config, &patch);
        let file = write_file(dir.path(), &format!("config-{i}.json"), &config);
        let file_arg = file.to_str().expect("utf-8");
        for args in [
            vec!["validate", "--config", file_arg],
            vec!["run", "--config", file_arg],
            vec!["deploy", good_config_arg, "--config", file_arg],
        ] {
            assert_in_words(
                &format!("{} with config {patch}", args[0]),
                &evergreen(&args),
            );
        }
    }
    // The numbers are said as numbers.
    let mut config = test_config(&root);
    merge(&mut config, &json!({"coreThing": {"ggMqttPort": 70000}}));
    let file = write_file(dir.path(), "port.json", &config);
    let text = output_text(&evergreen(&[
        "validate",
        "--config",
        file.to_str().expect("utf-8"),
    ]));
    assert!(
        text.contains("must be a whole number from 0 to 65535, not the number 70000"),
        "{text}"
    );
}

#[test]
fn json_flags_print_one_document_each() {
    let (rt, config) = running_pair();
    let config_arg = config.to_str().expect("utf-8");
    let group_file = rt.path("group.json");
    let group_arg = group_file.to_str().expect("utf-8");

    let doc = json_out(&evergreen(&[
        "validate", group_arg, "--config", config_arg, "--json",
    ]));
    assert_eq!(doc["valid"], true, "{doc}");
    assert_eq!(doc["errors"], json!([]));
    assert!(
        doc["summary"]
            .as_str()
            .unwrap_or("")
            .contains("2 components"),
        "{doc}"
    );

    let doc = json_out(&evergreen(&["connectors", "--json"]));
    let connectors = doc["connectors"].as_array().expect("connectors");
    let heartbeat = connectors
        .iter()
        .find(|c| c["name"] == "Heartbeat")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert!(
        heartbeat["versions"].is_array() && heartbeat["parameters"].is_array(),
        "{heartbeat}"
    );

    let doc = json_out(&evergreen_with(&config, &["secrets", "list", "--json"]));
    assert_eq!(doc, json!({"secrets": [], "problems": []}));

    let doc = json_out(&evergreen_with(
        &config,
        &["group", "create-version", group_arg, "--json"],
    ));
    let id = doc["id"].as_str().expect("id").to_string();
    assert_eq!(doc["existed"], true, "run --group stored it already: {doc}");
    let list = json_out(&evergreen_with(&config, &["group", "list", "--json"]));
    assert!(
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v["id"] == id.as_str())),
        "{list}"
    );
    let shown = json_out(&evergreen_with(&config, &["group", "show", &id, "--json"]));
    assert!(
        shown["group"]["FunctionDefinitionVersion"].is_object(),
        "{shown}"
    );

    for args in [
        vec!["status", "--json"],
        vec!["deployments", "--json"],
        vec!["restart", "other", "--json"],
        vec!["deploy", group_arg, "--json"],
    ] {
        let out = evergreen_with(&config, &args);
        assert!(out.status.success(), "{args:?}: {}", output_text(&out));
        json_out(&out);
    }
    // The operator's offline fleet tools: a bundle of the running group, signed.
    let out_dir = tempfile::tempdir().expect("tmp");
    let bundle = out_dir.path().join("group.tar");
    let bundle_arg = bundle.to_str().expect("utf-8");
    let doc = json_out(&evergreen_with(
        &config,
        &["group", "export", &id, "--output", bundle_arg, "--json"],
    ));
    assert_eq!(doc["file"], bundle_arg, "{doc}");
    let key = out_dir.path().join("fleet.key");
    let key_arg = key.to_str().expect("utf-8");
    let doc = json_out(&evergreen(&["fleet", "keygen", key_arg, "--json"]));
    assert_eq!(doc["keyFile"], key_arg, "{doc}");
    let doc = json_out(&evergreen(&[
        "fleet",
        "sign",
        bundle_arg,
        "--key",
        key_arg,
        "--fleet",
        "line-1",
        "--url",
        "https://example.invalid/g.tar",
        "--sequence",
        "7",
        "--things",
        "gw-1",
        "--json",
    ]));
    let size = std::fs::metadata(&bundle).expect("bundle").len();
    assert_eq!(doc["fleet"], "line-1", "{doc}");
    assert_eq!(doc["sequence"], 7, "{doc}");
    assert_eq!(doc["bundleSize"], size, "{doc}");
    let sha = doc["bundleSha256"].as_str().unwrap_or("");
    assert!(
        sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "{doc}"
    );
    // The document is a string to publish as it is; it names the same bundle.
    let signed = doc["document"].as_str().unwrap_or("");
    assert!(serde_json::from_str::<Value>(signed).is_ok(), "{doc}");
    assert!(signed.contains(sha), "{doc}");

    let archive = out_dir.path().join("support.tar.gz");
    let archive_arg = archive.to_str().expect("utf-8");
    let doc = json_out(&evergreen_with(
        &config,
        &["support-bundle", "--output", archive_arg, "--json"],
    ));
    assert_eq!(doc["archive"], archive_arg, "{doc}");
    assert_eq!(
        doc["bytes"],
        std::fs::metadata(&archive).expect("archive").len(),
        "{doc}"
    );
    let files: Vec<&str> = doc["files"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in ["MANIFEST.txt", "version.txt"] {
        assert!(files.contains(&name), "{name} not listed: {doc}");
    }
    assert!(doc["notCollected"].is_array(), "{doc}");

    // An invalid group given to deploy --json is the same document as validate --json's.
    let dir = tempfile::tempdir().expect("tmp");
    let bad = write_file(dir.path(), "bad.json", &group_with_many_errors());
    let out = evergreen_with(&config, &["deploy", bad.to_str().expect("utf-8"), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert_eq!(json_out(&out)["errors"].as_array().map(Vec::len), Some(5));
}

/// A configuration file with several keys at fault names them all in one run, each by its
/// path (the same promise `validate` keeps for group files).
#[test]
fn a_configuration_with_several_bad_keys_lists_them_all() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_file(
        dir.path(),
        "config.json",
        &json!({
            "coreThing": {"thingNme": "gw"},
            "evergreen": {"logLevl": "debug", "restart": {"initialBackoffMs": "fast"}},
        }),
    );
    let out = evergreen_with(&config, &["status"]);
    assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stderr);
    for key in [
        "coreThing.thingNme",
        "evergreen.logLevl",
        "evergreen.restart.initialBackoffMs",
    ] {
        assert!(text.contains(key), "{key} not named: {text}");
    }
}

#[test]
fn json_flags_of_commands_that_need_no_runtime() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = write_file(
        dir.path(),
        "config.json",
        &test_config(&dir.path().join("root")),
    );
    let doc = json_out(&evergreen_with(&config, &["certs", "init", "--json"]));
    assert_eq!(doc["createdCa"], true, "{doc}");
    for key in ["ca", "certificate", "key"] {
        assert!(
            Path::new(doc[key].as_str().unwrap_or("")).is_file(),
            "{key}: {doc}"
        );
    }
    let doc = json_out(&evergreen_with(&config, &["certs", "init", "--json"]));
    assert_eq!(doc["createdCa"], false, "the CA is kept: {doc}");
    let doc = json_out(&evergreen_with(
        &config,
        &["certs", "device", "thing-1", "--json"],
    ));
    assert!(
        Path::new(doc["certificate"].as_str().unwrap_or("")).is_file(),
        "{doc}"
    );

    let code = dir.path().join("fn");
    std::fs::create_dir_all(&code).expect("mkdir");
    std::fs::write(
        code.join("handler.py"),
        "def handler(event, context):\n    return None\n",
    )
    .expect("write");
    let doc = json_out(&evergreen(&[
        "function",
        "package",
        code.to_str().expect("utf-8"),
        "--json",
    ]));
    assert_eq!(doc["files"], 1, "{doc}");
    assert_eq!(doc["hasSdk"], false, "{doc}");
    assert!(
        Path::new(doc["archive"].as_str().unwrap_or("")).is_file(),
        "{doc}"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line() {
    for shell in ["bash", "zsh", "fish"] {
        let out = evergreen(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", output_text(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        for command in ["deploy", "stop", "start", "support-bundle"] {
            assert!(text.contains(command), "{shell} completion lacks {command}");
        }
    }
    let out = evergreen(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown shell");

    let out = evergreen(&["man"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH evergreen 1"), "{page}");
    assert!(page.contains("EXIT STATUS"), "{page}");
    let dir = tempfile::tempdir().expect("tmp");
    let out = evergreen(&["man", "--dir", dir.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(dir.path().join("evergreen.1").is_file());
    assert!(dir.path().join("evergreen-stop.1").is_file());
    // `man` renders it without a warning (what lintian's manpage check runs).
    if have("groff") {
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(dir.path().join("evergreen.1"))
            .output()
            .expect("groff");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
