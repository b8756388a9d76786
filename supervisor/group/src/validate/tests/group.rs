//! Tests of validation: whole groups: the good fixtures, parse errors, ids, and properties of validation as a whole (every error at once, no panic, determinism).

use super::*;

#[test]
fn good_empty() {
    let plan = plan(fixture!("good", "empty"));
    assert_eq!(plan.core.thing_arn, CORE);
    assert_eq!(plan.core.thing_name, "evergreen-core");
    assert_eq!(
        (plan.core.region.as_str(), plan.core.account.as_str()),
        (REGION, ACCOUNT)
    );
    assert!(plan.components.is_empty() && plan.subscriptions.is_empty());
    assert_eq!(plan.loggers, LoggerPlan::default());
}

#[test]
fn good_everything() {
    let plan = plan(fixture!("good", "everything"));
    // The system function configures a service Evergreen runs itself.
    assert!(!plan.components.keys().any(|k| k.contains("GGCloudSpooler")));
    assert_eq!(plan.components.len(), 5);
    assert_eq!(plan.devices.len(), 2);
    assert_eq!(plan.resources.len(), 7);
    let controller = component(&plan, &fn_arn("controller", "prod"));
    assert_eq!(
        controller.run_as,
        RunAs {
            uid: Some(1005),
            gid: None
        }
    );
    let grants: Vec<(&str, bool)> = controller
        .resources
        .iter()
        .map(|r| (r.resource_id.as_str(), r.read_write))
        .collect();
    assert_eq!(
        grants,
        [
            ("data-volume", true),
            ("model", false),
            ("webcam", false),
            ("shared-memory", true)
        ]
    );
    let twilio = component(&plan, &connector_arn("TwilioNotifications", 4));
    assert_eq!(twilio.isolation, Isolation::GreengrassContainer);
    assert!(
        !twilio.parameters.contains_key("IsolationMode"),
        "v4 has no IsolationMode"
    );
    let defender = component(&plan, &connector_arn("DeviceDefender", 3));
    assert_eq!(
        defender.resources,
        [ResourceAccess {
            resource_id: "host-proc".into(),
            read_write: false
        }]
    );
    let modbus = component(&plan, &connector_arn("ModbusTCPConnector", 3));
    assert_eq!(
        modbus.isolation,
        Isolation::NoContainer,
        "the only mode it supports"
    );
    assert_eq!(
        modbus
            .parameters
            .get("LocalStoragePath")
            .map(String::as_str),
        Some("/var/sitewise")
    );
    assert_eq!(
        plan.loggers,
        LoggerPlan {
            system: LogSettings {
                level: LogLevel::Warn,
                space_kb: 512,
                file_system: true,
                cloud_watch: None,
            },
            user: LogSettings {
                level: LogLevel::Info,
                space_kb: 2048,
                file_system: true,
                // The group's AWSCloudWatch logger for Lambda, at DEBUG.
                cloud_watch: Some(LogLevel::Debug),
            },
        }
    );
    assert_eq!(
        plan.resources.get("model").map(|r| &r.data),
        Some(&ResourceData::MachineLearningModel {
            origin: "s3://my-models/squeezenet.tar.gz".into(),
            destination_path: PathBuf::from("/ml/squeezenet"),
            group_owner: Some("ml".into()),
            read_write: false,
        })
    );
}

#[test]
fn examples_are_valid() {
    let minimal = plan(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/function-to-function.json"
    )));
    assert_eq!(minimal.components.len(), 2);
    let full = plan(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/full-group.json"
    )));
    assert!(full.components.len() >= 4);
}

#[test]
fn validation_is_deterministic() {
    let json = fixture!("good", "everything");
    assert_eq!(plan(json), plan(json));
}

bad_fixture!(
    bad_not_an_object,
    "not-an-object",
    [("$", "one JSON object")]
);

bad_fixture!(
    bad_unknown_key,
    "unknown-key",
    [(
        &format!("{F}[0].FunctionConfiguration.MemorySizeKB"),
        "unknown member \"MemorySizeKB\" in FunctionConfiguration"
    )]
);

bad_fixture!(
    bad_missing_field,
    "missing-field",
    [(
        &format!("{S}[0].Target"),
        "is required: a subscription must have Target"
    )]
);

bad_fixture!(
    bad_ids,
    "bad-ids",
    [
        ("$.DeviceDefinitionVersion.Devices[0].Id", "cannot be empty"),
        (&format!("{F}[0].Id"), "contains ' '"),
        (&format!("{S}[0].Id"), "is 129 characters long; at most 128"),
    ]
);

bad_fixture!(
    bad_duplicate_ids,
    "duplicate-ids",
    [
        (&format!("{F}[1].Id"), "duplicate function Id `app`"),
        (&format!("{S}[1].Id"), "duplicate subscription Id `s`"),
    ]
);

