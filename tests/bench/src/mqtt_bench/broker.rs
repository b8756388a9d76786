//! The three brokers `eg-mqtt-bench` compares, started fresh for each section on loopback ports
//! nobody holds: Evergreen (`evergreen run` with a group that authorizes exactly the section's
//! devices and routes, its plain listener on port 0), Debian's mosquitto and rumqttd (found as
//! a program, never built by this workspace). Each is stopped when its [`Broker`] is dropped.
//! It owns those processes and their configuration files, and never touches a process it did
//! not start.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evergreen_tests::{free_port, group, sub, wait_for, Runtime};
use serde_json::{json, Value};

use crate::mqtt::Version;

/// The rumqttd release the bench was checked with (it builds with this repository's toolchain).
pub const RUMQTTD_VERSION: &str = "0.20.0";

/// Devices a group may have (Greengrass V1's limit, checked by `supervisor/group`'s
/// validation): Evergreen accepts no more client ids than that, so no more connections.
pub const EVERGREEN_MAX_DEVICES: usize = 2500;

/// How long a broker may take to listen, and to stop before it is killed.
const LIMIT: Duration = Duration::from_secs(20);

/// Which broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Evergreen,
    Mosquitto,
    Rumqttd,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Evergreen => "evergreen",
            Kind::Mosquitto => "mosquitto",
            Kind::Rumqttd => "rumqttd",
        }
    }
}

/// What a section needs from a broker. Evergreen authorizes by its group, so the devices and
/// who may reach whom become its group; mosquitto and rumqttd let any client publish anything.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Client ids (Evergreen: thing names).
    pub devices: Vec<String>,
    /// `(source device, topic, target device)`.
    pub routes: Vec<(String, String, String)>,
    /// Connections the section opens at once, so no broker refuses them at a default limit.
    pub max_connections: usize,
}

/// The programs of the brokers besides Evergreen, `None` where one is missing.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    pub mosquitto: Option<PathBuf>,
    pub rumqttd: Option<PathBuf>,
}

/// `name` on `PATH` or in `/usr/sbin` (where Debian puts mosquitto).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// How to get rumqttd, for the note shown when it is missing. Without `--locked`: the lock file
/// published with 0.20.0 pins metrics 0.22.1, which newer compilers reject (E0521, checked with
/// rustc 1.95); the newest compatible releases of its dependencies build.
pub fn rumqttd_hint() -> String {
    format!(
        "install it with `cargo install rumqttd --version {RUMQTTD_VERSION}` (add `--root DIR` \
         to keep it out of ~/.cargo/bin, then pass --rumqttd DIR/bin/rumqttd); it is not part \
         of the workspace so that building and testing the workspace does not compile it"
    )
}

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thing/{name}")
}

/// Evergreen's group for `plan`: one device per client id, one subscription per route. System
/// logs at INFO, as a production group would have them (the tests' group logs at DEBUG).
fn evergreen_group(plan: &Plan) -> Value {
    let subs = plan
        .routes
        .iter()
        .enumerate()
        .map(|(i, (src, topic, dst))| {
            sub(&format!("r{i}"), &thing_arn(src), topic, &thing_arn(dst))
        })
        .collect();
    let mut g = group(vec![], subs);
    let devices: Vec<Value> = plan
        .devices
        .iter()
        .map(|d| json!({ "Id": d, "ThingArn": thing_arn(d), "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/abc123" }))
        .collect();
    g["DeviceDefinitionVersion"] = json!({ "Devices": devices });
    g["LoggerDefinitionVersion"] = json!({ "Loggers": [
        { "Id": "sys", "Component": "GreengrassSystem", "Level": "INFO", "Type": "FileSystem", "Space": 16384 },
        { "Id": "user", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": 4096 }
    ]});
    g
}

/// rumqttd's configuration: its sample's router and connection settings, a v4 (3.1.1) and a v5
/// listener on the given loopback ports, no console, metrics or websocket listeners (they
/// would take fixed ports). `next_connection_delay_ms = 0`: the sample's 1 ms between accepts
/// would only slow the 10,000-connection setup.
pub fn rumqttd_config(v4: u16, v5: u16, max_connections: usize) -> String {
    format!(
        r#"id = 0

[router]
id = 0
max_connections = {max_connections}
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{v4}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true

[v5.1]
name = "v5-1"
listen = "127.0.0.1:{v5}"
next_connection_delay_ms = 0
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
"#
    )
}

enum Process {
    Evergreen(Box<Runtime>),
    Child(Child),
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Process::Evergreen(rt) => write!(f, "evergreen pid {}", rt.pid()),
            Process::Child(c) => write!(f, "pid {}", c.id()),
        }
    }
}

