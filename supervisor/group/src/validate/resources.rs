//! Resources: one data member per container, paths that are absolute and
//! outside what the container provides itself, ARNs and URIs of the right
//! service, secrets under the configured name prefix, each secret once.
//! The table of resources it builds is what functions and connectors are
//! granted from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use evergreen_ipc::manifest::ResourceKind;

use super::arns::{check_s3_uri, check_sagemaker_arn, secret_name};
use super::{normalise_absolute, parse_permission, show, under, Validator};
use crate::model::{self, GroupDefinition};
use crate::plan::{GroupOwner, ResourceData, ResourceSpec};

const MAX_RESOURCES: usize = 50;

const RESOURCES: &str = "$.ResourceDefinitionVersion.Resources";

/// A resource as other parts of the group see it. `kind` is known whenever
/// the container holds exactly one member, even if that member is invalid,
/// so that a bad path does not also make every reference to the resource an
/// error.
#[derive(Debug)]
pub(super) struct ResourceEntry {
    index: usize,
    pub(super) name: String,
    pub(super) kind: Option<ResourceKind>,
    pub(super) spec: Option<ResourceSpec>,
}

impl ResourceEntry {
    pub(super) fn path(&self) -> String {
        format!("{RESOURCES}[{}]", self.index)
    }

    pub(super) fn data(&self) -> Option<&ResourceData> {
        self.spec.as_ref().map(|s| &s.data)
    }

    pub(super) fn device_source(&self) -> Option<&Path> {
        match self.data() {
            Some(ResourceData::LocalDevice { source_path, .. }) => Some(source_path),
            _ => None,
        }
    }

    pub(super) fn volume_source(&self) -> Option<&Path> {
        match self.data() {
            Some(ResourceData::LocalVolume { source_path, .. }) => Some(source_path),
            _ => None,
        }
    }

    pub(super) fn volume_destination(&self) -> Option<&Path> {
        match self.data() {
            Some(ResourceData::LocalVolume {
                destination_path, ..
            }) => Some(destination_path),
            _ => None,
        }
    }

    pub(super) fn secret_arn(&self) -> Option<&str> {
        match self.data() {
            Some(ResourceData::Secret { arn, .. }) => Some(arn),
            _ => None,
        }
    }
}

