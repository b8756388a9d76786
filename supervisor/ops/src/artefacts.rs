//! Function artefacts: the content-addressed store under `<write dir>/deployments/artefacts`
//! that makes a group version carry its code.
//!
//! This module owns which fields of a group name an artefact, how an artefact is copied in and
//! named by its digest, and how a stored one is checked. It never validates or runs a group.
//!
//! # What an artefact is
//!
//! A function's own code: the `Executable` of a function that is not a Python one (a program),
//! and the `CodeUri` of a Python function (a directory or a `.zip`). A Python function's
//! `Executable` is its handler (`module.function`) and is never read as a path. The operating
//! system's programs — an absolute `Executable` under `/usr`, `/bin`, `/sbin` or `/lib…`, the
//! directories every container binds from the host — are the host's, not the group's: they are
//! left as they are (copying `/bin/busybox` would break its name dispatch, and the package
//! manager, not a deployment, updates them). Files that `ExecArgs` name cannot be told from
//! other arguments and are not copied: a function that needs data files ships them in a
//! directory run through a wrapper, or as a Python function.
//!
//! # Layout and names
//!
//! ```text
//! <write dir>/deployments/artefacts/<digest>/<name>    a file (0555) or a directory tree
//! ```
//!
//! `<name>` is the artefact's own file name, so a program keeps its `argv[0]` and a Python
//! package its directory name. A file's digest is the SHA-256 of its bytes (`sha256sum` prints
//! it); a directory's is the SHA-256 of its manifest: `evergreen-tree 1` and then, depth first
//! with names in byte order, `d <path>` for each directory and `f <x|-> <sha256> <path>` for
//! each file (`x` when its owner may execute it), one per line. Symbolic links are followed
//! (the version must not change when their target does); `__pycache__` and `.pyc` files are
//! left out (they belong to one interpreter and Python rebuilds them). Stored trees are
//! read-only: files 0555 or 0444, directories 0555.
//!
//! A stored group refers to an artefact as the relative path `artefacts/<digest>/<name>` and
//! is read with `<write dir>/deployments` as its base directory: the reference is the same on
//! every gateway whatever its root, so a version's id is too.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The base directory of stored groups, relative to the write directory.
pub(crate) const BASE_DIR: &str = "deployments";
/// The artefact store, relative to the base directory.
pub(crate) const ARTEFACTS: &str = "artefacts";
/// Host directories whose programs are the operating system's (see the module documentation).
const HOST_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// Bounds on one tree, so a `CodeUri` of `/` fails clearly instead of filling the disk.
const MAX_FILES: usize = 100_000;
const MAX_BYTES: u64 = 2 << 30;
const MAX_DEPTH: usize = 32;
const TREE_HEADER: &str = "evergreen-tree 1\n";
const TMP_PREFIX: &str = ".tmp-";

/// What an artefact field holds, which decides its file mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A program (`Executable`): stored 0555.
    Program,
    /// A Python function's code (`CodeUri`): a zip is stored 0444.
    Code,
}

/// Why an artefact could not be stored or checked.
#[derive(Debug, thiserror::Error)]
pub enum ArtefactError {
    #[error("{field} {}: {source}", path.display())]
    Read {
        field: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{field} {}: {what}", path.display())]
    Unusable {
        field: String,
        path: PathBuf,
        what: String,
    },
    #[error("cannot store artefact {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("artefact {reference} is missing from {}", store.display())]
    Missing { reference: String, store: PathBuf },
    #[error("artefact {reference} is corrupt: its content hashes to {actual}")]
    Corrupt { reference: String, actual: String },
    #[error("{field}: {reference:?} is not an artefact reference (artefacts/<sha256>/<name>)")]
    BadReference { field: String, reference: String },
}

/// One field of a group that names an artefact: a JSON pointer and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub pointer: String,
    /// How people name the field (`Functions[2].FunctionConfiguration.CodeUri`).
    pub field: String,
    pub role: Role,
}