/// A running broker.
#[derive(Debug)]
pub struct Broker {
    pub kind: Kind,
    v3: SocketAddr,
    v5: SocketAddr,
    pid: i32,
    process: Process,
    /// The temporary directory of its configuration and log (mosquitto, rumqttd).
    _dir: Option<tempfile::TempDir>,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until every address in `addrs` accepts a connection, or the child has exited.
fn wait_listening(child: &mut Child, addrs: &[SocketAddr], name: &str) -> Result<(), String> {
    let up = wait_for(LIMIT, || {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(Err(format!("{name} exited at start: {status}")));
        }
        addrs
            .iter()
            .all(|a| TcpStream::connect(a).is_ok())
            .then_some(Ok(()))
    });
    match up {
        Some(r) => r,
        None => Err(format!(
            "{name} did not listen on {addrs:?} within {LIMIT:?}"
        )),
    }
}

fn spawn(program: &Path, args: &[&Path], dir: &Path, name: &str) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))
        .map_err(|e| format!("cannot create {name}.log: {e}"))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("cannot open {name}.log twice: {e}"))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))
}

impl Broker {
    /// Starts `kind` for `plan`; `Err` says why it is not listening.
    pub fn start(kind: Kind, plan: &Plan, programs: &Programs) -> Result<Broker, String> {
        match kind {
            Kind::Evergreen => Broker::evergreen(plan),
            Kind::Mosquitto => {
                let bin = programs
                    .mosquitto
                    .as_deref()
                    .ok_or("mosquitto is not installed (Debian mosquitto)")?;
                Broker::mosquitto(bin)
            }
            Kind::Rumqttd => {
                let bin = programs.rumqttd.as_deref().ok_or_else(rumqttd_hint)?;
                Broker::rumqttd(bin, plan)
            }
        }
    }

    fn evergreen(plan: &Plan) -> Result<Broker, String> {
        // Every bench connection comes from 127.0.0.1: the per-address bound must allow them
        // all, and the burst sections' closed connections too, which count until the server
        // has routed what they sent (a limit of 84 refused the 10th connection of 10 bursting
        // publishers). The bench is not about admission limits: 4,096 above the section's.
        let max = plan.max_connections + 4096;
        let patch = crate::with_free_ports(&json!({ "evergreen": {
            "listeners": { "mqttPlain": { "enabled": true, "port": 0 } },
            "mqttLimits": { "maxConnections": max, "maxConnectionsPerIp": max }
        }}))?;
        let rt = Runtime::start_config(&evergreen_group(plan), &patch, &[]);
        let file = rt.dir.path().join("root/run/mqtt-listeners.json");
        let mut rt = Box::new(rt);
        let addr = wait_for(LIMIT, || {
            if let Ok(Some(status)) = rt.child.try_wait() {
                return Some(Err(format!(
                    "`evergreen run` exited at start ({status}); its standard error above says why"
                )));
            }
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
            doc["plain"].as_str()?.parse::<SocketAddr>().ok().map(Ok)
        })
        .unwrap_or_else(|| {
            Err(format!(
                "Evergreen's plain MQTT listener did not come up within {LIMIT:?} (log: {})",
                rt.log_path("system/runtime.log").display()
            ))
        })?;
        Ok(Broker {
            kind: Kind::Evergreen,
            v3: addr,
            v5: addr,
            pid: rt.pid(),
            process: Process::Evergreen(rt),
            _dir: None,
        })
    }

