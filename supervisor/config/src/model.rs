//! The serde model of `config.json`: one struct per section, the defaults
//! of every key that does not depend on the environment, and the accessors
//! that resolve a loaded configuration into paths and addresses. It never
//! reads a file or the environment (that is `load`) and checks nothing
//! beyond what the types say (that is `check`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize};

use crate::{DEFAULT_THING_ARN, SYSTEM_ROOT};

/// A Greengrass key that is accepted and ignored: its value is skipped
/// unread, only its presence is kept (for [`CoreConfig::ignored_keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ignored;

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Ignored)
    }
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

/// `evergreen.metricsUpstream`: the metrics (Prometheus text) published to the upstream broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsUpstream {
    /// The topic (no wildcards), e.g. `evergreen/<thing>/metrics`.
    pub topic: String,
    /// Seconds between two publishes, at least 1.
    #[serde(default = "MetricsUpstream::default_interval")]
    pub interval_secs: u64,
}

impl MetricsUpstream {
    fn default_interval() -> u64 {
        60
    }
}

/// `evergreen.statusPage`: the read-only status page a technician opens in a browser (served by
/// `evergreen_ops::statuspage`). The token is the page's only access control, so it is never
/// serialized or debug-printed: the effective configuration (and anything that prints it)
/// reads `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusPage {
    /// Where the page listens; loopback unless a token is configured too.
    pub address: SocketAddr,
    /// The access token; `None`: the runtime generates one and keeps it in
    /// `<root>/status-page.token` (0600).
    #[serde(default)]
    pub token: Option<String>,
    /// Seconds between two samples of the components' message counters (the page's
    /// sparklines hold [`StatusPage::SAMPLES`] of them); 1..=60.
    #[serde(default = "StatusPage::default_sample_secs")]
    pub sample_secs: u64,
}

impl StatusPage {
    /// Samples each sparkline holds: five minutes at the default interval.
    pub const SAMPLES: usize = 60;

    fn default_sample_secs() -> u64 {
        5
    }
}

impl std::fmt::Debug for StatusPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusPage")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("sample_secs", &self.sample_secs)
            .finish()
    }
}

impl Serialize for StatusPage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("StatusPage", 3)?;
        st.serialize_field("address", &self.address)?;
        st.serialize_field("token", &self.token.as_ref().map(|_| "<redacted>"))?;
        st.serialize_field("sampleSecs", &self.sample_secs)?;
        st.end()
    }
}

/// `evergreen.logLevel`: a Logger definition's level names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RuntimeLogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl RuntimeLogLevel {
    /// The same level as the IPC's (and the log files') type.
    pub fn level(self) -> evergreen_ipc::LogLevel {
        match self {
            RuntimeLogLevel::Debug => evergreen_ipc::LogLevel::Debug,
            RuntimeLogLevel::Info => evergreen_ipc::LogLevel::Info,
            RuntimeLogLevel::Warn => evergreen_ipc::LogLevel::Warn,
            RuntimeLogLevel::Error => evergreen_ipc::LogLevel::Error,
            RuntimeLogLevel::Fatal => evergreen_ipc::LogLevel::Fatal,
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
    /// Always `Some` after `load`: the default is computed from `ConfigEnv`.
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
    /// Workers one on-demand function may run at once (each handles one
    /// invocation at a time); within `runtime.maxConcurrentLimit`.
    pub max_workers_per_function: u64,
    pub restart: Restart,
    pub components: std::collections::BTreeMap<String, ComponentSettings>,
    pub listeners: Listeners,
    pub spooler: Spooler,
    pub secret_name_prefix: String,
    pub log_to_stderr: bool,
    /// The runtime's own log level, over the group's `GreengrassSystem` Logger definition;
    /// `None`: the group's (`evergreen run --log-level` overrides both).
    pub log_level: Option<RuntimeLogLevel>,
    /// Where the Prometheus metrics endpoint listens (`GET /metrics`); `None`: off.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// The same metrics published to the upstream broker at an interval; `None`: not.
    pub metrics_upstream: Option<MetricsUpstream>,
    /// The read-only status page for a browser; `None`: off.
    pub status_page: Option<StatusPage>,
    pub default_run_as: DefaultRunAs,
    /// Mutual TLS to the upstream broker; `false` = plain TCP.
    pub cloud_tls: bool,
    /// AWS credentials and endpoints for connectors (the CLI maps them onto `evergreen_aws`).
    pub aws: AwsConfig,
    /// Bounds on MQTT peers before and after they are trusted (the CLI maps them onto
    /// `evergreen_mqtt::PeerLimits`).
    pub mqtt_limits: MqttLimits,
    /// Bounds on the Lambda IPC endpoint's peers (the CLI maps them onto
    /// `evergreen_runtime::lambda::EndpointLimits`).
    pub lambda_endpoint: LambdaEndpoint,
    /// Bounds on the stream manager (the CLI maps them onto `evergreen_streams`'s limits).
    pub stream_manager: StreamManagerLimits,
    /// Deployments over the upstream broker; absent = this gateway takes none.
    pub fleet: Option<Fleet>,
}

/// `evergreen.fleet`: deployment documents over the cloud bridge's connection (the
/// `evergreen-fleet` crate documents the topics and the document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Fleet {
    /// Ed25519 public keys (base64, as `evergreen fleet keygen` prints them) whose signed
    /// documents this gateway applies. At least one.
    pub trusted_keys: Vec<String>,
    /// The fleet groups this gateway belongs to: it also takes the documents published to them.
    pub groups: Vec<String>,
    /// The topics' prefix on the upstream broker.
    pub topic_prefix: String,
    /// The largest bundle this gateway downloads.
    pub max_bundle_bytes: u64,
    /// Seconds between health messages (also sent at start and after each deployment).
    pub health_interval_secs: u32,
    /// Where documents come from: `mqtt` (retained messages on the fleet topics) or `jobs`
    /// (AWS IoT Jobs over the same connection).
    pub transport: FleetTransport,
    /// Seconds a new runtime release has, from its start, to become healthy (every component
    /// up, the cloud bridge connected) before the previous release comes back.
    pub update_health_window_secs: u32,
    /// Starts of a new release that never became healthy before it is rolled back.
    pub update_max_starts: u32,
    /// How the runtime restarts onto another release.
    pub restart_by: RestartBy,
}

