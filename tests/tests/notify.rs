//! End-to-end: systemd notifications (`Type=notify`): READY once the group
//! is deployed, WATCHDOG keep-alives at half of `WATCHDOG_USEC`, STOPPING on
//! SIGTERM. The test plays systemd's part with a datagram socket.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use evergreen_tests::*;
use nix::sys::signal::Signal;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(20);

/// Collects notifications until `done` says enough or the deadline passes.
fn collect(socket: &UnixDatagram, got: &mut Vec<String>, done: impl Fn(&[String]) -> bool) -> bool {
    let deadline = Instant::now() + LIMIT;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if done(got) {
            return true;
        }
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    done(got)
}

#[test]
fn ready_watchdog_and_stopping_reach_the_service_manager() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut rt = Runtime::start_with_env(
        &group(vec![function("a", "record /dev/null")], vec![]),
        &json!({}),
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            ("WATCHDOG_USEC", std::ffi::OsStr::new("200000")),
        ],
    );
    let mut got = Vec::new();
    let ready = collect(&socket, &mut got, |g| {
        g.iter().any(|m| m.starts_with("READY=1"))
    });
    assert!(ready, "READY=1 after deployment: {got:?}");
    assert!(
        got.iter()
            .any(|m| m.contains("STATUS=running 1 components")),
        "{got:?}"
    );
    let pings = collect(&socket, &mut got, |g| {
        g.iter().filter(|m| m.as_str() == "WATCHDOG=1").count() >= 3
    });
    assert!(pings, "WATCHDOG=1 every 100 ms: {got:?}");
    let status = rt.stop_with(Signal::SIGTERM, LIMIT).expect("stops");
    assert!(status.success());
    let stopping = collect(&socket, &mut got, |g| g.iter().any(|m| m == "STOPPING=1"));
    assert!(stopping, "STOPPING=1 on SIGTERM: {got:?}");
}
