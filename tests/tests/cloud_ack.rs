//! End-to-end: what a PUBACK to a device means for a message routed to the cloud (issue 18,
//! "acknowledgement after durability"). The real runtime, Debian's `mosquitto` as the upstream
//! broker with `mosquitto_sub` as the cloud side (a persistent QoS 1 session, so nothing depends
//! on who connects first), and client devices speaking MQTT 3.1.1 through the plain loopback
//! listener with the small client below, which records every PUBACK it receives.
//!
//! The promises checked (docs/cloud-bridge.md, "What an acknowledgement to the cloud means, per path"):
//! a QoS 1 PUBACK follows the spool's fsync, so `kill -9` of the runtime loses nothing a device
//! was acknowledged for; a full hand-off holds the device instead of acknowledging and dropping;
//! every message lost on the way to the cloud is counted in `evergreen status`.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use evergreen_tests::broker::Mosquitto;
use evergreen_tests::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
const SUBSCRIBER_ID: &str = "cloud-side";
/// QoS 1 publishes a test device keeps unacknowledged, at most: far below the 65535 packet ids,
/// so an id names one message.
const WINDOW: usize = 256;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn mosquitto() -> Option<PathBuf> {
    mosquitto_or_skip()
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The tests' mosquitto (`evergreen_tests::broker`) on `port`, persistent, with room for
/// 1,000,000 queued messages per session.
fn start_broker(bin: &Path, dir: &Path, port: u16) -> Mosquitto {
    Mosquitto::with_config(
        bin,
        dir,
        port,
        &format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n"),
    )
}

/// The cloud side: `mosquitto_sub -c -q 1 -v` on `up/#`, lines `topic payload` in a file.
struct CloudSide {
    child: Child,
    out: PathBuf,
}

impl CloudSide {
    fn start(port: u16, out: &Path) -> CloudSide {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .expect("subscriber output");
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", "up/#", "-q", "1", "-c", "-i", SUBSCRIBER_ID, "-v"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        let side = CloudSide {
            child,
            out: out.to_path_buf(),
        };
        let seen = wait_for(Duration::from_secs(10), || {
            let _ = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-t", "up/probe", "-m", "probe", "-q", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(100));
            side.received().contains_key("up/probe").then_some(())
        });
        assert!(seen.is_some(), "mosquitto_sub never received a probe");
        side
    }

    /// The distinct payloads received per topic.
    fn received(&self) -> HashMap<String, BTreeSet<String>> {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.out) {
            let _ = f.read_to_string(&mut text);
        }
        let mut by_topic: HashMap<String, BTreeSet<String>> = HashMap::new();
        for line in text.lines() {
            if let Some((topic, payload)) = line.split_once(' ') {
                by_topic
                    .entry(topic.to_string())
                    .or_default()
                    .insert(payload.to_string());
            }
        }
        by_topic
    }

    /// Sequence numbers received on `up/<device>` (payload `<seq>` or `<seq> <padding>`).
    fn seqs(&self, device: &str) -> BTreeSet<u64> {
        self.received()
            .remove(&format!("up/{device}"))
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.split(' ').next()?.parse().ok())
            .collect()
    }
}

