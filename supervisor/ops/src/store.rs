//! Immutable group versions: the store under `<write dir>/deployments/versions`.
//!
//! This module owns the on-disk layout of stored group versions, their
//! content-addressed ids, writing a version atomically, and reading one back
//! with its content checked against its id. It must never change or remove a
//! stored version, never hand out a version whose content does not hash to its
//! id, and never validate, deploy or run a group: callers validate first (they
//! pass the validated plan to [`VersionStore::create`]), and deployments decide
//! what runs. Greengrass V1 treated group versions the same way: all content
//! change is a new version (reference: core model §1.2).
//!
//! # Layout
//!
//! ```text
//! <write dir>/deployments/versions/<id>/group.json   the group, in canonical form (0440)
//! <write dir>/deployments/versions/<id>/meta.json    created, source, summary (0440)
//! ```
//!
//! Version directories are 0750. Anything else in `versions/` (such as a
//! `.tmp-…` directory left by a crash) is ignored.
//!
//! # Ids
//!
//! A version's id is the lowercase hex SHA-256 of its `group.json`, so
//! `sha256sum group.json` prints it. `group.json` holds the group's
//! *canonical form*: the file parsed as JSON and written back compact, with
//! object keys sorted by their UTF-8 bytes, arrays in order, strings escaped
//! as serde_json escapes them and numbers as serde_json reads them (`1` and
//! `1.0` differ). Whitespace and key order in the group file therefore do not
//! change the id; any change of content does. The canonical form is built
//! here rather than left to serde_json's map order, which a `preserve_order`
//! feature turned on anywhere in the build would change.
//!
//! A version carries its code: every function artefact the group names (a program's
//! `Executable`, a Python function's `CodeUri`) is copied into the content-addressed
//! [`ArtefactStore`](crate::artefacts) *before* hashing, and the stored group names it as
//! `artefacts/<digest>/<name>`, relative to `<write dir>/deployments` (the stored version's
//! base directory). Changing a program after `create-version` therefore changes nothing that
//! runs; changing it and storing again gives a new id; the same group and code stored from two
//! directories, or on two gateways with different roots, gets one id. A version written by an
//! Evergreen before artefacts (`meta.json` without `layout`) is read as it was written: with
//! its absolute `Executable`s and its `baseDir`.
//!
//! # Immutability
//!
//! A version is written into a temporary directory beside the others, each
//! file fsynced, the directory fsynced, then renamed into place in one step and
//! the parent fsynced: after a crash there is either the whole version or an
//! ignored `.tmp-` directory, never half a version under its id. Creating a
//! version that already exists checks the stored content's hash and returns
//! its id without writing anything. `meta.json` describes the version and is
//! not covered by the id; a missing or unreadable one still makes the version
//! corrupt, since its id and summary cannot be trusted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use evergreen_group::plan::GroupPlan;

use crate::artefacts::{self, ArtefactError, ArtefactStore};

/// Where versions live, relative to the write directory.
pub(crate) const VERSIONS_DIR: &str = "deployments/versions";
/// The stored group, in canonical form; its SHA-256 is the id.
pub(crate) const GROUP_FILE: &str = "group.json";
/// What is known about a version besides its content.
pub(crate) const META_FILE: &str = "meta.json";
/// The shortest prefix that selects a version: 6 hex digits are 16.7 million
/// values, so a gateway's few hundred versions rarely collide, and a typo
/// rarely selects the wrong one.
pub(crate) const MIN_PREFIX_LEN: usize = 6;

const FILE_MODE: u32 = 0o440;
const DIR_MODE: u32 = 0o750;
const TMP_PREFIX: &str = ".tmp-";

/// A version id: 64 lowercase hex digits, the SHA-256 of the canonical group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VersionId(String);

impl VersionId {
    /// Length of an id in hex digits.
    pub(crate) const LEN: usize = 64;
    /// Length of the short form shown in tables.
    pub(crate) const SHORT_LEN: usize = 12;

    /// The id of this content (the canonical group's bytes).
    pub fn of(content: &[u8]) -> Self {
        VersionId(artefacts::hex(&Sha256::digest(content)))
    }

    /// A full id as written (lowercase hex only), or `None`.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| VersionId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first `Self::SHORT_LEN` digits, for people.
    pub fn short(&self) -> &str {
        &self.0[..Self::SHORT_LEN]
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for VersionId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        VersionId::parse(&s).ok_or_else(|| format!("not a version id: {s:?}"))
    }
}

impl From<VersionId> for String {
    fn from(id: VersionId) -> String {
        id.0
    }
}

/// What validation found in the group when it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSummary {
    pub components: usize,
    pub subscriptions: usize,
    pub resources: usize,
    pub devices: usize,
}

