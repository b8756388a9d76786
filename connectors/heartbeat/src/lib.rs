//! The `Heartbeat` connector: a periodic health message from the core device.
//!
//! Not a Greengrass connector: Evergreen ships it so that a fresh install
//! shows messages flowing (the embedded default group routes it to
//! `MessageLog`). Every `IntervalSeconds` it publishes, on
//! `evergreen/heartbeat`, a JSON document read from `/proc`:
//! `{"seq":1,"core":"<thing>","timestamp_ms":…,"uptime_s":…,"loadavg":[1m,5m,15m],"mem_available_kb":…}`.
//! Values it cannot read are `null`; it never fails because `/proc` looks odd.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evergreen_connector_kit::manifest;
use evergreen_connector_kit::{Notes, Params};
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Event, SdkError};
use evergreen_ipc::ComponentConfig;
use serde_json::json;

/// The topic every heartbeat is published on.
pub const TOPIC: &str = "evergreen/heartbeat";

const INTERVAL: &str = "IntervalSeconds";
const PROC_PATH: &str = "ProcPath";

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "Heartbeat",
    versions: &[1],
    description: "Publishes the core's uptime, load average and available memory every IntervalSeconds on evergreen/heartbeat.",
    parameters: &[
        ParameterSpec::new(INTERVAL, "Seconds between heartbeats (1-86400).")
            .pattern("^([1-9][0-9]{0,3}|[1-7][0-9]{4}|8[0-5][0-9]{3}|86[0-3][0-9]{2}|86400)$")
            .default_value("5"),
        ParameterSpec::new(PROC_PATH, "Where /proc is mounted (tests point it elsewhere).").default_value("/proc"),
    ],
    inputs: &[],
    outputs: &[TOPIC],
    // Container mode arrives with the container issue; until then the
    // connector only claims what it can be run in.
    isolation: manifest::NO_CONTAINER_ONLY,
    pinned: true,
    aws: false,
};

/// What the connector runs with, from its `ComponentConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Seconds between heartbeats; 5 when the parameter is missing or 0.
    pub interval: u64,
    pub proc_path: PathBuf,
    pub core: String,
}

impl Settings {
    /// The settings; the manifest's pattern already refused bad values, so
    /// a fallback needs no note.
    pub fn from_config(config: &ComponentConfig) -> (Settings, Notes) {
        let p = Params::new(config);
        let interval = p
            .raw(INTERVAL)
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .unwrap_or(5);
        let proc_path = PathBuf::from(p.raw(PROC_PATH).unwrap_or("/proc"));
        p.finish(Settings {
            interval,
            proc_path,
            core: config.core_thing_name.clone(),
        })
    }
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) = Component::start(Settings::from_config).await?;
    let Settings {
        interval,
        proc_path,
        core,
    } = settings;
    handle.info(format!("publishing on {TOPIC} every {interval} s"));
    let mut ticker = tokio::time::interval(Duration::from_secs(interval));
    let mut seq: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                seq += 1;
                let doc = sample(&proc_path, &core, seq);
                handle.publish(TOPIC, doc.to_string().into_bytes()).await?;
            }
            event = component.next_event() => match event {
                None | Some(Event::Shutdown { .. }) => break,
                // Only a component that serves a function name gets invokes.
                Some(Event::Invoke(_)) => {}
                Some(Event::Refused { topic, reason }) => handle.warn(format!("publish on {topic} refused: {reason}")),
                // No input topics: validation keeps subscriptions from
                // targeting us, so a delivery here is only logged.
                Some(Event::Message(m)) => handle.warn(format!("unexpected message on {}", m.topic)),
            }
        }
    }
    handle.info("stopping");
    Ok(())
}

/// Builds one heartbeat document.
pub fn sample(proc_path: &Path, core: &str, seq: u64) -> serde_json::Value {
    let read = |name: &str| std::fs::read_to_string(proc_path.join(name)).ok();
    let uptime = read("uptime").and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    let loadavg: Option<Vec<f64>> = read("loadavg").and_then(|s| {
        let v: Vec<f64> = s
            .split_whitespace()
            .take(3)
            .filter_map(|x| x.parse().ok())
            .collect();
        (v.len() == 3).then_some(v)
    });
    let mem_available = read("meminfo").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
    });
    let timestamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    json!({
        "seq": seq,
        "core": core,
        "timestamp_ms": timestamp_ms,
        "uptime_s": uptime,
        "loadavg": loadavg,
        "mem_available_kb": mem_available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_reads_a_fake_proc_and_tolerates_garbage() {
        let dir = std::env::temp_dir().join(format!("eg-hb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        std::fs::write(dir.join("uptime"), "123.45 99.0\n").expect("write");
        std::fs::write(dir.join("loadavg"), "0.10 0.20 0.30 1/100 42\n").expect("write");
        std::fs::write(
            dir.join("meminfo"),
            "MemTotal: 10 kB\nMemAvailable:    2048 kB\n",
        )
        .expect("write");
        let doc = sample(&dir, "core", 7);
        assert_eq!(doc["seq"], 7);
        assert_eq!(doc["uptime_s"], 123.45);
        assert_eq!(doc["loadavg"], json!([0.1, 0.2, 0.3]));
        assert_eq!(doc["mem_available_kb"], 2048);
        std::fs::write(dir.join("loadavg"), "garbage").expect("write");
        std::fs::remove_file(dir.join("meminfo")).expect("rm");
        let doc = sample(&dir, "core", 8);
        assert!(doc["loadavg"].is_null());
        assert!(doc["mem_available_kb"].is_null());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
