//! The model's outputs into V1's reply bodies.
//!
//! * Image classification: the first output, flattened, as a JSON array of
//!   floats, `[0.3,0.1,0.04,...]`: V1's body, which its clients read with
//!   `numpy.fromstring(body[1:-1], sep=',')`.
//! * Object detection: `{"prediction": [[class_id, confidence, xmin, ymin,
//!   xmax, ymax], ...]}`, in the model's order, rows with a negative class
//!   id (the padding SSD exports emit) dropped. V1's guide calls the box
//!   values "pixel dimensions" while its example shows values in 0..1; this
//!   connector always answers box corners normalised to 0..1 of the model
//!   input, which is the whole request image stretched, so a caller
//!   multiplies by its image's width and height to get pixels. A model
//!   whose boxes are in input pixels (GluonCV's three-output export) is
//!   divided by the input's width and height; values are not clipped.

use crate::error::InferenceError;
use crate::model::Output;
use crate::preprocess::InputSpec;

/// Where a detection model puts its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectionLayout {
    /// One `[1, N, 6]` output of `[class_id, score, xmin, ymin, xmax, ymax]`
    /// rows: SageMaker's built-in object detection (SSD) layout.
    Single,
    /// Three outputs, class ids `[1, N, 1]`, scores `[1, N, 1]` and boxes
    /// `[1, N, 4]`: GluonCV's SSD/YOLO export, as Neo compiled it. The
    /// boxes are the output whose last dimension is 4; the ids come before
    /// the scores.
    Triple,
}

/// The unit of a detection model's box coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxUnits {
    /// Already 0..1 of the input (the default for [`DetectionLayout::Single`]).
    Normalized,
    /// Pixels of the model input (the default for [`DetectionLayout::Triple`]).
    Pixels,
}

/// Refuses an `Accept` this service cannot answer (it answers JSON).
pub fn check_accept(accept: &str) -> Result<(), InferenceError> {
    let ok = accept.split(',').any(|a| {
        let media = a
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        matches!(
            media.as_str(),
            "" | "*/*" | "application/*" | "application/json"
        )
    });
    if ok {
        Ok(())
    } else {
        Err(InferenceError::Accept(accept.to_string()))
    }
}

fn finite(values: &[f32]) -> Result<(), InferenceError> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(InferenceError::NotFinite)
    }
}

/// The image classification body: the first output as `[p0,p1,...]`.
pub fn classification(outputs: &[Output]) -> Result<String, InferenceError> {
    let first = outputs
        .first()
        .filter(|o| !o.data.is_empty())
        .ok_or_else(|| InferenceError::Output("the model produced no values".into()))?;
    finite(&first.data)?;
    serde_json::to_string(&first.data).map_err(|e| InferenceError::Output(e.to_string()))
}

/// The number of rows of a `[1, N, width]` (or `[N, width]`) output.
fn rows(output: &Output, width: usize, what: &str) -> Result<usize, InferenceError> {
    let shape = &output.shape;
    let leading_ones = shape.len() >= 2 && shape[..shape.len() - 2].iter().all(|d| *d == 1);
    let (n, w) = match shape.as_slice() {
        // `[1, N]` ids or scores without their trailing 1.
        [1, n] if width == 1 => (*n, 1),
        [.., n, w] if leading_ones => (*n, *w),
        _ => (0, 0),
    };
    if w != width || n * width != output.data.len() {
        return Err(InferenceError::Output(format!(
            "{what} has shape {shape:?}, expected [1, N, {width}]"
        )));
    }
    Ok(n)
}