impl VersionSummary {
    pub fn of(plan: &GroupPlan) -> Self {
        VersionSummary {
            components: plan.components.len(),
            subscriptions: plan.subscriptions.len(),
            resources: plan.resources.len(),
            devices: plan.devices.len(),
        }
    }
}

impl fmt::Display for VersionSummary {
    // The same words as `evergreen validate`'s summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} components, {} subscriptions, {} resources, {} devices",
            self.components, self.subscriptions, self.resources, self.devices
        )
    }
}

/// `meta.json`: everything known about a version besides its content.
/// Unknown keys are accepted so that a newer Evergreen may add some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionMeta {
    pub id: VersionId,
    /// When it was stored: UTC, RFC 3339 with milliseconds, fixed width
    /// (`2026-01-31T08:00:00.000Z`), so text order is time order.
    pub created: String,
    /// The group file it was read from (absolute), if it came from a file.
    pub source: Option<PathBuf>,
    /// The directory the group file's relative paths were resolved against
    /// (absolute); the stored group names its artefacts instead, this is for people.
    pub base_dir: PathBuf,
    pub summary: VersionSummary,
    /// `evergreen <version>` that stored it.
    pub created_by: String,
    /// 2 when the group's artefacts are in the artefact store (relative paths resolve against
    /// `<write dir>/deployments`); absent (0) for versions stored before artefacts existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub layout: u32,
}

/// The layout of versions whose code is in the artefact store.
pub(crate) const LAYOUT_ARTEFACTS: u32 = 2;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A stored version read back, its content checked against its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub meta: VersionMeta,
    /// `group.json` as stored: the canonical form, compact.
    pub group: String,
    /// The directory its relative paths (artefact references) resolve against: pass it to
    /// the loader.
    pub base_dir: PathBuf,
}

impl StoredVersion {
    pub fn id(&self) -> &VersionId {
        &self.meta.id
    }
}

/// What [`VersionStore::create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: VersionId,
    /// The version was already stored (and checked); nothing was written.
    pub existed: bool,
}

/// Every readable version, newest first, and a problem for each that is not.
#[derive(Debug, Default)]
pub struct VersionList {
    pub versions: Vec<VersionMeta>,
    /// Versions that are corrupt or unreadable: reported, never listed as good.
    pub problems: Vec<StoreError>,
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Only reachable when the caller skipped validation.
    #[error("the group is not JSON: {message}")]
    NotJson { message: String },
    #[error("path {} is not UTF-8 and cannot be written into a group", path.display())]
    NonUtf8Path { path: PathBuf },
    #[error("cannot format the time of creation: {message}")]
    Clock { message: String },
    #[error("group version {id} is corrupt ({reason}); it will not be used")]
    Corrupt { id: VersionId, reason: String },
    #[error("version prefix {prefix:?} is too short: give at least {MIN_PREFIX_LEN} hex digits")]
    PrefixTooShort { prefix: String },
    #[error(
        "{prefix:?} is not a version id or prefix: ids are {} hex digits",
        VersionId::LEN
    )]
    BadPrefix { prefix: String },
    #[error("version prefix {prefix} is ambiguous: it matches {}", matches.iter().map(VersionId::short).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        prefix: String,
        matches: Vec<VersionId>,
    },
    #[error("no stored group version matches {prefix}")]
    NotFound { prefix: String },
    #[error(transparent)]
    Artefact(#[from] ArtefactError),
}

impl StoreError {
    /// The process exit status: 1 for every store problem, as for
    /// `RunError::Io`. None is a configuration problem (78) — a corrupt or
    /// missing version is not fixed by changing the configuration.
    pub fn exit_code(&self) -> u8 {
        1
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}

/// The version store of one runtime root.
#[derive(Debug, Clone)]
pub struct VersionStore {
    root: PathBuf,
    artefacts: ArtefactStore,
    /// `<write dir>/deployments`: what stored groups' relative paths resolve against.
    base: PathBuf,
}

impl VersionStore {
    /// The store under `write_dir` (`CoreConfig::write_dir()`). Nothing is
    /// created until a version is: listing an empty root writes nothing.
    pub fn open(write_dir: &Path) -> Self {
        VersionStore {
            root: write_dir.join(VERSIONS_DIR),
            artefacts: ArtefactStore::open(write_dir),
            base: write_dir.join(artefacts::BASE_DIR),
        }
    }