impl Drop for CloudSide {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------------------
// A client device: MQTT 3.1.1, written here so the test knows exactly which PUBACKs arrived.
// ---------------------------------------------------------------------------------------------

fn remaining_len(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn packet(first: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(first);
    remaining_len(body.len(), out);
    out.extend_from_slice(body);
}

fn string(s: &str, out: &mut Vec<u8>) {
    let len = u16::try_from(s.len()).expect("short string");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// One packet: its first byte and its body. `None` at a clean end of stream.
fn read_packet(r: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    r.read_exact(&mut first).ok()?;
    let mut len = 0usize;
    for shift in 0..4 {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).ok()?;
        len |= usize::from(b[0] & 0x7f) << (7 * shift);
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some((first[0], body))
}

/// Connects as `client_id` (clean session) and waits for an accepting CONNACK.
fn connect(port: u16, client_id: &str) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(LIMIT)).ok()?;
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.extend_from_slice(&[4, 0x02, 0, 60]);
    string(client_id, &mut body);
    let mut out = Vec::new();
    packet(0x10, &body, &mut out);
    stream.write_all(&out).ok()?;
    let (kind, ack) = read_packet(&mut stream)?;
    (kind == 0x20 && ack.get(1) == Some(&0)).then_some(stream)
}

fn publish_packet(topic: &str, payload: &[u8], id: Option<u16>, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    string(topic, &mut body);
    if let Some(id) = id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(if id.is_some() { 0x32 } else { 0x30 }, &body, out);
}

#[derive(Default)]
struct Window {
    /// Packet id -> sequence number, sent and not yet acknowledged.
    pending: HashMap<u16, u64>,
    acked: Vec<u64>,
    closed: bool,
}

/// What one device's stream did.
#[derive(Debug, Default)]
struct Sent {
    /// Sequence numbers the runtime acknowledged (PUBACK received).
    acked: Vec<u64>,
    /// The next sequence number not sent.
    next: u64,
}

/// Publishes `first..first+count` on `up/<device>` at QoS 1 as fast as the runtime acknowledges
/// them (at most [`WINDOW`] unacknowledged), payload `<seq>` padded with `pad` bytes, until all
/// are acknowledged, the connection breaks (a `kill -9`) or [`LIMIT`] passes. `acks` counts
/// PUBACKs as they arrive, for the caller to time its kill.
fn publish_qos1(
    port: u16,
    device: &str,
    first: u64,
    count: u64,
    pad: usize,
    acks: &AtomicU64,
) -> Sent {
    let Some(stream) = connect(port, device) else {
        return Sent {
            acked: Vec::new(),
            next: first,
        };
    };
    let state = Arc::new((Mutex::new(Window::default()), Condvar::new()));
    let reader = {
        let state = state.clone();
        let mut r = stream.try_clone().expect("clone stream");
        std::thread::spawn(move || {
            let (lock, cv) = &*state;
            while let Some((kind, body)) = read_packet(&mut r) {
                if kind & 0xf0 != 0x40 || body.len() < 2 {
                    continue;
                }
                let id = u16::from_be_bytes([body[0], body[1]]);
                let mut w = lock.lock().expect("lock");
                if let Some(seq) = w.pending.remove(&id) {
                    w.acked.push(seq);
                }
                drop(w);
                cv.notify_all();
            }
            lock.lock().expect("lock").closed = true;
            cv.notify_all();
        })
    };
    let topic = format!("up/{device}");
    let padding = " ".to_string() + &"x".repeat(pad);
    let mut w_stream = stream.try_clone().expect("clone stream");
    let deadline = Instant::now() + LIMIT;
    let (lock, cv) = &*state;
    let mut next = first;
    let mut id: u16 = 0;
    let mut out = Vec::new();
    'send: while next < first + count && Instant::now() < deadline {
        // Fill the window, then write it in one go.
        out.clear();
        {
            let mut w = lock.lock().expect("lock");
            while w.pending.len() >= WINDOW && !w.closed {
                w = cv
                    .wait_timeout(w, Duration::from_millis(100))
                    .expect("lock")
                    .0;
                if Instant::now() >= deadline {
                    break 'send;
                }
            }
            if w.closed {
                break;
            }
            while w.pending.len() < WINDOW && next < first + count {
                id = id.wrapping_add(1).max(1);
                if w.pending.contains_key(&id) {
                    break;
                }
                w.pending.insert(id, next);
                let payload = if pad > 0 {
                    format!("{next}{padding}")
                } else {
                    next.to_string()
                };
                publish_packet(&topic, payload.as_bytes(), Some(id), &mut out);
                next += 1;
            }
        }
        if w_stream.write_all(&out).is_err() {
            break;
        }
        let acked = lock.lock().expect("lock").acked.len() as u64;
        acks.fetch_max(acked, Ordering::Relaxed);
    }
    // Everything sent: wait (bounded) for the last PUBACKs, then leave.
    {
        let mut w = lock.lock().expect("lock");
        while !w.pending.is_empty() && !w.closed && Instant::now() < deadline {
            w = cv
                .wait_timeout(w, Duration::from_millis(100))
                .expect("lock")
                .0;
        }
    }
    let _ = w_stream.write_all(&[0xe0, 0]);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = reader.join();
    let acked = std::mem::take(&mut lock.lock().expect("lock").acked);
    Sent { acked, next }
}

