//! The `DockerApplicationDeployment` connector (Greengrass versions 1–7):
//! runs a multi-container application with Docker Compose from a compose
//! file kept in Amazon S3.
//!
//! **What it does, in V1's order.** At start it waits for the Docker
//! daemon, logs in to the private registries named by `AWSSecretsArnList`,
//! downloads `DockerComposeFileS3Key` (at `DockerComposeFileS3Version`, or
//! the latest) from `DockerComposeFileS3Bucket` with the core's credentials
//! into `DockerComposeFileDestinationPath` (under the key's file name), then
//! runs `compose pull` (unless `DockerPullBeforeUp` is `false`) and
//! `compose up --detach --remove-orphans` on project
//! `greengrassdockerapplicationdeployment`, and publishes the outcome on
//! `dockerapplicationdeploymentconnector/message/status`:
//! `{"status":"success","GreengrassDockerApplicationDeploymentStatus":"Successfully triggered docker-compose up","S3Bucket","ComposeFileName","ComposeFileVersion"}`
//! (the version S3 served, `null` for an unversioned bucket), or
//! `{"status":"fail","error":"InvalidParameter"|"InternalError","error_message"}`.
//! Every `DockerContainerStatusLogFrequency` seconds (default 300) it logs
//! each container's state to its log (`…/aws/DockerApplicationDeployment.log`).
//!
//! **Compose.** The `docker compose` plugin when the host has it, else V1's
//! standalone `docker-compose` (see [`engine`]). A host with neither is
//! refused at deployment: [`host_unavailable`] is what `evergreen validate`,
//! `run --group` and `deploy` ask, so a group needing Docker never lands on
//! a gateway without it. A daemon that is merely not up yet (the runtime
//! started before `docker.service`) is waited for, with the reason on the
//! status topic once.
//!
//! **Stopping.** With `StopContainersOnNewDeployment` `true` (the default)
//! the connector runs `compose down` when it stops (a new deployment, the
//! runtime stopping). That command runs in its own process group and goes
//! on after the connector's stop deadline if it must (V1 allowed cleanup 10
//! minutes), so containers are never left half-removed. With `false` the
//! application keeps running and the next start's `up` reconciles it.
//! `ForceDeploy` `true` answers a failed `up` (containers of an improperly
//! cleaned-up deployment in the way) with `down --remove-orphans` and one
//! more `up`. `DockerOfflineMode` `true` starts the copy of the compose file
//! from the last deployment when S3 cannot be reached, and goes on to `up`
//! when a pull fails (the images already on the host).
//!
//! **Registry logins.** Each secret in `AWSSecretsArnList` (a JSON array of
//! ARNs; each must be a secret resource of the group, any Id — V1's
//! reserved `DOCKER_DEPLOYER_SECRET_RESOURCE_RESERVED_ID_<n>` Ids work) is a
//! JSON object `{"username","password","registryUrl"}`; without
//! `registryUrl` it logs in to Docker Hub. Logins go to a client
//! configuration directory of the connector's own (mode 0700, removed when
//! it stops), never the host user's `~/.docker`; the password is passed on
//! standard input, never on a command line.
//!
//! **User.** `DockerUserId` runs the docker commands as that user (the
//! connector must then run as root, which a NoContainer connector of a root
//! runtime does unless its group's `RunAs` says otherwise); without it they
//! run as the connector's own user, which must be allowed to use the
//! Docker socket (root, or the `docker` group).
//!
//! **Isolation.** No container, as in V1: the connector drives the host's
//! Docker daemon, and the application's containers are the daemon's, not
//! Greengrass containers.

pub mod engine;
pub mod settings;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use evergreen_aws::{AwsClient, AwsError, Method};
use evergreen_connector_kit::manifest;
use evergreen_connector_kit::Backoff;
use evergreen_ipc::manifest::{ConnectorManifest, ParameterSpec};
use evergreen_ipc::sdk::{Component, Event, Handle, SdkError};
use serde_json::{json, Value};

use crate::engine::{failure_text, Outcome, Runner};
use crate::settings::*;

