//! Values put by `evergreen secrets put`: one file per secret under
//! `<secrets dir>/local/`, each value sealed under its own data key, which
//! is wrapped under the core key (see [`super::crypto`]).
//!
//! A file is named by the SHA-256 of the secret's name (names may hold `/`
//! and be longer than a file name may be) and holds, in clear, what
//! `evergreen secrets list` shows (name, type, size, when stored) and a
//! random version id; the value is only in the sealed part, whose
//! associated data binds it to those fields, so editing the clear fields
//! makes the value unreadable rather than mislabelled.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::crypto::{self, Key};
use super::{names, SecretError, ValueKind, MAX_SECRET_BYTES};
use evergreen_runtime::lambda::http::{base64_decode, base64_encode};

const FORMAT: u32 = 1;

/// What `list` shows of a stored secret (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ValueKind,
    pub size: usize,
    /// RFC 3339, UTC.
    pub stored_at: String,
    pub stored_at_ms: u64,
    pub version_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryFile {
    format: u32,
    #[serde(flatten)]
    info: StoredInfo,
    /// The entry's data key, wrapped under the core key (base64).
    key: String,
    /// The sealed value (base64).
    value: String,
}

fn aad(info: &StoredInfo) -> Vec<u8> {
    format!(
        "evergreen/secrets/local/v1\0{}\0{}\0{}\0{}\0{}",
        info.name,
        info.kind.as_str(),
        info.size,
        info.version_id,
        info.stored_at_ms
    )
    .into_bytes()
}

/// The local values of one runtime root.
#[derive(Debug, Clone)]
pub struct LocalStore {
    /// `<root>/secrets`.
    dir: PathBuf,
}

impl LocalStore {
    /// The store under the secrets directory `dir` (nothing is created yet).
    pub fn new(dir: &Path) -> LocalStore {
        LocalStore {
            dir: dir.to_path_buf(),
        }
    }

    fn entries_dir(&self) -> PathBuf {
        self.dir.join("local")
    }