    /// `<write dir>/deployments/versions`.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The directory of one version.
    pub fn version_dir(&self, id: &VersionId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// `<write dir>/deployments`: the base directory stored groups are validated with.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The artefact store beside the versions.
    pub fn artefacts(&self) -> &ArtefactStore {
        &self.artefacts
    }

    /// Stores `text`, a group file already validated into `plan`, read from
    /// `source` in `base_dir`, with its artefacts (copied from under `base_dir`, or
    /// references already in the artefact store, checked). Returns the id; an existing
    /// version with that id is checked and kept, never rewritten.
    pub fn create(
        &self,
        text: &str,
        base_dir: &Path,
        source: Option<&Path>,
        plan: &GroupPlan,
    ) -> Result<Created, StoreError> {
        self.create_at(text, base_dir, source, plan, OffsetDateTime::now_utc())
    }

    fn create_at(
        &self,
        text: &str,
        base_dir: &Path,
        source: Option<&Path>,
        plan: &GroupPlan,
        now: OffsetDateTime,
    ) -> Result<Created, StoreError> {
        let base_dir =
            std::path::absolute(base_dir).map_err(io_err("cannot make absolute", base_dir))?;
        let source = source
            .map(|s| std::path::absolute(s).map_err(io_err("cannot make absolute", s)))
            .transpose()?;
        let mut value: Value = serde_json::from_str(text).map_err(|e| StoreError::NotJson {
            message: e.to_string(),
        })?;
        self.store_artefacts(&mut value, &base_dir)?;
        let content = canonical_json(&value);
        let id = VersionId::of(content.as_bytes());

        if self.exists(&id)? {
            return self
                .read_verified(&id)
                .map(|_| Created { id, existed: true });
        }

        let meta = VersionMeta {
            id: id.clone(),
            created: format_time(now)?,
            source,
            base_dir,
            summary: VersionSummary::of(plan),
            created_by: format!("evergreen {}", crate::release::version()),
            layout: LAYOUT_ARTEFACTS,
        };
        let mut meta_text = serde_json::to_string_pretty(&meta).map_err(|e| StoreError::Io {
            what: "cannot encode the metadata of",
            path: self.version_dir(&id),
            source: io::Error::other(e),
        })?;
        meta_text.push('\n');

        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.root)
            .map_err(io_err("cannot create the version store", &self.root))?;
        let tmp = self.make_tmp_dir(&id)?;
        let written = write_version(&tmp, content.as_bytes(), meta_text.as_bytes());
        if let Err(e) = written {
            remove_tmp(&tmp);
            return Err(e);
        }
        let dir = self.version_dir(&id);
        if let Err(e) = fs::rename(&tmp, &dir) {
            remove_tmp(&tmp);
            // Another `create` of the same content won the race: the rename
            // does not replace a non-empty directory, so theirs stands.
            if self.exists(&id)? {
                return self
                    .read_verified(&id)
                    .map(|_| Created { id, existed: true });
            }
            return Err(StoreError::Io {
                what: "cannot move the new version into place at",
                path: dir,
                source: e,
            });
        }
        // The rename is only durable once the directory holding it is synced.
        sync_dir(&self.root)?;
        Ok(Created { id, existed: false })
    }

    /// Every stored version, newest first (ties by id). A version that is
    /// corrupt or unreadable is reported in `problems`, not listed.
    pub fn list(&self) -> Result<VersionList, StoreError> {
        let mut list = VersionList::default();
        for id in self.ids()? {
            match self.read_verified(&id) {
                Ok(v) => list.versions.push(v.meta),
                Err(e) => list.problems.push(e),
            }
        }
        list.versions
            .sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(list)
    }

    /// The version whose id is or starts with `id_or_prefix` (at least
    /// `MIN_PREFIX_LEN` hex digits, case ignored), its content checked.
    /// Its artefacts are checked against their digests too: what is about to run is what
    /// was stored.
    pub fn load(&self, id_or_prefix: &str) -> Result<StoredVersion, StoreError> {
        let id = self.resolve(id_or_prefix)?;
        let version = self.read_verified(&id)?;
        if version.meta.layout >= LAYOUT_ARTEFACTS {
            let group: Value =
                serde_json::from_str(&version.group).map_err(|e| StoreError::Corrupt {
                    id: id.clone(),
                    reason: format!("{GROUP_FILE} is not JSON: {e}"),
                })?;
            let mut checked = BTreeSet::new();
            for slot in artefacts::slots(&group) {
                if let Some(reference) = group.pointer(&slot.pointer).and_then(Value::as_str) {
                    if checked.insert(reference) {
                        self.artefacts.check(reference, &slot.field)?;
                    }
                }
            }
        }
        Ok(version)
    }

    /// Reads version `id` with its group checked against the id, but its artefacts not hashed
    /// again: for the caller that has just stored it with [`VersionStore::create`], which
    /// hashed them as it copied them (`run --group` at start-up). Anything else uses
    /// [`VersionStore::load`].
    pub fn read_created(&self, id: &VersionId) -> Result<StoredVersion, StoreError> {
        self.read_verified(id)
    }

