//! `GreengrassContainer`: the component runs in its own namespaces, root and cgroup.
//!
//! This module turns a [`SpawnSpec`] into a [`JailSpec`] (resolving device
//! numbers and group owners on the host at spawn time, since a USB serial
//! adapter may appear after deployment), creates the cgroup, and starts the
//! child with [`jail::run`] as its `pre_exec`. The jail itself, and the
//! order of its steps, live in [`super::jail`].
//!
//! On the host a container leaves: its cgroup (removed when the child has
//! exited, see [`ContainerGuard`]) and an empty mount-point directory under
//! `<root>/containers/` (also removed). Mounts exist only in the child's
//! mount namespace and vanish with it.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::cgroup::{CgroupError, CgroupManager, Cgroups, ComponentCgroup, DeviceRule, Limits};
use super::jail::{self, BindMount, CapabilityPlan, JailPlan, JailSpec, SystemPath, SYSTEM_PATHS};
use super::{MountKind, Sandbox, SandboxError, SpawnSpec, Spawned};

/// Tasks a component's cgroup may hold: enough for any sane connector or
/// function, small enough to stop a fork bomb.
pub(crate) const DEFAULT_PIDS_MAX: u64 = 512;

/// The container sandbox.
#[derive(Debug)]
pub(crate) struct ContainerSandbox {
    cgroups: Cgroups,
    /// `<root>/containers`: mount points for container roots.
    containers_dir: PathBuf,
    pids_max: u64,
}

/// What a running container leaves on the host until its child has exited.
#[derive(Debug)]
pub(crate) struct ContainerGuard {
    pub cgroup: ComponentCgroup,
    root_dir: PathBuf,
}

impl ContainerGuard {
    /// Whether the kernel's OOM killer acted in the component's cgroup.
    pub(crate) fn oom_killed(&self) -> bool {
        self.cgroup.oom_kills() > 0
    }

    /// Removes the cgroup (killing anything left) and the mount point.
    pub(crate) fn remove(&self) -> Result<(), ContainerError> {
        self.cgroup.remove()?;
        match std::fs::remove_dir(&self.root_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ContainerError::RemoveDir {
                path: self.root_dir.clone(),
                source,
            }),
        }
    }
}

