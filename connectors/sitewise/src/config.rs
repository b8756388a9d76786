//! The `CapabilityConfiguration` parameter: the SiteWise OPC UA source
//! configuration (`iotsitewise:opcuacollector:1`/`:2`), parsed and validated
//! into [`Capability`], every problem reported with its JSON path.
//!
//! Never touches the network and never panics on input. What the SiteWise
//! guide defines is accepted; what Evergreen does not implement is refused
//! with an "unsupported" error naming the field, rather than silently
//! ignored, so that a configuration never looks like it does more than it
//! does:
//!
//! - `endpoint`: `endpointUri` (`opc.tcp://…`), `securityPolicy`,
//!   `messageSecurityMode` (both `NONE` or neither, as the guide says),
//!   `identityProvider` (`Anonymous` | `Username` + `usernameSecretArn`),
//!   `certificateTrust` (`TrustAny` | `X509` + `certificateBody`, optional
//!   `certificateChain`), `nodeFilterRules` (`INCLUDE` + `OpcUaRootPath`).
//! - `measurementDataStreamPrefix` (default empty), `destination`
//!   (`StreamManager`, `streamName` default [`DEFAULT_STREAM`],
//!   `streamBufferSize` MiB).
//! - `propertyGroups`: `name`, `nodeFilterRuleDefinitions`, `scanMode`
//!   (`EXCEPTION` = subscription, `POLL` = periodic Read, `rate` ms),
//!   `deadband` (`ABSOLUTE` | `PERCENT` with `eguMin`/`eguMax`,
//!   `timeoutMilliseconds`).
//! - Unsupported (opcuacollector:2 additions): `typeConversions`,
//!   `dataQuality`, `subscription`, `scanMode.timestampToReturn`, and a
//!   `PERCENT` deadband without `eguMin`/`eguMax` (the server's EURange is
//!   not read).

use std::fmt;

use serde_json::{Map, Value};

use crate::filter::PathFilter;

/// The namespaces of the CLI wrapper form.
pub const NAMESPACES: &[&str] = &[
    "iotsitewise:opcuacollector:1",
    "iotsitewise:opcuacollector:2",
];
/// The stream the Greengrass V1 SiteWise gateway wrote to (the SiteWise
/// guide's troubleshooting page clears `…/stream_manager/SiteWise_Stream`).
pub const DEFAULT_STREAM: &str = "SiteWise_Stream";
/// Sampling / publishing interval when a node is in no property group.
pub const DEFAULT_RATE_MS: u64 = 1000;
/// Fastest rate accepted: 0 would spin a poll loop.
pub const MIN_RATE_MS: u64 = 10;
/// Slowest rate accepted (one day).
pub const MAX_RATE_MS: u64 = 86_400_000;

/// One problem in the configuration at a JSON path like
/// `sources[0].endpoint.securityPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// The OPC UA security policies SiteWise names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityPolicy {
    None,
    Basic128Rsa15,
    Basic256,
    Basic256Sha256,
    Aes128Sha256RsaOaep,
    Aes256Sha256RsaPss,
}

impl SecurityPolicy {
    fn parse(text: &str) -> Option<SecurityPolicy> {
        Some(match text {
            "NONE" => SecurityPolicy::None,
            "BASIC128_RSA15" => SecurityPolicy::Basic128Rsa15,
            "BASIC256" => SecurityPolicy::Basic256,
            "BASIC256_SHA256" => SecurityPolicy::Basic256Sha256,
            "AES128_SHA256_RSAOAEP" => SecurityPolicy::Aes128Sha256RsaOaep,
            "AES256_SHA256_RSAPSS" => SecurityPolicy::Aes256Sha256RsaPss,
            _ => return None,
        })
    }

