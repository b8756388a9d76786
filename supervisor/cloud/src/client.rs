//! A plain MQTT 3.1.1 connection for commands run by hand or by a script (the operator's
//! `evergreen fleet` commands): connect with a clean session (TLS with a client certificate, or
//! plain TCP), subscribe, publish retained, and read what arrives. The bridge's own connection
//! is [`crate::bridge`]'s; this one shares only how a connection is made.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ntex::service::fn_service;
use ntex::util::{ByteString, Bytes};
use ntex_mqtt::v3;
use ntex_mqtt::v3::client::{ProtocolMessage, ProtocolMessageAck};

use crate::bridge::{dial, tls_config, TlsFiles};

/// Where to connect, and as whom.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// `None` = plain TCP.
    pub tls: Option<TlsFiles>,
}

impl Endpoint {
    /// `mqtt://host[:port]` (plain, 1883) or `mqtts://host[:port]` (TLS, 8883; `tls` must then
    /// name the files).
    pub fn parse(url: &str, client_id: &str, tls: Option<TlsFiles>) -> Result<Endpoint, String> {
        let (secure, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(format!(
                "{url:?}: expected mqtt://host[:port] or mqtts://host[:port]"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url:?}: {p:?} is not a port"))?,
            ),
            None => (rest, if secure { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        if secure && tls.is_none() {
            return Err(format!(
                "{url:?}: mqtts needs the CA, certificate and key files"
            ));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
            client_id: client_id.to_string(),
            tls: if secure { tls } else { None },
        })
    }
}

/// What [`Connection::next_until`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Message(String, Vec<u8>),
    /// Nothing came in time.
    Timeout,
    /// The connection is gone.
    Closed,
}

/// An open connection: a sink to publish and subscribe with, and what arrives.
pub struct Connection {
    sink: v3::MqttSink,
    messages: tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// Runs `future` to its end on a new ntex system (the client's runtime) on this thread.
pub fn block_on<F: Future + 'static>(future: F) -> F::Output
where
    F::Output: 'static,
{
    ntex::rt::System::build()
        .name("evergreen-client")
        .disable_signals()
        .build(ntex::rt::DefaultRuntime)
        .block_on(future)
}

/// Waits `d` on the client's runtime (inside [`block_on`]).
pub async fn sleep(d: Duration) {
    ntex::time::sleep(d).await;
}

/// Connects; every later call waits at most `timeout` for its answer.
pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Connection, String> {
    let tls = match &endpoint.tls {
        Some(files) => Some(Arc::new(
            tls_config(files, endpoint.port).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let client = dial(
        &endpoint.host,
        endpoint.port,
        &endpoint.client_id,
        60,
        tls.as_ref(),
        timeout,
    )
    .await
    .map_err(|e| format!("{}:{}: {e}", endpoint.host, endpoint.port))?;
    let sink = client.sink();
    let (tx, messages) = tokio::sync::mpsc::unbounded_channel();
    ntex::rt::spawn(async move {
        let handler = fn_service(move |msg: ProtocolMessage| {
            let tx = tx.clone();
            async move {
                if let ProtocolMessage::Publish(p) = &msg {
                    let topic = p.packet().topic.to_string();
                    if let Ok(payload) = p.read_all().await {
                        let _ = tx.send((topic, payload.to_vec()));
                    }
                }
                Ok::<ProtocolMessageAck, ()>(msg.ack())
            }
        });
        let _ = client.start(handler).await;
    });
    Ok(Connection {
        sink,
        messages,
        timeout,
    })
}

impl Connection {
    /// Subscribes to `filters` with QoS 1; an error names a refused one.
    pub async fn subscribe(&self, filters: &[String]) -> Result<(), String> {
        let mut builder = self.sink.subscribe();
        for f in filters {
            builder = builder.topic_filter(ByteString::from(f.as_str()), v3::QoS::AtLeastOnce);
        }
        let codes = ntex::time::timeout(self.timeout, builder.send())
            .await
            .map_err(|_| "no SUBACK in time".to_string())?
            .map_err(|e| format!("SUBSCRIBE: {e:?}"))?;
        for (f, code) in filters.iter().zip(codes) {
            if matches!(code, v3::codec::SubscribeReturnCode::Failure) {
                return Err(format!("the broker refused the subscription to {f:?}"));
            }
        }
        Ok(())
    }

    /// Publishes `payload` on `topic`, retained, QoS 1; waits for the PUBACK.
    pub async fn publish_retained(&self, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        let send = self
            .sink
            .publish(ByteString::from(topic))
            .retain()
            .send_at_least_once(Bytes::from(payload));
        ntex::time::timeout(self.timeout, send)
            .await
            .map_err(|_| format!("no PUBACK for {topic:?} in time"))?
            .map_err(|e| format!("publish to {topic:?}: {e:?}"))
    }

    /// The next message before `until`.
    pub async fn next_until(&mut self, until: Instant) -> Next {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            return Next::Timeout;
        };
        match ntex::time::timeout(left, self.messages.recv()).await {
            Ok(Some((topic, payload))) => Next::Message(topic, payload),
            Ok(None) => Next::Closed,
            Err(_) => Next::Timeout,
        }
    }

    /// Sends DISCONNECT.
    pub fn close(&self) {
        self.sink.close();
    }
}
