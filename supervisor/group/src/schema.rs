//! The group file's shape as data, checked against the untyped document before serde reads
//! it, so that *every* unknown member, wrong type and missing required member is reported in
//! one pass (serde stops at the first), each in the operator's words ("must be a whole
//! number", never "expected i64").
//!
//! This module owns the table of members ([`GROUP`] and the shapes below it) and the walk. It
//! must agree with the serde types of `model`, which stay the one reader of a group that
//! passed: a test builds a document with every member of the table and reads it with the
//! model, and every good fixture passes both. It never judges values (that is validation):
//! only whether each member is one the API has, of the right JSON type, and present when
//! required.

use serde_json::Value;

use crate::model::{key_segment, ValidationError};

/// A member's JSON type.
#[derive(Debug)]
pub(crate) enum Kind {
    Str,
    /// A whole number that fits an `i64` (the model keeps numbers as `i64` so that a range
    /// is judged by validation, together with every other problem).
    Int,
    Bool,
    Obj(&'static Shape),
    List(&'static Kind),
    /// `Variables`: an object of strings.
    StrMap,
    /// Connector `Parameters`: an object of strings; numbers and booleans are accepted too.
    ParamMap,
}

/// Whether a member may be left out, or be `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Must be there (and not `null`).
    Required,
    /// May be absent or `null` (an `Option` in the model).
    Optional,
    /// May be absent, but not `null` (a list or map defaulting to empty).
    Defaulted,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) presence: Presence,
}

/// An object of the API: its name in messages and its members.
#[derive(Debug)]
pub(crate) struct Shape {
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [Field],
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        presence: Presence::Required,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        presence: Presence::Optional,
    }
}

const fn list(name: &'static str, item: &'static Kind) -> Field {
    Field {
        name,
        kind: Kind::List(item),
        presence: Presence::Defaulted,
    }
}

/// The whole group file: the seven definition versions.
pub(crate) static GROUP: Shape = Shape {
    name: "a group file",
    fields: &[
        opt("CoreDefinitionVersion", Kind::Obj(&CORE_DEFINITION)),
        opt("DeviceDefinitionVersion", Kind::Obj(&DEVICE_DEFINITION)),
        opt("FunctionDefinitionVersion", Kind::Obj(&FUNCTION_DEFINITION)),
        opt(
            "SubscriptionDefinitionVersion",
            Kind::Obj(&SUBSCRIPTION_DEFINITION),
        ),
        opt("ResourceDefinitionVersion", Kind::Obj(&RESOURCE_DEFINITION)),
        opt(
            "ConnectorDefinitionVersion",
            Kind::Obj(&CONNECTOR_DEFINITION),
        ),
        opt("LoggerDefinitionVersion", Kind::Obj(&LOGGER_DEFINITION)),
    ],
};

static CORE_DEFINITION: Shape = Shape {
    name: "CoreDefinitionVersion",
    fields: &[list("Cores", &Kind::Obj(&CORE))],
};

static CORE: Shape = Shape {
    name: "a core",
    fields: &[
        req("Id", Kind::Str),
        req("ThingArn", Kind::Str),
        req("CertificateArn", Kind::Str),
        opt("SyncShadow", Kind::Bool),
    ],
};

static DEVICE_DEFINITION: Shape = Shape {
    name: "DeviceDefinitionVersion",
    fields: &[list("Devices", &Kind::Obj(&DEVICE))],
};

static DEVICE: Shape = Shape {
    name: "a device",
    fields: &[
        req("Id", Kind::Str),
        req("ThingArn", Kind::Str),
        req("CertificateArn", Kind::Str),
        opt("SyncShadow", Kind::Bool),
    ],
};

static FUNCTION_DEFINITION: Shape = Shape {
    name: "FunctionDefinitionVersion",
    fields: &[
        opt("DefaultConfig", Kind::Obj(&DEFAULT_CONFIG)),
        list("Functions", &Kind::Obj(&FUNCTION)),
    ],
};

static DEFAULT_CONFIG: Shape = Shape {
    name: "DefaultConfig",
    fields: &[opt("Execution", Kind::Obj(&EXECUTION))],
};

static EXECUTION: Shape = Shape {
    name: "Execution",
    fields: &[
        opt("IsolationMode", Kind::Str),
        opt("RunAs", Kind::Obj(&RUN_AS)),
    ],
};

static RUN_AS: Shape = Shape {
    name: "RunAs",
    fields: &[opt("Uid", Kind::Int), opt("Gid", Kind::Int)],
};

static FUNCTION: Shape = Shape {
    name: "a function",
    fields: &[
        req("Id", Kind::Str),
        opt("FunctionArn", Kind::Str),
        opt("FunctionConfiguration", Kind::Obj(&FUNCTION_CONFIGURATION)),
    ],
};

