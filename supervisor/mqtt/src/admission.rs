//! Who may hold a connection to the local MQTT server, and for how long before it is trusted:
//! the total and per-IP connection limits, checked at accept before anything is read (a TLS
//! handshake costs CPU and memory, so it is not started for a peer over its limit), and the
//! CONNECT deadline of every admitted connection, which ends once the device's CONNECT was
//! accepted.
//!
//! It is protocol-free (the `server` module calls it with the peer's address) and never
//! reads or writes a socket. Refusals and expired deadlines are counted in the server's
//! [`Counters`]; a refusal is logged at most every [`LOG_EVERY`] with the number of others
//! since, so a flood of them cannot rotate the runtime log away.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::Counters;

/// The bounds on MQTT peers (`evergreen.mqttLimits`, mapped by the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLimits {
    /// Largest packet (remaining length) before the CONNECT is accepted.
    pub max_packet_bytes_before_connect: u32,
    /// Largest packet of a connected device.
    pub max_packet_bytes: u32,
    /// From accept (TLS handshake included) to an accepted CONNECT.
    pub connect_timeout: Duration,
    /// Connections open at once on both listeners.
    pub max_connections: u32,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: u32,
    /// A device's keep-alive is capped at this many seconds.
    pub max_keep_alive_secs: u16,
    /// Seconds a started packet may take (extended while it keeps arriving).
    pub read_timeout_secs: u16,
}

impl Default for PeerLimits {
    /// The configuration's defaults (`evergreen_config::MqttLimits`).
    fn default() -> Self {
        PeerLimits {
            max_packet_bytes_before_connect: 4096,
            max_packet_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_ip: 256,
            max_keep_alive_secs: 1200,
            read_timeout_secs: 30,
        }
    }
}

/// How often a refusal is logged at most.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Total,
    PerIp,
}

#[derive(Debug, Default)]
struct Inner {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
    /// The admitted connections whose CONNECT is not accepted yet, by peer address, each
    /// with the flag its deadline looks at.
    pending: HashMap<SocketAddr, Arc<AtomicBool>>,
    /// When a refusal was last logged, and how many were not logged since.
    last_log: Option<Instant>,
    unlogged: u64,
}

/// The connection limits and CONNECT deadlines of the server (both listeners).
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) limits: PeerLimits,
    inner: Mutex<Inner>,
    /// The server's counters (refusals and expired deadlines go there).
    pub(crate) counters: Arc<Counters>,
}

/// An admitted connection: holds its place in the counts until dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    peer: SocketAddr,
    connected: Arc<AtomicBool>,
}

impl Ticket {
    /// Whether the connection's CONNECT was accepted.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.admission.lock();
        inner.total = inner.total.saturating_sub(1);
        let ip = self.peer.ip().to_canonical();
        if let Some(n) = inner.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_ip.remove(&ip);
            }
        }
        if inner
            .pending
            .get(&self.peer)
            .is_some_and(|flag| Arc::ptr_eq(flag, &self.connected))
        {
            inner.pending.remove(&self.peer);
        }
    }
}

impl Admission {
    pub(crate) fn new(limits: PeerLimits, counters: Arc<Counters>) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            inner: Mutex::default(),
            counters,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection from `peer`, or says which limit it is over (counted, and
    /// logged at most every [`LOG_EVERY`]).
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Ticket, Refused> {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d; count it as itself.
        let ip = peer.ip().to_canonical();
        let mut inner = self.lock();
        let from_ip = inner.per_ip.get(&ip).copied().unwrap_or(0);
        let why = if inner.total >= self.limits.max_connections {
            Some(Refused::Total)
        } else if from_ip >= self.limits.max_connections_per_ip {
            Some(Refused::PerIp)
        } else {
            None
        };
        if let Some(why) = why {
            let counter = match why {
                Refused::Total => &self.counters.refused_max_connections,
                Refused::PerIp => &self.counters.refused_max_connections_per_ip,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            if inner
                .last_log
                .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
            {
                let others = std::mem::take(&mut inner.unlogged);
                inner.last_log = Some(now);
                let limit = match why {
                    Refused::Total => format!(
                        "{} connections are open (evergreen.mqttLimits.maxConnections)",
                        inner.total
                    ),
                    Refused::PerIp => format!(
                        "{from_ip} connections from {ip} are open (evergreen.mqttLimits.maxConnectionsPerIp)"
                    ),
                };
                if others > 0 {
                    tracing::warn!("MQTT: refused a connection from {peer}: {limit}; {others} more refused since the last message like this");
                } else {
                    tracing::warn!("MQTT: refused a connection from {peer}: {limit}");
                }
            } else {
                inner.unlogged += 1;
            }
            return Err(why);
        }
        inner.total += 1;
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        let connected = Arc::new(AtomicBool::new(false));
        inner.pending.insert(peer, connected.clone());
        Ok(Ticket {
            admission: self.clone(),
            peer,
            connected,
        })
    }

    /// The CONNECT of the connection from `peer` was accepted: its deadline no longer applies.
    pub(crate) fn connected(&self, peer: SocketAddr) {
        if let Some(flag) = self.lock().pending.remove(&peer) {
            flag.store(true, Ordering::Release);
        }
    }

    /// A connection's CONNECT deadline passed (it is being closed).
    pub(crate) fn expired(&self, peer: SocketAddr) {
        self.counters
            .connect_deadlines_expired
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            "MQTT: {peer} sent no CONNECT within {:?}; closed",
            self.limits.connect_timeout
        );
    }

    /// Open connections: in total, and from `ip`.
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> (u32, u32) {
        let inner = self.lock();
        (inner.total, inner.per_ip.get(&ip).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn limits(total: u32, per_ip: u32) -> PeerLimits {
        PeerLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..PeerLimits::default()
        }
    }

    #[test]
    fn the_connection_over_a_limit_is_refused_and_a_closed_one_frees_its_place() {
        let adm = Admission::new(limits(3, 2), Arc::default());
        let a1 = adm.admit(addr("10.0.0.1:1000")).expect("first");
        let a2 = adm.admit(addr("10.0.0.1:1001")).expect("second");
        assert_eq!(
            adm.admit(addr("10.0.0.1:1002")).map(|_| ()),
            Err(Refused::PerIp)
        );
        // The same IP as IPv4-mapped IPv6 is the same peer.
        assert_eq!(
            adm.admit(addr("[::ffff:10.0.0.1]:1003")).map(|_| ()),
            Err(Refused::PerIp)
        );
        let b1 = adm.admit(addr("10.0.0.2:1000")).expect("another IP");
        assert_eq!(
            adm.admit(addr("10.0.0.3:1000")).map(|_| ()),
            Err(Refused::Total)
        );
        let counted = adm.counters.snapshot(0);
        assert_eq!(counted.refused_max_connections_per_ip, 2);
        assert_eq!(counted.refused_max_connections, 1);
        drop(a1);
        let ip = addr("10.0.0.1:0").ip();
        assert_eq!(adm.open(ip), (2, 1));
        let a3 = adm.admit(addr("10.0.0.1:1004")).expect("room again");
        drop((a2, a3, b1));
        assert_eq!(adm.open(ip), (0, 0));
    }

    #[test]
    fn a_connect_clears_the_deadline_flag_of_that_peer_only() {
        let adm = Admission::new(PeerLimits::default(), Arc::default());
        let a = adm.admit(addr("127.0.0.1:5000")).expect("a");
        let b = adm.admit(addr("127.0.0.1:5001")).expect("b");
        adm.connected(addr("127.0.0.1:5000"));
        assert!(a.connected());
        assert!(!b.connected());
    }
}
