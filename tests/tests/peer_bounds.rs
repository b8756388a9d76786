//! Bounds on peers before they are trusted (issue 18, item 3), against the real runtime with
//! raw sockets from the test as the attackers and real clients (`mosquitto_pub`, a Python
//! function with the real `greengrasssdk`) as the peers that must keep working:
//! - MQTT: a packet over the pre-CONNECT limit closes the connection at its header, without
//!   the runtime buffering it; a socket that sends no CONNECT is closed at the deadline; the
//!   per-IP and total connection limits refuse the next connection; 1,500 idle sockets on the
//!   TLS port do not delay a new device.
//! - MQTT, a connected device: a packet over `maxPacketBytes` closes its connection (MQTT 5:
//!   DISCONNECT 0x95), the keep-alive is capped at `maxKeepAliveSecs` (MQTT 5: Server Keep
//!   Alive) and silence beyond 1.5 times it disconnects, a packet that stops arriving is
//!   dropped after `readTimeoutSecs`; each close is counted in `evergreen status`, as are the
//!   server's traffic and refusals.
//! - Lambda IPC endpoint: idle connections do not lock a Python function out; a large body
//!   announced with a wrong token is refused on the head, before it is read.
//!
//! Memory is the runtime's VmRSS from `/proc/<pid>/status`; the figures are printed (run with
//! `--nocapture`) and asserted only against generous bounds. Times are printed, never asserted
//! beyond each test's bound.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

/// The runtime's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/{name}")
}

fn missing_clients() -> bool {
    let ok = Command::new("mosquitto_pub").arg("--help").output().is_ok();
    if !ok {
        eprintln!(
            "SKIPPED: mosquitto_pub not installed (Debian mosquitto-clients; .ci/run installs it)"
        );
    }
    !ok
}

/// The group CA, server and device certificates under `dir` (`evergreen certs`).
fn pki(dir: &Path, things: &[&str]) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new(evergreen_bin())
            .arg("certs")
            .args(args)
            .arg("--root")
            .arg(dir)
            .output()
            .expect("run evergreen certs");
        assert!(out.status.success(), "evergreen certs {args:?}: {out:?}");
    };
    run(&["init"]);
    for t in things {
        run(&["device", t]);
    }
    dir.join("certs/local")
}

/// A runtime whose group has `devices`, with the plain listener and (given `certs`) the TLS
/// listener on free loopback ports, and `limits` as `evergreen.mqttLimits`. Returns the
/// runtime and the (plain, TLS) addresses.
fn start_mqtt(
    devices: &[&str],
    certs: Option<&Path>,
    limits: Value,
) -> (Runtime, SocketAddr, Option<SocketAddr>) {
    start_routed(devices, vec![], certs, limits)
}

/// [`start_mqtt`] with subscriptions between the devices.
fn start_routed(
    devices: &[&str],
    subscriptions: Vec<Value>,
    certs: Option<&Path>,
    limits: Value,
) -> (Runtime, SocketAddr, Option<SocketAddr>) {
    let mut g = group(vec![], subscriptions);
    g["DeviceDefinitionVersion"] = json!({ "Devices": devices.iter().map(|d| json!({
        "Id": d, "ThingArn": thing_arn(d),
        "CertificateArn": format!("arn:aws:iot:{REGION}:{ACCOUNT}:cert/abc123"),
    })).collect::<Vec<_>>() });
    let mut listeners =
        json!({ "mqttPlain": { "enabled": true, "address": "127.0.0.1", "port": 0 } });
    if let Some(local) = certs {
        listeners["mqttTls"] = json!({
            "address": "127.0.0.1", "port": 0,
            "caPath": local.join("ca.pem"),
            "certPath": local.join("server.pem"),
            "keyPath": local.join("server.key"),
        });
    }
    let rt = Runtime::start_with(&g, &json!({ "listeners": listeners, "mqttLimits": limits }));
    let file = rt.dir.path().join("root/run/mqtt-listeners.json");
    let doc = wait_for(LIMIT, || {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
        doc["plain"].as_str()?;
        Some(doc)
    })
    .expect("the runtime names its listeners");
    let addr = |key: &str| doc[key].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
    let plain = addr("plain").expect("plain listener address");
    (rt, plain, addr("tls"))
}

/// Whether the server closed `s` (end of stream or reset) within `within`; `false` if it is
/// still open then. Data the server sends is read and ignored.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            // A signal is not the peer closing: read again until the deadline.
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Whether `s` is still open right now (nothing to read, no end of stream).
fn still_open(s: &mut TcpStream) -> bool {
    !closed_within(s, Duration::from_millis(5))
}

/// How many of `streams` the server closed, waiting up to 5 s for `expected` of them (then 1 s
/// more, so that one too many is seen).
fn wait_refusals(streams: &mut [TcpStream], expected: usize) -> usize {
    let mut closed = vec![false; streams.len()];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut settle: Option<Instant> = None;
    loop {
        for (s, c) in streams.iter_mut().zip(closed.iter_mut()) {
            if !*c && closed_within(s, Duration::from_millis(5)) {
                *c = true;
            }
        }
        let n = closed.iter().filter(|c| **c).count();
        let now = Instant::now();
        if n >= expected && settle.is_none() {
            settle = Some(now + Duration::from_secs(1));
        }
        if settle.is_some_and(|t| now >= t) || now >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP connection to `to` from the loopback address `from` (any port).
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((from, 0)))
            .expect("bind a loopback address");
        socket.connect(to).await.expect("connect")
    });
    let std = stream.into_std().expect("std stream");
    std.set_nonblocking(false).expect("blocking");
    std
}

/// `mosquitto_pub` of one QoS 1 message as `id` (CONNECT, PUBLISH, PUBACK, DISCONNECT),
/// killed if it has not finished within `within`; returns its output and how long it took.
fn timed_publish(args: &[String], id: &str, within: Duration) -> (Option<Output>, Duration) {
    let mut args = args.to_vec();
    args.extend(["-t", "probe/t", "-m", "hello", "-q", "1"].map(String::from));
    timed_publish_to(&args, id, within)
}

