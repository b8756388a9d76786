//! Debian's `mosquitto` as the benches' upstream "cloud" broker: started on a loopback port
//! with persistence in a directory of the bench's, so a persistent session (the cloud side's
//! subscriber) and its queued QoS 1 messages survive a clean stop and start. It owns the broker
//! process and nothing else: it never kills a process it did not start.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evergreen_tests::wait_for;

/// How long a start may take to listen, and a stop to finish its persistence save.
const LIMIT: Duration = Duration::from_secs(10);

/// A mosquitto on `127.0.0.1:<port>`, persisting into `dir`.
#[derive(Debug)]
pub struct Mosquitto {
    bin: PathBuf,
    conf: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    /// Writes the configuration into `dir` and starts the broker; `Err` says why it is not
    /// listening on `port` within 10 s. mosquitto takes no port 0: the caller picks a free one.
    pub fn start(bin: &Path, dir: &Path, port: u16) -> Result<Mosquitto, String> {
        let conf = dir.join("mosquitto.conf");
        // `user root`: as root (CI, this machine) mosquitto would otherwise drop to its own user,
        // which cannot write its persistence here. Queue and in-flight limits are lifted so the
        // broker is never where a bench's messages are dropped: an offline persistent session
        // keeps everything (the default 1000 would drop during a long outage of its client).
        // Its log (connections, persistence saves) stays beside its files for a kept run.
        std::fs::write(
            &conf,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\nmax_queued_messages 0\nmax_inflight_messages 0\nlog_dest file {dir}/mosquitto.log\n",
                dir = dir.display()
            ),
        )
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let mut broker = Mosquitto {
            bin: bin.to_path_buf(),
            conf,
            port,
            child: None,
        };
        broker.restart()?;
        Ok(broker)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the broker again with the same configuration and persistence (a no-op if it runs).
    pub fn restart(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let port = self.port;
        let up = wait_for(LIMIT, || {
            // A broker that exits (the port taken meanwhile) ends the wait at once.
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(format!("mosquitto exited at start: {status}")));
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| Ok(()))
        });
        match up {
            Some(Ok(())) => {
                self.child = Some(child);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "mosquitto did not listen on {port} within {LIMIT:?}"
                ))
            }
        }
    }

    /// Stops the broker cleanly (SIGTERM: it writes its persistence file on the way out);
    /// SIGKILL only if it has not exited within 10 s. Returns whether the stop was clean.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let clean = wait_for(LIMIT, || child.try_wait().ok().flatten())
            .is_some_and(|status| status.success());
        if !clean {
            let _ = child.kill();
            let _ = child.wait();
        }
        clean
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