/// Every field of `group` that names an artefact, host programs left out. A function is a
/// Python one when it has a `CodeUri` or a `Runtime` other than a native function's, as
/// validation decides.
pub(crate) fn slots(group: &Value) -> Vec<Slot> {
    let Some(functions) = group
        .pointer("/FunctionDefinitionVersion/Functions")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, function) in functions.iter().enumerate() {
        let Some(config) = function.get("FunctionConfiguration") else {
            continue;
        };
        // A native function (`Runtime` `executable`) is a program like a plain one.
        let native = config
            .get("Runtime")
            .and_then(Value::as_str)
            .is_some_and(evergreen_group::plan::is_native_runtime);
        let python = !native
            && ["CodeUri", "Runtime"]
                .iter()
                .any(|k| config.get(*k).is_some_and(|v| !v.is_null()));
        let (key, role) = if python {
            ("CodeUri", Role::Code)
        } else {
            ("Executable", Role::Program)
        };
        let Some(path) = config.get(key).and_then(Value::as_str) else {
            continue;
        };
        if role == Role::Program && host_program(path) {
            continue;
        }
        out.push(Slot {
            pointer: format!(
                "/FunctionDefinitionVersion/Functions/{i}/FunctionConfiguration/{key}"
            ),
            field: format!("Functions[{i}].FunctionConfiguration.{key}"),
            role,
        });
    }
    out
}

/// An absolute path under a directory every container binds from the host.
fn host_program(path: &str) -> bool {
    let path = Path::new(path);
    path.is_absolute()
        && HOST_DIRS
            .iter()
            .any(|dir| path.starts_with(dir) && path != Path::new(dir))
}

/// `artefacts/<digest>/<name>` split into digest and name, or `None`.
pub(crate) fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    let rest = reference.strip_prefix(ARTEFACTS)?.strip_prefix('/')?;
    let (digest, name) = rest.split_once('/')?;
    let hex = digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (hex && valid_name(name)).then_some((digest, name))
}

/// One normal path component that is safe to write in a line of a manifest.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with(TMP_PREFIX)
        && !name.contains(['/', '\n', '\0'])
}

/// The artefact store of one write directory.
#[derive(Debug, Clone)]
pub struct ArtefactStore {
    dir: PathBuf,
}

