//! The status document `evergreen status` shows: built from the
//! supervisor's and the router's answers and `/proc`, serialized on the
//! wire, and printed as a table. It owns the units people read (`5m07s`,
//! `12.3 MiB`); it never asks the runtime anything itself.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evergreen_ipc::ComponentKind;
use serde::{Deserialize, Serialize};

use super::CLOUD_NOT_CONFIGURED;
use super::EMBEDDED_GROUP;
use evergreen_runtime::component::{ComponentState, ComponentStatus};
use evergreen_runtime::router::RouterStats;

/// The answer to `{"op":"status"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStatus {
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    /// The group file's path, or `EMBEDDED_GROUP`.
    pub group: String,
    /// The cloud connection in words: `not configured`, or the bridge's
    /// state, endpoint and last error (see [`CloudReport::describe`]).
    pub cloud: String,
    /// The cloud bridge's state, for scripts; `None` without a bridge (and
    /// from a runtime built before it was reported).
    #[serde(default)]
    pub cloud_link: Option<CloudReport>,
    /// The local MQTT server's counters; `None` from a runtime built before they were
    /// reported.
    #[serde(default)]
    pub mqtt: Option<MqttReport>,
    /// The runtime's own resident set (children not included).
    pub rss_kib: Option<u64>,
    /// The runtime's own log (`<log root>/system/runtime.log`), absolute;
    /// `None` when not known (a runtime built before it was reported).
    #[serde(default)]
    pub log_file: Option<String>,
    /// Log lines (the runtime's and the components') dropped because the log writer was
    /// behind, since the start; zero from a runtime built before they were reported.
    #[serde(default)]
    pub log_lines_dropped: u64,
    /// Lines for the group's `AWSCloudWatch` loggers not sent (queue full, spool over its
    /// budget, refused by CloudWatch), since the start.
    #[serde(default)]
    pub cloud_watch_log_lines_dropped: u64,
    pub counts: Counts,
    /// In ARN order.
    pub components: Vec<ComponentReport>,
}

/// How many components are in each state, and how many subscriptions route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub components: usize,
    pub starting: usize,
    pub running: usize,
    pub stopping: usize,
    pub backoff: usize,
    pub failed: usize,
    pub stopped: usize,
    pub subscriptions: usize,
}

/// One component in the status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentReport {
    pub arn: String,
    pub id: String,
    pub name: String,
    pub kind: ComponentKind,
    pub state: ComponentState,
    pub pid: Option<u32>,
    /// Since its current child was started; `None` without a child.
    pub uptime_ms: Option<u64>,
    pub restarts: u64,
    /// How its previous child ended, in words.
    pub last_exit: Option<String>,
    /// The child's resident set (`VmRSS`), not counting its own children.
    pub rss_kib: Option<u64>,
    /// Messages the router delivered into its queue.
    pub messages_in: u64,
    /// Messages it published (valid topics, routed or not).
    pub messages_out: u64,
    /// Messages waiting in its queue.
    pub queue_depth: usize,
    /// Messages for it that were lost: queue full, or nothing attached.
    pub drops: u64,
    /// Its log file, absolute; empty from a runtime built before it was
    /// reported. Text, like `group`, so a path that is not UTF-8 cannot make
    /// the whole status unencodable.
    #[serde(default)]
    pub log_file: String,
    /// Lines of its log dropped because the log writer was behind (a slow disk); zero from
    /// a runtime built before they were reported.
    #[serde(default)]
    pub log_dropped: u64,
    /// Stopped by an operator (`evergreen stop`): it stays `Stopped` until `evergreen start` or
    /// a new deployment; false from a runtime built before it was reported.
    #[serde(default)]
    pub stopped_by_operator: bool,
    /// The pids of its running workers: one for most components, up to
    /// `evergreen.maxWorkersPerFunction` for an on-demand function handling
    /// invocations at once (`pid` is the first, `rssKib` is their sum);
    /// empty without a child or from a runtime built before it was reported.
    #[serde(default)]
    pub workers: Vec<u32>,
}

/// The state of the connection to the cloud, as the bridge knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloudState {
    /// The first connection is being made.
    Connecting,
    /// Connected: messages to `cloud` leave the spool.
    Connected,
    /// Not connected (refused, unreachable, or the connection ended): the
    /// bridge tries again after its backoff, messages wait in the spool.
    Disconnected,
}