/// Publishes `count` messages at QoS 0 (payload `<seq> <padding>`), then one QoS 1 publish whose
/// PUBACK says every earlier one was read and routed; returns whether that PUBACK came.
fn publish_qos0(port: u16, device: &str, count: u64, pad: usize) -> bool {
    let Some(mut stream) = connect(port, device) else {
        return false;
    };
    let topic = format!("up/{device}");
    let padding = "x".repeat(pad);
    let mut out = Vec::new();
    for seq in 0..count {
        let payload = if pad > 0 {
            format!("{seq} {padding}")
        } else {
            seq.to_string()
        };
        publish_packet(&topic, payload.as_bytes(), None, &mut out);
        if out.len() > 64 * 1024 {
            if stream.write_all(&out).is_err() {
                return false;
            }
            out.clear();
        }
    }
    publish_packet(&topic, b"fence", Some(1), &mut out);
    if stream.write_all(&out).is_err() {
        return false;
    }
    let fenced = std::iter::from_fn(|| read_packet(&mut stream))
        .take(10)
        .any(|(kind, _)| kind & 0xf0 == 0x40);
    let _ = stream.write_all(&[0xe0, 0]);
    fenced
}

// ---------------------------------------------------------------------------------------------
// The runtime
// ---------------------------------------------------------------------------------------------

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:thing/{name}")
}

/// Devices `names`, each routed to the cloud on `up/<name>`.
fn devices_to_cloud(names: &[&str]) -> Value {
    let subs = names
        .iter()
        .map(|n| {
            sub(
                &format!("{n}-up"),
                &thing_arn(n),
                &format!("up/{n}"),
                "cloud",
            )
        })
        .collect();
    let mut g = group(vec![], subs);
    g["DeviceDefinitionVersion"] = json!({ "Devices": names.iter().map(|n| json!({
        "Id": n,
        "ThingArn": thing_arn(n),
        "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/abc123",
    })).collect::<Vec<_>>() });
    g
}

/// `queue`: `evergreen.queueCapacity` (the spool's hand-off); `spool`: `maxSizeBytes`.
fn config(upstream: u16, queue: usize, spool: u64) -> Value {
    json!({
        "coreThing": { "iotHost": "127.0.0.1", "iotMqttPort": upstream },
        "mqttMaxConnectionRetryInterval": 1,
        "evergreen": {
            "cloudTls": false,
            "queueCapacity": queue,
            "spooler": { "storageType": "FileSystem", "maxSizeBytes": spool },
            "listeners": { "mqttPlain": { "enabled": true, "port": 0 } }
        }
    })
}

/// The plain listener's port, once the (re)started runtime has written it.
fn plain_port(rt: &Runtime) -> u16 {
    rt.listener_port("plain", LIMIT)
        .expect("the runtime names its plain listener's port")
}

