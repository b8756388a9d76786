//! How secret names and ARNs match each other.
//!
//! A group's secret resource names its secret by full ARN,
//! `arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>`, where
//! Secrets Manager appended `-` and 6 random characters to the name the
//! secret was created with. People know the name without the suffix
//! (`greengrass-TwilioAuthToken`); the suffix only appears in the ARN.
//!
//! * A **local value** (`evergreen secrets put NAME`) serves a resource when
//!   NAME is, in this order of preference: the resource's full ARN; the
//!   name part of the ARN, suffix included (`greengrass-x-AbCdEf`); the name
//!   without the suffix (`greengrass-x`). The last rule applies only when
//!   the ARN's name ends with `-` and six letters or digits, which is how
//!   Secrets Manager builds ARNs.
//! * A **request** (`SecretId` from a connector or a function) names a
//!   granted secret by the same four forms, plus the partial ARN without
//!   the suffix, as `GetSecretValue` accepts them.

/// The name part of a Secrets Manager ARN (`None` when `arn` is not one).
pub fn arn_name(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    match parts.as_slice() {
        ["arn", _, "secretsmanager", _, _, "secret", name] if !name.is_empty() => Some(name),
        _ => None,
    }
}

/// `name` without Secrets Manager's `-XXXXXX` suffix, when it has one.
pub(crate) fn without_suffix(name: &str) -> Option<&str> {
    let (base, suffix) = name.rsplit_once('-')?;
    (suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()) && !base.is_empty())
        .then_some(base)
}

/// The friendly name a `GetSecretValue` answer carries for `arn`: the name
/// part without its suffix.
pub(crate) fn friendly_name(arn: &str) -> String {
    let name = arn_name(arn).unwrap_or(arn);
    without_suffix(name).unwrap_or(name).to_string()
}

/// How well a local store NAME serves the resource secret `arn`: `Some`
/// rank (lower is better) or `None` when it does not.
pub(crate) fn store_match(local: &str, arn: &str) -> Option<u8> {
    if local == arn {
        return Some(0);
    }
    let name = arn_name(arn)?;
    if local == name {
        return Some(1);
    }
    if without_suffix(name) == Some(local) {
        return Some(2);
    }
    None
}

/// Whether a request's `SecretId` names the secret `arn`.
pub(crate) fn request_matches(secret_id: &str, arn: &str) -> bool {
    if secret_id == arn {
        return true;
    }
    let Some(name) = arn_name(arn) else {
        return false;
    };
    if secret_id == name {
        return true;
    }
    match without_suffix(name) {
        Some(base) => {
            secret_id == base || secret_id == format!("{}{base}", &arn[..arn.len() - name.len()])
        }
        None => false,
    }
}

/// Why a name cannot be stored; the CLI prints the message as it is.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account-id>:secret:<name>)")]
    NotAnArn(String),
    #[error("{0:?} is not a secret name: 1 to 512 characters from A-Z a-z 0-9 / _ + = . @ -")]
    NotAName(String),
}

/// Whether `name` may be stored: a Secrets Manager ARN, or a secret name of
/// 1 to 512 characters from `A-Za-z0-9/_+=.@-` (Secrets Manager's set).
pub(crate) fn check_local_name(name: &str) -> Result<(), NameError> {
    let plain = |n: &str| {
        !n.is_empty()
            && n.len() <= 512
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
    };
    if name.starts_with("arn:") {
        return match arn_name(name) {
            Some(n) if plain(n) => Ok(()),
            _ => Err(NameError::NotAnArn(name.to_owned())),
        };
    }
    if plain(name) {
        Ok(())
    } else {
        Err(NameError::NotAName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-tok-AbC123";

    #[test]
    fn local_names_match_by_arn_then_name_then_name_without_suffix() {
        assert_eq!(store_match(ARN, ARN), Some(0));
        assert_eq!(store_match("greengrass-tok-AbC123", ARN), Some(1));
        assert_eq!(store_match("greengrass-tok", ARN), Some(2));
        assert_eq!(store_match("greengrass-to", ARN), None);
        assert_eq!(store_match("greengrass-tok-AbC12", ARN), None);
        // No 6-character suffix: only the exact name matches.
        let plain = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-a-b";
        assert_eq!(store_match("greengrass-a", plain), None);
        assert_eq!(store_match("greengrass-a-b", plain), Some(1));
    }

    #[test]
    fn requests_match_arn_partial_arn_and_names() {
        assert!(request_matches(ARN, ARN));
        assert!(request_matches("greengrass-tok", ARN));
        assert!(request_matches("greengrass-tok-AbC123", ARN));
        assert!(request_matches(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-tok",
            ARN
        ));
        assert!(!request_matches("greengrass-other", ARN));
        assert!(!request_matches("", ARN));
        assert_eq!(friendly_name(ARN), "greengrass-tok");
    }

    #[test]
    fn local_names_are_checked() {
        assert!(check_local_name("greengrass-x").is_ok());
        assert!(check_local_name(ARN).is_ok());
        assert!(check_local_name("").is_err());
        assert!(check_local_name("a b").is_err());
        assert!(check_local_name("arn:aws:s3:::bucket").is_err());
        assert!(check_local_name(&"x".repeat(513)).is_err());
    }
}
