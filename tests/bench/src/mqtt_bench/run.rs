//! Runs one case against one broker: subscribers connect and subscribe, publishers send
//! stamped messages (as fast as the connection takes them, in bursts each on a fresh connection
//! that disconnects right after its last message, or at a fixed rate), subscribers count what
//! arrives, and the broker's CPU time and resident size are read around it. Every wait is
//! bounded by the case's time limit; the outcome says what did not finish rather than hanging.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};

use super::broker::Broker;
use super::client::{ClientError, Conn};
use super::procfs::{ticks_per_sec, Proc};
use super::tally::{Stamp, Tally};
use crate::mqtt::{puback, Incoming, Version};

/// Unacknowledged QoS 1 publishes per publisher (less if the server's Receive Maximum is).
pub const WINDOW: usize = 16;

/// Quiet time after the last publisher finished before a subscriber stops waiting for more: far
/// above the depth of any broker's buffers measured here (QoS 0 floods: under 1 s).
const SETTLE: Duration = Duration::from_secs(2);

/// Keep-alive the bench clients announce: longer than any case, so no PINGREQ is needed.
pub const KEEP_ALIVE: u16 = 600;

/// Connections opened at once while a case sets up.
const CONNECTING: usize = 64;

/// How long the last QoS 1 acknowledgements of a connection may take.
const ACKS: Duration = Duration::from_secs(10);

/// QoS 0 publishes are written in batches of this many bytes, as a client library's buffer
/// would; QoS 1 ones one by one.
const BATCH: usize = 16 * 1024;

/// A subscriber of a case.
#[derive(Debug, Clone)]
pub struct SubSpec {
    pub index: u32,
    pub client_id: String,
    pub filter: String,
    pub version: Version,
    pub qos: u8,
    /// The publishers whose messages it must receive.
    pub sources: Vec<u32>,
}

/// A publisher of a case.
#[derive(Debug, Clone)]
pub struct PubSpec {
    pub index: u32,
    pub client_id: String,
    pub topic: String,
    pub version: Version,
    pub qos: u8,
    pub count: u32,
}

/// How publishers send.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as the connection takes them. With `burst`, each `burst` messages on a new
    /// connection that sends DISCONNECT right after the last one (QoS 1: once it is
    /// acknowledged, as mosquitto_pub does), then a new connection with the same client id
    /// goes on, opened as `reconnect` says; without, one connection that stays until the
    /// subscribers are done.
    Flood {
        burst: Option<u32>,
        reconnect: Reconnect,
    },
    /// One message per `interval` per publisher, the publishers' phases spread evenly over it.
    Rate { interval: Duration },
}

/// When a burst publisher's next connection opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Once the broker has closed the previous one (it has read the DISCONNECT): what is lost
    /// then was dropped at the disconnect. (The client's DISCONNECT and half-close still
    /// follow the last message at once.)
    AfterClose,
    /// At once: the new CONNECT takes the client id over while the broker may still be
    /// reading the previous connection, which MQTT says it must close.
    AtOnce,
}

/// How long a broker may take to close a connection after a DISCONNECT.
const CLOSE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Case {
    pub subs: Vec<SubSpec>,
    pub pubs: Vec<PubSpec>,
    pub pace: Pace,
    pub payload: usize,
    /// Bound on the whole case, setup excluded.
    pub limit: Duration,
}

/// What a case measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Publishes written.
    pub sent: u64,
    /// QoS 1 publishes acknowledged.
    pub acked: u64,
    /// Every subscriber's arrivals.
    pub tally: Tally,
    /// Messages a subscriber should have received and did not: written (QoS 0) or acknowledged
    /// (QoS 1) by a publisher it listens to, never delivered.
    pub lost: u64,
    /// From the first publish to the last first arrival.
    pub secs: f64,
    /// The broker's CPU time over the case, in ns.
    pub cpu_ns: u64,
    pub rss_start_kib: u64,
    pub rss_peak_kib: u64,
    /// What went wrong (a refused CONNECT, a closed connection, a wait that timed out).
    pub errors: Vec<String>,
}

/// What one publisher did.
#[derive(Debug, Default)]
struct Sent {
    sent: u64,
    acked: u64,
    error: Option<String>,
}

