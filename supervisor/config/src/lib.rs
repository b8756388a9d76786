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
//! Default path `DEFAULT_CONFIG_PATH` (`/etc/evergreen/config.json`);
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
//! IP address) and the shape of the file (strictly, with `evergreen_json`: a
//! section is an object, never an array taken by position; no key appears
//! twice in one object; `"never"` is not `{"never": null}`; nothing follows
//! the top-level object), and stops at the first problem, reported with its
//! JSON path.
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
//! | `evergreen.maxWorkersPerFunction` | `25` | workers (processes) one on-demand Python function may run at once, each handling one invocation at a time; another starts when work waits and every worker is busy; all of them count against `runtime.maxConcurrentLimit`; pinned functions always have one; at least 1 |
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
//! | `evergreen.components.<Id or ARN>.maxWorkers` | none | that function's own `evergreen.maxWorkersPerFunction`, at least 1 |
//! | `evergreen.listeners.mqttTls.address` | `"0.0.0.0"` | IP address of the local MQTT server (TLS) |
//! | `evergreen.listeners.mqttTls.port` | `null` = `coreThing.ggMqttPort` | port; 0 = any free port (tests) |
//! | `evergreen.listeners.mqttTls.caPath` | `null` = `<root>/certs/local/ca.pem` | the group CA (PEM) device certificates must be signed by (`evergreen certs init` writes the default) |
//! | `evergreen.listeners.mqttTls.certPath` | `null` = `<root>/certs/local/server.pem` | the MQTT server's certificate chain (PEM) |
//! | `evergreen.listeners.mqttTls.keyPath` | `null` = `<root>/certs/local/server.key` | the MQTT server's private key (PEM) |
//! | `evergreen.listeners.mqttPlain.enabled` | `false` | also serve MQTT without TLS |
//! | `evergreen.listeners.mqttPlain.address` | `"127.0.0.1"` | IP address of the plain listener |
//! | `evergreen.listeners.mqttPlain.port` | `1883` | port; 0 = any free port |
//! | `evergreen.mqttLimits.maxPacketBytesBeforeConnect` | `4096` | largest MQTT packet (remaining length) before the CONNECT is accepted, 256..1048576; a bigger one closes the connection before it is read |
//! | `evergreen.mqttLimits.maxPacketBytes` | `1048576` | largest MQTT packet of a connected device, at least `maxPacketBytesBeforeConnect`, at most 268435455 |
//! | `evergreen.mqttLimits.connectTimeoutSecs` | `10` | seconds from accept (TLS handshake included) to a complete CONNECT, 1..300; then the connection is closed |
//! | `evergreen.mqttLimits.maxConnections` | `4096` | MQTT connections open at once on both listeners, at least 1; more are closed at accept (counted, logged at most every 10 s) |
//! | `evergreen.mqttLimits.maxConnectionsPerIp` | `256` | MQTT connections open at once from one IP address, 1..`maxConnections` |
//! | `evergreen.mqttLimits.maxKeepAliveSecs` | `1200` | a device's keep-alive is capped at this (AWS IoT's cap), 1..65535 (below AWS IoT's 30 only for tests); a device silent for 1.5 times its keep-alive is disconnected |
//! | `evergreen.mqttLimits.readTimeoutSecs` | `30` | seconds a started packet may take to arrive, extended while at least 1 KiB arrives per period; 1..3600 |
//! | `evergreen.lambdaEndpoint.headTimeoutMs` | `10000` | ms a Lambda IPC connection has to send its request head, at least 100 |
//! | `evergreen.lambdaEndpoint.bodyTimeoutMs` | `30000` | ms an authenticated request has to send its body, at least 100 |
//! | `evergreen.lambdaEndpoint.maxHeadBytes` | `16384` | largest request head, 1024..1048576 |
//! | `evergreen.lambdaEndpoint.maxBodyBytes` | `6291456` | largest request body (Lambda's 6 MB), 1024..67108864 |
//! | `evergreen.lambdaEndpoint.maxPendingConnections` | `256` | connections whose token is not checked yet, at least 1; a new one closes the oldest |
//! | `evergreen.lambdaEndpoint.maxConnectionsPerFunction` | `64` | connections one function may have open at once, at least 2 (its long poll and one more) |
//! | `evergreen.streamManager.maxStreams` | `100` | streams the stream manager (groups with `GGStreamManager`) holds at once, at least 1 |
//! | `evergreen.streamManager.maxFileBytes` | `2147483648` | bytes all `File` streams together may hold on disk, at least 1 MiB |
//! | `evergreen.streamManager.maxMemoryBytes` | `67108864` | bytes all `Memory` streams together may hold, at least 1 MiB |
//! | `evergreen.streamManager.maxMessageBytes` | `16777216` | largest message one append may carry, 1024..268435456 |
//! | `evergreen.streamManager.maxConnections` | `64` | stream manager clients connected at once, at least 1 |
//! | `evergreen.streamManager.maxRequestBytes` | `17825792` | largest request, from `maxMessageBytes` + 1024 to 1 GiB |
//! | `evergreen.streamManager.maxResponseBytes` | `33554432` | largest `read_messages` answer, from `maxMessageBytes` + 1024 to 1 GiB |
//! | `evergreen.spooler.storageType` | `"FileSystem"` | `"FileSystem"` (survives restarts) or `"Memory"`; Greengrass defaulted to memory |
//! | `evergreen.spooler.maxSizeBytes` | `2621440` | cloud spool size, at least 262144 |
//! | `evergreen.cloudTls` | `true` | mutual TLS to `coreThing.iotHost` with `caPath`/`certPath`/`keyPath` (AWS IoT Core); `false` = plain TCP, for tests and brokers inside a trusted network |
//! | `mqttMaxConnectionRetryInterval` | `60` | seconds, at least 1: cap of the cloud bridge's reconnect backoff (as in Greengrass) |
//! | `evergreen.secretNamePrefix` | `"greengrass-"` | secrets readable by components must start with this; `""` lifts the rule |
//! | `evergreen.logToStderr` | `true` | echo the runtime's own log to stderr (for journald) |
//! | `evergreen.metricsAddress` | `null` | `"127.0.0.1:9464"`: serve Prometheus metrics on `GET /metrics` there (no authentication: keep it on loopback or a trusted network); `null` = off |
//! | `evergreen.metricsUpstream` | `null` | `{"topic": "evergreen/gw-1/metrics", "intervalSecs": 60}`: the same metrics (Prometheus text) published on that topic of the upstream broker every `intervalSecs` (at least 1), QoS 1, only the newest kept while the link is down; needs a cloud connection |
//! | `evergreen.statusPage` | `null` | `{"address": "127.0.0.1:8765", "token": null, "sampleSecs": 5}`: serve the read-only status page (see `docs/status-page.md`) there; `token` (16..256 of `A-Z a-z 0-9 . _ ~ -`) is required unless the address is loopback, and when `null` one is generated into `<root>/status-page.token` (0600); `sampleSecs` (1..60) spaces the samples of the message-rate sparklines (60 samples each); `null` = off |
//! | `evergreen.logLevel` | `null` | the runtime's own log level (`DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`) over the group's `GreengrassSystem` logger; `null` = the group's; `evergreen run --log-level` overrides both |
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

