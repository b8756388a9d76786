//! One full DeviceDefender cycle against this machine's real `/proc`.
//!
//! A cycle is what the connector does every SampleIntervalSeconds: list the
//! interfaces (getifaddrs), read and parse `net/tcp`, `tcp6`, `udp`, `udp6`
//! and `dev`, build the document and serialise it to JSON. The figure
//! depends on how many sockets the host has (printed first, for context)
//! and, mostly, on the size of the kernel's TCP hash table: every read of
//! `net/tcp` and `net/tcp6` walks all of its buckets, however few sockets
//! there are. A second case runs the same cycle on the fixtures to show the
//! user-space share.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use evergreen_connector_device_defender::metrics::Collector;

fn collect(c: &mut Criterion) {
    let mut collector = Collector::new("/proc");
    let sample = collector.collect();
    let json = sample.document.to_json().unwrap_or_default();
    let m = &sample.document.metrics;
    eprintln!(
        "host: {} listening TCP, {} listening UDP, {} established; document {} bytes",
        m.listening_tcp_ports.as_ref().map_or(0, |p| p.total),
        m.listening_udp_ports.as_ref().map_or(0, |p| p.total),
        m.tcp_connections
            .as_ref()
            .map_or(0, |t| t.established_connections.total),
        json.len()
    );
    let mut group = c.benchmark_group("device_defender");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("collect_and_serialise", |b| {
        b.iter(|| {
            let cycle = collector.collect();
            black_box(cycle.document.to_json().map(|j| j.len()))
        })
    });
    // The same cycle on the checked-in fixtures: the user-space share
    // (parsing, interface lookup, JSON) without the kernel's table walks.
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/good");
    let mut on_fixtures = Collector::new(fixtures);
    group.bench_function("collect_and_serialise_fixtures", |b| {
        b.iter(|| {
            let cycle = on_fixtures.collect();
            black_box(cycle.document.to_json().map(|j| j.len()))
        })
    });
    group.finish();
}

criterion_group!(benches, collect);
criterion_main!(benches);
