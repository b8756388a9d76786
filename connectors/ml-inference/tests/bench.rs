//! Latency and throughput of whole requests (decode, resize, preprocess,
//! inference, reply) per model, and the process's resident memory after
//! each load. Ignored by default; run optimised with
//!
//! ```text
//! cargo test --release -p evergreen-connector-ml-inference --test bench -- --ignored --nocapture
//! ```

#![allow(clippy::unwrap_used)] // a failed unwrap is the bench failing

mod common;

use std::time::{Duration, Instant};

use evergreen_connector_ml_inference::{Algo, Model};

/// The process's resident set in KiB, from /proc/self/status.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
#[ignore = "a bench: run with --ignored --nocapture, optimised"]
fn bench_models() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let cases = [
        (
            "classifier",
            "photo.jpg",
            "image/jpeg",
            Algo::ImageClassification,
        ),
        (
            "classifier_nhwc",
            "photo.jpg",
            "image/jpeg",
            Algo::ImageClassification,
        ),
        ("detector3", "photo.png", "image/png", Algo::ObjectDetection),
        (
            "bench",
            "photo.jpg",
            "image/jpeg",
            Algo::ImageClassification,
        ),
    ];
    println!("model | input | load ms | RSS after load (delta) | p50 | p99 | inferences/s");
    for (name, image, content_type, algo) in cases {
        let before = rss_kib();
        let started = Instant::now();
        let model = Model::load(&dir.join(name), algo).unwrap();
        let load = started.elapsed();
        let after = rss_kib();
        let body = std::fs::read(dir.join(image)).unwrap();
        // Warm-up, then a fixed number of runs bounded by 20 s in all.
        model.handle(content_type, "", &body).unwrap();
        let mut times = Vec::new();
        let all = Instant::now();
        while times.len() < 500 && all.elapsed() < Duration::from_secs(20) {
            let t = Instant::now();
            model.handle(content_type, "", &body).unwrap();
            times.push(t.elapsed());
        }
        let total = all.elapsed();
        times.sort();
        println!(
            "{name} | {:?} | {} | {} KiB (+{} KiB) | {:?} | {:?} | {:.0}",
            model.input().shape(),
            load.as_millis(),
            after,
            after.saturating_sub(before),
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.len() as f64 / total.as_secs_f64()
        );
    }
}
