//! The secret store's cryptography: the core key file, AES-256-GCM sealing,
//! and data keys wrapped under the core key.
//!
//! * The **core key** is 32 random bytes in `<secrets dir>/core.key`, created
//!   on first use with mode 0600 in a 0700 directory, never written
//!   anywhere else. It only ever encrypts data keys. A key file that others
//!   may read (mode bits beyond 0600) is refused rather than used: a leaked
//!   core key reveals every stored value.
//! * A **data key** (32 random bytes) encrypts values. It is stored only
//!   *wrapped*: sealed under the core key.
//! * **Sealing** is AES-256-GCM with a random 96-bit nonce per message and
//!   associated data that binds the ciphertext to what it is (which secret,
//!   which version), so a ciphertext moved to another entry fails to open.
//!   The sealed form is `nonce (12) || ciphertext || tag (16)`.
//!
//! Opening fails, without saying more, when the key is wrong or a single bit
//! of the nonce, ciphertext, tag or associated data changed.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

/// Bytes in a key (AES-256).
pub(crate) const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Associated data of a wrapped data key.
const WRAP_AAD: &[u8] = b"evergreen/secrets/data-key/v1";

/// A 256-bit key, wiped from memory when dropped; `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Key([u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // Volatile writes so the wipe is not optimised away.
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference to a u8.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl Key {
    /// A fresh random key from the kernel's generator.
    pub(crate) fn random() -> Result<Key, CryptoError> {
        let mut bytes = [0u8; KEY_LEN];
        random_bytes(&mut bytes)?;
        Ok(Key(bytes))
    }

    fn from_slice(bytes: &[u8]) -> Option<Key> {
        let bytes: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Key(bytes))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.0).into())
    }
}

/// Why a cryptographic step failed. Messages never include key material or
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Wrong key, or the data or its associated data was altered.
    #[error("decryption failed: wrong key or tampered data")]
    Authentication,
    #[error("sealed data is too short ({0} bytes)")]
    Truncated(usize),
    #[error("the random number generator failed: {0}")]
    Random(String),
    #[error("{}: {message}", path.display())]
    KeyFile { path: PathBuf, message: String },
    #[error("encryption failed")]
    Encrypt,
}

/// Fills `buf` from the operating system's generator.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| CryptoError::Random(format!("/dev/urandom: {e}")))
}

/// Encrypts `plaintext` under `key`, bound to `aad`.
pub(crate) fn seal(key: &Key, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    let ct = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Encrypt)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts what [`seal`] produced with the same key and `aad`.
pub(crate) fn open(key: &Key, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Truncated(sealed.len()));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    key.cipher()
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| CryptoError::Authentication)
}

/// `data_key` sealed under `core`.
pub(crate) fn wrap(core: &Key, data_key: &Key) -> Result<Vec<u8>, CryptoError> {
    seal(core, &data_key.0, WRAP_AAD)
}

/// The data key inside `wrapped`.
pub(crate) fn unwrap(core: &Key, wrapped: &[u8]) -> Result<Key, CryptoError> {
    let mut bytes = open(core, wrapped, WRAP_AAD)?;
    let key = Key::from_slice(&bytes).ok_or(CryptoError::Authentication);
    bytes.iter_mut().for_each(|b| *b = 0);
    key
}