static FUNCTION_CONFIGURATION: Shape = Shape {
    name: "FunctionConfiguration",
    fields: &[
        opt("EncodingType", Kind::Str),
        opt("Environment", Kind::Obj(&ENVIRONMENT)),
        opt("ExecArgs", Kind::Str),
        opt("Executable", Kind::Str),
        opt("MemorySize", Kind::Int),
        opt("Pinned", Kind::Bool),
        opt("Timeout", Kind::Int),
        opt("FunctionRuntimeOverride", Kind::Str),
        opt("CodeUri", Kind::Str),
        opt("Runtime", Kind::Str),
    ],
};

static ENVIRONMENT: Shape = Shape {
    name: "Environment",
    fields: &[
        opt("AccessSysfs", Kind::Bool),
        opt("Execution", Kind::Obj(&EXECUTION)),
        list(
            "ResourceAccessPolicies",
            &Kind::Obj(&RESOURCE_ACCESS_POLICY),
        ),
        Field {
            name: "Variables",
            kind: Kind::StrMap,
            presence: Presence::Defaulted,
        },
    ],
};

static RESOURCE_ACCESS_POLICY: Shape = Shape {
    name: "a resource access policy",
    fields: &[req("ResourceId", Kind::Str), opt("Permission", Kind::Str)],
};

static SUBSCRIPTION_DEFINITION: Shape = Shape {
    name: "SubscriptionDefinitionVersion",
    fields: &[list("Subscriptions", &Kind::Obj(&SUBSCRIPTION))],
};

static SUBSCRIPTION: Shape = Shape {
    name: "a subscription",
    fields: &[
        req("Id", Kind::Str),
        req("Source", Kind::Str),
        req("Subject", Kind::Str),
        req("Target", Kind::Str),
    ],
};

static RESOURCE_DEFINITION: Shape = Shape {
    name: "ResourceDefinitionVersion",
    fields: &[list("Resources", &Kind::Obj(&RESOURCE))],
};

static RESOURCE: Shape = Shape {
    name: "a resource",
    fields: &[
        req("Id", Kind::Str),
        req("Name", Kind::Str),
        req("ResourceDataContainer", Kind::Obj(&RESOURCE_DATA_CONTAINER)),
    ],
};

static RESOURCE_DATA_CONTAINER: Shape = Shape {
    name: "ResourceDataContainer",
    fields: &[
        opt("LocalDeviceResourceData", Kind::Obj(&LOCAL_DEVICE)),
        opt("LocalVolumeResourceData", Kind::Obj(&LOCAL_VOLUME)),
        opt("S3MachineLearningModelResourceData", Kind::Obj(&S3_MODEL)),
        opt(
            "SageMakerMachineLearningModelResourceData",
            Kind::Obj(&SAGEMAKER_MODEL),
        ),
        opt("SecretsManagerSecretResourceData", Kind::Obj(&SECRET)),
    ],
};

static LOCAL_DEVICE: Shape = Shape {
    name: "LocalDeviceResourceData",
    fields: &[
        opt("SourcePath", Kind::Str),
        opt("GroupOwnerSetting", Kind::Obj(&GROUP_OWNER_SETTING)),
    ],
};

static LOCAL_VOLUME: Shape = Shape {
    name: "LocalVolumeResourceData",
    fields: &[
        opt("SourcePath", Kind::Str),
        opt("DestinationPath", Kind::Str),
        opt("GroupOwnerSetting", Kind::Obj(&GROUP_OWNER_SETTING)),
    ],
};

static GROUP_OWNER_SETTING: Shape = Shape {
    name: "GroupOwnerSetting",
    fields: &[
        opt("AutoAddGroupOwner", Kind::Bool),
        opt("GroupOwner", Kind::Str),
    ],
};

static S3_MODEL: Shape = Shape {
    name: "S3MachineLearningModelResourceData",
    fields: &[
        opt("S3Uri", Kind::Str),
        opt("DestinationPath", Kind::Str),
        opt("OwnerSetting", Kind::Obj(&OWNER_SETTING)),
    ],
};

static SAGEMAKER_MODEL: Shape = Shape {
    name: "SageMakerMachineLearningModelResourceData",
    fields: &[
        opt("SageMakerJobArn", Kind::Str),
        opt("DestinationPath", Kind::Str),
        opt("OwnerSetting", Kind::Obj(&OWNER_SETTING)),
    ],
};

static OWNER_SETTING: Shape = Shape {
    name: "OwnerSetting",
    fields: &[
        req("GroupOwner", Kind::Str),
        req("GroupPermission", Kind::Str),
    ],
};

