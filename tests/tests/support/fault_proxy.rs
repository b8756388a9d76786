//! A tiny loopback HTTP proxy for the cloud connector tests: it answers the
//! next N requests with a chosen fault (a 503, a throttling error) and
//! forwards every other request to moto unchanged, one request per
//! connection. It can also be started late on a port chosen in advance,
//! to play an endpoint that is down and then comes up.
// Included by several test crates (`#[path]`), each using part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Fault {
    pub fn unavailable() -> Fault {
        Fault {
            status: 503,
            content_type: "text/plain",
            body: "Service Unavailable".into(),
        }
    }

    /// awsJson1.1 throttling (Firehose and the other JSON services).
    pub fn json_throttling() -> Fault {
        Fault {
            status: 400,
            content_type: "application/x-amz-json-1.1",
            body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
        }
    }

    /// Query-protocol throttling (CloudWatch).
    pub fn query_throttling() -> Fault {
        Fault {
            status: 400,
            content_type: "text/xml",
            body: "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                   <Message>Rate exceeded</Message></Error><RequestId>t-1</RequestId></ErrorResponse>"
                .into(),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    faults: Mutex<VecDeque<Fault>>,
    faults_served: AtomicUsize,
    forwarded: AtomicUsize,
    stop: AtomicBool,
}

/// The running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:port` (0: any free port) and forwards to
    /// `127.0.0.1:upstream`.
    pub fn start(port: u16, upstream: u16) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &s);
                });
            }
        });
        Ok(FaultProxy { port, shared })
    }

    /// Answers the next `n` requests with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut q = self.shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..n {
            q.push_back(fault.clone());
        }
    }

    pub fn faults_served(&self) -> usize {
        self.shared.faults_served.load(Ordering::SeqCst)
    }

    /// Requests passed on to moto.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request, answers it with a fault or moto's answer, closes.
fn serve(mut client: TcpStream, upstream: u16, shared: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if raw.len() > 1 << 20 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while raw.len() < head_end + length {
        let n = client.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    if shared.stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let fault = shared
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop_front();
    if let Some(f) = fault {
        shared.faults_served.fetch_add(1, Ordering::SeqCst);
        let answer = format!(
            "HTTP/1.1 {} Fault\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            f.status,
            f.content_type,
            f.body.len(),
            f.body
        );
        client.write_all(answer.as_bytes())?;
        return Ok(());
    }
    // Forward with `Connection: close` so moto's answer ends at EOF.
    let mut forwarded_head = String::new();
    for line in head.trim_end().split("\r\n") {
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        forwarded_head.push_str(line);
        forwarded_head.push_str("\r\n");
    }
    forwarded_head.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.set_read_timeout(Some(Duration::from_secs(20)))?;
    up.write_all(forwarded_head.as_bytes())?;
    up.write_all(&raw[head_end..])?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    client.write_all(&answer)?;
    Ok(())
}
