//! The small HTTP/1.1 layer of the Lambda IPC endpoint: reads one bounded
//! request from a connection and writes one response. It knows nothing of
//! functions or routes.
//!
//! One request per connection: the SDK's `urllib` sends `Connection: close`
//! on every request, so keep-alive would buy nothing and would need a
//! second set of bounds. The head and the body are read apart
//! ([`read_head`], [`read_body`]) so the server can check the caller's
//! token in between and never read a body for an unknown caller. Heads are
//! limited to the caller's byte limit and [`MAX_HEADERS`] headers; bodies
//! need a `Content-Length` (chunked bodies are refused: `urllib` never sends
//! them for a bytes body) no larger than the caller's limit, and are held
//! only as far as they arrived. Every malformed request is an [`HttpError`]
//! that maps to a 4xx status, never a panic.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest request head (request line and headers) by default
/// (`evergreen.lambdaEndpoint.maxHeadBytes`).
pub(crate) const MAX_HEAD: usize = 16 << 10;
/// Most headers accepted in one request; `urllib` sends about eight.
pub(crate) const MAX_HEADERS: usize = 32;

/// One parsed request. Header names are lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lower case), if any.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("connection closed before a complete request")]
    Closed,
    #[error("cannot read the request: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request head larger than {0} bytes or more than {MAX_HEADERS} headers")]
    HeadTooLarge(usize),
    #[error("request body of {0} bytes is larger than the limit of {1} bytes")]
    BodyTooLarge(u64, usize),
    #[error("{0}")]
    Unsupported(&'static str),
}

impl HttpError {
    /// The status to answer with, if the connection can still take one.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            HttpError::Closed | HttpError::Io(_) => None,
            HttpError::Malformed(_) => Some(400),
            HttpError::HeadTooLarge(_) => Some(431),
            HttpError::BodyTooLarge(..) => Some(413),
            HttpError::Unsupported(_) => Some(501),
        }
    }
}

/// A request whose head was read and whose body was not (yet).
#[derive(Debug)]
pub(crate) struct Head {
    /// The request, its body empty.
    pub request: Request,
    /// The body's length, at most the limit given to [`read_head`].
    pub length: usize,
    /// Bytes read past the head: the start of the body.
    pub rest: Vec<u8>,
}

/// Reads one request, head then body (for tests and callers that need no
/// check in between).
#[cfg(test)]
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_body: usize,
) -> Result<Request, HttpError> {
    let head = read_head(reader, MAX_HEAD, max_body).await?;
    read_body(reader, head).await
}

/// Reads a request's head. It is parsed as soon as it is complete, so a
/// client can never make this buffer more than `max_head` bytes; a
/// `Content-Length` over `max_body` is refused here, before any of the body
/// is read.
pub(crate) async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_head: usize,
    max_body: usize,
) -> Result<Head, HttpError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (head_len, method, path, headers) = loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let method = req.method.unwrap_or_default().to_string();
                let path = req.path.unwrap_or_default().to_string();
                let mut headers = Vec::with_capacity(req.headers.len());
                for h in req.headers.iter() {
                    let value = std::str::from_utf8(h.value).map_err(|_| {
                        HttpError::Malformed(format!("header {} is not UTF-8", h.name))
                    })?;
                    headers.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
                }
                break (n, method, path, headers);
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge(max_head)),
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        }
        if buf.len() >= max_head {
            return Err(HttpError::HeadTooLarge(max_head));
        }
        let room = (max_head - buf.len()).min(chunk.len());
        let n = reader.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(HttpError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    if find("transfer-encoding").is_some() {
        return Err(HttpError::Unsupported(
            "Transfer-Encoding is not supported: send a Content-Length",
        ));
    }
    let length: u64 = match find("content-length") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| HttpError::Malformed(format!("Content-Length {v:?} is not a number")))?,
    };
    if length > max_body as u64 {
        return Err(HttpError::BodyTooLarge(length, max_body));
    }
    // Bounded by max_body just above.
    let length = length as usize;
    let rest = buf.split_off(head_len);
    Ok(Head {
        request: Request {
            method,
            path,
            headers,
            body: Vec::new(),
        },
        length,
        rest,
    })
}

