//! What the connector spends on the largest requests and answers, apart
//! from the port: parsing a 128000-byte `hex` write (base64 decode and
//! checks) and encoding a 63994-byte `hex` read response (base64 encode).
//!
//! `cargo bench -p evergreen-connector-serial-stream --bench wire`

use base64::Engine as _;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use evergreen_connector_serial_stream::request::{parse, Encoding, Operation};
use evergreen_connector_serial_stream::response::read_response;
use evergreen_connector_serial_stream::{MAX_READ_LENGTH, MAX_WRITE_LENGTH};

fn wire(c: &mut Criterion) {
    let bytes: Vec<u8> = (0..MAX_WRITE_LENGTH).map(|i| (i % 251) as u8).collect();
    let request = serde_json::json!({
        "data": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "type": "hex",
        "id": "bench"
    })
    .to_string();
    let mut group = c.benchmark_group("serial-stream");
    group.throughput(Throughput::Bytes(MAX_WRITE_LENGTH as u64));
    group.bench_function("parse 128000-byte hex write", |b| {
        b.iter(|| parse(Operation::Write, black_box(request.as_bytes())))
    });
    let read = &bytes[..MAX_READ_LENGTH];
    let id = serde_json::json!("bench");
    group.throughput(Throughput::Bytes(MAX_READ_LENGTH as u64));
    group.bench_function("encode 63994-byte hex read response", |b| {
        b.iter(|| read_response(black_box(read), Encoding::Hex, Some(&id)))
    });
    group.finish();
}

criterion_group!(benches, wire);
criterion_main!(benches);
