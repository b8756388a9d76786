//! Tests of the router, kept apart from its code for length.

use super::*;
use evergreen_ipc::topic::matches;
use proptest::prelude::*;
use std::collections::BTreeSet;

const SENSOR: &str = "arn:aws:iot:eu-west-1:123456789012:thing/Sensor";
const LAMBDA: &str = "arn:aws:lambda:eu-west-1:123456789012:function:Ingest:1";
const OTHER: &str = "arn:aws:iot:eu-west-1:123456789012:thing/Other";

fn sub(id: &str, source: &str, subject: &str, target: &str) -> Subscription {
    Subscription::new(id, source, subject, target)
}

fn table(subs: Vec<Subscription>) -> SubscriptionTable {
    SubscriptionTable::build(subs).expect("valid subscriptions")
}

fn payload(bytes: &[u8]) -> Arc<[u8]> {
    Arc::from(bytes)
}

/// A router with one large queue attached per named target.
fn router_with(
    subs: Vec<Subscription>,
    targets: &[&str],
) -> (Router, HashMap<String, QueueReceiver>) {
    let router = Router::new(table(subs));
    let mut receivers = HashMap::new();
    for target in targets {
        let (sink, rx) = bounded_queue(64);
        router.attach(target, Arc::new(sink));
        receivers.insert((*target).to_owned(), rx);
    }
    (router, receivers)
}

fn drain(rx: &mut QueueReceiver) -> Vec<Message> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn rx<'a>(receivers: &'a mut HashMap<String, QueueReceiver>, name: &str) -> &'a mut QueueReceiver {
    receivers.get_mut(name).expect("receiver exists")
}

#[test]
fn greengrass_wildcard_examples_end_to_end() {
    let (router, mut receivers) = router_with(
        vec![
            sub("hash", SENSOR, "sensor/#", "hash"),
            sub("plus", SENSOR, "sensor/+/input", "plus"),
        ],
        &["hash", "plus"],
    );
    let cases: [(&str, bool, bool); 5] = [
        ("sensor/", true, false),
        ("sensor/a/b", true, false),
        ("sensor", false, false),
        ("sensor/id-123/input", true, true),
        ("sensor/group-a/id-123/input", true, false),
    ];
    for (topic, to_hash, to_plus) in cases {
        let outcome = router
            .publish(SENSOR, topic, payload(topic.as_bytes()))
            .expect("valid topic");
        assert_eq!(
            outcome.delivered,
            usize::from(to_hash) + usize::from(to_plus),
            "{topic}"
        );
        for (name, expected) in [("hash", to_hash), ("plus", to_plus)] {
            let got = drain(rx(&mut receivers, name));
            if expected {
                assert_eq!(got.len(), 1, "{topic} to {name}");
                assert_eq!(&*got[0].topic, topic);
                assert_eq!(&*got[0].payload, topic.as_bytes());
                assert_eq!(&*got[0].source, SENSOR);
            } else {
                assert!(got.is_empty(), "{topic} must not reach {name}");
            }
        }
    }
    let stats = router.stats();
    assert_eq!(stats.sources[SENSOR].published, 5);
    assert_eq!(
        stats.sources[SENSOR].unrouted, 1,
        "only `sensor` matched nothing"
    );
    assert_eq!(stats.targets["hash"].delivered, 4);
    assert_eq!(stats.targets["plus"].delivered, 1);
}

#[tokio::test]
async fn queue_receiver_recv_awaits_messages() {
    let (router, mut receivers) = router_with(vec![sub("1", SENSOR, "a/b", LAMBDA)], &[LAMBDA]);
    router
        .publish(SENSOR, "a/b", payload(b"x"))
        .expect("valid topic");
    let msg = rx(&mut receivers, LAMBDA).recv().await.expect("a message");
    assert_eq!(&*msg.topic, "a/b");
    drop(router);
    // The router held the only sender; once it is gone the queue reports its end.
    assert_eq!(rx(&mut receivers, LAMBDA).recv().await, None);
}

