//! The group's machine-learning model resources: fetched from S3 when a
//! plan is deployed, checked, cached by digest and extracted where the
//! runtime binds them from (`<resource root>/ml/<resource id>`).
//!
//! Greengrass V1 downloaded `S3MachineLearningModelResourceData` (a tar.gz
//! or zip in S3) at every deployment and extracted it to the resource's
//! `DestinationPath` inside the functions' containers. Here:
//!
//! * **Fetch**: a `HEAD` of the object, with the core's credentials chain
//!   (`evergreen.aws.endpointUrl` or the `s3` endpoint override applies);
//!   when its ETag is the one already installed, nothing is downloaded.
//!   Otherwise a `GET` of at most [`MAX_DOWNLOAD`] bytes, checked against
//!   the `Content-Length` and, for a single-part upload (an ETag of 32 hex
//!   digits), against the ETag as its MD5: a torn or altered download fails
//!   the deployment instead of running a broken model.
//! * **Cache**: `<resource root>/ml-cache/<sha256 of the archive>/` holds the
//!   extracted tree, read-only; `ml-cache/index.json` remembers, per
//!   S3 URI, the ETag and digest last installed. Two resources (or two
//!   versions) with the same archive share one tree.
//! * **Offline**: when S3 cannot be reached (a gateway that reboots without
//!   a network runs its last deployment again), the tree installed last for
//!   that URI is used and a warning says so; with none, the deployment fails.
//! * **Extraction**: gzip'd tar, tar or zip, recognised by their first bytes;
//!   anything else (a bare `model.onnx`, say) is stored as one file named
//!   after the key's last segment. Entries that would land outside the tree
//!   (`..`, absolute paths, links out) are refused, and so is an archive
//!   that expands past [`MAX_EXTRACTED`] bytes.
//! * **Grant**: `ml/<resource id>` is a symbolic link to the cached tree for
//!   a read-only resource (`GroupPermission` `ro`); a read-write one gets a
//!   private copy, made again only when the archive changes. With an
//!   `OwnerSetting`, the tree's group becomes `GroupOwner` with group read
//!   (and write, for `rw`) permission, as V1 set it.
//! * **Without a container**: a NoContainer component granted the resource
//!   reads it at its `DestinationPath`, as its V1 code names it; that host
//!   path becomes a symbolic link to `ml/<resource id>`. A path that exists
//!   and is not such a link is never replaced: the deployment fails, naming it.
//! * `SageMakerMachineLearningModelResourceData` is refused with the reason:
//!   the SageMaker training job's artefact was resolved by V1's cloud
//!   service, which is gone.

mod extract;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use evergreen_aws::credentials::AwsAccess;
use evergreen_aws::{AwsClient, AwsError, Method};
use evergreen_group::plan::{GroupPlan, Isolation, ResourceData};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

pub use extract::{extract, ExtractError};

/// Largest archive downloaded (it is held in memory while it is checked).
pub const MAX_DOWNLOAD: u64 = 1 << 30;
/// Largest tree an archive may expand to.
pub const MAX_EXTRACTED: u64 = 4 << 30;

/// Why a plan's models could not be installed; the deployment fails with it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "resource {id}: SageMakerMachineLearningModelResourceData ({arn}) cannot be fetched: V1's cloud \
         service resolved a SageMaker training job to its model and it is gone; export the model (as \
         ONNX for the ML connectors) to S3 and use S3MachineLearningModelResourceData"
    )]
    SageMaker { id: String, arn: String },
    #[error("resource {id}: {uri} is not an S3 object URI (s3://<bucket>/<key>)")]
    BadUri { id: String, uri: String },
    #[error("resource {id}: cannot read {uri}: {source}")]
    Fetch {
        id: String,
        uri: String,
        #[source]
        source: AwsError,
    },
    #[error("resource {id}: {uri} is {size} bytes, over the {max} byte limit")]
    TooLarge {
        id: String,
        uri: String,
        size: u64,
        max: u64,
    },
    #[error("resource {id}: the download of {uri} is damaged: {why}")]
    Damaged {
        id: String,
        uri: String,
        why: String,
    },
    #[error("resource {id}: cannot extract {uri}: {source}")]
    Extract {
        id: String,
        uri: String,
        #[source]
        source: ExtractError,
    },
    #[error("resource {id}: {what}: {source}")]
    Io {
        id: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("resource {id}: group owner {group:?}: {why}")]
    Owner {
        id: String,
        group: String,
        why: String,
    },
}

/// What the index remembers of one S3 URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    etag: String,
    sha256: String,
}

