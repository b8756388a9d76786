//! The Prometheus metrics endpoint: the status document ([`RuntimeStatus`]) and the deployment
//! history rendered in the Prometheus text format (0.0.4, which OpenMetrics scrapers read
//! too), and the small HTTP/1.1 server that answers `GET /metrics` on the configured address
//! (`evergreen.metricsAddress`; off unless set, loopback in the examples).
//!
//! Every number the status document carries becomes a series: per component (state, restarts,
//! resident memory, CPU time read from `/proc`, messages in and out, queue depth, drops, log
//! lines dropped), the runtime's own (uptime, memory, log lines dropped), the local MQTT
//! server's counters by reason (`mqtt.connections.refusedNotAuthorized` becomes
//! `evergreen_mqtt_connections_refused_not_authorized_total`), the cloud spool's depth and
//! drops, and deployments by outcome. The server reads at most one request line and its
//! headers (8 KiB, 5 s) per connection and closes it after the answer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::control::{CloudState, ControlState, RuntimeStatus};
use crate::deploy::DeploymentRecord;

/// Longest request read (its line and headers).
const MAX_REQUEST: usize = 8 << 10;
/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The Prometheus text exposition of `status` and `history`; `proc_root` is `/proc` outside
/// tests (for the components' CPU time).
pub fn render(status: &RuntimeStatus, history: &[DeploymentRecord], proc_root: &Path) -> String {
    let mut out = Out::default();
    out.gauge(
        "evergreen_info",
        "The runtime's version (the value is always 1).",
        &[("version", &status.version)],
        1.0,
    );
    out.gauge(
        "evergreen_uptime_seconds",
        "Seconds since the runtime started.",
        &[],
        status.uptime_ms as f64 / 1000.0,
    );
    if let Some(kib) = status.rss_kib {
        out.gauge(
            "evergreen_resident_memory_bytes",
            "The runtime's own resident set (its children not included).",
            &[],
            kib as f64 * 1024.0,
        );
    }
    out.counter(
        "evergreen_log_lines_dropped_total",
        "Log lines dropped because the log writer was behind.",
        &[],
        status.log_lines_dropped as f64,
    );
    out.counter(
        "evergreen_cloudwatch_log_lines_dropped_total",
        "Lines for AWSCloudWatch loggers not sent (queue full, spool full, refused).",
        &[],
        status.cloud_watch_log_lines_dropped as f64,
    );
    out.gauge(
        "evergreen_subscriptions",
        "Subscriptions of the running group.",
        &[],
        status.counts.subscriptions as f64,
    );
    for c in &status.components {
        let state = format!("{:?}", c.state).to_lowercase();
        let labels = [("component", c.name.as_str()), ("arn", c.arn.as_str())];
        let with_state = [labels[0], labels[1], ("state", state.as_str())];
        out.gauge(
            "evergreen_component_state",
            "A component's state (the value is always 1; the state is the label).",
            &with_state,
            1.0,
        );
        out.counter(
            "evergreen_component_restarts_total",
            "Times a component's child was started again.",
            &labels,
            c.restarts as f64,
        );
        if let Some(kib) = c.rss_kib {
            out.gauge(
                "evergreen_component_resident_memory_bytes",
                "A component's child's resident set.",
                &labels,
                kib as f64 * 1024.0,
            );
        }
        // Several for an on-demand function handling invocations at once.
        out.gauge(
            "evergreen_component_workers",
            "A component's running children (workers).",
            &labels,
            c.workers.len() as f64,
        );
        if let Some(cpu) = c.pid.and_then(|pid| cpu_seconds(proc_root, pid)) {
            out.counter(
                "evergreen_component_cpu_seconds_total",
                "CPU time (user and system) of a component's current child.",
                &labels,
                cpu,
            );
        }
        out.counter(
            "evergreen_component_messages_in_total",
            "Messages the router delivered into a component's queue.",
            &labels,
            c.messages_in as f64,
        );
        out.counter(
            "evergreen_component_messages_out_total",
            "Messages a component published.",
            &labels,
            c.messages_out as f64,
        );
        out.gauge(
            "evergreen_component_queue_depth",
            "Messages waiting in a component's queue.",
            &labels,
            c.queue_depth as f64,
        );
        out.counter(
            "evergreen_component_drops_total",
            "Messages for a component lost: its queue full, or nothing attached.",
            &labels,
            c.drops as f64,
        );
        out.counter(
            "evergreen_component_log_lines_dropped_total",
            "Lines of a component's log dropped because the log writer was behind.",
            &labels,
            c.log_dropped as f64,
        );
    }
    if let Some(mqtt) = &status.mqtt {
        if let Ok(value) = serde_json::to_value(mqtt) {
            out.flatten("evergreen_mqtt", &value, "the local MQTT server");
        }
    }
    if let Some(cloud) = &status.cloud_link {
        out.gauge(
            "evergreen_cloud_connected",
            "1 while the cloud bridge is connected to the upstream broker.",
            &[],
            f64::from(u8::from(matches!(cloud.state, CloudState::Connected))),
        );
        out.gauge(
            "evergreen_cloud_spool_depth",
            "Messages waiting in the cloud spool.",
            &[],
            cloud.spooled as f64,
        );
        out.gauge(
            "evergreen_cloud_spool_bytes",
            "Bytes (topics and payloads) waiting in the cloud spool.",
            &[],
            cloud.spooled_bytes as f64,
        );
        out.gauge(
            "evergreen_cloud_spool_oldest_age_seconds",
            "How long the oldest message in the cloud spool has waited (0 when empty), counted \
             from when this runtime took it.",
            &[],
            cloud.oldest_spooled_ms.unwrap_or(0) as f64 / 1000.0,
        );
        if let Ok(value) = serde_json::to_value(cloud.drops) {
            out.flatten("evergreen_cloud_drops", &value, "the cloud bridge's drops");
        }
    }
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for record in history {
        let status = serde_json::to_value(record.deployment_status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_lowercase))
            .unwrap_or_else(|| "unknown".into());
        *outcomes.entry(status).or_default() += 1;
    }
    for (outcome, n) in outcomes {
        out.counter(
            "evergreen_deployments_total",
            "Deployments in the history, by outcome.",
            &[("status", &outcome)],
            n as f64,
        );
    }
    out.text
}

