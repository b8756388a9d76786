//! User functions: qualified, unique ARNs (system functions are accepted
//! and not run), what to launch (an executable, or a Python handler and its
//! code), limits, environment, isolation and identity, and the resources
//! each function is granted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use evergreen_ipc::manifest::ResourceKind;
use evergreen_ipc::ComponentKind;

use super::arns::{parse_function_arn, FunctionArn, UserFunctionArn};
use super::{
    parse_isolation, parse_permission, root_message, runs_as_root, show, under, DeviceClaim,
    Validator, DEFAULT_EXECUTION, DEFAULT_MEMORY_KB, DEFAULT_TIMEOUT_S,
};
use crate::model::{self, key_segment, GroupDefinition};
use crate::plan::{ComponentSpec, Isolation, Launch, ResourceAccess, ResourceData, RunAs};

const MAX_RESOURCES_PER_FUNCTION: usize = 20;

const FUNCTIONS: &str = "$.FunctionDefinitionVersion.Functions";

/// Greengrass system functions that a group may configure.
const SYSTEM_FUNCTIONS: &[&str] = &[
    "GGCloudSpooler",
    "GGConnManager",
    "GGDeviceCertificateManager",
    "GGIPDetector",
    "GGSecretManager",
    "GGShadowService",
    "GGShadowSyncManager",
    "GGStreamManager",
    "GGTES",
];

/// The `GGStreamManager` variables Greengrass V1 documented that Evergreen
/// accepts without acting on them (its exporters are not a JVM's thread pool).
const STREAM_MANAGER_IGNORED: &[&str] = &[
    "JVM_ARGS",
    "STREAM_MANAGER_EXPORTER_MAX_BANDWIDTH",
    "STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE",
    "STREAM_MANAGER_READ_ONLY_DIRS",
];