/// The secrets directory, created 0700 (and tightened to 0700 if it exists
/// with wider permissions).
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), CryptoError> {
    let err = |message: String| CryptoError::KeyFile {
        path: dir.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create: {e}")))?;
    let meta = std::fs::metadata(dir).map_err(|e| err(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| err(format!("cannot make it owner-only (0700): {e}")))?;
    }
    Ok(())
}

/// The core key of the store in `dir` (`dir/core.key`), created on first
/// use. An existing key file must be exactly 32 bytes and owner-only.
pub(crate) fn core_key(dir: &Path) -> Result<Key, CryptoError> {
    ensure_dir(dir)?;
    let path = dir.join("core.key");
    let err = |message: String| CryptoError::KeyFile {
        path: path.clone(),
        message,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            let key = Key::random()?;
            f.write_all(&key.0)
                .and_then(|()| f.sync_all())
                .map_err(|e| err(format!("cannot write the new core key: {e}")))?;
            return Ok(key);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(format!("cannot create the core key: {e}"))),
    }
    let mut f = std::fs::File::open(&path).map_err(|e| err(format!("cannot open: {e}")))?;
    let mode = f
        .metadata()
        .map_err(|e| err(e.to_string()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "the core key is readable or writable by others (mode {:o}); it must be owner-only: chmod 600 it",
            mode & 0o777
        )));
    }
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    Read::by_ref(&mut f)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    let key = Key::from_slice(&bytes).ok_or_else(|| {
        err(format!(
            "the core key must be {KEY_LEN} bytes, found {}",
            bytes.len()
        ))
    });
    bytes.iter_mut().for_each(|b| *b = 0);
    key
}

/// Writes `bytes` to `path` owner-only, atomically and durably.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    evergreen_durable::write_atomic(path, bytes, evergreen_durable::Mode::Private)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips() {
        let key = Key::random().expect("key");
        let sealed = seal(&key, b"hunter2", b"id").expect("seal");
        assert_eq!(sealed.len(), NONCE_LEN + 7 + TAG_LEN);
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(open(&key, &sealed, b"id").expect("open"), b"hunter2");
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let key = Key::random().expect("key");
        let sealed = seal(&key, b"value", b"aad").expect("seal");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(open(&key, &bad, b"aad"), Err(CryptoError::Authentication)),
                "byte {i} flipped was accepted"
            );
        }
        assert!(matches!(
            open(&key, &sealed[..sealed.len() - 1], b"aad"),
            Err(CryptoError::Authentication)
        ));
        assert!(matches!(
            open(&key, &sealed[..5], b"aad"),
            Err(CryptoError::Truncated(5))
        ));
    }

    #[test]
    fn wrong_key_or_other_associated_data_is_refused() {
        let key = Key::random().expect("key");
        let other = Key::random().expect("key");
        let sealed = seal(&key, b"value", b"aad").expect("seal");
        assert!(matches!(
            open(&other, &sealed, b"aad"),
            Err(CryptoError::Authentication)
        ));
        assert!(matches!(
            open(&key, &sealed, b"other entry"),
            Err(CryptoError::Authentication)
        ));
    }

    #[test]
    fn a_wrapped_data_key_opens_only_under_its_core_key() {
        let core = Key::random().expect("key");
        let data = Key::random().expect("key");
        let wrapped = wrap(&core, &data).expect("wrap");
        assert!(!wrapped.windows(KEY_LEN).any(|w| w == data.0));
        assert_eq!(unwrap(&core, &wrapped).expect("unwrap").0, data.0);
        let other = Key::random().expect("key");
        assert!(unwrap(&other, &wrapped).is_err());
        // A value sealed directly under the core key is not a data key.
        let not_a_key = seal(&core, &[7u8; KEY_LEN], b"something else").expect("seal");
        assert!(unwrap(&core, &not_a_key).is_err());
    }

    #[test]
    fn the_core_key_is_created_owner_only_and_reused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("secrets");
        let first = core_key(&dir).expect("create");
        let mode = std::fs::metadata(dir.join("core.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(&dir).expect("meta").permissions().mode();
        assert_eq!(dmode & 0o777, 0o700);
        assert_eq!(core_key(&dir).expect("again").0, first.0);
    }

    #[test]
    fn a_core_key_others_can_read_or_of_the_wrong_size_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("secrets");
        core_key(&dir).expect("create");
        let path = dir.join("core.key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = core_key(&dir).expect_err("world-readable key");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, [1u8; 16]).expect("write");
        let e = core_key(&dir).expect_err("short key");
        assert!(e.to_string().contains("found 16"), "{e}");
    }
}
