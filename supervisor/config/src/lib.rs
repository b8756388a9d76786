//! The core configuration: the runtime's own settings, read once at start
//! from one JSON file.
//!
//! This module owns finding, reading, parsing and validating that file, and
//! computing the defaults that depend on the environment (the runtime root).
//! It must never panic on what it reads, never read the process environment
//! except in [`ConfigEnv::from_process`], and never act on a setting (it
//! creates no directory and binds no socket): it returns a [`CoreConfig`] or
//! a [`ConfigError`] that names every bad key by its JSON path.
//!
//! # The file
//!
//! Default path [`DEFAULT_CONFIG_PATH`] (`/etc/evergreen/config.json`);
//! `--config <path>` overrides it. When the default file does not exist every
//! key takes its default; an explicitly given file that does not exist is an
//! error. An absent key takes its default, so `{}` is a complete
//! configuration; `null` is the same as absent for the keys whose default is
//! "none" or computed. The packaged `packaging/config.json` lists every key
//! with its default.
//!
//! The top-level layout and the key names are those of Greengrass V1's
//! `config.json` (`coreThing`, `runtime`, `writeDirectory`), so a migrated
//! file mostly works unchanged; Evergreen's own settings live under
//! `evergreen`. Keys nobody knows are an error (a typo must not silently
//! become a default).
//!
//! Checking happens in two steps. Parsing checks what the types say (JSON
//! syntax, unknown keys, a string where a number belongs, an enum value, an
//! IP address) and stops at the first problem, reported with its JSON path.
//! Validation then checks ranges and rules between keys and reports *all*
//! problems at once, each as `<key path>: <problem>`.
//!
//! # Keys and defaults
//!
//! | key | default | meaning and allowed values |
//! |---|---|---|
//! | `coreThing.thingArn` | `arn:aws:iot:us-east-1:000000000000:thing/evergreen-core` | the core's thing: `arn:<partition>:iot:<region>:<12-digit account>:thing/<name>`; gives the thing name (MQTT client id), region and account |
//! | `coreThing.iotHost` | none | the upstream broker (AWS IoT data endpoint or any MQTT broker); none = no cloud connection |
//! | `coreThing.iotMqttPort` | `8883` | upstream broker port, 1..65535 (Greengrass allowed only 8883 or 443; other brokers use other ports) |
//! | `coreThing.ggMqttPort` | `8883` | local MQTT server's TLS port, 1024..65535; default of `evergreen.listeners.mqttTls.port` |
//! | `coreThing.ggDaemonPort` | `8000` | 1024..65535; the Lambda IPC endpoint on `localhost` that Greengrass V1 Python functions use (`GG_DAEMON_PORT`); connectors and executable functions speak stdio |
//! | `coreThing.keepAlive` | `600` | MQTT keep-alive to the upstream broker, seconds, 30..1200 |
//! | `coreThing.mqttOperationTimeout` | `5` | seconds an upstream publish/subscribe may take, at least 5 |
//! | `coreThing.caPath` | none | upstream CA bundle; a relative path is under `<root>/certs`, as in Greengrass |
//! | `coreThing.certPath` | none | the core's client certificate; relative = under `<root>/certs` |
//! | `coreThing.keyPath` | none | the core's private key; relative = under `<root>/certs` |
//! | `runtime.allowFunctionsToRunAsRoot` | `"no"` | `"yes"` or `"no"`; `"yes"` lets a function run as uid or gid 0 |
//! | `runtime.maxWorkItemCount` | `1024` | messages a function may have waiting, at least 1 |
//! | `runtime.maxConcurrentLimit` | `25` | concurrent on-demand function workers, at least 1 |
//! | `runtime.postStartHealthCheckTimeout` | `30000` | ms a started function has to come up, at least 1 |
//! | `writeDirectory` | none (= the root) | absolute; where Evergreen writes state and logs |
//! | `evergreen.root` | `/var/lib/evergreen` for uid 0, else `$XDG_DATA_HOME/evergreen` or `$HOME/.local/share/evergreen` | absolute; the runtime root |
//! | `evergreen.controlSocket` | `null` = `<root>/run/control.sock` | absolute, at most 107 bytes; the Unix socket `evergreen status` connects to (created `0660`, its directory `0750` if missing) |
//! | `evergreen.maxFrameBytes` | `1048576` | largest IPC frame, 1024..67108864 |
//! | `evergreen.queueCapacity` | `1024` | messages waiting per delivery target before drops are counted, at least 1 |
//! | `evergreen.readinessTimeoutMs` | `10000` | ms a child has from spawn to `Ready`, at least 1 |
//! | `evergreen.shutdownGraceMs` | `5000` | ms a child has after the `Shutdown` frame before SIGTERM |
//! | `evergreen.termGraceMs` | `2000` | ms from SIGTERM to SIGKILL |
//! | `evergreen.onDemandIdleMs` | `60000` | ms an on-demand (not `Pinned`) function's child may sit idle before it is stopped; the next message starts it again; at least 1 |
//! | `evergreen.restart.initialBackoffMs` | `250` | first restart delay, at least 1 |
//! | `evergreen.restart.maxBackoffMs` | `30000` | cap on the restart delay, at least `initialBackoffMs` |
//! | `evergreen.restart.multiplier` | `2.0` | delay growth per consecutive failure, at least 1 |
//! | `evergreen.restart.jitter` | `0.2` | random spread of each delay as a fraction, 0..1 |
//! | `evergreen.restart.resetAfterMs` | `60000` | a child that ran this long starts again from `initialBackoffMs` |
//! | `evergreen.restart.policy` | `"always"` | `"always"` (restart after any exit), `"on-failure"` (not after exit status 0), `"never"` |
//! | `evergreen.restart.crashLoopLimit` | `5` | failures within `crashLoopWindowMs` after which the component is marked `Failed`; 0 = never |
//! | `evergreen.restart.crashLoopWindowMs` | `300000` | the window for `crashLoopLimit`, at least 1 |
//! | `evergreen.restart.failedCooldownMs` | `600000` | a `Failed` component is tried again after this long, at least 1 |
//! | `evergreen.components.<Id or ARN>.restart` | none | per-component overrides of any `evergreen.restart` key, e.g. `{"policy":"never"}`; the key is the component's `Id` or ARN in the group |
//! | `evergreen.listeners.mqttTls.address` | `"0.0.0.0"` | IP address of the local MQTT server (TLS) |
//! | `evergreen.listeners.mqttTls.port` | `null` = `coreThing.ggMqttPort` | port; 0 = any free port (tests) |
//! | `evergreen.listeners.mqttTls.caPath` | `null` = `<root>/certs/local/ca.pem` | the group CA (PEM) device certificates must be signed by (`evergreen certs init` writes the default) |
//! | `evergreen.listeners.mqttTls.certPath` | `null` = `<root>/certs/local/server.pem` | the MQTT server's certificate chain (PEM) |
//! | `evergreen.listeners.mqttTls.keyPath` | `null` = `<root>/certs/local/server.key` | the MQTT server's private key (PEM) |
//! | `evergreen.listeners.mqttPlain.enabled` | `false` | also serve MQTT without TLS |
//! | `evergreen.listeners.mqttPlain.address` | `"127.0.0.1"` | IP address of the plain listener |
//! | `evergreen.listeners.mqttPlain.port` | `1883` | port; 0 = any free port |
//! | `evergreen.spooler.storageType` | `"FileSystem"` | `"FileSystem"` (survives restarts) or `"Memory"`; Greengrass defaulted to memory |
//! | `evergreen.spooler.maxSizeBytes` | `2621440` | cloud spool size, at least 262144 |
//! | `evergreen.cloudTls` | `true` | mutual TLS to `coreThing.iotHost` with `caPath`/`certPath`/`keyPath` (AWS IoT Core); `false` = plain TCP, for tests and brokers inside a trusted network |
//! | `mqttMaxConnectionRetryInterval` | `60` | seconds, at least 1: cap of the cloud bridge's reconnect backoff (as in Greengrass) |
//! | `evergreen.secretNamePrefix` | `"greengrass-"` | secrets readable by components must start with this; `""` lifts the rule |
//! | `evergreen.logToStderr` | `true` | echo the runtime's own log to stderr (for journald) |
//! | `evergreen.defaultRunAs.user` | `null` | user components run as when their group sets no `RunAs` (the package sets `evergreen`); `null` = the runtime's own; resolved at start, an unknown name is a configuration error |
//! | `evergreen.defaultRunAs.group` | `null` | group for the same; `null` = the user's primary group (or the runtime's own) |
//!
//! # Greengrass keys accepted and ignored
//!
//! Present in a migrated file, they are accepted so the file loads, and
//! otherwise ignored; [`CoreConfig::ignored_keys`] lists those present so the
//! runtime can say so in its log:
//! `crypto` (PKCS#11 and principals: use `coreThing.caPath`/`certPath`/`keyPath`),
//! `managedRespawn`, `pidFileDirectory`,
//! `coreThing.ggHost`, `coreThing.iotHttpPort`, `coreThing.ggHttpPort`,
//! `coreThing.systemComponentAuthTimeout`, `coreThing.networkProxy`,
//! `runtime.lruSize`, `runtime.mountAllBlockDevices`, `runtime.cgroup`.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize};

