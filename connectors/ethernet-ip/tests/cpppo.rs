//! The connector's source poller against a real EtherNet/IP peer: cpppo's
//! simulator (`python3 -m cpppo.server.enip`), its values written by
//! cpppo's own client. Skipped, loudly, when cpppo is not installed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evergreen_connector_ethernet_ip::config::Adapter;
use evergreen_connector_ethernet_ip::source::{Batch, Log, Poller, Stats};
use evergreen_connector_modbus_tcp::decode::Value;
use evergreen_connector_modbus_tcp::output::{Quality, Reading};
use evergreen_ipc::LogLevel;
use serde_json::json;

const TAGS: &[&str] = &[
    "arrayREAL=REAL[10]",
    "Count=DINT",
    "Flag=BOOL",
    "Small=SINT",
    "Short=INT",
    "Long=LINT",
    "Wide=LREAL",
    "Unsigned=UDINT",
    "Byte=USINT",
    "Name=STRING",
    "Short_name=SSTRING",
    "Motor.Speed=REAL",
];

fn have_cpppo() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import cpppo.server.enip"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: python3 with cpppo is not installed (pip install cpppo)");
    }
    ok
}

/// cpppo's simulator on loopback; killed when dropped.
struct Simulator {
    child: Child,
    port: u16,
}

