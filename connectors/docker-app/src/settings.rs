//! The connector's parameters (V1 version 7's set), read into [`Settings`].
//! Their shapes are checked at deployment by the manifest's patterns; what
//! is read here is what the patterns cannot say (the secret list's JSON,
//! the destination directory existing), each problem named.

use std::path::PathBuf;
use std::time::Duration;

use evergreen_ipc::ComponentConfig;

pub const S3_BUCKET: &str = "DockerComposeFileS3Bucket";
pub const S3_KEY: &str = "DockerComposeFileS3Key";
pub const S3_VERSION: &str = "DockerComposeFileS3Version";
pub const DESTINATION_PATH: &str = "DockerComposeFileDestinationPath";
pub const DOCKER_USER_ID: &str = "DockerUserId";
pub const SECRETS_ARN_LIST: &str = "AWSSecretsArnList";
pub const STATUS_LOG_FREQUENCY: &str = "DockerContainerStatusLogFrequency";
pub const FORCE_DEPLOY: &str = "ForceDeploy";
pub const PULL_BEFORE_UP: &str = "DockerPullBeforeUp";
pub const STOP_ON_NEW_DEPLOYMENT: &str = "StopContainersOnNewDeployment";
pub const OFFLINE_MODE: &str = "DockerOfflineMode";

/// V1's default for `DockerContainerStatusLogFrequency`, in seconds.
pub const DEFAULT_STATUS_LOG_SECONDS: u64 = 300;

/// What the connector runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub bucket: String,
    pub key: String,
    /// The object version to fetch; `None`: the latest.
    pub version: Option<String>,
    /// The directory the compose file is copied into.
    pub destination: PathBuf,
    /// The user the docker commands run as; `None`: the connector's own.
    pub user_id: Option<u32>,
    /// Secrets holding registry logins.
    pub secret_arns: Vec<String>,
    pub status_log_every: Duration,
    pub force_deploy: bool,
    pub pull_before_up: bool,
    pub stop_on_new_deployment: bool,
    pub offline_mode: bool,
}

impl Settings {
    /// The compose file's name: the last segment of the S3 key, which is
    /// also what the status's `ComposeFileName` says.
    pub fn compose_file_name(&self) -> &str {
        self.key
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("docker-compose.yml")
    }

    /// Where the compose file is kept.
    pub fn compose_path(&self) -> PathBuf {
        self.destination.join(self.compose_file_name())
    }

