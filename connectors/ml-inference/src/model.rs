//! The ONNX model of one service: found in the model directory, read with
//! its optional `evergreen-model.json` sidecar, loaded, optimised and made
//! runnable by tract once at start, then run for each request
//! ([`Model::handle`]). Synchronous on purpose: tract is, and
//! [`crate::service`] gives it a thread of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::error::InferenceError;
use crate::output::{self, BoxUnits, DetectionLayout};
use crate::preprocess::{ChannelOrder, InputSpec, Layout};
use crate::settings::Algo;

/// The model file looked for first in the model directory.
pub const MODEL_FILE: &str = "model.onnx";
/// The optional preprocessing sidecar beside the model.
pub const SIDECAR_FILE: &str = "evergreen-model.json";
/// The largest input width or height a model may declare or a sidecar ask.
pub const MAX_INPUT_SIDE: u32 = 8192;

/// Why a model could not be loaded; each names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot list the model directory {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no ONNX model in {dir}: put the model there as model.onnx (or as the only *.onnx file)"
    )]
    NoModel { dir: PathBuf },
    #[error("{dir} has no model.onnx and several *.onnx files ({names}): keep one, or name the one to use model.onnx")]
    SeveralModels { dir: PathBuf, names: String },
    #[error("{file}: {problem}")]
    Sidecar { file: PathBuf, problem: String },
    #[error("{file}: tract cannot load the model: {message}")]
    Tract { file: PathBuf, message: String },
    #[error("{file}: {problem}")]
    Unsupported { file: PathBuf, problem: String },
}

/// The ONNX model to load from `dir`: `model.onnx`, else the only `*.onnx`;
/// when `dir` has neither and holds a single directory (a model archive
/// that unpacks into a folder of its own), the same rules in that one.
pub fn find_model_file(dir: &Path) -> Result<PathBuf, LoadError> {
    match find_in(dir)? {
        Found::File(file) => Ok(file),
        Found::Nothing { subdirs } => match subdirs.as_slice() {
            [only] => match find_in(only)? {
                Found::File(file) => Ok(file),
                Found::Nothing { .. } => Err(LoadError::NoModel {
                    dir: dir.to_path_buf(),
                }),
            },
            _ => Err(LoadError::NoModel {
                dir: dir.to_path_buf(),
            }),
        },
    }
}

enum Found {
    File(PathBuf),
    /// No model here; the directories that are (not archive debris).
    Nothing {
        subdirs: Vec<PathBuf>,
    },
}