/// `mosquitto_pub <args> -i <id>`, killed if it has not finished within `within`; returns
/// its output and how long it took.
fn timed_publish_to(args: &[String], id: &str, within: Duration) -> (Option<Output>, Duration) {
    let started = Instant::now();
    let mut child = Command::new("mosquitto_pub")
        .args(args)
        .args(["-i", id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    let deadline = started + within;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            let took = started.elapsed();
            return (child.wait_with_output().ok(), took);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The start of an MQTT 3.1.1 CONNECT whose fixed header announces `remaining` bytes, with
/// the protocol name and level (what a server reads to pick the protocol version).
fn connect_prefix(remaining: u32) -> Vec<u8> {
    let mut out = vec![0x10];
    let mut n = remaining;
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
    out.extend_from_slice(b"\x00\x04MQTT\x04\x02\x00\x3c");
    out
}

#[test]
fn an_oversized_packet_before_connect_closes_the_connection_without_being_buffered() {
    let (rt, plain, _) = start_mqtt(&[], None, json!({}));
    let pid = rt.child.id();
    let before = rss_kib(pid);
    // Eight peers announce MQTT's largest packet (256 MiB) and try to send 32 MiB of it each.
    const SEND: usize = 32 << 20;
    let chunk = vec![0u8; 64 << 10];
    let mut peers = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(plain).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(3)))
            .expect("write timeout");
        let mut sent = 0usize;
        if s.write_all(&connect_prefix(268_435_455)).is_ok() {
            while sent < SEND {
                match s.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
        }
        peers.push((s, sent));
    }
    let after = rss_kib(pid);
    let sent: Vec<usize> = peers.iter().map(|(_, n)| *n).collect();
    eprintln!(
        "8 peers announcing 256 MiB before CONNECT: bytes accepted per peer {sent:?}; runtime VmRSS {before} KiB -> {after} KiB (+{} KiB)",
        after.saturating_sub(before)
    );
    for (i, (s, _)) in peers.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(5)),
            "peer {i}: the connection stays open after announcing a 256 MiB packet before CONNECT"
        );
    }
    // The kernel's socket buffers take a few MiB per peer whatever the runtime does; the
    // runtime itself must hold none of the 256 MiB (before the fix: every byte sent).
    assert!(
        after.saturating_sub(before) < 32 << 10,
        "the runtime grew by {} KiB",
        after.saturating_sub(before)
    );
    drop(rt);
}

#[test]
fn a_socket_that_sends_no_connect_is_closed_at_the_deadline() {
    let dir = tempfile::tempdir().expect("tmp");
    let local = pki(dir.path(), &[]);
    let (rt, plain, tls) = start_mqtt(&[], Some(&local), json!({ "connectTimeoutSecs": 2 }));
    let tls = tls.expect("TLS listener");
    let started = Instant::now();
    let mut silent = TcpStream::connect(plain).expect("connect");
    let mut silent_tls = TcpStream::connect(tls).expect("connect");
    // A CONNECT trickled a byte at a time, each within any per-read timeout.
    let mut trickle = TcpStream::connect(plain).expect("connect");
    trickle.write_all(&connect_prefix(100)).expect("write");
    let mut closed: Vec<(&str, Option<Duration>)> = Vec::new();
    let mut open: Vec<(&str, &mut TcpStream)> = vec![
        ("silent plain", &mut silent),
        ("silent TLS", &mut silent_tls),
        ("trickling plain", &mut trickle),
    ];
    while !open.is_empty() && started.elapsed() < Duration::from_secs(15) {
        let mut i = 0;
        while i < open.len() {
            let (name, s) = &mut open[i];
            if name.starts_with("trickling") {
                let _ = s.write_all(b"x");
            }
            if closed_within(s, Duration::from_millis(100)) {
                closed.push((name, Some(started.elapsed())));
                open.remove(i);
            } else {
                i += 1;
            }
        }
    }
    for (name, _) in &open {
        closed.push((name, None));
    }
    eprintln!("with connectTimeoutSecs 2, closed after: {closed:?}");
    for (name, at) in closed {
        let at = at.unwrap_or_else(|| panic!("{name}: still open after 15 s"));
        assert!(
            at >= Duration::from_millis(1500) && at <= Duration::from_millis(4500),
            "{name}: closed after {at:?}, not at the 2 s deadline"
        );
    }
    drop(rt);
}

#[test]
fn connections_over_the_per_ip_and_total_limits_are_refused() {
    if missing_clients() {
        return;
    }
    let (rt, plain, _) = start_mqtt(
        &["probe"],
        None,
        json!({ "maxConnections": 20, "maxConnectionsPerIp": 10, "connectTimeoutSecs": 120 }),
    );
    let args: Vec<String> = ["-h", "127.0.0.1", "-p", &plain.port().to_string()]
        .iter()
        .map(|a| a.to_string())
        .collect();
    // The server is serving (connections made while its worker starts are taken in no
    // particular order, so the "eleventh" would not be the last one).
    wait_for(LIMIT, || {
        let (out, _) = timed_publish(&args, "probe", Duration::from_secs(5));
        out.filter(|o| o.status.success())
    })
    .expect("a device connects and publishes");
    // Eleven idle connections from 127.0.0.1: exactly one is closed at once, and ten are held.
    // Which one is the server's admission order (its workers take connections concurrently),
    // so the test asks how many, not which.
    let mut first: Vec<TcpStream> = (0..11)
        .map(|_| TcpStream::connect(plain).expect("connect"))
        .collect();
    let refused = wait_refusals(&mut first, 1);
    assert_eq!(
        refused, 1,
        "of 11 connections from one IP exactly one is refused (maxConnectionsPerIp 10)"
    );
    // Ten more from 127.0.0.2 and one from a third address: 22 tried, 20 held (maxConnections
    // 20), the one refused before among them.
    let mut second: Vec<TcpStream> = (0..10)
        .map(|_| connect_from([127, 0, 0, 2], plain))
        .collect();
    second.push(connect_from([127, 0, 0, 3], plain));
    let refused_second = wait_refusals(&mut second, 1);
    assert_eq!(
        refused_second, 1,
        "of the 11 connections past the first ten exactly one is refused (maxConnections 20)"
    );
    // The admitted ones stay open.
    first.retain_mut(still_open);
    second.retain_mut(still_open);
    assert_eq!(
        first.len() + second.len(),
        20,
        "every admitted connection stays open"
    );
    // A freed place is taken again: a real device connects and publishes.
    drop(first);
    let ok = wait_for(LIMIT, || {
        let (out, _) = timed_publish(&args, "probe", Duration::from_secs(5));
        out.filter(|o| o.status.success())
    });
    assert!(
        ok.is_some(),
        "a device could not connect once places were free"
    );
    let log = std::fs::read_to_string(rt.log_path("system/runtime.log")).unwrap_or_default();
    assert!(
        log.contains("refused a connection from 127.0.0.1"),
        "the refusal is not logged:\n{log}"
    );
    drop(second);
    drop(rt);
}

