//! The core of the runtime: the [`router`], the [`supervisor`] actor and one [`component`] actor
//! per connector or function, each of which spawns its child through a [`sandbox`] and speaks
//! the stdio protocol of `evergreen-ipc` (or, for a Python function, the [`lambda`] endpoint's
//! HTTP link); [`logs`] writes the per-component and runtime log files. The services around the
//! core (the MQTT server, the shadow service, the cloud bridge, the secret store) plug in
//! through the two traits of [`services`]; this crate names none of them.

pub mod component;
mod inflight;
pub mod lambda;
pub mod logs;
pub mod router;
pub mod sandbox;
pub mod services;
pub mod supervisor;
