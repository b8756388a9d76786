//! The `ProtocolAdapterConfiguration` parameter: parsing and validation into
//! [`Adapter`], every problem collected with its JSON path (the field
//! readers are the Modbus-TCP adapter's, whose configuration has the same
//! shape).
//!
//! Never touches the network, never panics on input. Rules, from the
//! Greengrass connector page and the SiteWise "Configure an Ethernet/IP
//! source" page, and what they leave open decided here:
//!
//! - `type` fields, when present, must be `EIPSource`, `StreamManager`,
//!   `EIPTagPath`; `scanMode.type` must be `POLL`.
//! - `destination` is required (the Greengrass page: "You must configure the
//!   destination message stream"; its CLI example leaves it out **[doc
//!   inconsistency]**, and such a configuration is refused with the path
//!   `sources[i].destination` rather than sending readings nowhere).
//!   `streamName` follows stream manager's naming rule; `streamBufferSize`
//!   is the created stream's size in MiB.
//! - `endpoint.ipAddress` is an IP address or host name; `port` 1–65535,
//!   default 44818 (EtherNet/IP's registered port).
//! - `minimumInterRequestDuration` 0–86400000 ms, default 0;
//!   `scanMode.rate` 1–86400000 ms.
//! - `path`: see [`TagPath::parse`]; `dstDataType` one of `integer`,
//!   `double`, `string`, `boolean`.
//! - `sources` may be empty ("This can be an empty list"); a source needs
//!   at least one property group and a group at least one tag. The SiteWise
//!   page says a source "can have one property group"; more are accepted,
//!   each polled at its own rate over the source's one connection.
//! - Names are unique: sources, groups in a source, paths in a group.
//! - The parameter may also be the SiteWise CLI wrapper
//!   `{"version":1,"namespace":"iotsitewise:eipcollector:1","configuration":"<json>"}`.

use std::time::Duration;

use evergreen_connector_kit::status::kind;
use evergreen_connector_modbus_tcp::config::{err, valid_stream_name, ConfigError, Fields};
use serde_json::{Map, Value};

use crate::cip::TagPath;

/// The namespace of the SiteWise CLI wrapper form.
pub const NAMESPACE: &str = "iotsitewise:eipcollector:1";
/// EtherNet/IP's registered TCP port.
pub const DEFAULT_PORT: u16 = 44818;
/// Slowest rate and longest gap accepted (one day).
pub const MAX_DURATION_MS: u64 = 86_400_000;

/// The type a reading's value is converted to (`dstDataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstType {
    Integer,
    Double,
    String,
    Boolean,
}

