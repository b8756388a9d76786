//! Parameter validation against good and bad fixture files, one test per
//! file: a good file gives exactly the configurations it lists, each field
//! read; a bad one the errors it names, per configuration id, with the
//! valid configurations still usable. Good files also pass the manifest's
//! patterns.

use std::path::PathBuf;

use evergreen_connector_kit::testing::{config, ManifestChecks};
use evergreen_connector_kit::Notes;
use evergreen_connector_ml_feedback::sampling::Strategy;
use evergreen_connector_ml_feedback::settings::{Settings, FEEDBACK_CONFIGURATION_MAP};
use evergreen_connector_ml_feedback::MANIFEST;
use evergreen_ipc::LogLevel;
use serde_json::Value;

/// A fixture's settings, the notes about them, its expectations and its
/// parameters as passed.
type Fixture = (Settings, Notes, Value, Vec<(String, String)>);

/// The fixture's settings, notes and expectations. A map given as a JSON
/// object is passed as its text, as Greengrass passes every parameter.
fn load(kind: &str, name: &str) -> Fixture {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/params", kind]
        .iter()
        .collect::<PathBuf>()
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("fixture JSON");
    let params: Vec<(String, String)> = v["parameters"]
        .as_object()
        .expect("parameters")
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), value)
        })
        .collect();
    let refs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (settings, notes) = Settings::from_config(&config(&MANIFEST, 1, &refs).build());
    (settings, notes, v["expect"].clone(), params)
}

fn strategy(s: &Option<Strategy>) -> Value {
    match s {
        None => Value::Null,
        Some(Strategy::Random { rate }) => serde_json::json!(["RANDOM_SAMPLING", rate]),
        Some(
            s @ (Strategy::LeastConfidence { threshold }
            | Strategy::Margin { threshold }
            | Strategy::Entropy { threshold }),
        ) => serde_json::json!([s.name(), threshold]),
    }
}

fn good(name: &str) {
    let (settings, notes, expect, params) = load("good", name);
    for (k, value) in &params {
        assert!(
            MANIFEST.admits(k, value),
            "{k}={value:?} breaks the manifest's pattern"
        );
    }
    assert!(
        notes.iter().all(|(l, _)| *l != LogLevel::Error),
        "{name}: {notes:#?}"
    );
    assert_eq!(settings.map_error, None);
    assert!(settings.unusable.is_empty(), "{:?}", settings.unusable);
    assert_eq!(
        settings.request_limit as u64,
        expect["request_limit"].as_u64().expect("request_limit")
    );
    let configs = expect["configs"].as_object().expect("configs");
    assert_eq!(
        settings.configs.keys().collect::<Vec<_>>(),
        configs.keys().collect::<Vec<_>>()
    );
    for (id, want) in configs {
        let c = &settings.configs[id];
        let got = serde_json::json!({"bucket": c.bucket, "content_type": c.content_type,
            "prefix": c.prefix, "file_ext": c.file_ext, "strategy": strategy(&c.strategy)});
        assert_eq!(&got, want, "{name}: {id}");
    }
    if let Some(w) = expect["warning"].as_str() {
        assert!(
            notes
                .iter()
                .any(|(l, t)| *l == LogLevel::Warn && t.contains(w)),
            "{name}: no warning {w:?} in {notes:#?}"
        );
    }
}

fn bad(name: &str) {
    let (settings, notes, expect, _) = load("bad", name);
    if let Some(e) = expect["map_error"].as_str() {
        let got = settings
            .map_error
            .as_deref()
            .unwrap_or_else(|| panic!("{name}: no map error"));
        assert!(got.contains(e), "{name}: {got}");
        assert!(settings.configs.is_empty());
        assert!(
            notes
                .iter()
                .any(|(l, t)| *l == LogLevel::Error && t.contains(e)),
            "{name}: {notes:#?}"
        );
        // Every request is refused with the reason.
        let refused = settings.lookup("any").expect_err("refused");
        assert!(refused.contains(e), "{refused}");
    }
    if let Some(usable) = expect["usable"].as_array() {
        let want: Vec<&str> = usable.iter().filter_map(Value::as_str).collect();
        assert_eq!(
            settings
                .configs
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            want
        );
    }
    if let Some(unusable) = expect["unusable"].as_object() {
        assert_eq!(
            settings.unusable.keys().collect::<Vec<_>>(),
            unusable.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (id, why) in unusable {
            let why = why.as_str().expect("text");
            assert!(
                settings.unusable[id].contains(why),
                "{id}: {}",
                settings.unusable[id]
            );
            assert!(
                notes.iter().any(|(l, t)| *l == LogLevel::Error
                    && t.contains(id.as_str())
                    && t.contains(why)),
                "{id} not logged: {notes:#?}"
            );
            let refused = settings.lookup(id).expect_err("refused");
            assert!(refused.contains(why), "{refused}");
        }
    }
    if let Some(limit) = expect["request_limit"].as_u64() {
        assert_eq!(settings.request_limit as u64, limit);
    }
    if let Some(note) = expect["error_note"].as_str() {
        assert!(
            notes
                .iter()
                .any(|(l, t)| *l == LogLevel::Error && t.contains(note)),
            "{name}: {notes:#?}"
        );
    }
}

#[test]
fn good_v1_guide_example() {
    good("v1-guide-example");
}

#[test]
fn good_cli_example() {
    good("cli-example");
}

#[test]
fn good_lenient_forms() {
    good("lenient-forms");
}

#[test]
fn bad_not_json() {
    bad("not-json");
}

#[test]
fn bad_empty_map() {
    bad("empty-map");
}

#[test]
fn bad_missing_map() {
    bad("missing-map");
}

#[test]
fn bad_request_limit_out_of_range() {
    bad("request-limit-out-of-range");
}

#[test]
fn bad_entries() {
    bad("entries");
}

#[test]
fn an_unknown_config_id_is_named_in_the_refusal() {
    let map = r#"{"c1": {"s3-bucket-name": "bkt", "content-type": "text/plain"}}"#;
    let (settings, _) =
        Settings::from_config(&config(&MANIFEST, 1, &[(FEEDBACK_CONFIGURATION_MAP, map)]).build());
    assert_eq!(
        settings.lookup("c2").expect_err("unknown"),
        "Feedback configuration map does not contain config_id: c2"
    );
    assert!(settings.lookup("c1").is_ok());
}
