//! `evergreen import`: a Greengrass V1 group from what its owner still has now that the V1
//! cloud API no longer answers — saved outputs of `aws greengrass get-group-version` and
//! `get-*-definition-version` (a directory of them or one combined JSON), or CloudFormation
//! templates with `AWS::Greengrass::*` resources (JSON or YAML) — written as an Evergreen group
//! file, with a [`Report`] of everything it could not map.
//!
//! The flow is one way: [`input`] reads the files and tells their kind; [`cli_outputs`] or
//! [`cloudformation`] (with [`yaml`] for YAML templates) turns them into the group's
//! definitions in the API's shapes ([`Collected`]), plus what a template says of each Lambda
//! function; [`group`] maps those onto the group file, member by member, filling in Evergreen's
//! own `Runtime`/`CodeUri` where the input has them; finally the output is judged by the same
//! [`Loader`] as `evergreen validate`. Nothing is dropped silently: each thing left out or left
//! to the user is a [`Finding`].
//!
//! This crate reads its inputs and nothing else: it never writes a file (the CLI writes the
//! group and any [`CodeFile`]) and never calls AWS.

mod cli_outputs;
mod cloudformation;
mod group;
mod input;
mod report;
mod shape;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use evergreen_group::{ConnectorRegistry, Loader, ValidationOptions};
use serde_json::Value;

pub use report::{Finding, Level, Report};
pub use yaml::YamlError;

/// Which kind of input to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Tell each input's kind from its content.
    Auto,
    /// Saved `aws greengrass get-*` outputs.
    Cli,
    /// CloudFormation templates.
    CloudFormation,
}

/// How to import.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// `AWS::Region` in templates; without it, a placeholder the report lists.
    pub region: Option<String>,
    /// `AWS::AccountId` in templates; without it, a placeholder the report lists.
    pub account: Option<String>,
    /// The group file will be written beside a directory the CLI may write code into, so a
    /// Lambda's inline code (`Code.ZipFile`) becomes a [`CodeFile`]; without it, a to-do.
    pub write_code: bool,
    /// The connectors this build runs, to check each connector's ARN and version.
    pub registry: ConnectorRegistry,
}

/// Code found in the input, to be written relative to the group file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFile {
    pub path: PathBuf,
    pub contents: String,
}

/// An import's result: the group file (one JSON object keyed by definition-version names), the
/// code to write beside it, and the report.
#[derive(Debug, Clone)]
pub struct Import {
    pub group: Value,
    pub code_files: Vec<CodeFile>,
    pub report: Report,
}

/// Why nothing could be imported. Each names the input at fault and, for a syntax error,
/// where in it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("no input: name the saved CLI outputs (files or a directory) or the CloudFormation templates")]
    NoInput,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid JSON: line {line}, column {column}: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{} is not valid YAML: {source}", path.display())]
    Yaml { path: PathBuf, source: YamlError },
    #[error("{}: {why}", path.display())]
    Unrecognised { path: PathBuf, why: String },
    #[error(
        "the inputs mix saved CLI outputs ({}) and CloudFormation templates ({}): import them separately",
        cli.display(),
        template.display()
    )]
    Mixed { cli: PathBuf, template: PathBuf },
    #[error("{}: {message}", path.display())]
    Template { path: PathBuf, message: String },
    #[error("nothing to import: {0}")]
    Nothing(String),
}

/// The seven kinds of definition a group version names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Core,
    Device,
    Function,
    Subscription,
    Resource,
    Connector,
    Logger,
}

impl Kind {
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Core,
        Kind::Device,
        Kind::Function,
        Kind::Subscription,
        Kind::Resource,
        Kind::Connector,
        Kind::Logger,
    ];

    /// `Core` in `CoreDefinitionVersion`, `AWS::Greengrass::CoreDefinition`, ….
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Core => "Core",
            Kind::Device => "Device",
            Kind::Function => "Function",
            Kind::Subscription => "Subscription",
            Kind::Resource => "Resource",
            Kind::Connector => "Connector",
            Kind::Logger => "Logger",
        }
    }

    /// The group file's key: `CoreDefinitionVersion`.
    pub(crate) fn version_key(self) -> String {
        format!("{}DefinitionVersion", self.name())
    }

    /// The group version's member: `CoreDefinitionVersionArn`.
    pub(crate) fn arn_key(self) -> String {
        format!("{}DefinitionVersionArn", self.name())
    }

    /// The list inside a definition version: `Cores`.
    pub(crate) fn list_key(self) -> &'static str {
        match self {
            Kind::Core => "Cores",
            Kind::Device => "Devices",
            Kind::Function => "Functions",
            Kind::Subscription => "Subscriptions",
            Kind::Resource => "Resources",
            Kind::Connector => "Connectors",
            Kind::Logger => "Loggers",
        }
    }

    /// The ARN path segment: `…:/greengrass/definition/cores/…`.
    pub(crate) fn arn_segment(self) -> &'static str {
        match self {
            Kind::Core => "cores",
            Kind::Device => "devices",
            Kind::Function => "functions",
            Kind::Subscription => "subscriptions",
            Kind::Resource => "resources",
            Kind::Connector => "connectors",
            Kind::Logger => "loggers",
        }
    }

    /// Singular noun for messages: `core`, `function`.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Kind::Core => "core",
            Kind::Device => "device",
            Kind::Function => "function",
            Kind::Subscription => "subscription",
            Kind::Resource => "resource",
            Kind::Connector => "connector",
            Kind::Logger => "logger",
        }
    }
}

