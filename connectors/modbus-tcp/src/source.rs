//! One source's task: owns the TCP connection to its endpoint, polls each
//! property group at its rate, runs adapter requests between polls, and
//! paces every request to the endpoint.
//!
//! Transport failures are kept apart from device answers. **Quality**, exactly:
//!
//! - `GOOD`: the tag's read answered and its value decoded and converted.
//! - `BAD`, value `null`, one reading per tag per scheduled poll, nothing
//!   dropped:
//!   - the device answered the tag's read with a Modbus exception (only the
//!     tags of that one request; the connection stays; logged at WARN once
//!     until the read works again);
//!   - the endpoint is down: connection refused or reset, no connection or
//!     no answer within 3 s, a short or mismatched answer. The connection is
//!     dropped, the rest of that poll and every poll until a reconnect
//!     succeeds are `BAD` at once (no waiting on a dead device), and
//!     reconnects are tried no sooner than a backoff that doubles from
//!     250 ms to 10 s (logged at WARN once per outage, INFO when back);
//!   - the value cannot be represented in `dstDataType`: a NaN or infinite
//!     float, an integer outside 64 bits, a float out of integer range
//!     (logged at DEBUG).
//!
//! `minimumInterRequestDuration` is the quiet time from the end of one
//! request (its answer or failure) to the start of the next on the same
//! endpoint, polls and adapter requests alike. A poll that overruns its
//! group's rate skips the missed ticks rather than bursting to catch up.
//! Nothing here panics on what a device sends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use evergreen_connector_kit::Backoff;

use evergreen_connector_modbus::exec::{execute_with_outcome, Outcome};
use evergreen_connector_modbus::request::Request;
use evergreen_connector_modbus::response::{Response, NO_RESPONSE_MESSAGE};
use evergreen_ipc::LogLevel;
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::slave::{Slave, SlaveContext};

use crate::config::{PropertyGroup, Source, Table};
use crate::decode::{decode_bit, decode_registers};
use crate::output::{Quality, Reading};
use crate::plan::{plan, Read};

/// First wait before reconnecting after a failure.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
/// Longest wait between reconnection attempts: a device that comes back is
/// read again within this time.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may wait for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a task's log lines go (the connector's log, or stderr in the bench).
pub type Log = Arc<dyn Fn(LogLevel, String) + Send + Sync>;

/// The readings of one poll of one property group.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The source's destination `streamName`.
    pub stream_name: String,
    pub readings: Vec<Reading>,
}

/// Counters a source keeps, for the log and the bench.
#[derive(Debug, Default)]
pub struct Stats {
    /// Modbus requests sent (polls and adapter requests).
    pub requests: AtomicU64,
    /// Readings produced, GOOD and BAD.
    pub readings: AtomicU64,
    /// Readings produced with quality BAD.
    pub bad: AtomicU64,
}

/// Spacing of reconnection attempts: doubles from [`BACKOFF_INITIAL`] to
/// [`BACKOFF_MAX`], back to the start after a successful connection.
pub fn backoff() -> Backoff {
    Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX)
}

/// What went wrong with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The endpoint is not connected (and the backoff says wait).
    Down(String),
    /// The device answered with a Modbus exception; the link is fine.
    Exception(String),
}

/// The connection to one endpoint and its pacing.
pub struct Link {
    source: Arc<Source>,
    ctx: Option<Context>,
    backoff: Backoff,
    /// End of the last request: the next may start `min_inter_request` later.
    last_end: Option<Instant>,
    /// Why the endpoint is down, while it is (logged once per outage).
    down: Option<String>,
    log: Log,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("source", &self.source.name)
            .field("connected", &self.ctx.is_some())
            .field("down", &self.down)
            .finish()
    }
}

impl Link {
    pub fn new(source: Arc<Source>, log: Log, stats: Arc<Stats>) -> Link {
        Link {
            source,
            ctx: None,
            backoff: backoff(),
            last_end: None,
            down: None,
            log,
            stats,
        }
    }

    fn endpoint(&self) -> String {
        format!(
            "{}:{}",
            self.source.endpoint.host, self.source.endpoint.port
        )
    }