/// Starts the runtime again on the same root, configuration and group.
fn restart(rt: &mut Runtime) -> u16 {
    let _ = std::fs::remove_file(rt.listeners_file());
    rt.child = Command::new(evergreen_bin())
        .arg("run")
        .arg("--config")
        .arg(rt.path("config.json"))
        .arg("--group")
        .arg(rt.path("group.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("restart evergreen");
    plain_port(rt)
}

/// `evergreen status --json` of `rt`, and the text form.
fn status_of(rt: &Runtime) -> (String, Value) {
    let run = |json: bool| {
        let mut cmd = Command::new(evergreen_bin());
        cmd.arg("status")
            .arg("--config")
            .arg(rt.path("config.json"));
        if json {
            cmd.arg("--json");
        }
        cmd.stdin(Stdio::null())
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default()
    };
    let text = String::from_utf8_lossy(&run(false)).into_owned();
    (
        text,
        serde_json::from_slice(&run(true)).unwrap_or(Value::Null),
    )
}

fn system_log(rt: &Runtime) -> String {
    std::fs::read_to_string(rt.log_path("system/runtime.log")).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// Several devices publish QoS 1 to the cloud as fast as the runtime acknowledges; the runtime
/// is killed with SIGKILL mid-stream, several times, and restarted on the same root. Every
/// message a device received a PUBACK for reaches the upstream broker (duplicates allowed).
#[test]
fn nothing_acknowledged_is_lost_across_kill_9() {
    const DEVICES: [&str; 4] = ["dev-0", "dev-1", "dev-2", "dev-3"];
    const KILLS: usize = 4;
    let Some(bin) = mosquitto() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let upstream = free_port();
    let _broker = start_broker(&bin, dir.path(), upstream);
    let cloud = CloudSide::start(upstream, &dir.path().join("cloud.txt"));

    // A spool large enough that no acknowledged message is pushed out while the bridge drains
    // slower than the devices publish: that loss is counted, not prevented (the next test).
    let mut rt = Runtime::start_config(
        &devices_to_cloud(&DEVICES),
        &config(upstream, 1024, 256 * 1024 * 1024),
        &[],
    );
    let mut port = plain_port(&rt);
    let mut acked: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); DEVICES.len()];
    let mut next = vec![0u64; DEVICES.len()];
    for round in 0..KILLS {
        let started = Instant::now();
        let streams: Vec<_> = DEVICES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (first, name) = (next[i], (*name).to_string());
                std::thread::spawn(move || {
                    publish_qos1(port, &name, first, 10_000_000, 0, &AtomicU64::new(0))
                })
            })
            .collect();
        // Mid-stream: after a while of full-speed publishing (each round a different moment).
        std::thread::sleep(Duration::from_millis(1500 + 400 * round as u64));
        assert!(
            streams.iter().all(|s| !s.is_finished()),
            "every device is still publishing when the runtime is killed"
        );
        assert!(rt.stop_with(Signal::SIGKILL, LIMIT).is_some());
        let elapsed = started.elapsed();
        let mut round_acked = 0;
        for (i, s) in streams.into_iter().enumerate() {
            let sent = s.join().expect("device thread");
            round_acked += sent.acked.len();
            acked[i].extend(sent.acked);
            next[i] = sent.next;
        }
        eprintln!(
            "round {round}: {round_acked} PUBACKs in {:.1} s ({:.0} msg/s acknowledged) before kill -9",
            elapsed.as_secs_f64(),
            round_acked as f64 / elapsed.as_secs_f64()
        );
        assert!(
            round_acked > 0,
            "the devices were acknowledged: {}",
            system_log(&rt)
        );
        port = restart(&mut rt);
    }
    let _ = port;

    // The last runtime delivers what the spool kept; wait (bounded) for every acknowledged one.
    let total: usize = acked.iter().map(BTreeSet::len).sum();
    let missing = |cloud: &CloudSide| -> Vec<(String, u64)> {
        DEVICES
            .iter()
            .zip(&acked)
            .flat_map(|(name, acked)| {
                let got = cloud.seqs(name);
                acked
                    .iter()
                    .filter(|s| !got.contains(s))
                    .map(|s| ((*name).to_string(), *s))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let done = wait_for(Duration::from_secs(120), || {
        missing(&cloud).is_empty().then_some(())
    });
    let lost = missing(&cloud);
    eprintln!(
        "{total} messages acknowledged over {KILLS} kill -9s; {} of them missing upstream",
        lost.len()
    );
    assert!(
        done.is_some() && lost.is_empty(),
        "acknowledged but never reached the cloud ({} of {total}): first {:?}",
        lost.len(),
        lost.iter().take(20).collect::<Vec<_>>()
    );
}

// A V1 Python function, unmodified greengrasssdk, publishing a numbered stream to the cloud
// from several threads with `queueFullPolicy='AllOrException'`. Each thread appends a line
// after each publish returns: `ok <payload>` (no exception: the SDK says it is stored) or
// `fail <payload> <why>`. One `os.write` per line on an O_APPEND descriptor, so lines of the
// threads never interleave and a line written before a `kill -9` is in the file.
const PY_STREAM: &str = r#"
import os
import threading

import greengrasssdk

client = greengrasssdk.client("iot-data")
record = os.open("@RECORD@", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def stream(thread):
    n = 0
    while True:
        payload = "%d-%d-%d" % (os.getpid(), thread, n)
        try:
            client.publish(topic="up/py", queueFullPolicy="AllOrException", payload=payload)
            line = "ok %s\n" % payload
        except Exception as e:
            line = "fail %s %s\n" % (payload, str(e).replace("\n", " "))
        os.write(record, line.encode())
        n += 1


for thread in range(4):
    threading.Thread(target=stream, args=(thread,), daemon=True).start()


def function_handler(event, context):
    return
"#;

/// The payloads the function saw succeed, and how many publishes raised.
fn py_outcomes(record: &Path) -> (BTreeSet<String>, usize) {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    let mut ok = BTreeSet::new();
    let mut failed = 0;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("ok", payload)) => {
                ok.insert(payload.to_string());
            }
            Some(("fail", _)) => failed += 1,
            _ => {}
        }
    }
    (ok, failed)
}