/// Reads the body of `head`. The buffer grows as bytes arrive (never to
/// the announced length at once), so a client that announces a large body
/// and stalls holds only what it sent.
pub(crate) async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    head: Head,
) -> Result<Request, HttpError> {
    let Head {
        mut request,
        length,
        rest,
    } = head;
    let mut body = rest;
    body.truncate(length);
    let missing = (length - body.len()) as u64;
    if missing > 0 {
        reader.take(missing).read_to_end(&mut body).await?;
        if body.len() < length {
            return Err(HttpError::Closed);
        }
    }
    request.body = body;
    Ok(request)
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// An error in the shape Lambda uses: `{"errorMessage": …}`.
    pub(crate) fn error(status: u16, message: &str) -> Self {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "errorMessage": message }).to_string())
    }

    /// Writes the response and flushes; the connection is closed after.
    pub(crate) async fn write<W: AsyncWrite + Unpin>(&self, writer: &mut W) -> std::io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            // Values come from our own code or from a caller's header that
            // was already parsed as one line; strip line breaks anyway so no
            // value can start another header.
            let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&self.body).await?;
        writer.flush().await
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Why a request path could not be decoded (answered 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    #[error("bad %-escape in {0:?}")]
    BadEscape(String),
    #[error("path {0:?} is not UTF-8")]
    NotUtf8(String),
}

/// Decodes `%XX` escapes in a path (an ARN's `:` may arrive as `%3A`).
pub(crate) fn percent_decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| PathError::BadEscape(path.to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8(path.to_owned()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (the client context's encoding).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` when malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character cannot encode a byte.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &[u8], max: usize) -> Result<Request, HttpError> {
        let mut r = raw;
        read_request(&mut r, max).await
    }

    #[tokio::test]
    async fn reads_a_request_with_body_and_lowercases_headers() {
        let req = parse(
            b"POST /2016-11-01/functions/arn:aws:lambda:::function:GGRouter HTTP/1.1\r\n\
              Authorization: tok\r\nX-Amz-Invocation-Type: Event\r\nContent-Length: 5\r\n\r\nhello",
            100,
        )
        .await
        .expect("parsed");
        assert_eq!(req.method, "POST");
        assert!(req.path.ends_with("GGRouter"));
        assert_eq!(req.header("authorization"), Some("tok"));
        assert_eq!(req.header("x-amz-invocation-type"), Some("Event"));
        assert_eq!(req.body, b"hello");
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_bound_or_parse() {
        let big = parse(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 100).await;
        assert_eq!(big.expect_err("too big").status(), Some(413));
        let chunked = parse(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            100,
        )
        .await;
        assert_eq!(chunked.expect_err("chunked").status(), Some(501));
        let garbage = parse(b"\x01\x02 nonsense\r\n\r\n", 100).await;
        assert_eq!(garbage.expect_err("garbage").status(), Some(400));
        let length = parse(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 100).await;
        assert_eq!(length.expect_err("length").status(), Some(400));
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        while head.len() <= MAX_HEAD {
            head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let long = parse(&head, 100).await;
        assert_eq!(long.expect_err("long head").status(), Some(431));
        let short = parse(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 100).await;
        assert!(matches!(short, Err(HttpError::Closed)));
        assert!(matches!(
            parse(b"GET / HT", 100).await,
            Err(HttpError::Closed)
        ));
    }

    #[test]
    fn base64_round_trips_and_rejects_garbage() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let enc = base64_encode(data);
            assert_eq!(base64_decode(&enc).as_deref(), Some(data), "{enc}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("not base64!"), None);
        assert_eq!(base64_decode("A"), None);
    }

    proptest::proptest! {
        // The decoders of outside input never panic, whatever the bytes.
        #[test]
        fn arbitrary_requests_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let result = rt.block_on(parse(&raw, 512));
            if let Ok(req) = result {
                proptest::prop_assert!(req.body.len() <= 512);
            }
        }

        #[test]
        fn base64_round_trips(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            proptest::prop_assert_eq!(base64_decode(&base64_encode(&data)), Some(data));
        }

        #[test]
        fn base64_and_paths_never_panic(text in ".{0,64}") {
            let _ = base64_decode(&text);
            let _ = percent_decode(&text);
        }
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decode("a%3Ab").as_deref(), Ok("a:b"));
        assert!(percent_decode("a%3").is_err());
        assert!(percent_decode("a%zz").is_err());
    }
}
