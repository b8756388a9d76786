//! A real mosquitto for tests: plain TCP on a loopback port, anonymous clients, its state in a
//! directory the test owns; and `mosquitto_pub`/`mosquitto_sub` as an operator would run them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_for;

/// A running mosquitto; killed when dropped. It publishes its `$SYS` counters every second
/// (`$SYS/broker/bytes/sent`, …), which benches read.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    bin: std::path::PathBuf,
    conf: std::path::PathBuf,
}

impl Mosquitto {
    /// Starts `bin` on `port` with persistence in `dir` (retained messages survive its restart).
    pub fn start(bin: &Path, dir: &Path, port: u16) -> Mosquitto {
        Mosquitto::with_config(
            bin,
            dir,
            port,
            &format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
    }

    /// Starts `bin` with configuration `conf` (its listeners, TLS files…); `port` is one of its
    /// listeners, and state is kept in `dir`.
    pub fn with_config(bin: &Path, dir: &Path, port: u16, conf: &str) -> Mosquitto {
        let path = dir.join("mosquitto.conf");
        std::fs::write(
            &path,
            format!(
                "user root\npersistence true\npersistence_location {}/\nsys_interval 1\n{conf}",
                dir.display()
            ),
        )
        .expect("write mosquitto.conf");
        let child = spawn(bin, &path, port);
        Mosquitto {
            child,
            port,
            bin: bin.to_path_buf(),
            conf: path,
        }
    }

    /// Stops it cleanly (SIGTERM: it saves its sessions and retained messages), bounded.
    pub fn stop(mut self) {
        self.terminate();
    }

    /// Stops it cleanly, then starts it again on the same port after `down`.
    pub fn restart(&mut self, down: Duration) {
        self.terminate();
        std::thread::sleep(down);
        self.child = spawn(&self.bin, &self.conf, self.port);
    }

    fn terminate(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0)),
            nix::sys::signal::Signal::SIGTERM,
        );
        let exited = wait_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        if exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Publishes `payload` on `topic` with `mosquitto_pub` (QoS 1; `retain` as asked).
    pub fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", "1", "-t", topic, "-s"]);
        if retain {
            cmd.arg("-r");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("mosquitto_pub");
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(payload).expect("payload to mosquitto_pub");
        }
        let status = child.wait().expect("mosquitto_pub ends");
        assert!(status.success(), "mosquitto_pub to {topic} failed");
    }

    /// The retained message on `topic`, if one is there (`mosquitto_sub`, 2 s at most).
    pub fn retained(&self, topic: &str) -> Option<Vec<u8>> {
        let out = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", topic, "-C", "1", "-W", "2", "--retained-only"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let mut payload = out.stdout;
        // mosquitto_sub ends each message with a newline.
        if payload.last() == Some(&b'\n') {
            payload.pop();
        }
        (!payload.is_empty()).then_some(payload)
    }
}

fn spawn(bin: &Path, conf: &Path, port: u16) -> Child {
    let child = Command::new(bin)
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "mosquitto did not listen on {port}");
    child
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
