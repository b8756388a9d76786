//! The deployment document: which bundle a gateway is to run, signed with Ed25519 by a key the
//! gateway trusts. This module owns the format, signing, and every check a document passes
//! before anything is fetched: size, shape, signature, target. It keeps no state (the sequence
//! check is [`crate::state`]'s) and does no I/O.
//!
//! # Format
//!
//! What is published is the **envelope**:
//!
//! ```json
//! {"format": "evergreen-deployment",
//!  "document": "{\"fleet\":\"factory-a\",\"sequence\":7,…}",
//!  "key": "<base64 of the 32-byte Ed25519 public key>",
//!  "signature": "<base64 of the 64-byte Ed25519 signature over the bytes of document>"}
//! ```
//!
//! `document` is a string holding the signed JSON, so the bytes checked are exactly the bytes
//! signed (no canonical JSON needed). Inside it:
//!
//! ```json
//! {"fleet": "factory-a", "sequence": 7, "createdAt": "2026-12-06T20:00:00Z",
//!  "targets": {"things": ["gw-001"], "groups": ["line-1"]},
//!  "bundle": {"sha256": "<64 hex>", "size": 123456, "url": "https://…"}}
//! ```
//!
//! A document carries exactly one of `bundle` (a group to deploy) and `release` (a new
//! Evergreen runtime, see [`Release`] and [`crate::slots`]):
//!
//! ```json
//! "release": {"version": "0.3.0",
//!             "binaries": {"x86_64": {"sha256": "…", "size": 15800000, "url": "https://…"},
//!                          "aarch64": {…}, "armv7": {…}}}
//! ```
//!
//! One release document serves a fleet of mixed gateways: each takes the binary for its own
//! target ([`target`]) and refuses the document (`NoBinaryForTarget`) when it names none.
//!
//! `bundle` has exactly one of `url` (`https://`, `http://` or `file://`; S3 presigned URLs are
//! plain `https://` URLs) and `inline` (the bundle's bytes in base64, for a small group). The
//! digest and size are checked after the download; `http://` is accepted because the signed
//! digest already protects the content, but only `https://` hides it. `targets` names the
//! gateways (thing names) and fleet groups the document is for: a gateway applies it only if it
//! is named or belongs to a named group, so a document copied to another gateway's topic is
//! refused. `sequence` increases with each deployment of a fleet; a gateway never applies one
//! lower than or equal to the last it accepted (the same document delivered again is recognised
//! and ignored, see [`crate::state`]).
//!
//! Unknown fields are refused (a field this build does not know could change the meaning).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

/// `format` of an envelope.
pub const FORMAT: &str = "evergreen-deployment";

/// The largest envelope taken: AWS IoT Core's largest message (128 KiB), so a document that
/// works on one broker works on all.
pub const MAX_ENVELOPE_BYTES: usize = 128 * 1024;

/// The signed envelope, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    pub format: String,
    /// The document's JSON, exactly as signed.
    pub document: String,
    /// The signer's public key (base64, 32 bytes).
    pub key: String,
    /// Ed25519 over the bytes of `document` (base64, 64 bytes).
    pub signature: String,
}

/// A deployment document (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document {
    pub fleet: String,
    pub sequence: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    pub targets: Targets,
    /// A group bundle to deploy; exactly one of this and `release`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    /// A runtime release to install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
}

/// A runtime release: its version and a binary per target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Release {
    /// What `evergreen --version` of each binary says (after `evergreen `); it names the
    /// binary's slot directory, so it is limited to letters, digits and `.+-_`.
    pub version: String,
    /// Target ([`target`]) to binary.
    pub binaries: std::collections::BTreeMap<String, BundleRef>,
}

/// What a verified document asks of this gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    /// Deploy this group bundle.
    Bundle(&'a BundleRef),
    /// Install this runtime version, from this gateway's binary.
    Release {
        version: &'a str,
        binary: &'a BundleRef,
    },
}

impl Document {
    /// What the document asks of a gateway of `target`; [`verify`] checked there is exactly
    /// one thing and, for a release, a binary for the gateway's target.
    pub fn content(&self, target: &str) -> Result<Content<'_>, Refusal> {
        match (&self.bundle, &self.release) {
            (Some(b), None) => Ok(Content::Bundle(b)),
            (None, Some(r)) => r
                .binaries
                .get(target)
                .map(|binary| Content::Release {
                    version: &r.version,
                    binary,
                })
                .ok_or_else(|| Refusal::NoBinaryForTarget {
                    target: target.to_string(),
                    version: r.version.clone(),
                    offered: r.binaries.keys().cloned().collect::<Vec<_>>().join(", "),
                }),
            _ => Err(Refusal::Malformed(
                "a document has exactly one of bundle and release".into(),
            )),
        }
    }
}

