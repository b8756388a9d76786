//! Group bundles: one file holding a stored version and every artefact it names, the unit a
//! fleet deployment ships (`evergreen group export` / `group import`, `deploy FILE`).
//!
//! This module owns the bundle format, writing one from the store and reading one into it with
//! every digest checked. It never deploys.
//!
//! # Format
//!
//! A plain ustar archive (`tar tvf` lists it), entries in this order:
//!
//! ```text
//! bundle.json                      {"format":"evergreen-bundle","formatVersion":1,"version":"<id>"}
//! group.json                       the canonical group; its SHA-256 is <id>
//! artefacts/<digest>/<name>[/…]    each artefact the group names, directories before their files
//! ```
//!
//! Entries are sorted, owned by 0:0 and dated 0, so exporting a version twice gives the same
//! bytes. Only regular files and directories with relative, normal paths are accepted on
//! import; links, devices and anything that would land outside the store are refused, as is an
//! artefact whose content does not hash to its digest or a `group.json` that does not hash to
//! the id in `bundle.json`. Nothing is stored until all of it is checked.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use evergreen_group::{LoadError, Loader};

use crate::artefacts::{self, digest_of, parse_reference, remove_tmp, ArtefactError};
use crate::store::{Created, StoreError, VersionId, VersionStore, GROUP_FILE};

const MANIFEST: &str = "bundle.json";
const FORMAT: &str = "evergreen-bundle";
const FORMAT_VERSION: u32 = 1;
/// `bundle.json` and `group.json` are read into memory: bounded.
const MAX_JSON: u64 = 16 << 20;
/// A bundle's total content and entry count, so a hostile file cannot fill the disk.
const MAX_BYTES: u64 = 4 << 30;
const MAX_ENTRIES: usize = 200_000;

/// `bundle.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    format: String,
    format_version: u32,
    version: VersionId,
}

/// Why a bundle could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artefact(#[from] ArtefactError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("not a valid group bundle: {0}")]
    Format(String),
    #[error(transparent)]
    Invalid(#[from] LoadError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(what: impl Into<String>) -> BundleError {
    BundleError::Format(what.into())
}

/// Whether the file at `path` starts like a bundle (a tar whose first entry is `bundle.json`),
/// so `deploy FILE` can tell a bundle from a group file.
pub fn is_bundle(path: &Path) -> bool {
    let mut header = [0u8; 512];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut header));
    read.is_ok()
        && header.starts_with(MANIFEST.as_bytes())
        && header[MANIFEST.len()] == 0
        && &header[257..262] == b"ustar"
}

/// Writes stored version `id_or_prefix` and its artefacts as a bundle to `out`. Returns the id.
pub fn export(
    store: &VersionStore,
    id_or_prefix: &str,
    out: impl Write,
) -> Result<VersionId, BundleError> {
    let stored = store.load(id_or_prefix)?;
    let id = stored.id().clone();
    let group: Value = serde_json::from_str(&stored.group)
        .map_err(|e| format_err(format!("stored group is not JSON: {e}")))?;
    let mut references = BTreeSet::new();
    for slot in artefacts::slots(&group) {
        let Some(reference) = group.pointer(&slot.pointer).and_then(Value::as_str) else {
            continue;
        };
        if parse_reference(reference).is_none() {
            return Err(format_err(format!(
                "version {} predates artefacts ({} is {reference}); store its group file again to export it",
                id.short(),
                slot.field
            )));
        }
        references.insert(reference.to_string());
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        version: id.clone(),
    };
    let manifest = serde_json::to_vec(&manifest)
        .map_err(|e| format_err(format!("cannot encode {MANIFEST}: {e}")))?;
    let mut tar = tar::Builder::new(out);
    let out_err = |source| BundleError::Io {
        path: PathBuf::from("(bundle)"),
        source,
    };
    append_bytes(&mut tar, MANIFEST, &manifest, 0o444).map_err(out_err)?;
    append_bytes(&mut tar, GROUP_FILE, stored.group.as_bytes(), 0o444).map_err(out_err)?;
    let mut dirs_written = BTreeSet::new();
    for reference in &references {
        let Some((digest, name)) = parse_reference(reference) else {
            continue;
        };
        let holder = format!("{}/{digest}", artefacts::ARTEFACTS);
        for dir in [artefacts::ARTEFACTS.to_string(), holder] {
            if dirs_written.insert(dir.clone()) {
                append_dir(&mut tar, &dir).map_err(out_err)?;
            }
        }
        append_tree(
            &mut tar,
            &store.artefacts().path_of(digest, name),
            reference,
        )?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(out_err)?;
    Ok(id)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_bytes(
    tar: &mut tar::Builder<impl Write>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    tar.append_data(&mut h, path, data)
}

fn append_dir(tar: &mut tar::Builder<impl Write>, path: &str) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o555, 0);
    tar.append_data(&mut h, format!("{path}/"), io::empty())
}

