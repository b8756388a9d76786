//! The group file as written: serde types for the seven Greengrass V1
//! definition versions, with the field names of the Greengrass API.
//!
//! A group file is one JSON object whose keys are the definition-version
//! names (`CoreDefinitionVersion`, `DeviceDefinitionVersion`, …), each holding
//! exactly what `Get*DefinitionVersion` returns under `Definition`, so a
//! group exported from AWS is accepted unchanged. This module owns the shape
//! and [`parse`]; it must never decide whether a group makes sense — that is
//! [`crate::validate::validate`], which turns a [`GroupDefinition`] into a plan.
//!
//! Deliberate choices:
//! * Unknown keys are errors at every level (a misspelt `Pinned` would
//!   otherwise be silently ignored); they are reported with their JSON path,
//!   all of them at once with every wrong type and missing member: the
//!   document is checked against the table of `crate::schema` before serde
//!   reads it, since serde stops at the first.
//! * The file is read strictly (`evergreen_json`): an array where an object
//!   belongs, a key given twice and anything after the group are errors too,
//!   at every level (serde alone would take a struct's members from an array
//!   by position and keep the last of two equal map keys).
//! * Enumerated values (`IsolationMode`, `Permission`, logger `Level`, …) are
//!   kept as strings and numbers as `i64`, so that a wrong value is reported
//!   by validation together with every other problem instead of stopping the
//!   parser at the first one.
//! * Connector `Parameters` are strings in the API; bare numbers and booleans
//!   (which some AWS CLI examples use) are accepted and kept as their JSON
//!   text.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// One problem found in a group, located by a JSON path such as
/// `$.SubscriptionDefinitionVersion.Subscriptions[2].Target`, and by the `Id` of the list
/// element the path runs through when it has one. It reads
/// `$.SubscriptionDefinitionVersion.Subscriptions[2] (Id "temp-to-cloud").Target: …`: the
/// index says where in the file, the `Id` which element, however the list was reordered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ValidationError {
    /// The JSON path alone (`$.A.B[2].C`), without the `Id`.
    pub path: String,
    /// The `Id` of the innermost list element on the path (a function, a subscription, a
    /// connector, …), when it has one that is a string.
    pub id: Option<String>,
    pub message: String,
    /// Where the element named by `id` ends in `path`: the `Id` is shown there.
    #[serde(skip)]
    id_after: usize,
}

impl ValidationError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            path: path.into(),
            id: None,
            message: message.into(),
            id_after: 0,
        }
    }

    /// The path with the element's `Id` beside its index: what the operator reads.
    pub fn located(&self) -> String {
        match &self.id {
            Some(id)
                if self.id_after <= self.path.len()
                    && self.path.is_char_boundary(self.id_after) =>
            {
                let (element, rest) = self.path.split_at(self.id_after);
                format!(
                    "{element} (Id {}){rest}",
                    serde_json::Value::String(id.clone())
                )
            }
            _ => self.path.clone(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.located(), self.message)
    }
}

impl std::error::Error for ValidationError {}

/// Gives each error the `Id` of the innermost list element its path runs through in `doc`
/// (the untyped document), so every message names the element it is about.
pub(crate) fn name_ids(errors: &mut [ValidationError], doc: &serde_json::Value) {
    for error in errors {
        if let Some((after, id)) = element_id(&error.path, doc) {
            // An absurdly long `Id` is an error of its own; here it is shortened.
            let shown: String = id.chars().take(128).collect();
            error.id = Some(shown);
            error.id_after = after;
        }
    }
}

