//! End-to-end: the Docker Application Deployment connector
//! (`DockerApplicationDeployment` v7) against a real Docker Engine and Compose, a real private
//! registry (`docker-registry`, Distribution 2.8, htpasswd logins) on loopback and moto's S3,
//! checking what V1's connector documentation says it does:
//! * it downloads the compose file from S3, logs in with the credentials of a secret in
//!   `AWSSecretsArnList`, runs `docker-compose pull` and `up`, and publishes
//!   `{"status":"success","GreengrassDockerApplicationDeploymentStatus":"Successfully triggered docker-compose up","S3Bucket","ComposeFileName","ComposeFileVersion"}`
//!   on `dockerapplicationdeploymentconnector/message/status`; the application answers HTTP;
//! * it logs the containers' states every `DockerContainerStatusLogFrequency` seconds;
//! * the runtime killed with SIGKILL and started again: the application is brought up again
//!   with the same containers, never twice;
//! * a stop runs `docker-compose down` (`StopContainersOnNewDeployment` true), and leaves the
//!   application running with it false; `DockerOfflineMode` starts the last compose file when
//!   S3 cannot be reached;
//! * wrong registry credentials and a missing S3 object are `fail` statuses naming the cause,
//!   never showing the password;
//! * a host without Docker refuses the group at deployment (`evergreen validate`), with the
//!   reason.
//!
//! Needs a running Docker daemon, Compose, `docker-registry`, `htpasswd` and a static busybox
//! (`.ci/run` installs and starts them); skips loudly without them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use evergreen_tests::http_recorder::{ConnectorRig, SecretSpec};
use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(90);
const ARN: &str =
    "arn:aws:greengrass:us-east-1::/connectors/DockerApplicationDeployment/versions/7";
const STATUS: &str = "dockerapplicationdeploymentconnector/message/status";
const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-DockerRegistry-AbCdEf";
const PROJECT: &str = "greengrassdockerapplicationdeployment";
const USER: &str = "eguser";
const PASSWORD: &str = "s3cr3t-Registry-Pass";

/// The Compose project name is fixed (V1's), so the tests of this file take turns.
static ENGINE: Mutex<()> = Mutex::new(());