    fn mosquitto(bin: &Path) -> Result<Broker, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot create a directory: {e}"))?;
        // mosquitto takes no port 0: a port free a moment ago (another process may take it
        // meanwhile; then the start fails and says so). Defaults otherwise, as packaged, but
        // for `set_tcp_nodelay`: without it, a PUBACK that ends a burst waits for the client's
        // delayed ACK (40 ms; QoS 1 bursts ran at 2,400 msg/s), a cost of the setting rather
        // than of the broker. Evergreen (ntex) sets TCP_NODELAY itself; rumqttd 0.20 does not
        // and has no setting for it.
        let port = free_port().ok_or("no free loopback port")?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n"),
        )
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let mut child = spawn(bin, &[Path::new("-c"), &conf], dir.path(), "mosquitto")?;
        wait_listening(&mut child, &[loopback(port)], "mosquitto")?;
        Ok(Broker {
            kind: Kind::Mosquitto,
            v3: loopback(port),
            v5: loopback(port),
            pid: pid_of(&child),
            process: Process::Child(child),
            _dir: Some(dir),
        })
    }

    fn rumqttd(bin: &Path, plan: &Plan) -> Result<Broker, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot create a directory: {e}"))?;
        let (v4, v5) = (
            free_port().ok_or("no free loopback port")?,
            free_port().ok_or("no free loopback port")?,
        );
        if v4 == v5 {
            return Err("the same free port came back twice; run again".into());
        }
        let conf = dir.path().join("rumqttd.toml");
        std::fs::write(
            &conf,
            rumqttd_config(v4, v5, plan.max_connections.max(16) + 64),
        )
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let mut child = spawn(
            bin,
            &[Path::new("--quiet"), Path::new("-c"), &conf],
            dir.path(),
            "rumqttd",
        )?;
        wait_listening(&mut child, &[loopback(v4), loopback(v5)], "rumqttd")?;
        Ok(Broker {
            kind: Kind::Rumqttd,
            v3: loopback(v4),
            v5: loopback(v5),
            pid: pid_of(&child),
            process: Process::Child(child),
            _dir: Some(dir),
        })
    }

    /// Where a client of `version` connects (rumqttd has a listener per protocol level).
    pub fn addr(&self, version: Version) -> SocketAddr {
        match version {
            Version::V3 => self.v3,
            Version::V5 => self.v5,
        }
    }

    /// The broker's process (CPU and RSS are read for it and its descendants).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Evergreen's MQTT counters and warnings from its log (empty for the others).
    pub fn log_lines(&self) -> Vec<String> {
        let Process::Evergreen(rt) = &self.process else {
            return Vec::new();
        };
        std::fs::read_to_string(rt.log_path("system/runtime.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("MQTT") || l.contains("WARN"))
            .map(str::to_string)
            .collect()
    }
}

fn pid_of(child: &Child) -> i32 {
    i32::try_from(child.id()).unwrap_or(i32::MAX)
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Evergreen's Runtime stops itself (SIGTERM, then SIGKILL) when dropped.
        if let Process::Child(child) = &mut self.process {
            let pid = nix::unistd::Pid::from_raw(pid_of(child));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if wait_for(LIMIT, || child.try_wait().ok().flatten()).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_authorizes_exactly_the_plan() {
        let plan = Plan {
            devices: vec!["pub-0".into(), "sub-0".into()],
            routes: vec![("pub-0".into(), "bench/0".into(), "sub-0".into())],
            max_connections: 2,
        };
        let g = evergreen_group(&plan);
        let devices = g["DeviceDefinitionVersion"]["Devices"]
            .as_array()
            .expect("devices");
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1]["ThingArn"], thing_arn("sub-0"));
        let subs = g["SubscriptionDefinitionVersion"]["Subscriptions"]
            .as_array()
            .expect("subscriptions");
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0]["Source"], thing_arn("pub-0"));
        assert_eq!(subs[0]["Subject"], "bench/0");
        assert_eq!(subs[0]["Target"], thing_arn("sub-0"));
    }

    #[test]
    fn rumqttd_listens_only_where_told() {
        let conf = rumqttd_config(40001, 40002, 10_064);
        assert!(conf.contains("listen = \"127.0.0.1:40001\""));
        assert!(conf.contains("listen = \"127.0.0.1:40002\""));
        assert!(conf.contains("max_connections = 10064"));
        // Nothing else that binds (the sample's console, prometheus and websocket listeners).
        assert_eq!(conf.matches("listen").count(), 2);
    }
}
