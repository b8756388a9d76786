//! One source's task: owns the EtherNet/IP session with its endpoint, polls
//! each property group at its rate, and hands every poll's readings on as
//! one [`Batch`].
//!
//! **Quality**, exactly:
//! - `GOOD`: the device answered the tag's read and the value converted to
//!   `dstDataType` ([`convert`]).
//! - `BAD`, value `null`, one reading per tag per scheduled poll:
//!   - the device answered with a CIP error (no such tag or element, …) or
//!     a refusal, or a reply this connector cannot read: the reason is
//!     logged at WARN once, until that tag reads again;
//!   - the endpoint is down (refused, reset, closed, no answer within
//!     [`REQUEST_TIMEOUT`], a reply out of step): the session is dropped,
//!     the rest of that poll and each poll until a reconnect works are
//!     `BAD` at once, and reconnects wait a backoff doubling from 250 ms to
//!     10 s (WARN once per outage, INFO when back);
//!   - the value does not fit `dstDataType` (logged at DEBUG).
//!
//! `minimumInterRequestDuration` is the quiet time between the end of one
//! request and the start of the next. A poll that overruns its rate skips
//! the missed ticks rather than bursting.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use evergreen_connector_kit::Backoff;
use evergreen_connector_modbus_tcp::decode::Value;
use evergreen_connector_modbus_tcp::output::{Quality, Reading};
pub use evergreen_connector_modbus_tcp::source::{Batch, Log};
use evergreen_ipc::LogLevel;
use tokio::sync::mpsc;

use crate::cip::CipValue;
use crate::client::Client;
use crate::config::{DstType, Source};

pub const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may wait for its reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Counters a source keeps, for the log and the bench.
#[derive(Debug, Default)]
pub struct Stats {
    pub polls: AtomicU64,
    pub good: AtomicU64,
    pub bad: AtomicU64,
    pub connects: AtomicU64,
}

/// Converts a device value to `dst`; the error says why it cannot be.
pub fn convert(v: &CipValue, dst: DstType) -> Result<Value, String> {
    match (dst, v) {
        (DstType::String, CipValue::Text(s)) => Ok(Value::String(s.clone())),
        (DstType::String, CipValue::Bool(b)) => Ok(Value::String(b.to_string())),
        (DstType::String, CipValue::Int(i)) => Ok(Value::String(i.to_string())),
        (DstType::String, CipValue::UInt(u)) => Ok(Value::String(u.to_string())),
        (DstType::String, CipValue::Real(f)) => Ok(Value::String(f.to_string())),
        (DstType::Boolean, CipValue::Bool(b)) => Ok(Value::Boolean(*b)),
        (DstType::Boolean, CipValue::Int(i)) => Ok(Value::Boolean(*i != 0)),
        (DstType::Boolean, CipValue::UInt(u)) => Ok(Value::Boolean(*u != 0)),
        (DstType::Integer, CipValue::Bool(b)) => Ok(Value::Integer(i64::from(*b))),
        (DstType::Integer, CipValue::Int(i)) => Ok(Value::Integer(*i)),
        (DstType::Integer, CipValue::UInt(u)) => i64::try_from(*u)
            .map(Value::Integer)
            .map_err(|_| format!("{u} does not fit a 64-bit integer")),
        // Truncated toward zero, as a cast from REAL to DINT in a PLC would.
        (DstType::Integer, CipValue::Real(f)) if f.is_finite() && f.abs() < 9.2e18 => {
            Ok(Value::Integer(f.trunc() as i64))
        }
        (DstType::Double, CipValue::Bool(b)) => Ok(Value::Double(f64::from(u8::from(*b)))),
        (DstType::Double, CipValue::Int(i)) => Ok(Value::Double(*i as f64)),
        (DstType::Double, CipValue::UInt(u)) => Ok(Value::Double(*u as f64)),
        (DstType::Double, CipValue::Real(f)) if f.is_finite() => Ok(Value::Double(*f)),
        (dst, v) => Err(format!("a {} value {v:?} cannot be a {dst:?}", v.kind())),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The source's session and the state of its outage, if any.
pub struct Poller {
    source: Arc<Source>,
    log: Log,
    stats: Arc<Stats>,
    client: Option<Client>,
    backoff: Backoff,
    /// No reconnect before this.
    retry_at: Instant,
    /// Why the endpoint is down, while it is.
    down: Option<String>,
    /// Tags whose last read was a device error (logged once).
    failing: HashSet<String>,
    last_request_end: Option<Instant>,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("source", &self.source.name)
            .field("connected", &self.client.is_some())
            .field("down", &self.down)
            .finish()
    }
}

impl Poller {
    pub fn new(source: Arc<Source>, log: Log, stats: Arc<Stats>) -> Poller {
        Poller {
            source,
            log,
            stats,
            client: None,
            backoff: Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX),
            retry_at: Instant::now(),
            down: None,
            failing: HashSet::new(),
            last_request_end: None,
        }
    }

    /// Polls group `g` once: one reading per tag.
    pub async fn poll(&mut self, g: usize) -> Batch {
        let source = self.source.clone();
        let mut readings = Vec::new();
        if let Some(group) = source.groups.get(g) {
            for tag in &group.tags {
                let (value, timestamp_ms) = match self.read(&tag.path).await {
                    Ok(v) => {
                        let ts = now_ms();
                        if self.failing.remove(&tag.name) {
                            (self.log)(
                                LogLevel::Info,
                                format!("source {:?}: tag {:?} reads again", source.name, tag.name),
                            );
                        }
                        match convert(&v, tag.dst) {
                            Ok(v) => (Some(v), ts),
                            Err(why) => {
                                (self.log)(
                                    LogLevel::Debug,
                                    format!("source {:?}: tag {:?}: {why}", source.name, tag.name),
                                );
                                (None, ts)
                            }
                        }
                    }
                    Err(Some(why)) => {
                        if self.failing.insert(tag.name.clone()) {
                            (self.log)(
                                LogLevel::Warn,
                                format!(
                                    "source {:?}: tag {:?} is BAD: {why}",
                                    source.name, tag.name
                                ),
                            );
                        }
                        (None, now_ms())
                    }
                    Err(None) => (None, now_ms()),
                };
                let quality = if value.is_some() {
                    self.stats.good.fetch_add(1, Ordering::Relaxed);
                    Quality::Good
                } else {
                    self.stats.bad.fetch_add(1, Ordering::Relaxed);
                    Quality::Bad
                };
                readings.push(Reading {
                    alias: tag.alias.clone(),
                    name: tag.name.clone(),
                    value,
                    quality,
                    timestamp_ms,
                });
            }
        }
        self.stats.polls.fetch_add(1, Ordering::Relaxed);
        Batch {
            stream_name: source.destination.stream_name.clone(),
            readings,
        }
    }

    /// One tag's value; `Err(Some(reason))` for a device answer about the
    /// tag, `Err(None)` while the endpoint is down (logged per outage).
    async fn read(&mut self, path: &crate::cip::TagPath) -> Result<CipValue, Option<String>> {
        if self.client.as_ref().is_some_and(Client::is_spent) {
            // The device ended the session after answering: a fresh one at
            // once (this is not an outage).
            if let Some(c) = self.client.take() {
                c.close().await;
            }
            self.retry_at = Instant::now();
        }
        if self.client.is_none() {
            if Instant::now() < self.retry_at {
                return Err(None);
            }
            self.pace().await;
            let e = &self.source.endpoint;
            let result = Client::connect(&e.host, e.port, CONNECT_TIMEOUT)
                .await
                .map(|c| c.with_request_timeout(REQUEST_TIMEOUT));
            self.last_request_end = Some(Instant::now());
            match result {
                Ok(c) => {
                    self.stats.connects.fetch_add(1, Ordering::Relaxed);
                    self.client = Some(c);
                    self.backoff.reset();
                    if let Some(why) = self.down.take() {
                        (self.log)(
                            LogLevel::Info,
                            format!(
                                "source {:?}: {}:{} is reachable again (it failed: {why})",
                                self.source.name, e.host, e.port
                            ),
                        );
                    }
                }
                Err(err) => {
                    self.outage(err.to_string());
                    return Err(None);
                }
            }
        }
        self.pace().await;
        let Some(client) = self.client.as_mut() else {
            return Err(None);
        };
        let result = client.read_tag(path).await;
        self.last_request_end = Some(Instant::now());
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Some(e.to_string())),
            Err(e) => {
                self.client = None;
                self.outage(e.to_string());
                Err(None)
            }
        }
    }

    fn outage(&mut self, why: String) {
        let delay = self.backoff.next_delay();
        self.retry_at = Instant::now() + delay;
        if self.down.is_none() {
            let e = &self.source.endpoint;
            (self.log)(
                LogLevel::Warn,
                format!(
                    "source {:?}: {}:{} is unavailable ({why}); its tags are BAD until it answers, retrying",
                    self.source.name, e.host, e.port
                ),
            );
        }
        self.down = Some(why);
    }

    /// Waits out `minimumInterRequestDuration` since the last request.
    async fn pace(&self) {
        if let Some(end) = self.last_request_end {
            let at = end + self.source.min_inter_request;
            if at > Instant::now() {
                tokio::time::sleep_until(at.into()).await;
            }
        }
    }
}

