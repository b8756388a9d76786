//! The `CapabilityConfiguration` parameter: parsing and validation into
//! [`Capability`], every problem collected with the JSON path it was found at.
//!
//! This module never touches the network and never panics on input: a bad
//! document is a list of [`ConfigError`]s, not an exception. The rules that
//! the SiteWise guide leaves open (address notation, type names, sizes) are
//! decided here and documented on each item:
//!
//! - `type` fields, when present, must be `ModBusTCPSource`,
//!   `StreamManager`, `ModBusTCPAddress`; `scanMode.type` must be `POLL`.
//! - `destination.streamName` follows stream manager's rule (1–255 of
//!   letters, digits, spaces, `, . - _`) and names the readings' topic;
//!   `streamBufferSize` sizes the stream when readings go into stream
//!   manager (MiB, see [`crate::streams`]), and is unused on MQTT.
//! - `endpoint.ipAddress` is an IP address or a host name (resolved at each
//!   connection attempt); `port` 1–65535, default 502; `unitId` 0–255,
//!   default 1.
//! - `minimumInterRequestDuration` 0–86400000 ms (default 0) and
//!   `scanMode.rate` 1–86400000 ms; numbers may also be strings of digits.
//! - Names must be unique: sources, groups within a source, tags within a group.
//! - Addresses: [`parse_address`]; types and transformations: [`crate::decode`];
//!   sizes: `check_size` (fixed-width types need no `size`, text and
//!   hexdump do, at most 125 registers; bit tables hold `bool` only).

use std::fmt;
use std::time::Duration;

use evergreen_connector_kit::status::kind;
// The Modbus specification's quantity limits per read, kept in the shared Modbus crate.
use evergreen_connector_modbus::request::{MAX_READ_BITS, MAX_READ_REGISTERS};
use serde_json::{Map, Value};

use crate::decode::{DstType, SrcType, Transform};

/// The namespace of the CLI wrapper form, `iotsitewise:modbuscollector:1`.
pub const NAMESPACE: &str = "iotsitewise:modbuscollector:1";
/// Default Modbus TCP port when `endpoint.port` is absent.
pub const DEFAULT_PORT: u16 = 502;
/// Default unit id when `endpoint.unitId` is absent (the SiteWise default).
pub const DEFAULT_UNIT_ID: u8 = 1;
/// Fastest poll rate accepted: a rate of 0 would spin.
pub const MIN_RATE_MS: u64 = 1;
/// Slowest poll rate and longest inter-request gap accepted (one day): a
/// timer cannot be set centuries ahead.
pub const MAX_DURATION_MS: u64 = 86_400_000;

/// One problem in the configuration, at a JSON path like
/// `sources[0].propertyGroups[1].tagPathDefinitions[2].address`.
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

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `0xxxx`: read with function 1.
    Coil,
    /// `1xxxx`: read with function 2.
    DiscreteInput,
    /// `3xxxx`: read with function 4.
    InputRegister,
    /// `4xxxx`: read with function 3.
    HoldingRegister,
}

impl Table {
    /// Whether the table holds bits (coils, discrete inputs) rather than registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Most items one read of this table may ask for.
    pub fn max_per_read(self) -> u16 {
        if self.is_bits() {
            MAX_READ_BITS
        } else {
            MAX_READ_REGISTERS
        }
    }
}

/// A tag's place in the device: table and zero-based protocol offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub table: Table,
    pub offset: u16,
}

/// Parses SiteWise/Modicon notation: the first digit of a 5- or 6-digit
/// number is the table (`0` coil, `1` discrete input, `3` input register,
/// `4` holding register), the rest the one-based item number (`30001` is
/// input register 1, protocol offset 0; `400001`..`465536` reach every
/// holding register). Shorter numbers (`1`..`9999`) are coils, as in the
/// Modicon convention where the coil table's leading `0` is often dropped.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a Modbus address: expected digits such as 40001 (holding register 1), \
             30001 (input register 1), 10001 (discrete input 1) or 00001 / 1 (coil 1)"
        ));
    }
    let (table, number) = if text.len() < 5 {
        (Table::Coil, text)
    } else if text.len() <= 6 {
        let table = match text.as_bytes()[0] {
            b'0' => Table::Coil,
            b'1' => Table::DiscreteInput,
            b'3' => Table::InputRegister,
            b'4' => Table::HoldingRegister,
            other => {
                return Err(format!(
                "{text:?}: table digit {} is not 0 (coil), 1 (discrete input), 3 (input register) \
                     or 4 (holding register)",
                char::from(other)
            ))
            }
        };
        (table, &text[1..])
    } else {
        return Err(format!(
            "{text:?} has more than 6 digits: the largest address is 465536"
        ));
    };
    let number: u32 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(1..=65536).contains(&number) {
        return Err(format!(
            "{text:?}: item numbers are one-based, 1 to 65536 (so 40001 is the first holding register)"
        ));
    }
    let offset = u16::try_from(number - 1).map_err(|_| format!("{text:?} is out of range"))?;
    Ok(Address { table, offset })
}

