//! Per-component cgroups: cgroup v1 and v2 behind one [`CgroupManager`] trait.
//!
//! Which one is used is decided by what is mounted ([`Cgroups::detect`] reads
//! `/proc/self/mountinfo`): a v1 `memory` hierarchy wins, because on hybrid
//! systems (like the machines this was written on) the v2 mount carries no
//! memory controller; otherwise a v2 mount whose `cgroup.controllers` lists
//! `memory`. Every path is a parameter, so the unit tests run both variants
//! against fixture directories.
//!
//! Layout. One runtime owns `<hierarchy>/evergreen/<instance>/`, where the
//! instance is `rt-` plus 8 hex digits of the SHA-256 of the runtime root: two
//! runtimes on one host (or two test runs) never touch each other's cgroups,
//! and a runtime restarted on the same root finds and removes what its
//! predecessor left after a `kill -9` ([`CgroupManager::clean_stale`]). Each
//! component child gets `<instance>/<name>`, created before its exec (the child
//! joins it first thing after fork, so nothing it runs escapes the limit) and
//! removed after it exits.
//!
//! What is limited: memory (`MemorySize`; swap is held at the same limit on v1
//! when the kernel accounts it, and at 0 on v2, so the limit cannot be evaded
//! by swapping), the number of tasks (`pids`), and on v1 the devices
//! controller: everything is denied except the few nodes every program needs
//! and the device resources the component was granted. cgroup v2 has no
//! devices file (it needs an eBPF program); there the container's `/dev`,
//! which holds only the granted nodes, and the lack of `CAP_MKNOD` do the job.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The directory under each hierarchy that Evergreen owns.
pub(crate) const BASE: &str = "evergreen";

/// How long removing a cgroup waits for its last processes to be reaped.
const REMOVE_WAIT: Duration = Duration::from_secs(2);

/// The cgroup hierarchy in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// A device node a component may use, for the v1 devices controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    /// `'c'` or `'b'`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub write: bool,
}

impl DeviceRule {
    fn line(&self) -> String {
        let access = if self.write { "rwm" } else { "rm" };
        format!("{} {}:{} {access}", self.kind, self.major, self.minor)
    }
}

/// The device nodes every container gets (see the container's `/dev`).
pub(crate) const BASIC_DEVICES: &[(u64, u64)] = &[
    (1, 3), // null
    (1, 5), // zero
    (1, 7), // full
    (1, 8), // random
    (1, 9), // urandom
    (5, 0), // tty
];

/// What one component's cgroup enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub memory_bytes: Option<u64>,
    pub pids_max: Option<u64>,
    /// Granted device resources; the basic nodes are always allowed.
    pub devices: Vec<DeviceRule>,
}

/// A cgroup operation that failed, with the file it was on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    #[error("cgroup {path}: {step}: {source}")]
    Io {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    #[error("no usable cgroup hierarchy: {0}")]
    Unavailable(String),
}

fn io_err<'a>(path: &'a Path, step: &'static str) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        step,
        source,
    }
}

/// The operations the sandbox needs, whatever the hierarchy.
pub(crate) trait CgroupManager: fmt::Debug + Send + Sync {
    /// Creates `<instance>/<name>` in every hierarchy used and writes the
    /// limits. A leftover of the same name is removed first.
    fn create(&self, name: &str, limits: &Limits) -> Result<ComponentCgroup, CgroupError>;

    /// Kills what is left in this runtime's cgroups (a previous run that was
    /// killed) and removes them. Returns how many were removed.
    fn clean_stale(&self) -> Result<usize, CgroupError>;
}

/// One component child's cgroup, in one or several hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ComponentCgroup {
    pub version: CgroupVersion,
    /// Every directory created, memory first.
    pub dirs: Vec<PathBuf>,
}

impl ComponentCgroup {
    /// The `cgroup.procs` files the child writes `0` into to join.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The memory cgroup directory.
    pub(crate) fn memory_dir(&self) -> Option<&Path> {
        self.dirs.first().map(PathBuf::as_path)
    }

