//! The status page's access token when the configuration names none: 32 random bytes from the
//! kernel, as hex, kept in `<root>/status-page.token` (mode 0600) so a bookmarked URL keeps
//! working across restarts. It owns that file and the comparison of a presented token; it
//! never logs a token.

use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The token file's name under the runtime root.
pub const TOKEN_FILE: &str = "status-page.token";

/// Random bytes in a generated token: 256 bits, beyond guessing over HTTP.
const TOKEN_BYTES: usize = 32;

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("status page token {}: {step}: {source}", path.display())]
    Io {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    #[error("status page token {}: mode {mode:04o} lets other users read it; chmod 600 it (or delete it for a new token)", path.display())]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("status page token {}: not a token (expected {} hex digits); delete it for a new one", path.display(), TOKEN_BYTES * 2)]
    Malformed { path: PathBuf },
}

/// The token kept at `path`, created (0600, never replacing a file that appeared meanwhile)
/// when missing. A file others may read is refused rather than repaired: its token may
/// already be known.
pub fn load_or_create(path: &Path) -> Result<String, TokenError> {
    let io_err = |step: &'static str| {
        move |source| TokenError::Io {
            path: path.to_path_buf(),
            step,
            source,
        }
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let token = random_token().map_err(io_err("cannot read /dev/urandom"))?;
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io_err("cannot write it"))?;
            tracing::info!(
                "status page: generated a token in {} (evergreen status --page-url prints the URL with it)",
                path.display()
            );
            Ok(token)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_existing(path),
        Err(source) => Err(TokenError::Io {
            path: path.to_path_buf(),
            step: "cannot create it",
            source,
        }),
    }
}

fn read_existing(path: &Path) -> Result<String, TokenError> {
    let meta = std::fs::metadata(path).map_err(|source| TokenError::Io {
        path: path.to_path_buf(),
        step: "cannot stat it",
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    // A token is 65 bytes; reading a little more tells a token from a bigger file.
    std::fs::File::open(path)
        .and_then(|f| f.take(256).read_to_string(&mut text))
        .map_err(|source| TokenError::Io {
            path: path.to_path_buf(),
            step: "cannot read it",
            source,
        })?;
    let token = text.trim();
    if token.len() != TOKEN_BYTES * 2 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}

/// A new token. Unlike the Lambda endpoint's per-worker ids there is no fallback to the
/// clock: a guessable token is worse than a page that does not start.
fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `presented` is `expected`, in time that does not depend on where they differ (a
/// byte-by-byte `==` would let a client find the token a byte at a time by timing).
pub(crate) fn matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        // The length is not the secret: every generated token has the same one.
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_created_once_owner_only_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(TOKEN_FILE);
        let first = load_or_create(&path).expect("created");
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&path).expect("read"), first, "kept");
        let other = tempfile::tempdir().expect("tmp");
        let second = load_or_create(&other.path().join(TOKEN_FILE)).expect("created");
        assert_ne!(first, second, "random");
    }

    #[test]
    fn an_open_or_garbled_token_file_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(TOKEN_FILE);
        load_or_create(&path).expect("created");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_create(&path).expect_err("too open");
        assert!(err.to_string().contains("mode 0644"), "{err}");
        std::fs::write(&path, "<script>\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            load_or_create(&path),
            Err(TokenError::Malformed { .. })
        ));
    }

    #[test]
    fn tokens_match_only_whole() {
        assert!(matches("abcdef", "abcdef"));
        assert!(!matches("abcdeg", "abcdef"));
        assert!(!matches("abcde", "abcdef"));
        assert!(!matches("", "abcdef"));
    }
}