/// CPU time of process `pid` (utime + stime, fields 14 and 15 of `/proc/<pid>/stat`).
pub(crate) fn cpu_seconds(proc_root: &Path, pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields start after its
    // last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// The text being written; each metric's `# HELP` and `# TYPE` come once, before its first
/// sample.
#[derive(Default)]
struct Out {
    text: String,
    described: std::collections::BTreeSet<String>,
}

impl Out {
    fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, "gauge", help, labels, value);
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, "counter", help, labels, value);
    }

    fn sample(&mut self, name: &str, kind: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        if self.described.insert(name.to_string()) {
            let _ = writeln!(self.text, "# HELP {name} {help}");
            let _ = writeln!(self.text, "# TYPE {name} {kind}");
        }
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// Every number in `value` as a series named after its path: counters, except `connected`
    /// (a gauge of what is now).
    fn flatten(&mut self, prefix: &str, value: &serde_json::Value, what: &str) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    self.flatten(&format!("{prefix}_{}", snake(key)), v, what);
                }
            }
            serde_json::Value::Number(n) => {
                let Some(n) = n.as_f64() else { return };
                if prefix.ends_with("_connected") {
                    self.gauge(prefix, &format!("Now, in {what}."), &[], n);
                } else {
                    let name = format!("{prefix}_total");
                    self.counter(&name, &format!("Since the start, in {what}."), &[], n);
                }
            }
            _ => {}
        }
    }
}

/// `refusedNotAuthorized` → `refused_not_authorized`.
fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A label value: backslash, double quote and newline escaped, as the format says.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The runtime's metrics now, or why the supervisor did not answer.
async fn exposition(state: &ControlState) -> Result<String, String> {
    let status = state.status().await?;
    let history = state
        .deployer
        .as_ref()
        .and_then(|d| d.history().ok())
        .unwrap_or_default();
    Ok(render(&status, &history, Path::new("/proc")))
}

/// Publishes the metrics through `publish` every `every` until the process ends (the first
/// after one interval).
pub fn publish_every(every: Duration, state: ControlState, publish: impl Fn(String) + 'static) {
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            match exposition(&state).await {
                Ok(text) => publish(text),
                Err(e) => tracing::warn!("metrics: no status to publish: {e}"),
            }
        }
    });
}

/// Serves `GET /metrics` on `address` until the process ends; the listener is bound before
/// this returns, so a bad address is an error at start.
pub async fn serve(address: SocketAddr, state: ControlState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    actix_rt::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let state = state.clone();
                    actix_rt::spawn(async move {
                        let _ = answer(stream, &state).await;
                    });
                }
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

/// Reads one request and answers it.
async fn answer(mut stream: tokio::net::TcpStream, state: &ControlState) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => match exposition(state).await {
            Ok(text) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
            Err(e) => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            ),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "only /metrics is served here\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_snake_case_and_labels_are_escaped() {
        assert_eq!(snake("refusedNotAuthorized"), "refused_not_authorized");
        assert_eq!(snake("connected"), "connected");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn numbers_are_flattened_with_help_and_type_once() {
        let mut out = Out::default();
        let value = serde_json::json!({
            "connected": 2,
            "connections": { "accepted": 9, "refusedMaxConnections": 1 },
        });
        out.flatten("evergreen_mqtt", &value, "the local MQTT server");
        out.counter("evergreen_x_total", "x", &[("a", "1")], 1.0);
        out.counter("evergreen_x_total", "x", &[("a", "2")], 2.0);
        let text = out.text;
        assert!(
            text.contains("# TYPE evergreen_mqtt_connected gauge\nevergreen_mqtt_connected 2\n"),
            "{text}"
        );
        assert!(
            text.contains("evergreen_mqtt_connections_accepted_total 9\n"),
            "{text}"
        );
        assert!(
            text.contains("evergreen_mqtt_connections_refused_max_connections_total 1\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE evergreen_x_total counter").count(),
            1,
            "{text}"
        );
        assert!(text.contains("evergreen_x_total{a=\"2\"} 2\n"), "{text}");
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("42")).expect("dir");
        // utime 150, stime 50 ticks (fields 14, 15).
        std::fs::write(
            dir.path().join("42/stat"),
            "42 (a (weird) name) S 1 42 42 0 -1 4194304 100 0 0 0 150 50 0 0 20 0 1 0 1 0 0",
        )
        .expect("stat");
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .expect("sysconf")
            .expect("CLK_TCK") as f64;
        assert_eq!(cpu_seconds(dir.path(), 42), Some(200.0 / ticks));
        assert_eq!(cpu_seconds(dir.path(), 43), None);
    }
}
