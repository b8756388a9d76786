//! Unpacking a model archive (gzip'd tar, tar or zip; anything else is one
//! file) into a directory, never writing outside it and never past a size.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the zip archive is unreadable: {0}")]
    Zip(String),
    #[error("entry {0:?} would be written outside the model's directory")]
    Escapes(String),
    #[error(
        "entry {0:?} is a link, device or other special file; a model holds files and directories"
    )]
    Special(String),
    #[error("the archive expands past {0} bytes")]
    TooLarge(u64),
}

/// Unpacks `archive` into `dir` (which exists and is empty); a file that is
/// no archive is written as `dir/<name>`. At most `max` bytes are written.
pub fn extract(archive: &[u8], name: &str, dir: &Path, max: u64) -> Result<(), ExtractError> {
    if archive.starts_with(&[0x1f, 0x8b]) {
        untar(flate2::read::GzDecoder::new(archive), dir, max)
    } else if archive.starts_with(b"PK\x03\x04") || archive.starts_with(b"PK\x05\x06") {
        unzip(archive, dir, max)
    } else if archive.len() > 262 && &archive[257..262] == b"ustar" {
        untar(archive, dir, max)
    } else {
        let name = safe_path(name)?;
        if name.components().count() != 1 {
            return Err(ExtractError::Escapes(name.display().to_string()));
        }
        if archive.len() as u64 > max {
            return Err(ExtractError::TooLarge(max));
        }
        std::fs::write(dir.join(name), archive)?;
        Ok(())
    }
}

/// A relative path with only normal components, or why not.
fn safe_path(raw: &str) -> Result<PathBuf, ExtractError> {
    let path = Path::new(raw);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(ExtractError::Escapes(raw.to_string())),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(ExtractError::Escapes(raw.to_string()));
    }
    Ok(out)
}

/// Copies at most `left` bytes from `from` to `to`; `TooLarge` past it.
fn copy_bounded(
    from: &mut impl Read,
    to: &mut impl Write,
    left: &mut u64,
    max: u64,
) -> Result<(), ExtractError> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if n as u64 > *left {
            return Err(ExtractError::TooLarge(max));
        }
        *left -= n as u64;
        to.write_all(&buf[..n])?;
    }
}

fn untar(reader: impl Read, dir: &Path, max: u64) -> Result<(), ExtractError> {
    let mut archive = tar::Archive::new(reader);
    let mut left = max;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        // pax and GNU long-name headers are read by the tar crate itself.
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let rel = match safe_path(&raw) {
            Ok(p) => p,
            // "./" as the archive's first entry names the directory itself.
            Err(_) if Path::new(&raw).components().all(|c| c == Component::CurDir) => continue,
            Err(e) => return Err(e),
        };
        let target = dir.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut out = std::fs::File::create(&target)?;
            copy_bounded(&mut entry, &mut out, &mut left, max)?;
            let exec = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
            if exec {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
            }
        } else {
            return Err(ExtractError::Special(raw));
        }
    }
    Ok(())
}

fn unzip(bytes: &[u8], dir: &Path, max: u64) -> Result<(), ExtractError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| ExtractError::Zip(e.to_string()))?;
    let mut left = max;
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| ExtractError::Zip(e.to_string()))?;
        let raw = file.name().to_string();
        let rel = safe_path(&raw)?;
        let target = dir.join(&rel);
        if file.is_dir() {
            std::fs::create_dir_all(&target)?;
        } else if file.is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut out = std::fs::File::create(&target)?;
            copy_bounded(&mut file, &mut out, &mut left, max)?;
        } else {
            return Err(ExtractError::Special(raw));
        }
    }
    Ok(())
}
