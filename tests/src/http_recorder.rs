//! A small HTTP/1.1 server on loopback that records every request it gets:
//! the stand-in for Twilio, Splunk's HTTP Event Collector and ServiceNow in
//! the tests of the HTTP connectors.
//!
//! It binds `127.0.0.1:0`, answers each request with what a handler says
//! (or with a status the test queued: "5xx or 429 for the next N
//! requests"), closes the connection after each answer (`Connection:
//! close`, so a stop really leaves nothing listening), and can be stopped
//! and started again on the same port to play "endpoint down, then up".
//! Plain std threads: a test drives it from its own thread while the
//! runtime runs in another process. Every read has a timeout.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest request (head and body) the recorder reads.
const MAX_REQUEST: usize = 8 << 20;
/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as the recorder received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The request target: path and query, e.g. `/services/collector`.
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl Recorded {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as `application/x-www-form-urlencoded` pairs, decoded.
    pub fn form(&self) -> Vec<(String, String)> {
        form_decode(&self.text())
    }

    /// The first form field named `name`.
    pub fn form_field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Whether it was answered with a 2xx status.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What the recorder answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json".into(),
            body: body.to_string().into_bytes(),
        }
    }
}

/// Decides the answer to a request the test did not queue a failure for.
pub type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    /// Statuses to answer the next requests with, in order.
    failures: VecDeque<u16>,
    /// Open connections, shut down on stop.
    connections: Vec<TcpStream>,
}

struct Shared {
    state: Mutex<State>,
    running: AtomicBool,
    handler: Handler,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The recording server. Dropping it stops it.
pub struct HttpRecorder {
    shared: Arc<Shared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRecorder")
            .field("port", &self.port)
            .field("running", &self.accept.is_some())
            .finish()
    }
}

impl HttpRecorder {
    /// Starts on a free loopback port, answering with `handler`.
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> HttpRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HTTP recorder");
        let port = listener.local_addr().expect("recorder address").port();
        let mut recorder = HttpRecorder {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                running: AtomicBool::new(false),
                handler: Arc::new(handler),
            }),
            port,
            accept: None,
        };
        recorder.serve(listener);
        recorder
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Answers the next `n` requests with `status` (e.g. 503 or 429).
    pub fn fail_next(&self, n: usize, status: u16) {
        lock(&self.shared.state)
            .failures
            .extend(std::iter::repeat_n(status, n));
    }

    /// Every request so far, failed ones included.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.state).requests.clone()
    }

    /// The requests answered with a 2xx status.
    pub fn delivered(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::succeeded)
            .collect()
    }

    /// Waits (bounded) until `check` holds for the requests so far.
    pub fn wait(
        &self,
        limit: Duration,
        mut check: impl FnMut(&[Recorded]) -> bool,
    ) -> Option<Vec<Recorded>> {
        crate::wait_for(limit, || {
            let got = self.requests();
            check(&got).then_some(got)
        })
    }

    /// Stops listening and closes every open connection: connecting now is
    /// refused.
    pub fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.running.store(false, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
        let _ = accept.join();
        for c in lock(&self.shared.state).connections.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port (bounded retries while the kernel
    /// lets go of it).
    pub fn restart(&mut self) {
        if self.accept.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => {
                    panic!("cannot listen on 127.0.0.1:{} again: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        self.shared.running.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        self.accept = Some(std::thread::spawn(move || {
            for stream in listener.incoming() {
                if !shared.running.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    lock(&shared.state).connections.push(clone);
                }
                let shared = shared.clone();
                std::thread::spawn(move || serve_connection(stream, &shared));
            }
        }));
    }
}