/// The object detection body for `outputs` in `layout`.
pub fn detection(
    outputs: &[Output],
    layout: DetectionLayout,
    units: BoxUnits,
    input: &InputSpec,
) -> Result<String, InferenceError> {
    let mut detections: Vec<[f32; 6]> = Vec::new();
    match layout {
        DetectionLayout::Single => {
            let out = outputs
                .first()
                .ok_or_else(|| InferenceError::Output("no output".into()))?;
            rows(out, 6, "the detection output")?;
            for row in out.data.chunks_exact(6) {
                detections.push([row[0], row[1], row[2], row[3], row[4], row[5]]);
            }
        }
        DetectionLayout::Triple => {
            if outputs.len() != 3 {
                return Err(InferenceError::Output(format!(
                    "{} outputs, expected class ids, scores and boxes",
                    outputs.len()
                )));
            }
            let boxes_at = outputs
                .iter()
                .position(|o| o.shape.last() == Some(&4))
                .ok_or_else(|| {
                    InferenceError::Output("no output of shape [1, N, 4] (boxes)".into())
                })?;
            let mut others = (0..3).filter(|i| *i != boxes_at);
            let (ids, scores) = match (others.next(), others.next()) {
                (Some(a), Some(b)) => (&outputs[a], &outputs[b]),
                _ => return Err(InferenceError::Output("missing outputs".into())),
            };
            let boxes = &outputs[boxes_at];
            let n = rows(boxes, 4, "the boxes output")?;
            if rows(ids, 1, "the class id output")? != n
                || rows(scores, 1, "the score output")? != n
            {
                return Err(InferenceError::Output(format!(
                    "class ids {:?}, scores {:?} and boxes {:?} disagree on the number of detections",
                    ids.shape, scores.shape, boxes.shape
                )));
            }
            for (i, b) in boxes.data.chunks_exact(4).enumerate() {
                detections.push([ids.data[i], scores.data[i], b[0], b[1], b[2], b[3]]);
            }
        }
    }
    detections.retain(|d| d[0] >= 0.0);
    if units == BoxUnits::Pixels {
        let (w, h) = (input.width as f32, input.height as f32);
        for d in &mut detections {
            d[2] /= w;
            d[3] /= h;
            d[4] /= w;
            d[5] /= h;
        }
    }
    for d in &detections {
        finite(d)?;
    }
    // Serialised as f32 (shortest form that reads back the same float),
    // not through `json!`, which would widen 0.9 to 0.8999999761581421.
    #[derive(serde::Serialize)]
    struct Body<'a> {
        prediction: &'a [[f32; 6]],
    }
    serde_json::to_string(&Body {
        prediction: &detections,
    })
    .map_err(|e| InferenceError::Output(e.to_string()))
}

#[cfg(test)]
// A failed unwrap is the test failing.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::preprocess::{ChannelOrder, Layout};

    fn out(shape: &[usize], data: &[f32]) -> Output {
        Output {
            shape: shape.to_vec(),
            data: data.to_vec(),
        }
    }

    fn input() -> InputSpec {
        InputSpec {
            layout: Layout::Nchw,
            width: 200,
            height: 100,
            order: ChannelOrder::Rgb,
            scale: 1.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    #[test]
    fn classification_bodies() {
        assert_eq!(
            classification(&[out(&[1, 3], &[0.25, 0.5, 0.25])]),
            Ok("[0.25,0.5,0.25]".into())
        );
        assert_eq!(
            classification(&[out(&[1, 2], &[0.5, f32::NAN])]),
            Err(InferenceError::NotFinite)
        );
        assert!(classification(&[]).is_err());
    }

    #[test]
    fn single_output_detections_drop_padding() {
        let data = [
            1.0, 0.9, 0.1, 0.2, 0.3, 0.4, //
            -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, //
            0.0, 0.5, 0.5, 0.5, 1.0, 1.0,
        ];
        let body = detection(
            &[out(&[1, 3, 6], &data)],
            DetectionLayout::Single,
            BoxUnits::Normalized,
            &input(),
        )
        .unwrap();
        assert_eq!(
            body,
            r#"{"prediction":[[1.0,0.9,0.1,0.2,0.3,0.4],[0.0,0.5,0.5,0.5,1.0,1.0]]}"#
        );
        assert!(detection(
            &[out(&[1, 3, 5], &data[..15])],
            DetectionLayout::Single,
            BoxUnits::Normalized,
            &input()
        )
        .is_err());
    }

    #[test]
    fn three_output_detections_are_normalised() {
        let outputs = [
            out(&[1, 2, 1], &[3.0, -1.0]),
            out(&[1, 2, 1], &[0.75, 0.1]),
            out(&[1, 2, 4], &[20.0, 10.0, 100.0, 50.0, 0.0, 0.0, 1.0, 1.0]),
        ];
        let body = detection(
            &outputs,
            DetectionLayout::Triple,
            BoxUnits::Pixels,
            &input(),
        )
        .unwrap();
        assert_eq!(body, r#"{"prediction":[[3.0,0.75,0.1,0.1,0.5,0.5]]}"#);
        let mismatched = [
            outputs[0].clone(),
            out(&[1, 1, 1], &[0.5]),
            outputs[2].clone(),
        ];
        assert!(detection(
            &mismatched,
            DetectionLayout::Triple,
            BoxUnits::Pixels,
            &input()
        )
        .is_err());
    }

    #[test]
    fn accepts() {
        for ok in [
            "",
            "application/json",
            "*/*",
            "text/html, application/json; q=0.9",
        ] {
            assert_eq!(check_accept(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_accept("image/png"),
            Err(InferenceError::Accept("image/png".into()))
        );
    }
}