    /// Replaces every artefact field of `group` by its reference in the artefact store,
    /// copying files in; a field that already is a reference is checked.
    /// A program named by several functions is read once.
    fn store_artefacts(&self, group: &mut Value, base_dir: &Path) -> Result<(), StoreError> {
        let mut done: BTreeMap<(String, bool), String> = BTreeMap::new();
        for slot in artefacts::slots(group) {
            let Some(Value::String(path)) = group.pointer_mut(&slot.pointer) else {
                continue;
            };
            let key = (path.clone(), slot.role == artefacts::Role::Program);
            let reference = match done.get(&key) {
                Some(reference) => reference.clone(),
                None if artefacts::parse_reference(path).is_some() => {
                    self.artefacts.check(path, &slot.field)?;
                    path.clone()
                }
                None => {
                    let source = base_dir.join(path.as_str());
                    self.artefacts.add(&source, slot.role, &slot.field)?
                }
            };
            done.insert(key, reference.clone());
            *path = reference;
        }
        Ok(())
    }

    /// The one stored id that `id_or_prefix` selects.
    pub fn resolve(&self, id_or_prefix: &str) -> Result<VersionId, StoreError> {
        let prefix = id_or_prefix.trim().to_ascii_lowercase();
        if prefix.len() > VersionId::LEN || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::BadPrefix {
                prefix: id_or_prefix.to_string(),
            });
        }
        if prefix.len() < MIN_PREFIX_LEN {
            return Err(StoreError::PrefixTooShort {
                prefix: id_or_prefix.to_string(),
            });
        }
        let mut matches: Vec<VersionId> = self
            .ids()?
            .into_iter()
            .filter(|id| id.as_str().starts_with(&prefix))
            .collect();
        match matches.len() {
            0 => Err(StoreError::NotFound { prefix }),
            1 => Ok(matches.remove(0)),
            _ => {
                matches.sort();
                Err(StoreError::Ambiguous { prefix, matches })
            }
        }
    }

    /// The ids of every directory entry named like one, unsorted.
    fn ids(&self) -> Result<Vec<VersionId>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot read the version store", &self.root)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("cannot read the version store", &self.root))?;
            if let Some(id) = entry.file_name().to_str().and_then(VersionId::parse) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn exists(&self, id: &VersionId) -> Result<bool, StoreError> {
        let dir = self.version_dir(id);
        match fs::symlink_metadata(&dir) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("cannot look up", &dir)(e)),
        }
    }

    /// Reads a version and checks that `group.json` hashes to its id and
    /// `meta.json` names that id.
    fn read_verified(&self, id: &VersionId) -> Result<StoredVersion, StoreError> {
        let dir = self.version_dir(id);
        let corrupt = |reason: String| StoreError::Corrupt {
            id: id.clone(),
            reason,
        };
        let group_path = dir.join(GROUP_FILE);
        let bytes = match fs::read(&group_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(corrupt(format!("{GROUP_FILE} is missing")))
            }
            Err(e) => return Err(io_err("cannot read", &group_path)(e)),
        };
        let actual = VersionId::of(&bytes);
        if &actual != id {
            return Err(corrupt(format!(
                "{} hashes to {}, not to its id",
                group_path.display(),
                actual.short()
            )));
        }
        let group =
            String::from_utf8(bytes).map_err(|_| corrupt(format!("{GROUP_FILE} is not UTF-8")))?;

        let meta_path = dir.join(META_FILE);
        let meta_bytes = match fs::read(&meta_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(corrupt(format!("{META_FILE} is missing")))
            }
            Err(e) => return Err(io_err("cannot read", &meta_path)(e)),
        };
        let meta: VersionMeta = evergreen_json::from_slice(&meta_bytes)
            .map_err(|e| corrupt(format!("{META_FILE} cannot be read: {e}")))?;
        if &meta.id != id {
            return Err(corrupt(format!(
                "{META_FILE} names version {}",
                meta.id.short()
            )));
        }
        let base_dir = if meta.layout >= LAYOUT_ARTEFACTS {
            self.base.clone()
        } else {
            meta.base_dir.clone()
        };
        Ok(StoredVersion {
            meta,
            group,
            base_dir,
        })
    }

    /// A fresh, empty directory beside the versions, on the same file
    /// system, so the final rename is atomic.
    fn make_tmp_dir(&self, id: &VersionId) -> Result<PathBuf, StoreError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        loop {
            let name = format!(
                "{TMP_PREFIX}{}-{}-{}",
                id.short(),
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            let tmp = self.root.join(name);
            match DirBuilder::new().mode(DIR_MODE).create(&tmp) {
                Ok(()) => {
                    // Exactly 0750 whatever the umask.
                    return fs::set_permissions(&tmp, Permissions::from_mode(DIR_MODE))
                        .map(|()| tmp.clone())
                        .map_err(|e| {
                            remove_tmp(&tmp);
                            io_err("cannot set the mode of", &tmp)(e)
                        });
                }
                // Left by a crashed process that had our pid: pick another name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("cannot create", &tmp)(e)),
            }
        }
    }
}

