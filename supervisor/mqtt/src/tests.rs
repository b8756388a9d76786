//! Unit tests of the hub (`MqttHub`, `DeviceSession`, `Setup`): sessions, queues,
//! drops and refusals, run against a real router without a network.

use std::collections::BTreeMap;

use super::*;
use crate::sessions::{Opened, SessionStore};
use evergreen_group::plan::{CoreSpec, DeviceSpec, LoggerPlan, SubscriptionSpec};
use evergreen_runtime::router::{Message, Router};
use evergreen_runtime::router::{Subscription, SubscriptionTable};
use std::sync::atomic::Ordering;

use crate::sessions::grant;
use evergreen_runtime::router::Meta;

fn may(hub: &MqttHub, thing: &str, filter: &str) -> bool {
    hub.may_subscribe(thing, filter).is_ok()
}

const DEV: &str = "arn:aws:iot:us-east-1:123456789012:thing/display-1";
const SENSOR: &str = "arn:aws:iot:us-east-1:123456789012:thing/sensor-1";
const FUNC: &str = "arn:aws:lambda:us-east-1:123456789012:function:cmd:1";

fn plan(devices: &[(&str, &str)], subs: &[(&str, &str, &str)]) -> GroupPlan {
    GroupPlan {
        core: CoreSpec {
            thing_arn: "arn:aws:iot:us-east-1:123456789012:thing/core".into(),
            thing_name: "core".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
            sync_shadow: false,
        },
        components: BTreeMap::new(),
        subscriptions: subs
            .iter()
            .enumerate()
            .map(|(i, (source, subject, target))| SubscriptionSpec {
                id: format!("s{i}"),
                source: (*source).into(),
                subject: (*subject).into(),
                target: (*target).into(),
            })
            .collect(),
        devices: devices
            .iter()
            .map(|(name, arn)| {
                (
                    (*arn).to_owned(),
                    DeviceSpec {
                        id: (*name).into(),
                        thing_arn: (*arn).into(),
                        thing_name: (*name).into(),
                        certificate_arn: String::new(),
                        sync_shadow: false,
                    },
                )
            })
            .collect(),
        resources: BTreeMap::new(),
        loggers: LoggerPlan::default(),
        stream_manager: None,
    }
}

fn hub_for(p: &GroupPlan) -> Arc<MqttHub> {
    let table = SubscriptionTable::build(
        p.subscriptions
            .iter()
            .map(|s| Subscription::new(&s.id, &s.source, &s.subject, &s.target)),
    )
    .expect("table");
    let hub = MqttHub::new(Arc::new(Router::new(table)), 16);
    hub.update_plan(p);
    hub
}

fn sample() -> GroupPlan {
    plan(
        &[("display-1", DEV), ("sensor-1", SENSOR)],
        &[
            (FUNC, "display/+/cmd", DEV),
            (SENSOR, "sensors/+/temp", DEV),
        ],
    )
}

#[test]
fn connect_checks_group_certificate_and_features() {
    let hub = hub_for(&sample());
    assert_eq!(
        hub.connect("ghost", None, true, false).err(),
        Some(Refusal::UnknownThing)
    );
    assert_eq!(
        hub.connect("display-1", Some(Some("sensor-1")), true, false)
            .err(),
        Some(Refusal::IdMismatch)
    );
    assert_eq!(
        hub.connect("display-1", Some(None), true, false).err(),
        Some(Refusal::NoCertificate)
    );
    assert!(hub
        .connect("display-1", Some(Some("display-1")), true, false)
        .is_ok());
    assert_eq!(hub.counters.connections_refused.load(Ordering::Relaxed), 3);
}

#[test]
fn subscribe_only_what_some_subscription_delivers() {
    let hub = hub_for(&sample());
    assert!(may(&hub, DEV, "display/#"));
    assert!(may(&hub, DEV, "sensors/kitchen/temp"));
    assert!(may(&hub, DEV, "#"));
    assert!(!may(&hub, DEV, "secret/#"));
    assert!(!may(&hub, DEV, "display/1/status"));
    assert!(!may(&hub, DEV, "display/#/x"), "invalid filter");
    // Nothing targets the sensor.
    assert!(!may(&hub, SENSOR, "display/#"));
    assert_eq!(hub.counters.subscribes_refused.load(Ordering::Relaxed), 4);
}

#[test]
fn publish_is_routed_or_dropped_and_counted() {
    let hub = hub_for(&sample());
    assert_eq!(
        hub.publish(SENSOR, "sensors/a/temp", b"1", Meta::default(), None),
        Ok(())
    );
    assert_eq!(
        hub.publish(SENSOR, "sensors/a/humidity", b"1", Meta::default(), None),
        Err(PublishRefusal::NotAuthorized)
    );
    assert_eq!(
        hub.publish(SENSOR, "sensors/+/temp", b"1", Meta::default(), None),
        Err(PublishRefusal::TopicInvalid)
    );
    let s = hub.snapshot();
    assert_eq!(
        (s.dropped_not_authorized, s.dropped_topic_invalid),
        (1, 1),
        "{s:?}"
    );
}