#[test]
fn source_must_match_exactly() {
    let (router, mut receivers) =
        router_with(vec![sub("1", SENSOR, "telemetry/#", LAMBDA)], &[LAMBDA]);
    let outcome = router
        .publish(OTHER, "telemetry/t1", payload(b"{}"))
        .expect("valid topic");
    assert_eq!(outcome, PublishOutcome::default());
    // A prefix of the ARN is another endpoint, not a match.
    let outcome = router
        .publish(&SENSOR[..SENSOR.len() - 1], "telemetry/t1", payload(b"{}"))
        .expect("valid topic");
    assert_eq!(outcome.matched(), 0);
    assert!(drain(rx(&mut receivers, LAMBDA)).is_empty());
    assert_eq!(router.stats().unknown_sources.published, 2);
    assert_eq!(router.stats().unknown_sources.unrouted, 2);

    let outcome = router
        .publish(SENSOR, "telemetry/t1", payload(b"{}"))
        .expect("valid topic");
    assert_eq!(outcome.delivered, 1);
}

#[test]
fn target_receives_once_when_several_subscriptions_match() {
    let (router, mut receivers) = router_with(
        vec![
            sub("1", SENSOR, "a/b/c", LAMBDA),
            sub("2", SENSOR, "a/+/c", LAMBDA),
            sub("3", SENSOR, "a/#", LAMBDA),
            sub("4", SENSOR, "#", LAMBDA),
            sub("5", SENSOR, "+/+/+", LAMBDA),
            sub("6", SENSOR, "a/b/c", LAMBDA),
            sub("7", SENSOR, "a/#", "cloud"),
        ],
        &[LAMBDA, "cloud"],
    );
    let outcome = router
        .publish(SENSOR, "a/b/c", payload(b"1"))
        .expect("valid topic");
    assert_eq!(outcome.delivered, 2);
    assert_eq!(drain(rx(&mut receivers, LAMBDA)).len(), 1);
    assert_eq!(drain(rx(&mut receivers, "cloud")).len(), 1);

    let t = router.table();
    let mut out = Vec::new();
    t.targets(SENSOR, "a/b/c", &mut out);
    assert_eq!(out.len(), 2);
}

#[test]
fn publishing_to_a_wildcard_or_empty_topic_is_refused() {
    let (router, mut receivers) = router_with(vec![sub("1", SENSOR, "#", LAMBDA)], &[LAMBDA]);
    for (topic, error) in [
        ("a/+", TopicError::WildcardInTopic('+')),
        ("a/#", TopicError::WildcardInTopic('#')),
        ("a+b", TopicError::WildcardInTopic('+')),
        ("", TopicError::Empty),
        ("a\0b", TopicError::Nul),
    ] {
        assert_eq!(
            router.publish(SENSOR, topic, payload(b"x")),
            Err(PublishError::InvalidTopic(error)),
            "{topic:?}"
        );
    }
    assert!(drain(rx(&mut receivers, LAMBDA)).is_empty());
    let stats = router.stats();
    assert_eq!(stats.sources[SENSOR].refused, 5);
    assert_eq!(stats.sources[SENSOR].published, 0);
}

#[test]
fn full_queue_drops_for_that_target_only() {
    let router = Router::new(table(vec![
        sub("slow", SENSOR, "data", "slow"),
        sub("fast", SENSOR, "data", "fast"),
    ]));
    let (slow, mut slow_rx) = bounded_queue(2);
    let (fast, mut fast_rx) = bounded_queue(16);
    router.attach("slow", Arc::new(slow));
    router.attach("fast", Arc::new(fast));

    let outcomes: Vec<PublishOutcome> = (0..5u8)
        .map(|i| {
            router
                .publish(SENSOR, "data", payload(&[i]))
                .expect("valid topic")
        })
        .collect();
    assert_eq!(outcomes.iter().map(|o| o.delivered).sum::<usize>(), 5 + 2);
    assert_eq!(outcomes.iter().map(|o| o.dropped_full).sum::<usize>(), 3);

    let fast_got: Vec<u8> = drain(&mut fast_rx).iter().map(|m| m.payload[0]).collect();
    assert_eq!(fast_got, [0, 1, 2, 3, 4]);
    // The oldest messages stay; the ones that found the queue full are lost.
    let slow_got: Vec<u8> = drain(&mut slow_rx).iter().map(|m| m.payload[0]).collect();
    assert_eq!(slow_got, [0, 1]);

    let stats = router.stats();
    assert_eq!(stats.targets["slow"].delivered, 2);
    assert_eq!(stats.targets["slow"].dropped_full, 3);
    assert_eq!(stats.targets["fast"].delivered, 5);
    assert_eq!(stats.targets["fast"].dropped_full, 0);
}

