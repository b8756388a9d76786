//! Reading a text secret (an API token) through the supervisor, with the
//! error texts connectors log and publish. A secret's value is never put in
//! a message.

use evergreen_ipc::sdk::Handle;

/// The trimmed text of secret `arn`. `token` names what it holds (in "the
/// `<token>` must be a text secret"), `secret` names the secret (in
/// "cannot read the `<secret>` `<arn>`").
pub async fn read_text(
    handle: &Handle,
    arn: &str,
    token: &str,
    secret: &str,
) -> Result<String, String> {
    match handle.get_secret(arn, None).await {
        Ok(value) => match value.secret_string {
            Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(_) => Err(format!("secret {arn} is empty")),
            None => Err(format!(
                "secret {arn} is binary; the {token} must be a text secret"
            )),
        },
        Err(e) => Err(format!("cannot read the {secret} {arn}: {e}")),
    }
}