impl Drop for HttpRecorder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let Some(mut request) = read_request(&mut stream) else {
        return;
    };
    let queued = lock(&shared.state).failures.pop_front();
    let reply = match queued {
        Some(status) => Reply::json(
            status,
            &serde_json::json!({ "code": status, "message": "injected failure", "status": status }),
        ),
        None => (shared.handler)(&request),
    };
    request.status = reply.status;
    // Recorded before answering: once a client sees the answer, a test
    // sees the request.
    lock(&shared.state).requests.push(request);
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&reply.body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Reads one request: the head with httparse, then a `Content-Length`
/// body. `None` when the peer closed, timed out or sent something else.
fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = req.method?.to_string();
                let path = req.path?.to_string();
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                if length > MAX_REQUEST {
                    return None;
                }
                let mut body = buf[head_len..].to_vec();
                while body.len() < length {
                    let n = stream.read(&mut chunk).ok()?;
                    if n == 0 {
                        return None;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                body.truncate(length);
                return Some(Recorded {
                    method,
                    path,
                    headers,
                    body,
                    status: 0,
                });
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return None,
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Decodes `a=1&b=x%20y+z` into pairs.
pub fn form_decode(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Authorization` header value of HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A secret resource for a connector's `…SecretArn-ResourceId`.
#[derive(Debug, Clone)]
pub struct SecretSpec {
    /// The group resource's `Id`.
    pub resource_id: String,
    /// The resource's `ARN` (`…:secret:<name>-<suffix>`).
    pub arn: String,
    /// The value put into the store under the ARN's name without its
    /// suffix, or `None` to put nothing.
    pub value: Option<Vec<u8>>,
}

/// The runtime with `eg-fn feed` → an HTTP connector → `eg-fn record`.
#[derive(Debug)]
pub struct ConnectorRig {
    pub rt: crate::Runtime,
    pub feed: std::path::PathBuf,
    pub record: std::path::PathBuf,
    /// The connector's name, for its log.
    pub name: String,
}

impl ConnectorRig {
    /// Starts the runtime with the connector `arn` (NoContainer) taking
    /// `parameters`, fed on `inputs` and recorded on `outputs`, with
    /// `secret` as a group resource (its value put into the store first)
    /// and `evergreen` merged into the core configuration's `evergreen`
    /// section. `Err` when the secret cannot be put (no secret store).
    pub fn start(
        arn: &str,
        parameters: serde_json::Value,
        inputs: &[&str],
        outputs: &[&str],
        secret: &SecretSpec,
        evergreen: serde_json::Value,
    ) -> Result<ConnectorRig, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let feed = dir.path().join("feed.jsonl");
        let record = dir.path().join("record.jsonl");
        let g = ConnectorRig::group(arn, parameters, inputs, outputs, secret, &feed, &record);
        if let Some(value) = &secret.value {
            let name = secret
                .arn
                .rsplit_once(":secret:")
                .map(|(_, n)| n.rsplit_once('-').map_or(n, |(base, _)| base))
                .unwrap_or(&secret.arn);
            crate::put_secret(&dir.path().join("root"), name, value)?;
        }
        let name = evergreen_ipc::manifest::parse_connector_arn(arn)
            .map(|(n, _)| n.to_string())
            .unwrap_or_default();
        let rt = crate::Runtime::start_config_in(
            dir,
            &g,
            &serde_json::json!({ "evergreen": evergreen }),
            &[],
        );
        Ok(ConnectorRig {
            rt,
            feed,
            record,
            name,
        })
    }

    /// The group [`ConnectorRig::start`] runs: `eg-fn feed <feed>` →
    /// connector → `eg-fn record <record>`, the secret resource, the
    /// connector in NoContainer mode.
    pub fn group(
        arn: &str,
        parameters: serde_json::Value,
        inputs: &[&str],
        outputs: &[&str],
        secret: &SecretSpec,
        feed: &std::path::Path,
        record: &std::path::Path,
    ) -> serde_json::Value {
        use crate::{fn_arn, function, group, sub};
        use serde_json::json;
        let mut subs = Vec::new();
        for (i, topic) in inputs.iter().enumerate() {
            subs.push(sub(&format!("in{i}"), &fn_arn("feeder"), topic, arn));
        }
        for (i, topic) in outputs.iter().enumerate() {
            subs.push(sub(&format!("out{i}"), arn, topic, &fn_arn("rec")));
        }
        let mut g = group(
            vec![
                function("feeder", &format!("feed {}", feed.display())),
                function("rec", &format!("record {}", record.display())),
            ],
            subs,
        );
        g["ResourceDefinitionVersion"] = json!({ "Resources": [{
            "Id": secret.resource_id,
            "Name": secret.resource_id,
            "ResourceDataContainer": { "SecretsManagerSecretResourceData": { "ARN": secret.arn } }
        }]});
        let mut parameters = parameters;
        parameters["IsolationMode"] = json!("NoContainer");
        g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
            "Id": "connector", "ConnectorArn": arn, "Parameters": parameters
        }]});
        g
    }

    /// Publishes `payload` (a JSON value, or a string sent as is) on `topic`.
    pub fn send(&self, topic: &str, payload: serde_json::Value) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.feed)
            .expect("feed file");
        let line = serde_json::json!({ "topic": topic, "payload": payload });
        f.write_all(format!("{line}\n").as_bytes())
            .expect("feed write");
    }

    /// The JSON payloads the connector published on `topic`.
    pub fn published(&self, topic: &str) -> Vec<serde_json::Value> {
        crate::records(&self.record)
            .into_iter()
            .filter(|r| r["topic"] == topic)
            .filter_map(|r| serde_json::from_str(r["payload"].as_str()?).ok())
            .collect()
    }

    /// Waits (bounded) for a payload on `topic` that `check` accepts.
    pub fn wait_published(
        &self,
        topic: &str,
        limit: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        crate::wait_for(limit, || self.published(topic).into_iter().find(&check))
    }

    /// The connector's log.
    pub fn log(&self) -> String {
        crate::read(
            &self
                .rt
                .log_path(&format!("user/{}/aws/{}.log", crate::REGION, self.name)),
        )
    }

    /// The connector process's resident memory in KiB, for the record.
    pub fn connector_rss_kb(&self) -> Option<u64> {
        let needle = format!("connector {}", self.name);
        crate::children_of(self.rt.pid())
            .into_iter()
            .find(|pid| crate::cmdline(*pid).contains(&needle))
            .and_then(crate::vm_rss_kb)
    }

    /// The runtime's own log.
    pub fn runtime_log(&self) -> String {
        crate::read(&self.rt.log_path("system/runtime.log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        assert_eq!(
            form_decode("To=%2B15551234567&Body=hot+in+here%21&x="),
            vec![
                ("To".to_string(), "+15551234567".to_string()),
                ("Body".to_string(), "hot in here!".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
        assert_eq!(percent_decode("%41"), "A");
    }
}
