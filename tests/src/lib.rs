//! Harness for the end-to-end tests: starts the real `evergreen` binary on a
//! temporary root with a generated group, and reads what it leaves behind
//! (records written by test functions, log files, its child processes).
//!
//! Every wait polls with a deadline; nothing sleeps a fixed time to "let
//! things settle", and nothing binds a fixed port.

pub mod broker;
pub mod fleet;
pub mod http_recorder;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod aws_standin;
pub mod fault_proxy;
pub mod iotanalytics_server;
pub mod pki;

/// Region and account used by test ARNs.
pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// A program built by this workspace: next to the running executable (a
/// binary in `target/<profile>/`) or one directory up (a test in `deps/`).
pub fn find_bin(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", exe.display()))?;
    [Some(dir.join(name)), dir.parent().map(|d| d.join(name))]
        .into_iter()
        .flatten()
        .find(|candidate| candidate.exists())
        .ok_or_else(|| {
            format!(
                "{name} is not built next to {}: build the workspace's binaries \
                 (`cargo test --workspace`, or for the benches \
                 `cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench`)",
                exe.display()
            )
        })
}

fn workspace_bin(name: &str) -> PathBuf {
    find_bin(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The `evergreen` binary under test.
pub fn evergreen_bin() -> PathBuf {
    workspace_bin("evergreen")
}

/// The test function binary.
pub fn eg_fn_bin() -> PathBuf {
    workspace_bin("eg-fn")
}

/// Runs `evergreen <args> --config <config>` to its end, with stdin closed: the CLI as a user
/// (or a script) runs it against a runtime.
pub fn evergreen_with(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(evergreen_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .expect("run evergreen")
}

/// A finished command's stdout then stderr, as text: what a test searches and shows.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether `program` is on `PATH` or in `/usr/sbin` (where Debian puts `mosquitto`).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "command -v {program} || test -x /usr/sbin/{program}"
        ))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `mosquitto` broker to run, or `None` with a loud note when it or its clients are
/// missing (`.ci/run` installs them).
pub fn mosquitto_or_skip() -> Option<PathBuf> {
    if !(have("mosquitto") && have("mosquitto_pub") && have("mosquitto_sub")) {
        eprintln!(
            "SKIPPED: mosquitto / mosquitto-clients are not installed (apt-get install mosquitto mosquitto-clients; .ci/run does)"
        );
        return None;
    }
    Some(if Path::new("/usr/sbin/mosquitto").exists() {
        PathBuf::from("/usr/sbin/mosquitto")
    } else {
        PathBuf::from("mosquitto")
    })
}

/// A qualified function ARN for the test account.
pub fn fn_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:1")
}

/// A pinned NoContainer function running `eg-fn` with `args`.
pub fn function(name: &str, args: &str) -> Value {
    json!({
        "Id": name,
        "FunctionArn": fn_arn(name),
        "FunctionConfiguration": {
            "Executable": eg_fn_bin(),
            "ExecArgs": args,
            "Pinned": true,
            "Timeout": 3,
            "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
        }
    })
}

/// A subscription.
pub fn sub(id: &str, source: &str, subject: &str, target: &str) -> Value {
    json!({ "Id": id, "Source": source, "Subject": subject, "Target": target })
}

/// A group file from functions, subscriptions and optional connectors.
pub fn group(functions: Vec<Value>, subscriptions: Vec<Value>) -> Value {
    json!({
        "FunctionDefinitionVersion": { "Functions": functions },
        "SubscriptionDefinitionVersion": { "Subscriptions": subscriptions },
        "LoggerDefinitionVersion": { "Loggers": [
            { "Id": "sys", "Component": "GreengrassSystem", "Level": "DEBUG", "Type": "FileSystem", "Space": 4096 },
            { "Id": "user", "Component": "Lambda", "Level": "DEBUG", "Type": "FileSystem", "Space": 4096 }
        ]}
    })
}

/// A core configuration tuned for tests: quick restarts and stops.
pub fn test_config(root: &Path) -> Value {
    json!({
        "coreThing": { "thingArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/test-core") },
        "evergreen": {
            "root": root,
            "readinessTimeoutMs": 5000,
            "shutdownGraceMs": 1000,
            "termGraceMs": 1000,
            "logToStderr": false,
            "restart": { "initialBackoffMs": 50, "maxBackoffMs": 400, "multiplier": 2.0, "jitter": 0.1, "resetAfterMs": 10000 }
        }
    })
}