/// Polls every group of the source at its rate until `out` closes.
pub async fn run_source(mut poller: Poller, out: mpsc::Sender<Batch>) {
    let start = tokio::time::Instant::now();
    let rates: Vec<Duration> = poller.source.groups.iter().map(|g| g.rate).collect();
    let mut due: Vec<tokio::time::Instant> = vec![start; rates.len()];
    loop {
        let Some((g, at)) = due.iter().copied().enumerate().min_by_key(|(_, at)| *at) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = out.closed() => return,
        }
        let batch = poller.poll(g).await;
        if out.send(batch).await.is_err() {
            return;
        }
        // Skip ticks a slow poll missed instead of bursting to catch up.
        let now = tokio::time::Instant::now();
        let mut next = at + rates[g];
        while next <= now {
            next += rates[g];
        }
        due[g] = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_to_each_destination_type_or_say_why_not() {
        use CipValue::*;
        assert_eq!(convert(&Real(2.5), DstType::Double), Ok(Value::Double(2.5)));
        assert_eq!(convert(&Int(-3), DstType::Double), Ok(Value::Double(-3.0)));
        assert_eq!(
            convert(&Real(-2.7), DstType::Integer),
            Ok(Value::Integer(-2))
        );
        assert_eq!(
            convert(&Bool(true), DstType::Integer),
            Ok(Value::Integer(1))
        );
        assert_eq!(
            convert(&Int(0), DstType::Boolean),
            Ok(Value::Boolean(false))
        );
        assert_eq!(
            convert(&Int(7), DstType::String),
            Ok(Value::String("7".into()))
        );
        assert_eq!(
            convert(&Text("x".into()), DstType::String),
            Ok(Value::String("x".into()))
        );
        assert!(convert(&UInt(u64::MAX), DstType::Integer).is_err());
        assert!(convert(&Real(f64::NAN), DstType::Double).is_err());
        assert!(convert(&Real(1e30), DstType::Integer).is_err());
        assert!(convert(&Text("1".into()), DstType::Double).is_err());
        assert!(convert(&Real(1.0), DstType::Boolean).is_err());
    }
}