/// What the status says about the cloud bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudReport {
    pub state: CloudState,
    /// `host:port` of the upstream broker.
    pub endpoint: String,
    /// Why the last connection attempt failed or the last connection ended.
    pub last_error: Option<String>,
    /// Messages waiting in the spool.
    pub spooled: usize,
    /// Their bytes (topics plus payloads); zero from a runtime built before it was reported.
    #[serde(default)]
    pub spooled_bytes: u64,
    /// How long the oldest spooled message has waited, in milliseconds, counted from when this
    /// runtime took it (the store keeps no time: after a restart, from the restart); `None`
    /// when the spool is empty.
    #[serde(default)]
    pub oldest_spooled_ms: Option<u64>,
    /// Messages lost on their way to the cloud since the start; zero from a runtime built
    /// before they were reported.
    #[serde(default)]
    pub drops: CloudDrops,
}

/// Messages routed to the cloud and lost before the upstream broker acknowledged them, by where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudDrops {
    /// Refused by the spool's full hand-off queue (publishers that wait for no acknowledgement:
    /// QoS 0, components).
    pub hand_off_full: u64,
    /// Dropped because the spool reached `maxSizeBytes` (the oldest go), or larger than it.
    pub spool_full: u64,
    /// Not committed to the spool (a store error).
    pub not_stored: u64,
}

impl CloudDrops {
    pub fn total(&self) -> u64 {
        self.hand_off_full + self.spool_full + self.not_stored
    }
}

impl CloudReport {
    /// The report in words, as the status line shows it.
    pub fn describe(&self) -> String {
        let d = &self.drops;
        let waiting = match self.oldest_spooled_ms {
            Some(ms) if self.spooled > 0 => {
                format!("{} spooled, the oldest for {} s", self.spooled, ms / 1000)
            }
            _ => format!("{} spooled", self.spooled),
        };
        let spooled = if d.total() == 0 {
            waiting
        } else {
            format!(
                "{waiting}; {} lost: {} spool full, {} hand-off full, {} not stored",
                d.total(),
                d.spool_full,
                d.hand_off_full,
                d.not_stored
            )
        };
        match (self.state, &self.last_error) {
            (CloudState::Connected, _) => format!("connected to {} ({spooled})", self.endpoint),
            (CloudState::Connecting, None) => format!("connecting to {}", self.endpoint),
            (CloudState::Connecting, Some(e)) => format!(
                "connecting to {} (last error: {e}; {spooled})",
                self.endpoint
            ),
            (CloudState::Disconnected, e) => format!(
                "disconnected from {}: {}; retrying ({spooled})",
                self.endpoint,
                e.as_deref().unwrap_or("no reason known")
            ),
        }
    }
}

/// What the local MQTT server counted since the runtime started: connections, publishes and
/// every refusal, close and drop, by reason (the server's own names are in
/// `evergreen_mqtt::CounterSnapshot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttReport {
    /// Devices connected now.
    pub connected: u64,
    pub connections: MqttConnections,
    pub publishes: MqttPublishes,
    /// Device publishes dropped, and copies of them lost, by reason.
    pub drops: MqttDrops,
    /// SUBSCRIBE filters refused (no subscription of the group delivers there).
    pub subscribes_refused: u64,
}

/// Connections accepted, refused and closed by a bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttConnections {
    /// CONNECTs accepted.
    pub accepted: u64,
    /// CONNECTs refused: not a device of the group, a client id that is not the certificate's
    /// name, no certificate.
    pub refused_not_authorized: u64,
    /// Closed at accept: `maxConnections` open on both listeners.
    pub refused_max_connections: u64,
    /// Closed at accept: `maxConnectionsPerIp` open from the peer's address.
    pub refused_max_connections_per_ip: u64,
    /// Closed: no CONNECT accepted within `connectTimeoutSecs`.
    pub closed_connect_deadline: u64,
    /// Closed: a packet over `maxPacketBytesBeforeConnect` / `maxPacketBytes`.
    pub closed_packet_too_large: u64,
    /// Closed: 1.5 times the (capped) keep-alive without a packet.
    pub closed_keep_alive: u64,
    /// Closed: a started packet did not arrive within `readTimeoutSecs`.
    pub closed_read_timeout: u64,
    /// Closed: another protocol error.
    pub closed_protocol_error: u64,
}

