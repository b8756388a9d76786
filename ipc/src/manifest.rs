//! The connector manifest: what a connector declares about itself.
//!
//! A manifest is static data compiled into the connector's crate. The
//! supervisor's registry collects them, and group validation checks a
//! group's `ConnectorDefinitionVersion` against them (parameters, topics,
//! resources, isolation modes) before anything starts. This module holds
//! the types only; it makes no decisions.

/// Which kind of group resource a parameter refers to by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `LocalDeviceResourceData`, e.g. a serial port.
    LocalDevice,
    /// `LocalVolumeResourceData`, e.g. `/proc`.
    LocalVolume,
    /// `SecretsManagerSecretResourceData`.
    Secret,
    /// `S3MachineLearningModelResourceData` or `SageMakerMachineLearningModelResourceData`.
    MachineLearningModel,
}

impl ResourceKind {
    /// The `ResourceDataContainer` key(s) this kind stands for, for messages.
    pub fn container_name(self) -> &'static str {
        match self {
            ResourceKind::LocalDevice => "LocalDeviceResourceData",
            ResourceKind::LocalVolume => "LocalVolumeResourceData",
            ResourceKind::Secret => "SecretsManagerSecretResourceData",
            ResourceKind::MachineLearningModel => {
                "S3MachineLearningModelResourceData or SageMakerMachineLearningModelResourceData"
            }
        }
    }
}

/// One entry of a connector's `Parameters` map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterSpec {
    pub name: &'static str,
    /// Must be present in the group (before defaults apply).
    pub required: bool,
    /// A regular expression the whole value must match, as the Greengrass
    /// manifest gives it (anchor it with `^…$` where the manifest does).
    pub pattern: Option<&'static str>,
    /// Value used when the parameter is absent.
    pub default: Option<&'static str>,
    /// The parameter names a resource id of this kind (`…-ResourceId`,
    /// `…SecretArn-ResourceId`).
    pub resource: Option<ResourceKind>,
    /// The value is a JSON array of Secrets Manager secret ARNs
    /// (`AWSSecretsArnList`): each must be a secret resource of the group,
    /// and the connector is granted every one of them.
    pub secret_arn_list: bool,
    /// First connector version that knows this parameter.
    pub since_version: u32,
    pub description: &'static str,
}

impl ParameterSpec {
    /// A parameter with no constraints; refine it with the `const fn` builders.
    pub const fn new(name: &'static str, description: &'static str) -> Self {
        ParameterSpec {
            name,
            required: false,
            pattern: None,
            default: None,
            resource: None,
            secret_arn_list: false,
            since_version: 1,
            description,
        }
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub const fn pattern(mut self, pattern: &'static str) -> Self {
        self.pattern = Some(pattern);
        self
    }
    pub const fn default_value(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }
    pub const fn resource(mut self, kind: ResourceKind) -> Self {
        self.resource = Some(kind);
        self
    }
    pub const fn secret_arn_list(mut self) -> Self {
        self.secret_arn_list = true;
        self
    }
    pub const fn since(mut self, version: u32) -> Self {
        self.since_version = version;
        self
    }
}

/// Isolation modes a connector can run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsolationSupport {
    pub container: bool,
    pub no_container: bool,
}

/// Everything Evergreen needs to know about a connector before running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectorManifest {
    /// The name in the connector ARN
    /// (`arn:aws:greengrass:<region>::/connectors/<name>/versions/<n>`).
    pub name: &'static str,
    /// Versions this build implements.
    pub versions: &'static [u32],
    pub description: &'static str,
    pub parameters: &'static [ParameterSpec],
    /// Topic filters the connector accepts messages on. A subscription
    /// targeting the connector must be able to match one of them.
    pub inputs: &'static [&'static str],
    /// Topic filters the connector publishes on. A subscription whose source
    /// is the connector must be able to match one of them.
    pub outputs: &'static [&'static str],
    pub isolation: IsolationSupport,
    /// Long-lived (pinned) as Greengrass runs most connectors.
    pub pinned: bool,
    /// The connector calls AWS services and may ask the supervisor for
    /// credentials (Greengrass's token exchange service). Others are refused.
    pub aws: bool,
}

impl ConnectorManifest {
    /// The parameter spec named `name`, if the manifest has one.
    pub fn parameter(&self, name: &str) -> Option<&ParameterSpec> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// The versioned ARN for this connector in `region`.
    pub fn arn(&self, region: &str, version: u32) -> String {
        format!(
            "arn:aws:greengrass:{region}::/connectors/{}/versions/{version}",
            self.name
        )
    }
}

/// Splits a connector ARN into its name and version.
///
/// Accepts `arn:aws:greengrass:<region>::/connectors/<Name>/versions/<N>`
/// (the region may be empty, as AWS's own examples sometimes have it).
pub fn parse_connector_arn(arn: &str) -> Option<(&str, u32)> {
    let rest = arn.strip_prefix("arn:aws:greengrass:")?;
    let (_region, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix(":/connectors/")?;
    let (name, version) = rest.split_once("/versions/")?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some((name, version.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_arns() {
        assert_eq!(
            parse_connector_arn(
                "arn:aws:greengrass:us-west-2::/connectors/TwilioNotifications/versions/4"
            ),
            Some(("TwilioNotifications", 4))
        );
        assert_eq!(
            parse_connector_arn("arn:aws:greengrass:::/connectors/SNS/versions/1"),
            Some(("SNS", 1))
        );
        assert_eq!(
            parse_connector_arn("arn:aws:greengrass:r::/connectors/SNS/versions/x"),
            None
        );
        assert_eq!(parse_connector_arn("arn:aws:lambda:r:1:function:f:1"), None);
        assert_eq!(
            parse_connector_arn("arn:aws:greengrass:r::/connectors//versions/1"),
            None
        );
    }
}
