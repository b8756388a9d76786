//! The messages exchanged over a component's stdio, in both directions.
//!
//! This module owns the *vocabulary* of the protocol and nothing else: how the
//! messages are framed lives in [`crate::codec`], and who may send what when is
//! enforced by the supervisor and by [`crate::sdk`]. Byte payloads are
//! (de)serialized as byte strings (`serde_bytes`): bincode writes the same
//! bytes either way, but as one copy instead of one call per byte. Every variant is part of
//! the wire format: add new variants at the end of an enum and bump
//! [`PROTOCOL_VERSION`] when an existing one changes shape.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of the stdio protocol. Both sides send it first ([`ToChild::Hello`],
/// [`FromChild::Hello`]) and refuse to go on when they differ, so a connector
/// built against another protocol fails loudly instead of misreading frames.
pub const PROTOCOL_VERSION: u32 = 1;

/// Severity of a log line, in the order Greengrass's Logger definition uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    /// The upper-case name used in log lines and in the Logger definition.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
        }
    }

    /// Parses the Logger definition's `Level` (`DEBUG|INFO|WARN|ERROR|FATAL`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "DEBUG" => Some(LogLevel::Debug),
            "INFO" => Some(LogLevel::Info),
            "WARN" => Some(LogLevel::Warn),
            "ERROR" => Some(LogLevel::Error),
            "FATAL" => Some(LogLevel::Fatal),
            _ => None,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of component a child is; connectors and functions differ in how
/// their parameters are given and where their logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComponentKind {
    Connector,
    Function,
}

/// Everything a child needs to know about itself, sent once after the
/// handshake and before `Ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentConfig {
    /// The component's ARN: a connector's versioned ARN or a function's
    /// qualified ARN. It is the `Source` of everything the child publishes.
    pub arn: String,
    pub kind: ComponentKind,
    /// The group's id for this component (`Id` in its definition).
    pub id: String,
    /// Connector `Parameters` (always strings, as in Greengrass), or for a
    /// function its `Environment.Variables`.
    pub parameters: BTreeMap<String, String>,
    /// Resources granted to the component: resource id to the path where the
    /// child finds it (a device node, a volume's destination, a model dir).
    pub resources: BTreeMap<String, ResourceGrant>,
    /// Names of the secrets the component may request.
    pub secrets: Vec<String>,
    /// The lowest level the supervisor will keep; children may skip sending
    /// anything below it.
    pub log_level: LogLevel,
    /// The core's thing name, which connectors such as Device Defender put in
    /// their topics.
    pub core_thing_name: String,
    /// The region, for connectors that call AWS services.
    pub region: String,
    /// Endpoint overrides by service key (`evergreen.aws.endpoints` and
    /// `evergreen.aws.endpointUrl` in the core configuration): AWS signing
    /// names such as `sns`, `firehose`, `monitoring`, `iotanalytics`,
    /// `secretsmanager`, plus `twilio` for the Twilio API. A service absent
    /// here uses its public endpoint for [`ComponentConfig::region`].
    pub endpoints: BTreeMap<String, String>,
}

impl ComponentConfig {
    /// A connector's configuration with `parameters` and neutral values for
    /// the rest (id `connector`, no resources, secrets or endpoint overrides,
    /// level Info, core `core` in us-east-1): what a connector's unit tests
    /// and tools need to exercise its settings. Change fields with struct
    /// update syntax.
    pub fn connector(arn: impl Into<String>, parameters: &[(&str, &str)]) -> Self {
        ComponentConfig {
            arn: arn.into(),
            kind: ComponentKind::Connector,
            id: "connector".into(),
            parameters: parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            resources: BTreeMap::new(),
            secrets: Vec::new(),
            log_level: LogLevel::Info,
            core_thing_name: "core".into(),
            region: "us-east-1".into(),
            endpoints: BTreeMap::new(),
        }
    }

    /// Where a connector finds the resource its `resource_param` names (for
    /// example `ModbusSerialPort-ResourceId`): the granted resource's path
    /// when the supervisor passed one, else the value of `path_param` (for
    /// example `ModbusSerialPort`). Returns the path and, for logs, where it
    /// came from: `(resource <id>)` or `(<path_param>)`. `None` when neither
    /// is there.
    pub fn resource_or_parameter(
        &self,
        resource_param: &str,
        path_param: &str,
    ) -> Option<(std::path::PathBuf, String)> {
        let grant = self
            .parameters
            .get(resource_param)
            .and_then(|id| Some((id, self.resources.get(id)?)));
        match (grant, self.parameters.get(path_param)) {
            (Some((id, grant)), _) => Some((grant.path.clone().into(), format!("(resource {id})"))),
            (None, Some(path)) => Some((path.into(), format!("({path_param})"))),
            (None, None) => None,
        }
    }
}