/// One model resource as installed, for the deployment's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub resource_id: String,
    pub uri: String,
    pub sha256: String,
    /// Downloaded now (`false`: the cached tree was current, or S3 was out of reach).
    pub downloaded: bool,
    /// S3 could not be reached: the tree installed last is used.
    pub offline: bool,
}

/// Fetches and installs the model resources of each plan deployed.
#[derive(Debug, Clone)]
pub struct ModelInstaller {
    root: PathBuf,
    aws: AwsClient,
}

impl ModelInstaller {
    /// Models under `resource_root` (`<root>/resources`), fetched with `aws`.
    pub fn new(resource_root: &Path, aws: Arc<AwsAccess>) -> Self {
        ModelInstaller {
            root: resource_root.to_path_buf(),
            aws: AwsClient::with_access(aws),
        }
    }

    /// A fetcher with this client (tests: fixed credentials, an endpoint).
    pub fn with_client(resource_root: &Path, aws: AwsClient) -> Self {
        ModelInstaller {
            root: resource_root.to_path_buf(),
            aws,
        }
    }

    /// Where resource `id` is granted from.
    pub fn grant_path(&self, id: &str) -> PathBuf {
        self.root.join("ml").join(id)
    }

    fn cache(&self) -> PathBuf {
        self.root.join("ml-cache")
    }

    fn index_path(&self) -> PathBuf {
        self.cache().join("index.json")
    }