/// Where the configuration is read from when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/evergreen/config.json";

/// The runtime root when running as uid 0 (the FHS place for state).
pub const SYSTEM_ROOT: &str = "/var/lib/evergreen";

/// A thing ARN that parses, so a configuration without a cloud still has a
/// thing name, region and account to hand to connectors.
pub const DEFAULT_THING_ARN: &str = "arn:aws:iot:us-east-1:000000000000:thing/evergreen-core";

/// Greengrass's smallest spool. The error keeps Greengrass's wording so
/// people find the old documentation for the same limit.
const MIN_SPOOL_BYTES: u64 = 262_144;

const MIN_FRAME_BYTES: usize = 1024;
// A frame is read into memory whole; 64 MiB per child is already a lot on a
// gateway with 512 MiB.
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// A Greengrass key that is accepted and ignored: its value is skipped
/// unread, only its presence is kept (for [`CoreConfig::ignored_keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ignored;

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Ignored)
    }
}

/// The parts of the process environment that choose defaults, passed in so
/// tests never touch the real environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEnv {
    /// Effective uid: 0 selects the system-wide root.
    pub uid: u32,
    /// `XDG_DATA_HOME`, if set.
    pub xdg_data_home: Option<PathBuf>,
    /// `HOME`, if set.
    pub home: Option<PathBuf>,
}

impl ConfigEnv {
    /// Reads the effective uid, `XDG_DATA_HOME` and `HOME` of this process.
    pub fn from_process() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        // An empty variable counts as unset, as the XDG spec says.
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        ConfigEnv {
            uid,
            xdg_data_home: var("XDG_DATA_HOME"),
            home: var("HOME"),
        }
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not JSON, has an unknown key, or a value of the wrong type.
    /// `json_path` is like `evergreen.restart.jitter` (`.` for the top level).
    #[error("cannot parse configuration {} at {json_path}: {message}", path.display())]
    Parse {
        path: PathBuf,
        json_path: String,
        message: String,
    },
    /// Every value that is out of range or inconsistent, each as
    /// `<key path>: <problem>`.
    #[error("invalid configuration {}:{}", path.display(), bullets(errors))]
    Invalid { path: PathBuf, errors: Vec<String> },
}

fn bullets(errors: &[String]) -> String {
    errors.iter().map(|e| format!("\n  - {e}")).collect()
}

/// The runtime's configuration, validated, with every computed default
/// filled in (`evergreen.root`, `evergreen.listeners.mqttTls.port`), so it
/// is the effective configuration and serializes as such.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CoreConfig {
    #[serde(default)]
    pub core_thing: CoreThing,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub write_directory: Option<PathBuf>,
    #[serde(default)]
    pub evergreen: Evergreen,

    #[serde(default, skip_serializing)]
    crypto: Option<Ignored>,
    #[serde(default, skip_serializing)]
    managed_respawn: Option<Ignored>,
    /// Seconds; the cloud bridge's reconnect backoff stops growing here.
    #[serde(default = "default_mqtt_max_retry")]
    pub mqtt_max_connection_retry_interval: u64,
    #[serde(default, skip_serializing)]
    pid_file_directory: Option<Ignored>,
}

/// `coreThing`: who the core is and how it reaches the upstream broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CoreThing {
    pub thing_arn: String,
    pub iot_host: Option<String>,
    pub iot_mqtt_port: u16,
    pub gg_mqtt_port: u16,
    pub gg_daemon_port: u16,
    pub keep_alive: u64,
    pub mqtt_operation_timeout: u64,
    pub ca_path: Option<PathBuf>,
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,

    #[serde(skip_serializing)]
    gg_host: Option<Ignored>,
    #[serde(skip_serializing)]
    iot_http_port: Option<Ignored>,
    #[serde(skip_serializing)]
    gg_http_port: Option<Ignored>,
    #[serde(skip_serializing)]
    system_component_auth_timeout: Option<Ignored>,
    #[serde(skip_serializing)]
    network_proxy: Option<Ignored>,
}

impl Default for CoreThing {
    fn default() -> Self {
        CoreThing {
            thing_arn: DEFAULT_THING_ARN.to_owned(),
            iot_host: None,
            iot_mqtt_port: 8883,
            gg_mqtt_port: 8883,
            gg_daemon_port: 8000,
            keep_alive: 600,
            mqtt_operation_timeout: 5,
            ca_path: None,
            cert_path: None,
            key_path: None,
            gg_host: None,
            iot_http_port: None,
            gg_http_port: None,
            system_component_auth_timeout: None,
            network_proxy: None,
        }
    }
}

/// Greengrass's yes/no strings, kept as strings in the file for migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YesNo {
    Yes,
    #[default]
    No,
}

