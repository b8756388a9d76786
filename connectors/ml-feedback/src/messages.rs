//! Everything the connector publishes and names, built as values: the
//! status messages, the prediction message, the CloudWatch Metrics
//! connector's input, the object key, the `publish-ts` stamp, the
//! `x-amz-meta-*` headers and the `s3_response` of a success. Pure; the
//! shapes are V1's (the guide's examples).

use evergreen_aws::RawAnswer;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::settings::FeedbackConfig;

pub const STATUS_TOPIC: &str = "feedback/message/status";
pub const PREDICTION_TOPIC: &str = "feedback/message/prediction";
/// The CloudWatch Metrics connector's input topic.
pub const METRIC_TOPIC: &str = "cloudwatch/metric/put";
pub const METRIC_NAMESPACE: &str = "GreengrassFeedbackConnector";
/// The metadata key the connector adds.
pub const PUBLISH_TS: &str = "publish-ts";

/// The status of a sample the strategy dropped.
pub const SAMPLE_DROPPED: &str = "sample_dropped_by_strategy";
/// The `error` of a request refused because the queue is full (V1's
/// Python 2 exception name).
pub const QUEUE_FULL: &str = "Queue.Full";
/// The `error` of a request refused as invalid (the Python exception V1
/// named there).
pub const INVALID_INPUT: &str = "ValueError";

/// The metrics, with their units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Bytes of a sample, before its upload.
    SampleSize,
    SampleUploadSuccess,
    SampleAndPredictionPublished,
    SampleUploadFailure,
    SampleNotUsed,
    ErrorRequestThrottled,
    /// A request refused as invalid (V1's connector counted these too,
    /// though the guide does not list it).
    ErrorInvalidInput,
    /// The configuration could not be read at start (likewise V1's).
    ErrorInvalidConnectorConfig,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::SampleSize => "SampleSize",
            Metric::SampleUploadSuccess => "SampleUploadSuccess",
            Metric::SampleAndPredictionPublished => "SampleAndPredictionPublished",
            Metric::SampleUploadFailure => "SampleUploadFailure",
            Metric::SampleNotUsed => "SampleNotUsed",
            Metric::ErrorRequestThrottled => "ErrorRequestThrottled",
            Metric::ErrorInvalidInput => "ErrorInvalidInput",
            Metric::ErrorInvalidConnectorConfig => "ErrorInvalidConnectorConfig",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::SampleSize => "Bytes",
            _ => "Count",
        }
    }
}

/// The CloudWatch Metrics connector's input for one datum (a count or a
/// size: whole numbers, printed as V1's examples print them). No dimensions:
/// V1's examples have none, and the CloudWatch connector adds `coreName`;
/// a dimension of our own would make these metrics different ones from
/// V1's, and alarms on them would stop seeing data.
pub fn metric(m: Metric, value: u64) -> Value {
    json!({"request": {"namespace": METRIC_NAMESPACE, "metricData": {
        "value": value, "unit": m.unit(), "metricName": m.name()}}})
}

/// `{"response":{"status":"success","s3_response":…},"id":…}`.
pub fn success_status(id: &str, s3_response: Value) -> Value {
    json!({"response": {"status": "success", "s3_response": s3_response}, "id": id})
}

/// `{"response":{"status":"sample_dropped_by_strategy"},"id":…}`.
pub fn dropped_status(id: &str) -> Value {
    json!({"response": {"status": SAMPLE_DROPPED}, "id": id})
}

/// `{"response":{"status":"fail","error":…,"error_message":…},"id":…}`.
pub fn failure_status(id: &str, error: &str, message: &str) -> Value {
    json!({"response": {"status": "fail", "error": error, "error_message": message}, "id": id})
}

/// The guide's words for a full queue.
pub fn queue_full_message(limit: usize) -> String {
    format!("Request limit has been reached (max request: {limit} ). Dropping request.")
}