/// Appends the file or tree at `path` as `name`, names sorted, directories first.
fn append_tree(
    tar: &mut tar::Builder<impl Write>,
    path: &Path,
    name: &str,
) -> Result<(), BundleError> {
    let meta = fs::metadata(path).map_err(io_at(path))?;
    let out_err = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    if meta.is_dir() {
        append_dir(tar, name).map_err(out_err)?;
        let mut entries: Vec<(String, PathBuf)> = fs::read_dir(path)
            .map_err(io_at(path))?
            .map(|e| e.map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())))
            .collect::<Result<_, _>>()
            .map_err(io_at(path))?;
        entries.sort();
        for (child, child_path) in entries {
            append_tree(tar, &child_path, &format!("{name}/{child}"))?;
        }
    } else {
        let mode = if meta.permissions().mode() & 0o100 != 0 {
            0o555
        } else {
            0o444
        };
        let mut h = header(tar::EntryType::Regular, mode, meta.len());
        let file = File::open(path).map_err(io_at(path))?;
        tar.append_data(&mut h, name, file).map_err(out_err)?;
    }
    Ok(())
}

/// Reads a bundle into `store`: checks every digest, validates the group with `loader`, stores
/// the artefacts and the version. Returns what [`VersionStore::create`] returns.
pub fn import(
    store: &VersionStore,
    loader: &Loader,
    input: impl Read,
    label: &str,
) -> Result<Created, BundleError> {
    let tmp = store.artefacts().tmp_dir()?;
    let result = import_into(store, loader, input, label, &tmp);
    remove_tmp(&tmp);
    result
}

