//! The cloud side: a subscriber with a persistent session on the upstream broker that records
//! every sequence number in arrival order before acknowledging it, so a lost PUBACK shows as a
//! duplicate, never as a miss.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use evergreen_bench::mqtt::{self, Incoming};
use evergreen_bench::soak::SeqSet;

use crate::connect::{connect, Connected};
use crate::{lock, MAX_BACKOFF, MIN_BACKOFF, PING_AFTER};

/// The subscriber's client id (its persistent session) and its filter on the broker.
const CLOUD_CLIENT: &str = "soak-cloud";
const FILTER: &str = "soak/#";

/// The subscriber on the upstream broker: every sequence number in arrival order.
#[derive(Default)]
pub(crate) struct CloudSide {
    pub(crate) arrivals: Mutex<Vec<u64>>,
    /// Distinct arrivals, kept alongside for the drain's polling.
    pub(crate) seen: Mutex<SeqSet>,
    pub(crate) unparsable: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) subscribed: AtomicBool,
    pub(crate) stop: AtomicBool,
}

impl CloudSide {
    pub(crate) fn run(&self, addr: SocketAddr, started: Instant, deadline: Instant) {
        let mut backoff = MIN_BACKOFF;
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let began = Instant::now();
            let connects = self.connects.load(Ordering::Relaxed);
            if let Err(e) = self.session(addr, deadline) {
                // Refused connections while the broker is down are expected; an established
                // one that ends says why.
                if self.connects.load(Ordering::Relaxed) > connects {
                    println!(
                        "  [{:>7.1} s] cloud side: connection ended: {e}",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            if began.elapsed() > MAX_BACKOFF {
                backoff = MIN_BACKOFF;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn session(&self, addr: SocketAddr, deadline: Instant) -> Result<(), String> {
        let Connected {
            mut stream,
            mut frames,
        } = connect(addr, CLOUD_CLIENT, false)?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        // Short reads, so the stop flag is noticed; the frame reader keeps partial packets.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&mqtt::subscribe(1, FILTER, 1))
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut acks = Vec::new();
        let mut last_write = Instant::now();
        // Nothing new yet: what came with the CONNACK first.
        let mut n = 0;
        while Instant::now() < deadline {
            frames.push(&buf[..n]);
            acks.clear();
            {
                let mut arrivals = lock(&self.arrivals);
                let mut seen = lock(&self.seen);
                while let Some((first, body)) = frames.next_packet().map_err(|e| e.to_string())? {
                    match mqtt::decode(first, &body).map_err(|e| e.to_string())? {
                        Incoming::SubAck { codes, .. } => {
                            if codes.first().is_some_and(|&c| c <= 1) {
                                self.subscribed.store(true, Ordering::Relaxed);
                            } else {
                                return Err(format!("SUBSCRIBE refused: {codes:?}"));
                            }
                        }
                        Incoming::PingResp => {}
                        Incoming::Publish {
                            payload, packet_id, ..
                        } => {
                            // Recorded before the PUBACK: if the PUBACK is lost, mosquitto
                            // sends it again and it counts as a duplicate, never as missing.
                            match parse_seq(&payload) {
                                Some(seq) => {
                                    arrivals.push(seq);
                                    seen.insert(seq);
                                }
                                None => {
                                    self.unparsable.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            if let Some(id) = packet_id {
                                acks.extend_from_slice(&mqtt::puback(id));
                            }
                        }
                        // The stream is out of step, or mosquitto does what the soak does not
                        // expect: reconnecting is safe, reading on could hide arrivals.
                        other => return Err(format!("unexpected from mosquitto: {other:?}")),
                    }
                }
            }
            if !acks.is_empty() {
                stream.write_all(&acks).map_err(|e| e.to_string())?;
                last_write = Instant::now();
            }
            if self.stop.load(Ordering::Relaxed) {
                let _ = stream.write_all(&mqtt::DISCONNECT);
                return Ok(());
            }
            n = match stream.read(&mut buf) {
                Ok(0) => return Err("closed".into()),
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if last_write.elapsed() > PING_AFTER {
                        stream
                            .write_all(&mqtt::PINGREQ)
                            .map_err(|e| e.to_string())?;
                        last_write = Instant::now();
                    }
                    0
                }
                Err(e) => return Err(e.to_string()),
            };
        }
        Ok(())
    }
}

fn parse_seq(payload: &[u8]) -> Option<u64> {
    let end = payload
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(payload.len());
    std::str::from_utf8(payload.get(..end)?).ok()?.parse().ok()
}
