//! The device metrics document and the collector that fills it.
//!
//! Owns the shape of what Device Defender receives (the "device metrics
//! document", JSON with long key names, version `1.0`) and the state kept
//! between reports: the last report id and the interface counters of the
//! last report. It reads only files under its proc root and the host's
//! interface list; publishing and logging are the caller's (it returns the
//! warnings to log).
//!
//! Choices, with the reasons:
//! * **Report ids** are Unix epoch seconds, bumped to one more than the last
//!   id when the clock has not moved past it (two reports within a second
//!   with `DevelopmentSampleIntervalSeconds`, or the clock stepping back).
//!   The service wants them increasing per thing; epoch seconds keep them
//!   increasing across connector restarts as well.
//! * **`network_stats`** sums every interface in `net/dev`, loopback
//!   included, as AWS's own agent did (psutil's `net_io_counters()`, which
//!   the Greengrass connector shipped with, counts `lo`). Its values are the
//!   traffic *since the previous report*, again as that agent sent them and
//!   as Device Defender's `aws:all-bytes-*`/`aws:all-packets-*` metrics
//!   ("during a given time period") read them; the first report after a
//!   start carries the counters since boot. Deltas are taken per interface,
//!   so an interface that appears, vanishes or resets its counters (shown
//!   as a smaller value) cannot make a total negative.
//! * **Listening ports**: TCP sockets in `LISTEN`, UDP sockets that are
//!   bound but not connected (state `TCP_CLOSE`, no remote address). A port
//!   listed by both the IPv4 and the IPv6 table on the same interface (or on
//!   the wildcard address, which has no interface) is reported once.
//! * **Established connections**: TCP sockets in `ESTABLISHED`, from both
//!   tables; `remote_addr` is `ip:port`, IPv6 as `[ip]:port`, IPv4-mapped
//!   addresses shown as IPv4.
//! * Lists are sorted (port, then interface; connections by local port,
//!   then remote address) so consecutive reports diff cleanly, and cut at
//!   [`MAX_LIST_ENTRIES`] with `total` still the full count: AWS IoT takes
//!   MQTT payloads up to 128 KB, and a busy host could list more.
//! * A metric whose source files are all unreadable is **left out** of the
//!   document (every metric in the document is optional to the service)
//!   rather than sent as an empty list, which would claim "no ports open".
//!   A missing file is warned about once, until it can be read again;
//!   malformed lines are skipped and warned about every cycle (the kernel
//!   does not write them, so they point at whatever is mounted there).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::interfaces::{canonical, InterfaceTable};
use crate::procnet::{
    parse_net_dev, parse_sockets, Family, InterfaceCounters, Malformed, SocketEntry, TCP_CLOSE,
    TCP_ESTABLISHED, TCP_LISTEN,
};

/// The document version Device Defender knows.
pub const DOCUMENT_VERSION: &str = "1.0";

/// Longest `ports`/`connections` list sent; `total` still counts all.
/// 256 entries of about 60 bytes, three lists: well under 128 KB.
pub const MAX_LIST_ENTRIES: usize = 256;

/// First read size for a `/proc` file: a typical host's tables fit in one
/// read (about 150 bytes per socket).
const READ_CHUNK: usize = 64 * 1024;

/// Malformed lines quoted per file and cycle; the rest are counted.
const MALFORMED_QUOTED: usize = 3;

/// The files read, relative to the proc root, and what is lost without them.
const TCP: (&str, &str) = ("net/tcp", "IPv4 TCP ports and connections");
const TCP6: (&str, &str) = ("net/tcp6", "IPv6 TCP ports and connections");
const UDP: (&str, &str) = ("net/udp", "IPv4 UDP ports");
const UDP6: (&str, &str) = ("net/udp6", "IPv6 UDP ports");
const DEV: (&str, &str) = ("net/dev", "network_stats");

/// What is published on `$aws/things/<thing>/defender/metrics/json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsDocument {
    pub header: Header,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub report_id: u64,
    pub version: String,
}

/// Every metric is optional to the service; see the module notes on when
/// one is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listening_tcp_ports: Option<PortList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listening_udp_ports: Option<PortList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_stats: Option<NetworkStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_connections: Option<TcpConnections>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortList {
    pub ports: Vec<Port>,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Port {
    /// Absent for the wildcard address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpConnections {
    pub established_connections: Connections,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    pub connections: Vec<Connection>,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Absent when the local address is on no interface any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_interface: Option<String>,
    pub local_port: u16,
    pub remote_addr: String,
}

