//! The group file from the collected definitions: each copied onto its API shape, then the
//! parts Evergreen runs differently from Greengrass looked at one by one — functions (whose
//! code lived in AWS Lambda and must now be on the gateway), connectors (only those built into
//! this Evergreen run), machine-learning and secret resources, CloudWatch loggers. This module
//! owns what the report says about each; it never reads a file.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::report::Report;
use crate::{shape, CodeFile, Collected, Kind, Lambda, LambdaCode, Options};

pub(crate) fn build(
    collected: &Collected,
    options: &Options,
    report: &mut Report,
) -> (Value, Vec<CodeFile>) {
    let mut group = Map::new();
    let mut code_files = Vec::new();
    for kind in Kind::ALL {
        let Some(definition) = collected.definitions.get(&kind) else {
            continue;
        };
        let mut issues = Vec::new();
        let mut body = shape::copy(shape::definition(kind), &definition.body, "", &mut issues);
        for issue in issues {
            report.todo(
                subject(kind, &body, &issue.path),
                format!(
                    "`{}` (in {}) {}",
                    issue.path, definition.origin, issue.message
                ),
            );
        }
        match kind {
            Kind::Function => functions(&mut body, collected, options, report, &mut code_files),
            Kind::Connector => connectors(&body, options, report),
            Kind::Resource => resources(&body, report),
            Kind::Logger => loggers(&body, report),
            _ => {}
        }
        group.insert(kind.version_key(), body);
    }
    if !group.contains_key("CoreDefinitionVersion") {
        report.note(
            "CoreDefinitionVersion",
            "not in the input: Evergreen then uses the core thing of its configuration (coreThing.thingArn)",
        );
    }
    (Value::Object(group), code_files)
}

/// Who a path inside a definition is about: `function TempMonitor` for `Functions[0]…`.
fn subject(kind: Kind, body: &Value, path: &str) -> String {
    let index = path
        .strip_prefix(kind.list_key())
        .and_then(|rest| rest.strip_prefix('['))
        .and_then(|rest| rest.split(']').next())
        .and_then(|i| i.parse::<usize>().ok());
    match index.and_then(|i| body[kind.list_key()][i]["Id"].as_str()) {
        Some(id) => format!("{} {id}", kind.noun()),
        None => kind.version_key(),
    }
}

fn id_of(entity: &Value) -> String {
    entity["Id"].as_str().unwrap_or("(no Id)").to_string()
}

/// The function name in a Lambda ARN (`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`).
fn lambda_name(arn: &str) -> Option<&str> {
    let rest = arn.split(":function:").nth(1)?;
    rest.split(':').next().filter(|n| !n.is_empty())
}

/// A directory name for a function's code: its name, with anything but letters, digits, `-`
/// and `_` replaced (a placeholder left in an unresolved name must not make a path).
fn code_dir(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("functions/{clean}")
}

fn functions(
    body: &mut Value,
    collected: &Collected,
    options: &Options,
    report: &mut Report,
    code_files: &mut Vec<CodeFile>,
) {
    let Some(list) = body.get_mut("Functions").and_then(Value::as_array_mut) else {
        return;
    };
    for function in list {
        let subject = format!("function {}", id_of(function));
        let Some(arn) = function["FunctionArn"].as_str().map(str::to_string) else {
            continue;
        };
        if arn.starts_with("arn:aws:lambda:::function:GG") {
            report.note(
                subject,
                format!(
                    "{arn} configures a Greengrass system function: Evergreen provides that service itself and \
                     takes its settings from its own configuration, so it is kept but not run"
                ),
            );
            continue;
        }
        let Some(name) = lambda_name(&arn).map(str::to_string) else {
            continue;
        };
        let Some(object) = function.as_object_mut() else {
            continue;
        };
        let config = object
            .entry("FunctionConfiguration")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(config) = config.as_object_mut() else {
            continue;
        };
        let dir = code_dir(&name);
        match collected.lambdas.get(&name) {
            Some(lambda) => from_lambda(
                config,
                lambda,
                &dir,
                &subject,
                options,
                report,
                code_files,
            ),
            None => report.todo(
                subject,
                format!(
                    "the Lambda function {name}'s code and runtime are not in the input: copy its deployment package \
                     (with greengrasssdk vendored, as V1 required) to {dir} (a directory or {dir}.zip) beside the group \
                     file, and set \"CodeUri\" to that path and \"Runtime\" to its runtime (python3.7, python3.8, …, or \
                     nodejs12.x with the code unzipped into the directory) in its FunctionConfiguration; a Java function \
                     must be ported first"
                ),
            ),
        }
    }
}