/// Where readings go (`destination`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The stream name; the readings' MQTT topic is derived from it.
    pub stream_name: String,
    /// The stream's size in MiB when the connector creates it.
    pub stream_buffer_size: Option<u64>,
}

/// A Modbus TCP device (`endpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// An IP address or a host name, resolved at each connection attempt.
    pub host: String,
    pub port: u16,
    pub unit_id: u8,
}

/// One measurement (`tagPathDefinitions[i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    /// `tag`: the reading's `name`.
    pub name: String,
    /// `measurementDataStreamPrefix` + `tag`: the reading's `alias`.
    pub alias: String,
    pub address: Address,
    /// Items read: registers for register tables, bits for bit tables.
    pub size: u16,
    pub src: SrcType,
    pub transform: Transform,
    pub dst: DstType,
}

/// Tags read together at one rate (`propertyGroups[i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyGroup {
    pub name: String,
    pub tags: Vec<Tag>,
    /// `scanMode.rate`.
    pub rate: Duration,
}

/// One device and what to read from it (`sources[i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub prefix: String,
    pub destination: Destination,
    pub endpoint: Endpoint,
    /// `minimumInterRequestDuration`: quiet time between the end of one
    /// request to the endpoint and the start of the next.
    pub min_inter_request: Duration,
    pub groups: Vec<PropertyGroup>,
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Capability {
    pub sources: Vec<Source>,
}

impl Capability {
    /// Parses the `CapabilityConfiguration` parameter's value: either the
    /// configuration itself (`{"sources":[…]}`) or the CLI wrapper
    /// `{"version":1,"namespace":"iotsitewise:modbuscollector:1","configuration":"<json>"}`
    /// whose `configuration` is a JSON string (or, leniently, an object).
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
        if obj.contains_key("configuration") {
            return parse_wrapper(obj);
        }
        let mut errors = Vec::new();
        let cap = parse_capability(obj, "", &mut errors);
        if errors.is_empty() {
            Ok(cap)
        } else {
            Err(errors)
        }
    }
}

fn parse_wrapper(obj: &Map<String, Value>) -> Result<Capability, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if let Some(ns) = obj.get("namespace") {
        if ns.as_str() != Some(NAMESPACE) {
            errors.push(err("namespace", format!("must be {NAMESPACE:?}, got {ns}")));
        }
    }
    if let Some(v) = obj.get("version") {
        if v.as_u64() != Some(1) && v.as_str() != Some("1") {
            errors.push(err("version", format!("only version 1 is known, got {v}")));
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
        other => {
            errors.push(err(
                "configuration",
                format!("must be a JSON string (or object), got {}", kind(other)),
            ));
            return Err(errors);
        }
    };
    let Some(inner) = inner.as_object() else {
        errors.push(err(
            "configuration",
            "must hold a JSON object with `sources`",
        ));
        return Err(errors);
    };
    let cap = parse_capability(inner, "configuration.", &mut errors);
    if errors.is_empty() {
        Ok(cap)
    } else {
        Err(errors)
    }
}

