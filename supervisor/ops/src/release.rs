//! The version this binary says it is: the crate's version, unless the binary was **stamped**
//! with another after the build. A release process can so set a built binary's version (a
//! nightly's `0.2.0-nightly.20261206`) without compiling it again, and the self-update tests
//! make "a new build" from the one the test suite built. The stamp is a fixed-size record in
//! the binary's data: [`STAMP_MARKER`] followed by the version and NUL padding; [`stamp`]
//! writes one into a copy of a binary.
//!
//! A stamped binary is a different file: its SHA-256 is what a release document signs, so a
//! stamp cannot be changed on a gateway without the binary failing its check.

/// What starts the stamp record, found exactly once in a binary.
pub const STAMP_MARKER: &[u8; 24] = b"EVERGREEN-RELEASE-STAMP=";
/// The record's size: the marker and up to 64 bytes of version.
const STAMP_LEN: usize = 24 + 64;

/// The record, filled at build time with the crate's version. `#[used]` keeps it in the binary
/// even though nothing but [`version`] reads it, and [`version`] reads it volatile, so the
/// compiler never folds the build-time value into the code and a stamp takes effect.
#[used]
static STAMP: [u8; STAMP_LEN] = build_stamp();

const fn build_stamp() -> [u8; STAMP_LEN] {
    let mut out = [0u8; STAMP_LEN];
    let mut i = 0;
    while i < STAMP_MARKER.len() {
        out[i] = STAMP_MARKER[i];
        i += 1;
    }
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    let mut j = 0;
    while j < version.len() && j < STAMP_LEN - STAMP_MARKER.len() {
        out[STAMP_MARKER.len() + j] = version[j];
        j += 1;
    }
    out
}

/// This binary's version (`evergreen --version`, the status, the fleet's reports).
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let bytes: Vec<u8> = (STAMP_MARKER.len()..STAMP_LEN)
            // SAFETY: the index is within the static array, which lives for the whole program
            // and is never written; the read is volatile only to keep the compiler from
            // assuming the build-time contents.
            .map(|i| unsafe { std::ptr::read_volatile(&STAMP[i]) })
            .take_while(|&b| b != 0)
            .collect();
        match String::from_utf8(bytes) {
            Ok(v) if !v.is_empty() => v,
            _ => env!("CARGO_PKG_VERSION").to_string(),
        }
    })
}

/// Returns `binary` (a copy of an `evergreen` binary's bytes) stamped with `version`; `None`
/// when the record is not found exactly once or the version does not fit (1 to 64 bytes).
pub fn stamp(binary: &[u8], version: &str) -> Option<Vec<u8>> {
    let room = STAMP_LEN - STAMP_MARKER.len();
    if version.is_empty() || version.len() > room || version.contains('\0') {
        return None;
    }
    let mut found = binary
        .windows(STAMP_MARKER.len())
        .enumerate()
        .filter(|(_, w)| w == STAMP_MARKER)
        .map(|(i, _)| i);
    let at = found.next()?;
    if found.next().is_some() || at + STAMP_LEN > binary.len() {
        return None;
    }
    let mut out = binary.to_vec();
    let field = &mut out[at + STAMP_MARKER.len()..at + STAMP_LEN];
    field.fill(0);
    field[..version.len()].copy_from_slice(version.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unstamped_binary_says_the_crate_version() {
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn a_stamp_replaces_the_version_field_only() {
        let mut binary = b"head".to_vec();
        binary.extend_from_slice(&build_stamp());
        binary.extend_from_slice(b"tail");
        let stamped = stamp(&binary, "9.9.9-test").expect("stamped");
        assert_eq!(stamped.len(), binary.len());
        assert!(stamped.starts_with(b"head") && stamped.ends_with(b"tail"));
        let field = &stamped[4 + STAMP_MARKER.len()..4 + STAMP_LEN];
        assert!(field.starts_with(b"9.9.9-test\0"));
        assert!(stamp(&binary, &"x".repeat(65)).is_none(), "too long");
        assert!(stamp(b"no record here", "1.0").is_none());
        let mut twice = binary.clone();
        twice.extend_from_slice(&build_stamp());
        assert!(stamp(&twice, "1.0").is_none(), "ambiguous");
    }
}
