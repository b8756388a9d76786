//! What the integration tests share: the models, images and onnxruntime
//! answers that `tests/ml_models.py` makes (once per test binary), running
//! that script with a bound on its time, and comparing float vectors.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

/// What onnxruntime may differ from tract by (absolute, per value).
pub const TOLERANCE: f32 = 1e-4;
/// The longest the Python script may run (building every model is ~2 s).
const PYTHON_LIMIT: Duration = Duration::from_secs(120);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ml_models.py")
}

/// Runs `python3 args…` and returns its output, killing it after `limit`.
pub fn python(args: &[&std::ffi::OsStr], limit: Duration) -> Output {
    let child = Command::new("python3")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("python3 runs"),
        Err(_) => {
            // Only the child this function started, by its pid.
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("python3 {args:?} did not finish within {limit:?}");
        }
    }
}

/// The directory of generated models and images, or `None` (after a loud
/// SKIP line) when python3 with onnx, onnxruntime, numpy and pillow is not
/// installed.
pub fn fixtures() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let probe = Command::new("python3")
            .args(["-c", "import onnx, onnxruntime, numpy, PIL"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            return None;
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ml-inference-models");
        let _ = std::fs::remove_dir_all(&out);
        let made = python(
            &[script().as_os_str(), "make".as_ref(), out.as_os_str()],
            PYTHON_LIMIT,
        );
        assert!(
            made.status.success(),
            "ml_models.py make failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        Some(out)
    })
    .as_deref()
    .or_else(|| {
        eprintln!(
            "SKIP: python3 with onnx, onnxruntime, numpy and pillow is not installed \
             (pip install onnx onnxruntime numpy pillow)"
        );
        None
    })
}

/// One output as onnxruntime gave it.
#[derive(Debug, Clone)]
pub struct OrtOutput {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn parse_outputs(v: &serde_json::Value) -> Vec<OrtOutput> {
    v.as_array()
        .expect("outputs")
        .iter()
        .map(|o| OrtOutput {
            shape: o["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect(),
            data: o["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

/// onnxruntime's outputs for `model` on the tensor `input` of `shape`.
pub fn onnxruntime(model: &Path, shape: &[usize], input: &[f32]) -> Vec<OrtOutput> {
    let npy = tempfile::Builder::new().suffix(".npy").tempfile().unwrap();
    std::fs::write(
        npy.path(),
        evergreen_connector_ml_inference::preprocess::write_npy(shape, input),
    )
    .unwrap();
    let out = python(
        &[
            script().as_os_str(),
            "run".as_ref(),
            model.as_os_str(),
            npy.path().as_os_str(),
        ],
        PYTHON_LIMIT,
    );
    assert!(
        out.status.success(),
        "ml_models.py run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    parse_outputs(&v["outputs"])
}

/// Asserts `got` is `expected` within `tolerance`, value by value.
pub fn assert_close(what: &str, got: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() <= tolerance,
            "{what}[{i}]: {g} vs {e} (tolerance {tolerance})"
        );
    }
}
