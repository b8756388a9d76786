//! The idle-devices scenario: N clients connect (MQTT 3.1.1, clean session, keep-alive longer
//! than the scenario) and stay connected without traffic; the broker's resident size before
//! and after gives its memory per idle connection. Connection times are measured on the way.
//! Every connection is the bench's own and closes when the scenario ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::broker::Broker;
use super::client::Conn;
use super::procfs::Proc;
use super::run::KEEP_ALIVE;
use crate::mqtt::Version;

/// Connections being set up at once: enough to finish 10,000 in seconds, few enough that no
/// broker's listen backlog overflows (a SYN retry would add a second to a connect time).
const CONNECTING: usize = 100;

/// Time for a broker to settle after the last CONNACK (allocators returning buffers of the
/// handshake) before its resident size is read.
const SETTLE: Duration = Duration::from_secs(2);

/// What the scenario measured.
#[derive(Debug, Default)]
pub struct Idle {
    pub wanted: usize,
    pub connected: usize,
    /// CONNECT → CONNACK (TCP connect included), µs, per connection.
    pub connect_us: Vec<u64>,
    /// From the first connect to the last CONNACK.
    pub secs: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// The first few failures (all of them counted in `wanted - connected`).
    pub errors: Vec<String>,
}

impl Idle {
    /// (RSS with N − RSS with 0) / N, in KiB.
    pub fn per_connection_kib(&self) -> Option<f64> {
        (self.connected > 0).then(|| {
            (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.connected as f64
        })
    }
}

/// Median of three reads 100 ms apart: one read can land in the middle of a burst of
/// allocation.
async fn steady_rss(proc: &Proc, pid: i32) -> u64 {
    let mut reads = Vec::with_capacity(3);
    for _ in 0..3 {
        reads.push(proc.rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reads.sort_unstable();
    reads[1]
}

/// Connects `ids` to `broker`, reads its resident size, and closes them again.
pub async fn run_idle(broker: &Broker, ids: &[String], limit: Duration) -> Idle {
    let proc = Proc::default();
    let pid = broker.pid();
    let addr = broker.addr(Version::V3);
    tokio::time::sleep(SETTLE).await;
    let mut out = Idle {
        wanted: ids.len(),
        rss_before_kib: steady_rss(&proc, pid).await,
        ..Idle::default()
    };
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let mut joining = Vec::with_capacity(ids.len());
    for id in ids {
        let (gate, id) = (gate.clone(), id.clone());
        joining.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let t = Instant::now();
            let conn = tokio::time::timeout_at(
                deadline,
                Conn::connect(addr, &id, Version::V3, KEEP_ALIVE),
            )
            .await;
            let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
            match conn {
                Ok(Ok(conn)) => Ok((conn, us)),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("{id}: no CONNACK within the scenario's {limit:?}")),
            }
        }));
    }
    let mut conns = Vec::with_capacity(ids.len());
    for j in joining {
        match j.await {
            Ok(Ok((conn, us))) => {
                conns.push(conn);
                out.connect_us.push(us);
            }
            Ok(Err(e)) if out.errors.len() < 3 => out.errors.push(e),
            Ok(Err(_)) => {}
            Err(e) => out.errors.push(format!("a connection's task failed: {e}")),
        }
    }
    out.secs = start.elapsed().as_secs_f64();
    out.connected = conns.len();
    tokio::time::sleep(SETTLE).await;
    out.rss_after_kib = steady_rss(&proc, pid).await;
    // Closed here, all at once; the broker is stopped after the section anyway.
    drop(conns);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_is_the_difference_over_the_count() {
        let idle = Idle {
            connected: 1000,
            rss_before_kib: 5000,
            rss_after_kib: 6000,
            ..Idle::default()
        };
        assert_eq!(idle.per_connection_kib(), Some(1.0));
        assert_eq!(Idle::default().per_connection_kib(), None);
    }
}
