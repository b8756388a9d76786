//! An export's checkpoint: the last sequence number the destination
//! acknowledged, one small file per export, replaced atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

fn path(dir: &Path, identifier: &str) -> PathBuf {
    // Identifiers are `[\w ,.\-_]{1,255}` (validated with the definition):
    // no `/`, and the suffix keeps `.` and `..` from naming a directory.
    dir.join(format!("{identifier}.checkpoint"))
}

/// The persisted checkpoint, `None` when there is none (or it is unreadable:
/// the export then starts at its `startSequenceNumber`, at least once).
pub fn load_checkpoint(dir: &Path, identifier: &str) -> Option<i64> {
    let text = std::fs::read_to_string(path(dir, identifier)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("lastExportedSequenceNumber")?.as_i64()
}

/// Persists `last` durably: a temporary file, fsynced, renamed over the
/// old one, and the directory fsynced so the rename survives a power cut.
pub fn store_checkpoint(dir: &Path, identifier: &str, last: i64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let target = path(dir, identifier);
    let tmp = dir.join(format!("{identifier}.checkpoint.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(
            serde_json::json!({ "lastExportedSequenceNumber": last })
                .to_string()
                .as_bytes(),
        )?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &target)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Forgets an export's checkpoint (its stream was deleted).
pub fn remove_checkpoint(dir: &Path, identifier: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path(dir, identifier)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_survives_and_is_replaced() {
        let dir = tempfile::tempdir().expect("should succeed");
        assert_eq!(load_checkpoint(dir.path(), ".."), None);
        store_checkpoint(dir.path(), "..", 7).expect("should succeed");
        assert_eq!(load_checkpoint(dir.path(), ".."), Some(7));
        store_checkpoint(dir.path(), "..", 9).expect("should succeed");
        assert_eq!(load_checkpoint(dir.path(), ".."), Some(9));
        assert_eq!(load_checkpoint(dir.path(), "other"), None);
        remove_checkpoint(dir.path(), "..").expect("should succeed");
        remove_checkpoint(dir.path(), "..").expect("should succeed");
        assert_eq!(load_checkpoint(dir.path(), ".."), None);
    }
}
