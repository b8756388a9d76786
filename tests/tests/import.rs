//! `evergreen import` against the real binary, on inputs written from AWS's documented shapes
//! (`tests/import/`): saved `aws greengrass get-*` outputs of the Twilio connector tutorial's
//! group (a directory, with an older function definition version and a README beside them) and a
//! combined JSON of outputs; CloudFormation templates of the same group in YAML (short-form tags,
//! inline code) and JSON (code in S3, version resources and a GroupVersion), and a complete one
//! with inline code; an unknown connector and a SageMaker model; malformed input.
//!
//! What is checked is what the user relies on: the group written, every reference resolved to
//! the string CloudFormation would have passed, each thing left to do listed (text and `--json`),
//! the exit status (0 complete, 2 to finish, 1 unusable), and that a complete import passes
//! `evergreen validate`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use evergreen_tests::{containers_unavailable, evergreen_bin, output_text, test_config};
use serde_json::Value;

const ALIAS_ARN: &str = "arn:aws:lambda:us-west-2:123456789012:function:TempMonitor:GG_TempMonitor";
const TWILIO_ARN: &str = "arn:aws:greengrass:us-west-2::/connectors/TwilioNotifications/versions/4";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("import")
        .join(name)
}

fn import(args: &[&str]) -> Output {
    Command::new(evergreen_bin())
        .arg("import")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run evergreen import")
}