fn find_in(dir: &Path) -> Result<Found, LoadError> {
    let preferred = dir.join(MODEL_FILE);
    if preferred.is_file() {
        return Ok(Found::File(preferred));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    let mut found: Vec<PathBuf> = paths
        .iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
                && p.is_file()
        })
        .cloned()
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(Found::Nothing {
            subdirs: paths
                .into_iter()
                .filter(|p| {
                    // Hidden folders and macOS's zip metadata are not the model.
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                    p.is_dir() && !name.is_some_and(|n| n.starts_with('.') || n == "__MACOSX")
                })
                .collect(),
        }),
        1 => Ok(Found::File(found.remove(0))),
        _ => Err(LoadError::SeveralModels {
            dir: dir.to_path_buf(),
            names: found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `evergreen-model.json`: how images become the model's input, for what
/// the model's input declaration does not say. Every field is optional;
/// unknown fields are refused (a misspelt `chanel_order` would otherwise be
/// silently ignored).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub layout: Option<Layout>,
    pub channel_order: Option<ChannelOrder>,
    pub scale: Option<f32>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// Object detection: whether the model's boxes are in input pixels or
    /// already in 0..1.
    pub boxes: Option<BoxUnits>,
}

impl Sidecar {
    /// The sidecar in `dir`, or the empty one when there is none.
    pub fn read(dir: &Path) -> Result<Sidecar, LoadError> {
        let file = dir.join(SIDECAR_FILE);
        let fail = |problem: String| LoadError::Sidecar {
            file: file.clone(),
            problem,
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Sidecar::default()),
            Err(e) => return Err(fail(e.to_string())),
        };
        let sidecar: Sidecar = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        for (name, side) in [("width", sidecar.width), ("height", sidecar.height)] {
            if side.is_some_and(|s| s == 0 || s > MAX_INPUT_SIDE) {
                return Err(fail(format!("{name} must be 1 to {MAX_INPUT_SIDE}")));
            }
        }
        if sidecar.std.is_some_and(|s| s.contains(&0.0)) {
            return Err(fail("std must not contain 0".into()));
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !finite(&sidecar.mean.unwrap_or_default())
            || !finite(&sidecar.std.unwrap_or([1.0; 3]))
            || !finite(&[sidecar.scale.unwrap_or(1.0)])
        {
            return Err(fail("scale, mean and std must be finite numbers".into()));
        }
        Ok(sidecar)
    }
}

/// One output tensor, as float32 (for callers comparing with another
/// runtime, and for the reply formatting).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A loaded, optimised model and how to feed it and read it.
#[derive(Debug, Clone)]
pub struct Model {
    plan: Arc<TypedRunnableModel>,
    input: InputSpec,
    algo: Algo,
    detection: Option<(DetectionLayout, BoxUnits)>,
    file: PathBuf,
}

/// The dimensions of the model's declared input, each `None` when
/// symbolic or unknown; `None` when even the rank is unknown.
fn declared_dims(fact: &InferenceFact) -> Option<Vec<Option<i64>>> {
    if fact.shape.is_open() {
        return None;
    }
    Some(
        fact.shape
            .dims()
            .map(|d| d.concretize().and_then(|t| t.to_i64().ok()))
            .collect(),
    )
}

impl Model {
    /// Loads the model in `dir` for `algo` and prepares it to run.
    pub fn load(dir: &Path, algo: Algo) -> Result<Model, LoadError> {
        let file = find_model_file(dir)?;
        // The sidecar sits beside the model, wherever that was found.
        let sidecar = Sidecar::read(file.parent().unwrap_or(dir))?;
        let tract = |e: TractError| LoadError::Tract {
            file: file.clone(),
            message: format!("{e:#}"),
        };
        let unsupported = |problem: String| LoadError::Unsupported {
            file: file.clone(),
            problem,
        };
        let mut model = tract_onnx::onnx().model_for_path(&file).map_err(tract)?;
        if model.inputs.len() != 1 {
            return Err(unsupported(format!(
                "the model has {} inputs; this connector feeds it one image",
                model.inputs.len()
            )));
        }
        let fact = model.input_fact(0).map_err(tract)?.clone();
        if let Some(dt) = fact.datum_type.concretize() {
            if dt != DatumType::F32 {
                return Err(unsupported(format!(
                    "the model's input is {dt:?}; this connector feeds float32"
                )));
            }
        }
        let dims = declared_dims(&fact).unwrap_or_else(|| vec![None; 4]);
        if dims.len() != 4 {
            return Err(unsupported(format!(
                "the model's input has rank {}; this connector feeds a 4-d image batch",
                dims.len()
            )));
        }
        let layout = sidecar.layout.unwrap_or(match (dims[1], dims[3]) {
            (Some(3), _) => Layout::Nchw,
            (_, Some(3)) => Layout::Nhwc,
            _ => Layout::Nchw,
        });
        let (c, h, w) = match layout {
            Layout::Nchw => (dims[1], dims[2], dims[3]),
            Layout::Nhwc => (dims[3], dims[1], dims[2]),
        };
        if c.is_some_and(|c| c != 3) || dims[0].is_some_and(|n| n != 1) {
            return Err(unsupported(format!(
                "the model's input {dims:?} is not one 3-channel image in {layout:?}"
            )));
        }
        let side = |name: &str, given: Option<u32>, declared: Option<i64>| {
            given
                .or_else(|| declared.and_then(|d| u32::try_from(d).ok()))
                .filter(|s| (1..=MAX_INPUT_SIDE).contains(s))
                .ok_or_else(|| {
                    unsupported(format!(
                        "the model's input has no fixed {name}: give \"{name}\" in {SIDECAR_FILE}"
                    ))
                })
        };
        let input = InputSpec {
            layout,
            width: side("width", sidecar.width, w)?,
            height: side("height", sidecar.height, h)?,
            order: sidecar.channel_order.unwrap_or(ChannelOrder::Rgb),
            scale: sidecar.scale.unwrap_or(1.0),
            mean: sidecar.mean.unwrap_or([0.0; 3]),
            std: sidecar.std.unwrap_or([1.0; 3]),
        };
        model
            .set_input_fact(0, f32::fact(input.shape()).into())
            .map_err(tract)?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(tract)?;
        let outputs = plan.model().outputs.len();
        let detection = match algo {
            Algo::ImageClassification => None,
            Algo::ObjectDetection => {
                let layout = match outputs {
                    1 => DetectionLayout::Single,
                    3 => DetectionLayout::Triple,
                    n => {
                        return Err(unsupported(format!(
                            "the model has {n} outputs; object detection reads one [1,N,6] \
                             output or three (class ids, scores, boxes)"
                        )))
                    }
                };
                let units = sidecar.boxes.unwrap_or(match layout {
                    DetectionLayout::Single => BoxUnits::Normalized,
                    DetectionLayout::Triple => BoxUnits::Pixels,
                });
                Some((layout, units))
            }
        };
        Ok(Model {
            plan,
            input,
            algo,
            detection,
            file,
        })
    }

    /// How images become this model's input.
    pub fn input(&self) -> &InputSpec {
        &self.input
    }

    /// The file the model was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }

    /// A line for the log: file, input and, for detection, the layout read.
    pub fn describe(&self) -> String {
        let i = &self.input;
        let mut s = format!(
            "model {} loaded: input {:?} float32 {:?} {:?}, value = (pixel * {} - {:?}) / {:?}",
            self.file.display(),
            i.shape(),
            i.layout,
            i.order,
            i.scale,
            i.mean,
            i.std
        );
        if let Some((layout, units)) = self.detection {
            s.push_str(&format!(
                ", detections from {layout:?} outputs, boxes in {units:?}"
            ));
        }
        s
    }

    /// Runs the model on one input tensor (laid out as [`InputSpec::shape`]):
    /// every output as float32.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Output>, InferenceError> {
        let failed = |e: TractError| InferenceError::Inference(format!("{e:#}"));
        let tensor = Tensor::from_shape(&self.input.shape(), input).map_err(failed)?;
        let outputs = self.plan.run(tvec!(tensor.into_tvalue())).map_err(failed)?;
        outputs
            .iter()
            .map(|t| {
                let t = t.cast_to::<f32>().map_err(failed)?;
                let data = t
                    .try_as_plain_ram()
                    .and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec))
                    .map_err(failed)?;
                Ok(Output {
                    shape: t.shape().to_vec(),
                    data,
                })
            })
            .collect()
    }

    /// The reply body for the model's outputs: see [`crate::output`].
    pub fn reply(&self, outputs: &[Output]) -> Result<String, InferenceError> {
        match self.detection {
            None => output::classification(outputs),
            Some((layout, units)) => output::detection(outputs, layout, units, &self.input),
        }
    }

    /// One request, start to end: checks `accept`, turns the body of
    /// `content_type` into the input, runs the model and formats the reply.
    pub fn handle(
        &self,
        content_type: &str,
        accept: &str,
        body: &[u8],
    ) -> Result<String, InferenceError> {
        output::check_accept(accept)?;
        let input = self.input.tensor(content_type, body)?;
        let outputs = self.run(&input)?;
        self.reply(&outputs)
    }
}