    /// The policy's URI in the OPC UA specification.
    pub fn uri(self) -> &'static str {
        match self {
            SecurityPolicy::None => "http://opcfoundation.org/UA/SecurityPolicy#None",
            SecurityPolicy::Basic128Rsa15 => {
                "http://opcfoundation.org/UA/SecurityPolicy#Basic128Rsa15"
            }
            SecurityPolicy::Basic256 => "http://opcfoundation.org/UA/SecurityPolicy#Basic256",
            SecurityPolicy::Basic256Sha256 => {
                "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
            }
            SecurityPolicy::Aes128Sha256RsaOaep => {
                "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep"
            }
            SecurityPolicy::Aes256Sha256RsaPss => {
                "http://opcfoundation.org/UA/SecurityPolicy#Aes256_Sha256_RsaPss"
            }
        }
    }
}

/// `messageSecurityMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    None,
    Sign,
    SignAndEncrypt,
}

/// `identityProvider`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    /// A key-value secret with `username` and `password`.
    Username {
        secret_arn: String,
    },
}

/// `certificateTrust`: how the server's certificate is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    Any,
    /// Exactly this certificate (PEM), and the chain if given.
    X509 {
        body: String,
        chain: Option<String>,
    },
}

/// `endpoint`.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub uri: String,
    pub policy: SecurityPolicy,
    pub mode: SecurityMode,
    pub identity: Identity,
    pub trust: Trust,
    /// The `INCLUDE` root paths; empty: everything but `/Server/…`.
    pub filters: Vec<PathFilter>,
}

/// `scanMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A subscription; `rate` is the sampling and publishing interval.
    Exception { rate_ms: u64 },
    /// A Read of every node each `rate` ms.
    Poll { rate_ms: u64 },
}

/// `deadband`, applied by the connector to numeric values: a value is sent
/// when it moved more than `threshold` from the last one sent, when its
/// status changed, or when `timeout` passed since the last one sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deadband {
    /// Absolute threshold (a `PERCENT` one is turned into this with
    /// `eguMin`/`eguMax`).
    pub threshold: f64,
    pub timeout_ms: Option<u64>,
}

/// A property group: how the nodes its filters select are scanned.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub filters: Vec<PathFilter>,
    pub scan: Scan,
    pub deadband: Option<Deadband>,
}

/// One OPC UA source.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub endpoint: Endpoint,
    /// Prepended to every node path to make its property alias.
    pub prefix: String,
    pub stream_name: String,
    pub stream_buffer_mib: Option<u64>,
    pub groups: Vec<Group>,
}

impl Source {
    /// The group a node path belongs to: the first whose filters match.
    pub fn group_of(&self, path: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.filters.iter().any(|f| f.matches(path)))
    }

    /// Whether the source's node filter rules include `path`.
    pub fn includes(&self, path: &str) -> bool {
        if self.endpoint.filters.is_empty() {
            // The guide: by default every path except those under /Server/.
            return !(path == "/Server" || path.starts_with("/Server/"));
        }
        self.endpoint.filters.iter().any(|f| f.matches(path))
    }

    /// Whether nodes below `path` may be included (prunes the browse).
    pub fn may_include_below(&self, path: &str) -> bool {
        if self.endpoint.filters.is_empty() {
            return !(path == "/Server" || path.starts_with("/Server/"));
        }
        self.endpoint
            .filters
            .iter()
            .any(|f| f.may_match_below(path))
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Capability {
    pub sources: Vec<Source>,
}

impl Capability {
    /// Parses the document itself (`{"sources":[…]}`) or the CLI wrapper
    /// `{"version","namespace","configuration":"<json>"}`.
    pub fn parse(text: &str) -> Result<Capability, Vec<ConfigError>> {
        let root: Value = serde_json::from_str(text).map_err(|e| {
            vec![err(
                "CapabilityConfiguration",
                format!("not valid JSON: {e}"),
            )]
        })?;
        let Some(obj) = root.as_object() else {
            return Err(vec![err(
                "CapabilityConfiguration",
                "must be a JSON object with `sources` (or the wrapper with `configuration`)",
            )]);
        };
        let mut errors = Vec::new();
        let cap = if obj.contains_key("configuration") {
            if let Some(ns) = obj.get("namespace") {
                if !ns.as_str().is_some_and(|n| NAMESPACES.contains(&n)) {
                    errors.push(err(
                        "namespace",
                        format!("must be one of {NAMESPACES:?}, got {ns}"),
                    ));
                }
            }
            let inner: Value = match obj.get("configuration").unwrap_or(&Value::Null) {
                Value::String(s) => match serde_json::from_str(s) {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(err("configuration", format!("not valid JSON: {e}")));
                        return Err(errors);
                    }
                },
                v @ Value::Object(_) => v.clone(),
                _ => {
                    errors.push(err("configuration", "must be a JSON string (or object)"));
                    return Err(errors);
                }
            };
            match inner.as_object() {
                Some(inner) => parse_capability(inner, "configuration.", &mut errors),
                None => {
                    errors.push(err("configuration", "must hold a JSON object"));
                    return Err(errors);
                }
            }
        } else {
            parse_capability(obj, "", &mut errors)
        };
        if errors.is_empty() {
            Ok(cap)
        } else {
            Err(errors)
        }
    }
}