/// Why the publishes that raised did, without their payloads (each reason once).
fn py_failures(record: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("fail "))
        .filter_map(|l| l.split_once(' ').map(|(_, why)| why.to_string()))
        .collect()
}

/// docs/cloud-bridge.md, "What an acknowledgement to the cloud means, per path": for a Python function's
/// `publish(queueFullPolicy='AllOrException')`, "nothing the call returned for is lost" across
/// `kill -9`. An unmodified V1 function streams to the cloud from four threads; the runtime is
/// killed with SIGKILL mid-stream, several times, and restarted on the same root; in the middle
/// round the upstream broker is down, so the kill finds everything of that round in the spool,
/// unsent. Every publish that returned without an exception reaches the upstream broker
/// (duplicates allowed).
#[test]
fn nothing_a_python_all_or_exception_publish_returned_for_is_lost_across_kill_9() {
    const KILLS: usize = 3;
    let Some(bin) = mosquitto() else {
        return;
    };
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let upstream = free_port();
    let cloud_file = dir.path().join("cloud.txt");
    let mut broker = Some(start_broker(&bin, dir.path(), upstream));
    let mut cloud = Some(CloudSide::start(upstream, &cloud_file));

    let code = dir.path().join("functions/pystream");
    vendor_greengrasssdk(&sdk, &code).expect("vendor greengrasssdk");
    let record = dir.path().join("published.txt");
    std::fs::write(
        code.join("pystream.py"),
        PY_STREAM.replace("@RECORD@", &record.display().to_string()),
    )
    .expect("write the function");
    let arn = fn_arn("pystream");
    let g = group(
        vec![json!({
            "Id": "pystream",
            "FunctionArn": arn,
            "FunctionConfiguration": {
                "Executable": "pystream.function_handler",
                "CodeUri": code,
                "Runtime": "python3.8",
                "Pinned": true,
                "Timeout": 3,
                "EncodingType": "binary",
                "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
            }
        })],
        vec![sub("py-up", &arn, "up/py", "cloud")],
    );
    let mut cfg = config(upstream, 1024, 256 * 1024 * 1024);
    merge(
        &mut cfg,
        &json!({ "coreThing": { "ggDaemonPort": free_port() } }),
    );
    let mut rt = Runtime::start_config(&g, &cfg, &[]);
    plain_port(&rt);

    let mut ok = BTreeSet::new();
    let mut failed = 0;
    for round in 0..KILLS {
        match round {
            // The broker goes away; the cloud side's persistent session stays in its store.
            1 => {
                drop(cloud.take());
                if let Some(b) = broker.take() {
                    b.stop();
                }
            }
            2 => {
                broker = Some(start_broker(&bin, dir.path(), upstream));
                cloud = Some(CloudSide::start(upstream, &cloud_file));
            }
            _ => {}
        }
        // The function is streaming: successes keep coming in this round.
        let before = py_outcomes(&record).0.len();
        let flowing = wait_for(Duration::from_secs(60), || {
            (py_outcomes(&record).0.len() >= before + 200).then_some(())
        });
        assert!(
            flowing.is_some(),
            "round {round}: the function does not publish: {}",
            system_log(&rt)
        );
        // Mid-stream, at a different moment each round.
        std::thread::sleep(Duration::from_millis(300 + 400 * round as u64));
        assert!(rt.stop_with(Signal::SIGKILL, LIMIT).is_some());
        (ok, failed) = py_outcomes(&record);
        eprintln!(
            "round {round} (broker {}): {} publishes returned without an exception so far, {failed} raised; kill -9",
            if broker.is_some() { "up" } else { "down" },
            ok.len()
        );
        restart(&mut rt);
    }

    // The last runtime sends what the spool kept; wait (bounded) for every success seen up to
    // the last kill (the restarted function goes on publishing; those are not in question).
    let missing = |cloud: &CloudSide| -> Vec<String> {
        let got = cloud.received().remove("up/py").unwrap_or_default();
        ok.iter().filter(|p| !got.contains(*p)).cloned().collect()
    };
    let cloud = cloud.expect("the cloud side is back");
    let done = wait_for(Duration::from_secs(120), || {
        missing(&cloud).is_empty().then_some(())
    });
    let lost = missing(&cloud);
    eprintln!(
        "{} publishes returned without an exception ({failed} raised: {:?}) over {KILLS} kill -9s; {} missing upstream",
        ok.len(),
        py_failures(&record),
        lost.len()
    );
    assert!(
        done.is_some() && lost.is_empty(),
        "returned without an exception but never reached the cloud ({} of {}): first {:?}",
        lost.len(),
        ok.len(),
        lost.iter().take(20).collect::<Vec<_>>()
    );
}