    /// Marks the endpoint down: drops the connection, starts (or continues)
    /// the backoff, and logs the first failure of an outage.
    fn fail(&mut self, reason: String) {
        self.ctx = None;
        let wait = self.backoff.fail(Instant::now());
        if self.down.is_none() {
            (self.log)(
                LogLevel::Warn,
                format!(
                    "source {:?}: endpoint {} unreachable ({reason}); its readings are BAD until it answers; \
                     retrying in {} ms, backing off to {} s",
                    self.source.name,
                    self.endpoint(),
                    wait.as_millis(),
                    BACKOFF_MAX.as_secs()
                ),
            );
        }
        self.down = Some(reason);
    }

    /// The connected context, connecting first when the backoff allows.
    pub async fn connected(&mut self) -> Result<&mut Context, String> {
        if self.ctx.is_none() {
            if !self.backoff.ready(Instant::now()) {
                return Err(self
                    .down
                    .clone()
                    .unwrap_or_else(|| "not connected".to_string()));
            }
            let target = self.endpoint();
            let attempt = async {
                let mut last = String::from("no address");
                // (host, port) rather than "host:port", so an IPv6 literal works.
                let (host, port) = (
                    self.source.endpoint.host.as_str(),
                    self.source.endpoint.port,
                );
                for addr in tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| format!("cannot resolve {target}: {e}"))?
                {
                    match tokio::net::TcpStream::connect(addr).await {
                        Ok(stream) => {
                            // Requests are small frames each awaiting an
                            // answer: Nagle's algorithm would only delay them.
                            let _ = stream.set_nodelay(true);
                            return Ok(tokio_modbus::client::tcp::attach_slave(
                                stream,
                                Slave(self.source.endpoint.unit_id),
                            ));
                        }
                        Err(e) => last = format!("cannot connect to {addr}: {e}"),
                    }
                }
                Err(last)
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(Ok(ctx)) => {
                    self.backoff.reset();
                    if let Some(reason) = self.down.take() {
                        (self.log)(
                            LogLevel::Info,
                            format!(
                                "source {:?}: endpoint {} answers again (was: {reason})",
                                self.source.name,
                                self.endpoint()
                            ),
                        );
                    } else {
                        (self.log)(
                            LogLevel::Info,
                            format!(
                                "source {:?}: connected to {}",
                                self.source.name,
                                self.endpoint()
                            ),
                        );
                    }
                    self.ctx = Some(ctx);
                }
                Ok(Err(e)) => {
                    self.fail(e.clone());
                    return Err(e);
                }
                Err(_) => {
                    let e = format!("no connection within {} s", CONNECT_TIMEOUT.as_secs());
                    self.fail(e.clone());
                    return Err(e);
                }
            }
        }
        self.ctx.as_mut().ok_or_else(|| "not connected".to_string())
    }

    /// Waits until `minimumInterRequestDuration` has passed since the last
    /// request to this endpoint ended.
    pub async fn pace(&mut self) {
        // Takes `&mut self`: a shared borrow held across the sleep would
        // need the (non-`Sync`) Modbus context to be `Sync`.
        if let Some(end) = self.last_end {
            let until = end + self.source.min_inter_request;
            // A timer costs a trip through tokio's millisecond wheel even
            // when already due: skip it when there is nothing to wait for.
            if until > Instant::now() {
                sleep_until(until.into()).await;
            }
        }
    }

    /// Records the end of a request for pacing and counting.
    pub fn request_done(&mut self) {
        self.last_end = Some(Instant::now());
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports a transport failure seen by someone else using the context
    /// (the request/response path).
    pub fn transport_failed(&mut self, reason: String) {
        self.fail(reason);
    }

    /// One planned read: registers or bits, or why there are none.
    async fn read(&mut self, read: &Read) -> Result<Items, Failure> {
        let unit = self.source.endpoint.unit_id;
        self.connected().await.map_err(Failure::Down)?;
        self.pace().await;
        let ctx = self
            .ctx
            .as_mut()
            .ok_or_else(|| Failure::Down("not connected".into()))?;
        // The request/response path may have addressed another unit.
        ctx.set_slave(Slave(unit));
        let (start, count) = (read.start, read.count);
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            match read.table {
                Table::Coil => ctx
                    .read_coils(start, count)
                    .await
                    .map(|r| r.map(Items::Bits)),
                Table::DiscreteInput => ctx
                    .read_discrete_inputs(start, count)
                    .await
                    .map(|r| r.map(Items::Bits)),
                Table::InputRegister => ctx
                    .read_input_registers(start, count)
                    .await
                    .map(|r| r.map(Items::Registers)),
                Table::HoldingRegister => ctx
                    .read_holding_registers(start, count)
                    .await
                    .map(|r| r.map(Items::Registers)),
            }
        })
        .await;
        self.request_done();
        match result {
            Ok(Ok(Ok(items))) if items.len() >= usize::from(count) => Ok(items),
            Ok(Ok(Ok(items))) => {
                // A short answer is a broken device, not a value: treat the
                // link as unsynchronised.
                let e = format!("short response: {} of {count} items", items.len());
                self.fail(e.clone());
                Err(Failure::Down(e))
            }
            Ok(Ok(Err(exception))) => Err(Failure::Exception(format!(
                "Modbus exception {} ({exception})",
                u8::from(exception)
            ))),
            Ok(Err(e)) => {
                let e = format!("request failed: {e}");
                self.fail(e.clone());
                Err(Failure::Down(e))
            }
            Err(_) => {
                let e = format!("no response within {} s", REQUEST_TIMEOUT.as_secs());
                self.fail(e.clone());
                Err(Failure::Down(e))
            }
        }
    }
}

