//! Tests of validation: the core and the client devices.

use super::*;

bad_fixture!(
    bad_two_cores,
    "two-cores",
    [(
        "$.CoreDefinitionVersion.Cores[1]",
        "exactly one core (it has 2)"
    )]
);

bad_fixture!(
    bad_no_core,
    "no-core",
    [(
        "$.CoreDefinitionVersion.Cores",
        "exactly one core (it has none)"
    )]
);

bad_fixture!(
    bad_core_arns,
    "core-arns",
    [
        (
            "$.CoreDefinitionVersion.Cores[0].ThingArn",
            "is not a thing ARN"
        ),
        (
            "$.CoreDefinitionVersion.Cores[0].CertificateArn",
            "is not a certificate ARN"
        ),
    ]
);

bad_fixture!(
    bad_device_thing_arns,
    "device-thing-arns",
    [
        (
            "$.DeviceDefinitionVersion.Devices[0].ThingArn",
            "not a 12-digit account id"
        ),
        (
            "$.DeviceDefinitionVersion.Devices[2].ThingArn",
            "duplicate device ThingArn"
        ),
        (
            "$.DeviceDefinitionVersion.Devices[3].ThingArn",
            "this is the group's core"
        ),
    ]
);

#[test]
fn missing_core_configuration_is_reported() {
    let opts = ValidationOptions {
        default_core_thing_arn: String::new(),
        ..options()
    };
    let errors = check("{}", &opts).err().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "$");
    assert!(
        errors[0].message.contains("no CoreDefinitionVersion"),
        "{}",
        errors[0]
    );
}