/// A [`ConfigError`] at `path`.
pub fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// Reads fields of one JSON object, recording problems under its path
/// (shared with the EtherNet/IP adapter, whose configuration has the same shape).
#[derive(Debug)]
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// The fields of `obj`, whose keys are reported as `path` + key.
    pub fn new(obj: &'a Map<String, Value>, path: &str) -> Fields<'a> {
        Fields {
            obj,
            path: path.to_string(),
        }
    }

    /// The JSON path of `key` in this object.
    pub fn at(&self, key: &str) -> String {
        format!("{}{key}", self.path)
    }

    pub fn string(
        &self,
        key: &str,
        required: bool,
        errors: &mut Vec<ConfigError>,
    ) -> Option<String> {
        match self.obj.get(key) {
            None | Some(Value::Null) => {
                if required {
                    errors.push(err(self.at(key), "is required"));
                }
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                errors.push(err(
                    self.at(key),
                    format!("must be a string, got {}", kind(other)),
                ));
                None
            }
        }
    }

    /// A non-negative integer, also accepted as a string of digits (as
    /// Greengrass parameters often carry numbers).
    pub fn integer(
        &self,
        key: &str,
        required: bool,
        range: (u64, u64),
        errors: &mut Vec<ConfigError>,
    ) -> Option<u64> {
        let n = match self.obj.get(key) {
            None | Some(Value::Null) => {
                if required {
                    errors.push(err(self.at(key), "is required"));
                }
                return None;
            }
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(other) => {
                errors.push(err(
                    self.at(key),
                    format!("must be a number, got {}", kind(other)),
                ));
                return None;
            }
        };
        match n {
            Some(n) if (range.0..=range.1).contains(&n) => Some(n),
            _ => {
                errors.push(err(
                    self.at(key),
                    format!(
                        "must be a whole number from {} to {}, got {}",
                        range.0, range.1, self.obj[key]
                    ),
                ));
                None
            }
        }
    }

    pub fn object(
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
            Some(Value::Object(o)) => Some(Fields {
                obj: o,
                path: format!("{}.", self.at(key)),
            }),
            Some(other) => {
                errors.push(err(
                    self.at(key),
                    format!("must be an object, got {}", kind(other)),
                ));
                None
            }
        }
    }

    /// A required, non-empty array of objects; yields each with its path.
    pub fn objects(&self, key: &str, errors: &mut Vec<ConfigError>) -> Vec<Fields<'a>> {
        let items = match self.obj.get(key) {
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) => {
                errors.push(err(self.at(key), "must not be empty"));
                return Vec::new();
            }
            None | Some(Value::Null) => {
                errors.push(err(self.at(key), "is required"));
                return Vec::new();
            }
            Some(other) => {
                errors.push(err(
                    self.at(key),
                    format!("must be an array, got {}", kind(other)),
                ));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.at(key));
            match item.as_object() {
                Some(o) => out.push(Fields {
                    obj: o,
                    path: format!("{path}."),
                }),
                None => errors.push(err(path, format!("must be an object, got {}", kind(item)))),
            }
        }
        out
    }

    /// The value of a parse of field `key`, or its error recorded.
    pub fn record<T>(
        &self,
        errors: &mut Vec<ConfigError>,
        key: &str,
        parsed: Result<T, String>,
    ) -> Option<T> {
        parsed.map_err(|e| errors.push(err(self.at(key), e))).ok()
    }

    /// `type` must be `expected` when present.
    pub fn type_is(&self, expected: &str, errors: &mut Vec<ConfigError>) {
        if let Some(t) = self.string("type", false, errors) {
            if t != expected {
                errors.push(err(
                    self.at("type"),
                    format!("must be {expected:?}, got {t:?}"),
                ));
            }
        }
    }
}

/// Stream manager's stream-name rule, `^[\w ,.\-_]*$` with 1–255
/// characters; it also makes the name a valid single MQTT topic level.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ' ' | ',' | '.' | '-'))
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
    Capability { sources }
}

