//! `eg-mqtt-bench`: device → device messages through Evergreen's local MQTT server, compared with
//! mosquitto on the same machine in the same run.
//!
//! Run (release build; needs Debian `mosquitto`, as `.ci/run` installs):
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench && target/release/eg-mqtt-bench
//! ```
//!
//! `--quick` sends fewer messages. `--broker evergreen|mosquitto`, `--pairs 1|10` and `--qos 0|1`
//! run only the matching cases (for profiling one of them); `--count N` sets the messages per
//! publisher; `--log` prints the runtime's MQTT and warning lines at the end. It asserts nothing
//! (benchmarks report, tests assert). Both brokers listen on ports picked free at start.
//!
//! # What it measures
//!
//! For 1 publisher → 1 subscriber and 10 → 10 (publisher *i* → subscriber *i*, topic
//! `bench/<i>`), QoS 0 and QoS 1, 64-byte payloads: every publisher sends its messages as fast
//! as the connection takes them (QoS 1: up to 16 unacknowledged, the server's receive window);
//! each subscriber timestamps arrivals. Throughput = messages received / (last arrival − first
//! send); latency = arrival − send time carried in the payload (one process, one clock).
//!
//! Both brokers are reached over **plain TCP on loopback** (Evergreen's
//! `evergreen.listeners.mqttPlain`, mosquitto's default listener), so TLS cost is not part of
//! either figure: like is compared with like. Evergreen routes by its group's subscriptions
//! (device `pub-i` → device `sub-i`); mosquitto by topic. The clients are a minimal MQTT 3.1.1
//! client written here on tokio (CONNECT, SUBSCRIBE, PUBLISH, PUBACK), the same for both.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_bench::mqtt::{connect as connect_packet, packet, string, subscribe};
use evergreen_bench::with_free_ports;
use evergreen_tests::{free_port, group, sub, wait_for, Runtime};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const PAYLOAD: usize = 64;
const WINDOW: usize = 16;

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thing/{name}")
}

/// Reads one packet: (first byte, body).
async fn read_packet(r: &mut BufReader<OwnedReadHalf>) -> std::io::Result<(u8, Vec<u8>)> {
    let first = r.read_u8().await?;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let b = r.read_u8().await?;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 || shift > 21 {
            break;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok((first, body))
}

async fn connect(
    addr: SocketAddr,
    id: &str,
) -> std::io::Result<(BufReader<OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::with_capacity(64 * 1024, r);
    w.write_all(&connect_packet(id, true, 60)).await?;
    let (first, ack) = read_packet(&mut r).await?;
    if first != 0x20 || ack.get(1) != Some(&0) {
        return Err(std::io::Error::other(format!(
            "{id}: CONNACK refused: {ack:?}"
        )));
    }
    Ok((r, w))
}

struct Outcome {
    received: usize,
    first_send: Instant,
    last_recv: Instant,
    latencies_us: Vec<u64>,
}

async fn subscriber(
    addr: SocketAddr,
    id: String,
    topic: String,
    qos: u8,
    expect: usize,
    epoch: Instant,
    ready: Arc<Semaphore>,
) -> std::io::Result<(usize, Option<Instant>, Vec<u64>)> {
    let (mut r, mut w) = connect(addr, &id).await?;
    w.write_all(&subscribe(1, &topic, qos)).await?;
    let (first, ack) = read_packet(&mut r).await?;
    if first != 0x90 || ack.get(2).is_none_or(|c| *c >= 0x80) {
        return Err(std::io::Error::other(format!(
            "{id}: SUBACK refused: {ack:?}"
        )));
    }
    ready.add_permits(1);
    let mut lat = Vec::with_capacity(expect);
    let mut last = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while lat.len() < expect {
        let next = tokio::time::timeout_at(deadline, read_packet(&mut r)).await;
        let Ok(Ok((first, body))) = next else { break };
        if first >> 4 != 3 {
            continue;
        }
        let now = Instant::now();
        let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let mut at = 2 + tlen;
        if (first >> 1) & 3 > 0 {
            let id = [body[at], body[at + 1]];
            at += 2;
            w.write_all(&[0x40, 2, id[0], id[1]]).await?;
        }
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&body[at..at + 8]);
        let sent = u64::from_be_bytes(stamp);
        let now_ns = now.duration_since(epoch).as_nanos() as u64;
        lat.push(now_ns.saturating_sub(sent) / 1000);
        last = Some(now);
    }
    Ok((lat.len(), last, lat))
}