/// An object being read, with the path it sits at.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    fn at(&self, key: &str) -> String {
        format!("{}{key}", self.path)
    }

    /// Refuses keys outside `known`; `unsupported` ones get their own text.
    fn only(&self, known: &[&str], unsupported: &[&str], errors: &mut Vec<ConfigError>) {
        for key in self.obj.keys() {
            if unsupported.contains(&key.as_str()) {
                errors.push(err(
                    self.at(key),
                    "not supported by Evergreen's SiteWise connector (remove it)",
                ));
            } else if !known.contains(&key.as_str()) {
                errors.push(err(self.at(key), "unknown field"));
            }
        }
    }

    fn string(&self, key: &str, required: bool, errors: &mut Vec<ConfigError>) -> Option<String> {
        match self.obj.get(key) {
            None | Some(Value::Null) => {
                if required {
                    errors.push(err(self.at(key), "is required"));
                }
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(err(self.at(key), "must be a string"));
                None
            }
        }
    }

    fn number(&self, key: &str, errors: &mut Vec<ConfigError>) -> Option<f64> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()),
            Some(Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Some(f),
                _ => {
                    errors.push(err(self.at(key), "must be a number"));
                    None
                }
            },
            Some(_) => {
                errors.push(err(self.at(key), "must be a number"));
                None
            }
        }
    }

    fn integer(&self, key: &str, range: (u64, u64), errors: &mut Vec<ConfigError>) -> Option<u64> {
        let v = self.number(key, errors)?;
        if v.fract() != 0.0 || v < range.0 as f64 || v > range.1 as f64 {
            errors.push(err(
                self.at(key),
                format!("must be a whole number from {} to {}", range.0, range.1),
            ));
            return None;
        }
        Some(v as u64)
    }

    fn object(
        &self,
        key: &str,
        required: bool,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Fields<'a>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => {
                if required {
                    errors.push(err(self.at(key), "is required"));
                }
                None
            }
            Some(Value::Object(obj)) => Some(Fields {
                obj,
                path: format!("{}.", self.at(key)),
            }),
            Some(_) => {
                errors.push(err(self.at(key), "must be an object"));
                None
            }
        }
    }

    fn objects(&self, key: &str, errors: &mut Vec<ConfigError>) -> Vec<Fields<'a>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::Object(obj) => Some(Fields {
                        obj,
                        path: format!("{}[{i}].", self.at(key)),
                    }),
                    _ => {
                        errors.push(err(format!("{}[{i}]", self.at(key)), "must be an object"));
                        None
                    }
                })
                .collect(),
            Some(_) => {
                errors.push(err(self.at(key), "must be an array"));
                Vec::new()
            }
        }
    }
}

