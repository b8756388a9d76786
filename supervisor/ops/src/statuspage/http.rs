//! The page's HTTP: reading a request head (bounded by the server), finding the token it
//! presents (query, cookie or bearer header), and writing a response with the headers every
//! answer carries. Pure functions over bytes; the socket is the server's.

use std::fmt::Write as _;

/// The cookie that carries the token after the first visit.
pub(crate) const COOKIE: &str = "evergreen_status";

/// What the server needs of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) method: String,
    /// The path without the query.
    pub(crate) path: String,
    /// `?token=` (percent-decoded).
    pub(crate) query_token: Option<String>,
    /// The `evergreen_status` cookie.
    pub(crate) cookie_token: Option<String>,
    /// `Authorization: Bearer …`.
    pub(crate) bearer: Option<String>,
}

impl Head {
    /// The tokens presented, in the order they are tried.
    pub(crate) fn tokens(&self) -> impl Iterator<Item = &str> {
        [&self.query_token, &self.cookie_token, &self.bearer]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

/// Parses a request head (request line and headers, up to the blank line); `None` when it is
/// not HTTP/1.x.
pub(crate) fn parse_head(raw: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, target, version) = (
        request_line.next()?,
        request_line.next()?,
        request_line.next()?,
    );
    if request_line.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut head = Head {
        method: method.to_string(),
        path: path.to_string(),
        query_token: query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .and_then(percent_decode),
        ..Head::default()
    };
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("cookie") {
            let found = value
                .split(';')
                .filter_map(|c| c.trim().split_once('='))
                .find(|(k, _)| *k == COOKIE)
                .map(|(_, v)| v.to_string());
            head.cookie_token = head.cookie_token.or(found);
        } else if name.eq_ignore_ascii_case("authorization") {
            head.bearer = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim().to_string());
        }
    }
    Some(head)
}

/// `%xx` decoded (`+` stays: a token has none); `None` for a bad escape or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One answer. Every answer is `Connection: close`, uncacheable, not to be sniffed into
/// another type, not to be framed, and sends no referrer (the first URL carries the token).
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: &'static str,
    pub(crate) content_type: &'static str,
    /// The Content-Security-Policy: the page's names its inline script and style by hash;
    /// every other answer allows nothing.
    pub(crate) csp: String,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

/// The policy of answers that run nothing.
pub(crate) const CSP_NONE: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

impl Response {
    pub(crate) fn new(status: &'static str, content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type,
            csp: CSP_NONE.to_string(),
            headers: Vec::new(),
            body,
        }
    }

    pub(crate) fn text(status: &'static str, body: &str) -> Self {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            body.as_bytes().to_vec(),
        )
    }

    pub(crate) fn with(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {}\r\n", self.status);
        let _ = write!(
            head,
            "Content-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n\
             Content-Security-Policy: {}\r\n",
            self.content_type,
            self.body.len(),
            self.csp
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_in_the_query_a_cookie_or_a_bearer_header() {
        let head = parse_head(
            b"GET /api/status?x=1&token=ab%2Dcd HTTP/1.1\r\nHost: h\r\n\
              Cookie: other=1; evergreen_status=from-cookie\r\n\
              authorization: bearer from-header\r\n\r\n",
        )
        .expect("parsed");
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/api/status");
        assert_eq!(head.query_token.as_deref(), Some("ab-cd"));
        assert_eq!(head.cookie_token.as_deref(), Some("from-cookie"));
        assert_eq!(head.bearer.as_deref(), Some("from-header"));
        assert_eq!(
            head.tokens().collect::<Vec<_>>(),
            ["ab-cd", "from-cookie", "from-header"]
        );
        let bare = parse_head(b"POST / HTTP/1.0\r\n\r\n").expect("parsed");
        assert_eq!((bare.method.as_str(), bare.path.as_str()), ("POST", "/"));
        assert_eq!(bare.tokens().count(), 0);
    }

    #[test]
    fn what_is_not_http_is_refused() {
        for raw in [
            &b"GET /\r\n\r\n"[..],
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"\xff\xfe / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_head(raw), None, "{:?}", String::from_utf8_lossy(raw));
        }
        assert_eq!(
            parse_head(b"GET /?token=%zz HTTP/1.1\r\n\r\n")
                .expect("parsed")
                .query_token,
            None,
            "a bad escape is no token"
        );
    }

    #[test]
    fn every_response_carries_the_protective_headers() {
        let text = String::from_utf8(
            Response::text("404 Not Found", "no\n")
                .with("Allow", "GET".into())
                .to_bytes(),
        )
        .expect("utf-8");
        for header in [
            "HTTP/1.1 404 Not Found\r\n",
            "Content-Length: 3\r\n",
            "X-Content-Type-Options: nosniff\r\n",
            "X-Frame-Options: DENY\r\n",
            "Cache-Control: no-store\r\n",
            "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'",
            "Allow: GET\r\n\r\nno\n",
        ] {
            assert!(text.contains(header), "{header}: {text}");
        }
    }
}
