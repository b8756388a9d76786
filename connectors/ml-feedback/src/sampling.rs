//! The four sampling strategies and what they read from a model
//! prediction. Pure: the random draw is passed in, so every decision is
//! testable; nothing here logs, uploads or publishes.
//!
//! **What the uncertainty strategies look at** ([`confidences`]):
//! * a list of numbers (image classification: per-class probabilities) —
//!   those numbers;
//! * a list of detections (object detection: `[[class_id, confidence,
//!   xmin, ymin, xmax, ymax], …]`) — each detection's confidence (its
//!   second element);
//! * a dictionary with a `prediction` list (the ML Object Detection
//!   connector's answer `{"prediction": [[…], …]}`) — that list, read as
//!   above.
//!
//! Anything else (another dictionary, a mixed list) cannot be judged by
//! LEAST_CONFIDENCE, MARGIN or ENTROPY: the request is refused when it
//! arrives ([`Strategy::check`]), so a caller learns at once instead of its
//! samples vanishing. RANDOM_SAMPLING and "no strategy" never read the
//! prediction.
//!
//! **ENTROPY** is the Shannon entropy in nats of the confidences
//! normalised to sum 1: `-Σ pᵢ ln pᵢ` with `pᵢ = cᵢ / Σc`. The reference's
//! example `[.5, .25, .25]` gives `0.5 ln 2 + 2 · 0.25 ln 4 = 1.03972`,
//! which this reproduces; dividing by `ln n` (the other common meaning of
//! "normalised") would give 0.946 instead. The entropy of detection
//! confidences is computed the same way: it is high when no detection
//! stands out.
//!
//! **MARGIN** with one confidence takes the second as 0, so a single
//! confident detection has a large margin.

use serde_json::Value;

/// The strategy names V1 accepts.
pub const RANDOM_SAMPLING: &str = "RANDOM_SAMPLING";
pub const LEAST_CONFIDENCE: &str = "LEAST_CONFIDENCE";
pub const MARGIN: &str = "MARGIN";
pub const ENTROPY: &str = "ENTROPY";

/// A configured sampling strategy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// Upload when a uniform draw in `[0, 1)` is below `rate` (0–1).
    Random { rate: f64 },
    /// Upload when the highest confidence is at most `threshold` (0–1).
    LeastConfidence { threshold: f64 },
    /// Upload when the two highest confidences differ by at most
    /// `threshold` (0–1).
    Margin { threshold: f64 },
    /// Upload when the normalised entropy is above `threshold` (≥ 0).
    Entropy { threshold: f64 },
}

impl Strategy {
    /// The V1 name of the strategy.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Random { .. } => RANDOM_SAMPLING,
            Strategy::LeastConfidence { .. } => LEAST_CONFIDENCE,
            Strategy::Margin { .. } => MARGIN,
            Strategy::Entropy { .. } => ENTROPY,
        }
    }

    /// Whether this strategy can judge `prediction`; `Err` says why not
    /// (completes "ModelPrediction …").
    pub fn check(&self, prediction: &Value) -> Result<(), String> {
        match self {
            Strategy::Random { .. } => Ok(()),
            Strategy::LeastConfidence { .. } | Strategy::Margin { .. } => {
                confidences(prediction).map(|_| ())
            }
            Strategy::Entropy { .. } => {
                let c = confidences(prediction)?;
                if c.iter().any(|v| *v < 0.0) {
                    return Err("has a negative confidence, which has no entropy".into());
                }
                if c.iter().sum::<f64>() <= 0.0 {
                    return Err("has no confidence above 0, which has no entropy".into());
                }
                Ok(())
            }
        }
    }

    /// Whether to upload the sample. `draw` is a uniform random number in
    /// `[0, 1)` (only RANDOM_SAMPLING reads it). A prediction the strategy
    /// cannot judge is kept (the caller checked it with [`Strategy::check`]
    /// first; keeping loses nothing).
    pub fn keeps(&self, prediction: &Value, draw: f64) -> bool {
        match *self {
            Strategy::Random { rate } => draw < rate,
            Strategy::LeastConfidence { threshold } => match confidences(prediction) {
                Ok(c) => max_confidence(&c) <= threshold,
                Err(_) => true,
            },
            Strategy::Margin { threshold } => match confidences(prediction) {
                Ok(c) => margin(&c) <= threshold,
                Err(_) => true,
            },
            Strategy::Entropy { threshold } => {
                match confidences(prediction).ok().and_then(|c| entropy(&c)) {
                    Some(h) => h > threshold,
                    None => true,
                }
            }
        }
    }
}

/// The confidences an uncertainty strategy reads from `prediction` (see
/// the module docs), or why there are none (completes "ModelPrediction …").
pub fn confidences(prediction: &Value) -> Result<Vec<f64>, String> {
    let list = match prediction {
        Value::Array(list) => list,
        Value::Object(map) => match map.get("prediction") {
            Some(Value::Array(list)) => list,
            _ => {
                return Err(
                    "is a dictionary without a \"prediction\" list of detections, which the \
                     strategy cannot read confidences from"
                        .into(),
                )
            }
        },
        _ => return Err("must be a list or a dictionary".into()),
    };
    if list.is_empty() {
        return Err("has no confidences".into());
    }
    if let Some(numbers) = list.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>() {
        return Ok(numbers);
    }
    list.iter()
        .map(|d| match d {
            Value::Array(detection) => detection.get(1).and_then(Value::as_f64),
            _ => None,
        })
        .collect::<Option<Vec<f64>>>()
        .ok_or_else(|| {
            "must be a list of numbers or of detections [class_id, confidence, …]".into()
        })
}

