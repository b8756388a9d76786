//! Fetching a deployment's bundle into `<root>/fleet/downloads/`, checked against the signed
//! size and SHA-256 before anything reads it.
//!
//! * `https://` and `http://`: streamed into `<sha256>.part`; a `.part` left by a runtime that
//!   stopped (or was killed) mid-download is continued with an HTTP `Range` request, or
//!   started again when the server answers with the whole file. More bytes than the signed size
//!   stop the download. Each read may take 60 s; the whole download has no time limit.
//! * `file://`: copied the same way (tests, a bundle put on the gateway by other means).
//! * inline: the document's bytes.
//!
//! The finished file is renamed to `<sha256>.bundle` only once its digest matches; a mismatch
//! deletes it (a resumed download whose first part was bad then starts from zero next time).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::document::Source;

/// The directory, under the runtime's write directory.
pub const DOWNLOADS: &str = "fleet/downloads";

/// Why a bundle could not be fetched. The status message carries [`FetchError::code`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("GET {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("the bundle is larger than the {0} bytes the document signs")]
    TooLarge(u64),
    #[error("the bundle is {got} bytes, the document signs {want}")]
    SizeMismatch { got: u64, want: u64 },
    #[error("the bundle's SHA-256 is {got}, the document signs {want}")]
    DigestMismatch { got: String, want: String },
}

impl FetchError {
    /// A short code for the status message.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Io(..) => "DownloadIo",
            FetchError::Http { .. } => "DownloadFailed",
            FetchError::TooLarge(_) | FetchError::SizeMismatch { .. } => "SizeMismatch",
            FetchError::DigestMismatch { .. } => "DigestMismatch",
        }
    }
}

/// Fetches `source` into `write_dir`'s downloads; returns the checked bundle's path.
pub async fn fetch(
    source: &Source,
    sha256: &str,
    size: u64,
    write_dir: &Path,
) -> Result<PathBuf, FetchError> {
    let dir = write_dir.join(DOWNLOADS);
    std::fs::create_dir_all(&dir).map_err(|e| FetchError::Io(dir.clone(), e))?;
    let done = dir.join(format!("{sha256}.bundle"));
    if done.exists() {
        // Checked before it was given this name.
        return Ok(done);
    }
    let part = dir.join(format!("{sha256}.part"));
    match source {
        Source::Inline(bytes) => {
            write_new(&part, |f| f.write_all(bytes))?;
        }
        Source::Url(url) => match url.strip_prefix("file://") {
            Some(path) => {
                let path = PathBuf::from(path);
                let src =
                    std::fs::File::open(&path).map_err(|e| FetchError::Io(path.clone(), e))?;
                let mut limited = src.take(size + 1);
                write_new(&part, |f| std::io::copy(&mut limited, f).map(|_| ()))?;
            }
            None => download(url, &part, size).await?,
        },
    }
    check(&part, sha256, size)?;
    std::fs::rename(&part, &done).map_err(|e| FetchError::Io(done.clone(), e))?;
    evergreen_durable::sync_dir(&dir).map_err(|e| FetchError::Io(dir.clone(), e))?;
    Ok(done)
}

fn write_new(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), FetchError> {
    let io = |e| FetchError::Io(path.to_path_buf(), e);
    let mut f = std::fs::File::create(path).map_err(io)?;
    fill(&mut f).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Streams `url` into `part`, continuing what is there.
async fn download(url: &str, part: &Path, size: u64) -> Result<(), FetchError> {
    let http = |reason: String| FetchError::Http {
        url: url.to_string(),
        reason,
    };
    let client = evergreen_aws::download_client().map_err(http)?;
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut request = client.get(url);
    if have > 0 && have < size {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let mut response = request.send().await.map_err(|e| http(e.to_string()))?;
    let status = response.status();
    let append = status.as_u16() == 206 && have > 0 && have < size;
    if !status.is_success() {
        return Err(http(format!("HTTP {status}")));
    }
    if append {
        tracing::info!("fleet: continuing the download of {url} from byte {have}");
    }
    let io = |e| FetchError::Io(part.to_path_buf(), e);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .map_err(io)?;
    let mut written = if append { have } else { 0 };
    while let Some(chunk) = response.chunk().await.map_err(|e| http(e.to_string()))? {
        written += chunk.len() as u64;
        if written > size {
            drop(file);
            let _ = std::fs::remove_file(part);
            return Err(FetchError::TooLarge(size));
        }
        file.write_all(&chunk).map_err(io)?;
    }
    file.sync_all().map_err(io)
}

/// Checks `path` against the signed size and digest; deletes it when it does not match.
fn check(path: &Path, sha256: &str, size: u64) -> Result<(), FetchError> {
    let io = |e| FetchError::Io(path.to_path_buf(), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        got += n as u64;
        hasher.update(&buf[..n]);
    }
    let bad = if got != size {
        Some(FetchError::SizeMismatch { got, want: size })
    } else {
        let digest = crate::state::hex(&hasher.finalize());
        (digest != sha256).then(|| FetchError::DigestMismatch {
            got: digest,
            want: sha256.to_string(),
        })
    };
    match bad {
        None => Ok(()),
        Some(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}