/// Merges `patch` into `base`, object by object.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// A running `evergreen run`.
#[derive(Debug)]
pub struct Runtime {
    pub dir: tempfile::TempDir,
    pub child: Child,
}

impl Runtime {
    /// Writes `group` and a test configuration into a new temporary root and
    /// starts `evergreen run` on them.
    pub fn start(group: &Value) -> Runtime {
        Runtime::start_with(group, &json!({}))
    }

    /// Like [`Runtime::start`], with `evergreen` settings merged over the
    /// test configuration's (`{"restart": {...}, "components": {...}}`).
    pub fn start_with(group: &Value, evergreen: &Value) -> Runtime {
        Runtime::start_with_env(group, evergreen, &[])
    }

    /// Like [`Runtime::start_with`], with extra environment variables for
    /// the runtime (e.g. `NOTIFY_SOCKET`).
    pub fn start_with_env(
        group: &Value,
        evergreen: &Value,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Runtime {
        Runtime::start_config(group, &json!({ "evergreen": evergreen }), env)
    }

    /// Like [`Runtime::start`], with `patch` merged over the whole test
    /// configuration (`{"runtime": {...}, "evergreen": {...}}`).
    pub fn start_config(group: &Value, patch: &Value, env: &[(&str, &std::ffi::OsStr)]) -> Runtime {
        Runtime::start_config_in(tempfile::tempdir().expect("temp dir"), group, patch, env)
    }

    /// Like [`Runtime::start_config`], in a directory the test prepared
    /// (e.g. secrets put into `<dir>/root` first, see [`put_secret`]).
    pub fn start_config_in(
        dir: tempfile::TempDir,
        group: &Value,
        patch: &Value,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Runtime {
        Runtime::start_args_in(dir, group, patch, env, &[])
    }

    /// Like [`Runtime::start_config_in`], with more arguments for `evergreen run`.
    pub fn start_args_in(
        dir: tempfile::TempDir,
        group: &Value,
        patch: &Value,
        env: &[(&str, &std::ffi::OsStr)],
        args: &[&str],
    ) -> Runtime {
        let root = dir.path().join("root");
        let group_path = dir.path().join("group.json");
        let config_path = dir.path().join("config.json");
        let mut config = test_config(&root);
        merge(&mut config, patch);
        std::fs::write(&group_path, group.to_string()).expect("write group");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let child = Command::new(evergreen_bin())
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--group")
            .arg(&group_path)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start evergreen");
        Runtime { dir, child }
    }

    /// `<root>/run/mqtt-listeners.json`: where the runtime writes its MQTT listeners' addresses
    /// once its first deployment has given the server its devices.
    pub fn listeners_file(&self) -> PathBuf {
        self.dir.path().join("root/run/mqtt-listeners.json")
    }

    /// The port of the MQTT listener `which` (`"plain"` or `"tls"`), once the runtime has named
    /// it in its listeners file; waits at most `limit`.
    pub fn listener_port(&self, which: &str, limit: Duration) -> Option<u16> {
        let file = self.listeners_file();
        wait_for(limit, || {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
            doc[which].as_str()?.rsplit(':').next()?.parse().ok()
        })
    }

    /// A path inside the temporary directory (for record files).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `<root>/var/log/<relative>`.
    pub fn log_path(&self, relative: &str) -> PathBuf {
        self.dir.path().join("root/var/log").join(relative)
    }

    /// The log of test function `name`.
    pub fn function_log(&self, name: &str) -> PathBuf {
        self.log_path(&format!("user/{REGION}/{ACCOUNT}/{name}.log"))
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// Sends `sig` to the runtime and waits (bounded) for it to exit.
    pub fn stop_with(
        &mut self,
        sig: nix::sys::signal::Signal,
        limit: Duration,
    ) -> Option<ExitStatus> {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // A failed test must not leave a runtime behind. Stop it as an
        // operator would, so it cleans up after itself (container cgroups);
        // SIGKILL only if it does not stop within a few seconds.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts a secret value into the store of the runtime root `root` with the
/// CLI (`evergreen secrets put NAME --from-file F --root ROOT`), as an
/// operator would before starting the runtime. `Err` says why not (a build
/// without the secret store).
pub fn put_secret(root: &Path, name: &str, value: &[u8]) -> Result<(), String> {
    std::fs::create_dir_all(root).map_err(|e| format!("create {}: {e}", root.display()))?;
    let file = root.with_extension(format!("secret-{name}"));
    std::fs::write(&file, value).map_err(|e| format!("write {}: {e}", file.display()))?;
    let out = Command::new(evergreen_bin())
        .args(["secrets", "put", name, "--from-file"])
        .arg(&file)
        .arg("--root")
        .arg(root)
        .output()
        .map_err(|e| format!("cannot run evergreen secrets put: {e}"))?;
    let _ = std::fs::remove_file(&file);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "evergreen secrets put {name} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Polls `check` every 20 ms until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The records on `topic` in a recorder's file (`eg-fn record`), payloads parsed as JSON
/// (those that are not JSON are left out).
pub fn on_topic(file: &Path, topic: &str) -> Vec<serde_json::Value> {
    records(file)
        .into_iter()
        .filter(|r| r["topic"] == topic)
        .filter_map(|r| {
            r["payload"]
                .as_str()
                .and_then(|p| serde_json::from_str(p).ok())
        })
        .collect()
}

/// The JSON lines a `record` function wrote (empty if none yet).
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The text of a file, or empty.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Pids whose parent is `ppid`, from `/proc`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some((parent, _)) = stat(pid) {
            if parent == ppid {
                out.push(pid);
            }
        }
    }
    out
}

/// `(ppid, state)` of a process, from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(i32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Whether `pid` is running (a zombie waiting for its reaper counts as gone).
pub fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some((_, state)) if state != 'Z' && state != 'X')
}

/// A process's command line, arguments joined by spaces (empty if gone).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// A process's resident set size in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn vm_rss_kb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Prints the resident size of the runtime's child running `evergreen
/// connector <name>` (NoContainer), for the record; not an assertion.
pub fn print_connector_rss(rt: &Runtime, name: &str) {
    let needle = format!("connector {name}");
    // A contained connector runs under the container's waiter and its namespace's init.
    match children_of(rt.pid())
        .into_iter()
        .flat_map(|p| std::iter::once(p).chain(children_of(p)))
        .flat_map(|p| std::iter::once(p).chain(children_of(p)))
        .find(|pid| cmdline(*pid).contains(&needle))
    {
        Some(pid) => eprintln!(
            "{name} connector pid {pid}: VmRSS {} KiB",
            vm_rss_kb(pid).map_or("?".to_string(), |k| k.to_string())
        ),
        None => eprintln!("{name} connector not found among the runtime's children"),
    }
}

/// Why container mode (`GreengrassContainer`) cannot run here, or `None`:
/// it needs root and a host where `evergreen check --container` passes. Tests that need
/// it print the reason and skip.
pub fn containers_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    match Command::new(evergreen_bin())
        .args(["check", "--container"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`evergreen check --container` says container mode cannot run here:\n{}",
            String::from_utf8_lossy(&o.stdout)
        )),
        Err(e) => Some(format!("cannot run evergreen check: {e}")),
    }
}