impl MetricsDocument {
    /// The JSON payload.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// One collection: the document and what to warn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub document: MetricsDocument,
    pub warnings: Vec<String>,
}

/// The report id after `last` at clock time `now` (epoch seconds).
pub fn next_report_id(last: Option<u64>, now: u64) -> u64 {
    match last {
        Some(last) if now <= last => last.saturating_add(1),
        _ => now,
    }
}

/// Reads `<proc root>/net/*` into metrics documents, one per call.
#[derive(Debug)]
pub struct Collector {
    proc_root: PathBuf,
    last_report_id: Option<u64>,
    /// Counters per interface at the previous report.
    baseline: Option<HashMap<String, InterfaceCounters>>,
    /// Files already warned about as unreadable.
    unreadable: BTreeSet<&'static str>,
    interfaces_warned: bool,
}

impl Collector {
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Collector {
            proc_root: proc_root.into(),
            last_report_id: None,
            baseline: None,
            unreadable: BTreeSet::new(),
            interfaces_warned: false,
        }
    }

    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    /// Collects with the system clock and the host's interfaces.
    pub fn collect(&mut self) -> Cycle {
        let mut early = Vec::new();
        let interfaces = match InterfaceTable::from_system() {
            Ok(table) => {
                self.interfaces_warned = false;
                table
            }
            Err(e) => {
                if !std::mem::replace(&mut self.interfaces_warned, true) {
                    early.push(format!(
                        "cannot list the network interfaces ({e}); interface names are left out until they can be listed"
                    ));
                }
                InterfaceTable::default()
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut cycle = self.collect_with(&interfaces, now);
        early.append(&mut cycle.warnings);
        cycle.warnings = early;
        cycle
    }

    /// Collects with a given interface table and clock (epoch seconds).
    pub fn collect_with(&mut self, interfaces: &InterfaceTable, now: u64) -> Cycle {
        let mut warnings = Vec::new();
        let tcp = join(
            self.sockets(TCP, Family::V4, &mut warnings),
            self.sockets(TCP6, Family::V6, &mut warnings),
        );
        let udp = join(
            self.sockets(UDP, Family::V4, &mut warnings),
            self.sockets(UDP6, Family::V6, &mut warnings),
        );
        let dev = self.read(DEV, &mut warnings).map(|text| {
            let parsed = parse_net_dev(&text);
            self.malformed(DEV.0, &parsed.malformed, &mut warnings);
            parsed.entries
        });

        let metrics = Metrics {
            listening_tcp_ports: tcp.as_ref().map(|sockets| {
                port_list(sockets.iter().filter(|s| s.state == TCP_LISTEN), interfaces)
            }),
            listening_udp_ports: udp.as_ref().map(|sockets| {
                port_list(
                    sockets.iter().filter(|s| {
                        s.state == TCP_CLOSE
                            && s.remote.ip().is_unspecified()
                            && s.remote.port() == 0
                    }),
                    interfaces,
                )
            }),
            network_stats: dev.map(|counters| self.network_stats(counters)),
            tcp_connections: tcp.as_ref().map(|sockets| TcpConnections {
                established_connections: connections(
                    sockets.iter().filter(|s| s.state == TCP_ESTABLISHED),
                    interfaces,
                ),
            }),
        };
        let report_id = next_report_id(self.last_report_id, now);
        self.last_report_id = Some(report_id);
        Cycle {
            document: MetricsDocument {
                header: Header {
                    report_id,
                    version: DOCUMENT_VERSION.to_string(),
                },
                metrics,
            },
            warnings,
        }
    }

    fn sockets(
        &mut self,
        file: (&'static str, &'static str),
        family: Family,
        warnings: &mut Vec<String>,
    ) -> Option<Vec<SocketEntry>> {
        let text = self.read(file, warnings)?;
        let parsed = parse_sockets(&text, family);
        self.malformed(file.0, &parsed.malformed, warnings);
        Some(parsed.entries)
    }

    /// The file's text, or `None` (warned about once) when it cannot be read.
    fn read(
        &mut self,
        (file, loses): (&'static str, &'static str),
        warnings: &mut Vec<String>,
    ) -> Option<String> {
        let path = self.proc_root.join(file);
        match read_proc_file(&path) {
            Ok(bytes) => {
                self.unreadable.remove(file);
                // The kernel writes ASCII; anything else shows up as
                // malformed lines rather than a file that cannot be read.
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            Err(e) => {
                if self.unreadable.insert(file) {
                    warnings.push(format!(
                        "cannot read {}: {e}; {loses} are left out of the reports until it can be read",
                        path.display()
                    ));
                }
                None
            }
        }
    }

    fn malformed(&self, file: &str, malformed: &[Malformed], warnings: &mut Vec<String>) {
        let path = self.proc_root.join(file);
        for m in malformed.iter().take(MALFORMED_QUOTED) {
            warnings.push(format!(
                "{} line {}: {}; line skipped",
                path.display(),
                m.line,
                m.error
            ));
        }
        if malformed.len() > MALFORMED_QUOTED {
            warnings.push(format!(
                "{}: {} more malformed lines skipped",
                path.display(),
                malformed.len() - MALFORMED_QUOTED
            ));
        }
    }

    /// Traffic since the previous report (everything since boot the first
    /// time), summed over all interfaces.
    fn network_stats(&mut self, current: Vec<InterfaceCounters>) -> NetworkStats {
        let previous = self.baseline.take();
        let mut total = NetworkStats::default();
        for now in &current {
            let before = previous.as_ref().and_then(|p| p.get(&now.name));
            let delta = |pick: fn(&InterfaceCounters) -> u64| match before {
                // A smaller value means the counters restarted (interface
                // re-created, 32-bit wrap): all of `now` is new traffic.
                Some(b) if pick(now) >= pick(b) => pick(now) - pick(b),
                _ => pick(now),
            };
            total.bytes_in = total.bytes_in.saturating_add(delta(|c| c.bytes_in));
            total.bytes_out = total.bytes_out.saturating_add(delta(|c| c.bytes_out));
            total.packets_in = total.packets_in.saturating_add(delta(|c| c.packets_in));
            total.packets_out = total.packets_out.saturating_add(delta(|c| c.packets_out));
        }
        self.baseline = Some(current.into_iter().map(|c| (c.name.clone(), c)).collect());
        total
    }
}

/// Reads a `/proc` file with few, large reads. Its size shows as 0, so
/// `std::fs::read` would start with small probing reads; for `net/tcp*` every
/// `read(2)` makes the kernel walk the TCP hash table again from where it
/// stopped, which on a large-memory host (262,144 buckets here) costs
/// milliseconds per call.
fn read_proc_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut text = Vec::with_capacity(READ_CHUNK);
    std::fs::File::open(path)?.read_to_end(&mut text)?;
    Ok(text)
}

/// Both tables' sockets, or `None` when neither could be read.
fn join(a: Option<Vec<SocketEntry>>, b: Option<Vec<SocketEntry>>) -> Option<Vec<SocketEntry>> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.into_iter().chain(b).flatten().collect()),
    }
}