/// This gateway's target, as release documents name binaries: `x86_64`, `aarch64`, `armv7`
/// (32-bit Arm, reserved: ntex 3 builds for no 32-bit target today, see packaging/README.md), else
/// Rust's name of the architecture.
pub fn target() -> &'static str {
    match std::env::consts::ARCH {
        "arm" => "armv7",
        other => other,
    }
}

/// Whether `version` can name a release (and its slot directory).
pub fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 64
        && !version.starts_with('.')
        && version
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-' | b'_'))
}

/// Who a document is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub things: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// Where the bundle is and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleRef {
    /// SHA-256 of the bundle file, lowercase hex.
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The bundle itself, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

/// Where a verified document's bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(String),
    Inline(Vec<u8>),
}

impl BundleRef {
    /// The bundle's source; the document was checked to have exactly one.
    pub fn source(&self) -> Result<Source, Refusal> {
        match (&self.url, &self.inline) {
            (Some(url), None) => Ok(Source::Url(url.clone())),
            (None, Some(b64)) => BASE64
                .decode(b64)
                .map(Source::Inline)
                .map_err(|e| Refusal::Malformed(format!("bundle.inline is not base64: {e}"))),
            _ => Err(Refusal::Malformed(
                "bundle needs exactly one of url and inline".into(),
            )),
        }
    }
}

/// The gateway a document is checked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub thing: String,
    pub groups: Vec<String>,
}

/// Why a document is refused. Each is reported on the gateway's status topic and logged;
/// none is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the document is {0} bytes, more than the {MAX_ENVELOPE_BYTES} taken")]
    Oversize(usize),
    #[error("not a deployment document: {0}")]
    Malformed(String),
    #[error("not signed: {0}")]
    Unsigned(String),
    #[error("signed by key {0}, which this gateway does not trust (evergreen.fleet.trustedKeys)")]
    UntrustedKey(String),
    #[error("the signature does not match the document (tampered, or signed by another key)")]
    BadSignature,
    #[error("the document is for {0}, not for this gateway")]
    NotForThisGateway(String),
    #[error("sequence {got} of fleet {fleet:?} is not newer than {applied}, the last accepted (replayed)")]
    Replayed {
        fleet: String,
        got: u64,
        applied: u64,
    },
    #[error("the bundle is {size} bytes, more than the {max} this gateway takes (evergreen.fleet.maxBundleBytes)")]
    BundleTooLarge { size: u64, max: u64 },
    #[error("the bundle's URL {0:?} is not https://, http:// or file://")]
    BadUrl(String),
    #[error(
        "release {version} has no binary for this gateway's target {target} (it has {offered})"
    )]
    NoBinaryForTarget {
        target: String,
        version: String,
        offered: String,
    },
}

impl Refusal {
    /// A short, stable code for the status message (`reason` carries the sentence).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Oversize(_) => "Oversize",
            Refusal::Malformed(_) => "Malformed",
            Refusal::Unsigned(_) => "Unsigned",
            Refusal::UntrustedKey(_) => "UntrustedKey",
            Refusal::BadSignature => "BadSignature",
            Refusal::NotForThisGateway(_) => "NotForThisGateway",
            Refusal::Replayed { .. } => "Replayed",
            Refusal::BundleTooLarge { .. } => "BundleTooLarge",
            Refusal::BadUrl(_) => "BadUrl",
            Refusal::NoBinaryForTarget { .. } => "NoBinaryForTarget",
        }
    }
}

/// A public key the gateway trusts, decoded from `evergreen.fleet.trustedKeys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey([u8; 32]);

impl TrustedKey {
    /// Decodes a base64 public key (32 bytes).
    pub fn parse(b64: &str) -> Result<TrustedKey, String> {
        let bytes = BASE64
            .decode(b64.trim())
            .map_err(|e| format!("not base64: {e}"))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(TrustedKey)
            .map_err(|_| format!("{} bytes, an Ed25519 public key is 32", bytes.len()))
    }

    /// The key in base64, as configured and as envelopes name it.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }
}

