//! Support shared by the validation tests: test manifests and registry,
//! options, fixtures and the helpers that check a group's plan or errors.
//! The tests themselves sit in one file per part of the group.

use std::path::PathBuf;

use evergreen_ipc::manifest::{ConnectorManifest, IsolationSupport, ParameterSpec, ResourceKind};
use evergreen_ipc::{ComponentKind, LogLevel};

use super::{validate, ValidationOptions, DEFAULT_MEMORY_KB, DEFAULT_TIMEOUT_S};
use crate::loader::list;
use crate::model::{self, ValidationError};
use crate::plan::{
    ComponentSpec, GroupOwner, GroupPlan, Isolation, Launch, LogSettings, LoggerPlan,
    ResourceAccess, ResourceData, RunAs,
};
use crate::registry::{manifest_problems, ConnectorRegistry};

// Test manifests: the parameter tables of connectors.md for a few
// connectors, plus one artificial manifest. The real manifests live in
// the connector crates; these keep validation tests independent of them.

const FLAG: &str = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$";
const OPT_FLAG: &str = "^(|[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$";
const ISOLATION: &str = "^NoContainer$|^GreengrassContainer$";
const CONTAINER_ONLY: IsolationSupport = IsolationSupport {
    container: true,
    no_container: false,
};
const BOTH: IsolationSupport = IsolationSupport {
    container: true,
    no_container: true,
};

