//! tract against onnxruntime on real ONNX models built by
//! `tests/ml_models.py`: the preprocessing against an independent numpy
//! one (exact-size PNGs), the predictions on the same tensor (images of
//! other sizes, resized by the connector), V1's reply bodies, the sidecar,
//! tensor bodies and the error cases. Every test skips loudly without
//! python's onnx/onnxruntime.

#![allow(clippy::unwrap_used)] // a failed unwrap is the test failing

mod common;

use std::path::Path;

use common::{assert_close, fixtures, onnxruntime, parse_outputs, TOLERANCE};
use evergreen_connector_ml_inference::preprocess::parse_npy;
use evergreen_connector_ml_inference::{Algo, InferenceError, LoadError, Model};

fn load(dir: &Path, name: &str, algo: Algo) -> Model {
    Model::load(&dir.join(name), algo).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const CASES: [(&str, &str, Algo); 4] = [
    ("classifier", "classifier", Algo::ImageClassification),
    (
        "classifier_nhwc",
        "classifier_nhwc",
        Algo::ImageClassification,
    ),
    ("detector", "detector", Algo::ObjectDetection),
    ("detector3", "detector3", Algo::ObjectDetection),
];

#[test]
fn exact_size_pngs_match_numpy_preprocessing_and_onnxruntime() {
    let Some(dir) = fixtures() else { return };
    let expected = json(&std::fs::read_to_string(dir.join("expected.json")).unwrap());
    for (key, model_dir, algo) in CASES {
        let model = load(dir, model_dir, algo);
        let case = &expected[key];
        let image = read(&dir.join(case["image"].as_str().unwrap()));
        let tensor = model.input().tensor("image/png", &image).unwrap();
        let (shape, numpy) = parse_npy(&read(&dir.join(format!("{key}.input.npy")))).unwrap();
        assert_eq!(shape, model.input().shape(), "{key}: input shape");
        // PNG is lossless: only float rounding of the normalisation differs.
        assert_close(&format!("{key} input"), &tensor, &numpy, 1e-5);
        let outputs = model.run(&tensor).unwrap();
        let ort = parse_outputs(&case["outputs"]);
        assert_eq!(outputs.len(), ort.len(), "{key}: outputs");
        for (i, (got, want)) in outputs.iter().zip(&ort).enumerate() {
            assert_eq!(got.shape, want.shape, "{key} output {i} shape");
            assert_close(
                &format!("{key} output {i}"),
                &got.data,
                &want.data,
                TOLERANCE,
            );
        }
    }
}

#[test]
fn resized_images_match_onnxruntime_on_the_same_tensor() {
    let Some(dir) = fixtures() else { return };
    let cases = [
        (
            "classifier",
            "photo.jpg",
            "image/jpeg",
            Algo::ImageClassification,
        ),
        (
            "classifier",
            "photo.png",
            "image/png",
            Algo::ImageClassification,
        ),
        (
            "classifier",
            "grey.png",
            "image/png",
            Algo::ImageClassification,
        ),
        (
            "classifier_nhwc",
            "photo.jpg",
            "image/jpeg",
            Algo::ImageClassification,
        ),
        ("detector3", "photo.png", "image/png", Algo::ObjectDetection),
    ];
    for (model_dir, image, content_type, algo) in cases {
        let model = load(dir, model_dir, algo);
        let tensor = model
            .input()
            .tensor(content_type, &read(&dir.join(image)))
            .unwrap();
        assert_eq!(tensor.len(), model.input().len());
        let ort = onnxruntime(model.file(), &model.input().shape(), &tensor);
        let outputs = model.run(&tensor).unwrap();
        for (i, (got, want)) in outputs.iter().zip(&ort).enumerate() {
            assert_eq!(got.shape, want.shape);
            assert_close(
                &format!("{model_dir} on {image}, output {i}"),
                &got.data,
                &want.data,
                TOLERANCE,
            );
        }
    }
}

#[test]
fn classification_replies_are_v1s_body() {
    let Some(dir) = fixtures() else { return };
    let model = load(dir, "classifier", Algo::ImageClassification);
    let photo = read(&dir.join("photo.jpg"));
    let body = model
        .handle("image/jpeg", "application/json", &photo)
        .unwrap();
    // What V1's clients do: strip the brackets, split on commas.
    let inner = body
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .unwrap_or_else(|| panic!("not [..]: {body}"));
    let values: Vec<f32> = inner.split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(values.len(), 10);
    assert!((values.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{body}");
    let tensor = model.input().tensor("image/jpeg", &photo).unwrap();
    assert_eq!(values, model.run(&tensor).unwrap()[0].data);
    // No Accept, and Accept */*, are answered alike.
    assert_eq!(model.handle("image/jpeg", "", &photo).unwrap(), body);
    assert_eq!(model.handle("image/jpeg", "*/*", &photo).unwrap(), body);
}

#[test]
fn detection_replies_drop_padding_and_normalise_boxes() {
    let Some(dir) = fixtures() else { return };
    let expected = json(&std::fs::read_to_string(dir.join("expected.json")).unwrap());
    let image = read(&dir.join("exact_64x48.png"));
    // Single [1,N,6] output: boxes already 0..1, as onnxruntime gave them.
    let ort = parse_outputs(&expected["detector"]["outputs"]);
    let rows: Vec<&[f32]> = ort[0].data.chunks(6).filter(|r| r[0] >= 0.0).collect();
    let single = load(dir, "detector", Algo::ObjectDetection);
    let reply = json(&single.handle("image/png", "", &image).unwrap());
    let prediction = reply["prediction"].as_array().unwrap();
    assert_eq!(reply.as_object().unwrap().len(), 1, "{reply}");
    assert_eq!(prediction.len(), 3, "ids 2, 0 and 5; the -1 rows dropped");
    for (got, want) in prediction.iter().zip(&rows) {
        let got: Vec<f32> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_close("detector row", &got, want, TOLERANCE);
    }
    // Three outputs, boxes in input pixels (64x48): divided into 0..1.
    let ort = parse_outputs(&expected["detector3"]["outputs"]);
    let triple = load(dir, "detector3", Algo::ObjectDetection);
    let reply = json(&triple.handle("image/png", "", &image).unwrap());
    let prediction = reply["prediction"].as_array().unwrap();
    let kept: Vec<usize> = (0..5).filter(|i| ort[0].data[*i] >= 0.0).collect();
    assert_eq!(prediction.len(), kept.len());
    for (row, i) in prediction.iter().zip(kept) {
        let row: Vec<f32> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let b = &ort[2].data[i * 4..i * 4 + 4];
        let want = [
            ort[0].data[i],
            ort[1].data[i],
            b[0] / 64.0,
            b[1] / 48.0,
            b[2] / 64.0,
            b[3] / 48.0,
        ];
        assert_close("detector3 row", &row, &want, TOLERANCE);
        assert!(row[2..].iter().all(|v| (0.0..=1.0).contains(v)), "{row:?}");
    }
}

#[test]
fn tensor_bodies_answer_as_the_image_does() {
    let Some(dir) = fixtures() else { return };
    let model = load(dir, "classifier", Algo::ImageClassification);
    let png = model
        .handle("image/png", "", &read(&dir.join("exact_32.png")))
        .unwrap();
    let npy = read(&dir.join("classifier.input.npy"));
    let from_npy = json(&model.handle("application/x-npy", "", &npy).unwrap());
    let (_, values) = parse_npy(&npy).unwrap();
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let from_raw = json(&model.handle("application/octet-stream", "", &raw).unwrap());
    assert_eq!(from_npy, from_raw);
    let png: Vec<f32> = serde_json::from_str(&png).unwrap();
    let npy: Vec<f32> = serde_json::from_value(from_npy).unwrap();
    assert_close("npy vs png", &npy, &png, TOLERANCE);
    // Another model's tensor is refused with both shapes named.
    let other = read(&dir.join("classifier_nhwc.input.npy"));
    assert_eq!(
        model.handle("application/x-npy", "", &other),
        Err(InferenceError::Shape {
            expected: vec![1, 3, 32, 32],
            got: vec![1, 24, 40, 3]
        })
    );
}

#[test]
fn bad_requests_get_clear_errors() {
    let Some(dir) = fixtures() else { return };
    let model = load(dir, "classifier", Algo::ImageClassification);
    let png = read(&dir.join("exact_32.png"));
    let message = |r: Result<String, InferenceError>| r.unwrap_err().to_string();
    assert!(message(model.handle("image/gif", "", &png))
        .contains("unsupported ContentType \"image/gif\""));
    assert!(message(model.handle("image/png", "text/csv", &png)).contains("unsupported Accept"));
    let truncated = message(model.handle("image/png", "", &png[..png.len() / 2]));
    assert!(
        truncated.starts_with("cannot decode the body as PNG"),
        "{truncated}"
    );
    let mislabelled = message(model.handle("image/jpeg", "", &png));
    assert!(
        mislabelled.starts_with("cannot decode the body as JPEG"),
        "{mislabelled}"
    );
    assert!(message(model.handle("application/octet-stream", "", &[0; 7])).contains("shape"));
    assert_eq!(
        model.handle("", "", &png),
        Err(InferenceError::NoContentType)
    );
}

fn copy(from: &Path, to: &Path, name: &str) {
    std::fs::copy(from, to.join(name)).unwrap();
}

#[test]
fn sidecars_and_model_problems() {
    let Some(dir) = fixtures() else { return };
    // The symbolic NHWC model without its sidecar: no size to feed.
    let bare = tempfile::tempdir().unwrap();
    copy(
        &dir.join("classifier_nhwc/net.onnx"),
        bare.path(),
        "net.onnx",
    );
    let err = Model::load(bare.path(), Algo::ImageClassification).unwrap_err();
    assert!(matches!(err, LoadError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("give \"width\""), "{err}");
    // A sidecar with only the size: the layout comes from the model (NHWC).
    std::fs::write(
        bare.path().join("evergreen-model.json"),
        r#"{"width": 8, "height": 6}"#,
    )
    .unwrap();
    let m = Model::load(bare.path(), Algo::ImageClassification).unwrap();
    assert_eq!(m.input().shape(), [1, 6, 8, 3]);
    // `boxes` overrides the three-output default (pixels).
    let raw_boxes = tempfile::tempdir().unwrap();
    copy(
        &dir.join("detector3/model.onnx"),
        raw_boxes.path(),
        "model.onnx",
    );
    std::fs::write(
        raw_boxes.path().join("evergreen-model.json"),
        r#"{"boxes": "normalized"}"#,
    )
    .unwrap();
    let m = Model::load(raw_boxes.path(), Algo::ObjectDetection).unwrap();
    let reply = json(
        &m.handle("image/png", "", &read(&dir.join("exact_64x48.png")))
            .unwrap(),
    );
    let first = reply["prediction"][0].as_array().unwrap();
    assert!(
        first[3].as_f64().unwrap() > 1.0,
        "pixels left as they were: {reply}"
    );
    // A classifier served as a detector: its output is refused per request.
    let m = load(dir, "classifier", Algo::ObjectDetection);
    let err = m.handle("image/png", "", &read(&dir.join("exact_32.png")));
    assert!(matches!(err, Err(InferenceError::Output(_))), "{err:?}");
    // Two models and no model.onnx: both named.
    let two = tempfile::tempdir().unwrap();
    copy(&dir.join("detector/model.onnx"), two.path(), "a.onnx");
    copy(&dir.join("detector3/model.onnx"), two.path(), "b.onnx");
    let err = Model::load(two.path(), Algo::ObjectDetection)
        .unwrap_err()
        .to_string();
    assert!(err.contains("(a.onnx, b.onnx)"), "{err}");
}
