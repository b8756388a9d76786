//! Turns a message on `cloudwatch/metric/put` into a metric datum for a
//! namespace, or into the failure that names the bad field. Never panics
//! on outside input; knows nothing of buffers or the service.

use evergreen_connector_kit::status::{clip, kind};
use serde_json::{Map, Value};

/// The input topic.
pub const INPUT_TOPIC: &str = "cloudwatch/metric/put";
/// The error code of every input the connector refuses before buffering.
pub const INVALID_INPUT: &str = "InvalidInputException";
/// Dimensions a message may carry (the connector adds `coreName`).
pub const MAX_DIMENSIONS: usize = 10;
/// The dimension the connector adds to every metric.
pub const CORE_NAME: &str = "coreName";
/// CloudWatch's smallest and largest magnitudes for a value (besides 0).
pub const MIN_MAGNITUDE: f64 = 8.515920e-109;
pub const MAX_MAGNITUDE: f64 = 1.174271e+108;
/// CloudWatch's limits on names (metric, namespace, dimension names and values).
pub const MAX_NAME: usize = 255;

/// The units CloudWatch knows.
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One metric datum, as `PutMetricData` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub metric_name: String,
    /// `(name, value)`, the message's then `coreName`.
    pub dimensions: Vec<(String, String)>,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    pub value: f64,
    pub unit: Option<String>,
}

/// A metric the connector accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub namespace: String,
    pub datum: Datum,
}

/// A message the connector refuses, with what the failure status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The namespace, when the message had a string there.
    pub namespace: Option<String>,
    pub message: String,
}

fn invalid(namespace: Option<&str>, message: impl Into<String>) -> Invalid {
    Invalid {
        namespace: namespace.map(str::to_string),
        message: message.into(),
    }
}

/// Parses `{"request": {"namespace": …, "metricData": {…}}}`. `core_name`
/// becomes the `coreName` dimension (replacing one the message gave);
/// `now_ms` is the timestamp of a datum without one.
pub fn parse(payload: &[u8], core_name: &str, now_ms: i64) -> Result<Metric, Invalid> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| invalid(None, format!("the message is not JSON: {e}")))?;
    let Value::Object(message) = value else {
        return Err(invalid(None, "the message must be a JSON object"));
    };
    let request = match message.get("request") {
        None | Some(Value::Null) => return Err(invalid(None, "request is missing")),
        Some(Value::Object(r)) => r,
        Some(other) => {
            return Err(invalid(
                None,
                format!("request must be an object, got {}", kind(other)),
            ))
        }
    };
    let namespace = match request.get("namespace") {
        None | Some(Value::Null) => return Err(invalid(None, "request.namespace is missing")),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(invalid(
                None,
                format!("request.namespace must be a string, got {}", kind(other)),
            ))
        }
    };
    let ns = Some(namespace);
    if namespace.is_empty() || namespace.starts_with(':') {
        return Err(invalid(
            ns,
            "request.namespace must not be empty or start with ':'",
        ));
    }
    if namespace.starts_with("AWS/") {
        return Err(invalid(
            ns,
            "request.namespace must not start with AWS/ (reserved for AWS services)",
        ));
    }
    if namespace.chars().count() > MAX_NAME {
        return Err(invalid(
            ns,
            format!("request.namespace is longer than {MAX_NAME} characters"),
        ));
    }
    let data = match request.get("metricData") {
        None | Some(Value::Null) => return Err(invalid(ns, "request.metricData is missing")),
        Some(Value::Object(d)) => d,
        Some(other) => {
            return Err(invalid(
                ns,
                format!(
                    "request.metricData must be an object (one datum), got {}",
                    kind(other)
                ),
            ))
        }
    };
    let datum = parse_datum(data, core_name, now_ms).map_err(|m| invalid(ns, m))?;
    Ok(Metric {
        namespace: namespace.to_string(),
        datum,
    })
}

