//! The read-only status page (`evergreen.statusPage`, off unless set): one self-contained HTML
//! page a field technician opens on a laptop, and the JSON document it polls
//! (`GET /api/status`) to refresh live. It shows what `evergreen status` shows — the runtime,
//! every component with its state, restarts, memory, CPU, messages and a sparkline of its
//! message rates, the cloud spool — plus the recent deployments and the tails of the logs.
//!
//! It owns the HTTP listener, the access token, the sampler that feeds the sparklines and the
//! page itself (HTML, CSS and JS embedded in the binary: gateways are often offline, so
//! nothing is fetched from elsewhere). It must never change the runtime: it answers `GET`
//! only (405 otherwise), reads the status through [`ControlState`] as the metrics endpoint
//! does, and has no action of any kind.
//!
//! # Access
//!
//! Every answer but a 405, 404 or 400 needs the token: as `?token=` (the first visit; the
//! answer is a redirect to `/` that sets it as an `HttpOnly`, `SameSite=Strict` cookie, so the
//! token leaves the address bar and the history), as that cookie, or as an
//! `Authorization: Bearer` header (scripts). Without it: 401. The configuration refuses an
//! address beyond loopback without a configured token; a generated one lives in
//! `<root>/status-page.token` (0600) and is never logged: `evergreen status --page-url` asks
//! the runtime for the URL over the control socket, whose peer check decides who may have it.
//!
//! # What the browser is allowed
//!
//! Log lines and component names are untrusted text. The page's script puts them into the
//! document only as text nodes (never as markup), the JSON has `<`, `>` and `&` escaped, and
//! every answer carries a Content-Security-Policy that allows only the page's own inline
//! script and style (by hash: no `unsafe-inline`, no `unsafe-eval`), connections to this
//! origin, and no framing; `X-Content-Type-Options: nosniff`, `Cache-Control: no-store`.
//!
//! # Bounds
//!
//! As the metrics endpoint: one request per connection, its head at most `MAX_HEAD` bytes
//! within `REQUEST_TIMEOUT`, the answer written within `WRITE_TIMEOUT`; at most
//! `MAX_CONNECTIONS` connections at once (more get a 503). After its answer a connection's
//! remaining input is drained for at most `LINGER` (so the answer is not lost to a reset). Log
//! tails are bounded in lines and bytes (see `snapshot`).

mod history;
mod http;
mod snapshot;
pub mod token;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::control::ControlState;
use history::{Counters, History};
use http::{Head, Response, COOKIE};

pub use token::{TokenError, TOKEN_FILE};

/// Longest request head read.
const MAX_HEAD: usize = 8 << 10;
/// How long a client has to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, and how much, a closing connection's input is drained (see `linger`).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 << 10;
/// Connections served at once. A technician's browser opens a few; the bound keeps a
/// misbehaving client from holding the runtime's file descriptors.
const MAX_CONNECTIONS: usize = 16;

/// The page (HTML with the CSS and JS put in at start, see [`assets`]).
const PAGE_HTML: &str = include_str!("page.html");
const PAGE_CSS: &str = include_str!("page.css");
const PAGE_JS: &str = include_str!("page.js");
/// What a browser without the token sees.
const UNAUTHORIZED_HTML: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Evergreen status: token needed</title></head><body><h1>Token needed</h1>\
<p>This status page needs its token. On the gateway, run <code>evergreen status --page-url</code> \
and open the URL it prints.</p></body></html>\n";

/// What the page is served with.
#[derive(Clone)]
pub struct Settings {
    pub address: SocketAddr,
    pub token: String,
    /// Seconds between two samples of the message counters.
    pub sample_every: Duration,
    /// Points per sparkline.
    pub samples: usize,
    /// The page's title: the core thing's name.
    pub title: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("address", &self.address)
            .field("sample_every", &self.sample_every)
            .field("samples", &self.samples)
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

/// The page's URL with its token: shown only to whoever asks through the control socket, so
/// its `Debug` leaves the token out (a state printed in a log must not carry it).
#[derive(Clone, PartialEq, Eq)]
pub struct PageUrl(String);

impl PageUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let base = self
            .0
            .split_once("?token=")
            .map_or(self.0.as_str(), |(b, _)| b);
        write!(f, "PageUrl({base}?token=<redacted>)")
    }
}

