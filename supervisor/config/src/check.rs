//! Validation after parsing: ranges and the rules between keys, every
//! problem collected as `<key path>: <problem>` so the user fixes them all
//! in one go. It never stops at the first problem and never panics.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use crate::model::parse_thing_arn;
use crate::{CoreConfig, Restart, MAX_SOCKET_PATH};

/// Greengrass's smallest spool. The error keeps Greengrass's wording so
/// people find the old documentation for the same limit.
const MIN_SPOOL_BYTES: u64 = 262_144;

const MIN_FRAME_BYTES: usize = 1024;
// A frame is read into memory whole; 64 MiB per child is already a lot on a
// gateway with 512 MiB.
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// `a < b`, where anything incomparable (a NaN) counts as out of range.
fn below<T: PartialOrd>(a: &T, b: &T) -> bool {
    !matches!(
        a.partial_cmp(b),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    )
}

/// Validation problems, collected so the user fixes them all in one go.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<String>);

impl Problems {
    pub(crate) fn push(&mut self, key: &str, problem: impl fmt::Display) {
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
    pub(crate) fn validate(&self, p: &mut Problems) {
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
        p.at_least(
            "evergreen.maxWorkersPerFunction",
            eg.max_workers_per_function,
            1,
        );

        check_restart(p, "evergreen.restart", &eg.restart);
        for (name, component) in &eg.components {
            // Overrides are checked merged with the global values, as they apply.
            let merged = eg.restart.with(&component.restart);
            check_restart(p, &format!("evergreen.components.{name}.restart"), &merged);
            if let Some(max) = component.max_workers {
                p.at_least(&format!("evergreen.components.{name}.maxWorkers"), max, 1);
            }
        }

        check_mqtt_limits(p, &eg.mqtt_limits);
        check_lambda_endpoint(p, &eg.lambda_endpoint);
        check_stream_manager(p, &eg.stream_manager);
        if let Some(fleet) = &eg.fleet {
            check_fleet(p, fleet);
        }
        if let Some(m) = &eg.metrics_upstream {
            if m.topic.is_empty() || m.topic.contains(['+', '#']) {
                p.push(
                    "evergreen.metricsUpstream.topic",
                    format_args!(
                        "must be a topic to publish on (not empty, no + or #), got {:?}",
                        m.topic
                    ),
                );
            }
            p.at_least("evergreen.metricsUpstream.intervalSecs", m.interval_secs, 1);
        }

        if let Some(page) = &eg.status_page {
            check_status_page(p, page);
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
    pub(crate) fn check_listeners(&self, p: &mut Problems) {
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
}

/// `evergreen.statusPage`: a token that survives a URL and a cookie unencoded, and one whenever
/// the page is reachable from beyond this host (a generated token is meant for a technician on
/// the gateway's own loopback, e.g. through an SSH tunnel).
fn check_status_page(p: &mut Problems, page: &crate::StatusPage) {
    const KEY: &str = "evergreen.statusPage";
    match &page.token {
        Some(token) => {
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-');
            if !(16..=256).contains(&token.len()) || !token.chars().all(allowed) {
                // The value is never echoed: it is a secret.
                p.push(
                    &format!("{KEY}.token"),
                    format_args!(
                        "must be 16 to 256 characters of A-Z a-z 0-9 . _ ~ - (it travels in a URL and a cookie), got {} characters",
                        token.chars().count()
                    ),
                );
            }
        }
        None if !page.address.ip().is_loopback() => p.push(
            &format!("{KEY}.token"),
            format_args!(
                "required when {KEY}.address ({}) is not a loopback address: anyone who reaches it could read the page; set a token of at least 16 characters, or listen on 127.0.0.1",
                page.address
            ),
        ),
        None => {}
    }
    p.between(&format!("{KEY}.sampleSecs"), page.sample_secs, 1, 60);
}

/// `evergreen.mqttLimits`: every bound on, none so loose it stops bounding.
fn check_mqtt_limits(p: &mut Problems, m: &crate::MqttLimits) {
    const KEY: &str = "evergreen.mqttLimits";
    // MQTT's own largest remaining length.
    const MQTT_MAX: u32 = 268_435_455;
    p.between(
        &format!("{KEY}.maxPacketBytesBeforeConnect"),
        m.max_packet_bytes_before_connect,
        256,
        1 << 20,
    );
    p.between(
        &format!("{KEY}.maxPacketBytes"),
        m.max_packet_bytes,
        m.max_packet_bytes_before_connect,
        MQTT_MAX,
    );
    p.between(
        &format!("{KEY}.connectTimeoutSecs"),
        m.connect_timeout_secs,
        1,
        300,
    );
    p.at_least(&format!("{KEY}.maxConnections"), m.max_connections, 1);
    p.between(
        &format!("{KEY}.maxConnectionsPerIp"),
        m.max_connections_per_ip,
        1,
        m.max_connections.max(1),
    );
    // AWS IoT allows 30..1200; below 30 is allowed for tests, which wait 1.5 times the cap.
    p.at_least(&format!("{KEY}.maxKeepAliveSecs"), m.max_keep_alive_secs, 1);
    p.between(
        &format!("{KEY}.readTimeoutSecs"),
        m.read_timeout_secs,
        1,
        3600,
    );
}

/// `evergreen.streamManager`.
fn check_stream_manager(p: &mut Problems, s: &crate::StreamManagerLimits) {
    const KEY: &str = "evergreen.streamManager";
    p.at_least(&format!("{KEY}.maxStreams"), s.max_streams, 1);
    p.at_least(&format!("{KEY}.maxFileBytes"), s.max_file_bytes, 1 << 20);
    p.at_least(
        &format!("{KEY}.maxMemoryBytes"),
        s.max_memory_bytes,
        1 << 20,
    );
    p.between(
        &format!("{KEY}.maxMessageBytes"),
        s.max_message_bytes,
        1024,
        256 << 20,
    );
    p.at_least(&format!("{KEY}.maxConnections"), s.max_connections, 1);
    // A request carries one message and its envelope.
    p.between(
        &format!("{KEY}.maxRequestBytes"),
        s.max_request_bytes,
        s.max_message_bytes.saturating_add(1024),
        1 << 30,
    );
    p.between(
        &format!("{KEY}.maxResponseBytes"),
        s.max_response_bytes,
        s.max_message_bytes.saturating_add(1024),
        1 << 30,
    );
}

/// `evergreen.lambdaEndpoint`.
fn check_lambda_endpoint(p: &mut Problems, l: &crate::LambdaEndpoint) {
    const KEY: &str = "evergreen.lambdaEndpoint";
    p.at_least(&format!("{KEY}.headTimeoutMs"), l.head_timeout_ms, 100);
    p.at_least(&format!("{KEY}.bodyTimeoutMs"), l.body_timeout_ms, 100);
    p.between(
        &format!("{KEY}.maxHeadBytes"),
        l.max_head_bytes,
        1024,
        1 << 20,
    );
    p.between(
        &format!("{KEY}.maxBodyBytes"),
        l.max_body_bytes,
        1024,
        MAX_FRAME_BYTES,
    );
    p.at_least(
        &format!("{KEY}.maxPendingConnections"),
        l.max_pending_connections,
        1,
    );
    p.at_least(
        &format!("{KEY}.maxConnectionsPerFunction"),
        l.max_connections_per_function,
        2,
    );
}

/// `evergreen.fleet`: keys that decode to Ed25519 public keys, topics MQTT takes.
fn check_fleet(p: &mut Problems, f: &crate::Fleet) {
    use base64::Engine as _;
    const KEY: &str = "evergreen.fleet";
    if f.trusted_keys.is_empty() {
        p.push(
            &format!("{KEY}.trustedKeys"),
            "names no key: no document could ever be applied (evergreen fleet keygen prints one)",
        );
    }
    for (i, k) in f.trusted_keys.iter().enumerate() {
        match base64::engine::general_purpose::STANDARD.decode(k.trim()) {
            Ok(raw) if raw.len() == 32 => {}
            Ok(raw) => p.push(
                &format!("{KEY}.trustedKeys[{i}]"),
                format_args!("{} bytes, an Ed25519 public key is 32", raw.len()),
            ),
            Err(e) => p.push(
                &format!("{KEY}.trustedKeys[{i}]"),
                format_args!("not base64: {e}"),
            ),
        }
    }
    let bad = |s: &str| s.is_empty() || s.contains(['+', '#', '\0']);
    if bad(&f.topic_prefix) || f.topic_prefix.ends_with('/') {
        p.push(
            &format!("{KEY}.topicPrefix"),
            "must be a topic without wildcards or a trailing /",
        );
    }
    for (i, g) in f.groups.iter().enumerate() {
        if bad(g) || g.contains('/') {
            p.push(
                &format!("{KEY}.groups[{i}]"),
                "must be one topic level: no /, + or #",
            );
        }
    }
    p.at_least(&format!("{KEY}.maxBundleBytes"), f.max_bundle_bytes, 1024);
    p.between(
        &format!("{KEY}.healthIntervalSecs"),
        f.health_interval_secs,
        1,
        86_400,
    );
    p.between(
        &format!("{KEY}.updateHealthWindowSecs"),
        f.update_health_window_secs,
        5,
        86_400,
    );
    p.between(
        &format!("{KEY}.updateMaxStarts"),
        f.update_max_starts,
        1,
        100,
    );
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
    use std::path::{Path, PathBuf};

    use crate::test_fixtures::*;
    use crate::*;

    #[test]
    fn fleet_keys_topics_and_groups_are_checked() {
        let mut p = super::Problems::default();
        super::check_fleet(
            &mut p,
            &crate::Fleet {
                trusted_keys: vec!["AAAA".into(), "not base64!".into()],
                groups: vec!["line/1".into()],
                topic_prefix: "fleet/#".into(),
                max_bundle_bytes: 10,
                health_interval_secs: 0,
                transport: crate::FleetTransport::Mqtt,
                update_health_window_secs: 1,
                update_max_starts: 0,
                restart_by: crate::RestartBy::Auto,
            },
        );
        let text = p.0.join("\n");
        for want in [
            "evergreen.fleet.trustedKeys[0]: 3 bytes, an Ed25519 public key is 32",
            "evergreen.fleet.trustedKeys[1]: not base64",
            "evergreen.fleet.topicPrefix: must be a topic without wildcards",
            "evergreen.fleet.groups[0]: must be one topic level",
            "evergreen.fleet.maxBundleBytes: must be at least 1024, got 10",
            "evergreen.fleet.healthIntervalSecs: must be between 1 and 86400, got 0",
            "evergreen.fleet.updateHealthWindowSecs: must be between 5 and 86400, got 1",
            "evergreen.fleet.updateMaxStarts: must be between 1 and 100, got 0",
        ] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
        let mut none = super::Problems::default();
        super::check_fleet(
            &mut none,
            &crate::Fleet {
                trusted_keys: vec!["A".repeat(43) + "="],
                ..Default::default()
            },
        );
        assert!(none.0.is_empty(), "{:?}", none.0);
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
    fn bad_peer_limits_out_of_range() {
        let err = bad("peer-limits-out-of-range.json");
        assert_eq!(
            invalid(&err),
            [
                "evergreen.mqttLimits.maxPacketBytes: must be between 8192 and 268435455, got 4096",
                "evergreen.mqttLimits.connectTimeoutSecs: must be between 1 and 300, got 0",
                "evergreen.mqttLimits.maxConnectionsPerIp: must be between 1 and 10, got 11",
                "evergreen.mqttLimits.maxKeepAliveSecs: must be at least 1, got 0",
                "evergreen.lambdaEndpoint.headTimeoutMs: must be at least 100, got 0",
                "evergreen.lambdaEndpoint.maxConnectionsPerFunction: must be at least 2, got 1",
            ]
        );
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