/// Where the connector publishes the outcome of each deployment.
pub const STATUS_TOPIC: &str = "dockerapplicationdeploymentconnector/message/status";
/// The success status's words, as V1 published them.
pub const SUCCESS_TEXT: &str = "Successfully triggered docker-compose up";

const INFO_LIMIT: Duration = Duration::from_secs(20);
const LOGIN_LIMIT: Duration = Duration::from_secs(60);
const PULL_LIMIT: Duration = Duration::from_secs(30 * 60);
const UP_LIMIT: Duration = Duration::from_secs(10 * 60);
const PS_LIMIT: Duration = Duration::from_secs(30);
/// The largest compose file accepted (they are a few KB).
pub const MAX_COMPOSE_BYTES: usize = 1 << 20;

pub static MANIFEST: ConnectorManifest = ConnectorManifest {
    name: "DockerApplicationDeployment",
    versions: &[1, 2, 3, 4, 5, 6, 7],
    description: "Runs a Docker Compose application from a compose file in Amazon S3 (compose pull and \
                  up at start, down at stop) and publishes the outcome on \
                  dockerapplicationdeploymentconnector/message/status.",
    parameters: &[
        ParameterSpec::new(S3_BUCKET, "The S3 bucket holding the compose file.")
            .required()
            .pattern(r"^[a-zA-Z0-9\-\.]{3,63}$"),
        ParameterSpec::new(S3_KEY, "The compose file's S3 object key.")
            .required()
            .pattern(r"^.+$"),
        ParameterSpec::new(S3_VERSION, "The object version to use (default: the latest)."),
        ParameterSpec::new(
            DESTINATION_PATH,
            "An existing directory where the compose file is kept.",
        )
        .required()
        .pattern(r"^\/.*\/?$"),
        ParameterSpec::new(DOCKER_USER_ID, "The user id the docker commands run as.")
            .pattern(r"^$|^[0-9]{1,5}$"),
        ParameterSpec::new(
            SECRETS_ARN_LIST,
            "JSON array of secret ARNs with {\"username\",\"password\",\"registryUrl\"} registry logins.",
        )
        .secret_arn_list(),
        ParameterSpec::new(
            STATUS_LOG_FREQUENCY,
            "Seconds between logs of the containers' states (default 300).",
        )
        .pattern(r"^$|^[1-9]{1}[0-9]{0,3}$"),
        ParameterSpec::new(
            FORCE_DEPLOY,
            "Remove the previous deployment's containers when up fails (default false).",
        )
        .pattern(r"^$|^(true|false|True|False)$"),
        ParameterSpec::new(PULL_BEFORE_UP, "Run compose pull before up (default true).")
            .pattern(r"^$|^(true|false|True|False)$")
            .since(4),
        ParameterSpec::new(
            STOP_ON_NEW_DEPLOYMENT,
            "Run compose down when the connector stops (default true).",
        )
        .pattern(r"^$|^(true|false|True|False)$")
        .since(6),
        ParameterSpec::new(
            OFFLINE_MODE,
            "Start the last compose file when S3 cannot be reached (default false).",
        )
        .pattern(r"^$|^(true|false|True|False)$")
        .since(7),
    ],
    inputs: &[],
    outputs: &[STATUS_TOPIC],
    isolation: manifest::NO_CONTAINER_ONLY,
    pinned: true,
    aws: true,
};

/// Why this host cannot run the connector (no docker command, no
/// Compose), or `None`. Asked at every deployment of a group that uses it.
pub fn host_unavailable() -> Option<String> {
    engine::detect().err()
}

/// The success status.
pub fn success_status(settings: &Settings, version: Option<&str>) -> Value {
    json!({
        "status": "success",
        "GreengrassDockerApplicationDeploymentStatus": SUCCESS_TEXT,
        "S3Bucket": settings.bucket,
        "ComposeFileName": settings.compose_file_name(),
        "ComposeFileVersion": version,
    })
}

/// A failure status; `error` is `InvalidParameter` or `InternalError`.
pub fn fail_status(error: &str, message: &str) -> Value {
    json!({"status": "fail", "error_message": message, "error": error})
}

