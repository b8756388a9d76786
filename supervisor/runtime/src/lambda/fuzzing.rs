//! Entry points for the fuzz targets of `tests/fuzz` (hidden from the docs; not an API other
//! crates may use): the endpoint's parsing of what a Python function sends, run on bytes
//! instead of a socket. It owns no logic: each function is a thin call into the code the
//! endpoint runs, so the fuzzer exercises exactly that code.

use serde_json::{Map, Value};
use tokio::io::AsyncRead;

use super::http::{percent_decode, read_body, read_head, MAX_HEADERS};

/// A request the endpoint would hand to its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub method: String,
    pub path: String,
    /// Lower-cased names, trimmed values, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why no request was read: the status the endpoint would answer (`None`: it closes the
/// connection without one) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: Option<u16>,
    pub message: String,
}

/// Most headers the endpoint accepts in one request.
pub const MAX_REQUEST_HEADERS: usize = MAX_HEADERS;

/// Reads one request as a connection does: the head (at most `max_head` bytes), then the
/// body (at most `max_body` bytes, announced by `Content-Length`).
pub async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_head: usize,
    max_body: usize,
) -> Result<Parsed, Refused> {
    let refused = |e: super::http::HttpError| Refused {
        status: e.status(),
        message: e.to_string(),
    };
    let head = read_head(reader, max_head, max_body)
        .await
        .map_err(refused)?;
    let request = read_body(reader, head).await.map_err(refused)?;
    Ok(Parsed {
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: request.body,
    })
}

/// The request path with its `%XX` escapes decoded, as the routes see it.
pub fn decode_path(path: &str) -> Result<String, String> {
    percent_decode(path).map_err(|e| e.to_string())
}

/// The `custom` object of an `X-Amz-Client-Context` header (base64 JSON), as an invoke of
/// `GGRouter` or `GGShadowService` reads it.
pub fn client_context(header: &str) -> Result<Map<String, Value>, String> {
    super::invoke::custom_context(header).map_err(|e| e.to_string())
}