/// One resource the component may use, as the child sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceGrant {
    /// Where the resource is, inside the child's view of the file system.
    pub path: String,
    /// Whether the grant allows writing.
    pub read_write: bool,
}

/// A message routed to this child because a subscription matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The topic it was published on (never a filter).
    pub topic: String,
    /// The raw payload; JSON for most connectors, but never assumed.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Who published it: a component ARN, a device thing ARN, `cloud` or
    /// `GGShadowService`.
    pub source: String,
}

/// The result of a secret request, in the `GetSecretValue` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretValue {
    pub arn: String,
    pub name: String,
    pub version_id: String,
    pub version_stages: Vec<String>,
    pub secret_string: Option<String>,
    #[serde(with = "serde_bytes")]
    pub secret_binary: Option<Vec<u8>>,
    /// Milliseconds since the Unix epoch.
    pub created_date_ms: u64,
}

/// Temporary AWS credentials the supervisor hands to a connector that
/// declares [`crate::manifest::ConnectorManifest::aws`]. `Debug` never
/// shows the secret key or the session token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Milliseconds since the Unix epoch; `None` for long-lived keys.
    pub expiration_ms: Option<u64>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiration_ms", &self.expiration_ms)
            .finish()
    }
}

/// The local shadow operations a component may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShadowOp {
    Get,
    Update,
    Delete,
}

impl ShadowOp {
    /// The operation's word in the shadow topics
    /// (`$aws/things/<thing>/shadow/<get|update|delete>`).
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowOp::Get => "get",
            ShadowOp::Update => "update",
            ShadowOp::Delete => "delete",
        }
    }
}

impl fmt::Display for ShadowOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Frames the supervisor sends on the child's stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToChild {
    /// First frame: the supervisor's protocol version.
    Hello { protocol: u32 },
    /// Second frame: the child's configuration.
    Configure(ComponentConfig),
    /// A routed message.
    Deliver(Delivery),
    /// Stop: the child should finish what it is doing and exit before
    /// `deadline_ms` milliseconds have passed, after which it is sent SIGTERM.
    Shutdown { deadline_ms: u64 },
    /// Answer to [`FromChild::GetSecret`]; `Err` carries a message that names
    /// the secret but never a value.
    Secret {
        request_id: u64,
        result: Result<SecretValue, String>,
    },
    /// Answer to [`FromChild::Shadow`]: the JSON document or an error JSON
    /// (`{"code":…,"message":…}` as Greengrass returns it).
    ShadowResult {
        request_id: u64,
        accepted: bool,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A publish of the child's was refused (a wildcard in its topic, a
    /// payload over the frame limit); the reason is for the child's log.
    Refused { topic: String, reason: String },
    /// Answer to [`FromChild::GetCredentials`]; `Err` says why there are none.
    Credentials {
        request_id: u64,
        result: Result<AwsCredentials, String>,
    },
    /// A function invoked a service this child serves ([`FromChild::Serve`]);
    /// answer with [`FromChild::InvokeResult`] and the same id.
    Invoke(Invocation),
    /// Answer to [`FromChild::Invoke`]: the invoked function's outcome, or
    /// `Err` when there was none (no such function, its queue was full, no
    /// result within the time).
    InvokeResult {
        request_id: u64,
        result: Result<InvokeOutcome, String>,
    },
}

/// One invoke of a service a child serves, as V1's Lambda IPC carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// Echoed in the answer.
    pub invocation_id: String,
    /// The function name the caller addressed (one the child serves).
    pub function_name: String,
    /// The caller's function ARN.
    pub caller: String,
    /// The decoded `X-Amz-Client-Context` (JSON text), empty when none came.
    #[serde(with = "serde_bytes")]
    pub client_context: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// What an invoke produced, as a Lambda result carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvokeOutcome {
    /// Empty on success; `Handled` when the function reported an error
    /// (the payload says which); `Unhandled` when it failed.
    pub function_error: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl InvokeOutcome {
    /// A successful result.
    pub fn ok(payload: impl Into<Vec<u8>>) -> Self {
        InvokeOutcome {
            function_error: String::new(),
            payload: payload.into(),
        }
    }

    /// An error the service reports to its caller (`Handled`).
    pub fn handled(message: impl Into<Vec<u8>>) -> Self {
        InvokeOutcome {
            function_error: "Handled".into(),
            payload: message.into(),
        }
    }
}