fn parse_datum(data: &Map<String, Value>, core_name: &str, now_ms: i64) -> Result<Datum, String> {
    const P: &str = "request.metricData";
    let metric_name = match data.get("metricName") {
        None | Some(Value::Null) => return Err(format!("{P}.metricName is missing")),
        Some(Value::String(s)) if s.is_empty() => return Err(format!("{P}.metricName is empty")),
        Some(Value::String(s)) if s.chars().count() > MAX_NAME => {
            return Err(format!(
                "{P}.metricName is longer than {MAX_NAME} characters"
            ))
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "{P}.metricName must be a string, got {}",
                kind(other)
            ))
        }
    };
    let value = match data.get("value") {
        None | Some(Value::Null) => return Err(format!("{P}.value is missing")),
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| format!("{P}.value is not a double"))?,
        Some(other) => return Err(format!("{P}.value must be a number, got {}", kind(other))),
    };
    let magnitude = value.abs();
    if !value.is_finite()
        || (magnitude != 0.0 && !(MIN_MAGNITUDE..=MAX_MAGNITUDE).contains(&magnitude))
    {
        return Err(format!(
            "{P}.value {value:e} is out of range: CloudWatch takes 0 or magnitudes from {MIN_MAGNITUDE:e} to {MAX_MAGNITUDE:e}"
        ));
    }
    let unit = match data.get("unit") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if UNITS.contains(&u.as_str()) => Some(u.clone()),
        Some(Value::String(u)) => {
            return Err(format!(
                "{P}.unit `{}` is not a CloudWatch unit ({})",
                short(u),
                UNITS.join(", ")
            ))
        }
        Some(other) => return Err(format!("{P}.unit must be a string, got {}", kind(other))),
    };
    let timestamp_ms = match data.get("timestamp") {
        None | Some(Value::Null) => now_ms,
        Some(Value::Number(n)) => match n.as_f64() {
            // Seconds since the epoch, fractions kept to the millisecond;
            // negative or beyond year 9999 cannot be a CloudWatch time.
            Some(s) if s.is_finite() && (0.0..253_402_300_800.0).contains(&s) => {
                (s * 1000.0).round() as i64
            }
            _ => {
                return Err(format!(
                    "{P}.timestamp must be seconds since the epoch (0 to 253402300799)"
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "{P}.timestamp must be a number of seconds since the epoch, got {}",
                kind(other)
            ))
        }
    };
    let mut dimensions = Vec::new();
    match data.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            if items.len() > MAX_DIMENSIONS {
                return Err(format!(
                    "{P}.dimensions has {} entries; at most {MAX_DIMENSIONS}",
                    items.len()
                ));
            }
            for (i, item) in items.iter().enumerate() {
                let field = |k: &str| -> Result<String, String> {
                    match item.get(k) {
                        Some(Value::String(s))
                            if !s.is_empty() && s.chars().count() <= MAX_NAME =>
                        {
                            Ok(s.clone())
                        }
                        Some(Value::String(_)) => Err(format!(
                            "{P}.dimensions[{i}].{k} must be 1 to {MAX_NAME} characters"
                        )),
                        None | Some(Value::Null) => {
                            Err(format!("{P}.dimensions[{i}].{k} is missing"))
                        }
                        Some(other) => Err(format!(
                            "{P}.dimensions[{i}].{k} must be a string, got {}",
                            kind(other)
                        )),
                    }
                };
                if !item.is_object() {
                    return Err(format!(
                        "{P}.dimensions[{i}] must be an object {{\"name\", \"value\"}}, got {}",
                        kind(item)
                    ));
                }
                let (name, value) = (field("name")?, field("value")?);
                if dimensions.iter().any(|(n, _)| *n == name) {
                    return Err(format!(
                        "{P}.dimensions[{i}].name `{}` is repeated",
                        short(&name)
                    ));
                }
                // The connector's own dimension wins over the message's.
                if name != CORE_NAME {
                    dimensions.push((name, value));
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "{P}.dimensions must be an array of {{\"name\", \"value\"}}, got {}",
                kind(other)
            ))
        }
    }
    dimensions.push((CORE_NAME.to_string(), core_name.to_string()));
    Ok(Datum {
        metric_name,
        dimensions,
        timestamp_ms,
        value,
        unit,
    })
}

