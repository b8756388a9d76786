//! The commands that talk to a running runtime over its control socket: `status`, `deploy`,
//! `redeploy`, `reset`, `deployments`, `restart`, `stop` and `start`. The protocol is
//! `evergreen_ops::control`'s; this module only finds the socket, prints the answer and picks
//! exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::versions::import_bundle;
use super::{print_invalid, print_json, run_failed, store_failed};
use crate::app::{self, RunError};
use evergreen_ops::control::Request;
use evergreen_ops::store::VersionStore;

/// `evergreen status`.
pub(super) fn status(conn: ConnArgs) -> ExitCode {
    let ConnArgs {
        json,
        socket,
        config,
        root,
    } = conn;
    use evergreen_ops::control::{Client, Reply, Request, CLIENT_TIMEOUT};
    let path = match socket {
        Some(path) => path,
        None => match app::load_config(config.as_deref(), root) {
            Ok(cfg) => cfg.control_socket(),
            Err(e) => return run_failed(&e),
        },
    };
    let failed = |e: &dyn std::fmt::Display| {
        eprintln!("evergreen: {e}");
        ExitCode::from(1)
    };
    let mut client = match Client::connect(&path, CLIENT_TIMEOUT) {
        Ok(client) => client,
        Err(e) => return failed(&e),
    };
    if json {
        // The document as the runtime sent it, fields this build does not
        // know included.
        let status = client
            .call_raw(&Request::Status)
            .map(|mut answer| answer.remove("status"));
        match status {
            Ok(Some(status)) => match serde_json::to_string_pretty(&status) {
                Ok(text) => println!("{text}"),
                Err(e) => return failed(&e),
            },
            Ok(None) => return failed(&"the runtime's answer has no status"),
            Err(e) => return failed(&e),
        }
    } else {
        match client.call(&Request::Status) {
            Ok(Reply::Status { status }) => print!("{status}"),
            Ok(other) => return failed(&format!("unexpected answer: {other:?}")),
            Err(e) => return failed(&e),
        }
    }
    ExitCode::SUCCESS
}

