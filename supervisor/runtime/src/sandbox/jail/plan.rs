//! The jail's plan: what a component's container needs (`JailSpec`), turned into the fixed
//! list of `Step`s the runner executes after fork, with every path already a `CString`.
//! Built in the supervisor, where allocating is fine, and unit-tested without root; it
//! never makes a system call that changes anything.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::seccomp;

/// Host paths bound read-only into every container when they exist. A path
/// that is a symbolic link on the host (merged-/usr systems link `/bin`,
/// `/lib`… into `/usr`) becomes the same link instead.
pub(crate) const SYSTEM_PATHS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/alternatives",
];

/// Paths of the container's `/proc` made read-only, as runc and youki do: the kernel's
/// settings (`/proc/sys`: `kernel.core_pattern`, `vm.overcommit_memory`…), the SysRq trigger,
/// interrupt affinity, bus and file-system settings. `/proc` itself is mounted read-only too.
pub(crate) const PROC_READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Paths of the container's `/proc` masked, as runc and youki do: kernel memory, keys and
/// timing detail a component has no business reading.
pub(crate) const PROC_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
];

/// The device nodes every container gets, bound from the host.
pub(crate) const BASIC_DEVICE_NODES: &[&str] =
    &["null", "zero", "full", "random", "urandom", "tty"];

/// One host path made visible inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    pub read_write: bool,
    /// A directory (or a file / device node otherwise).
    pub directory: bool,
    /// Device nodes keep `dev` on their mount; everything else is `nodev`.
    pub device: bool,
}

/// What a container needs, in host terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JailSpec {
    /// An empty host directory the new root's tmpfs is mounted on (only in
    /// the child's mount namespace: the host sees it empty).
    pub root_dir: PathBuf,
    pub hostname: String,
    /// `cgroup.procs` files to join.
    pub cgroup_procs: Vec<PathBuf>,
    /// [`SYSTEM_PATHS`] as found on this host: `(path, Some(link target))`
    /// for links, `(path, None)` for what is bound, with whether it is a dir.
    pub system: Vec<SystemPath>,
    /// Resources and the executable.
    pub binds: Vec<BindMount>,
    pub working_dir: Option<PathBuf>,
    /// Symbolic links to make inside the container: `(link, target)`, for
    /// a granted device named by a link (a socat link, `/dev/serial/by-id/…`).
    pub links: Vec<(PathBuf, PathBuf)>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Supplementary groups (device and volume group owners).
    pub groups: Vec<u32>,
    /// The capabilities the component keeps.
    pub capabilities: CapabilityPlan,
}

/// The capability sets a jailed component keeps, computed with `caps` in the supervisor and
/// carried into the jail as bit masks ([`CapabilityMasks`]). The steps after the fork apply
/// them with raw `prctl`/`capset` calls, not with `caps`: between `fork` and `exec` only
/// async-signal-safe calls are allowed, and `caps` allocates (its sets are `HashSet`s, its
/// errors `String`s), which can deadlock in a child forked from a multi-threaded process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityPlan {
    pub effective: caps::CapsHashSet,
    pub permitted: caps::CapsHashSet,
    pub inheritable: caps::CapsHashSet,
    pub bounding: caps::CapsHashSet,
    pub ambient: caps::CapsHashSet,
}

impl CapabilityPlan {
    /// What every container component keeps: nothing, in any set, whatever its user (also
    /// uid 0). Greengrass V1's containers gave a function no privilege over the host;
    /// resources (devices, volumes) are granted by binding them, not by capabilities.
    pub fn container() -> CapabilityPlan {
        CapabilityPlan::default()
    }

    /// The plan as the kernel's bit masks (bit `n` is capability number `n`).
    pub fn masks(&self) -> CapabilityMasks {
        let mask = |set: &caps::CapsHashSet| set.iter().fold(0u64, |m, c| m | c.bitmask());
        CapabilityMasks {
            effective: mask(&self.effective),
            permitted: mask(&self.permitted),
            inheritable: mask(&self.inheritable),
            bounding: mask(&self.bounding),
            ambient: mask(&self.ambient),
        }
    }
}

