//! What the stream manager's export tests share: an in-memory
//! `ExportSource`, and a loopback HTTP stand-in for any AWS service that
//! verifies SigV4 ([`crate::iotanalytics_server::verify_sigv4`]) before its
//! handler answers (for IoT Analytics and IoT SiteWise, which moto 5.2.1
//! lacks or does not check, and for S3's signing).

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evergreen_streams::export::ExportSource;
use evergreen_streams::model::Message;

use crate::fault_proxy::header;
use crate::iotanalytics_server::verify_sigv4;

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";

/// An AWS client with the test keys and these endpoint overrides.
pub fn aws(endpoints: &[(&str, String)]) -> evergreen_aws::AwsClient {
    evergreen_aws::AwsClient::with_credentials(
        REGION,
        endpoints
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        evergreen_ipc::AwsCredentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
            session_token: None,
            expiration_ms: None,
        },
    )
}

/// Polls `check` every 50 ms until it gives `Some`, for at most `limit`.
pub async fn wait_async<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- source

#[derive(Debug)]
struct MemStream {
    messages: Vec<Message>,
    next: i64,
    tx: tokio::sync::watch::Sender<i64>,
}

/// Streams in memory, as the store would keep them.
#[derive(Default, Debug)]
pub struct MemSource {
    streams: Mutex<HashMap<String, MemStream>>,
}

impl MemSource {
    pub fn new() -> Arc<Self> {
        Arc::new(MemSource::default())
    }

    pub fn create(&self, name: &str) {
        let (tx, _) = tokio::sync::watch::channel(-1);
        self.streams.lock().expect("lock").insert(
            name.to_string(),
            MemStream {
                messages: Vec::new(),
                next: 0,
                tx,
            },
        );
    }

    pub fn delete(&self, name: &str) {
        self.streams.lock().expect("lock").remove(name);
    }

    pub fn push(&self, name: &str, payload: &[u8]) -> i64 {
        self.append(name, payload.to_vec()).expect("stream exists")
    }

    /// Every message of `name`, oldest first.
    pub fn messages(&self, name: &str) -> Vec<Message> {
        self.streams
            .lock()
            .expect("lock")
            .get(name)
            .map(|s| s.messages.clone())
            .unwrap_or_default()
    }
}

impl ExportSource for MemSource {
    fn read_from(&self, stream: &str, from: i64, max: usize) -> Result<Vec<Message>, String> {
        let streams = self.streams.lock().expect("lock");
        let s = streams.get(stream).ok_or("no such stream")?;
        Ok(s.messages
            .iter()
            .filter(|m| m.sequence_number >= from)
            .take(max)
            .cloned()
            .collect())
    }

    fn watch(&self, stream: &str) -> Option<tokio::sync::watch::Receiver<i64>> {
        Some(
            self.streams
                .lock()
                .expect("lock")
                .get(stream)?
                .tx
                .subscribe(),
        )
    }

    fn append(&self, stream: &str, payload: Vec<u8>) -> Result<i64, String> {
        let mut streams = self.streams.lock().expect("lock");
        let s = streams.get_mut(stream).ok_or("no such stream")?;
        let seq = s.next;
        s.next += 1;
        s.messages.push(Message {
            stream_name: stream.to_string(),
            sequence_number: seq,
            ingest_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis() as i64,
            payload,
        });
        s.tx.send_replace(seq);
        Ok(seq)
    }
}

// ---------------------------------------------------------------- stand-in

/// One request the stand-in received (signature already verified).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// What the handler answers: status, JSON body.
pub type Handler = dyn Fn(&Request) -> (u16, String) + Send + Sync;

#[derive(Debug, Default)]
struct StandInState {
    /// Requests answered by the handler, in order.
    requests: Vec<Request>,
    /// Answers given before the handler (faults), in order.
    faults: VecDeque<(u16, String)>,
    faults_served: usize,
    /// Requests refused for their signature, with the reason.
    problems: Vec<String>,
}

/// A loopback AWS stand-in for `service` that checks every request's SigV4
/// signature (computed here from scratch, not with aws-sigv4) before
/// handing it to its handler.
#[derive(Debug)]
pub struct StandIn {
    port: u16,
    state: Arc<Mutex<StandInState>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    pub fn start(port: u16, service: &'static str, handler: Arc<Handler>) -> StandIn {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the stand-in");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(StandInState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (state, handler) = (state.clone(), handler.clone());
                            std::thread::spawn(move || serve(client, service, &state, &*handler));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        StandIn {
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers the next `n` requests with `status` and `body`.
    pub fn fail_next(&self, n: usize, status: u16, body: &str) {
        let mut s = self.state.lock().expect("lock");
        for _ in 0..n {
            s.faults.push_back((status, body.to_string()));
        }
    }

    pub fn faults_served(&self) -> usize {
        self.state.lock().expect("lock").faults_served
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("lock").requests.clone()
    }

    pub fn problems(&self) -> Vec<String> {
        self.state.lock().expect("lock").problems.clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn read_request(client: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = client.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = head_end + 4;
    while buffer.len() < start + length {
        let n = client.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[start..start + length].to_vec();
    buffer.drain(..start + length);
    Some((head, body))
}

fn response(status: u16, body: &str) -> Vec<u8> {
    let kind = if body.starts_with('<') {
        "application/xml"
    } else {
        "application/json"
    };
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nETag: \"etag-{}\"\r\n",
        body.len(),
        body.len()
    );
    if status >= 400 {
        if let Some(code) = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["__type"].as_str().map(str::to_string))
        {
            out.push_str(&format!("x-amzn-ErrorType: {code}\r\n"));
        }
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

fn serve(mut client: TcpStream, service: &str, state: &Mutex<StandInState>, handler: &Handler) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buffer = Vec::new();
    for _ in 0..10_000 {
        let Some((head, body)) = read_request(&mut client, &mut buffer) else {
            return;
        };
        let fault = {
            let mut s = state.lock().expect("lock");
            let f = s.faults.pop_front();
            if f.is_some() {
                s.faults_served += 1;
            }
            f
        };
        let answer = if let Some((status, text)) = fault {
            response(status, &text)
        } else if let Err(why) = verify_sigv4(&head, &body, REGION, service, SECRET_KEY) {
            state.lock().expect("lock").problems.push(why.clone());
            response(
                403,
                &serde_json::json!({"__type": "InvalidSignatureException", "message": why})
                    .to_string(),
            )
        } else {
            let mut line = head.lines().next().unwrap_or_default().split_whitespace();
            let request = Request {
                method: line.next().unwrap_or_default().to_string(),
                path: line.next().unwrap_or_default().to_string(),
                body,
            };
            let (status, text) = handler(&request);
            if status < 300 {
                state.lock().expect("lock").requests.push(request);
            }
            response(status, &text)
        };
        if client.write_all(&answer).is_err() {
            return;
        }
    }
}