/// Every problem in every section is reported in one pass.
#[test]
fn several_errors_are_reported_together() {
    expect(
        fixture!("bad", "several-errors"),
        &[
            (
                "$.CoreDefinitionVersion.Cores[0].ThingArn",
                "is not a thing ARN",
            ),
            (&format!("{F}[0].FunctionArn"), "$LATEST is not supported"),
            (
                &format!("{F}[1].FunctionConfiguration.MemorySize"),
                "positive number of KB",
            ),
            (
                &format!("{C}[0].Parameters.BaudRate"),
                "`fast` is not a valid BaudRate",
            ),
            (&format!("{S}[0].Subject"), "'#' must be the last level"),
            (&format!("{S}[0].Target"), "stale subscription `s`"),
            (&format!("{L}[0].Level"), "`LOUD` is not a level"),
        ],
    );
}

#[test]
fn the_loader_reads_resolves_and_reports() {
    let dir = std::env::temp_dir().join(format!("evergreen-group-test-{}", std::process::id()));
    let created = std::fs::create_dir_all(&dir);
    assert!(created.is_ok(), "{created:?}");
    let good = dir.join("group.json");
    let bad = dir.join("bad.json");
    let written = std::fs::write(&good, fixture!("good", "function-to-function"))
        .and_then(|()| std::fs::write(&bad, fixture!("bad", "two-cores")));
    assert!(written.is_ok(), "{written:?}");

    let loader = crate::loader::Loader::new(registry(), options());
    match loader.read_file(&good) {
        Ok(file) => {
            let plan = file.plan;
            let producer = component(&plan, &fn_arn("producer", "1"));
            let Launch::Executable { path, .. } = &producer.launch else {
                panic!("not an executable: {producer:?}");
            };
            assert_eq!(
                path,
                &dir.join("bin/producer"),
                "relative to the group file"
            );
        }
        Err(e) => panic!("{e}"),
    }
    match loader.read_file(&bad) {
        Err(e @ crate::loader::LoadError::Invalid { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(r#"bad.json: $.CoreDefinitionVersion.Cores[1] (Id "second-core"): "#),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    match loader.read_file(&dir.join("missing.json")) {
        Err(e @ crate::loader::LoadError::Io { .. }) => {
            assert!(e.to_string().contains("missing.json"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// No input may panic: every string and number in the good fixtures is
/// replaced, one at a time, by awkward values.
#[test]
fn awkward_values_never_panic() {
    use serde_json::Value;
    fn leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    path.push(k.clone());
                    leaves(v, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    path.push(i.to_string());
                    leaves(v, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }
    fn at<'v>(v: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
        path.iter().try_fold(v, |v, key| match v {
            Value::Object(map) => map.get_mut(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        })
    }
    let awkward = [
        Value::from(""),
        Value::from("#"),
        Value::from("arn:aws:greengrass:::/connectors/SerialStream/versions/99999999999"),
        Value::from("\u{0}/.."),
        Value::from("é".repeat(300)),
        Value::from(-1),
        Value::from(u64::MAX),
    ];
    for json in [
        fixture!("good", "function-to-function"),
        fixture!("good", "serial-stream"),
        fixture!("good", "no-container-default"),
        fixture!("good", "everything"),
    ] {
        let original: Value = match serde_json::from_str(json) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        let mut paths = Vec::new();
        leaves(&original, &mut Vec::new(), &mut paths);
        for path in &paths {
            for value in &awkward {
                let mut doc = original.clone();
                if let Some(slot) = at(&mut doc, path) {
                    *slot = value.clone();
                }
                let _ = check(&doc.to_string(), &options());
            }
        }
    }
}

#[test]
fn container_components_are_refused_where_containers_cannot_run() {
    let opts = ValidationOptions {
        container_unavailable: Some("the runtime lacks CAP_SYS_ADMIN".into()),
        ..options()
    };
    // The serial-stream fixture has a container-only connector; the
    // function-to-function one runs NoContainer and is unaffected.
    let errors = match check(fixture!("good", "serial-stream"), &opts) {
        Ok(_) => panic!("a container-only connector must be refused"),
        Err(errors) => errors,
    };
    assert!(
        errors.iter().any(|e| e.message.contains("GreengrassContainer isolation, which this host cannot provide: the runtime lacks CAP_SYS_ADMIN")),
        "{}",
        list(&errors)
    );
    assert!(check(fixture!("good", "no-container-default"), &opts).is_ok());
    // A function that takes the Greengrass default (a container) is refused too.
    let json = format!(
        r#"{{"FunctionDefinitionVersion": {{"Functions": [{{"Id": "f", "FunctionArn": "{}",
            "FunctionConfiguration": {{"Executable": "/bin/true", "Pinned": true}}}}]}}}}"#,
        fn_arn("f", "1")
    );
    let errors = match check(&json, &opts) {
        Ok(_) => panic!("a default-container function must be refused"),
        Err(errors) => errors,
    };
    assert!(
        errors
            .iter()
            .any(|e| e.path.ends_with("FunctionConfiguration.Environment")
                && e.message
                    .contains("the function runs in GreengrassContainer")),
        "{}",
        list(&errors)
    );
}
