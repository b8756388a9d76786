//! End-to-end: the cloud bridge and its spool under the real runtime, with Debian's `mosquitto`
//! as the upstream "cloud" broker (plain TCP, `evergreen.cloudTls: false`) and
//! `mosquitto_pub`/`mosquitto_sub` as the cloud side. Test functions (`eg-fn publish` and
//! `record`) are the local side.
//!
//! The cloud-side subscriber uses a persistent session (`-c`, QoS 1) on a broker with
//! persistence, so what the bridge delivers while it is not attached is queued by the broker
//! and read afterwards: no test depends on who connects first.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
const SUBSCRIBER_ID: &str = "cloud-side";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "command -v {program} || test -x /usr/sbin/{program}"
        ))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `None` (and a loud note) when mosquitto is missing: `.ci/run` installs it.
fn require_mosquitto() -> Option<PathBuf> {
    if !(have("mosquitto") && have("mosquitto_pub") && have("mosquitto_sub")) {
        eprintln!(
            "SKIPPED: mosquitto / mosquitto-clients are not installed (apt-get install mosquitto mosquitto-clients; .ci/run does)"
        );
        return None;
    }
    Some(if Path::new("/usr/sbin/mosquitto").exists() {
        PathBuf::from("/usr/sbin/mosquitto")
    } else {
        PathBuf::from("mosquitto")
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A mosquitto on `port` that keeps persistent sessions in `dir` across its restarts.
struct Broker {
    child: Child,
}

impl Broker {
    fn start(bin: &Path, dir: &Path, port: u16) -> Broker {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nmax_queued_messages 100000\n",
                dir.display()
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let up = wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "mosquitto did not listen on {port}");
        Broker { child }
    }

    /// Stops it cleanly (SIGTERM), so it saves its sessions.
    fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGTERM,
        );
        let done = wait_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        if done.is_none() {
            kill(&mut self.child);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// `mosquitto_sub` with a persistent QoS 1 session, writing `topic payload` lines to a file.
struct Subscriber {
    child: Child,
    out: PathBuf,
}

impl Subscriber {
    fn start(port: u16, filter: &str, out: &Path) -> Subscriber {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .expect("subscriber output");
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", filter, "-q", "1", "-c", "-i", SUBSCRIBER_ID, "-v"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        Subscriber {
            child,
            out: out.to_path_buf(),
        }
    }

    /// Publishes probes on `topic` until the subscriber has one: it is subscribed.
    fn wait_subscribed(&self, port: u16, topic: &str) {
        let seen = wait_for(Duration::from_secs(10), || {
            cloud_publish(port, topic, "probe");
            std::thread::sleep(Duration::from_millis(100));
            self.lines()
                .iter()
                .any(|l| l.starts_with(topic))
                .then_some(())
        });
        assert!(seen.is_some(), "mosquitto_sub never received a probe");
    }

    fn lines(&self) -> Vec<String> {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.out) {
            let _ = f.read_to_string(&mut text);
        }
        text.lines().map(str::to_string).collect()
    }

    /// The payloads received on `topic`, in order.
    fn payloads(&self, topic: &str) -> Vec<String> {
        let prefix = format!("{topic} ");
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

fn cloud_publish(port: u16, topic: &str, payload: &str) {
    let _ = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", topic, "-m", payload, "-q", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Registers the cloud side's persistent subscription to `up/#`, then stops the broker.
fn register_cloud_side(bin: &Path, dir: &Path, port: u16) {
    let broker = Broker::start(bin, dir, port);
    let cloud = Subscriber::start(port, "up/#", &dir.join("probe.txt"));
    cloud.wait_subscribed(port, "up/probe");
    drop(cloud);
    broker.stop();
}

fn cloud_config(port: u16, storage: &str) -> Value {
    json!({
        "coreThing": { "iotHost": "127.0.0.1", "iotMqttPort": port },
        "mqttMaxConnectionRetryInterval": 1,
        "evergreen": {
            "cloudTls": false,
            "spooler": { "storageType": storage, "maxSizeBytes": 262_144 }
        }
    })
}

fn seqs(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("{{\"seq\":{i}}}")).collect()
}

fn system_log(rt: &Runtime) -> String {
    std::fs::read_to_string(rt.log_path("system/runtime.log")).unwrap_or_default()
}

fn published(rt: &Runtime, name: &str) -> bool {
    std::fs::read_to_string(rt.function_log(name))
        .unwrap_or_default()
        .contains("published")
}

#[test]
fn function_to_cloud_and_cloud_to_function() {
    let Some(bin) = require_mosquitto() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let broker = Broker::start(&bin, dir.path(), port);
    let cloud = Subscriber::start(port, "up/#", &dir.path().join("cloud.txt"));
    cloud.wait_subscribed(port, "up/probe");

    let rec = dir.path().join("rec.jsonl");
    let g = group(
        vec![
            function("pub", "publish up/data 5 20"),
            function("rec", &format!("record {}", rec.display())),
        ],
        vec![
            sub("to-cloud", &fn_arn("pub"), "up/#", "cloud"),
            sub("from-cloud", "cloud", "down/+/cmd", &fn_arn("rec")),
        ],
    );
    let rt = Runtime::start_config(&g, &cloud_config(port, "Memory"), &[]);

    let got = wait_for(LIMIT, || {
        let p = cloud.payloads("up/data");
        (p.len() >= 5).then_some(p)
    });
    assert_eq!(got, Some(seqs(5)), "function -> cloud, in order");

    // The bridge subscribes once connected; publish until the function has it.
    let delivered = wait_for(LIMIT, || {
        cloud_publish(port, "down/dev1/cmd", "{\"on\":true}");
        let r = records(&rec);
        (!r.is_empty()).then_some(r)
    })
    .expect("cloud -> function");
    assert_eq!(delivered[0]["topic"], "down/dev1/cmd");
    assert_eq!(delivered[0]["source"], "cloud");
    assert_eq!(delivered[0]["payload"], "{\"on\":true}");

    // Only the subjects of `cloud` subscriptions are subscribed upstream.
    cloud_publish(port, "down/dev1/other", "nope");
    cloud_publish(port, "down/dev1/cmd", "last");
    let last = wait_for(LIMIT, || {
        let r = records(&rec);
        r.iter().any(|v| v["payload"] == "last").then_some(r)
    })
    .expect("the last cloud message");
    assert!(
        last.iter().all(|v| v["topic"] == "down/dev1/cmd"),
        "{last:?}"
    );
    assert!(system_log(&rt).contains("cloud bridge connected"));
    drop(rt);
    drop(broker);
}

#[test]
fn broker_down_then_up_delivers_everything_spooled() {
    let Some(bin) = require_mosquitto() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    register_cloud_side(&bin, dir.path(), port);

    let g = group(
        vec![function("pub", "publish up/data 100 0")],
        vec![sub("to-cloud", &fn_arn("pub"), "up/#", "cloud")],
    );
    let rt = Runtime::start_config(&g, &cloud_config(port, "Memory"), &[]);
    assert!(wait_for(LIMIT, || published(&rt, "pub").then_some(())).is_some());
    // The bridge says how many wait at each failed connect.
    let spooled = wait_for(LIMIT, || {
        system_log(&rt)
            .contains("(100 messages spooled)")
            .then_some(())
    });
    assert!(spooled.is_some(), "{}", system_log(&rt));

    let _broker = Broker::start(&bin, dir.path(), port);
    let cloud = Subscriber::start(port, "up/#", &dir.path().join("cloud.txt"));
    let got = wait_for(LIMIT, || {
        let p = cloud.payloads("up/data");
        (p.len() >= 100).then_some(p)
    });
    assert_eq!(got, Some(seqs(100)), "every spooled message, in order");
    drop(rt);
}

#[test]
fn file_spool_survives_kill_9_while_the_broker_is_down() {
    let Some(bin) = require_mosquitto() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    register_cloud_side(&bin, dir.path(), port);

    let g = group(
        vec![function("pub", "publish up/data 300 0")],
        vec![sub("to-cloud", &fn_arn("pub"), "up/#", "cloud")],
    );
    let mut rt = Runtime::start_config(&g, &cloud_config(port, "FileSystem"), &[]);
    assert!(wait_for(LIMIT, || published(&rt, "pub").then_some(())).is_some());
    let spooled = wait_for(LIMIT, || {
        system_log(&rt)
            .contains("(300 messages spooled)")
            .then_some(())
    });
    assert!(spooled.is_some(), "{}", system_log(&rt));
    let status = rt.stop_with(Signal::SIGKILL, Duration::from_secs(5));
    assert!(status.is_some(), "the runtime did not die");

    // Restart on the same root with a group that publishes nothing more.
    let quiet = group(
        vec![function("idle", "record /dev/null")],
        vec![sub("to-cloud", &fn_arn("idle"), "up/#", "cloud")],
    );
    let group_path = rt.path("group-after.json");
    std::fs::write(&group_path, quiet.to_string()).expect("write group");
    let mut again = Command::new(evergreen_bin())
        .arg("run")
        .arg("--config")
        .arg(rt.path("config.json"))
        .arg("--group")
        .arg(&group_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("restart evergreen");
    let restored = wait_for(LIMIT, || {
        system_log(&rt).contains("300 messages (").then_some(())
    });

    let _broker = Broker::start(&bin, dir.path(), port);
    let cloud = Subscriber::start(port, "up/#", &dir.path().join("cloud.txt"));
    let got = wait_for(LIMIT, || {
        let p = cloud.payloads("up/data");
        (p.len() >= 300).then_some(p)
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(again.id() as i32),
        Signal::SIGTERM,
    );
    if wait_for(Duration::from_secs(10), || again.try_wait().ok().flatten()).is_none() {
        kill(&mut again);
    }
    assert!(
        restored.is_some(),
        "the restart did not find the spool: {}",
        system_log(&rt)
    );
    assert_eq!(got, Some(seqs(300)), "none lost, in order, no duplicates");
}

#[test]
fn tls_without_the_core_certificates_is_refused_at_start() {
    let g = group(vec![], vec![]);
    let mut rt = Runtime::start_config(
        &g,
        &json!({ "coreThing": { "iotHost": "127.0.0.1", "iotMqttPort": free_port() } }),
        &[],
    );
    let status = wait_for(LIMIT, || rt.child.try_wait().ok().flatten()).expect("exits");
    assert!(!status.success());
    let log = system_log(&rt);
    assert!(log.contains("coreThing.caPath is required"), "{log}");
}
