//! Finding and reading the file: the default path, an explicit path, the
//! rule that only the *default* file may be absent, the computed defaults
//! that depend on the environment (the runtime root), and the order parse,
//! validate, fill in. It owns no rule about a value (that is `check`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::check::Problems;
use crate::{ConfigEnv, ConfigError, CoreConfig, DEFAULT_CONFIG_PATH, SYSTEM_ROOT};

/// Reads the configuration: `path` if given (it must exist), otherwise
/// `DEFAULT_CONFIG_PATH` if it exists, otherwise all defaults.
pub fn load(path: Option<&Path>, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    match path {
        Some(path) => load_file(path, env),
        None => load_optional(Path::new(DEFAULT_CONFIG_PATH), env),
    }
}

/// Parses and validates a configuration text exactly as [`load`] does a file's text; `path`
/// only names it in errors. For callers that already hold the text (the fuzz target of
/// `tests/fuzz` feeds it arbitrary bytes through here).
pub fn load_str(text: &str, path: &Path, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    parse(text, path, env)
}

fn load_file(path: &Path, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, env)
}

/// The default file is optional: only its absence means "use defaults"; any
/// other failure to read it is reported, never papered over.
fn load_optional(path: &Path, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => parse(&text, path, env),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            finish(CoreConfig::raw_default(), path, env)
        }
        Err(source) => Err(ConfigError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// How many keys at fault one reading of the file reports.
const MAX_PARSE_ERRORS: usize = 20;

fn parse(text: &str, path: &Path, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    // Strictly (`evergreen_json`): a section given as an array (serde would take a struct's
    // keys by position, so `"restart": [1, 2]` would load), a key given twice (a map such as
    // `evergreen.components` would keep the last), `{"always": null}` for `"always"`, or
    // anything after the object is an error at its key path, like an unknown key.
    let raw: CoreConfig =
        evergreen_json::from_str_all(text, MAX_PARSE_ERRORS).map_err(|errors| {
            let mut errors = errors.into_iter();
            let (json_path, message) = errors
                .next()
                .map(|e| (e.path().to_string(), e.message().to_owned()))
                .unwrap_or_else(|| (".".to_owned(), "unreadable".to_owned()));
            ConfigError::Parse {
                path: path.to_owned(),
                json_path,
                message,
                more: errors.map(|e| e.to_string()).collect(),
            }
        })?;
    finish(raw, path, env)
}

/// Validates, then fills in the computed defaults.
fn finish(mut config: CoreConfig, path: &Path, env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
    let mut problems = Problems::default();
    config.validate(&mut problems);
    if config.evergreen.root.is_none() {
        match default_root(env) {
            Ok(root) => config.evergreen.root = Some(root),
            Err(why) => problems.push("evergreen.root", why),
        }
    }
    let tls = &mut config.evergreen.listeners.mqtt_tls;
    tls.port = Some(tls.port.unwrap_or(config.core_thing.gg_mqtt_port));
    config.check_listeners(&mut problems);

    if problems.0.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            errors: problems.0,
        })
    }
}

fn default_root(env: &ConfigEnv) -> Result<PathBuf, &'static str> {
    if env.uid == 0 {
        return Ok(PathBuf::from(SYSTEM_ROOT));
    }
    // The XDG spec says to ignore relative values; a root relative to
    // whatever directory the runtime was started in would move around.
    let absolute = |p: &Option<PathBuf>| p.clone().filter(|p| p.is_absolute());
    if let Some(data) = absolute(&env.xdg_data_home) {
        return Ok(data.join("evergreen"));
    }
    if let Some(home) = absolute(&env.home) {
        return Ok(home.join(".local/share/evergreen"));
    }
    Err("no default when not running as root and neither XDG_DATA_HOME nor HOME is an absolute path; set it")
}

