//! `evergreen import` on one input: the YAML reader (CloudFormation's short-form tags, anchors
//! and aliases, the bounds on both), the template evaluator (`Ref`, `Fn::GetAtt`, `Fn::Sub`,
//! conditions, reference cycles), the reading of saved CLI outputs and the mapping onto the
//! group file, then the output's validation — as `evergreen import FILE -o DIR/group.json`
//! runs them on a file holding the text (JSON when it starts with `{` or `[`, else YAML).
//!
//! Beyond "no panic": the group is an object of definition-version names only; every code
//! file the CLI would write is a relative path under `functions/` (it is joined to the output's
//! directory, so a `..` or an absolute path would write elsewhere); a report that says
//! complete has no to-do and no validation error.

#![no_main]

use std::path::Component;

use evergreen_group::ConnectorRegistry;
use evergreen_import::{Options, Source};
use libfuzzer_sys::fuzz_target;

const KEYS: &[&str] = &[
    "CoreDefinitionVersion",
    "DeviceDefinitionVersion",
    "FunctionDefinitionVersion",
    "SubscriptionDefinitionVersion",
    "ResourceDefinitionVersion",
    "ConnectorDefinitionVersion",
    "LoggerDefinitionVersion",
];

fn options() -> Options {
    Options {
        source: Source::Auto,
        region: Some("eu-west-1".into()),
        account: Some("123456789012".into()),
        write_code: true,
        registry: ConnectorRegistry::new(vec![
            &evergreen_connector_heartbeat::MANIFEST,
            &evergreen_connector_message_log::MANIFEST,
            &evergreen_connector_device_defender::MANIFEST,
            &evergreen_connector_modbus::MANIFEST,
            &evergreen_connector_modbus_tcp::MANIFEST,
            &evergreen_connector_serial_stream::MANIFEST,
            &evergreen_connector_raspberry_pi_gpio::MANIFEST,
            &evergreen_connector_twilio::MANIFEST,
            &evergreen_connector_splunk::MANIFEST,
            &evergreen_connector_servicenow::MANIFEST,
            &evergreen_connector_sns::MANIFEST,
            &evergreen_connector_iot_analytics::MANIFEST,
            &evergreen_connector_kinesis_firehose::MANIFEST,
            &evergreen_connector_cloudwatch_metrics::MANIFEST,
        ]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    thread_local! {
        static OPTIONS: Options = options();
    }
    let Ok(import) = OPTIONS.with(|o| evergreen_import::fuzzing::import_text(text, o)) else {
        return;
    };
    let group = import.group.as_object().expect("the group is an object");
    for key in group.keys() {
        assert!(KEYS.contains(&key.as_str()), "{key:?} is not a definition-version name");
    }
    for file in &import.code_files {
        let mut components = file.path.components();
        assert_eq!(
            components.next(),
            Some(Component::Normal("functions".as_ref())),
            "{} is not under functions/",
            file.path.display()
        );
        assert!(
            components.all(|c| matches!(c, Component::Normal(_))),
            "{} leaves functions/",
            file.path.display()
        );
    }
    if import.report.is_complete() {
        assert!(import.report.todos().next().is_none());
        assert!(import.report.validation.is_empty());
    }
});