/// `evergreen.fleet.restartBy`: how the runtime restarts onto another release.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RestartBy {
    /// `serviceManager` under systemd (`INVOCATION_ID` set), else `exec`.
    #[default]
    Auto,
    /// Exit with status 80 once every component stopped; the service manager starts the
    /// runtime again (the unit lists 80 in `RestartForceExitStatus=`).
    ServiceManager,
    /// Execute the stable binary again in place; a new release on trial runs as its child,
    /// watched, until it became healthy.
    Exec,
}

/// `evergreen.fleet.transport`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetTransport {
    #[default]
    Mqtt,
    Jobs,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            trusted_keys: Vec::new(),
            groups: Vec::new(),
            topic_prefix: "evergreen/fleet".to_owned(),
            max_bundle_bytes: 512 << 20,
            health_interval_secs: 60,
            transport: FleetTransport::Mqtt,
            update_health_window_secs: 120,
            update_max_starts: 3,
            restart_by: RestartBy::Auto,
        }
    }
}

/// `evergreen.mqttLimits`: what the local MQTT server grants a peer, before its CONNECT is
/// accepted (little: it is nobody yet) and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MqttLimits {
    /// Largest packet (remaining length) before the CONNECT is accepted: the CONNECT itself.
    pub max_packet_bytes_before_connect: u32,
    /// Largest packet of a connected device.
    pub max_packet_bytes: u32,
    /// Seconds from accept (TLS handshake included) to a complete CONNECT.
    pub connect_timeout_secs: u16,
    /// Connections open at once on both listeners; more are closed at accept.
    pub max_connections: u32,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: u32,
    /// A device's keep-alive is capped at this (as AWS IoT does): a peer silent for 1.5 times
    /// it is closed, so a half-open connection does not live for a day.
    pub max_keep_alive_secs: u16,
    /// Seconds a packet that started arriving may take to arrive (more while bytes keep
    /// coming at a useful rate).
    pub read_timeout_secs: u16,
}

impl Default for MqttLimits {
    fn default() -> Self {
        MqttLimits {
            // A CONNECT is a client id (at most 128 bytes here), maybe a user name and
            // password and a few MQTT 5 properties: 4 KiB leaves room and costs nothing.
            max_packet_bytes_before_connect: 4096,
            // The largest IPC frame (`maxFrameBytes`) by default: a bigger message could not
            // reach a component anyway.
            max_packet_bytes: 1 << 20,
            connect_timeout_secs: 10,
            max_connections: 4096,
            max_connections_per_ip: 256,
            max_keep_alive_secs: 1200,
            read_timeout_secs: 30,
        }
    }
}

/// `evergreen.lambdaEndpoint`: what the Lambda IPC endpoint (`coreThing.ggDaemonPort`)
/// grants a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LambdaEndpoint {
    /// Milliseconds a connection has to send its whole request head.
    pub head_timeout_ms: u64,
    /// Milliseconds an authenticated request has to send its body after its head.
    pub body_timeout_ms: u64,
    /// Largest request head (request line and headers).
    pub max_head_bytes: usize,
    /// Largest request body (Lambda's synchronous payload limit by default).
    pub max_body_bytes: usize,
    /// Connections whose token is not checked yet; when more arrive the oldest is closed.
    pub max_pending_connections: usize,
    /// Connections one function (one token) may have open at once.
    pub max_connections_per_function: usize,
}

