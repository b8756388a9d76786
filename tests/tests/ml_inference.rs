//! End-to-end: the ML Image Classification (`ImageClassificationx86-64` v2) and ML Object
//! Detection (`ObjectDetectionx86-64` v1) connectors, in their Greengrass containers as in V1,
//! loading ONNX models that a deployment fetched from S3 (moto) as
//! `S3MachineLearningModelResourceData`, called by a V1-style Python function through the ML
//! SDK's `invoke_inference_service`. Documented behaviour checked (V1's connector guide):
//! * image classification answers `Body` = the per-class probabilities `[0.3,0.1,...]`;
//! * object detection answers `{"prediction": [[class_id, confidence, xmin, ymin, xmax, ymax],
//!   ...]}`;
//! * an input the service cannot use raises `GreengrassInferenceException`.
//!
//! The models are small real ONNX networks built by `connectors/ml-inference/tests/ml_models.py`
//! with the `onnx` package; the expected predictions are onnxruntime's (an independent runtime)
//! on the same images.

use std::path::Path;
use std::time::Duration;

use evergreen_tests::{require_containers, *};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(90);
const CLASSIFY: &str =
    "arn:aws:greengrass:us-east-1::/connectors/ImageClassificationx86-64/versions/2";
const DETECT: &str = "arn:aws:greengrass:us-east-1::/connectors/ObjectDetectionx86-64/versions/1";

const CALLER: &str = r#"
import json
import os
import threading

import greengrasssdk
import greengrass_machine_learning_sdk as ml

iot = greengrasssdk.client('iot-data')
HERE = os.path.dirname(os.path.abspath(__file__))


def infer(algo, service, image, content_type='image/png'):
    with open(os.path.join(HERE, image), 'rb') as f:
        body = f.read()
    try:
        r = ml.client('inference').invoke_inference_service(
            AlgoType=algo, ServiceName=service, ContentType=content_type, Body=body)
        return {'body': r['Body'].read().decode(), 'content_type': r['ContentType']}
    except ml.GreengrassInferenceException as e:
        return {'inference_error': str(e)}
    except ml.GreengrassDependencyException as e:
        return {'dependency_error': str(e)}


def run():
    got = {
        'classify': infer('image-classification', 'classify', 'exact_32.png'),
        'detect': infer('object-detection', 'detect', 'exact_64x48.png'),
        'garbage': infer('image-classification', 'classify', 'caller.py', 'image/jpeg'),
    }
    iot.publish(topic='ml/result', payload=json.dumps(got))


threading.Thread(target=run).start()


def handler(event, context):
    return
"#;

/// Builds the models, images and onnxruntime's answers in `out`, or says why not.
fn make_models(out: &Path) -> Result<Value, String> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../connectors/ml-inference/tests/ml_models.py");
    let made = std::process::Command::new("python3")
        .arg(&script)
        .arg("make")
        .arg(out)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !made.status.success() {
        return Err(String::from_utf8_lossy(&made.stderr).into_owned());
    }
    serde_json::from_slice(&std::fs::read(out.join("expected.json")).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())
}

/// Uploads `dir`'s files as a tar.gz to `s3://models/<key>` (Python's tarfile and boto3).
fn upload_dir(moto: &Moto, dir: &Path, key: &str) {
    boto3_s3(
        moto,
        "import io, tarfile\n\
         buf = io.BytesIO()\n\
         with tarfile.open(fileobj=buf, mode='w:gz') as t:\n\
         \x20   t.add(sys.argv[3], arcname='.')\n\
         if 'models' not in [b['Name'] for b in s3.list_buckets()['Buckets']]:\n\
         \x20   s3.create_bucket(Bucket='models')\n\
         s3.put_object(Bucket='models', Key=sys.argv[2], Body=buf.getvalue())\n",
        &[key.as_ref(), dir.as_os_str()],
    );
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect()
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
}