/// Why Docker cannot be used here, or `None`.
fn docker_unavailable() -> Option<String> {
    for tool in ["docker", "docker-registry", "htpasswd"] {
        if !have(tool) {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("/bin/busybox (busybox-static) is not installed".into());
    }
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match info {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "the Docker daemon does not answer: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("docker info: {e}")),
    }
}

macro_rules! require_docker {
    () => {
        if let Some(why) = docker_unavailable() {
            eprintln!("\n*** SKIPPED: no usable Docker Engine: {why} ***\n");
            return;
        }
    };
}

fn docker(args: &[&str], config: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    if let Some(c) = config {
        cmd.env("DOCKER_CONFIG", c);
    }
    cmd.output().expect("docker")
}

fn must(out: std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The project's containers: `name state`.
fn containers() -> Vec<String> {
    let filter = format!("label=com.docker.compose.project={PROJECT}");
    must(
        docker(
            &[
                "ps",
                "--all",
                "--filter",
                &filter,
                "--format",
                "{{.Names}} {{.State}}",
            ],
            None,
        ),
        "docker ps",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn remove_project() {
    let filter = format!("label=com.docker.compose.project={PROJECT}");
    let ids = must(
        docker(&["ps", "-aq", "--filter", &filter], None),
        "docker ps",
    );
    for id in ids.split_whitespace() {
        let _ = docker(&["rm", "-f", id], None);
    }
}

/// A private registry on loopback holding the test application's image, which is then
/// removed from the engine so that only a logged-in pull can bring it back.
struct Registry {
    child: Child,
    image: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(marker: &str) -> Registry {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port().expect("a free port");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .expect("htpasswd");
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).expect("htpasswd file");
        let config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: evergreen-test\n    path: {pw}\n",
            data = dir.path().join("data").display(),
            pw = dir.path().join("htpasswd").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry");
        wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .expect("the registry listens");

        // The image: static busybox serving a page that names this run.
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "www"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox");
        std::fs::write(rootfs.join("www/index.html"), marker).expect("page");
        let image = format!("127.0.0.1:{port}/evergreen-test/app:{}", std::process::id());
        let archive = dir.path().join("rootfs.tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&archive)
            .arg(".")
            .status()
            .expect("tar");
        assert!(tar.success(), "tar of the test image");
        must(
            docker(&["import", &archive.display().to_string(), &image], None),
            "docker import",
        );
        let cfg = dir.path().join("client");
        std::fs::create_dir_all(&cfg).expect("client dir");
        let mut login = Command::new("docker")
            .args(["login", "--username", USER, "--password-stdin"])
            .arg(format!("127.0.0.1:{port}"))
            .env("DOCKER_CONFIG", &cfg)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("docker login");
        {
            use std::io::Write;
            let mut stdin = login.stdin.take().expect("stdin");
            stdin.write_all(PASSWORD.as_bytes()).expect("password");
        }
        assert!(login.wait().expect("login").success(), "test login");
        must(docker(&["push", &image], Some(&cfg)), "docker push");
        must(docker(&["rmi", &image], None), "docker rmi");
        Registry {
            child,
            image,
            _dir: dir,
        }
    }
}

impl Registry {
    /// `127.0.0.1:<port>`: what a login names.
    fn address(&self) -> String {
        self.image.split('/').next().unwrap_or_default().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = docker(&["rmi", "-f", &self.image], None);
    }
}

/// Puts `compose` at `bucket/key` (versioned) with boto3: the version id.
fn put_compose(moto: &Moto, bucket: &str, key: &str, compose: &str) -> String {
    let out = boto3_s3(
        moto,
        "b, k, body = sys.argv[2], sys.argv[3], sys.argv[4]\n\
         try:\n\
         \x20   s3.create_bucket(Bucket=b)\n\
         except s3.exceptions.BucketAlreadyOwnedByYou:\n\
         \x20   pass\n\
         s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={'Status': 'Enabled'})\n\
         print(s3.put_object(Bucket=b, Key=k, Body=body.encode())['VersionId'])\n",
        &[bucket.as_ref(), key.as_ref(), compose.as_ref()],
    );
    String::from_utf8_lossy(&out).trim().to_string()
}

fn compose_file(image: &str, port: u16) -> String {
    format!(
        "version: \"3\"\nservices:\n  web:\n    image: {image}\n    command: [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n    ports:\n      - \"127.0.0.1:{port}:8080\"\n"
    )
}

/// The group: the connector (NoContainer, as V1) with the registry secret, its status
/// recorded by `eg-fn record`.
fn docker_group(params: Value, record: &Path) -> Value {
    let secret = SecretSpec {
        resource_id: "DOCKER_DEPLOYER_SECRET_RESOURCE_RESERVED_ID_0".into(),
        arn: SECRET_ARN.into(),
        value: None,
    };
    let mut g = ConnectorRig::group(
        ARN,
        params,
        &[],
        &[STATUS],
        &secret,
        &record.with_extension("feed"),
        record,
    );
    // V1's connector has no IsolationMode parameter: it always runs without a container.
    if let Some(p) = g["ConnectorDefinitionVersion"]["Connectors"][0]["Parameters"].as_object_mut()
    {
        p.remove("IsolationMode");
    }
    g
}

fn statuses(record: &Path) -> Vec<Value> {
    records(record)
        .into_iter()
        .filter(|r| r["topic"] == STATUS)
        .filter_map(|r| serde_json::from_str(r["payload"].as_str()?).ok())
        .collect()
}

struct Deployment {
    dir: tempfile::TempDir,
    record: PathBuf,
    group: Value,
    config: Value,
}

impl Deployment {
    fn new(moto: &Moto, params: Value, secret: &Value) -> Deployment {
        let dir = tempfile::tempdir().expect("tmp");
        let record = dir.path().join("record.jsonl");
        let group = docker_group(params, &record);
        put_secret(
            &dir.path().join("root"),
            "greengrass-DockerRegistry",
            secret.to_string().as_bytes(),
        )
        .expect("secret store");
        let config = moto.core_config();
        Deployment {
            dir,
            record,
            group,
            config,
        }
    }

    fn start(self) -> (Runtime, PathBuf) {
        let record = self.record.clone();
        (
            Runtime::start_config_in(self.dir, &self.group, &self.config, &[]),
            record,
        )
    }
}

fn status_or_panic(rt: &Runtime, record: &Path, after: usize) -> Value {
    wait_for(LIMIT, || statuses(record).into_iter().nth(after)).unwrap_or_else(|| {
        panic!(
            "no status from the connector:\nconnector:\n{}\nruntime:\n{}",
            read(&rt.log_path("user/us-east-1/aws/DockerApplicationDeployment.log")),
            read(&rt.log_path("system/runtime.log"))
        )
    })
}

fn http_get(port: u16) -> Option<String> {
    http_request("GET", port, "/index.html", "text/plain", b"")
        .ok()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn compose_app_from_s3_runs_with_registry_login_survives_kill_9_and_stops() {
    require_docker!();
    let _turn = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(moto) = Moto::start() else {
        return;
    };
    remove_project();
    let marker = format!("evergreen docker app {}", std::process::id());
    let registry = Registry::start(&marker);
    let port = free_port().expect("a free port");
    let version = put_compose(
        &moto,
        "compose-files",
        "apps/production-docker-compose.yml",
        &compose_file(&registry.image, port),
    );
    let dest = tempfile::tempdir().expect("tmp");
    let params = json!({
        "DockerComposeFileS3Bucket": "compose-files",
        "DockerComposeFileS3Key": "apps/production-docker-compose.yml",
        "DockerComposeFileDestinationPath": dest.path().display().to_string(),
        "AWSSecretsArnList": json!([SECRET_ARN]).to_string(),
        "DockerContainerStatusLogFrequency": "1",
    });
    let registry_url = registry.address();
    let secret = json!({"username": USER, "password": PASSWORD, "registryUrl": registry_url});
    let deployment = Deployment::new(&moto, params, &secret);
    let root = deployment.dir.path().join("root");
    let group = deployment.group.clone();
    let config = deployment.config.clone();
    let (mut rt, record) = deployment.start();

    let status = status_or_panic(&rt, &record, 0);
    assert_eq!(
        status,
        json!({"status": "success",
               "GreengrassDockerApplicationDeploymentStatus": "Successfully triggered docker-compose up",
               "S3Bucket": "compose-files", "ComposeFileName": "production-docker-compose.yml",
               "ComposeFileVersion": version}),
    );
    assert!(
        dest.path().join("production-docker-compose.yml").is_file(),
        "the compose file is kept in DockerComposeFileDestinationPath"
    );
    let page = wait_for(Duration::from_secs(30), || http_get(port)).unwrap_or_else(|| {
        panic!(
            "the application does not answer; containers: {:?}",
            containers()
        )
    });
    assert_eq!(page, marker, "the pulled image serves its page");
    let running = containers();
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(running[0].ends_with(" running"), "{running:?}");
    let log = rt.log_path("user/us-east-1/aws/DockerApplicationDeployment.log");
    wait_for(Duration::from_secs(20), || {
        let text = read(&log);
        (text
            .matches("container ")
            .filter(|_| text.contains("running"))
            .count()
            >= 2)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("container states are logged every second:\n{}", read(&log)));
    assert!(
        !read(&log).contains(PASSWORD),
        "the password never reaches the log"
    );
    if let Some(pid) = children_of(rt.pid())
        .into_iter()
        .find(|p| cmdline(*p).contains("connector DockerApplicationDeployment"))
    {
        eprintln!(
            "DockerApplicationDeployment idle RSS: {} KiB",
            vm_rss_kb(pid).unwrap_or(0)
        );
    }

    // kill -9: nothing stops the application; the restarted runtime brings the same one up.
    rt.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10))
        .expect("the runtime dies");
    assert_eq!(
        http_get(port).as_deref(),
        Some(marker.as_str()),
        "still served"
    );
    let dir = tempfile::tempdir().expect("tmp");
    // The same root (the secret store, the logs) under a new runtime.
    std::fs::rename(&root, dir.path().join("root")).expect("move the root");
    let mut rt = Runtime::start_config_in(dir, &group, &config, &[]);
    let record2 = record.clone();
    let again = wait_for(LIMIT, || {
        statuses(&record2)
            .into_iter()
            .skip(1)
            .find(|s| s["status"] == "success")
    })
    .unwrap_or_else(|| panic!("no success after the restart: {:?}", statuses(&record2)));
    assert_eq!(again["ComposeFileVersion"], json!(version));
    let after = containers();
    assert_eq!(
        after.len(),
        1,
        "up after a restart reuses the containers: {after:?}"
    );
    assert_eq!(http_get(port).as_deref(), Some(marker.as_str()));

    // A stop runs `down`.
    let log_after_restart = rt.log_path("user/us-east-1/aws/DockerApplicationDeployment.log");
    rt.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30))
        .expect("the runtime stops");
    let gone = wait_for(Duration::from_secs(60), || {
        containers().is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "docker-compose down removed the application: {:?}\n{}",
        containers(),
        read(&log_after_restart)
    );
    drop(registry);
}

#[test]
fn wrong_registry_password_and_missing_object_are_fail_statuses() {
    require_docker!();
    let _turn = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(moto) = Moto::start() else {
        return;
    };
    remove_project();
    let registry = Registry::start("unused");
    let port = free_port().expect("a free port");
    put_compose(
        &moto,
        "compose-files",
        "app.yml",
        &compose_file(&registry.image, port),
    );
    let registry_url = registry.address();
    let dest = tempfile::tempdir().expect("tmp");

    let wrong = "not-the-Password-42";
    let (rt, record) = Deployment::new(
        &moto,
        json!({
            "DockerComposeFileS3Bucket": "compose-files",
            "DockerComposeFileS3Key": "app.yml",
            "DockerComposeFileDestinationPath": dest.path().display().to_string(),
            "AWSSecretsArnList": json!([SECRET_ARN]).to_string(),
        }),
        &json!({"username": USER, "password": wrong, "registryUrl": registry_url}),
    )
    .start();
    let status = status_or_panic(&rt, &record, 0);
    assert_eq!(status["status"], "fail", "{status}");
    assert_eq!(status["error"], "InternalError", "{status}");
    let message = status["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("docker login")
            && message.contains(&registry_url)
            && message.contains("401"),
        "the login failure is named: {message}"
    );
    assert!(
        !message.contains(wrong),
        "the password is never shown: {message}"
    );
    assert!(
        containers().is_empty(),
        "nothing started: {:?}",
        containers()
    );
    drop(rt);

    let (rt, record) = Deployment::new(
        &moto,
        json!({
            "DockerComposeFileS3Bucket": "compose-files",
            "DockerComposeFileS3Key": "no-such-compose.yml",
            "DockerComposeFileDestinationPath": dest.path().display().to_string(),
        }),
        &json!({"username": USER, "password": PASSWORD, "registryUrl": registry_url}),
    )
    .start();
    let status = status_or_panic(&rt, &record, 0);
    assert_eq!(status["status"], "fail", "{status}");
    assert_eq!(status["error"], "InternalError", "{status}");
    let message = status["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("NoSuchKey") && message.contains("no-such-compose.yml"),
        "{message}"
    );
    drop(rt);
    drop(registry);
}

/// V1 documented Docker Engine and Compose as requirements of the core device; a host
/// without them refuses the group when it is deployed, saying so.
#[test]
fn a_host_without_docker_refuses_the_group_at_deployment() {
    let dir = tempfile::tempdir().expect("tmp");
    let record = dir.path().join("record.jsonl");
    let group = docker_group(
        json!({
            "DockerComposeFileS3Bucket": "compose-files",
            "DockerComposeFileS3Key": "app.yml",
            "DockerComposeFileDestinationPath": dir.path().display().to_string(),
            "AWSSecretsArnList": json!([SECRET_ARN]).to_string(),
        }),
        &record,
    );
    let group_file = dir.path().join("group.json");
    std::fs::write(&group_file, group.to_string()).expect("group");
    // A PATH with no docker on it.
    let empty = tempfile::tempdir().expect("tmp");
    let out = Command::new(evergreen_bin())
        .arg("validate")
        .arg(&group_file)
        .env("PATH", empty.path())
        .output()
        .expect("evergreen validate");
    let text = output_text(&out);
    assert!(!out.status.success(), "refused: {text}");
    assert!(
        text.contains("DockerApplicationDeployment cannot run on this host")
            && text.contains("docker command is not installed"),
        "{text}"
    );
    // With Docker on the PATH the same group is valid (when this host has it).
    if docker_unavailable().is_none() {
        let out = Command::new(evergreen_bin())
            .arg("validate")
            .arg(&group_file)
            .output()
            .expect("evergreen validate");
        assert!(out.status.success(), "{}", output_text(&out));
    }
    // A secret in the list that is not a resource of the group is named.
    let mut bad = group.clone();
    bad["ConnectorDefinitionVersion"]["Connectors"][0]["Parameters"]["AWSSecretsArnList"] =
        json!(json!([
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-Other-XyZ123"
        ])
        .to_string());
    std::fs::write(&group_file, bad.to_string()).expect("group");
    let out = Command::new(evergreen_bin())
        .arg("validate")
        .arg(&group_file)
        .output()
        .expect("evergreen validate");
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("greengrass-Other-XyZ123") && text.contains("AWSSecretsArnList"),
        "{text}"
    );
}

/// `StopContainersOnNewDeployment` false leaves the application running when the connector
/// stops; `DockerOfflineMode` true starts the last compose file when S3 cannot be reached.
#[test]
fn keep_running_on_stop_and_offline_mode_uses_the_last_compose_file() {
    require_docker!();
    let _turn = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut moto) = Moto::start() else {
        return;
    };
    remove_project();
    let marker = format!("evergreen offline app {}", std::process::id());
    let registry = Registry::start(&marker);
    let port = free_port().expect("a free port");
    put_compose(
        &moto,
        "compose-files",
        "offline.yml",
        &compose_file(&registry.image, port),
    );
    let registry_url = registry.address();
    let dest = tempfile::tempdir().expect("tmp");
    let deployment = Deployment::new(
        &moto,
        json!({
            "DockerComposeFileS3Bucket": "compose-files",
            "DockerComposeFileS3Key": "offline.yml",
            "DockerComposeFileDestinationPath": dest.path().display().to_string(),
            "AWSSecretsArnList": json!([SECRET_ARN]).to_string(),
            "StopContainersOnNewDeployment": "false",
            "DockerOfflineMode": "true",
        }),
        &json!({"username": USER, "password": PASSWORD, "registryUrl": registry_url}),
    );
    let root = deployment.dir.path().join("root");
    let (group, config) = (deployment.group.clone(), deployment.config.clone());
    let (mut rt, record) = deployment.start();
    let status = status_or_panic(&rt, &record, 0);
    assert_eq!(status["status"], "success", "{status}");
    rt.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30))
        .expect("the runtime stops");
    assert_eq!(
        wait_for(Duration::from_secs(20), || http_get(port)).as_deref(),
        Some(marker.as_str()),
        "the application keeps running: {:?}",
        containers()
    );

    // S3 gone: the copy in DockerComposeFileDestinationPath is used, and logged.
    moto.stop();
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::rename(&root, dir.path().join("root")).expect("move the root");
    let rt = Runtime::start_config_in(dir, &group, &config, &[]);
    let again = wait_for(LIMIT, || statuses(&record).into_iter().nth(1)).unwrap_or_else(|| {
        panic!(
            "no status after the restart:\n{}",
            read(&rt.log_path("user/us-east-1/aws/DockerApplicationDeployment.log"))
        )
    });
    assert_eq!(again["status"], "success", "{again}");
    assert_eq!(again["ComposeFileName"], "offline.yml", "{again}");
    let log = read(&rt.log_path("user/us-east-1/aws/DockerApplicationDeployment.log"));
    assert!(
        log.contains("DockerOfflineMode is true: starting the copy from the last deployment"),
        "{log}"
    );
    assert_eq!(containers().len(), 1, "{:?}", containers());
    drop(rt);
    remove_project();
    drop(registry);
}
