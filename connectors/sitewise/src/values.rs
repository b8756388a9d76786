//! OPC UA values into SiteWise `PutAssetPropertyValueEntry`s: the type
//! mapping, the quality from the status code, the timestamp, and the
//! deadband that decides whether a value is sent at all.
//!
//! Pure functions over what the server sent: nothing here can fail on
//! server input, a value SiteWise cannot hold is `None` and counted.
//!
//! * **Types.** Boolean → `booleanValue`; integers that fit SiteWise's
//!   32-bit `integerValue` → that, wider ones (`Int64`, `UInt32` above
//!   2^31−1, `UInt64`) → `doubleValue`; `Float`/`Double` → `doubleValue`
//!   (NaN and infinities have no JSON form: not sent); `String`,
//!   `LocalizedText` (its text), `DateTime` (RFC 3339), `Guid`,
//!   `NodeId`, `QualifiedName`, `StatusCode` → `stringValue`. Arrays,
//!   `ByteString`, `XmlElement`, structures: not sent (the
//!   opcuacollector:2 `typeConversions` are unsupported).
//! * **Quality.** The status code's severity: `GOOD`, `UNCERTAIN`, `BAD`;
//!   a value without a status is `GOOD` (Part 4: absent means Good).
//!   SiteWise entries need a value, so a `BAD` status without one is not
//!   sent.
//! * **Timestamp.** The source timestamp; the server timestamp if the
//!   source gave none; the time of receipt if neither.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use evergreen_streams::model::{
    AssetPropertyValue, PutAssetPropertyValueEntry, TimeInNanos, Variant as SwVariant,
};
use opcua::types::{DataValue, DateTime, StatusCode, Variant};

use crate::config::Deadband;

/// SiteWise's qualities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    Good,
    Uncertain,
    Bad,
}

impl Quality {
    pub fn of(status: Option<StatusCode>) -> Quality {
        match status {
            None => Quality::Good,
            Some(s) if s.is_good() => Quality::Good,
            Some(s) if s.is_uncertain() => Quality::Uncertain,
            Some(_) => Quality::Bad,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "GOOD",
            Quality::Uncertain => "UNCERTAIN",
            Quality::Bad => "BAD",
        }
    }
}

/// A value SiteWise can hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Boolean(bool),
    Integer(i32),
    Double(f64),
    String(String),
}

impl Value {
    /// The SiteWise form of an OPC UA scalar, `None` for what has none.
    pub fn from_variant(v: &Variant) -> Option<Value> {
        let int = |i: i64| match i32::try_from(i) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Double(i as f64),
        };
        let double = |d: f64| d.is_finite().then_some(Value::Double(d));
        Some(match v {
            Variant::Boolean(b) => Value::Boolean(*b),
            Variant::SByte(i) => Value::Integer(i32::from(*i)),
            Variant::Byte(i) => Value::Integer(i32::from(*i)),
            Variant::Int16(i) => Value::Integer(i32::from(*i)),
            Variant::UInt16(i) => Value::Integer(i32::from(*i)),
            Variant::Int32(i) => Value::Integer(*i),
            Variant::UInt32(i) => int(i64::from(*i)),
            Variant::Int64(i) => int(*i),
            Variant::UInt64(i) => match i64::try_from(*i) {
                Ok(i) => int(i),
                Err(_) => Value::Double(*i as f64),
            },
            Variant::Float(f) => return double(f64::from(*f)),
            Variant::Double(d) => return double(*d),
            Variant::String(s) => Value::String(s.as_ref().to_string()),
            Variant::LocalizedText(t) => Value::String(t.text.as_ref().to_string()),
            Variant::DateTime(d) => Value::String(d.to_rfc3339()),
            Variant::Guid(g) => Value::String(g.to_string()),
            Variant::NodeId(n) => Value::String(n.to_string()),
            Variant::QualifiedName(q) => Value::String(q.name.as_ref().to_string()),
            Variant::StatusCode(s) => Value::String(s.to_string()),
            Variant::Variant(inner) => return Value::from_variant(inner),
            _ => return None,
        })
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(f64::from(*i)),
            Value::Double(d) => Some(*d),
            _ => None,
        }
    }
}

/// One value of one node, ready for SiteWise.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub value: Value,
    pub quality: Quality,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i128,
}

