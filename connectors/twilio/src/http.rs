//! Small helpers for describing HTTP failures in status messages. (The
//! client itself is the workspace's shared one, `evergreen_aws::http_client`.)

/// Longest piece of an answer body quoted in a message.
const QUOTE_MAX: usize = 512;

/// A transport error with its causes (reqwest's own text is often only
/// "error sending request").
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A body for a message: text, cut at [`QUOTE_MAX`] characters.
pub fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}