impl MqttConnections {
    pub fn refused(&self) -> u64 {
        self.refused_not_authorized
            + self.refused_max_connections
            + self.refused_max_connections_per_ip
    }

    pub fn closed(&self) -> u64 {
        self.closed_connect_deadline
            + self.closed_packet_too_large
            + self.closed_keep_alive
            + self.closed_read_timeout
            + self.closed_protocol_error
    }
}

/// Device publishes in, and messages out to devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttPublishes {
    /// Device publishes read: routed or dropped.
    pub received: u64,
    /// Payload bytes of the device publishes read (topics and packet headers not counted);
    /// zero from a runtime built before it was counted.
    #[serde(default)]
    pub received_payload_bytes: u64,
    /// Device publishes that reached at least one subscription.
    pub routed: u64,
    /// Messages written to devices (QoS 1: acknowledged by the device).
    pub delivered: u64,
    /// Payload bytes of the messages written to devices; zero from a runtime built before it
    /// was counted.
    #[serde(default)]
    pub delivered_payload_bytes: u64,
    /// QoS 1 messages queued for offline persistent sessions.
    pub queued_offline: u64,
    /// Device publishes routed only after the whole hold for a full device queue.
    pub held_too_long: u64,
}

/// Why device publishes (or copies of them) were lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MqttDrops {
    /// No subscription from the device accepts the topic.
    pub not_authorized: u64,
    /// A wildcard or invalid topic.
    pub topic_invalid: u64,
    /// The payload never finished arriving.
    pub payload_timeout: u64,
    /// The payload was lost mid-packet as the connection ended. Zero from a runtime built
    /// before it was counted.
    #[serde(default)]
    pub payload_lost: u64,
    /// Taken in, and still unrouted when the connection's drain bound (30 s) passed. Zero
    /// from a runtime built before it was counted.
    #[serde(default)]
    pub lost_at_disconnect: u64,
    /// Copies a target did not take (its queue full, or nothing attached for it).
    pub lost_at_targets: u64,
    /// QoS 1 publishes the cloud spool did not store (never acknowledged).
    pub not_stored: u64,
    /// Messages for an offline persistent session whose queue was full.
    pub offline_queue_full: u64,
    /// Messages not sent to a device because they are larger than it accepts (its MQTT 5
    /// Maximum Packet Size, or `maxPacketBytes`); the device stays connected. Zero from a
    /// runtime built before it was counted.
    #[serde(default)]
    pub too_large_for_device: u64,
    /// Messages not delivered because their MQTT 5 Message Expiry Interval had passed. Zero
    /// from a runtime built before it was counted.
    #[serde(default)]
    pub expired: u64,
}

impl MqttDrops {
    /// Publishes dropped whole (the others are copies lost at one target).
    pub fn dropped(&self) -> u64 {
        self.not_authorized
            + self.topic_invalid
            + self.payload_timeout
            + self.payload_lost
            + self.lost_at_disconnect
    }
}

/// `n what (3 a, 1 b)` with the reasons that are not zero, or `n what`.
fn with_reasons(n: u64, what: &str, reasons: &[(u64, &str)]) -> String {
    let named: Vec<String> = reasons
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, why)| format!("{count} {why}"))
        .collect();
    if named.is_empty() {
        format!("{n} {what}")
    } else {
        format!("{n} {what} ({})", named.join(", "))
    }
}

