//! End-to-end: the Lambda IPC endpoint (`coreThing.ggDaemonPort`, 8000 by default) listens
//! only while the deployed group has a function (issue 23 item 7). A runtime without
//! functions holds no port another program may want; the first deployment with a Python
//! function binds it before it starts anything, a busy port refuses that deployment with the
//! port and the configuration key named (and changes nothing), and a deployment that leaves no
//! function closes it again.
//!
//! Greengrass V1 behaviour kept (lambda-ipc.md): functions reach the core on `localhost` at
//! `GG_DAEMON_PORT`; the port is the core's configuration, told to every function.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

/// A pinned Python function that publishes once at start: seen on `port/ready` by the
/// recorder, which shows the endpoint served it.
const ANNOUNCER: &str = r#"
import greengrasssdk

greengrasssdk.client("iot-data").publish(topic="port/ready", payload=b"up")


def handler(event, context):
    return
"#;

fn cli(dir: &Path, args: &[&str]) -> Output {
    evergreen_with(&dir.join("config.json"), args)
}

/// Whether something listens on 127.0.0.1:`port`.
fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// A group with the recorder (native, writing what it receives to `out`) and, when
/// `with_function`, the announcer Python function whose code is in `code`.
fn group_with(out: &Path, code: &str, with_function: bool) -> Value {
    let mut functions = vec![function("recorder", &format!("record {}", out.display()))];
    let mut subscriptions = Vec::new();
    if with_function {
        functions.push(json!({
            "Id": "announcer",
            "FunctionArn": fn_arn("announcer"),
            "FunctionConfiguration": {
                "Executable": "announcer.handler",
                "CodeUri": code,
                "Runtime": "python3.8",
                "Pinned": true,
                "Timeout": 5,
                "MemorySize": 32768,
                "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
            }
        }));
        subscriptions.push(sub(
            "announce",
            &fn_arn("announcer"),
            "port/ready",
            &fn_arn("recorder"),
        ));
    }
    group(functions, subscriptions)
}

/// Starts a runtime whose group has only the recorder, with the Lambda endpoint on `port`.
fn start(work: &Path, port: u16) -> Runtime {
    Runtime::start_config(
        &group_with(&work.join("received"), "", false),
        &json!({
            "coreThing": { "ggDaemonPort": port },
            "evergreen": { "controlSocket": work.join("control.sock"), "readinessTimeoutMs": 8000 }
        }),
        &[],
    )
}

fn deploy(rt: &Runtime, work: &Path, name: &str, with_function: bool) -> Output {
    let file = rt.path(name);
    let g = group_with(&work.join("received"), "functions/announcer", with_function);
    std::fs::write(&file, g.to_string()).expect("write group");
    cli(rt.dir.path(), &["deploy", &file.display().to_string()])
}

/// Waits until the runtime answers and the recorder runs.
fn ready(rt: &Runtime) {
    assert!(
        wait_for(LIMIT, || {
            let out = cli(rt.dir.path(), &["status", "--json"]);
            let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
            doc["components"]
                .as_array()?
                .iter()
                .any(|c| {
                    c["name"] == "recorder"
                        && c["state"] == "Running"
                        && c["pid"].as_u64() > Some(0)
                })
                .then_some(())
        })
        .is_some(),
        "the runtime never reported its recorder running"
    );
}

#[test]
fn lambda_endpoint_listens_only_while_a_function_is_deployed() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let port = free_port().expect("a free port for the Lambda endpoint");
    let mut rt = start(work.path(), port);
    ready(&rt);
    assert!(
        !listening(port),
        "a group without functions must leave coreThing.ggDaemonPort {port} unbound"
    );
    // Another program may use the port meanwhile: it can bind it.
    drop(TcpListener::bind(("127.0.0.1", port)).expect("the port is free for others"));

    let code_dir = rt.dir.path().join("functions/announcer");
    vendor_greengrasssdk(&sdk, &code_dir).expect("vendor greengrasssdk");
    std::fs::write(code_dir.join("announcer.py"), ANNOUNCER).expect("write");
    let out = deploy(&rt, work.path(), "with-function.json", true);
    assert!(
        out.status.success(),
        "deployment with a function: {}",
        output_text(&out)
    );
    assert!(listening(port), "a deployed function needs the endpoint");
    let received = work.path().join("received");
    assert!(
        wait_for(LIMIT, || std::fs::read_to_string(&received)
            .ok()
            .filter(|t| t.contains("up"))
            .map(|_| ()))
        .is_some(),
        "the function published through the endpoint"
    );

    let out = deploy(&rt, work.path(), "without-function.json", false);
    assert!(
        out.status.success(),
        "deployment without functions: {}",
        output_text(&out)
    );
    assert!(
        wait_for(LIMIT, || (!listening(port)).then_some(())).is_some(),
        "a deployment that leaves no function closes the endpoint"
    );
    assert!(
        rt.stop_with(nix::sys::signal::Signal::SIGTERM, LIMIT)
            .is_some_and(|s| s.success()),
        "clean stop"
    );
}

#[test]
fn lambda_endpoint_busy_port_refuses_the_deployment_with_its_reason() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let mut rt = start(work.path(), port);
    ready(&rt);
    let before = cli(rt.dir.path(), &["status", "--json"]);

    let code_dir = rt.dir.path().join("functions/announcer");
    vendor_greengrasssdk(&sdk, &code_dir).expect("vendor greengrasssdk");
    std::fs::write(code_dir.join("announcer.py"), ANNOUNCER).expect("write");
    let out = deploy(&rt, work.path(), "with-function.json", true);
    let text = output_text(&out);
    assert!(!out.status.success(), "a busy port must refuse: {text}");
    assert!(
        text.contains(&format!("localhost:{port}")) && text.contains("coreThing.ggDaemonPort"),
        "the refusal names the port and its key: {text}"
    );
    // Nothing changed: the recorder still runs with its process, the announcer never started.
    let pid = |out: &Output| -> Option<u64> {
        let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
        doc["components"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "recorder")?["pid"]
            .as_u64()
    };
    let after = cli(rt.dir.path(), &["status", "--json"]);
    assert_eq!(pid(&before), pid(&after), "the recorder was left alone");
    assert!(
        !String::from_utf8_lossy(&after.stdout).contains("announcer"),
        "the refused function did not start"
    );
    // Once the port is free, the same deployment goes through.
    drop(holder);
    let out = deploy(&rt, work.path(), "with-function-again.json", true);
    assert!(
        out.status.success(),
        "after the port is freed: {}",
        output_text(&out)
    );
    assert!(listening(port));
    assert!(rt
        .stop_with(nix::sys::signal::Signal::SIGTERM, LIMIT)
        .is_some_and(|s| s.success()));
}
