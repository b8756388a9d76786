//! A device's publish metadata as the router carries it (`Meta`), built from either protocol
//! version's packets: a PUBLISH and a CONNECT's will map their QoS, RETAIN flag and MQTT 5
//! properties the same way.

use std::sync::Arc;

use ntex::util::{ByteString, Bytes};
use ntex_mqtt::v5::codec::UserProperties;
use ntex_mqtt::QoS;

use evergreen_runtime::router::{Meta, PublishProps};

/// The metadata of a message published at `qos` with `retain` and `props`.
pub(crate) fn meta(qos: QoS, retain: bool, props: Option<Arc<PublishProps>>) -> Meta {
    Meta {
        at_most_once: qos == QoS::AtMostOnce,
        exactly_once: qos == QoS::ExactlyOnce,
        retain,
        props,
    }
}

/// The MQTT 5 properties that travel with a message to its subscribers, or `None` when it has
/// none of them (the common case: nothing is allocated). `expiry` is the Message Expiry
/// Interval as the caller keeps it (a deadline for a publish, seconds for a will).
pub(crate) fn props(
    user: &UserProperties,
    response_topic: Option<&ByteString>,
    correlation_data: Option<&Bytes>,
    content_type: Option<&ByteString>,
    utf8_payload: bool,
    expiry: Option<u64>,
) -> Option<Arc<PublishProps>> {
    let none = user.is_empty()
        && response_topic.is_none()
        && correlation_data.is_none()
        && content_type.is_none()
        && !utf8_payload
        && expiry.is_none();
    if none {
        return None;
    }
    Some(Arc::new(PublishProps {
        user: user
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        response_topic: response_topic.map(ToString::to_string),
        correlation_data: correlation_data.map(|d| d.to_vec()),
        content_type: content_type.map(ToString::to_string),
        utf8_payload: utf8_payload.then_some(true),
        expires_at: expiry,
    }))
}
