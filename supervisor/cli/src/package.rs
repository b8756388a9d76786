//! `evergreen function package DIR`: turns a Python function's directory
//! into the `.zip` a group's `CodeUri` can name, the way V1 users zipped a
//! Lambda deployment package.
//!
//! The archive is written with stored (uncompressed) entries: Python imports
//! straight from it (`zipimport`), and stored entries need no compressor in
//! this binary. Entries are sorted and dated 1980-01-01, so packaging the same
//! directory twice gives the same bytes. `__pycache__` and `.pyc` files are
//! left out (they belong to one interpreter version). No ZIP64: more than
//! 65,535 files or 4 GiB is refused.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What a package holds, for the command's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageReport {
    pub files: usize,
    pub bytes: u64,
    /// `greengrasssdk/` is vendored, as a V1 function needs it.
    pub has_sdk: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0}: more than 65535 files or 4 GiB; a ZIP64 archive is not supported")]
    TooLarge(PathBuf),
    #[error("{0}: a file name is not UTF-8")]
    Name(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every file under `dir` (following links), relative names with `/`, sorted.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), PackageError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| PackageError::Name(path.clone()))?;
        if name == "__pycache__" || name.ends_with(".pyc") {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(io(&path))?;
        let relative = format!("{prefix}{name}");
        if meta.is_dir() {
            collect(&path, &format!("{relative}/"), out)?;
        } else if meta.is_file() {
            out.push((relative, path));
        }
    }
    Ok(())
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Writes `dir` as a zip at `out` (through a temporary file, renamed).
pub fn package(dir: &Path, out: &Path) -> Result<PackageReport, PackageError> {
    if !dir.is_dir() {
        return Err(PackageError::NotADirectory(dir.to_path_buf()));
    }
    let mut files = Vec::new();
    collect(dir, "", &mut files)?;
    if files.len() > usize::from(u16::MAX) {
        return Err(PackageError::TooLarge(dir.to_path_buf()));
    }
    let mut zip: Vec<u8> = Vec::new();
    let mut central: Vec<u8> = Vec::new();
    let mut bytes = 0u64;
    const DOS_DATE_1980_01_01: u16 = (1 << 5) | 1;
    const UTF8_NAMES: u16 = 1 << 11;
    for (name, path) in &files {
        let data = std::fs::read(path).map_err(io(path))?;
        let too_large = || PackageError::TooLarge(dir.to_path_buf());
        let size = u32::try_from(data.len()).map_err(|_| too_large())?;
        let offset = u32::try_from(zip.len()).map_err(|_| too_large())?;
        let name_len = u16::try_from(name.len()).map_err(|_| too_large())?;
        let crc = crc32(&data);
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path)
                .map_err(io(path))?
                .permissions()
                .mode()
                & 0o777
        };
        // Local file header.
        zip.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        zip.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        zip.extend_from_slice(&UTF8_NAMES.to_le_bytes());
        zip.extend_from_slice(&0u16.to_le_bytes()); // stored
        zip.extend_from_slice(&0u16.to_le_bytes()); // time 00:00
        zip.extend_from_slice(&DOS_DATE_1980_01_01.to_le_bytes());
        zip.extend_from_slice(&crc.to_le_bytes());
        zip.extend_from_slice(&size.to_le_bytes());
        zip.extend_from_slice(&size.to_le_bytes());
        zip.extend_from_slice(&name_len.to_le_bytes());
        zip.extend_from_slice(&0u16.to_le_bytes()); // no extra field
        zip.extend_from_slice(name.as_bytes());
        zip.extend_from_slice(&data);
        // Its central directory entry.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&0x031Eu16.to_le_bytes()); // made by: Unix, 3.0
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&UTF8_NAMES.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&DOS_DATE_1980_01_01.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&name_len.to_le_bytes());
        central.extend_from_slice(&[0u8; 8]); // extra, comment, disk, internal attributes
        central.extend_from_slice(&((0o100_000 | mode) << 16).to_le_bytes()); // regular file
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        bytes += u64::from(size);
    }
    let too_large = || PackageError::TooLarge(dir.to_path_buf());
    let central_offset = u32::try_from(zip.len()).map_err(|_| too_large())?;
    let central_len = u32::try_from(central.len()).map_err(|_| too_large())?;
    let count = u16::try_from(files.len()).map_err(|_| too_large())?;
    zip.extend_from_slice(&central);
    // End of central directory.
    zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    zip.extend_from_slice(&[0u8; 4]); // this disk, disk with the directory
    zip.extend_from_slice(&count.to_le_bytes());
    zip.extend_from_slice(&count.to_le_bytes());
    zip.extend_from_slice(&central_len.to_le_bytes());
    zip.extend_from_slice(&central_offset.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes()); // no comment
    let tmp = out.with_extension("zip.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(&zip).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(PackageReport {
        files: files.len(),
        bytes,
        has_sdk: files
            .iter()
            .any(|(name, _)| name == "greengrasssdk/__init__.py"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn packages_are_deterministic_and_skip_bytecode() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = dir.path().join("fn");
        std::fs::create_dir_all(src.join("pkg/__pycache__")).expect("mkdir");
        std::fs::write(src.join("main.py"), "x = 1\n").expect("write");
        std::fs::write(src.join("pkg/__init__.py"), "").expect("write");
        std::fs::write(src.join("pkg/__pycache__/m.cpython-311.pyc"), "junk").expect("write");
        let a = dir.path().join("a.zip");
        let b = dir.path().join("b.zip");
        let report = package(&src, &a).expect("package");
        assert_eq!(
            report,
            PackageReport {
                files: 2,
                bytes: 6,
                has_sdk: false
            }
        );
        package(&src, &b).expect("again");
        let (a, b) = (std::fs::read(a).expect("a"), std::fs::read(b).expect("b"));
        assert_eq!(a, b);
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("pkg/__init__.py") && !text.contains("pyc"));
        assert!(matches!(
            package(&src.join("main.py"), &dir.path().join("c.zip")),
            Err(PackageError::NotADirectory(_))
        ));
    }
}