    /// How many times the kernel's OOM killer acted in this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        let Some(dir) = self.memory_dir() else {
            return 0;
        };
        let file = match self.version {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| keyed_value(&text, "oom_kill"))
            .unwrap_or(0)
    }

    /// The memory limit as the kernel holds it, in bytes (`None` = no limit).
    #[cfg(test)]
    pub(crate) fn memory_limit(&self) -> Option<u64> {
        let dir = self.memory_dir()?;
        let file = match self.version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        };
        fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
    }

    /// Kills anything still inside and removes the directories. Waits (bounded)
    /// for the kernel to release exited tasks, which it does asynchronously.
    pub(crate) fn remove(&self) -> Result<(), CgroupError> {
        for dir in self.dirs.iter().rev() {
            remove_cgroup_dir(dir)?;
        }
        Ok(())
    }
}

/// Removes one cgroup directory and any child cgroups, killing what is left
/// in them.
fn remove_cgroup_dir(dir: &Path) -> Result<(), CgroupError> {
    if !dir.exists() {
        return Ok(());
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_dir(&entry.path())?;
            }
        }
    }
    let deadline = Instant::now() + REMOVE_WAIT;
    loop {
        for pid in procs(dir) {
            // The processes are our own leftovers; SIGKILL cannot be refused.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                // EBUSY while exiting tasks are still being released.
                let _ = e;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(io_err(dir, "remove")(e)),
        }
    }
}

fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `key N` from a flat keyed file such as `memory.events`.
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(key))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

fn write(path: &Path, value: &str, step: &'static str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err(path, step))
}

fn make_dir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(path, "create")(e)),
    }
}

/// The per-runtime directory name under [`BASE`].
pub(crate) fn instance_name(runtime_root: &Path) -> String {
    let digest = Sha256::digest(runtime_root.as_os_str().as_encoded_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("rt-{hex}")
}

/// The directory name of a component's instance: its `Id` made safe as a
/// directory name, then the runtime-wide instance number that keeps two
/// instances of one component apart.
pub(crate) fn cgroup_name(id: &str, instance: u64) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{safe}.{instance}")
}

/// cgroup v1: one directory per controller hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct CgroupV1 {
    /// `<memory mount>/evergreen/<instance>`.
    pub memory: PathBuf,
    pub pids: Option<PathBuf>,
    pub devices: Option<PathBuf>,
}

impl CgroupManager for CgroupV1 {
    fn create(&self, name: &str, limits: &Limits) -> Result<ComponentCgroup, CgroupError> {
        let mut dirs = Vec::new();
        for base in [
            Some(&self.memory),
            self.pids.as_ref(),
            self.devices.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            prepare_base(base)?;
            let dir = base.join(name);
            remove_cgroup_dir(&dir)?;
            make_dir(&dir)?;
            dirs.push(dir);
        }
        let cg = ComponentCgroup {
            version: CgroupVersion::V1,
            dirs,
        };
        let memory = self.memory.join(name);
        if let Some(bytes) = limits.memory_bytes {
            write(
                &memory.join("memory.limit_in_bytes"),
                &bytes.to_string(),
                "set memory limit",
            )?;
            // Only present when the kernel accounts swap; the limit must be
            // raised after memory.limit_in_bytes, never below it.
            let memsw = memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &bytes.to_string(), "set memory+swap limit")?;
            }
        }
        if let (Some(base), Some(max)) = (&self.pids, limits.pids_max) {
            write(
                &base.join(name).join("pids.max"),
                &max.to_string(),
                "set pids limit",
            )?;
        }
        if let Some(base) = &self.devices {
            let dir = base.join(name);
            write(&dir.join("devices.deny"), "a", "deny all devices")?;
            let allow = dir.join("devices.allow");
            for (major, minor) in BASIC_DEVICES {
                let rule = DeviceRule {
                    kind: 'c',
                    major: *major,
                    minor: *minor,
                    write: true,
                };
                write(&allow, &rule.line(), "allow a basic device")?;
            }
            for rule in &limits.devices {
                write(&allow, &rule.line(), "allow a granted device")?;
            }
        }
        Ok(cg)
    }

    fn clean_stale(&self) -> Result<usize, CgroupError> {
        let mut removed = 0;
        for base in [
            Some(&self.memory),
            self.pids.as_ref(),
            self.devices.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            removed += clean_children(base)?;
        }
        Ok(removed)
    }
}

/// cgroup v2: one unified directory.
#[derive(Debug, Clone)]
pub(crate) struct CgroupV2 {
    /// The cgroup2 mount point.
    pub mount: PathBuf,
    /// `<mount>/evergreen/<instance>`.
    pub base: PathBuf,
}

