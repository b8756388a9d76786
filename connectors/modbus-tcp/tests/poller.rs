//! The poller against a real Modbus TCP slave (tokio-modbus's server) on
//! loopback: decoded values, merged requests, device exceptions, pacing, and
//! an endpoint that goes away and comes back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evergreen_connector_modbus_tcp::config::Capability;
use evergreen_connector_modbus_tcp::decode::Value;
use evergreen_connector_modbus_tcp::output::{Quality, Reading};
use evergreen_connector_modbus_tcp::slave::{Data, Slave};
use evergreen_connector_modbus_tcp::source::{Log, Poller, Stats};
use serde_json::json;
use tokio::net::TcpListener;

fn quiet() -> Log {
    Arc::new(|level, message| eprintln!("{level}: {message}"))
}

fn data() -> Data {
    let f = 1234.5f32.to_be_bytes();
    let d = (-0.25f64).to_be_bytes();
    serde_json::from_value(json!({
        // A float stored little-endian (byteWordSwap), then int16 -2.
        "input": {"0": [u16::from_be_bytes([f[3], f[2]]), u16::from_be_bytes([f[1], f[0]]), 0xfffe]},
        // uint32 70000 word-swapped, a double, and text further on.
        "holding": {
            "0": [70000u32 as u16, (70000u32 >> 16) as u16],
            "2": [u16::from_be_bytes([d[0], d[1]]), u16::from_be_bytes([d[2], d[3]]),
                  u16::from_be_bytes([d[4], d[5]]), u16::from_be_bytes([d[6], d[7]])],
            "20": [0x5055, 0x4d50, 0x2d37, 0]
        },
        "coils": {"0": [true, false, true]},
        "discrete": {"4": [true]},
        "len": 100
    }))
    .expect("data")
}

fn capability(port: u16, min_gap_ms: u64, extra_tags: &[serde_json::Value]) -> Capability {
    let mut tags = vec![
        json!({"tag": "temp", "address": "30001", "srcDataType": "float", "transformation": "byteWordSwap", "dstDataType": "double"}),
        json!({"tag": "delta", "address": "30003", "srcDataType": "int16", "dstDataType": "integer"}),
        json!({"tag": "count", "address": "40001", "srcDataType": "uint32", "transformation": "wordSwap", "dstDataType": "integer"}),
        json!({"tag": "level", "address": "40003", "srcDataType": "double", "dstDataType": "double"}),
        json!({"tag": "name", "address": "40021", "size": 4, "srcDataType": "ascii", "dstDataType": "string"}),
        json!({"tag": "run", "address": "00001", "srcDataType": "bool", "dstDataType": "boolean"}),
        json!({"tag": "stop", "address": "00002", "srcDataType": "bool", "dstDataType": "boolean"}),
        json!({"tag": "alarm", "address": "10005", "srcDataType": "bool", "dstDataType": "integer"}),
    ];
    tags.extend_from_slice(extra_tags);
    let doc = json!({"sources": [{"type": "ModBusTCPSource", "name": "plc",
        "measurementDataStreamPrefix": "plc/",
        "destination": {"type": "StreamManager", "streamName": "s1"},
        "endpoint": {"ipAddress": "127.0.0.1", "port": port},
        "minimumInterRequestDuration": min_gap_ms,
        "propertyGroups": [{"name": "g", "tagPathDefinitions": tags,
            "scanMode": {"type": "POLL", "rate": 50}}]}]});
    Capability::parse(&doc.to_string()).expect("valid configuration")
}

fn value_of<'a>(readings: &'a [Reading], tag: &str) -> &'a Reading {
    readings
        .iter()
        .find(|r| r.name == tag)
        .unwrap_or_else(|| panic!("{tag} in {readings:?}"))
}