#[test]
fn idle_tls_sockets_do_not_delay_a_new_device() {
    if missing_clients() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let local = pki(dir.path(), &["lamp"]);
    let (rt, plain, tls) = start_mqtt(
        &["lamp"],
        Some(&local),
        // Room for all of this test's sockets from its one address, and a CONNECT deadline
        // longer than the test: what lets the device in must be fairness, not a limit or
        // the deadline closing the idle sockets.
        json!({ "maxConnectionsPerIp": 2000, "maxConnections": 4096, "connectTimeoutSecs": 120 }),
    );
    let tls = tls.expect("TLS listener");
    let pid = rt.child.id();
    let tls_args: Vec<String> = vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        tls.port().to_string(),
        "--cafile".into(),
        local.join("ca.pem").display().to_string(),
        "--cert".into(),
        local.join("devices/lamp.pem").display().to_string(),
        "--key".into(),
        local.join("devices/lamp.key").display().to_string(),
    ];
    let plain_args: Vec<String> = vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        plain.port().to_string(),
    ];
    let (quiet, quiet_took) = timed_publish(&tls_args, "lamp", LIMIT);
    assert!(
        quiet.is_some_and(|o| o.status.success()),
        "the device cannot publish at all"
    );
    let before = rss_kib(pid);
    let mut idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(tls).expect("connect"))
        .collect();
    // Each is accepted (its TLS handshake waiting for a ClientHello) once the runtime's
    // memory stops growing; poll until two readings 200 ms apart agree.
    let mut last = 0;
    let at_1000 = wait_for(LIMIT, || {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_kib(pid);
        let stable = now == last;
        last = now;
        stable.then_some(now)
    })
    .unwrap_or(last);
    idle.extend((0..500).map(|_| TcpStream::connect(tls).expect("connect")));
    // The bound is generous (a lone connection takes tens of milliseconds here) yet below
    // what the idle sockets cost before (4.7 s measured, 5 s handshake timeout per wave).
    const BOUND: Duration = Duration::from_secs(2);
    let (tls_out, tls_took) = timed_publish(&tls_args, "lamp", BOUND);
    let (plain_out, plain_took) = timed_publish(&plain_args, "lamp", BOUND);
    let held = idle.iter_mut().map(still_open).filter(|open| *open).count();
    eprintln!(
        "runtime VmRSS {before} KiB, with 1,000 idle unauthenticated TLS sockets {at_1000} KiB (+{} KiB, {:.1} KiB each)",
        at_1000.saturating_sub(before),
        at_1000.saturating_sub(before) as f64 / 1000.0
    );
    eprintln!(
        "device connect+publish (mosquitto_pub, QoS 1): alone {quiet_took:?}; with 1,500 idle TLS sockets: TLS {tls_took:?}, plain {plain_took:?}; idle sockets still open {held}"
    );
    assert!(
        tls_out.is_some_and(|o| o.status.success()),
        "the device could not connect over TLS within {BOUND:?} with 1,500 idle sockets open"
    );
    assert!(
        plain_out.is_some_and(|o| o.status.success()),
        "a client could not connect on the plain listener within {BOUND:?} with 1,500 idle TLS sockets open"
    );
    // The idle sockets were served, not refused: fairness, not a limit, let the device in.
    assert_eq!(held, 1500, "idle sockets were closed");
    drop(idle);
    drop(rt);
}

// ---- MQTT: what `evergreen status` counts ----

/// `mosquitto_sub` as `client_id` on the plain listener, printing `topic payload` lines.
struct Watcher {
    child: std::process::Child,
    out: PathBuf,
}

impl Watcher {
    /// Subscribes at QoS 1 to `filter`.
    fn start(plain: SocketAddr, client_id: &str, filter: &str, out: PathBuf) -> Watcher {
        Watcher::start_with(plain, client_id, filter, out, &["-q", "1"])
    }

    /// With `extra` options for `mosquitto_sub` (`-q 0`, MQTT 5 properties).
    fn start_with(
        plain: SocketAddr,
        client_id: &str,
        filter: &str,
        out: PathBuf,
        extra: &[&str],
    ) -> Watcher {
        let file = std::fs::File::create(&out).expect("watcher output");
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &plain.port().to_string()])
            .args(["-i", client_id, "-t", filter, "-v"])
            .args(extra)
            .stdout(file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        Watcher { child, out }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Whether a message on `topic` arrived within `within`.
    fn got(&self, topic: &str, within: Duration) -> bool {
        let prefix = format!("{topic} ");
        wait_for(within, || {
            self.lines()
                .iter()
                .any(|l| l.starts_with(&prefix))
                .then_some(())
        })
        .is_some()
    }

    /// Publishes probes as `sender` on `<topic>` until one arrives (the subscription is in
    /// place); returns how many were sent.
    fn wait_ready(&self, plain: SocketAddr, sender: &str, topic: &str) -> u64 {
        let mut sent = 0;
        let ready = wait_for(LIMIT, || {
            sent += 1;
            assert!(
                mosquitto_pub(plain, sender, topic, "probe"),
                "{sender} could not publish"
            );
            self.got(topic, Duration::from_millis(300)).then_some(())
        });
        assert!(ready.is_some(), "mosquitto_sub never received a probe");
        sent
    }
}