/// A [`CapabilityPlan`] as bit masks: what the jail's steps apply, and what
/// `/proc/<pid>/status` shows (`CapEff`, `CapPrm`, `CapInh`, `CapBnd`, `CapAmb`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapabilityMasks {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub bounding: u64,
    pub ambient: u64,
}

impl CapabilityMasks {
    /// Whether a process with these sets must keep its capabilities across a switch to
    /// a non-zero uid (which otherwise empties the permitted and effective sets).
    fn keeps_any(&self) -> bool {
        (self.effective | self.permitted | self.inheritable | self.ambient) != 0
    }
}

/// A system path as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SystemPath {
    pub path: PathBuf,
    pub link: Option<PathBuf>,
    pub directory: bool,
}

impl SystemPath {
    /// Looks `path` up on the host; `None` when it does not exist (or is a
    /// dangling link). A link to a directory (`/lib` → `usr/lib`) stays a
    /// link; a link to a file (`/etc/resolv.conf` → `../run/…` under
    /// systemd-resolved) is bound as the file it points to, since its
    /// target's directory is not in the container.
    pub(crate) fn probe(path: &Path) -> Option<SystemPath> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if meta.file_type().is_symlink() {
            let target = std::fs::metadata(path).ok()?;
            if !target.is_dir() {
                // mount(2) follows the link in a bind's source.
                return Some(SystemPath {
                    path: path.to_path_buf(),
                    link: None,
                    directory: false,
                });
            }
            let link = std::fs::read_link(path).ok()?;
            return Some(SystemPath {
                path: path.to_path_buf(),
                link: Some(link),
                directory: false,
            });
        }
        Some(SystemPath {
            path: path.to_path_buf(),
            link: None,
            directory: meta.is_dir(),
        })
    }
}

/// One step of the jail. Paths are absolute host paths before
/// [`Step::PivotRoot`] and container paths after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    DieWithParent,
    JoinCgroup(CString),
    Unshare,
    /// The waiter stays behind; the forked child (PID 1) goes on.
    ForkInit,
    SetHostname(CString),
    MakeMountsPrivate,
    MountTmpfs {
        target: CString,
        options: CString,
        flags: libc::c_ulong,
    },
    MakeDir(CString),
    /// An empty file to bind a file or device node onto.
    Touch(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Bind {
        source: CString,
        target: CString,
        /// Flags for the read-only / nosuid / nodev remount that follows
        /// the bind (a bind ignores them on its first call).
        remount: libc::c_ulong,
    },
    MountProc(CString),
    /// A path of the container's `/proc` made read-only where it is (skipped when this
    /// kernel has no such path).
    ReadOnly(CString),
    /// A path of the container's `/proc` hidden: a file under `/dev/null`, a directory under
    /// an empty read-only tmpfs (skipped when this kernel has no such path).
    Mask(CString),
    PivotRoot {
        new_root: CString,
        put_old: CString,
    },
    DetachOldRoot(CString),
    RemountRootReadOnly,
    Chdir(CString),
    /// Drops every capability number (0 to 63) not in `keep` from the bounding set, and
    /// empties the ambient set.
    DropBoundingCapabilities {
        keep: u64,
    },
    SetGroups(Vec<libc::gid_t>),
    SetGid(libc::gid_t),
    /// Keeps the permitted set across the uid switch (only when the plan keeps any).
    KeepCapabilities,
    SetUid(libc::uid_t),
    /// Sets the effective, permitted and inheritable sets to the plan's.
    SetCapabilities {
        effective: u64,
        permitted: u64,
        inheritable: u64,
    },
    /// Raises each capability in the mask into the ambient set.
    RaiseAmbient(u64),
    NoNewPrivileges,
    /// The seccomp filter ([`seccomp`]): init and the component run under it.
    Seccomp(seccomp::Filter),
    /// PID 1 stays as the namespace's init; the forked child (the
    /// component) goes on to exec.
    ForkComponent,
}

