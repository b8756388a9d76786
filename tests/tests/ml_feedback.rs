//! End-to-end: the ML Feedback connector (`MLFeedback` v1, container only as in V1) called by
//! a V1-style Python function through the ML SDK's feedback client (`publish(ConfigId,
//! ModelInput, ModelPrediction, Metadata)`), uploading to S3 (moto) and publishing what V1's
//! connector documentation shows:
//! * the sample lands in `s3://<s3-bucket-name>/<s3-prefix>/<uuid>.<file-ext>` with the
//!   configured `content-type` and the metadata (with `publish-ts`);
//! * `feedback/message/status` says `success` with the bucket and key, and
//!   `sample_dropped_by_strategy` for a sample the strategy drops (`LEAST_CONFIDENCE` with a
//!   confident prediction); a bucket that does not exist is a failure status (`NoSuchBucket`);
//! * `feedback/message/prediction` carries `source-ref`, `model-prediction`, `config-id` and
//!   the metadata;
//! * `cloudwatch/metric/put` carries the connector's metrics (namespace
//!   `GreengrassFeedbackConnector`) in the CloudWatch Metrics connector's input format;
//! * an unknown `ConfigId` raises `GreengrassFeedbackException` in the caller.

use std::time::Duration;

use evergreen_tests::{require_containers, *};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);
const FEEDBACK: &str = "arn:aws:greengrass:us-east-1::/connectors/MLFeedback/versions/1";

const CALLER: &str = r#"
import json
import threading

import greengrasssdk
import greengrass_machine_learning_sdk as ml

iot = greengrasssdk.client('iot-data')


def publish(config, prediction):
    try:
        ml.client('feedback').publish(ConfigId=config, ModelInput=b'\xff\xd8jpeg-bytes',
                                      ModelPrediction=prediction, Metadata={'camera': 'line-3'})
        return 'ok'
    except ml.GreengrassFeedbackException as e:
        return 'feedback_error: ' + str(e)
    except ml.GreengrassDependencyException as e:
        return 'dependency_error: ' + str(e)


def run():
    got = {
        'all': publish('all-samples', [0.2, 0.8]),
        'unsure': publish('unsure-only', [0.05, 0.95]),
        'nobucket': publish('no-bucket', [0.5, 0.5]),
        'unknown': publish('not-configured', [0.5, 0.5]),
    }
    iot.publish(topic='caller/result', payload=json.dumps(got))


threading.Thread(target=run).start()


def handler(event, context):
    return
"#;

/// The objects of bucket `feedback` with their body, content type and metadata (boto3).
fn objects(moto: &Moto) -> Value {
    let out = boto3_s3(
        moto,
        "import json\n\
         got = {}\n\
         for o in s3.list_objects_v2(Bucket='feedback').get('Contents', []):\n\
         \x20   r = s3.get_object(Bucket='feedback', Key=o['Key'])\n\
         \x20   got[o['Key']] = {'body': r['Body'].read().decode('latin-1'),\n\
         \x20       'content_type': r['ContentType'], 'metadata': r['Metadata']}\n\
         print(json.dumps(got))\n",
        &[],
    );
    serde_json::from_slice(&out).unwrap_or(Value::Null)
}

