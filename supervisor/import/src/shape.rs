//! The Greengrass API shapes of the seven definition versions, member by member, as the group
//! file takes them, and the copy of an input's definition onto them.
//!
//! The copy keeps what the group file knows and says what it leaves out; it also undoes the one
//! systematic difference between the inputs: CloudFormation passes numbers and booleans as
//! strings (`MemorySize: '512'`, `Pinned: 'true'`, as AWS's own examples do, and as every `Ref`
//! to a parameter gives), which the API, and so the group file, types. A value of the wrong
//! kind that cannot be converted is kept as it is, so that validation reports it at its path
//! rather than the import hiding it.

use serde_json::{Map, Number, Value};

/// What a member holds.
#[derive(Debug)]
pub(crate) enum Shape {
    Str,
    Bool,
    Int,
    /// An object of strings (`Variables`, connector `Parameters`).
    StrMap,
    StrList,
    Object(&'static [(&'static str, &'static Shape)]),
    List(&'static Shape),
}

use Shape::{Bool, Int, List, Object, Str, StrList, StrMap};

static RUN_AS: Shape = Object(&[("Uid", &Int), ("Gid", &Int)]);
static EXECUTION: Shape = Object(&[("IsolationMode", &Str), ("RunAs", &RUN_AS)]);
static DEFAULT_CONFIG: Shape = Object(&[("Execution", &EXECUTION)]);
static ACCESS_POLICY: Shape = Object(&[("ResourceId", &Str), ("Permission", &Str)]);
static ACCESS_POLICIES: Shape = List(&ACCESS_POLICY);
static ENVIRONMENT: Shape = Object(&[
    ("AccessSysfs", &Bool),
    ("Execution", &EXECUTION),
    ("ResourceAccessPolicies", &ACCESS_POLICIES),
    ("Variables", &StrMap),
]);
static FUNCTION_CONFIGURATION: Shape = Object(&[
    ("EncodingType", &Str),
    ("Environment", &ENVIRONMENT),
    ("ExecArgs", &Str),
    ("Executable", &Str),
    ("MemorySize", &Int),
    ("Pinned", &Bool),
    ("Timeout", &Int),
    ("FunctionRuntimeOverride", &Str),
]);
static FUNCTION: Shape = Object(&[
    ("Id", &Str),
    ("FunctionArn", &Str),
    ("FunctionConfiguration", &FUNCTION_CONFIGURATION),
]);
static FUNCTIONS: Shape = List(&FUNCTION);

static THING: Shape = Object(&[
    ("Id", &Str),
    ("ThingArn", &Str),
    ("CertificateArn", &Str),
    ("SyncShadow", &Bool),
]);
static THINGS: Shape = List(&THING);

static SUBSCRIPTION: Shape = Object(&[
    ("Id", &Str),
    ("Source", &Str),
    ("Subject", &Str),
    ("Target", &Str),
]);
static SUBSCRIPTIONS: Shape = List(&SUBSCRIPTION);

static GROUP_OWNER: Shape = Object(&[("AutoAddGroupOwner", &Bool), ("GroupOwner", &Str)]);
static OWNER: Shape = Object(&[("GroupOwner", &Str), ("GroupPermission", &Str)]);
static DEVICE_DATA: Shape = Object(&[("SourcePath", &Str), ("GroupOwnerSetting", &GROUP_OWNER)]);
static VOLUME_DATA: Shape = Object(&[
    ("SourcePath", &Str),
    ("DestinationPath", &Str),
    ("GroupOwnerSetting", &GROUP_OWNER),
]);
static S3_MODEL_DATA: Shape = Object(&[
    ("S3Uri", &Str),
    ("DestinationPath", &Str),
    ("OwnerSetting", &OWNER),
]);
static SAGEMAKER_MODEL_DATA: Shape = Object(&[
    ("SageMakerJobArn", &Str),
    ("DestinationPath", &Str),
    ("OwnerSetting", &OWNER),
]);
static SECRET_DATA: Shape = Object(&[
    ("ARN", &Str),
    ("AdditionalStagingLabelsToDownload", &StrList),
]);
static CONTAINER: Shape = Object(&[
    ("LocalDeviceResourceData", &DEVICE_DATA),
    ("LocalVolumeResourceData", &VOLUME_DATA),
    ("S3MachineLearningModelResourceData", &S3_MODEL_DATA),
    (
        "SageMakerMachineLearningModelResourceData",
        &SAGEMAKER_MODEL_DATA,
    ),
    ("SecretsManagerSecretResourceData", &SECRET_DATA),
]);
static RESOURCE: Shape = Object(&[
    ("Id", &Str),
    ("Name", &Str),
    ("ResourceDataContainer", &CONTAINER),
]);
static RESOURCES: Shape = List(&RESOURCE);

static CONNECTOR: Shape = Object(&[
    ("Id", &Str),
    ("ConnectorArn", &Str),
    ("Parameters", &StrMap),
]);
static CONNECTORS: Shape = List(&CONNECTOR);

static LOGGER: Shape = Object(&[
    ("Id", &Str),
    ("Component", &Str),
    ("Level", &Str),
    ("Type", &Str),
    ("Space", &Int),
]);
static LOGGERS: Shape = List(&LOGGER);

static CORE_DEFINITION: Shape = Object(&[("Cores", &THINGS)]);
static DEVICE_DEFINITION: Shape = Object(&[("Devices", &THINGS)]);
static FUNCTION_DEFINITION: Shape = Object(&[
    ("DefaultConfig", &DEFAULT_CONFIG),
    ("Functions", &FUNCTIONS),
]);
static SUBSCRIPTION_DEFINITION: Shape = Object(&[("Subscriptions", &SUBSCRIPTIONS)]);
static RESOURCE_DEFINITION: Shape = Object(&[("Resources", &RESOURCES)]);
static CONNECTOR_DEFINITION: Shape = Object(&[("Connectors", &CONNECTORS)]);
static LOGGER_DEFINITION: Shape = Object(&[("Loggers", &LOGGERS)]);

/// The shape of a kind's definition version.
pub(crate) fn definition(kind: crate::Kind) -> &'static Shape {
    use crate::Kind;
    match kind {
        Kind::Core => &CORE_DEFINITION,
        Kind::Device => &DEVICE_DEFINITION,
        Kind::Function => &FUNCTION_DEFINITION,
        Kind::Subscription => &SUBSCRIPTION_DEFINITION,
        Kind::Resource => &RESOURCE_DEFINITION,
        Kind::Connector => &CONNECTOR_DEFINITION,
        Kind::Logger => &LOGGER_DEFINITION,
    }
}

/// Something the copy changed or left out, at a path inside the definition
/// (`Functions[0].FunctionConfiguration.Foo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub(crate) path: String,
    pub(crate) message: String,
}