    /// Reads the parameters; every problem found, or the settings.
    pub fn from_config(config: &ComponentConfig) -> Result<Settings, Vec<String>> {
        let p = &config.parameters;
        let text = |name: &str| {
            p.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut problems = Vec::new();
        let mut required = |name: &str| match text(name) {
            Some(v) => v,
            None => {
                problems.push(format!("{name} is required"));
                String::new()
            }
        };
        let bucket = required(S3_BUCKET);
        let key = required(S3_KEY);
        let destination = required(DESTINATION_PATH);
        let destination = PathBuf::from(destination);
        if !destination.as_os_str().is_empty() {
            if !destination.is_absolute() {
                problems.push(format!(
                    "{DESTINATION_PATH} {} must be an absolute path",
                    destination.display()
                ));
            } else if !destination.is_dir() {
                problems.push(format!(
                    "{DESTINATION_PATH} {} must be an existing directory",
                    destination.display()
                ));
            }
        }
        let user_id = match text(DOCKER_USER_ID).map(|v| v.parse::<u32>()) {
            None => None,
            Some(Ok(uid)) => Some(uid),
            Some(Err(e)) => {
                problems.push(format!("{DOCKER_USER_ID} must be a user id: {e}"));
                None
            }
        };
        let secret_arns = match text(SECRETS_ARN_LIST) {
            None => Vec::new(),
            Some(list) => match serde_json::from_str::<Vec<String>>(&list) {
                Ok(arns) => arns,
                Err(e) => {
                    problems.push(format!(
                        "{SECRETS_ARN_LIST} must be a JSON array of secret ARNs: {e}"
                    ));
                    Vec::new()
                }
            },
        };
        let seconds = match text(STATUS_LOG_FREQUENCY).map(|v| v.parse::<u64>()) {
            None => DEFAULT_STATUS_LOG_SECONDS,
            Some(Ok(s)) if s > 0 => s,
            Some(_) => {
                problems.push(format!(
                    "{STATUS_LOG_FREQUENCY} must be a positive number of seconds"
                ));
                DEFAULT_STATUS_LOG_SECONDS
            }
        };
        let mut flag = |name: &str, default: bool| match text(name).as_deref() {
            None => default,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                problems.push(format!("{name} must be true or false (found {v:?})"));
                default
            }
        };
        let force_deploy = flag(FORCE_DEPLOY, false);
        let pull_before_up = flag(PULL_BEFORE_UP, true);
        let stop_on_new_deployment = flag(STOP_ON_NEW_DEPLOYMENT, true);
        let offline_mode = flag(OFFLINE_MODE, false);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Settings {
            bucket,
            key,
            version: text(S3_VERSION),
            destination,
            user_id,
            secret_arns,
            status_log_every: Duration::from_secs(seconds),
            force_deploy,
            pull_before_up,
            stop_on_new_deployment,
            offline_mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(params: &[(&str, &str)]) -> ComponentConfig {
        ComponentConfig::connector("arn:test", params)
    }

    #[test]
    fn v1_defaults_apply_when_optional_parameters_are_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let s = Settings::from_config(&config(&[
            (S3_BUCKET, "bucket"),
            (S3_KEY, "apps/production-docker-compose.yml"),
            (DESTINATION_PATH, &d),
        ]))
        .expect("valid");
        assert_eq!(s.compose_file_name(), "production-docker-compose.yml");
        assert_eq!(
            s.compose_path(),
            dir.path().join("production-docker-compose.yml")
        );
        assert_eq!(s.status_log_every, Duration::from_secs(300));
        assert!(!s.force_deploy && s.pull_before_up && s.stop_on_new_deployment && !s.offline_mode);
        assert_eq!(s.version, None);
        assert_eq!(s.user_id, None);
        assert!(s.secret_arns.is_empty());
    }

    #[test]
    fn every_problem_is_named() {
        let errs = Settings::from_config(&config(&[
            (S3_KEY, "k"),
            (DESTINATION_PATH, "/nonexistent/evergreen-docker-dir"),
            (SECRETS_ARN_LIST, "arn:not-a-list"),
            (FORCE_DEPLOY, "yes"),
            (STATUS_LOG_FREQUENCY, "0"),
        ]))
        .expect_err("invalid");
        let all = errs.join("\n");
        for needle in [
            S3_BUCKET,
            "must be an existing directory",
            SECRETS_ARN_LIST,
            FORCE_DEPLOY,
            STATUS_LOG_FREQUENCY,
        ] {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
    }

    #[test]
    fn secrets_list_and_flags_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let s = Settings::from_config(&config(&[
            (S3_BUCKET, "b"),
            (S3_KEY, "c.yml"),
            (S3_VERSION, "v7"),
            (DESTINATION_PATH, &d),
            (DOCKER_USER_ID, "1000"),
            (
                SECRETS_ARN_LIST,
                r#"["arn:aws:secretsmanager:us-east-1:1:secret:greengrass-a"]"#,
            ),
            (FORCE_DEPLOY, "True"),
            (PULL_BEFORE_UP, "false"),
            (STOP_ON_NEW_DEPLOYMENT, "False"),
            (OFFLINE_MODE, "true"),
            (STATUS_LOG_FREQUENCY, "15"),
        ]))
        .expect("valid");
        assert_eq!(s.version.as_deref(), Some("v7"));
        assert_eq!(s.user_id, Some(1000));
        assert_eq!(s.secret_arns.len(), 1);
        assert!(s.force_deploy && !s.pull_before_up && !s.stop_on_new_deployment && s.offline_mode);
        assert_eq!(s.status_log_every, Duration::from_secs(15));
    }
}