/// A registry login read from a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
    /// Empty: Docker Hub.
    pub registry: String,
}

/// Reads a login secret's text: `{"username","password","registryUrl"}`.
/// The error never contains the secret's text.
pub fn parse_login(text: &str) -> Result<Login, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|_| "is not a JSON object with username and password".to_string())?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
    match (field("username"), field("password")) {
        (Some(username), Some(password)) if !username.is_empty() => Ok(Login {
            username,
            password,
            registry: field("registryUrl").unwrap_or_default(),
        }),
        _ => Err("has no username and password strings".to_string()),
    }
}

/// The running connector's parts.
struct App {
    handle: Handle,
    settings: Settings,
    aws: AwsClient,
    runner: Runner,
}

/// How a deployment ended.
enum Deployed {
    Up,
    Failed,
}

impl App {
    async fn status(&self, status: Value) -> Result<(), SdkError> {
        self.handle
            .publish_or_log(STATUS_TOPIC, status.to_string())
            .await
    }

    async fn fail(&self, error: &str, message: String) -> Result<Deployed, SdkError> {
        self.handle.error(format!("{error}: {message}"));
        self.status(fail_status(error, &message)).await?;
        Ok(Deployed::Failed)
    }

    /// Waits until `docker info` answers, saying once why it does not.
    async fn wait_for_daemon(&self) -> Result<(), SdkError> {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut reported = false;
        loop {
            let outcome = engine::run(
                self.runner
                    .docker(&["info", "--format", "{{.ServerVersion}}"]),
                INFO_LIMIT,
            )
            .await;
            match failure_text("docker info", &outcome) {
                None => {
                    let version = outcome
                        .map(|o| o.output.trim().to_string())
                        .unwrap_or_default();
                    self.handle.info(format!(
                        "Docker Engine {version} reached; compose: {:?}",
                        self.runner.engine.compose
                    ));
                    return Ok(());
                }
                Some(why) => {
                    if !reported {
                        reported = true;
                        self.fail(
                            "InternalError",
                            format!("the Docker daemon cannot be reached; waiting for it: {why}"),
                        )
                        .await?;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Logs in to every registry of `AWSSecretsArnList`.
    async fn login(&self) -> Result<Option<String>, SdkError> {
        for arn in &self.settings.secret_arns {
            let secret = match self.handle.get_secret(arn.clone(), None).await {
                Ok(s) => s,
                Err(SdkError::Closed) => return Err(SdkError::Closed),
                Err(e) => return Ok(Some(format!("cannot read secret {arn}: {e}"))),
            };
            let Some(text) = secret.secret_string else {
                return Ok(Some(format!(
                    "secret {arn} is binary; it must be a JSON text"
                )));
            };
            let login = match parse_login(&text) {
                Ok(l) => l,
                Err(why) => return Ok(Some(format!("secret {arn} {why}"))),
            };
            let outcome = self
                .runner
                .login(
                    &login.registry,
                    &login.username,
                    &login.password,
                    LOGIN_LIMIT,
                )
                .await;
            let registry = if login.registry.is_empty() {
                "Docker Hub"
            } else {
                login.registry.as_str()
            };
            if let Some(why) = failure_text(&format!("docker login to {registry}"), &outcome) {
                return Ok(Some(format!("{why} (secret {arn})")));
            }
            self.handle.info(format!(
                "logged in to {registry} as {} (secret {arn})",
                login.username
            ));
        }
        Ok(None)
    }

    /// Downloads the compose file into its place: the version S3 served.
    async fn fetch(&self) -> Result<Option<String>, String> {
        let s = &self.settings;
        let mut url = self.aws.s3_object_url(&s.bucket, &s.key);
        if let Some(v) = &s.version {
            url.push_str("?versionId=");
            url.push_str(&evergreen_aws::encode_s3_key(v));
        }
        let answer = self
            .aws
            .signed_request("s3", Method::GET, &url, &[], Vec::new())
            .await
            .map_err(|e: AwsError| format!("cannot get s3://{}/{}: {e}", s.bucket, s.key))?;
        if answer.body.len() > MAX_COMPOSE_BYTES {
            return Err(format!(
                "s3://{}/{} is {} bytes; a compose file may have at most {MAX_COMPOSE_BYTES}",
                s.bucket,
                s.key,
                answer.body.len()
            ));
        }
        let version = answer.header("x-amz-version-id").map(str::to_string);
        let path = s.compose_path();
        write_atomically(&path, &answer.body, s.user_id)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(version)
    }

    async fn compose(&self, args: &[&str], limit: Duration) -> Result<Outcome, String> {
        engine::run(
            self.runner.compose(&self.settings.compose_path(), args),
            limit,
        )
        .await
    }

    /// One deployment, V1's steps in V1's order.
    async fn deploy(&self) -> Result<Deployed, SdkError> {
        self.wait_for_daemon().await?;
        if let Some(why) = self.login().await? {
            return self.fail("InternalError", why).await;
        }
        let s = &self.settings;
        let version = match self.fetch().await {
            Ok(v) => v.or_else(|| s.version.clone()),
            Err(why) if s.offline_mode && s.compose_path().is_file() => {
                self.handle.warn(format!(
                    "{why}; {OFFLINE_MODE} is true: starting the copy from the last deployment, {}",
                    s.compose_path().display()
                ));
                s.version.clone()
            }
            Err(why) => return self.fail("InternalError", why).await,
        };
        if s.pull_before_up {
            let outcome = self.compose(&["pull"], PULL_LIMIT).await;
            if let Some(why) = failure_text("docker-compose pull", &outcome) {
                if !s.offline_mode {
                    return self.fail("InternalError", why).await;
                }
                self.handle.warn(format!(
                    "{why}; {OFFLINE_MODE} is true: starting with the images on this host"
                ));
            }
        }
        let up = ["up", "--detach", "--remove-orphans"];
        let mut outcome = self.compose(&up, UP_LIMIT).await;
        if let (Some(why), true) = (failure_text("docker-compose up", &outcome), s.force_deploy) {
            self.handle.warn(format!(
                "{why}; {FORCE_DEPLOY} is true: removing the previous deployment's containers and trying again"
            ));
            let down = self.compose(&["down", "--remove-orphans"], UP_LIMIT).await;
            if let Some(why) = failure_text("docker-compose down", &down) {
                self.handle.warn(why);
            }
            outcome = self.compose(&up, UP_LIMIT).await;
        }
        if let Some(why) = failure_text("docker-compose up", &outcome) {
            return self.fail("InternalError", why).await;
        }
        self.handle.info(format!(
            "{SUCCESS_TEXT} for {} (version {})",
            s.compose_path().display(),
            version.as_deref().unwrap_or("latest")
        ));
        self.status(success_status(s, version.as_deref())).await?;
        Ok(Deployed::Up)
    }

    /// Logs every container of the project with its state.
    async fn log_containers(&self) {
        let filter = format!("label=com.docker.compose.project={}", engine::PROJECT);
        let outcome = engine::run(
            self.runner.docker(&[
                "ps",
                "--all",
                "--filter",
                &filter,
                "--format",
                "{{.Names}}: {{.State}} ({{.Status}}), image {{.Image}}",
            ]),
            PS_LIMIT,
        )
        .await;
        match (failure_text("docker ps", &outcome), outcome) {
            (None, Ok(o)) if o.output.trim().is_empty() => {
                self.handle.warn("no container of the application exists")
            }
            (None, Ok(o)) => {
                for line in o.output.lines().filter(|l| !l.trim().is_empty()) {
                    self.handle.info(format!("container {line}"));
                }
            }
            (Some(why), _) | (None, Err(why)) => self.handle.warn(why),
        }
    }

    /// `compose down`, in its own process group so that it finishes even
    /// when the connector's stop deadline passes first.
    async fn down(&self, wait: Duration) {
        let file = self.settings.compose_path();
        if !file.is_file() {
            self.handle.info(format!(
                "no compose file at {}: nothing to stop",
                file.display()
            ));
            return;
        }
        // Containers get most of the wait to stop before being killed.
        let stop_after = wait
            .saturating_sub(Duration::from_secs(1))
            .as_secs()
            .max(1)
            .to_string();
        let mut cmd = self.runner.compose(
            &file,
            &["down", "--remove-orphans", "--timeout", &stop_after],
        );
        // Its output goes to a file, not to pipes of this process: once the
        // connector has exited, a write to a pipe would kill it (SIGPIPE).
        let out_path =
            std::env::temp_dir().join(format!("evergreen-docker-down-{}.log", std::process::id()));
        let out = std::fs::File::create(&out_path).and_then(|f| Ok((f.try_clone()?, f)));
        let (stdout, stderr) = match out {
            Ok(pair) => pair,
            Err(e) => {
                self.handle.error(format!(
                    "docker-compose down could not run: {}: {e}",
                    out_path.display()
                ));
                return;
            }
        };
        cmd.stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(false)
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.handle
                    .error(format!("docker-compose down could not run: {e}"));
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        let result = tokio::time::timeout(wait, child.wait()).await;
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        match result {
            Ok(Ok(status)) if status.success() => self
                .handle
                .info("docker-compose down: the application is stopped"),
            Ok(Ok(status)) => self.handle.error(format!(
                "docker-compose down failed ({status}): {}",
                text.trim()
            )),
            Ok(Err(e)) => self.handle.error(format!("docker-compose down: {e}")),
            Err(_) => {
                self.handle.warn(format!(
                    "docker-compose down (pid {pid}) goes on after the connector stops; its output: {}",
                    out_path.display()
                ));
                return;
            }
        }
        let _ = std::fs::remove_file(&out_path);
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// crash never leaves half a compose file; owned by `owner` when given.
async fn write_atomically(path: &Path, bytes: &[u8], owner: Option<u32>) -> std::io::Result<()> {
    let tmp = path.with_extension("evergreen-tmp");
    tokio::fs::write(&tmp, bytes).await?;
    if let Some(uid) = owner {
        std::os::unix::fs::chown(&tmp, Some(uid), None)?;
    }
    tokio::fs::rename(&tmp, path).await
}

/// The connector's own docker client directory (mode 0700).
fn client_dir(owner: Option<u32>) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("evergreen-docker-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    if let Some(uid) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), None)?;
    }
    Ok(dir)
}

/// The effective user id of this process.
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Runs the connector over stdio until the supervisor says stop.
pub async fn run() -> Result<(), SdkError> {
    let (mut component, handle, settings) =
        Component::start(|config| (Settings::from_config(config), Vec::new())).await?;
    let settings = match settings {
        Ok(s) => s,
        Err(problems) => {
            let message = problems.join("; ");
            handle.error(format!("InvalidParameter: {message}"));
            handle
                .publish_or_log(
                    STATUS_TOPIC,
                    fail_status("InvalidParameter", &message).to_string(),
                )
                .await?;
            return idle(&mut component).await;
        }
    };
    let engine = match engine::detect() {
        Ok(e) => e,
        Err(why) => {
            handle.error(format!("InternalError: {why}"));
            handle
                .publish_or_log(STATUS_TOPIC, fail_status("InternalError", &why).to_string())
                .await?;
            return idle(&mut component).await;
        }
    };
    if let (Some(uid), Some(own)) = (settings.user_id, own_uid()) {
        if own != 0 && own != uid {
            let why = format!(
                "{DOCKER_USER_ID} {uid} needs the connector to run as root; it runs as uid {own}"
            );
            handle.error(format!("InvalidParameter: {why}"));
            handle
                .publish_or_log(
                    STATUS_TOPIC,
                    fail_status("InvalidParameter", &why).to_string(),
                )
                .await?;
            return idle(&mut component).await;
        }
    }
    let config_dir = match client_dir(settings.user_id) {
        Ok(d) => d,
        Err(e) => {
            let why = format!("cannot make the docker client directory: {e}");
            handle.error(format!("InternalError: {why}"));
            handle
                .publish_or_log(STATUS_TOPIC, fail_status("InternalError", &why).to_string())
                .await?;
            return idle(&mut component).await;
        }
    };
    let app = Arc::new(App {
        aws: AwsClient::new(component.config(), handle.clone()),
        handle,
        runner: Runner {
            engine,
            config_dir: config_dir.clone(),
            user_id: settings.user_id,
        },
        settings,
    });
    let result = serve(&mut component, app).await;
    // The logins go with the connector.
    let _ = std::fs::remove_dir_all(&config_dir);
    result
}

/// Deploys, logs the containers' states, and stops the application when
/// told to stop.
async fn serve(component: &mut Component, app: Arc<App>) -> Result<(), SdkError> {
    let deploying = app.clone();
    let mut deploy = tokio::spawn(async move { deploying.deploy().await });
    let mut deploying = true;
    let mut up = false;
    let mut ticker = tokio::time::interval(app.settings.status_log_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = loop {
        tokio::select! {
            done = &mut deploy, if deploying => {
                deploying = false;
                match done {
                    Ok(Ok(Deployed::Up)) => {
                        up = true;
                        ticker.reset();
                        app.log_containers().await;
                    }
                    Ok(Ok(Deployed::Failed)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) => app.handle.error(format!("the deployment task ended: {e}")),
                }
            }
            _ = ticker.tick(), if up => app.log_containers().await,
            event = component.next_event() => match event {
                None => break None,
                Some(Event::Shutdown { deadline }) => break Some(deadline),
                Some(Event::Message(m)) => app.handle.warn(format!(
                    "{} takes no input: dropping the message on {} from {}",
                    MANIFEST.name, m.topic, m.source
                )),
                Some(_) => {}
            },
        }
    };
    deploy.abort();
    if app.settings.stop_on_new_deployment {
        // Leave a little of the deadline for the connector's own exit.
        let wait = deadline
            .unwrap_or(Duration::from_secs(5))
            .saturating_sub(Duration::from_millis(500));
        app.down(wait).await;
    } else {
        app.handle.info(format!(
            "{STOP_ON_NEW_DEPLOYMENT} is false: the application keeps running"
        ));
    }
    Ok(())
}

/// Waits for the stop after a failure that no retry can mend (the group
/// must change): restarting would only fail again.
async fn idle(component: &mut Component) -> Result<(), SdkError> {
    while let Some(event) = component.next_event().await {
        if let Event::Shutdown { .. } = event {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_v1_shapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = evergreen_ipc::ComponentConfig::connector(
            "arn:test",
            &[
                (S3_BUCKET, "myS3Bucket"),
                (S3_KEY, "production-docker-compose.yml"),
                (DESTINATION_PATH, &dir.path().display().to_string()),
            ],
        );
        let s = Settings::from_config(&config).expect("valid");
        assert_eq!(
            success_status(&s, Some("123")),
            json!({"status":"success","GreengrassDockerApplicationDeploymentStatus":"Successfully triggered docker-compose up","S3Bucket":"myS3Bucket","ComposeFileName":"production-docker-compose.yml","ComposeFileVersion":"123"})
        );
        assert_eq!(
            fail_status("InvalidParameter", "description of error"),
            json!({"status":"fail","error_message":"description of error","error":"InvalidParameter"})
        );
    }

    #[test]
    fn login_secrets_are_read_without_showing_them() {
        assert_eq!(
            parse_login(r#"{"username":"u","password":"p","registryUrl":"127.0.0.1:5000"}"#),
            Ok(Login {
                username: "u".into(),
                password: "p".into(),
                registry: "127.0.0.1:5000".into()
            })
        );
        assert_eq!(
            parse_login(r#"{"username":"u","password":"p"}"#).map(|l| l.registry),
            Ok(String::new())
        );
        for bad in [
            "hunter2",
            r#"{"username":"u"}"#,
            r#"{"password":"hunter2"}"#,
        ] {
            let err = parse_login(bad).expect_err(bad);
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