fn ns_of(d: &DateTime) -> Option<i128> {
    if d.is_null() {
        return None;
    }
    let c = d.as_chrono();
    Some(i128::from(c.timestamp()) * 1_000_000_000 + i128::from(c.timestamp_subsec_nanos()))
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl Sample {
    /// The sample for a data value; `None` when SiteWise cannot take it.
    pub fn from_data_value(dv: &DataValue) -> Option<Sample> {
        let value = Value::from_variant(dv.value.as_ref()?)?;
        let timestamp_ns = dv
            .source_timestamp
            .as_ref()
            .and_then(ns_of)
            .or_else(|| dv.server_timestamp.as_ref().and_then(ns_of))
            .unwrap_or_else(now_ns);
        Some(Sample {
            value,
            quality: Quality::of(dv.status),
            timestamp_ns,
        })
    }

    /// The SiteWise entry for `alias` (its `entryId` is set by the sink).
    pub fn entry(&self, alias: &str) -> PutAssetPropertyValueEntry {
        let mut variant = SwVariant {
            string_value: None,
            integer_value: None,
            double_value: None,
            boolean_value: None,
        };
        match &self.value {
            Value::Boolean(b) => variant.boolean_value = Some(*b),
            Value::Integer(i) => variant.integer_value = Some(i64::from(*i)),
            Value::Double(d) => variant.double_value = Some(*d),
            Value::String(s) => variant.string_value = Some(s.clone()),
        }
        let secs = self.timestamp_ns.div_euclid(1_000_000_000);
        let nanos = self.timestamp_ns.rem_euclid(1_000_000_000);
        PutAssetPropertyValueEntry {
            entry_id: String::new(),
            asset_id: None,
            property_id: None,
            property_alias: Some(alias.to_string()),
            property_values: vec![AssetPropertyValue {
                value: variant,
                timestamp: TimeInNanos {
                    time_in_seconds: i64::try_from(secs).unwrap_or(0),
                    offset_in_nanos: Some(nanos as i64),
                },
                quality: Some(self.quality.as_str().to_string()),
            }],
        }
    }
}

/// The last value sent for one node, for the deadband.
#[derive(Debug, Clone)]
pub struct LastSent {
    value: Value,
    quality: Quality,
    at: Instant,
}

/// Whether `sample` passes `deadband` given what was sent last; records
/// it when it does.
pub fn pass(deadband: Option<&Deadband>, last: &mut Option<LastSent>, sample: &Sample) -> bool {
    let now = Instant::now();
    let send = match (deadband, last.as_ref()) {
        (None, _) | (_, None) => true,
        (Some(d), Some(l)) => {
            l.quality != sample.quality
                || d.timeout_ms
                    .is_some_and(|t| now.duration_since(l.at) >= Duration::from_millis(t))
                || match (l.value.as_f64(), sample.value.as_f64()) {
                    (Some(a), Some(b)) => (b - a).abs() > d.threshold,
                    // The deadband is for numbers: others go when they change.
                    _ => l.value != sample.value,
                }
        }
    };
    if send {
        *last = Some(LastSent {
            value: sample.value.clone(),
            quality: sample.quality,
            at: now,
        });
    }
    send
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_quality_and_timestamps_map_as_documented() {
        assert_eq!(
            Value::from_variant(&Variant::Int16(-3)),
            Some(Value::Integer(-3))
        );
        assert_eq!(
            Value::from_variant(&Variant::Int64(1 << 40)),
            Some(Value::Double((1u64 << 40) as f64))
        );
        assert_eq!(Value::from_variant(&Variant::Double(f64::NAN)), None);
        assert_eq!(
            Value::from_variant(&Variant::String("x".into())),
            Some(Value::String("x".into()))
        );
        assert_eq!(Value::from_variant(&Variant::Empty), None);
        assert_eq!(
            Quality::of(Some(StatusCode::BadNodeIdUnknown)),
            Quality::Bad
        );
        assert_eq!(
            Quality::of(Some(StatusCode::UncertainLastUsableValue)),
            Quality::Uncertain
        );
        assert_eq!(Quality::of(None), Quality::Good);
        let dv = DataValue {
            value: Some(Variant::Double(1.5)),
            status: Some(StatusCode::UncertainInitialValue),
            source_timestamp: Some(DateTime::ymd_hms_nano(2024, 1, 2, 3, 4, 5, 6_000)),
            ..Default::default()
        };
        let s = Sample::from_data_value(&dv).expect("sample");
        let v = serde_json::to_value(s.entry("/p/x")).expect("json");
        assert_eq!(v["propertyAlias"], "/p/x");
        assert_eq!(v["propertyValues"][0]["value"]["doubleValue"], 1.5);
        assert_eq!(v["propertyValues"][0]["quality"], "UNCERTAIN");
        assert_eq!(
            v["propertyValues"][0]["timestamp"]["timeInSeconds"],
            1_704_164_645i64
        );
        assert_eq!(v["propertyValues"][0]["timestamp"]["offsetInNanos"], 6_000);
    }

    #[test]
    fn the_deadband_holds_small_moves_back() {
        let d = Deadband {
            threshold: 1.0,
            timeout_ms: None,
        };
        let mut last = None;
        let s = |v: f64| Sample {
            value: Value::Double(v),
            quality: Quality::Good,
            timestamp_ns: 0,
        };
        assert!(pass(Some(&d), &mut last, &s(10.0)));
        assert!(!pass(Some(&d), &mut last, &s(10.5)));
        assert!(pass(Some(&d), &mut last, &s(11.5)));
        assert!(pass(None, &mut last, &s(11.5)));
    }
}