#[test]
fn queue_depth_counts_waiting_messages() {
    let router = Router::new(table(vec![sub("1", SENSOR, "data", LAMBDA)]));
    let (sink, mut rx) = bounded_queue(4);
    let probe = sink.clone();
    router.attach(LAMBDA, Arc::new(sink));
    assert!(probe.is_empty());
    for i in 0..6u8 {
        router
            .publish(SENSOR, "data", payload(&[i]))
            .expect("valid topic");
    }
    assert_eq!(probe.len(), 4, "a full queue holds its bound");
    assert_eq!(router.queue_depths()[LAMBDA], 4);
    rx.try_recv().expect("a message");
    assert_eq!(router.queue_depths()[LAMBDA], 3);
    drain(&mut rx);
    assert_eq!(router.queue_depths()[LAMBDA], 0);
    router.detach(LAMBDA);
    assert!(router.queue_depths().is_empty(), "only attached sinks");
}

#[test]
fn closed_receiver_is_counted() {
    let (router, receivers) = router_with(vec![sub("1", SENSOR, "a", LAMBDA)], &[LAMBDA]);
    drop(receivers);
    let outcome = router
        .publish(SENSOR, "a", payload(b"x"))
        .expect("valid topic");
    assert_eq!(outcome.closed, 1);
    assert_eq!(router.stats().targets[LAMBDA].closed, 1);
}

#[test]
fn unattached_target_is_counted_and_others_still_receive() {
    let (router, mut receivers) = router_with(
        vec![
            sub("1", SENSOR, "up/#", "cloud"),
            sub("2", SENSOR, "up/#", LAMBDA),
        ],
        &[LAMBDA],
    );
    let outcome = router
        .publish(SENSOR, "up/x", payload(b"x"))
        .expect("valid topic");
    assert_eq!(outcome.delivered, 1);
    assert_eq!(outcome.dropped_unattached, 1);
    assert_eq!(drain(rx(&mut receivers, LAMBDA)).len(), 1);
    assert_eq!(router.stats().targets["cloud"].dropped_unattached, 1);
}

#[test]
fn detach_then_attach() {
    let (router, mut receivers) = router_with(vec![sub("1", SENSOR, "a", LAMBDA)], &[LAMBDA]);
    router.detach(LAMBDA);
    let outcome = router
        .publish(SENSOR, "a", payload(b"1"))
        .expect("valid topic");
    assert_eq!(outcome.dropped_unattached, 1);
    assert!(drain(rx(&mut receivers, LAMBDA)).is_empty());

    let (sink, mut new_rx) = bounded_queue(4);
    router.attach(LAMBDA, Arc::new(sink));
    let outcome = router
        .publish(SENSOR, "a", payload(b"2"))
        .expect("valid topic");
    assert_eq!(outcome.delivered, 1);
    assert_eq!(&*drain(&mut new_rx)[0].payload, b"2");

    // Detaching an endpoint that was never attached is a no-op.
    router.detach("nobody");
    let stats = router.stats();
    assert_eq!(stats.targets[LAMBDA].delivered, 1);
    assert_eq!(stats.targets[LAMBDA].dropped_unattached, 1);
}

