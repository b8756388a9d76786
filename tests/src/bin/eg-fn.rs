//! `eg-fn`: the user function the end-to-end tests deploy, one behaviour per mode.
//!
//! Written on the child-side SDK exactly as a user's function would be, except
//! for the modes whose point is to misbehave. Modes (the group's `ExecArgs`):
//!
//! - `publish <topic> <count> <interval_ms>`: after Ready, publish `count`
//!   messages `{"seq":N}` on `topic`, then idle until stopped.
//! - `record <file>`: append every delivery to `file` as a JSON line
//!   `{"topic":…,"source":…,"payload":…}`.
//! - `echo <prefix>`: republish every delivery on `<prefix>/<topic>`.
//! - `garbage <delay_ms>`: after Ready, write bytes that are not a frame to stdout.
//! - `exit <delay_ms> <code>`: after Ready, exit with `code`.
//! - `refused-probe <topic> <file>`: publish on `topic` bypassing the SDK's
//!   own check, and record the supervisor's `Refused` answer in `file`.
//! - `sleeper`: spawn a `sleep 600` grandchild, then behave like `record /dev/null`.
//! - `stall`: complete the handshake but never say `Ready`.
//! - `slow <ms> <file>`: take `ms` to handle each delivery, recording it in `file` first.
//! - `probe <topic> <host_file> <granted_dev> <other_dev>`: after Ready,
//!   publish on `topic` what the process can see of its sandbox: its pid,
//!   the pids in `/proc`, its hostname, capabilities and ids, whether
//!   `host_file` can be read, whether `granted_dev` can be opened for
//!   writing (it writes `probe-hello\n` to it), whether `other_dev` can be
//!   opened, and whether `/` is writable. For the container tests.
//! - `escape <topic>`: after Ready, try each way out of a container that issue 18 lists and
//!   publish on `topic` how each ended (`"ok"` or `"error: …"`): writing back the current
//!   value of `kernel.core_pattern` and `vm.overcommit_memory` (so a success changes nothing),
//!   opening `/proc/sysrq-trigger` for writing (nothing is written), reading `/proc/kcore`,
//!   writing `/proc/self/oom_score_adj`, `unshare` of a user and of a mount namespace and
//!   `clone` with `CLONE_NEWUSER` (each in a forked child), `mount` of a tmpfs, and `keyctl`.
//! - `hog <mb_per_10ms>`: after Ready, allocate and touch memory without
//!   end (stops at 4 GiB), to be OOM-killed at its cgroup limit.
//! - `caps <topic>`: after Ready, publish on `topic` its uid and the five capability sets of
//!   `/proc/self/status` (`CapEff`, `CapPrm`, `CapInh`, `CapBnd`, `CapAmb`).
//! - `chatty <count> <delay_ms>`: `delay_ms` after Ready, write `count` lines
//!   `chatty line <n>` to stderr as fast as the runtime takes them, then idle.
//! - `feed <file>`: follow `file` (which need not exist yet) and publish each
//!   complete line `{"topic":…,"payload":…}` on its topic: a string payload
//!   is sent as its bytes, any other JSON value as its JSON text. Lets a test
//!   publish chosen messages at chosen moments through a real function.
//! - `secret <id> <stage> <file>`: after Ready, ask the supervisor for
//!   secret `<id>` (a name or an ARN) at version stage `<stage>` (`-` for
//!   the default), and again at every delivery (a delivery whose payload is
//!   a non-empty string asks for that id instead); append each answer to
//!   `file` as a JSON line: `{"id":…,"ok":{"ARN","Name","VersionId",
//!   "SecretString","SecretBinaryHex","VersionStages","CreatedDate"}}` or
//!   `{"id":…,"error":…}`.
//! - `shadow <file>`: for every delivery whose payload is JSON
//!   `{"thing":…,"op":"get|update|delete","payload":…}`, ask the local
//!   shadow service over the IPC (`Handle::shadow`; a string `payload` is
//!   sent as its bytes, any other JSON value as its JSON text, none as
//!   empty) and append the answer to `file` as a JSON line
//!   `{"thing":…,"op":…,"accepted":…,"payload":…}` (the payload parsed when
//!   it is JSON, else a string), or `{"error":…}` when the request could not
//!   be made or the delivery is not such a request.
//! - `serve <name> <timeout_ms>`: serve invokes of `arn:aws:lambda:<region>:aws:function:<name>`
//!   (`Handle::serve`), as V1's ML connectors do, and answer each: a payload `fail` with the
//!   Function error `Handled` and the message `asked to fail`; `hang` never; `invoke <arn>`
//!   by invoking `<arn>` itself (`Handle::invoke`) and answering with what came back as the
//!   `Body` `{"function_error":…,"payload":…}` or `{"error":…}`; anything else with
//!   `{"Body":<the payload as text>,"ContentType":"application/json","caller":…,
//!   "context":<the client context as JSON, or null>}` (V1's ML SDK reads `Body`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use evergreen_ipc::codec::{FrameReader, DEFAULT_MAX_FRAME};
use evergreen_ipc::link::{child_handshake, ChildLink};
use evergreen_ipc::sdk::{Component, Event};
use evergreen_ipc::{ShadowOp, ToChild};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["publish", topic, count, interval] => publish(topic, parse(count), parse(interval)).await,
        ["record", file] => record(file).await,
        ["echo", prefix] => echo(prefix).await,
        ["garbage", delay] => garbage(parse(delay)).await,
        ["exit", delay, code] => return exit_after(parse(delay), parse(code)).await,
        ["refused-probe", topic, file] => refused_probe(topic, file).await,
        ["sleeper"] => sleeper().await,
        ["stall"] => stall().await,
        ["slow", ms, file] => slow(parse(ms), file).await,
        ["feed", file] => feed(file).await,
        ["probe", topic, host_file, granted, other] => {
            probe(topic, host_file, granted, other).await
        }
        ["hog", mb] => hog(parse(mb)).await,
        ["caps", topic] => capabilities(topic).await,
        ["chatty", count, delay] => chatty(parse(count), parse(delay)).await,
        ["escape", topic] => escape(topic).await,
        ["secret", id, stage, file] => secret(id, stage, file).await,
        ["shadow", file] => shadow(file).await,
        ["serve", name, timeout_ms] => serve(name, timeout_ms).await,
        _ => {
            eprintln!("eg-fn: unknown mode {args:?}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eg-fn: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(s: &str) -> u64 {
    s.parse().unwrap_or(0)
}

/// Waits for shutdown (or the end of the link), ignoring deliveries.
async fn idle(component: &mut Component) {
    while let Some(event) = component.next_event().await {
        if matches!(event, Event::Shutdown { .. }) {
            return;
        }
    }
}

async fn publish(
    topic: &str,
    count: u64,
    interval_ms: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    component.ready().await?;
    for seq in 0..count {
        handle.publish(topic, format!("{{\"seq\":{seq}}}")).await?;
        if interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        }
    }
    handle.info(format!("published {count} messages on {topic}"));
    idle(&mut component).await;
    Ok(())
}