/// The state of a case the subscribers watch: how many publishers are still sending, and when
/// the last one finished (ns since the epoch, 0 while some still send).
#[derive(Debug, Default)]
struct Progress {
    sending: AtomicUsize,
    done_ns: AtomicU64,
}

fn since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A publisher's connection with its QoS 1 window.
struct Sender {
    conn: Conn,
    topic: String,
    qos: u8,
    window: usize,
    inflight: usize,
    next_id: u16,
    buf: Vec<u8>,
}

impl Sender {
    async fn open(addr: SocketAddr, spec: &PubSpec) -> Result<Sender, ClientError> {
        let conn = Conn::connect(addr, &spec.client_id, spec.version, KEEP_ALIVE).await?;
        let window = WINDOW.min(usize::from(conn.receive_maximum).max(1));
        Ok(Sender {
            conn,
            topic: spec.topic.clone(),
            qos: spec.qos,
            window,
            inflight: 0,
            next_id: 0,
            buf: Vec::with_capacity(BATCH + 256),
        })
    }

    /// Reads what has arrived (PUBACKs) once, waiting for at least one packet.
    async fn read_acks(&mut self, done: &mut Sent) -> Result<(), ClientError> {
        let mut packets = Vec::new();
        if !self.conn.read_some(&mut packets).await? {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        for p in packets {
            if let Incoming::PubAck { .. } = p {
                self.inflight = self.inflight.saturating_sub(1);
                done.acked += 1;
            }
        }
        Ok(())
    }

    /// Appends one stamped publish; written at once if `flush` or the batch is full.
    async fn publish(
        &mut self,
        stamp: impl FnOnce() -> Stamp,
        payload: usize,
        flush: bool,
        done: &mut Sent,
    ) -> Result<(), ClientError> {
        let id = if self.qos > 0 {
            while self.inflight >= self.window {
                self.flush().await?;
                self.read_acks(done).await?;
            }
            self.inflight += 1;
            // Packet ids cycle through 1..=65535; with at most 16 in flight none is reused
            // while still unacknowledged.
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            Some((self.next_id, false))
        } else {
            None
        };
        let version = self.conn.version();
        version.publish(&self.topic, &stamp().payload(payload), id, &mut self.buf);
        done.sent += 1;
        if flush || self.qos > 0 || self.buf.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.buf.is_empty() {
            self.conn.write(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes what is batched and waits (within `limit`) for every QoS 1 acknowledgement.
    async fn settle(&mut self, limit: Duration, done: &mut Sent) -> Result<(), ClientError> {
        self.flush().await?;
        let waited = tokio::time::timeout(limit, async {
            while self.inflight > 0 {
                self.read_acks(done).await?;
            }
            Ok::<(), ClientError>(())
        })
        .await;
        match waited {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{} PUBACKs missing after {limit:?}", self.inflight),
            )
            .into()),
        }
    }
}

/// One publisher: its connections, its messages, what it counted.
async fn publisher(
    addr: SocketAddr,
    spec: PubSpec,
    case: Arc<Case>,
    epoch: Instant,
    start: tokio::time::Instant,
    progress: Arc<Progress>,
    mut release: watch::Receiver<bool>,
) -> Sent {
    let mut total = Sent::default();
    let mut finisher = Finisher {
        progress,
        epoch,
        done: false,
    };
    // Later than the subscribers' limit: the release they give when they stop comes first.
    let deadline = start + case.limit + Duration::from_secs(10);
    let index = spec.index;
    let stamp = |seq: u32| {
        move || Stamp {
            publisher: index,
            seq,
            sent_ns: since(epoch),
        }
    };
    let total_ref = &mut total;
    let finisher_ref = &mut finisher;
    // Where the publisher was, for an error: its connection (1 = first) and next message.
    let (mut seq, mut conns) = (0u32, 0u32);
    let (seq_ref, conns_ref) = (&mut seq, &mut conns);
    let work = async {
        let seq = seq_ref;
        match case.pace {
            Pace::Flood { burst, reconnect } => {
                while *seq < spec.count {
                    *conns_ref += 1;
                    let mut s = Sender::open(addr, &spec).await?;
                    let end = burst.map_or(spec.count, |b| (*seq + b).min(spec.count));
                    while *seq < end {
                        s.publish(stamp(*seq), case.payload, false, total_ref)
                            .await?;
                        *seq += 1;
                    }
                    s.settle(ACKS, total_ref).await?;
                    if burst.is_none() {
                        // Sending is over; staying connected until the subscribers are done
                        // keeps this case about the path, not the disconnect (the burst cases
                        // are about that).
                        finisher_ref.finish();
                        let _ = release.wait_for(|r| *r).await;
                        s.conn.disconnect().await?;
                    } else if reconnect == Reconnect::AfterClose {
                        s.conn.disconnect_and_wait(CLOSE).await?;
                    } else {
                        s.conn.disconnect().await?;
                    }
                }
            }
            Pace::Rate { interval } => {
                *conns_ref += 1;
                let mut s = Sender::open(addr, &spec).await?;
                // Publisher i of n starts i/n of an interval late: the load is even in time.
                let n = u32::try_from(case.pubs.len()).unwrap_or(u32::MAX).max(1);
                let phase = interval * spec.index / n;
                while *seq < spec.count {
                    tokio::time::sleep_until(start + phase + interval * *seq).await;
                    s.publish(stamp(*seq), case.payload, true, total_ref)
                        .await?;
                    *seq += 1;
                }
                s.settle(ACKS, total_ref).await?;
                finisher_ref.finish();
                let _ = release.wait_for(|r| *r).await;
                s.conn.disconnect().await?;
            }
        }
        Ok::<(), ClientError>(())
    };
    // Every wait above (a window that never opens, a release that never comes) ends here.
    let outcome = tokio::time::timeout_at(deadline, work).await;
    let at = format!("{} (connection {conns}, message {seq})", spec.client_id);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => total.error = Some(format!("{at}: {e}")),
        Err(_) => {
            total.error = Some(format!(
                "{at}: still sending at the case's limit of {:?}",
                case.limit
            ))
        }
    }
    // A burst publisher finishes here, and so does one that failed.
    finisher.finish();
    total
}

/// Counts one publisher out of those still sending, once however often it is called.
struct Finisher {
    progress: Arc<Progress>,
    epoch: Instant,
    done: bool,
}

impl Finisher {
    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if self.progress.sending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.progress
                .done_ns
                .store(since(self.epoch).max(1), Ordering::Release);
        }
    }
}

