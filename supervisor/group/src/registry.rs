//! The connectors this build of Evergreen contains, looked up by the name in
//! a connector ARN.
//!
//! The registry only holds manifests (static data compiled into each
//! connector crate); it never runs anything. It also knows the names of all
//! AWS-provided Greengrass V1 connectors, so that a group using one this
//! build lacks gets "not in this build" rather than "unknown connector" —
//! the first means "install a build that has it", the second "check the
//! spelling".

use std::collections::BTreeMap;

use evergreen_ipc::manifest::ConnectorManifest;
use regex::Regex;

/// The ARN names of every AWS-provided Greengrass V1 connector (the summary
/// table of the connector reference), whether or not this build has them.
pub(crate) const GREENGRASS_CONNECTORS: &[&str] = &[
    "ModbusRTUProtocolAdapter",
    "SerialStream",
    "TwilioNotifications",
    "DeviceDefender",
    "KinesisFirehose",
    "CloudWatchMetrics",
    "SNS",
    "IoTAnalytics",
    "ModbusTCPConnector",
    "RaspberryPiGPIO",
    "SplunkIntegration",
    "ServiceNowMetricBaseIntegration",
    "DockerApplicationDeployment",
    "IoTSiteWise",
    "IoTEIPProtocolAdaptor",
    "ImageClassificationARMv7",
    "ImageClassificationAarch64JTX2",
    "ImageClassificationx86-64",
    "ObjectDetectionARMv7",
    "ObjectDetectionAarch64JTX2",
    "ObjectDetectionx86-64",
    "MLFeedback",
];

/// Whether `name` is one of the AWS-provided Greengrass V1 connectors.
pub(crate) fn is_greengrass_connector(name: &str) -> bool {
    GREENGRASS_CONNECTORS.contains(&name)
}

/// The built-in connectors, by ARN name.
#[derive(Debug, Clone, Default)]
pub struct ConnectorRegistry {
    manifests: BTreeMap<&'static str, &'static ConnectorManifest>,
}

impl ConnectorRegistry {
    /// Builds the registry. Two manifests with the same name would be a
    /// build mistake; the first one is kept. (Each connector crate should
    /// test its own manifest with [`manifest_problems`].)
    pub fn new(manifests: Vec<&'static ConnectorManifest>) -> Self {
        let mut map = BTreeMap::new();
        for m in manifests {
            map.entry(m.name).or_insert(m);
        }
        ConnectorRegistry { manifests: map }
    }

    /// The manifest for the connector whose ARN name is `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&'static ConnectorManifest> {
        self.manifests.get(name).copied()
    }

    /// Every manifest, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &'static ConnectorManifest> + '_ {
        self.manifests.values().copied()
    }

    /// The names of the built-in connectors, ordered, for messages.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.manifests.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty()
    }

    pub fn len(&self) -> usize {
        self.manifests.len()
    }
}

/// Compiles a manifest parameter pattern so that it must match the whole
/// value. Greengrass patterns are written both anchored (`^a$|^b$`) and not
/// (`[0-9]+`); the manifest is the contract, and "the value matches" means
/// all of it, so the pattern is wrapped in `^(?:…)$`.
pub(crate) fn anchored_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// Mistakes in a manifest that would make every group using the connector
/// fail (or pass) for the wrong reason: patterns that do not compile,
/// defaults that do not match their own pattern, topics that are not valid
/// filters, no versions, a parameter introduced in a version the connector
/// does not have. Meant for each connector crate's unit tests.
pub fn manifest_problems(m: &ConnectorManifest) -> Vec<String> {
    let mut problems = Vec::new();
    if m.versions.is_empty() {
        problems.push(format!("{}: no versions", m.name));
    }
    let newest = m.versions.iter().copied().max().unwrap_or(0);
    for (i, p) in m.parameters.iter().enumerate() {
        if m.parameters[..i].iter().any(|q| q.name == p.name) {
            problems.push(format!("{}: parameter {} is listed twice", m.name, p.name));
        }
        if p.since_version > newest {
            problems.push(format!(
                "{}: parameter {} is introduced in version {} but the newest version is {newest}",
                m.name, p.name, p.since_version
            ));
        }
        if let Some(pattern) = p.pattern {
            match anchored_pattern(pattern) {
                Err(e) => problems.push(format!(
                    "{}: pattern of {} does not compile: {e}",
                    m.name, p.name
                )),
                Ok(re) => {
                    if let Some(default) = p.default {
                        if !re.is_match(default) {
                            problems.push(format!(
                                "{}: default `{default}` of {} does not match its pattern",
                                m.name, p.name
                            ));
                        }
                    }
                }
            }
        }
    }
    for filter in m.inputs.iter().chain(m.outputs.iter()) {
        if let Err(e) = evergreen_ipc::topic::validate_filter(filter) {
            problems.push(format!("{}: topic `{filter}`: {e}", m.name));
        }
    }
    if !m.isolation.container && !m.isolation.no_container {
        problems.push(format!("{}: supports no isolation mode", m.name));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_ipc::manifest::{IsolationSupport, ParameterSpec};

    static A: ConnectorManifest = ConnectorManifest {
        name: "Alpha",
        versions: &[1, 2],
        description: "test",
        parameters: &[
            ParameterSpec::new("Good", "")
                .pattern("^[0-9]+$")
                .default_value("5"),
            ParameterSpec::new("BadDefault", "")
                .pattern("[a-z]+")
                .default_value("A1"),
            ParameterSpec::new("BadPattern", "").pattern("(unclosed"),
            ParameterSpec::new("Future", "").since(3),
        ],
        inputs: &["a/#/b"],
        outputs: &["a/+"],
        isolation: IsolationSupport {
            container: true,
            no_container: false,
        },
        pinned: true,
        aws: false,
    };

    static A_AGAIN: ConnectorManifest = ConnectorManifest {
        versions: &[9],
        ..A
    };

    #[test]
    fn lookup_and_order() {
        let r = ConnectorRegistry::new(vec![&A, &A_AGAIN]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get("Alpha").map(|m| m.versions), Some(&[1u32, 2][..]));
        assert!(r.get("alpha").is_none());
        assert_eq!(r.names(), ["Alpha"]);
        assert_eq!(r.iter().count(), 1);
        assert!(ConnectorRegistry::default().is_empty());
    }

    #[test]
    fn greengrass_names() {
        assert!(is_greengrass_connector("SerialStream"));
        assert!(is_greengrass_connector("ImageClassificationx86-64"));
        assert!(!is_greengrass_connector("serialstream"));
        assert_eq!(GREENGRASS_CONNECTORS.len(), 22);
    }

    #[test]
    fn anchoring_means_whole_value() {
        let re = anchored_pattern("[0-9]|[1-9]\\d|900").expect("compiles");
        assert!(re.is_match("7"));
        assert!(re.is_match("900"));
        assert!(!re.is_match("9000"));
        assert!(!re.is_match("x7"));
        let re = anchored_pattern("^NoContainer$|^GreengrassContainer$").expect("compiles");
        assert!(re.is_match("NoContainer"));
        assert!(!re.is_match("NoContainerX"));
    }

    #[test]
    fn manifest_mistakes_are_found() {
        let problems = manifest_problems(&A);
        let text = problems.join("\n");
        assert!(text.contains("default `A1` of BadDefault"), "{text}");
        assert!(
            text.contains("pattern of BadPattern does not compile"),
            "{text}"
        );
        assert!(
            text.contains("parameter Future is introduced in version 3"),
            "{text}"
        );
        assert!(text.contains("topic `a/#/b`"), "{text}");
        assert_eq!(problems.len(), 4, "{text}");
    }
}