static SECRET: Shape = Shape {
    name: "SecretsManagerSecretResourceData",
    fields: &[
        opt("ARN", Kind::Str),
        list("AdditionalStagingLabelsToDownload", &Kind::Str),
    ],
};

static CONNECTOR_DEFINITION: Shape = Shape {
    name: "ConnectorDefinitionVersion",
    fields: &[list("Connectors", &Kind::Obj(&CONNECTOR))],
};

static CONNECTOR: Shape = Shape {
    name: "a connector",
    fields: &[
        req("Id", Kind::Str),
        req("ConnectorArn", Kind::Str),
        Field {
            name: "Parameters",
            kind: Kind::ParamMap,
            presence: Presence::Defaulted,
        },
    ],
};

static LOGGER_DEFINITION: Shape = Shape {
    name: "LoggerDefinitionVersion",
    fields: &[list("Loggers", &Kind::Obj(&LOGGER))],
};

static LOGGER: Shape = Shape {
    name: "a logger",
    fields: &[
        req("Id", Kind::Str),
        req("Component", Kind::Str),
        req("Level", Kind::Str),
        req("Type", Kind::Str),
        opt("Space", Kind::Int),
    ],
};

/// Every unknown member, wrong type and missing required member of `doc`, in document order.
pub(crate) fn check(doc: &Value) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    object(doc, &GROUP, "$", &mut errors);
    errors
}

fn object(value: &Value, shape: &Shape, path: &str, errors: &mut Vec<ValidationError>) {
    let Value::Object(members) = value else {
        errors.push(ValidationError::new(
            path,
            format!(
                "must be an object {{…}} ({}), not {}",
                shape.name,
                what(value)
            ),
        ));
        return;
    };
    for (key, member) in members {
        let here = format!("{path}{}", key_segment(key));
        match shape.fields.iter().find(|f| f.name == key) {
            Some(field) => {
                if member.is_null() && field.presence == Presence::Optional {
                    continue;
                }
                kind(member, &field.kind, &here, errors);
            }
            None => errors.push(ValidationError::new(here, unknown(key, shape))),
        }
    }
    for field in shape.fields {
        if field.presence == Presence::Required && !members.contains_key(field.name) {
            errors.push(ValidationError::new(
                format!("{path}{}", key_segment(field.name)),
                format!("is required: {} must have {}", shape.name, field.name),
            ));
        }
    }
}

fn kind(value: &Value, kind: &Kind, path: &str, errors: &mut Vec<ValidationError>) {
    let wrong = |expected: &str| {
        ValidationError::new(path, format!("must be {expected}, not {}", what(value)))
    };
    match kind {
        Kind::Str if !value.is_string() => errors.push(wrong("a string (in quotes)")),
        Kind::Bool if !value.is_boolean() => errors.push(wrong("true or false")),
        Kind::Int => match value {
            Value::Number(n) if n.is_i64() => {}
            Value::Number(n) if n.is_u64() => errors.push(ValidationError::new(
                path,
                format!("is too large ({n}); at most {}", i64::MAX),
            )),
            _ => errors.push(wrong("a whole number")),
        },
        Kind::Obj(shape) => object(value, shape, path, errors),
        Kind::List(item) => match value {
            Value::Array(items) => {
                for (i, element) in items.iter().enumerate() {
                    self::kind(element, item, &format!("{path}[{i}]"), errors);
                }
            }
            _ => errors.push(wrong("a list [ … ]")),
        },
        Kind::StrMap | Kind::ParamMap => {
            let lenient = matches!(kind, Kind::ParamMap);
            let Value::Object(members) = value else {
                errors.push(wrong("an object {…} of names and values"));
                return;
            };
            for (key, member) in members {
                let ok =
                    member.is_string() || (lenient && (member.is_number() || member.is_boolean()));
                if !ok {
                    let expected = if lenient {
                        "a string (a number or true/false is taken as its text)"
                    } else {
                        "a string (in quotes)"
                    };
                    errors.push(ValidationError::new(
                        format!("{path}{}", key_segment(key)),
                        format!("must be {expected}, not {}", what(member)),
                    ));
                }
            }
        }
        Kind::Str | Kind::Bool => {}
    }
}

/// A value as the operator wrote it, in words: `the number 3`, `the string "x"`, `a list`.
pub(crate) fn what(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let shown: String = s.chars().take(40).collect();
            let more = if s.chars().count() > 40 { "…" } else { "" };
            format!("the string \"{shown}{more}\"")
        }
        Value::Array(_) => "a list [ … ]".to_string(),
        Value::Object(_) => "an object {…}".to_string(),
    }
}