async fn record(file: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| format!("cannot open {file}: {e}"))?;
    component.ready().await?;
    handle.info(format!("recording to {file}"));
    while let Some(event) = component.next_event().await {
        match event {
            Event::Message(m) => {
                let line = serde_json::json!({
                    "topic": m.topic,
                    "source": m.source,
                    "payload": String::from_utf8_lossy(&m.payload),
                });
                // One write per line so a reader never sees half a record.
                let _ = out.write_all(format!("{line}\n").as_bytes());
            }
            Event::Shutdown { .. } => break,
            // Only a component that serves a function name gets invokes.
            Event::Invoke(_) => {}
            Event::Refused { .. } => {}
        }
    }
    Ok(())
}

async fn echo(prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    component.ready().await?;
    while let Some(event) = component.next_event().await {
        match event {
            Event::Message(m) => {
                handle
                    .publish(format!("{prefix}/{}", m.topic), m.payload)
                    .await?
            }
            Event::Shutdown { .. } => break,
            // Only a component that serves a function name gets invokes.
            Event::Invoke(_) => {}
            Event::Refused { .. } => {}
        }
    }
    Ok(())
}

async fn garbage(delay_ms: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    component.ready().await?;
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    eprintln!("eg-fn: writing garbage to stdout now");
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(b"this is not a frame\n");
    let _ = stdout.flush();
    idle(&mut component).await;
    Ok(())
}