#[cfg(test)]
// A failed unwrap is the test failing.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn model_files_are_found_or_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let err = find_model_file(d).unwrap_err().to_string();
        assert!(err.contains(&d.display().to_string()), "{err}");
        assert!(err.starts_with("no ONNX model"), "{err}");
        std::fs::write(d.join("b.onnx"), b"x").unwrap();
        assert_eq!(find_model_file(d).unwrap(), d.join("b.onnx"));
        std::fs::write(d.join("a.ONNX"), b"x").unwrap();
        let err = find_model_file(d).unwrap_err().to_string();
        assert!(err.contains("(a.ONNX, b.onnx)"), "{err}");
        std::fs::write(d.join("model.onnx"), b"x").unwrap();
        assert_eq!(find_model_file(d).unwrap(), d.join("model.onnx"));
        // One folder (an archive's), with macOS debris beside it.
        let unpacked = tempfile::tempdir().unwrap();
        let u = unpacked.path();
        std::fs::create_dir_all(u.join("resnet/sub")).unwrap();
        std::fs::create_dir_all(u.join("__MACOSX")).unwrap();
        std::fs::write(u.join("resnet/sub/deeper.onnx"), b"x").unwrap();
        assert!(
            matches!(find_model_file(u), Err(LoadError::NoModel { .. })),
            "one level only"
        );
        std::fs::write(u.join("resnet/r.onnx"), b"x").unwrap();
        assert_eq!(find_model_file(u).unwrap(), u.join("resnet/r.onnx"));
        std::fs::create_dir(u.join("other")).unwrap();
        assert!(
            matches!(find_model_file(u), Err(LoadError::NoModel { .. })),
            "two folders"
        );
        let missing = d.join("missing");
        assert!(matches!(
            find_model_file(&missing),
            Err(LoadError::ReadDir { .. })
        ));
    }

    #[test]
    fn sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(Sidecar::read(d).unwrap(), Sidecar::default());
        let write = |text: &str| std::fs::write(d.join(SIDECAR_FILE), text).unwrap();
        write(
            r#"{"width": 40, "height": 24, "layout": "NHWC", "channel_order": "BGR",
               "scale": 0.00392156862745098, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
               "boxes": "pixels"}"#,
        );
        let s = Sidecar::read(d).unwrap();
        assert_eq!((s.width, s.height), (Some(40), Some(24)));
        assert_eq!(s.layout, Some(Layout::Nhwc));
        assert_eq!(s.channel_order, Some(ChannelOrder::Bgr));
        assert_eq!(s.boxes, Some(BoxUnits::Pixels));
        for bad in [
            r#"{"chanel_order": "BGR"}"#,
            r#"{"layout": "CHW"}"#,
            r#"{"std": [1, 0, 1]}"#,
            r#"{"width": 0}"#,
            r#"{"mean": [1, 2]}"#,
            "not json",
        ] {
            write(bad);
            let err = Sidecar::read(d).unwrap_err().to_string();
            assert!(err.contains(SIDECAR_FILE), "{bad}: {err}");
        }
    }

    #[test]
    fn a_file_that_is_not_onnx_is_a_load_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.onnx"), b"not a protobuf at all").unwrap();
        let err = Model::load(dir.path(), Algo::ImageClassification).unwrap_err();
        assert!(matches!(err, LoadError::Tract { .. }), "{err}");
        assert!(err.to_string().contains("model.onnx"), "{err}");
    }
}
