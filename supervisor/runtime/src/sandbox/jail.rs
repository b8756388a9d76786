//! The container jail: a fixed, commented sequence of steps run between fork and exec.
//!
//! [`JailPlan::build`] turns what a component needs (its program, resources,
//! identity, cgroup) into a list of [`Step`]s, with every path already a
//! `CString`. [`run`] executes them in the forked child, where nothing may
//! allocate or take a lock (the supervisor is multi-threaded), so building
//! and running are apart: the plan and its order are unit-tested without
//! root, and the runner only makes system calls. The order, as firecracker's
//! jailer and youki do it:
//!
//! 1. die with the supervisor (`PR_SET_PDEATHSIG`);
//! 2. join the component's cgroups (before anything else runs, so nothing
//!    escapes the limits);
//! 3. new mount, PID, IPC and UTS namespaces (the network stays the host's,
//!    as in Greengrass);
//! 4. fork: the forked child is PID 1 of the new PID namespace and goes on;
//!    the process the supervisor started stays outside as a small waiter that
//!    holds no file descriptor but the read end of a status pipe, and leaves
//!    with the component's exact status (as PID 1 reports it on that pipe),
//!    so the supervisor's view (exit status, process group) is unchanged;
//! 5. PID 1 also dies with its waiter, and when PID 1 dies the kernel kills
//!    everything else in the namespace: no process outlives the component,
//!    even after a `kill -9` of the supervisor;
//! 6. hostname; all mounts private, so nothing below propagates to the host;
//! 7. a fresh tmpfs root with read-only bind mounts of what programs need,
//!    a minimal `/dev`, `/proc` of the new PID namespace (read-only, with the
//!    kernel's settings read-only and its memory, keys and timers masked, as
//!    runc does: [`PROC_READ_ONLY`], [`PROC_MASKED`]), a private `/tmp`, the
//!    granted resources and the component's own executable;
//! 8. `pivot_root` into it and detach the old root; the root is then
//!    remounted read-only;
//! 9. drop every capability from the bounding set, switch to the `RunAs`
//!    groups and user, clear the remaining capability sets (also for uid 0),
//!    set `no_new_privs`, and install the seccomp filter (`jail/seccomp.rs`:
//!    no new namespaces, mounts, keyrings, BPF, module loading, ptrace…);
//! 10. fork again: the forked child, PID 2, is the component (its own
//!     process group, the signal mask it was started with); std's `Command`
//!     execs the program in it. PID 1 stays as the namespace's *init* (see
//!     `jail/init.rs`): jailed like the component but holding none of its file
//!     descriptors, it forwards termination signals to the component, reaps
//!     orphans, and exits when the component does. Without it the component
//!     itself would be PID 1, which the kernel shields from every signal it
//!     has no handler for: a program that relies on SIGTERM's default action
//!     (a Python worker) would ignore it and end only in SIGKILL.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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

/// The highest capability number to drop from the bounding set. Numbers
/// the kernel does not know are skipped (`EINVAL`).
const LAST_CAP: libc::c_int = 63;

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
    pub(super) fn probe(path: &Path) -> Option<SystemPath> {
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
    DropBoundingCapabilities,
    SetGroups(Vec<libc::gid_t>),
    SetGid(libc::gid_t),
    SetUid(libc::uid_t),
    ClearCapabilities,
    NoNewPrivileges,
    /// The seccomp filter ([`seccomp`]): init and the component run under it.
    Seccomp(seccomp::Filter),
    /// PID 1 stays as the namespace's init; the forked child (the
    /// component) goes on to exec.
    ForkComponent,
}

impl Step {
    /// The step's name, for the message written when it fails.
    pub(super) fn name(&self) -> &'static str {
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
            Step::DropBoundingCapabilities => "drop the capability bounding set",
            Step::SetGroups(_) => "set supplementary groups",
            Step::SetGid(_) => "set the group id",
            Step::SetUid(_) => "set the user id",
            Step::ClearCapabilities => "clear capabilities",
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

const MS_HARDEN: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

/// The built sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JailPlan {
    pub steps: Vec<Step>,
}

