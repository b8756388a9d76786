//! The Lambda endpoint's request parser (`evergreen_runtime::lambda`: the bounded HTTP/1.1
//! head and body reader, the path's `%`-escapes, the base64 JSON client context) on what a
//! Python function — or anything else on localhost — sends to `ggDaemonPort`.
//!
//! The first byte shapes the connection: bits 0–5 the size of each read (1–64 bytes, so
//! every split of the head across reads is tried), bit 6 small limits (256-byte head,
//! 64-byte body) instead of the defaults; the rest is the byte stream.

#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use evergreen_runtime::lambda::fuzzing::{
    client_context, decode_path, read_request, MAX_REQUEST_HEADERS,
};
use evergreen_runtime::lambda::http::{base64_decode, base64_encode};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

/// Gives its bytes at most `chunk` at a time, as a slow client would.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(shape & 0x3f) + 1;
    let (max_head, max_body) = if shape & 0x40 != 0 {
        (256, 64)
    } else {
        (16 << 10, 64 << 10)
    };
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    let mut reader = Trickle {
        data: stream,
        chunk,
    };
    let result = RUNTIME.with(|rt| rt.block_on(read_request(&mut reader, max_head, max_body)));
    let request = match result {
        Ok(request) => request,
        Err(refused) => {
            // Malformed 400, body too large 413, head too large 431, chunked 501, or a
            // connection closed early (no answer).
            assert!(
                matches!(refused.status, None | Some(400 | 413 | 431 | 501)),
                "{refused:?}"
            );
            return;
        }
    };
    assert!(request.headers.len() <= MAX_REQUEST_HEADERS);
    assert!(request.body.len() <= max_body);
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert!(header("transfer-encoding").is_none());
    let announced = header("content-length").map_or(Some(0), |v| v.parse::<usize>().ok());
    assert_eq!(announced, Some(request.body.len()), "{request:?}");
    for (name, _) in &request.headers {
        assert_eq!(name, &name.to_ascii_lowercase());
    }
    let _ = decode_path(&request.path);
    if let Some(context) = header("x-amz-client-context") {
        let _ = client_context(context);
    }
    // The body goes back to the function base64-encoded in some answers.
    assert_eq!(
        base64_decode(&base64_encode(&request.body)).as_deref(),
        Some(request.body.as_slice())
    );
});