fn parse_capability(
    obj: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Capability {
    let root = Fields {
        obj,
        path: path.to_string(),
    };
    root.only(&["sources"], &[], errors);
    if !obj.contains_key("sources") {
        errors.push(err(root.at("sources"), "is required"));
    }
    let mut sources: Vec<Source> = Vec::new();
    for s in root.objects("sources", errors) {
        if let Some(source) = parse_source(&s, errors) {
            if sources.iter().any(|o| o.name == source.name) {
                errors.push(err(
                    s.at("name"),
                    format!("duplicate source name {:?}", source.name),
                ));
            }
            sources.push(source);
        }
    }
    Capability { sources }
}

fn parse_source(s: &Fields<'_>, errors: &mut Vec<ConfigError>) -> Option<Source> {
    let before = errors.len();
    s.only(
        &[
            "name",
            "endpoint",
            "measurementDataStreamPrefix",
            "destination",
            "propertyGroups",
            "type",
        ],
        &["typeConversions"],
        errors,
    );
    if let Some(t) = s.string("type", false, errors) {
        if t != "OPCUASource" && t != "OpcUaSource" {
            errors.push(err(s.at("type"), format!("must be OPCUASource, got {t:?}")));
        }
    }
    let name = s.string("name", true, errors);
    if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        errors.push(err(s.at("name"), "must not be empty"));
    }
    let endpoint = s
        .object("endpoint", true, errors)
        .and_then(|e| parse_endpoint(&e, errors));
    let prefix = s
        .string("measurementDataStreamPrefix", false, errors)
        .unwrap_or_default();
    let (mut stream_name, mut stream_buffer_mib) = (DEFAULT_STREAM.to_string(), None);
    if let Some(d) = s.object("destination", false, errors) {
        d.only(&["type", "streamName", "streamBufferSize"], &[], errors);
        if let Some(t) = d.string("type", false, errors) {
            if t != "StreamManager" {
                errors.push(err(
                    d.at("type"),
                    format!("must be StreamManager, got {t:?}"),
                ));
            }
        }
        if let Some(n) = d.string("streamName", false, errors) {
            if valid_stream_name(&n) {
                stream_name = n;
            } else {
                errors.push(err(
                    d.at("streamName"),
                    "must be 1-255 letters, digits, spaces or , . - _",
                ));
            }
        }
        stream_buffer_mib = d.integer("streamBufferSize", (1, 1 << 20), errors);
    }
    let mut groups: Vec<Group> = Vec::new();
    for g in s.objects("propertyGroups", errors) {
        if let Some(group) = parse_group(&g, errors) {
            if groups.iter().any(|o| o.name == group.name) {
                errors.push(err(
                    g.at("name"),
                    format!("duplicate group name {:?}", group.name),
                ));
            }
            groups.push(group);
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Source {
        name: name?,
        endpoint: endpoint?,
        prefix,
        stream_name,
        stream_buffer_mib,
        groups,
    })
}

fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ,.-_".contains(c))
}