impl JailPlan {
    /// Builds the sequence for `spec`; fails only on paths that cannot be
    /// mounted as asked.
    pub(super) fn build(spec: &JailSpec) -> Result<JailPlan, JailError> {
        let root = &spec.root_dir;
        check_absolute("container root", root)?;
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
        steps.push(Step::DropBoundingCapabilities);
        if spec.gid.is_some() || spec.uid.is_some() || !spec.groups.is_empty() {
            let mut groups: Vec<libc::gid_t> = spec.gid.into_iter().collect();
            groups.extend(spec.groups.iter().copied().filter(|g| Some(*g) != spec.gid));
            steps.push(Step::SetGroups(groups));
        }
        if let Some(gid) = spec.gid {
            steps.push(Step::SetGid(gid));
        }
        if let Some(uid) = spec.uid {
            steps.push(Step::SetUid(uid));
        }
        steps.push(Step::ClearCapabilities);
        steps.push(Step::NoNewPrivileges);
        if let Some(filter) = seccomp::Filter::build() {
            steps.push(Step::Seccomp(filter));
        }
        // 10. init stays PID 1, as jailed as the component it serves.
        steps.push(Step::ForkComponent);
        Ok(JailPlan { steps })
    }
}

/// Writes `"evergreen-jail: <step> failed: errno <n>\n"` to stderr without
/// allocating, so the component's log says which step failed.
fn report(step: &Step, errno: i32) {
    let mut buf = [0u8; 160];
    let mut len = 0;
    for part in [
        b"evergreen-jail: ".as_slice(),
        step.name().as_bytes(),
        b" failed: errno ".as_slice(),
    ] {
        let n = part.len().min(buf.len() - len);
        buf[len..len + n].copy_from_slice(&part[..n]);
        len += n;
    }
    let mut digits = [0u8; 12];
    let mut d = 0;
    let mut v = errno.unsigned_abs();
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 || d == digits.len() {
            break;
        }
    }
    while d > 0 && len < buf.len() - 1 {
        d -= 1;
        buf[len] = digits[d];
        len += 1;
    }
    buf[len] = b'\n';
    len += 1;
    // SAFETY: buf is a valid buffer of at least `len` bytes; fd 2 is the
    // child's stderr pipe. A failed write has nowhere else to go.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), len);
    }
}

fn check(step: &Step, result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        let err = io::Error::last_os_error();
        report(step, err.raw_os_error().unwrap_or(0));
        Err(err)
    } else {
        Ok(())
    }
}

/// Thin wrappers over the system calls the jail makes. Each takes
/// `CStr`s, so the pointers it passes are valid and NUL-terminated for the
/// duration of the call; none allocates.
mod sys {
    use std::ffi::CStr;
    use std::ptr;

    fn opt(s: Option<&CStr>) -> *const libc::c_char {
        s.map_or(ptr::null(), CStr::as_ptr)
    }

    pub(super) fn errno() -> i32 {
        // SAFETY: the errno location is thread-local and always valid.
        unsafe { *libc::__errno_location() }
    }

    pub(super) fn mount(
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> libc::c_int {
        // SAFETY: every pointer is null or a valid C string (see the module).
        unsafe {
            libc::mount(
                opt(source),
                target.as_ptr(),
                opt(fstype),
                flags,
                opt(data).cast(),
            )
        }
    }

    pub(super) fn prctl(option: libc::c_int, arg: libc::c_ulong) -> libc::c_int {
        // SAFETY: the prctl options used here take integer arguments only.
        unsafe { libc::prctl(option, arg, 0, 0, 0) }
    }

    pub(super) fn getppid() -> libc::pid_t {
        // SAFETY: no arguments, cannot fail.
        unsafe { libc::getppid() }
    }

    pub(super) fn exit_now(code: libc::c_int) -> ! {
        // SAFETY: ends the forked child without running the parent's
        // atexit handlers or flushing its copied buffers.
        unsafe { libc::_exit(code) }
    }

    pub(super) fn write_zero_to(path: &CStr) -> libc::c_int {
        // SAFETY: path is a valid C string; the fd is closed before return.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return -1;
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if n == 1 {
                0
            } else {
                -1
            }
        }
    }