impl Validator<'_> {
    pub(super) fn resources(&mut self, group: &GroupDefinition) {
        let Some(rdv) = &group.resource_definition_version else {
            return;
        };
        if rdv.resources.len() > MAX_RESOURCES {
            self.err(
                RESOURCES,
                format!(
                    "a group may have at most {MAX_RESOURCES} resources (it has {})",
                    rdv.resources.len()
                ),
            );
        }
        let ids = rdv.resources.iter().enumerate();
        self.check_unique(
            "resource Id",
            ids.map(|(i, r)| (format!("{RESOURCES}[{i}].Id"), r.id.as_str())),
        );
        let names = rdv.resources.iter().enumerate();
        self.check_unique(
            "resource Name",
            names.map(|(i, r)| (format!("{RESOURCES}[{i}].Name"), r.name.as_str())),
        );
        let mut secret_arns: BTreeMap<String, String> = BTreeMap::new();
        for (i, resource) in rdv.resources.iter().enumerate() {
            let path = format!("{RESOURCES}[{i}]");
            self.check_id(format!("{path}.Id"), &resource.id);
            self.check_id(format!("{path}.Name"), &resource.name);
            let (kind, data) = self.resource_data(&path, &resource.resource_data_container);
            if let Some(ResourceData::Secret { arn, .. }) = &data {
                let arn_path =
                    format!("{path}.ResourceDataContainer.SecretsManagerSecretResourceData.ARN");
                if let Some(first) = secret_arns.get(arn) {
                    let message = format!(
                        "secret `{}` is already referenced at {first}; a secret may be referenced by one resource per group",
                        show(arn)
                    );
                    self.err(arn_path, message);
                } else {
                    secret_arns.insert(arn.clone(), arn_path);
                }
            }
            if self.resources.contains_key(&resource.id) {
                continue; // reported as a duplicate Id above
            }
            self.resources.insert(
                resource.id.clone(),
                ResourceEntry {
                    index: i,
                    name: resource.name.clone(),
                    kind,
                    spec: data.map(|data| ResourceSpec {
                        id: resource.id.clone(),
                        name: resource.name.clone(),
                        data,
                    }),
                },
            );
        }
    }

    /// Checks one `ResourceDataContainer`; returns its kind when it has
    /// exactly one member, and the validated data when that member is valid.
    fn resource_data(
        &mut self,
        path: &str,
        c: &model::ResourceDataContainer,
    ) -> (Option<ResourceKind>, Option<ResourceData>) {
        let path = format!("{path}.ResourceDataContainer");
        let present: Vec<&str> = [
            c.local_device_resource_data
                .is_some()
                .then_some("LocalDeviceResourceData"),
            c.local_volume_resource_data
                .is_some()
                .then_some("LocalVolumeResourceData"),
            c.s3_machine_learning_model_resource_data
                .is_some()
                .then_some("S3MachineLearningModelResourceData"),
            c.sage_maker_machine_learning_model_resource_data
                .is_some()
                .then_some("SageMakerMachineLearningModelResourceData"),
            c.secrets_manager_secret_resource_data
                .is_some()
                .then_some("SecretsManagerSecretResourceData"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if present.len() != 1 {
            let found = if present.is_empty() {
                "none".to_string()
            } else {
                present.join(", ")
            };
            self.err(
                path,
                format!(
                    "must hold exactly one of LocalDeviceResourceData, LocalVolumeResourceData, \
                     S3MachineLearningModelResourceData, SageMakerMachineLearningModelResourceData, \
                     SecretsManagerSecretResourceData (found {found})"
                ),
            );
            return (None, None);
        }
        if let Some(d) = &c.local_device_resource_data {
            let path = format!("{path}.LocalDeviceResourceData");
            let source =
                self.device_source(&format!("{path}.SourcePath"), d.source_path.as_deref());
            let data = source.map(|source_path| ResourceData::LocalDevice {
                source_path,
                group_owner: group_owner(d.group_owner_setting.as_ref()),
            });
            return (Some(ResourceKind::LocalDevice), data);
        }
        if let Some(v) = &c.local_volume_resource_data {
            let path = format!("{path}.LocalVolumeResourceData");
            let source =
                self.volume_source(&format!("{path}.SourcePath"), v.source_path.as_deref());
            let destination = self.volume_destination(
                &format!("{path}.DestinationPath"),
                v.destination_path.as_deref(),
            );
            let data = match (source, destination) {
                (Some(source_path), Some(destination_path)) => Some(ResourceData::LocalVolume {
                    source_path,
                    destination_path,
                    group_owner: group_owner(v.group_owner_setting.as_ref()),
                }),
                _ => None,
            };
            return (Some(ResourceKind::LocalVolume), data);
        }
        if let Some(s3) = &c.s3_machine_learning_model_resource_data {
            let path = format!("{path}.S3MachineLearningModelResourceData");
            let origin = match s3.s3_uri.as_deref() {
                None => {
                    self.err(format!("{path}.S3Uri"), "S3Uri is required");
                    None
                }
                Some(uri) => match check_s3_uri(uri) {
                    Ok(()) => Some(uri.to_string()),
                    Err(problem) => {
                        self.err(format!("{path}.S3Uri"), problem);
                        None
                    }
                },
            };
            let data = self.ml_data(
                &path,
                origin,
                s3.destination_path.as_deref(),
                s3.owner_setting.as_ref(),
            );
            return (Some(ResourceKind::MachineLearningModel), data);
        }
        if let Some(sm) = &c.sage_maker_machine_learning_model_resource_data {
            let path = format!("{path}.SageMakerMachineLearningModelResourceData");
            let origin = match sm.sage_maker_job_arn.as_deref() {
                None => {
                    self.err(
                        format!("{path}.SageMakerJobArn"),
                        "SageMakerJobArn is required",
                    );
                    None
                }
                Some(arn) => match check_sagemaker_arn(arn) {
                    Ok(()) => Some(arn.to_string()),
                    Err(problem) => {
                        self.err(format!("{path}.SageMakerJobArn"), problem);
                        None
                    }
                },
            };
            let data = self.ml_data(
                &path,
                origin,
                sm.destination_path.as_deref(),
                sm.owner_setting.as_ref(),
            );
            return (Some(ResourceKind::MachineLearningModel), data);
        }
        if let Some(s) = &c.secrets_manager_secret_resource_data {
            let path = format!("{path}.SecretsManagerSecretResourceData");
            let mut ok = true;
            for (i, label) in s.additional_staging_labels_to_download.iter().enumerate() {
                if label.is_empty() {
                    self.err(
                        format!("{path}.AdditionalStagingLabelsToDownload[{i}]"),
                        "a staging label cannot be empty",
                    );
                    ok = false;
                }
            }
            let arn = match s.arn.as_deref() {
                None => {
                    self.err(format!("{path}.ARN"), "ARN is required");
                    None
                }
                Some(arn) => match secret_name(arn) {
                    Err(problem) => {
                        self.err(format!("{path}.ARN"), problem);
                        None
                    }
                    Ok(name) => {
                        if let Some(prefix) = self.opts.secret_name_prefix.as_deref() {
                            if !name.starts_with(prefix) {
                                self.err(
                                    format!("{path}.ARN"),
                                    format!(
                                        "the secret's name `{}` does not start with `{prefix}`; only secrets named \
                                         `{prefix}…` may be used (the prefix is set by the core configuration)",
                                        show(name)
                                    ),
                                );
                            }
                        }
                        Some(arn.to_string())
                    }
                },
            };
            let data = arn.filter(|_| ok).map(|arn| ResourceData::Secret {
                arn,
                additional_staging_labels: s.additional_staging_labels_to_download.clone(),
            });
            return (Some(ResourceKind::Secret), data);
        }
        (None, None)
    }

    fn ml_data(
        &mut self,
        path: &str,
        origin: Option<String>,
        destination: Option<&str>,
        owner: Option<&model::ResourceDownloadOwnerSetting>,
    ) -> Option<ResourceData> {
        let destination = self.absolute_path(&format!("{path}.DestinationPath"), destination);
        let mut owner_ok = true;
        if let Some(o) = owner {
            if o.group_owner.is_empty() {
                self.err(
                    format!("{path}.OwnerSetting.GroupOwner"),
                    "GroupOwner cannot be empty",
                );
                owner_ok = false;
            }
            if parse_permission(&o.group_permission).is_none() {
                self.err(
                    format!("{path}.OwnerSetting.GroupPermission"),
                    format!(
                        "`{}` is not a permission: use \"ro\" or \"rw\"",
                        show(&o.group_permission)
                    ),
                );
                owner_ok = false;
            }
        }
        match (origin, destination, owner_ok) {
            (Some(origin), Some(destination_path), true) => {
                Some(ResourceData::MachineLearningModel {
                    origin,
                    destination_path,
                    group_owner: owner.map(|o| o.group_owner.clone()),
                    read_write: owner.is_some_and(|o| o.group_permission == "rw"),
                })
            }
            _ => None,
        }
    }

    /// A required absolute path, without `..`, returned normalised (no `.`
    /// components, no repeated or trailing slashes) so that two spellings
    /// of one path compare equal.
    fn absolute_path(&mut self, path: &str, value: Option<&str>) -> Option<PathBuf> {
        let member = path.rsplit('.').next().unwrap_or(path);
        let Some(value) = value else {
            self.err(path, format!("{member} is required"));
            return None;
        };
        match normalise_absolute(value) {
            Ok(p) => Some(p),
            Err(problem) => {
                self.err(path, problem);
                None
            }
        }
    }

    fn device_source(&mut self, path: &str, value: Option<&str>) -> Option<PathBuf> {
        let p = self.absolute_path(path, value)?;
        if under(&p, "/dev/shm") {
            self.err(
                path,
                "/dev/shm is shared memory, not a device: declare it as a LocalVolumeResourceData",
            );
            return None;
        }
        if !under(&p, "/dev") || p == Path::new("/dev") {
            self.err(
                path,
                format!(
                    "`{}` is not under /dev: a device resource is a character or block device in /dev",
                    p.display()
                ),
            );
            return None;
        }
        Some(p)
    }

    fn volume_source(&mut self, path: &str, value: Option<&str>) -> Option<PathBuf> {
        let p = self.absolute_path(path, value)?;
        let problem = if under(&p, "/sys") {
            Some("a volume cannot come from /sys (functions get read access to /sys with AccessSysfs)")
        } else if under(&p, "/dev") && !under(&p, "/dev/shm") {
            Some("a volume cannot come from /dev (except /dev/shm): declare devices as LocalDeviceResourceData")
        } else if under(&p, "/var") {
            Some("a volume cannot come from /var: bind-mount the directory elsewhere first and use that path")
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.err(path, format!("`{}`: {problem}", p.display()));
                None
            }
            None => Some(p),
        }
    }

    fn volume_destination(&mut self, path: &str, value: Option<&str>) -> Option<PathBuf> {
        let p = self.absolute_path(path, value)?;
        if under(&p, "/proc") {
            self.err(
                path,
                format!("`{}`: a volume cannot be mounted on /proc, which the container provides itself", p.display()),
            );
            return None;
        }
        if p == Path::new("/") {
            self.err(path, "a volume cannot be mounted on /");
            return None;
        }
        Some(p)
    }
}

fn group_owner(setting: Option<&model::GroupOwnerSetting>) -> GroupOwner {
    GroupOwner {
        auto_add: setting
            .and_then(|s| s.auto_add_group_owner)
            .unwrap_or(false),
        group: setting.and_then(|s| s.group_owner.clone()),
    }
}