fn write_version(dir: &Path, group: &[u8], meta: &[u8]) -> Result<(), StoreError> {
    write_file(&dir.join(GROUP_FILE), group)?;
    write_file(&dir.join(META_FILE), meta)?;
    sync_dir(dir)
}

/// A new read-only file with `content`, on disk before this returns.
fn write_file(path: &Path, content: &[u8]) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err("cannot create", path))?;
    // The mode limits later opens only; this descriptor stays writable.
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(io_err("cannot set the mode of", path))?;
    file.write_all(content)
        .map_err(io_err("cannot write", path))?;
    file.sync_all().map_err(io_err("cannot sync", path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    evergreen_durable::sync_dir(dir).map_err(io_err("cannot sync directory", dir))
}

/// Best effort: a leftover `.tmp-` directory is ignored by every reader.
fn remove_tmp(tmp: &Path) {
    if let Err(e) = fs::remove_dir_all(tmp) {
        tracing::warn!("cannot remove {}: {e}", tmp.display());
    }
}

pub(crate) fn format_time(now: OffsetDateTime) -> Result<String, StoreError> {
    evergreen_durable::format_time(now).map_err(|e| StoreError::Clock {
        message: e.to_string(),
    })
}

/// The canonical form (see the module documentation): compact, object keys
/// sorted by their UTF-8 bytes.
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => push_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn push_json_string(s: &str, out: &mut String) {
    // Serializing a string cannot fail; the fallback keeps this total anyway.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_config::{ConfigEnv, CoreConfig};
    use evergreen_group::{ConnectorRegistry, LoadError, Loader, ValidationOptions};

    /// Validates as the runtime does (with no connectors: these groups have none).
    fn load_group(
        text: &str,
        name: &str,
        base_dir: PathBuf,
        cfg: &CoreConfig,
    ) -> Result<GroupPlan, LoadError> {
        let options = ValidationOptions {
            allow_root: cfg.allow_root(),
            default_core_thing_arn: cfg.core_thing.thing_arn.clone(),
            ..ValidationOptions::default()
        };
        Loader::new(ConnectorRegistry::new(Vec::new()), options).load(text, name, base_dir)
    }

    const GROUP: &str = r#"{
      "FunctionDefinitionVersion": { "Functions": [
        { "Id": "producer", "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:producer:1",
          "FunctionConfiguration": { "Executable": "./bin/producer", "Pinned": true } },
        { "Id": "consumer", "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:consumer:1",
          "FunctionConfiguration": { "Executable": "/bin/sh" } }
      ] },
      "SubscriptionDefinitionVersion": { "Subscriptions": [
        { "Id": "s1", "Source": "arn:aws:lambda:eu-west-1:123456789012:function:producer:1",
          "Subject": "readings/+",
          "Target": "arn:aws:lambda:eu-west-1:123456789012:function:consumer:1" }
      ] }
    }"#;

    // The same group: other whitespace, keys in another order, and the
    // executable spelt without `./`.
    const GROUP_REORDERED: &str = r#"{"SubscriptionDefinitionVersion":{"Subscriptions":[{"Target":"arn:aws:lambda:eu-west-1:123456789012:function:consumer:1","Subject":"readings/+","Source":"arn:aws:lambda:eu-west-1:123456789012:function:producer:1","Id":"s1"}]},
"FunctionDefinitionVersion":{"Functions":[{"FunctionConfiguration":{"Pinned":true,"Executable":"bin/producer"},"Id":"producer","FunctionArn":"arn:aws:lambda:eu-west-1:123456789012:function:producer:1"},
{"Id":"consumer","FunctionArn":"arn:aws:lambda:eu-west-1:123456789012:function:consumer:1","FunctionConfiguration":{"Executable":"/bin/sh"}}]}}"#;

    fn cfg() -> CoreConfig {
        let env = ConfigEnv {
            uid: 1000,
            xdg_data_home: None,
            home: Some(PathBuf::from("/home/u")),
        };
        CoreConfig::defaults(&env).expect("defaults")
    }

    fn plan(text: &str) -> GroupPlan {
        load_group(text, "test", PathBuf::from("/"), &cfg()).expect("valid group")
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_780_000_000 + seconds).expect("time")
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: VersionStore,
        /// The write directory.
        root: PathBuf,
        /// A group's directory, with `bin/producer`.
        g: PathBuf,
        /// Another directory with the same `bin/producer`.
        same: PathBuf,
        /// Another directory whose `bin/producer` differs.
        changed: PathBuf,
    }

    const PRODUCER: &[u8] = b"#!/bin/sh\necho producer\n";

    fn program(dir: &Path, content: &[u8]) -> PathBuf {
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).expect("mkdir");
        let path = bin.join("producer");
        fs::write(&path, content).expect("write");
        fs::set_permissions(&path, Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("root");
        let [g, same, changed] = ["g", "same", "changed"].map(|d| dir.path().join(d));
        program(&g, PRODUCER);
        program(&same, PRODUCER);
        program(&changed, b"#!/bin/sh\necho changed\n");
        Fixture {
            store: VersionStore::open(&root),
            _dir: dir,
            root,
            g,
            same,
            changed,
        }
    }

    fn create(store: &VersionStore, text: &str, base: &Path, seconds: i64) -> Created {
        store
            .create_at(
                text,
                base,
                Some(&base.join("group.json")),
                &plan(text),
                at(seconds),
            )
            .expect("create")
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    /// Makes a stored file writable again, as an intruder or a disk fault
    /// would not need to ask.
    fn overwrite(path: &Path, content: &[u8]) {
        fs::set_permissions(path, Permissions::from_mode(0o640)).expect("chmod");
        fs::write(path, content).expect("write");
    }

    #[test]
    fn same_content_twice_is_one_version_written_once() {
        let f = fixture();
        let first = create(&f.store, GROUP, &f.g, 0);
        assert!(!first.existed);
        let group_file = f.store.version_dir(&first.id).join(GROUP_FILE);
        let before = fs::symlink_metadata(&group_file).expect("stat");

        let second = create(&f.store, GROUP, &f.g, 60);
        assert_eq!(second.id, first.id);
        assert!(second.existed);
        // Not rewritten: same inode, and meta still has the first time.
        let after = fs::symlink_metadata(&group_file).expect("stat");
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&before),
            std::os::unix::fs::MetadataExt::ino(&after)
        );
        let stored = f.store.load(first.id.as_str()).expect("load");
        assert_eq!(stored.meta.created, format_time(at(0)).expect("time"));
        assert_eq!(f.store.list().expect("list").versions.len(), 1);
    }

    #[test]
    fn whitespace_and_key_order_do_not_change_the_id() {
        let f = fixture();
        let a = create(&f.store, GROUP, &f.g, 0);
        let b = create(&f.store, GROUP_REORDERED, &f.g, 1);
        assert_eq!(a.id, b.id);
        assert!(b.existed);
    }

    #[test]
    fn different_content_is_a_different_id() {
        let f = fixture();
        let a = create(&f.store, GROUP, &f.g, 0);
        let changed = GROUP.replace("readings/+", "readings/#");
        let b = create(&f.store, &changed, &f.g, 1);
        assert_ne!(a.id, b.id);
        assert!(!b.existed);
    }

    #[test]
    fn the_same_group_and_code_from_another_directory_is_the_same_version() {
        let f = fixture();
        let a = create(&f.store, GROUP, &f.g, 0);
        let b = create(&f.store, GROUP, &f.same, 1);
        assert_eq!(a.id, b.id);
        assert!(b.existed);
    }

    #[test]
    fn changed_code_is_another_version_and_the_old_one_keeps_its_code() {
        let f = fixture();
        let a = create(&f.store, GROUP, &f.g, 0);
        let b = create(&f.store, GROUP, &f.changed, 1);
        assert_ne!(a.id, b.id);
        // Changing the program in place after storing changes nothing stored.
        program(&f.g, b"#!/bin/sh\necho edited later\n");
        let stored = f.store.load(a.id.as_str()).expect("load");
        let exe = executable(&stored, 0);
        assert_eq!(
            fs::read(stored.base_dir.join(&exe)).expect("read"),
            PRODUCER
        );
    }

    fn executable(stored: &StoredVersion, i: usize) -> String {
        let group: Value = serde_json::from_str(&stored.group).expect("json");
        group
            .pointer(&format!(
                "/FunctionDefinitionVersion/Functions/{i}/FunctionConfiguration/Executable"
            ))
            .and_then(Value::as_str)
            .map(str::to_string)
            .expect("an executable")
    }

    #[test]
    fn a_tampered_artefact_is_reported_corrupt_and_the_version_not_returned() {
        let f = fixture();
        let created = create(&f.store, GROUP, &f.g, 0);
        let stored = f.store.load(created.id.as_str()).expect("load");
        let path = stored.base_dir.join(executable(&stored, 0));
        overwrite(&path, b"#!/bin/sh\necho evil\n");
        match f.store.load(created.id.as_str()) {
            Err(StoreError::Artefact(ArtefactError::Corrupt { reference, .. })) => {
                assert!(reference.ends_with("/producer"), "{reference}");
            }
            other => panic!("expected a corrupt artefact, got {other:?}"),
        }
        fs::remove_file(&path).expect("rm");
        assert!(matches!(
            f.store.load(created.id.as_str()),
            Err(StoreError::Artefact(ArtefactError::Missing { .. }))
        ));
    }

    #[test]
    fn a_missing_program_is_refused_naming_the_field() {
        let f = fixture();
        let text = GROUP.replace("./bin/producer", "./bin/absent");
        let err = f
            .store
            .create_at(&text, &f.g, None, &plan(&text), at(0))
            .expect_err("refused");
        let msg = err.to_string();
        assert!(
            msg.contains("Functions[0].FunctionConfiguration.Executable") && msg.contains("absent"),
            "{msg}"
        );
        assert!(f.store.list().expect("list").versions.is_empty());
    }

    #[test]
    fn programs_are_stored_by_digest_and_host_programs_stay_where_they_are() {
        let f = fixture();
        let created = create(&f.store, GROUP, &f.g, 0);
        let stored = f.store.load(created.id.as_str()).expect("load");
        let digest = artefacts::hex(&Sha256::digest(PRODUCER));
        assert_eq!(
            executable(&stored, 0),
            format!("artefacts/{digest}/producer")
        );
        assert_eq!(executable(&stored, 1), "/bin/sh");
        assert_eq!(stored.meta.base_dir, f.g);
        assert_eq!(stored.base_dir, f.root.join("deployments"));
        assert_eq!(stored.meta.layout, LAYOUT_ARTEFACTS);
        assert_eq!(stored.meta.source, Some(f.g.join("group.json")));
        let copy = stored.base_dir.join(executable(&stored, 0));
        assert_eq!(mode(&copy), 0o555);
        assert_eq!(fs::read(&copy).expect("read"), PRODUCER);

        // Validated with its base directory, the stored group runs the stored copy.
        let again = load_group(&stored.group, "stored", stored.base_dir.clone(), &cfg())
            .expect("still valid");
        let launch = again
            .components
            .values()
            .find(|c| c.id == "producer")
            .map(|c| c.launch.clone());
        assert_eq!(
            launch,
            Some(evergreen_group::plan::Launch::Executable {
                path: copy,
                args: Vec::new()
            })
        );

        let bytes = fs::read(f.store.version_dir(&created.id).join(GROUP_FILE)).expect("read");
        assert_eq!(VersionId::of(&bytes), created.id);
        assert_eq!(stored.meta.summary.components, 2);
        assert_eq!(stored.meta.summary.subscriptions, 1);
    }

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, 2.5, "x\"y"], "a": {"é": null, "Z": true} }"#)
                .expect("json");
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"Z":true,"é":null},"b":[1,2.5,"x\"y"]}"#
        );
    }

    #[test]
    fn stored_files_are_read_only_and_directories_0750() {
        let f = fixture();
        let created = create(&f.store, GROUP, &f.g, 0);
        let dir = f.store.version_dir(&created.id);
        assert_eq!(mode(&dir), 0o750);
        assert_eq!(mode(&dir.join(GROUP_FILE)), 0o440);
        assert_eq!(mode(&dir.join(META_FILE)), 0o440);
        // No temporary directory is left behind.
        let names: Vec<String> = fs::read_dir(f.store.dir())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [created.id.to_string()]);
    }

    #[test]
    fn a_tampered_group_is_reported_corrupt_and_never_returned() {
        let f = fixture();
        let created = create(&f.store, GROUP, &f.g, 0);
        let path = f.store.version_dir(&created.id).join(GROUP_FILE);
        let text = fs::read_to_string(&path).expect("read");
        overwrite(&path, text.replace("readings/+", "readings/#").as_bytes());

        let err = f.store.load(created.id.short()).expect_err("tampered");
        assert!(
            matches!(&err, StoreError::Corrupt { id, .. } if id == &created.id),
            "{err}"
        );
        assert!(err.to_string().contains("not to its id"), "{err}");
        // Creating it again does not repair (rewrite) it either.
        let again = f
            .store
            .create_at(GROUP, Path::new(&f.g), None, &plan(GROUP), at(5));
        assert!(
            matches!(again, Err(StoreError::Corrupt { .. })),
            "{again:?}"
        );
        let list = f.store.list().expect("list");
        assert!(list.versions.is_empty());
        assert_eq!(list.problems.len(), 1);
    }

    #[test]
    fn meta_in_array_form_is_corrupt() {
        let f = fixture();
        let a = create(&f.store, GROUP, &f.g, 0);
        let path = f.store.version_dir(&a.id).join(META_FILE);
        let mut meta: Value =
            serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
        let s = meta["summary"].clone();
        // serde alone reads the summary from an array, by position.
        meta["summary"] = serde_json::json!([
            s["components"],
            s["subscriptions"],
            s["resources"],
            s["devices"]
        ]);
        overwrite(&path, &serde_json::to_vec(&meta).expect("encode"));
        let err = f.store.load(a.id.as_str()).expect_err("array form");
        assert!(
            err.to_string()
                .contains("summary: expected an object, found an array"),
            "{err}"
        );
    }

    #[test]
    fn missing_or_mismatched_meta_is_corrupt() {
        let f = fixture();
        let a = create(&f.store, GROUP, &f.g, 0);
        let b = create(&f.store, &GROUP.replace("readings/+", "other/+"), &f.g, 1);
        let meta_b = fs::read(f.store.version_dir(&b.id).join(META_FILE)).expect("read");
        overwrite(&f.store.version_dir(&a.id).join(META_FILE), &meta_b);
        let err = f.store.load(a.id.as_str()).expect_err("meta of b");
        assert!(err.to_string().contains("names version"), "{err}");

        fs::remove_file(f.store.version_dir(&b.id).join(META_FILE)).expect("rm");
        let err = f.store.load(b.id.as_str()).expect_err("no meta");
        assert!(err.to_string().contains("meta.json is missing"), "{err}");
    }

    #[test]
    fn prefixes_select_one_version_or_say_why_not() {
        let f = fixture();
        let created = create(&f.store, GROUP, &f.g, 0);
        let id = created.id.as_str();
        assert_eq!(f.store.resolve(&id[..6]).expect("6 digits"), created.id);
        assert_eq!(
            f.store.resolve(&id[..10].to_uppercase()).expect("case"),
            created.id
        );
        assert_eq!(f.store.resolve(id).expect("full"), created.id);
        assert!(matches!(
            f.store.resolve(&id[..5]),
            Err(StoreError::PrefixTooShort { .. })
        ));
        assert!(matches!(
            f.store.resolve("not-hex!"),
            Err(StoreError::BadPrefix { .. })
        ));
        let other = if id.starts_with('0') {
            "111111"
        } else {
            "000000"
        };
        assert!(matches!(
            f.store.resolve(other),
            Err(StoreError::NotFound { .. })
        ));

        // Another directory sharing exactly 6 digits: the 6-digit prefix is
        // ambiguous, the 7-digit one is not.
        let mut twin = id.as_bytes().to_vec();
        twin[6] = if twin[6] == b'0' { b'1' } else { b'0' };
        let twin = String::from_utf8(twin).expect("hex");
        fs::create_dir(f.store.dir().join(&twin)).expect("mkdir");
        match f.store.resolve(&id[..6]) {
            Err(StoreError::Ambiguous { matches, .. }) => assert_eq!(matches.len(), 2),
            other => panic!("expected ambiguous, got {other:?}"),
        }
        assert_eq!(f.store.resolve(&id[..7]).expect("7 digits"), created.id);
        // The empty twin is corrupt, and loading it says so.
        assert!(matches!(
            f.store.load(&twin),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn list_is_newest_first_and_ignores_other_entries() {
        let f = fixture();
        let old = create(&f.store, GROUP, &f.g, 0);
        let new = create(&f.store, &GROUP.replace("readings/+", "b/+"), &f.g, 100);
        let mid = create(&f.store, &GROUP.replace("readings/+", "c/+"), &f.g, 50);
        fs::create_dir(f.store.dir().join(".tmp-leftover")).expect("mkdir");
        fs::write(f.store.dir().join("README"), "x").expect("write");
        let list = f.store.list().expect("list");
        let ids: Vec<&VersionId> = list.versions.iter().map(|m| &m.id).collect();
        assert_eq!(ids, [&new.id, &mid.id, &old.id]);
        assert!(list.problems.is_empty(), "{:?}", list.problems);
        assert!(list.versions[0].created.ends_with('Z'));
        assert_eq!(
            list.versions[0].created.len(),
            "2026-01-31T08:00:00.000Z".len()
        );
    }

    #[test]
    fn an_empty_store_lists_nothing_and_creates_nothing() {
        let f = fixture();
        let list = f.store.list().expect("list");
        assert!(list.versions.is_empty() && list.problems.is_empty());
        assert!(!f.store.dir().exists());
        assert!(matches!(
            f.store.load("abcdef"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn version_ids_parse_only_full_lowercase_hex() {
        let id = VersionId::of(b"{}");
        assert_eq!(
            id.as_str(),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(VersionId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(VersionId::parse(&id.as_str().to_uppercase()), None);
        assert_eq!(VersionId::parse(&id.as_str()[..63]), None);
        assert_eq!(id.short(), "44136fa355b3");
    }
}
