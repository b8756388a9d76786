//! The `evergreen` command line as a user meets it: help, listings, and the
//! errors and exit statuses for bad input. (Building this test also makes
//! `cargo test --workspace` build the binary the end-to-end crate runs.)

use std::process::{Command, Output};

fn evergreen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evergreen"))
        .args(args)
        .output()
        .expect("run evergreen")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn fixture(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn help_names_every_user_command() {
    let out = evergreen(&["--help"]);
    assert!(out.status.success());
    let help = text(&out);
    for cmd in ["run", "validate", "connectors"] {
        assert!(help.contains(cmd), "{help}");
    }
    assert!(
        !help.contains("connector <"),
        "the internal command stays hidden: {help}"
    );
}

#[test]
fn connectors_lists_the_built_in_manifests() {
    let out = evergreen(&["connectors"]);
    assert!(out.status.success());
    let list = text(&out);
    assert!(list.contains("Heartbeat (versions 1)"), "{list}");
    assert!(list.contains("outputs: evergreen/heartbeat"), "{list}");
    assert!(list.contains("MessageLog (versions 1)"), "{list}");
}

#[test]
fn unknown_connector_is_a_usage_error() {
    let out = evergreen(&["connector", "NoSuchConnector"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out).contains("no built-in connector named \"NoSuchConnector\""),
        "{}",
        text(&out)
    );
}

#[test]
fn validate_accepts_the_minimal_example() {
    let out = evergreen(&[
        "validate",
        &fixture("../../examples/function-to-function.json"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("valid (2 components, 1 subscriptions"),
        "{}",
        text(&out)
    );
}

#[test]
fn validate_without_a_file_checks_the_embedded_default_group() {
    let out = evergreen(&["validate"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).starts_with("(embedded default group): valid ("),
        "{}",
        text(&out)
    );

    // What `default-group` prints is that group, and validates as a file too.
    let printed = evergreen(&["default-group"]);
    assert!(printed.status.success());
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("default.json");
    std::fs::write(&file, &printed.stdout).expect("write");
    let out = evergreen(&["validate", &file.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn validate_of_a_missing_file_says_so() {
    let out = evergreen(&["validate", "/nonexistent/group.json"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out).contains("cannot read group file /nonexistent/group.json"),
        "{}",
        text(&out)
    );
}

/// The summary table of AWS's Greengrass V1 connector reference: every connector (the ML ones
/// under each of their architecture names) is built into this binary, at its latest version.
#[test]
fn connectors_lists_every_greengrass_v1_connector() {
    let out = evergreen(&["connectors"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listing = text(&out);
    let v1 = [
        ("ModbusRTUProtocolAdapter", 3),
        ("SerialStream", 3),
        ("TwilioNotifications", 5),
        ("DeviceDefender", 3),
        ("KinesisFirehose", 5),
        ("CloudWatchMetrics", 5),
        ("SNS", 4),
        ("IoTAnalytics", 4),
        ("ModbusTCPConnector", 3),
        ("RaspberryPiGPIO", 3),
        ("SplunkIntegration", 4),
        ("ServiceNowMetricBaseIntegration", 4),
        ("DockerApplicationDeployment", 7),
        ("IoTSiteWise", 12),
        ("IoTEIPProtocolAdaptor", 2),
        ("ImageClassificationARMv7", 2),
        ("ImageClassificationAarch64JTX2", 2),
        ("ImageClassificationx86-64", 2),
        ("ObjectDetectionARMv7", 1),
        ("ObjectDetectionAarch64JTX2", 1),
        ("ObjectDetectionx86-64", 1),
        ("MLFeedback", 1),
    ];
    for (name, latest) in v1 {
        let line = listing
            .lines()
            .find(|l| l.starts_with(&format!("{name} (versions ")))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{listing}"));
        assert!(
            line.contains(&format!("{latest})")) || line.contains(&format!("{latest},")),
            "{name} lacks its latest version {latest}: {line}"
        );
    }
}

#[test]
fn validate_accepts_a_raspberry_pi_gpio_group() {
    // The group crate's fixture, against the real RaspberryPiGPIO manifest this binary links.
    let file = fixture("../group/tests/fixtures/groups/good/raspberry-pi-gpio.json");
    let out = evergreen(&["validate", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = evergreen(&["connectors"]);
    assert!(text(&out).contains("RaspberryPiGPIO"), "{}", text(&out));
}

#[test]
fn validate_reports_an_unknown_connector() {
    // The full example with its CloudWatch connector swapped for a name no
    // Greengrass connector has (a misspelling).
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("group.json");
    let full = std::fs::read_to_string(fixture("../../examples/full-group.json")).expect("example");
    std::fs::write(
        &file,
        full.replace(
            "connectors/CloudWatchMetrics/versions/5",
            "connectors/DockerApplicationDeployer/versions/7",
        ),
    )
    .expect("write");
    let out = evergreen(&["validate", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("$.ConnectorDefinitionVersion.Connectors[1] (Id \"metrics\").ConnectorArn: unknown connector `DockerApplicationDeployer`"),
        "{t}"
    );
}

#[test]
fn a_bad_configuration_is_refused_with_its_key_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"evergreen": {"restart": {"jitter": 1.5}, "queueCapacity": 0}}"#,
    )
    .expect("write");
    let cfg = cfg.display().to_string();
    let out = evergreen(&[
        "run",
        "--config",
        &cfg,
        "--root",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("evergreen.restart.jitter"), "{t}");
    assert!(
        t.contains("evergreen.queueCapacity"),
        "all errors at once: {t}"
    );

    std::fs::write(
        dir.path().join("config.json"),
        r#"{"evergreen": {"colour": "green"}}"#,
    )
    .expect("write");
    let out = evergreen(&[
        "validate",
        "--config",
        &cfg,
        &fixture("../../examples/function-to-function.json"),
    ]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out).contains("colour"), "{}", text(&out));
}

#[test]
fn a_malformed_group_file_is_refused_with_its_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let group = dir.path().join("g.json");
    std::fs::write(
        &group,
        r#"{"FunctionDefinitionVersion": {"Functions": [{"Id": 5}]}}"#,
    )
    .expect("write");
    let out = evergreen(&["validate", &group.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("$.FunctionDefinitionVersion.Functions[0]"),
        "{}",
        text(&out)
    );
    std::fs::write(&group, "not json").expect("write");
    let out = evergreen(&["validate", &group.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn an_unknown_default_run_as_user_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"evergreen": {"defaultRunAs": {"user": "no-such-user-evergreen-test"}}}"#,
    )
    .expect("write");
    let out = evergreen(&[
        "run",
        "--config",
        &cfg.display().to_string(),
        "--root",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out)
            .contains("evergreen.defaultRunAs: no user named \"no-such-user-evergreen-test\""),
        "{}",
        text(&out)
    );
}
