//! What a child is started with: the resources granted to the component
//! (resolved to paths and mounts), its handshake configuration, and the
//! sandbox's `SpawnSpec` (program, arguments, environment, identity).

use std::ffi::OsString;
use std::path::Path;

use evergreen_group::plan::{ComponentSpec, GroupPlan, Isolation, Launch, ResourceData, RunAs};
use evergreen_ipc::{ComponentConfig, ComponentKind, ResourceGrant};

use super::RuntimeSettings;
use crate::lambda::{self, LambdaHub};
use crate::sandbox::{MountKind, ResourceMount, SpawnSpec};

/// What a component needs from the group beyond its own spec: the resources
/// it was granted, resolved to paths, and for a container what to mount.
#[derive(Debug, Clone, Default)]
pub(crate) struct ComponentEnv {
    pub resources: std::collections::BTreeMap<String, ResourceGrant>,
    pub mounts: Vec<ResourceMount>,
    /// For a connector of a group with a stream manager: its port and the
    /// token the connector's client presents (connectors that write into
    /// streams, as V1's Modbus-TCP adapter did).
    pub stream_manager: Option<(u16, String)>,
}

impl ComponentEnv {
    /// Resolves the resources `spec` was granted in `plan`.
    ///
    /// In `NoContainer` mode nothing is mounted, so a grant's path is the
    /// host path (the volume's `SourcePath`), as Greengrass's NoContainer
    /// functions see it. In a container the grant's path is where the
    /// resource is mounted: a device at its own path, a volume or model at
    /// its `DestinationPath`. Model resources are read from
    /// `<resource_root>/ml/<resource id>` on the host, where the deployment
    /// installed them (`evergreen_models`). Without a container a model is
    /// still read at its `DestinationPath`, as V1 functions' code names it:
    /// the installer links that host path to the model for such components.
    pub(crate) fn for_component(
        spec: &ComponentSpec,
        plan: &GroupPlan,
        resource_root: &Path,
    ) -> Self {
        let container = spec.isolation == Isolation::GreengrassContainer;
        let mut resources = std::collections::BTreeMap::new();
        let mut mounts = Vec::new();
        for access in &spec.resources {
            let Some(res) = plan.resources.get(&access.resource_id) else {
                continue;
            };
            let (kind, source, target, owner) = match &res.data {
                ResourceData::LocalDevice {
                    source_path,
                    group_owner,
                } => (
                    MountKind::Device,
                    source_path.clone(),
                    source_path.clone(),
                    (group_owner.auto_add, group_owner.group.clone()),
                ),
                ResourceData::LocalVolume {
                    source_path,
                    destination_path,
                    group_owner,
                } => (
                    MountKind::Volume,
                    source_path.clone(),
                    destination_path.clone(),
                    (group_owner.auto_add, group_owner.group.clone()),
                ),
                ResourceData::MachineLearningModel {
                    destination_path,
                    group_owner,
                    ..
                } => (
                    MountKind::Model,
                    resource_root.join("ml").join(&access.resource_id),
                    destination_path.clone(),
                    (false, group_owner.clone()),
                ),
                ResourceData::Secret { .. } => continue,
            };
            let seen = if container || kind == MountKind::Model {
                &target
            } else {
                &source
            };
            resources.insert(
                access.resource_id.clone(),
                ResourceGrant {
                    path: seen.display().to_string(),
                    read_write: access.read_write,
                },
            );
            if container {
                mounts.push(ResourceMount {
                    resource_id: access.resource_id.clone(),
                    kind,
                    source,
                    target,
                    read_write: access.read_write,
                    auto_add_group_owner: owner.0,
                    group_owner: owner.1,
                });
            }
        }
        ComponentEnv {
            resources,
            mounts,
            stream_manager: None,
        }
    }
}

/// The configuration the child is handed in the handshake.
pub(super) fn component_config(
    spec: &ComponentSpec,
    plan_env: &ComponentEnv,
    settings: &RuntimeSettings,
) -> ComponentConfig {
    ComponentConfig {
        arn: spec.arn.clone(),
        kind: spec.kind,
        id: spec.id.clone(),
        parameters: spec.parameters.clone(),
        resources: plan_env.resources.clone(),
        secrets: spec.secrets.clone(),
        log_level: settings.user_log_level,
        core_thing_name: settings.core_thing_name.clone(),
        region: settings.region.clone(),
        endpoints: settings.aws.endpoints(),
    }
}

/// The uid and gid of the overflow user (`nobody` / `nogroup` on Debian): what a container
/// component of a root runtime runs as when neither its group nor the configuration names an
/// identity.
pub(crate) const CONTAINER_DEFAULT_ID: u32 = 65534;