impl Step {
    /// The step's name, for the message written when it fails.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Step::DieWithParent => "set the parent-death signal",
            Step::JoinCgroup(_) => "join the cgroup",
            Step::Unshare => "create the namespaces",
            Step::ForkInit => "fork the namespace's first process",
            Step::SetHostname(_) => "set the hostname",
            Step::MakeMountsPrivate => "make mounts private",
            Step::MountTmpfs { .. } => "mount a tmpfs",
            Step::MakeDir(_) => "create a directory",
            Step::Touch(_) => "create a mount point file",
            Step::Symlink { .. } => "create a symbolic link",
            Step::Bind { .. } => "bind-mount a path",
            Step::MountProc(_) => "mount /proc",
            Step::ReadOnly(_) => "make a /proc path read-only",
            Step::Mask(_) => "mask a /proc path",
            Step::PivotRoot { .. } => "pivot_root",
            Step::DetachOldRoot(_) => "detach the old root",
            Step::RemountRootReadOnly => "remount the root read-only",
            Step::Chdir(_) => "change directory",
            Step::DropBoundingCapabilities { .. } => "drop the capability bounding set",
            Step::SetGroups(_) => "set supplementary groups",
            Step::SetGid(_) => "set the group id",
            Step::KeepCapabilities => "keep capabilities across the uid switch",
            Step::SetUid(_) => "set the user id",
            Step::SetCapabilities { .. } => "set capabilities",
            Step::RaiseAmbient(_) => "raise ambient capabilities",
            Step::NoNewPrivileges => "set no_new_privs",
            Step::Seccomp(_) => "install the seccomp filter",
            Step::ForkComponent => "fork the component under the namespace's init",
        }
    }
}

/// Why a plan could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JailError {
    #[error("path {0} contains a NUL byte")]
    Nul(String),
    #[error("{what} {path} must be an absolute path without `..`")]
    NotAbsolute { what: &'static str, path: String },
    #[error("{path} would be mounted inside the read-only system path {system}; choose a DestinationPath outside it")]
    InsideSystemPath { path: String, system: String },
}

fn cstr(path: &Path) -> Result<CString, JailError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| JailError::Nul(path.display().to_string()))
}

fn check_absolute(what: &'static str, path: &Path) -> Result<(), JailError> {
    let clean = path.is_absolute()
        && !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if clean {
        Ok(())
    } else {
        Err(JailError::NotAbsolute {
            what,
            path: path.display().to_string(),
        })
    }
}

/// The host path of a container path under the new root.
fn under(root: &Path, inside: &Path) -> PathBuf {
    root.join(inside.strip_prefix("/").unwrap_or(inside))
}

/// The flags of every mount the jail makes itself: no set-uid programs and no device nodes.
pub(crate) const MS_HARDEN: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

/// The built sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JailPlan {
    pub steps: Vec<Step>,
}