/// Checks `bytes` as published for `me`: size, envelope, trusted key, signature, document,
/// target, bundle reference (at most `max_bundle` bytes). The sequence is checked by the caller
/// against what it has accepted.
pub fn verify(
    bytes: &[u8],
    trusted: &[TrustedKey],
    me: &Identity,
    max_bundle: u64,
) -> Result<Document, Refusal> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(Refusal::Oversize(bytes.len()));
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Refusal::Malformed(format!("not JSON: {e}")))?;
    // An object without a signature is an unsigned document, not a malformed envelope: say so.
    if value.get("signature").is_none() || value.get("key").is_none() {
        return Err(Refusal::Unsigned(
            "no \"signature\" and \"key\" (documents are published signed: evergreen fleet sign)"
                .into(),
        ));
    }
    let envelope: Envelope =
        serde_json::from_value(value).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if envelope.format != FORMAT {
        return Err(Refusal::Malformed(format!(
            "format {:?}, expected {FORMAT:?}",
            envelope.format
        )));
    }
    let key =
        TrustedKey::parse(&envelope.key).map_err(|e| Refusal::Malformed(format!("key: {e}")))?;
    if !trusted.contains(&key) {
        return Err(Refusal::UntrustedKey(envelope.key));
    }
    let signature = BASE64
        .decode(envelope.signature.trim())
        .map_err(|e| Refusal::Malformed(format!("signature is not base64: {e}")))?;
    UnparsedPublicKey::new(&ED25519, key.0)
        .verify(envelope.document.as_bytes(), &signature)
        .map_err(|_| Refusal::BadSignature)?;
    let document: Document = serde_json::from_str(&envelope.document)
        .map_err(|e| Refusal::Malformed(format!("document: {e}")))?;
    check_document(&document, me, max_bundle)?;
    Ok(document)
}

fn check_document(d: &Document, me: &Identity, max_bundle: u64) -> Result<(), Refusal> {
    let t = &d.targets;
    if t.things.is_empty() && t.groups.is_empty() {
        return Err(Refusal::Malformed(
            "targets names no thing and no group".into(),
        ));
    }
    let mine = t.things.contains(&me.thing) || t.groups.iter().any(|g| me.groups.contains(g));
    if !mine {
        return Err(Refusal::NotForThisGateway(describe(t)));
    }
    let b = match d.content(target())? {
        Content::Bundle(b) => b,
        Content::Release { version, binary } => {
            if !valid_version(version) {
                return Err(Refusal::Malformed(format!(
                    "release.version {version:?} is not 1 to 64 letters, digits and .+-_"
                )));
            }
            binary
        }
    };
    check_artefact(b, max_bundle)
}

/// A bundle's or binary's reference: digest, size, source.
fn check_artefact(b: &BundleRef, max_bundle: u64) -> Result<(), Refusal> {
    if b.sha256.len() != 64
        || !b
            .sha256
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Refusal::Malformed(
            "bundle.sha256 is not 64 lowercase hex digits".into(),
        ));
    }
    if b.size > max_bundle {
        return Err(Refusal::BundleTooLarge {
            size: b.size,
            max: max_bundle,
        });
    }
    match b.source()? {
        Source::Url(url) => {
            if !["https://", "http://", "file://"]
                .iter()
                .any(|s| url.starts_with(s))
            {
                return Err(Refusal::BadUrl(url));
            }
        }
        Source::Inline(bytes) => {
            if bytes.len() as u64 != b.size {
                return Err(Refusal::Malformed(format!(
                    "bundle.inline holds {} bytes, bundle.size says {}",
                    bytes.len(),
                    b.size
                )));
            }
        }
    }
    Ok(())
}

fn describe(t: &Targets) -> String {
    let mut parts = Vec::new();
    if !t.things.is_empty() {
        parts.push(format!("things {:?}", t.things));
    }
    if !t.groups.is_empty() {
        parts.push(format!("groups {:?}", t.groups));
    }
    parts.join(" and ")
}

/// An operator's signing key (PKCS#8, as `evergreen fleet keygen` writes it in base64).
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public().to_base64())
    }
}

impl SigningKey {
    /// A new key: its PKCS#8 document in base64 (to be kept secret) and the key.
    pub fn generate() -> Result<(String, SigningKey), String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| e.to_string())?;
        let text = BASE64.encode(pkcs8.as_ref());
        let key = SigningKey::parse(&text)?;
        Ok((text, key))
    }

    /// Reads a key file's text (base64 PKCS#8).
    pub fn parse(text: &str) -> Result<SigningKey, String> {
        let der = BASE64
            .decode(text.trim())
            .map_err(|e| format!("not base64: {e}"))?;
        Ed25519KeyPair::from_pkcs8(&der)
            .map(SigningKey)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))
    }

    /// The public key gateways are to trust.
    pub fn public(&self) -> TrustedKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.0.public_key().as_ref());
        TrustedKey(raw)
    }

    /// Signs `document`: the envelope's JSON.
    pub fn sign(&self, document: &Document) -> Result<Vec<u8>, serde_json::Error> {
        let text = serde_json::to_string(document)?;
        let signature = self.0.sign(text.as_bytes());
        serde_json::to_vec(&Envelope {
            format: FORMAT.into(),
            key: self.public().to_base64(),
            signature: BASE64.encode(signature.as_ref()),
            document: text,
        })
    }
}

#[cfg(test)]
mod tests;