impl Simulator {
    /// Starts on `port` (0: any) and waits for its "TCP Server address" line.
    fn start(port: u16) -> Simulator {
        let mut child = Command::new("python3")
            .args(["-m", "cpppo.server.enip", "-A", "--address"])
            .arg(format!("127.0.0.1:{port}"))
            .args(TAGS)
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cpppo");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The line comes within seconds; a dead simulator ends the loop.
        let port = loop {
            let line = lines
                .next()
                .expect("cpppo ended before saying where it listens")
                .expect("line");
            if let Some(rest) = line.split("TCP Server address = ").nth(1) {
                break rest
                    .trim_end_matches(')')
                    .rsplit(", ")
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("no port in {line:?}"));
            }
        };
        // Keep draining stdout so the simulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Simulator { child, port }
    }

    /// Writes values with cpppo's own client (`Tag=(TYPE)value` each).
    fn write(&self, assignments: &[&str]) {
        let out = Command::new("python3")
            .args(["-m", "cpppo.server.enip.client", "-a"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(assignments)
            .output()
            .expect("run cpppo client");
        assert!(
            out.status.success(),
            "cpppo client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.kill();
    }
}

type Logged = Arc<Mutex<Vec<(LogLevel, String)>>>;

fn poller(port: u16, tags: &[(&str, &str)]) -> (Poller, Logged, Arc<Stats>) {
    let doc = json!({"sources": [{"type": "EIPSource", "name": "plc",
        "endpoint": {"ipAddress": "127.0.0.1", "port": port},
        "destination": {"type": "StreamManager", "streamName": "Out"},
        "destinationPathPrefix": "line1/",
        "propertyGroups": [{"name": "g", "scanMode": {"type": "POLL", "rate": 100},
            "tagPathDefinitions": tags.iter().map(|(p, t)| json!({"type": "EIPTagPath", "path": p, "dstDataType": t})).collect::<Vec<_>>()}]}]});
    let adapter = Adapter::parse("P", &doc.to_string()).expect("valid configuration");
    let logged: Logged = Arc::default();
    let l = logged.clone();
    let log: Log = Arc::new(move |level, m| l.lock().expect("log").push((level, m)));
    let stats = Arc::new(Stats::default());
    (
        Poller::new(Arc::new(adapter.sources[0].clone()), log, stats.clone()),
        logged,
        stats,
    )
}

fn values(batch: &Batch) -> Vec<Option<Value>> {
    batch.readings.iter().map(|r| r.value.clone()).collect()
}

fn logged_with(logged: &Logged, level: LogLevel, text: &str) -> bool {
    logged
        .lock()
        .expect("log")
        .iter()
        .any(|(l, m)| *l == level && m.contains(text))
}

#[tokio::test]
async fn every_data_type_array_element_and_member_is_read_good_and_converted() {
    if !have_cpppo() {
        return;
    }
    let sim = Simulator::start(0);
    sim.write(&[
        "arrayREAL[3]=(REAL)2.5",
        "Count=(DINT)-70000",
        "Flag=(BOOL)1",
        "Small=(SINT)-7",
        "Short=(INT)-300",
        "Long=(LINT)-5000000000",
        "Wide=(LREAL)0.125",
        "Unsigned=(UDINT)4000000000",
        "Byte=(USINT)200",
        "Name=(STRING)PUMP-7",
        "Short_name=(SSTRING)ok",
        "Motor.Speed=(REAL)-1.25",
    ]);
    let (mut p, logged, _) = poller(
        sim.port,
        &[
            ("arrayREAL[3]", "double"),
            ("arrayREAL[0]", "double"),
            ("Count", "integer"),
            ("Flag", "boolean"),
            ("Small", "integer"),
            ("Short", "integer"),
            ("Long", "integer"),
            ("Wide", "double"),
            ("Unsigned", "integer"),
            ("Byte", "integer"),
            ("Name", "string"),
            ("Short_name", "string"),
            ("Motor.Speed", "double"),
        ],
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let batch = p.poll(0).await;
    assert_eq!(batch.stream_name, "Out");
    assert_eq!(
        values(&batch),
        vec![
            Some(Value::Double(2.5)),
            Some(Value::Double(0.0)),
            Some(Value::Integer(-70000)),
            Some(Value::Boolean(true)),
            Some(Value::Integer(-7)),
            Some(Value::Integer(-300)),
            Some(Value::Integer(-5_000_000_000)),
            Some(Value::Double(0.125)),
            Some(Value::Integer(4_000_000_000)),
            Some(Value::Integer(200)),
            Some(Value::String("PUMP-7".into())),
            Some(Value::String("ok".into())),
            Some(Value::Double(-1.25)),
        ],
        "log: {:?}",
        logged.lock().expect("log")
    );
    let first: &Reading = &batch.readings[0];
    assert_eq!(first.alias, "line1/arrayREAL[3]");
    assert_eq!(first.name, "arrayREAL[3]");
    assert!(batch.readings.iter().all(|r| r.quality == Quality::Good));
    assert!(batch
        .readings
        .iter()
        .all(|r| r.timestamp_ms >= before && r.timestamp_ms < before + 10_000));
}

#[tokio::test]
async fn a_missing_tag_is_bad_with_a_logged_reason_and_the_others_still_read() {
    if !have_cpppo() {
        return;
    }
    let sim = Simulator::start(0);
    sim.write(&["Count=(DINT)5", "arrayREAL[1]=(REAL)1.5", "Short=(INT)-9"]);
    let (mut p, logged, _) = poller(
        sim.port,
        &[
            ("Count", "integer"),
            ("Missing", "integer"),
            ("arrayREAL[1]", "double"),
            ("arrayREAL[99]", "double"),
            ("Short", "string"),
        ],
    );
    for _ in 0..2 {
        let batch = p.poll(0).await;
        let q: Vec<Quality> = batch.readings.iter().map(|r| r.quality).collect();
        assert_eq!(
            q,
            [
                Quality::Good,
                Quality::Bad,
                Quality::Good,
                Quality::Bad,
                Quality::Good
            ],
            "{batch:?}\nlog: {:?}",
            logged.lock().expect("log")
        );
        assert_eq!(batch.readings[1].value, None);
        assert_eq!(batch.readings[4].value, Some(Value::String("-9".into())));
    }
    assert!(
        logged_with(&logged, LogLevel::Warn, "tag \"Missing\" is BAD: "),
        "{:?}",
        logged.lock().expect("log")
    );
    assert!(logged_with(
        &logged,
        LogLevel::Warn,
        "tag \"arrayREAL[99]\" is BAD: "
    ));
    let warns = logged
        .lock()
        .expect("log")
        .iter()
        .filter(|(_, m)| m.contains("\"Missing\""))
        .count();
    assert_eq!(warns, 1, "logged once until it reads again");
    assert!(
        !logged_with(&logged, LogLevel::Warn, "unavailable"),
        "a device answer is not an outage"
    );
}

#[tokio::test]
async fn a_killed_and_restarted_server_is_read_again_after_reconnecting() {
    if !have_cpppo() {
        return;
    }
    let mut sim = Simulator::start(0);
    let port = sim.port;
    sim.write(&["Count=(DINT)11"]);
    let (mut p, logged, stats) = poller(port, &[("Count", "integer"), ("Flag", "boolean")]);
    assert_eq!(
        values(&p.poll(0).await),
        [Some(Value::Integer(11)), Some(Value::Boolean(false))]
    );
    sim.kill();
    // Down: every tag BAD, nothing panics, the outage logged once.
    for _ in 0..3 {
        let batch = p.poll(0).await;
        assert!(batch.readings.iter().all(|r| r.quality == Quality::Bad));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged_with(&logged, LogLevel::Warn, "is unavailable"));
    let sim = Simulator::start(port);
    sim.write(&["Count=(DINT)12"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let batch = p.poll(0).await;
        if batch.readings[0].value == Some(Value::Integer(12)) {
            break;
        }
        assert!(Instant::now() < deadline, "never reconnected: {batch:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logged_with(&logged, LogLevel::Info, "reachable again"));
    assert!(stats.connects.load(std::sync::atomic::Ordering::Relaxed) >= 2);
}

#[tokio::test]
async fn values_written_by_cpppos_client_are_seen_by_the_next_poll() {
    if !have_cpppo() {
        return;
    }
    let sim = Simulator::start(0);
    let (mut p, _, _) = poller(sim.port, &[("Count", "integer"), ("Name", "string")]);
    assert_eq!(
        values(&p.poll(0).await),
        [Some(Value::Integer(0)), Some(Value::String(String::new()))]
    );
    for (n, name) in [(1, "one"), (-2, "two"), (300000, "three")] {
        sim.write(&[&format!("Count=(DINT){n}"), &format!("Name=(STRING){name}")]);
        assert_eq!(
            values(&p.poll(0).await),
            [Some(Value::Integer(n)), Some(Value::String(name.into()))]
        );
    }
}

/// `cargo test -p evergreen-connector-ethernet-ip --release --test cpppo -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a benchmark: prints tags/s against cpppo"]
async fn bench_tags_per_second_against_cpppo() {
    if !have_cpppo() {
        return;
    }
    let sim = Simulator::start(0);
    let tags: Vec<String> = (0..10).map(|i| format!("arrayREAL[{i}]")).collect();
    let defs: Vec<(&str, &str)> = tags.iter().map(|t| (t.as_str(), "double")).collect();
    let (mut p, _, stats) = poller(sim.port, &defs);
    p.poll(0).await;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(5) {
        n += p.poll(0).await.readings.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let bad = stats.bad.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(bad, 0);
    println!(
        "{n} tags in {secs:.2} s: {:.0} tags/s (one request per tag, cpppo simulator)",
        n as f64 / secs
    );
}