impl Watcher {
    /// Whether `mosquitto_sub` still runs (it ends when the server disconnects it).
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One QoS 1 `mosquitto_pub` as `client_id` on the plain listener; whether it succeeded.
fn mosquitto_pub(plain: SocketAddr, client_id: &str, topic: &str, message: &str) -> bool {
    let args: Vec<String> = ["-h", "127.0.0.1", "-p", &plain.port().to_string()]
        .iter()
        .map(|a| a.to_string())
        .chain(["-t", topic, "-m", message, "-q", "1"].map(String::from))
        .collect();
    let (out, _) = timed_publish_to(&args, client_id, LIMIT);
    out.is_some_and(|o| o.status.success())
}

/// `evergreen status --json` of `rt`.
fn status_json(rt: &Runtime) -> Value {
    let out = evergreen_with(&rt.path("config.json"), &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Issue 18, "every drop anywhere is counted in status": `evergreen status` (text and
/// `--json`) shows the MQTT server's traffic and each refusal and drop by reason, driven here
/// by real clients: a subscriber, publishes routed and delivered, one to a topic no
/// subscription accepts, a CONNECT from a client that is not a device, and a connection over
/// `maxConnectionsPerIp`.
#[test]
fn status_shows_the_mqtt_servers_traffic_and_every_refusal_by_reason() {
    if missing_clients() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (rt, plain, _) = start_routed(
        &["sender", "watcher"],
        vec![sub(
            "s-w",
            &thing_arn("sender"),
            "t/#",
            &thing_arn("watcher"),
        )],
        None,
        json!({ "maxConnectionsPerIp": 3, "connectTimeoutSecs": 120 }),
    );
    let watcher = Watcher::start(plain, "watcher", "t/#", dir.path().join("watcher.txt"));
    let probes = watcher.wait_ready(plain, "sender", "t/probe");
    for i in 0..3 {
        assert!(mosquitto_pub(plain, "sender", &format!("t/{i}"), "m"));
    }
    assert!(watcher.got("t/2", LIMIT));
    // Routed nowhere: no subscription from the sender accepts `other/x`.
    assert!(mosquitto_pub(plain, "sender", "other/x", "m"));
    // Not a device of the group: the CONNACK refuses it, so mosquitto_pub fails.
    assert!(!mosquitto_pub(plain, "stranger", "t/x", "m"));
    // With the watcher's connection, two idle sockets fill the three places of 127.0.0.1; a
    // fourth connection is closed at accept. (Once the publishers' connections are gone.)
    wait_for(LIMIT, || {
        (status_json(&rt)["mqtt"]["connected"] == 1).then_some(())
    })
    .expect("only the watcher stays connected");
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(plain).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        idle.iter_mut().all(still_open),
        "an idle socket within the limit was refused"
    );
    let mut over = TcpStream::connect(plain).expect("connect");
    assert!(
        closed_within(&mut over, Duration::from_secs(5)),
        "the fourth connection was admitted"
    );
    drop(idle);

    let doc = wait_for(LIMIT, || {
        let doc = status_json(&rt);
        let m = &doc["mqtt"];
        (m["publishes"]["delivered"].as_u64() >= Some(3)
            && m["connections"]["refusedMaxConnectionsPerIp"].as_u64() == Some(1))
        .then_some(doc)
    });
    let doc = doc.unwrap_or_else(|| {
        panic!(
            "status --json never showed the traffic: {}",
            status_json(&rt)
        )
    });
    let m = &doc["mqtt"];
    eprintln!("status --json mqtt: {m}");
    let n = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
    assert_eq!(n(&m["connected"]), 1, "the watcher: {m}");
    let c = &m["connections"];
    // The watcher, each probe and the four publishes of the sender.
    assert_eq!(n(&c["accepted"]), 1 + probes + 4, "{m}");
    assert_eq!(n(&c["refusedNotAuthorized"]), 1, "{m}");
    assert_eq!(n(&c["refusedMaxConnectionsPerIp"]), 1, "{m}");
    assert_eq!(n(&c["refusedMaxConnections"]), 0, "{m}");
    let p = &m["publishes"];
    assert_eq!(n(&p["routed"]), probes + 3, "{m}");
    assert_eq!(n(&p["received"]), probes + 4, "{m}");
    assert!((3..=probes + 3).contains(&n(&p["delivered"])), "{m}");
    assert_eq!(n(&m["drops"]["notAuthorized"]), 1, "{m}");
    assert_eq!(n(&m["drops"]["topicInvalid"]), 0, "{m}");

    let out = evergreen_with(&rt.path("config.json"), &["status"]);
    let text = output_text(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("mqtt "))
        .unwrap_or_else(|| panic!("no mqtt line in the status:\n{text}"));
    assert!(line.starts_with("mqtt 1 connected; "), "{line}");
    for part in [
        "2 refused (1 not authorized, 1 over maxConnectionsPerIp)",
        &format!("publishes {} in, {} routed", probes + 4, probes + 3),
        "1 dropped (1 not authorized)",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
}

// ---- MQTT: bounds on a connected device ----

/// MQTT's variable byte integer (a remaining length).
fn var_int(mut n: usize, out: &mut Vec<u8>) {
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

fn mqtt_packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    var_int(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

fn mqtt_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&u16::try_from(s.len()).expect("short").to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A CONNECT (clean session, no will, no properties) at protocol level `level`: 4 is MQTT
/// 3.1.1, 5 is MQTT 5.
fn connect_packet(level: u8, client_id: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str("MQTT", &mut body);
    body.extend_from_slice(&[level, 0x02]);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.push(0); // no properties
    }
    mqtt_str(client_id, &mut body);
    mqtt_packet(0x10, &body)
}

/// A QoS 0 PUBLISH (with the empty property list MQTT 5 needs when `level` is 5).
fn publish_packet(level: u8, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(topic, &mut body);
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    mqtt_packet(0x30, &body)
}

/// One packet, `(first byte, body)`, or `None` at the end of the stream or after `within`.
fn read_packet(s: &mut TcpStream, within: Duration) -> Option<(u8, Vec<u8>)> {
    s.set_read_timeout(Some(within)).ok()?;
    let mut first = [0u8; 1];
    s.read_exact(&mut first).ok()?;
    let mut len = 0usize;
    for shift in 0..4 {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).ok()?;
        len |= usize::from(b[0] & 0x7f) << (7 * shift);
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some((first[0], body))
}

/// A device connected as `client_id` over a raw socket, and its CONNACK's body.
fn mqtt_connect(
    addr: SocketAddr,
    level: u8,
    client_id: &str,
    keep_alive: u16,
) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&connect_packet(level, client_id, keep_alive))
        .expect("send CONNECT");
    let (kind, body) = read_packet(&mut s, LIMIT).expect("a CONNACK");
    assert_eq!(kind, 0x20, "a CONNACK: {body:?}");
    assert_eq!(
        body.get(1),
        Some(&0),
        "CONNECT of {client_id} accepted: {body:?}"
    );
    (s, body)
}

/// The numeric properties of an MQTT 5 CONNACK body, by identifier (strings are skipped).
fn connack_properties(body: &[u8]) -> std::collections::BTreeMap<u8, u32> {
    let mut props = std::collections::BTreeMap::new();
    // Flags and reason code, then the properties' length.
    let mut i = 2;
    let mut len = 0usize;
    for shift in 0..4 {
        let b = body[i];
        i += 1;
        len |= usize::from(b & 0x7f) << (7 * shift);
        if b & 0x80 == 0 {
            break;
        }
    }
    let end = i + len;
    let u16_at = |i: usize| u32::from(u16::from_be_bytes([body[i], body[i + 1]]));
    while i < end {
        let id = body[i];
        i += 1;
        match id {
            // Four-byte integers: session expiry, maximum packet size.
            0x11 | 0x27 => {
                props.insert(
                    id,
                    u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]),
                );
                i += 4;
            }
            // Two-byte integers: server keep alive, receive maximum, topic alias maximum.
            0x13 | 0x21 | 0x22 => {
                props.insert(id, u16_at(i));
                i += 2;
            }
            // Bytes: maximum QoS, retain / wildcard / subscription id / shared available.
            0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                props.insert(id, u32::from(body[i]));
                i += 1;
            }
            // Strings and binary data: skipped.
            0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => i += 2 + u16_at(i) as usize,
            0x26 => {
                i += 2 + u16_at(i) as usize;
                i += 2 + u16_at(i) as usize;
            }
            other => panic!("unexpected CONNACK property {other:#x} in {body:?}"),
        }
    }
    props
}

