//! Router lookup and publish fan-out among 10,000 subscriptions.
//!
//! DESIGN.md's target: a topic lookup among 10,000 subscriptions in well under a microsecond.
//! The table mixes exact, `+` and `#` filters across 50 sources so the trie has the branching of
//! a real group rather than one long list. Criterion reports each case's time per element and,
//! through `Throughput::Elements(1)`, lookups (or publishes) per second.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use evergreen_runtime::router::{
    bounded_queue, DeliverySink, Message, OfferError, QueueReceiver, Router, Subscription,
    SubscriptionTable,
};

const SUBSCRIPTIONS: usize = 10_000;
const SOURCES: usize = 50;
const FANOUT_SOURCE: &str = "arn:aws:iot:eu-west-1:123456789012:thing/device-0";

fn source(s: usize) -> String {
    if s % 5 == 4 {
        format!("arn:aws:lambda:eu-west-1:123456789012:function:producer-{s}:1")
    } else {
        format!("arn:aws:iot:eu-west-1:123456789012:thing/device-{s}")
    }
}

fn target(n: usize) -> String {
    match n % 25 {
        0 => "cloud".to_owned(),
        1 => "GGShadowService".to_owned(),
        _ => format!("arn:aws:lambda:eu-west-1:123456789012:function:consumer-{n}:1"),
    }
}

fn fanout_sink(k: usize) -> String {
    format!("arn:aws:lambda:eu-west-1:123456789012:function:fanout-{k}:1")
}

/// 10,000 subscriptions: 11 for the fan-out cases, the rest spread evenly over the sources.
fn subscriptions() -> Vec<Subscription> {
    let mut subs = vec![Subscription::new(
        "fanout-1",
        FANOUT_SOURCE,
        "fanout/one",
        fanout_sink(0),
    )];
    subs.extend((0..10).map(|k| {
        Subscription::new(
            format!("fanout-10-{k}"),
            FANOUT_SOURCE,
            "fanout/ten/+",
            fanout_sink(k),
        )
    }));
    let mut i = 0;
    while subs.len() < SUBSCRIPTIONS {
        let s = i % SOURCES;
        let n = i / SOURCES;
        let area = n % 10;
        let subject = match n % 6 {
            0 => format!("dt/area-{area}/device-{n}/telemetry"),
            1 => format!("dt/area-{area}/+/event-{n}"),
            2 => format!("cmd/device-{n}/#"),
            3 => format!("$aws/things/thing-{n}/shadow/update"),
            4 => format!("+/device-{n}/status"),
            _ => format!("logs/area-{area}/+/level-{n}/#"),
        };
        subs.push(Subscription::new(
            format!("sub-{i}"),
            source(s),
            subject,
            target(i % 400),
        ));
        i += 1;
    }
    subs
}

/// A sink that only counts, so the publish cases measure the router and not a queue.
struct CountingSink(AtomicU64);

impl DeliverySink for CountingSink {
    fn offer(&self, _msg: Message) -> Result<(), OfferError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn lookups(c: &mut Criterion) {
    let table = SubscriptionTable::build(subscriptions()).expect("bench subscriptions are valid");
    assert_eq!(table.len(), SUBSCRIPTIONS);
    let src = source(12);
    // n = 12 is an exact filter of source 12 (i = 612, area 2); n = 13 a `+` filter.
    let cases = [
        ("hit_exact", src.as_str(), "dt/area-2/device-12/telemetry"),
        ("hit_plus", src.as_str(), "dt/area-3/device-7/event-13"),
        ("hit_hash", src.as_str(), "cmd/device-14/reboot/now"),
        (
            "miss_deep",
            src.as_str(),
            "dt/area-2/device-99999/telemetry",
        ),
        (
            "miss_unknown_source",
            "nobody",
            "dt/area-2/device-12/telemetry",
        ),
    ];
    let mut out = Vec::with_capacity(16);
    for (name, source, topic) in cases {
        table.targets(source, topic, &mut out);
        let expect_hit = name.starts_with("hit");
        assert_eq!(
            !out.is_empty(),
            expect_hit,
            "{name} must {}match",
            if expect_hit { "" } else { "not " }
        );
    }

    let mut group = c.benchmark_group("router_lookup_10k");
    group.throughput(Throughput::Elements(1));
    for (name, source, topic) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                table.targets(black_box(source), black_box(topic), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn publishes(c: &mut Criterion) {
    let table = SubscriptionTable::build(subscriptions()).expect("bench subscriptions are valid");
    let router = Router::new(table);
    let payload: Arc<[u8]> = Arc::from(&b"{\"temperature\":21.5,\"humidity\":40}"[..]);

    let mut group = c.benchmark_group("router_publish_10k");
    group.throughput(Throughput::Elements(1));

    // The router alone: counting sinks.
    let sinks: Vec<Arc<CountingSink>> = (0..10)
        .map(|k| {
            let sink = Arc::new(CountingSink(AtomicU64::new(0)));
            router.attach(&fanout_sink(k), sink.clone());
            sink
        })
        .collect();
    for (name, topic, fanout) in [
        ("counting_fanout_1", "fanout/one", 1),
        ("counting_fanout_10", "fanout/ten/x", 10),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let outcome = router
                    .publish(FANOUT_SOURCE, black_box(topic), payload.clone())
                    .expect("valid topic");
                debug_assert_eq!(outcome.delivered, fanout);
                outcome
            })
        });
    }
    black_box(sinks);

    // Real bounded queues, drained after every publish so they never fill.
    let mut receivers: Vec<QueueReceiver> = (0..10)
        .map(|k| {
            let (sink, rx) = bounded_queue(1024);
            router.attach(&fanout_sink(k), Arc::new(sink));
            rx
        })
        .collect();
    for (name, topic, fanout) in [
        ("queue_fanout_1_with_drain", "fanout/one", 1),
        ("queue_fanout_10_with_drain", "fanout/ten/x", 10),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let outcome = router
                    .publish(FANOUT_SOURCE, black_box(topic), payload.clone())
                    .expect("valid topic");
                debug_assert_eq!(outcome.delivered, fanout);
                for rx in &mut receivers[..fanout] {
                    while let Ok(msg) = rx.try_recv() {
                        black_box(msg);
                    }
                }
                outcome
            })
        });
    }
    group.finish();
    assert_eq!(router.stats().targets[&fanout_sink(0)].dropped_full, 0);
}

fn config() -> Criterion {
    // Keeps the whole bench around half a minute on a 2-core machine.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookups, publishes
}
criterion_main!(benches);