/// The host pid of the component in the container whose waiter (the
/// process the supervisor started, see [`super::jail`]) is `waiter`: the
/// waiter's child is the namespace's init, and the component is the init's
/// child that is PID 2 in the namespace (init's other children are
/// orphans it adopted). `None` while they are still being forked, or once
/// gone. `proc_root` is `/proc` but for tests.
pub(crate) fn component_pid(proc_root: &Path, waiter: u32) -> Option<u32> {
    let children = |pid: u32| -> Vec<u32> {
        std::fs::read_to_string(
            proc_root
                .join(pid.to_string())
                .join("task")
                .join(pid.to_string())
                .join("children"),
        )
        .map(|t| {
            t.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
    };
    // `NSpid:` lists the pid in each namespace, the innermost last.
    let inner_pid = |pid: u32| -> Option<u32> {
        let status =
            std::fs::read_to_string(proc_root.join(pid.to_string()).join("status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))?
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    };
    let init = children(waiter).into_iter().next()?;
    children(init)
        .into_iter()
        .find(|pid| inner_pid(*pid) == Some(2))
}

/// Why a container could not be set up or taken down; the wording is what the component's
/// status and the runtime log show.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ContainerError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    RemoveDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Jail(#[from] super::jail::JailError),
    #[error("resource {id}: {}: {source}", path.display())]
    Resource {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("resource {id}: {} is not a character or block device", path.display())]
    NotADevice { id: String, path: PathBuf },
    #[error("resource {id}: GroupOwner {name:?} is not a group on this host")]
    NoSuchGroup { id: String, name: String },
    #[error("resource {id}: cannot look up GroupOwner {name:?}: {source}")]
    GroupLookup {
        id: String,
        name: String,
        source: nix::Error,
    },
    #[error("program {}: {source}", path.display())]
    Program {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where pseudo-terminals live.
const PTS_DIR: &str = "/dev/pts";

impl ContainerSandbox {
    /// Whether the devices controller restricts which nodes a container may
    /// open (cgroup v1 with its devices hierarchy).
    fn devices_controlled(&self) -> bool {
        matches!(&self.cgroups, Cgroups::V1(v) if v.devices.is_some())
    }

    /// Uses `cgroups` and keeps container roots under `runtime_root`. Removes
    /// what a previous run on the same root left (cgroups and mount points);
    /// returns the sandbox and how many leftovers went.
    pub(crate) fn new(
        cgroups: Cgroups,
        runtime_root: &Path,
    ) -> Result<(ContainerSandbox, usize), ContainerError> {
        let containers_dir = runtime_root.join("containers");
        std::fs::create_dir_all(&containers_dir).map_err(|source| ContainerError::CreateDir {
            path: containers_dir.clone(),
            source,
        })?;
        let mut stale = cgroups.clean_stale()?;
        if let Ok(entries) = std::fs::read_dir(&containers_dir) {
            for entry in entries.flatten() {
                // Mount points are empty on the host; anything else is not ours.
                if remove_mount_point(&entry.path()) {
                    stale += 1;
                }
            }
        }
        Ok((
            ContainerSandbox {
                cgroups,
                containers_dir,
                pids_max: DEFAULT_PIDS_MAX,
            },
            stale,
        ))
    }

    /// Translates the spec into the jail's terms, reading the host as it is now.
    /// The cgroup files are filled in once the cgroup exists.
    fn jail_spec(&self, spec: &SpawnSpec) -> Result<(JailSpec, Vec<DeviceRule>), ContainerError> {
        let mut binds = Vec::new();
        let mut devices = Vec::new();
        let mut groups = Vec::new();
        let mut links = Vec::new();
        for m in &spec.mounts {
            let meta = std::fs::metadata(&m.source).map_err(|source| ContainerError::Resource {
                id: m.resource_id.clone(),
                path: m.source.clone(),
                source,
            })?;
            let device = m.kind == MountKind::Device;
            if device {
                let ft = meta.file_type();
                let kind = if ft.is_char_device() {
                    'c'
                } else if ft.is_block_device() {
                    'b'
                } else {
                    return Err(ContainerError::NotADevice {
                        id: m.resource_id.clone(),
                        path: m.source.clone(),
                    });
                };
                let rdev = meta.rdev();
                devices.push(DeviceRule {
                    kind,
                    major: libc::major(rdev) as u64,
                    minor: libc::minor(rdev) as u64,
                    write: m.read_write,
                });
            }
            if m.auto_add_group_owner {
                groups.push(meta.gid());
            } else if let Some(name) = &m.group_owner {
                groups.push(resolve_group(&m.resource_id, name)?);
            }
            // The node a link names (a socat link, /dev/serial/by-id/…).
            let real = std::fs::canonicalize(&m.source).unwrap_or_else(|_| m.source.clone());
            if device && real.starts_with(PTS_DIR) && self.devices_controlled() {
                // A pseudo-terminal (a socat pair standing in for a serial
                // line, a simulator's virtual port) is tied to its devpts
                // entry: once its owner closes it, a bind of that entry is
                // dead for good, even if a new pty gets the same number. So
                // bind the devpts directory, where a recreated pty appears
                // again, and let the devices controller (allow-listed above:
                // only this pty's number) keep every other pty closed. Real
                // serial devices are bound as nodes: opening one goes by its
                // device number, so a replugged adapter with the same number
                // is reopened in place.
                if !binds
                    .iter()
                    .any(|b: &BindMount| b.source == Path::new(PTS_DIR))
                {
                    binds.push(BindMount {
                        source: PathBuf::from(PTS_DIR),
                        target: PathBuf::from(PTS_DIR),
                        read_write: true,
                        directory: true,
                        device: true,
                    });
                }
                if m.target != real {
                    // The granted path is a link to the pty: the same link
                    // inside, to the pty as it is now.
                    links.push((m.target.clone(), real));
                }
                continue;
            }
            binds.push(BindMount {
                source: m.source.clone(),
                target: m.target.clone(),
                read_write: m.read_write,
                directory: meta.is_dir(),
                device,
            });
        }
        // The program itself, wherever it lives (a user function's directory
        // is not a system path). Built-in connectors run `/proc/self/exe`,
        // which means nothing inside the container: bind the real file.
        let program = program_path(spec)?;
        binds.push(BindMount {
            source: program.clone(),
            target: program,
            read_write: false,
            directory: false,
            device: false,
        });
        groups.sort_unstable();
        groups.dedup();
        let system = SYSTEM_PATHS
            .iter()
            .filter_map(|p| SystemPath::probe(Path::new(p)))
            .collect();
        Ok((
            JailSpec {
                root_dir: self.containers_dir.join(&spec.instance),
                hostname: spec.hostname.clone(),
                cgroup_procs: Vec::new(),
                system,
                binds,
                working_dir: spec.working_dir.clone(),
                links,
                uid: spec.run_as.uid,
                gid: spec.run_as.gid,
                groups,
                capabilities: CapabilityPlan::container(),
            },
            devices,
        ))
    }
}

/// The program's real path on the host.
fn program_path(spec: &SpawnSpec) -> Result<PathBuf, ContainerError> {
    std::fs::canonicalize(&spec.program).map_err(|source| ContainerError::Program {
        path: spec.program.clone(),
        source,
    })
}

/// The id of resource `id`'s `GroupOwner` `name` (a number, or a group on this host).
fn resolve_group(id: &str, name: &str) -> Result<u32, ContainerError> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(ContainerError::NoSuchGroup {
            id: id.to_string(),
            name: name.to_string(),
        }),
        Err(source) => Err(ContainerError::GroupLookup {
            id: id.to_string(),
            name: name.to_string(),
            source,
        }),
    }
}

impl Sandbox for ContainerSandbox {
    fn spawn(&self, spec: &SpawnSpec) -> Result<Spawned, SandboxError> {
        let fail = |why: ContainerError| SandboxError::Container {
            arn: spec.arn.clone(),
            why,
        };
        // Resources first, so a missing device fails before a cgroup exists.
        let (mut jail_spec, devices) = self.jail_spec(spec).map_err(fail)?;
        let limits = Limits {
            memory_bytes: spec.memory_kb.map(|kb| kb.saturating_mul(1024)),
            pids_max: Some(self.pids_max),
            devices,
        };
        let cgroup = self
            .cgroups
            .create(&spec.instance, &limits)
            .map_err(|e| fail(e.into()))?;
        jail_spec.cgroup_procs = cgroup.procs_files();
        let guard = ContainerGuard {
            cgroup,
            root_dir: jail_spec.root_dir.clone(),
        };
        let built = std::fs::create_dir_all(&jail_spec.root_dir)
            .map_err(|source| ContainerError::CreateDir {
                path: jail_spec.root_dir.clone(),
                source,
            })
            .and_then(|()| Ok(JailPlan::build(&jail_spec)?));
        let plan = match built {
            Ok(plan) => plan,
            Err(why) => {
                let _ = guard.remove();
                return Err(fail(why));
            }
        };
        let program = match program_path(spec) {
            Ok(p) => p,
            Err(why) => {
                let _ = guard.remove();
                return Err(fail(why));
            }
        };
        let mut cmd = Command::new(&program);
        if let Some(arg0) = &spec.arg0 {
            cmd.arg0(arg0);
        }
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // The identity switch and the working directory are jail steps: std
        // would do them before pre_exec, that is before the mounts that need
        // root and in the host's file system.
        let supervisor = nix::unistd::Pid::this().as_raw();
        // SAFETY: `jail::run` makes only async-signal-safe system calls on
        // data prepared above (see its docs), as pre_exec requires.
        unsafe {
            cmd.pre_exec(move || jail::run(&plan, supervisor));
        }
        match cmd.spawn() {
            Ok(child) => Ok(Spawned {
                child,
                container: Some(guard),
            }),
            Err(source) => {
                let _ = guard.remove();
                Err(SandboxError::Spawn {
                    arn: spec.arn.clone(),
                    program: spec.program.display().to_string(),
                    source,
                })
            }
        }
    }
}

/// Removes a predecessor's empty mount point. Right after a `kill -9` the kernel may still be
/// tearing down the dead container's mount namespace, and the directory is busy (`EBUSY`) until
/// it has: that is retried for up to two seconds. Anything else (a directory that is not empty,
/// so not ours) is left alone.
fn remove_mount_point(path: &Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return true,
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/proc` entry: its children and its `NSpid`.
    fn process(proc_root: &Path, pid: u32, children: &[u32], nspid: &str) {
        let task = proc_root
            .join(pid.to_string())
            .join("task")
            .join(pid.to_string());
        std::fs::create_dir_all(&task).expect("task dir");
        let list: Vec<String> = children.iter().map(u32::to_string).collect();
        std::fs::write(task.join("children"), list.join(" ") + " ").expect("children");
        std::fs::write(
            proc_root.join(pid.to_string()).join("status"),
            format!("Name:\tx\nNSpid:\t{nspid}\nVmRSS:\t 100 kB\n"),
        )
        .expect("status");
    }

    #[test]
    fn the_status_pid_is_the_component_not_the_waiter_or_init() {
        let dir = tempfile::tempdir().expect("tmp");
        let proc_root = dir.path();
        // waiter 100 -> init 101 (PID 1 inside) -> orphan 150 (PID 7) and
        // the component 102 (PID 2), listed after the orphan.
        process(proc_root, 100, &[101], "100");
        process(proc_root, 101, &[150, 102], "101\t1");
        process(proc_root, 150, &[], "150\t7");
        process(proc_root, 102, &[], "102\t2");
        assert_eq!(component_pid(proc_root, 100), Some(102));
        // Between the forks there is no component yet.
        process(proc_root, 200, &[201], "200");
        process(proc_root, 201, &[], "201\t1");
        assert_eq!(component_pid(proc_root, 200), None);
        assert_eq!(component_pid(proc_root, 999), None, "a waiter that is gone");
    }
}