    /// Whether `path` is a directory; `None` when it does not exist (or cannot be looked at,
    /// which the mount that follows would report).
    pub(super) fn is_dir(path: &CStr) -> Option<bool> {
        // SAFETY: an all-zero `stat` is a valid value for the kernel to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: path is a valid C string and st a valid, writable stat buffer.
        let r = unsafe { libc::stat(path.as_ptr(), &mut st) };
        (r == 0).then_some(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
    }

    pub(super) fn touch(path: &CStr) -> libc::c_int {
        // SAFETY: path is a valid C string; the fd is closed before return.
        unsafe {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            if fd < 0 {
                return -1;
            }
            libc::close(fd);
            0
        }
    }

    pub(super) fn unshare(flags: libc::c_int) -> libc::c_int {
        // SAFETY: integer flags only.
        unsafe { libc::unshare(flags) }
    }

    /// A pipe whose ends close at exec: `(read, write)`.
    pub(super) fn pipe_cloexec() -> Option<(libc::c_int, libc::c_int)> {
        let mut fds = [-1 as libc::c_int; 2];
        // SAFETY: fds is a valid array of two ints for the kernel to fill.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        (r == 0).then_some((fds[0], fds[1]))
    }

    pub(super) fn close(fd: libc::c_int) {
        // SAFETY: closes a descriptor this process owns and no longer uses;
        // an error (EBADF) leaves nothing to do.
        unsafe { libc::close(fd) };
    }

    /// Closes every descriptor but `keep`.
    pub(super) fn close_all_but(keep: libc::c_int) {
        // SAFETY: close_range takes integer arguments only; the caller
        // uses no descriptor but `keep` from here on (ranges with
        // first > last, when keep is 0, fail with EINVAL and close nothing).
        unsafe {
            if keep > 0 {
                libc::syscall(libc::SYS_close_range, 0u32, (keep - 1) as u32, 0u32);
            }
            libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
        }
    }

    pub(super) fn fork() -> libc::pid_t {
        // SAFETY: called in a single-threaded forked child (std's pre_exec),
        // so the second fork has no other threads whose locks it could copy.
        unsafe { libc::fork() }
    }

    pub(super) fn sethostname(name: &CStr) -> libc::c_int {
        // SAFETY: pointer and length describe the string's bytes.
        unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) }
    }

    pub(super) fn mkdir(path: &CStr) -> libc::c_int {
        // SAFETY: path is a valid C string.
        unsafe { libc::mkdir(path.as_ptr(), 0o755) }
    }

    pub(super) fn symlink(target: &CStr, link: &CStr) -> libc::c_int {
        // SAFETY: both are valid C strings.
        unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }
    }

    pub(super) fn chdir(path: &CStr) -> libc::c_int {
        // SAFETY: path is a valid C string.
        unsafe { libc::chdir(path.as_ptr()) }
    }

    pub(super) fn pivot_root(new_root: &CStr, put_old: &CStr) -> libc::c_int {
        // SAFETY: both are valid C strings; the raw syscall has no wrapper in libc.
        unsafe {
            libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) as libc::c_int
        }
    }

    pub(super) fn umount_detach(path: &CStr) -> libc::c_int {
        // SAFETY: path is a valid C string.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }
    }

    pub(super) fn rmdir(path: &CStr) -> libc::c_int {
        // SAFETY: path is a valid C string.
        unsafe { libc::rmdir(path.as_ptr()) }
    }

    pub(super) fn setgroups(groups: &[libc::gid_t]) -> libc::c_int {
        // SAFETY: pointer and length describe the slice.
        unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }
    }

    pub(super) fn setresgid(gid: libc::gid_t) -> libc::c_int {
        // SAFETY: integer arguments only.
        unsafe { libc::setresgid(gid, gid, gid) }
    }

    pub(super) fn setresuid(uid: libc::uid_t) -> libc::c_int {
        // SAFETY: integer arguments only.
        unsafe { libc::setresuid(uid, uid, uid) }
    }
}

