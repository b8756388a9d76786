//! The ARNs and URIs a group names (things, certificates, functions,
//! secrets, SageMaker jobs, S3 objects), checked for shape without asking
//! AWS whether they exist.

use super::{check_identifier, show};

fn is_partition(p: &str) -> bool {
    matches!(p, "aws" | "aws-cn" | "aws-us-gov")
}

fn check_region(region: &str) -> Result<(), String> {
    if !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Ok(())
    } else {
        Err(format!("`{}` is not a region", show(region)))
    }
}

fn check_account(account: &str) -> Result<(), String> {
    if account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("`{}` is not a 12-digit account id", show(account)))
    }
}

#[derive(Debug)]
pub(super) struct ThingArn {
    pub(super) region: String,
    pub(super) account: String,
    pub(super) name: String,
}

pub(super) fn parse_thing_arn(arn: &str) -> Result<ThingArn, String> {
    let shape = |why: String| {
        format!(
            "`{}` is not a thing ARN ({why}; expected arn:aws:iot:<region>:<account-id>:thing/<ThingName>)",
            show(arn)
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "iot", region, account, resource] = parts.as_slice() else {
        return Err(shape("not an IoT ARN".to_string()));
    };
    if !is_partition(partition) {
        return Err(shape(format!("unknown partition `{partition}`")));
    }
    check_region(region).map_err(shape)?;
    check_account(account).map_err(shape)?;
    let name = resource
        .strip_prefix("thing/")
        .ok_or_else(|| shape("the resource is not `thing/…`".to_string()))?;
    check_identifier(name).map_err(|why| shape(format!("the thing name {why}")))?;
    Ok(ThingArn {
        region: region.to_string(),
        account: account.to_string(),
        name: name.to_string(),
    })
}

pub(super) fn check_certificate_arn(arn: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{}` is not a certificate ARN (expected arn:aws:iot:<region>:<account-id>:cert/<certificate-id>)",
            show(arn)
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "iot", region, account, resource] = parts.as_slice() else {
        return Err(bad());
    };
    let id = resource.strip_prefix("cert/").unwrap_or_default();
    if is_partition(partition)
        && check_region(region).is_ok()
        && check_account(account).is_ok()
        && !id.is_empty()
        && id.chars().all(|c| c.is_ascii_alphanumeric())
    {
        Ok(())
    } else {
        Err(bad())
    }
}

#[derive(Debug)]
pub(super) struct UserFunctionArn {
    partition: String,
    pub(super) region: String,
    pub(super) account: String,
    pub(super) name: String,
}

impl UserFunctionArn {
    /// The ARN without its qualifier.
    pub(super) fn base(&self) -> String {
        format!(
            "arn:{}:lambda:{}:{}:function:{}",
            self.partition, self.region, self.account, self.name
        )
    }
}

#[derive(Debug)]
pub(super) enum FunctionArn {
    User(UserFunctionArn),
    /// `arn:aws:lambda:::function:GG…:<qualifier>`.
    System {
        name: String,
    },
}

pub(super) fn parse_function_arn(arn: &str) -> Result<FunctionArn, String> {
    const SHAPE: &str =
        "expected arn:aws:lambda:<region>:<account-id>:function:<name>:<version-or-alias>";
    let bad = |why: &str| {
        format!(
            "`{}` is not a qualified function ARN ({why}; {SHAPE})",
            show(arn)
        )
    };
    let parts: Vec<&str> = arn.splitn(8, ':').collect();
    let (partition, region, account, name, qualifier) = match parts.as_slice() {
        ["arn", partition, "lambda", region, account, "function", name, qualifier] => {
            (*partition, *region, *account, *name, *qualifier)
        }
        ["arn", _, "lambda", _, _, "function", _] => {
            return Err(bad(
                "it has no version or alias; Greengrass runs a published version or an alias",
            ))
        }
        _ => return Err(bad("not a Lambda function ARN")),
    };
    if !is_partition(partition) {
        return Err(bad("unknown partition"));
    }
    if qualifier == "$LATEST" {
        return Err(format!(
            "`{}`: $LATEST is not supported; qualify the ARN with a published version or an alias",
            show(arn)
        ));
    }
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(bad(
            "the function name must be 1-64 letters, digits, '-' or '_'",
        ));
    }
    let qualifier_ok = !qualifier.is_empty()
        && qualifier.len() <= 128
        && qualifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !qualifier_ok {
        return Err(bad(
            "the version or alias must be 1-128 letters, digits, '-' or '_'",
        ));
    }
    if region.is_empty() && account.is_empty() && name.starts_with("GG") {
        return Ok(FunctionArn::System {
            name: name.to_string(),
        });
    }
    check_region(region).map_err(|why| bad(&why))?;
    check_account(account).map_err(|why| bad(&why))?;
    Ok(FunctionArn::User(UserFunctionArn {
        partition: partition.to_string(),
        region: region.to_string(),
        account: account.to_string(),
        name: name.to_string(),
    }))
}

/// The secret's name inside a Secrets Manager ARN.
pub(super) fn secret_name(arn: &str) -> Result<&str, String> {
    let bad = || {
        format!(
            "`{}` is not a Secrets Manager secret ARN (expected arn:aws:secretsmanager:<region>:<account-id>:secret:<name>)",
            show(arn)
        )
    };
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let ["arn", partition, "secretsmanager", region, account, "secret", name] = parts.as_slice()
    else {
        return Err(bad());
    };
    let name_ok = !name.is_empty()
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if is_partition(partition)
        && check_region(region).is_ok()
        && check_account(account).is_ok()
        && name_ok
    {
        Ok(name)
    } else {
        Err(bad())
    }
}

pub(super) fn check_sagemaker_arn(arn: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{}` is not a SageMaker training job ARN (expected arn:aws:sagemaker:<region>:<account-id>:training-job/<name>)",
            show(arn)
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "sagemaker", region, account, resource] = parts.as_slice() else {
        return Err(bad());
    };
    let job = resource.strip_prefix("training-job/").unwrap_or_default();
    let job_ok = !job.is_empty()
        && job.len() <= 63
        && job.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if is_partition(partition)
        && check_region(region).is_ok()
        && check_account(account).is_ok()
        && job_ok
    {
        Ok(())
    } else {
        Err(bad())
    }
}

pub(super) fn check_s3_uri(uri: &str) -> Result<(), String> {
    let ok = uri
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(bucket, key)| {
            (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
                && !key.is_empty()
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an S3 object URI (expected s3://<bucket>/<key>)",
            show(uri)
        ))
    }
}
