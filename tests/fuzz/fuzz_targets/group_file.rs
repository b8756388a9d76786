//! The group file parser and its validation (`evergreen_group::Loader`), as `evergreen run
//! --group` and a deployment load a group: arbitrary text, validated against every built-in
//! connector's manifest. A group that validates must give a plan the runtime can deploy:
//! its subscriptions build the router's table (the supervisor does that on every
//! deployment, and treats a failure as a bug) and every subject is a valid filter.

#![no_main]

use std::path::PathBuf;

use evergreen_group::{ConnectorRegistry, Loader, ValidationOptions};
use evergreen_runtime::router::{Subscription, SubscriptionTable};
use libfuzzer_sys::fuzz_target;

fn loader() -> Loader {
    let registry = ConnectorRegistry::new(vec![
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
    ]);
    Loader::new(
        registry,
        ValidationOptions {
            default_core_thing_arn: "arn:aws:iot:us-east-1:123456789012:thing/core".into(),
            ..ValidationOptions::default()
        },
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    thread_local! {
        static LOADER: Loader = loader();
    }
    let result = LOADER.with(|l| {
        l.load(
            text,
            "fuzz.json",
            PathBuf::from("/opt/evergreen-fuzz/group"),
        )
    });
    let Ok(plan) = result else {
        return;
    };
    for s in &plan.subscriptions {
        assert!(
            evergreen_ipc::topic::validate_filter(&s.subject).is_ok(),
            "validated subject {:?} is not a filter",
            s.subject
        );
    }
    if let Err(errors) = SubscriptionTable::build(
        plan.subscriptions
            .iter()
            .map(|s| Subscription::new(&s.id, &s.source, &s.subject, &s.target)),
    ) {
        panic!("a validated group's subscriptions do not build the router table: {errors:?}");
    }
});
