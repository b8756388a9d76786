//! The runtime configuration parser (`evergreen_config::load_str`, what `load` runs on the
//! text of `config.json`): arbitrary text under three environments (root, a user with
//! `XDG_DATA_HOME`, a user with neither variable). A configuration that loads must keep the
//! promises the table of `evergreen_config` makes: an absolute root, a control socket path
//! a Unix socket can bind, a frame limit inside the codec's bounds.

#![no_main]

use std::path::{Path, PathBuf};

use evergreen_config::{load_str, ConfigEnv, MAX_SOCKET_PATH};
use evergreen_ipc::codec::MAX_FRAME_LIMIT;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let envs = [
        ConfigEnv {
            uid: 0,
            xdg_data_home: None,
            home: Some(PathBuf::from("/root")),
        },
        ConfigEnv {
            uid: 1000,
            xdg_data_home: Some(PathBuf::from("/home/eg/.local/share")),
            home: Some(PathBuf::from("/home/eg")),
        },
        ConfigEnv {
            uid: 1000,
            xdg_data_home: None,
            home: None,
        },
    ];
    for env in &envs {
        let Ok(config) = load_str(text, Path::new("/etc/evergreen/config.json"), env) else {
            continue;
        };
        assert!(config.root().is_absolute(), "root {:?}", config.root());
        assert!(
            config.write_dir().is_absolute(),
            "writeDirectory {:?}",
            config.write_dir()
        );
        let socket = config.control_socket();
        assert!(
            socket.is_absolute() && socket.as_os_str().len() <= MAX_SOCKET_PATH,
            "control socket {socket:?}"
        );
        let frame = config.evergreen.max_frame_bytes;
        assert!(
            (1024..=MAX_FRAME_LIMIT).contains(&frame),
            "maxFrameBytes {frame}"
        );
        // Every accessor the CLI maps from must answer without panicking.
        let _ = (config.thing_name(), config.region(), config.account());
        let _ = (
            config.mqtt_tls_addr(),
            config.mqtt_plain_addr(),
            config.log_dir(),
        );
        let _ = (config.ca_path(), config.cert_path(), config.key_path());
        let _ = (config.allow_root(), config.ignored_keys());
    }
});
