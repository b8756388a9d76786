//! Can this host run Greengrass container mode? The dependency checker: the container section
//! of `evergreen check` (the rest of that health check is the CLI's) and `check --container`.
//!
//! Like Greengrass's `check_ggc_dependencies`, it reports the kernel version,
//! each namespace, the cgroup hierarchy and its controllers, `no_new_privs`,
//! overlay support and the privileges the runtime has, and ends with a plain
//! verdict. The verdict is also what the runtime uses: [`container_support`]
//! is asked during validation, and a group that needs container mode on a
//! host that cannot provide it is refused with the reason. Nothing ever runs
//! without the isolation its group asked for.
//!
//! Every file read takes its root as a parameter ([`HostPaths`]), so the
//! report logic is unit-tested against fixture trees; the one live probe
//! (a forked child that creates the namespaces and mounts a tmpfs) runs only
//! on the real host.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::sandbox::cgroup::{cgroup_mounts, v2_controllers, CgroupVersion};

/// Lowest kernel version Greengrass supports for container mode.
pub(crate) const MIN_KERNEL: (u32, u32) = (4, 4);

/// Where the checks read from.
#[derive(Debug, Clone)]
pub(crate) struct HostPaths {
    /// Usually `/proc`.
    pub proc: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: PathBuf::from("/proc"),
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub what: String,
    pub ok: bool,
    pub detail: String,
    /// Whether container mode needs it.
    pub required: bool,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// `None` when container mode can run; otherwise every reason it cannot.
    pub fn blockers(&self) -> Option<String> {
        let missing: Vec<String> = self
            .findings
            .iter()
            .filter(|f| f.required && !f.ok)
            .map(|f| format!("{}: {}", f.what, f.detail))
            .collect();
        (!missing.is_empty()).then(|| missing.join("; "))
    }

    /// The text `evergreen check` prints.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let mark = match (f.ok, f.required) {
                (true, _) => "ok     ",
                (false, true) => "MISSING",
                (false, false) => "absent ",
            };
            let _ = writeln!(out, "{mark} {:<28} {}", f.what, f.detail);
        }
        match self.blockers() {
            None => out.push_str(
                "\nContainer mode (GreengrassContainer) can run on this host. NoContainer can too.\n",
            ),
            Some(why) => {
                let _ = write!(
                    out,
                    "\nContainer mode (GreengrassContainer) CANNOT run on this host: {why}.\n\
                     Groups whose functions or connectors need it are refused; NoContainer still works.\n"
                );
            }
        }
        out
    }
}

fn finding(what: &str, ok: bool, detail: impl Into<String>, required: bool) -> Finding {
    Finding {
        what: what.to_string(),
        ok,
        detail: detail.into(),
        required,
    }
}