/// `runtime`: limits on functions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Runtime {
    pub allow_functions_to_run_as_root: YesNo,
    pub max_work_item_count: u64,
    pub max_concurrent_limit: u64,
    pub post_start_health_check_timeout: u64,

    #[serde(skip_serializing)]
    lru_size: Option<Ignored>,
    #[serde(skip_serializing)]
    mount_all_block_devices: Option<Ignored>,
    #[serde(skip_serializing)]
    cgroup: Option<Ignored>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            allow_functions_to_run_as_root: YesNo::No,
            max_work_item_count: 1024,
            max_concurrent_limit: 25,
            post_start_health_check_timeout: 30_000,
            lru_size: None,
            mount_all_block_devices: None,
            cgroup: None,
        }
    }
}

/// `evergreen`: settings Greengrass did not have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Evergreen {
    /// Always `Some` after [`load`]: the default is computed from [`ConfigEnv`].
    pub root: Option<PathBuf>,
    /// `None` = `<root>/run/control.sock`, computed when read (see
    /// [`CoreConfig::control_socket`]) so that `--root` moves it too.
    pub control_socket: Option<PathBuf>,
    pub max_frame_bytes: usize,
    pub queue_capacity: usize,
    pub readiness_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub term_grace_ms: u64,
    pub on_demand_idle_ms: u64,
    pub restart: Restart,
    pub components: std::collections::BTreeMap<String, ComponentSettings>,
    pub listeners: Listeners,
    pub spooler: Spooler,
    pub secret_name_prefix: String,
    pub log_to_stderr: bool,
    pub default_run_as: DefaultRunAs,
    /// Mutual TLS to the upstream broker; `false` = plain TCP.
    pub cloud_tls: bool,
    /// AWS credentials and endpoints for connectors (see `evergreen_aws::credentials`).
    pub aws: AwsConfig,
}

pub use evergreen_aws::credentials::{AwsConfig, StaticCredentials};

/// Longest a Unix socket path can be on Linux (`sun_path` is 108 bytes with
/// its terminating NUL): `evergreen.controlSocket` is checked against it.
pub const MAX_SOCKET_PATH: usize = 107;

/// `evergreen.defaultRunAs`: the identity components run as when their
/// group gives no `RunAs` (Greengrass's `ggc_user`/`ggc_group`). Names are
/// resolved when the runtime starts; `null` keeps the runtime's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DefaultRunAs {
    pub user: Option<String>,
    pub group: Option<String>,
}

impl Default for Evergreen {
    fn default() -> Self {
        Evergreen {
            root: None,
            control_socket: None,
            default_run_as: DefaultRunAs::default(),
            max_frame_bytes: evergreen_ipc::DEFAULT_MAX_FRAME,
            queue_capacity: 1024,
            readiness_timeout_ms: 10_000,
            shutdown_grace_ms: 5_000,
            term_grace_ms: 2_000,
            on_demand_idle_ms: 60_000,
            restart: Restart::default(),
            components: std::collections::BTreeMap::new(),
            listeners: Listeners::default(),
            spooler: Spooler::default(),
            secret_name_prefix: "greengrass-".to_owned(),
            log_to_stderr: true,
            cloud_tls: true,
            aws: AwsConfig::default(),
        }
    }
}

/// `evergreen.restart`: when a child is restarted, and how long after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Restart {
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub multiplier: f64,
    pub jitter: f64,
    pub reset_after_ms: u64,
    pub policy: RestartPolicy,
    pub crash_loop_limit: u32,
    pub crash_loop_window_ms: u64,
    pub failed_cooldown_ms: u64,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            initial_backoff_ms: 250,
            max_backoff_ms: 30_000,
            multiplier: 2.0,
            jitter: 0.2,
            reset_after_ms: 60_000,
            // Components are long-lived services on a gateway nobody can
            // reach by hand: bring them back whatever the exit.
            policy: RestartPolicy::Always,
            // Greengrass V2 gives up after 3 failures an hour; 5 in 5 minutes
            // rides out a flapping peer yet stops a hot loop quickly, and a
            // Failed component is tried again after the cool-down instead of
            // staying down until someone logs in.
            crash_loop_limit: 5,
            crash_loop_window_ms: 300_000,
            failed_cooldown_ms: 600_000,
        }
    }
}

/// Whether a child that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    #[serde(rename = "always")]
    Always,
    #[serde(rename = "on-failure")]
    OnFailure,
    #[serde(rename = "never")]
    Never,
}

/// `evergreen.restart` keys a component may override; absent = the global value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartOverride {
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
    pub reset_after_ms: Option<u64>,
    pub policy: Option<RestartPolicy>,
    pub crash_loop_limit: Option<u32>,
    pub crash_loop_window_ms: Option<u64>,
    pub failed_cooldown_ms: Option<u64>,
}

impl Restart {
    /// These settings with `o`'s present keys applied.
    pub fn with(&self, o: &RestartOverride) -> Restart {
        Restart {
            initial_backoff_ms: o.initial_backoff_ms.unwrap_or(self.initial_backoff_ms),
            max_backoff_ms: o.max_backoff_ms.unwrap_or(self.max_backoff_ms),
            multiplier: o.multiplier.unwrap_or(self.multiplier),
            jitter: o.jitter.unwrap_or(self.jitter),
            reset_after_ms: o.reset_after_ms.unwrap_or(self.reset_after_ms),
            policy: o.policy.unwrap_or(self.policy),
            crash_loop_limit: o.crash_loop_limit.unwrap_or(self.crash_loop_limit),
            crash_loop_window_ms: o.crash_loop_window_ms.unwrap_or(self.crash_loop_window_ms),
            failed_cooldown_ms: o.failed_cooldown_ms.unwrap_or(self.failed_cooldown_ms),
        }
    }
}

/// `evergreen.components.<Id or ARN>`: settings for one component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentSettings {
    #[serde(default)]
    pub restart: RestartOverride,
}

/// `evergreen.listeners`: where the local MQTT server listens.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Listeners {
    pub mqtt_tls: TlsListener,
    pub mqtt_plain: PlainListener,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsListener {
    pub address: IpAddr,
    /// Always `Some` after [`load`]: defaults to `coreThing.ggMqttPort`.
    pub port: Option<u16>,
    /// The group CA, server certificate and key; `None` = the files
    /// `evergreen certs init` writes under `<root>/certs/local`.
    pub ca_path: Option<PathBuf>,
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
}

impl Default for TlsListener {
    fn default() -> Self {
        TlsListener {
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: None,
            ca_path: None,
            cert_path: None,
            key_path: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PlainListener {
    pub enabled: bool,
    pub address: IpAddr,
    pub port: u16,
}

impl Default for PlainListener {
    fn default() -> Self {
        // Off, and loopback-only when on: plain MQTT carries no client
        // identity, so it is for local tools, not for devices.
        PlainListener {
            enabled: false,
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 1883,
        }
    }
}

/// Greengrass's `mqttMaxConnectionRetryInterval` default, seconds.
fn default_mqtt_max_retry() -> u64 {
    60
}

/// Where cloud-bound QoS 1 messages wait while the upstream is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StorageType {
    Memory,
    #[default]
    FileSystem,
}

/// `evergreen.spooler` (Greengrass's `GG_CONFIG_STORAGE_TYPE` and
/// `GG_CONFIG_MAX_SIZE_BYTES`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Spooler {
    pub storage_type: StorageType,
    pub max_size_bytes: u64,
}

impl Default for Spooler {
    fn default() -> Self {
        Spooler {
            storage_type: StorageType::FileSystem,
            max_size_bytes: 2_621_440,
        }
    }
}

/// Reads the configuration: `path` if given (it must exist), otherwise
/// [`DEFAULT_CONFIG_PATH`] if it exists, otherwise all defaults.
pub fn load(path: Option<&Path>, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    match path {
        Some(path) => load_file(path, env),
        None => load_optional(Path::new(DEFAULT_CONFIG_PATH), env),
    }
}

fn load_file(path: &Path, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, env)
}

