//! Tests of validation: user functions, Python functions, identities and resource grants.

use super::*;

#[test]
fn good_function_to_function() {
    let plan = plan(fixture!("good", "function-to-function"));
    assert!(plan.core.sync_shadow);
    let producer = component(&plan, &fn_arn("producer", "1"));
    assert_eq!(producer.kind, ComponentKind::Function);
    assert_eq!(producer.name, "producer");
    assert_eq!(
        producer.launch,
        Launch::Executable {
            path: PathBuf::from("/srv/groups/demo/bin/producer"),
            args: vec!["--interval".into(), "5".into(), "--verbose".into()],
        }
    );
    assert!(producer.pinned);
    assert_eq!((producer.memory_kb, producer.timeout_s), (Some(32768), 10));
    assert_eq!(producer.isolation, Isolation::GreengrassContainer);
    assert_eq!(producer.run_as, RunAs::default());
    assert_eq!(
        producer.log_file,
        PathBuf::from("user/eu-west-1/123456789012/producer.log")
    );

    let consumer = component(&plan, &fn_arn("consumer", "live"));
    assert_eq!(
        consumer.launch,
        Launch::Executable {
            path: PathBuf::from("/usr/local/bin/consumer"),
            args: vec![],
        }
    );
    assert!(!consumer.pinned);
    assert_eq!(
        (consumer.memory_kb, consumer.timeout_s),
        (Some(DEFAULT_MEMORY_KB), DEFAULT_TIMEOUT_S)
    );
    assert_eq!(
        consumer.parameters.get("THRESHOLD").map(String::as_str),
        Some("30")
    );
    assert_eq!(plan.subscriptions.len(), 3);
    assert_eq!(plan.subscriptions[0].subject, "sensors/+/temperature");
}

#[test]
fn good_python_functions() {
    let plan = plan(fixture!("good", "python-functions"));
    assert_eq!(
        component(&plan, &fn_arn("hello", "1")).launch,
        Launch::Python {
            handler: "greengrassHelloWorld.function_handler".into(),
            code: PathBuf::from("/srv/groups/demo/functions/hello"),
            runtime: "python3.7".into(),
            binary: false,
        }
    );
    assert_eq!(
        component(&plan, &fn_arn("bin", "2")).launch,
        Launch::Python {
            handler: "pkg.handlers.on_bytes".into(),
            code: PathBuf::from("/opt/functions/bin.zip"),
            runtime: "python3".into(),
            binary: true,
        }
    );
    // V1's Node.js runtimes are accepted: the same launch, run by the Node.js loop.
    assert_eq!(
        component(&plan, &fn_arn("node", "1")).launch,
        Launch::Python {
            handler: "index.handler".into(),
            code: PathBuf::from("/srv/groups/demo/functions/node"),
            runtime: "nodejs8.10".into(),
            binary: false,
        }
    );
}

#[test]
fn good_native_functions_are_programs_on_the_lambda_link() {
    let plan = plan(fixture!("good", "native-functions"));
    let invokee = component(&plan, &fn_arn("invokee", "1"));
    assert_eq!(
        invokee.launch,
        Launch::Native {
            path: PathBuf::from("/srv/groups/demo/bin/invokee"),
            args: vec!["--verbose".into()],
        }
    );
    assert!(invokee.launch.lambda_link());
    // The Lambda runtime ARN V1 gave native functions names the same runtime.
    assert_eq!(
        component(&plan, &fn_arn("shadow", "2")).launch,
        Launch::Native {
            path: PathBuf::from("/opt/functions/shadow"),
            args: vec![],
        }
    );
}

bad_fixture!(
    bad_native_functions,
    "native-functions",
    [(
        &format!("{F}[0].FunctionConfiguration.CodeUri"),
        "CodeUri does not apply to a native function"
    )]
);

