//! End-to-end: machine-learning model resources (`S3MachineLearningModelResourceData`)
//! fetched from S3 (moto) at deployment, as Greengrass V1 did: "the model archive (tar.gz or
//! zip) is downloaded at deployment and extracted to `DestinationPath`", and read there by a
//! V1-style Python function. Checked:
//! * `run --group` fetches and extracts the archive before the function starts; a NoContainer
//!   function reads it at its `DestinationPath` (V1's `OwnerSetting` rule for NoContainer);
//! * `evergreen deploy` of a group whose object changed in S3 installs the new archive;
//! * with S3 out of reach, a restart of the runtime runs on the archive installed last (and
//!   says so in the runtime log) instead of failing;
//! * a `SageMakerMachineLearningModelResourceData` is refused at deployment with the reason,
//!   and the running group is left as it was.

use std::path::Path;
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);

// Reads the model where V1 code would (its DestinationPath) and reports the files.
const READER: &str = r#"
import json
import os

import greengrasssdk

DEST = os.environ['MODEL_DIR']
files = {}
for base, _, names in os.walk(DEST):
    for n in names:
        path = os.path.join(base, n)
        with open(path) as f:
            files[os.path.relpath(path, DEST)] = f.read()
greengrasssdk.client('iot-data').publish(
    topic='model/read', payload=json.dumps({'round': os.environ.get('ROUND', '1'), 'files': files}))


def handler(event, context):
    return
"#;

/// A tar.gz of `files` (name, text), made by Python's `tarfile` (an independent writer).
fn tar_gz(dir: &Path, files: &[(&str, &str)]) -> Vec<u8> {
    let out = dir.join("model.tar.gz");
    let spec = serde_json::to_string(&files.iter().map(|(n, t)| json!([n, t])).collect::<Vec<_>>())
        .expect("json");
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import io, json, sys, tarfile\n\
             with tarfile.open(sys.argv[1], 'w:gz') as t:\n\
             \x20   for name, text in json.loads(sys.argv[2]):\n\
             \x20       data = text.encode()\n\
             \x20       info = tarfile.TarInfo(name)\n\
             \x20       info.size = len(data)\n\
             \x20       t.addfile(info, io.BytesIO(data))\n",
        )
        .arg(&out)
        .arg(spec)
        .status()
        .expect("python3");
    assert!(status.success(), "python3 could not write the archive");
    std::fs::read(&out).expect("archive")
}

/// Uploads `body` to `s3://models/<key>` (creating the bucket) with boto3, the independent client.
fn put(moto: &Moto, key: &str, body: &[u8]) {
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), body).expect("write");
    boto3_s3(
        moto,
        "if 'models' not in [b['Name'] for b in s3.list_buckets()['Buckets']]:\n\
         \x20   s3.create_bucket(Bucket='models')\n\
         s3.upload_file(sys.argv[3], 'models', sys.argv[2])\n",
        &[key.as_ref(), file.path().as_os_str()],
    );
}

fn model_group(code: &Path, dest: &Path, out: &Path, round: &str, origin: Value) -> Value {
    let mut reader = python_function("reader", code, "reader.handler", true, 30);
    let gid = nix::unistd::getgid().as_raw().to_string();
    reader["FunctionConfiguration"]["Environment"]["Variables"] =
        json!({ "MODEL_DIR": dest, "ROUND": round });
    reader["FunctionConfiguration"]["Environment"]["ResourceAccessPolicies"] =
        json!([{ "ResourceId": "model", "Permission": "ro" }]);
    let mut data = json!({
        "DestinationPath": dest,
        "OwnerSetting": { "GroupOwner": gid, "GroupPermission": "ro" }
    });
    let member = if origin.get("SageMakerJobArn").is_some() {
        "SageMakerMachineLearningModelResourceData"
    } else {
        "S3MachineLearningModelResourceData"
    };
    merge(&mut data, &origin);
    let mut g = group(
        vec![
            reader,
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("r", &fn_arn("reader"), "model/#", &fn_arn("rec"))],
    );
    g["ResourceDefinitionVersion"] = json!({ "Resources": [{
        "Id": "model", "Name": "squeezenet",
        "ResourceDataContainer": { member: data }
    }]});
    g
}

fn read_report(out: &Path, round: &str) -> Option<Value> {
    on_topic(out, "model/read")
        .into_iter()
        .find(|r| r["round"] == round)
}