/// The borrowed twin of [`ToChild`]'s first variants, encoded byte for byte
/// like them (bincode writes variant indices and fields, never names), so
/// the supervisor can write a routed message without copying it first.
/// Variant order must match [`ToChild`]; a test checks the bytes.
#[derive(Debug, Serialize)]
pub(crate) enum ToChildRef<'a> {
    #[allow(dead_code)] // present only to keep the variant indices aligned
    Hello {
        protocol: u32,
    },
    #[allow(dead_code)]
    Configure(&'a ComponentConfig),
    Deliver(DeliveryRef<'a>),
}

/// Borrowed [`Delivery`].
#[derive(Debug, Serialize)]
pub(crate) struct DeliveryRef<'a> {
    pub topic: &'a str,
    #[serde(with = "serde_bytes")]
    pub payload: &'a [u8],
    pub source: &'a str,
}

/// Frames a child sends on its stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromChild {
    /// First frame: the child's protocol version.
    Hello { protocol: u32 },
    /// The child has its configuration and is ready for deliveries.
    Ready,
    /// Publish on a topic; the router delivers it along the subscriptions
    /// whose source is this component.
    Publish {
        topic: String,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A structured log line for the component's log file.
    Log { level: LogLevel, message: String },
    /// Ask for a granted secret (`SecretId` is a name or an ARN).
    GetSecret {
        request_id: u64,
        secret_id: String,
        version_stage: Option<String>,
    },
    /// Ask the local shadow service for a thing's shadow.
    Shadow {
        request_id: u64,
        thing_name: String,
        op: ShadowOp,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// The child finished handling the oldest delivery it has not yet
    /// acknowledged. The supervisor measures a function's `Timeout` from the
    /// moment a delivery becomes the one being handled to this frame. (The
    /// SDK sends it when the component asks for its next event.)
    Done,
    /// Ask for AWS credentials (only connectors whose manifest sets `aws`
    /// get them; others are refused).
    GetCredentials { request_id: u64 },
    /// Serve invokes of `arn:aws:lambda:<region>:aws:function:<function_name>`
    /// (a connector's local service, as V1's ML connectors had); each comes
    /// as [`ToChild::Invoke`]. A caller waits up to `timeout_ms` for the answer.
    Serve {
        function_name: String,
        timeout_ms: u64,
    },
    /// The answer to [`ToChild::Invoke`] with this id.
    InvokeResult {
        invocation_id: String,
        outcome: InvokeOutcome,
    },
    /// Invoke a function of the group (or another child's service) and wait
    /// for its result, answered by [`ToChild::InvokeResult`].
    Invoke {
        request_id: u64,
        function_arn: String,
        /// JSON text sent as the client context (base64 on the wire), or empty.
        #[serde(with = "serde_bytes")]
        client_context: Vec<u8>,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        timeout_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_granted_resource_wins_over_the_path_parameter() {
        let mut config = ComponentConfig {
            arn: "arn".into(),
            kind: ComponentKind::Connector,
            id: "c".into(),
            parameters: BTreeMap::from([
                ("Port-ResourceId".to_string(), "tty".to_string()),
                ("Port".to_string(), "/dev/ttyS0".to_string()),
            ]),
            resources: BTreeMap::from([(
                "tty".to_string(),
                ResourceGrant {
                    path: "/dev/ttyUSB0".into(),
                    read_write: true,
                },
            )]),
            secrets: Vec::new(),
            log_level: LogLevel::Info,
            core_thing_name: "core".into(),
            region: "us-east-1".into(),
            endpoints: BTreeMap::new(),
        };
        assert_eq!(
            config.resource_or_parameter("Port-ResourceId", "Port"),
            Some(("/dev/ttyUSB0".into(), "(resource tty)".into()))
        );
        config.resources.clear();
        assert_eq!(
            config.resource_or_parameter("Port-ResourceId", "Port"),
            Some(("/dev/ttyS0".into(), "(Port)".into()))
        );
        config.parameters.clear();
        assert_eq!(
            config.resource_or_parameter("Port-ResourceId", "Port"),
            None
        );
    }
}
