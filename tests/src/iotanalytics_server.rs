//! A local stand-in for AWS IoT Analytics' `BatchPutMessage`, because
//! moto 5.2.1 does not implement IoT Analytics.
//!
//! It checks what the real service checks of a request: `POST
//! /messages/batch`, a SigV4 `Authorization` for service `iotanalytics`
//! (verified here from the canonical request, independently of the
//! `aws-sigv4` crate that made it), and the body's shape (`channelName`,
//! 1–100 `messages` with unique `messageId`s and base64 `payload`s). It
//! answers as the service does: `{"batchPutMessageErrorEntries": []}`, or
//! 404 `ResourceNotFoundException` for a channel it does not have, 403
//! `InvalidSignatureException`, 400 `InvalidRequestException`. It records
//! every accepted message, and can be told to answer the next requests
//! with a fault (503, throttling). std threads, bounded I/O.

use std::collections::{HashSet, VecDeque};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::fault_proxy::{header, read_request, response, Fault};

/// One message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub channel: String,
    pub message_id: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    channels: HashSet<String>,
    received: Vec<Received>,
    /// Sizes of the accepted batches, in order.
    batches: Vec<(String, usize)>,
    faults: VecDeque<Fault>,
    faults_served: usize,
    /// Requests refused for their signature or shape, with the reason.
    problems: Vec<String>,
}

/// The server; dropping it stops accepting connections.
#[derive(Debug)]
pub struct IotAnalyticsServer {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl IotAnalyticsServer {
    /// A server on `127.0.0.1:port` (0: a free port) with these channels,
    /// accepting requests signed with `secret_key` for `region`.
    pub fn start_on(
        port: u16,
        region: &str,
        secret_key: &str,
        channels: &[&str],
    ) -> std::io::Result<IotAnalyticsServer> {
        IotAnalyticsServer::start_failing(port, region, secret_key, channels, &[])
    }

    /// Like [`IotAnalyticsServer::start_on`], answering the first requests
    /// with `faults` (set before the port opens, so no request slips by).
    pub fn start_failing(
        port: u16,
        region: &str,
        secret_key: &str,
        channels: &[&str],
        faults: &[Fault],
    ) -> std::io::Result<IotAnalyticsServer> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            channels: channels.iter().map(|c| c.to_string()).collect(),
            faults: faults.iter().cloned().collect(),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let keys = Arc::new((region.to_string(), secret_key.to_string()));
        let accept = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let state = state.clone();
                            let keys = keys.clone();
                            std::thread::spawn(move || serve(client, &state, &keys.0, &keys.1));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(IotAnalyticsServer {
            port,
            state,
            stop,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers the next `n` requests with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        lock(&self.state)
            .faults
            .extend(std::iter::repeat_n(fault, n));
    }

    pub fn faults_served(&self) -> usize {
        lock(&self.state).faults_served
    }

    /// The accepted messages, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }

    /// `(channel, messages)` of each accepted batch, in order.
    pub fn batches(&self) -> Vec<(String, usize)> {
        lock(&self.state).batches.clone()
    }

    /// Why requests were refused (bad signature or shape); empty when all
    /// were well-formed.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.state).problems.clone()
    }
}

impl Drop for IotAnalyticsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut client: TcpStream, state: &Mutex<State>, region: &str, secret: &str) {
    use std::io::Write;
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = client.set_write_timeout(Some(Duration::from_secs(10)));
    let mut buffer = Vec::new();
    for _ in 0..10_000 {
        let Some((head, body)) = read_request(&mut client, &mut buffer) else {
            return;
        };
        let answer = handle(state, region, secret, &head, &body);
        if client.write_all(&answer).is_err() {
            return;
        }
    }
}

fn json_error(status: u16, code: &str, message: &str) -> Vec<u8> {
    response(
        status,
        &[
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", code),
        ],
        json!({ "message": message }).to_string().as_bytes(),
    )
}