/// One subscriber's read loop, until it has everything, the publishers have been done and quiet
/// for [`SETTLE`], or the case's time is up.
async fn subscriber(
    mut conn: Conn,
    spec: SubSpec,
    expected: u64,
    epoch: Instant,
    deadline: tokio::time::Instant,
    progress: Arc<Progress>,
) -> (Tally, Option<String>) {
    let mut tally = Tally::default();
    let mut packets = Vec::new();
    let mut acks = Vec::new();
    let mut last = Instant::now();
    let error = loop {
        if tally.received() >= expected || tokio::time::Instant::now() >= deadline {
            break None;
        }
        let done_ns = progress.done_ns.load(Ordering::Acquire);
        if progress.sending.load(Ordering::Acquire) == 0 && done_ns > 0 {
            let quiet = last
                .elapsed()
                .min(Duration::from_nanos(since(epoch).saturating_sub(done_ns)));
            if quiet >= SETTLE {
                break None;
            }
        }
        let read = tokio::time::timeout(Duration::from_millis(100), conn.read_some(&mut packets));
        match read.await {
            Err(_) => continue,
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                break Some(format!(
                    "{}: the broker closed the connection",
                    spec.client_id
                ))
            }
            Ok(Err(e)) => break Some(format!("{}: {e}", spec.client_id)),
        }
        let now = since(epoch);
        last = Instant::now();
        for p in packets.drain(..) {
            if let Incoming::Publish {
                packet_id, payload, ..
            } = p
            {
                tally.arrive(spec.index, &payload, now);
                if let Some(id) = packet_id {
                    acks.extend_from_slice(&puback(id));
                }
            }
        }
        if !acks.is_empty() {
            if let Err(e) = conn.write(&acks).await {
                break Some(format!("{}: {e}", spec.client_id));
            }
            acks.clear();
        }
    };
    (tally, error)
}