impl CoreConfig {
    /// The configuration of an empty file: every default, with the computed
    /// ones taken from `env`.
    pub fn defaults(env: &ConfigEnv) -> Result<CoreConfig, ConfigError> {
        finish(
            CoreConfig::raw_default(),
            Path::new(DEFAULT_CONFIG_PATH),
            env,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::*;
    use crate::*;

    #[test]
    fn defaults_when_default_file_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load_optional(&dir.path().join("config.json"), &root_env()).expect("defaults");
        assert_eq!(config, CoreConfig::defaults(&root_env()).expect("defaults"));
        assert_eq!(config.thing_name(), "evergreen-core");
        assert_eq!(config.region(), "us-east-1");
        assert_eq!(config.account(), "000000000000");
        assert_eq!(config.root(), Path::new("/var/lib/evergreen"));
        assert_eq!(config.write_dir(), Path::new("/var/lib/evergreen"));
        assert_eq!(config.log_dir(), Path::new("/var/lib/evergreen/var/log"));
        assert!(!config.allow_root());
        assert_eq!(config.core_thing.iot_host, None);
        assert_eq!(config.core_thing.keep_alive, 600);
        assert_eq!(config.evergreen.max_frame_bytes, 1_048_576);
        assert_eq!(config.evergreen.restart, Restart::default());
        assert_eq!(
            config.evergreen.spooler.storage_type,
            StorageType::FileSystem
        );
        assert_eq!(config.evergreen.spooler.max_size_bytes, 2_621_440);
        assert_eq!(config.evergreen.secret_name_prefix, "greengrass-");
        assert!(config.evergreen.log_to_stderr);
        assert_eq!(
            config.mqtt_tls_addr(),
            "0.0.0.0:8883".parse().expect("addr")
        );
        assert_eq!(config.mqtt_plain_addr(), None);
        assert_eq!(config.ca_path(), None);
        assert!(config.ignored_keys().is_empty());
    }

    #[test]
    fn default_file_present_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        fs::write(&path, r#"{"evergreen": {"queueCapacity": 7}}"#).expect("write");
        let config = load_optional(&path, &root_env()).expect("loads");
        assert_eq!(config.evergreen.queue_capacity, 7);
    }

    #[test]
    fn default_file_unreadable_is_an_error_not_defaults() {
        // A directory where the file should be: reading fails with something
        // other than NotFound, which must not fall back to defaults.
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load_optional(dir.path(), &root_env()).expect_err("must fail");
        assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope.json");
        let err = load(Some(&path), &root_env()).expect_err("must fail");
        match &err {
            ConfigError::Io { path: p, source } => {
                assert_eq!(p, &path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(err.to_string().contains("nope.json"));
    }

    #[test]
    fn packaged_config_is_exactly_the_defaults() {
        // packaging/config.json documents every key with its default, for a
        // system install (uid 0). Both directions: it loads to the defaults,
        // and the defaults serialize to it, so no key is missing from it.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/config.json");
        let packaged = load(Some(&path), &root_env()).expect("packaged config loads");
        let defaults = CoreConfig::defaults(&root_env()).expect("defaults");
        assert_eq!(packaged, defaults);
        let text = fs::read_to_string(&path).expect("read");
        let file: serde_json::Value = serde_json::from_str(&text).expect("json");
        let mut expected = serde_json::to_value(&defaults).expect("serialize");
        // The packaged file leaves the TLS port null so that it follows
        // coreThing.ggMqttPort when an operator changes that Greengrass key.
        if let Some(port) = expected.pointer_mut("/evergreen/listeners/mqttTls/port") {
            *port = serde_json::Value::Null;
        }
        assert_eq!(file, expected);
    }

    #[test]
    fn root_default_for_uid_0_ignores_home() {
        let env = ConfigEnv {
            uid: 0,
            xdg_data_home: Some("/x".into()),
            home: Some("/root".into()),
        };
        let config = CoreConfig::defaults(&env).expect("defaults");
        assert_eq!(config.root(), Path::new("/var/lib/evergreen"));
    }

    #[test]
    fn root_default_for_user_prefers_xdg_data_home() {
        let env = user_env(Some("/home/u/data"), Some("/home/u"));
        let config = CoreConfig::defaults(&env).expect("defaults");
        assert_eq!(config.root(), Path::new("/home/u/data/evergreen"));
    }

    #[test]
    fn root_default_for_user_falls_back_to_home() {
        let config = CoreConfig::defaults(&user_env(None, Some("/home/u"))).expect("defaults");
        assert_eq!(config.root(), Path::new("/home/u/.local/share/evergreen"));
        // A relative XDG_DATA_HOME is ignored, as the XDG spec says.
        let config =
            CoreConfig::defaults(&user_env(Some("data"), Some("/home/u"))).expect("defaults");
        assert_eq!(config.root(), Path::new("/home/u/.local/share/evergreen"));
    }

    #[test]
    fn root_default_for_user_without_home_is_an_error() {
        let err = CoreConfig::defaults(&user_env(None, None)).expect_err("no root");
        let errors = invalid(&err);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("evergreen.root: no default"),
            "{errors:?}"
        );
    }

    #[test]
    fn explicit_root_wins_over_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.json");
        fs::write(&path, r#"{"evergreen": {"root": "/srv/eg"}}"#).expect("write");
        let config = load(Some(&path), &user_env(None, None)).expect("loads");
        assert_eq!(config.root(), Path::new("/srv/eg"));
    }

    #[test]
    fn from_process_reads_something_sane() {
        // Only reads; it must not panic and must give absolute-or-none paths
        // the way the environment has them.
        let env = ConfigEnv::from_process();
        assert!(env
            .xdg_data_home
            .as_ref()
            .is_none_or(|p| !p.as_os_str().is_empty()));
    }

    // ---- good fixtures, one test each ----

    #[test]
    fn good_empty_object() {
        let config = good("empty-object.json");
        assert_eq!(config, CoreConfig::defaults(&root_env()).expect("defaults"));
    }

    #[test]
    fn good_greengrass_v1() {
        let config = good("greengrass-v1.json");
        assert_eq!(config.thing_name(), "MyGreengrassCore");
        assert_eq!(config.region(), "eu-west-1");
        assert_eq!(config.account(), "123456789012");
        assert_eq!(
            config.core_thing.iot_host.as_deref(),
            Some("abcdefexample-ats.iot.eu-west-1.amazonaws.com")
        );
        assert_eq!(config.core_thing.iot_mqtt_port, 443);
        assert_eq!(config.core_thing.keep_alive, 300);
        assert!(config.allow_root());
        assert_eq!(config.runtime.max_concurrent_limit, 10);
        assert_eq!(config.write_dir(), Path::new("/var/greengrass-write"));
        assert_eq!(config.log_dir(), Path::new("/var/greengrass-write/var/log"));
        assert_eq!(
            config.ca_path(),
            Some(PathBuf::from("/var/lib/evergreen/certs/root.ca.pem"))
        );
        assert_eq!(
            config.key_path(),
            Some(PathBuf::from("/greengrass/certs/abcd1234.private.key"))
        );
        assert_eq!(
            config.mqtt_tls_addr(),
            "0.0.0.0:8884".parse().expect("addr")
        );
        assert_eq!(
            config.ignored_keys(),
            vec![
                "crypto",
                "managedRespawn",
                "pidFileDirectory",
                "coreThing.ggHost",
                "coreThing.iotHttpPort",
                "coreThing.ggHttpPort",
                "coreThing.systemComponentAuthTimeout",
                "coreThing.networkProxy",
                "runtime.lruSize",
                "runtime.mountAllBlockDevices",
                "runtime.cgroup",
            ]
        );
    }

    #[test]
    fn good_evergreen_full() {
        let config = good("evergreen-full.json");
        let eg = &config.evergreen;
        assert_eq!(config.root(), Path::new("/opt/evergreen"));
        assert_eq!(
            config.control_socket(),
            Path::new("/run/evergreen/control.sock")
        );
        assert_eq!(eg.max_frame_bytes, 65_536);
        assert_eq!(eg.queue_capacity, 64);
        assert_eq!(eg.readiness_timeout_ms, 3_000);
        assert_eq!(eg.shutdown_grace_ms, 1_000);
        assert_eq!(eg.term_grace_ms, 500);
        assert_eq!(
            eg.restart,
            Restart {
                initial_backoff_ms: 100,
                max_backoff_ms: 10_000,
                multiplier: 1.5,
                jitter: 0.0,
                reset_after_ms: 30_000,
                policy: RestartPolicy::OnFailure,
                crash_loop_limit: 3,
                crash_loop_window_ms: 60_000,
                failed_cooldown_ms: 120_000,
            }
        );
        let never = &eg.components["modbus"].restart;
        assert_eq!(never.policy, Some(RestartPolicy::Never));
        let merged = eg.restart.with(never);
        assert_eq!(merged.policy, RestartPolicy::Never);
        assert_eq!(
            merged.initial_backoff_ms, 100,
            "unset keys keep the global value"
        );
        let f = &eg.components["arn:aws:lambda:us-east-1:123456789012:function:f:1"].restart;
        assert_eq!(eg.restart.with(f).max_backoff_ms, 60_000);
        assert_eq!(
            config.mqtt_tls_addr(),
            "192.0.2.10:8443".parse().expect("addr")
        );
        assert_eq!(
            config.mqtt_plain_addr(),
            Some("127.0.0.1:1884".parse().expect("addr"))
        );
        assert_eq!(eg.spooler.storage_type, StorageType::Memory);
        assert_eq!(eg.spooler.max_size_bytes, 262_144);
        assert_eq!(eg.secret_name_prefix, "");
        assert!(!eg.log_to_stderr);
        assert_eq!(eg.log_level, Some(crate::RuntimeLogLevel::Warn));
        assert_eq!(
            eg.metrics_address,
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
        assert_eq!(
            eg.metrics_upstream,
            Some(crate::MetricsUpstream {
                topic: "evergreen/gw-1/metrics".into(),
                interval_secs: 30
            })
        );
        assert!(config.ignored_keys().is_empty());
    }

    #[test]
    fn good_ephemeral_ports() {
        let config = good("ephemeral-ports.json");
        assert_eq!(config.mqtt_tls_addr().port(), 0);
        assert_eq!(config.mqtt_plain_addr().map(|a| a.port()), Some(0));
    }

    #[test]
    fn good_status_page_with_a_token_on_every_address() {
        let config = good("status-page.json");
        let page = config.evergreen.status_page.as_ref().expect("statusPage");
        assert_eq!(page.address, "0.0.0.0:8765".parse().expect("addr"));
        assert_eq!(page.token.as_deref(), Some("field-tech-0123456789"));
        assert_eq!(page.sample_secs, 2);
        // The effective configuration never carries the token.
        let shown = serde_json::to_string(&config).expect("serialize");
        assert!(!shown.contains("field-tech-0123456789"), "{shown}");
        assert!(shown.contains(r#""token":"<redacted>""#), "{shown}");
        let debug = format!("{config:?}");
        assert!(!debug.contains("field-tech-0123456789"), "{debug}");
    }

    // ---- bad fixtures, one test each ----

    #[test]
    fn bad_status_page_public_without_token() {
        let err = bad("status-page-public-without-token.json");
        let errors = invalid(&err);
        assert!(
            errors.iter().any(|e| e.starts_with(
                "evergreen.statusPage.token: required when evergreen.statusPage.address (0.0.0.0:8765) is not a loopback address"
            )),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_status_page_token_and_interval() {
        let err = bad("status-page-bad-token.json");
        let errors = invalid(&err);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("evergreen.statusPage.token: must be 16 to 256")),
            "{errors:?}"
        );
        assert!(
            errors.iter().all(|e| !e.contains("short;secret")),
            "the token is not echoed: {errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("evergreen.statusPage.sampleSecs: must be between 1 and 60")),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_not_json() {
        let err = bad("not-json.json");
        match &err {
            ConfigError::Parse { message, .. } => assert!(message.contains("line 4"), "{message}"),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    /// An operator fixing a file sees every key at fault at once, not one per run.
    #[test]
    fn bad_keys_are_all_listed() {
        let err = bad("three-mistakes.json");
        let ConfigError::Parse {
            json_path,
            message,
            more,
            ..
        } = &err
        else {
            panic!("expected a parse error, got {err:?}");
        };
        assert_eq!(json_path, "coreThing.keepAlive");
        assert!(message.contains("line 2"), "{message}");
        let more: Vec<&str> = more
            .iter()
            .map(|e| e.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(more, ["coreThing.thingNme", "evergreen.logLevl"], "{err}");
        let text = err.to_string();
        assert!(
            text.contains("and also:\n  - coreThing.thingNme: unknown member"),
            "{text}"
        );
    }

    #[test]
    fn bad_not_an_object() {
        let err = bad("not-an-object.json");
        assert_eq!(parse_path(&err), ".");
    }

    #[test]
    fn bad_section_is_array() {
        let err = bad("section-is-array.json");
        assert_eq!(parse_path(&err), "evergreen.restart");
        assert!(
            err.to_string()
                .contains("expected an object, found an array"),
            "{err}"
        );
    }

    // The sections below were not in the hand-kept list of sections checked for arrays, so
    // each loaded: the override's keys taken by position, the default identity set to root,
    // the static credentials set.
    #[test]
    fn bad_component_override_is_array() {
        let err = bad("component-override-is-array.json");
        assert_eq!(parse_path(&err), "evergreen.components.modbus.restart");
    }

    #[test]
    fn bad_default_run_as_is_array() {
        let err = bad("default-run-as-is-array.json");
        assert_eq!(parse_path(&err), "evergreen.defaultRunAs");
    }

    #[test]
    fn bad_aws_credentials_is_array() {
        let err = bad("aws-credentials-is-array.json");
        assert_eq!(parse_path(&err), "evergreen.aws.credentials");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn bad_duplicate_key() {
        let err = bad("duplicate-key.json");
        // The path names the repeated key; the message says it and gives the line.
        assert_eq!(parse_path(&err), "coreThing.keepAlive");
        assert!(
            err.to_string().contains("duplicate key `keepAlive`"),
            "{err}"
        );
        assert!(err.to_string().contains("line 4"), "{err}");
    }

    #[test]
    fn bad_duplicate_component() {
        // A map keeps the last of two equal keys: `never` was silently replaced by `always`.
        let err = bad("duplicate-component.json");
        assert_eq!(parse_path(&err), "evergreen.components.modbus");
        assert!(err.to_string().contains("duplicate key `modbus`"), "{err}");
    }

    #[test]
    fn bad_policy_as_object() {
        // serde alone reads `{"never": null}` as `"never"`.
        let err = bad("policy-as-object.json");
        assert_eq!(parse_path(&err), "evergreen.restart.policy.never");
        assert!(
            err.to_string()
                .contains("expected a string, found an object"),
            "{err}"
        );
    }

    #[test]
    fn bad_trailing_garbage() {
        let err = bad("trailing-garbage.json");
        assert_eq!(parse_path(&err), ".");
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn bad_unknown_top_level_key() {
        let err = bad("unknown-top-level-key.json");
        assert_eq!(parse_path(&err), "evergren");
        assert!(
            err.to_string().contains(r#"unknown member "evergren""#),
            "{err}"
        );
    }

    #[test]
    fn bad_unknown_nested_key() {
        let err = bad("unknown-nested-key.json");
        assert_eq!(parse_path(&err), "evergreen.restart.maxBackoff");
        assert!(
            err.to_string().contains(r#"unknown member "maxBackoff""#),
            "{err}"
        );
    }

    #[test]
    fn bad_wrong_type() {
        let err = bad("wrong-type.json");
        assert_eq!(parse_path(&err), "coreThing.keepAlive");
    }

    #[test]
    fn bad_allow_root_not_yes_no() {
        let err = bad("allow-root-not-yes-no.json");
        assert_eq!(parse_path(&err), "runtime.allowFunctionsToRunAsRoot");
    }

    #[test]
    fn bad_metrics_upstream_topic_and_interval() {
        let err = bad("metrics-upstream-wildcard.json");
        let errors = invalid(&err);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("evergreen.metricsUpstream.topic: must be a topic")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("evergreen.metricsUpstream.intervalSecs")),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_log_level_unknown() {
        let err = bad("log-level-unknown.json");
        assert_eq!(parse_path(&err), "evergreen.logLevel");
    }

    #[test]
    fn bad_storage_type_unknown() {
        let err = bad("storage-type-unknown.json");
        assert_eq!(parse_path(&err), "evergreen.spooler.storageType");
    }

    #[test]
    fn bad_listener_address_not_ip() {
        let err = bad("listener-address-not-ip.json");
        assert_eq!(parse_path(&err), "evergreen.listeners.mqttTls.address");
    }

    #[test]
    fn bad_port_out_of_range() {
        let err = bad("port-out-of-range.json");
        assert_eq!(parse_path(&err), "coreThing.ggMqttPort");
    }
}
