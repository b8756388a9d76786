//! The connectors built into this `evergreen` binary.
//!
//! Each connector crate under `connectors/` contributes its manifest and its
//! entry point here, and nowhere else: validation learns about a connector
//! from [`registry`], and `evergreen connector <Name>` runs it through
//! [`run_connector`]. Adding a connector is one line in [`BUILTIN`] (and a
//! dependency in `Cargo.toml`).

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use evergreen_ipc::manifest::ConnectorManifest;
use evergreen_ipc::sdk::SdkError;

use evergreen_group::registry::ConnectorRegistry;

type ConnectorMain = fn() -> Pin<Box<dyn Future<Output = Result<(), SdkError>>>>;

/// A connector linked into this binary.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinConnector {
    pub manifest: &'static ConnectorManifest,
    pub main: ConnectorMain,
}

/// Every built-in connector.
pub static BUILTIN: &[BuiltinConnector] = &[
    BuiltinConnector {
        manifest: &evergreen_connector_heartbeat::MANIFEST,
        main: || Box::pin(evergreen_connector_heartbeat::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_message_log::MANIFEST,
        main: || Box::pin(evergreen_connector_message_log::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_device_defender::MANIFEST,
        main: || Box::pin(evergreen_connector_device_defender::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_modbus::MANIFEST,
        main: || Box::pin(evergreen_connector_modbus::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_modbus_tcp::MANIFEST,
        main: || Box::pin(evergreen_connector_modbus_tcp::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_ethernet_ip::MANIFEST,
        main: || Box::pin(evergreen_connector_ethernet_ip::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_serial_stream::MANIFEST,
        main: || Box::pin(evergreen_connector_serial_stream::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_raspberry_pi_gpio::MANIFEST,
        main: || Box::pin(evergreen_connector_raspberry_pi_gpio::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_ml_inference::IMAGE_CLASSIFICATION_ARMV7,
        main: || Box::pin(evergreen_connector_ml_inference::run_image_classification()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_ml_inference::IMAGE_CLASSIFICATION_AARCH64_JTX2,
        main: || Box::pin(evergreen_connector_ml_inference::run_image_classification()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_ml_inference::IMAGE_CLASSIFICATION_X86_64,
        main: || Box::pin(evergreen_connector_ml_inference::run_image_classification()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_ml_inference::OBJECT_DETECTION_ARMV7,
        main: || Box::pin(evergreen_connector_ml_inference::run_object_detection()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_ml_inference::OBJECT_DETECTION_AARCH64_JTX2,
        main: || Box::pin(evergreen_connector_ml_inference::run_object_detection()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_ml_inference::OBJECT_DETECTION_X86_64,
        main: || Box::pin(evergreen_connector_ml_inference::run_object_detection()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_ml_feedback::MANIFEST,
        main: || Box::pin(evergreen_connector_ml_feedback::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_docker_app::MANIFEST,
        main: || Box::pin(evergreen_connector_docker_app::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_twilio::MANIFEST,
        main: || Box::pin(evergreen_connector_twilio::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_splunk::MANIFEST,
        main: || Box::pin(evergreen_connector_splunk::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_servicenow::MANIFEST,
        main: || Box::pin(evergreen_connector_servicenow::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_sns::MANIFEST,
        main: || Box::pin(evergreen_connector_sns::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_iot_analytics::MANIFEST,
        main: || Box::pin(evergreen_connector_iot_analytics::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_kinesis_firehose::MANIFEST,
        main: || Box::pin(evergreen_connector_kinesis_firehose::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_cloudwatch_metrics::MANIFEST,
        main: || Box::pin(evergreen_connector_cloudwatch_metrics::run()),
    },
    BuiltinConnector {
        manifest: &evergreen_connector_sitewise::MANIFEST,
        main: || Box::pin(evergreen_connector_sitewise::run()),
    },
];

/// The manifests of the built-in connectors, for validation.
pub fn registry() -> ConnectorRegistry {
    ConnectorRegistry::new(BUILTIN.iter().map(|c| c.manifest).collect())
}

/// Why this host cannot run built-in connector `name`, for the connectors
/// that drive host software; `None` for every other. Deployment asks it for
/// each connector of a group (see `ValidationOptions::connector_unavailable`).
pub fn host_unavailable(name: &str) -> Option<String> {
    if name == evergreen_connector_docker_app::MANIFEST.name {
        return evergreen_connector_docker_app::host_unavailable();
    }
    None
}

/// Runs the built-in connector `name` over stdio (the child side of
/// `evergreen connector <Name>`).
pub fn run_connector(name: &str) -> ExitCode {
    let Some(connector) = BUILTIN.iter().find(|c| c.manifest.name == name) else {
        let names: Vec<&str> = BUILTIN.iter().map(|c| c.manifest.name).collect();
        eprintln!(
            "evergreen: no built-in connector named {name:?} (built-in: {})",
            names.join(", ")
        );
        return ExitCode::from(crate::EXIT_USAGE);
    };
    // One thread is plenty for a connector and keeps its footprint small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("evergreen: cannot start the connector runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on((connector.main)()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_group::registry::manifest_problems;

    #[test]
    fn every_built_in_manifest_is_sound() {
        let registry = registry();
        assert_eq!(
            registry.len(),
            BUILTIN.len(),
            "no two built-ins share a name"
        );
        for manifest in registry.iter() {
            assert_eq!(
                manifest_problems(manifest),
                Vec::<String>::new(),
                "{}",
                manifest.name
            );
        }
    }
}
