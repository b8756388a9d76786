//! Parameter validation against good and bad fixture files (one test per
//! file): a good file gives the lines and poll period it lists, a bad one
//! exactly its errors, in order. Every good file also passes the
//! manifest's V1 patterns, and every pattern-breaking value fails them.

mod common;

use std::path::PathBuf;

use evergreen_connector_kit::testing::{config, ManifestChecks};
use evergreen_connector_raspberry_pi_gpio::chip::{LineConfig, Pull};
use evergreen_connector_raspberry_pi_gpio::settings::parse;
use evergreen_connector_raspberry_pi_gpio::MANIFEST;
use evergreen_ipc::manifest::ResourceKind;
use serde_json::Value;

fn load(kind: &str, name: &str) -> (evergreen_ipc::ComponentConfig, Value) {
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
        .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let c = config(&MANIFEST, 3, &refs)
        .core(common::CORE)
        .grant("gpio-mem", "/dev/gpiochip0", true)
        .build();
    (c, v)
}

fn good(name: &str) {
    let (c, v) = load("good", name);
    for (k, value) in &c.parameters {
        assert!(
            MANIFEST.admits(k, value),
            "{k}={value:?} breaks V1's pattern"
        );
    }
    let s = parse(&c).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let inputs: Vec<LineConfig> = v["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| LineConfig::Input {
            offset: i[0].as_u64().expect("pin") as u32,
            pull: match i[1].as_str() {
                Some("Up") => Pull::Up,
                Some("Down") => Pull::Down,
                _ => Pull::None,
            },
        })
        .collect();
    let outputs = v["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|o| LineConfig::Output {
            offset: o[0].as_u64().expect("pin") as u32,
            initial: o[1].as_bool().expect("level"),
        });
    let expected: Vec<LineConfig> = inputs.into_iter().chain(outputs).collect();
    assert_eq!(s.lines, expected);
    assert_eq!(
        s.poll_period.as_millis() as u64,
        v["poll_ms"].as_u64().expect("poll_ms")
    );
    assert_eq!(s.core, common::CORE);
    assert_eq!(
        s.device.as_deref(),
        Some(std::path::Path::new("/dev/gpiochip0"))
    );
}

fn bad(name: &str) {
    let (c, v) = load("bad", name);
    let errors: Vec<String> = match parse(&c) {
        Ok(s) => panic!("{name} validated: {s:?}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    };
    let expected: Vec<String> = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e.as_str().expect("string").to_string())
        .collect();
    assert_eq!(errors, expected);
}

macro_rules! fixtures {
    ($check:ident: $($test:ident => $file:literal),* $(,)?) => {
        $( #[test] fn $test() { $check($file) } )*
    };
}

fixtures!(good:
    good_v1_example => "v1-example",
    good_inputs_only_default_period => "inputs-only-default-period",
    good_outputs_only_empty_inputs => "outputs-only-empty-inputs",
);

fixtures!(bad:
    bad_no_gpios => "no-gpios",
    bad_no_resource => "no-resource",
    bad_patterns => "patterns",
    bad_off_header => "off-header",
    bad_duplicates => "duplicates",
    bad_leading_zero_period => "leading-zero-period",
);

#[test]
fn manifest_matches_v1() {
    assert_eq!(MANIFEST.name, "RaspberryPiGPIO");
    assert_eq!(MANIFEST.versions, &[1, 2, 3]);
    assert!(MANIFEST.isolation.container && !MANIFEST.isolation.no_container);
    assert_eq!(
        MANIFEST.resource_kind("GpioMem-ResourceId"),
        Some(ResourceKind::LocalDevice)
    );
    MANIFEST.assert_filters_valid();
    assert!(MANIFEST.admits("InputGpios", "5,6U,7D"));
    assert!(MANIFEST.admits("InputGpios", ""));
    assert!(!MANIFEST.admits("InputGpios", "5,6H"));
    assert!(MANIFEST.admits("OutputGpios", "8H,9,27L"));
    assert!(!MANIFEST.admits("OutputGpios", "8U"));
    assert!(MANIFEST.admits("InputPollPeriod", "1"));
    assert!(!MANIFEST.admits("InputPollPeriod", "0"));
    assert!(!MANIFEST.admits("GpioMem-ResourceId", ""));
}