/// The MQTT server's count of connections closed for `reason` (`closedKeepAlive`, …).
fn closed_count(rt: &Runtime, reason: &str) -> u64 {
    status_json(rt)["mqtt"]["connections"][reason]
        .as_u64()
        .unwrap_or(0)
}

/// Whether the runtime process is still running.
fn running(rt: &mut Runtime) -> bool {
    matches!(rt.child.try_wait(), Ok(None))
}

/// docs/mqtt-server.md, "Bounds before trust": "A connected device's packets may be up to
/// `maxPacketBytes`". MQTT 3.1.1 has no way to tell the device, so the bound is only
/// enforced: a PUBLISH whose remaining length is exactly the limit is read and routed; one
/// byte more closes that connection at its fixed header, and the runtime and its other
/// clients carry on.
#[test]
fn readme_a_connected_devices_packet_over_max_packet_bytes_closes_only_its_connection() {
    if missing_clients() {
        return;
    }
    const MAX: usize = 8192;
    let dir = tempfile::tempdir().expect("tmp");
    let (mut rt, plain, _) = start_routed(
        &["big", "watcher"],
        vec![sub(
            "big-watcher",
            &thing_arn("big"),
            "t/#",
            &thing_arn("watcher"),
        )],
        None,
        json!({ "maxPacketBytes": MAX }),
    );
    // At QoS 0, so what it receives is as large as what was sent (a QoS 1 copy is two bytes
    // larger, over the limit: see the MQTT 5 [MQTT-3.1.2-25] test).
    let watcher = Watcher::start_with(
        plain,
        "watcher",
        "t/#",
        dir.path().join("watcher.txt"),
        &["-q", "0"],
    );
    watcher.wait_ready(plain, "big", "t/probe");

    let (mut device, _) = mqtt_connect(plain, 4, "big", 60);
    // Remaining length: the topic's two length bytes, the topic and the payload.
    let at_limit = publish_packet(4, "t/at-limit", &vec![b'x'; MAX - 2 - "t/at-limit".len()]);
    device.write_all(&at_limit).expect("send");
    assert!(
        watcher.got("t/at-limit", LIMIT),
        "a packet of exactly maxPacketBytes was not routed"
    );
    // One byte over: the header and a little of the payload (so nothing is left unread in
    // the server's socket when it closes, which would turn its FIN into a reset).
    let over = publish_packet(4, "t/over", &vec![b'y'; MAX - 2 - "t/over".len() + 1]);
    let sent = Instant::now();
    device.write_all(&over[..64]).expect("send the header");
    assert!(
        closed_within(&mut device, Duration::from_secs(5)),
        "the connection stayed open after a packet one byte over maxPacketBytes"
    );
    eprintln!(
        "maxPacketBytes {MAX}: a PUBLISH of {} bytes routed; one of {} closed the connection after {:?}",
        at_limit.len(),
        over.len(),
        sent.elapsed()
    );
    assert!(running(&mut rt), "the runtime stopped");
    assert!(
        mosquitto_pub(plain, "big", "t/after", "still here"),
        "the device could not connect again"
    );
    assert!(
        watcher.got("t/after", LIMIT),
        "the other client stopped receiving"
    );
    assert!(
        !watcher.got("t/over", Duration::ZERO),
        "the oversized packet was routed"
    );
    assert_eq!(closed_count(&rt, "closedPacketTooLarge"), 1);
}

/// MQTT 5 [MQTT-3.2.2-15]: "The Client MUST NOT send packets exceeding Maximum Packet Size
/// to the Server"; a Server that receives one "uses DISCONNECT with Reason Code 0x95 (Packet
/// too large)". The CONNACK states `maxPacketBytes`; the server keeps serving others.
#[test]
fn mqtt5_3_2_2_15_a_packet_over_the_connack_maximum_packet_size_gets_disconnect_0x95() {
    if missing_clients() {
        return;
    }
    const MAX: usize = 8192;
    let dir = tempfile::tempdir().expect("tmp");
    let (mut rt, plain, _) = start_routed(
        &["big", "watcher"],
        vec![sub(
            "big-watcher",
            &thing_arn("big"),
            "t/#",
            &thing_arn("watcher"),
        )],
        None,
        json!({ "maxPacketBytes": MAX }),
    );
    let watcher = Watcher::start(plain, "watcher", "t/#", dir.path().join("watcher.txt"));
    watcher.wait_ready(plain, "big", "t/probe");

    let (mut device, connack) = mqtt_connect(plain, 5, "big", 60);
    let props = connack_properties(&connack);
    assert_eq!(
        props.get(&0x27),
        Some(&(MAX as u32)),
        "the CONNACK's Maximum Packet Size: {props:?}"
    );
    device
        .write_all(&publish_packet(5, "t/small", b"fits"))
        .expect("send");
    assert!(
        watcher.got("t/small", LIMIT),
        "a small packet was not routed"
    );
    let over = publish_packet(5, "t/over", &vec![b'y'; 2 * MAX]);
    device.write_all(&over[..64]).expect("send the header");
    let answer = read_packet(&mut device, Duration::from_secs(5));
    assert_eq!(
        answer
            .as_ref()
            .map(|(kind, body)| (*kind, body.first().copied())),
        Some((0xe0, Some(0x95))),
        "a DISCONNECT with reason 0x95, got {answer:?}"
    );
    assert!(
        closed_within(&mut device, Duration::from_secs(5)),
        "the connection stayed open after the DISCONNECT"
    );
    assert!(running(&mut rt), "the runtime stopped");
    assert!(mosquitto_pub(plain, "big", "t/after", "still here"));
    assert!(
        watcher.got("t/after", LIMIT),
        "the other client stopped receiving"
    );
    assert_eq!(closed_count(&rt, "closedPacketTooLarge"), 1);
}