#[test]
fn functions_get_onnx_predictions_from_models_deployed_from_s3() {
    require_containers!();
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let Some(moto) = Moto::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let assets = dir.path().join("assets");
    let expected = match make_models(&assets) {
        Ok(e) => e,
        Err(why) => {
            eprintln!(
                "\n*** SKIPPED: cannot build the ONNX test models (pip install onnx onnxruntime \
                 numpy pillow, as .ci/run does): {why} ***\n"
            );
            return;
        }
    };
    upload_dir(&moto, &assets.join("classifier"), "classifier.tar.gz");
    upload_dir(&moto, &assets.join("detector"), "detector.tar.gz");
    let work = dir.path().join("work");
    let code = python_package(&work, "caller", &sdk, &[("caller.py", CALLER)]);
    for image in ["exact_32.png", "exact_64x48.png"] {
        std::fs::copy(assets.join(image), code.join(image)).expect("copy image");
    }
    let out = work.join("got.jsonl");
    let mut g = group(
        vec![
            python_function("caller", &code, "caller.handler", true, 60),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("r", &fn_arn("caller"), "ml/#", &fn_arn("rec"))],
    );
    let resource = |id: &str, key: &str| {
        json!({ "Id": id, "Name": id, "ResourceDataContainer": {
            "S3MachineLearningModelResourceData": {
                "S3Uri": format!("s3://models/{key}"),
                "DestinationPath": format!("/ml/{id}")
            }
        }})
    };
    g["ResourceDefinitionVersion"] = json!({ "Resources": [
        resource("classifier", "classifier.tar.gz"),
        resource("detector", "detector.tar.gz"),
    ]});
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [
        { "Id": "classify", "ConnectorArn": CLASSIFY, "Parameters": {
            "MLModelDestinationPath": "/ml/classifier",
            "MLModelResourceId": "classifier",
            "MLModelSageMakerJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/classifier",
            "LocalInferenceServiceName": "classify",
            "LocalInferenceServiceTimeoutSeconds": "10",
            "LocalInferenceServiceMemoryLimitKB": "500000"
        }},
        { "Id": "detect", "ConnectorArn": DETECT, "Parameters": {
            "MLModelDestinationPath": "/ml/detector",
            "MLModelResourceId": "detector",
            "LocalInferenceServiceName": "detect",
            "LocalInferenceServiceTimeoutSeconds": "10",
            "LocalInferenceServiceMemoryLimitKB": "500000"
        }}
    ]});
    assert_valid_group(dir.path(), &g);
    let mut config = moto.core_config();
    merge(
        &mut config,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
    );
    let rt = Runtime::start_config_in(dir, &g, &config, &[]);
    let got =
        wait_for(LIMIT, || on_topic(&out, "ml/result").into_iter().next()).unwrap_or_else(|| {
            panic!(
                "no result:\ncaller:\n{}\nclassifier:\n{}\nruntime:\n{}",
                read(&rt.function_log("caller")),
                read(&rt.log_path("user/us-east-1/aws/ImageClassificationx86-64.log")),
                read(&rt.log_path("system/runtime.log"))
            )
        });

    // Classification: the probabilities, as onnxruntime computed them.
    let body = got["classify"]["body"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"));
    assert!(body.starts_with('[') && body.ends_with(']'), "{body}");
    let probabilities: Vec<f64> = serde_json::from_str::<Value>(body)
        .map(|v| floats(&v))
        .unwrap_or_default();
    let want = floats(&expected["classifier"]["outputs"][0]["data"]);
    assert!(
        !want.is_empty() && close(&probabilities, &want),
        "tract {probabilities:?} vs onnxruntime {want:?}"
    );

    // Detection: onnxruntime's rows, without those whose class id is negative (padding).
    let body = got["detect"]["body"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"));
    let answer: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let rows: Vec<Vec<f64>> = answer["prediction"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(floats)
        .collect();
    let raw = floats(&expected["detector"]["outputs"][0]["data"]);
    let want: Vec<Vec<f64>> = raw
        .chunks_exact(6)
        .filter(|r| r[0] >= 0.0)
        .map(<[f64]>::to_vec)
        .collect();
    assert!(!want.is_empty(), "the test model detects something");
    assert_eq!(rows.len(), want.len(), "{rows:?} vs {want:?}");
    for (r, w) in rows.iter().zip(&want) {
        assert!(close(r, w), "{r:?} vs {w:?}");
    }

    // A body that is no image: the service's error, raised as GreengrassInferenceException.
    let garbage = got["garbage"]["inference_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"));
    assert!(!garbage.is_empty(), "{got}");
    print_connector_rss(&rt, "ImageClassificationx86-64");
    print_connector_rss(&rt, "ObjectDetectionx86-64");
}