/// Walks `path` (as [`json_path`] and validation write it: `$`, `.Key`, `["odd key"]`,
/// `[2]`) through `doc`: the end of the innermost `[index]` whose element has a string `Id`,
/// and that `Id`. The walk stops where the document does (a missing member is where many
/// errors point); `None` for a path that does not parse or has no such element.
fn element_id<'d>(path: &str, doc: &'d serde_json::Value) -> Option<(usize, &'d str)> {
    let mut rest = path.strip_prefix('$')?;
    let mut here = doc;
    let mut found = None;
    while !rest.is_empty() {
        let (next, after) = if let Some(after_dot) = rest.strip_prefix('.') {
            let end = after_dot.find(['.', '[']).unwrap_or(after_dot.len());
            (here.get(&after_dot[..end]), &after_dot[end..])
        } else if rest.starts_with("[\"") {
            // A quoted key: a JSON string, then the closing bracket.
            let mut stream = serde_json::Deserializer::from_str(&rest[1..]).into_iter::<String>();
            let Some(Ok(key)) = stream.next() else { break };
            let used = stream.byte_offset();
            let Some(after) = rest[1 + used..].strip_prefix(']') else {
                break;
            };
            (here.get(&key), after)
        } else if let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            let Ok(index) = inner[..end].parse::<usize>() else {
                break;
            };
            let next = here.get(index);
            let after = &inner[end + 1..];
            if let Some(id) = next
                .and_then(|e| e.get("Id"))
                .and_then(serde_json::Value::as_str)
            {
                found = Some((path.len() - after.len(), id));
            }
            (next, after)
        } else {
            break;
        };
        let Some(next) = next else { break };
        here = next;
        rest = after;
    }
    found
}

/// A whole group: every definition version is optional, as in a
/// GroupVersion. `{}` is a valid (empty) group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct GroupDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) core_definition_version: Option<CoreDefinitionVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) device_definition_version: Option<DeviceDefinitionVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) function_definition_version: Option<FunctionDefinitionVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subscription_definition_version: Option<SubscriptionDefinitionVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resource_definition_version: Option<ResourceDefinitionVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) connector_definition_version: Option<ConnectorDefinitionVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) logger_definition_version: Option<LoggerDefinitionVersion>,
}

// ---------------------------------------------------------------- cores, devices

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct CoreDefinitionVersion {
    #[serde(default)]
    pub(crate) cores: Vec<Core>,
}

/// The group's core. `Id`, `ThingArn` and `CertificateArn` are required by
/// the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Core {
    pub(crate) id: String,
    pub(crate) thing_arn: String,
    pub(crate) certificate_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sync_shadow: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct DeviceDefinitionVersion {
    #[serde(default)]
    pub(crate) devices: Vec<Device>,
}

/// A client device allowed to connect to the core's MQTT server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) thing_arn: String,
    pub(crate) certificate_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sync_shadow: Option<bool>,
}

// ---------------------------------------------------------------- functions

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct FunctionDefinitionVersion {
    /// Group-wide defaults for `IsolationMode` and `RunAs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) default_config: Option<FunctionDefaultConfig>,
    #[serde(default)]
    pub(crate) functions: Vec<Function>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct FunctionDefaultConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) execution: Option<FunctionExecutionConfig>,
}

/// `FunctionExecutionConfig` (and `FunctionDefaultExecutionConfig`, which has
/// the same members).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct FunctionExecutionConfig {
    /// `GreengrassContainer` or `NoContainer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) isolation_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) run_as: Option<FunctionRunAsConfig>,
}

/// Either id may be given alone; the other stays the default identity's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct FunctionRunAsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) uid: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gid: Option<i64>,
}

/// A user function. Only `Id` is required by the API; validation requires
/// `FunctionArn` and `FunctionConfiguration.Executable` as well.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Function {
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) function_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) function_configuration: Option<FunctionConfiguration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct FunctionConfiguration {
    /// `json` (default) or `binary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) encoding_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) environment: Option<FunctionConfigurationEnvironment>,
    /// Arguments, split on whitespace by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) exec_args: Option<String>,
    /// The program to run; relative paths resolve against the group file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) executable: Option<String>,
    /// KB, as in Greengrass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pinned: Option<bool>,
    /// Seconds per invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<i64>,
    /// Accepted for compatibility; Evergreen runs `Executable` directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) function_runtime_override: Option<String>,
    /// Evergreen extension: where a Lambda-style function's code is, a
    /// directory or a `.zip` (relative paths resolve against the group
    /// file). With it, `Executable` is the handler `module.function`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) code_uri: Option<String>,
    /// The Lambda runtime (`python3.7`, `python3.8`, … ; default `python3`
    /// when `CodeUri` is given), or `executable` for a native function (a
    /// program using the Greengrass Core SDK for C; no `CodeUri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) runtime: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct FunctionConfigurationEnvironment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) access_sysfs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) execution: Option<FunctionExecutionConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) resource_access_policies: Vec<ResourceAccessPolicy>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "string_map"
    )]
    pub(crate) variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct ResourceAccessPolicy {
    pub(crate) resource_id: String,
    /// `ro` or `rw`; optional in the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) permission: Option<String>,
}