/// MQTT 5 [MQTT-3.1.2-25]: "Where a Packet is too large to send, the Server MUST discard it
/// without sending it and then behave as if it had completed sending that Application
/// Message". A device whose CONNECT sets Maximum Packet Size 256 stays connected when a larger
/// message is routed to it, and gets the next one. An MQTT 3.1.1 device subscribed at QoS 1
/// gets a QoS 0 publish of exactly `maxPacketBytes` at QoS 0 (the lower of the two), so no
/// larger than it came in. Each discarded message is counted in `evergreen status`.
#[test]
fn mqtt5_3_1_2_25_a_message_too_large_for_the_device_is_discarded_without_a_disconnect() {
    if missing_clients() {
        return;
    }
    const MAX: usize = 8192;
    let dir = tempfile::tempdir().expect("tmp");
    let (mut rt, plain, _) = start_routed(
        &["sender", "small", "qos1"],
        vec![
            sub("s-small", &thing_arn("sender"), "t/#", &thing_arn("small")),
            sub("s-qos1", &thing_arn("sender"), "t/#", &thing_arn("qos1")),
        ],
        None,
        json!({ "maxPacketBytes": MAX }),
    );
    let mut small = Watcher::start_with(
        plain,
        "small",
        "t/#",
        dir.path().join("small.txt"),
        &[
            "-q",
            "0",
            "-V",
            "mqttv5",
            "-D",
            "connect",
            "maximum-packet-size",
            "256",
        ],
    );
    let mut qos1 = Watcher::start(plain, "qos1", "t/#", dir.path().join("qos1.txt"));
    small.wait_ready(plain, "sender", "t/probe-small");
    qos1.wait_ready(plain, "sender", "t/probe-qos1");

    let (mut sender, _) = mqtt_connect(plain, 4, "sender", 60);
    // 1000 bytes: over the small device's 256, within the QoS 1 device's limit.
    sender
        .write_all(&publish_packet(4, "t/kilobyte", &[b'k'; 1000]))
        .expect("send");
    // Exactly maxPacketBytes: too large for the small device; the QoS 1 device gets it at the
    // QoS it was published with (0, MQTT 3.1.1 and 5 §3.8.4), so the same size, within limits.
    let at_limit = publish_packet(4, "t/at-limit", &vec![b'x'; MAX - 2 - "t/at-limit".len()]);
    sender.write_all(&at_limit).expect("send");
    sender
        .write_all(&publish_packet(4, "t/next", b"small"))
        .expect("send");
    assert!(
        qos1.got("t/kilobyte", LIMIT),
        "the QoS 1 device got the kilobyte"
    );
    let small_next = small.got("t/next", LIMIT);
    let qos1_next = qos1.got("t/next", LIMIT);
    eprintln!(
        "after messages too large for them: the MQTT 5 device (Maximum Packet Size 256) got the next one: {small_next}, still connected: {}; the QoS 1 device: {qos1_next}, {}",
        small.running(),
        qos1.running()
    );
    assert!(
        small.running() && small_next,
        "the MQTT 5 device was disconnected instead of the message being discarded: {:?}",
        small.lines()
    );
    assert!(
        qos1.running() && qos1_next,
        "the QoS 1 device lost the next message"
    );
    assert!(!small.got("t/kilobyte", Duration::ZERO) && !small.got("t/at-limit", Duration::ZERO));
    assert!(qos1.got("t/at-limit", Duration::ZERO));
    assert!(running(&mut rt));
    let doc = status_json(&rt);
    assert_eq!(
        doc["mqtt"]["drops"]["tooLargeForDevice"], 2,
        "kilobyte and at-limit for the small device: {}",
        doc["mqtt"]
    );
    assert_eq!(
        doc["mqtt"]["drops"]["offlineQueueFull"], 0,
        "{}",
        doc["mqtt"]
    );
}

/// Answers PINGREQs with PINGRESPs for `for_how_long`: whether every ping was answered and
/// the connection stayed open.
fn keep_pinging(mut s: TcpStream, every: Duration, for_how_long: Duration) -> bool {
    let until = Instant::now() + for_how_long;
    while Instant::now() < until {
        std::thread::sleep(every);
        if s.write_all(&[0xc0, 0]).is_err() {
            return false;
        }
        if read_packet(&mut s, Duration::from_secs(5)).map(|(kind, _)| kind) != Some(0xd0) {
            return false;
        }
    }
    true
}

/// MQTT 3.1.1 [MQTT-3.1.2-24]: "If the Keep Alive value is non-zero and the Server does not
/// receive a Control Packet from the Client within one and a half times the Keep Alive time
/// period, it MUST disconnect the Network Connection". The keep-alive a device asks for is
/// capped at `maxKeepAliveSecs` first (docs/mqtt-server.md), so a device asking for 65535 s (18 h) that
/// goes silent is disconnected after 1.5 times the cap, while one that pings stays.
#[test]
fn mqtt_3_1_2_24_a_silent_device_is_disconnected_after_one_and_a_half_times_the_capped_keep_alive()
{
    let (mut rt, plain, _) =
        start_mqtt(&["quiet", "chatty"], None, json!({ "maxKeepAliveSecs": 2 }));
    let (mut quiet, _) = mqtt_connect(plain, 4, "quiet", u16::MAX);
    let connected = Instant::now();
    let (chatty, _) = mqtt_connect(plain, 4, "chatty", u16::MAX);
    let pinger = std::thread::spawn(move || {
        keep_pinging(chatty, Duration::from_secs(1), Duration::from_secs(8))
    });
    let closed = closed_within(&mut quiet, Duration::from_secs(15));
    let after = connected.elapsed();
    eprintln!(
        "maxKeepAliveSecs 2, keep-alive asked 65535: a silent device was closed after {after:?}"
    );
    assert!(
        closed,
        "a silent device asking for a 65535 s keep-alive was still connected after 15 s"
    );
    assert!(
        after >= Duration::from_secs(2) && after <= Duration::from_secs(6),
        "closed after {after:?}, not at 1.5 × 2 s"
    );
    assert!(
        pinger.join().expect("pinger"),
        "a device pinging every second was disconnected"
    );
    assert!(running(&mut rt));
    assert_eq!(closed_count(&rt, "closedKeepAlive"), 1);
}