#[test]
fn persistent_session_queues_qos1_while_offline() {
    let hub = hub_for(&sample());
    let c = hub
        .connect("display-1", None, false, true)
        .expect("connect");
    assert!(!c.session_present);
    c.session.subscribe(grant("display/#", true));
    c.session.subscribe(grant("sensors/#", false));
    hub.disconnected(&c.session, c.conn_id);
    drop(c.rx);
    let router = hub.router();
    router
        .publish(FUNC, "display/1/cmd", Arc::from(&b"on"[..]))
        .expect("publish");
    // QoS 0 subscription: nothing is kept for an offline device.
    let out = router
        .publish(SENSOR, "sensors/a/temp", Arc::from(&b"20"[..]))
        .expect("publish");
    assert_eq!(out.closed, 1);
    let again = hub
        .connect("display-1", None, false, true)
        .expect("reconnect");
    assert!(again.session_present);
    let queued = again.session.take_offline();
    assert_eq!(queued.len(), 1);
    assert_eq!(&*queued[0].msg.topic, "display/1/cmd");

    // Bounded: past OFFLINE_QUEUE messages are dropped and counted.
    hub.disconnected(&again.session, again.conn_id);
    for _ in 0..OFFLINE_QUEUE + 5 {
        let _ = router.publish(FUNC, "display/1/cmd", Arc::from(&b"x"[..]));
    }
    assert_eq!(hub.counters.dropped_offline.load(Ordering::Relaxed), 5);

    // A clean connection discards the old session.
    let clean = hub.connect("display-1", None, true, false).expect("clean");
    assert!(!clean.session_present);
    assert!(clean.session.take_offline().is_empty());
}

/// A hub as `run.rs` makes it: the store restored before the first plan.
fn hub_with_store(p: &GroupPlan, path: &std::path::Path) -> (Arc<MqttHub>, Arc<SessionStore>) {
    let table = SubscriptionTable::build(
        p.subscriptions
            .iter()
            .map(|s| Subscription::new(&s.id, &s.source, &s.subject, &s.target)),
    )
    .expect("table");
    let hub = MqttHub::new(Arc::new(Router::new(table)), 16);
    let (store, stored) = SessionStore::open(path, OFFLINE_QUEUE)
        .map(Opened::pair)
        .expect("open store");
    hub.restore(store.clone(), stored, Vec::new());
    hub.update_plan(p);
    (hub, store)
}

fn cmd(hub: &MqttHub, i: usize) {
    hub.router()
        .publish(FUNC, &format!("display/{i}/cmd"), Arc::from(&b"x"[..]))
        .expect("publish");
}

fn topics(out: &[Outgoing]) -> Vec<String> {
    out.iter().map(|o| o.msg.topic.to_string()).collect()
}

#[test]
fn a_stored_session_comes_back_with_its_queue_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("mqtt/sessions.redb");
    let p = sample();
    {
        let (hub, store) = hub_with_store(&p, &path);
        let c = hub
            .connect("display-1", None, false, true)
            .expect("connect");
        c.session.subscribe(grant("display/#", true));
        hub.disconnected(&c.session, c.conn_id);
        for i in 0..5 {
            cmd(&hub, i);
        }
        assert!(store.close());
    }
    // The restart: the restored session is the router's sink again at once.
    let (hub, store) = hub_with_store(&p, &path);
    for i in 5..7 {
        cmd(&hub, i);
    }
    let c = hub
        .connect("display-1", None, false, true)
        .expect("reconnect");
    assert!(c.session_present, "a restored session is present");
    let queued = c.session.take_offline();
    let want: Vec<String> = (0..7).map(|i| format!("display/{i}/cmd")).collect();
    assert_eq!(topics(&queued), want);
    assert!(queued.iter().all(|o| o.qos1 && o.stored.is_some()));
    // Three acknowledged; one not (connection lost): it goes back, already stored.
    for out in &queued[..3] {
        c.session.acked(out);
    }
    let mut rest = queued.into_iter().skip(3);
    let unacked = rest.next().expect("fourth");
    c.session.requeue(unacked);
    // A live message the device did not acknowledge is stored when requeued.
    c.session.requeue(Outgoing {
        msg: Message {
            topic: Arc::from("display/9/cmd"),
            payload: Arc::from(&b"x"[..]),
            source: Arc::from(FUNC),
            meta: Default::default(),
            route: 0,
        },
        qos1: true,
        qos2: false,
        dup: true,
        retain: false,
        sub_ids: Vec::new(),
        stored: None,
    });
    hub.disconnected(&c.session, c.conn_id);
    assert!(store.close());
    drop(hub);

    let (_, found) = SessionStore::open(&path, OFFLINE_QUEUE)
        .map(Opened::pair)
        .expect("reopen");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].subs, vec![grant("display/#", true)]);
    let left: Vec<String> = found[0]
        .queued
        .iter()
        .map(|(_, m)| m.topic.to_string())
        .collect();
    // The requeued 4th keeps its place (its key); the others were never taken.
    assert_eq!(
        left,
        vec![
            "display/3/cmd",
            "display/4/cmd",
            "display/5/cmd",
            "display/6/cmd",
            "display/9/cmd"
        ]
    );
}

