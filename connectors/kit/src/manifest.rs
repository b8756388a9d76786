//! Manifest pieces that several connectors declare word for word: the
//! `IsolationMode` parameter, a secret's resource-id parameter, the secret
//! ARN pattern and the isolation support sets. `const`, so manifests stay
//! statics; what a connector shares here it must mean the same way.

use evergreen_ipc::manifest::{ConnectorManifest, IsolationSupport, ParameterSpec, ResourceKind};

/// Runs in a Greengrass container or without one.
pub const EITHER_MODE: IsolationSupport = IsolationSupport {
    container: true,
    no_container: true,
};

/// Runs in a Greengrass container only (it needs a device granted into it).
pub const CONTAINER_ONLY: IsolationSupport = IsolationSupport {
    container: true,
    no_container: false,
};

/// Runs without a container only (until the container issue lands for it).
pub const NO_CONTAINER_ONLY: IsolationSupport = IsolationSupport {
    container: false,
    no_container: true,
};

/// What the AWS service connectors (SNS, IoT Analytics, Kinesis Firehose, CloudWatch Metrics)
/// declare alike: either isolation mode, pinned, and the core's AWS credentials. Each names
/// the rest of its manifest and takes these with `..manifest::AWS_SERVICE`.
pub const AWS_SERVICE: ConnectorManifest = ConnectorManifest {
    name: "",
    versions: &[],
    description: "",
    parameters: &[],
    inputs: &[],
    outputs: &[],
    isolation: EITHER_MODE,
    pinned: true,
    aws: true,
};

/// The Secrets Manager ARN pattern the reference prints for the connectors
/// that read one (Splunk's differs and keeps its own).
pub const SECRET_ARN_PATTERN: &str = "arn:aws:secretsmanager:[a-z0-9\\-]+:[0-9]{12}:secret:([a-zA-Z0-9\\\\]+/)*[a-zA-Z0-9/_+=,.@\\-]+-[a-zA-Z0-9]+";

/// The name of the isolation parameter.
pub const ISOLATION_MODE: &str = "IsolationMode";

/// `IsolationMode`, GreengrassContainer (default) or NoContainer, from
/// connector version `since`.
pub const fn isolation_mode(since: u32) -> ParameterSpec {
    ParameterSpec::new(
        ISOLATION_MODE,
        "GreengrassContainer (default) or NoContainer.",
    )
    .pattern("^NoContainer$|^GreengrassContainer$")
    .default_value("GreengrassContainer")
    .since(since)
}

/// `<SecretArn>-ResourceId`: the group's secret resource granting the
/// secret another parameter names.
pub const fn secret_resource(name: &'static str) -> ParameterSpec {
    ParameterSpec::new(name, "Id of the group's secret resource for that secret.")
        .required()
        .pattern(".+")
        .resource(ResourceKind::Secret)
}
