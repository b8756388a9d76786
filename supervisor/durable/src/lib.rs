//! How the runtime's state reaches disk: one atomic, durable file write for every writer
//! (deployment records, certificates and keys, the secret store, shadows, the Python support
//! files), the redb open-or-set-aside helper, and the timestamps stored records carry.
//!
//! A write is durable only once the file's data *and* the directory entry that names it are on
//! disk: [`write_atomic`] writes a temporary file beside the target, fsyncs it, renames it over
//! the target and fsyncs the directory, so a crash or power cut leaves the old content or the
//! new, never half of one and never an empty file where the old one was.

pub mod redb_file;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use time::macros::format_description;
use time::OffsetDateTime;

/// Who may read a file [`write_atomic`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Owner read/write only (`0600`): keys, secrets, certificates' private halves.
    Private,
    /// Readable by everyone (`0644`): files that components running as another user read.
    Public,
    /// The process's umask decides (`0666 & !umask`), as `File::create` does.
    Default,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Private => 0o600,
            Mode::Public => 0o644,
            Mode::Default => 0o666,
        }
    }
}

/// Writes `bytes` to `path` atomically and durably: a temporary file beside it (created
/// fresh with `mode`), fsync, rename over `path`, fsync of the directory. Creates the parent
/// directory when it is missing. A leftover temporary file from an earlier crash is replaced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Mode) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = parent.join(tmp_name);
    // A temporary file left by a crash may have another owner's mode: start afresh so the new
    // file gets exactly `mode` (create_new refuses to reuse it).
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode.bits())
        .open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent)
}

/// Fsyncs a directory, so the entries created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A timestamp as stored records carry it: RFC 3339 in UTC with milliseconds
/// (`2026-12-06T07:31:35.123Z`).
pub fn format_time(now: OffsetDateTime) -> Result<String, time::error::Format> {
    now.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_atomic_replaces_the_file_with_the_asked_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("record");
        write_atomic(&path, b"one", Mode::Public).expect("first write");
        write_atomic(&path, b"two", Mode::Private).expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("read_dir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("record")]);
    }

    #[test]
    fn a_leftover_temporary_file_does_not_block_the_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        fs::write(dir.path().join(".key.tmp"), b"half").expect("leftover");
        write_atomic(&path, b"whole", Mode::Private).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"whole");
    }

    #[test]
    fn format_time_is_utc_with_milliseconds() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_780_000_000_123_456_789)
            .expect("timestamp");
        assert_eq!(format_time(t).expect("format"), "2026-05-28T20:26:40.123Z");
    }
}
