//! The `evergreen` binary as a library: the command line ([`cli`]) and the composition root:
//! [`app`] maps the core configuration onto each crate's own settings and loads groups, and
//! [`run`] starts the services around the core, deploys the first group and waits for a
//! signal. Also here: the built-in connector [`catalogue`], `evergreen logs` ([`tail`]) and
//! `evergreen function package` ([`package`]), the operator's health check ([`check`]), the
//! support bundle ([`bundle`]), the man pages and shell completions ([`docs`]), giving back the start-up code's pages once a run is up
//! ([`resident`]), and which release binary runs ([`launch`], [`gate`]). Every other crate of the workspace sits below this one.

pub mod app;
pub mod bundle;
pub mod catalogue;
pub mod check;
pub mod cli;
pub mod docs;
mod fleet;
mod gate;
pub mod launch;
pub mod logfilter;
pub mod package;
pub mod resident;
pub mod run;
pub mod tail;

/// Exit status for an invalid configuration or group (`EX_CONFIG`): the
/// systemd unit lists it in `RestartPreventExitStatus=`, since restarting
/// cannot fix it.
pub const EXIT_CONFIG: u8 = 78;
/// Exit status for a command-line mistake (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit status of an `evergreen run` refused because another runtime holds
/// the root (`EX_TEMPFAIL`): nothing was touched, and the same command works
/// once the other runtime stops.
pub const EXIT_LOCKED: u8 = 75;
/// Exit status of an `evergreen run` that stopped to be started again onto another runtime
/// release: the systemd unit lists it in `RestartForceExitStatus=` and `SuccessExitStatus=`.
pub const EXIT_RESTART: u8 = 80;