// ---------------------------------------------------------------- subscriptions

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct SubscriptionDefinitionVersion {
    #[serde(default)]
    pub(crate) subscriptions: Vec<Subscription>,
}

/// One route: messages from `Source` on topics matching `Subject` go to
/// `Target`. All four members are required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Subscription {
    pub(crate) id: String,
    pub(crate) source: String,
    pub(crate) subject: String,
    pub(crate) target: String,
}

// ---------------------------------------------------------------- resources

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct ResourceDefinitionVersion {
    #[serde(default)]
    pub(crate) resources: Vec<Resource>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Resource {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) resource_data_container: ResourceDataContainer,
}

/// Must hold exactly one member; the shape allows any number, validation
/// checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct ResourceDataContainer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) local_device_resource_data: Option<LocalDeviceResourceData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) local_volume_resource_data: Option<LocalVolumeResourceData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) s3_machine_learning_model_resource_data: Option<S3MachineLearningModelResourceData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sage_maker_machine_learning_model_resource_data:
        Option<SageMakerMachineLearningModelResourceData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secrets_manager_secret_resource_data: Option<SecretsManagerSecretResourceData>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct LocalDeviceResourceData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group_owner_setting: Option<GroupOwnerSetting>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct LocalVolumeResourceData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) destination_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group_owner_setting: Option<GroupOwnerSetting>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct GroupOwnerSetting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) auto_add_group_owner: Option<bool>,
    /// Ignored when `AutoAddGroupOwner` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group_owner: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct S3MachineLearningModelResourceData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) s3_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) destination_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) owner_setting: Option<ResourceDownloadOwnerSetting>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct SageMakerMachineLearningModelResourceData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sage_maker_job_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) destination_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) owner_setting: Option<ResourceDownloadOwnerSetting>,
}

/// Both members are required by the API when the setting is present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct ResourceDownloadOwnerSetting {
    pub(crate) group_owner: String,
    /// `ro` or `rw`.
    pub(crate) group_permission: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct SecretsManagerSecretResourceData {
    #[serde(rename = "ARN", default, skip_serializing_if = "Option::is_none")]
    pub(crate) arn: Option<String>,
    /// `AWSCURRENT` is always included and need not be listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) additional_staging_labels_to_download: Vec<String>,
}

// ---------------------------------------------------------------- connectors

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct ConnectorDefinitionVersion {
    #[serde(default)]
    pub(crate) connectors: Vec<Connector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Connector {
    pub(crate) id: String,
    /// `arn:aws:greengrass:<region>::/connectors/<Name>/versions/<N>`.
    pub(crate) connector_arn: String,
    /// Always strings in the API; bare numbers and booleans are accepted
    /// and kept as their JSON text.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "parameter_map"
    )]
    pub(crate) parameters: BTreeMap<String, String>,
}