impl CgroupV2 {
    /// Enables the memory and pids controllers for the children of every
    /// directory from the mount down to the instance, so component cgroups
    /// (leaves, the only ones holding processes) get them.
    fn enable_controllers(&self) -> Result<(), CgroupError> {
        prepare_base(&self.base)?;
        let mut dir = self.mount.clone();
        let relative = self.base.strip_prefix(&self.mount).unwrap_or(Path::new(""));
        let mut chain = vec![dir.clone()];
        for part in relative.components() {
            dir.push(part);
            chain.push(dir.clone());
        }
        for dir in chain {
            let control = dir.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control).unwrap_or_default();
            for controller in ["memory", "pids"] {
                if !enabled.split_whitespace().any(|c| c == controller) {
                    write(&control, &format!("+{controller}"), "enable controller")?;
                }
            }
        }
        Ok(())
    }
}

impl CgroupManager for CgroupV2 {
    fn create(&self, name: &str, limits: &Limits) -> Result<ComponentCgroup, CgroupError> {
        self.enable_controllers()?;
        let dir = self.base.join(name);
        remove_cgroup_dir(&dir)?;
        make_dir(&dir)?;
        if let Some(bytes) = limits.memory_bytes {
            write(
                &dir.join("memory.max"),
                &bytes.to_string(),
                "set memory limit",
            )?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0", "disable swap")?;
            }
        }
        if let Some(max) = limits.pids_max {
            write(&dir.join("pids.max"), &max.to_string(), "set pids limit")?;
        }
        Ok(ComponentCgroup {
            version: CgroupVersion::V2,
            dirs: vec![dir],
        })
    }

    fn clean_stale(&self) -> Result<usize, CgroupError> {
        clean_children(&self.base)
    }
}

fn prepare_base(base: &Path) -> Result<(), CgroupError> {
    if let Some(parent) = base.parent() {
        make_dir(parent)?;
    }
    make_dir(base)
}

fn clean_children(base: &Path) -> Result<usize, CgroupError> {
    let Ok(entries) = fs::read_dir(base) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_dir(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The hierarchy chosen for this host, dispatching to its variant.
#[derive(Debug, Clone)]
pub(crate) enum Cgroups {
    V1(CgroupV1),
    V2(CgroupV2),
}

impl CgroupManager for Cgroups {
    fn create(&self, name: &str, limits: &Limits) -> Result<ComponentCgroup, CgroupError> {
        match self {
            Cgroups::V1(v) => v.create(name, limits),
            Cgroups::V2(v) => v.create(name, limits),
        }
    }

    fn clean_stale(&self) -> Result<usize, CgroupError> {
        match self {
            Cgroups::V1(v) => v.clean_stale(),
            Cgroups::V2(v) => v.clean_stale(),
        }
    }
}

impl Cgroups {
    /// Removes this runtime's instance directories when they are empty (at
    /// a clean stop, after every component's own cgroup is gone). One that
    /// still holds a component's cgroup is left for the next start.
    pub(crate) fn remove_instance(&self) {
        let bases: Vec<&PathBuf> = match self {
            Cgroups::V1(v) => [Some(&v.memory), v.pids.as_ref(), v.devices.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
            Cgroups::V2(v) => vec![&v.base],
        };
        for base in bases {
            let _ = fs::remove_dir(base);
        }
    }
}

/// A cgroup file system found in `mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    pub mount_point: PathBuf,
    pub version: CgroupVersion,
    /// v1: the controllers of this hierarchy (from the super options);
    /// v2: empty (read `cgroup.controllers`).
    pub controllers: Vec<String>,
}

/// The cgroup mounts listed in a `/proc/<pid>/mountinfo` text.
pub(crate) fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        // `id parent major:minor root mount-point options [optional...] - fstype source super-options`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split_whitespace().nth(4) else {
            continue;
        };
        let mut right = right.split_whitespace();
        let (Some(fstype), _source, super_options) = (right.next(), right.next(), right.next())
        else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mount(mount_point));
        match fstype {
            "cgroup" => mounts.push(CgroupMount {
                mount_point,
                version: CgroupVersion::V1,
                controllers: super_options
                    .unwrap_or("")
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                    .map(str::to_string)
                    .collect(),
            }),
            "cgroup2" => mounts.push(CgroupMount {
                mount_point,
                version: CgroupVersion::V2,
                controllers: Vec::new(),
            }),
            _ => {}
        }
    }
    mounts
}