/// The message for a member `shape` does not have: the likely one meant, else every one it has.
fn unknown(key: &str, shape: &Shape) -> String {
    let names: Vec<&str> = shape.fields.iter().map(|f| f.name).collect();
    let shown: String = key.chars().take(60).collect();
    match names.iter().find(|name| close(key, name)) {
        Some(name) => format!(
            "unknown member \"{shown}\" in {}; did you mean {name}?",
            shape.name
        ),
        None => format!(
            "unknown member \"{shown}\" in {}; its members are {}",
            shape.name,
            names.join(", ")
        ),
    }
}

/// Whether `a` is probably a misspelling of `b`: the same but for case, or at most two
/// letters added, dropped or changed.
fn close(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 || a.len() > 64 {
        return false;
    }
    // Levenshtein distance, one row at a time.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(!ca.eq_ignore_ascii_case(cb));
            let next = (prev + cost).min(row[j] + 1).min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()] <= 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A value of `kind` with every member of every object in it.
    fn full(kind: &Kind) -> Value {
        match kind {
            Kind::Str => json!("x"),
            Kind::Int => json!(1),
            Kind::Bool => json!(true),
            Kind::Obj(shape) => Value::Object(
                shape
                    .fields
                    .iter()
                    .map(|f| (f.name.to_string(), full(&f.kind)))
                    .collect(),
            ),
            Kind::List(item) => json!([full(item)]),
            Kind::StrMap => json!({"K": "v"}),
            // Numbers are accepted too (`all_problems_…`), but come back as text.
            Kind::ParamMap => json!({"K": "v"}),
        }
    }

    #[test]
    fn every_member_of_the_table_is_one_the_model_reads() {
        // The model denies unknown fields: a member the table has and the model lacks (or of
        // another type) fails here; a required member the model has and the table lacks fails
        // `every_good_fixture_passes` in the validation tests.
        let doc = full(&Kind::Obj(&GROUP));
        assert!(check(&doc).is_empty(), "{:?}", check(&doc));
        let text = doc.to_string();
        let read = evergreen_json::from_str::<crate::model::GroupDefinition>(&text);
        assert!(read.is_ok(), "{read:?}");
        // Everything the table names comes back from the model, so none of it was skipped.
        let again = serde_json::to_value(read.expect("read")).expect("serialise");
        assert_eq!(again, doc);
    }

    #[test]
    fn all_problems_are_reported_in_one_pass() {
        let doc = json!({
            "FunctionDefinitionVersion": {"Functions": [
                {"Id": "a", "FunctionConfiguration": {"Pined": true, "MemorySize": "big", "Timeout": 1.5}},
                {"FunctionArn": 3}
            ]},
            "SubscriptionDefinitionVersion": {"Subscriptions": [{"Id": "s", "Source": "cloud", "Target": "cloud"}]},
            "Loggers": []
        });
        let errors: Vec<String> = check(&doc).iter().map(ToString::to_string).collect();
        let expect = [
            "$.FunctionDefinitionVersion.Functions[0].FunctionConfiguration.Pined: unknown member \"Pined\" in FunctionConfiguration; did you mean Pinned?",
            "$.FunctionDefinitionVersion.Functions[0].FunctionConfiguration.MemorySize: must be a whole number, not the string \"big\"",
            "$.FunctionDefinitionVersion.Functions[0].FunctionConfiguration.Timeout: must be a whole number, not the number 1.5",
            "$.FunctionDefinitionVersion.Functions[1].FunctionArn: must be a string (in quotes), not the number 3",
            "$.FunctionDefinitionVersion.Functions[1].Id: is required: a function must have Id",
            "$.SubscriptionDefinitionVersion.Subscriptions[0].Subject: is required: a subscription must have Subject",
        ];
        for e in expect {
            assert!(
                errors.iter().any(|got| got == e),
                "{e}\nnot in\n{errors:#?}"
            );
        }
        assert!(
            errors.iter().any(|e| e.starts_with("$.Loggers: unknown member \"Loggers\" in a group file; its members are CoreDefinitionVersion")),
            "{errors:#?}"
        );
        assert_eq!(errors.len(), expect.len() + 1, "{errors:#?}");
    }

    #[test]
    fn null_is_absent_only_where_the_member_is_optional() {
        let doc = json!({"FunctionDefinitionVersion": {"DefaultConfig": null, "Functions": null}});
        let errors = check(&doc);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "$.FunctionDefinitionVersion.Functions");
        assert_eq!(errors[0].message, "must be a list [ … ], not null");
    }

    #[test]
    fn misspellings_are_recognised_and_strangers_are_not() {
        assert!(close("pinned", "Pinned"));
        assert!(close("Pined", "Pinned"));
        assert!(close("ExecArg", "ExecArgs"));
        assert!(!close("Functions", "Pinned"));
    }
}
