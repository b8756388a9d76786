//! Stdio IPC between the Evergreen supervisor and its components.
//!
//! This crate is what a connector or a function links against: the frame
//! codec ([`codec`]), the messages ([`message`]), role-specific senders and
//! the version handshake ([`link`]), the child-side SDK ([`sdk`]), topic
//! rules shared by router and validation ([`topic`]) and the connector
//! manifest type ([`manifest`]). It must never depend on actix or ntex: any
//! third-party component has to be able to use it.

pub mod codec;
pub mod link;
pub mod manifest;
pub mod message;
pub mod pipe;
pub mod sdk;
pub mod topic;

pub use codec::{FrameError, FrameReader, FrameWriter, DEFAULT_MAX_FRAME};
pub use message::{
    AwsCredentials, ComponentConfig, ComponentKind, Delivery, FromChild, Invocation, InvokeOutcome,
    LogLevel, ResourceGrant, SecretValue, ShadowOp, ToChild, PROTOCOL_VERSION,
};