/// Returns early from a test, loudly, when container mode cannot run here.
#[macro_export]
macro_rules! require_containers {
    () => {
        if let Some(why) = $crate::containers_unavailable() {
            eprintln!("SKIPPED: this test needs container mode (root and a capable kernel): {why}");
            return;
        }
    };
}

/// Asserts that `evergreen validate FILE [--config CONFIG]` accepts a group
/// file: the real validation, with the real connector manifests.
pub fn assert_valid_file(group_file: &Path, config: Option<&Path>) {
    let mut cmd = Command::new(evergreen_bin());
    cmd.arg("validate").arg(group_file);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.output().expect("run evergreen validate");
    assert!(
        out.status.success(),
        "validate {}: {}{}",
        group_file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `group` and a test configuration into `dir` and asserts that
/// `evergreen validate` accepts them.
pub fn assert_valid_group(dir: &Path, group: &Value) {
    let group_file = dir.join("group.json");
    let config_file = dir.join("config.json");
    std::fs::write(&group_file, group.to_string()).expect("write group");
    std::fs::write(&config_file, test_config(dir).to_string()).expect("write config");
    assert_valid_file(&group_file, Some(&config_file));
}

/// Where `.ci/run` installs greengrasssdk 1.6.1 (`pip install --target`).
pub const DEFAULT_GREENGRASSSDK: &str = "/var/cache/evergreen-tests/greengrasssdk-1.6.1";

/// The greengrasssdk 1.6.1 install the Python tests and bench vendor into
/// their functions (`EVERGREEN_GREENGRASSSDK`, else [`DEFAULT_GREENGRASSSDK`]),
/// or why Python functions cannot run here.
pub fn greengrasssdk() -> Result<PathBuf, String> {
    let dir = std::env::var_os("EVERGREEN_GREENGRASSSDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_GREENGRASSSDK));
    let python = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !python {
        return Err("python3 is not installed; Python functions cannot run".into());
    }
    if !dir.join("greengrasssdk/__init__.py").is_file() {
        return Err(format!(
            "greengrasssdk 1.6.1 is not installed in {} (pip install --target {} greengrasssdk==1.6.1, as .ci/run does)",
            dir.display(),
            dir.display()
        ));
    }
    Ok(dir)
}

/// [`greengrasssdk`] for a test: `None` after saying loudly why it skips.
pub fn greengrasssdk_or_skip() -> Option<PathBuf> {
    greengrasssdk()
        .map_err(|why| eprintln!("\n*** SKIPPED: {why} ***\n"))
        .ok()
}

/// Copies the `greengrasssdk` package from `sdk` into a function's code
/// directory, as V1 users vendor it (without `__pycache__`), with the ML SDK
/// stand-in beside it.
pub fn vendor_greengrasssdk(sdk: &Path, code_dir: &Path) -> std::io::Result<()> {
    fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            if entry.file_name() == "__pycache__" {
                continue;
            }
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy_tree(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), &target)?;
            }
        }
        Ok(())
    }
    copy_tree(&sdk.join("greengrasssdk"), &code_dir.join("greengrasssdk"))?;
    // V1's ML SDK, which users bundled the same way (the tests' stand-in,
    // tests/peers/greengrass_machine_learning_sdk: AWS never put it on PyPI).
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/greengrass_machine_learning_sdk"),
        &code_dir.join("greengrass_machine_learning_sdk"),
    )?;
    // The SDK's one dependency, which only its stream manager client imports:
    // `pip install -t` put `cbor2` (and its optional C extension) beside it, and
    // V1 users vendored it the same way.
    for entry in std::fs::read_dir(sdk)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".dist-info")
            || !(name.starts_with("cbor2") || name.starts_with("_cbor2"))
        {
            continue;
        }
        let target = code_dir.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Where `.ci/run` installs the npm `aws-greengrass-core-sdk` 1.7.0 (`npm install --prefix`).