impl MqttReport {
    /// The report in words, as the status's second line shows it.
    pub fn describe(&self) -> String {
        let c = &self.connections;
        let p = &self.publishes;
        let d = &self.drops;
        let mut parts = vec![
            format!("{} connected", self.connected),
            format!(
                "connections {} accepted, {}, {}",
                c.accepted,
                with_reasons(
                    c.refused(),
                    "refused",
                    &[
                        (c.refused_not_authorized, "not authorized"),
                        (c.refused_max_connections, "over maxConnections"),
                        (c.refused_max_connections_per_ip, "over maxConnectionsPerIp"),
                    ]
                ),
                with_reasons(
                    c.closed(),
                    "closed by a bound",
                    &[
                        (c.closed_connect_deadline, "no CONNECT in time"),
                        (c.closed_packet_too_large, "packet too large"),
                        (c.closed_keep_alive, "keep-alive expired"),
                        (c.closed_read_timeout, "read timeout"),
                        (c.closed_protocol_error, "protocol error"),
                    ]
                ),
            ),
            format!(
                "publishes {} in, {} routed, {} delivered",
                p.received, p.routed, p.delivered
            ),
            with_reasons(
                d.dropped(),
                "dropped",
                &[
                    (d.not_authorized, "not authorized"),
                    (d.topic_invalid, "topic invalid"),
                    (d.payload_timeout, "payload timeout"),
                    (d.payload_lost, "payload lost at disconnect"),
                    (d.lost_at_disconnect, "unrouted at disconnect"),
                ],
            ),
        ];
        let lost = d.lost_at_targets
            + d.not_stored
            + d.offline_queue_full
            + d.too_large_for_device
            + d.expired;
        if lost > 0 {
            parts.push(with_reasons(
                lost,
                "lost",
                &[
                    (d.lost_at_targets, "at targets"),
                    (d.not_stored, "not stored, unacknowledged"),
                    (d.offline_queue_full, "offline queue full"),
                    (d.too_large_for_device, "too large for the device"),
                    (d.expired, "expired (MQTT 5 message expiry)"),
                ],
            ));
        }
        if self.subscribes_refused > 0 {
            parts.push(format!("{} subscribes refused", self.subscribes_refused));
        }
        parts.join("; ")
    }
}

/// Where the status reads the MQTT server's counters: the composition root hands in the
/// server's, so this crate names no MQTT crate.
pub trait MqttCounters: Send + Sync + fmt::Debug {
    fn report(&self) -> MqttReport;
}

/// Where the status reads the cloud connection's state: the composition root
/// hands in the cloud bridge's, so this crate names no cloud crate.
pub trait CloudLink: Send + Sync + fmt::Debug {
    fn report(&self) -> CloudReport;
}

/// What the status says about the runtime itself, fixed at start.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub started: Instant,
    pub group: String,
    /// The runtime's own log, absolute.
    pub log_file: Option<PathBuf>,
    /// The cloud bridge; `None` when no cloud is configured.
    pub cloud: Option<std::sync::Arc<dyn CloudLink>>,
    /// The local MQTT server.
    pub mqtt: Option<std::sync::Arc<dyn MqttCounters>>,
}

impl RuntimeInfo {
    /// `group` is the group file, `None` for the embedded default group.
    pub fn new(started: Instant, group: Option<&Path>) -> Self {
        let group = group.map_or_else(
            || EMBEDDED_GROUP.to_string(),
            // Absolute, so the status means the same from any directory.
            |p| {
                std::path::absolute(p)
                    .unwrap_or_else(|_| p.to_path_buf())
                    .display()
                    .to_string()
            },
        );
        RuntimeInfo {
            started,
            group,
            log_file: None,
            cloud: None,
            mqtt: None,
        }
    }

    /// Reports the MQTT server's counters as `server` tells them.
    pub fn with_mqtt(mut self, server: std::sync::Arc<dyn MqttCounters>) -> Self {
        self.mqtt = Some(server);
        self
    }

    /// Reports the cloud connection as `link` tells it.
    pub fn with_cloud(mut self, link: std::sync::Arc<dyn CloudLink>) -> Self {
        self.cloud = Some(link);
        self
    }

    /// Reports `path` (made absolute) as the runtime's own log.
    pub fn with_log_file(mut self, path: &Path) -> Self {
        self.log_file = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        self
    }
}