async fn start_slave(listener: TcpListener, slave: &Slave) -> tokio::task::JoinHandle<()> {
    let slave = slave.clone();
    tokio::spawn(async move {
        let _ = slave.serve(listener).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_decodes_every_type_in_merged_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let slave = Slave::new(&data());
    let _server = start_slave(listener, &slave).await;

    let cap = capability(port, 0, &[]);
    let stats = Arc::new(Stats::default());
    let mut poller = Poller::new(Arc::new(cap.sources[0].clone()), quiet(), stats.clone());
    // coils, discrete, input 0..3, holding 0..6, holding 20..24
    assert_eq!(poller.reads_per_poll(0), 5);
    let batch = poller.poll(0).await;
    assert_eq!(batch.stream_name, "s1");
    let r = &batch.readings;
    assert_eq!(r.len(), 8);
    assert!(r.iter().all(|r| r.quality == Quality::Good), "{r:?}");
    assert_eq!(value_of(r, "temp").value, Some(Value::Double(1234.5)));
    assert_eq!(value_of(r, "temp").alias, "plc/temp");
    assert_eq!(value_of(r, "delta").value, Some(Value::Integer(-2)));
    assert_eq!(value_of(r, "count").value, Some(Value::Integer(70000)));
    assert_eq!(value_of(r, "level").value, Some(Value::Double(-0.25)));
    assert_eq!(
        value_of(r, "name").value,
        Some(Value::String("PUMP-7".into()))
    );
    assert_eq!(value_of(r, "run").value, Some(Value::Boolean(true)));
    assert_eq!(value_of(r, "stop").value, Some(Value::Boolean(false)));
    assert_eq!(value_of(r, "alarm").value, Some(Value::Integer(1)));
    assert_eq!(
        slave.counters.requests.load(Ordering::Relaxed),
        5,
        "8 tags, 5 requests"
    );
    assert_eq!(stats.requests.load(Ordering::Relaxed), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_exception_makes_only_its_tags_bad() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let slave = Slave::new(&data());
    let _server = start_slave(listener, &slave).await;
    // Register 500 is past the slave's 100-register table.
    let cap = capability(
        port,
        0,
        &[
            json!({"tag": "missing", "address": "40500", "srcDataType": "uint16", "dstDataType": "integer"}),
        ],
    );
    let mut poller = Poller::new(Arc::new(cap.sources[0].clone()), quiet(), Arc::default());
    for _ in 0..2 {
        let batch = poller.poll(0).await;
        let missing = value_of(&batch.readings, "missing");
        assert_eq!((missing.quality, &missing.value), (Quality::Bad, &None));
        assert!(batch
            .readings
            .iter()
            .filter(|r| r.name != "missing")
            .all(|r| r.quality == Quality::Good));
    }
    // The link stayed up: one connection served both polls.
    assert_eq!(slave.counters.requests.load(Ordering::Relaxed), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_one_endpoint_are_paced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let slave = Slave::new(&data());
    let _server = start_slave(listener, &slave).await;
    let cap = capability(port, 40, &[]);
    let mut poller = Poller::new(Arc::new(cap.sources[0].clone()), quiet(), Arc::default());
    let _ = poller.poll(0).await;
    let t0 = Instant::now();
    let batch = poller.poll(0).await;
    // Five requests, each at least 40 ms after the previous one ended.
    assert!(
        t0.elapsed() >= Duration::from_millis(5 * 40),
        "{:?}",
        t0.elapsed()
    );
    assert!(batch.readings.iter().all(|r| r.quality == Quality::Good));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_goes_away_reads_bad_then_good_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let slave = Slave::new(&data());
    let server = start_slave(listener, &slave).await;
    let cap = capability(addr.port(), 0, &[]);
    let stats = Arc::new(Stats::default());
    let mut poller = Poller::new(Arc::new(cap.sources[0].clone()), quiet(), stats.clone());
    assert!(poller
        .poll(0)
        .await
        .readings
        .iter()
        .all(|r| r.quality == Quality::Good));

    server.abort();
    let _ = server.await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut bad_polls = 0;
    while bad_polls < 3 && Instant::now() < deadline {
        let batch = poller.poll(0).await;
        assert_eq!(batch.readings.len(), 8, "every tag gets a reading");
        if batch
            .readings
            .iter()
            .all(|r| r.quality == Quality::Bad && r.value.is_none())
        {
            bad_polls += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(bad_polls, 3, "readings turn BAD while the device is gone");

    let listener = TcpListener::bind(addr).await.expect("rebind the same port");
    let _server = start_slave(listener, &slave).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut good = false;
    while !good && Instant::now() < deadline {
        good = poller
            .poll(0)
            .await
            .readings
            .iter()
            .all(|r| r.quality == Quality::Good);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(good, "readings GOOD again once the device is back");
    assert!(stats.bad.load(Ordering::Relaxed) >= 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_literal_endpoint_connects() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        eprintln!("SKIP an_ipv6_literal_endpoint_connects: no IPv6 loopback on this machine");
        return;
    };
    let port = listener.local_addr().expect("addr").port();
    let slave = Slave::new(&data());
    let _server = start_slave(listener, &slave).await;
    let mut cap = capability(port, 0, &[]);
    cap.sources[0].endpoint.host = "::1".into();
    let mut poller = Poller::new(Arc::new(cap.sources[0].clone()), quiet(), Arc::default());
    let batch = poller.poll(0).await;
    assert!(
        batch.readings.iter().all(|r| r.quality == Quality::Good),
        "{batch:?}"
    );
}