/// MQTT 5 [MQTT-3.2.2-21]: "If the Server sends a Server Keep Alive on the CONNACK packet,
/// the Client MUST use this value instead of the Keep Alive value the Client sent on CONNECT".
/// A device asking for more than `maxKeepAliveSecs` is told the cap; one asking for less is
/// told nothing; a silent device gets DISCONNECT 0x8D (Keep Alive timeout) after 1.5 times the
/// cap ([MQTT-3.1.2-22]).
#[test]
fn mqtt5_3_2_2_21_server_keep_alive_is_the_cap_and_a_silent_device_gets_disconnect_0x8d() {
    let (mut rt, plain, _) =
        start_mqtt(&["quiet", "modest"], None, json!({ "maxKeepAliveSecs": 2 }));
    let (_modest, connack) = mqtt_connect(plain, 5, "modest", 1);
    let props = connack_properties(&connack);
    assert_eq!(
        props.get(&0x13),
        None,
        "keep-alive 1 is within the cap: {props:?}"
    );
    let (mut quiet, connack) = mqtt_connect(plain, 5, "quiet", u16::MAX);
    let connected = Instant::now();
    let props = connack_properties(&connack);
    assert_eq!(
        props.get(&0x13),
        Some(&2),
        "the CONNACK's Server Keep Alive: {props:?}"
    );
    let answer = read_packet(&mut quiet, Duration::from_secs(15));
    let after = connected.elapsed();
    eprintln!("MQTT 5, maxKeepAliveSecs 2, keep-alive asked 65535: {answer:?} after {after:?}");
    assert_eq!(
        answer
            .as_ref()
            .map(|(kind, body)| (*kind, body.first().copied())),
        Some((0xe0, Some(0x8d))),
        "a DISCONNECT with reason 0x8D, got {answer:?}"
    );
    assert!(
        after >= Duration::from_secs(2) && after <= Duration::from_secs(6),
        "disconnected after {after:?}, not at 1.5 × 2 s"
    );
    assert!(closed_within(&mut quiet, Duration::from_secs(5)));
    assert!(running(&mut rt));
    // `modest` asked for 1 s and was silent too.
    assert_eq!(closed_count(&rt, "closedKeepAlive"), 2);
}

/// A SUBSCRIBE with `filters` filters of `len` characters each.
fn subscribe_packet(filters: usize, len: usize) -> Vec<u8> {
    let mut body = vec![0, 1]; // packet id 1
    for i in 0..filters {
        let filter = format!("w/{i}/{}", "a".repeat(len));
        mqtt_str(&filter, &mut body);
        body.push(0); // QoS 0
    }
    mqtt_packet(0x82, &body)
}