fn port_list<'a>(
    sockets: impl Iterator<Item = &'a SocketEntry>,
    interfaces: &InterfaceTable,
) -> PortList {
    // (port, interface) orders by port first and deduplicates v4/v6 twins.
    let unique: BTreeSet<(u16, Option<String>)> = sockets
        .map(|s| {
            (
                s.local.port(),
                interfaces.name_of(s.local.ip()).map(str::to_string),
            )
        })
        .collect();
    PortList {
        total: unique.len(),
        ports: unique
            .into_iter()
            .take(MAX_LIST_ENTRIES)
            .map(|(port, interface)| Port { interface, port })
            .collect(),
    }
}

fn connections<'a>(
    sockets: impl Iterator<Item = &'a SocketEntry>,
    interfaces: &InterfaceTable,
) -> Connections {
    let unique: BTreeSet<(u16, String, Option<String>)> = sockets
        .map(|s| {
            let remote = SocketAddr::new(canonical(s.remote.ip()), s.remote.port());
            (
                s.local.port(),
                remote.to_string(),
                interfaces.name_of(s.local.ip()).map(str::to_string),
            )
        })
        .collect();
    Connections {
        total: unique.len(),
        connections: unique
            .into_iter()
            .take(MAX_LIST_ENTRIES)
            .map(|(local_port, remote_addr, local_interface)| Connection {
                local_interface,
                local_port,
                remote_addr,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::IpAddr;

    fn fixture_root(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(dir.path().join("net")).expect("mkdir");
        for f in files {
            std::fs::copy(
                fixture("good").join("net").join(f),
                dir.path().join("net").join(f),
            )
            .expect("copy");
        }
        dir
    }

    /// `tests/fixtures/<kind>`, itself laid out as a proc root.
    fn fixture(kind: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(kind)
    }

    fn table() -> InterfaceTable {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        InterfaceTable::from_pairs([
            (ip("127.0.0.1"), "lo"),
            (ip("::1"), "lo"),
            (ip("192.0.2.2"), "eth0"),
            (ip("fd00::2"), "eth0"),
        ])
    }

    #[test]
    fn report_ids_strictly_increase() {
        assert_eq!(next_report_id(None, 1000), 1000);
        assert_eq!(next_report_id(Some(999), 1000), 1000);
        assert_eq!(next_report_id(Some(1000), 1000), 1001, "same second");
        assert_eq!(next_report_id(Some(1005), 1000), 1006, "clock stepped back");
        assert_eq!(next_report_id(Some(u64::MAX), 0), u64::MAX);
    }

    // Fixture addresses are little-endian (see procnet).
    #[cfg(target_endian = "little")]
    #[test]
    fn fixtures_make_this_exact_document() {
        let mut collector = Collector::new(fixture("good"));
        let cycle = collector.collect_with(&table(), 1_700_000_000);
        assert_eq!(cycle.warnings, Vec::<String>::new());
        let doc = serde_json::to_value(&cycle.document).expect("json");
        assert_eq!(
            doc,
            json!({
                "header": { "report_id": 1_700_000_000u64, "version": "1.0" },
                "metrics": {
                    "listening_tcp_ports": { "ports": [
                        // 0.0.0.0:2024 and [::]:2024 are one entry.
                        { "port": 2024 },
                        { "interface": "lo", "port": 8080 },
                        { "interface": "lo", "port": 32779 }
                    ], "total": 3 },
                    "listening_udp_ports": { "ports": [
                        { "port": 5353 },
                        { "interface": "lo", "port": 36590 }
                    ], "total": 2 },
                    "network_stats": {
                        "bytes_in": 1005497u64 + 62614148 + 12345678901234,
                        "bytes_out": 1005497u64 + 299731 + 5,
                        "packets_in": 73 + 3926 + 10,
                        "packets_out": 73 + 2674 + 1
                    },
                    "tcp_connections": { "established_connections": { "connections": [
                        { "local_interface": "eth0", "local_port": 22, "remote_addr": "198.51.100.7:51000" },
                        { "local_interface": "eth0", "local_port": 8883, "remote_addr": "[fd00::7]:50123" },
                        { "local_interface": "lo", "local_port": 9000, "remote_addr": "127.0.0.1:41000" },
                        { "local_interface": "lo", "local_port": 32779, "remote_addr": "127.0.0.1:56634" },
                        { "local_interface": "lo", "local_port": 56634, "remote_addr": "127.0.0.1:32779" }
                    ], "total": 5 } }
                }
            })
        );
    }

    #[test]
    fn network_stats_are_deltas_per_interface() {
        let root = fixture_root(&[]);
        let dev = root.path().join("net/dev");
        let write = |lines: &str| {
            std::fs::write(&dev, format!("Inter-|\n face |\n{lines}")).expect("write");
        };
        let mut collector = Collector::new(root.path());
        let stats = |c: &mut Collector, now| {
            c.collect_with(&table(), now)
                .document
                .metrics
                .network_stats
                .expect("stats")
        };
        write("lo: 100 10 0 0 0 0 0 0 100 10 0 0 0 0 0 0\neth0: 1000 5 0 0 0 0 0 0 50 2 0 0 0 0 0 0\n");
        let first = stats(&mut collector, 1);
        assert_eq!(
            (
                first.bytes_in,
                first.bytes_out,
                first.packets_in,
                first.packets_out
            ),
            (1100, 150, 15, 12),
            "first report: counters since boot"
        );
        // lo grows, eth0 resets (re-created), wlan0 appears.
        write(
            "lo: 150 12 0 0 0 0 0 0 170 13 0 0 0 0 0 0\neth0: 40 1 0 0 0 0 0 0 4 1 0 0 0 0 0 0\n\
             wlan0: 7 1 0 0 0 0 0 0 3 1 0 0 0 0 0 0\n",
        );
        let second = stats(&mut collector, 2);
        assert_eq!(
            (
                second.bytes_in,
                second.bytes_out,
                second.packets_in,
                second.packets_out
            ),
            (50 + 40 + 7, 70 + 4 + 3, 2 + 1 + 1, 3 + 1 + 1)
        );
        // Nothing moved: zeros, never negative.
        let third = stats(&mut collector, 3);
        assert_eq!(third, NetworkStats::default());
    }

    #[test]
    fn missing_files_leave_their_metric_out_and_warn_once() {
        let root = fixture_root(&["tcp"]);
        let mut collector = Collector::new(root.path());
        let cycle = collector.collect_with(&table(), 10);
        let m = &cycle.document.metrics;
        assert!(m.listening_tcp_ports.is_some(), "tcp alone is enough");
        assert!(m.tcp_connections.is_some());
        assert_eq!(m.listening_udp_ports, None);
        assert_eq!(m.network_stats, None);
        assert_eq!(cycle.warnings.len(), 4, "{:?}", cycle.warnings);
        for (file, what) in [
            ("net/tcp6", "IPv6 TCP"),
            ("net/udp", "IPv4 UDP"),
            ("net/udp6", "IPv6 UDP"),
            ("net/dev", "network_stats"),
        ] {
            assert!(
                cycle
                    .warnings
                    .iter()
                    .any(|w| w.contains(file) && w.contains(what)),
                "{file}: {:?}",
                cycle.warnings
            );
        }
        let json = serde_json::to_value(&cycle.document).expect("json");
        assert!(json["metrics"].get("network_stats").is_none(), "{json}");

        let again = collector.collect_with(&table(), 11);
        assert_eq!(again.warnings, Vec::<String>::new(), "warned once");
        // Back, then gone again: warned again.
        std::fs::write(root.path().join("net/udp"), "").expect("write");
        assert!(collector.collect_with(&table(), 12).warnings.is_empty());
        std::fs::remove_file(root.path().join("net/udp")).expect("rm");
        assert_eq!(collector.collect_with(&table(), 13).warnings.len(), 1);
    }

    #[test]
    fn malformed_lines_are_skipped_with_file_and_line() {
        // The bad fixture has no tcp6, udp, udp6: those are warned about
        // as unreadable, separately.
        let root = fixture("bad");
        let mut collector = Collector::new(&root);
        let cycle = collector.collect_with(&table(), 10);
        let tcp = root.join("net/tcp").display().to_string();
        let dev = root.join("net/dev").display().to_string();
        let malformed: Vec<&String> = cycle
            .warnings
            .iter()
            .filter(|w| w.contains(" line ") || w.contains("malformed"))
            .collect();
        assert_eq!(
            malformed,
            vec![
                &format!("{tcp} line 3: the remote address field is missing; line skipped"),
                &format!("{tcp} line 4: local address `0100007G:0016` is not an IPv4 address:port in hex; line skipped"),
                &format!("{tcp} line 5: state `ZZ` is not two hex digits; line skipped"),
                &format!("{tcp}: 4 more malformed lines skipped"),
                &format!("{dev} line 4: no `:` after the interface name; line skipped"),
                &format!("{dev} line 5: receive packets `-3` is not a counter; line skipped"),
                &format!("{dev} line 6: the transmit packets field is missing; line skipped"),
            ]
        );
        let ports = cycle.document.metrics.listening_tcp_ports.expect("tcp");
        assert_eq!(
            ports.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            vec![22, 8080]
        );
        let stats = cycle.document.metrics.network_stats.expect("dev");
        assert_eq!(stats.bytes_in, 3193 + 62614148);
    }

    #[test]
    fn long_lists_are_cut_but_counted() {
        let root = fixture_root(&[]);
        let mut text = String::from("  sl  local_address rem_address   st\n");
        for port in 1..=(MAX_LIST_ENTRIES as u16 + 10) {
            text.push_str(&format!("{port}: 00000000:{port:04X} 00000000:0000 0A\n"));
        }
        std::fs::write(root.path().join("net/tcp"), text).expect("write");
        let mut collector = Collector::new(root.path());
        let ports = collector
            .collect_with(&table(), 1)
            .document
            .metrics
            .listening_tcp_ports
            .expect("tcp");
        assert_eq!(ports.total, MAX_LIST_ENTRIES + 10);
        assert_eq!(ports.ports.len(), MAX_LIST_ENTRIES);
        assert_eq!(ports.ports[0].port, 1, "lowest ports first");
    }
}
