//! Properties over outside input: whatever a caller sends (client context
//! bytes, predictions of any shape and values), the connector answers with
//! an admission or a refusal and never panics; the strategies' measures stay
//! in their ranges.

mod common;

use common::*;
use evergreen_connector_ml_feedback::intake::{Admission, Intake};
use evergreen_connector_ml_feedback::request::parse_context;
use evergreen_connector_ml_feedback::sampling::{
    entropy, margin, max_confidence, Strategy as Sampling,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use time::OffsetDateTime;

fn prediction() -> impl proptest::strategy::Strategy<Value = Value> {
    let number = prop_oneof![
        (-2.0f64..2.0).prop_map(|f| json!(f)),
        (0u32..5).prop_map(|n| json!(n)),
    ];
    let leaf = prop_oneof![
        number.clone(),
        ".{0,4}".prop_map(|s| json!(s)),
        Just(Value::Null),
        any::<bool>().prop_map(|b| json!(b)),
    ];
    let detection = proptest::collection::vec(number.clone(), 0..7).prop_map(Value::from);
    prop_oneof![
        proptest::collection::vec(number, 0..8).prop_map(Value::from),
        proptest::collection::vec(detection.clone(), 0..5).prop_map(Value::from),
        proptest::collection::vec(detection, 0..5).prop_map(|d| json!({ "prediction": d })),
        proptest::collection::vec(leaf.clone(), 0..5).prop_map(Value::from),
        leaf,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_context_bytes_are_answered(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_context(&bytes);
    }

    #[test]
    fn any_request_is_admitted_or_refused_with_a_reason(
        config_id in prop_oneof![Just("lc".to_string()), Just("en".to_string()), Just("all".to_string()), ".{0,6}"],
        p in prediction(),
        key in "[a-zA-Z0-9 é-]{1,6}",
        value in ".{0,8}",
        draw in 0.0f64..1.0,
    ) {
        let settings = settings(&json!({
            "lc": {"s3-bucket-name": "bkt", "content-type": "t/p",
                   "sampling-strategy": {"strategy-name": "LEAST_CONFIDENCE", "threshold": 0.5}},
            "en": {"s3-bucket-name": "bkt", "content-type": "t/p",
                   "sampling-strategy": {"strategy-name": "ENTROPY", "threshold": 0.5}},
            "all": {"s3-bucket-name": "bkt", "content-type": "t/p"}
        }), "999");
        let (intake, _queue, _held) = Intake::new(settings);
        let mut out = Vec::new();
        let ctx = context(&config_id, p, json!({ key: value }));
        let admission = intake.admit("r", &ctx, vec![1], OffsetDateTime::now_utc(), draw, &mut out);
        // Every request that ends here says so on the status topic; a
        // queued one is reported after its upload.
        let statuses = published(&out, "feedback/message/status");
        match admission {
            Admission::Refused { message, .. } => {
                prop_assert!(!message.is_empty());
                prop_assert_eq!(statuses.len(), 1);
                prop_assert_eq!(&statuses[0]["response"]["error_message"], &json!(message));
            }
            Admission::Dropped => {
                prop_assert_eq!(statuses.len(), 1);
                prop_assert_eq!(&statuses[0]["response"]["status"], "sample_dropped_by_strategy");
            }
            Admission::Queued => prop_assert!(statuses.is_empty()),
        }
    }

    #[test]
    fn measures_stay_in_range(c in proptest::collection::vec(0.0f64..=1.0, 1..12), t in 0.0f64..=1.0) {
        let m = margin(&c);
        prop_assert!((0.0..=1.0).contains(&m), "margin {}", m);
        let top = max_confidence(&c);
        prop_assert_eq!(Sampling::LeastConfidence { threshold: t }.keeps(&json!(c), 0.0), top <= t);
        prop_assert_eq!(Sampling::Margin { threshold: t }.keeps(&json!(c), 0.0), m <= t);
        if let Some(h) = entropy(&c) {
            prop_assert!(h >= -1e-12 && h <= (c.len() as f64).ln() + 1e-9, "entropy {} of {:?}", h, c);
            prop_assert_eq!(Sampling::Entropy { threshold: t }.keeps(&json!(c), 0.0), h > t);
        } else {
            prop_assert!(c.iter().all(|v| *v == 0.0));
        }
    }
}