/// Runs `case` against `broker`. `Err` only if the case could not start (a subscriber could not
/// connect or subscribe); what fails later is in [`Outcome::errors`].
pub async fn run_case(broker: &Broker, case: Case) -> Result<Outcome, String> {
    let proc = Proc::default();
    let pid = broker.pid();
    let epoch = Instant::now();
    let case = Arc::new(case);
    // Subscribers first, all subscribed before the first publish.
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut joining = Vec::new();
    for spec in &case.subs {
        let (gate, spec, addr) = (gate.clone(), spec.clone(), broker.addr(spec.version));
        joining.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let mut conn = Conn::connect(addr, &spec.client_id, spec.version, KEEP_ALIVE).await?;
            conn.subscribe(&spec.filter, spec.qos).await?;
            Ok::<Conn, ClientError>(conn)
        }));
    }
    let mut conns = Vec::new();
    for j in joining {
        conns.push(
            j.await
                .map_err(|e| format!("a subscriber's task failed: {e}"))?
                .map_err(|e| e.to_string())?,
        );
    }
    let rss_start_kib = proc.rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(rss_start_kib));
    let (stop_tx, stop_rx) = watch::channel(false);
    let sampler = {
        let (peak, mut stop) = (peak.clone(), stop_rx.clone());
        tokio::spawn(async move {
            // Resident size every 250 ms: the peak of a case, not only its end.
            loop {
                peak.fetch_max(Proc::default().rss_kib(pid), Ordering::Relaxed);
                let stopped = stop.wait_for(|s| *s);
                if tokio::time::timeout(Duration::from_millis(250), stopped)
                    .await
                    .is_ok()
                {
                    break;
                }
            }
        })
    };
    let tick_ns = 1_000_000_000 / ticks_per_sec();
    let cpu_before = proc.cpu_ns(pid, tick_ns);
    let progress = Arc::new(Progress {
        sending: AtomicUsize::new(case.pubs.len()),
        done_ns: AtomicU64::new(0),
    });
    let start = tokio::time::Instant::now();
    let first_ns = since(epoch);
    let deadline = start + case.limit;
    let counts: std::collections::HashMap<u32, u64> = case
        .pubs
        .iter()
        .map(|p| (p.index, u64::from(p.count)))
        .collect();
    let mut subs = Vec::new();
    for (conn, spec) in conns.into_iter().zip(case.subs.iter().cloned()) {
        let expected = spec.sources.iter().filter_map(|p| counts.get(p)).sum();
        subs.push(tokio::spawn(subscriber(
            conn,
            spec,
            expected,
            epoch,
            deadline,
            progress.clone(),
        )));
    }
    let (release_tx, release_rx) = watch::channel(false);
    let mut pubs = Vec::new();
    for spec in case.pubs.iter().cloned() {
        let addr = broker.addr(spec.version);
        pubs.push((
            spec.index,
            tokio::spawn(publisher(
                addr,
                spec,
                case.clone(),
                epoch,
                start,
                progress.clone(),
                release_rx.clone(),
            )),
        ));
    }
    let mut out = Outcome {
        rss_start_kib,
        ..Outcome::default()
    };
    for s in subs {
        match s.await {
            Ok((tally, error)) => {
                out.tally.merge(tally);
                out.errors.extend(error);
            }
            Err(e) => out.errors.push(format!("a subscriber's task failed: {e}")),
        }
    }
    out.cpu_ns = proc.cpu_ns(pid, tick_ns).saturating_sub(cpu_before);
    let _ = release_tx.send(true);
    // What each publisher's messages count as delivered-or-lost against: written at QoS 0,
    // acknowledged at QoS 1.
    let mut basis = std::collections::HashMap::new();
    for (index, p) in pubs {
        match p.await {
            Ok(sent) => {
                out.sent += sent.sent;
                out.acked += sent.acked;
                let qos1 = case.pubs.iter().any(|s| s.index == index && s.qos > 0);
                basis.insert(index, if qos1 { sent.acked } else { sent.sent });
                out.errors.extend(sent.error);
            }
            Err(e) => out.errors.push(format!("a publisher's task failed: {e}")),
        }
    }
    let _ = stop_tx.send(true);
    let _ = sampler.await;
    out.rss_peak_kib = peak.load(Ordering::Relaxed);
    for spec in &case.subs {
        for p in &spec.sources {
            let should = basis.get(p).copied().unwrap_or(0);
            out.lost += should.saturating_sub(out.tally.distinct(spec.index, *p));
        }
    }
    out.secs = out
        .tally
        .last_ns
        .map_or(0.0, |l| l.saturating_sub(first_ns) as f64 / 1e9);
    Ok(out)
}