/// Runs the plan in a forked child. Only async-signal-safe system calls:
/// no allocation, no locks, no panics (every input was prepared by
/// [`JailPlan::build`]). `supervisor` is the pid the first parent-death check
/// compares against.
///
/// Must be called only in a child between fork and exec (std's `pre_exec`):
/// it changes the calling process's namespaces, mounts and identity, and the
/// waiter it leaves behind never returns.
pub(crate) fn run(plan: &JailPlan, supervisor: libc::pid_t) -> io::Result<()> {
    let mut parent = supervisor;
    // The write end of the status pipe, in PID 1 (see `ForkInit`).
    let mut status_pipe: libc::c_int = -1;
    for step in &plan.steps {
        let result = match step {
            Step::DieWithParent => {
                let r = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                // The parent may have gone between fork and prctl. (Inside
                // the new PID namespace the parent is outside it, so
                // getppid() is 0 both before and after: the waiter's own
                // parent-death signal covers that window.)
                if r == 0 && sys::getppid() != parent {
                    sys::exit_now(1);
                }
                r
            }
            Step::JoinCgroup(procs) => sys::write_zero_to(procs),
            Step::Unshare => sys::unshare(
                libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS,
            ),
            // PID 1 tells the waiter how the component ended over a pipe:
            // its own exit status can say "128 + signal" at best, since
            // the kernel does not let a namespace's init die of a signal it
            // sends itself.
            Step::ForkInit => match sys::pipe_cloexec() {
                None => -1,
                Some((read_end, write_end)) => match sys::fork() {
                    pid if pid < 0 => -1,
                    0 => {
                        sys::close(read_end);
                        status_pipe = write_end;
                        parent = sys::getppid();
                        0
                    }
                    pid => wait_and_mirror(pid, read_end),
                },
            },
            Step::SetHostname(name) => sys::sethostname(name),
            Step::MakeMountsPrivate => {
                sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
            }
            Step::MountTmpfs {
                target,
                options,
                flags,
            } => sys::mount(
                Some(c"tmpfs"),
                target,
                Some(c"tmpfs"),
                *flags,
                Some(options),
            ),
            Step::MakeDir(path) => match sys::mkdir(path) {
                r if r < 0 && sys::errno() == libc::EEXIST => 0,
                r => r,
            },
            Step::Touch(path) => sys::touch(path),
            Step::Symlink { target, link } => sys::symlink(target, link),
            Step::Bind {
                source,
                target,
                remount,
            } => match sys::mount(
                Some(source),
                target,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            ) {
                r if r < 0 => r,
                // Flags on a bind take effect only through a remount.
                _ => sys::mount(
                    None,
                    target,
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | *remount,
                    None,
                ),
            },
            Step::MountProc(target) => sys::mount(
                Some(c"proc"),
                target,
                Some(c"proc"),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            ),
            Step::ReadOnly(path) => {
                match sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
                    r if r < 0 && sys::errno() == libc::ENOENT => 0,
                    r if r < 0 => r,
                    _ => sys::mount(
                        None,
                        path,
                        None,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | MS_HARDEN,
                        None,
                    ),
                }
            }
            Step::Mask(path) => match sys::is_dir(path) {
                None => 0,
                Some(true) => sys::mount(
                    Some(c"tmpfs"),
                    path,
                    Some(c"tmpfs"),
                    libc::MS_RDONLY | MS_HARDEN,
                    Some(c"size=0,mode=0555"),
                ),
                Some(false) => sys::mount(Some(c"/dev/null"), path, None, libc::MS_BIND, None),
            },
            Step::PivotRoot { new_root, put_old } => match sys::chdir(new_root) {
                r if r < 0 => r,
                _ => sys::pivot_root(new_root, put_old),
            },
            Step::DetachOldRoot(old) => {
                let mut r = sys::chdir(c"/");
                if r == 0 {
                    r = sys::umount_detach(old);
                }
                if r == 0 {
                    r = sys::rmdir(old);
                }
                r
            }
            Step::RemountRootReadOnly => sys::mount(
                None,
                c"/",
                None,
                libc::MS_REMOUNT | libc::MS_RDONLY | MS_HARDEN,
                None,
            ),
            Step::Chdir(path) => sys::chdir(path),
            Step::DropBoundingCapabilities => {
                for cap in 0..=LAST_CAP {
                    // EINVAL: a number this kernel does not have; nothing to drop.
                    sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong);
                }
                // SAFETY: integer arguments only.
                unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                        0,
                        0,
                        0,
                    )
                }
            }
            Step::SetGroups(groups) => sys::setgroups(groups),
            Step::SetGid(gid) => sys::setresgid(*gid),
            Step::SetUid(uid) => sys::setresuid(*uid),
            Step::ClearCapabilities => clear_capabilities(),
            Step::NoNewPrivileges => sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1),
            Step::Seccomp(filter) => filter.install(),
            Step::ForkComponent => init::fork_component(status_pipe),
        };
        check(step, result)?;
    }
    Ok(())
}