/// V1's words for a failed upload; `code` and `detail` are the service's
/// error code and message (or the transport failure's).
pub fn upload_failed_message(id: &str, code: &str, detail: &str, tries: u32) -> String {
    let after = if tries > 1 {
        format!(" (after {tries} tries)")
    } else {
        String::new()
    };
    format!(
        "[RequestId: {id}] Failed to upload model input data due to exception. Model prediction \
         will not be published. Exception type: {code}, error: An error occurred ({code}) when \
         calling the PutObject operation: {detail}{after}"
    )
}

/// `{"source-ref":"s3://bucket/key","model-prediction":…,"config-id":…,"metadata":…}`.
pub fn prediction_message(
    bucket: &str,
    key: &str,
    prediction: &Value,
    config_id: &str,
    metadata: &Map<String, Value>,
) -> Value {
    json!({
        "source-ref": format!("s3://{bucket}/{key}"),
        "model-prediction": prediction,
        "config-id": config_id,
        "metadata": metadata,
    })
}

/// `2019-07-11 00:12:48.816752`: what V1's `str(datetime.utcnow())`
/// printed (always with six digits here; Python drops them at exactly
/// `.000000`).
pub fn publish_ts(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// `<prefix>/<uuid>.<ext>`, without the `/` when there is no prefix and
/// without the `.` when there is no extension.
pub fn object_key(config: &FeedbackConfig, uuid: &str) -> String {
    let mut key = String::new();
    if !config.prefix.is_empty() {
        key.push_str(&config.prefix);
        key.push('/');
    }
    key.push_str(uuid);
    if !config.file_ext.is_empty() {
        key.push('.');
        key.push_str(&config.file_ext);
    }
    key
}

/// A metadata value as an object's header carries it: a string as it is,
/// anything else as its JSON text.
pub fn metadata_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `x-amz-meta-*` headers of `metadata` (names lowercased: S3 stores
/// them so). The request was checked on arrival ([`crate::request`]), so
/// every name and value fits in a header.
pub fn metadata_headers(metadata: &Map<String, Value>) -> Vec<(String, String)> {
    metadata
        .iter()
        .map(|(k, v)| {
            (
                format!("x-amz-meta-{}", k.to_ascii_lowercase()),
                metadata_value(v),
            )
        })
        .collect()
}

/// The `s3_response` of a success: what boto3's `put_object` returned in
/// V1 (`ResponseMetadata`, `ETag`, and `VersionId`, `Expiration`,
/// `ServerSideEncryption` when S3 sent them) plus `bucket` and `key`.
pub fn s3_response(answer: &RawAnswer, bucket: &str, key: &str, retries: u32) -> Value {
    let headers: Map<String, Value> = answer
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut meta = Map::new();
    if let Some(id) = answer.header("x-amz-request-id") {
        meta.insert("RequestId".into(), id.into());
    }
    if let Some(host) = answer.header("x-amz-id-2") {
        meta.insert("HostId".into(), host.into());
    }
    meta.insert("HTTPStatusCode".into(), answer.status.into());
    meta.insert("HTTPHeaders".into(), Value::Object(headers));
    meta.insert("RetryAttempts".into(), retries.into());
    let mut out = Map::new();
    out.insert("ResponseMetadata".into(), Value::Object(meta));
    for (field, header) in [
        ("ETag", "etag"),
        ("VersionId", "x-amz-version-id"),
        ("Expiration", "x-amz-expiration"),
        ("ServerSideEncryption", "x-amz-server-side-encryption"),
    ] {
        if let Some(v) = answer.header(header) {
            out.insert(field.into(), v.into());
        }
    }
    out.insert("bucket".into(), bucket.into());
    out.insert("key".into(), key.into());
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: &str, ext: &str) -> FeedbackConfig {
        FeedbackConfig {
            bucket: "b".into(),
            content_type: "image/png".into(),
            prefix: prefix.into(),
            file_ext: ext.into(),
            strategy: None,
        }
    }

    #[test]
    fn keys_join_prefix_uuid_and_extension() {
        let u = "5aaa913f-97a3-48ac-5907-18cd96b89eeb";
        assert_eq!(
            object_key(&config("DeviceA", "png"), u),
            format!("DeviceA/{u}.png")
        );
        assert_eq!(object_key(&config("a/b", ""), u), format!("a/b/{u}"));
        assert_eq!(object_key(&config("", "tar.gz"), u), format!("{u}.tar.gz"));
        assert_eq!(object_key(&config("", ""), u), u);
    }

    #[test]
    fn publish_ts_is_v1s_format_in_utc() {
        let at = time::macros::datetime!(2019-07-11 00:12:48.816752 UTC);
        assert_eq!(publish_ts(at), "2019-07-11 00:12:48.816752");
        let east = time::macros::datetime!(2019-07-11 02:12:48.000001 +02:00);
        assert_eq!(publish_ts(east), "2019-07-11 00:12:48.000001");
    }

    #[test]
    fn statuses_have_the_guide_shape() {
        assert_eq!(
            dropped_status("4bf5"),
            json!({"response": {"status": "sample_dropped_by_strategy"}, "id": "4bf5"})
        );
        assert_eq!(
            failure_status("4bf5", QUEUE_FULL, &queue_full_message(10)),
            json!({"response": {"status": "fail", "error": "Queue.Full",
                "error_message": "Request limit has been reached (max request: 10 ). Dropping request."},
                "id": "4bf5"})
        );
        let m = upload_failed_message(
            "r1",
            "NoSuchBucket",
            "The specified bucket does not exist",
            1,
        );
        assert_eq!(
            m,
            "[RequestId: r1] Failed to upload model input data due to exception. Model prediction will \
             not be published. Exception type: NoSuchBucket, error: An error occurred (NoSuchBucket) when \
             calling the PutObject operation: The specified bucket does not exist"
        );
        assert!(upload_failed_message("r1", "InternalError", "x", 5).ends_with("x (after 5 tries)"));
        let answer = RawAnswer {
            status: 200,
            headers: vec![
                ("etag".into(), "\"abc\"".into()),
                ("x-amz-request-id".into(), "RID".into()),
            ],
            body: Vec::new(),
        };
        let s = success_status("r1", s3_response(&answer, "bkt", "p/u.png", 0));
        assert_eq!(s["response"]["status"], "success");
        assert_eq!(s["response"]["s3_response"]["ETag"], "\"abc\"");
        assert_eq!(s["response"]["s3_response"]["bucket"], "bkt");
        assert_eq!(s["response"]["s3_response"]["key"], "p/u.png");
        assert_eq!(
            s["response"]["s3_response"]["ResponseMetadata"]["RequestId"],
            "RID"
        );
        assert_eq!(
            s["response"]["s3_response"]["ResponseMetadata"]["HTTPStatusCode"],
            200
        );
        assert_eq!(s["id"], "r1");
    }

    #[test]
    fn prediction_and_metric_messages() {
        let mut meta = Map::new();
        meta.insert(PUBLISH_TS.into(), "2019-07-11 00:12:48.816752".into());
        assert_eq!(
            prediction_message(
                "bkt",
                "s3-key-prefix/U.ext",
                &json!([0.5, 0.2, 0.2, 0.1]),
                "ConfigID2",
                &meta
            ),
            json!({"source-ref": "s3://bkt/s3-key-prefix/U.ext", "model-prediction": [0.5, 0.2, 0.2, 0.1],
                "config-id": "ConfigID2", "metadata": {"publish-ts": "2019-07-11 00:12:48.816752"}})
        );
        assert_eq!(
            metric(Metric::SampleSize, 47592),
            json!({"request": {"namespace": "GreengrassFeedbackConnector",
                "metricData": {"value": 47592, "unit": "Bytes", "metricName": "SampleSize"}}})
        );
        assert_eq!(
            metric(Metric::ErrorRequestThrottled, 1)["request"]["metricData"]["unit"],
            "Count"
        );
    }

    #[test]
    fn metadata_becomes_amz_meta_headers() {
        let meta: Map<String, Value> =
            serde_json::from_value(json!({"Camera": "front", "n": 3, "ok": true})).expect("object");
        assert_eq!(
            metadata_headers(&meta),
            vec![
                ("x-amz-meta-camera".to_string(), "front".to_string()),
                ("x-amz-meta-n".to_string(), "3".to_string()),
                ("x-amz-meta-ok".to_string(), "true".to_string()),
            ]
        );
    }
}