async fn exit_after(delay_ms: u64, code: u64) -> ExitCode {
    let Ok(mut component) = Component::connect().await else {
        return ExitCode::FAILURE;
    };
    if component.ready().await.is_err() {
        return ExitCode::FAILURE;
    }
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    eprintln!("eg-fn: exiting with {code} on purpose");
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn refused_probe(topic: &str, file: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut reader = FrameReader::new(evergreen_ipc::pipe::stdin()?, DEFAULT_MAX_FRAME);
    let mut link = ChildLink::new(evergreen_ipc::pipe::stdout()?, DEFAULT_MAX_FRAME);
    child_handshake(&mut reader, &mut link).await?;
    link.ready().await?;
    link.publish(topic.to_string(), b"{}".to_vec()).await?;
    link.flush().await?;
    while let Some(msg) = reader.read_frame::<ToChild>().await? {
        match msg {
            ToChild::Refused { topic, reason } => {
                let line = serde_json::json!({ "refused": topic, "reason": reason });
                let _ = std::fs::write(file, format!("{line}\n"));
            }
            ToChild::Shutdown { .. } => break,
            _ => {}
        }
    }
    Ok(())
}

async fn sleeper() -> Result<(), Box<dyn std::error::Error>> {
    // A grandchild in the function's process group: stopping the function
    // must take it too.
    let child = std::process::Command::new("sleep").arg("600").spawn();
    if let Ok(child) = &child {
        eprintln!("eg-fn: grandchild pid {}", child.id());
    }
    let mut component = Component::connect().await?;
    component.ready().await?;
    idle(&mut component).await;
    Ok(())
}

async fn stall() -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    eprintln!("eg-fn: connected, never going to be ready");
    idle(&mut component).await;
    Ok(())
}