/// The default file is optional: only its absence means "use defaults"; any
/// other failure to read it is reported, never papered over.
fn load_optional(path: &Path, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => parse(&text, path, env),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            finish(CoreConfig::raw_default(), path, env)
        }
        Err(source) => Err(ConfigError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse(text: &str, path: &Path, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    let parse_error = |json_path: String, e: serde_json::Error| ConfigError::Parse {
        path: path.to_owned(),
        json_path,
        message: e.to_string(),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let raw: CoreConfig = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| parse_error(e.path().to_string(), e.into_inner()))?;
    // Anything after the object (a second object, a stray brace) is an error,
    // not something to ignore.
    de.end().map_err(|e| parse_error(".".to_owned(), e))?;
    // serde's derived structs also accept a JSON array of values in field
    // order, so `"restart": [1, 2]` would load silently; only objects may
    // stand for a section.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| parse_error(".".to_owned(), e))?;
    for (json_path, pointer) in SECTIONS {
        if value.pointer(pointer).is_some_and(|v| !v.is_object()) {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                json_path: (*json_path).to_owned(),
                message: "must be a JSON object".to_owned(),
            });
        }
    }
    finish(raw, path, env)
}

/// Every place the file has a section (a struct), as (JSON path, JSON
/// pointer), parents before children.
const SECTIONS: &[(&str, &str)] = &[
    (".", ""),
    ("coreThing", "/coreThing"),
    ("runtime", "/runtime"),
    ("evergreen", "/evergreen"),
    ("evergreen.restart", "/evergreen/restart"),
    ("evergreen.listeners", "/evergreen/listeners"),
    (
        "evergreen.listeners.mqttTls",
        "/evergreen/listeners/mqttTls",
    ),
    (
        "evergreen.listeners.mqttPlain",
        "/evergreen/listeners/mqttPlain",
    ),
    ("evergreen.spooler", "/evergreen/spooler"),
];

/// Validates, then fills in the computed defaults.
fn finish(mut config: CoreConfig, path: &Path, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    let mut problems = Problems::default();
    config.validate(&mut problems);
    if config.evergreen.root.is_none() {
        match default_root(env) {
            Ok(root) => config.evergreen.root = Some(root),
            Err(why) => problems.push("evergreen.root", why),
        }
    }
    let tls = &mut config.evergreen.listeners.mqtt_tls;
    tls.port = Some(tls.port.unwrap_or(config.core_thing.gg_mqtt_port));
    config.check_listeners(&mut problems);

    if problems.0.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            errors: problems.0,
        })
    }
}

fn default_root(env: &ConfigEnv) -> Result<PathBuf, &'static str> {
    if env.uid == 0 {
        return Ok(PathBuf::from(SYSTEM_ROOT));
    }
    // The XDG spec says to ignore relative values; a root relative to
    // whatever directory the runtime was started in would move around.
    let absolute = |p: &Option<PathBuf>| p.clone().filter(|p| p.is_absolute());
    if let Some(data) = absolute(&env.xdg_data_home) {
        return Ok(data.join("evergreen"));
    }
    if let Some(home) = absolute(&env.home) {
        return Ok(home.join(".local/share/evergreen"));
    }
    Err("no default when not running as root and neither XDG_DATA_HOME nor HOME is an absolute path; set it")
}

/// The pieces of `arn:<partition>:iot:<region>:<account>:thing/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ThingArn<'a> {
    region: &'a str,
    account: &'a str,
    name: &'a str,
}

fn parse_thing_arn(arn: &str) -> Result<ThingArn<'_>, &'static str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(
            "does not have the six parts arn:<partition>:iot:<region>:<account>:thing/<name>",
        );
    };
    if !partition.starts_with("aws") {
        return Err("partition must be aws, aws-cn or aws-us-gov");
    }
    if service != "iot" {
        return Err("service must be iot");
    }
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("region must be like us-east-1");
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err("account must be 12 digits");
    }
    let Some(name) = resource.strip_prefix("thing/") else {
        return Err("resource must be thing/<name>");
    };
    // AWS IoT's thing-name rule; the name becomes an MQTT client id and a
    // topic level, so nothing else may get through.
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-:".contains(&b))
    {
        return Err("thing name must be 1 to 128 of a-z A-Z 0-9 _ - :");
    }
    Ok(ThingArn {
        region,
        account,
        name,
    })
}

/// `a < b`, where anything incomparable (a NaN) counts as out of range.
fn below<T: PartialOrd>(a: &T, b: &T) -> bool {
    !matches!(
        a.partial_cmp(b),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    )
}

