//! The runtime under test: `evergreen run` on one root, its group and configuration, started
//! again after each kill with the same files, asked for its status, and its log summarised at
//! the end. It never judges what it sees; the run does.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use evergreen_bench::bench_config;
use evergreen_tests::{group, merge, sub, wait_for};
use serde_json::{json, Value};

use crate::{DEVICE, TOPIC};

/// A (re)started runtime must name its listener within this.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Starts of the runtime tried in a row before the soak gives up on it.
const START_ATTEMPTS: usize = 3;

/// Rotated files looked for beside the runtime log (`x.log.1`, …): the runtime keeps
/// `evergreen_runtime::logs::ROTATED_FILES` (3); a missing one is skipped.
const ROTATED_LOGS: u32 = 9;

/// `evergreen run` on one root, started again after each kill with the same configuration.
pub(crate) struct Core {
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl Core {
    /// The runtime `bin` on the files `write_runtime_files` put in `dir`; not started yet.
    pub(crate) fn new(bin: PathBuf, dir: PathBuf) -> Core {
        Core {
            bin,
            dir,
            child: None,
        }
    }

    fn listeners_file(&self) -> PathBuf {
        self.dir.join("root/run/mqtt-listeners.json")
    }

    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join("root/var/log/system/runtime.log")
    }

    /// Starts the runtime and waits until it names its plain listener; how long that took.
    fn start(&mut self) -> Result<Duration, String> {
        // A killed runtime leaves its file behind: only a new one says this start is up.
        let _ = std::fs::remove_file(self.listeners_file());
        let started = Instant::now();
        let mut child = Command::new(&self.bin)
            .arg("run")
            .arg("--config")
            .arg(self.dir.join("config.json"))
            .arg("--group")
            .arg(self.dir.join("group.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A panic or a fatal start error belongs in the soak's log.
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let file = self.listeners_file();
        let up = wait_for(START_LIMIT, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(format!("the runtime exited at start: {status}")));
            }
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
            doc["plain"].as_str().map(|_| Ok(()))
        });
        match up {
            Some(Ok(())) => {
                self.child = Some(child);
                Ok(started.elapsed())
            }
            Some(Err(e)) => Err(e),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the runtime did not open its device listener within {START_LIMIT:?}"
                ))
            }
        }
    }

    /// `start`, tried [`START_ATTEMPTS`] times.
    pub(crate) fn start_retrying(&mut self) -> Result<Duration, String> {
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match self.start() {
                Ok(d) => return Ok(d),
                Err(e) => {
                    println!("  runtime start {attempt} of {START_ATTEMPTS} failed: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Sends `sig` and waits (10 s) for the exit; SIGKILL after that.
    pub(crate) fn signal(&mut self, sig: nix::sys::signal::Signal) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, sig);
        let status = wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten());
        if status.is_none() {
            let _ = child.kill();
            return child.wait().ok();
        }
        status
    }

    /// `evergreen status --json` (10 s at most): what the runtime says of its cloud link.
    pub(crate) fn status(&self) -> Option<Value> {
        let mut child = Command::new(&self.bin)
            .arg("status")
            .arg("--json")
            .arg("--config")
            .arg(self.dir.join("config.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        if wait_for(Duration::from_secs(10), || child.try_wait().ok().flatten()).is_none() {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        let mut text = String::new();
        child.stdout.take()?.read_to_string(&mut text).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The runtime's exit status if it ended by itself.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }
}

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thing/{name}")
}

/// Writes the group and the configuration into `dir` (root `dir/root`).
pub(crate) fn write_runtime_files(
    dir: &Path,
    upstream: u16,
    device_port: u16,
) -> Result<(), String> {
    let mut g = group(
        vec![],
        vec![sub("soak-up", &thing_arn(DEVICE), TOPIC, "cloud")],
    );
    // INFO, not the tests' DEBUG, and room for an hour of kills and reconnects: the log is
    // where a defect the soak finds is explained.
    g["LoggerDefinitionVersion"] = json!({ "Loggers": [
        { "Id": "sys", "Component": "GreengrassSystem", "Level": "INFO", "Type": "FileSystem", "Space": 65536 },
        { "Id": "user", "Component": "Lambda", "Level": "INFO", "Type": "FileSystem", "Space": 4096 }
    ]});
    g["DeviceDefinitionVersion"] = json!({ "Devices": [{
        "Id": DEVICE,
        "ThingArn": thing_arn(DEVICE),
        "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/abc123",
    }]});
    let mut config = bench_config(&dir.join("root"))?;
    merge(
        &mut config,
        &json!({
            "coreThing": { "iotHost": "127.0.0.1", "iotMqttPort": upstream },
            // The bridge's reconnect backoff (from 1 s, doubling) capped at 1 s, so a broker
            // outage costs its own length, not a minute of backoff.
            "mqttMaxConnectionRetryInterval": 1,
            "evergreen": {
                "cloudTls": false,
                // 256 MB: the spool never overflows during a broker outage at the soak's rates,
                // which would be a counted loss by design, not a defect.
                "spooler": { "storageType": "FileSystem", "maxSizeBytes": 256u64 * 1024 * 1024 },
                // One port for the whole run, as a real device's broker address: a restarted
                // runtime must bind it again.
                "listeners": { "mqttPlain": { "enabled": true, "port": device_port } }
            }
        }),
    );
    let write = |name: &str, v: &Value| {
        std::fs::write(dir.join(name), v.to_string())
            .map_err(|e| format!("cannot write {name}: {e}"))
    };
    write("group.json", &g)?;
    write("config.json", &config)
}

/// Runtime log lines at WARN and ERROR in `log` and its rotated files, grouped with their
/// numbers blanked: what the runtime complained about during the soak, most frequent first.
pub(crate) fn log_summary(log: &Path) -> Vec<(usize, String)> {
    let mut text = String::new();
    for n in (1..=ROTATED_LOGS).rev() {
        let mut rotated = log.as_os_str().to_owned();
        rotated.push(format!(".{n}"));
        text.push_str(&std::fs::read_to_string(PathBuf::from(rotated)).unwrap_or_default());
    }
    text.push_str(&std::fs::read_to_string(log).unwrap_or_default());
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        let Some(level_at) = line.find("][WARN]").or_else(|| line.find("][ERROR]")) else {
            continue;
        };
        let rest = &line[level_at + 1..];
        let blanked: String = rest
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(150)
            .collect();
        *kinds.entry(blanked).or_default() += 1;
    }
    let mut out: Vec<(usize, String)> = kinds.into_iter().map(|(k, n)| (n, k)).collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out
}
