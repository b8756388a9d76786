//! The endpoint's HTTP side: binding `localhost`, accepting connections
//! (one request each, at most `MAX_CONNECTIONS` at once), checking the
//! caller's token and dispatching the path to the log, initialisation,
//! work and invoke handlers.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use evergreen_ipc::LogLevel;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::http::{percent_decode, read_request, Request, Response};
use super::invoke::{fetch, invoke};
use super::work::{next_work, work_result};
use super::{note, FunctionLink, LambdaHub, MAX_BODY};

const API_PREFIX: &str = "/2016-11-01/";
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 512;
/// Longest log message accepted from the log endpoint.
const MAX_LOG_MESSAGE: usize = 16 << 10;

/// Binds the endpoint on `localhost`: 127.0.0.1 and, where the host has
/// IPv6, ::1 (the SDK connects to the name `localhost`, which may resolve
/// to either). Fails only if 127.0.0.1 cannot be bound.
pub async fn bind(port: u16) -> std::io::Result<Vec<TcpListener>> {
    let v4 = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let mut listeners = vec![v4];
    match TcpListener::bind(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))).await {
        Ok(v6) => listeners.push(v6),
        Err(e) => log::info!("Lambda IPC endpoint: not listening on [::1]:{port}: {e}"),
    }
    Ok(listeners)
}

/// Serves the endpoint on the current (actor system) thread until the
/// listeners fail.
pub fn serve(hub: Rc<LambdaHub>, listeners: Vec<TcpListener>) {
    for listener in listeners {
        let hub = hub.clone();
        actix_rt::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, usually: wait a little rather
                        // than spin.
                        log::warn!("Lambda IPC endpoint: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if hub.connections.get() >= MAX_CONNECTIONS {
                    drop(stream);
                    continue;
                }
                hub.connections.set(hub.connections.get() + 1);
                let hub = hub.clone();
                actix_rt::spawn(async move {
                    connection(&hub, stream).await;
                    hub.connections.set(hub.connections.get().saturating_sub(1));
                });
            }
        });
    }
}

async fn connection(hub: &Rc<LambdaHub>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.split();
    let req = match read_request(&mut rd, MAX_BODY).await {
        Ok(req) => req,
        Err(e) => {
            if let Some(status) = e.status() {
                let _ = Response::error(status, &e.to_string()).write(&mut wr).await;
            }
            return;
        }
    };
    let response = tokio::select! {
        r = handle(hub, &req) => r,
        // One request per connection: anything readable now is the client
        // closing (or junk); either way nobody waits for the answer.
        _ = client_gone(&mut rd) => return,
    };
    let _ = response.write(&mut wr).await;
}

async fn client_gone<R: tokio::io::AsyncRead + Unpin>(rd: &mut R) {
    let mut byte = [0u8; 1];
    let _ = rd.read(&mut byte).await;
}

/// Answers one request.
async fn handle(hub: &Rc<LambdaHub>, req: &Request) -> Response {
    let Some(token) = req.header("authorization").filter(|t| !t.is_empty()) else {
        return Response::error(403, "missing Authorization token");
    };
    let Some(caller) = hub.tokens.borrow().get(token).cloned() else {
        return Response::error(403, "unknown Authorization token");
    };
    let path = match percent_decode(&req.path) {
        Ok(p) => p,
        Err(e) => return Response::error(400, &e.to_string()),
    };
    let Some(rest) = path.strip_prefix(API_PREFIX) else {
        return Response::error(404, &format!("no such resource: {path}"));
    };
    let rest = rest.split('?').next().unwrap_or_default();
    let init_failed = rest.ends_with("/initialized")
        && serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.get("Success").and_then(Value::as_bool))
            == Some(false);
    if !init_failed {
        ready(&caller, token);
    }
    if rest.trim_end_matches('/') == "cloudwatch/logs" {
        return match req.method.as_str() {
            "POST" => logs(&caller, &req.body),
            _ => Response::error(405, "use POST for logs"),
        };
    }
    let Some(rest) = rest.strip_prefix("functions/") else {
        return Response::error(404, &format!("no such resource: {path}"));
    };
    if let Some(arn) = rest.strip_suffix("/work") {
        if !own(&caller, arn) {
            return Response::error(403, "a function can only take and answer its own work");
        }
        return match req.method.as_str() {
            "GET" => next_work(&caller, token).await,
            "POST" => work_result(hub, &caller, token, req),
            _ => Response::error(405, "use GET or POST on …/work"),
        };
    }
    if let Some(arn) = rest.strip_suffix("/initialized") {
        if !own(&caller, arn) {
            return Response::error(403, "a function can only initialise itself");
        }
        return initialized(&caller, &req.body);
    }
    match req.method.as_str() {
        "POST" => invoke(hub, &caller, rest, req).await,
        "GET" => fetch(hub, &caller, req).await,
        _ => Response::error(405, "use POST to invoke and GET to fetch a result"),
    }
}

fn own(caller: &FunctionLink, arn: &str) -> bool {
    arn == caller.arn || arn == caller.unqualified
}

/// The worker talked to us: it is up.
fn ready(link: &FunctionLink, token: &str) {
    let mut slot = link.worker.borrow_mut();
    if let Some(worker) = slot.as_mut().filter(|w| w.token == token && !w.ready) {
        worker.ready = true;
        (worker.on_ready)();
    }
}

fn logs(caller: &FunctionLink, body: &[u8]) -> Response {
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return Response::error(400, "the log request body is not JSON");
    };
    let Some(events) = doc.get("logEvents").and_then(Value::as_array) else {
        return Response::error(400, "logEvents is missing or not a list");
    };
    for event in events {
        let Some(message) = event.get("message").and_then(Value::as_str) else {
            return Response::error(400, "a logEvents entry has no message string");
        };
        let mut end = message.len().min(MAX_LOG_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        note(caller, LogLevel::Info, message[..end].trim_end());
    }
    Response::new(200).body("{}")
}

fn initialized(caller: &FunctionLink, body: &[u8]) -> Response {
    let doc: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Response::error(400, "the initialisation result is not JSON"),
    };
    match doc.get("Success").and_then(Value::as_bool) {
        Some(true) => Response::new(202),
        Some(false) => {
            let why = doc.get("Response").and_then(Value::as_str).unwrap_or("");
            note(
                caller,
                LogLevel::Error,
                &format!("initialisation failed: {why}"),
            );
            Response::new(202)
        }
        None => Response::error(400, "Success is missing or not a boolean"),
    }
}