#[test]
fn clean_connects_and_new_plans_delete_stored_sessions() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("sessions.redb");
    let p = sample();
    {
        let (hub, store) = hub_with_store(&p, &path);
        let c = hub
            .connect("display-1", None, false, true)
            .expect("connect");
        c.session.subscribe(grant("display/#", true));
        hub.disconnected(&c.session, c.conn_id);
        cmd(&hub, 1);
        assert!(store.close());
    }
    {
        // Restored, then a plan without the device: deleted from the store.
        let (hub, store) = hub_with_store(&p, &path);
        hub.update_plan(&plan(&[("sensor-1", SENSOR)], &[]));
        assert!(store.close());
    }
    let (hub, store) = hub_with_store(&p, &path);
    let c = hub
        .connect("display-1", None, false, true)
        .expect("connect");
    assert!(!c.session_present, "the removed device's session is gone");
    c.session.subscribe(grant("display/#", true));
    hub.disconnected(&c.session, c.conn_id);
    cmd(&hub, 2);
    // A clean connect replaces the persistent session, in memory and on disk.
    let clean = hub.connect("display-1", None, true, false).expect("clean");
    assert!(clean.session.take_offline().is_empty());
    assert!(store.close());
    drop(hub);
    let (_, found) = SessionStore::open(&path, OFFLINE_QUEUE)
        .map(Opened::pair)
        .expect("reopen");
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn mqtt5_sessions_expire_after_their_interval_offline() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("sessions.redb");
    let p = sample();
    let (hub, store) = hub_with_store(&p, &path);
    let c = hub
        .connect("display-1", None, false, true)
        .expect("connect");
    c.session.set_expiry(60);
    c.session.subscribe(grant("display/#", true));
    hub.disconnected(&c.session, c.conn_id);
    cmd(&hub, 1);
    let since = c.session.lock().offline_since.expect("offline since");
    // Within the interval: kept; past it: the sweep ends it, in memory and in the store.
    hub.expire_sessions(since + 59);
    assert_eq!(c.session.lock().offline.len(), 1);
    hub.expire_sessions(since + 60);
    let again = hub
        .connect("display-1", None, false, true)
        .expect("reconnect");
    assert!(!again.session_present, "an expired session is not resumed");
    assert!(again.session.take_offline().is_empty());
    // A device returning after its interval, before any sweep, does not resume it either.
    again.session.set_expiry(5);
    again.session.subscribe(grant("display/#", true));
    hub.disconnected(&again.session, again.conn_id);
    cmd(&hub, 2);
    again.session.lock().offline_since = Some(sessions::unix_now() - 10);
    let third = hub.connect("display-1", None, false, true).expect("third");
    assert!(!third.session_present);
    assert!(third.session.take_offline().is_empty());
    // MQTT 3.1.1 (or 0xFFFFFFFF): never.
    third.session.set_expiry(u32::MAX);
    hub.disconnected(&third.session, third.conn_id);
    hub.expire_sessions(u64::MAX);
    assert!(
        hub.connect("display-1", None, false, true)
            .expect("fourth")
            .session_present
    );
    assert!(store.close());
}

#[test]
fn a_new_plan_ends_sessions_of_removed_devices() {
    let hub = hub_for(&sample());
    let mut c = hub
        .connect("display-1", None, false, true)
        .expect("connect");
    hub.update_plan(&plan(&[("sensor-1", SENSOR)], &[]));
    assert!(hub.device("display-1").is_none());
    // The connection's queue closed: its writer stops and closes the connection.
    assert!(matches!(
        c.rx.try_recv(),
        Err(crate::queue::TryRecvError::Disconnected)
    ));
}

#[test]
fn the_listeners_file_is_written_once_the_hub_knows_the_devices() {
    let dir = tempfile::tempdir().expect("dir");
    let p = sample();
    let hub = MqttHub::new(Arc::new(Router::new(SubscriptionTable::default())), 16);
    let path = dir.path().join("run/mqtt-listeners.json");
    hub.announce_listeners(path.clone(), "{\"plain\":\"127.0.0.1:1\"}".into());
    // Bound but without devices: a client that connected now would be refused as unknown.
    assert!(!path.exists());
    hub.update_plan(&p);
    assert_eq!(
        std::fs::read_to_string(&path).expect("written"),
        "{\"plain\":\"127.0.0.1:1\"}"
    );
    // A later announcement (none in the runtime) is written at once.
    hub.announce_listeners(path.clone(), "{}".into());
    assert_eq!(std::fs::read_to_string(&path).expect("written"), "{}");
}
