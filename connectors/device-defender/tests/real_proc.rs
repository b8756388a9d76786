//! The collector against this machine's real `/proc`: sockets the test opens
//! on loopback must show up, loopback traffic must show in `network_stats`,
//! and every document must have the full shape.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};

use evergreen_connector_device_defender::metrics::{Collector, Cycle, MAX_LIST_ENTRIES};
use serde_json::Value;

/// Every key present, every `total` consistent with its list.
fn assert_shape(cycle: &Cycle) {
    let doc = serde_json::to_value(&cycle.document).expect("json");
    assert!(doc["header"]["report_id"].is_u64(), "{doc}");
    assert_eq!(doc["header"]["version"], "1.0");
    let metrics = &doc["metrics"];
    for (list, key) in [
        (&metrics["listening_tcp_ports"], "ports"),
        (&metrics["listening_udp_ports"], "ports"),
        (
            &metrics["tcp_connections"]["established_connections"],
            "connections",
        ),
    ] {
        let items = list[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {list}"));
        let total = list["total"].as_u64().expect("total") as usize;
        assert_eq!(items.len(), total.min(MAX_LIST_ENTRIES), "{list}");
    }
    for port in metrics["listening_tcp_ports"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            metrics["listening_udp_ports"]["ports"]
                .as_array()
                .into_iter()
                .flatten(),
        )
    {
        assert!(port["port"].is_u64(), "{port}");
    }
    for c in metrics["tcp_connections"]["established_connections"]["connections"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert!(
            c["local_port"].is_u64() && c["remote_addr"].is_string(),
            "{c}"
        );
    }
    for key in ["bytes_in", "bytes_out", "packets_in", "packets_out"] {
        assert!(metrics["network_stats"][key].is_u64(), "{key}: {metrics}");
    }
}

fn has_port(list: &Value, port: u16, interface: &str) -> bool {
    list["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["port"] == port && p["interface"] == interface)
}

#[test]
fn our_loopback_sockets_and_traffic_show_up() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let listen_port = listener.local_addr().expect("addr").port();
    let udp_port = udp.local_addr().expect("addr").port();
    let client_port = client.local_addr().expect("addr").port();

    let mut collector = Collector::new("/proc");
    let first = collector.collect();
    for w in &first.warnings {
        eprintln!("collector warning: {w}");
    }
    assert_shape(&first);
    let doc = serde_json::to_value(&first.document).expect("json");
    let m = &doc["metrics"];
    assert!(
        has_port(&m["listening_tcp_ports"], listen_port, "lo"),
        "{m}"
    );
    assert!(has_port(&m["listening_udp_ports"], udp_port, "lo"), "{m}");
    assert!(
        !has_port(&m["listening_tcp_ports"], client_port, "lo"),
        "a connected socket is not listening: {m}"
    );
    let connections = m["tcp_connections"]["established_connections"]["connections"]
        .as_array()
        .expect("connections");
    let ours = serde_json::json!({
        "local_interface": "lo",
        "local_port": client_port,
        "remote_addr": format!("127.0.0.1:{listen_port}"),
    });
    assert!(connections.contains(&ours), "{ours} in {connections:?}");

    // ~1 MB over loopback, then the next report's traffic covers it (lo
    // counts it once out and once in).
    const MB: usize = 1 << 20;
    let reader = std::thread::spawn(move || {
        let mut server = server;
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < MB {
            match server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        got
    });
    let mut client = client;
    client.write_all(&vec![7u8; MB]).expect("send");
    assert_eq!(reader.join().expect("reader"), MB);

    let second = collector.collect();
    assert_shape(&second);
    let stats = second
        .document
        .metrics
        .network_stats
        .expect("network_stats");
    assert!(stats.bytes_out >= MB as u64, "{stats:?}");
    assert!(stats.bytes_in >= MB as u64, "{stats:?}");
    assert!(stats.packets_out > 0 && stats.packets_in > 0, "{stats:?}");

    let third = collector.collect();
    assert_shape(&third);
    let ids = [&first, &second, &third].map(|c| c.document.header.report_id);
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    drop(udp);
}