/// `major.minor` from a kernel release string such as `6.1.0-18-arm64`.
pub(crate) fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The checks that read files only (no privileges needed, fixture-testable).
pub(crate) fn static_findings(paths: &HostPaths) -> Vec<Finding> {
    let mut out = Vec::new();
    let release =
        std::fs::read_to_string(paths.proc.join("sys/kernel/osrelease")).unwrap_or_default();
    match kernel_version(&release) {
        Some(v) => out.push(finding(
            "kernel",
            v >= MIN_KERNEL,
            format!(
                "{} (container mode needs {}.{} or newer)",
                release.trim(),
                MIN_KERNEL.0,
                MIN_KERNEL.1
            ),
            true,
        )),
        None => out.push(finding("kernel", false, "version unknown", true)),
    }
    for (ns, required) in [
        ("mnt", true),
        ("pid", true),
        ("ipc", true),
        ("uts", true),
        ("user", false),
        ("net", false),
    ] {
        let present = paths.proc.join("self/ns").join(ns).exists();
        out.push(finding(
            &format!("{ns} namespace"),
            present,
            if present {
                "available"
            } else {
                "not in this kernel"
            },
            required,
        ));
    }
    let mountinfo = std::fs::read_to_string(paths.proc.join("self/mountinfo")).unwrap_or_default();
    let mounts = cgroup_mounts(&mountinfo);
    let v1: Vec<&str> = mounts
        .iter()
        .filter(|m| m.version == CgroupVersion::V1)
        .flat_map(|m| m.controllers.iter().map(String::as_str))
        .collect();
    let v2 = mounts.iter().find(|m| m.version == CgroupVersion::V2);
    let v2_list = v2
        .map(|m| v2_controllers(&m.mount_point))
        .unwrap_or_default();
    let v1_memory = v1.contains(&"memory");
    let version = if v1_memory {
        Some(CgroupVersion::V1)
    } else if v2_list.iter().any(|c| c == "memory") {
        Some(CgroupVersion::V2)
    } else {
        None
    };
    out.push(finding(
        "cgroups",
        version.is_some(),
        match version {
            Some(CgroupVersion::V1) => format!("v1 in use; controllers: {}", v1.join(" ")),
            Some(CgroupVersion::V2) => format!(
                "v2 at {}; controllers: {}",
                v2.map(|m| m.mount_point.display().to_string())
                    .unwrap_or_default(),
                v2_list.join(" ")
            ),
            None => "no hierarchy with the memory controller is mounted".to_string(),
        },
        true,
    ));
    let has = |c: &str| match version {
        Some(CgroupVersion::V1) => v1.contains(&c),
        Some(CgroupVersion::V2) => v2_list.iter().any(|x| x == c),
        None => false,
    };
    out.push(finding(
        "memory controller",
        has("memory"),
        if has("memory") {
            "limits MemorySize"
        } else {
            "missing"
        },
        true,
    ));
    out.push(finding(
        "pids controller",
        has("pids"),
        if has("pids") {
            "limits tasks per component"
        } else {
            "missing: no task limit"
        },
        false,
    ));
    let devices = match version {
        Some(CgroupVersion::V1) => (
            v1.contains(&"devices"),
            "allow-lists granted device nodes".to_string(),
        ),
        Some(CgroupVersion::V2) => (
            true,
            "v2 has no devices file: the container's /dev holds only granted nodes".to_string(),
        ),
        None => (false, "missing".to_string()),
    };
    out.push(finding("devices controller", devices.0, devices.1, false));
    let filesystems = std::fs::read_to_string(paths.proc.join("filesystems")).unwrap_or_default();
    let fs_has = |name: &str| {
        filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some(name))
    };
    out.push(finding(
        "tmpfs",
        fs_has("tmpfs"),
        "the container root",
        true,
    ));
    out.push(finding(
        "overlay",
        fs_has("overlay"),
        "not needed: Evergreen's root is a tmpfs with read-only bind mounts",
        false,
    ));
    let status = std::fs::read_to_string(paths.proc.join("self/status")).unwrap_or_default();
    let nnp = status.lines().any(|l| l.starts_with("NoNewPrivs:"));
    out.push(finding(
        "no_new_privs",
        nnp,
        if nnp {
            "supported"
        } else {
            "not reported by this kernel"
        },
        true,
    ));
    // The jail installs its seccomp filter on every architecture it has one for, and a
    // container does not start without it: a kernel without filters cannot run containers.
    let seccomp = status.lines().any(|l| l.starts_with("Seccomp:"));
    let filter = super::jail::seccomp::SUPPORTED;
    out.push(finding(
        "seccomp",
        seccomp && filter,
        match (filter, seccomp) {
            (true, true) => "filters supported: containers run under Evergreen's",
            (true, false) => "this kernel has no seccomp filters (CONFIG_SECCOMP_FILTER)",
            (false, _) => "no filter for this architecture: containers run without one",
        },
        filter,
    ));
    let sys_admin = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0);
    out.push(finding(
        "privileges",
        sys_admin,
        if sys_admin {
            "CAP_SYS_ADMIN held (namespaces, mounts, cgroups)"
        } else {
            "the runtime lacks CAP_SYS_ADMIN: run it as root (the packaged service does)"
        },
        true,
    ));
    out
}