/// `evergreen import` of the template fixture `name` for us-west-2 and the test account,
/// writing the group to `out_file`, with the report as JSON.
fn import_template(name: &str, out_file: &Path) -> Output {
    import(&[
        path_str(&fixture(name)),
        "--region",
        "us-west-2",
        "--account",
        "123456789012",
        "-o",
        path_str(out_file),
        "--json",
    ])
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `--json` report, from stderr.
fn json_report(out: &Output) -> Value {
    serde_json::from_slice(&out.stderr).unwrap_or_else(|e| {
        panic!(
            "the report is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The report's to-dos as "subject: message" lines.
fn todos(report: &Value) -> Vec<String> {
    report["todo"]
        .as_array()
        .expect("a todo list")
        .iter()
        .map(|t| format!("{}: {}", t["subject"], t["message"]))
        .collect()
}

fn notes(report: &Value) -> String {
    report["notes"].to_string()
}

/// `evergreen validate FILE` with a test configuration.
fn validate(group: &Path, dir: &Path) -> Output {
    let config = dir.join("config.json");
    std::fs::write(&config, test_config(&dir.join("root")).to_string()).expect("write config");
    Command::new(evergreen_bin())
        .arg("validate")
        .arg(group)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run evergreen validate")
}

#[test]
fn cli_output_directory_imports_what_the_group_version_names_and_flags_the_lambda_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("group.json");
    let out = import(&[
        path_str(&fixture("twilio-cli")),
        "-o",
        path_str(&out_file),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(out.stdout.is_empty(), "the group goes to -o, not stdout");
    let group = read_json(&out_file);
    let connector = &group["ConnectorDefinitionVersion"]["Connectors"][0];
    assert_eq!(connector["ConnectorArn"], TWILIO_ARN);
    assert_eq!(
        connector["Parameters"]["TwilioAuthTokenSecretArn-ResourceId"],
        "TwilioAuthToken"
    );
    let subscriptions = group["SubscriptionDefinitionVersion"]["Subscriptions"]
        .as_array()
        .expect("subscriptions");
    assert_eq!(subscriptions.len(), 3);
    let function = &group["FunctionDefinitionVersion"]["Functions"][0];
    assert_eq!(
        function["FunctionArn"], ALIAS_ARN,
        "the version the group version names"
    );
    assert_eq!(function["FunctionConfiguration"]["Timeout"], 5);
    assert!(function["FunctionConfiguration"].get("CodeUri").is_none());
    assert_eq!(
        group["CoreDefinitionVersion"]["Cores"][0]["ThingArn"],
        "arn:aws:iot:us-west-2:123456789012:thing/TwilioTutorialCore"
    );

    let report = json_report(&out);
    assert_eq!(report["status"], "incomplete");
    let todo = todos(&report);
    assert_eq!(todo.len(), 1, "{todo:#?}");
    assert!(
        todo[0].contains("function TempMonitorFunction")
            && todo[0].contains("not in the input")
            && todo[0].contains("functions/TempMonitor")
            && todo[0].contains("CodeUri"),
        "{todo:#?}"
    );
    let notes = notes(&report);
    assert!(
        notes.contains("functions-first-try.json") && notes.contains("left out"),
        "{notes}"
    );
    assert!(
        notes.contains("README.txt") && notes.contains("skipped"),
        "{notes}"
    );
    assert_eq!(report["validation"], serde_json::json!([]));
}

#[test]
fn combined_json_of_cli_outputs_is_complete_and_passes_validate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("group.json");
    let out = import(&[
        path_str(&fixture("combined-complete.json")),
        "-o",
        path_str(&out_file),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(": complete"), "{stderr}");
    assert!(!stderr.contains("TODO"), "{stderr}");
    let group = read_json(&out_file);
    for key in [
        "CoreDefinitionVersion",
        "FunctionDefinitionVersion",
        "ResourceDefinitionVersion",
        "ConnectorDefinitionVersion",
        "SubscriptionDefinitionVersion",
        "LoggerDefinitionVersion",
    ] {
        assert!(group.get(key).is_some(), "{key} missing from {group:#}");
    }
    let checked = validate(&out_file, dir.path());
    assert_eq!(checked.status.code(), Some(0), "{}", output_text(&checked));

    // Without -o the same group goes to stdout.
    let out = import(&[path_str(&fixture("combined-complete.json"))]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("the group on stdout");
    assert_eq!(printed, group);
}

#[test]
fn twilio_tutorial_yaml_template_resolves_refs_getatts_and_short_form_tags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("group.json");
    let out = import_template("twilio-tutorial.yaml", &out_file);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let group = read_json(&out_file);

    let core = &group["CoreDefinitionVersion"]["Cores"][0];
    assert_eq!(core["Id"], "TwilioTutorialCore");
    assert_eq!(
        core["ThingArn"],
        "arn:aws:iot:us-west-2:123456789012:thing/TwilioTutorialCore"
    );
    assert_eq!(
        core["CertificateArn"],
        "arn:aws:iot:us-west-2:123456789012:cert/9a1c4e7b2d5f8a0c3e6b9d2f5a8c1e4b7d0a3c6e9f2b5d8a1c4e7b0d3f6a9c2e"
    );
    assert_eq!(
        core["SyncShadow"], false,
        "CloudFormation's 'false' is the API's boolean"
    );

    let connector = &group["ConnectorDefinitionVersion"]["Connectors"][0];
    assert_eq!(connector["ConnectorArn"], TWILIO_ARN);
    assert_eq!(
        connector["Parameters"],
        serde_json::json!({
            "TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
            "TwilioAuthTokenSecretArn": "arn:aws:secretsmanager:us-west-2:123456789012:secret:greengrass-TwilioAuthToken-Xy12Ab",
            "TwilioAuthTokenSecretArn-ResourceId": "TwilioAuthToken",
            "DefaultFromPhoneNumber": "+15555550100"
        })
    );
    assert_eq!(
        group["ResourceDefinitionVersion"]["Resources"][0]["ResourceDataContainer"]
            ["SecretsManagerSecretResourceData"]["ARN"],
        connector["Parameters"]["TwilioAuthTokenSecretArn"]
    );

    let function = &group["FunctionDefinitionVersion"]["Functions"][0];
    assert_eq!(
        function["FunctionArn"], ALIAS_ARN,
        "!Ref of the Lambda alias"
    );
    let config = &function["FunctionConfiguration"];
    assert_eq!(
        config["Runtime"], "python3.7",
        "from the AWS::Lambda::Function"
    );
    assert_eq!(config["Executable"], "index.function_handler");
    assert_eq!(config["CodeUri"], "functions/TempMonitor");
    assert_eq!(config["MemorySize"], 16000);
    let code = std::fs::read_to_string(dir.path().join("functions/TempMonitor/index.py"))
        .expect("the inline code written beside the group");
    assert!(
        code.contains("def function_handler(event, context):"),
        "{code}"
    );

    let subscriptions: Vec<(String, String)> = group["SubscriptionDefinitionVersion"]
        ["Subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .map(|s| {
            (
                s["Source"].as_str().unwrap_or_default().to_string(),
                s["Target"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        subscriptions,
        [
            (ALIAS_ARN.to_string(), TWILIO_ARN.to_string()),
            // !Join [':', [!GetAtt TempMonitor.Arn, GG_TempMonitor]]
            ("cloud".to_string(), ALIAS_ARN.to_string()),
            (TWILIO_ARN.to_string(), "cloud".to_string()),
        ]
    );

    let report = json_report(&out);
    let todo = todos(&report);
    assert_eq!(todo.len(), 1, "{todo:#?}");
    assert!(
        todo[0].contains("greengrasssdk")
            && todo[0].contains("pip install --target functions/TempMonitor"),
        "{todo:#?}"
    );
    assert_eq!(report["validation"], serde_json::json!([]), "{report:#}");
    assert!(
        notes(&report).contains("LambdaEmptyRole (AWS::IAM::Role)"),
        "{report:#}"
    );
    assert_eq!(
        report["files"][0],
        path_str(&dir.path().join("functions/TempMonitor/index.py"))
    );

    // The tutorial's function and connector run in a Greengrass container, which only a host
    // that can run container mode accepts.
    match containers_unavailable() {
        None => {
            let checked = validate(&out_file, dir.path());
            assert_eq!(checked.status.code(), Some(0), "{}", output_text(&checked));
        }
        Some(why) => eprintln!("not running `evergreen validate` on the container group: {why}"),
    }
}

#[test]
fn twilio_tutorial_json_template_with_its_code_in_s3_is_flagged_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("group.json");
    let out = import_template("twilio-tutorial-s3.json", &out_file);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let group = read_json(&out_file);
    let function = &group["FunctionDefinitionVersion"]["Functions"][0];
    assert_eq!(function["FunctionArn"], ALIAS_ARN);
    assert_eq!(function["FunctionConfiguration"]["Runtime"], "python3.7");
    assert_eq!(
        function["FunctionConfiguration"]["Timeout"], 5,
        "'5' became a number"
    );
    assert!(function["FunctionConfiguration"].get("CodeUri").is_none());
    assert_eq!(
        group["CoreDefinitionVersion"]["Cores"][0]["ThingArn"],
        "arn:aws:iot:us-west-2:123456789012:thing/TwilioTutorialCore",
        "Fn::Join with the pseudo parameters"
    );
    assert_eq!(
        group["SubscriptionDefinitionVersion"]["Subscriptions"][1]["Target"],
        ALIAS_ARN
    );

    let report = json_report(&out);
    let todo = todos(&report);
    assert_eq!(todo.len(), 1, "{todo:#?}");
    assert!(
        todo[0].contains("s3://tutorial-lambda-packages/temp_monitor_python.zip")
            && todo[0].contains("functions/TempMonitor.zip")
            && todo[0].contains("CodeUri"),
        "{todo:#?}"
    );
    let notes = notes(&report);
    assert!(notes.contains("parameter CodeBucket"), "{notes}");
    assert!(
        notes.contains("TempMonitorAlias (AWS::Lambda::Alias)"),
        "{notes}"
    );
}

#[test]
fn without_region_and_account_the_template_gets_placeholders_that_the_report_lists() {
    let out = import(&[path_str(&fixture("twilio-tutorial.yaml"))]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let group: Value = serde_json::from_slice(&out.stdout).expect("the group on stdout");
    assert_eq!(
        group["CoreDefinitionVersion"]["Cores"][0]["ThingArn"],
        "arn:aws:iot:<AWS::Region>:<AWS::AccountId>:thing/TwilioTutorialCore"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("TODO <AWS::Region>: the stack's region: import again with --region REGION"),
        "{stderr}"
    );
    assert!(stderr.contains("TODO <AWS::AccountId>"), "{stderr}");
    assert!(
        stderr.contains("Resources.CoreDefinition.Properties.InitialVersion.Cores[0].ThingArn"),
        "every place is listed: {stderr}"
    );
    // Without -o nothing is written, so the inline code is a to-do too.
    assert!(stderr.contains("import with -o FILE"), "{stderr}");
    assert!(
        stderr.contains("`evergreen validate` says of the output"),
        "{stderr}"
    );
}

#[test]
fn inline_python_template_is_complete_writes_its_code_and_passes_validate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("relay.json");
    let out = import(&[
        path_str(&fixture("relay-inline.json")),
        "--region",
        "eu-west-1",
        "--account",
        "123456789012",
        "-o",
        path_str(&out_file),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let group = read_json(&out_file);
    let config = &group["FunctionDefinitionVersion"]["Functions"][0]["FunctionConfiguration"];
    assert_eq!(
        config["Executable"], "index.handler",
        "the Lambda's Handler"
    );
    assert_eq!(config["Runtime"], "python3.8");
    assert_eq!(config["CodeUri"], "functions/relay");
    assert_eq!(config["Pinned"], true);
    assert_eq!(config["MemorySize"], 16384);
    assert_eq!(
        group["LoggerDefinitionVersion"]["Loggers"][0]["Space"],
        1024
    );
    assert_eq!(
        group["SubscriptionDefinitionVersion"]["Subscriptions"][0]["Target"],
        "arn:aws:lambda:eu-west-1:123456789012:function:relay:live"
    );
    let code = std::fs::read_to_string(dir.path().join("functions/relay/index.py")).expect("code");
    assert!(code.contains("def handler(event, context):"), "{code}");
    let checked = validate(&out_file, dir.path());
    assert_eq!(checked.status.code(), Some(0), "{}", output_text(&checked));

    // Again into the same place: the code file is the same, so nothing changes.
    let again = import(&[
        path_str(&fixture("relay-inline.json")),
        "--region",
        "eu-west-1",
        "--account",
        "123456789012",
        "-o",
        path_str(&out_file),
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", output_text(&again));
}

#[test]
fn unknown_connectors_and_sagemaker_models_are_listed_not_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("group.json");
    let out = import(&[
        path_str(&fixture("unknown-connector.json")),
        "-o",
        path_str(&out_file),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let group = read_json(&out_file);
    assert_eq!(
        group["ConnectorDefinitionVersion"]["Connectors"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "kept in the output for the user to decide"
    );
    let report = json_report(&out);
    let todo = todos(&report).join("\n");
    assert!(
        todo.contains("connector Compose")
            && todo.contains("DockerApplicationDeployer")
            && todo.contains("is not built into this Evergreen"),
        "{todo}"
    );
    // The image classification connector is built in now; its SageMaker model is what must change.
    assert!(!todo.contains("connector Classifier"), "{todo}");
    assert!(
        todo.contains("resource BirdModel")
            && todo.contains("SageMaker")
            && todo.contains("S3MachineLearningModelResourceData"),
        "{todo}"
    );
    let validation: Vec<&str> = report["validation"]
        .as_array()
        .expect("validation")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        validation.len(),
        1,
        "validate refuses the connector this build lacks, and only it: {validation:#?}"
    );
    assert!(
        validation.iter().all(|e| e.contains(".ConnectorArn:")),
        "{validation:#?}"
    );
}

#[test]
fn malformed_or_unrecognised_input_is_refused_with_where_and_exit_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("group.json");
    let out = import(&[
        path_str(&fixture("malformed.json")),
        "-o",
        path_str(&out_file),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("malformed.json is not valid JSON: line 5, column"),
        "{stderr}"
    );
    assert!(!out_file.exists(), "nothing is written");

    let out = import(&[path_str(&fixture("malformed.yaml"))]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("malformed.yaml is not valid YAML: line"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let other = dir.path().join("groups.json");
    std::fs::write(&other, r#"{"Groups": [{"Id": "g"}]}"#).expect("write");
    let out = import(&[path_str(&other), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let report = json_report(&out);
    assert_eq!(report["status"], "unusable");
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("not a saved `aws greengrass get-group-version`")),
        "{report:#}"
    );

    let out = import(&[path_str(&dir.path().join("missing.json"))]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let out = import(&[
        path_str(&fixture("twilio-cli/core.json")),
        path_str(&fixture("twilio-tutorial.yaml")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("import them separately"));

    let out = import(&[
        path_str(&fixture("twilio-tutorial.yaml")),
        "--region",
        "US West",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a region"));
}