/// One definition version's content in the API's shape (`{"Functions": [...]}`), with where
/// it came from for messages.
#[derive(Debug, Clone)]
pub(crate) struct Definition {
    pub(crate) body: Value,
    pub(crate) origin: String,
}

/// What a template says of a Lambda function (`AWS::Lambda::Function`), by function name.
#[derive(Debug, Clone)]
pub(crate) struct Lambda {
    pub(crate) logical_id: String,
    pub(crate) runtime: Option<String>,
    pub(crate) handler: Option<String>,
    pub(crate) code: LambdaCode,
}

/// Where a Lambda's code is, as its template's `Code` says.
#[derive(Debug, Clone)]
pub(crate) enum LambdaCode {
    /// `ZipFile`: the source itself (CloudFormation writes it as `index.py`).
    Inline(String),
    /// `S3Bucket`/`S3Key`: a deployment package in S3, not in the input.
    S3 { bucket: String, key: String },
    /// `ImageUri`: a container image, which Greengrass V1 never ran.
    Image(String),
    /// No `Code` the import could read.
    Unknown,
}

/// The group's definitions as the input gives them, before mapping.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collected {
    pub(crate) definitions: BTreeMap<Kind, Definition>,
    pub(crate) lambdas: BTreeMap<String, Lambda>,
}

/// Imports `inputs` (files, or directories of them).
pub fn import(inputs: &[PathBuf], options: &Options) -> Result<Import, ImportError> {
    let mut report = Report::default();
    let documents = input::read_all(inputs, options.source, &mut report)?;
    import_documents(documents, options, report)
}

fn import_documents(
    documents: input::Documents,
    options: &Options,
    mut report: Report,
) -> Result<Import, ImportError> {
    let collected = match documents {
        input::Documents::Cli(docs) => cli_outputs::collect(&docs, &mut report)?,
        input::Documents::Templates(docs) => cloudformation::collect(&docs, options, &mut report)?,
    };
    let (group, code_files) = group::build(&collected, options, &mut report);
    report.validation = validate(&group, &options.registry);
    Ok(Import {
        group,
        code_files,
        report,
    })
}

/// The fuzz targets' way in (`tests/fuzz`): the import of one input given as text, past the
/// file system. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::{import_documents, input, Import, ImportError, Options, Report};

    /// Imports `text` as if it were the file `input.json` (JSON when it starts with `{` or `[`,
    /// else YAML), kind told by `options.source`.
    pub fn import_text(text: &str, options: &Options) -> Result<Import, ImportError> {
        let path = std::path::Path::new("input.json");
        let value = input::parse_text(path, text, None)?;
        let documents = input::classify(
            vec![input::Document {
                path: path.to_path_buf(),
                value,
            }],
            options.source,
        )?;
        import_documents(documents, options, Report::default())
    }
}

/// What `evergreen validate` would say of the group, judged by the Greengrass rules and
/// Evergreen's defaults but not by this machine: the import may run on a workstation, so
/// whether it can run container mode is for `evergreen validate` on the gateway to say.
fn validate(group: &Value, registry: &ConnectorRegistry) -> Vec<String> {
    let options = ValidationOptions {
        container_unavailable: None,
        // A group without a CoreDefinitionVersion runs on the gateway's configured core
        // thing (the report says so); any well-formed thing stands in for it here.
        default_core_thing_arn: "arn:aws:iot:us-east-1:123456789012:thing/configured-core".into(),
        ..ValidationOptions::default()
    };
    let loader = Loader::new(registry.clone(), options);
    match loader.load(
        &group.to_string(),
        "the output",
        Path::new(".").to_path_buf(),
    ) {
        Ok(_) => Vec::new(),
        Err(evergreen_group::LoadError::Invalid { errors, .. }) => {
            errors.iter().map(ToString::to_string).collect()
        }
        Err(e) => vec![e.to_string()],
    }
}
