//! One runtime per root: an exclusive lock (`flock`) on `<write dir>/evergreen.lock`, taken by
//! `evergreen run` before it touches anything else of the root — before the clean-up of cgroups
//! and container mount points a previous run left, the stores, the sockets and the runtime log.
//! A second runtime on the same root would otherwise take the first one's live containers for
//! leftovers and kill them.
//!
//! The lock is the kernel's, on the open file: it is released when the process ends, however it
//! ends (a `kill -9` leaves no stale lock to clean up). The file holds the owner's PID as text so
//! the refused runtime can say who holds the root; the PID is a note for people, the lock is
//! what decides. The file is opened close-on-exec, so no component inherits the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file's name in the write directory.
pub const LOCK_FILE: &str = "evergreen.lock";

/// Mode of the lock file: anyone may read which PID holds the root.
const LOCK_MODE: u32 = 0o644;

/// The held lock on a runtime root; released when dropped or when the process ends.
#[derive(Debug)]
pub struct RootLock {
    /// Kept open: closing the last descriptor releases the lock.
    _file: File,
    path: PathBuf,
}

/// Why the root could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock: another runtime runs on this root.
    #[error(
        "another evergreen runtime{} is running on this root (it holds {}); stop it first \
         (e.g. `systemctl stop evergreen`) or give this one another --root",
        pid.map_or_else(String::new, |p| format!(" (pid {p})")),
        path.display()
    )]
    Held { path: PathBuf, pid: Option<u32> },
    #[error("cannot lock the runtime root with {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RootLock {
    /// Locks the root whose write directory is `write_dir` (created if missing), without
    /// waiting: `LockError::Held` names the owner's PID when another runtime has it.
    pub fn acquire(write_dir: &Path) -> Result<RootLock, LockError> {
        let path = write_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(write_dir).map_err(io)?;
        // Not truncated on open: until the lock is ours, the PID in it is the owner's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(LOCK_MODE)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The owner writes its PID right after locking: an empty or partial read
                // only loses the note, never the refusal.
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    pid: text.trim().parse().ok(),
                    path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(io)?;
        Ok(RootLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_root_is_refused_naming_the_owner_pid() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("root");
        let held = RootLock::acquire(&dir).expect("first lock");
        let text = std::fs::read_to_string(held.path()).expect("lock file");
        assert_eq!(text.trim(), std::process::id().to_string());
        // flock locks belong to the open file, so a second open in the same
        // process conflicts exactly as another process would.
        match RootLock::acquire(&dir) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        let again = RootLock::acquire(&dir).expect("free once dropped");
        assert!(again.path().ends_with(LOCK_FILE));
    }
}