bad_fixture!(
    bad_python_functions,
    "python-functions",
    [
        (
            &format!("{F}[0].FunctionConfiguration.Executable"),
            "is not a Python handler: use module.function"
        ),
        (
            &format!("{F}[1].FunctionConfiguration.Runtime"),
            "`java8` is not a supported runtime"
        ),
        (
            &format!("{F}[2].FunctionConfiguration.CodeUri"),
            "CodeUri is required for a Python function"
        ),
        (
            &format!("{F}[3].FunctionConfiguration.ExecArgs"),
            "ExecArgs does not apply to a Python function"
        ),
        (
            &format!("{F}[4].FunctionConfiguration.CodeUri"),
            "a Node.js function's CodeUri must be a directory"
        ),
    ]
);

bad_fixture!(
    bad_function_arn_latest,
    "function-arn-latest",
    [(&format!("{F}[0].FunctionArn"), "$LATEST is not supported")]
);

bad_fixture!(
    bad_function_arn_unqualified,
    "function-arn-unqualified",
    [(&format!("{F}[0].FunctionArn"), "it has no version or alias")]
);

bad_fixture!(
    bad_function_arn_duplicate,
    "function-arn-duplicate",
    [(&format!("{F}[1].FunctionArn"), "duplicate FunctionArn")]
);

bad_fixture!(
    bad_function_required_members,
    "function-required-members",
    [
        (&format!("{F}[0].FunctionArn"), "FunctionArn is required"),
        (
            &format!("{F}[1].FunctionConfiguration"),
            "FunctionConfiguration is required"
        ),
        (
            &format!("{F}[2].FunctionConfiguration.Executable"),
            "Executable is required"
        ),
    ]
);

bad_fixture!(
    bad_run_as_root,
    "run-as-root",
    [
        (
            &format!("{F}[0].FunctionConfiguration.Environment.Execution.RunAs"),
            "lambda(s) [arn:aws:lambda:eu-west-1:123456789012:function:root-fn:1] are configured to run as root \
             while Greengrass is not configured to run lambdas with root permissions"
        ),
        (
            "$.FunctionDefinitionVersion.DefaultConfig.Execution.RunAs",
            "lambda(s) [arn:aws:lambda:eu-west-1:123456789012:function:inherits:1] are configured to run as root"
        ),
    ]
);

bad_fixture!(
    bad_memory_timeout,
    "memory-timeout",
    [
        (
            &format!("{F}[0].FunctionConfiguration.MemorySize"),
            "positive number of KB (found 0)"
        ),
        (
            &format!("{F}[0].FunctionConfiguration.Timeout"),
            "positive number of seconds (found -1)"
        ),
    ]
);

bad_fixture!(
    bad_function_enum_values,
    "function-enum-values",
    [
        (
            &format!("{F}[0].FunctionConfiguration.EncodingType"),
            "`xml` is not an encoding type"
        ),
        (
            &format!("{F}[0].FunctionConfiguration.Environment.Execution.IsolationMode"),
            "`Docker` is not an isolation mode"
        ),
        (
            &format!("{F}[0].FunctionConfiguration.Environment.Execution.RunAs.Uid"),
            "-5 is not a user or group id"
        ),
    ]
);

bad_fixture!(
    bad_environment_variables,
    "environment-variables",
    [(
        &format!("{F}[0].FunctionConfiguration.Environment.Variables[\"A=B\"]"),
        "cannot be empty or contain '='"
    )]
);

#[test]
fn root_is_fine_when_allowed() {
    let opts = ValidationOptions {
        allow_root: true,
        ..options()
    };
    let plan = match check(fixture!("bad", "run-as-root"), &opts) {
        Ok(plan) => plan,
        Err(errors) => panic!("{}", list(&errors)),
    };
    let root = component(&plan, &fn_arn("root-fn", "1"));
    assert_eq!(
        root.run_as,
        RunAs {
            uid: Some(0),
            gid: Some(0)
        }
    );
    // The function's own RunAs replaces DefaultConfig's as a whole.
    let own = component(&plan, &fn_arn("own-identity", "1"));
    assert_eq!(
        own.run_as,
        RunAs {
            uid: Some(1001),
            gid: Some(1001)
        }
    );
    let inherits = component(&plan, &fn_arn("inherits", "1"));
    assert_eq!(
        inherits.run_as,
        RunAs {
            uid: None,
            gid: Some(0)
        }
    );
}

