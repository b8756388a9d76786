//! Retained messages (MQTT 3.1.1 and 5, §3.3.1.3): the last retained PUBLISH per topic with
//! the device that sent it, bounded, durable in the session store, and handed to a new
//! subscription only if the group routes that device's topic to the subscribing device at that
//! moment.
//!
//! # Choices
//!
//! * **Authorization at delivery time.** A retained message is kept only when its publish was
//!   authorized (some subscription of the group accepts the topic from that device), and it
//!   keeps its source. A later SUBSCRIBE gets it only if the deployed group routes (source,
//!   topic) to the subscriber then: a deployment that removes the route also stops the retained
//!   message, and a device never learns through a retained message what the group would not
//!   send it live.
//! * **Bounds**: at most [`MAX_RETAINED`] topics and [`MAX_RETAINED_BYTES`] bytes (topic, source
//!   and payload). A retained publish for a new topic past either bound is routed live as any
//!   publish but not kept (counted as *retained full*, logged); replacing or clearing a topic's
//!   message always works.
//! * **Durability**: each change is handed to the session store's writer (`sessions`, table
//!   `retained`), committed with an fsync in its next batch; a restart or `kill -9` keeps what
//!   was committed. MQTT 5 properties are kept with the message, and an expired message is
//!   neither delivered nor kept (MQTT-3.3.2-5).
//! * An empty payload clears the topic's message (MQTT-3.3.1-10) and is routed live as usual.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use evergreen_runtime::router::{Message, Meta};

use crate::record::{self, Reader};

use crate::filter::mqtt_matches;
use crate::sessions::{unix_now, SessionStore};

/// Topics with a retained message, at most.
pub(crate) const MAX_RETAINED: usize = 10_000;

/// Bytes (topic, source, payload) of all retained messages, at most.
pub(crate) const MAX_RETAINED_BYTES: usize = 16 << 20;

/// The retained messages: in memory, and in the session store once it is set.
#[derive(Debug, Default)]
pub(crate) struct Retained {
    inner: Mutex<Inner>,
    store: OnceLock<Arc<SessionStore>>,
}

#[derive(Debug, Default)]
struct Inner {
    by_topic: BTreeMap<Arc<str>, Message>,
    bytes: usize,
}

/// A retained message for a new topic was not kept: the bounds are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetainedFull;

fn cost(msg: &Message) -> usize {
    msg.topic.len() + msg.source.len() + msg.payload.len()
}

impl Retained {
    /// Takes the messages the store held at start-up (at most the bounds; an expired or
    /// unreadable one is deleted). Returns how many were kept and how many were dropped.
    pub(crate) fn restore(
        &self,
        store: Arc<SessionStore>,
        rows: Vec<(String, Vec<u8>)>,
    ) -> (usize, usize) {
        let mut dropped = 0;
        {
            let mut inner = self.lock();
            let now = unix_now();
            for (topic, bytes) in rows {
                let keep = decode(&topic, &bytes).filter(|m| {
                    !expired(m, now)
                        && inner.by_topic.len() < MAX_RETAINED
                        && inner.bytes + cost(m) <= MAX_RETAINED_BYTES
                });
                match keep {
                    Some(msg) => {
                        inner.bytes += cost(&msg);
                        inner.by_topic.insert(msg.topic.clone(), msg);
                    }
                    None => {
                        dropped += 1;
                        store.set_retained(&topic, None);
                    }
                }
            }
        }
        let kept = self.lock().by_topic.len();
        if self.store.set(store).is_err() {
            tracing::error!(
                "MQTT: the retained messages were restored twice; the second is ignored"
            );
        }
        (kept, dropped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `msg` as its topic's retained message, or clears the topic (empty payload).
    pub(crate) fn set(&self, msg: Message) -> Result<(), RetainedFull> {
        let topic = msg.topic.clone();
        let value = {
            let mut inner = self.lock();
            let old = inner.by_topic.get(&topic).map(cost).unwrap_or(0);
            if msg.payload.is_empty() {
                if inner.by_topic.remove(&topic).is_none() {
                    return Ok(());
                }
                inner.bytes -= old;
                None
            } else {
                let new_topic = old == 0 && !inner.by_topic.contains_key(&topic);
                let bytes = inner.bytes - old + cost(&msg);
                if bytes > MAX_RETAINED_BYTES || (new_topic && inner.by_topic.len() >= MAX_RETAINED)
                {
                    return Err(RetainedFull);
                }
                inner.bytes = bytes;
                let value = encode(&msg);
                inner.by_topic.insert(topic.clone(), msg);
                Some(value)
            }
        };
        // Outside the lock: this may wait (bounded) for room in the store's hand-off.
        if let Some(store) = self.store.get() {
            store.set_retained(&topic, value);
        }
        Ok(())
    }

    /// The retained messages whose topic `filter` matches (MQTT's rules), oldest topic order;
    /// expired ones are dropped on the way.
    pub(crate) fn matching(&self, filter: &str) -> Vec<Message> {
        let now = unix_now();
        let mut gone = Vec::new();
        let found = {
            let inner = self.lock();
            inner
                .by_topic
                .values()
                .filter(|m| mqtt_matches(filter, &m.topic))
                .filter(|m| {
                    let dead = expired(m, now);
                    if dead {
                        gone.push(m.topic.clone());
                    }
                    !dead
                })
                .cloned()
                .collect()
        };
        for topic in gone {
            let _ = self.set(Message {
                topic,
                payload: Arc::from(&[][..]),
                source: Arc::from(""),
                meta: Meta::default(),
                route: 0,
            });
        }
        found
    }

    /// Topics with a retained message now.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_topic.len()
    }
}

fn expired(msg: &Message, now: u64) -> bool {
    msg.meta
        .props
        .as_ref()
        .and_then(|p| p.expires_at)
        .is_some_and(|at| at <= now)
}

/// Version of the stored form (its first byte).
const FORMAT: u8 = 1;

/// `[FORMAT][meta][source][payload]` (meta and strings as `record` writes them). The topic is
/// the row's key.
fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + msg.source.len() + msg.payload.len());
    out.push(FORMAT);
    record::put_meta(&mut out, &msg.meta);
    record::put(&mut out, msg.source.as_bytes());
    out.extend_from_slice(&msg.payload);
    out
}