    fn read_index(&self) -> BTreeMap<String, Entry> {
        std::fs::read(self.index_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Installs every machine-learning resource of `plan`, or fails at the
    /// first one that cannot be (before anything else of the deployment
    /// changes; trees already installed stay, they are only a cache).
    pub async fn install(&self, plan: &GroupPlan) -> Result<Vec<Installed>, ModelError> {
        let mut done = Vec::new();
        for (id, spec) in &plan.resources {
            let ResourceData::MachineLearningModel {
                origin,
                group_owner,
                read_write,
                destination_path,
            } = &spec.data
            else {
                continue;
            };
            if origin.starts_with("arn:") {
                return Err(ModelError::SageMaker {
                    id: id.clone(),
                    arn: origin.clone(),
                });
            }
            let installed = self.install_one(id, origin).await?;
            let tree = self.cache().join(&installed.sha256);
            let owner = group_owner.clone();
            let (rw, root_grant) = (*read_write, self.grant_path(id));
            let id2 = id.clone();
            tokio::task::spawn_blocking(move || {
                grant(&id2, &tree, &root_grant, rw, owner.as_deref())
            })
            .await
            .map_err(|e| ModelError::Io {
                id: id.clone(),
                what: "granting the model".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
            let uncontained = plan.components.values().any(|c| {
                c.isolation == Isolation::NoContainer
                    && c.resources.iter().any(|r| &r.resource_id == id)
            });
            if uncontained {
                host_link(id, destination_path, &self.grant_path(id))?;
            }
            tracing::info!(
                "model resource {id}: {} ({}{})",
                installed.uri,
                &installed.sha256[..12],
                if installed.offline {
                    ", S3 out of reach: the tree installed last"
                } else if installed.downloaded {
                    ", downloaded"
                } else {
                    ", cached"
                }
            );
            done.push(installed);
        }
        Ok(done)
    }

    async fn install_one(&self, id: &str, uri: &str) -> Result<Installed, ModelError> {
        let (bucket, key) = split_uri(uri).ok_or_else(|| ModelError::BadUri {
            id: id.into(),
            uri: uri.into(),
        })?;
        let url = self.aws.s3_object_url(bucket, key);
        let mut index = self.read_index();
        let known = index
            .get(uri)
            .filter(|e| self.cache().join(&e.sha256).is_dir())
            .cloned();
        let head = self
            .aws
            .signed_request("s3", Method::HEAD, &url, &[], Vec::new())
            .await;
        let fetch_err = |source| ModelError::Fetch {
            id: id.into(),
            uri: uri.into(),
            source,
        };
        let head = match head {
            Ok(h) => h,
            Err(e) if e.is_retryable() => {
                return match known {
                    Some(entry) => {
                        tracing::warn!(
                            "model resource {id}: {uri} out of reach ({e}); using the tree installed last"
                        );
                        Ok(Installed {
                            resource_id: id.into(),
                            uri: uri.into(),
                            sha256: entry.sha256,
                            downloaded: false,
                            offline: true,
                        })
                    }
                    None => Err(fetch_err(e)),
                }
            }
            Err(e) => return Err(fetch_err(e)),
        };
        let etag = head
            .header("etag")
            .unwrap_or("")
            .trim_matches('"')
            .to_string();
        if let Some(entry) = known.filter(|e| !etag.is_empty() && e.etag == etag) {
            return Ok(Installed {
                resource_id: id.into(),
                uri: uri.into(),
                sha256: entry.sha256,
                downloaded: false,
                offline: false,
            });
        }
        let size = head
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(size) = size.filter(|s| *s > MAX_DOWNLOAD) {
            return Err(ModelError::TooLarge {
                id: id.into(),
                uri: uri.into(),
                size,
                max: MAX_DOWNLOAD,
            });
        }
        let got = self
            .aws
            .signed_request("s3", Method::GET, &url, &[], Vec::new())
            .await
            .map_err(fetch_err)?;
        let got_etag = got.header("etag").map(|e| e.trim_matches('"').to_string());
        let body = got.body;
        let damaged = |why: String| ModelError::Damaged {
            id: id.into(),
            uri: uri.into(),
            why,
        };
        if let Some(len) = got
            .headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<u64>().ok())
        {
            if len != body.len() as u64 {
                return Err(damaged(format!(
                    "{} bytes received, Content-Length says {len}",
                    body.len()
                )));
            }
        }
        let etag = got_etag.unwrap_or(etag);
        if is_md5_etag(&etag) {
            let md5 = hex(&md5::Md5::digest(&body));
            if md5 != etag.to_ascii_lowercase() {
                return Err(damaged(format!("MD5 {md5}, ETag {etag}")));
            }
        }
        let sha256 = hex(&sha2::Sha256::digest(&body));
        let tree = self.cache().join(&sha256);
        if !tree.is_dir() {
            let name = key.rsplit('/').next().unwrap_or("model").to_string();
            let (cache, sha) = (self.cache(), sha256.clone());
            tokio::task::spawn_blocking(move || unpack_into_cache(&cache, &sha, &body, &name))
                .await
                .map_err(|e| ModelError::Io {
                    id: id.into(),
                    what: "extracting".into(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .map_err(|source| ModelError::Extract {
                    id: id.into(),
                    uri: uri.into(),
                    source,
                })?;
        }
        index.insert(
            uri.to_string(),
            Entry {
                etag,
                sha256: sha256.clone(),
            },
        );
        let bytes = serde_json::to_vec_pretty(&index).unwrap_or_default();
        evergreen_durable::write_atomic(
            &self.index_path(),
            &bytes,
            evergreen_durable::Mode::Default,
        )
        .map_err(|source| ModelError::Io {
            id: id.into(),
            what: format!("writing {}", self.index_path().display()),
            source,
        })?;
        Ok(Installed {
            resource_id: id.into(),
            uri: uri.into(),
            sha256,
            downloaded: true,
            offline: false,
        })
    }
}

/// `s3://bucket/key` → (bucket, key).
fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

fn is_md5_etag(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Extracts `archive` into `<cache>/<sha>` through a temporary directory, so
/// a tree under its final name is always complete.
fn unpack_into_cache(
    cache: &Path,
    sha: &str,
    archive: &[u8],
    name: &str,
) -> Result<(), ExtractError> {
    std::fs::create_dir_all(cache)?;
    let tmp = cache.join(format!(".{sha}.{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    if let Err(e) = extract(archive, name, &tmp, MAX_EXTRACTED) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    read_only(&tmp)?;
    std::fs::rename(&tmp, cache.join(sha))?;
    Ok(())
}

/// Directories 0555, files 0444 (0555 when executable): a shared tree that
/// no component can change under another.
fn read_only(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        if meta.is_dir() {
            read_only(&entry.path())?;
        } else if meta.is_file() {
            let exec = meta.permissions().mode() & 0o111 != 0;
            let mode = if exec { 0o555 } else { 0o444 };
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555))
}

/// Makes `grant` (`ml/<id>`) the resource's tree: a link to the cached
/// `tree`, or for `rw` a private copy; then applies the group owner.
fn grant(
    id: &str,
    tree: &Path,
    grant: &Path,
    read_write: bool,
    group_owner: Option<&str>,
) -> Result<(), ModelError> {
    let io = |what: String| {
        let id = id.to_string();
        move |source| ModelError::Io { id, what, source }
    };
    let parent = grant.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let tmp = parent.join(format!(".{id}.{}", std::process::id()));
    remove_any(&tmp).map_err(io(format!("removing {}", tmp.display())))?;
    let digest = tree
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if read_write {
        // A copy of the same archive keeps what the components wrote in it.
        let marker = grant.join(".evergreen-model-sha256");
        if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == digest) {
            return apply_owner(id, grant, true, group_owner);
        }
        copy_tree(tree, &tmp).map_err(io(format!("copying the model to {}", tmp.display())))?;
        std::fs::write(tmp.join(".evergreen-model-sha256"), &digest)
            .map_err(io("marking the copy".into()))?;
    } else {
        std::os::unix::fs::symlink(tree, &tmp).map_err(io(format!("linking {}", tmp.display())))?;
    }
    // A link replaces a link in one rename; a directory (an older copy, or a
    // model the operator placed there) is removed first.
    if grant.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        make_writable(grant).map_err(io(format!("replacing {}", grant.display())))?;
        std::fs::remove_dir_all(grant).map_err(io(format!("replacing {}", grant.display())))?;
    }
    std::fs::rename(&tmp, grant).map_err(io(format!("installing {}", grant.display())))?;
    apply_owner(
        id,
        if read_write { grant } else { tree },
        read_write,
        group_owner,
    )
}

/// Makes the host's `destination` a link to `grant`, for NoContainer
/// components; replaces only a link that already points into the same
/// `ml/` directory.
fn host_link(id: &str, destination: &Path, grant: &Path) -> Result<(), ModelError> {
    let io = |what: String| {
        let id = id.to_string();
        move |source| ModelError::Io { id, what, source }
    };
    let ours = |target: &Path| target.parent() == grant.parent();
    match destination.symlink_metadata() {
        Ok(m) if m.is_symlink() => {
            let target = std::fs::read_link(destination)
                .map_err(io(format!("reading {}", destination.display())))?;
            if target == grant {
                return Ok(());
            }
            if !ours(&target) {
                return Err(ModelError::Io {
                    id: id.into(),
                    what: format!(
                        "DestinationPath {} (for a NoContainer component) is a link to {}, not to this \
                         runtime's model",
                        destination.display(),
                        target.display()
                    ),
                    source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                });
            }
        }
        Ok(_) => {
            return Err(ModelError::Io {
                id: id.into(),
                what: format!(
                    "DestinationPath {} (for a NoContainer component) exists on this gateway and is not \
                     Evergreen's link to the model; move it away or change DestinationPath",
                    destination.display()
                ),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            })
        }
        Err(_) => {}
    }
    let parent = destination.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let name = destination
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.evergreen.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(grant, &tmp).map_err(io(format!("linking {}", tmp.display())))?;
    std::fs::rename(&tmp, destination)
        .map_err(io(format!("installing the link {}", destination.display())))
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match path.symlink_metadata() {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => {
            make_writable(path)?;
            std::fs::remove_dir_all(path)
        }
        Ok(_) => std::fs::remove_file(path),
    }
}

/// Owner write on a tree's directories, so it can be removed.
fn make_writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.path().symlink_metadata()?.is_dir() {
            make_writable(&entry.path())?;
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let meta = entry.path().symlink_metadata()?;
        if meta.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if meta.is_file() {
            std::fs::copy(entry.path(), &target)?;
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() | 0o200;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// V1's `OwnerSetting`: the tree's group is `group` (a name or a gid), with
/// group read (and write for `rw`). Changing a group needs root (or the
/// group as a supplementary one); a refusal fails the deployment.
fn apply_owner(
    id: &str,
    tree: &Path,
    read_write: bool,
    group: Option<&str>,
) -> Result<(), ModelError> {
    let Some(group) = group else { return Ok(()) };
    let fail = |why: String| ModelError::Owner {
        id: id.into(),
        group: group.into(),
        why,
    };
    let gid = match group.parse::<u32>() {
        Ok(gid) => nix::unistd::Gid::from_raw(gid),
        Err(_) => match nix::unistd::Group::from_name(group) {
            Ok(Some(g)) => g.gid,
            Ok(None) => return Err(fail("no such group on this gateway".into())),
            Err(e) => return Err(fail(e.to_string())),
        },
    };
    chgrp_tree(tree, gid, read_write).map_err(|e| fail(e.to_string()))
}

fn chgrp_tree(path: &Path, gid: nix::unistd::Gid, read_write: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    nix::unistd::chown(path, None, Some(gid)).map_err(std::io::Error::from)?;
    let meta = path.symlink_metadata()?;
    let mode = meta.permissions().mode() & 0o7777;
    let group_bits = if meta.is_dir() {
        if read_write {
            0o070
        } else {
            0o050
        }
    } else if read_write {
        0o060 | (mode & 0o010)
    } else {
        0o040 | (mode & 0o010)
    };
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode((mode & !0o070) | group_bits),
    )?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if !entry.path().symlink_metadata()?.is_symlink() {
                chgrp_tree(&entry.path(), gid, read_write)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