    fn path_for(&self, name: &str) -> PathBuf {
        let digest = Sha256::digest(name.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.entries_dir().join(format!("{hex}.json"))
    }

    /// Stores `value` as `name`, replacing an earlier value. Valid UTF-8 is
    /// stored as a string secret (`SecretString`), anything else as binary.
    pub fn put(&self, name: &str, value: &[u8]) -> Result<StoredInfo, SecretError> {
        names::check_local_name(name).map_err(SecretError::BadName)?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLarge(value.len()));
        }
        let core = crypto::core_key(&self.dir)?;
        let dir = self.entries_dir();
        crypto::ensure_dir(&dir)?;
        let now = time::OffsetDateTime::now_utc();
        let info = StoredInfo {
            name: name.to_string(),
            kind: ValueKind::of(value),
            size: value.len(),
            stored_at: evergreen_durable::format_time(now).unwrap_or_else(|_| "unknown".into()),
            stored_at_ms: u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
            version_id: super::random_uuid()?,
        };
        let data_key = Key::random()?;
        let entry = EntryFile {
            format: FORMAT,
            key: base64_encode(&crypto::wrap(&core, &data_key)?),
            value: base64_encode(&crypto::seal(&data_key, value, &aad(&info))?),
            info: info.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&entry).map_err(|e| SecretError::Io {
            what: "cannot encode the entry".into(),
            message: e.to_string(),
        })?;
        let path = self.path_for(name);
        crypto::write_private(&path, &bytes).map_err(|e| SecretError::io(&path, e))?;
        Ok(info)
    }

    /// Removes `name`; `false` when it was not stored.
    pub fn remove(&self, name: &str) -> Result<bool, SecretError> {
        let path = self.path_for(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(SecretError::io(&path, e)),
        }
    }

    fn read_entry(&self, path: &Path) -> Result<EntryFile, SecretError> {
        let bytes = std::fs::read(path).map_err(|e| SecretError::io(path, e))?;
        let entry: EntryFile = evergreen_json::from_slice(&bytes).map_err(|e| SecretError::Io {
            what: path.display().to_string(),
            message: format!("not a secret entry: {e}"),
        })?;
        if entry.format != FORMAT {
            return Err(SecretError::Io {
                what: path.display().to_string(),
                message: format!("unknown format {}", entry.format),
            });
        }
        Ok(entry)
    }

    /// Every stored secret, sorted by name, and a message per unreadable
    /// file.
    pub fn list(&self) -> (Vec<StoredInfo>, Vec<String>) {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let dir = self.entries_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (out, problems),
            Err(e) => {
                problems.push(format!("{}: {e}", dir.display()));
                return (out, problems);
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match self.read_entry(&path) {
                Ok(e) => out.push(e.info),
                Err(e) => problems.push(e.to_string()),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        (out, problems)
    }

    /// The stored value that serves the resource secret `arn` (see
    /// [`names::store_match`]), decrypted.
    pub(crate) fn find_for_arn(
        &self,
        arn: &str,
    ) -> Result<Option<(StoredInfo, Vec<u8>)>, SecretError> {
        let (list, _) = self.list();
        let best = list
            .into_iter()
            .filter_map(|info| names::store_match(&info.name, arn).map(|rank| (rank, info)))
            .min_by_key(|(rank, _)| *rank);
        let Some((_, info)) = best else {
            return Ok(None);
        };
        let value = self.read_value(&info.name)?;
        Ok(Some((info, value)))
    }

    /// The decrypted value stored as `name`.
    pub(crate) fn read_value(&self, name: &str) -> Result<Vec<u8>, SecretError> {
        let path = self.path_for(name);
        let entry = self.read_entry(&path)?;
        let core = crypto::core_key(&self.dir)?;
        let undecodable = || SecretError::Io {
            what: path.display().to_string(),
            message: "its key or value is not base64".into(),
        };
        let wrapped = base64_decode(&entry.key).ok_or_else(undecodable)?;
        let sealed = base64_decode(&entry.value).ok_or_else(undecodable)?;
        let key = crypto::unwrap(&core, &wrapped).map_err(|e| SecretError::Corrupt {
            what: format!("local secret {name:?}"),
            source: e,
        })?;
        crypto::open(&key, &sealed, &aad(&entry.info)).map_err(|e| SecretError::Corrupt {
            what: format!("local secret {name:?}"),
            source: e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_find_remove() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(&tmp.path().join("secrets"));
        let info = store.put("greengrass-tok", b"s3cr3t-value").expect("put");
        assert_eq!(info.kind, ValueKind::String);
        assert_eq!(info.size, 12);
        store
            .put("greengrass-bin", &[0xff, 0x00, 0x80])
            .expect("put binary");
        let (list, problems) = store.list();
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["greengrass-bin", "greengrass-tok"]);
        assert_eq!(list[0].kind, ValueKind::Binary);
        // Nothing on disk holds the value in clear.
        for entry in std::fs::read_dir(tmp.path().join("secrets/local")).expect("dir") {
            let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
            assert!(!bytes.windows(12).any(|w| w == b"s3cr3t-value"));
        }
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-tok-AbCdEf";
        let (found, value) = store.find_for_arn(arn).expect("find").expect("some");
        assert_eq!(found.name, "greengrass-tok");
        assert_eq!(value, b"s3cr3t-value");
        // The full ARN wins over the name.
        store.put(arn, b"by-arn").expect("put arn");
        let (_, value) = store.find_for_arn(arn).expect("find").expect("some");
        assert_eq!(value, b"by-arn");
        assert!(store.remove("greengrass-tok").expect("rm"));
        assert!(!store.remove("greengrass-tok").expect("rm again"));
        assert_eq!(store.list().0.len(), 2);
    }

    #[test]
    fn an_edited_entry_is_refused_not_mislabelled() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(&tmp.path().join("secrets"));
        store.put("greengrass-a", b"alpha").expect("put");
        let path = store.path_for("greengrass-a");
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replace("\"size\": 5", "\"size\": 6")).expect("write");
        let e = store.read_value("greengrass-a").expect_err("tampered");
        assert!(e.to_string().contains("wrong key or tampered"), "{e}");
        assert!(!e.to_string().contains("alpha"));
    }

    #[test]
    fn an_entry_with_a_key_given_twice_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(&tmp.path().join("secrets"));
        store.put("greengrass-a", b"alpha").expect("put");
        let path = store.path_for("greengrass-a");
        let text = std::fs::read_to_string(&path).expect("read");
        // Members serde skips (and so their repeats) are outside the sealed data: only the
        // strict reader notices.
        let edited = text.replacen('{', r#"{"note": 1, "note": 2,"#, 1);
        std::fs::write(&path, edited).expect("write");
        let e = store.read_value("greengrass-a").expect_err("key twice");
        assert!(e.to_string().contains("duplicate key `note`"), "{e}");
    }

    #[test]
    fn another_core_key_cannot_read_the_store() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("secrets");
        let store = LocalStore::new(&dir);
        store.put("greengrass-a", b"alpha").expect("put");
        std::fs::remove_file(dir.join("core.key")).expect("rm key");
        assert!(store.read_value("greengrass-a").is_err());
    }

    #[test]
    fn bad_names_and_oversize_values_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(&tmp.path().join("secrets"));
        assert!(matches!(
            store.put("has space", b"x"),
            Err(SecretError::BadName(_))
        ));
        assert!(matches!(
            store.put("greengrass-big", &vec![b'a'; MAX_SECRET_BYTES + 1]),
            Err(SecretError::TooLarge(_))
        ));
    }
}