/// A V1 native (C) function: `Runtime` `executable`, and `Executable` the program's place in
/// `dir` (V1's `Executable`, or the Lambda's `Handler`, is the program's name in its deployment
/// package), which the operator fills (docs/c-functions.md).
fn native_from_lambda(
    config: &mut Map<String, Value>,
    lambda: &Lambda,
    dir: &str,
    subject: &str,
    report: &mut Report,
) {
    config.insert("Runtime".into(), Value::String("executable".into()));
    let name = config
        .get("Executable")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| lambda.handler.clone());
    let path = match name {
        Some(name) => {
            let path = format!("{dir}/{name}");
            config.insert("Executable".into(), Value::String(path.clone()));
            path
        }
        None => format!("{dir}/<program>"),
    };
    report.todo(
        subject,
        format!(
            "its Lambda ({}) is a native (C) function: copy its program from the deployment package to {path} \
             beside the group file (it runs on Evergreen's libaws-greengrass-core-sdk-c.so, see docs/c-functions.md)",
            lambda.logical_id
        ),
    );
}

/// Fills a function's `Runtime`, `Executable` and `CodeUri` from what the template says of its
/// Lambda, or says what is missing.
#[allow(clippy::too_many_arguments)]
fn from_lambda(
    config: &mut Map<String, Value>,
    lambda: &Lambda,
    dir: &str,
    subject: &str,
    options: &Options,
    report: &mut Report,
    code_files: &mut Vec<CodeFile>,
) {
    let runtime = lambda.runtime.as_deref().unwrap_or_default();
    if evergreen_group::plan::is_native_runtime(runtime) {
        native_from_lambda(config, lambda, dir, subject, report);
        return;
    }
    let python3 = runtime == "python3"
        || runtime
            .strip_prefix("python3.")
            .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()));
    // V1's Node.js runtimes (nodejs8.10, nodejs12.x) run on the gateway's node with
    // aws-greengrass-core-sdk in the function's own node_modules (docs/migrating.md).
    let node = runtime.starts_with("nodejs");
    if python3 || node {
        config
            .entry("Runtime")
            .or_insert_with(|| Value::String(runtime.to_string()));
    } else if runtime.starts_with("python2") {
        report.todo(
            subject,
            format!(
                "its Lambda ({}) runs {runtime}; Evergreen runs Python functions on python3: port the code, then set \
                 \"Runtime\" to python3.N in its FunctionConfiguration",
                lambda.logical_id
            ),
        );
    } else if runtime.is_empty() {
        report.todo(
            subject,
            format!(
                "its Lambda ({}) has no Runtime in the template: set \"Runtime\" (python3.7, python3.8, …) in its \
                 FunctionConfiguration; a function in another language must be ported first",
                lambda.logical_id
            ),
        );
        // Without a runtime nothing below would run it.
        return;
    } else {
        report.todo(
            subject,
            format!(
                "its Lambda ({}) runs {runtime}, which Evergreen does not run (it runs Python, Node.js and native C \
                 functions): port it, or make it a program that uses the evergreen-ipc SDK (then Executable is that \
                 program)",
                lambda.logical_id
            ),
        );
        return;
    }
    match (config.get("Executable").and_then(Value::as_str), &lambda.handler) {
        (None, Some(handler)) => {
            config.insert("Executable".into(), Value::String(handler.clone()));
        }
        (Some(executable), Some(handler)) if executable != handler => report.note(
            subject,
            format!(
                "Executable {executable} (the Greengrass configuration's) is kept; its Lambda's Handler is {handler}"
            ),
        ),
        _ => {}
    }
    match &lambda.code {
        LambdaCode::Inline(source) => {
            let file = format!("{dir}/index.{}", if node { "js" } else { "py" });
            // CloudFormation stores inline code as index.py, so its handler is index.<function>.
            if let Some(executable) = config.get("Executable").and_then(Value::as_str) {
                if executable.split('.').next() != Some("index") {
                    report.todo(
                        subject,
                        format!(
                            "its Executable {executable} names a module other than index, but inline code (Code.ZipFile) \
                             is the module index ({file}): set Executable to index.<function>"
                        ),
                    );
                }
            }
            if options.write_code {
                config.insert("CodeUri".into(), Value::String(dir.to_string()));
                let path = PathBuf::from(&file);
                if !code_files.iter().any(|c| c.path == path) {
                    code_files.push(CodeFile {
                        path,
                        contents: source.clone(),
                    });
                }
                report.note(
                    subject,
                    format!("its inline code (Code.ZipFile) is written to {file} beside the group file"),
                );
                if node && source.contains("aws-greengrass-core-sdk") {
                    report.todo(
                        subject,
                        format!(
                            "its code requires aws-greengrass-core-sdk, which inline code cannot carry: install it \
                             beside the group file with `npm install --prefix {dir} aws-greengrass-core-sdk@1.7.0`"
                        ),
                    );
                }
                if !node && source.contains("greengrasssdk") {
                    report.todo(
                        subject,
                        format!(
                            "its code imports greengrasssdk, which inline code cannot carry: vendor it beside the group \
                             file with `pip install --target {dir} greengrasssdk`"
                        ),
                    );
                }
            } else {
                report.todo(
                    subject,
                    format!(
                        "its code is inline in the template (Code.ZipFile): import with -o FILE to have it written to \
                         {file} beside FILE, or write it there yourself and set \"CodeUri\": \"{dir}\""
                    ),
                );
            }
        }
        LambdaCode::S3 { bucket, key } if node => report.todo(
            subject,
            format!(
                "its deployment package is s3://{bucket}/{key}, which is not in the input: unzip it (with \
                 aws-greengrass-core-sdk in its node_modules, as V1 required) into {dir} beside the group file and \
                 set \"CodeUri\": \"{dir}\" in its FunctionConfiguration (a Node.js function's code is a directory)"
            ),
        ),
        LambdaCode::S3 { bucket, key } => report.todo(
            subject,
            format!(
                "its deployment package is s3://{bucket}/{key}, which is not in the input: copy it (greengrasssdk \
                 vendored in it, as V1 required) to {dir}.zip beside the group file and set \"CodeUri\": \"{dir}.zip\" \
                 in its FunctionConfiguration"
            ),
        ),
        LambdaCode::Image(uri) => report.todo(
            subject,
            format!(
                "its Lambda's code is the container image {uri}, which Greengrass V1 could not run either: port it to \
                 a Python function's code in {dir}"
            ),
        ),
        LambdaCode::Unknown if node => report.todo(
            subject,
            format!(
                "the Lambda's code is not in the input: unzip its deployment package (aws-greengrass-core-sdk in its \
                 node_modules) into {dir} beside the group file and set \"CodeUri\" to that directory"
            ),
        ),
        LambdaCode::Unknown => report.todo(
            subject,
            format!(
                "the Lambda's code is not in the input: copy its deployment package (greengrasssdk vendored) to {dir} \
                 (a directory or {dir}.zip) beside the group file and set \"CodeUri\" to that path"
            ),
        ),
    }
}

