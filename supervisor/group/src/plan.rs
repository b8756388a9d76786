//! The deployable form of a validated group: what the supervisor runs.
//!
//! A [`GroupPlan`] is produced only by validation, holds nothing that still
//! needs checking, and compares by value, so a later deployment can diff the
//! running plan against a new one component by component (same ARN and equal
//! [`ComponentSpec`] = keep it running).

use std::collections::BTreeMap;
use std::path::PathBuf;

use evergreen_ipc::{ComponentKind, LogLevel};

/// A validated group, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    pub core: CoreSpec,
    /// Every connector and function, keyed by its ARN (the routing identity).
    pub components: BTreeMap<String, ComponentSpec>,
    pub subscriptions: Vec<SubscriptionSpec>,
    /// Client devices, keyed by thing ARN.
    pub devices: BTreeMap<String, DeviceSpec>,
    /// Resources, keyed by resource `Id`.
    pub resources: BTreeMap<String, ResourceSpec>,
    pub loggers: LoggerPlan,
    /// The stream manager, when the group configures Greengrass's
    /// `GGStreamManager` system function.
    pub stream_manager: Option<StreamManagerSpec>,
}

/// The stream manager's settings from the `GGStreamManager` function's
/// `Environment.Variables` (Greengrass V1's names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamManagerSpec {
    /// `STREAM_MANAGER_SERVER_PORT` (default 8088).
    pub port: u16,
    /// `STREAM_MANAGER_STORE_ROOT_DIR`, when set (else under the runtime's root).
    pub store_root: Option<PathBuf>,
    /// `STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES`, when set.
    pub s3_min_part_size: Option<u64>,
}

/// The group's core (from `CoreDefinitionVersion`, or the core configuration
/// when the group has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreSpec {
    pub thing_arn: String,
    pub thing_name: String,
    pub region: String,
    pub account: String,
    pub sync_shadow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub id: String,
    pub thing_arn: String,
    pub thing_name: String,
    pub certificate_arn: String,
    pub sync_shadow: bool,
}

/// One subscription, exactly as written in the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    pub id: String,
    pub source: String,
    pub subject: String,
    pub target: String,
}

/// How a component's process is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// A user function: a program and its arguments (`Executable`, `ExecArgs`).
    Executable { path: PathBuf, args: Vec<String> },
    /// A built-in connector, run as `evergreen connector <name>`.
    Connector { name: String, version: u32 },
    /// A Greengrass V1 Python function (`Executable` = `module.function`):
    /// Evergreen's Python runtime loads `handler` from `code` (a directory
    /// or a zip) and serves it over the Lambda IPC endpoint. A `runtime` of
    /// `nodejs…` makes it a Node.js function (`file.function`, `code` a
    /// directory), served the same way by Evergreen's Node.js runtime loop.
    Python {
        handler: String,
        code: PathBuf,
        /// `Runtime`, e.g. `python3.8`.
        runtime: String,
        /// `EncodingType` is `binary` (else `json`).
        binary: bool,
    },
    /// A Greengrass V1 native function (`Runtime` `executable`): a program linked against the
    /// Greengrass Core SDK for C, served over the Lambda IPC endpoint with Evergreen's
    /// `libaws-greengrass-core-sdk-c.so` on its library path.
    Native { path: PathBuf, args: Vec<String> },
}

/// Whether a function's `Runtime` names Greengrass V1's runtime for native functions
/// (programs linked against the Greengrass Core SDK for C): `executable`, or the Lambda
/// runtime ARN V1 used, `arn:aws:greengrass:::runtime/function/executable`.
pub fn is_native_runtime(runtime: &str) -> bool {
    matches!(
        runtime,
        "executable" | "arn:aws:greengrass:::runtime/function/executable"
    )
}