/// Forks a child that creates the namespaces container mode uses and mounts
/// a tmpfs in them, and reports whether it could.
pub(crate) fn live_probe() -> Finding {
    // SAFETY: the child only makes async-signal-safe system calls and leaves
    // with _exit; the parent waits for it below.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain system calls on constant C strings, then _exit.
        unsafe {
            let flags =
                libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
            if libc::unshare(flags) != 0 {
                libc::_exit(2);
            }
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                libc::_exit(3);
            }
            if libc::mount(
                c"tmpfs".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) != 0
            {
                libc::_exit(4);
            }
            libc::_exit(0);
        }
    }
    if pid < 0 {
        return finding("namespace probe", false, "cannot fork", true);
    }
    let mut status = 0;
    // SAFETY: waiting for the child forked above; status is a valid pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    match code {
        0 => finding(
            "namespace probe",
            true,
            "created mount/PID/IPC/UTS namespaces and mounted a tmpfs",
            true,
        ),
        2 => finding(
            "namespace probe",
            false,
            "unshare of the namespaces was refused",
            true,
        ),
        3 | 4 => finding(
            "namespace probe",
            false,
            "mounting inside a new namespace was refused",
            true,
        ),
        _ => finding("namespace probe", false, "the probe child failed", true),
    }
}

/// The full report for this host (also a section of the operator's health check, which
/// the CLI owns).
pub fn host_report() -> Report {
    let mut findings = static_findings(&HostPaths::default());
    // Without the privilege the probe can only fail; say so once.
    if findings.iter().any(|f| f.what == "privileges" && f.ok) {
        findings.push(live_probe());
    }
    findings.push(own_capabilities());
    findings.push(finding(
        "container capabilities",
        true,
        describe_plan(&super::CapabilityPlan::container()),
        false,
    ));
    Report { findings }
}

/// The runtime's own capability sets, read with `caps` (for the operator: what a component
/// in NoContainer mode running as the runtime's user could inherit).
fn own_capabilities() -> Finding {
    use caps::CapSet;
    let supported = caps::runtime::thread_all_supported();
    let sets = [
        ("effective", CapSet::Effective),
        ("permitted", CapSet::Permitted),
        ("inheritable", CapSet::Inheritable),
        ("bounding", CapSet::Bounding),
        ("ambient", CapSet::Ambient),
    ];
    let mut parts = Vec::new();
    for (name, set) in sets {
        match caps::read(None, set) {
            Ok(held) => parts.push(format!("{name} {}", describe_set(&held, &supported))),
            Err(e) => {
                return finding(
                    "capabilities",
                    false,
                    format!("cannot read the {name} set: {e}"),
                    false,
                )
            }
        }
    }
    finding("capabilities", true, parts.join("; "), false)
}