/// Copies `value` onto `shape`; what is left out or changed is added to `issues`.
pub(crate) fn copy(shape: &Shape, value: &Value, path: &str, issues: &mut Vec<Issue>) -> Value {
    match (shape, value) {
        (Str, Value::Number(_) | Value::Bool(_)) => Value::String(value.to_string()),
        (Bool, Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => value.clone(),
        },
        (Int, Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(n) => Value::Number(Number::from(n)),
            Err(_) => value.clone(),
        },
        (StrMap, Value::Object(map)) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(_) => v.clone(),
                        Value::Number(_) | Value::Bool(_) => Value::String(v.to_string()),
                        _ => {
                            issues.push(Issue {
                                path: join(path, k),
                                message: "is not text, as every value here must be: kept as its JSON text"
                                    .into(),
                            });
                            Value::String(v.to_string())
                        }
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        (StrList, Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(|v| match v {
                    Value::Number(_) | Value::Bool(_) => Value::String(v.to_string()),
                    _ => v.clone(),
                })
                .collect(),
        ),
        (List(item), Value::Array(items)) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| copy(item, v, &format!("{path}[{i}]"), issues))
                .collect(),
        ),
        (Object(members), Value::Object(map)) => {
            let mut out = Map::new();
            for (key, v) in map {
                // A member given as null says nothing (YAML's `Key:` with no value).
                if v.is_null() {
                    continue;
                }
                match members.iter().find(|(name, _)| name == key) {
                    Some((_, member)) => {
                        out.insert(key.clone(), copy(member, v, &join(path, key), issues));
                    }
                    None => issues.push(Issue {
                        path: join(path, key),
                        message: "is not a member of the Greengrass API here: left out".into(),
                    }),
                }
            }
            Value::Object(out)
        }
        _ => value.clone(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use serde_json::json;

    #[test]
    fn cloudformation_strings_become_numbers_and_booleans() {
        let mut issues = Vec::new();
        let out = copy(
            definition(Kind::Function),
            &json!({"Functions": [{"Id": 1, "FunctionArn": "a", "FunctionConfiguration": {
                "Pinned": "true", "MemorySize": "512", "Timeout": "2000", "Executable": "run.exe",
                "Environment": {"AccessSysfs": "false", "Variables": {"n": 1},
                    "Execution": {"RunAs": {"Uid": "1", "Gid": "10"}}}}}]}),
            "",
            &mut issues,
        );
        assert_eq!(
            out,
            json!({"Functions": [{"Id": "1", "FunctionArn": "a", "FunctionConfiguration": {
                "Pinned": true, "MemorySize": 512, "Timeout": 2000, "Executable": "run.exe",
                "Environment": {"AccessSysfs": false, "Variables": {"n": "1"},
                    "Execution": {"RunAs": {"Uid": 1, "Gid": 10}}}}}]})
        );
        assert!(issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn unknown_members_are_left_out_and_said() {
        let mut issues = Vec::new();
        let out = copy(
            definition(Kind::Logger),
            &json!({"Loggers": [{"Id": "l", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Colour": "green", "Space": null}]}),
            "",
            &mut issues,
        );
        assert_eq!(
            out,
            json!({"Loggers": [{"Id": "l", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem"}]})
        );
        assert_eq!(
            issues,
            [Issue {
                path: "Loggers[0].Colour".into(),
                message: "is not a member of the Greengrass API here: left out".into()
            }]
        );
    }

    #[test]
    fn values_that_cannot_be_converted_are_kept_for_validation_to_report() {
        let mut issues = Vec::new();
        let out = copy(
            definition(Kind::Function),
            &json!({"Functions": [{"Id": "f", "FunctionConfiguration": {"MemorySize": "big", "Pinned": "maybe"}}]}),
            "",
            &mut issues,
        );
        assert_eq!(
            out["Functions"][0]["FunctionConfiguration"]["MemorySize"],
            "big"
        );
        assert_eq!(
            out["Functions"][0]["FunctionConfiguration"]["Pinned"],
            "maybe"
        );
    }
}