impl Launch {
    /// Whether the component talks to the runtime over the Lambda IPC endpoint (the lambda
    /// link) rather than the stdio frames: Python and native functions.
    pub fn lambda_link(&self) -> bool {
        matches!(self, Launch::Python { .. } | Launch::Native { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    NoContainer,
    GreengrassContainer,
}

/// `RunAs`; either id may be given alone. `None` means the runtime's default
/// identity (the supervisor's own when it is not root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunAs {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A resource a component was granted (`ResourceAccessPolicies`, or a
/// connector's `…-ResourceId` parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAccess {
    pub resource_id: String,
    pub read_write: bool,
}

/// Everything needed to start and supervise one connector or function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    /// The `Id` in its definition.
    pub id: String,
    /// Versioned connector ARN or qualified function ARN.
    pub arn: String,
    pub kind: ComponentKind,
    /// Short name: the connector name or the function name (no qualifier).
    pub name: String,
    pub launch: Launch,
    /// Connector `Parameters` with manifest defaults applied; for a function,
    /// `Environment.Variables`.
    pub parameters: BTreeMap<String, String>,
    pub isolation: Isolation,
    pub run_as: RunAs,
    /// Long-lived (`Pinned`), started with the group.
    pub pinned: bool,
    /// `MemorySize` in KB, for container mode.
    pub memory_kb: Option<u64>,
    /// `Timeout` in seconds per delivery handled.
    pub timeout_s: u64,
    pub resources: Vec<ResourceAccess>,
    /// Names of the secrets (resource `Name`) the component may read.
    pub secrets: Vec<String>,
    /// May ask for the core's AWS credentials (a connector whose manifest
    /// sets `aws`).
    pub aws: bool,
    /// The log file, relative to `<root>/var/log`:
    /// `user/<region>/aws/<Connector>.log` or `user/<region>/<account>/<function>.log`.
    pub log_file: PathBuf,
}

/// A group resource, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    pub id: String,
    pub name: String,
    pub data: ResourceData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceData {
    LocalDevice {
        source_path: PathBuf,
        group_owner: GroupOwner,
    },
    LocalVolume {
        source_path: PathBuf,
        destination_path: PathBuf,
        group_owner: GroupOwner,
    },
    MachineLearningModel {
        /// `S3Uri` or `SageMakerJobArn`.
        origin: String,
        destination_path: PathBuf,
        group_owner: Option<String>,
        read_write: bool,
    },
    Secret {
        arn: String,
        additional_staging_labels: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupOwner {
    pub auto_add: bool,
    pub group: Option<String>,
}

/// Logger settings for the runtime (`GreengrassSystem`) and for components
/// (`Lambda`). Defaults: FileSystem, INFO; 128 KB per component as in Greengrass, and
/// [`DEFAULT_SYSTEM_SPACE_KB`] for the runtime's own log, which must keep hours of history
/// even while a peer makes it warn (a group's `Space` sets either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerPlan {
    pub system: LogSettings,
    pub user: LogSettings,
}

/// The runtime log's `Space` when the group's `GreengrassSystem` logger gives none: 10 MB
/// (its rotated files included), hours of history at the rates repeated warnings are
/// limited to.
pub const DEFAULT_SYSTEM_SPACE_KB: u64 = 10 * 1024;

impl Default for LoggerPlan {
    fn default() -> Self {
        LoggerPlan {
            system: LogSettings {
                space_kb: DEFAULT_SYSTEM_SPACE_KB,
                ..LogSettings::default()
            },
            user: LogSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    pub level: LogLevel,
    /// Local storage budget in KB (`Space`).
    pub space_kb: u64,
    /// Whether a `FileSystem` logger is configured (otherwise only
    /// `AWSCloudWatch`: lines are kept on disk anyway so nothing is lost).
    pub file_system: bool,
    /// The `AWSCloudWatch` logger's level, if the group has one: lines at
    /// or above it also go to CloudWatch Logs.
    pub cloud_watch: Option<LogLevel>,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: LogLevel::Info,
            space_kb: 128,
            file_system: true,
            cloud_watch: None,
        }
    }
}