/// Why the page could not be served.
#[derive(Debug, thiserror::Error)]
pub enum StatusPageError {
    #[error("cannot serve the status page on evergreen.statusPage.address {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// A bound page, not yet serving.
#[derive(Debug)]
pub struct StatusPage {
    listener: tokio::net::TcpListener,
    settings: Settings,
    address: SocketAddr,
}

impl StatusPage {
    /// Binds the listener, so a taken or bad address is an error at start.
    pub async fn bind(settings: Settings) -> Result<StatusPage, StatusPageError> {
        let bind_err = |source| StatusPageError::Bind {
            address: settings.address,
            source,
        };
        let listener = tokio::net::TcpListener::bind(settings.address)
            .await
            .map_err(bind_err)?;
        let address = listener.local_addr().map_err(bind_err)?;
        Ok(StatusPage {
            listener,
            settings,
            address,
        })
    }

    /// Where it listens (the port chosen when the configuration says 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The URL to open, with the token: for `evergreen status --page-url`, never for a log.
    pub fn url(&self) -> PageUrl {
        PageUrl(format!(
            "http://{}/?token={}",
            self.address, self.settings.token
        ))
    }

    /// Starts the sampler and the server on the current actix thread; both run until the
    /// process ends.
    pub fn serve(self, state: ControlState) {
        let StatusPage {
            listener,
            settings,
            address,
        } = self;
        tracing::info!(
            "status page on http://{address}/ (read-only; `evergreen status --page-url` prints the URL with its token)"
        );
        let shared = Rc::new(Shared {
            history: RefCell::new(History::new(settings.samples)),
            settings,
            state,
            active: Cell::new(0),
        });
        actix_rt::spawn(sample(shared.clone()));
        actix_rt::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        // Taken here, not in the task, so the count is exact.
                        let slot = Slot::take(&shared);
                        actix_rt::spawn(connection(stream, slot, shared.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("status page: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
}

/// What the tasks share, all on the actors' thread.
#[derive(Debug)]
struct Shared {
    settings: Settings,
    state: ControlState,
    history: RefCell<History>,
    active: Cell<usize>,
}

/// One served connection; given back when dropped.
struct Slot(Rc<Shared>);

impl Slot {
    fn take(shared: &Rc<Shared>) -> Option<Slot> {
        let n = shared.active.get();
        (n < MAX_CONNECTIONS).then(|| {
            shared.active.set(n + 1);
            Slot(shared.clone())
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
    }
}

/// Records every component's counters at each interval, for the sparklines.
async fn sample(shared: Rc<Shared>) {
    let mut tick = tokio::time::interval(shared.settings.sample_every);
    // After a stall, one sample, not a burst: the rates divide by the measured gap anyway.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let status = match shared.state.status().await {
            Ok(status) => status,
            Err(e) => {
                tracing::debug!("status page: no sample: {e}");
                continue;
            }
        };
        let proc_root = &shared.state.proc_root;
        let counters: BTreeMap<String, Counters> = status
            .components
            .iter()
            .map(|c| {
                let cpu = c.pid.and_then(|pid| {
                    crate::metrics::cpu_seconds(proc_root, pid).map(|secs| (pid, secs))
                });
                let counters = Counters {
                    messages_in: c.messages_in,
                    messages_out: c.messages_out,
                    cpu,
                };
                (c.arn.clone(), counters)
            })
            .collect();
        shared
            .history
            .borrow_mut()
            .record(Duration::from_millis(status.uptime_ms), counters);
    }
}

async fn connection(mut stream: TcpStream, slot: Option<Slot>, shared: Rc<Shared>) {
    let response = match slot {
        Some(_) => match read_head(&mut stream).await {
            Ok(Some(raw)) => match http::parse_head(&raw) {
                Some(head) => answer(&head, &shared).await,
                None => Response::text("400 Bad Request", "not an HTTP/1.x request\n"),
            },
            Ok(None) => Response::text(
                "431 Request Header Fields Too Large",
                "request head too large\n",
            ),
            // Silent, slow or gone: nobody to answer.
            Err(_) => return,
        },
        None => Response::text(
            "503 Service Unavailable",
            "too many connections; try again\n",
        )
        .with("Retry-After", "1".into()),
    };
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        linger(&mut stream).await;
    }
}

/// Reads and drops what the client still sends (the rest of a refused head, a request never
/// read because all slots were taken) until it closes, for at most `LINGER` and
/// `LINGER_BYTES`: closing a socket with unread input sends a reset, which can destroy the
/// answer before the client has read it.
async fn linger(stream: &mut TcpStream) {
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// The request head, `None` when it is longer than `MAX_HEAD`; an error when the client is
/// silent for `REQUEST_TIMEOUT` or goes away.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                head.truncate(end + 2);
                return Ok(Some(head));
            }
            if head.len() > MAX_HEAD {
                return Ok(None);
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// The answer to one request.
async fn answer(head: &Head, shared: &Shared) -> Response {
    if head.method != "GET" {
        return Response::text("405 Method Not Allowed", "read-only: GET only\n")
            .with("Allow", "GET".into());
    }
    let token = &shared.settings.token;
    let authorized = head.tokens().any(|t| token::matches(t, token));
    match head.path.as_str() {
        "/" => match &head.query_token {
            // The first visit: keep the token in a cookie and out of the address bar.
            Some(t) if token::matches(t, token) => Response::text("303 See Other", "see /\n")
                .with("Location", "/".into())
                .with(
                    "Set-Cookie",
                    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"),
                ),
            _ if head.query_token.is_none() && authorized => {
                let assets = assets();
                let mut page = Response::new(
                    "200 OK",
                    "text/html; charset=utf-8",
                    assets.html.as_bytes().to_vec(),
                );
                page.csp = assets.csp.clone();
                page
            }
            _ => unauthorized("text/html; charset=utf-8", UNAUTHORIZED_HTML),
        },
        "/api/status" if authorized => match snapshot(shared).await {
            Ok(json) => Response::new(
                "200 OK",
                "application/json; charset=utf-8",
                json.into_bytes(),
            ),
            Err(e) => Response::new(
                "503 Service Unavailable",
                "application/json; charset=utf-8",
                http_error_json(&e).into_bytes(),
            ),
        },
        "/api/status" => unauthorized(
            "application/json; charset=utf-8",
            "{\"error\":\"a token is needed: evergreen status --page-url prints the URL\"}\n",
        ),
        _ => Response::text("404 Not Found", "not found\n"),
    }
}

fn unauthorized(content_type: &'static str, body: &str) -> Response {
    Response::new("401 Unauthorized", content_type, body.as_bytes().to_vec())
        .with("WWW-Authenticate", "Bearer realm=\"evergreen\"".into())
}

fn http_error_json(e: &str) -> String {
    snapshot::escape_markup(&serde_json::json!({ "error": e }).to_string())
}

/// The document of `/api/status` now, or why there is none.
async fn snapshot(shared: &Shared) -> Result<String, String> {
    let status = shared.state.status().await?;
    let deployments = shared
        .state
        .deployer
        .as_ref()
        .and_then(|d| d.history().ok())
        .unwrap_or_default();
    let sample_secs = shared.settings.sample_every.as_secs().max(1);
    let mut snap = snapshot::build(
        &shared.settings.title,
        sample_secs,
        shared.settings.samples,
        status,
        &shared.history.borrow(),
        deployments,
    );
    // The logs are files: read on the blocking pool, not on the actors' thread.
    tokio::task::spawn_blocking(move || {
        snap.read_logs();
        snap.to_json().map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("reading the logs failed: {e}"))?
}

/// The page with its style and script put in, and the policy that allows exactly those.
#[derive(Debug)]
struct Assets {
    html: String,
    csp: String,
}

fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let hash = |text: &str| {
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text))
        };
        Assets {
            html: PAGE_HTML
                .replace("/*STYLE*/", PAGE_CSS)
                .replace("/*SCRIPT*/", PAGE_JS),
            csp: format!(
                "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
                 connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
                hash(PAGE_JS),
                hash(PAGE_CSS)
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_left_out_of_debug_output() {
        let url = PageUrl("http://127.0.0.1:1/?token=s3cr3t-s3cr3t".into());
        assert_eq!(
            format!("{url:?}"),
            "PageUrl(http://127.0.0.1:1/?token=<redacted>)"
        );
        let settings = Settings {
            address: "127.0.0.1:1".parse().expect("addr"),
            token: "s3cr3t-s3cr3t".into(),
            sample_every: Duration::from_secs(1),
            samples: 60,
            title: "gw".into(),
        };
        assert!(!format!("{settings:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_page_is_self_contained_and_its_policy_names_its_inline_code() {
        let a = assets();
        assert!(a.html.contains(PAGE_JS) && a.html.contains(PAGE_CSS));
        assert!(!a.html.contains("/*STYLE*/") && !a.html.contains("/*SCRIPT*/"));
        for external in ["src=\"http", "href=\"http", "@import", "url(", "//cdn"] {
            assert!(!a.html.contains(external), "{external}");
        }
        // One script and one style element, the ones hashed.
        assert_eq!(a.html.matches("<script").count(), 1);
        assert_eq!(a.html.matches("<style").count(), 1);
        for forbidden in ["unsafe-inline", "unsafe-eval", "*"] {
            assert!(!a.csp.contains(forbidden), "{forbidden}: {}", a.csp);
        }
        assert!(a.csp.contains("frame-ancestors 'none'"));
        // Nothing in the script turns text into markup or code.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "Function(",
        ] {
            assert!(!PAGE_JS.contains(sink), "{sink}");
        }
    }
}