/// Validation problems, collected so the user fixes them all in one go.
#[derive(Debug, Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, key: &str, problem: impl fmt::Display) {
        self.0.push(format!("{key}: {problem}"));
    }

    fn between<T: PartialOrd + fmt::Display>(&mut self, key: &str, value: T, min: T, max: T) {
        if below(&value, &min) || below(&max, &value) {
            self.push(
                key,
                format_args!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    fn at_least<T: PartialOrd + fmt::Display>(&mut self, key: &str, value: T, min: T) {
        if below(&value, &min) {
            self.push(key, format_args!("must be at least {min}, got {value}"));
        }
    }

    fn absolute(&mut self, key: &str, path: Option<&Path>) {
        if let Some(path) = path {
            if !path.is_absolute() {
                self.push(
                    key,
                    format_args!("must be an absolute path, got {:?}", path),
                );
            }
        }
    }

    fn not_empty(&mut self, key: &str, path: Option<&Path>) {
        if path.is_some_and(|p| p.as_os_str().is_empty()) {
            self.push(key, "must not be empty");
        }
    }
}

impl CoreConfig {
    /// The configuration of an empty file: every default, with the computed
    /// ones taken from `env`.
    pub fn defaults(env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
        finish(
            CoreConfig::raw_default(),
            Path::new(DEFAULT_CONFIG_PATH),
            env,
        )
    }

    fn raw_default() -> CoreConfig {
        CoreConfig {
            core_thing: CoreThing::default(),
            runtime: Runtime::default(),
            write_directory: None,
            evergreen: Evergreen::default(),
            crypto: None,
            managed_respawn: None,
            mqtt_max_connection_retry_interval: default_mqtt_max_retry(),
            pid_file_directory: None,
        }
    }

    fn validate(&self, p: &mut Problems) {
        let ct = &self.core_thing;
        if let Err(why) = parse_thing_arn(&ct.thing_arn) {
            p.push(
                "coreThing.thingArn",
                format_args!("{why}, got {:?}", ct.thing_arn),
            );
        }
        if let Some(host) = &ct.iot_host {
            // A URL or an empty string here is the usual copy-paste mistake.
            if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
                p.push(
                    "coreThing.iotHost",
                    format_args!("must be a host name, got {host:?}"),
                );
            }
        }
        p.at_least("coreThing.iotMqttPort", ct.iot_mqtt_port, 1);
        p.at_least("coreThing.ggMqttPort", ct.gg_mqtt_port, 1024);
        p.at_least("coreThing.ggDaemonPort", ct.gg_daemon_port, 1024);
        p.between("coreThing.keepAlive", ct.keep_alive, 30, 1200);
        p.at_least(
            "coreThing.mqttOperationTimeout",
            ct.mqtt_operation_timeout,
            5,
        );
        p.at_least(
            "mqttMaxConnectionRetryInterval",
            self.mqtt_max_connection_retry_interval,
            1,
        );
        p.not_empty("coreThing.caPath", ct.ca_path.as_deref());
        p.not_empty("coreThing.certPath", ct.cert_path.as_deref());
        p.not_empty("coreThing.keyPath", ct.key_path.as_deref());

        let rt = &self.runtime;
        p.at_least("runtime.maxWorkItemCount", rt.max_work_item_count, 1);
        p.at_least("runtime.maxConcurrentLimit", rt.max_concurrent_limit, 1);
        p.at_least(
            "runtime.postStartHealthCheckTimeout",
            rt.post_start_health_check_timeout,
            1,
        );

        p.absolute("writeDirectory", self.write_directory.as_deref());

        let eg = &self.evergreen;
        p.absolute("evergreen.root", eg.root.as_deref());
        p.absolute("evergreen.controlSocket", eg.control_socket.as_deref());
        if let Some(len) = eg
            .control_socket
            .as_ref()
            .map(|s| s.as_os_str().len())
            .filter(|len| *len > MAX_SOCKET_PATH)
        {
            p.push(
                "evergreen.controlSocket",
                format_args!("must be at most {MAX_SOCKET_PATH} bytes (the limit of a Unix socket address), got {len}"),
            );
        }
        p.between(
            "evergreen.maxFrameBytes",
            eg.max_frame_bytes,
            MIN_FRAME_BYTES,
            MAX_FRAME_BYTES,
        );
        p.at_least("evergreen.queueCapacity", eg.queue_capacity, 1);
        p.at_least("evergreen.readinessTimeoutMs", eg.readiness_timeout_ms, 1);
        p.at_least("evergreen.onDemandIdleMs", eg.on_demand_idle_ms, 1);

        check_restart(p, "evergreen.restart", &eg.restart);
        for (name, component) in &eg.components {
            // Overrides are checked merged with the global values, as they apply.
            let merged = eg.restart.with(&component.restart);
            check_restart(p, &format!("evergreen.components.{name}.restart"), &merged);
        }

        if eg.spooler.max_size_bytes < MIN_SPOOL_BYTES {
            p.push(
                "evergreen.spooler.maxSizeBytes",
                format_args!(
                    "Spool size should be at least {MIN_SPOOL_BYTES} bytes, got {}",
                    eg.spooler.max_size_bytes
                ),
            );
        }
    }

    /// Run after the TLS port is filled in, so the default port is checked too.
    fn check_listeners(&self, p: &mut Problems) {
        let plain = &self.evergreen.listeners.mqtt_plain;
        if plain.enabled && plain.port != 0 && Some(plain.addr()) == self.mqtt_tls_addr_if_fixed() {
            p.push(
                "evergreen.listeners.mqttPlain.port",
                format_args!("{} is already the TLS listener", plain.addr()),
            );
        }
    }

    fn mqtt_tls_addr_if_fixed(&self) -> Option<SocketAddr> {
        let addr = self.mqtt_tls_addr();
        (addr.port() != 0).then_some(addr)
    }

    fn thing(&self) -> Option<ThingArn<'_>> {
        parse_thing_arn(&self.core_thing.thing_arn).ok()
    }

    /// The core's thing name (its MQTT client id upstream).
    pub fn thing_name(&self) -> &str {
        // Validation guarantees the ARN parses; "" only for a hand-edited value.
        self.thing().map_or("", |t| t.name)
    }

    /// The region from `coreThing.thingArn`.
    pub fn region(&self) -> &str {
        self.thing().map_or("", |t| t.region)
    }

    /// The account from `coreThing.thingArn`.
    pub fn account(&self) -> &str {
        self.thing().map_or("", |t| t.account)
    }

    /// The runtime root.
    pub fn root(&self) -> &Path {
        // Always set by `load`; the fallback only serves a hand-built value.
        self.evergreen
            .root
            .as_deref()
            .unwrap_or(Path::new(SYSTEM_ROOT))
    }

    /// The control socket: `evergreen.controlSocket`, else
    /// `<root>/run/control.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.evergreen
            .control_socket
            .clone()
            .unwrap_or_else(|| self.root().join("run/control.sock"))
    }

    /// Where state and logs are written: `writeDirectory`, else the root.
    pub fn write_dir(&self) -> &Path {
        self.write_directory.as_deref().unwrap_or(self.root())
    }

    /// `<write dir>/var/log`, the root of every log file.
    pub fn log_dir(&self) -> PathBuf {
        self.write_dir().join("var/log")
    }

    /// Whether functions may run as uid or gid 0.
    pub fn allow_root(&self) -> bool {
        self.runtime.allow_functions_to_run_as_root == YesNo::Yes
    }

    fn cert_file(&self, p: Option<&Path>) -> Option<PathBuf> {
        // Greengrass resolved these under <root>/certs; join keeps an
        // absolute path as it is.
        p.map(|p| self.root().join("certs").join(p))
    }

    /// `coreThing.caPath`, resolved.
    pub fn ca_path(&self) -> Option<PathBuf> {
        self.cert_file(self.core_thing.ca_path.as_deref())
    }

    /// `coreThing.certPath`, resolved.
    pub fn cert_path(&self) -> Option<PathBuf> {
        self.cert_file(self.core_thing.cert_path.as_deref())
    }

    /// `coreThing.keyPath`, resolved.
    pub fn key_path(&self) -> Option<PathBuf> {
        self.cert_file(self.core_thing.key_path.as_deref())
    }

    /// Address of the local MQTT server's TLS listener (port 0 = any).
    pub fn mqtt_tls_addr(&self) -> SocketAddr {
        let tls = &self.evergreen.listeners.mqtt_tls;
        SocketAddr::new(
            tls.address,
            tls.port.unwrap_or(self.core_thing.gg_mqtt_port),
        )
    }

    /// Address of the plain MQTT listener, if it is enabled.
    pub fn mqtt_plain_addr(&self) -> Option<SocketAddr> {
        let plain = &self.evergreen.listeners.mqtt_plain;
        plain.enabled.then(|| plain.addr())
    }

    /// The accepted-but-ignored Greengrass keys present in the file, by path.
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        let ct = &self.core_thing;
        let rt = &self.runtime;
        [
            ("crypto", self.crypto.is_some()),
            ("managedRespawn", self.managed_respawn.is_some()),
            ("pidFileDirectory", self.pid_file_directory.is_some()),
            ("coreThing.ggHost", ct.gg_host.is_some()),
            ("coreThing.iotHttpPort", ct.iot_http_port.is_some()),
            ("coreThing.ggHttpPort", ct.gg_http_port.is_some()),
            (
                "coreThing.systemComponentAuthTimeout",
                ct.system_component_auth_timeout.is_some(),
            ),
            ("coreThing.networkProxy", ct.network_proxy.is_some()),
            ("runtime.lruSize", rt.lru_size.is_some()),
            (
                "runtime.mountAllBlockDevices",
                rt.mount_all_block_devices.is_some(),
            ),
            ("runtime.cgroup", rt.cgroup.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect()
    }
}