#[test]
fn attach_and_detach_leave_the_snapshot_as_it_is() {
    // A device's connection attaches its sink and its disconnection detaches it: each must
    // cost the same whatever the table's size, so neither rebuilds what publishes read.
    let router = Router::new(table(vec![sub("1", SENSOR, "a", LAMBDA)]));
    let before = router.snapshot();
    let (sink, mut rx) = bounded_queue(4);
    router.attach(LAMBDA, Arc::new(sink));
    router.detach(LAMBDA);
    let (sink, mut rx2) = bounded_queue(4);
    router.attach(LAMBDA, Arc::new(sink));
    router.attach("not-in-the-table", Arc::new(bounded_queue(1).0));
    assert!(Arc::ptr_eq(&before, &router.snapshot()));
    let outcome = router
        .publish(SENSOR, "a", payload(b"1"))
        .expect("valid topic");
    assert_eq!(outcome.delivered, 1);
    assert!(drain(&mut rx).is_empty());
    assert_eq!(drain(&mut rx2).len(), 1);
}

#[test]
fn replace_table_swaps_routes_and_keeps_sinks_and_counters() {
    let (router, mut receivers) =
        router_with(vec![sub("1", SENSOR, "old/#", LAMBDA)], &[LAMBDA, "cloud"]);
    router
        .publish(SENSOR, "old/x", payload(b"1"))
        .expect("valid topic");
    router.replace_table(table(vec![
        sub("2", SENSOR, "new/+", LAMBDA),
        sub("3", OTHER, "new/+", "cloud"),
    ]));

    let old = router
        .publish(SENSOR, "old/x", payload(b"2"))
        .expect("valid topic");
    assert_eq!(old.matched(), 0);
    let new = router
        .publish(SENSOR, "new/x", payload(b"3"))
        .expect("valid topic");
    assert_eq!(new.delivered, 1);
    let other = router
        .publish(OTHER, "new/y", payload(b"4"))
        .expect("valid topic");
    assert_eq!(
        other.delivered, 1,
        "a sink attached before its route existed is used"
    );

    let got: Vec<Vec<u8>> = drain(rx(&mut receivers, LAMBDA))
        .iter()
        .map(|m| m.payload.to_vec())
        .collect();
    assert_eq!(got, [b"1".to_vec(), b"3".to_vec()]);
    assert_eq!(drain(rx(&mut receivers, "cloud")).len(), 1);

    let stats = router.stats();
    assert_eq!(
        stats.targets[LAMBDA].delivered, 2,
        "counted across both tables"
    );
    assert_eq!(stats.sources[SENSOR].published, 3);
    assert_eq!(stats.sources[SENSOR].unrouted, 1);
    assert_eq!(router.table().len(), 2);
}

#[test]
fn concurrent_publish_while_tables_are_swapped() {
    let router = Arc::new(Router::new(table(vec![sub("1", SENSOR, "t/#", "sink")])));
    let (sink, _rx) = bounded_queue(1 << 16);
    router.attach("sink", Arc::new(sink));
    let publishers: Vec<_> = (0..2)
        .map(|_| {
            let router = router.clone();
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let outcome = router
                        .publish(SENSOR, "t/x", payload(&i.to_le_bytes()))
                        .expect("valid topic");
                    // Every table in the rotation routes `t/x` to `sink`.
                    assert_eq!(outcome.delivered, 1);
                }
            })
        })
        .collect();
    for i in 0..50 {
        let subject = if i % 2 == 0 { "t/+" } else { "t/#" };
        router.replace_table(table(vec![sub("1", SENSOR, subject, "sink")]));
    }
    for p in publishers {
        p.join().expect("publisher thread");
    }
    assert_eq!(router.stats().targets["sink"].delivered, 4000);
}