/// `evergreen status --page-url`: the URL comes from the runtime (the port it bound, the token
/// it holds), so only a peer the control socket lets in gets it.
pub(super) fn page_url(conn: &ConnArgs) -> ExitCode {
    use evergreen_ops::control::{Reply, CLIENT_TIMEOUT};
    let mut client = match connect(conn, CLIENT_TIMEOUT) {
        Ok(client) => client,
        Err(code) => return code,
    };
    match client.call(&Request::StatusPage) {
        Ok(Reply::StatusPage { url: Some(url) }) => {
            if conn.json {
                println!("{}", serde_json::json!({ "url": url }));
            } else {
                println!("{url}");
            }
            if url.starts_with("http://0.0.0.0:") || url.starts_with("http://[::]:") {
                eprintln!(
                    "evergreen: the page listens on every address: put one of the gateway's addresses in place of {}",
                    if url.contains("[::]") { "[::]" } else { "0.0.0.0" }
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Reply::StatusPage { url: None }) => {
            eprintln!(
                "evergreen: the status page is off: set evergreen.statusPage in the configuration (docs/status-page.md)"
            );
            ExitCode::from(1)
        }
        Ok(other) => {
            eprintln!("evergreen: unexpected answer: {other:?}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("evergreen: {e}");
            ExitCode::from(1)
        }
    }
}

/// How to reach the running runtime.
#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    /// Print the answer as JSON instead of a table or text.
    #[arg(long)]
    json: bool,
    /// Control socket [default: `evergreen.controlSocket`, else <root>/run/control.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Core configuration file [default: /etc/evergreen/config.json if present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Runtime root; overrides `evergreen.root` in the configuration.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

/// A deployment waits for readiness and may roll back: allow far more than
/// a status call.
const DEPLOY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

fn connect(
    conn: &ConnArgs,
    timeout: std::time::Duration,
) -> Result<evergreen_ops::control::Client, ExitCode> {
    let path = match &conn.socket {
        Some(path) => path.clone(),
        None => match app::load_config(conn.config.as_deref(), conn.root.clone()) {
            Ok(cfg) => cfg.control_socket(),
            Err(e) => return Err(run_failed(&e)),
        },
    };
    evergreen_ops::control::Client::connect(&path, timeout).map_err(|e| {
        eprintln!("evergreen: {e}");
        ExitCode::from(1)
    })
}

pub(super) fn deploy(target: &str, conn: ConnArgs) -> ExitCode {
    let file = Path::new(target);
    let version = if file.is_file() {
        // A file is stored as a version first, so what is deployed is
        // immutable and can be redeployed later.
        let cfg = match app::load_config(conn.config.as_deref(), conn.root.clone()) {
            Ok(cfg) => cfg,
            Err(e) => return run_failed(&e),
        };
        if evergreen_ops::bundle::is_bundle(file) {
            return match import_bundle(file, &cfg, conn.json) {
                Ok((version, _)) => deployment_call(&conn, &Request::Deploy { version }),
                Err(code) => code,
            };
        }
        let group = match app::read_group_file(file, &cfg) {
            Ok(group) => group,
            Err(RunError::Group(evergreen_group::LoadError::Invalid { errors, .. })) => {
                return print_invalid(target, &errors, conn.json)
            }
            Err(e) => return run_failed(&e),
        };
        match VersionStore::open(cfg.write_dir()).create(
            &group.text,
            &group.base_dir,
            Some(file),
            &group.plan,
        ) {
            Ok(created) => {
                eprintln!("{target}: stored as group version {}", created.id);
                created.id.as_str().to_string()
            }
            Err(e) => return store_failed(&e),
        }
    } else {
        target.to_string()
    };
    deployment_call(&conn, &Request::Deploy { version })
}

/// Sends one request to the running runtime: its reply, or the exit code
/// after saying why there is none (no runtime, refused, a failed request).
fn ask(
    conn: &ConnArgs,
    timeout: std::time::Duration,
    request: &Request,
) -> Result<evergreen_ops::control::Reply, ExitCode> {
    let mut client = connect(conn, timeout)?;
    client.call(request).map_err(|e| {
        eprintln!("evergreen: {e}");
        ExitCode::from(1)
    })
}

fn unexpected(reply: &evergreen_ops::control::Reply) -> ExitCode {
    eprintln!("evergreen: unexpected answer: {reply:?}");
    ExitCode::from(1)
}

pub(super) fn deployment_call(conn: &ConnArgs, request: &Request) -> ExitCode {
    use evergreen_ops::control::Reply;
    use evergreen_ops::deploy::DeploymentStatus;
    let deployment = match ask(conn, DEPLOY_TIMEOUT, request) {
        Ok(Reply::Deployment { deployment }) => deployment,
        Ok(other) => return unexpected(&other),
        Err(code) => return code,
    };
    if conn.json {
        print_json(&deployment);
    } else {
        let version = deployment.group_version.as_deref().unwrap_or("-");
        println!(
            "deployment {} ({:?}) of group version {}: {:?}",
            deployment.deployment_id,
            deployment.deployment_type,
            version,
            deployment.deployment_status
        );
        if let Some(error) = &deployment.error_message {
            println!("  {error}");
        }
        for detail in &deployment.error_details {
            println!("  {detail}");
        }
    }
    if deployment.deployment_status == DeploymentStatus::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub(super) fn deployments(conn: &ConnArgs) -> ExitCode {
    use evergreen_ops::control::{Reply, CLIENT_TIMEOUT};
    let deployments = match ask(conn, CLIENT_TIMEOUT, &Request::Deployments) {
        Ok(Reply::Deployments { deployments }) => deployments,
        Ok(other) => return unexpected(&other),
        Err(code) => return code,
    };
    if conn.json {
        print_json(&deployments);
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<15} {:<16} {:<13} {:<11} {:<25} ERROR",
        "ID", "TYPE", "VERSION", "STATUS", "CREATED"
    );
    for d in deployments {
        let version = d
            .group_version
            .as_deref()
            .map_or("-", |v| &v[..v.len().min(12)]);
        println!(
            "{:<15} {:<16} {:<13} {:<11} {:<25} {}",
            d.deployment_id,
            format!("{:?}", d.deployment_type),
            version,
            format!("{:?}", d.deployment_status),
            d.created_at,
            d.error_message.as_deref().unwrap_or("")
        );
    }
    ExitCode::SUCCESS
}

/// Which operator's request about one component `component_call` sends.
#[derive(Debug, Clone, Copy)]
pub(super) enum ComponentOp {
    Restart,
    Stop,
    Start,
}

/// `evergreen restart|stop|start COMPONENT`: prints `<arn>: <what was done>`, or with --json
/// `{"arn": …, "message": …}`.
pub(super) fn component_call(op: ComponentOp, component: &str, conn: &ConnArgs) -> ExitCode {
    use evergreen_ops::control::{Reply, CLIENT_TIMEOUT};
    let component = component.to_string();
    let (request, timeout) = match op {
        ComponentOp::Restart => (Request::Restart { component }, CLIENT_TIMEOUT),
        // A stop answers once the child is gone: stop, SIGTERM and SIGKILL take up to
        // shutdownGraceMs + termGraceMs, which may be far longer than a status call.
        ComponentOp::Stop => (Request::Stop { component }, DEPLOY_TIMEOUT),
        ComponentOp::Start => (Request::Start { component }, CLIENT_TIMEOUT),
    };
    match ask(conn, timeout, &request) {
        Ok(
            Reply::Restart { arn, message }
            | Reply::Stop { arn, message }
            | Reply::Start { arn, message },
        ) => {
            if conn.json {
                print_json(&serde_json::json!({ "arn": arn, "message": message }));
            } else {
                println!("{arn}: {message}");
            }
            ExitCode::SUCCESS
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}