fn parse_source(s: &Fields<'_>, errors: &mut Vec<ConfigError>) -> Option<Source> {
    let before = errors.len();
    s.type_is("ModBusTCPSource", errors);
    let name = s.string("name", true, errors);
    if name.as_deref() == Some("") {
        errors.push(err(s.at("name"), "must not be empty"));
    }
    let prefix = s
        .string("measurementDataStreamPrefix", false, errors)
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
        let stream_buffer_size = d.integer("streamBufferSize", false, (0, u64::MAX), errors);
        Some(Destination {
            stream_name,
            stream_buffer_size,
        })
    });
    let endpoint = s.object("endpoint", true, errors).and_then(|e| {
        let host = e.string("ipAddress", true, errors)?;
        let host = host.trim().to_string();
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
        let port = e.integer("port", false, (1, 65535), errors);
        let unit_id = e.integer("unitId", false, (0, 255), errors);
        Some(Endpoint {
            host,
            port: port
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(DEFAULT_PORT),
            unit_id: unit_id
                .and_then(|u| u8::try_from(u).ok())
                .unwrap_or(DEFAULT_UNIT_ID),
        })
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
        if let Some(tag) = parse_tag(&t, prefix, errors) {
            if tags.iter().any(|o| o.name == tag.name) {
                errors.push(err(
                    t.at("tag"),
                    format!("tag {:?} is used twice in this group", tag.name),
                ));
            }
            tags.push(tag);
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
        m.integer("rate", true, (MIN_RATE_MS, MAX_DURATION_MS), errors)
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

fn parse_tag(t: &Fields<'_>, prefix: &str, errors: &mut Vec<ConfigError>) -> Option<Tag> {
    let before = errors.len();
    t.type_is("ModBusTCPAddress", errors);
    let name = t.string("tag", true, errors);
    if name.as_deref() == Some("") {
        errors.push(err(t.at("tag"), "must not be empty"));
    }
    // The address is a string in SiteWise's examples; a bare number is the
    // same digits (leading zeros are then lost, which only matters for
    // coils, and a short number is a coil anyway).
    let address = match t.obj.get("address") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        None | Some(Value::Null) => {
            errors.push(err(t.at("address"), "is required"));
            None
        }
        Some(other) => {
            errors.push(err(
                t.at("address"),
                format!("must be a string such as \"40001\", got {}", kind(other)),
            ));
            None
        }
    }
    .and_then(|a| t.record(errors, "address", parse_address(&a)));
    let src = t
        .string("srcDataType", true, errors)
        .and_then(|s| t.record(errors, "srcDataType", SrcType::parse(&s)));
    let transform = match t.string("transformation", false, errors) {
        None => Some(Transform::NoSwap),
        Some(s) => t.record(errors, "transformation", Transform::parse(&s)),
    };
    let dst = t
        .string("dstDataType", true, errors)
        .and_then(|s| t.record(errors, "dstDataType", DstType::parse(&s)));
    let size = t.integer("size", false, (1, u64::from(MAX_READ_BITS)), errors);
    let (Some(address), Some(src), Some(dst)) = (address, src, dst) else {
        return None;
    };
    if let Err(e) = src.converts_to(dst) {
        errors.push(err(t.at("dstDataType"), e));
    }
    let size = match check_size(address.table, src, size) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(err(t.at("size"), e));
            None
        }
    };
    if let Some(size) = size {
        if u32::from(address.offset) + u32::from(size) > 65536 {
            errors.push(err(
                t.at("size"),
                format!("{size} items from this address run past the end of the table"),
            ));
        }
    }
    if errors.len() > before {
        return None;
    }
    let name = name?;
    Some(Tag {
        alias: format!("{prefix}{name}"),
        name,
        address,
        size: size?,
        src,
        transform: transform?,
        dst,
    })
}