impl ArtefactStore {
    /// The store under `write_dir`; nothing is created until an artefact is added.
    pub fn open(write_dir: &Path) -> Self {
        ArtefactStore {
            dir: write_dir.join(BASE_DIR).join(ARTEFACTS),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `reference` (`artefacts/<digest>/<name>`) is stored.
    pub(crate) fn path_of(&self, digest: &str, name: &str) -> PathBuf {
        self.dir.join(digest).join(name)
    }

    /// Copies the file or tree at `source` into the store (nothing is written when the same
    /// content is already stored under the same name) and returns its reference. `field` names
    /// the group field in errors.
    pub(crate) fn add(
        &self,
        source: &Path,
        role: Role,
        field: &str,
    ) -> Result<String, ArtefactError> {
        let read = |source_err: io::Error| ArtefactError::Read {
            field: field.to_string(),
            path: source.to_path_buf(),
            source: source_err,
        };
        let meta = fs::metadata(source).map_err(read)?;
        let name = artefact_name(source).ok_or_else(|| ArtefactError::Unusable {
            field: field.to_string(),
            path: source.to_path_buf(),
            what: "its file name cannot name an artefact (not UTF-8, or a newline in it)".into(),
        })?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(ArtefactError::Unusable {
                field: field.to_string(),
                path: source.to_path_buf(),
                what: "neither a file nor a directory".into(),
            });
        }
        if role == Role::Program && (meta.is_dir() || meta.permissions().mode() & 0o111 == 0) {
            return Err(ArtefactError::Unusable {
                field: field.to_string(),
                path: source.to_path_buf(),
                what: "not an executable file".into(),
            });
        }
        self.make_dir(&self.dir)?;
        let tmp = self.tmp_dir()?;
        let staged = tmp.join(&name);
        let result = (|| {
            let digest = if meta.is_dir() {
                let mut walk = Walk::new(field);
                walk.tree(source, Some(&staged), "", 0)?;
                walk.finish_modes()?;
                walk.digest()
            } else {
                let mode = match role {
                    Role::Program => 0o555,
                    Role::Code => 0o444,
                };
                hash_file(source, Some((&staged, mode)))
                    .map_err(|e| copy_error(field, source, &staged, e))?
                    .0
            };
            self.place(&staged, &digest, &name)?;
            Ok(format!("{ARTEFACTS}/{digest}/{name}"))
        })();
        remove_tmp(&tmp);
        result
    }

    /// Moves a staged artefact into place as `<digest>/<name>`; keeps an existing one.
    pub(crate) fn place(
        &self,
        staged: &Path,
        digest: &str,
        name: &str,
    ) -> Result<(), ArtefactError> {
        let holder = self.dir.join(digest);
        let target = holder.join(name);
        if fs::symlink_metadata(&target).is_ok() {
            return Ok(());
        }
        self.make_dir(&holder)?;
        match fs::rename(staged, &target) {
            // A tree's top directory is made read-only only now: moving a directory needs
            // write permission on it (its `..` changes) unless the runtime is root.
            Ok(()) if fs::metadata(&target).is_ok_and(|m| m.is_dir()) => {
                fs::set_permissions(&target, Permissions::from_mode(0o555)).map_err(|source| {
                    ArtefactError::Write {
                        path: target.clone(),
                        source,
                    }
                })?;
            }
            Ok(()) => {}
            // Another writer of the same content won the race: theirs is the same bytes.
            Err(_) if fs::symlink_metadata(&target).is_ok() => {}
            Err(source) => {
                return Err(ArtefactError::Write {
                    path: target,
                    source,
                })
            }
        }
        // The rename is durable once the directories holding it are synced.
        for dir in [&holder, &self.dir] {
            evergreen_durable::sync_dir(dir).map_err(|source| ArtefactError::Write {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Checks that `reference` is stored and that its content hashes to its digest.
    pub(crate) fn check(&self, reference: &str, field: &str) -> Result<(), ArtefactError> {
        let (digest, name) =
            parse_reference(reference).ok_or_else(|| ArtefactError::BadReference {
                field: field.to_string(),
                reference: reference.to_string(),
            })?;
        let path = self.path_of(digest, name);
        if fs::symlink_metadata(&path).is_err() {
            return Err(ArtefactError::Missing {
                reference: reference.to_string(),
                store: self.dir.clone(),
            });
        }
        let actual = digest_of(&path, field)?;
        if actual != digest {
            return Err(ArtefactError::Corrupt {
                reference: reference.to_string(),
                actual,
            });
        }
        Ok(())
    }

    /// A new empty directory beside the stored artefacts (same file system, so a rename
    /// moves a staged artefact into place).
    pub(crate) fn tmp_dir(&self) -> Result<PathBuf, ArtefactError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        self.make_dir(&self.dir)?;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let tmp = self
                .dir
                .join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
            match DirBuilder::new().mode(0o700).create(&tmp) {
                Ok(()) => return Ok(tmp),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(ArtefactError::Write { path: tmp, source }),
            }
        }
    }

    /// Creates `dir` (and the base directory above the store) readable by every user: a
    /// function running as another user (`RunAs`) reads its code from here.
    fn make_dir(&self, dir: &Path) -> Result<(), ArtefactError> {
        let write = |source| ArtefactError::Write {
            path: dir.to_path_buf(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(write)?;
        // The base directory may come from an older Evergreen with 0750.
        if let Some(base) = self.dir.parent() {
            let mode = fs::metadata(base).map_err(write)?.permissions().mode();
            if mode & 0o005 != 0o005 {
                fs::set_permissions(base, Permissions::from_mode((mode & 0o7777) | 0o055))
                    .map_err(write)?;
            }
        }
        Ok(())
    }
}

/// The digest of a stored (or any) file or tree, as [`ArtefactStore::add`] names it.
pub(crate) fn digest_of(path: &Path, field: &str) -> Result<String, ArtefactError> {
    let meta = fs::metadata(path).map_err(|source| ArtefactError::Read {
        field: field.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        let mut walk = Walk::new(field);
        walk.tree(path, None, "", 0)?;
        Ok(walk.digest())
    } else {
        hash_file(path, None)
            .map(|(digest, _)| digest)
            .map_err(|source| ArtefactError::Read {
                field: field.to_string(),
                path: path.to_path_buf(),
                source: source.into(),
            })
    }
}

/// The name an artefact keeps: the path's last normal component, taken lexically (a link
/// keeps the name it was called by), else the canonical path's.
fn artefact_name(source: &Path) -> Option<String> {
    let lexical = std::path::absolute(source)
        .ok()
        .and_then(|p| match p.components().next_back() {
            Some(Component::Normal(n)) => Some(n.to_os_string()),
            _ => None,
        });
    let name = match lexical {
        Some(name) => name,
        None => fs::canonicalize(source).ok()?.file_name()?.to_os_string(),
    };
    name.into_string().ok().filter(|n| valid_name(n))
}

/// Walks a tree depth first in byte order of names, building its manifest and, when copying,
/// writing the copy. One walk serves both, so a copy's digest and a later check agree.
struct Walk<'a> {
    field: &'a str,
    manifest: String,
    files: usize,
    bytes: u64,
    /// Directories of the copy, made 0755 while filled and 0555 at the end (deepest first).
    copied_dirs: Vec<PathBuf>,
}

impl<'a> Walk<'a> {
    fn new(field: &'a str) -> Self {
        Walk {
            field,
            manifest: String::from(TREE_HEADER),
            files: 0,
            bytes: 0,
            copied_dirs: Vec::new(),
        }
    }

    fn unusable(&self, path: &Path, what: impl Into<String>) -> ArtefactError {
        ArtefactError::Unusable {
            field: self.field.to_string(),
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    fn read_err(&self, path: &Path) -> impl FnOnce(io::Error) -> ArtefactError + '_ {
        let path = path.to_path_buf();
        move |source| ArtefactError::Read {
            field: self.field.to_string(),
            path,
            source,
        }
    }

    fn tree(
        &mut self,
        dir: &Path,
        copy: Option<&Path>,
        prefix: &str,
        depth: usize,
    ) -> Result<(), ArtefactError> {
        if depth > MAX_DEPTH {
            return Err(self.unusable(
                dir,
                format!("deeper than {MAX_DEPTH} directories (a link loop?)"),
            ));
        }
        if let Some(copy) = copy {
            DirBuilder::new()
                .mode(0o755)
                .create(copy)
                .map_err(|source| ArtefactError::Write {
                    path: copy.to_path_buf(),
                    source,
                })?;
            self.copied_dirs.push(copy.to_path_buf());
        }
        let mut entries: Vec<(String, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(self.read_err(dir))? {
            let entry = entry.map_err(self.read_err(dir))?;
            let path = entry.path();
            let name = entry
                .file_name()
                .into_string()
                .ok()
                .filter(|n| valid_name(n))
                .ok_or_else(|| {
                    self.unusable(&path, "a file name that is not UTF-8 or holds a newline")
                })?;
            if name == "__pycache__" || name.ends_with(".pyc") {
                continue;
            }
            entries.push((name, path));
        }
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (name, path) in entries {
            let relative = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let meta = fs::metadata(&path).map_err(self.read_err(&path))?;
            let target = copy.map(|c| c.join(&name));
            if meta.is_dir() {
                self.manifest.push_str(&format!("d {relative}\n"));
                self.tree(&path, target.as_deref(), &relative, depth + 1)?;
            } else if meta.is_file() {
                self.files += 1;
                self.bytes += meta.len();
                if self.files > MAX_FILES || self.bytes > MAX_BYTES {
                    return Err(self.unusable(
                        &path,
                        format!("the tree holds more than {MAX_FILES} files or {MAX_BYTES} bytes"),
                    ));
                }
                let exec = meta.permissions().mode() & 0o100 != 0;
                let mode = if exec { 0o555 } else { 0o444 };
                let copy_to = target.as_deref().map(|t| (t, mode));
                let (digest, _) = hash_file(&path, copy_to).map_err(|e| match &target {
                    Some(t) => copy_error(self.field, &path, t, e),
                    None => self.read_err(&path)(e.into()),
                })?;
                let x = if exec { 'x' } else { '-' };
                self.manifest
                    .push_str(&format!("f {x} {digest} {relative}\n"));
            } else {
                return Err(self.unusable(&path, "neither a file nor a directory"));
            }
        }
        Ok(())
    }

    /// Makes the copied directories read-only, deepest first (a read-only parent would stop
    /// its children being changed, which is the point, but only once they are written). The
    /// top one is left to [`ArtefactStore::place`], which still has to move it.
    fn finish_modes(&mut self) -> Result<(), ArtefactError> {
        for (i, dir) in self.copied_dirs.iter().enumerate().rev() {
            if i == 0 {
                File::open(dir)
                    .and_then(|f| f.sync_all())
                    .map_err(|source| ArtefactError::Write {
                        path: dir.clone(),
                        source,
                    })?;
                continue;
            }
            File::open(dir)
                .and_then(|f| f.sync_all())
                .and_then(|()| fs::set_permissions(dir, Permissions::from_mode(0o555)))
                .map_err(|source| ArtefactError::Write {
                    path: dir.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    fn digest(&self) -> String {
        hex(&Sha256::digest(self.manifest.as_bytes()))
    }
}

fn copy_error(field: &str, source: &Path, target: &Path, e: CopyError) -> ArtefactError {
    match e {
        CopyError::Read(source_err) => ArtefactError::Read {
            field: field.to_string(),
            path: source.to_path_buf(),
            source: source_err,
        },
        CopyError::Write(source_err) => ArtefactError::Write {
            path: target.to_path_buf(),
            source: source_err,
        },
    }
}

/// Which side of a copy failed.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl From<CopyError> for io::Error {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::Read(e) | CopyError::Write(e) => e,
        }
    }
}

/// SHA-256 of the file at `source` and its length; with `copy`, also writes what was read
/// (and hashed) to a new file there with that mode, synced. Hashing the bytes written, not
/// the source read again, keeps a file changed meanwhile from getting a wrong name.
fn hash_file(source: &Path, copy: Option<(&Path, u32)>) -> Result<(String, u64), CopyError> {
    let mut input = File::open(source).map_err(CopyError::Read)?;
    let mut output = match copy {
        Some((path, _)) => Some(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(CopyError::Write)?,
        ),
        None => None,
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
        if let Some(out) = output.as_mut() {
            out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        }
    }
    if let (Some(out), Some((path, mode))) = (output, copy) {
        out.sync_all().map_err(CopyError::Write)?;
        fs::set_permissions(path, Permissions::from_mode(mode)).map_err(CopyError::Write)?;
    }
    Ok((hex(&hasher.finalize()), len))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes a temporary directory, making its read-only parts writable first.
pub(crate) fn remove_tmp(tmp: &Path) {
    fn writable(dir: &Path) {
        let _ = fs::set_permissions(dir, Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    writable(&entry.path());
                }
            }
        }
    }
    writable(tmp);
    // Best effort: a left-over `.tmp-` directory is ignored by everything.
    let _ = fs::remove_dir_all(tmp);
}

#[cfg(test)]
mod tests;