fn connectors(body: &Value, options: &Options, report: &mut Report) {
    for connector in body["Connectors"].as_array().into_iter().flatten() {
        let Some(arn) = connector["ConnectorArn"].as_str() else {
            continue;
        };
        let subject = format!("connector {}", id_of(connector));
        let Some((name, version)) = connector_name_version(arn) else {
            continue;
        };
        let built_in: Vec<&str> = options.registry.iter().map(|m| m.name).collect();
        match options.registry.iter().find(|m| m.name == name) {
            None => report.todo(
                subject,
                format!(
                    "{name} ({arn}) is not built into this Evergreen (built in: {}): remove it and the subscriptions \
                     that name its ARN, or replace it with a function that does its work",
                    built_in.join(", ")
                ),
            ),
            Some(manifest) => {
                let Ok(version) = version.parse::<u32>() else {
                    continue;
                };
                if !manifest.versions.contains(&version) {
                    let versions: Vec<String> =
                        manifest.versions.iter().map(u32::to_string).collect();
                    report.todo(
                        subject,
                        format!(
                            "version {version} of {name} is not built in (versions {}): change its ConnectorArn and \
                             every subscription that names it to a built-in version, and check its Parameters with \
                             `evergreen connectors`",
                            versions.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

/// `arn:aws:greengrass:<region>::/connectors/<Name>/versions/<N>` → (Name, N).
fn connector_name_version(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.split("/connectors/").nth(1)?;
    let (name, version) = rest.split_once("/versions/")?;
    Some((name, version))
}

fn resources(body: &Value, report: &mut Report) {
    for resource in body["Resources"].as_array().into_iter().flatten() {
        let subject = format!("resource {}", id_of(resource));
        let container = &resource["ResourceDataContainer"];
        if let Some(uri) = container["S3MachineLearningModelResourceData"]["S3Uri"].as_str() {
            report.note(
                subject.clone(),
                format!(
                    "the machine-learning model {uri} is fetched from S3 at each deployment (with the core's \
                     credentials) into <root>/resources/ml/{}; the ML connectors read ONNX models",
                    id_of(resource)
                ),
            );
        }
        if let Some(arn) =
            container["SageMakerMachineLearningModelResourceData"]["SageMakerJobArn"].as_str()
        {
            report.todo(
                subject.clone(),
                format!(
                    "a SageMaker model ({arn}): V1's cloud service resolved the training job to its model and is \
                     gone; export the model to S3 (as ONNX for the ML connectors) and make this an \
                     S3MachineLearningModelResourceData"
                ),
            );
        }
        if let Some(arn) = container["SecretsManagerSecretResourceData"]["ARN"].as_str() {
            report.note(
                subject,
                format!(
                    "the secret {arn} is read at each deployment from Secrets Manager, or from the value stored on the \
                     gateway with `evergreen secrets put <secret name>`"
                ),
            );
        }
    }
}

fn loggers(body: &Value, report: &mut Report) {
    for logger in body["Loggers"].as_array().into_iter().flatten() {
        if logger["Type"] == "AWSCloudWatch" {
            report.note(
                format!("logger {}", id_of(logger)),
                "its lines go to CloudWatch Logs with the core's AWS credentials (evergreen.aws), besides the local log files",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_out_of_arns() {
        assert_eq!(
            lambda_name(
                "arn:aws:lambda:us-west-2:123456789012:function:TempMonitor:GG_TempMonitor"
            ),
            Some("TempMonitor")
        );
        assert_eq!(lambda_name("arn:aws:lambda:r:a:function:F"), Some("F"));
        assert_eq!(lambda_name("cloud"), None);
        assert_eq!(
            connector_name_version(
                "arn:aws:greengrass:us-west-2::/connectors/TwilioNotifications/versions/4"
            ),
            Some(("TwilioNotifications", "4"))
        );
        assert_eq!(code_dir("<parameter Fn>"), "functions/_parameter_Fn_");
    }
}

#[cfg(test)]
mod lambda_tests {
    use super::*;
    use crate::{Definition, Lambda, Source};
    use serde_json::json;

    fn options() -> Options {
        Options {
            source: Source::CloudFormation,
            region: None,
            account: None,
            write_code: true,
            registry: evergreen_group::ConnectorRegistry::default(),
        }
    }

    /// Builds a group of one function `f` whose Lambda has `runtime` and `code`.
    fn one_function(executable: Option<&str>, runtime: &str, code: LambdaCode) -> (Value, Report) {
        let mut config = json!({});
        if let Some(e) = executable {
            config["Executable"] = json!(e);
        }
        let mut collected = Collected::default();
        collected.definitions.insert(
            Kind::Function,
            Definition {
                body: json!({"Functions": [{"Id": "f", "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:f:1",
                    "FunctionConfiguration": config}]}),
                origin: "t".into(),
            },
        );
        collected.lambdas.insert(
            "f".into(),
            Lambda {
                logical_id: "F".into(),
                runtime: Some(runtime.into()),
                handler: Some("index.handler".into()),
                code,
            },
        );
        let mut report = Report::default();
        let (group, _) = build(&collected, &options(), &mut report);
        (group, report)
    }

    fn todo_text(report: &Report) -> String {
        report
            .todos()
            .map(|f| f.message.clone())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn inline_code_needs_an_index_handler() {
        let (group, report) = one_function(
            Some("temp_monitor.function_handler"),
            "python3.8",
            LambdaCode::Inline("def function_handler(e, c):\n    return e\n".into()),
        );
        assert_eq!(
            group["FunctionDefinitionVersion"]["Functions"][0]["FunctionConfiguration"]["CodeUri"],
            "functions/f"
        );
        assert!(
            todo_text(&report).contains("set Executable to index.<function>"),
            "{report:?}"
        );
        let (_, report) = one_function(None, "python3.8", LambdaCode::Inline("x = 1\n".into()));
        assert!(report.todos().next().is_none(), "{report:?}");
    }

    #[test]
    fn native_functions_become_runtime_executable_programs_to_copy() {
        let (group, report) = one_function(
            Some("invokee"),
            "arn:aws:greengrass:::runtime/function/executable",
            LambdaCode::Unknown,
        );
        let config = &group["FunctionDefinitionVersion"]["Functions"][0]["FunctionConfiguration"];
        assert_eq!(config["Runtime"], "executable");
        assert_eq!(config["Executable"], "functions/f/invokee");
        assert!(config.get("CodeUri").is_none());
        assert!(
            todo_text(&report)
                .contains("copy its program from the deployment package to functions/f/invokee"),
            "{report:?}"
        );
    }

    #[test]
    fn runtimes_evergreen_does_not_run_are_to_dos() {
        let (group, report) = one_function(None, "python2.7", LambdaCode::Unknown);
        assert!(todo_text(&report).contains("python2.7"), "{report:?}");
        assert!(
            group["FunctionDefinitionVersion"]["Functions"][0]["FunctionConfiguration"]
                .get("Runtime")
                .is_none()
        );
        let (group, report) = one_function(None, "java8", LambdaCode::Unknown);
        assert!(todo_text(&report).contains("port it"), "{report:?}");
        assert!(
            group["FunctionDefinitionVersion"]["Functions"][0]["FunctionConfiguration"]
                .get("CodeUri")
                .is_none()
        );
    }

    #[test]
    fn node_functions_keep_their_runtime_and_handler_and_their_code_is_a_directory() {
        let (group, report) = one_function(
            Some("index.handler"),
            "nodejs12.x",
            LambdaCode::Inline(
                "const gg = require('aws-greengrass-core-sdk');\nexports.handler = () => {};\n"
                    .into(),
            ),
        );
        let config = &group["FunctionDefinitionVersion"]["Functions"][0]["FunctionConfiguration"];
        assert_eq!(config["Runtime"], "nodejs12.x");
        assert_eq!(config["Executable"], "index.handler");
        assert_eq!(config["CodeUri"], "functions/f");
        assert!(
            todo_text(&report)
                .contains("npm install --prefix functions/f aws-greengrass-core-sdk@1.7.0"),
            "{report:?}"
        );
        let (group, report) = one_function(
            Some("index.handler"),
            "nodejs8.10",
            LambdaCode::S3 {
                bucket: "b".into(),
                key: "k.zip".into(),
            },
        );
        let config = &group["FunctionDefinitionVersion"]["Functions"][0]["FunctionConfiguration"];
        assert_eq!(config["Runtime"], "nodejs8.10");
        assert!(
            todo_text(&report).contains("unzip it (with aws-greengrass-core-sdk"),
            "{report:?}"
        );
    }
}