impl PlainListener {
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

/// Ranges and rules of one set of restart settings, reported under `prefix`.
fn check_restart(p: &mut Problems, prefix: &str, r: &Restart) {
    p.at_least(
        &format!("{prefix}.initialBackoffMs"),
        r.initial_backoff_ms,
        1,
    );
    if r.max_backoff_ms < r.initial_backoff_ms {
        p.push(
            &format!("{prefix}.maxBackoffMs"),
            format_args!(
                "must be at least initialBackoffMs ({}), got {}",
                r.initial_backoff_ms, r.max_backoff_ms
            ),
        );
    }
    p.at_least(&format!("{prefix}.multiplier"), r.multiplier, 1.0);
    p.between(&format!("{prefix}.jitter"), r.jitter, 0.0, 1.0);
    p.at_least(
        &format!("{prefix}.crashLoopWindowMs"),
        r.crash_loop_window_ms,
        1,
    );
    p.at_least(
        &format!("{prefix}.failedCooldownMs"),
        r.failed_cooldown_ms,
        1,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_env() -> ConfigEnv {
        ConfigEnv {
            uid: 0,
            xdg_data_home: None,
            home: None,
        }
    }

    fn user_env(xdg: Option<&str>, home: Option<&str>) -> ConfigEnv {
        ConfigEnv {
            uid: 1000,
            xdg_data_home: xdg.map(PathBuf::from),
            home: home.map(PathBuf::from),
        }
    }

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
    }

    fn good(name: &str) -> CoreConfig {
        let path = fixtures().join("good").join(name);
        match load(Some(&path), &root_env()) {
            Ok(config) => config,
            Err(e) => panic!("{name} should load: {e}"),
        }
    }

    fn bad(name: &str) -> ConfigError {
        let path = fixtures().join("bad").join(name);
        match load(Some(&path), &root_env()) {
            Ok(config) => panic!("{name} should be refused, got {config:?}"),
            Err(e) => e,
        }
    }

    /// The json_path of a parse error.
    fn parse_path(e: &ConfigError) -> &str {
        match e {
            ConfigError::Parse { json_path, .. } => json_path,
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    fn invalid(e: &ConfigError) -> &[String] {
        match e {
            ConfigError::Invalid { errors, .. } => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    /// Every fixture file is listed here, and the test below fails on one that
    /// is not, so no fixture sits untested.
    const FIXTURES: &[&str] = &[
        "good/empty-object.json",
        "good/greengrass-v1.json",
        "good/evergreen-full.json",
        "good/ephemeral-ports.json",
        "bad/not-json.json",
        "bad/not-an-object.json",
        "bad/section-is-array.json",
        "bad/duplicate-key.json",
        "bad/trailing-garbage.json",
        "bad/unknown-top-level-key.json",
        "bad/unknown-nested-key.json",
        "bad/wrong-type.json",
        "bad/allow-root-not-yes-no.json",
        "bad/storage-type-unknown.json",
        "bad/listener-address-not-ip.json",
        "bad/port-out-of-range.json",
        "bad/jitter-out-of-range.json",
        "bad/component-override-out-of-range.json",
        "bad/component-override-unknown-key.json",
        "bad/spool-too-small.json",
        "bad/thing-arn-malformed.json",
        "bad/keepalive-out-of-range.json",
        "bad/max-frame-too-large.json",
        "bad/backoff-inverted.json",
        "bad/relative-root.json",
        "bad/control-socket-too-long.json",
        "bad/listener-conflict.json",
        "bad/many-errors.json",
        "bad/retry-interval-zero.json",
        "bad/cloud-tls-not-bool.json",
    ];

    #[test]
    fn every_fixture_has_a_test() {
        let mut on_disk = Vec::new();
        for dir in ["good", "bad"] {
            let entries = fs::read_dir(fixtures().join(dir)).expect("fixture dir");
            for entry in entries {
                let name = entry.expect("dir entry").file_name();
                on_disk.push(format!("{dir}/{}", name.to_string_lossy()));
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = FIXTURES.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn defaults_when_default_file_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load_optional(&dir.path().join("config.json"), &root_env()).expect("defaults");
        assert_eq!(config, CoreConfig::defaults(&root_env()).expect("defaults"));
        assert_eq!(config.thing_name(), "evergreen-core");
        assert_eq!(config.region(), "us-east-1");
        assert_eq!(config.account(), "000000000000");
        assert_eq!(config.root(), Path::new("/var/lib/evergreen"));
        assert_eq!(config.write_dir(), Path::new("/var/lib/evergreen"));
        assert_eq!(config.log_dir(), Path::new("/var/lib/evergreen/var/log"));
        assert!(!config.allow_root());
        assert_eq!(config.core_thing.iot_host, None);
        assert_eq!(config.core_thing.keep_alive, 600);
        assert_eq!(config.evergreen.max_frame_bytes, 1_048_576);
        assert_eq!(config.evergreen.restart, Restart::default());
        assert_eq!(
            config.evergreen.spooler.storage_type,
            StorageType::FileSystem
        );
        assert_eq!(config.evergreen.spooler.max_size_bytes, 2_621_440);
        assert_eq!(config.evergreen.secret_name_prefix, "greengrass-");
        assert!(config.evergreen.log_to_stderr);
        assert_eq!(
            config.mqtt_tls_addr(),
            "0.0.0.0:8883".parse().expect("addr")
        );
        assert_eq!(config.mqtt_plain_addr(), None);
        assert_eq!(config.ca_path(), None);
        assert!(config.ignored_keys().is_empty());
    }

    #[test]
    fn default_file_present_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        fs::write(&path, r#"{"evergreen": {"queueCapacity": 7}}"#).expect("write");
        let config = load_optional(&path, &root_env()).expect("loads");
        assert_eq!(config.evergreen.queue_capacity, 7);
    }

    #[test]
    fn default_file_unreadable_is_an_error_not_defaults() {
        // A directory where the file should be: reading fails with something
        // other than NotFound, which must not fall back to defaults.
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load_optional(dir.path(), &root_env()).expect_err("must fail");
        assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope.json");
        let err = load(Some(&path), &root_env()).expect_err("must fail");
        match &err {
            ConfigError::Io { path: p, source } => {
                assert_eq!(p, &path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(err.to_string().contains("nope.json"));
    }

    #[test]
    fn packaged_config_is_exactly_the_defaults() {
        // packaging/config.json documents every key with its default, for a
        // system install (uid 0). Both directions: it loads to the defaults,
        // and the defaults serialize to it, so no key is missing from it.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/config.json");
        let packaged = load(Some(&path), &root_env()).expect("packaged config loads");
        let defaults = CoreConfig::defaults(&root_env()).expect("defaults");
        assert_eq!(packaged, defaults);
        let text = fs::read_to_string(&path).expect("read");
        let file: serde_json::Value = serde_json::from_str(&text).expect("json");
        let mut expected = serde_json::to_value(&defaults).expect("serialize");
        // The packaged file leaves the TLS port null so that it follows
        // coreThing.ggMqttPort when an operator changes that Greengrass key.
        if let Some(port) = expected.pointer_mut("/evergreen/listeners/mqttTls/port") {
            *port = serde_json::Value::Null;
        }
        assert_eq!(file, expected);
    }

    #[test]
    fn root_default_for_uid_0_ignores_home() {
        let env = ConfigEnv {
            uid: 0,
            xdg_data_home: Some("/x".into()),
            home: Some("/root".into()),
        };
        let config = CoreConfig::defaults(&env).expect("defaults");
        assert_eq!(config.root(), Path::new("/var/lib/evergreen"));
    }

    #[test]
    fn root_default_for_user_prefers_xdg_data_home() {
        let env = user_env(Some("/home/u/data"), Some("/home/u"));
        let config = CoreConfig::defaults(&env).expect("defaults");
        assert_eq!(config.root(), Path::new("/home/u/data/evergreen"));
    }

    #[test]
    fn root_default_for_user_falls_back_to_home() {
        let config = CoreConfig::defaults(&user_env(None, Some("/home/u"))).expect("defaults");
        assert_eq!(config.root(), Path::new("/home/u/.local/share/evergreen"));
        // A relative XDG_DATA_HOME is ignored, as the XDG spec says.
        let config =
            CoreConfig::defaults(&user_env(Some("data"), Some("/home/u"))).expect("defaults");
        assert_eq!(config.root(), Path::new("/home/u/.local/share/evergreen"));
    }

    #[test]
    fn root_default_for_user_without_home_is_an_error() {
        let err = CoreConfig::defaults(&user_env(None, None)).expect_err("no root");
        let errors = invalid(&err);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("evergreen.root: no default"),
            "{errors:?}"
        );
    }

    #[test]
    fn explicit_root_wins_over_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.json");
        fs::write(&path, r#"{"evergreen": {"root": "/srv/eg"}}"#).expect("write");
        let config = load(Some(&path), &user_env(None, None)).expect("loads");
        assert_eq!(config.root(), Path::new("/srv/eg"));
    }

    #[test]
    fn from_process_reads_something_sane() {
        // Only reads; it must not panic and must give absolute-or-none paths
        // the way the environment has them.
        let env = ConfigEnv::from_process();
        assert!(env
            .xdg_data_home
            .as_ref()
            .is_none_or(|p| !p.as_os_str().is_empty()));
    }

    // ---- good fixtures, one test each ----

    #[test]
    fn good_empty_object() {
        let config = good("empty-object.json");
        assert_eq!(config, CoreConfig::defaults(&root_env()).expect("defaults"));
    }

    #[test]
    fn good_greengrass_v1() {
        let config = good("greengrass-v1.json");
        assert_eq!(config.thing_name(), "MyGreengrassCore");
        assert_eq!(config.region(), "eu-west-1");
        assert_eq!(config.account(), "123456789012");
        assert_eq!(
            config.core_thing.iot_host.as_deref(),
            Some("abcdefexample-ats.iot.eu-west-1.amazonaws.com")
        );
        assert_eq!(config.core_thing.iot_mqtt_port, 443);
        assert_eq!(config.core_thing.keep_alive, 300);
        assert!(config.allow_root());
        assert_eq!(config.runtime.max_concurrent_limit, 10);
        assert_eq!(config.write_dir(), Path::new("/var/greengrass-write"));
        assert_eq!(config.log_dir(), Path::new("/var/greengrass-write/var/log"));
        assert_eq!(
            config.ca_path(),
            Some(PathBuf::from("/var/lib/evergreen/certs/root.ca.pem"))
        );
        assert_eq!(
            config.key_path(),
            Some(PathBuf::from("/greengrass/certs/abcd1234.private.key"))
        );
        assert_eq!(
            config.mqtt_tls_addr(),
            "0.0.0.0:8884".parse().expect("addr")
        );
        assert_eq!(
            config.ignored_keys(),
            vec![
                "crypto",
                "managedRespawn",
                "pidFileDirectory",
                "coreThing.ggHost",
                "coreThing.iotHttpPort",
                "coreThing.ggHttpPort",
                "coreThing.systemComponentAuthTimeout",
                "coreThing.networkProxy",
                "runtime.lruSize",
                "runtime.mountAllBlockDevices",
                "runtime.cgroup",
            ]
        );
    }

    #[test]
    fn good_evergreen_full() {
        let config = good("evergreen-full.json");
        let eg = &config.evergreen;
        assert_eq!(config.root(), Path::new("/opt/evergreen"));
        assert_eq!(
            config.control_socket(),
            Path::new("/run/evergreen/control.sock")
        );
        assert_eq!(eg.max_frame_bytes, 65_536);
        assert_eq!(eg.queue_capacity, 64);
        assert_eq!(eg.readiness_timeout_ms, 3_000);
        assert_eq!(eg.shutdown_grace_ms, 1_000);
        assert_eq!(eg.term_grace_ms, 500);
        assert_eq!(
            eg.restart,
            Restart {
                initial_backoff_ms: 100,
                max_backoff_ms: 10_000,
                multiplier: 1.5,
                jitter: 0.0,
                reset_after_ms: 30_000,
                policy: RestartPolicy::OnFailure,
                crash_loop_limit: 3,
                crash_loop_window_ms: 60_000,
                failed_cooldown_ms: 120_000,
            }
        );
        let never = &eg.components["modbus"].restart;
        assert_eq!(never.policy, Some(RestartPolicy::Never));
        let merged = eg.restart.with(never);
        assert_eq!(merged.policy, RestartPolicy::Never);
        assert_eq!(
            merged.initial_backoff_ms, 100,
            "unset keys keep the global value"
        );
        let f = &eg.components["arn:aws:lambda:us-east-1:123456789012:function:f:1"].restart;
        assert_eq!(eg.restart.with(f).max_backoff_ms, 60_000);
        assert_eq!(
            config.mqtt_tls_addr(),
            "192.0.2.10:8443".parse().expect("addr")
        );
        assert_eq!(
            config.mqtt_plain_addr(),
            Some("127.0.0.1:1884".parse().expect("addr"))
        );
        assert_eq!(eg.spooler.storage_type, StorageType::Memory);
        assert_eq!(eg.spooler.max_size_bytes, 262_144);
        assert_eq!(eg.secret_name_prefix, "");
        assert!(!eg.log_to_stderr);
        assert!(config.ignored_keys().is_empty());
    }

    #[test]
    fn good_ephemeral_ports() {
        let config = good("ephemeral-ports.json");
        assert_eq!(config.mqtt_tls_addr().port(), 0);
        assert_eq!(config.mqtt_plain_addr().map(|a| a.port()), Some(0));
    }

    // ---- bad fixtures, one test each ----

    #[test]
    fn bad_not_json() {
        let err = bad("not-json.json");
        match &err {
            ConfigError::Parse { message, .. } => assert!(message.contains("line 4"), "{message}"),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn bad_not_an_object() {
        let err = bad("not-an-object.json");
        assert_eq!(parse_path(&err), ".");
    }

    #[test]
    fn bad_section_is_array() {
        let err = bad("section-is-array.json");
        assert_eq!(parse_path(&err), "evergreen.restart");
    }

    #[test]
    fn bad_duplicate_key() {
        let err = bad("duplicate-key.json");
        // serde notices the duplicate at the end of the object, so the path
        // is the section; the message names the key and the line.
        assert_eq!(parse_path(&err), "coreThing");
        assert!(
            err.to_string().contains("duplicate field `keepAlive`"),
            "{err}"
        );
    }

    #[test]
    fn bad_trailing_garbage() {
        let err = bad("trailing-garbage.json");
        assert_eq!(parse_path(&err), ".");
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn bad_unknown_top_level_key() {
        let err = bad("unknown-top-level-key.json");
        assert_eq!(parse_path(&err), "evergren");
        assert!(
            err.to_string().contains("unknown field `evergren`"),
            "{err}"
        );
    }

    #[test]
    fn bad_unknown_nested_key() {
        let err = bad("unknown-nested-key.json");
        assert_eq!(parse_path(&err), "evergreen.restart.maxBackoff");
        assert!(
            err.to_string().contains("unknown field `maxBackoff`"),
            "{err}"
        );
    }

    #[test]
    fn bad_wrong_type() {
        let err = bad("wrong-type.json");
        assert_eq!(parse_path(&err), "coreThing.keepAlive");
    }

    #[test]
    fn bad_allow_root_not_yes_no() {
        let err = bad("allow-root-not-yes-no.json");
        assert_eq!(parse_path(&err), "runtime.allowFunctionsToRunAsRoot");
    }

    #[test]
    fn bad_storage_type_unknown() {
        let err = bad("storage-type-unknown.json");
        assert_eq!(parse_path(&err), "evergreen.spooler.storageType");
    }

    #[test]
    fn bad_listener_address_not_ip() {
        let err = bad("listener-address-not-ip.json");
        assert_eq!(parse_path(&err), "evergreen.listeners.mqttTls.address");
    }

    #[test]
    fn bad_port_out_of_range() {
        let err = bad("port-out-of-range.json");
        assert_eq!(parse_path(&err), "coreThing.ggMqttPort");
    }

    #[test]
    fn bad_component_override_out_of_range() {
        let err = bad("component-override-out-of-range.json");
        assert_eq!(
            invalid(&err),
            [
                "evergreen.components.a.restart.maxBackoffMs: must be at least initialBackoffMs (5000), got 2000",
                "evergreen.components.a.restart.jitter: must be between 0 and 1, got 2",
            ]
        );
    }

    #[test]
    fn bad_component_override_unknown_key() {
        let err = bad("component-override-unknown-key.json");
        assert_eq!(parse_path(&err), "evergreen.components.a.restart.retries");
    }

    #[test]
    fn bad_jitter_out_of_range() {
        let err = bad("jitter-out-of-range.json");
        assert_eq!(
            invalid(&err),
            ["evergreen.restart.jitter: must be between 0 and 1, got 1.5"]
        );
    }

    #[test]
    fn bad_spool_too_small() {
        let err = bad("spool-too-small.json");
        assert_eq!(
            invalid(&err),
            ["evergreen.spooler.maxSizeBytes: Spool size should be at least 262144 bytes, got 1000"]
        );
    }

    #[test]
    fn bad_thing_arn_malformed() {
        let err = bad("thing-arn-malformed.json");
        let errors = invalid(&err);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("coreThing.thingArn: account must be 12 digits"),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_cloud_bridge_settings() {
        let err = bad("retry-interval-zero.json");
        assert_eq!(
            invalid(&err),
            ["mqttMaxConnectionRetryInterval: must be at least 1, got 0"]
        );
        let err = bad("cloud-tls-not-bool.json").to_string();
        assert!(err.contains("evergreen.cloudTls"), "{err}");
    }

    #[test]
    fn bad_keepalive_out_of_range() {
        let err = bad("keepalive-out-of-range.json");
        assert_eq!(
            invalid(&err),
            ["coreThing.keepAlive: must be between 30 and 1200, got 10"]
        );
    }

    #[test]
    fn bad_max_frame_too_large() {
        let err = bad("max-frame-too-large.json");
        assert_eq!(
            invalid(&err),
            ["evergreen.maxFrameBytes: must be between 1024 and 67108864, got 67108865"]
        );
    }

    #[test]
    fn bad_backoff_inverted() {
        let err = bad("backoff-inverted.json");
        assert_eq!(
            invalid(&err),
            ["evergreen.restart.maxBackoffMs: must be at least initialBackoffMs (5000), got 1000"]
        );
    }

    #[test]
    fn bad_relative_root() {
        let err = bad("relative-root.json");
        assert_eq!(
            invalid(&err),
            ["evergreen.root: must be an absolute path, got \"var/evergreen\""]
        );
    }

    #[test]
    fn bad_control_socket_too_long() {
        let err = bad("control-socket-too-long.json");
        assert_eq!(
            invalid(&err),
            ["evergreen.controlSocket: must be at most 107 bytes (the limit of a Unix socket address), got 121"]
        );
    }

    #[test]
    fn control_socket_follows_the_root_unless_set() {
        let mut config = CoreConfig::defaults(&root_env()).expect("defaults");
        assert_eq!(
            config.control_socket(),
            Path::new("/var/lib/evergreen/run/control.sock")
        );
        // `--root` is applied after loading; the socket moves with it.
        config.evergreen.root = Some(PathBuf::from("/srv/eg"));
        assert_eq!(
            config.control_socket(),
            Path::new("/srv/eg/run/control.sock")
        );
        let user = CoreConfig::defaults(&user_env(None, Some("/home/u"))).expect("defaults");
        assert_eq!(
            user.control_socket(),
            Path::new("/home/u/.local/share/evergreen/run/control.sock")
        );
    }

    #[test]
    fn bad_listener_conflict() {
        // The plain listener on the TLS listener's default port (ggMqttPort).
        let err = bad("listener-conflict.json");
        assert_eq!(
            invalid(&err),
            ["evergreen.listeners.mqttPlain.port: 0.0.0.0:8883 is already the TLS listener"]
        );
    }

    #[test]
    fn bad_many_errors_are_all_reported_at_once() {
        let err = bad("many-errors.json");
        let errors = invalid(&err);
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "coreThing.thingArn",
                "coreThing.iotHost",
                "coreThing.ggDaemonPort",
                "coreThing.keepAlive",
                "coreThing.mqttOperationTimeout",
                "runtime.maxWorkItemCount",
                "writeDirectory",
                "evergreen.queueCapacity",
                "evergreen.restart.multiplier",
                "evergreen.restart.jitter",
                "evergreen.spooler.maxSizeBytes",
            ]
        );
        // The message names the file and every problem.
        let text = err.to_string();
        assert!(text.contains("many-errors.json"), "{text}");
        assert_eq!(text.matches("\n  - ").count(), errors.len());
    }
}