pub const DEFAULT_NODE_SDK: &str = "/var/cache/evergreen-tests/aws-greengrass-core-sdk-1.7.0";

/// The directory whose `node_modules` holds aws-greengrass-core-sdk 1.7.0 (and its
/// dependencies), which the Node.js tests and bench copy into their functions
/// (`EVERGREEN_NODE_SDK`, else [`DEFAULT_NODE_SDK`]), or why Node.js functions cannot run here.
pub fn node_sdk() -> Result<PathBuf, String> {
    let dir = std::env::var_os("EVERGREEN_NODE_SDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_NODE_SDK));
    if !have("node") {
        return Err("node is not installed; Node.js functions cannot run".into());
    }
    let manifest = dir.join("node_modules/aws-greengrass-core-sdk/package.json");
    let version = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    if version.as_deref() != Some("1.7.0") {
        return Err(format!(
            "aws-greengrass-core-sdk 1.7.0 is not installed in {} (found {version:?}; npm install --prefix {} aws-greengrass-core-sdk@1.7.0, as .ci/run does)",
            dir.display(),
            dir.display()
        ));
    }
    Ok(dir)
}

/// [`node_sdk`] for a test: `None` after saying loudly why it skips.
pub fn node_sdk_or_skip() -> Option<PathBuf> {
    node_sdk()
        .map_err(|why| eprintln!("\n*** SKIPPED: {why} ***\n"))
        .ok()
}

/// Copies `sdk`'s `node_modules` into a function's code directory, as V1 users shipped the SDK.
pub fn vendor_node_sdk(sdk: &Path, code_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(code_dir)?;
    let status = Command::new("cp")
        .arg("-r")
        .arg(sdk.join("node_modules"))
        .arg(code_dir)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "cp -r {}/node_modules failed: {status}",
            sdk.display()
        )))
    }
}