fn decode(topic: &str, bytes: &[u8]) -> Option<Message> {
    let mut r = Reader::new(bytes);
    if r.byte()? != FORMAT {
        return None;
    }
    let mut meta = record::read_meta(&mut r)?;
    meta.retain = true;
    let source = r.string()?;
    Some(Message {
        topic: Arc::from(topic),
        payload: Arc::from(r.rest()),
        source: Arc::from(source.as_str()),
        meta,
        route: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_runtime::router::PublishProps;

    fn msg(topic: &str, payload: &[u8]) -> Message {
        Message {
            topic: Arc::from(topic),
            payload: Arc::from(payload),
            source: Arc::from("arn:aws:iot:us-east-1:123456789012:thing/s"),
            meta: Meta {
                at_most_once: false,
                exactly_once: false,
                retain: true,
                props: None,
            },
            route: 0,
        }
    }

    #[test]
    fn the_stored_form_round_trips_and_rejects_garbage() {
        let mut m = msg("t/1", b"hello");
        assert_eq!(decode("t/1", &encode(&m)), Some(m.clone()));
        m.meta.exactly_once = true;
        m.meta.props = Some(Arc::new(PublishProps {
            user: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            response_topic: Some("r".into()),
            correlation_data: Some(vec![0, 1, 2]),
            content_type: Some("text/plain".into()),
            utf8_payload: Some(true),
            expires_at: Some(1_900_000_000),
        }));
        assert_eq!(decode("t/1", &encode(&m)), Some(m.clone()));
        let bytes = encode(&m);
        for cut in 0..bytes.len() - m.payload.len() {
            assert_eq!(decode("t/1", &bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode("t/1", &[9, 0, 0, 0]), None, "another format");
    }

    #[test]
    fn last_per_topic_empty_clears_and_bounds_hold() {
        let r = Retained::default();
        assert_eq!(r.set(msg("a/1", b"x")), Ok(()));
        assert_eq!(r.set(msg("a/1", b"y")), Ok(()));
        assert_eq!(r.set(msg("a/2", b"z")), Ok(()));
        let got: Vec<_> = r
            .matching("a/#")
            .iter()
            .map(|m| m.payload.to_vec())
            .collect();
        assert_eq!(got, [b"y".to_vec(), b"z".to_vec()]);
        assert_eq!(r.set(msg("a/1", b"")), Ok(()));
        assert_eq!(r.len(), 1);
        assert!(r.matching("#").iter().all(|m| &*m.topic == "a/2"));
        // Bytes: a message as large as the whole budget does not fit.
        let huge = vec![b'h'; MAX_RETAINED_BYTES];
        assert_eq!(r.set(msg("b", &huge)), Err(RetainedFull));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn the_topic_bound_refuses_only_new_topics() {
        let r = Retained::default();
        for i in 0..MAX_RETAINED {
            assert_eq!(r.set(msg(&format!("t/{i}"), b"v")), Ok(()));
        }
        assert_eq!(r.set(msg("t/new", b"v")), Err(RetainedFull));
        assert_eq!(r.set(msg("t/0", b"replaced")), Ok(()), "replacing works");
        assert_eq!(r.set(msg("t/1", b"")), Ok(()), "clearing works");
        assert_eq!(r.set(msg("t/new", b"v")), Ok(()), "room again");
    }

    #[test]
    fn an_expired_message_is_not_delivered() {
        let r = Retained::default();
        let mut m = msg("e", b"old");
        m.meta.props = Some(Arc::new(PublishProps {
            expires_at: Some(unix_now() - 1),
            ..PublishProps::default()
        }));
        assert_eq!(r.set(m), Ok(()));
        assert!(r.matching("e").is_empty());
        assert_eq!(r.len(), 0, "and it is dropped");
    }
}