// ---------------------------------------------------------------- loggers

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct LoggerDefinitionVersion {
    #[serde(default)]
    pub(crate) loggers: Vec<Logger>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Logger {
    pub(crate) id: String,
    /// `GreengrassSystem` or `Lambda`.
    pub(crate) component: String,
    /// `DEBUG`, `INFO`, `WARN`, `ERROR` or `FATAL`.
    pub(crate) level: String,
    /// `FileSystem` or `AWSCloudWatch`.
    #[serde(rename = "Type")]
    pub(crate) logger_type: String,
    /// KB of local storage, for `FileSystem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) space: Option<i64>,
}

// ---------------------------------------------------------------- parsing

/// Parses a group file into its API shapes; see [`read`]. (The loader uses `read`, whose
/// document names the `Id`s of later errors.)
#[cfg(test)]
pub(crate) fn parse(json: &str) -> Result<GroupDefinition, Vec<ValidationError>> {
    read(json).map(|(group, _)| group)
}

/// Parses a group file: the untyped document (which names the `Id`s in later errors) and its
/// API shapes. A syntax error stops at once (nothing after it can be read); otherwise every
/// unknown member, wrong type and missing required member is reported together
/// (`crate::schema`), each with its element's `Id`, and everything else is left to
/// validation.
///
/// The file is read strictly (`evergreen_json`): an array where an object
/// belongs (serde would take a struct's members by position), a key given
/// twice in one object and anything after the group are refused at every
/// depth, like an unknown key.
pub(crate) fn read(
    json: &str,
) -> Result<(GroupDefinition, serde_json::Value), Vec<ValidationError>> {
    // The strict reader would say "expected an object, found an array" here too; at the top
    // a sentence on what a group file is helps more.
    if !json.trim_start().starts_with('{') {
        return Err(vec![ValidationError::new(
            "$",
            "a group file is one JSON object whose keys are definition-version names (CoreDefinitionVersion, …)",
        )]);
    }
    let located = |e: evergreen_json::Error| ValidationError::new(json_path(e.path()), e.message());
    let doc: serde_json::Value = evergreen_json::from_str(json).map_err(|e| vec![located(e)])?;
    let mut errors = crate::schema::check(&doc);
    if errors.is_empty() {
        // The table and the model agree (see `schema`'s tests), so this reads; should it
        // not, the model's own error is still reported, in the same words.
        match evergreen_json::from_str::<GroupDefinition>(json) {
            Ok(group) => return Ok((group, doc)),
            Err(e) => errors.push(located(e)),
        }
    }
    name_ids(&mut errors, &doc);
    Err(errors)
}

/// Renders a document path as `$.A.B[2].C`.
fn json_path(path: &evergreen_json::Path) -> String {
    use evergreen_json::Segment;
    let mut out = String::from("$");
    for segment in path.segments() {
        match segment {
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
            Segment::Key(key) => out.push_str(&key_segment(key)),
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// One object member in a JSON path: `.Key` when the key is a plain word
/// (every API member and almost every parameter name), `["odd key"]`
/// otherwise so the path stays unambiguous.
pub(crate) fn key_segment(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ':');
    if plain {
        format!(".{key}")
    } else {
        format!("[{}]", serde_json::Value::String(key.to_string()))
    }
}

/// `Parameters`: a map of strings, also accepting bare numbers and booleans
/// (kept as their JSON text) because some AWS CLI examples write them so.
/// (A key given twice never gets here: the strict reader refuses it.)
fn parameter_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_map(StringMapVisitor { lenient: true })
}

/// `Variables`: a map of strings.
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_map(StringMapVisitor { lenient: false })
}

struct StringMapVisitor {
    lenient: bool,
}

impl<'de> Visitor<'de> for StringMapVisitor {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lenient {
            f.write_str("an object whose values are strings (numbers and booleans are accepted)")
        } else {
            f.write_str("an object whose values are strings")
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if self.lenient {
                map.next_value::<LenientString>()?.0
            } else {
                map.next_value::<String>()?
            };
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// A string, or a number or boolean converted to its text.
struct LenientString(String);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (or a number or boolean)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(LenientString(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(json: &str) -> ValidationError {
        match parse(json) {
            Ok(g) => panic!("expected an error, parsed {g:?}"),
            Err(mut errors) => {
                assert_eq!(errors.len(), 1, "{errors:?}");
                errors.remove(0)
            }
        }
    }

    #[test]
    fn empty_object_is_an_empty_group() {
        assert_eq!(parse("{}"), Ok(GroupDefinition::default()));
    }

    #[test]
    fn unknown_top_level_key_is_reported() {
        let e = parse_err(r#"{"CoreDefinitionVersion": {"Cores": []}, "Functions": []}"#);
        assert!(
            e.message
                .contains(r#"unknown member "Functions" in a group file"#),
            "{e}"
        );
    }

    #[test]
    fn unknown_nested_key_has_its_path() {
        let e = parse_err(
            r#"{"FunctionDefinitionVersion": {"Functions": [
                {"Id": "a", "FunctionArn": "x"},
                {"Id": "b", "FunctionConfiguration": {"Executable": "x", "Pined": true}}]}}"#,
        );
        assert!(
            e.path
                .starts_with("$.FunctionDefinitionVersion.Functions[1].FunctionConfiguration"),
            "{e}"
        );
        assert_eq!(e.id.as_deref(), Some("b"));
        assert_eq!(
            e.message,
            r#"unknown member "Pined" in FunctionConfiguration; did you mean Pinned?"#
        );
    }

    #[test]
    fn missing_required_member_has_its_path() {
        let e = parse_err(
            r#"{"SubscriptionDefinitionVersion": {"Subscriptions": [{"Id": "s", "Source": "cloud", "Target": "cloud"}]}}"#,
        );
        assert_eq!(
            e.path,
            "$.SubscriptionDefinitionVersion.Subscriptions[0].Subject"
        );
        assert_eq!(e.id.as_deref(), Some("s"));
        assert!(e.message.contains("is required"), "{e}");
    }

    #[test]
    fn wrong_type_has_its_path() {
        let e = parse_err(
            r#"{"FunctionDefinitionVersion": {"Functions": [{"Id": "a", "FunctionConfiguration": {"MemorySize": "big"}}]}}"#,
        );
        assert_eq!(
            e.path,
            "$.FunctionDefinitionVersion.Functions[0].FunctionConfiguration.MemorySize"
        );
    }

    #[test]
    fn an_array_where_an_object_belongs_is_refused_with_its_path() {
        // serde takes a struct's members from an array by position: each of these parsed,
        // the subscription as a route, the RunAs as uid 0 and gid 0.
        for (json, path) in [
            (
                r#"{"FunctionDefinitionVersion": {"Functions": [{"Id": "a", "FunctionConfiguration": ["x.handler", null]}]}}"#,
                "$.FunctionDefinitionVersion.Functions[0].FunctionConfiguration",
            ),
            (
                r#"{"SubscriptionDefinitionVersion": {"Subscriptions": [["s", "cloud", "t/#", "cloud"]]}}"#,
                "$.SubscriptionDefinitionVersion.Subscriptions[0]",
            ),
            (
                r#"{"FunctionDefinitionVersion": {"Functions": [{"Id": "a", "FunctionConfiguration":
                    {"Environment": {"Execution": {"RunAs": [0, 0]}}}}]}}"#,
                "$.FunctionDefinitionVersion.Functions[0].FunctionConfiguration.Environment.Execution.RunAs",
            ),
            (
                r#"{"CoreDefinitionVersion": [[]]}"#,
                "$.CoreDefinitionVersion",
            ),
            (
                r#"{"ResourceDefinitionVersion": {"Resources": [{"Id": "r", "Name": "R",
                    "ResourceDataContainer": [{"SourcePath": "/dev/tty0"}]}]}}"#,
                "$.ResourceDefinitionVersion.Resources[0].ResourceDataContainer",
            ),
        ] {
            let e = parse_err(json);
            assert_eq!(e.path, path, "{json}");
            assert!(e.message.starts_with("must be an object {…}"), "{e}");
            assert!(e.message.ends_with("not a list [ … ]"), "{e}");
        }
    }

    #[test]
    fn trailing_data_is_refused_at_the_top() {
        let e = parse_err(r#"{"CoreDefinitionVersion": {"Cores": []}} {"x": 1}"#);
        assert_eq!(e.path, "$");
        assert!(e.message.contains("trailing"), "{e}");
    }

    #[test]
    fn parameters_accept_numbers_and_booleans() {
        let group = parse(
            r#"{"ConnectorDefinitionVersion": {"Connectors": [{"Id": "c",
                "ConnectorArn": "arn:aws:greengrass:eu-west-1::/connectors/SNS/versions/4",
                "Parameters": {"A": "text", "B": 50, "C": true, "D": -3, "E": 1.5}}]}}"#,
        )
        .expect("parses");
        let params = &group
            .connector_definition_version
            .expect("present")
            .connectors[0]
            .parameters;
        let got: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("A", "text"),
                ("B", "50"),
                ("C", "true"),
                ("D", "-3"),
                ("E", "1.5")
            ]
        );
    }

    #[test]
    fn parameters_refuse_null_objects_and_duplicates() {
        let e = parse_err(
            r#"{"ConnectorDefinitionVersion": {"Connectors": [{"Id": "c", "ConnectorArn": "x",
                "Parameters": {"A": null}}]}}"#,
        );
        assert!(
            e.path
                .starts_with("$.ConnectorDefinitionVersion.Connectors[0].Parameters"),
            "{e}"
        );
        let e = parse_err(
            r#"{"ConnectorDefinitionVersion": {"Connectors": [{"Id": "c", "ConnectorArn": "x",
                "Parameters": {"A": {"nested": 1}}}]}}"#,
        );
        assert!(
            e.path
                .starts_with("$.ConnectorDefinitionVersion.Connectors[0].Parameters"),
            "{e}"
        );
        let e = parse_err(
            r#"{"ConnectorDefinitionVersion": {"Connectors": [{"Id": "c", "ConnectorArn": "x",
                "Parameters": {"A": "1", "A": "2"}}]}}"#,
        );
        assert_eq!(
            e.path,
            "$.ConnectorDefinitionVersion.Connectors[0].Parameters.A"
        );
        assert!(e.message.contains("duplicate key `A`"), "{e}");
    }

    #[test]
    fn variables_must_be_strings() {
        let e = parse_err(
            r#"{"FunctionDefinitionVersion": {"Functions": [{"Id": "a", "FunctionConfiguration":
                {"Environment": {"Variables": {"N": 1}}}}]}}"#,
        );
        assert!(e.path.starts_with("$.FunctionDefinitionVersion.Functions[0].FunctionConfiguration.Environment.Variables"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [
            "",
            "[",
            "null",
            "[]",
            "{\"CoreDefinitionVersion\": 3}",
            "{} {}",
            "\u{0}",
            "{\"a\":",
        ] {
            assert!(parse(input).is_err(), "{input:?}");
        }
        // Deep nesting stops at serde_json's recursion limit instead of
        // overflowing the stack.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn round_trips_through_serde() {
        let json = r#"{
          "CoreDefinitionVersion": {"Cores": [{"Id": "core", "ThingArn": "arn:aws:iot:eu-west-1:123456789012:thing/Core",
             "CertificateArn": "arn:aws:iot:eu-west-1:123456789012:cert/abc", "SyncShadow": true}]},
          "ResourceDefinitionVersion": {"Resources": [{"Id": "s", "Name": "S", "ResourceDataContainer":
             {"SecretsManagerSecretResourceData": {"ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:greengrass-x-AbCdEf"}}}]},
          "LoggerDefinitionVersion": {"Loggers": [{"Id": "l", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": 10}]}
        }"#;
        let group = parse(json).expect("parses");
        let again = serde_json::to_string(&group).expect("serialises");
        assert_eq!(parse(&again), Ok(group));
    }

    #[test]
    fn odd_keys_are_quoted_in_paths() {
        assert_eq!(
            key_segment("SerialPort-ResourceId"),
            ".SerialPort-ResourceId"
        );
        assert_eq!(key_segment("a.b"), "[\"a.b\"]");
        assert_eq!(key_segment(""), "[\"\"]");
    }
}
