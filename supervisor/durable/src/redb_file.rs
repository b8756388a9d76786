//! Opening the runtime's redb stores (the cloud spool, the MQTT sessions): a damaged file is
//! set aside and a new one started, so the runtime still comes up and takes new data.

use std::path::{Path, PathBuf};

use redb::Database;

/// Why a store could not be opened.
#[derive(Debug)]
pub enum OpenFailure {
    /// Creating its directory, or moving a damaged file aside, failed.
    Io(PathBuf, std::io::Error),
    /// redb refused it for another reason than damage (held by another runtime, no access).
    Store(redb::DatabaseError),
}

/// Whether redb's refusal means the file is damaged: what redb calls corrupted, and a file that
/// is not a redb file at all (its header overwritten: `InvalidData`). A store in use by another
/// runtime, or one we may not read, is an error for the operator and is left alone.
fn damaged(e: &redb::DatabaseError) -> bool {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
    }
}

/// Opens (or creates) the store at `path`. A damaged one is renamed to
/// `<path>.damaged-<unix time>` (kept for inspection) and a new one created, with an error in
/// the log naming `what` the store is and what is `lost`.
pub fn open_or_set_aside(path: &Path, what: &str, lost: &str) -> Result<Database, OpenFailure> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| OpenFailure::Io(dir.to_path_buf(), e))?;
    }
    // redb asserts (panics) on some damage its own writes never produce, e.g. a file shorter
    // than its header says; that is damage like any other here.
    let opened = std::panic::catch_unwind(|| Database::create(path)).unwrap_or_else(|_| {
        Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(
            "redb refused the file (inconsistent length)".into(),
        )))
    });
    match opened {
        Ok(db) => Ok(db),
        Err(first) if damaged(&first) => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = path.with_extension(format!("damaged-{stamp}"));
            tracing::error!(
                "{what} {} cannot be opened ({first}); moved to {} and starting an empty one: {lost}",
                path.display(),
                aside.display()
            );
            std::fs::rename(path, &aside).map_err(|e| OpenFailure::Io(path.to_path_buf(), e))?;
            Database::create(path).map_err(OpenFailure::Store)
        }
        Err(e) => Err(OpenFailure::Store(e)),
    }
}