#[test]
fn invalid_subscriptions_are_all_reported_with_their_ids() {
    let deep = vec!["a"; MAX_FILTER_LEVELS + 1].join("/");
    let errors = SubscriptionTable::build(vec![
        sub("ok", SENSOR, "a/+/#", LAMBDA),
        sub("hash-inside", SENSOR, "a/#/b", LAMBDA),
        sub("plus-in-level", SENSOR, "a/b+", LAMBDA),
        sub("empty", SENSOR, "", LAMBDA),
        sub("no-source", "", "a", LAMBDA),
        sub("no-target", SENSOR, "a", ""),
        sub("deep", SENSOR, &deep, LAMBDA),
    ])
    .expect_err("invalid subscriptions");
    assert_eq!(
        errors,
        vec![
            TableError::InvalidSubject {
                id: "hash-inside".into(),
                subject: "a/#/b".into(),
                reason: TopicError::HashNotLast,
            },
            TableError::InvalidSubject {
                id: "plus-in-level".into(),
                subject: "a/b+".into(),
                reason: TopicError::WildcardInsideLevel("b+".into()),
            },
            TableError::InvalidSubject {
                id: "empty".into(),
                subject: String::new(),
                reason: TopicError::Empty,
            },
            TableError::EmptyEndpoint {
                id: "no-source".into(),
                role: "source",
            },
            TableError::EmptyEndpoint {
                id: "no-target".into(),
                role: "target",
            },
            TableError::TooDeep {
                id: "deep".into(),
                subject: deep.clone(),
                levels: MAX_FILTER_LEVELS + 1,
            },
        ]
    );
    assert!(errors[0].to_string().contains("hash-inside"));
    // The deepest allowed subject is accepted.
    let deepest = vec!["a"; MAX_FILTER_LEVELS].join("/");
    assert!(SubscriptionTable::build(vec![sub("max", SENSOR, &deepest, LAMBDA)]).is_ok());
}

#[test]
fn table_accessors() {
    let t = table(vec![
        sub("1", SENSOR, "a", LAMBDA),
        sub("2", SENSOR, "b", "cloud"),
        sub("3", OTHER, "a", LAMBDA),
        sub("4", OTHER, "a", LAMBDA),
    ]);
    assert_eq!(t.len(), 4);
    assert!(!t.is_empty());
    assert_eq!(t.sources().collect::<Vec<_>>(), [SENSOR, OTHER]);
    let targets: Vec<&str> = t.targets_list().map(|(_, name)| name).collect();
    assert_eq!(targets, [LAMBDA, "cloud"]);
    for (idx, name) in t.targets_list() {
        assert_eq!(t.target_name(idx), name);
        assert_eq!(t.target_idx(name), Some(idx));
    }
    assert_eq!(t.target_name(TargetIdx(99)), "");
    let mut out = vec![TargetIdx(7)];
    t.targets("nobody", "a", &mut out);
    assert!(out.is_empty(), "out is replaced, not appended to");
    assert!(SubscriptionTable::default().is_empty());
}

// ---- property tests against the naive matcher -------------------------------------------

const SOURCES: [&str; 3] = ["s0", "s1", "s2"];
const TARGETS: [&str; 4] = ["t0", "t1", "t2", "t3"];

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", ""]), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("topics are not empty", |t| !t.is_empty())
}

fn filter_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "", "+"]), 0..4),
        prop::sample::select(vec!["a", "b", "", "+", "#"]),
    )
        .prop_map(|(mut levels, last)| {
            levels.push(last);
            levels.join("/")
        })
        .prop_filter("valid filters only", |f| validate_filter(f).is_ok())
}

fn subs_strategy() -> impl Strategy<Value = Vec<Subscription>> {
    prop::collection::vec(
        (0..SOURCES.len(), filter_strategy(), 0..TARGETS.len()),
        0..24,
    )
    .prop_map(|subs| {
        subs.into_iter()
            .enumerate()
            .map(|(i, (s, f, t))| sub(&i.to_string(), SOURCES[s], &f, TARGETS[t]))
            .collect()
    })
}

fn naive(subs: &[Subscription], source: &str, topic: &str) -> BTreeSet<String> {
    subs.iter()
        .filter(|s| s.source == source && matches(&s.subject, topic))
        .map(|s| s.target.clone())
        .collect()
}

/// A durable sink as the cloud spool is: holds each acked message's receipt until `commit`.
#[derive(Default)]
struct HoldingSink {
    held: Mutex<Vec<Receipt>>,
}

impl HoldingSink {
    fn commit(&self, stored: bool) {
        for r in self.held.lock().expect("lock").drain(..) {
            if stored {
                r.stored();
            } else {
                r.lost();
            }
        }
    }
}