/// The spool's hand-off is as small as the configuration allows (`queueCapacity` 1) and the
/// upstream broker is down, so the spool overflows: a QoS 1 device is held rather than
/// acknowledged and dropped at the hand-off, a QoS 0 device's messages that do not fit are
/// dropped, and every message that never reaches the cloud is counted in `evergreen status`.
#[test]
fn a_full_hand_off_holds_the_device_and_every_loss_is_counted() {
    // About 14 bytes a message (`up/held` and the number): the 262144-byte spool holds about
    // 19000, so 30000 overflow it. Short payloads keep each PUBLISH within one read (see
    // `a_qos1_publish_split_across_reads_is_acknowledged_without_a_stall`).
    const QOS1: u64 = 30_000;
    const QOS0: u64 = 4000;
    const PAD: usize = 0;
    let Some(bin) = mosquitto() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let upstream = free_port();
    // The cloud side's persistent session exists before the broker goes down.
    let broker = start_broker(&bin, dir.path(), upstream);
    drop(CloudSide::start(upstream, &dir.path().join("probe.txt")));
    broker.stop();

    let rt = Runtime::start_config(
        &devices_to_cloud(&["held", "noisy"]),
        &config(upstream, 1, 262_144),
        &[],
    );
    let port = plain_port(&rt);
    let noisy = std::thread::spawn(move || publish_qos0(port, "noisy", QOS0, PAD));
    let acks = AtomicU64::new(0);
    let sent = publish_qos1(port, "held", 0, QOS1, PAD, &acks);
    assert!(
        noisy.join().expect("qos 0 device"),
        "the QoS 0 device's fence was acknowledged"
    );
    assert_eq!(
        sent.acked.len() as u64,
        QOS1,
        "every QoS 1 message is stored, so each is acknowledged (the device waits meanwhile); runtime log:\n{}",
        system_log(&rt)
            .lines()
            .filter(|l| l.contains("MQTT") || l.contains("spool"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The broker comes back; the spool drains.
    let _broker = start_broker(&bin, dir.path(), upstream);
    let cloud = CloudSide::start(upstream, &dir.path().join("cloud.txt"));
    let drained = wait_for(Duration::from_secs(60), || {
        let (_, doc) = status_of(&rt);
        (doc["cloudLink"]["spooled"].as_u64() == Some(0)
            && doc["cloudLink"]["state"] == "connected")
            .then_some(doc)
    });
    let doc = drained.expect("the spool drained once the broker was back");
    // What the bridge sent is in the subscriber's file once its PUBACKs came back; a moment
    // for mosquitto_sub to write the last lines.
    let received = |name: &str| cloud.seqs(name);
    let settled = wait_for(Duration::from_secs(10), || {
        let before = (received("held").len(), received("noisy").len());
        std::thread::sleep(Duration::from_millis(500));
        (before == (received("held").len(), received("noisy").len())).then_some(before)
    });
    let (held, noisy) = settled.expect("the cloud side stopped receiving");
    let drops = &doc["cloudLink"]["drops"];
    let count = |k: &str| drops[k].as_u64().unwrap_or(0);
    // The QoS 0 device's closing QoS 1 publish goes the same way, and may be pushed out too.
    let fence_lost = !cloud
        .received()
        .get("up/noisy")
        .is_some_and(|p| p.contains("fence"));
    let lost = (QOS1 - held as u64) + (QOS0 - noisy as u64) + u64::from(fence_lost);
    let (text, _) = status_of(&rt);
    eprintln!(
        "QoS 1: {QOS1} acknowledged, {held} reached the cloud; QoS 0: {QOS0} sent, {noisy} reached the cloud; status drops {drops}; {}",
        text.lines().next().unwrap_or_default()
    );
    assert!(lost > 0, "the spool was made to overflow");
    assert_eq!(
        count("handOffFull") + count("spoolFull") + count("notStored"),
        lost,
        "every message that never reached the cloud is counted: {drops}"
    );
    assert_eq!(count("notStored"), 0, "{drops}");
    assert!(
        text.contains(&format!("{lost} lost")),
        "the status line says how many were lost: {text}"
    );
    // A QoS 1 message lost after its PUBACK can only be one the full spool pushed out (the
    // oldest go), never one refused at the hand-off: that would have had no PUBACK.
    let held_lost = QOS1 - held as u64;
    assert!(
        held_lost <= count("spoolFull"),
        "acknowledged QoS 1 messages lost beyond the spool's overflow: {held_lost} > {drops}"
    );
}

/// A QoS 1 PUBLISH whose payload arrives in a later read than its header, while earlier ones
/// wait for the spool's commit, must still be read, stored and acknowledged.
///
/// In the setting of the test above (upstream broker down, a QoS 0 flood from another device at
/// a one-message hand-off) with ~110-byte payloads written 256 at a time, one such publish's
/// payload chunk used to be handed over before its publish had taken its payload (the commit's
/// wake from the spool thread let ntex-mqtt's dispatcher run ahead of the publishes it had
/// spawned): the payload guard fired after 10 s and the connection ended. The MQTT server now
/// passes the commit's wake on from its own thread (`PublishService::route`).
#[test]
fn a_qos1_publish_split_across_reads_is_acknowledged_without_a_stall() {
    let Some(bin) = mosquitto() else {
        return;
    };
    let _ = bin;
    // It does not happen on every run (about one in two in test (b)'s setting on the 2-core
    // machine): five fresh runtimes, each must acknowledge everything.
    for attempt in 0..5 {
        // Nothing listens upstream: the spool only fills.
        let upstream = free_port();
        let rt = Runtime::start_config(
            &devices_to_cloud(&["held", "noisy"]),
            &config(upstream, 1, 262_144),
            &[],
        );
        let port = plain_port(&rt);
        let noisy = std::thread::spawn(move || publish_qos0(port, "noisy", 4000, 100));
        let sent = publish_qos1(port, "held", 0, 30_000, 100, &AtomicU64::new(0));
        let _ = noisy.join();
        assert_eq!(
            sent.acked.len(),
            30_000,
            "attempt {attempt}: {}",
            system_log(&rt)
                .lines()
                .filter(|l| l.contains("payload"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