async fn slow(ms: u64, file: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    component.ready().await?;
    while let Some(event) = component.next_event().await {
        match event {
            Event::Message(m) => {
                let line =
                    serde_json::json!({ "topic": m.topic, "source": m.source, "payload": "" });
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Event::Shutdown { .. } => break,
            // Only a component that serves a function name gets invokes.
            Event::Invoke(_) => {}
            Event::Refused { .. } => {}
        }
    }
    Ok(())
}

async fn feed(file: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    component.ready().await?;
    handle.info(format!("feeding from {file}"));
    let file = file.to_string();
    let publisher = handle.clone();
    let follower = tokio::spawn(async move {
        let mut done = 0usize;
        loop {
            // Bounded by the function's life: it ends when the runtime stops it.
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let complete = text.rfind('\n').map_or(0, |i| i + 1);
            if complete > done {
                for line in text[done..complete]
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                {
                    match serde_json::from_str::<serde_json::Value>(line) {
                        Ok(v) => {
                            let topic = v["topic"].as_str().unwrap_or_default().to_string();
                            let payload = match &v["payload"] {
                                serde_json::Value::String(s) => s.clone().into_bytes(),
                                other => other.to_string().into_bytes(),
                            };
                            if let Err(e) = publisher.publish(topic, payload).await {
                                eprintln!("eg-fn: feed publish failed: {e}");
                            }
                        }
                        Err(e) => eprintln!("eg-fn: feed line is not JSON ({e}): {line}"),
                    }
                }
                done = complete;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    idle(&mut component).await;
    follower.abort();
    Ok(())
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

async fn probe(
    topic: &str,
    host_file: &str,
    granted: &str,
    other: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    component.ready().await?;
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let outcome = |r: std::io::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    let granted_result = outcome(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(granted)
            .and_then(|mut f| f.write_all(b"probe-hello\n")),
    );
    let other_result = outcome(
        std::fs::OpenOptions::new()
            .read(true)
            .open(other)
            .map(|_| ()),
    );
    let report = serde_json::json!({
        "pid": std::process::id(),
        "pids": pids,
        "hostname": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
        "cap_eff": status_field(&status, "CapEff:"),
        "cap_prm": status_field(&status, "CapPrm:"),
        "cap_bnd": status_field(&status, "CapBnd:"),
        "no_new_privs": status_field(&status, "NoNewPrivs:"),
        "uid": status_field(&status, "Uid:"),
        "gid": status_field(&status, "Gid:"),
        "groups": status_field(&status, "Groups:"),
        "host_file": outcome(std::fs::read(host_file).map(|_| ())),
        "granted_device": granted_result,
        "other_device": other_result,
        "root_write": outcome(std::fs::write("/probe-was-here", b"x")),
        "tmp_write": outcome(std::fs::write("/tmp/probe-was-here", b"x")),
    });
    handle.publish(topic, report.to_string()).await?;
    idle(&mut component).await;
    Ok(())
}

/// Once ready and `delay_ms` later, writes `count` lines (`chatty line <n>`) to stderr as fast
/// as the runtime reads them (a component logging at full speed), then idles.
async fn chatty(count: u64, delay_ms: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    component.ready().await?;
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let mut stderr = std::io::stderr().lock();
    for n in 0..count {
        // One write per line: each becomes one log line.
        stderr.write_all(format!("chatty line {n:07}\n").as_bytes())?;
    }
    drop(stderr);
    idle(&mut component).await;
    Ok(())
}

/// Publishes its uid and its five capability sets as `/proc/self/status` shows them.
async fn capabilities(topic: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    component.ready().await?;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let report = serde_json::json!({
        "uid": status_field(&status, "Uid:"),
        "CapEff": status_field(&status, "CapEff:"),
        "CapPrm": status_field(&status, "CapPrm:"),
        "CapInh": status_field(&status, "CapInh:"),
        "CapBnd": status_field(&status, "CapBnd:"),
        "CapAmb": status_field(&status, "CapAmb:"),
    });
    handle.publish(topic, report.to_string()).await?;
    idle(&mut component).await;
    Ok(())
}

fn outcome(r: std::io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    }
}

/// Writes the current content of a `/proc/sys` file back into it: a success changes nothing.
fn write_back(path: &str) -> String {
    outcome(std::fs::read(path).and_then(|now| std::fs::write(path, now)))
}

/// Runs `attempt` in a forked child (a namespace change must not touch this process) and
/// reports how it ended: the child exits 0 on success, else with the errno.
fn in_child(attempt: fn() -> libc::c_long) -> String {
    // SAFETY: the child only makes the system call of `attempt` and `_exit`s; the parent
    // waits for it. No lock or allocation in the child.
    match unsafe { libc::fork() } {
        -1 => format!("error: fork: {}", std::io::Error::last_os_error()),
        0 => {
            let r = attempt();
            let code = if r < 0 {
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(255)
            } else {
                0
            };
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(code) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for the child just forked; status is a valid int.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
                Some(0) => "ok".into(),
                Some(errno) => format!("error: {}", std::io::Error::from_raw_os_error(errno)),
                None => format!("error: the child ended with status {status}"),
            }
        }
    }
}

fn unshare_user() -> libc::c_long {
    // SAFETY: integer flags only; runs in a child about to exit.
    libc::c_long::from(unsafe { libc::unshare(libc::CLONE_NEWUSER) })
}

fn unshare_mount() -> libc::c_long {
    // SAFETY: integer flags only; runs in a child about to exit.
    libc::c_long::from(unsafe { libc::unshare(libc::CLONE_NEWNS) })
}

fn clone_newuser() -> libc::c_long {
    let flags = libc::c_long::from(libc::CLONE_NEWUSER | libc::SIGCHLD);
    // SAFETY: a fork-like clone (no new stack, no shared memory): the new process returns
    // 0 here and exits at once.
    let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
    if r == 0 {
        // SAFETY: ends the cloned process at once.
        unsafe { libc::_exit(0) }
    }
    r
}

fn mount_tmpfs() -> libc::c_long {
    // SAFETY: valid C strings and a null data pointer; runs in a child about to exit.
    libc::c_long::from(unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/tmp".as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    })
}

/// `KEYCTL_GET_KEYRING_ID` of the session keyring, creating it.
fn keyctl_session() -> libc::c_long {
    // SAFETY: integer arguments only; runs in a child about to exit.
    unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 1) }
}

async fn escape(topic: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    component.ready().await?;
    let kcore = std::fs::File::open("/proc/kcore").and_then(|mut f| {
        let mut buf = [0u8; 16];
        match std::io::Read::read(&mut f, &mut buf)? {
            0 => Err(std::io::Error::other("read nothing (masked)")),
            _ => Ok(()),
        }
    });
    let report = serde_json::json!({
        "uid": status_field(&std::fs::read_to_string("/proc/self/status").unwrap_or_default(), "Uid:"),
        "core_pattern": write_back("/proc/sys/kernel/core_pattern"),
        "overcommit_memory": write_back("/proc/sys/vm/overcommit_memory"),
        "sysrq_trigger": outcome(std::fs::OpenOptions::new().write(true).open("/proc/sysrq-trigger").map(|_| ())),
        "kcore": outcome(kcore),
        "oom_score_adj": write_back("/proc/self/oom_score_adj"),
        "unshare_user": in_child(unshare_user),
        "unshare_mount": in_child(unshare_mount),
        "clone_newuser": in_child(clone_newuser),
        "mount": in_child(mount_tmpfs),
        "keyctl": in_child(keyctl_session),
    });
    handle.publish(topic, report.to_string()).await?;
    idle(&mut component).await;
    Ok(())
}

async fn hog(mb_per_step: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    component.ready().await?;
    handle.info("allocating until the memory limit stops me");
    let step = usize::try_from(mb_per_step.max(1)).unwrap_or(1) << 20;
    let mut held: Vec<Vec<u8>> = Vec::new();
    // Bounded: 4 GiB without a limit, then idle.
    while held.len() * step < 4 << 30 {
        // Touching every page makes the memory resident (charged to the cgroup).
        held.push(vec![0x5a; step]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    idle(&mut component).await;
    Ok(())
}

async fn secret(id: &str, stage: &str, file: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| format!("cannot open {file}: {e}"))?;
    component.ready().await?;
    let stage = (stage != "-").then(|| stage.to_string());
    let ask = |id: String| {
        let handle = handle.clone();
        let stage = stage.clone();
        async move {
            let line = match handle.get_secret(id.clone(), stage).await {
                Ok(v) => serde_json::json!({"id": id, "ok": {
                    "ARN": v.arn,
                    "Name": v.name,
                    "VersionId": v.version_id,
                    "SecretString": v.secret_string,
                    "SecretBinaryHex": v.secret_binary.map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
                    "VersionStages": v.version_stages,
                    "CreatedDate": v.created_date_ms,
                }}),
                Err(e) => serde_json::json!({"id": id, "error": e.to_string()}),
            };
            line
        }
    };
    let first = ask(id.to_string()).await;
    writeln!(out, "{first}")?;
    while let Some(event) = component.next_event().await {
        match event {
            Event::Message(m) => {
                let asked = String::from_utf8(m.payload)
                    .ok()
                    .filter(|s| !s.is_empty() && !s.starts_with('{'))
                    .unwrap_or_else(|| id.to_string());
                let line = ask(asked).await;
                writeln!(out, "{line}")?;
            }
            Event::Shutdown { .. } => break,
            // Only a component that serves a function name gets invokes.
            Event::Invoke(_) => {}
            Event::Refused { .. } => {}
        }
    }
    Ok(())
}

async fn shadow(file: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| format!("cannot open {file}: {e}"))?;
    component.ready().await?;
    while let Some(event) = component.next_event().await {
        match event {
            Event::Message(m) => {
                let line = match shadow_ask(&m.payload) {
                    Err(why) => serde_json::json!({ "error": why }),
                    Ok((thing, op, payload)) => {
                        match handle.shadow(thing.clone(), op, payload).await {
                            Ok(reply) => {
                                let payload =
                                    serde_json::from_slice::<serde_json::Value>(&reply.payload)
                                        .unwrap_or_else(|_| {
                                            String::from_utf8_lossy(&reply.payload).into()
                                        });
                                serde_json::json!({
                                    "thing": thing,
                                    "op": op.as_str(),
                                    "accepted": reply.accepted,
                                    "payload": payload,
                                })
                            }
                            Err(e) => serde_json::json!({ "thing": thing, "error": e.to_string() }),
                        }
                    }
                };
                writeln!(out, "{line}")?;
            }
            Event::Shutdown { .. } => break,
            // Only a component that serves a function name gets invokes.
            Event::Invoke(_) => {}
            Event::Refused { .. } => {}
        }
    }
    Ok(())
}

async fn serve(name: &str, timeout_ms: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut component = Component::connect().await?;
    let handle = component.handle();
    let timeout = Duration::from_millis(timeout_ms.parse()?);
    handle.serve(name, timeout).await?;
    component.ready().await?;
    while let Some(event) = component.next_event().await {
        match event {
            Event::Invoke(call) => {
                let text = String::from_utf8_lossy(&call.payload).into_owned();
                let outcome = if text == "fail" {
                    evergreen_ipc::InvokeOutcome::handled("asked to fail")
                } else if text == "hang" {
                    continue;
                } else if let Some(arn) = text.strip_prefix("invoke ") {
                    let got = handle
                        .invoke(
                            arn,
                            br#"{"custom":{"from":"eg-fn"}}"#.to_vec(),
                            b"\"hi\"".to_vec(),
                            timeout,
                        )
                        .await;
                    let answer = match got {
                        Ok(o) => serde_json::json!({
                            "function_error": o.function_error,
                            "payload": String::from_utf8_lossy(&o.payload),
                        }),
                        Err(e) => serde_json::json!({ "error": e.to_string() }),
                    };
                    evergreen_ipc::InvokeOutcome::ok(
                        serde_json::json!({ "Body": answer.to_string(), "ContentType": "application/json" })
                            .to_string(),
                    )
                } else {
                    let context = serde_json::from_slice::<serde_json::Value>(&call.client_context)
                        .unwrap_or(serde_json::Value::Null);
                    evergreen_ipc::InvokeOutcome::ok(
                        serde_json::json!({
                            "Body": text,
                            "ContentType": "application/json",
                            "caller": call.caller,
                            "context": context,
                        })
                        .to_string(),
                    )
                };
                handle.answer(&call.invocation_id, outcome).await?;
            }
            Event::Shutdown { .. } => break,
            Event::Message(_) | Event::Refused { .. } => {}
        }
    }
    Ok(())
}

/// Reads a `shadow` mode request from a delivery's payload.
fn shadow_ask(payload: &[u8]) -> Result<(String, ShadowOp, Vec<u8>), String> {
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let thing = v["thing"]
        .as_str()
        .ok_or("\"thing\" is not a string")?
        .to_string();
    let op = match v["op"].as_str() {
        Some("get") => ShadowOp::Get,
        Some("update") => ShadowOp::Update,
        Some("delete") => ShadowOp::Delete,
        other => return Err(format!("\"op\" is {other:?}, not get, update or delete")),
    };
    let payload = match &v["payload"] {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    Ok((thing, op, payload))
}