/// The highest confidence.
pub fn max_confidence(c: &[f64]) -> f64 {
    c.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The highest confidence minus the second highest (0 when there is one).
pub fn margin(c: &[f64]) -> f64 {
    let mut top = [f64::NEG_INFINITY; 2];
    for &v in c {
        if v > top[0] {
            top = [v, top[0]];
        } else if v > top[1] {
            top[1] = v;
        }
    }
    let second = if top[1].is_finite() { top[1] } else { 0.0 };
    top[0] - second
}

/// The Shannon entropy (nats) of `c` normalised to sum 1; `None` when
/// that is undefined (a negative value, or nothing above 0).
pub fn entropy(c: &[f64]) -> Option<f64> {
    if c.iter().any(|v| *v < 0.0) {
        return None;
    }
    let sum: f64 = c.iter().sum();
    if sum <= 0.0 || !sum.is_finite() {
        return None;
    }
    Some(
        -c.iter()
            .map(|v| v / sum)
            .filter(|p| *p > 0.0)
            .map(|p| p * p.ln())
            .sum::<f64>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn the_reference_examples() {
        // LEAST_CONFIDENCE: threshold .6, [.2, .2, .4, .2]: max .4 <= .6, used.
        let p = json!([0.2, 0.2, 0.4, 0.2]);
        assert!(Strategy::LeastConfidence { threshold: 0.6 }.keeps(&p, 0.0));
        assert!(!Strategy::LeastConfidence { threshold: 0.39 }.keeps(&p, 0.0));
        // MARGIN: threshold .02, [.3, .35, .34, .01]: margin .01 <= .02, used.
        let p = json!([0.3, 0.35, 0.34, 0.01]);
        assert!(close(margin(&confidences(&p).expect("judgeable")), 0.01));
        assert!(Strategy::Margin { threshold: 0.02 }.keeps(&p, 0.0));
        assert!(!Strategy::Margin { threshold: 0.005 }.keeps(&p, 0.0));
        // ENTROPY: threshold .75, [.5, .25, .25]: entropy 1.03972 > .75, used.
        let p = json!([0.5, 0.25, 0.25]);
        let h = entropy(&confidences(&p).expect("judgeable")).expect("judgeable");
        assert!(close(h, 1.03972), "{h}");
        assert!(Strategy::Entropy { threshold: 0.75 }.keeps(&p, 0.0));
        assert!(!Strategy::Entropy { threshold: 1.04 }.keeps(&p, 0.0));
    }

    #[test]
    fn entropy_normalises_the_sum_not_the_class_count() {
        // Unnormalised confidences give the same entropy as their normalised form.
        let a = entropy(&[1.0, 0.5, 0.5]).expect("judgeable");
        assert!(close(a, 1.03972), "{a}");
        // A certain prediction has none; a uniform one has ln n.
        assert!(close(entropy(&[1.0, 0.0, 0.0]).expect("judgeable"), 0.0));
        assert!(close(entropy(&[0.25; 4]).expect("judgeable"), 4f64.ln()));
        assert_eq!(entropy(&[0.5, -0.1]), None);
        assert_eq!(entropy(&[0.0, 0.0]), None);
    }

    #[test]
    fn random_compares_the_draw_with_the_rate() {
        let p = json!({"anything": true});
        let s = Strategy::Random { rate: 0.5 };
        assert!(s.check(&p).is_ok());
        assert!(s.keeps(&p, 0.49));
        assert!(!s.keeps(&p, 0.5));
        assert!(!Strategy::Random { rate: 0.0 }.keeps(&p, 0.0));
        assert!(Strategy::Random { rate: 1.0 }.keeps(&p, 0.999_999));
    }

    #[test]
    fn detections_are_judged_by_their_confidences() {
        let dict = json!({"prediction": [[14.0, 0.59, 0.1, 0.2, 0.3, 0.4], [2.0, 0.57, 0.5, 0.5, 0.6, 0.6]]});
        assert_eq!(confidences(&dict).expect("judgeable"), vec![0.59, 0.57]);
        let list = json!([
            [14, 0.59, 0.1, 0.2, 0.3, 0.4],
            [2, 0.57, 0.5, 0.5, 0.6, 0.6]
        ]);
        assert_eq!(confidences(&list).expect("judgeable"), vec![0.59, 0.57]);
        assert!(Strategy::LeastConfidence { threshold: 0.6 }.keeps(&dict, 0.0));
        assert!(Strategy::Margin { threshold: 0.05 }.keeps(&dict, 0.0));
        // One detection: the second confidence is taken as 0.
        let one = json!({"prediction": [[1, 0.9, 0, 0, 1, 1]]});
        assert!(close(margin(&confidences(&one).expect("judgeable")), 0.9));
        assert!(!Strategy::Margin { threshold: 0.5 }.keeps(&one, 0.0));
    }

    #[test]
    fn what_cannot_be_judged_is_refused_by_check() {
        let s = Strategy::LeastConfidence { threshold: 0.5 };
        for bad in [
            json!({"label": "cat"}),
            json!([]),
            json!(["a", 0.5]),
            json!([[1]]),
            json!("0.5"),
        ] {
            assert!(s.check(&bad).is_err(), "{bad}");
            assert!(Strategy::Random { rate: 0.1 }.check(&bad).is_ok());
        }
        let e = Strategy::Entropy { threshold: 0.1 };
        assert!(e.check(&json!([0.5, -0.5])).is_err());
        assert!(e.check(&json!([0, 0])).is_err());
        assert!(e.check(&json!([0.5, 0.5])).is_ok());
        assert_eq!(e.name(), ENTROPY);
    }
}
