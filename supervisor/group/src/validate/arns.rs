//! The ARNs and URIs a group names (things, certificates, functions,
//! secrets, SageMaker jobs, S3 objects), checked for shape without asking
//! AWS whether they exist.

use super::{check_identifier, show, IdError};

/// Why an ARN (or the S3 URI) is not of the kind its member needs. Each
/// message echoes the value (shortened by `show`) and the expected shape,
/// as operators see it in the validation report.
#[derive(Debug, thiserror::Error)]
pub(super) enum ArnError {
    #[error(
        "`{arn}` is not a thing ARN ({why}; expected arn:aws:iot:<region>:<account-id>:thing/<ThingName>)"
    )]
    Thing { arn: String, why: ThingProblem },
    #[error(
        "`{arn}` is not a certificate ARN (expected arn:aws:iot:<region>:<account-id>:cert/<certificate-id>)"
    )]
    Certificate { arn: String },
    #[error(
        "`{arn}` is not a qualified function ARN ({why}; expected arn:aws:lambda:<region>:<account-id>:function:<name>:<version-or-alias>)"
    )]
    Function { arn: String, why: FunctionProblem },
    #[error(
        "`{arn}`: $LATEST is not supported; qualify the ARN with a published version or an alias"
    )]
    Latest { arn: String },
    #[error(
        "`{arn}` is not a Secrets Manager secret ARN (expected arn:aws:secretsmanager:<region>:<account-id>:secret:<name>)"
    )]
    Secret { arn: String },
    #[error(
        "`{arn}` is not a SageMaker training job ARN (expected arn:aws:sagemaker:<region>:<account-id>:training-job/<name>)"
    )]
    SageMaker { arn: String },
    #[error("`{uri}` is not an S3 object URI (expected s3://<bucket>/<key>)")]
    S3Uri { uri: String },
}

/// The part of a thing ARN at fault.
#[derive(Debug, thiserror::Error)]
pub(super) enum ThingProblem {
    #[error("not an IoT ARN")]
    NotIot,
    #[error("unknown partition `{0}`")]
    Partition(String),
    #[error("{0}")]
    Field(FieldError),
    #[error("the resource is not `thing/…`")]
    NotThing,
    #[error("the thing name {0}")]
    Name(IdError),
}

/// The part of a function ARN at fault.
#[derive(Debug, thiserror::Error)]
pub(super) enum FunctionProblem {
    #[error("it has no version or alias; Greengrass runs a published version or an alias")]
    Unqualified,
    #[error("not a Lambda function ARN")]
    NotLambda,
    #[error("unknown partition")]
    Partition,
    #[error("the function name must be 1-64 letters, digits, '-' or '_'")]
    Name,
    #[error("the version or alias must be 1-128 letters, digits, '-' or '_'")]
    Qualifier,
    #[error("{0}")]
    Field(FieldError),
}

/// A region or account inside an ARN that is not one.
#[derive(Debug, thiserror::Error)]
pub(super) enum FieldError {
    #[error("`{0}` is not a region")]
    Region(String),
    #[error("`{0}` is not a 12-digit account id")]
    Account(String),
}

fn is_partition(p: &str) -> bool {
    matches!(p, "aws" | "aws-cn" | "aws-us-gov")
}

fn check_region(region: &str) -> Result<(), FieldError> {
    if !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Ok(())
    } else {
        Err(FieldError::Region(show(region)))
    }
}

fn check_account(account: &str) -> Result<(), FieldError> {
    if account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(FieldError::Account(show(account)))
    }
}

#[derive(Debug)]
pub(super) struct ThingArn {
    pub(super) region: String,
    pub(super) account: String,
    pub(super) name: String,
}

pub(super) fn parse_thing_arn(arn: &str) -> Result<ThingArn, ArnError> {
    let shape = |why| ArnError::Thing {
        arn: show(arn),
        why,
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "iot", region, account, resource] = parts.as_slice() else {
        return Err(shape(ThingProblem::NotIot));
    };
    if !is_partition(partition) {
        return Err(shape(ThingProblem::Partition(partition.to_string())));
    }
    check_region(region).map_err(|e| shape(ThingProblem::Field(e)))?;
    check_account(account).map_err(|e| shape(ThingProblem::Field(e)))?;
    let name = resource
        .strip_prefix("thing/")
        .ok_or_else(|| shape(ThingProblem::NotThing))?;
    check_identifier(name).map_err(|e| shape(ThingProblem::Name(e)))?;
    Ok(ThingArn {
        region: region.to_string(),
        account: account.to_string(),
        name: name.to_string(),
    })
}

pub(super) fn check_certificate_arn(arn: &str) -> Result<(), ArnError> {
    let bad = || ArnError::Certificate { arn: show(arn) };
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

pub(super) fn parse_function_arn(arn: &str) -> Result<FunctionArn, ArnError> {
    let bad = |why| ArnError::Function {
        arn: show(arn),
        why,
    };
    let parts: Vec<&str> = arn.splitn(8, ':').collect();
    let (partition, region, account, name, qualifier) = match parts.as_slice() {
        ["arn", partition, "lambda", region, account, "function", name, qualifier] => {
            (*partition, *region, *account, *name, *qualifier)
        }
        ["arn", _, "lambda", _, _, "function", _] => return Err(bad(FunctionProblem::Unqualified)),
        _ => return Err(bad(FunctionProblem::NotLambda)),
    };
    if !is_partition(partition) {
        return Err(bad(FunctionProblem::Partition));
    }
    if qualifier == "$LATEST" {
        return Err(ArnError::Latest { arn: show(arn) });
    }
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(bad(FunctionProblem::Name));
    }
    let qualifier_ok = !qualifier.is_empty()
        && qualifier.len() <= 128
        && qualifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !qualifier_ok {
        return Err(bad(FunctionProblem::Qualifier));
    }
    if region.is_empty() && account.is_empty() && name.starts_with("GG") {
        return Ok(FunctionArn::System {
            name: name.to_string(),
        });
    }
    check_region(region).map_err(|e| bad(FunctionProblem::Field(e)))?;
    check_account(account).map_err(|e| bad(FunctionProblem::Field(e)))?;
    Ok(FunctionArn::User(UserFunctionArn {
        partition: partition.to_string(),
        region: region.to_string(),
        account: account.to_string(),
        name: name.to_string(),
    }))
}

/// The secret's name inside a Secrets Manager ARN.
pub(super) fn secret_name(arn: &str) -> Result<&str, ArnError> {
    let bad = || ArnError::Secret { arn: show(arn) };
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

pub(super) fn check_sagemaker_arn(arn: &str) -> Result<(), ArnError> {
    let bad = || ArnError::SageMaker { arn: show(arn) };
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

pub(super) fn check_s3_uri(uri: &str) -> Result<(), ArnError> {
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
        Err(ArnError::S3Uri { uri: show(uri) })
    }
}
