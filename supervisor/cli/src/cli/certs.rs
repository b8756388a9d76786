//! `evergreen certs init|device`: the group CA, the local MQTT server's certificate and
//! device certificates. Making them belongs to `evergreen_mqtt::certs`; this module only
//! parses, prints the paths and picks exit codes.

use std::process::ExitCode;

use clap::Subcommand;

use super::{run_failed, StoreArgs};
use crate::app;

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the group CA (kept if it exists, unless --force) and a server
    /// certificate (ECDSA P-256) for localhost and each --host.
    Init {
        /// Another DNS name or IP address devices use to reach this gateway.
        #[arg(long, value_name = "NAME")]
        host: Vec<String>,
        /// Replace an existing CA (every device certificate must be issued again).
        #[arg(long)]
        force: bool,
        /// RSA 2048 keys instead of ECDSA P-256 (for devices without ECDSA).
        #[arg(long)]
        rsa: bool,
        /// Print `{"ca", "certificate", "key", "createdCa"}` (the files' paths).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Issue a device key and certificate whose subject CN is THING (its
    /// thing name, which is also its MQTT client id).
    Device {
        thing: String,
        /// An RSA 2048 key instead of ECDSA P-256.
        #[arg(long)]
        rsa: bool,
        /// Print `{"certificate", "key"}` (the files' paths).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn key_alg(rsa: bool) -> evergreen_mqtt::certs::KeyAlg {
    if rsa {
        evergreen_mqtt::certs::KeyAlg::Rsa2048
    } else {
        evergreen_mqtt::certs::KeyAlg::EcdsaP256
    }
}

/// `evergreen certs`: make the group CA, the server's and devices' certificates.
pub(super) fn command(command: CertsCommand) -> ExitCode {
    let (CertsCommand::Init { store, .. } | CertsCommand::Device { store, .. }) = &command;
    let cfg = match app::load_config(store.config.as_deref(), store.root.clone()) {
        Ok(cfg) => cfg,
        Err(e) => return run_failed(&e),
    };
    let root = cfg.root();
    let result = match command {
        CertsCommand::Init {
            host,
            force,
            rsa,
            json,
            ..
        } => evergreen_mqtt::certs::init_with(root, &host, force, key_alg(rsa)).map(|out| {
            if json {
                super::print_json(&serde_json::json!({
                    "ca": out.files.ca.display().to_string(),
                    "certificate": out.files.cert.display().to_string(),
                    "key": out.files.key.display().to_string(),
                    "createdCa": out.created_ca,
                }));
                return;
            }
            if !out.created_ca {
                println!("kept the existing group CA");
            }
            println!("CA: {}", out.files.ca.display());
            println!("server certificate: {}", out.files.cert.display());
            println!("server key: {}", out.files.key.display());
        }),
        CertsCommand::Device {
            thing, rsa, json, ..
        } => evergreen_mqtt::certs::device_with(root, &thing, key_alg(rsa)).map(|(cert, key)| {
            if json {
                super::print_json(&serde_json::json!({
                    "certificate": cert.display().to_string(),
                    "key": key.display().to_string(),
                }));
            } else {
                println!("certificate: {}", cert.display());
                println!("key: {}", key.display());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evergreen: {e}");
            ExitCode::from(1)
        }
    }
}