async fn publisher(
    addr: SocketAddr,
    id: String,
    topic: String,
    qos: u8,
    count: usize,
    epoch: Instant,
    done: Arc<Semaphore>,
) -> std::io::Result<()> {
    let (mut r, mut w) = connect(addr, &id).await?;
    let window = Arc::new(Semaphore::new(WINDOW));
    if qos > 0 {
        let window = window.clone();
        tokio::spawn(async move {
            while let Ok((first, _)) = read_packet(&mut r).await {
                if first >> 4 == 4 {
                    window.add_permits(1);
                }
            }
        });
    }
    let mut buf = Vec::with_capacity(256 * 128);
    for n in 0..count {
        let mut body = Vec::with_capacity(PAYLOAD + 32);
        string(&topic, &mut body);
        if qos > 0 {
            window
                .acquire()
                .await
                .map_err(std::io::Error::other)?
                .forget();
            let pid = (n % 65000 + 1) as u16;
            body.extend_from_slice(&pid.to_be_bytes());
        }
        let stamp = Instant::now().duration_since(epoch).as_nanos() as u64;
        body.extend_from_slice(&stamp.to_be_bytes());
        body.resize(body.len() + PAYLOAD - 8, b'x');
        buf.extend_from_slice(&packet(0x30 | (qos << 1), &body));
        // QoS 0 is written in small batches (as a client library's buffer would); QoS 1 one by
        // one, paced by the window.
        if qos > 0 || buf.len() >= 16 * 1024 || n + 1 == count {
            w.write_all(&buf).await?;
            buf.clear();
        }
    }
    // Let the last QoS 1 acknowledgements arrive before the connection goes.
    if qos > 0 {
        let _ =
            tokio::time::timeout(Duration::from_secs(10), window.acquire_many(WINDOW as u32)).await;
    }
    // Stay connected until the subscribers are done: a broker may drop QoS 0 messages it has
    // not processed yet when the publisher disconnects (ntex-mqtt does), which would count as
    // loss in the broker rather than in the measured path.
    let _ = tokio::time::timeout(Duration::from_secs(40), done.acquire()).await;
    w.write_all(&[0xe0, 0]).await?;
    Ok(())
}

async fn run_case(
    addr: SocketAddr,
    pairs: usize,
    qos: u8,
    count: usize,
) -> std::io::Result<Outcome> {
    let epoch = Instant::now();
    let ready = Arc::new(Semaphore::new(0));
    let mut subs = Vec::new();
    for i in 0..pairs {
        subs.push(tokio::spawn(subscriber(
            addr,
            format!("sub-{i}"),
            format!("bench/{i}"),
            qos,
            count,
            epoch,
            ready.clone(),
        )));
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), ready.acquire_many(pairs as u32)).await;
    let first_send = Instant::now();
    let done = Arc::new(Semaphore::new(0));
    let mut pubs = Vec::new();
    for i in 0..pairs {
        pubs.push(tokio::spawn(publisher(
            addr,
            format!("pub-{i}"),
            format!("bench/{i}"),
            qos,
            count,
            epoch,
            done.clone(),
        )));
    }
    let mut results = Vec::new();
    for s in subs {
        results.push(s.await.map_err(std::io::Error::other)?);
    }
    done.add_permits(pairs);
    for p in pubs {
        p.await.map_err(std::io::Error::other)??;
    }
    let mut out = Outcome {
        received: 0,
        first_send,
        last_recv: first_send,
        latencies_us: Vec::new(),
    };
    for r in results {
        let (n, last, lat) = r?;
        out.received += n;
        if let Some(last) = last {
            out.last_recv = out.last_recv.max(last);
        }
        out.latencies_us.extend(lat);
    }
    Ok(out)
}

fn start_evergreen() -> Result<(Runtime, SocketAddr), String> {
    let mut devices = Vec::new();
    let mut subs = Vec::new();
    for i in 0..10 {
        for name in [format!("pub-{i}"), format!("sub-{i}")] {
            devices.push(json!({ "Id": name, "ThingArn": thing_arn(&name), "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/abc123" }));
        }
        subs.push(sub(
            &format!("s{i}"),
            &thing_arn(&format!("pub-{i}")),
            &format!("bench/{i}"),
            &thing_arn(&format!("sub-{i}")),
        ));
    }
    let mut g = group(vec![], subs);
    g["DeviceDefinitionVersion"] = json!({ "Devices": devices });
    // The plain listener on port 0: the runtime writes the address it got.
    let patch = with_free_ports(
        &json!({ "evergreen": { "listeners": { "mqttPlain": { "enabled": true, "port": 0 } } } }),
    )?;
    let rt = Runtime::start_config(&g, &patch, &[]);
    let file = rt.dir.path().join("root/run/mqtt-listeners.json");
    let addr = wait_for(Duration::from_secs(20), || {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
        doc["plain"].as_str()?.parse().ok()
    })
    .ok_or("Evergreen's plain MQTT listener did not come up within 20 s")?;
    Ok((rt, addr))
}

