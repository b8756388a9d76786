//! Tests of validation: connectors: versions, parameters, the resources they name, isolation.

use super::*;

#[test]
fn good_raspberry_pi_gpio() {
    let plan = plan(fixture!("good", "raspberry-pi-gpio"));
    let gpio = component(&plan, &connector_arn("RaspberryPiGPIO", 3));
    assert_eq!(
        gpio.launch,
        Launch::Connector {
            name: "RaspberryPiGPIO".into(),
            version: 3
        }
    );
    assert_eq!(gpio.isolation, Isolation::GreengrassContainer);
    assert!(gpio.pinned);
    let params: Vec<(&str, &str)> = gpio
        .parameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("GpioMem-ResourceId", "gpio-chip"),
            ("InputGpios", "5,6U,7D"),
            ("InputPollPeriod", "50"),
            ("OutputGpios", "18L,27H"),
        ]
    );
    assert_eq!(
        gpio.resources,
        [ResourceAccess {
            resource_id: "gpio-chip".into(),
            read_write: true
        }]
    );
    assert_eq!(plan.subscriptions.len(), 4);
}

#[test]
fn good_serial_stream() {
    let plan = plan(fixture!("good", "serial-stream"));
    let arn = connector_arn("SerialStream", 3);
    let serial = component(&plan, &arn);
    assert_eq!(serial.kind, ComponentKind::Connector);
    assert_eq!(serial.name, "SerialStream");
    assert_eq!(
        serial.launch,
        Launch::Connector {
            name: "SerialStream".into(),
            version: 3
        }
    );
    assert_eq!(serial.isolation, Isolation::GreengrassContainer);
    assert!(serial.pinned);
    assert_eq!(
        (serial.memory_kb, serial.timeout_s),
        (None, DEFAULT_TIMEOUT_S)
    );
    assert_eq!(
        serial.log_file,
        PathBuf::from("user/eu-west-1/aws/SerialStream.log")
    );
    let params: Vec<(&str, &str)> = serial
        .parameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        params,
        [
            ("BaudRate", "115200"),
            ("Parity", "N"),
            ("PollingRead", "true"),
            ("PollingReadInterval", "2"),
            ("PollingReadLength", "64"),
            ("PollingReadType", "ascii"),
            ("RtsCts", "false"),
            ("SerialPort", "/dev/ttyUSB0"),
            ("SerialPort-ResourceId", "serial-port"),
            ("Timeout", "5"),
            ("XonXoff", "false"),
        ]
    );
    assert_eq!(
        serial.resources,
        [ResourceAccess {
            resource_id: "serial-port".into(),
            read_write: true
        }]
    );
    assert!(serial.secrets.is_empty());
    assert_eq!(
        plan.resources.get("serial-port").map(|r| &r.data),
        Some(&ResourceData::LocalDevice {
            source_path: PathBuf::from("/dev/ttyUSB0"),
            group_owner: GroupOwner {
                auto_add: true,
                group: None
            },
        })
    );
}

#[test]
fn good_no_container_default() {
    let plan = plan(fixture!("good", "no-container-default"));
    // No CoreDefinitionVersion: the configured core is used.
    assert_eq!(plan.core.thing_arn, CORE);
    let alarm = component(&plan, &fn_arn("alarm", "1"));
    assert_eq!(alarm.isolation, Isolation::NoContainer);
    assert_eq!(alarm.memory_kb, None, "no memory limit without a container");
    assert_eq!(
        alarm.run_as,
        RunAs {
            uid: Some(1001),
            gid: Some(1002)
        }
    );
    assert_eq!(alarm.secrets, ["TwilioAuthToken"]);
    for name in ["TwilioNotifications", "CloudWatchMetrics"] {
        let c = component(&plan, &connector_arn(name, 5));
        assert_eq!(c.isolation, Isolation::NoContainer, "{name}");
        assert_eq!(
            c.parameters.get("IsolationMode").map(String::as_str),
            Some("NoContainer")
        );
        assert_eq!(
            c.run_as, alarm.run_as,
            "connectors run as the group's default identity"
        );
    }
    let twilio = component(&plan, &connector_arn("TwilioNotifications", 5));
    assert_eq!(twilio.secrets, ["TwilioAuthToken"]);
    assert_eq!(
        twilio.resources,
        [ResourceAccess {
            resource_id: "twilio-token".into(),
            read_write: false
        }]
    );
}

bad_fixture!(
    bad_connector_arn,
    "connector-arn",
    [(&format!("{C}[0].ConnectorArn"), "is not a connector ARN")]
);

bad_fixture!(
    bad_connector_not_in_build,
    "connector-not-in-build",
    [(
        &format!("{C}[0].ConnectorArn"),
        "IoTAnalytics is a Greengrass connector that this build of Evergreen does not contain (built-in \
         connectors: CloudWatchMetrics, ContainerOnlyWithMode, DeviceDefender, IoTSiteWise, ModbusRTUProtocolAdapter, \
         ModbusTCPConnector, RaspberryPiGPIO, SerialStream, TwilioNotifications)"
    )]
);

bad_fixture!(
    bad_connector_unknown,
    "connector-unknown",
    [(
        &format!("{C}[0].ConnectorArn"),
        "unknown connector `FancyConnector` (built-in connectors: "
    )]
);