static RASPBERRY_PI_GPIO: ConnectorManifest = ConnectorManifest {
    name: "RaspberryPiGPIO",
    versions: &[1, 2, 3],
    description: "reads and writes Raspberry Pi GPIO lines",
    parameters: &[
        ParameterSpec::new("InputGpios", "inputs").pattern("^$|^[0-9]+[UD]?(,[0-9]+[UD]?)*$"),
        ParameterSpec::new("InputPollPeriod", "poll period, ms").pattern("^$|^[1-9][0-9]*$"),
        ParameterSpec::new("OutputGpios", "outputs").pattern("^$|^[0-9]+[HL]?(,[0-9]+[HL]?)*$"),
        ParameterSpec::new("GpioMem-ResourceId", "device resource of the GPIO chip")
            .required()
            .pattern(".+")
            .resource(ResourceKind::LocalDevice),
    ],
    inputs: &["gpio/+/+/read", "gpio/+/+/write"],
    outputs: &["gpio/+/+/state", "gpio/+/error"],
    isolation: CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

static SERIAL_STREAM: ConnectorManifest = ConnectorManifest {
    name: "SerialStream",
    versions: &[1, 2, 3],
    description: "reads and writes a serial port",
    parameters: &[
        ParameterSpec::new("BaudRate", "baud rate").required().pattern(
            "^110$|^300$|^600$|^1200$|^2400$|^4800$|^9600$|^14400$|^19200$|^28800$|^38400$|^56000$|^57600$|^115200$|^230400$",
        ),
        ParameterSpec::new("Timeout", "read timeout, seconds").required().pattern("^([1-9]|[1-5][0-9])$"),
        ParameterSpec::new("SerialPort", "absolute path of the port").required().pattern("[/a-zA-Z0-9_-]+"),
        ParameterSpec::new("SerialPort-ResourceId", "device resource of the port")
            .required()
            .pattern("[a-zA-Z0-9_-]+")
            .resource(ResourceKind::LocalDevice),
        ParameterSpec::new("PollingRead", "poll the port").required().pattern(FLAG),
        ParameterSpec::new("PollingReadLength", "bytes per poll").pattern(
            "^(|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-2][0-9]{3}|63[0-8][0-9]{2}|639[0-8][0-9]|6399[0-4])$",
        ),
        ParameterSpec::new("PollingReadInterval", "seconds between polls")
            .pattern("^(|[1-9]|[1-9][0-9]|[1-9][0-9][0-9])$"),
        ParameterSpec::new("PollingReadType", "ascii or hex").pattern("^(|[Aa][Ss][Cc][Ii][Ii]|[Hh][Ee][Xx])$"),
        ParameterSpec::new("RtsCts", "RTS/CTS").pattern(OPT_FLAG).default_value("false"),
        ParameterSpec::new("XonXoff", "XON/XOFF").pattern(OPT_FLAG).default_value("false"),
        ParameterSpec::new("Parity", "parity").pattern("^(|[NEOSMneosm])$").default_value("N"),
    ],
    inputs: &["serial/+/read/#", "serial/+/write/#"],
    outputs: &["serial/+/status/#", "serial/+/read_response/#"],
    isolation: CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

static MODBUS_RTU: ConnectorManifest = ConnectorManifest {
    name: "ModbusRTUProtocolAdapter",
    versions: &[1, 2, 3],
    description: "Modbus RTU master",
    parameters: &[
        ParameterSpec::new("ModbusSerialPort-ResourceId", "")
            .required()
            .pattern(".+")
            .resource(ResourceKind::LocalDevice),
        ParameterSpec::new("ModbusSerialPort", "")
            .required()
            .pattern(".+"),
    ],
    inputs: &["modbus/adapter/request"],
    outputs: &["modbus/adapter/response"],
    isolation: CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

static TWILIO: ConnectorManifest = ConnectorManifest {
    name: "TwilioNotifications",
    versions: &[1, 2, 3, 4, 5],
    description: "text and voice messages",
    parameters: &[
        ParameterSpec::new("TWILIO_ACCOUNT_SID", "account SID").required().pattern(".+"),
        ParameterSpec::new("TwilioAuthTokenSecretArn", "auth token secret").required().pattern(
            "arn:aws:secretsmanager:[a-z0-9\\-]+:[0-9]{12}:secret:([a-zA-Z0-9\\\\]+/)*[a-zA-Z0-9/_+=,.@\\-]+-[a-zA-Z0-9]+",
        ),
        ParameterSpec::new("TwilioAuthTokenSecretArn-ResourceId", "secret resource")
            .required()
            .pattern(".+")
            .resource(ResourceKind::Secret),
        ParameterSpec::new("DefaultFromPhoneNumber", "sender").pattern("^$|\\+[0-9]+"),
        ParameterSpec::new("IsolationMode", "")
            .pattern(ISOLATION)
            .default_value("GreengrassContainer")
            .since(5),
    ],
    inputs: &["twilio/txt", "twilio/call"],
    outputs: &["twilio/message/status"],
    isolation: BOTH,
    pinned: false,
    aws: false,
};

static CLOUDWATCH: ConnectorManifest = ConnectorManifest {
    name: "CloudWatchMetrics",
    versions: &[1, 2, 3, 4, 5],
    description: "publishes CloudWatch metrics",
    parameters: &[
        ParameterSpec::new("PublishInterval", "")
            .required()
            .pattern("[0-9]|[1-9]\\d|[1-9]\\d\\d|900"),
        ParameterSpec::new("PublishRegion", "").pattern("^$|([a-z]{2}-[a-z]+-\\d{1})"),
        ParameterSpec::new("MemorySize", "")
            .required()
            .pattern("^[0-9]+$"),
        ParameterSpec::new("MaxMetricsToRetain", "")
            .required()
            .pattern("^([2-9]\\d{3}|[1-9]\\d{4,})$"),
        ParameterSpec::new("IsolationMode", "")
            .pattern(ISOLATION)
            .default_value("GreengrassContainer")
            .since(4),
    ],
    inputs: &["cloudwatch/metric/put"],
    outputs: &["cloudwatch/metric/put/status"],
    isolation: BOTH,
    pinned: false,
    aws: false,
};

static DEVICE_DEFENDER: ConnectorManifest = ConnectorManifest {
    name: "DeviceDefender",
    versions: &[1, 2, 3],
    description: "system metrics to Device Defender",
    parameters: &[
        ParameterSpec::new("SampleIntervalSeconds", "")
            .required()
            .pattern("^[0-9]*(?:3[0-9][0-9]|[4-9][0-9]{2}|[1-9][0-9]{3,})$"),
        ParameterSpec::new("ProcDestinationPath-ResourceId", "")
            .required()
            .pattern("[a-zA-Z0-9_-]+")
            .resource(ResourceKind::LocalVolume),
        ParameterSpec::new("ProcDestinationPath", "")
            .required()
            .pattern("\\/[a-zA-Z0-9_-]+"),
    ],
    inputs: &[],
    outputs: &["$aws/things/+/defender/metrics/json"],
    isolation: CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

static MODBUS_TCP: ConnectorManifest = ConnectorManifest {
    name: "ModbusTCPConnector",
    versions: &[1, 2, 3],
    description: "Modbus TCP to stream manager",
    // Greengrass prints `^\s*$|\/.`, a prefix test; anchored, the
    // path part must say `.+`.
    parameters: &[ParameterSpec::new("LocalStoragePath", "")
        .pattern("^\\s*$|\\/.+")
        .default_value("/var/sitewise")],
    inputs: &[],
    outputs: &[],
    isolation: IsolationSupport {
        container: false,
        no_container: true,
    },
    pinned: true,
    aws: false,
};

/// Artificial: a container-only connector that still has the
/// `IsolationMode` parameter, to test the support check.
static CONTAINER_ONLY_WITH_MODE: ConnectorManifest = ConnectorManifest {
    name: "ContainerOnlyWithMode",
    versions: &[1],
    description: "test",
    parameters: &[ParameterSpec::new("IsolationMode", "").pattern(ISOLATION)],
    inputs: &["x/in"],
    outputs: &["x/out"],
    isolation: CONTAINER_ONLY,
    pinned: false,
    aws: false,
};

/// Secrets named by ARN in a JSON array (`AWSSecretsArnList`), as IoT SiteWise takes them.
static SITEWISE: ConnectorManifest = ConnectorManifest {
    name: "IoTSiteWise",
    versions: &[12],
    description: "OPC UA to stream manager",
    parameters: &[ParameterSpec::new("AWSSecretsArnList", "secret ARNs").secret_arn_list()],
    inputs: &[],
    outputs: &[],
    isolation: IsolationSupport {
        container: false,
        no_container: true,
    },
    pinned: true,
    aws: false,
};

const REGION: &str = "eu-west-1";
const ACCOUNT: &str = "123456789012";
const CORE: &str = "arn:aws:iot:eu-west-1:123456789012:thing/evergreen-core";

fn registry() -> ConnectorRegistry {
    ConnectorRegistry::new(vec![
        &SERIAL_STREAM,
        &RASPBERRY_PI_GPIO,
        &MODBUS_RTU,
        &TWILIO,
        &CLOUDWATCH,
        &DEVICE_DEFENDER,
        &MODBUS_TCP,
        &CONTAINER_ONLY_WITH_MODE,
        &SITEWISE,
    ])
}

fn options() -> ValidationOptions {
    ValidationOptions {
        base_dir: PathBuf::from("/srv/groups/demo"),
        default_core_thing_arn: CORE.to_string(),
        ..ValidationOptions::default()
    }
}

fn fn_arn(name: &str, qualifier: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:{qualifier}")
}

fn connector_arn(name: &str, version: u32) -> String {
    format!("arn:aws:greengrass:{REGION}::/connectors/{name}/versions/{version}")
}

fn check(json: &str, opts: &ValidationOptions) -> Result<GroupPlan, Vec<ValidationError>> {
    let group = model::parse(json)?;
    validate(&group, &registry(), opts)
}

fn plan(json: &str) -> GroupPlan {
    match check(json, &options()) {
        Ok(plan) => plan,
        Err(errors) => panic!("expected a valid group, got:{}", list(&errors)),
    }
}

fn errors(json: &str) -> Vec<ValidationError> {
    match check(json, &options()) {
        Ok(plan) => panic!("expected errors, got a plan: {plan:#?}"),
        Err(errors) => errors,
    }
}

/// Exactly the expected errors: each `(path, fragment)` matches one
/// error with that path whose message contains the fragment, and there
/// are no others (a fixture tests one class of error, without cascades).
fn expect(json: &str, expected: &[(&str, &str)]) {
    let errors = errors(json);
    for (path, fragment) in expected {
        assert!(
            errors
                .iter()
                .any(|e| e.path == *path && e.message.contains(fragment)),
            "no error at {path} containing {fragment:?}; got:{}",
            list(&errors)
        );
    }
    assert_eq!(
        errors.len(),
        expected.len(),
        "unexpected extra errors:{}",
        list(&errors)
    );
}

fn component<'p>(plan: &'p GroupPlan, arn: &str) -> &'p ComponentSpec {
    match plan.components.get(arn) {
        Some(c) => c,
        None => panic!(
            "no component {arn} in {:?}",
            plan.components.keys().collect::<Vec<_>>()
        ),
    }
}

// The path is built from the manifest directory, not relative to this file,
// because the macro is expanded in every test file.
macro_rules! fixture {
    ($kind:literal, $name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/groups/",
            $kind,
            "/",
            $name,
            ".json"
        ))
    };
}

macro_rules! bad_fixture {
    ($test:ident, $name:literal, [$(($path:expr, $fragment:expr)),+ $(,)?]) => {
        #[test]
        fn $test() {
            expect(fixture!("bad", $name), &[$(($path, $fragment)),+]);
        }
    };
}

// Declared after the macros so that every test file can use them.
mod connectors;
mod core;
mod functions;
mod group;
mod loggers;
mod resources;
mod subscriptions;

const F: &str = "$.FunctionDefinitionVersion.Functions";
const C: &str = "$.ConnectorDefinitionVersion.Connectors";
const S: &str = "$.SubscriptionDefinitionVersion.Subscriptions";
const R: &str = "$.ResourceDefinitionVersion.Resources";
const L: &str = "$.LoggerDefinitionVersion.Loggers";

#[test]
fn test_manifests_are_sound() {
    for m in registry().iter() {
        assert_eq!(manifest_problems(m), Vec::<String>::new());
    }
}