/// The identity `spec` runs as. The group's `RunAs` wins; what it leaves out comes from the
/// configured `defaultRunAs`. A container component of a root runtime with neither never
/// runs as uid 0: it gets [`CONTAINER_DEFAULT_ID`] (Greengrass V1 ran container functions as
/// `ggc_user`; a uid 0 inside a container, even without capabilities, owns files by mode that
/// it has no business writing). Uid 0 in a container needs the group to ask for it (`RunAs`
/// `Uid` 0, which validation allows only with `allowFunctionsToRunAsRoot`). A NoContainer
/// component keeps the runtime's own identity, as before.
fn run_identity(
    run_as: RunAs,
    default: RunAs,
    isolation: Isolation,
    runtime_is_root: bool,
) -> RunAs {
    let mut uid = run_as.uid.or(default.uid);
    let mut gid = run_as.gid.or(default.gid);
    if isolation == Isolation::GreengrassContainer && runtime_is_root {
        uid = uid.or(Some(CONTAINER_DEFAULT_ID));
        gid = gid.or(Some(CONTAINER_DEFAULT_ID));
    }
    RunAs { uid, gid }
}

/// What the sandbox starts for `spec` as instance number `instance` (from
/// `Sandboxes::next_instance`, unique in the runtime). `lambda` is the
/// Lambda endpoint and the token of the next child, for Python functions.
pub(super) fn spawn_spec(
    spec: &ComponentSpec,
    s: &RuntimeSettings,
    plan_env: &ComponentEnv,
    lambda: Option<(&LambdaHub, &str)>,
    instance: u64,
) -> SpawnSpec {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let path = std::env::var_os("PATH").unwrap_or_else(|| {
        OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    });
    env.push(("PATH".into(), path));
    for key in ["LANG", "LC_ALL", "TZ"] {
        if let Some(v) = std::env::var_os(key) {
            env.push((key.into(), v));
        }
    }
    if spec.kind == ComponentKind::Function {
        for (k, v) in &spec.parameters {
            env.push((k.into(), v.into()));
        }
    }
    // Identity variables come last so that they are truthful whatever the
    // function's own variables say.
    let mut identity = vec![
        ("AWS_IOT_THING_NAME", s.core_thing_name.as_str()),
        ("AWS_IOT_THING_ARN", s.core_thing_arn.as_str()),
        ("AWS_REGION", s.region.as_str()),
        ("AWS_DEFAULT_REGION", s.region.as_str()),
        ("EVERGREEN_COMPONENT_ARN", spec.arn.as_str()),
    ];
    if spec.kind == ComponentKind::Function {
        identity.push(("MY_FUNCTION_ARN", spec.arn.as_str()));
    }
    let sm_port;
    if let Some((port, token)) = &plan_env.stream_manager {
        sm_port = port.to_string();
        identity.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN", token.as_str()));
        identity.push(("STREAM_MANAGER_SERVER_PORT", sm_port.as_str()));
    }
    for (k, v) in identity {
        env.retain(|(ek, _)| ek != k);
        env.push((k.into(), v.into()));
    }
    let mut working_dir = None;
    let mut mounts = plan_env.mounts.clone();
    if let (
        Launch::Python {
            handler,
            code,
            binary,
            runtime,
        },
        Some((hub, token)),
    ) = (&spec.launch, lambda)
    {
        let launch = lambda::python::PythonLaunch {
            handler,
            code,
            binary: *binary,
            timeout_ms: spec.timeout_s.saturating_mul(1000),
            token,
        };
        let mut vars = lambda::python::environment(hub, &launch);
        if lambda::node::is_node(runtime) {
            vars.extend(lambda::node::environment(hub.runtime_dir(), code));
        }
        for (k, v) in vars {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        }
        // The function's own directory is its working directory, as
        // in Greengrass (code that opens files next to itself).
        if code.is_dir() {
            working_dir = Some(code.clone());
        }
        // In a container the code and Evergreen's Python files are
        // bound read-only at their host paths, so PYTHONPATH holds.
        if spec.isolation == Isolation::GreengrassContainer {
            for (id, path) in [
                ("function-code", code),
                ("evergreen-python", &hub.runtime_dir().to_path_buf()),
            ] {
                mounts.push(ResourceMount {
                    resource_id: id.to_string(),
                    kind: MountKind::Volume,
                    source: path.clone(),
                    target: path.clone(),
                    read_write: false,
                    auto_add_group_owner: false,
                    group_owner: None,
                });
            }
        }
    }
    if let (Launch::Native { path, .. }, Some((hub, token))) = (&spec.launch, lambda) {
        let launch = lambda::python::PythonLaunch {
            handler: "",
            code: path,
            binary: true,
            timeout_ms: spec.timeout_s.saturating_mul(1000),
            token,
        };
        // The actor starts a native function only once the library is installed.
        let library = hub.native_library().unwrap_or_default();
        let own = env
            .iter()
            .find(|(k, _)| k == "LD_LIBRARY_PATH")
            .map(|(_, v)| v.clone());
        for (k, v) in lambda::native::environment(hub, &launch, &library, own.as_deref()) {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        }
        // Its own directory is its working directory, as for a Python function.
        working_dir = path.parent().filter(|d| d.is_dir()).map(Path::to_path_buf);
        // In a container the library is bound read-only at its host path, so
        // LD_LIBRARY_PATH holds (the program itself is bound by the sandbox).
        if spec.isolation == Isolation::GreengrassContainer {
            mounts.push(ResourceMount {
                resource_id: "evergreen-c-sdk".to_string(),
                kind: MountKind::Volume,
                source: library.clone(),
                target: library,
                read_write: false,
                auto_add_group_owner: false,
                group_owner: None,
            });
        }
    }
    let (program, arg0, args) = match &spec.launch {
        Launch::Executable { path, args } | Launch::Native { path, args } => (
            path.clone(),
            None,
            args.iter().map(OsString::from).collect(),
        ),
        // A Node.js function (`Runtime` nodejs…) differs only in its program.
        Launch::Python { runtime, .. } if lambda::node::is_node(runtime) => (
            match spec.isolation {
                Isolation::NoContainer => std::path::PathBuf::from(lambda::node::INTERPRETER),
                Isolation::GreengrassContainer => {
                    lambda::node::container_interpreter(std::env::var_os("PATH").as_deref())
                }
            },
            None,
            lambda.map_or_else(Vec::new, |(hub, _)| {
                vec![lambda::node::script(hub.runtime_dir()).into_os_string()]
            }),
        ),
        Launch::Python { .. } => (
            match spec.isolation {
                Isolation::NoContainer => std::path::PathBuf::from(lambda::python::INTERPRETER),
                Isolation::GreengrassContainer => {
                    lambda::python::container_interpreter(std::env::var_os("PATH").as_deref())
                }
            },
            None,
            lambda.map_or_else(Vec::new, |(hub, _)| {
                vec![hub
                    .runtime_dir()
                    .join(lambda::python::RUNTIME_SCRIPT)
                    .into_os_string()]
            }),
        ),
        Launch::Connector { name, .. } => (
            s.self_exe.clone(),
            Some(OsString::from("evergreen")),
            vec![OsString::from("connector"), OsString::from(name)],
        ),
    };
    SpawnSpec {
        arn: spec.arn.clone(),
        program,
        arg0,
        args,
        env,
        run_as: run_identity(
            spec.run_as,
            s.default_run_as,
            spec.isolation,
            nix::unistd::geteuid().is_root(),
        ),
        working_dir,
        memory_kb: spec.memory_kb,
        instance: crate::sandbox::cgroup::cgroup_name(&spec.id, instance),
        hostname: hostname(&spec.name),
        mounts,
    }
}