bad_fixture!(
    bad_resource_policy_unknown,
    "resource-policy-unknown",
    [(
        &format!("{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].ResourceId"),
        "`nope` is not the Id of a resource"
    )]
);

bad_fixture!(
    bad_permission_invalid,
    "permission-invalid",
    [(
        &format!("{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].Permission"),
        "`wr` is not a permission"
    )]
);

bad_fixture!(
    bad_secret_rw,
    "secret-rw",
    [(
        &format!("{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].Permission"),
        "a secret can only be granted read-only"
    )]
);

bad_fixture!(
    bad_proc_volume_rw,
    "proc-volume-rw",
    [(
        &format!("{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].Permission"),
        "a volume from /proc can only be granted read-only"
    )]
);

bad_fixture!(
    bad_no_container_local_resource,
    "no-container-local-resource",
    [(
        &format!("{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies"),
        "runs with NoContainer isolation but is granted local resources [serial]"
    )]
);

fn with_stream_manager(variables: serde_json::Value) -> String {
    serde_json::json!({
        "FunctionDefinitionVersion": { "Functions": [{
            "Id": "sm",
            "FunctionArn": "arn:aws:lambda:::function:GGStreamManager:1",
            "FunctionConfiguration": {
                "MemorySize": 4194304, "Pinned": true, "Timeout": 3,
                "Environment": { "Variables": variables }
            }
        }]}
    })
    .to_string()
}

#[test]
fn ggstreammanager_enables_the_stream_manager_with_v1s_variables() {
    let configured = plan(&with_stream_manager(serde_json::json!({
        "STREAM_MANAGER_SERVER_PORT": "8099",
        "STREAM_MANAGER_STORE_ROOT_DIR": "/var/lib/streams",
        "STREAM_MANAGER_AUTHENTICATE_CLIENT": "true",
        "STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES": "10485760",
        "JVM_ARGS": "-Xmx128m",
        "STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE": "5"
    })));
    assert_eq!(
        configured.stream_manager,
        Some(crate::plan::StreamManagerSpec {
            port: 8099,
            store_root: Some(PathBuf::from("/var/lib/streams")),
            s3_min_part_size: Some(10 << 20),
        })
    );
    let default = plan(&with_stream_manager(serde_json::json!({})));
    assert_eq!(
        default.stream_manager.map(|s| (s.port, s.store_root)),
        Some((8088, None))
    );
    assert_eq!(plan(fixture!("good", "empty")).stream_manager, None);
}

#[test]
fn bad_ggstreammanager_variables_are_each_named() {
    const AT: &str =
        "$.FunctionDefinitionVersion.Functions[0].FunctionConfiguration.Environment.Variables.";
    let bad = with_stream_manager(serde_json::json!({
        "STREAM_MANAGER_SERVER_PORT": "80a",
        "STREAM_MANAGER_STORE_ROOT_DIR": "streams",
        "STREAM_MANAGER_AUTHENTICATE_CLIENT": "false",
        "STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES": "1024",
        "STREAM_MANAGER_PORT": "1"
    }));
    expect(
        &bad,
        &[
            (&format!("{AT}STREAM_MANAGER_SERVER_PORT"), "not a TCP port"),
            (&format!("{AT}STREAM_MANAGER_STORE_ROOT_DIR"), "not an absolute path"),
            (&format!("{AT}STREAM_MANAGER_AUTHENTICATE_CLIENT"), "always checks the client's token"),
            (
                &format!("{AT}STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES"),
                "at least 5242880",
            ),
            (&format!("{AT}STREAM_MANAGER_PORT"), "not a stream manager setting"),
        ],
    );
}
