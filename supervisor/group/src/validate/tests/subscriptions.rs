//! Tests of validation: subscriptions: endpoints, stale connector versions, topic filters and what connectors and the shadow service speak.

use super::*;

bad_fixture!(
    bad_subscription_unknown_endpoint,
    "subscription-unknown-endpoint",
    [
        (&format!("{S}[0].Source"), "`Cloud` is not \"cloud\", \"GGShadowService\", or the ARN of"),
        (&format!("{S}[1].Target"), "function:ghost:1` is not in this group's FunctionDefinitionVersion"),
        (
            &format!("{S}[2].Source"),
            "function app is in this group as `arn:aws:lambda:eu-west-1:123456789012:function:app:prod`"
        ),
        (&format!("{S}[3].Source"), "thing/stranger` is not in this group's DeviceDefinitionVersion"),
        (&format!("{S}[4].Target"), "connector SNS is not in this group's ConnectorDefinitionVersion"),
    ]
);

bad_fixture!(
    bad_subscription_stale_connector,
    "subscription-stale-connector",
    [(
        &format!("{S}[0].Target"),
        "stale subscription `to-serial`: it refers to SerialStream version 2 \
         (arn:aws:greengrass:eu-west-1::/connectors/SerialStream/versions/2), but the group deploys SerialStream \
         version 3 (arn:aws:greengrass:eu-west-1::/connectors/SerialStream/versions/3)"
    )]
);

bad_fixture!(
    bad_subject_hash_not_last,
    "subject-hash-not-last",
    [(
        &format!("{S}[0].Subject"),
        "'#' must be the last level of a filter"
    )]
);

bad_fixture!(
    bad_subject_wildcard_inside_level,
    "subject-wildcard-inside-level",
    [
        (
            &format!("{S}[0].Subject"),
            "a wildcard must occupy a whole level (found 'temp+')"
        ),
        (
            &format!("{S}[1].Subject"),
            "a wildcard must occupy a whole level (found 'a#')"
        ),
    ]
);

bad_fixture!(
    bad_subject_connector_input,
    "subject-connector-input",
    [
        (
            &format!("{S}[0].Subject"),
            "`serial/evergreen-core/status/dev/ttyUSB0` can never match a topic that SerialStream accepts \
             (serial/+/read/#, serial/+/write/#); a connector only speaks its predefined topics"
        ),
        (&format!("{S}[1].Subject"), "DeviceDefender accepts no MQTT messages"),
    ]
);

bad_fixture!(
    bad_subject_connector_output,
    "subject-connector-output",
    [(
        &format!("{S}[0].Subject"),
        "can never match a topic that SerialStream publishes"
    )]
);

bad_fixture!(
    bad_subject_shadow_and_loop,
    "subject-shadow-and-loop",
    [
        (&format!("{S}[0].Subject"), "can never match a shadow topic"),
        (
            &format!("{S}[1].Target"),
            "a subscription from cloud to cloud would loop"
        ),
    ]
);

/// The Greengrass wildcard rules, as subjects: `#` only last, wildcards
/// only as whole levels.
#[test]
fn wildcard_positions() {
    let subscription = |subject: &str| {
        format!(
            r#"{{"SubscriptionDefinitionVersion": {{"Subscriptions": [
                {{"Id": "s", "Source": "cloud", "Subject": {}, "Target": "GGShadowService"}}]}}}}"#,
            serde_json::Value::String(subject.to_string())
        )
    };
    for ok in [
        "$aws/things/+/shadow/#",
        "#",
        "+/+/+/+/#",
        "$aws/things/t/shadow/update",
        "$aws/things/+/shadow/+",
    ] {
        assert!(check(&subscription(ok), &options()).is_ok(), "{ok}");
    }
    for (bad, fragment) in [
        ("$aws/#/shadow", "'#' must be the last level"),
        ("#/x", "'#' must be the last level"),
        ("$aws/things/a+/shadow/update", "whole level (found 'a+')"),
        ("$aws/things/+/shadow/up#", "whole level (found 'up#')"),
        ("$aws/things/++/shadow/update", "whole level (found '++')"),
        ("", "Subject cannot be empty"),
    ] {
        let errors = check(&subscription(bad), &options())
            .err()
            .unwrap_or_default();
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        assert_eq!(errors[0].path, format!("{S}[0].Subject"));
        assert!(errors[0].message.contains(fragment), "{bad}: {}", errors[0]);
    }
}

/// A subscription to or from a connector must be able to carry one of
/// the connector's own topics.
#[test]
fn subjects_against_connector_topics() {
    let group = |source: &str, subject: &str, target: &str| {
        format!(
            r#"{{"ResourceDefinitionVersion": {{"Resources": [{{"Id": "port", "Name": "port",
                  "ResourceDataContainer": {{"LocalDeviceResourceData": {{"SourcePath": "/dev/ttyS0"}}}}}}]}},
                "ConnectorDefinitionVersion": {{"Connectors": [{{"Id": "serial", "ConnectorArn": "{serial}",
                  "Parameters": {{"BaudRate": "9600", "Timeout": "1", "SerialPort": "/dev/ttyS0",
                                  "SerialPort-ResourceId": "port", "PollingRead": "false"}}}}]}},
                "SubscriptionDefinitionVersion": {{"Subscriptions": [
                  {{"Id": "s", "Source": "{source}", "Subject": "{subject}", "Target": "{target}"}}]}}}}"#,
            serial = connector_arn("SerialStream", 3),
        )
    };
    let serial = connector_arn("SerialStream", 3);
    for (source, subject, target, fits) in [
        ("cloud", "serial/core/read/dev/ttyS0", serial.as_str(), true),
        ("cloud", "serial/#", serial.as_str(), true),
        ("cloud", "#", serial.as_str(), true),
        ("cloud", "serial/+/write/#", serial.as_str(), true),
        ("cloud", "serial/core/status/x", serial.as_str(), false),
        ("cloud", "serial/core/read", serial.as_str(), false), // `#` needs a level
        ("cloud", "modbus/adapter/request", serial.as_str(), false),
        (
            serial.as_str(),
            "serial/core/status/dev/ttyS0",
            "cloud",
            true,
        ),
        (serial.as_str(), "serial/+/read_response/#", "cloud", true),
        (serial.as_str(), "serial/core/read/x", "cloud", false),
    ] {
        let result = check(&group(source, subject, target), &options());
        if fits {
            assert!(result.is_ok(), "{subject}: {:?}", result.err());
        } else {
            let errors = result.err().unwrap_or_default();
            assert_eq!(errors.len(), 1, "{subject}: {errors:?}");
            assert!(
                errors[0]
                    .message
                    .contains("a connector only speaks its predefined topics"),
                "{}",
                errors[0]
            );
        }
    }
}

#[test]
fn stale_connector_version_names_both_versions() {
    let json = fixture!("bad", "subscription-stale-connector");
    let errors = errors(json);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let message = &errors[0].message;
    assert!(
        message.contains("SerialStream version 2") && message.contains("SerialStream version 3"),
        "{message}"
    );
    assert!(message.contains("`to-serial`"), "{message}");
}

#[test]
fn connector_arn_must_match_exactly() {
    // Same name and version, different region spelling.
    let json = fixture!("good", "serial-stream").replace(
        "\"Target\": \"arn:aws:greengrass:eu-west-1::/connectors/SerialStream/versions/3\"",
        "\"Target\": \"arn:aws:greengrass:::/connectors/SerialStream/versions/3\"",
    );
    let errors = errors(&json);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .message
            .contains("is not exactly the ConnectorArn of SerialStream"),
        "{}",
        errors[0]
    );
}