/// A hostname for a component's container: its name, limited to what a
/// hostname may hold.
fn hostname(name: &str) -> String {
    let h: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if h.is_empty() {
        "component".into()
    } else {
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: RunAs = RunAs {
        uid: None,
        gid: None,
    };

    fn ids(uid: Option<u32>, gid: Option<u32>) -> RunAs {
        RunAs { uid, gid }
    }

    #[test]
    fn a_root_runtimes_container_component_is_never_uid_0_unless_asked() {
        let box_ = Isolation::GreengrassContainer;
        let nobody = Some(CONTAINER_DEFAULT_ID);
        assert_eq!(run_identity(NONE, NONE, box_, true), ids(nobody, nobody));
        // The configured default, then the group's RunAs, win over the fallback.
        let default = ids(Some(998), Some(997));
        assert_eq!(run_identity(NONE, default, box_, true), default);
        assert_eq!(
            run_identity(ids(Some(1000), None), default, box_, true),
            ids(Some(1000), Some(997))
        );
        assert_eq!(
            run_identity(ids(Some(1000), None), NONE, box_, true),
            ids(Some(1000), nobody)
        );
        // Uid 0 only when the group says so.
        assert_eq!(
            run_identity(ids(Some(0), Some(0)), NONE, box_, true),
            ids(Some(0), Some(0))
        );
        // NoContainer keeps the runtime's identity; a non-root runtime has no other to give.
        assert_eq!(run_identity(NONE, NONE, Isolation::NoContainer, true), NONE);
        assert_eq!(run_identity(NONE, NONE, box_, false), NONE);
    }
}
