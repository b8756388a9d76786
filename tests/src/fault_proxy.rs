//! A loopback HTTP/1.1 proxy that stands between the runtime and a test
//! peer (moto) and can be told to answer the next requests itself with an
//! error (a 503, a throttling answer) instead of forwarding them. Started
//! late on a port the runtime already uses, it also plays "the endpoint was
//! down and came back".
//!
//! std threads only; every read and write has a 10 s bound, and the accept
//! loop polls a stop flag, so dropping the proxy ends it.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const IO_LIMIT: Duration = Duration::from_secs(10);
/// Largest request or answer the proxy handles (moto's answers are small).
const MAX_MESSAGE: usize = 16 << 20;

/// An answer the proxy gives instead of forwarding.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Fault {
    /// `503 Service Unavailable` with an empty body.
    pub fn unavailable() -> Fault {
        Fault {
            status: 503,
            content_type: "text/plain".into(),
            body: String::new(),
        }
    }

    /// The query protocol's throttling answer (SNS, CloudWatch).
    pub fn throttling_xml() -> Fault {
        Fault {
            status: 400,
            content_type: "text/xml".into(),
            body: "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                   <Message>Rate exceeded</Message></Error><RequestId>t-1</RequestId></ErrorResponse>"
                .into(),
        }
    }

    /// The awsJson1.1 protocol's throttling answer (Firehose): HTTP 400 with the code in
    /// `__type`, so only the code says it is transient.
    pub fn throttling_awsjson() -> Fault {
        Fault {
            status: 400,
            content_type: "application/x-amz-json-1.1".into(),
            body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
        }
    }

    /// The REST-JSON protocols' throttling answer (IoT Analytics).
    pub fn throttling_json() -> Fault {
        Fault {
            status: 429,
            content_type: "application/json".into(),
            body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    faults: VecDeque<Fault>,
    faults_served: usize,
    forwarded: usize,
}

/// The proxy; dropping it stops accepting connections.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> std::io::Result<FaultProxy> {
        FaultProxy::start_on(0, upstream)
    }

    /// A proxy on `127.0.0.1:port` (0: any free port).
    pub fn start_on(port: u16, upstream: u16) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state: Arc<Mutex<State>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let state = state.clone();
                            std::thread::spawn(move || serve(client, upstream, &state));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(FaultProxy {
            port,
            state,
            stop,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers the next `n` requests with `fault` (after any already queued).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut s = lock(&self.state);
        s.faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Requests answered with a fault so far.
    pub fn faults_served(&self) -> usize {
        lock(&self.state).faults_served
    }

    /// Requests forwarded to the peer so far.
    pub fn forwarded(&self) -> usize {
        lock(&self.state).forwarded
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One client connection: requests in turn (keep-alive), each answered
/// with a fault or forwarded on a fresh upstream connection.
fn serve(mut client: TcpStream, upstream: u16, state: &Mutex<State>) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(IO_LIMIT));
    let _ = client.set_write_timeout(Some(IO_LIMIT));
    let mut buffer = Vec::new();
    // Bounded: each round either answers a request or ends the connection.
    for _ in 0..10_000 {
        let Some((head, body)) = read_request(&mut client, &mut buffer) else {
            return;
        };
        let fault = {
            let mut s = lock(state);
            let f = s.faults.pop_front();
            if f.is_some() {
                s.faults_served += 1;
            } else {
                s.forwarded += 1;
            }
            f
        };
        let answer = match fault {
            Some(f) => response(
                f.status,
                &[("Content-Type", &f.content_type)],
                f.body.as_bytes(),
            ),
            None => match forward(upstream, &head, &body) {
                Some(a) => a,
                None => response(502, &[], b"upstream unreachable"),
            },
        };
        if client.write_all(&answer).is_err() {
            return;
        }
    }
}

/// Reads one request: its head (without the blank line) and body.
pub(crate) fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    let end = loop {
        if let Some(p) = find(buffer, b"\r\n\r\n") {
            break p;
        }
        if buffer.len() > MAX_MESSAGE || !fill(stream, buffer) {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let length = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_MESSAGE);
    while buffer.len() < end + 4 + length {
        if !fill(stream, buffer) {
            return None;
        }
    }
    let body = buffer[end + 4..end + 4 + length].to_vec();
    buffer.drain(..end + 4 + length);
    Some((head, body))
}

fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Sends the request upstream with `Connection: close`, reads the whole
/// answer, and re-frames it with a Content-Length for the client.
fn forward(upstream: u16, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    up.set_read_timeout(Some(IO_LIMIT)).ok()?;
    up.set_write_timeout(Some(IO_LIMIT)).ok()?;
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes()).ok()?;
    up.write_all(body).ok()?;
    let mut raw = Vec::new();
    up.take(MAX_MESSAGE as u64).read_to_end(&mut raw).ok()?;
    let end = find(&raw, b"\r\n\r\n")?;
    let up_head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut up_body = raw[end + 4..].to_vec();
    if header(&up_head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        up_body = crate::dechunk(&up_body)?;
    } else if let Some(n) = header(&up_head, "content-length").and_then(|v| v.parse().ok()) {
        up_body.truncate(n);
    }
    let status: u16 = up_head.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(&str, &str)> = up_head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| {
            !["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|h| k.eq_ignore_ascii_case(h))
        })
        .collect();
    Some(response(status, &headers, &up_body))
}

pub(crate) fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} Proxy\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}
