//! Frame codec throughput: what one `Deliver` (supervisor → child) or
//! `Publish` (child → supervisor) frame costs to encode and decode.
//!
//! Two paths, each for 64 B, 4 KiB and 64 KiB payloads:
//!
//! - `slice/…`: [`encode_frame`] into a reused `Vec` then [`decode_frame`]
//!   from it — the codec alone. Throughput in frame bytes.
//! - `stream/…`: a burst of frames through [`FrameWriter`] → in-memory
//!   `tokio::io::duplex` (64 KiB, the size of a Linux pipe) →
//!   [`FrameReader`], writer and reader running concurrently on one
//!   current-thread runtime, one flush per burst as the SDK and the
//!   supervisor do. Throughput in messages.
//!
//! Run: `cargo bench -p evergreen-ipc --bench codec`
//! (one case: `cargo bench -p evergreen-ipc --bench codec -- 'stream/deliver/4KiB'`).

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use evergreen_ipc::codec::{
    decode_frame, encode_frame, FrameReader, FrameWriter, DEFAULT_MAX_FRAME,
};
use evergreen_ipc::{Delivery, FromChild, ToChild};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Payload sizes, with their labels.
const SIZES: [(usize, &str); 3] = [(64, "64B"), (4 << 10, "4KiB"), (64 << 10, "64KiB")];

/// A topic and source of realistic length (a function ARN is ~55 bytes).
const TOPIC: &str = "sensor/group-a/id-123/input";
const SOURCE: &str = "arn:aws:lambda:us-east-1:123456789012:function:producer:1";

/// Bytes moved per `stream` iteration: enough frames to amortise the flush
/// and the task switches, never fewer than 4 frames.
const STREAM_BURST_BYTES: usize = 256 << 10;

fn deliver(size: usize) -> ToChild {
    ToChild::Deliver(Delivery {
        topic: TOPIC.into(),
        payload: vec![0xab; size],
        source: SOURCE.into(),
    })
}

fn publish(size: usize) -> FromChild {
    FromChild::Publish {
        topic: TOPIC.into(),
        payload: vec![0xab; size],
    }
}

fn frame_len<T: Serialize>(msg: &T) -> usize {
    let mut out = Vec::new();
    encode_frame(msg, DEFAULT_MAX_FRAME, &mut out).expect("benchmark message encodes");
    out.len()
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_millis(2500));
    group.sample_size(30);
    group
}

/// `encode_frame` + `decode_frame` of one message, buffer reused.
fn slice_case<T>(group: &mut BenchmarkGroup<'_, WallTime>, id: BenchmarkId, msg: &T)
where
    T: Serialize + DeserializeOwned,
{
    group.throughput(Throughput::Bytes(frame_len(msg) as u64));
    let mut buf = Vec::with_capacity(frame_len(msg));
    group.bench_function(id, |b| {
        b.iter(|| {
            buf.clear();
            encode_frame(black_box(msg), DEFAULT_MAX_FRAME, &mut buf).expect("encode");
            let (decoded, used) = decode_frame::<T>(black_box(&buf), DEFAULT_MAX_FRAME)
                .expect("decode")
                .expect("a whole frame");
            black_box((decoded, used));
        })
    });
}

fn bench_slice(c: &mut Criterion) {
    let mut group = configure(c, "slice");
    for (size, label) in SIZES {
        slice_case(
            &mut group,
            BenchmarkId::new("deliver", label),
            &deliver(size),
        );
        slice_case(
            &mut group,
            BenchmarkId::new("publish", label),
            &publish(size),
        );
    }
    group.finish();
}

/// A burst of `msg` through FrameWriter → duplex → FrameReader.
fn stream_case<T>(group: &mut BenchmarkGroup<'_, WallTime>, id: BenchmarkId, msg: &T, size: usize)
where
    T: Serialize + DeserializeOwned,
{
    let burst = (STREAM_BURST_BYTES / size).max(4);
    group.throughput(Throughput::Elements(burst as u64));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let (w, r) = tokio::io::duplex(64 << 10);
    let mut writer = FrameWriter::new(w, DEFAULT_MAX_FRAME);
    let mut reader = FrameReader::new(r, DEFAULT_MAX_FRAME);
    group.bench_function(id, |b| {
        b.iter(|| {
            rt.block_on(async {
                let send = async {
                    for _ in 0..burst {
                        writer
                            .write_frame(black_box(msg))
                            .await
                            .expect("write frame");
                    }
                    writer.flush().await.expect("flush");
                };
                let recv = async {
                    for _ in 0..burst {
                        let got: T = reader
                            .read_frame()
                            .await
                            .expect("read frame")
                            .expect("not the end");
                        black_box(got);
                    }
                };
                tokio::join!(send, recv);
            })
        })
    });
}

fn bench_stream(c: &mut Criterion) {
    let mut group = configure(c, "stream");
    for (size, label) in SIZES {
        stream_case(
            &mut group,
            BenchmarkId::new("deliver", label),
            &deliver(size),
            size,
        );
        stream_case(
            &mut group,
            BenchmarkId::new("publish", label),
            &publish(size),
            size,
        );
    }
    group.finish();
}

criterion_group!(benches, bench_slice, bench_stream);
criterion_main!(benches);
