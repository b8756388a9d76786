//! Tests of validation: resources: containers, paths, ARNs and secrets.

use super::*;

bad_fixture!(
    bad_secret_prefix,
    "secret-prefix",
    [(
        &format!("{R}[0].ResourceDataContainer.SecretsManagerSecretResourceData.ARN"),
        "the secret's name `TwilioAuthToken-AbCdEf` does not start with `greengrass-`"
    )]
);

#[test]
fn secret_prefix_can_be_disabled() {
    let opts = ValidationOptions {
        secret_name_prefix: None,
        ..options()
    };
    assert!(check(fixture!("bad", "secret-prefix"), &opts).is_ok());
}

bad_fixture!(
    bad_resource_container,
    "resource-container",
    [
        (
            &format!("{R}[0].ResourceDataContainer"),
            "must hold exactly one of"
        ),
        (
            &format!("{R}[1].ResourceDataContainer"),
            "(found LocalDeviceResourceData, LocalVolumeResourceData)"
        ),
    ]
);

bad_fixture!(
    bad_device_paths,
    "device-paths",
    [
        (
            &format!("{R}[0].ResourceDataContainer.LocalDeviceResourceData.SourcePath"),
            "/dev/shm is shared memory"
        ),
        (
            &format!("{R}[1].ResourceDataContainer.LocalDeviceResourceData.SourcePath"),
            "`/tmp/tty` is not under /dev"
        ),
        (
            &format!("{R}[2].ResourceDataContainer.LocalDeviceResourceData.SourcePath"),
            "contains `..`"
        ),
        (
            &format!("{R}[3].ResourceDataContainer.LocalDeviceResourceData.SourcePath"),
            "is not an absolute path"
        ),
    ]
);

bad_fixture!(
    bad_volume_paths,
    "volume-paths",
    [
        (
            &format!("{R}[0].ResourceDataContainer.LocalVolumeResourceData.SourcePath"),
            "cannot come from /sys"
        ),
        (
            &format!("{R}[1].ResourceDataContainer.LocalVolumeResourceData.SourcePath"),
            "cannot come from /var"
        ),
        (
            &format!("{R}[2].ResourceDataContainer.LocalVolumeResourceData.SourcePath"),
            "cannot come from /dev"
        ),
        (
            &format!("{R}[3].ResourceDataContainer.LocalVolumeResourceData.DestinationPath"),
            "cannot be mounted on /proc"
        ),
    ]
);

bad_fixture!(
    bad_ml_resources,
    "ml-resources",
    [
        (&format!("{R}[0].ResourceDataContainer.S3MachineLearningModelResourceData.S3Uri"), "is not an S3 object URI"),
        (
            &format!("{R}[1].ResourceDataContainer.SageMakerMachineLearningModelResourceData.SageMakerJobArn"),
            "is not a SageMaker training job ARN"
        ),
        (
            &format!("{R}[2].ResourceDataContainer.S3MachineLearningModelResourceData.OwnerSetting.GroupPermission"),
            "`rwx` is not a permission"
        ),
    ]
);

bad_fixture!(
    bad_secret_arns,
    "secret-arns",
    [
        (
            &format!("{R}[0].ResourceDataContainer.SecretsManagerSecretResourceData.ARN"),
            "is not a Secrets Manager secret ARN"
        ),
        (
            &format!("{R}[2].ResourceDataContainer.SecretsManagerSecretResourceData.ARN"),
            "is already referenced at $.ResourceDefinitionVersion.Resources[1]"
        ),
    ]
);

bad_fixture!(
    bad_too_many_resources,
    "too-many-resources",
    [(R, "a group may have at most 50 resources (it has 51)")]
);

bad_fixture!(
    bad_resource_name_duplicate,
    "resource-name-duplicate",
    [(&format!("{R}[1].Name"), "duplicate resource Name `Data`")]
);