/// The kernel's `__user_cap_header_struct` / `__user_cap_data_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Empties the effective, permitted and inheritable sets. After a switch to
/// a non-zero uid they are already empty; for uid 0 this is what removes
/// root's powers.
fn clear_capabilities() -> libc::c_int {
    let header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data are valid for the duration of the call and
    // laid out as the kernel's capset structures (version 3: two data words).
    unsafe {
        libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) as libc::c_int
    }
}

/// The waiter: holds nothing open but the status pipe's read end (so the
/// supervisor's pipes and std's exec-error pipe see only the container),
/// ignores the termination signals the supervisor sends to the process
/// group (PID 1 gets them too and forwards them to the component), and
/// leaves exactly as the component did: with the status PID 1 reports on
/// `status_pipe`, or with PID 1's own when it reported none (it was
/// killed, or a jail step failed). Never returns.
///
/// Called in the forked child; async-signal-safe calls only.
fn wait_and_mirror(child: libc::pid_t, status_pipe: libc::c_int) -> ! {
    sys::close_all_but(status_pipe);
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
    ] {
        // SAFETY: setting a disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(child, &mut status, 0) };
        // SAFETY: errno location is thread-local and always valid.
        if r == child || (r < 0 && unsafe { *libc::__errno_location() } != libc::EINTR) {
            break;
        }
    }
    // PID 1 has exited, so every process of the namespace is gone (the
    // kernel reaps them before PID 1's own exit completes) and nothing
    // holds the write end: this read cannot block.
    let mut reported: libc::c_int = 0;
    let size = std::mem::size_of::<libc::c_int>();
    // SAFETY: reads at most `size` bytes into a local int.
    let n = unsafe { libc::read(status_pipe, (&raw mut reported).cast(), size) };
    if usize::try_from(n) == Ok(size) {
        status = reported;
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: restore the default action and die of the same signal, so
        // the supervisor sees "killed by signal N" as it would without us.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    };
    // SAFETY: ends this process without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

mod init;
pub(crate) mod seccomp;

#[cfg(test)]
mod tests;