/// docs/mqtt-server.md, "Bounds before trust": "a packet that started arriving must complete within
/// `readTimeoutSecs`, extended while at least 1 KiB per period arrives". A connected device
/// that stops in the middle of a packet (a SUBSCRIBE, or a QoS 1 PUBLISH's payload) is dropped
/// after the read timeout; one that sends nothing at all is not (that is the keep-alive's
/// business); one whose large packet keeps arriving at 1.5 KiB a second gets its answer, long
/// after the read timeout.
#[test]
fn readme_a_packet_that_stops_arriving_is_dropped_after_read_timeout_secs() {
    let (mut rt, plain, _) = start_mqtt(
        &["stalled", "halfway", "idle", "slow"],
        None,
        json!({ "readTimeoutSecs": 2 }),
    );
    let (mut idle, _) = mqtt_connect(plain, 4, "idle", 60);
    let (mut stalled, _) = mqtt_connect(plain, 4, "stalled", 60);
    let (mut halfway, _) = mqtt_connect(plain, 4, "halfway", 60);
    let (mut slow, _) = mqtt_connect(plain, 4, "slow", 60);
    // About 6 KiB, 1.5 KiB a second: four read-timeout periods' worth of arriving.
    let big = subscribe_packet(6, 1000);
    let slow_sender = std::thread::spawn(move || {
        let started = Instant::now();
        for chunk in big.chunks(1536) {
            if slow.write_all(chunk).is_err() {
                return Err(format!(
                    "closed while sending, after {:?}",
                    started.elapsed()
                ));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        match read_packet(&mut slow, Duration::from_secs(10)) {
            Some((0x90, _)) => Ok(started.elapsed()),
            other => Err(format!(
                "no SUBACK: {other:?} after {:?}",
                started.elapsed()
            )),
        }
    });
    // The first 10 bytes of a 64-byte SUBSCRIBE, then nothing.
    let mut partial = vec![0x82, 64, 0, 1, 0, 60];
    partial.extend_from_slice(b"w/ab");
    // A QoS 1 PUBLISH of 4 KiB: its header and 200 bytes, then nothing.
    let mut body = Vec::new();
    mqtt_str("t/x", &mut body);
    body.extend_from_slice(&[0, 1]);
    body.extend_from_slice(&[b'z'; 4096]);
    let publish = mqtt_packet(0x32, &body);
    let started = Instant::now();
    stalled.write_all(&partial).expect("send part of a packet");
    halfway
        .write_all(&publish[..200])
        .expect("send part of a publish");
    let mut dropped = Vec::new();
    for (name, s) in [("SUBSCRIBE", &mut stalled), ("PUBLISH", &mut halfway)] {
        let closed = closed_within(s, Duration::from_secs(15));
        dropped.push((name, closed.then(|| started.elapsed())));
    }
    let slow_result = slow_sender.join().expect("slow sender");
    eprintln!(
        "readTimeoutSecs 2: stalled packets dropped after {dropped:?}; a 6 KiB SUBSCRIBE at 1.5 KiB/s was answered: {slow_result:?}"
    );
    for (name, after) in dropped {
        let after =
            after.unwrap_or_else(|| panic!("a device stalled mid-{name} was connected after 15 s"));
        assert!(
            after >= Duration::from_millis(1500) && after <= Duration::from_secs(6),
            "{name}: dropped after {after:?}, not at the 2 s read timeout"
        );
    }
    let took = slow_result.expect("a packet arriving at 1.5 KiB/s is read to its end");
    // Four seconds of arriving, twice the read timeout: extended, not dropped.
    assert!(took >= Duration::from_secs(4), "{took:?}");
    assert!(
        still_open(&mut idle),
        "an idle device (not mid-packet) was dropped"
    );
    assert!(running(&mut rt));
    assert_eq!(closed_count(&rt, "closedReadTimeout"), 2);
}

// ---- Lambda IPC endpoint ----

/// A port nothing listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

// A pinned function that publishes a numbered tick every 0.2 s for as long as it runs; a
// publish that fails ends the function's process (as an unhandled error in V1 would).
const TICKER: &str = r#"
import json
import os
import time
import threading

import greengrasssdk

client = greengrasssdk.client("iot-data")


def run():
    n = 0
    while True:
        n += 1
        try:
            client.publish(topic="tick", payload=json.dumps({"n": n, "pid": os.getpid()}))
        except Exception as e:
            print("publish failed: %s" % e, flush=True)
            os._exit(1)
        time.sleep(0.2)


threading.Thread(target=run, daemon=True).start()


def function_handler(event, context):
    return
"#;

/// A runtime with the `ticker` Python function and a recorder of its ticks; returns it, the
/// daemon port and the record file.
fn start_ticker(work: &Path, sdk: &Path, endpoint: Value) -> (Runtime, u16, PathBuf) {
    let dir = work.join("functions/ticker");
    vendor_greengrasssdk(sdk, &dir).expect("vendor greengrasssdk");
    std::fs::write(dir.join("ticker.py"), TICKER).expect("write function");
    let out = work.join("ticks.jsonl");
    let g = group(
        vec![
            json!({
                "Id": "ticker",
                "FunctionArn": fn_arn("ticker"),
                "FunctionConfiguration": {
                    "Executable": "ticker.function_handler",
                    "CodeUri": dir,
                    "Runtime": "python3.8",
                    "Pinned": true,
                    "Timeout": 3,
                    "EncodingType": "json",
                    "Environment": { "Execution": { "IsolationMode": "NoContainer" } }
                }
            }),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("tick", &fn_arn("ticker"), "tick", &fn_arn("rec"))],
    );
    let port = free_port();
    let rt = Runtime::start_config(
        &g,
        &json!({ "coreThing": { "ggDaemonPort": port }, "evergreen": { "lambdaEndpoint": endpoint } }),
        &[],
    );
    (rt, port, out)
}

fn ticks(file: &Path) -> Vec<(u64, u64)> {
    records(file)
        .into_iter()
        .filter(|r| r["topic"] == "tick")
        .filter_map(|r| {
            let p: Value = serde_json::from_str(r["payload"].as_str()?).ok()?;
            Some((p["pid"].as_u64()?, p["n"].as_u64()?))
        })
        .collect()
}

#[test]
fn idle_connections_do_not_lock_a_python_function_out() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let (rt, port, out) = start_ticker(work.path(), &sdk, json!({}));
    wait_for(LIMIT, || (!ticks(&out).is_empty()).then_some(()))
        .expect("the function publishes its ticks");
    let pid = rt.child.id();
    let before = rss_kib(pid);
    // More idle connections than the endpoint ever served at once (512 before).
    let mut idle: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let opened = Instant::now();
    let seen = ticks(&out).len();
    // Within the head timeout (10 s) the function must go on publishing from the same
    // process: its connections get through although 600 idle ones were opened after it.
    let went_on = wait_for(Duration::from_secs(8), || {
        let now = ticks(&out);
        (now.len() >= seen + 10).then_some(now)
    });
    let after = rss_kib(pid);
    eprintln!(
        "600 idle Lambda IPC connections: runtime VmRSS {before} KiB -> {after} KiB; ticks {seen} -> {} in {:?}",
        ticks(&out).len(),
        opened.elapsed()
    );
    let now =
        went_on.expect("the Python function stopped publishing with 600 idle connections open");
    let pids: std::collections::BTreeSet<u64> = now.iter().map(|(p, _)| *p).collect();
    assert_eq!(pids.len(), 1, "the function was restarted: {pids:?}");
    // The idle connections are closed by the head timeout (or evicted by newer ones).
    let closed = wait_for(LIMIT, || {
        idle.iter_mut()
            .all(|s| closed_within(s, Duration::from_millis(1)))
            .then_some(())
    });
    assert!(closed.is_some(), "idle connections were never closed");
    drop(rt);
}

#[test]
fn a_stalled_large_body_with_a_wrong_token_is_refused_before_it_is_read() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    // Room for every connection of the test waiting at once, so none is evicted: each is
    // answered on its own merits.
    let (rt, port, out) = start_ticker(work.path(), &sdk, json!({ "maxPendingConnections": 1024 }));
    wait_for(LIMIT, || (!ticks(&out).is_empty()).then_some(()))
        .expect("the function publishes its ticks");
    let pid = rt.child.id();
    let before = rss_kib(pid);
    // 500 requests announce Lambda's largest body (6 MB), send 1 KiB of it and stall.
    let head = format!(
        "POST /2016-11-01/functions/arn:aws:lambda:::function:GGRouter HTTP/1.1\r\n\
         Host: localhost\r\nAuthorization: not-a-token\r\nX-Amz-Invocation-Type: Event\r\n\
         Content-Length: {}\r\n\r\n",
        6 << 20
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&[b'a'; 1024]);
    let mut stalled: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(&request).expect("send the head");
            s
        })
        .collect();
    // Every one is answered 403 (or closed) without the rest of its body.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = 0;
    let mut closed = 0;
    let mut open = 0;
    for s in &mut stalled {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).expect("timeout");
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) if got.starts_with(b"HTTP/1.1 403") => answered += 1,
            Ok(_) => closed += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => open += 1,
            Err(_) => closed += 1,
        }
    }
    let after = rss_kib(pid);
    eprintln!(
        "500 stalled 6 MB requests with a wrong token: 403 {answered}, closed {closed}, still open {open}; runtime VmRSS {before} KiB -> {after} KiB (+{} KiB)",
        after.saturating_sub(before)
    );
    assert_eq!(
        open, 0,
        "{open} requests with a wrong token were still being read"
    );
    assert!(answered >= 450, "only {answered} of 500 were answered 403");
    // A head each, not a body each (3 GB before the fix).
    assert!(
        after.saturating_sub(before) < 64 << 10,
        "the runtime grew by {} KiB",
        after.saturating_sub(before)
    );
    // The function was never disturbed.
    let n = ticks(&out).len();
    wait_for(LIMIT, || (ticks(&out).len() > n + 3).then_some(()))
        .expect("the function goes on publishing");
    drop(rt);
}