/// The number of items a tag reads: its type's width, or `size` for the
/// variable-width types (hexdump and strings), which then need it.
fn check_size(table: Table, src: SrcType, size: Option<u64>) -> Result<u16, String> {
    if table.is_bits() {
        if src != SrcType::Bool {
            return Err(format!(
                "coils and discrete inputs hold bits: srcDataType must be \"bool\", not {:?}",
                src.name()
            ));
        }
        return match size {
            None | Some(1) => Ok(1),
            Some(n) => Err(format!("a bool is 1 bit, got size {n}")),
        };
    }
    match (src.registers(), size) {
        (Some(width), None) => Ok(width),
        (Some(width), Some(n)) if n == u64::from(width) => Ok(width),
        (Some(width), Some(n)) => Err(format!(
            "{} is {width} register(s), got size {n}",
            src.name()
        )),
        (None, None) => Err(format!(
            "is required for {}: the number of registers to read",
            src.name()
        )),
        (None, Some(n)) if n <= u64::from(MAX_READ_REGISTERS) => {
            u16::try_from(n).map_err(|_| format!("{n} is too large"))
        }
        (None, Some(n)) => Err(format!(
            "{n} registers do not fit one read (at most {MAX_READ_REGISTERS})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"sources": [{"type": "ModBusTCPSource", "name": "SourceName1",
      "measurementDataStreamPrefix": "SourceName1_Prefix",
      "destination": {"type": "StreamManager", "streamName": "SiteWise_Stream_1", "streamBufferSize": 8},
      "endpoint": {"ipAddress": "127.0.0.1", "port": 8081, "unitId": 1},
      "minimumInterRequestDuration": 200,
      "propertyGroups": [{"name": "GroupName",
        "tagPathDefinitions": [{"type": "ModBusTCPAddress", "tag": "TT-001", "address": "30001", "size": 2,
           "srcDataType": "float", "transformation": "byteWordSwap", "dstDataType": "double"}],
        "scanMode": {"type": "POLL", "rate": 100}}]}]}"#;

    fn errors_of(text: &str) -> Vec<ConfigError> {
        Capability::parse(text).expect_err("invalid")
    }

    fn with(f: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(EXAMPLE).expect("example");
        f(&mut v);
        v.to_string()
    }

    #[test]
    fn the_guides_example_parses() {
        let cap = Capability::parse(EXAMPLE).expect("valid");
        let s = &cap.sources[0];
        assert_eq!(s.name, "SourceName1");
        assert_eq!(s.destination.stream_name, "SiteWise_Stream_1");
        assert_eq!(s.destination.stream_buffer_size, Some(8));
        assert_eq!(
            s.endpoint,
            Endpoint {
                host: "127.0.0.1".into(),
                port: 8081,
                unit_id: 1
            }
        );
        assert_eq!(s.min_inter_request, Duration::from_millis(200));
        let g = &s.groups[0];
        assert_eq!(g.rate, Duration::from_millis(100));
        let t = &g.tags[0];
        assert_eq!(t.alias, "SourceName1_PrefixTT-001");
        assert_eq!(
            t.address,
            Address {
                table: Table::InputRegister,
                offset: 0
            }
        );
        assert_eq!(
            (t.size, t.src, t.transform, t.dst),
            (2, SrcType::Float, Transform::ByteWordSwap, DstType::Double)
        );
    }

    #[test]
    fn the_cli_wrapper_form_parses_with_string_or_object() {
        let wrapped =
            serde_json::json!({"version": 1, "namespace": NAMESPACE, "configuration": EXAMPLE});
        let cap = Capability::parse(&wrapped.to_string()).expect("wrapped");
        assert_eq!(cap.sources.len(), 1);
        let inner: Value = serde_json::from_str(EXAMPLE).expect("example");
        let wrapped =
            serde_json::json!({"version": 1, "namespace": NAMESPACE, "configuration": inner});
        assert!(Capability::parse(&wrapped.to_string()).is_ok());

        let bad = serde_json::json!({"version": 1, "namespace": NAMESPACE, "configuration": "{\"sources\": 3}"});
        let e = errors_of(&bad.to_string());
        assert_eq!(e[0].path, "configuration.sources", "{e:?}");
        let bad = serde_json::json!({"version": 2, "namespace": "x", "configuration": "{"});
        let e = errors_of(&bad.to_string());
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["namespace", "version", "configuration"], "{e:?}");
    }

    #[test]
    fn defaults_apply() {
        let text = with(|v| {
            let s = &mut v["sources"][0];
            s["endpoint"] = serde_json::json!({"ipAddress": "plc-1.local"});
            s.as_object_mut()
                .map(|o| o.remove("minimumInterRequestDuration"));
            let t = &mut s["propertyGroups"][0]["tagPathDefinitions"][0];
            t.as_object_mut().map(|o| {
                o.remove("size");
                o.remove("transformation")
            });
        });
        let cap = Capability::parse(&text).expect("valid");
        let s = &cap.sources[0];
        assert_eq!((s.endpoint.port, s.endpoint.unit_id), (502, 1));
        assert_eq!(s.min_inter_request, Duration::ZERO);
        let t = &s.groups[0].tags[0];
        assert_eq!((t.size, t.transform), (2, Transform::NoSwap));
    }

    #[test]
    fn addresses_follow_the_sitewise_convention() {
        let ok = |s: &str, table, offset| {
            assert_eq!(parse_address(s), Ok(Address { table, offset }), "{s}")
        };
        ok("30001", Table::InputRegister, 0);
        ok("40001", Table::HoldingRegister, 0);
        ok("40100", Table::HoldingRegister, 99);
        ok("49999", Table::HoldingRegister, 9998);
        ok("465536", Table::HoldingRegister, 65535);
        ok("300010", Table::InputRegister, 9);
        ok("10001", Table::DiscreteInput, 0);
        ok("00001", Table::Coil, 0);
        ok("1", Table::Coil, 0);
        ok("9999", Table::Coil, 9998);
        for bad in [
            "", "40000", "0", "20001", "50001", "4000x", "-1", "4655370", "465537", "1e3",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = with(|v| {
            let s = &mut v["sources"][0];
            s["endpoint"]["port"] = serde_json::json!(70000);
            s["destination"]["streamName"] = serde_json::json!("a/b");
            let t = &mut s["propertyGroups"][0]["tagPathDefinitions"][0];
            t["address"] = serde_json::json!("20001");
            t["transformation"] = serde_json::json!("sideways");
            s["propertyGroups"][0]["scanMode"]["rate"] = serde_json::json!(0);
        });
        let e = errors_of(&text);
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "sources[0].destination.streamName",
                "sources[0].endpoint.port",
                "sources[0].propertyGroups[0].tagPathDefinitions[0].address",
                "sources[0].propertyGroups[0].tagPathDefinitions[0].transformation",
                "sources[0].propertyGroups[0].scanMode.rate",
            ],
            "{e:?}"
        );
        assert!(e[1].message.contains("1 to 65535"), "{e:?}");
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        for (text, path) in [
            ("", "CapabilityConfiguration"),
            ("{", "CapabilityConfiguration"),
            ("[]", "CapabilityConfiguration"),
            ("{}", "sources"),
            (r#"{"sources": []}"#, "sources"),
            (r#"{"sources": {}}"#, "sources"),
            (r#"{"sources": [7]}"#, "sources[0]"),
            (r#"{"sources": [{}]}"#, "sources[0].name"),
        ] {
            let e = errors_of(text);
            assert_eq!(e[0].path, path, "{text}: {e:?}");
        }
        let e = errors_of(&with(|v| {
            v["sources"][0]["propertyGroups"][0]["tagPathDefinitions"][0]["size"] =
                serde_json::json!("two")
        }));
        assert_eq!(
            e[0].path,
            "sources[0].propertyGroups[0].tagPathDefinitions[0].size"
        );
        let e = errors_of(&with(|v| {
            v["sources"][0]["propertyGroups"][0]["tagPathDefinitions"][0]["address"] =
                serde_json::json!(true)
        }));
        assert_eq!(
            e[0].path,
            "sources[0].propertyGroups[0].tagPathDefinitions[0].address"
        );
        let e = errors_of(&with(|v| {
            v["sources"][0]["endpoint"] = serde_json::json!("127.0.0.1")
        }));
        assert_eq!(e[0].path, "sources[0].endpoint");
    }

    #[test]
    fn types_sizes_and_tables_must_agree() {
        let tag =
            |t: Value| with(|v| v["sources"][0]["propertyGroups"][0]["tagPathDefinitions"][0] = t);
        let path = "sources[0].propertyGroups[0].tagPathDefinitions[0]";
        let e = errors_of(&tag(
            serde_json::json!({"tag": "a", "address": "40001", "size": 1,
            "srcDataType": "float", "dstDataType": "double"}),
        ));
        assert_eq!(e[0].path, format!("{path}.size"));
        let e = errors_of(&tag(serde_json::json!({"tag": "a", "address": "40001",
            "srcDataType": "hexdump", "dstDataType": "string"})));
        assert_eq!(e[0].path, format!("{path}.size"), "hexdump needs a size");
        let e = errors_of(&tag(
            serde_json::json!({"tag": "a", "address": "40001", "size": 126,
            "srcDataType": "hexdump", "dstDataType": "string"}),
        ));
        assert!(e[0].message.contains("at most 125"), "{e:?}");
        let e = errors_of(&tag(serde_json::json!({"tag": "a", "address": "00001",
            "srcDataType": "int16", "dstDataType": "integer"})));
        assert!(e[0].message.contains("hold bits"), "{e:?}");
        let e = errors_of(&tag(
            serde_json::json!({"tag": "a", "address": "40001", "size": 4,
            "srcDataType": "utf8", "dstDataType": "double"}),
        ));
        assert_eq!(e[0].path, format!("{path}.dstDataType"), "{e:?}");
        let e = errors_of(&tag(serde_json::json!({"tag": "a", "address": "465535",
            "srcDataType": "double", "dstDataType": "double"})));
        assert!(e[0].message.contains("past the end"), "{e:?}");
        let e = errors_of(&tag(serde_json::json!({"tag": "a", "address": "40001",
            "srcDataType": "complex", "dstDataType": "double"})));
        assert_eq!(e[0].path, format!("{path}.srcDataType"), "{e:?}");
        assert!(
            Capability::parse(&tag(serde_json::json!({"tag": "a", "address": "00001",
            "srcDataType": "bool", "dstDataType": "boolean"})))
            .is_ok()
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let text = with(|v| {
            let s = v["sources"][0].clone();
            if let Some(a) = v["sources"].as_array_mut() {
                a.push(s);
            }
        });
        let e = errors_of(&text);
        assert_eq!(e[0].path, "sources[1].name");
        assert!(e[0].message.contains("used twice"));
    }
}