impl Validator<'_> {
    /// The stream manager's settings from `GGStreamManager`'s variables.
    fn stream_manager(&mut self, path: &str, variables: &BTreeMap<String, String>) {
        let mut spec = crate::plan::StreamManagerSpec {
            port: 8088,
            ..Default::default()
        };
        let at = |k: &str| format!("{path}.FunctionConfiguration.Environment.Variables.{k}");
        for (key, value) in variables {
            match key.as_str() {
                "STREAM_MANAGER_SERVER_PORT" => match value.trim().parse::<u16>() {
                    Ok(p) if p > 0 => spec.port = p,
                    _ => self.err(at(key), format!("{value:?} is not a TCP port (1 to 65535)")),
                },
                "STREAM_MANAGER_STORE_ROOT_DIR" => {
                    let dir = std::path::PathBuf::from(value.trim());
                    if dir.is_absolute() {
                        spec.store_root = Some(dir);
                    } else {
                        self.err(at(key), format!("{value:?} is not an absolute path"));
                    }
                }
                "STREAM_MANAGER_AUTHENTICATE_CLIENT" => {
                    if !value.trim().eq_ignore_ascii_case("true") {
                        self.err(
                            at(key),
                            "Evergreen's stream manager always checks the client's token: only functions \
                             and connectors of the group may use it; remove the variable or set it to true",
                        );
                    }
                }
                "STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES" => {
                    match value.trim().parse::<u64>() {
                        Ok(n) if n >= 5 << 20 => spec.s3_min_part_size = Some(n),
                        _ => self.err(at(key), format!("{value:?} is not a size of at least 5242880 bytes (S3's smallest part)")),
                    }
                }
                k if STREAM_MANAGER_IGNORED.contains(&k) => {}
                _ => self.err(
                    at(key),
                    "not a stream manager setting (known: STREAM_MANAGER_SERVER_PORT, STREAM_MANAGER_STORE_ROOT_DIR, \
                     STREAM_MANAGER_AUTHENTICATE_CLIENT, STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES, \
                     and V1's JVM settings, which are accepted and ignored)",
                ),
            }
        }
        self.stream_manager = Some(spec);
    }

    pub(super) fn functions(&mut self, group: &GroupDefinition) {
        let Some(fdv) = &group.function_definition_version else {
            return;
        };
        if let Some(execution) = fdv
            .default_config
            .as_ref()
            .and_then(|d| d.execution.as_ref())
        {
            let (isolation, run_as) = self.execution(DEFAULT_EXECUTION, execution);
            self.default_isolation = isolation;
            self.default_run_as = run_as;
        }
        self.check_unique(
            "function Id",
            fdv.functions
                .iter()
                .enumerate()
                .map(|(i, f)| (format!("{FUNCTIONS}[{i}].Id"), f.id.as_str())),
        );
        let mut root_own: Vec<(String, String)> = Vec::new();
        let mut seen_arns: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, function) in fdv.functions.iter().enumerate() {
            let path = format!("{FUNCTIONS}[{i}]");
            self.check_id(format!("{path}.Id"), &function.id);
            let arn_path = format!("{path}.FunctionArn");
            let (arn, parsed) = match function.function_arn.as_deref() {
                None => {
                    self.err(arn_path, "FunctionArn is required");
                    (None, None)
                }
                Some(arn) => match parse_function_arn(arn) {
                    Ok(FunctionArn::System { name }) => {
                        if !SYSTEM_FUNCTIONS.contains(&name.as_str()) {
                            self.err(
                                arn_path,
                                format!(
                                    "`{name}` is not a Greengrass system function (known: {})",
                                    SYSTEM_FUNCTIONS.join(", ")
                                ),
                            );
                        }
                        if name == "GGStreamManager" {
                            let variables = function
                                .function_configuration
                                .as_ref()
                                .and_then(|c| c.environment.as_ref())
                                .map(|e| e.variables.clone())
                                .unwrap_or_default();
                            self.stream_manager(&path, &variables);
                        }
                        // Configures a service Evergreen provides itself.
                        continue;
                    }
                    Ok(FunctionArn::User(parts)) => {
                        if let Some(first) = seen_arns.get(arn) {
                            self.err(
                                arn_path,
                                format!("duplicate FunctionArn (first used at {FUNCTIONS}[{first}].FunctionArn)"),
                            );
                            (None, None)
                        } else {
                            seen_arns.insert(arn, i);
                            (Some(arn), Some(parts))
                        }
                    }
                    Err(problem) => {
                        self.err(arn_path, problem);
                        (None, None)
                    }
                },
            };
            let spec = self.function(&path, function, arn, parsed.as_ref(), &mut root_own);
            if let (Some(arn), Some(parts)) = (arn, parsed) {
                self.function_arns.insert(arn.to_string());
                self.functions_by_base
                    .entry(parts.base())
                    .or_default()
                    .push(arn.to_string());
                if let Some(spec) = spec {
                    self.components.insert(arn.to_string(), spec);
                }
            }
        }
        if !self.opts.allow_root {
            for (path, arn) in root_own {
                self.err(path, root_message(&[arn]));
            }
        }
    }

    /// Checks an `Execution` block; returns the isolation and identity it
    /// sets, when set and valid.
    fn execution(
        &mut self,
        path: &str,
        execution: &model::FunctionExecutionConfig,
    ) -> (Option<Isolation>, Option<RunAs>) {
        let isolation = execution.isolation_mode.as_deref().and_then(|mode| {
            let parsed = parse_isolation(mode);
            if parsed.is_none() {
                self.err(
                    format!("{path}.IsolationMode"),
                    format!(
                        "`{}` is not an isolation mode: use GreengrassContainer or NoContainer",
                        show(mode)
                    ),
                );
            }
            parsed
        });
        let run_as = execution.run_as.map(|r| {
            let path = format!("{path}.RunAs");
            RunAs {
                uid: self.id_number(&format!("{path}.Uid"), r.uid),
                gid: self.id_number(&format!("{path}.Gid"), r.gid),
            }
        });
        (isolation, run_as)
    }

    fn id_number(&mut self, path: &str, value: Option<i64>) -> Option<u32> {
        let value = value?;
        match u32::try_from(value) {
            Ok(id) => Some(id),
            Err(_) => {
                self.err(
                    path,
                    format!("{value} is not a user or group id (0 to {})", u32::MAX),
                );
                None
            }
        }
    }

    /// Checks one user function and builds its spec when everything needed
    /// for it is valid.
    fn function(
        &mut self,
        path: &str,
        function: &model::Function,
        arn: Option<&str>,
        parsed: Option<&UserFunctionArn>,
        root_own: &mut Vec<(String, String)>,
    ) -> Option<ComponentSpec> {
        let Some(config) = &function.function_configuration else {
            self.err(
                format!("{path}.FunctionConfiguration"),
                "FunctionConfiguration is required (it holds the Executable to run)",
            );
            return None;
        };
        let cpath = format!("{path}.FunctionConfiguration");
        let mut ok = true;

        let executable = match config.executable.as_deref() {
            None => {
                self.err(
                    format!("{cpath}.Executable"),
                    "Executable is required: the program to run",
                );
                None
            }
            Some(e) if e.trim().is_empty() => {
                self.err(format!("{cpath}.Executable"), "Executable cannot be empty");
                None
            }
            Some(e) if e.contains('\0') => {
                self.err(
                    format!("{cpath}.Executable"),
                    "Executable contains a NUL character",
                );
                None
            }
            Some(e) => Some(e),
        };
        let args: Vec<String> = match config.exec_args.as_deref() {
            Some(a) if a.contains('\0') => {
                self.err(
                    format!("{cpath}.ExecArgs"),
                    "ExecArgs contains a NUL character",
                );
                ok = false;
                Vec::new()
            }
            Some(a) => a.split_whitespace().map(str::to_string).collect(),
            None => Vec::new(),
        };
        let native = config
            .runtime
            .as_deref()
            .is_some_and(crate::plan::is_native_runtime);
        if native {
            ok &= self.native(&cpath, config);
        }
        let python = if native {
            None
        } else {
            self.python(&cpath, config, executable)
        };
        ok &= python != Some(None);
        let python = python.flatten();
        let memory_kb = self.positive(&format!("{cpath}.MemorySize"), config.memory_size, "KB");
        let timeout_s = self.positive(&format!("{cpath}.Timeout"), config.timeout, "seconds");
        ok &= config.memory_size.is_none() || memory_kb.is_some();
        ok &= config.timeout.is_none() || timeout_s.is_some();
        if let Some(encoding) = config.encoding_type.as_deref() {
            if encoding != "json" && encoding != "binary" {
                self.err(
                    format!("{cpath}.EncodingType"),
                    format!(
                        "`{}` is not an encoding type: use json or binary",
                        show(encoding)
                    ),
                );
                ok = false;
            }
        }

        let env_path = format!("{cpath}.Environment");
        let env = config.environment.as_ref();
        let mut variables = BTreeMap::new();
        for (key, value) in env.map(|e| &e.variables).into_iter().flatten() {
            let vpath = format!("{env_path}.Variables{}", key_segment(key));
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                self.err(
                    vpath,
                    "an environment variable name cannot be empty or contain '=' or NUL",
                );
                ok = false;
            } else if value.contains('\0') {
                self.err(vpath, "an environment variable value cannot contain NUL");
                ok = false;
            } else {
                variables.insert(key.clone(), value.clone());
            }
        }

        let (own_isolation, own_run_as) = match env.and_then(|e| e.execution.as_ref()) {
            Some(execution) => self.execution(&format!("{env_path}.Execution"), execution),
            None => (None, None),
        };
        let isolation = own_isolation
            .or(self.default_isolation)
            .unwrap_or(Isolation::GreengrassContainer);
        if isolation == Isolation::GreengrassContainer {
            let where_from = if own_isolation.is_some() {
                format!("{env_path}.Execution.IsolationMode")
            } else {
                env_path.to_string()
            };
            self.require_container(where_from, "the function");
        }
        let run_as = own_run_as.or(self.default_run_as).unwrap_or_default();
        if let Some(arn) = arn {
            if runs_as_root(run_as) {
                if own_run_as.is_some() {
                    root_own.push((format!("{env_path}.Execution.RunAs"), arn.to_string()));
                } else {
                    self.root_by_default.push(arn.to_string());
                }
            }
        }

        let label = match parsed {
            Some(p) => format!("function {}", p.name),
            None => format!("function `{}`", function.id),
        };
        let (resources, secrets) = self.access_policies(
            &env_path,
            env.map(|e| e.resource_access_policies.as_slice())
                .unwrap_or_default(),
            isolation,
            arn.unwrap_or_default(),
            &label,
        )?;

        let (arn, parsed, executable) = (arn?, parsed?, executable?);
        if !ok {
            return None;
        }
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                self.opts.base_dir.join(p)
            }
        };
        let launch = match python {
            Some((code, runtime)) => Launch::Python {
                handler: executable.to_string(),
                code: resolve(code),
                runtime: runtime.to_string(),
                binary: config.encoding_type.as_deref() == Some("binary"),
            },
            None if native => Launch::Native {
                path: resolve(executable),
                args,
            },
            None => Launch::Executable {
                path: resolve(executable),
                args,
            },
        };
        Some(ComponentSpec {
            id: function.id.clone(),
            arn: arn.to_string(),
            kind: ComponentKind::Function,
            name: parsed.name.clone(),
            launch,
            parameters: variables,
            isolation,
            run_as,
            pinned: config.pinned.unwrap_or(false),
            // Greengrass discards the memory limit without a container.
            memory_kb: match isolation {
                Isolation::GreengrassContainer => Some(memory_kb.unwrap_or(DEFAULT_MEMORY_KB)),
                Isolation::NoContainer => None,
            },
            timeout_s: timeout_s.unwrap_or(DEFAULT_TIMEOUT_S),
            resources,
            secrets,
            aws: false,
            log_file: PathBuf::from(format!(
                "user/{}/{}/{}.log",
                parsed.region, parsed.account, parsed.name
            )),
        })
    }

    /// Checks a native function (`Runtime` `executable`): its `Executable` is its program, so
    /// it has no `CodeUri` (the version store keeps the program itself).
    fn native(&mut self, cpath: &str, config: &model::FunctionConfiguration) -> bool {
        if config.code_uri.is_some() {
            self.err(
                format!("{cpath}.CodeUri"),
                "CodeUri does not apply to a native function (Runtime executable): its Executable is the program",
            );
            return false;
        }
        true
    }

    /// Recognises a Greengrass V1 Python function: one with a `CodeUri` or a
    /// `python…` `Runtime` (or a Node.js one, `nodejs…`: the same checks apply,
    /// the handler being `file.function`). Returns `None` for a plain executable,
    /// `Some(Some((code, runtime)))` for a valid Python function and
    /// `Some(None)` when it is one but something is wrong (reported).
    fn python<'c>(
        &mut self,
        cpath: &str,
        config: &'c model::FunctionConfiguration,
        executable: Option<&str>,
    ) -> Option<Option<(&'c str, &'c str)>> {
        let runtime = config.runtime.as_deref();
        let code = config.code_uri.as_deref();
        if code.is_none() && runtime.is_none() {
            return None;
        }
        let mut ok = true;
        // Greengrass V1's Node.js runtimes (nodejs12.x, nodejs8.10, nodejs6.10) run on
        // Evergreen's Node.js runtime loop, over the same endpoint.
        let node = |r: &str| {
            r.strip_prefix("nodejs").is_some_and(|v| {
                let mut parts = v.splitn(2, '.');
                let major = parts.next().unwrap_or_default();
                let minor = parts.next().unwrap_or_default();
                !major.is_empty()
                    && major.bytes().all(|b| b.is_ascii_digit())
                    && (minor == "x"
                        || (!minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())))
            })
        };
        let runtime_ok = runtime.is_none_or(|r| {
            r == "python3"
                || node(r)
                || r.strip_prefix("python3.").is_some_and(|minor| {
                    !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
                })
        });
        if !runtime_ok {
            self.err(
                format!("{cpath}.Runtime"),
                format!(
                    "`{}` is not a supported runtime: use python3.7, python3.8 or another python3.N, nodejs12.x or nodejs8.10",
                    show(runtime.unwrap_or_default())
                ),
            );
            ok = false;
        }
        match code {
            None => {
                self.err(
                    format!("{cpath}.CodeUri"),
                    "CodeUri is required for a Python function: the directory or .zip holding its code",
                );
                ok = false;
            }
            Some(c) if c.trim().is_empty() || c.contains('\0') => {
                self.err(
                    format!("{cpath}.CodeUri"),
                    "CodeUri cannot be empty or contain NUL",
                );
                ok = false;
            }
            // Evergreen's Node.js loop loads the handler from a directory.
            Some(c) if runtime.is_some_and(node) && c.ends_with(".zip") => {
                self.err(
                    format!("{cpath}.CodeUri"),
                    "a Node.js function's CodeUri must be a directory (unzip the deployment package)",
                );
                ok = false;
            }
            Some(_) => {}
        }
        if let Some(handler) = executable {
            let ident = |s: &str| {
                let mut chars = s.chars();
                chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            };
            let parts: Vec<&str> = handler.split('.').collect();
            if parts.len() < 2 || !parts.iter().all(|p| ident(p)) {
                self.err(
                    format!("{cpath}.Executable"),
                    format!(
                        "`{}` is not a Python handler: use module.function (for example lambda_function.function_handler)",
                        show(handler)
                    ),
                );
                ok = false;
            }
        }
        if config
            .exec_args
            .as_deref()
            .is_some_and(|a| !a.trim().is_empty())
        {
            self.err(
                format!("{cpath}.ExecArgs"),
                "ExecArgs does not apply to a Python function",
            );
            ok = false;
        }
        match (ok, code) {
            (true, Some(code)) => Some(Some((code, runtime.unwrap_or("python3")))),
            _ => Some(None),
        }
    }

    /// Checks a function's `ResourceAccessPolicies`; returns its grants and
    /// the names of its secrets, or `None` when any policy is invalid.
    fn access_policies(
        &mut self,
        env_path: &str,
        policies: &[model::ResourceAccessPolicy],
        isolation: Isolation,
        arn: &str,
        label: &str,
    ) -> Option<(Vec<ResourceAccess>, Vec<String>)> {
        let list_path = format!("{env_path}.ResourceAccessPolicies");
        let mut ok = true;
        if policies.len() > MAX_RESOURCES_PER_FUNCTION {
            self.err(
                list_path.clone(),
                format!(
                    "a function may be granted at most {MAX_RESOURCES_PER_FUNCTION} resources (it has {})",
                    policies.len()
                ),
            );
            ok = false;
        }
        let mut grants = Vec::new();
        let mut secrets = Vec::new();
        let mut local = Vec::new();
        let mut seen = BTreeSet::new();
        for (r, policy) in policies.iter().enumerate() {
            let ppath = format!("{list_path}[{r}]");
            let read_write = match policy.permission.as_deref() {
                None => false,
                Some(p) => match parse_permission(p) {
                    Some(rw) => rw,
                    None => {
                        self.err(
                            format!("{ppath}.Permission"),
                            format!("`{}` is not a permission: use \"ro\" or \"rw\"", show(p)),
                        );
                        ok = false;
                        false
                    }
                },
            };
            if !seen.insert(policy.resource_id.as_str()) {
                self.err(
                    format!("{ppath}.ResourceId"),
                    format!(
                        "resource `{}` is listed twice for this function",
                        show(&policy.resource_id)
                    ),
                );
                ok = false;
                continue;
            }
            let Some(entry) = self.resources.get(&policy.resource_id) else {
                self.err(
                    format!("{ppath}.ResourceId"),
                    format!(
                        "`{}` is not the Id of a resource in this group's ResourceDefinitionVersion",
                        show(&policy.resource_id)
                    ),
                );
                ok = false;
                continue;
            };
            let mut problems = Vec::new();
            match entry.kind {
                Some(ResourceKind::Secret) => {
                    if read_write {
                        problems
                            .push("a secret can only be granted read-only (\"ro\")".to_string());
                    }
                    secrets.push(entry.name.clone());
                }
                Some(ResourceKind::LocalVolume) => {
                    local.push(policy.resource_id.clone());
                    if read_write && entry.volume_source().is_some_and(|s| under(s, "/proc")) {
                        problems.push(
                            "a volume from /proc can only be granted read-only (\"ro\")"
                                .to_string(),
                        );
                    }
                    if !read_write && entry.volume_source().is_some_and(|s| under(s, "/dev/shm")) {
                        problems.push(
                            "a /dev/shm volume must be granted read-write (\"rw\")".to_string(),
                        );
                    }
                }
                Some(ResourceKind::LocalDevice) => {
                    local.push(policy.resource_id.clone());
                    if let Some(source) = entry.device_source() {
                        self.claims.push(DeviceClaim {
                            source: source.to_path_buf(),
                            resource_id: policy.resource_id.clone(),
                            component_arn: arn.to_string(),
                            label: label.to_string(),
                            by_connector: false,
                            path: format!("{ppath}.ResourceId"),
                        });
                    }
                }
                Some(ResourceKind::MachineLearningModel) => {
                    let owned = matches!(
                        entry.data(),
                        Some(ResourceData::MachineLearningModel {
                            group_owner: Some(_),
                            ..
                        })
                    );
                    if isolation == Isolation::NoContainer && entry.spec.is_some() && !owned {
                        problems.push(format!(
                            "machine-learning resource `{}` has no OwnerSetting; a function without a container \
                             can only read it through the owner group",
                            show(&policy.resource_id)
                        ));
                    }
                }
                None => {}
            }
            let permission_path = format!("{ppath}.Permission");
            for problem in problems {
                self.err(permission_path.clone(), problem);
                ok = false;
            }
            grants.push(ResourceAccess {
                resource_id: policy.resource_id.clone(),
                read_write,
            });
        }
        if isolation == Isolation::NoContainer && !local.is_empty() {
            self.err(
                list_path,
                format!(
                    "the function runs with NoContainer isolation but is granted local resources [{}]; local device \
                     and volume resources can only be attached to functions in a Greengrass container",
                    local.join(", ")
                ),
            );
            ok = false;
        }
        secrets.dedup();
        ok.then_some((grants, secrets))
    }
}
