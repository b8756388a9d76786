//! Will messages (MQTT 3.1.1 and 5, §3.1.2.5): what a device's CONNECT asks the server to
//! publish on its behalf if the connection ends without a DISCONNECT.
//!
//! # Choices
//!
//! * **Authorized when it fires**, as a publish from that device at that moment: the will goes
//!   through the router with the device's thing ARN as source, so the deployed group decides
//!   who hears it, and a will to a topic no subscription accepts from the device is dropped and
//!   counted (*not authorized*), as any publish. Nothing is checked at CONNECT (the group may
//!   change before it fires).
//! * **When**: the connection ended without a DISCONNECT (network failure, keep-alive timeout,
//!   protocol error, a takeover by a new connection with the same client id, the device
//!   removed from the group) or with MQTT 5 reason 0x04 *Disconnect with Will Message*. A
//!   DISCONNECT otherwise withdraws it (MQTT-3.1.2-8, MQTT-3.1.2-10).
//! * **MQTT 5 Will Delay Interval**: the will waits that long, or until the session ends if
//!   that comes first (a clean session ends with its connection: at once); a new connection of
//!   the same session in the meantime cancels it (MQTT-3.1.3-9). A will still waiting when the
//!   runtime stops is not published (it is kept in memory only).
//! * Its QoS, RETAIN flag (kept as a retained message like any authorized retained publish)
//!   and MQTT 5 properties are those of the CONNECT.

use std::sync::Arc;

use ntex_mqtt::{v3, v5};

use evergreen_runtime::router::Meta;

use crate::meta;

/// A connection's will, as its CONNECT set it.
#[derive(Debug, Clone)]
pub(crate) struct Will {
    pub(crate) topic: String,
    pub(crate) payload: Arc<[u8]>,
    pub(crate) meta: Meta,
    /// MQTT 5 Will Delay Interval in seconds (0: none, and always for MQTT 3.1.1).
    pub(crate) delay_secs: u32,
}

impl Will {
    /// The will of an MQTT 3.1.1 CONNECT.
    pub(crate) fn from_v3(w: &v3::codec::LastWill) -> Will {
        Will {
            topic: w.topic.to_string(),
            payload: Arc::from(&w.message[..]),
            meta: meta::meta(w.qos, w.retain, None),
            delay_secs: 0,
        }
    }

    /// The will of an MQTT 5 CONNECT, with its properties (the message expiry interval counts
    /// from when the will is published: kept in seconds until then, see `Will::fired_meta`).
    pub(crate) fn from_v5(w: &v5::codec::LastWill) -> Will {
        let props = meta::props(
            &w.user_properties,
            w.response_topic.as_ref(),
            w.correlation_data.as_ref(),
            w.content_type.as_ref(),
            w.is_utf8_payload == Some(true),
            w.message_expiry_interval.map(|s| u64::from(s.get())),
        );
        Will {
            topic: w.topic.to_string(),
            payload: Arc::from(&w.message[..]),
            meta: meta::meta(w.qos, w.retain, props),
            delay_secs: w.will_delay_interval_sec.unwrap_or(0),
        }
    }

    /// The metadata to publish with, `now` (Unix seconds) being when it fires: the message
    /// expiry interval becomes a deadline from then.
    pub(crate) fn fired_meta(&self, now: u64) -> Meta {
        let mut meta = self.meta.clone();
        if let Some(props) = meta.props.as_mut() {
            if let Some(secs) = props.expires_at {
                Arc::make_mut(props).expires_at = Some(now.saturating_add(secs));
            }
        }
        meta
    }
}