/// At most 100 characters of `s`, for messages.
fn short(s: &str) -> String {
    clip(s, 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn the_reference_example_parses_with_core_name_added() {
        let msg =
            br#"{"request": {"namespace": "Greengrass", "metricData": {"metricName": "latency",
            "dimensions": [{"name": "hostname", "value": "test_hostname"}], "timestamp": 1539027324,
            "value": 123.0, "unit": "Seconds"}}}"#;
        let m = parse(msg, "core-1", NOW).expect("valid");
        assert_eq!(m.namespace, "Greengrass");
        assert_eq!(
            m.datum,
            Datum {
                metric_name: "latency".into(),
                dimensions: vec![
                    ("hostname".into(), "test_hostname".into()),
                    ("coreName".into(), "core-1".into())
                ],
                timestamp_ms: 1_539_027_324_000,
                value: 123.0,
                unit: Some("Seconds".into()),
            }
        );
        let m = parse(
            br#"{"request": {"namespace": "N", "metricData": {"metricName": "m", "value": 0,
                 "timestamp": 1.5, "dimensions": [{"name": "coreName", "value": "spoof"}]}}}"#,
            "core-1",
            NOW,
        )
        .expect("valid");
        assert_eq!(m.datum.timestamp_ms, 1500);
        assert_eq!(
            m.datum.dimensions,
            vec![("coreName".into(), "core-1".into())]
        );
        let m = parse(
            br#"{"request": {"namespace": "N", "metricData": {"metricName": "m", "value": -2.5}}}"#,
            "c",
            NOW,
        )
        .expect("valid");
        assert_eq!(m.datum.timestamp_ms, NOW, "receive time");
        assert_eq!(m.datum.unit, None);
    }

    #[test]
    fn bad_messages_name_the_bad_field() {
        let ok_data = r#""metricName": "m", "value": 1"#;
        let cases: Vec<(String, &str, Option<&str>)> = vec![
            ("nope".into(), "not JSON", None),
            ("[]".into(), "JSON object", None),
            ("{}".into(), "request is missing", None),
            (r#"{"request": 1}"#.into(), "request must be an object", None),
            (r#"{"request": {}}"#.into(), "request.namespace is missing", None),
            (r#"{"request": {"namespace": 7}}"#.into(), "request.namespace must be a string", None),
            (r#"{"request": {"namespace": "AWS/EC2", "metricData": {}}}"#.into(), "must not start with AWS/", Some("AWS/EC2")),
            (r#"{"request": {"namespace": ":x", "metricData": {}}}"#.into(), "start with ':'", Some(":x")),
            (r#"{"request": {"namespace": "N"}}"#.into(), "request.metricData is missing", Some("N")),
            (r#"{"request": {"namespace": "N", "metricData": []}}"#.into(), "request.metricData must be an object", Some("N")),
            (r#"{"request": {"namespace": "N", "metricData": {"value": 1}}}"#.into(), "request.metricData.metricName is missing", Some("N")),
            (r#"{"request": {"namespace": "N", "metricData": {"metricName": "m"}}}"#.into(), "request.metricData.value is missing", Some("N")),
            (r#"{"request": {"namespace": "N", "metricData": {"metricName": "m", "value": "1"}}}"#.into(), "request.metricData.value must be a number", Some("N")),
            (r#"{"request": {"namespace": "N", "metricData": {"metricName": "m", "value": 1e200}}}"#.into(), "request.metricData.value 1e200 is out of range", Some("N")),
            (r#"{"request": {"namespace": "N", "metricData": {"metricName": "m", "value": 1e-200}}}"#.into(), "out of range", Some("N")),
            (format!(r#"{{"request": {{"namespace": "N", "metricData": {{{ok_data}, "unit": "Hours"}}}}}}"#), "request.metricData.unit `Hours` is not a CloudWatch unit", Some("N")),
            (format!(r#"{{"request": {{"namespace": "N", "metricData": {{{ok_data}, "timestamp": "now"}}}}}}"#), "request.metricData.timestamp must be a number", Some("N")),
            (format!(r#"{{"request": {{"namespace": "N", "metricData": {{{ok_data}, "timestamp": -1}}}}}}"#), "request.metricData.timestamp must be seconds", Some("N")),
            (format!(r#"{{"request": {{"namespace": "N", "metricData": {{{ok_data}, "dimensions": {{}}}}}}}}"#), "request.metricData.dimensions must be an array", Some("N")),
            (format!(r#"{{"request": {{"namespace": "N", "metricData": {{{ok_data}, "dimensions": [{{"name": "a"}}]}}}}}}"#), "request.metricData.dimensions[0].value is missing", Some("N")),
            (format!(r#"{{"request": {{"namespace": "N", "metricData": {{{ok_data}, "dimensions": [{{"name": "a", "value": "1"}}, {{"name": "a", "value": "2"}}]}}}}}}"#), "request.metricData.dimensions[1].name `a` is repeated", Some("N")),
            (format!(r#"{{"request": {{"namespace": "N", "metricData": {{{ok_data}, "dimensions": [3]}}}}}}"#), "request.metricData.dimensions[0] must be an object", Some("N")),
        ];
        for (payload, needle, ns) in &cases {
            let e = parse(payload.as_bytes(), "c", NOW).expect_err(needle);
            assert!(e.message.contains(needle), "{needle}: {}", e.message);
            assert_eq!(e.namespace.as_deref(), *ns, "{needle}");
        }
        let eleven: Vec<String> = (0..11)
            .map(|i| format!(r#"{{"name": "d{i}", "value": "v"}}"#))
            .collect();
        let msg = format!(
            r#"{{"request": {{"namespace": "N", "metricData": {{{ok_data}, "dimensions": [{}]}}}}}}"#,
            eleven.join(",")
        );
        let e = parse(msg.as_bytes(), "c", NOW).expect_err("11 dimensions");
        assert!(
            e.message
                .contains("request.metricData.dimensions has 11 entries"),
            "{}",
            e.message
        );
    }
}