#[test]
fn feedback_samples_reach_s3_with_status_prediction_and_metrics() {
    require_containers!();
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let Some(moto) = Moto::start() else {
        return;
    };
    boto3_s3(&moto, "s3.create_bucket(Bucket='feedback')\n", &[]);
    let dir = tempfile::tempdir().expect("tmp");
    let work = dir.path().join("work");
    let code = python_package(&work, "caller", &sdk, &[("caller.py", CALLER)]);
    let out = work.join("got.jsonl");
    let map = json!({
        "all-samples": { "s3-bucket-name": "feedback", "content-type": "image/jpeg",
                         "s3-prefix": "samples", "file-ext": "jpg" },
        "unsure-only": { "s3-bucket-name": "feedback", "content-type": "image/jpeg",
                         "sampling-strategy": { "strategy-name": "LEAST_CONFIDENCE", "threshold": 0.6 } },
        "no-bucket": { "s3-bucket-name": "no-such-bucket-here", "content-type": "image/jpeg" }
    });
    let mut g = group(
        vec![
            python_function("caller", &code, "caller.handler", true, 60),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![
            sub("c", &fn_arn("caller"), "caller/#", &fn_arn("rec")),
            sub("s", FEEDBACK, "feedback/message/#", &fn_arn("rec")),
            sub("m", FEEDBACK, "cloudwatch/metric/put", &fn_arn("rec")),
        ],
    );
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
        "Id": "feedback", "ConnectorArn": FEEDBACK,
        "Parameters": { "FeedbackConfigurationMap": map.to_string(), "RequestLimit": "10" }
    }]});
    assert_valid_group(dir.path(), &g);
    let mut config = moto.core_config();
    merge(
        &mut config,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
    );
    let rt = Runtime::start_config_in(dir, &g, &config, &[]);
    let connector_log = rt.log_path("user/us-east-1/aws/MLFeedback.log");
    let diagnose = || {
        format!(
            "caller:\n{}\nconnector:\n{}\nruntime:\n{}",
            read(&rt.function_log("caller")),
            read(&connector_log),
            read(&rt.log_path("system/runtime.log"))
        )
    };
    let result = wait_for(LIMIT, || on_topic(&out, "caller/result").into_iter().next())
        .unwrap_or_else(|| panic!("no result from the caller:\n{}", diagnose()));
    assert_eq!(result["all"], "ok", "{result}");
    assert_eq!(result["unsure"], "ok", "{result}");
    assert_eq!(result["nobucket"], "ok", "accepted, fails later: {result}");
    let unknown = result["unknown"].as_str().unwrap_or_default();
    assert!(
        unknown.starts_with("feedback_error: ") && unknown.contains("not-configured"),
        "{result}"
    );

    // Three statuses for the three accepted samples (the unknown ConfigId's is a fail too).
    let statuses = wait_for(LIMIT, || {
        let s = on_topic(&out, "feedback/message/status");
        (s.len() >= 4).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "statuses: {:?}\n{}",
            on_topic(&out, "feedback/message/status"),
            diagnose()
        )
    });
    let success: Vec<&Value> = statuses
        .iter()
        .filter(|s| s["response"]["status"] == "success")
        .collect();
    assert_eq!(success.len(), 1, "{statuses:?}");
    let s3 = &success[0]["response"]["s3_response"];
    assert_eq!(s3["bucket"], "feedback", "{statuses:?}");
    let key = s3["key"].as_str().unwrap_or_default().to_string();
    assert!(
        key.starts_with("samples/") && key.ends_with(".jpg"),
        "{key}"
    );
    assert!(
        statuses
            .iter()
            .any(|s| s["response"]["status"] == "sample_dropped_by_strategy"),
        "the confident prediction is dropped by LEAST_CONFIDENCE 0.6: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .any(|s| s["response"]["status"] == "fail" && s["response"]["error"] == "NoSuchBucket"),
        "{statuses:?}"
    );

    // The object, as uploaded.
    let objects = objects(&moto);
    let object = &objects[&key];
    assert_eq!(object["body"], "\u{ff}\u{d8}jpeg-bytes", "{objects}");
    assert_eq!(object["content_type"], "image/jpeg", "{objects}");
    assert_eq!(object["metadata"]["camera"], "line-3", "{objects}");
    assert!(
        object["metadata"]["publish-ts"].as_str().is_some(),
        "{objects}"
    );
    assert_eq!(
        objects.as_object().map(|o| o.len()),
        Some(1),
        "only the kept sample is uploaded: {objects}"
    );

    // The prediction message.
    let predictions = on_topic(&out, "feedback/message/prediction");
    assert_eq!(predictions.len(), 1, "{predictions:?}");
    let p = &predictions[0];
    assert_eq!(p["source-ref"], format!("s3://feedback/{key}"), "{p}");
    assert_eq!(p["model-prediction"], json!([0.2, 0.8]), "{p}");
    assert_eq!(p["config-id"], "all-samples", "{p}");
    assert_eq!(p["metadata"]["camera"], "line-3", "{p}");

    // Metrics in the CloudWatch Metrics connector's input format.
    let metrics = wait_for(LIMIT, || {
        let m = on_topic(&out, "cloudwatch/metric/put");
        m.iter()
            .any(|m| m["request"]["metricData"]["metricName"] == "SampleUploadSuccess")
            .then_some(m)
    })
    .unwrap_or_else(|| panic!("metrics: {:?}", on_topic(&out, "cloudwatch/metric/put")));
    assert!(
        metrics
            .iter()
            .all(|m| m["request"]["namespace"] == "GreengrassFeedbackConnector"),
        "{metrics:?}"
    );
    for name in [
        "SampleSize",
        "SampleUploadSuccess",
        "SampleNotUsed",
        "SampleUploadFailure",
    ] {
        assert!(
            metrics
                .iter()
                .any(|m| m["request"]["metricData"]["metricName"] == name),
            "{name} missing: {metrics:?}"
        );
    }
    print_connector_rss(&rt, "MLFeedback");
}