impl JailPlan {
    /// Builds the sequence for `spec`; fails only on paths that cannot be
    /// mounted as asked.
    pub(crate) fn build(spec: &JailSpec) -> Result<JailPlan, JailError> {
        let root = &spec.root_dir;
        check_absolute("container root", root)?;
        super::sys::note_heap_start();
        let mut steps = vec![Step::DieWithParent];
        // 2. cgroups first: everything after runs under the limits.
        for procs in &spec.cgroup_procs {
            steps.push(Step::JoinCgroup(cstr(procs)?));
        }
        // 3–5. namespaces, then the namespace's PID 1.
        steps.push(Step::Unshare);
        steps.push(Step::ForkInit);
        steps.push(Step::DieWithParent);
        // 6. identity of the container, and no propagation to the host.
        steps.push(Step::SetHostname(
            CString::new(spec.hostname.as_bytes())
                .map_err(|_| JailError::Nul(spec.hostname.clone()))?,
        ));
        steps.push(Step::MakeMountsPrivate);
        // 7. the new root.
        steps.push(Step::MountTmpfs {
            target: cstr(root)?,
            options: c"mode=0755,size=4m".to_owned(),
            flags: MS_HARDEN,
        });
        // Container directories already created, so each is made once.
        let mut made: Vec<PathBuf> = Vec::new();
        fn make_parents(
            steps: &mut Vec<Step>,
            made: &mut Vec<PathBuf>,
            root: &Path,
            inside: &Path,
        ) -> Result<(), JailError> {
            let mut dirs: Vec<&Path> = inside.ancestors().skip(1).collect();
            dirs.reverse();
            for dir in dirs {
                if dir == Path::new("/") || made.iter().any(|m| m == dir) {
                    continue;
                }
                steps.push(Step::MakeDir(cstr(&under(root, dir))?));
                made.push(dir.to_path_buf());
            }
            Ok(())
        }
        let mut bound_system: Vec<&Path> = Vec::new();
        for sys in &spec.system {
            check_absolute("system path", &sys.path)?;
            make_parents(&mut steps, &mut made, root, &sys.path)?;
            let target = under(root, &sys.path);
            match &sys.link {
                Some(link) => steps.push(Step::Symlink {
                    target: cstr(link)?,
                    link: cstr(&target)?,
                }),
                None => {
                    steps.push(if sys.directory {
                        Step::MakeDir(cstr(&target)?)
                    } else {
                        Step::Touch(cstr(&target)?)
                    });
                    steps.push(Step::Bind {
                        source: cstr(&sys.path)?,
                        target: cstr(&target)?,
                        remount: libc::MS_RDONLY | MS_HARDEN,
                    });
                    bound_system.push(&sys.path);
                }
            }
        }
        // A minimal /dev: a tmpfs holding only bound nodes and the usual links.
        let dev = under(root, Path::new("/dev"));
        steps.push(Step::MakeDir(cstr(&dev)?));
        steps.push(Step::MountTmpfs {
            target: cstr(&dev)?,
            options: c"mode=0755,size=64k".to_owned(),
            flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        });
        for node in BASIC_DEVICE_NODES {
            let host = Path::new("/dev").join(node);
            if !host.exists() {
                continue;
            }
            steps.push(Step::Touch(cstr(&dev.join(node))?));
            steps.push(Step::Bind {
                source: cstr(&host)?,
                target: cstr(&dev.join(node))?,
                remount: libc::MS_NOSUID | libc::MS_NOEXEC,
            });
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            steps.push(Step::Symlink {
                target: cstr(Path::new(target))?,
                link: cstr(&dev.join(link))?,
            });
        }
        let shm = dev.join("shm");
        steps.push(Step::MakeDir(cstr(&shm)?));
        steps.push(Step::MountTmpfs {
            target: cstr(&shm)?,
            options: c"mode=1777,size=16m".to_owned(),
            flags: MS_HARDEN | libc::MS_NOEXEC,
        });
        made.push(PathBuf::from("/dev"));
        // /proc of the new PID namespace: the container sees only its own.
        let proc_dir = under(root, Path::new("/proc"));
        steps.push(Step::MakeDir(cstr(&proc_dir)?));
        steps.push(Step::MountProc(cstr(&proc_dir)?));
        // The kernel's knobs stay out of reach even of a uid 0 without capabilities, which
        // owns them by file mode (kernel.core_pattern would run a program on the host).
        for path in PROC_READ_ONLY {
            steps.push(Step::ReadOnly(cstr(&under(root, Path::new(path)))?));
        }
        for path in PROC_MASKED {
            steps.push(Step::Mask(cstr(&under(root, Path::new(path)))?));
        }
        made.push(PathBuf::from("/proc"));
        let tmp = under(root, Path::new("/tmp"));
        steps.push(Step::MakeDir(cstr(&tmp)?));
        steps.push(Step::MountTmpfs {
            target: cstr(&tmp)?,
            options: c"mode=1777,size=64m".to_owned(),
            flags: MS_HARDEN,
        });
        made.push(PathBuf::from("/tmp"));
        // Resources and the executable.
        for bind in &spec.binds {
            check_absolute("mount destination", &bind.target)?;
            check_absolute("mount source", &bind.source)?;
            if let Some(system) = bound_system
                .iter()
                .find(|s| bind.target.starts_with(s) && !bind.source.starts_with(s))
            {
                return Err(JailError::InsideSystemPath {
                    path: bind.target.display().to_string(),
                    system: system.display().to_string(),
                });
            }
            if bound_system.iter().any(|s| bind.target.starts_with(s)) {
                // The executable under /usr, say: already visible.
                continue;
            }
            make_parents(&mut steps, &mut made, root, &bind.target)?;
            let target = under(root, &bind.target);
            steps.push(if bind.directory {
                Step::MakeDir(cstr(&target)?)
            } else {
                Step::Touch(cstr(&target)?)
            });
            let mut remount = libc::MS_NOSUID;
            if !bind.read_write {
                remount |= libc::MS_RDONLY;
            }
            if !bind.device {
                remount |= libc::MS_NODEV;
            }
            steps.push(Step::Bind {
                source: cstr(&bind.source)?,
                target: cstr(&target)?,
                remount,
            });
        }
        for (link, target) in &spec.links {
            check_absolute("link", link)?;
            make_parents(&mut steps, &mut made, root, link)?;
            steps.push(Step::Symlink {
                target: cstr(target)?,
                link: cstr(&under(root, link))?,
            });
        }
        // 8. switch roots.
        steps.push(Step::MakeDir(cstr(&root.join(".old_root"))?));
        steps.push(Step::PivotRoot {
            new_root: cstr(root)?,
            put_old: cstr(&root.join(".old_root"))?,
        });
        steps.push(Step::DetachOldRoot(c"/.old_root".to_owned()));
        steps.push(Step::RemountRootReadOnly);
        let cwd = spec
            .working_dir
            .as_deref()
            .filter(|d| {
                spec.binds
                    .iter()
                    .any(|b| b.directory && d.starts_with(&b.target))
            })
            .unwrap_or(Path::new("/"));
        steps.push(Step::Chdir(cstr(cwd)?));
        // 9. privileges.
        let caps = spec.capabilities.masks();
        steps.push(Step::DropBoundingCapabilities {
            keep: caps.bounding,
        });
        if spec.gid.is_some() || spec.uid.is_some() || !spec.groups.is_empty() {
            let mut groups: Vec<libc::gid_t> = spec.gid.into_iter().collect();
            groups.extend(spec.groups.iter().copied().filter(|g| Some(*g) != spec.gid));
            steps.push(Step::SetGroups(groups));
        }
        if let Some(gid) = spec.gid {
            steps.push(Step::SetGid(gid));
        }
        if let Some(uid) = spec.uid {
            if uid != 0 && caps.keeps_any() {
                steps.push(Step::KeepCapabilities);
            }
            steps.push(Step::SetUid(uid));
        }
        steps.push(Step::SetCapabilities {
            effective: caps.effective,
            permitted: caps.permitted,
            inheritable: caps.inheritable,
        });
        if caps.ambient != 0 {
            steps.push(Step::RaiseAmbient(caps.ambient));
        }
        steps.push(Step::NoNewPrivileges);
        if let Some(filter) = seccomp::Filter::build() {
            steps.push(Step::Seccomp(filter));
        }
        // 10. init stays PID 1, as jailed as the component it serves.
        steps.push(Step::ForkComponent);
        Ok(JailPlan { steps })
    }
}