fn import_into(
    store: &VersionStore,
    loader: &Loader,
    input: impl Read,
    label: &str,
    tmp: &Path,
) -> Result<Created, BundleError> {
    let mut manifest = None;
    let mut group = None;
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(io_at(Path::new(label)))?;
    let (mut count, mut total) = (0usize, 0u64);
    // Staged directories below each artefact's own, made read-only once everything is
    // written (the artefact's own stays writable until `place` has moved it).
    let mut staged_dirs = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(io_at(Path::new(label)))?;
        count += 1;
        total = total.saturating_add(entry.size());
        if count > MAX_ENTRIES || total > MAX_BYTES {
            return Err(format_err(format!(
                "more than {MAX_ENTRIES} entries or {MAX_BYTES} bytes"
            )));
        }
        let path = entry
            .path()
            .map_err(|e| format_err(format!("an entry's name cannot be read: {e}")))?
            .into_owned();
        let shown = path.display().to_string();
        if path.as_os_str().is_empty()
            || !path.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(format_err(format!(
                "entry {shown:?} is not a plain relative path"
            )));
        }
        let kind = entry.header().entry_type();
        let top = path.to_str().unwrap_or_default();
        match top {
            MANIFEST | GROUP_FILE if kind.is_file() => {
                if entry.size() > MAX_JSON {
                    return Err(format_err(format!(
                        "{shown} is larger than {MAX_JSON} bytes"
                    )));
                }
                let mut text = Vec::new();
                entry
                    .read_to_end(&mut text)
                    .map_err(io_at(Path::new(label)))?;
                if top == MANIFEST {
                    manifest = Some(text);
                } else {
                    group = Some(text);
                }
                continue;
            }
            _ => {}
        }
        let Ok(inside) = path.strip_prefix(artefacts::ARTEFACTS) else {
            return Err(format_err(format!("unexpected entry {shown:?}")));
        };
        if inside.as_os_str().is_empty() {
            continue;
        }
        let target = tmp.join(inside);
        if kind.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&target)
                .map_err(io_at(&target))?;
            if inside.components().count() > 2 {
                staged_dirs.push(target);
            }
        } else if kind.is_file() {
            let exec = entry.header().mode().is_ok_and(|m| m & 0o100 != 0);
            if let Some(parent) = target.parent() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(io_at(parent))?;
            }
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&target)
                .map_err(io_at(&target))?;
            io::copy(&mut entry, &mut file).map_err(io_at(&target))?;
            file.sync_all().map_err(io_at(&target))?;
            let mode = if exec { 0o555 } else { 0o444 };
            fs::set_permissions(&target, Permissions::from_mode(mode)).map_err(io_at(&target))?;
        } else {
            return Err(format_err(format!(
                "entry {shown:?} is a {kind:?}; only files and directories are accepted"
            )));
        }
    }
    let manifest = manifest.ok_or_else(|| format_err(format!("{MANIFEST} is missing")))?;
    // Strictly: `["evergreen-bundle", 1, "<id>"]` or a key given twice is not a manifest.
    let manifest: Manifest = evergreen_json::from_slice(&manifest)
        .map_err(|e| format_err(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT || manifest.format_version != FORMAT_VERSION {
        return Err(format_err(format!(
            "{MANIFEST} says {} version {}; this Evergreen reads {FORMAT} version {FORMAT_VERSION}",
            manifest.format, manifest.format_version
        )));
    }
    let group = group.ok_or_else(|| format_err(format!("{GROUP_FILE} is missing")))?;
    let actual = VersionId::of(&group);
    if actual != manifest.version {
        return Err(format_err(format!(
            "{GROUP_FILE} hashes to {}, not to the bundle's version {}",
            actual.short(),
            manifest.version.short()
        )));
    }
    let text =
        String::from_utf8(group).map_err(|_| format_err(format!("{GROUP_FILE} is not UTF-8")))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| format_err(format!("{GROUP_FILE} is not JSON: {e}")))?;
    for dir in staged_dirs.iter().rev() {
        fs::set_permissions(dir, Permissions::from_mode(0o555)).map_err(io_at(dir))?;
    }
    // Every artefact the group names: in the bundle (checked, then moved into the store) or
    // already in the store (checked by `create`).
    let mut checked = Vec::new();
    for slot in artefacts::slots(&value) {
        let Some(reference) = value.pointer(&slot.pointer).and_then(Value::as_str) else {
            continue;
        };
        let Some((digest, name)) = parse_reference(reference) else {
            return Err(format_err(format!(
                "{}: {reference:?} is not an artefact reference",
                slot.field
            )));
        };
        let staged = tmp.join(digest).join(name);
        if fs::symlink_metadata(&staged).is_err() {
            continue;
        }
        let actual = digest_of(&staged, &slot.field)?;
        if actual != digest {
            return Err(ArtefactError::Corrupt {
                reference: reference.to_string(),
                actual,
            }
            .into());
        }
        checked.push((staged, digest.to_string(), name.to_string()));
    }
    // Only a bundle whose every artefact is intact and whose group is valid adds anything.
    let base = store.base_dir();
    let plan = loader.load(&text, label, base.to_path_buf())?;
    for (staged, digest, name) in &checked {
        store.artefacts().place(staged, digest, name)?;
    }
    let created = store.create(&text, base, None, &plan)?;
    if created.id != manifest.version {
        return Err(format_err(format!(
            "stored as {}, not as the bundle's version {}",
            created.id.short(),
            manifest.version.short()
        )));
    }
    Ok(created)
}

#[cfg(test)]
mod tests;