/// What a jailed component keeps, by set.
fn describe_plan(plan: &super::CapabilityPlan) -> String {
    let none = caps::CapsHashSet::new();
    let sets = [
        ("effective", &plan.effective),
        ("permitted", &plan.permitted),
        ("inheritable", &plan.inheritable),
        ("bounding", &plan.bounding),
        ("ambient", &plan.ambient),
    ];
    if sets.iter().all(|(_, s)| s.is_empty()) {
        return "components keep none, in any set, also as uid 0".to_string();
    }
    sets.iter()
        .map(|(name, set)| format!("{name} {}", describe_set(set, &none)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `all (N)`, `none`, `all but <names> (N of M)` when most are held, or the names, in number
/// order.
fn describe_set(held: &caps::CapsHashSet, supported: &caps::CapsHashSet) -> String {
    let names = |set: &caps::CapsHashSet| {
        let mut caps: Vec<caps::Capability> = set.iter().copied().collect();
        caps.sort_by_key(caps::Capability::index);
        caps.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    if held.is_empty() {
        return "none".to_string();
    }
    if !supported.is_empty() && held.is_superset(supported) {
        return format!("all ({})", held.len());
    }
    if held.len() * 2 > supported.len() && held.is_subset(supported) {
        let missing: caps::CapsHashSet = supported.difference(held).copied().collect();
        return format!(
            "all but {} ({} of {})",
            names(&missing),
            held.len(),
            supported.len()
        );
    }
    names(held)
}

/// Why container mode cannot run here, or `None` when it can. Computed once
/// per process.
pub fn container_support() -> Option<&'static str> {
    static SUPPORT: OnceLock<Option<String>> = OnceLock::new();
    SUPPORT.get_or_init(|| host_report().blockers()).as_deref()
}

/// Runs `evergreen check --container`: this report alone, exit status 0 when container mode
/// can run, 1 when it cannot.
pub fn command() -> std::process::ExitCode {
    let report = host_report();
    print!("{}", report.render());
    if report.blockers().is_some() {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// A fixture `/proc` for tests: the files [`static_findings`] reads.
#[cfg(test)]
fn fixture(
    dir: &std::path::Path,
    release: &str,
    mountinfo: &str,
    cap_eff: &str,
    namespaces: &[&str],
) {
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("fixture dir");
        }
        std::fs::write(path, text).expect("fixture file");
    };
    write("sys/kernel/osrelease", release);
    write("self/mountinfo", mountinfo);
    write(
        "self/status",
        &format!("Name:\tevergreen\nCapEff:\t{cap_eff}\nNoNewPrivs:\t0\nSeccomp:\t0\n"),
    );
    write("filesystems", "nodev\ttmpfs\nnodev\tproc\nnodev\toverlay\n");
    for ns in namespaces {
        write(&format!("self/ns/{ns}"), "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const V1: &str = "33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                      34 30 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
                      36 30 0:32 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n";
    const ALL_NS: &[&str] = &["mnt", "pid", "ipc", "uts", "user", "net"];
    const ROOT_CAPS: &str = "000001ffffffffff";

    fn report(dir: &Path) -> Report {
        Report {
            findings: static_findings(&HostPaths {
                proc: dir.to_path_buf(),
            }),
        }
    }

    #[test]
    fn a_capable_v1_host_passes() {
        let tmp = tempfile::tempdir().expect("tmp");
        fixture(tmp.path(), "6.1.0-18-arm64\n", V1, ROOT_CAPS, ALL_NS);
        let r = report(tmp.path());
        assert_eq!(r.blockers(), None, "{}", r.render());
        let text = r.render();
        assert!(
            text.contains("v1 in use; controllers: memory pids devices"),
            "{text}"
        );
        assert!(text.contains("can run on this host"), "{text}");
    }

    #[test]
    fn a_v2_host_reads_the_root_controllers() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mount = tmp.path().join("cg2");
        std::fs::create_dir_all(&mount).expect("dir");
        std::fs::write(
            mount.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("f");
        let mountinfo = format!("30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n", mount.display());
        fixture(
            tmp.path(),
            "6.6.20+rpt-rpi-v8",
            &mountinfo,
            ROOT_CAPS,
            ALL_NS,
        );
        let r = report(tmp.path());
        assert_eq!(r.blockers(), None, "{}", r.render());
        assert!(r.render().contains("v2 at"));
    }

    #[test]
    fn each_missing_requirement_is_named() {
        let tmp = tempfile::tempdir().expect("tmp");
        fixture(
            tmp.path(),
            "3.18.0",
            "",
            "0000000000000000",
            &["mnt", "uts", "ipc"],
        );
        let r = report(tmp.path());
        let why = r.blockers().expect("blocked");
        for needle in [
            "kernel: 3.18.0",
            "pid namespace",
            "cgroups",
            "memory controller",
            "CAP_SYS_ADMIN",
        ] {
            assert!(why.contains(needle), "{needle} missing in: {why}");
        }
        assert!(
            !why.contains("user namespace"),
            "optional items never block: {why}"
        );
        assert!(r.render().contains("CANNOT run"));
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("4.4"), Some((4, 4)));
        assert_eq!(kernel_version("garbage"), None);
    }

    #[test]
    fn capability_sets_are_named_all_none_or_by_name() {
        use caps::Capability::{CAP_CHOWN, CAP_NET_RAW, CAP_SYS_ADMIN};
        let supported: caps::CapsHashSet = [CAP_CHOWN, CAP_NET_RAW, CAP_SYS_ADMIN].into();
        assert_eq!(describe_set(&supported, &supported), "all (3)");
        assert_eq!(describe_set(&caps::CapsHashSet::new(), &supported), "none");
        assert_eq!(
            describe_set(&[CAP_SYS_ADMIN, CAP_CHOWN].into(), &supported),
            "all but CAP_NET_RAW (2 of 3)"
        );
        assert_eq!(
            describe_set(&[CAP_NET_RAW].into(), &supported),
            "CAP_NET_RAW"
        );
        assert_eq!(
            describe_plan(&crate::sandbox::CapabilityPlan::container()),
            "components keep none, in any set, also as uid 0"
        );
        // The runtime's own sets, read with `caps`, as `evergreen check` shows them.
        let own = own_capabilities();
        assert!(own.ok, "{own:?}");
        assert!(own.detail.starts_with("effective "), "{own:?}");
    }
}
