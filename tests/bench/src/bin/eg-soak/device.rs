//! The soak's client device: an MQTT 3.1.1 client that generates sequence numbers at the
//! configured rate, keeps a bounded window in flight and, as a real client does, sends again
//! every unacknowledged message after a reconnect. It counts what it sent and what was
//! acknowledged; it never decides a verdict.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use evergreen_bench::mqtt::{self, Frames, Incoming};
use evergreen_bench::soak::SeqSet;

use crate::connect::{connect, Connected};
use crate::{lock, ACK_TIMEOUT, DEVICE, MAX_BACKOFF, MIN_BACKOFF, PING_AFTER, TOPIC};

/// What the device counts, under one lock: the run reads it for progress and the verdict.
#[derive(Debug)]
pub(crate) struct DeviceState {
    /// Generating new sequence numbers (false once the publishing phase is over).
    pub(crate) publishing: bool,
    /// Quit now (the drain's bound passed).
    pub(crate) stop: bool,
    /// The first sequence number never sent.
    pub(crate) next: u64,
    /// Sent and not acknowledged, in sending order: `(seq, packet id)`.
    pub(crate) pending: VecDeque<(u64, u16)>,
    ids: HashMap<u16, u64>,
    last_id: u16,
    pub(crate) acked: SeqSet,
    /// The current connection's number; a PUBACK read on an older one is not counted.
    conn: u64,
    conn_open: bool,
    /// When the oldest wait for a PUBACK began (the last PUBACK, or the send into an empty
    /// window).
    waiting_since: Instant,
    pub(crate) longest_wait: Duration,
    pub(crate) resent: u64,
    pub(crate) connects: u64,
    pub(crate) ack_timeouts: u64,
    pub(crate) unknown_acks: u64,
}

pub(crate) struct Device {
    pub(crate) state: Mutex<DeviceState>,
    /// Woken when the state changes from outside (publishing over, stop).
    pub(crate) wake: Condvar,
    addr: SocketAddr,
    rate: f64,
    window: usize,
    payload: usize,
    started: Instant,
}

impl Device {
    /// A device that publishes to `addr` at `rate` messages a second, counted from `started`.
    pub(crate) fn new(
        addr: SocketAddr,
        rate: f64,
        window: usize,
        payload: usize,
        started: Instant,
    ) -> Device {
        Device {
            state: Mutex::new(DeviceState {
                publishing: true,
                stop: false,
                next: 0,
                pending: VecDeque::new(),
                ids: HashMap::new(),
                last_id: 0,
                acked: SeqSet::default(),
                conn: 0,
                conn_open: false,
                waiting_since: started,
                longest_wait: Duration::ZERO,
                resent: 0,
                connects: 0,
                ack_timeouts: 0,
                unknown_acks: 0,
            }),
            wake: Condvar::new(),
            addr,
            rate,
            window,
            payload,
            started,
        }
    }

    /// Sequence numbers due by `now` at the configured rate.
    pub(crate) fn due(&self, now: Instant) -> u64 {
        (now.duration_since(self.started).as_secs_f64() * self.rate) as u64
    }

    fn payload(&self, seq: u64) -> Vec<u8> {
        let mut p = format!("{seq} ").into_bytes();
        if p.len() < self.payload {
            p.resize(self.payload, b'x');
        }
        p
    }

