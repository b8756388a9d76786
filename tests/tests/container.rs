//! Container mode end to end: namespaces, root, capabilities, devices, cgroups, OOM and cleanup.
//!
//! Needs root and a host where `evergreen check` passes; otherwise every test
//! here says why on stderr and returns without asserting (CI runs as root on
//! a host that passes). The device tests also need `socat`, which `.ci/run`
//! installs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evergreen_tests::{require_containers, *};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
/// `nobody` on Debian; any unprivileged id works.
const NOBODY: u32 = 65534;

/// A `socat` pty pair; killed on drop.
struct PtyPair {
    child: Child,
    /// The real `/dev/pts/N` of each end.
    a: PathBuf,
    b: PathBuf,
}

impl PtyPair {
    fn open(dir: &Path, name: &str) -> Option<PtyPair> {
        let a_link = dir.join(format!("{name}-a"));
        let b_link = dir.join(format!("{name}-b"));
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a_link.display()))
            .arg(format!("pty,raw,echo=0,link={}", b_link.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let ends = wait_for(Duration::from_secs(5), || {
            Some((
                std::fs::canonicalize(&a_link).ok()?,
                std::fs::canonicalize(&b_link).ok()?,
            ))
        });
        let mut pair = PtyPair {
            child,
            a: PathBuf::new(),
            b: PathBuf::new(),
        };
        let (a, b) = ends?;
        pair.a = a;
        pair.b = b;
        Some(pair)
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn container_function(name: &str, args: &str, memory_kb: u64, run_as: Option<u32>) -> Value {
    let mut f = function(name, args);
    let cfg = &mut f["FunctionConfiguration"];
    cfg["MemorySize"] = json!(memory_kb);
    cfg["Environment"]["Execution"]["IsolationMode"] = json!("GreengrassContainer");
    if let Some(id) = run_as {
        cfg["Environment"]["Execution"]["RunAs"] = json!({ "Uid": id, "Gid": id });
    }
    f
}

/// The memory cgroup directory of the component whose command line
/// contains `needle`: a great-grandchild of the runtime, under the
/// container's waiter and the namespace's init (both forks of the runtime,
/// so their command line is the runtime's).
fn memory_cgroup_of(runtime: i32, needle: &str) -> Option<PathBuf> {
    let pid = children_of(runtime)
        .into_iter()
        .flat_map(children_of)
        .flat_map(children_of)
        .find(|p| cmdline(*p).contains(needle))?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    })?;
    Some(PathBuf::from("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/')))
}

#[test]
fn a_container_function_sees_only_its_sandbox() {
    require_containers!();
    let scratch = tempfile::tempdir().expect("tmp");
    let Some(granted) = PtyPair::open(scratch.path(), "granted") else {
        eprintln!("SKIPPED: socat is not installed (apt-get install socat)");
        return;
    };
    let Some(other) = PtyPair::open(scratch.path(), "other") else {
        eprintln!("SKIPPED: socat could not open a second pty pair");
        return;
    };
    // socat makes its ptys 0620 root:tty; the probe runs as nobody with the
    // device's group added (AutoAddGroupOwner), so the group needs read too.
    let chmod = Command::new("chmod").arg("0660").arg(&granted.a).status();
    assert!(chmod.is_ok_and(|s| s.success()), "chmod the granted pty");
    // The other pty is open to everyone by its mode: only the sandbox can
    // keep the probe out.
    let chmod = Command::new("chmod").arg("0666").arg(&other.a).status();
    assert!(chmod.is_ok_and(|s| s.success()), "chmod the other pty");
    let host_file = scratch.path().join("host-secret.txt");
    std::fs::write(&host_file, "not for containers").expect("host file");

    let record = scratch.path().join("probe.jsonl");
    let mut g = group(
        vec![
            container_function(
                "probe",
                &format!(
                    "probe probe/report {} {} {}",
                    host_file.display(),
                    granted.a.display(),
                    other.a.display()
                ),
                65536,
                Some(NOBODY),
            ),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![sub(
            "report",
            &fn_arn("probe"),
            "probe/report",
            &fn_arn("rec"),
        )],
    );
    g["FunctionDefinitionVersion"]["Functions"][0]["FunctionConfiguration"]["Environment"]
        ["ResourceAccessPolicies"] = json!([{ "ResourceId": "tty", "Permission": "rw" }]);
    g["ResourceDefinitionVersion"] = json!({ "Resources": [{
        "Id": "tty", "Name": "TestSerial",
        "ResourceDataContainer": { "LocalDeviceResourceData": {
            "SourcePath": granted.a,
            "GroupOwnerSetting": { "AutoAddGroupOwner": true }
        }}
    }]});
    let mut rt = Runtime::start(&g);

    // The probe writes to its granted device; read it at the other end.
    let mut peer = std::fs::File::open(&granted.b).expect("open peer end");
    let report =
        wait_for(LIMIT, || records(&record).into_iter().next()).expect("the probe reported");
    let report: Value =
        serde_json::from_str(report["payload"].as_str().expect("payload")).expect("json");
    eprintln!("probe report: {report:#}");

    assert_eq!(
        report["pid"], 2,
        "PID 2 of its own PID namespace, under the namespace's init"
    );
    assert_eq!(
        report["pids"],
        json!([1, 2]),
        "sees its init and itself, no host process"
    );
    assert_eq!(report["hostname"], "probe", "its own hostname");
    let host = report["host_file"].as_str().unwrap_or_default();
    assert!(host.contains("No such file"), "host file invisible: {host}");
    for caps in ["cap_eff", "cap_prm", "cap_bnd"] {
        assert_eq!(report[caps], "0000000000000000", "{caps}: no capabilities");
    }
    assert_eq!(report["no_new_privs"], "1");
    assert!(
        report["uid"]
            .as_str()
            .unwrap_or_default()
            .starts_with("65534"),
        "runs as RunAs uid: {}",
        report["uid"]
    );
    let tty_gid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&granted.a).expect("pty").gid()
    };
    assert!(
        report["groups"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .any(|g| g == tty_gid.to_string()),
        "AutoAddGroupOwner adds the device's group {tty_gid}: {}",
        report["groups"]
    );
    assert_eq!(report["granted_device"], "ok", "granted device is usable");
    let other_dev = report["other_device"].as_str().unwrap_or_default();
    assert!(
        other_dev.starts_with("error"),
        "ungranted device: {other_dev}"
    );
    if Path::new("/sys/fs/cgroup/devices").is_dir() {
        // cgroup v1: ptys share the bound devpts directory, so the other pty
        // is visible, and the devices controller is what refuses it.
        assert!(
            other_dev.contains("Operation not permitted"),
            "the devices controller refuses the ungranted pty: {other_dev}"
        );
    }
    let root_write = report["root_write"].as_str().unwrap_or_default();
    assert!(
        root_write.contains("Read-only"),
        "root is read-only: {root_write}"
    );
    assert_eq!(report["tmp_write"], "ok", "/tmp is writable");

    // What the probe wrote reached the host's other end of the pty.
    let mut buf = [0u8; 64];
    let n = peer.read(&mut buf).expect("read the peer end");
    assert_eq!(&buf[..n], b"probe-hello\n");

    // The memory limit is set on its cgroup, as MemorySize says.
    let cgroup = memory_cgroup_of(rt.pid(), "probe probe/report").expect("probe's memory cgroup");
    let limit = std::fs::read_to_string(cgroup.join("memory.limit_in_bytes")).expect("limit");
    assert_eq!(limit.trim(), (65536u64 * 1024).to_string());
    // The devices controller allows the granted pty and not the other one.
    let devices_dir = PathBuf::from(
        cgroup
            .to_string_lossy()
            .replace("/sys/fs/cgroup/memory", "/sys/fs/cgroup/devices"),
    );
    let list = std::fs::read_to_string(devices_dir.join("devices.list")).unwrap_or_default();
    let rdev = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        let r = std::fs::metadata(p).expect("dev").rdev();
        format!("c {}:{} ", libc::major(r), libc::minor(r))
    };
    assert!(
        list.contains(&rdev(&granted.a)),
        "granted pty allowed: {list}"
    );
    assert!(
        !list.contains(&rdev(&other.a)),
        "other pty not allowed: {list}"
    );

    // A clean stop removes the cgroup and the mount point.
    let status = rt.stop_with(Signal::SIGTERM, LIMIT).expect("runtime stops");
    assert!(status.success());
    assert!(!cgroup.exists(), "cgroup {} removed", cgroup.display());
    let instance = cgroup.parent().expect("instance directory");
    assert!(
        !instance.exists(),
        "the runtime's cgroup directory {} removed",
        instance.display()
    );
    let containers = rt.dir.path().join("root/containers");
    let left: Vec<_> = std::fs::read_dir(&containers)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no mount points left: {left:?}");
}

#[test]
fn a_container_over_its_memory_limit_is_killed_reported_and_restarted() {
    require_containers!();
    let scratch = tempfile::tempdir().expect("tmp");
    let record = scratch.path().join("beats.jsonl");
    let g = group(
        vec![
            container_function("hog", "hog 4", 32768, Some(NOBODY)),
            function("beat", "publish beat/x 1000 20"),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![sub("beats", &fn_arn("beat"), "beat/x", &fn_arn("rec"))],
    );
    let mut rt = Runtime::start(&g);
    let log = rt.function_log("hog");
    let killed = wait_for(LIMIT, || {
        let text = read(&log);
        text.contains("memory limit exceeded (MemorySize 32768 KB)")
            .then_some(text)
    })
    .expect("the OOM kill is reported in the component's log");
    // Restarted by policy (always): a second generation starts.
    wait_for(LIMIT, || {
        read(&log).contains("(generation 2)").then_some(())
    })
    .unwrap_or_else(|| panic!("restarted after the OOM kill:\n{killed}"));
    // The runtime and the other components carry on.
    assert!(alive(rt.pid()), "the supervisor is unaffected");
    let before = records(&record).len();
    wait_for(LIMIT, || (records(&record).len() > before).then_some(()))
        .expect("other components keep working");
    let status = rt.stop_with(Signal::SIGTERM, LIMIT).expect("runtime stops");
    assert!(status.success());
}

/// A runtime with the container function `probe` (as nobody, 16 MiB) reporting to the
/// NoContainer recorder `rec`, once the probe's first report has arrived; and the directory of
/// the recorder's file.
fn start_probe() -> (tempfile::TempDir, Runtime) {
    let scratch = tempfile::tempdir().expect("tmp");
    let record = scratch.path().join("probe.jsonl");
    let g = group(
        vec![
            container_function(
                "probe",
                "probe probe/report /nonexistent /dev/null /dev/null",
                16384,
                Some(NOBODY),
            ),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![sub(
            "report",
            &fn_arn("probe"),
            "probe/report",
            &fn_arn("rec"),
        )],
    );
    let rt = Runtime::start(&g);
    wait_for(LIMIT, || records(&record).into_iter().next()).expect("the probe started");
    (scratch, rt)
}

/// Resident kB of a process's brk heap (`[heap]` in its smaps), if it has one.
fn heap_rss_kb(pid: i32) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut in_heap = false;
    for line in smaps.lines() {
        if line.ends_with("[heap]") {
            in_heap = true;
        } else if in_heap {
            if let Some(rest) = line.strip_prefix("Rss:") {
                return rest.split_whitespace().next()?.parse().ok();
            }
        }
    }
    None
}

/// The waiter and init are forks of the runtime and share its heap copy-on-write; as the
/// runtime writes its heap they would come to hold all of it, per container component
/// (issue 16's footprint: about 2 MB each). They give their copy back once their loops run.
#[test]
fn the_waiter_and_init_give_back_their_copy_of_the_runtimes_heap() {
    require_containers!();
    let (_scratch, mut rt) = start_probe();
    let runtime_heap = heap_rss_kb(rt.pid()).expect("the runtime has a brk heap");
    assert!(
        runtime_heap >= 256,
        "the runtime's heap is resident ({runtime_heap} kB), so a fork would share it"
    );
    let waiter_and_init: Vec<i32> = children_of(rt.pid())
        .into_iter()
        .filter(|w| {
            children_of(*w)
                .into_iter()
                .flat_map(children_of)
                .any(|c| cmdline(c).contains("probe probe/report"))
        })
        .flat_map(|w| std::iter::once(w).chain(children_of(w)))
        .collect();
    assert_eq!(waiter_and_init.len(), 2, "{waiter_and_init:?}");
    for pid in waiter_and_init {
        let heap = heap_rss_kb(pid).expect("the fork keeps the heap's mapping");
        assert!(
            heap <= 16,
            "process {pid} ({}) still holds {heap} kB of the runtime's heap",
            cmdline(pid)
        );
    }
    let status = rt.stop_with(Signal::SIGTERM, LIMIT).expect("runtime stops");
    assert!(status.success());
}

#[test]
fn kill_9_of_the_runtime_leaves_nothing_running_and_a_restart_cleans_up() {
    require_containers!();
    let (_scratch, mut rt) = start_probe();
    let cgroup = memory_cgroup_of(rt.pid(), "probe probe/report").expect("probe's memory cgroup");
    let procs = |dir: &Path| -> Vec<i32> {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    };
    let inside = procs(&cgroup);
    assert_eq!(
        inside.len(),
        3,
        "the waiter, the namespace's init and the component: {inside:?}"
    );

    rt.stop_with(Signal::SIGKILL, LIMIT)
        .expect("runtime killed");
    // The parent-death chain takes the container down with the runtime.
    wait_for(LIMIT, || inside.iter().all(|p| !alive(*p)).then_some(()))
        .unwrap_or_else(|| panic!("container processes {inside:?} outlived the runtime"));
    assert!(cgroup.exists(), "an empty cgroup is all a kill -9 leaves");

    // A runtime on the same root removes its predecessor's leftovers.
    let root = rt.dir.path().join("root");
    let config = rt.dir.path().join("config.json");
    let quiet = rt.dir.path().join("quiet.json");
    std::fs::write(&quiet, group(vec![], vec![]).to_string()).expect("group");
    let mut again = Command::new(evergreen_bin())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--group")
        .arg(&quiet)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("restart evergreen");
    // Both leftovers go at start; wait for both (the cgroup may go first) before stopping it.
    let leftovers = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(root.join("containers"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let cleaned = wait_for(LIMIT, || (!cgroup.exists()).then_some(()));
    let unmounted = wait_for(LIMIT, || leftovers().is_empty().then_some(()));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(again.id()).expect("pid")),
        Signal::SIGTERM,
    );
    let _ = again.wait();
    assert!(
        cleaned.is_some(),
        "stale cgroup {} removed at start",
        cgroup.display()
    );
    assert!(
        unmounted.is_some(),
        "stale mount points removed: {:?}",
        leftovers()
    );
}