/// A `moto_server` of a test's own (PyPI `moto[server]`, installed by
/// `.ci/run`): one process answers SNS, Firehose, CloudWatch, IoT Analytics
/// and Secrets Manager, routed by the SigV4 scope. It listens on a free
/// loopback port and is killed when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
}

/// Static test credentials moto accepts (it checks the shape, not the keys).
pub const MOTO_ACCESS_KEY: &str = "testing";
pub const MOTO_SECRET_KEY: &str = "testing";

impl Moto {
    /// Starts moto, or `None` after saying loudly why the test skips
    /// (`moto_server` is not installed, or never answered).
    pub fn start() -> Option<Moto> {
        if Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            eprintln!(
                "\n*** SKIPPED: moto_server is not installed \
                 (pip install 'moto[server]==5.2.1', as .ci/run does) ***\n"
            );
            return None;
        }
        // A port freed just before moto binds it can be taken by someone
        // else in between: moto then exits, and we try another one.
        for _ in 0..3 {
            let Some(port) = free_port() else { continue };
            let Ok(child) = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let mut moto = Moto { child, port };
            let up = wait_for(Duration::from_secs(30), || {
                if let Ok(Some(_)) = moto.child.try_wait() {
                    return Some(false);
                }
                http_request("GET", moto.port, "/moto-api/data.json", "", b"")
                    .ok()
                    .filter(|(status, _)| *status == 200)
                    .map(|_| true)
            });
            if up == Some(true) {
                return Some(moto);
            }
            let _ = moto.child.kill();
        }
        eprintln!("\n*** SKIPPED: moto_server did not answer on loopback within 30 s ***\n");
        None
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything moto holds, by service and resource type
    /// (`GET /moto-api/data.json`).
    pub fn data(&self) -> Value {
        http_request("GET", self.port, "/moto-api/data.json", "", b"")
            .ok()
            .and_then(|(_, body)| serde_json::from_slice(&body).ok())
            .unwrap_or(Value::Null)
    }

    /// Kills moto (everything it held is lost), keeping its port for
    /// [`Moto::restart`]: an outage of the AWS endpoint.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts moto again, empty, on the same port; false if it did not
    /// answer within 30 s.
    pub fn restart(&mut self) -> bool {
        let Ok(child) = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        self.child = child;
        wait_for(Duration::from_secs(30), || {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(false);
            }
            http_request("GET", self.port, "/moto-api/data.json", "", b"")
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(|_| true)
        }) == Some(true)
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let _ = http_request("POST", self.port, "/moto-api/reset", "", b"");
    }

    /// A core configuration patch (for [`Runtime::start_config`]) that
    /// points every AWS service of the runtime at this moto, with static
    /// test credentials.
    pub fn core_config(&self) -> Value {
        aws_core_config(&self.url())
    }
}