/// mountinfo escapes spaces and a few other bytes as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(value) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The controllers a v2 mount offers (`cgroup.controllers` of its root).
pub(crate) fn v2_controllers(mount_point: &Path) -> Vec<String> {
    fs::read_to_string(mount_point.join("cgroup.controllers"))
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

impl Cgroups {
    /// Chooses the hierarchy from `mountinfo` text, for the runtime whose
    /// root is `runtime_root`. The error says what is missing.
    pub(crate) fn detect(mountinfo: &str, runtime_root: &Path) -> Result<Cgroups, CgroupError> {
        let mounts = cgroup_mounts(mountinfo);
        let instance = instance_name(runtime_root);
        let v1 = |controller: &str| {
            mounts
                .iter()
                .find(|m| {
                    m.version == CgroupVersion::V1 && m.controllers.iter().any(|c| c == controller)
                })
                .map(|m| m.mount_point.join(BASE).join(&instance))
        };
        if let Some(memory) = v1("memory") {
            return Ok(Cgroups::V1(CgroupV1 {
                memory,
                pids: v1("pids"),
                devices: v1("devices"),
            }));
        }
        if let Some(m) = mounts.iter().find(|m| m.version == CgroupVersion::V2) {
            if v2_controllers(&m.mount_point).iter().any(|c| c == "memory") {
                return Ok(Cgroups::V2(CgroupV2 {
                    mount: m.mount_point.clone(),
                    base: m.mount_point.join(BASE).join(&instance),
                }));
            }
        }
        Err(CgroupError::Unavailable(if mounts.is_empty() {
            "no cgroup file system is mounted".into()
        } else {
            "neither a cgroup v1 memory hierarchy nor a cgroup v2 mount with the memory controller is mounted".into()
        }))
    }

    /// Detection on this host.
    pub(crate) fn detect_host(runtime_root: &Path) -> Result<Cgroups, CgroupError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_err(Path::new("/proc/self/mountinfo"), "read"))?;
        Cgroups::detect(&mountinfo, runtime_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,devices
";

    fn v2_mountinfo(mount: &Path) -> String {
        format!(
            "30 23 0:26 / {} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
            mount.display()
        )
    }

    #[test]
    fn mountinfo_lists_v1_controllers_and_v2() {
        let mounts = cgroup_mounts(HYBRID);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[0].version, CgroupVersion::V2);
        let cpu = &mounts[3];
        assert_eq!(cpu.mount_point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(cpu.controllers, vec!["cpu", "cpuacct"]);
    }

    #[test]
    fn hybrid_hosts_use_v1_under_a_per_runtime_directory() {
        let cg = Cgroups::detect(HYBRID, Path::new("/var/lib/evergreen")).expect("v1");
        let Cgroups::V1(v1) = cg else {
            panic!("expected v1")
        };
        let instance = instance_name(Path::new("/var/lib/evergreen"));
        assert!(instance.starts_with("rt-") && instance.len() == 11);
        assert_eq!(
            v1.memory,
            PathBuf::from("/sys/fs/cgroup/memory/evergreen").join(&instance)
        );
        assert_eq!(
            v1.devices,
            Some(PathBuf::from("/sys/fs/cgroup/devices/evergreen").join(&instance))
        );
        assert_ne!(instance, instance_name(Path::new("/tmp/other-root")));
    }

    #[test]
    fn no_memory_controller_is_a_clear_error() {
        let only_cpu = "35 30 0:31 / /c rw - cgroup cgroup rw,cpu\n";
        let err = Cgroups::detect(only_cpu, Path::new("/r")).expect_err("unavailable");
        assert!(err.to_string().contains("memory"), "{err}");
        let err = Cgroups::detect("", Path::new("/r")).expect_err("unavailable");
        assert!(err.to_string().contains("no cgroup"), "{err}");
    }

    #[test]
    fn v1_writes_limits_and_device_rules() {
        let tmp = tempfile::tempdir().expect("tmp");
        let v1 = CgroupV1 {
            memory: tmp.path().join("memory/evergreen/rt-1"),
            pids: Some(tmp.path().join("pids/evergreen/rt-1")),
            devices: Some(tmp.path().join("devices/evergreen/rt-1")),
        };
        for c in ["memory", "pids", "devices"] {
            fs::create_dir_all(tmp.path().join(c)).expect("fixture");
        }
        let limits = Limits {
            memory_bytes: Some(16 * 1024 * 1024),
            pids_max: Some(64),
            devices: vec![DeviceRule {
                kind: 'c',
                major: 136,
                minor: 4,
                write: false,
            }],
        };
        let cg = v1.create("modbus.1", &limits).expect("create");
        assert_eq!(cg.dirs.len(), 3);
        let mem = tmp.path().join("memory/evergreen/rt-1/modbus.1");
        assert_eq!(cg.memory_dir(), Some(mem.as_path()));
        assert_eq!(
            fs::read_to_string(mem.join("memory.limit_in_bytes")).expect("limit"),
            "16777216"
        );
        assert_eq!(cg.memory_limit(), Some(16_777_216));
        let pids = tmp.path().join("pids/evergreen/rt-1/modbus.1/pids.max");
        assert_eq!(fs::read_to_string(pids).expect("pids"), "64");
        let dev = tmp.path().join("devices/evergreen/rt-1/modbus.1");
        assert_eq!(
            fs::read_to_string(dev.join("devices.deny")).expect("deny"),
            "a"
        );
        // A fixture file keeps only the last write; the real file takes one
        // rule per write, and the granted device is written last.
        assert_eq!(
            fs::read_to_string(dev.join("devices.allow")).expect("allow"),
            "c 136:4 rm"
        );
        assert_eq!(
            cg.procs_files()[0],
            mem.join("cgroup.procs"),
            "the memory hierarchy is joined first"
        );
    }

    #[test]
    fn v2_enables_controllers_down_to_the_leaf_and_disables_swap() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mount = tmp.path().join("cg2");
        fs::create_dir_all(&mount).expect("fixture");
        fs::write(mount.join("cgroup.controllers"), "cpu io memory pids\n").expect("fixture");
        let cg = Cgroups::detect(&v2_mountinfo(&mount), Path::new("/root-a")).expect("v2");
        let Cgroups::V2(v2) = &cg else {
            panic!("expected v2")
        };
        assert!(v2.base.starts_with(mount.join("evergreen")));
        // A fixture has no memory.swap.max unless the kernel would offer it.
        fs::create_dir_all(v2.base.join("fn.3")).expect("fixture");
        fs::write(v2.base.join("fn.3/memory.swap.max"), "max").expect("fixture");
        let made = cg
            .create(
                "fn.3",
                &Limits {
                    memory_bytes: Some(1 << 20),
                    pids_max: Some(10),
                    devices: Vec::new(),
                },
            )
            .expect_err("a fixture directory with a file in it cannot be replaced");
        // The leftover of the same name is removed first; a plain directory
        // holding a file cannot be, which is the error seen here.
        assert!(made.to_string().contains("remove"), "{made}");
        fs::remove_file(v2.base.join("fn.3/memory.swap.max")).expect("fixture");
        let made = cg
            .create(
                "fn.3",
                &Limits {
                    memory_bytes: Some(1 << 20),
                    pids_max: Some(10),
                    devices: Vec::new(),
                },
            )
            .expect("create");
        assert_eq!(made.version, CgroupVersion::V2);
        let leaf = v2.base.join("fn.3");
        assert_eq!(
            fs::read_to_string(leaf.join("memory.max")).expect("max"),
            "1048576"
        );
        assert_eq!(
            fs::read_to_string(leaf.join("pids.max")).expect("pids"),
            "10"
        );
        for dir in [mount.clone(), mount.join("evergreen"), v2.base.clone()] {
            let text = fs::read_to_string(dir.join("cgroup.subtree_control")).expect("control");
            // Each controller is enabled by its own write; the fixture keeps the last.
            assert_eq!(text, "+pids", "{}", dir.display());
        }
    }

    #[test]
    fn oom_kills_are_read_from_either_hierarchy() {
        let tmp = tempfile::tempdir().expect("tmp");
        fs::write(
            tmp.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .expect("fixture");
        fs::write(
            tmp.path().join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        )
        .expect("fixture");
        let v1 = ComponentCgroup {
            version: CgroupVersion::V1,
            dirs: vec![tmp.path().to_path_buf()],
        };
        let v2 = ComponentCgroup {
            version: CgroupVersion::V2,
            dirs: vec![tmp.path().to_path_buf()],
        };
        assert_eq!(v1.oom_kills(), 2);
        assert_eq!(v2.oom_kills(), 1);
    }

    #[test]
    fn names_are_safe_directory_names() {
        assert_eq!(cgroup_name("my fn/../x", 7), "my_fn____x.7");
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
    }
}
