//! `PutMetricData` as this connector sends it: query protocol, version
//! 2010-08-01, `Namespace` plus `MetricData.member.N.*` parameters. Pure:
//! the call itself is `evergreen_aws::AwsClient::query` in the crate root.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::request::Datum;

/// The signing name, and the key of `ComponentConfig::endpoints`.
pub const SERVICE: &str = "monitoring";
pub const VERSION: &str = "2010-08-01";
pub const ACTION: &str = "PutMetricData";

/// `2018-10-08T19:35:24Z` (milliseconds shown when there are any).
pub fn timestamp(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// A value as CloudWatch parses it: shortest round-trip form, with an
/// exponent for large and small magnitudes (`123.0`, `1.5e108`).
pub fn value(v: f64) -> String {
    format!("{v:?}")
}

/// The parameters of one datum, member `n` (1-based).
pub fn datum_params(n: usize, d: &Datum, out: &mut Vec<(String, String)>) {
    let p = format!("MetricData.member.{n}");
    out.push((format!("{p}.MetricName"), d.metric_name.clone()));
    out.push((format!("{p}.Value"), value(d.value)));
    out.push((format!("{p}.Timestamp"), timestamp(d.timestamp_ms)));
    if let Some(unit) = &d.unit {
        out.push((format!("{p}.Unit"), unit.clone()));
    }
    for (i, (name, val)) in d.dimensions.iter().enumerate() {
        out.push((
            format!("{p}.Dimensions.member.{}.Name", i + 1),
            name.clone(),
        ));
        out.push((
            format!("{p}.Dimensions.member.{}.Value", i + 1),
            val.clone(),
        ));
    }
}

/// Every parameter of a `PutMetricData` call but `Action` and `Version`.
pub fn params(namespace: &str, data: &[Datum]) -> Vec<(String, String)> {
    let mut out = vec![("Namespace".to_string(), namespace.to_string())];
    for (i, d) in data.iter().enumerate() {
        datum_params(i + 1, d, &mut out);
    }
    out
}

/// About how many bytes a datum adds to the request (before URL
/// encoding), for the request size limit.
pub fn estimated_size(d: &Datum) -> usize {
    // Parameter names ("MetricData.member.20.Dimensions.member.11.Value")
    // plus separators: a generous 64 per parameter.
    let fixed = 4 * 64 + 40;
    let text = d.metric_name.len()
        + d.unit.as_ref().map_or(0, String::len)
        + d.dimensions
            .iter()
            .map(|(n, v)| n.len() + v.len() + 2 * 64)
            .sum::<usize>();
    fixed + text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_follow_the_query_protocol() {
        let d = Datum {
            metric_name: "latency".into(),
            dimensions: vec![
                ("hostname".into(), "h".into()),
                ("coreName".into(), "c".into()),
            ],
            timestamp_ms: 1_539_027_324_000,
            value: 123.0,
            unit: Some("Seconds".into()),
        };
        let mut second = d.clone();
        second.unit = None;
        second.value = 1.5e108;
        second.timestamp_ms = 1_539_027_324_250;
        second.dimensions.truncate(1);
        let got = params("Greengrass", &[d, second]);
        let want: Vec<(String, String)> = [
            ("Namespace", "Greengrass"),
            ("MetricData.member.1.MetricName", "latency"),
            ("MetricData.member.1.Value", "123.0"),
            ("MetricData.member.1.Timestamp", "2018-10-08T19:35:24Z"),
            ("MetricData.member.1.Unit", "Seconds"),
            ("MetricData.member.1.Dimensions.member.1.Name", "hostname"),
            ("MetricData.member.1.Dimensions.member.1.Value", "h"),
            ("MetricData.member.1.Dimensions.member.2.Name", "coreName"),
            ("MetricData.member.1.Dimensions.member.2.Value", "c"),
            ("MetricData.member.2.MetricName", "latency"),
            ("MetricData.member.2.Value", "1.5e108"),
            ("MetricData.member.2.Timestamp", "2018-10-08T19:35:24.25Z"),
            ("MetricData.member.2.Dimensions.member.1.Name", "hostname"),
            ("MetricData.member.2.Dimensions.member.1.Value", "h"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        assert_eq!(value(-8.51592e-109), "-8.51592e-109");
    }
}
