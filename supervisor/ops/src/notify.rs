//! systemd service notifications (the `sd_notify` protocol): readiness,
//! stopping, and watchdog keep-alives.
//!
//! Under systemd with `Type=notify`, `NOTIFY_SOCKET` names a datagram
//! socket (a path, or `@name` in the abstract namespace) to which the service
//! sends `READY=1` once it runs, `STOPPING=1` when it begins to stop, and,
//! when `WATCHDOG_USEC` is set, `WATCHDOG=1` at least that often. Outside
//! systemd nothing is set and every call is a no-op. This module only speaks
//! the protocol; [`crate::app`] decides when. It never fails the runtime:
//! a notification that cannot be sent is logged and dropped.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`'s value, or `None` when it is unset
    /// or empty (not running under a service manager that wants to hear).
    pub fn new(notify_socket: Option<&OsStr>) -> io::Result<Option<Notifier>> {
        let Some(target) = notify_socket.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let bytes = target.as_encoded_bytes();
        let addr = if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        } else {
            SocketAddr::from_pathname(target)?
        };
        Ok(Some(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
        }))
    }

    /// Sends one notification (`KEY=value` lines).
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
    }

    /// Sends, logging instead of failing: a lost notification must not stop
    /// the runtime (systemd will act on the missing one by itself).
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.send(state) {
            tracing::warn!("cannot notify the service manager ({state:?}): {e}");
        }
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as systemd
/// recommends, and only if `WATCHDOG_PID` is unset or names this process.
pub fn watchdog_interval(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = watchdog_pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let usec: u64 = watchdog_usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_and_only_for_us() {
        assert_eq!(
            watchdog_interval(Some("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("8"), 7),
            None,
            "another process's watchdog"
        );
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn notifications_reach_a_path_socket_and_unset_means_none() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::new(Some(path.as_os_str()))
            .expect("new")
            .expect("some");
        n.send("READY=1\nSTATUS=ok").expect("send");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=ok");
        assert!(Notifier::new(None).expect("none").is_none());
        assert!(Notifier::new(Some(OsStr::new("")))
            .expect("empty")
            .is_none());
    }

    #[test]
    fn abstract_socket_names_are_supported() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("evergreen-notify-test-{}", std::process::id());
        let listener = UnixDatagram::bind_addr(
            &SocketAddr::from_abstract_name(name.as_bytes()).expect("addr"),
        )
        .expect("bind");
        let n = Notifier::new(Some(OsStr::new(&format!("@{name}"))))
            .expect("new")
            .expect("some");
        n.send("WATCHDOG=1").expect("send");
        let mut buf = [0u8; 16];
        let len = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }
}