/// Runs `script` with Python and boto3, the independent S3 client of the tests, after a
/// prelude that makes `s3` a client of this moto (`sys.argv[1]` is its URL; `args` follow as
/// `sys.argv[2..]`). Panics, with Python's stderr, when the script fails.
pub fn boto3_s3(moto: &Moto, script: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let prelude = "import boto3, sys\n\
                   s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                   \x20   aws_access_key_id='testing', aws_secret_access_key='testing')\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .arg(moto.url())
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The core configuration patch that points every AWS service at `url`
/// with moto's static test credentials (`evergreen.aws`).
pub fn aws_core_config(url: &str) -> Value {
    json!({ "evergreen": { "aws": {
        "credentials": { "accessKeyId": MOTO_ACCESS_KEY, "secretAccessKey": MOTO_SECRET_KEY },
        "endpointUrl": url
    }}})
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A V1 Python function (`reader.handler`, pinned) that reads `want` messages of stream
/// `stream` through the real greengrasssdk `StreamManagerClient` as they arrive (the stream
/// may not exist yet), for at most `seconds`, then publishes them on `sm/read` as
/// `{"phase":"read","got":[{"seq","entry"}]}` (`entry`: the message's JSON payload), or
/// `{"phase":"error","error","got"}`. Its code directory goes under `root` (see
/// [`python_package`]).
pub fn stream_reader_package(
    root: &Path,
    sdk: &Path,
    stream: &str,
    want: usize,
    seconds: u64,
) -> PathBuf {
    let code = STREAM_READER
        .replace("%WANT%", &want.to_string())
        .replace("%STREAM%", stream)
        .replace("%SECONDS%", &seconds.to_string());
    python_package(root, "reader", sdk, &[("reader.py", &code)])
}

const STREAM_READER: &str = r#"
import json
import threading
import time

import greengrasssdk
from greengrasssdk.stream_manager import (
    NotEnoughMessagesException, ReadMessagesOptions, ResourceNotFoundException, StreamManagerClient,
)

iot = greengrasssdk.client('iot-data')


def run():
    got = []
    try:
        client = StreamManagerClient()
        deadline = time.time() + %SECONDS%
        while len(got) < %WANT% and time.time() < deadline:
            try:
                msgs = client.read_messages('%STREAM%', ReadMessagesOptions(
                    desired_start_sequence_number=len(got), min_message_count=1,
                    max_message_count=%WANT% - len(got), read_timeout_millis=1000))
            except (ResourceNotFoundException, NotEnoughMessagesException):
                time.sleep(0.1)
                continue
            for m in msgs:
                got.append({'seq': m.sequence_number, 'entry': json.loads(m.payload.decode())})
        iot.publish(topic='sm/read', payload=json.dumps({'phase': 'read', 'got': got}))
    except Exception as e:  # noqa: BLE001 - the test reads the reason
        iot.publish(topic='sm/read', payload=json.dumps({'phase': 'error', 'error': type(e).__name__ + ': ' + str(e), 'got': got}))


threading.Thread(target=run).start()


def handler(event, context):
    return
"#;

/// A V1 Python function's code directory, `root/functions/<name>`: greengrasssdk vendored from
/// `sdk` (as V1 users zipped it with their code) and `files` (name, text) written beside it.
pub fn python_package(root: &Path, name: &str, sdk: &Path, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.join("functions").join(name);
    vendor_greengrasssdk(sdk, &dir).expect("vendor greengrasssdk");
    for (file, text) in files {
        std::fs::write(dir.join(file), text).expect("write function file");
    }
    dir
}

/// A NoContainer `python3.8` function of a group, JSON encoded: `Executable` is the handler
/// (`module.function`) in `code`.
pub fn python_function(
    name: &str,
    code: &Path,
    handler: &str,
    pinned: bool,
    timeout: u64,
) -> serde_json::Value {
    serde_json::json!({
        "Id": name,
        "FunctionArn": fn_arn(name),
        "FunctionConfiguration": {
            "Executable": handler,
            "CodeUri": code,
            "Runtime": "python3.8",
            "Pinned": pinned,
            "Timeout": timeout,
            "EncodingType": "json",
            "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
        }
    })
}

/// Greengrass's `GGStreamManager` system function, which turns the stream manager on, on
/// `port` (`STREAM_MANAGER_SERVER_PORT`), as a V1 group lists it.
pub fn stream_manager_function(port: u16) -> serde_json::Value {
    serde_json::json!({
        "Id": "stream-manager",
        "FunctionArn": "arn:aws:lambda:::function:GGStreamManager:1",
        "FunctionConfiguration": {
            "MemorySize": 4194304,
            "Pinned": true,
            "Timeout": 3,
            "Environment": { "Variables": { "STREAM_MANAGER_SERVER_PORT": port.to_string() } }
        }
    })
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}

/// One HTTP/1.1 request to `127.0.0.1:port` (std only, 10 s bound): the
/// status and body. For the test peers' control APIs, not for AWS calls.
pub fn http_request(
    method: &str,
    port: u16,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok((status, body))
}

pub(crate) fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}