mod check;
mod load;
mod model;
#[cfg(test)]
mod test_fixtures;

use std::io;
use std::path::PathBuf;

pub use load::{load, load_str};
pub use model::{
    AwsConfig, ComponentSettings, CoreConfig, CoreThing, DefaultRunAs, Evergreen, Fleet,
    FleetTransport, LambdaEndpoint, Listeners, MetricsUpstream, MqttLimits, PlainListener, Restart,
    RestartBy, RestartOverride, RestartPolicy, Runtime, RuntimeLogLevel, Spooler,
    StaticCredentials, StatusPage, StorageType, StreamManagerLimits, TlsListener, YesNo,
};

/// Where the configuration is read from when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/evergreen/config.json";

/// The runtime root when running as uid 0 (the FHS place for state).
pub(crate) const SYSTEM_ROOT: &str = "/var/lib/evergreen";

/// A thing ARN that parses, so a configuration without a cloud still has a
/// thing name, region and account to hand to connectors.
pub(crate) const DEFAULT_THING_ARN: &str =
    "arn:aws:iot:us-east-1:000000000000:thing/evergreen-core";

/// Longest a Unix socket path can be on Linux (`sun_path` is 108 bytes with
/// its terminating NUL): `evergreen.controlSocket` is checked against it.
pub const MAX_SOCKET_PATH: usize = 107;

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
    /// `json_path` is like `evergreen.restart.jitter` (`.` for the top level); `more` lists
    /// the other keys at fault, each as `<key path>: <problem>` (see
    /// [`evergreen_json::from_str_all`] for which ones can be found in one pass).
    #[error("cannot parse configuration {} at {json_path}: {message}{}", path.display(), also(more))]
    Parse {
        path: PathBuf,
        json_path: String,
        message: String,
        more: Vec<String>,
    },
    /// Every value that is out of range or inconsistent, each as
    /// `<key path>: <problem>`.
    #[error("invalid configuration {}:{}", path.display(), bullets(errors))]
    Invalid { path: PathBuf, errors: Vec<String> },
}

fn also(more: &[String]) -> String {
    if more.is_empty() {
        String::new()
    } else {
        format!("\nand also:{}", bullets(more))
    }
}

fn bullets(errors: &[String]) -> String {
    errors.iter().map(|e| format!("\n  - {e}")).collect()
}