/// `VmRSS` of process `pid` in KiB, from `<proc_root>/<pid>/status`; `None`
/// if the process is gone or has no memory of its own (a zombie).
pub(crate) fn vm_rss_kib(proc_root: &Path, pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Puts the status document together from the supervisor's answer and the
/// router's counters. `proc_root` is `/proc` outside tests.
pub(crate) fn build_status(
    info: &RuntimeInfo,
    components: Vec<ComponentStatus>,
    stats: &RouterStats,
    depths: &BTreeMap<String, usize>,
    subscriptions: usize,
    proc_root: &Path,
) -> RuntimeStatus {
    let mut counts = Counts {
        components: components.len(),
        subscriptions,
        ..Counts::default()
    };
    let mut reports = Vec::with_capacity(components.len());
    for c in components {
        *match c.state {
            ComponentState::Starting => &mut counts.starting,
            ComponentState::Running => &mut counts.running,
            ComponentState::Stopping => &mut counts.stopping,
            ComponentState::Backoff => &mut counts.backoff,
            ComponentState::Failed => &mut counts.failed,
            ComponentState::Stopped => &mut counts.stopped,
        } += 1;
        let target = stats.targets.get(&c.arn).copied().unwrap_or_default();
        let source = stats.sources.get(&c.arn).copied().unwrap_or_default();
        reports.push(ComponentReport {
            // Every worker's memory counts (one, but for a busy on-demand function).
            rss_kib: if c.workers.len() > 1 {
                c.workers
                    .iter()
                    .filter_map(|&pid| vm_rss_kib(proc_root, pid))
                    .reduce(|a, b| a + b)
            } else {
                c.pid.and_then(|pid| vm_rss_kib(proc_root, pid))
            },
            messages_in: target.delivered,
            messages_out: source.published,
            queue_depth: depths.get(&c.arn).copied().unwrap_or(0),
            drops: target.dropped_full + target.dropped_unattached,
            uptime_ms: c.uptime.map(millis),
            last_exit: c.last_exit.map(|e| e.to_string()),
            arn: c.arn,
            id: c.id,
            name: c.name,
            kind: c.kind,
            state: c.state,
            pid: c.pid,
            restarts: c.restarts,
            log_file: c.log_file.display().to_string(),
            log_dropped: c.log_dropped,
            stopped_by_operator: c.stopped_by_operator,
            workers: c.workers,
        });
    }
    let pid = std::process::id();
    let cloud_link = info.cloud.as_ref().map(|link| link.report());
    RuntimeStatus {
        version: crate::release::version().to_string(),
        pid,
        uptime_ms: millis(info.started.elapsed()),
        group: info.group.clone(),
        cloud: cloud_link
            .as_ref()
            .map_or_else(|| CLOUD_NOT_CONFIGURED.to_string(), CloudReport::describe),
        cloud_link,
        mqtt: info.mqtt.as_ref().map(|server| server.report()),
        rss_kib: vm_rss_kib(proc_root, pid),
        log_file: info.log_file.as_ref().map(|p| p.display().to_string()),
        log_lines_dropped: evergreen_runtime::logs::dropped_lines(),
        cloud_watch_log_lines_dropped: evergreen_runtime::logs::shipper_dropped(),
        counts,
        components: reports,
    }
}

/// A duration as people read uptimes: `42s`, `5m07s`, `3h12m`, `2d04h`.
pub(crate) fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// KiB as `812K`, `12.3M` or `1.2G`.
pub(crate) fn human_kib(kib: u64) -> String {
    const MIB: u64 = 1024;
    const GIB: u64 = 1024 * 1024;
    match kib {
        0..MIB => format!("{kib}K"),
        MIB..GIB => format!("{:.1}M", kib as f64 / MIB as f64),
        _ => format!("{:.1}G", kib as f64 / GIB as f64),
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

impl fmt::Display for RuntimeStatus {
    /// The table `evergreen status` prints: a line for the runtime, then one
    /// row per component.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let mut states = vec![format!("{} running", c.running)];
        for (n, what) in [
            (c.starting, "starting"),
            (c.backoff, "in backoff"),
            (c.failed, "failed"),
            (c.stopping, "stopping"),
            (c.stopped, "stopped"),
        ] {
            if n > 0 {
                states.push(format!("{n} {what}"));
            }
        }
        writeln!(
            f,
            "evergreen {} pid {} up {} rss {}; group {}; {} ({}), {}; cloud {}",
            self.version,
            self.pid,
            human_duration(self.uptime_ms),
            self.rss_kib.map_or_else(|| "-".to_string(), human_kib),
            self.group,
            plural(c.components, "component"),
            states.join(", "),
            plural(c.subscriptions, "subscription"),
            self.cloud,
        )?;
        if let Some(mqtt) = &self.mqtt {
            writeln!(f, "mqtt {}", mqtt.describe())?;
        }
        if self.log_lines_dropped > 0 {
            let by: Vec<String> = self
                .components
                .iter()
                .filter(|c| c.log_dropped > 0)
                .map(|c| format!("{} {}", c.name, c.log_dropped))
                .collect();
            writeln!(
                f,
                "logs: {} lines dropped, the log writer was behind (a slow disk?){}",
                self.log_lines_dropped,
                if by.is_empty() {
                    String::new()
                } else {
                    format!("; of components: {}", by.join(", "))
                }
            )?;
        }
        if self.cloud_watch_log_lines_dropped > 0 {
            writeln!(
                f,
                "cloudwatch logs: {} lines not sent (queue full, spool full or refused: see the runtime log)",
                self.cloud_watch_log_lines_dropped
            )?;
        }
        let dash = || "-".to_string();
        let mut rows = vec![[
            "NAME",
            "STATE",
            "PID",
            "UPTIME",
            "RESTARTS",
            "RSS",
            "IN/OUT",
            "QUEUE",
            "DROPS",
            "LAST EXIT",
        ]
        .map(str::to_string)];
        for comp in &self.components {
            rows.push([
                comp.name.clone(),
                if comp.stopped_by_operator {
                    format!("{:?} (operator)", comp.state)
                } else {
                    format!("{:?}", comp.state)
                },
                // `1234 +2`: the first worker and how many more run.
                match (comp.pid, comp.workers.len()) {
                    (None, _) => dash(),
                    (Some(p), n) if n > 1 => format!("{p} +{}", n - 1),
                    (Some(p), _) => p.to_string(),
                },
                comp.uptime_ms.map_or_else(dash, human_duration),
                comp.restarts.to_string(),
                comp.rss_kib.map_or_else(dash, human_kib),
                format!("{}/{}", comp.messages_in, comp.messages_out),
                comp.queue_depth.to_string(),
                comp.drops.to_string(),
                comp.last_exit.clone().unwrap_or_else(dash),
            ]);
        }
        let mut widths = [0usize; 10];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  "));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use evergreen_runtime::component::ExitReason;
    use evergreen_runtime::router::{SourceStats, TargetStats};

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:f:1";

    fn component(state: ComponentState, pid: Option<u32>) -> ComponentStatus {
        ComponentStatus {
            arn: ARN.into(),
            id: "f".into(),
            name: "f".into(),
            kind: ComponentKind::Function,
            state,
            pid,
            workers: pid.into_iter().collect(),
            uptime: pid.map(|_| Duration::from_millis(61_500)),
            restarts: 2,
            last_exit: Some(ExitReason::Exited(3)),
            log_file: PathBuf::from("/var/log/user/f.log"),
            log_dropped: 0,
            stopped_by_operator: false,
        }
    }

    #[test]
    fn status_combines_supervisor_router_and_proc() {
        let proc = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(proc.path().join("4242")).expect("mkdir");
        std::fs::write(
            proc.path().join("4242/status"),
            "Name:\tf\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t1\n",
        )
        .expect("write");
        let mut stats = RouterStats::default();
        stats.targets.insert(
            ARN.into(),
            TargetStats {
                delivered: 10,
                dropped_full: 3,
                dropped_unattached: 1,
                closed: 0,
            },
        );
        stats.sources.insert(
            ARN.into(),
            SourceStats {
                published: 7,
                unrouted: 1,
                refused: 0,
            },
        );
        let depths = BTreeMap::from([(ARN.to_string(), 5)]);
        let info = RuntimeInfo::new(Instant::now(), None)
            .with_log_file(Path::new("/var/log/system/runtime.log"));
        let status = build_status(
            &info,
            vec![component(ComponentState::Running, Some(4242))],
            &stats,
            &depths,
            4,
            proc.path(),
        );
        assert_eq!(status.group, EMBEDDED_GROUP);
        assert_eq!(status.cloud, "not configured");
        assert_eq!(status.cloud_link, None);
        assert_eq!(status.pid, std::process::id());
        assert_eq!(status.rss_kib, None, "no such pid in the fake /proc");
        assert_eq!(
            status.counts,
            Counts {
                components: 1,
                running: 1,
                subscriptions: 4,
                ..Counts::default()
            }
        );
        let c = &status.components[0];
        assert_eq!(c.rss_kib, Some(1234));
        assert_eq!((c.messages_in, c.messages_out), (10, 7));
        assert_eq!((c.queue_depth, c.drops), (5, 4));
        assert_eq!(c.uptime_ms, Some(61_500));
        assert_eq!(c.last_exit.as_deref(), Some("exited with status 3"));

        let json = serde_json::to_value(&status).expect("json");
        for key in [
            "version", "pid", "uptimeMs", "group", "cloud", "rssKib", "counts",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        assert_eq!(json["components"][0]["state"], "Running");
        assert_eq!(json["components"][0]["kind"], "Function");
        assert_eq!(json["components"][0]["queueDepth"], 5);
        assert_eq!(json["logFile"], "/var/log/system/runtime.log");
        assert_eq!(json["components"][0]["logFile"], "/var/log/user/f.log");

        let table = status.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("evergreen "), "{table}");
        assert!(
            lines[0].contains("1 component (1 running), 4 subscriptions"),
            "{table}"
        );
        assert!(lines[1].starts_with("NAME"), "{table}");
        assert!(lines[2].starts_with("f "), "{table}");
        for cell in [
            "Running",
            "4242",
            "1m01s",
            "1.2M",
            "10/7",
            "exited with status 3",
        ] {
            assert!(lines[2].contains(cell), "{cell} in {table}");
        }

        // A component between children has no pid, uptime or rss.
        let status = build_status(
            &info,
            vec![component(ComponentState::Backoff, None)],
            &stats,
            &depths,
            0,
            proc.path(),
        );
        assert_eq!(status.counts.backoff, 1);
        assert_eq!(status.components[0].uptime_ms, None);
        assert!(status.to_string().contains("1 in backoff"));
    }

    #[derive(Debug)]
    struct FakeMqtt(MqttReport);

    impl MqttCounters for FakeMqtt {
        fn report(&self) -> MqttReport {
            self.0
        }
    }

    #[test]
    fn mqtt_counters_are_in_the_status_by_reason() {
        let report = MqttReport {
            connected: 2,
            connections: MqttConnections {
                accepted: 5,
                refused_not_authorized: 1,
                refused_max_connections_per_ip: 3,
                closed_packet_too_large: 1,
                closed_read_timeout: 2,
                ..MqttConnections::default()
            },
            publishes: MqttPublishes {
                received: 12,
                routed: 9,
                delivered: 7,
                ..MqttPublishes::default()
            },
            drops: MqttDrops {
                not_authorized: 2,
                topic_invalid: 1,
                lost_at_targets: 4,
                ..MqttDrops::default()
            },
            subscribes_refused: 0,
        };
        let info =
            RuntimeInfo::new(Instant::now(), None).with_mqtt(std::sync::Arc::new(FakeMqtt(report)));
        let status = build_status(
            &info,
            Vec::new(),
            &RouterStats::default(),
            &BTreeMap::new(),
            0,
            Path::new("/nonexistent"),
        );
        assert_eq!(status.mqtt, Some(report));
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["mqtt"]["connected"], 2);
        assert_eq!(json["mqtt"]["connections"]["refusedMaxConnectionsPerIp"], 3);
        assert_eq!(json["mqtt"]["connections"]["closedReadTimeout"], 2);
        assert_eq!(json["mqtt"]["publishes"]["received"], 12);
        assert_eq!(json["mqtt"]["drops"]["notAuthorized"], 2);
        assert_eq!(json["mqtt"]["drops"]["lostAtTargets"], 4);
        let table = status.to_string();
        let line = table.lines().nth(1).expect("second line");
        assert_eq!(
            line,
            "mqtt 2 connected; connections 5 accepted, 4 refused (1 not authorized, 3 over maxConnectionsPerIp), \
             3 closed by a bound (1 packet too large, 2 read timeout); publishes 12 in, 9 routed, 7 delivered; \
             3 dropped (2 not authorized, 1 topic invalid); 4 lost (4 at targets)"
        );
        // From a runtime built before the counters were reported.
        let mut old = json.clone();
        old.as_object_mut().expect("object").remove("mqtt");
        let back: RuntimeStatus = serde_json::from_value(old).expect("older status");
        assert_eq!(back.mqtt, None);
    }

    #[test]
    fn rss_of_this_process_is_read_from_proc() {
        let rss = vm_rss_kib(Path::new("/proc"), std::process::id());
        assert!(rss.is_some_and(|k| k > 0), "{rss:?}");
        assert_eq!(vm_rss_kib(Path::new("/nonexistent"), 1), None);
    }

    #[test]
    fn human_units() {
        assert_eq!(human_duration(999), "0s");
        assert_eq!(human_duration(59_999), "59s");
        assert_eq!(human_duration(307_000), "5m07s");
        assert_eq!(human_duration(3 * 3_600_000 + 12 * 60_000), "3h12m");
        assert_eq!(human_duration(2 * 86_400_000 + 4 * 3_600_000), "2d04h");
        assert_eq!(human_kib(812), "812K");
        assert_eq!(human_kib(12_595), "12.3M");
        assert_eq!(human_kib(1_258_291), "1.2G");
    }
}