bad_fixture!(
    bad_connector_version,
    "connector-version",
    [(
        &format!("{C}[0].ConnectorArn"),
        "SerialStream version 4 is not available: this build implements version(s) 1, 2, 3"
    )]
);

bad_fixture!(
    bad_connector_twice,
    "connector-twice",
    [(
        &format!("{C}[1].ConnectorArn"),
        "SerialStream is already in this group at $.ConnectorDefinitionVersion.Connectors[0]"
    )]
);

bad_fixture!(
    bad_parameter_missing,
    "parameter-missing",
    [(
        &format!("{C}[0].Parameters"),
        "missing required parameter BaudRate of SerialStream: baud rate"
    )]
);

bad_fixture!(
    bad_parameter_pattern,
    "parameter-pattern",
    [
        (
            &format!("{C}[0].Parameters.BaudRate"),
            "`9601` is not a valid BaudRate: it must match"
        ),
        (
            &format!("{C}[0].Parameters.Timeout"),
            "`60` is not a valid Timeout"
        ),
    ]
);

bad_fixture!(
    bad_parameter_unknown,
    "parameter-unknown",
    [(
        &format!("{C}[0].Parameters.Speed"),
        "unknown parameter `Speed` for SerialStream version 3 (known: BaudRate"
    )]
);

bad_fixture!(
    bad_parameter_later_version,
    "parameter-later-version",
    [(
        &format!("{C}[0].Parameters.IsolationMode"),
        "parameter IsolationMode exists from TwilioNotifications version 5 on; this group uses version 4"
    )]
);

bad_fixture!(
    bad_parameter_resource_missing,
    "parameter-resource-missing",
    [(
        &format!("{C}[0].Parameters.SerialPort-ResourceId"),
        "`ghost` is not the Id of a resource in this group's ResourceDefinitionVersion (SerialStream needs a \
         LocalDeviceResourceData)"
    )]
);

bad_fixture!(
    bad_parameter_resource_kind,
    "parameter-resource-kind",
    [(
        &format!("{C}[0].Parameters.SerialPort-ResourceId"),
        "is a LocalVolumeResourceData, but SerialPort-ResourceId needs a LocalDeviceResourceData"
    )]
);

bad_fixture!(
    bad_parameter_resource_mismatch,
    "parameter-resource-mismatch",
    [(
        &format!("{C}[0].Parameters.SerialPort"),
        "`/dev/ttyUSB1` does not match resource `serial-port` named by SerialPort-ResourceId (which has `/dev/ttyUSB0`)"
    )]
);

bad_fixture!(
    bad_serial_port_shared,
    "serial-port-shared",
    [
        (
            &format!(
                "{F}[0].FunctionConfiguration.Environment.ResourceAccessPolicies[0].ResourceId"
            ),
            "/dev/ttyUSB0 (resource `serial-port`) is already used by connector SerialStream"
        ),
        (
            &format!("{C}[1].Parameters.ModbusSerialPort-ResourceId"),
            "/dev/ttyUSB0 (resource `modbus-port`) is already used by connector SerialStream"
        ),
    ]
);

bad_fixture!(
    bad_isolation_unsupported,
    "isolation-unsupported",
    [(
        &format!("{C}[0].Parameters.IsolationMode"),
        "ContainerOnlyWithMode cannot run in NoContainer isolation"
    )]
);

bad_fixture!(
    bad_group_no_container,
    "group-no-container",
    [
        (
            &format!("{C}[0].ConnectorArn"),
            "but SerialStream runs only in a Greengrass container"
        ),
        (
            &format!("{C}[1].Parameters.IsolationMode"),
            "every connector must run without a container"
        ),
    ]
);

/// A group with the SiteWise test connector whose `AWSSecretsArnList` is `list`.
fn sitewise_group(list: &str) -> String {
    serde_json::json!({
        "ConnectorDefinitionVersion": {"Connectors": [{
            "Id": "sitewise",
            "ConnectorArn": connector_arn("IoTSiteWise", 12),
            "Parameters": {"AWSSecretsArnList": list}
        }]},
        "ResourceDefinitionVersion": {"Resources": [{
            "Id": "opc-user", "Name": "OpcUser",
            "ResourceDataContainer": {"SecretsManagerSecretResourceData": {
                "ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:greengrass-opc-AbCdEf"}}
        }]}
    })
    .to_string()
}

#[test]
fn secrets_named_by_arn_in_aws_secrets_arn_list_are_granted() {
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:greengrass-opc-AbCdEf";
    let granted = plan(&sitewise_group(&serde_json::json!([arn]).to_string()));
    let c = component(&granted, &connector_arn("IoTSiteWise", 12));
    assert_eq!(c.secrets, ["OpcUser"]);
    assert_eq!(
        c.resources,
        [ResourceAccess {
            resource_id: "opc-user".into(),
            read_write: false
        }]
    );
    assert!(component(
        &plan(&sitewise_group("[]")),
        &connector_arn("IoTSiteWise", 12)
    )
    .resources
    .is_empty());
    let path = format!("{C}[0].Parameters.AWSSecretsArnList");
    expect(
        &sitewise_group(&serde_json::json!([arn.replace("opc", "other")]).to_string()),
        &[(
            &path,
            "is not a SecretsManagerSecretResourceData resource of this group",
        )],
    );
    expect(
        &sitewise_group("not json"),
        &[(&path, "must be a JSON array")],
    );
}
