//! The HTTP client and the small helpers for describing HTTP failures.
//!
//! Splunk builds its own client rather than `evergreen_aws::http_client`
//! because `SplunkCustomCALocation` adds roots; otherwise it is the same
//! set-up. TLS is rustls on the ring provider (the workspace's choice: no aws-lc C
//! build), verifying servers against the platform's roots through
//! rustls-platform-verifier, plus any extra roots given. Timeouts: 5 s to
//! connect, 30 s for a whole request.

use std::sync::Arc;
use std::time::Duration;

/// Longest piece of an answer body quoted in a message.
const QUOTE_MAX: usize = 512;

/// A client trusting the platform's roots and `extra_roots` (DER).
pub fn client(extra_roots: &[Vec<u8>]) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = extra_roots
        .iter()
        .map(|der| rustls::pki_types::CertificateDer::from(der.clone()));
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
            .map_err(|e| format!("cannot load the trusted roots: {e}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

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