impl DeliverySink for HoldingSink {
    fn offer(&self, _: Message) -> Result<(), OfferError> {
        Ok(())
    }

    fn offer_acked(&self, _: Message, receipt: &Receipt) -> Result<(), OfferError> {
        self.held.lock().expect("lock").push(receipt.clone());
        Ok(())
    }
}

fn poll_now(stored: &mut Stored) -> Option<bool> {
    use std::future::Future;
    let waker = std::task::Waker::noop();
    match std::pin::Pin::new(stored).poll(&mut std::task::Context::from_waker(waker)) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[test]
fn an_acked_publish_is_stored_only_when_its_durable_target_commits_it() {
    let router = Router::new(table(vec![
        sub("a", SENSOR, "t/#", "durable"),
        sub("b", SENSOR, "t/#", "queue"),
    ]));
    let durable = Arc::new(HoldingSink::default());
    router.attach("durable", durable.clone());
    let (queue, mut rx) = bounded_queue(4);
    router.attach("queue", Arc::new(queue));

    let (receipt, mut stored) = Receipt::new();
    let outcome = router
        .publish_acked(SENSOR, "t/1", payload(b"x"), receipt)
        .expect("valid topic");
    assert_eq!(outcome.delivered, 2);
    assert_eq!(drain(&mut rx).len(), 1, "a plain queue gets it at once");
    assert_eq!(poll_now(&mut stored), None, "waits for the durable commit");
    durable.commit(true);
    assert_eq!(poll_now(&mut stored), Some(true));

    let (receipt, mut stored) = Receipt::new();
    router
        .publish_acked(SENSOR, "t/2", payload(b"y"), receipt)
        .expect("valid topic");
    durable.commit(false);
    assert_eq!(
        poll_now(&mut stored),
        Some(false),
        "a failed commit is no store"
    );
}

#[test]
fn an_acked_publish_reaching_no_durable_target_is_answered_at_once() {
    let (router, _receivers) = router_with(vec![sub("a", SENSOR, "t/#", "queue")], &["queue"]);
    let (receipt, mut stored) = Receipt::new();
    router
        .publish_acked(SENSOR, "t/1", payload(b"x"), receipt)
        .expect("valid topic");
    assert_eq!(poll_now(&mut stored), Some(true));
}

proptest! {
    #[test]
    fn trie_agrees_with_naive_matcher(
        subs in subs_strategy(),
        topics in prop::collection::vec(topic_strategy(), 1..8),
    ) {
        let t = SubscriptionTable::build(subs.clone()).expect("generated filters are valid");
        let mut out = Vec::new();
        for topic in &topics {
            for source in SOURCES.iter().chain(&["unknown"]) {
                t.targets(source, topic, &mut out);
                prop_assert!(out.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
                let got: BTreeSet<String> =
                    out.iter().map(|&i| t.target_name(i).to_owned()).collect();
                prop_assert_eq!(got.len(), out.len());
                prop_assert_eq!(got, naive(&subs, source, topic), "{} on {}", source, topic);
            }
        }
    }

    #[test]
    fn router_delivers_to_the_naive_set(
        subs in subs_strategy(),
        topic in topic_strategy(),
        source in prop::sample::select(SOURCES.to_vec()),
    ) {
        let router = Router::new(SubscriptionTable::build(subs.clone()).expect("valid"));
        let mut receivers: Vec<(&str, QueueReceiver)> = TARGETS
            .iter()
            .map(|name| {
                let (sink, rx) = bounded_queue(4);
                router.attach(name, Arc::new(sink));
                (*name, rx)
            })
            .collect();
        let outcome = router.publish(source, &topic, payload(b"p")).expect("valid topic");
        let expected = naive(&subs, source, &topic);
        prop_assert_eq!(outcome.delivered, expected.len());
        let got: Vec<String> = receivers
            .iter_mut()
            .flat_map(|(name, rx)| drain(rx).into_iter().map(|_| (*name).to_owned()))
            .collect();
        prop_assert_eq!(got.len(), expected.len(), "each target at most once");
        prop_assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
    }
}
