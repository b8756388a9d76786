//! Shared subscriptions (MQTT 5 §4.8.2, accepted from MQTT 3.1.1 clients too, as mosquitto
//! does): `$share/{ShareName}/{filter}` subscriptions with the same share name and filter form
//! a group, and each message the group's filter matches goes to one of its members.
//!
//! # Choices
//!
//! * **Authorized by their filter**: a shared subscription is granted when its filter would be
//!   (the group routes something it matches to the device); a member gets only messages the
//!   group routes to it, so the member chosen for a message is one the router offers it to.
//! * **Which member**: round robin over the members the router routes the message to, in the
//!   order they joined, offline persistent members included (their copy queues, as for any
//!   QoS 1 delivery). The router offers one message to each of its targets in turn; the first
//!   member offered a message picks the member for it, and the others follow that pick
//!   (recognised by the message's `route` number, which every copy of one routed message
//!   shares and no other routed message has).
//! * **Membership** follows SUBSCRIBE and UNSUBSCRIBE; a session that ended (its object
//!   dropped) leaves by itself (members are held weakly). No retained message is sent for a
//!   new shared subscription (MQTT 5 §4.8.2: retained messages are not sent to shared ones).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use evergreen_runtime::router::{Message, Router};

/// Picks remembered per group: enough for the copies of a message still being offered while
/// other messages are routed on other threads.
const RECENT: usize = 64;

/// The shared subscription groups of the server.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Weak: the router holds the sessions' sinks, the sessions hold this (a strong reference
    /// here would make a cycle that outlives the hub).
    router: Weak<Router>,
    groups: Mutex<HashMap<String, Group>>,
}

/// One group: its members (thing ARN, held weakly through a token the session owns) and the
/// recent picks.
#[derive(Debug, Default)]
struct Group {
    members: Vec<(Arc<str>, Weak<()>)>,
    next: usize,
    recent: VecDeque<(u64, Arc<str>)>,
}

impl Shared {
    pub(crate) fn new(router: &Arc<Router>) -> Shared {
        Shared {
            router: Arc::downgrade(router),
            groups: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `thing` (whose session holds `alive`) joins the group of the shared filter `key`.
    pub(crate) fn join(&self, key: &str, thing: &Arc<str>, alive: &Arc<()>) {
        let mut groups = self.lock();
        let group = groups.entry(key.to_owned()).or_default();
        group
            .members
            .retain(|(t, w)| t != thing && w.strong_count() > 0);
        group.members.push((thing.clone(), Arc::downgrade(alive)));
    }

    /// `thing` leaves the group of `key`.
    pub(crate) fn leave(&self, key: &str, thing: &str) {
        let mut groups = self.lock();
        if let Some(group) = groups.get_mut(key) {
            group.members.retain(|(t, _)| &**t != thing);
            if group.members.is_empty() {
                groups.remove(key);
            }
        }
    }

    /// Whether `thing` is the member of `key` that gets `msg`.
    pub(crate) fn picks(&self, key: &str, thing: &str, msg: &Message) -> bool {
        // Every copy of one routed message has the same route number.
        let token = msg.route;
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(key) else {
            return false;
        };
        if let Some((_, chosen)) = group.recent.iter().find(|(t, _)| *t == token) {
            return &**chosen == thing;
        }
        group.members.retain(|(_, w)| w.strong_count() > 0);
        let Some(router) = self.router.upgrade() else {
            return false;
        };
        let table = router.table();
        let mut targets = Vec::new();
        table.targets(&msg.source, &msg.topic, &mut targets);
        let eligible: Vec<&Arc<str>> = group
            .members
            .iter()
            .map(|(t, _)| t)
            .filter(|t| targets.iter().any(|i| table.target_name(*i) == &***t))
            .collect();
        if eligible.is_empty() {
            return false;
        }
        let chosen = eligible[group.next % eligible.len()].clone();
        group.next = group.next.wrapping_add(1);
        if group.recent.len() == RECENT {
            group.recent.pop_front();
        }
        group.recent.push_back((token, chosen.clone()));
        &*chosen == thing
    }
}