    /// Reconnects until the drain is over or `deadline`.
    pub(crate) fn run(&self, deadline: Instant) {
        let mut backoff = MIN_BACKOFF;
        while Instant::now() < deadline {
            {
                let s = lock(&self.state);
                if s.stop || (!s.publishing && s.pending.is_empty()) {
                    return;
                }
            }
            if let Ok(connected) = connect(self.addr, DEVICE, true) {
                let began = Instant::now();
                self.session(connected, deadline);
                if began.elapsed() > MAX_BACKOFF {
                    backoff = MIN_BACKOFF;
                }
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn next_id(s: &mut DeviceState) -> u16 {
        // The window is far below 65535, so a free id is a few steps away at most.
        loop {
            s.last_id = s.last_id.wrapping_add(1).max(1);
            if !s.ids.contains_key(&s.last_id) {
                return s.last_id;
            }
        }
    }

    /// One connection: resend what has no PUBACK, then publish on schedule until the
    /// connection ends, a PUBACK is overdue, or nothing is left to do.
    fn session(&self, connected: Connected, deadline: Instant) {
        let Connected { mut stream, frames } = connected;
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        // A write blocked this long means the runtime stopped reading: treated as a stall.
        let _ = stream.set_write_timeout(Some(ACK_TIMEOUT));
        let mut out = Vec::new();
        let conn = {
            let mut s = lock(&self.state);
            s.conn += 1;
            s.conn_open = true;
            s.connects += 1;
            // As a client does after a reconnect: everything unacknowledged, in order, as DUP.
            for &(seq, id) in &s.pending {
                mqtt::publish(TOPIC, &self.payload(seq), Some((id, true)), &mut out);
            }
            s.resent += s.pending.len() as u64;
            s.waiting_since = Instant::now();
            s.conn
        };
        // The reader is joined before this returns, so every PUBACK of this connection is
        // counted before the next connection decides what to send again.
        let why = std::thread::scope(|scope| {
            let reader = scope.spawn(|| self.read_acks(read_half, frames, conn));
            let why = self.publish_loop(&mut stream, &out, conn, deadline);
            lock(&self.state).conn_open = false;
            if why.is_none() {
                let _ = stream.write_all(&mqtt::DISCONNECT);
            }
            let _ = stream.shutdown(Shutdown::Both);
            let _ = reader.join();
            why
        });
        if let Some(why) = why {
            println!(
                "  [{:>7.1} s] device: connection ended: {why}",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// Writes `resend`, then new messages as they fall due. `None` when there is nothing left
    /// to send, else why the connection is given up.
    fn publish_loop(
        &self,
        stream: &mut TcpStream,
        resend: &[u8],
        conn: u64,
        deadline: Instant,
    ) -> Option<String> {
        if !resend.is_empty() {
            if let Err(e) = stream.write_all(resend) {
                return Some(format!("resend: {e}"));
            }
        }
        let mut out = Vec::new();
        let mut last_write = Instant::now();
        let mut s = lock(&self.state);
        loop {
            let now = Instant::now();
            if s.conn != conn || !s.conn_open {
                return Some("closed by the runtime".into());
            }
            if s.stop || now >= deadline {
                return Some("the drain's bound passed".into());
            }
            if !s.publishing && s.pending.is_empty() {
                return None;
            }
            if !s.pending.is_empty() && now.duration_since(s.waiting_since) > ACK_TIMEOUT {
                s.ack_timeouts += 1;
                return Some(format!("no PUBACK within {ACK_TIMEOUT:?}: a stall"));
            }
            let due = if s.publishing { self.due(now) } else { s.next };
            out.clear();
            while s.pending.len() < self.window && s.next < due {
                let id = Device::next_id(&mut s);
                let seq = s.next;
                if s.pending.is_empty() {
                    s.waiting_since = now;
                }
                s.pending.push_back((seq, id));
                s.ids.insert(id, seq);
                s.next += 1;
                mqtt::publish(TOPIC, &self.payload(seq), Some((id, false)), &mut out);
            }
            if out.is_empty() {
                if last_write.elapsed() > PING_AFTER {
                    out.extend_from_slice(&mqtt::PINGREQ);
                } else {
                    // Until the next number falls due, a PUBACK frees the window, or 100 ms.
                    let next_due = Duration::from_secs_f64((s.next + 1) as f64 / self.rate);
                    let wait = next_due
                        .saturating_sub(now.duration_since(self.started))
                        .clamp(Duration::from_millis(1), Duration::from_millis(100));
                    s = self
                        .wake
                        .wait_timeout(s, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    continue;
                }
            }
            drop(s);
            if let Err(e) = stream.write_all(&out) {
                let mut s = lock(&self.state);
                if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut {
                    s.ack_timeouts += 1;
                    return Some(format!("a write blocked for {ACK_TIMEOUT:?}: a stall"));
                }
                return Some(format!("write: {e}"));
            }
            last_write = Instant::now();
            s = lock(&self.state);
        }
    }

    /// Reads PUBACKs of connection `conn` until it ends; `frames` holds what came with the
    /// CONNACK.
    fn read_acks(&self, mut stream: TcpStream, mut frames: Frames, conn: u64) {
        let mut buf = vec![0u8; 64 * 1024];
        // Nothing new yet: what came with the CONNACK first.
        let mut n = 0;
        'read: loop {
            frames.push(&buf[..n]);
            let mut s = lock(&self.state);
            loop {
                let packet = match frames.next_packet() {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        println!("  device: the runtime's stream is not MQTT: {e}");
                        break 'read;
                    }
                };
                let packet_id = match mqtt::decode(packet.0, &packet.1) {
                    Ok(Incoming::PubAck { packet_id }) => packet_id,
                    Ok(Incoming::PingResp) => continue,
                    // Anything else means the stream is out of step: reading on would hide it.
                    other => {
                        println!("  device: unexpected from the runtime: {other:?}");
                        break 'read;
                    }
                };
                if s.conn != conn {
                    continue;
                }
                let Some(seq) = s.ids.remove(&packet_id) else {
                    s.unknown_acks += 1;
                    continue;
                };
                // PUBACKs come in order, so this is the front almost always.
                if let Some(at) = s.pending.iter().position(|&(q, _)| q == seq) {
                    s.pending.remove(at);
                }
                s.acked.insert(seq);
                let now = Instant::now();
                let waited = now.duration_since(s.waiting_since);
                s.longest_wait = s.longest_wait.max(waited);
                s.waiting_since = now;
            }
            drop(s);
            self.wake.notify_all();
            n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
        }
        let mut s = lock(&self.state);
        if s.conn == conn {
            s.conn_open = false;
        }
        drop(s);
        self.wake.notify_all();
    }
}