fn parse_endpoint(e: &Fields<'_>, errors: &mut Vec<ConfigError>) -> Option<Endpoint> {
    let before = errors.len();
    e.only(
        &[
            "certificateTrust",
            "endpointUri",
            "securityPolicy",
            "messageSecurityMode",
            "identityProvider",
            "nodeFilterRules",
        ],
        &[],
        errors,
    );
    let uri = e.string("endpointUri", true, errors);
    if let Some(u) = &uri {
        if !u.starts_with("opc.tcp://") || u.len() <= "opc.tcp://".len() {
            errors.push(err(
                e.at("endpointUri"),
                format!("must be opc.tcp://host[:port][/path], got {u:?}"),
            ));
        }
    }
    let policy = match e.string("securityPolicy", false, errors) {
        None => Some(SecurityPolicy::None),
        Some(p) => SecurityPolicy::parse(&p).or_else(|| {
            errors.push(err(
                e.at("securityPolicy"),
                format!("{p:?} is none of NONE, BASIC128_RSA15, BASIC256, BASIC256_SHA256, AES128_SHA256_RSAOAEP, AES256_SHA256_RSAPSS"),
            ));
            None
        }),
    };
    let mode = match e.string("messageSecurityMode", false, errors).as_deref() {
        None | Some("NONE") => Some(SecurityMode::None),
        Some("SIGN") => Some(SecurityMode::Sign),
        Some("SIGN_AND_ENCRYPT") => Some(SecurityMode::SignAndEncrypt),
        Some(other) => {
            errors.push(err(
                e.at("messageSecurityMode"),
                format!("{other:?} is none of NONE, SIGN, SIGN_AND_ENCRYPT"),
            ));
            None
        }
    };
    if let (Some(p), Some(m)) = (policy, mode) {
        if (p == SecurityPolicy::None) != (m == SecurityMode::None) {
            errors.push(err(
                e.at("messageSecurityMode"),
                "securityPolicy NONE goes with messageSecurityMode NONE, and only with it",
            ));
        }
    }
    let identity = match e.object("identityProvider", false, errors) {
        None => Some(Identity::Anonymous),
        Some(i) => {
            i.only(&["type", "usernameSecretArn"], &[], errors);
            match i.string("type", true, errors).as_deref() {
                Some("Anonymous") => Some(Identity::Anonymous),
                Some("Username") => i
                    .string("usernameSecretArn", true, errors)
                    .map(|secret_arn| Identity::Username { secret_arn }),
                Some(other) => {
                    errors.push(err(
                        i.at("type"),
                        format!("{other:?} is neither Anonymous nor Username"),
                    ));
                    None
                }
                None => None,
            }
        }
    };
    let trust = match e.object("certificateTrust", false, errors) {
        None => Some(Trust::Any),
        Some(t) => {
            t.only(
                &["type", "certificateBody", "certificateChain"],
                &[],
                errors,
            );
            match t.string("type", true, errors).as_deref() {
                Some("TrustAny") => Some(Trust::Any),
                Some("X509") => {
                    let chain = t.string("certificateChain", false, errors);
                    t.string("certificateBody", true, errors).and_then(|body| {
                        if body.contains("-----BEGIN CERTIFICATE-----") {
                            Some(Trust::X509 { body, chain })
                        } else {
                            errors.push(err(t.at("certificateBody"), "must be a PEM certificate"));
                            None
                        }
                    })
                }
                Some(other) => {
                    errors.push(err(
                        t.at("type"),
                        format!("{other:?} is neither TrustAny nor X509"),
                    ));
                    None
                }
                None => None,
            }
        }
    };
    let mut filters = Vec::new();
    for r in e.objects("nodeFilterRules", errors) {
        r.only(&["action", "definition"], &[], errors);
        match r.string("action", true, errors).as_deref() {
            Some("INCLUDE") | None => {}
            Some(other) => errors.push(err(
                r.at("action"),
                format!("{other:?}: only INCLUDE is defined"),
            )),
        }
        if let Some(d) = r.object("definition", true, errors) {
            if let Some(f) = parse_root_path(&d, errors) {
                filters.push(f);
            }
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Endpoint {
        uri: uri?,
        policy: policy?,
        mode: mode?,
        identity: identity?,
        trust: trust?,
        filters,
    })
}

fn parse_root_path(d: &Fields<'_>, errors: &mut Vec<ConfigError>) -> Option<PathFilter> {
    d.only(&["type", "rootPath"], &[], errors);
    match d.string("type", true, errors).as_deref() {
        Some("OpcUaRootPath") | None => {}
        Some(other) => errors.push(err(
            d.at("type"),
            format!("{other:?}: only OpcUaRootPath is defined"),
        )),
    }
    let path = d.string("rootPath", true, errors)?;
    match PathFilter::parse(&path) {
        Ok(f) => Some(f),
        Err(why) => {
            errors.push(err(d.at("rootPath"), why));
            None
        }
    }
}

fn parse_group(g: &Fields<'_>, errors: &mut Vec<ConfigError>) -> Option<Group> {
    let before = errors.len();
    g.only(
        &["name", "nodeFilterRuleDefinitions", "deadband", "scanMode"],
        &["dataQuality", "subscription"],
        errors,
    );
    let name = g.string("name", true, errors);
    let mut filters = Vec::new();
    for d in g.objects("nodeFilterRuleDefinitions", errors) {
        if let Some(f) = parse_root_path(&d, errors) {
            filters.push(f);
        }
    }
    if filters.is_empty() && errors.len() == before {
        errors.push(err(
            g.at("nodeFilterRuleDefinitions"),
            "needs at least one OpcUaRootPath",
        ));
    }
    let scan = match g.object("scanMode", false, errors) {
        None => Scan::Exception {
            rate_ms: DEFAULT_RATE_MS,
        },
        Some(s) => {
            s.only(&["type", "rate"], &["timestampToReturn"], errors);
            let rate = s.integer("rate", (MIN_RATE_MS, MAX_RATE_MS), errors);
            match s.string("type", true, errors).as_deref() {
                Some("EXCEPTION") => Scan::Exception {
                    rate_ms: rate.unwrap_or(DEFAULT_RATE_MS),
                },
                Some("POLL") => {
                    if rate.is_none() && !s.obj.contains_key("rate") {
                        errors.push(err(s.at("rate"), "is required for POLL"));
                    }
                    Scan::Poll {
                        rate_ms: rate.unwrap_or(DEFAULT_RATE_MS),
                    }
                }
                Some(other) => {
                    errors.push(err(
                        s.at("type"),
                        format!("{other:?} is neither EXCEPTION nor POLL"),
                    ));
                    Scan::Exception {
                        rate_ms: DEFAULT_RATE_MS,
                    }
                }
                None => Scan::Exception {
                    rate_ms: DEFAULT_RATE_MS,
                },
            }
        }
    };
    let deadband = g.object("deadband", false, errors).and_then(|d| {
        d.only(&["type", "value", "eguMin", "eguMax", "timeoutMilliseconds"], &[], errors);
        let value = d.number("value", errors);
        if value.is_none() && !d.obj.contains_key("value") {
            errors.push(err(d.at("value"), "is required"));
        }
        let timeout_ms = d.integer("timeoutMilliseconds", (100, MAX_RATE_MS), errors);
        let value = value?;
        let threshold = match d.string("type", true, errors).as_deref() {
            Some("ABSOLUTE") if value >= 0.0 => value,
            Some("ABSOLUTE") => {
                errors.push(err(d.at("value"), "must not be negative"));
                return None;
            }
            Some("PERCENT") => {
                if !(0.0..=100.0).contains(&value) {
                    errors.push(err(d.at("value"), "must be from 0 to 100 for PERCENT"));
                    return None;
                }
                match (d.number("eguMin", errors), d.number("eguMax", errors)) {
                    (Some(lo), Some(hi)) if hi > lo => value / 100.0 * (hi - lo),
                    (Some(_), Some(_)) => {
                        errors.push(err(d.at("eguMax"), "must be above eguMin"));
                        return None;
                    }
                    _ => {
                        errors.push(err(
                            d.at("eguMin"),
                            "a PERCENT deadband needs eguMin and eguMax here (reading the server's EURange is not supported)",
                        ));
                        return None;
                    }
                }
            }
            Some(other) => {
                errors.push(err(d.at("type"), format!("{other:?} is neither ABSOLUTE nor PERCENT")));
                return None;
            }
            None => return None,
        };
        Some(Deadband {
            threshold,
            timeout_ms,
        })
    });
    if errors.len() > before {
        return None;
    }
    Some(Group {
        name: name?,
        filters,
        scan,
        deadband,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"sources":[{"name":"Wind Farm #2",
        "endpoint":{"certificateTrust":{"type":"TrustAny"},
          "endpointUri":"opc.tcp://203.0.113.1:49320","securityPolicy":"BASIC256",
          "messageSecurityMode":"SIGN_AND_ENCRYPT",
          "identityProvider":{"type":"Username","usernameSecretArn":"arn:aws:secretsmanager:r:1:secret:greengrass-x"},
          "nodeFilterRules":[{"action":"INCLUDE","definition":{"type":"OpcUaRootPath","rootPath":"/WindFarm/2/WindTurbine/"}}]},
        "measurementDataStreamPrefix":"/Washington",
        "propertyGroups":[{"name":"Polling_10s","nodeFilterRuleDefinitions":[{"type":"OpcUaRootPath","rootPath":"/WindFarm/2/WindTurbine/PT-*"}],
          "scanMode":{"type":"POLL","rate":10000}},
          {"name":"Pct","nodeFilterRuleDefinitions":[{"type":"OpcUaRootPath","rootPath":"/**/FT-*"}],
          "deadband":{"type":"PERCENT","value":5.0,"eguMin":-100,"eguMax":100,"timeoutMilliseconds":90000}}]}]}"#;

    #[test]
    fn the_guide_example_parses() {
        let cap = Capability::parse(EXAMPLE).expect("valid");
        let s = &cap.sources[0];
        assert_eq!(s.endpoint.policy, SecurityPolicy::Basic256);
        assert_eq!(s.endpoint.mode, SecurityMode::SignAndEncrypt);
        assert!(matches!(s.endpoint.identity, Identity::Username { .. }));
        assert_eq!(s.stream_name, DEFAULT_STREAM);
        assert!(s.includes("/WindFarm/2/WindTurbine/a/b"));
        assert!(!s.includes("/WindFarm/3/x"));
        assert!(s.may_include_below("/WindFarm"));
        assert!(!s.may_include_below("/Other"));
        assert_eq!(
            s.group_of("/WindFarm/2/WindTurbine/PT-1").map(|g| g.scan),
            Some(Scan::Poll { rate_ms: 10000 })
        );
        let pct = s.group_of("/a/b/FT-9").expect("group");
        assert_eq!(pct.deadband.map(|d| d.threshold), Some(10.0));
        let wrapped = serde_json::json!({"version": 1, "namespace": "iotsitewise:opcuacollector:1",
            "configuration": EXAMPLE})
        .to_string();
        assert_eq!(Capability::parse(&wrapped), Ok(cap));
    }

    #[test]
    fn errors_carry_json_paths() {
        let bad = r#"{"sources":[{"name":"a","endpoint":{"endpointUri":"http://x",
            "securityPolicy":"BASIC256_SHA256","messageSecurityMode":"NONE",
            "identityProvider":{"type":"Username"},
            "certificateTrust":{"type":"X509","certificateBody":"nope"},
            "nodeFilterRules":[{"action":"EXCLUDE","definition":{"type":"OpcUaRootPath","rootPath":"x"}}]},
            "typeConversions":{},
            "propertyGroups":[{"name":"g","nodeFilterRuleDefinitions":[{"type":"OpcUaRootPath","rootPath":"/a"}],
              "scanMode":{"type":"POLL","rate":0},"dataQuality":{}}]}]}"#;
        let errors = Capability::parse(bad).expect_err("invalid");
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "sources[0].endpoint.endpointUri",
            "sources[0].endpoint.messageSecurityMode",
            "sources[0].endpoint.identityProvider.usernameSecretArn",
            "sources[0].endpoint.certificateTrust.certificateBody",
            "sources[0].endpoint.nodeFilterRules[0].action",
            "sources[0].endpoint.nodeFilterRules[0].definition.rootPath",
            "sources[0].typeConversions",
            "sources[0].propertyGroups[0].scanMode.rate",
            "sources[0].propertyGroups[0].dataQuality",
        ] {
            assert!(paths.contains(&p), "{p} missing from {errors:?}");
        }
        assert!(Capability::parse("[]").is_err());
        assert!(Capability::parse("{\"sources\": 1}").is_err());
        assert!(Capability::parse(r#"{"configuration":"{","namespace":"x"}"#).is_err());
    }
}
