//! Evergreen's supervisor: everything the `evergreen` binary does, as a library.
//!
//! Data flow (see ARCHITECTURE.md): a group file is parsed and validated
//! ([`group`]) into a [`group::plan::GroupPlan`]; the [`supervisor`] actor
//! starts one [`component`] actor per connector or function, each of which
//! spawns its child through a [`sandbox`] and speaks the stdio protocol of
//! `evergreen-ipc` with it; every publish enters the [`router`], which
//! delivers along subscriptions into per-target bounded queues. [`logs`]
//! writes the per-component and runtime log files; [`config`] is the core
//! configuration; [`run`] wires it together for [`cli`]. [`store`] keeps
//! validated groups as immutable, content-addressed versions for deployments.
//! [`control`] serves the control socket that `evergreen status` talks to;
//! [`tail`] is `evergreen logs`, which finds a log file through it.
//! [`lambda`] is the Lambda IPC endpoint and Python runtime that let
//! Greengrass V1 Python functions run unmodified. [`secrets`] keeps the
//! group's secret resources, encrypted, and answers components' requests.

pub mod aws;
pub mod catalogue;
pub mod check;
pub mod cli;
pub mod component;
pub mod config;
pub mod control;
pub mod deploy;
pub mod group;
pub mod lambda;
pub mod logs;
pub mod mqtt;
pub mod notify;
pub mod redb_file;
pub mod router;
pub mod run;
pub mod sandbox;
pub mod secrets;
pub mod shadow;
pub mod spool;
pub mod store;
pub mod supervisor;
pub mod tail;

/// Exit status for an invalid configuration or group (`EX_CONFIG`): the
/// systemd unit lists it in `RestartPreventExitStatus=`, since restarting
/// cannot fix it.
pub const EXIT_CONFIG: u8 = 78;
/// Exit status for a command-line mistake (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