fn start_mosquitto() -> Option<(Child, SocketAddr)> {
    // mosquitto takes no port 0: a port free a moment ago (a race with
    // another process is possible, and then mosquitto is left out).
    let port = free_port()?;
    let child = Command::new("mosquitto")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).ok()
    })?;
    Some((child, addr))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Device -> device messages through Evergreen's local MQTT server and mosquitto.
#[derive(Debug, Parser)]
#[command(
    name = "eg-mqtt-bench",
    after_help = "Build: cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench\n\
                  Needs Debian mosquitto for the comparison (without it: Evergreen only)."
)]
struct Cli {
    /// Send a tenth of the messages.
    #[arg(long)]
    quick: bool,
    /// Run only this broker's cases.
    #[arg(long, value_parser = ["evergreen", "mosquitto"])]
    broker: Option<String>,
    /// Run only the cases with this many publisher -> subscriber pairs (1 or 10).
    #[arg(long, value_parser = parse_pairs)]
    pairs: Option<usize>,
    /// Run only the cases at this QoS (0 or 1).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: Option<u8>,
    /// Messages per publisher (overrides the defaults and --quick).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    count: Option<usize>,
    /// Print the runtime's MQTT and warning log lines at the end.
    #[arg(long)]
    log: bool,
}

fn parse_pairs(s: &str) -> Result<usize, String> {
    match s {
        "1" => Ok(1),
        "10" => Ok(10),
        _ => Err(format!("{s:?}: the cases have 1 or 10 pairs")),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eg-mqtt-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let Cli {
        quick,
        broker: only_broker,
        pairs: only_pairs,
        qos: only_qos,
        count,
        log,
    } = cli;
    let per_pub = |pairs: usize, qos: u8| -> usize {
        if let Some(n) = count {
            return n;
        }
        let base = if qos == 0 { 50_000 } else { 10_000 };
        let n = if pairs == 1 { base } else { base / 5 };
        if quick {
            n / 10
        } else {
            n
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let (rt, eg_addr) = start_evergreen()?;
    let mosquitto = start_mosquitto();
    if mosquitto.is_none() {
        eprintln!(
            "mosquitto not installed: Evergreen only (Debian mosquitto; .ci/run installs it)"
        );
    }
    println!("device -> device, {PAYLOAD} B payloads, plain TCP on loopback for both brokers");
    println!(
        "{:<11} {:>5} {:>3} {:>9} {:>9} {:>11} {:>9} {:>9}",
        "broker", "pairs", "qos", "sent", "received", "msg/s", "p50 µs", "p99 µs"
    );
    println!("evergreen pid {}", rt.pid());
    for pairs in [1usize, 10] {
        for qos in [0u8, 1] {
            if only_pairs.is_some_and(|p| p != pairs) || only_qos.is_some_and(|q| q != qos) {
                continue;
            }
            let count = per_pub(pairs, qos);
            let mut targets = vec![("evergreen", eg_addr)];
            if let Some((_, addr)) = &mosquitto {
                targets.push(("mosquitto", *addr));
            }
            for (name, addr) in targets {
                if only_broker.as_deref().is_some_and(|b| b != name) {
                    continue;
                }
                match runtime.block_on(run_case(addr, pairs, qos, count)) {
                    Ok(mut o) => {
                        o.latencies_us.sort_unstable();
                        let secs = o
                            .last_recv
                            .duration_since(o.first_send)
                            .as_secs_f64()
                            .max(1e-9);
                        println!(
                            "{name:<11} {pairs:>5} {qos:>3} {:>9} {:>9} {:>11.0} {:>9} {:>9}",
                            count * pairs,
                            o.received,
                            o.received as f64 / secs,
                            percentile(&o.latencies_us, 0.5),
                            percentile(&o.latencies_us, 0.99)
                        );
                    }
                    Err(e) => println!("{name:<11} {pairs:>5} {qos:>3} failed: {e}"),
                }
            }
        }
    }
    if let Some((mut child, _)) = mosquitto {
        let _ = child.kill();
        let _ = child.wait();
    }
    if log {
        // The server's counters and warnings, for profiling runs.
        let log = std::fs::read_to_string(rt.log_path("system/runtime.log")).unwrap_or_default();
        for line in log
            .lines()
            .filter(|l| l.contains("MQTT") || l.contains("WARN"))
        {
            println!("{line}");
        }
    }
    drop(rt);
    Ok(())
}