fn handle(state: &Mutex<State>, region: &str, secret: &str, head: &str, body: &[u8]) -> Vec<u8> {
    if let Some(f) = {
        let mut s = lock(state);
        let f = s.faults.pop_front();
        if f.is_some() {
            s.faults_served += 1;
        }
        f
    } {
        return response(
            f.status,
            &[("Content-Type", &f.content_type)],
            f.body.as_bytes(),
        );
    }
    let problem = |why: String, answer: Vec<u8>| {
        lock(state).problems.push(why);
        answer
    };
    let request_line = head.lines().next().unwrap_or_default();
    if request_line.split_whitespace().take(2).collect::<Vec<_>>() != ["POST", "/messages/batch"] {
        return problem(
            format!("unexpected request {request_line:?}"),
            json_error(404, "UnknownOperationException", "not BatchPutMessage"),
        );
    }
    if let Err(why) = verify_sigv4(head, body, region, "iotanalytics", secret) {
        return problem(
            format!("signature: {why}"),
            json_error(403, "InvalidSignatureException", &why),
        );
    }
    let bad = |why: String| {
        problem(
            why.clone(),
            json_error(400, "InvalidRequestException", &why),
        )
    };
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return bad("body is not JSON".into());
    };
    let Some(channel) = request["channelName"].as_str() else {
        return bad("channelName missing".into());
    };
    let Some(messages) = request["messages"].as_array() else {
        return bad("messages missing".into());
    };
    if messages.is_empty() || messages.len() > 100 {
        return bad(format!("{} messages in a batch", messages.len()));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let mut batch = Vec::new();
    let mut ids = HashSet::new();
    for m in messages {
        let (Some(id), Some(payload)) = (m["messageId"].as_str(), m["payload"].as_str()) else {
            return bad(format!("message without messageId or payload: {m}"));
        };
        if !ids.insert(id) {
            return bad(format!("messageId {id} twice in a batch"));
        }
        let Ok(payload) = engine.decode(payload) else {
            return bad(format!("payload of {id} is not base64"));
        };
        batch.push(Received {
            channel: channel.to_string(),
            message_id: id.to_string(),
            payload,
        });
    }
    let mut s = lock(state);
    if !s.channels.contains(channel) {
        return json_error(
            404,
            "ResourceNotFoundException",
            "A resource with the specified name could not be found.",
        );
    }
    s.batches.push((channel.to_string(), batch.len()));
    s.received.extend(batch);
    response(
        200,
        &[("Content-Type", "application/json")],
        br#"{"batchPutMessageErrorEntries":[]}"#,
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC-SHA256 (RFC 2104), block size 64.
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// Checks a request's SigV4 `Authorization` header (AWS's "Signature
/// Version 4 signing process", header form; the query sorted, bare names as `name=`).
pub fn verify_sigv4(
    head: &str,
    body: &[u8],
    region: &str,
    service: &str,
    secret: &str,
) -> Result<(), String> {
    let auth = header(head, "authorization").ok_or("no Authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let field = |name: &str| {
        rest.split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(name))
            .ok_or(format!("no {name} in Authorization"))
    };
    let credential = field("Credential=")?;
    let signed_headers = field("SignedHeaders=")?;
    let signature = field("Signature=")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [_key, date, cred_region, cred_service, "aws4_request"] = parts.as_slice() else {
        return Err(format!("bad credential scope {credential}"));
    };
    if *cred_region != region || *cred_service != service {
        return Err(format!(
            "scope {cred_region}/{cred_service}, expected {region}/{service}"
        ));
    }
    let amz_date = header(head, "x-amz-date").ok_or("no X-Amz-Date")?;
    if !amz_date.starts_with(date) {
        return Err(format!("X-Amz-Date {amz_date} is not on {date}"));
    }
    let mut request_line = head.lines().next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default();
    let target = request_line.next().unwrap_or_default();
    let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    // The canonical query: every parameter as `name=value` (S3's `?uploads`
    // is `uploads=`), sorted.
    let mut params: Vec<String> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p.contains('=') {
                p.to_string()
            } else {
                format!("{p}=")
            }
        })
        .collect();
    params.sort();
    let query = params.join("&");
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = header(head, name).ok_or(format!("signed header {name} missing"))?;
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    if !signed_headers.split(';').any(|h| h == "host") {
        return Err("host is not signed".into());
    }
    let canonical = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        hex(&Sha256::digest(body))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex(&hmac(&key, to_sign.as_bytes()));
    if expected == signature {
        Ok(())
    } else {
        Err(format!(
            "signature {signature} does not match the request (expected {expected})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// AWS's documented example (IAM ListUsers, "Create a signed request").
    #[test]
    fn the_aws_example_signature_verifies() {
        let head = "GET /?Action=ListUsers&Version=2010-05-08 HTTP/1.1\r\n\
            Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
            Host: iam.amazonaws.com\r\n\
            X-Amz-Date: 20150830T123600Z\r\n\
            Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
            SignedHeaders=content-type;host;x-amz-date, \
            Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
        verify_sigv4(
            head,
            b"",
            "us-east-1",
            "iam",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
        .expect("AWS's example verifies");
        let err = verify_sigv4(
            head,
            b"x",
            "us-east-1",
            "iam",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
        .expect_err("another body");
        assert!(err.contains("does not match"), "{err}");
    }
}