enum Items {
    Registers(Vec<u16>),
    Bits(Vec<bool>),
}

impl Items {
    fn len(&self) -> usize {
        match self {
            Items::Registers(r) => r.len(),
            Items::Bits(b) => b.len(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A property group with its planned reads.
#[derive(Debug)]
struct Planned {
    index: usize,
    reads: Vec<Read>,
}

/// A source's poller: the link plus each group's plan and schedule.
#[derive(Debug)]
pub struct Poller {
    pub link: Link,
    groups: Vec<Planned>,
    /// Last problem logged per `(group, read)`, so a steady failure is
    /// logged once rather than at every poll.
    logged: HashMap<(usize, usize), String>,
}

impl Poller {
    pub fn new(source: Arc<Source>, log: Log, stats: Arc<Stats>) -> Poller {
        let groups = source
            .groups
            .iter()
            .enumerate()
            .map(|(index, g)| Planned {
                index,
                reads: plan(&g.tags),
            })
            .collect();
        Poller {
            link: Link::new(source, log, stats),
            groups,
            logged: HashMap::new(),
        }
    }

    pub fn source(&self) -> &Arc<Source> {
        &self.link.source
    }

    /// Requests one poll of group `g` takes.
    pub fn reads_per_poll(&self, g: usize) -> usize {
        self.groups.get(g).map_or(0, |p| p.reads.len())
    }

    /// Polls group `g` once: every tag gets a reading, GOOD or BAD.
    pub async fn poll(&mut self, g: usize) -> Batch {
        let source = self.link.source.clone();
        let Some(planned) = self.groups.get(g) else {
            return Batch {
                stream_name: source.destination.stream_name.clone(),
                readings: Vec::new(),
            };
        };
        let reads = planned.reads.clone();
        let group: &PropertyGroup = &source.groups[planned.index];
        let mut slots: Vec<Option<Reading>> = vec![None; group.tags.len()];
        for (r, read) in reads.iter().enumerate() {
            let result = self.link.read(read).await;
            let timestamp_ms = now_ms();
            match result {
                Ok(items) => {
                    if self.logged.remove(&(g, r)).is_some() {
                        (self.link.log)(
                            LogLevel::Info,
                            format!(
                                "source {:?} group {:?}: {:?} {}+{} reads again",
                                source.name, group.name, read.table, read.start, read.count
                            ),
                        );
                    }
                    for &(t, offset) in &read.tags {
                        let tag = &group.tags[t];
                        let from = usize::from(offset);
                        let to = from + usize::from(tag.size);
                        let decoded = match &items {
                            Items::Registers(regs) => regs
                                .get(from..to)
                                .ok_or_else(|| "response too short".to_string())
                                .and_then(|r| decode_registers(tag.src, tag.transform, tag.dst, r)),
                            Items::Bits(bits) => bits
                                .get(from)
                                .ok_or_else(|| "response too short".to_string())
                                .and_then(|b| decode_bit(*b, tag.dst)),
                        };
                        slots[t] = Some(match decoded {
                            Ok(value) => reading(tag, Some(value), timestamp_ms),
                            Err(e) => {
                                (self.link.log)(
                                    LogLevel::Debug,
                                    format!("tag {:?}: no value: {e}", tag.alias),
                                );
                                reading(tag, None, timestamp_ms)
                            }
                        });
                    }
                }
                Err(failure) => {
                    if let Failure::Exception(e) = &failure {
                        if self.logged.get(&(g, r)) != Some(e) {
                            (self.link.log)(
                                LogLevel::Warn,
                                format!(
                                    "source {:?} group {:?}: reading {:?} {}+{} failed: {e}; its tags are BAD",
                                    source.name, group.name, read.table, read.start, read.count
                                ),
                            );
                            self.logged.insert((g, r), e.clone());
                        }
                    }
                    for &(t, _) in &read.tags {
                        slots[t] = Some(reading(&group.tags[t], None, timestamp_ms));
                    }
                }
            }
        }
        let readings: Vec<Reading> = slots.into_iter().flatten().collect();
        let stats = &self.link.stats;
        stats
            .readings
            .fetch_add(readings.len() as u64, Ordering::Relaxed);
        let bad = readings
            .iter()
            .filter(|r| r.quality == Quality::Bad)
            .count();
        stats.bad.fetch_add(bad as u64, Ordering::Relaxed);
        Batch {
            stream_name: source.destination.stream_name.clone(),
            readings,
        }
    }
}

fn reading(
    tag: &crate::config::Tag,
    value: Option<crate::decode::Value>,
    timestamp_ms: u64,
) -> Reading {
    Reading {
        alias: tag.alias.clone(),
        name: tag.name.clone(),
        quality: if value.is_some() {
            Quality::Good
        } else {
            Quality::Bad
        },
        value,
        timestamp_ms,
    }
}

/// Work for a source task besides polling.
#[derive(Debug)]
pub enum Command {
    /// One request/response transaction (see `adapter`), answered on `reply`.
    Adapter {
        request: Request,
        reply: oneshot::Sender<Response>,
    },
}

/// Runs a source until `commands` closes: polls every group at its rate
/// (a poll that overruns its period skips the missed ticks rather than
/// bursting), runs commands between polls, and sends each poll's batch.
pub async fn run_source(
    mut poller: Poller,
    out: mpsc::Sender<Batch>,
    mut commands: mpsc::Receiver<Command>,
) {
    let rates: Vec<Duration> = poller.source().groups.iter().map(|g| g.rate).collect();
    let start = Instant::now();
    let mut due: Vec<Instant> = vec![start; rates.len()];
    loop {
        let next = due
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| **t)
            .map(|(g, t)| (g, *t));
        // Unbiased: polls and requests take turns when both are ready, so a
        // flood of requests cannot starve polling (nor the reverse).
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Adapter { request, reply }) => {
                    let response = run_on(&mut poller.link, &request).await;
                    // The requester may be gone (connector stopping): nothing to do.
                    let _ = reply.send(response);
                }
            },
            () = async {
                match next {
                    Some((_, t)) => sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                let Some((g, _)) = next else { continue };
                let batch = poller.poll(g).await;
                if out.send(batch).await.is_err() {
                    return;
                }
                let now = Instant::now();
                due[g] += rates[g];
                if due[g] <= now {
                    due[g] = now + rates[g];
                }
            }
        }
    }
}

/// Runs one request on `link` (the source task calls this between polls).
pub(crate) async fn run_on(link: &mut Link, req: &Request) -> Response {
    if let Err(why) = link.connected().await {
        return Response::no_response(req, format!("{NO_RESPONSE_MESSAGE} (endpoint down: {why})"));
    }
    link.pace().await;
    let ctx = match link.connected().await {
        Ok(ctx) => ctx,
        Err(why) => {
            return Response::no_response(
                req,
                format!("{NO_RESPONSE_MESSAGE} (endpoint down: {why})"),
            )
        }
    };
    let (response, outcome) = execute_with_outcome(ctx, req, REQUEST_TIMEOUT).await;
    link.request_done();
    match outcome {
        Outcome::Answered => {}
        Outcome::TimedOut => link.transport_failed(format!(
            "no response within {} s to an adapter request",
            REQUEST_TIMEOUT.as_secs()
        )),
        Outcome::Mismatch(why) | Outcome::Transport(why) => link.transport_failed(why),
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = backoff();
        let t0 = Instant::now();
        assert!(b.ready(t0));
        let waits: Vec<u128> = (0..8).map(|_| b.fail(t0).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
        assert!(!b.ready(t0));
        assert!(b.ready(t0 + BACKOFF_MAX));
        b.reset();
        assert!(b.ready(t0));
        assert_eq!(b.fail(t0), BACKOFF_INITIAL);
    }
}
