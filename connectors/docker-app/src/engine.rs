//! The container engine the connector drives: finding `docker` and a
//! Compose (the `docker compose` plugin, or V1's standalone
//! `docker-compose`), and running their commands with a time limit, their
//! output kept for the log and the status.
//!
//! Every command runs with `DOCKER_CONFIG` set to the connector's own
//! client directory, so registry logins from the group's secrets never
//! touch (or use) the host user's `~/.docker`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The Compose project every container of the application belongs to
/// (V1's project name prefix, so `docker ps` names look as they did).
pub const PROJECT: &str = "greengrassdockerapplicationdeployment";

/// Output kept from one command, per stream (the tail is what explains a
/// failure).
const OUTPUT_KEPT: usize = 4096;

/// Which Compose the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compose {
    /// `docker compose` (Compose v2, the CLI plugin).
    Plugin,
    /// A standalone `docker-compose` (Compose v1, what V1's connector ran).
    Standalone(PathBuf),
}

/// The host's docker CLI and Compose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub docker: PathBuf,
    pub compose: Compose,
}

/// What one command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub success: bool,
    /// The end of its standard output and error, for messages.
    pub output: String,
}

/// A command that could not run or did not succeed, in words.
pub fn failure_text(what: &str, outcome: &Result<Outcome, String>) -> Option<String> {
    match outcome {
        Ok(o) if o.success => None,
        Ok(o) => Some(format!("{what} failed: {}", o.output.trim())),
        Err(e) => Some(format!("{what} could not run: {e}")),
    }
}

/// `name` found in the directories of `path` (a `PATH` value).
pub fn find_in_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let path = path?;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The engine on this host's `PATH`, or why there is none. Runs
/// `docker compose version` (blocking, a fraction of a second) to tell
/// whether the plugin is installed.
pub fn detect() -> Result<Engine, String> {
    detect_in(std::env::var_os("PATH").as_deref())
}

/// [`detect`] with `path` for `PATH`.
pub fn detect_in(path: Option<&std::ffi::OsStr>) -> Result<Engine, String> {
    let docker = find_in_path("docker", path).ok_or_else(|| {
        "the docker command is not installed (Docker Engine and Docker Compose are needed; \
         on Debian: apt-get install docker.io docker-compose)"
            .to_string()
    })?;
    let plugin = std::process::Command::new(&docker)
        .args(["compose", "version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if plugin {
        return Ok(Engine {
            docker,
            compose: Compose::Plugin,
        });
    }
    match find_in_path("docker-compose", path) {
        Some(standalone) => Ok(Engine {
            docker,
            compose: Compose::Standalone(standalone),
        }),
        None => Err(format!(
            "{} has no compose plugin and docker-compose is not installed (on Debian: \
             apt-get install docker-compose)",
            docker.display()
        )),
    }
}

/// How commands are run: the engine, the client configuration directory,
/// and the user to run as.
#[derive(Debug, Clone)]
pub struct Runner {
    pub engine: Engine,
    pub config_dir: PathBuf,
    pub user_id: Option<u32>,
}

impl Runner {
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DOCKER_CONFIG", &self.config_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(uid) = self.user_id {
            cmd.uid(uid);
        }
        cmd
    }

    /// A `docker` command.
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(&self.engine.docker);
        cmd.args(args);
        cmd
    }

    /// A Compose command on project [`PROJECT`] and file `file`.
    pub fn compose(&self, file: &Path, args: &[&str]) -> Command {
        let project: [OsString; 4] = [
            "--project-name".into(),
            PROJECT.into(),
            "--file".into(),
            file.as_os_str().to_owned(),
        ];
        let mut cmd = match &self.engine.compose {
            Compose::Plugin => {
                let mut cmd = self.command(&self.engine.docker);
                cmd.arg("compose");
                cmd
            }
            Compose::Standalone(path) => self.command(path),
        };
        cmd.args(project).args(args);
        // Compose v1 reads the project directory's `.env`; v2 too. Both
        // resolve relative paths against the file's directory.
        if let Some(dir) = file.parent() {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// `docker login` to `registry` with the password on standard input
    /// (never on the command line, where `ps` would show it).
    pub async fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
        limit: Duration,
    ) -> Result<Outcome, String> {
        let mut args = vec!["login", "--username", username, "--password-stdin"];
        if !registry.is_empty() {
            args.push(registry);
        }
        let mut cmd = self.docker(&args);
        cmd.stdin(Stdio::piped());
        run_with_input(cmd, Some(password.as_bytes()), limit).await
    }
}

/// Runs `cmd` to completion within `limit` (killed after it).
pub async fn run(cmd: Command, limit: Duration) -> Result<Outcome, String> {
    run_with_input(cmd, None, limit).await
}

async fn run_with_input(
    mut cmd: Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> Result<Outcome, String> {
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(bytes)
            .await
            .map_err(|e| format!("cannot write to its input: {e}"))?;
        // Closing stdin ends the password.
        drop(stdin);
    }
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(out)) => Ok(Outcome {
            success: out.status.success(),
            output: format!("{}{}", tail(&out.stdout), tail(&out.stderr)),
        }),
    }
}

/// The end of `bytes` as text, at most [`OUTPUT_KEPT`] bytes.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_KEPT);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_docker_on_path_is_explained() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = detect_in(Some(dir.path().as_os_str())).expect_err("no docker");
        assert!(err.contains("docker command is not installed"), "{err}");
    }

    #[test]
    fn a_standalone_compose_is_found_when_the_plugin_is_missing() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        // A docker whose `compose` subcommand fails, and a docker-compose.
        for (name, script) in [
            ("docker", "#!/bin/sh\nexit 1\n"),
            ("docker-compose", "#!/bin/sh\n"),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, script).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let engine = detect_in(Some(dir.path().as_os_str())).expect("engine");
        assert_eq!(
            engine.compose,
            Compose::Standalone(dir.path().join("docker-compose"))
        );
        std::fs::remove_file(dir.path().join("docker-compose")).expect("rm");
        let err = detect_in(Some(dir.path().as_os_str())).expect_err("no compose");
        assert!(err.contains("docker-compose is not installed"), "{err}");
    }

    #[tokio::test]
    async fn commands_are_bounded_in_time_and_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 5"]).kill_on_drop(true);
        let err = run(cmd, Duration::from_millis(200))
            .await
            .expect_err("timeout");
        assert!(err.contains("no answer"), "{err}");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "head -c 100000 /dev/zero | tr '\\0' x; echo; echo the-end >&2; exit 3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let out = run(cmd, Duration::from_secs(10)).await.expect("ran");
        assert!(!out.success);
        assert!(out.output.len() <= 2 * OUTPUT_KEPT);
        assert!(out.output.ends_with("the-end\n"));
        assert_eq!(
            failure_text("docker compose up", &Ok(out)).map(|t| t.ends_with("the-end")),
            Some(true)
        );
    }
}