impl DstType {
    pub fn parse(text: &str) -> Result<DstType, String> {
        match text {
            "integer" => Ok(DstType::Integer),
            "double" => Ok(DstType::Double),
            "string" => Ok(DstType::String),
            "boolean" => Ok(DstType::Boolean),
            other => Err(format!(
                "{other:?} is not one of \"integer\", \"double\", \"string\", \"boolean\""
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub stream_name: String,
    /// The created stream's size in MiB.
    pub stream_buffer_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// An IP address or a host name, resolved at each connection attempt.
    pub host: String,
    pub port: u16,
}

/// One tag (`tagPathDefinitions[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// `path` as written: the reading's `name`.
    pub name: String,
    /// `destinationPathPrefix` + `path`: the reading's `alias`.
    pub alias: String,
    pub path: TagPath,
    pub dst: DstType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyGroup {
    pub name: String,
    pub tags: Vec<Tag>,
    pub rate: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub prefix: String,
    pub destination: Destination,
    pub endpoint: Endpoint,
    pub min_inter_request: Duration,
    pub groups: Vec<PropertyGroup>,
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Adapter {
    pub sources: Vec<Source>,
}

impl Adapter {
    /// Parses the parameter's value; `param` names it in error paths of the
    /// document as a whole.
    pub fn parse(param: &str, text: &str) -> Result<Adapter, Vec<ConfigError>> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| vec![err(param, format!("not valid JSON: {e}"))])?;
        let Some(obj) = root.as_object() else {
            return Err(vec![err(
                param,
                format!("must be a JSON object with `sources`, got {}", kind(&root)),
            )]);
        };
        let mut errors = Vec::new();
        let adapter = if obj.contains_key("configuration") {
            parse_wrapper(obj, &mut errors)
        } else {
            parse_adapter(obj, "", &mut errors)
        };
        if errors.is_empty() {
            Ok(adapter)
        } else {
            Err(errors)
        }
    }
}

fn parse_wrapper(obj: &Map<String, Value>, errors: &mut Vec<ConfigError>) -> Adapter {
    if let Some(ns) = obj.get("namespace") {
        if ns.as_str() != Some(NAMESPACE) {
            errors.push(err("namespace", format!("must be {NAMESPACE:?}, got {ns}")));
        }
    }
    let inner: Value = match obj.get("configuration").unwrap_or(&Value::Null) {
        Value::String(s) => match serde_json::from_str(s) {
            Ok(v) => v,
            Err(e) => {
                errors.push(err("configuration", format!("not valid JSON: {e}")));
                return Adapter::default();
            }
        },
        v @ Value::Object(_) => v.clone(),
        other => {
            errors.push(err(
                "configuration",
                format!("must be a JSON string (or object), got {}", kind(other)),
            ));
            return Adapter::default();
        }
    };
    match inner.as_object() {
        Some(inner) => parse_adapter(inner, "configuration.", errors),
        None => {
            errors.push(err(
                "configuration",
                "must hold a JSON object with `sources`",
            ));
            Adapter::default()
        }
    }
}

fn parse_adapter(obj: &Map<String, Value>, path: &str, errors: &mut Vec<ConfigError>) -> Adapter {
    let root = Fields::new(obj, path);
    // "This can be an empty list": an empty array is accepted here, unlike
    // the nested lists.
    if matches!(obj.get("sources"), Some(Value::Array(a)) if a.is_empty()) {
        return Adapter::default();
    }
    let mut sources: Vec<Source> = Vec::new();
    for s in root.objects("sources", errors) {
        if let Some(source) = parse_source(&s, errors) {
            if sources.iter().any(|o| o.name == source.name) {
                errors.push(err(
                    s.at("name"),
                    format!("source name {:?} is used twice", source.name),
                ));
            }
            sources.push(source);
        }
    }
    Adapter { sources }
}

fn parse_source(s: &Fields<'_>, errors: &mut Vec<ConfigError>) -> Option<Source> {
    let before = errors.len();
    s.type_is("EIPSource", errors);
    let name = s.string("name", true, errors);
    if let Some(n) = &name {
        if n.is_empty() || n.chars().count() > 256 {
            errors.push(err(s.at("name"), "must be 1 to 256 characters"));
        }
    }
    let prefix = s
        .string("destinationPathPrefix", false, errors)
        .unwrap_or_default();
    let destination = s.object("destination", true, errors).and_then(|d| {
        d.type_is("StreamManager", errors);
        let stream_name = d.string("streamName", true, errors)?;
        if !valid_stream_name(&stream_name) {
            errors.push(err(
                d.at("streamName"),
                format!(
                    "{stream_name:?} is not a stream name: 1-255 letters, digits, spaces and , . - _"
                ),
            ));
            return None;
        }
        let stream_buffer_size = d.integer("streamBufferSize", false, (1, 1 << 20), errors);
        Some(Destination {
            stream_name,
            stream_buffer_size,
        })
    });
    let endpoint = s.object("endpoint", true, errors).and_then(|e| {
        let host = e.string("ipAddress", true, errors)?.trim().to_string();
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        {
            errors.push(err(
                e.at("ipAddress"),
                format!("{host:?} is not an IP address or host name"),
            ));
            return None;
        }
        let port = e
            .integer("port", false, (1, 65535), errors)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(DEFAULT_PORT);
        Some(Endpoint { host, port })
    });
    let min_inter_request = s
        .integer(
            "minimumInterRequestDuration",
            false,
            (0, MAX_DURATION_MS),
            errors,
        )
        .unwrap_or(0);
    let mut groups: Vec<PropertyGroup> = Vec::new();
    for g in s.objects("propertyGroups", errors) {
        if let Some(group) = parse_group(&g, &prefix, errors) {
            if groups.iter().any(|o| o.name == group.name) {
                errors.push(err(
                    g.at("name"),
                    format!("property group name {:?} is used twice", group.name),
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
        prefix,
        destination: destination?,
        endpoint: endpoint?,
        min_inter_request: Duration::from_millis(min_inter_request),
        groups,
    })
}

fn parse_group(
    g: &Fields<'_>,
    prefix: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<PropertyGroup> {
    let before = errors.len();
    let name = g.string("name", true, errors);
    let mut tags: Vec<Tag> = Vec::new();
    for t in g.objects("tagPathDefinitions", errors) {
        t.type_is("EIPTagPath", errors);
        let path_text = t.string("path", true, errors);
        let path = path_text
            .as_deref()
            .and_then(|p| t.record(errors, "path", TagPath::parse(p)));
        let dst = t
            .string("dstDataType", true, errors)
            .and_then(|d| t.record(errors, "dstDataType", DstType::parse(&d)));
        if let (Some(name), Some(path), Some(dst)) = (path_text, path, dst) {
            if tags.iter().any(|o| o.name == name) {
                errors.push(err(
                    t.at("path"),
                    format!("path {name:?} is used twice in this group"),
                ));
            }
            tags.push(Tag {
                alias: format!("{prefix}{name}"),
                name,
                path,
                dst,
            });
        }
    }
    let rate = g.object("scanMode", true, errors).and_then(|m| {
        if let Some(t) = m.string("type", true, errors) {
            if t != "POLL" {
                errors.push(err(
                    m.at("type"),
                    format!("only \"POLL\" is supported, got {t:?}"),
                ));
            }
        }
        m.integer("rate", true, (1, MAX_DURATION_MS), errors)
    });
    if errors.len() > before {
        return None;
    }
    Some(PropertyGroup {
        name: name?,
        tags,
        rate: Duration::from_millis(rate?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn documented() -> Value {
        json!({"sources": [{"type": "EIPSource", "name": "TestSource",
            "endpoint": {"ipAddress": "52.89.2.42", "port": 44818},
            "destination": {"type": "StreamManager", "streamName": "MyOutput_Stream", "streamBufferSize": 10},
            "destinationPathPrefix": "EIPSource_Prefix",
            "propertyGroups": [{"name": "DriveTemperatures",
                "scanMode": {"type": "POLL", "rate": 10000},
                "tagPathDefinitions": [{"type": "EIPTagPath", "path": "arrayREAL[0]", "dstDataType": "double"}]}]}]})
    }

    fn paths(v: &Value) -> Vec<String> {
        Adapter::parse("P", &v.to_string())
            .expect_err("invalid")
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    #[test]
    fn the_documented_example_is_accepted() {
        let a = Adapter::parse("P", &documented().to_string()).expect("valid");
        let s = &a.sources[0];
        assert_eq!(s.endpoint.port, 44818);
        assert_eq!(s.destination.stream_name, "MyOutput_Stream");
        assert_eq!(s.destination.stream_buffer_size, Some(10));
        let t = &s.groups[0].tags[0];
        assert_eq!(t.alias, "EIPSource_PrefixarrayREAL[0]");
        assert_eq!(t.name, "arrayREAL[0]");
        assert_eq!(t.dst, DstType::Double);
        assert_eq!(s.groups[0].rate, Duration::from_secs(10));
        let wrapped = json!({"version": 1, "namespace": NAMESPACE, "configuration": documented().to_string()});
        assert_eq!(Adapter::parse("P", &wrapped.to_string()), Ok(a));
        assert_eq!(
            Adapter::parse("P", "{\"sources\":[]}"),
            Ok(Adapter::default()),
            "an empty list is allowed"
        );
    }

    #[test]
    fn bad_json_is_reported_at_the_parameter() {
        let e = Adapter::parse("ProtocolAdapterConfiguration", "{nope").expect_err("bad");
        assert_eq!(e[0].path, "ProtocolAdapterConfiguration");
        assert!(e[0].message.contains("not valid JSON"), "{}", e[0]);
        let e = Adapter::parse("P", "[1]").expect_err("bad");
        assert_eq!(e[0].path, "P");
    }

    #[test]
    fn missing_and_wrong_fields_are_reported_with_json_paths() {
        let mut v = documented();
        let s = &mut v["sources"][0];
        s.as_object_mut().expect("obj").remove("destination");
        s["endpoint"]["port"] = json!(70000);
        s["propertyGroups"][0]["scanMode"]["type"] = json!("SUBSCRIBE");
        let t = &mut s["propertyGroups"][0]["tagPathDefinitions"][0];
        t["dstDataType"] = json!("float");
        t["type"] = json!("ModBusTCPAddress");
        let got = paths(&v);
        for want in [
            "sources[0].destination",
            "sources[0].endpoint.port",
            "sources[0].propertyGroups[0].scanMode.type",
            "sources[0].propertyGroups[0].tagPathDefinitions[0].dstDataType",
            "sources[0].propertyGroups[0].tagPathDefinitions[0].type",
        ] {
            assert!(got.iter().any(|p| p == want), "{want} in {got:?}");
        }
        let mut v = documented();
        v["sources"][0]["propertyGroups"][0]["tagPathDefinitions"][0]["path"] = json!("a__b");
        assert_eq!(
            paths(&v),
            ["sources[0].propertyGroups[0].tagPathDefinitions[0].path"]
        );
        let mut v = documented();
        v["sources"][0]["propertyGroups"][0]["tagPathDefinitions"] = json!([]);
        v["sources"][0]["endpoint"]
            .as_object_mut()
            .expect("obj")
            .remove("ipAddress");
        assert_eq!(
            paths(&v),
            [
                "sources[0].endpoint.ipAddress",
                "sources[0].propertyGroups[0].tagPathDefinitions"
            ]
        );
        let mut v = documented();
        let dup = v["sources"][0].clone();
        v["sources"].as_array_mut().expect("arr").push(dup);
        assert_eq!(paths(&v), ["sources[1].name"]);
        let mut v = documented();
        v["sources"][0]["destination"]["streamName"] = json!("bad/name");
        assert_eq!(paths(&v), ["sources[0].destination.streamName"]);
    }
}