impl Default for LambdaEndpoint {
    fn default() -> Self {
        LambdaEndpoint {
            head_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_head_bytes: 16 << 10,
            max_body_bytes: 6 << 20,
            max_pending_connections: 256,
            // A worker's long poll, its publishes, and invokes waiting for results from
            // several threads of a handler.
            max_connections_per_function: 64,
        }
    }
}

/// `evergreen.streamManager`: what the stream manager (for groups with `GGStreamManager`) may
/// hold and serve. The group's `GGStreamManager` variables set its port and store directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StreamManagerLimits {
    /// Streams that may exist at once.
    pub max_streams: usize,
    /// Bytes all `File` streams together may hold on disk.
    pub max_file_bytes: u64,
    /// Bytes all `Memory` streams together may hold.
    pub max_memory_bytes: u64,
    /// Largest message one append may carry.
    pub max_message_bytes: usize,
    /// Clients connected at once.
    pub max_connections: usize,
    /// Largest request frame.
    pub max_request_bytes: usize,
    /// Largest `read_messages` answer.
    pub max_response_bytes: usize,
}

impl Default for StreamManagerLimits {
    fn default() -> Self {
        StreamManagerLimits {
            max_streams: 100,
            max_file_bytes: 2 << 30,
            max_memory_bytes: 64 << 20,
            max_message_bytes: 16 << 20,
            max_connections: 64,
            max_request_bytes: 17 << 20,
            max_response_bytes: 32 << 20,
        }
    }
}

/// `evergreen.aws`: where connectors' AWS credentials come from and which
/// endpoints they call. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AwsConfig {
    /// Static keys; the chain's first source (see `evergreen_aws::credentials`, which the CLI hands these settings to).
    pub credentials: Option<StaticCredentials>,
    /// The shared credentials file's profile (default `AWS_PROFILE`, then
    /// `default`).
    pub profile: Option<String>,
    /// One endpoint for every AWS service (a VPC endpoint proxy, a test
    /// server); `endpoints` entries win over it.
    pub endpoint_url: Option<String>,
    /// Endpoint per service key (`sns`, `firehose`, `monitoring`,
    /// `iotanalytics`, `secretsmanager`, `logs`, `twilio`).
    pub endpoints: std::collections::BTreeMap<String, String>,
    /// The AWS IoT credentials provider endpoint
    /// (`<prefix>.credentials.iot.<region>.amazonaws.com`, or a URL); with
    /// `iotRoleAlias`, the core exchanges its certificate for credentials.
    pub iot_cred_endpoint: Option<String>,
    pub iot_role_alias: Option<String>,
}

/// `evergreen.aws.credentials`. Serialized redacted, so the effective
/// configuration (`evergreen config`) never prints the secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Serialize for StaticCredentials {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("StaticCredentials", 3)?;
        st.serialize_field("accessKeyId", &self.access_key_id)?;
        st.serialize_field("secretAccessKey", "<redacted>")?;
        st.serialize_field(
            "sessionToken",
            &self.session_token.as_ref().map(|_| "<redacted>"),
        )?;
        st.end()
    }
}

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
            max_workers_per_function: 25,
            restart: Restart::default(),
            components: std::collections::BTreeMap::new(),
            listeners: Listeners::default(),
            spooler: Spooler::default(),
            secret_name_prefix: "greengrass-".to_owned(),
            log_to_stderr: true,
            log_level: None,
            metrics_address: None,
            metrics_upstream: None,
            status_page: None,
            cloud_tls: true,
            aws: AwsConfig::default(),
            mqtt_limits: MqttLimits::default(),
            lambda_endpoint: LambdaEndpoint::default(),
            stream_manager: StreamManagerLimits::default(),
            fleet: None,
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
    /// Its own `evergreen.maxWorkersPerFunction` (on-demand functions only).
    #[serde(default)]
    pub max_workers: Option<u64>,
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
    /// Always `Some` after `load`: defaults to `coreThing.ggMqttPort`.
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

/// The pieces of `arn:<partition>:iot:<region>:<account>:thing/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThingArn<'a> {
    pub(crate) region: &'a str,
    pub(crate) account: &'a str,
    pub(crate) name: &'a str,
}

pub(crate) fn parse_thing_arn(arn: &str) -> Result<ThingArn<'_>, &'static str> {
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

impl CoreConfig {
    pub(crate) fn raw_default() -> CoreConfig {
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
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}