#[test]
fn s3_model_resources_are_fetched_at_deployment_and_survive_an_s3_outage() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let Some(mut moto) = Moto::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let rd = dir.path().to_path_buf();
    let work = rd.join("work");
    std::fs::create_dir_all(&work).expect("work");
    let code = python_package(&work, "reader", &sdk, &[("reader.py", READER)]);
    let out = work.join("got.jsonl");
    let dest = work.join("host/ml/squeezenet");
    put(
        &moto,
        "squeezenet/model.tar.gz",
        &tar_gz(
            &work,
            &[("model.onnx", "weights v1"), ("synset.txt", "cat\ndog\n")],
        ),
    );
    let origin = json!({ "S3Uri": "s3://models/squeezenet/model.tar.gz" });
    let g1 = model_group(&code, &dest, &out, "1", origin.clone());
    let config = moto.core_config();
    let mut rt = Runtime::start_config_in(dir, &g1, &config, &[]);

    let first = wait_for(LIMIT, || read_report(&out, "1")).unwrap_or_else(|| {
        panic!(
            "no report:\n{}\n--- runtime:\n{}",
            read(&rt.function_log("reader")),
            read(&rt.log_path("system/runtime.log"))
        )
    });
    assert_eq!(
        first["files"],
        json!({ "model.onnx": "weights v1", "synset.txt": "cat\ndog\n" }),
        "{first}"
    );
    let grant = rd.join("root/resources/ml/model");
    assert!(
        grant.symlink_metadata().is_ok_and(|m| m.is_symlink()),
        "the grant links the cached tree"
    );
    assert!(
        std::fs::write(grant.join("model.onnx"), b"x").is_err() || nix::unistd::geteuid().is_root(),
        "the model is read-only"
    );

    // A new archive in S3, deployed with `evergreen deploy`.
    put(
        &moto,
        "squeezenet/model.tar.gz",
        &tar_gz(&work, &[("model.onnx", "weights v2")]),
    );
    let deploy = |g: &Value, n: usize| {
        let file = rd.join(format!("group-{n}.json"));
        std::fs::write(&file, g.to_string()).expect("write group");
        output_text(&evergreen_with(
            &rd.join("config.json"),
            &["deploy", &file.display().to_string()],
        ))
    };
    let g2 = model_group(&code, &dest, &out, "2", origin.clone());
    let t = deploy(&g2, 2);
    assert!(t.contains("Success"), "deployment 2: {t}");
    let second = wait_for(LIMIT, || read_report(&out, "2")).unwrap_or_else(|| {
        panic!(
            "no report after deploying:\n{}",
            read(&rt.function_log("reader"))
        )
    });
    assert_eq!(
        second["files"],
        json!({ "model.onnx": "weights v2" }),
        "{second}"
    );

    // A SageMaker model is refused, with the reason; round 2 keeps running.
    let g3 = model_group(
        &code,
        &dest,
        &out,
        "3",
        json!({ "SageMakerJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/squeeze" }),
    );
    let t = deploy(&g3, 3);
    assert!(
        t.contains("Failure")
            && t.contains("SageMaker")
            && t.contains("S3MachineLearningModelResourceData"),
        "deployment 3: {t}"
    );
    assert!(read_report(&out, "3").is_none());

    // S3 out of reach: the runtime starts again on the archive installed last.
    let status = rt.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    assert!(status.is_some(), "the runtime did not stop");
    moto.stop();
    let dir = std::mem::replace(&mut rt.dir, tempfile::tempdir().expect("tmp"));
    drop(rt);
    let _ = std::fs::remove_file(&out);
    let g4 = model_group(&code, &dest, &out, "4", origin);
    let rt = Runtime::start_config_in(dir, &g4, &config, &[]);
    let offline = wait_for(LIMIT, || read_report(&out, "4")).unwrap_or_else(|| {
        panic!(
            "no report with S3 down:\n{}\n--- runtime:\n{}",
            read(&rt.function_log("reader")),
            read(&rt.log_path("system/runtime.log"))
        )
    });
    assert_eq!(
        offline["files"],
        json!({ "model.onnx": "weights v2" }),
        "{offline}"
    );
    let log = read(&rt.log_path("system/runtime.log"));
    assert!(
        log.contains("out of reach") && log.contains("installed last"),
        "the runtime log says the model is the cached one:\n{log}"
    );
}
