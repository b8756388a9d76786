//! Parsers for the kernel's socket and interface tables under `<proc>/net`.
//!
//! Owns the text formats of `net/tcp`, `net/tcp6`, `net/udp`, `net/udp6` and
//! `net/dev`, and nothing else: the functions here take a file's text and
//! return what it lists, so tests feed them fixtures and the collector
//! decides what to do with the result. A line that does not parse comes back
//! as a [`Malformed`] entry with its 1-based line number and the reason; it
//! never stops the rest of the file from being read, and nothing here panics
//! on odd input (the text comes from whatever is mounted at the proc path).
//!
//! Socket lines look like
//! `   1: 0100007F:800B 00000000:0000 0A 00000000:00000000 00:00000000 …`.
//! Only the slot, the two endpoints and the state are read; the kernel has
//! appended columns over the years, so trailing fields are ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `TCP_ESTABLISHED` in the kernel's state numbering.
pub const TCP_ESTABLISHED: u8 = 0x01;
/// `TCP_CLOSE`: the state an unconnected (bound, "listening") UDP socket shows.
pub const TCP_CLOSE: u8 = 0x07;
/// `TCP_LISTEN`.
pub const TCP_LISTEN: u8 = 0x0A;

/// Longest piece of a bad field quoted in an error, so a garbage file
/// cannot blow up a log line.
const QUOTE_MAX: usize = 48;

/// Which table a socket file is: addresses are 8 hex digits in `tcp`/`udp`
/// and 32 in `tcp6`/`udp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// One socket from a `tcp*`/`udp*` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel's TCP state number (UDP sockets reuse it).
    pub state: u8,
}

/// One interface's counters from `net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
}

/// Why one line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("the {0} field is missing")]
    Missing(&'static str),
    #[error("`{0}` is not a slot number followed by `:`")]
    Slot(String),
    #[error("{field} `{value}` is not an {family} address:port in hex")]
    Endpoint {
        field: &'static str,
        value: String,
        family: &'static str,
    },
    #[error("state `{0}` is not two hex digits")]
    State(String),
    #[error("no `:` after the interface name")]
    InterfaceName,
    #[error("{field} `{value}` is not a counter")]
    Counter { field: &'static str, value: String },
}

/// A line that was skipped, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line: usize,
    pub error: LineError,
}

/// What a table lists, and the lines that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub entries: Vec<T>,
    pub malformed: Vec<Malformed>,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            entries: Vec::new(),
            malformed: Vec::new(),
        }
    }
}

/// Parses a `tcp`, `tcp6`, `udp` or `udp6` table.
pub fn parse_sockets(text: &str, family: Family) -> Parsed<SocketEntry> {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // The header is the first line and starts with the `sl` column.
        if i == 0 && line.split_whitespace().next() == Some("sl") {
            continue;
        }
        match socket_line(line, family) {
            Ok(entry) => out.entries.push(entry),
            Err(error) => out.malformed.push(Malformed { line: i + 1, error }),
        }
    }
    out
}

fn socket_line(line: &str, family: Family) -> Result<SocketEntry, LineError> {
    let mut fields = line.split_whitespace();
    let slot = fields.next().ok_or(LineError::Missing("slot"))?;
    let slot_ok = slot
        .strip_suffix(':')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !slot_ok {
        return Err(LineError::Slot(quote(slot)));
    }
    let local = fields.next().ok_or(LineError::Missing("local address"))?;
    let local =
        endpoint(local, family).ok_or_else(|| endpoint_error("local address", local, family))?;
    let remote = fields.next().ok_or(LineError::Missing("remote address"))?;
    let remote =
        endpoint(remote, family).ok_or_else(|| endpoint_error("remote address", remote, family))?;
    let state = fields.next().ok_or(LineError::Missing("state"))?;
    let state = (state.len() == 2)
        .then(|| hex_u32(state))
        .flatten()
        .and_then(|s| u8::try_from(s).ok())
        .ok_or_else(|| LineError::State(quote(state)))?;
    Ok(SocketEntry {
        local,
        remote,
        state,
    })
}

fn endpoint_error(field: &'static str, value: &str, family: Family) -> LineError {
    LineError::Endpoint {
        field,
        value: quote(value),
        family: match family {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        },
    }
}

/// `ADDR:PORT` in the kernel's hex notation. The port is printed as a
/// number; the address is the in-memory (network order) bytes printed as
/// native 32-bit words, so each word is turned back into bytes with the
/// host's byte order.
fn endpoint(text: &str, family: Family) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::try_from(hex_u32(port)?).ok()?;
    let ip = match family {
        Family::V4 if addr.len() == 8 => IpAddr::V4(Ipv4Addr::from(hex_u32(addr)?.to_ne_bytes())),
        Family::V6 if addr.len() == 32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                let word = hex_u32(addr.get(i * 8..i * 8 + 8)?)?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Hex digits only: `from_str_radix` alone would also take a leading `+`.
fn hex_u32(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// Parses `net/dev`: two header lines, then
/// `  eth0: rx_bytes rx_packets errs drop fifo frame compressed multicast tx_bytes tx_packets …`.
pub fn parse_net_dev(text: &str) -> Parsed<InterfaceCounters> {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i < 2 && line.contains('|')) {
            continue;
        }
        match dev_line(line) {
            Ok(entry) => out.entries.push(entry),
            Err(error) => out.malformed.push(Malformed { line: i + 1, error }),
        }
    }
    out
}

fn dev_line(line: &str) -> Result<InterfaceCounters, LineError> {
    // Interface names cannot contain `:` (the kernel refuses them), and a
    // large counter may follow the colon without a space.
    let (name, counters) = line.split_once(':').ok_or(LineError::InterfaceName)?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(LineError::InterfaceName);
    }
    let fields: Vec<&str> = counters.split_whitespace().collect();
    let counter = |index: usize, field: &'static str| -> Result<u64, LineError> {
        let text = fields.get(index).ok_or(LineError::Missing(field))?;
        text.parse().map_err(|_| LineError::Counter {
            field,
            value: quote(text),
        })
    };
    Ok(InterfaceCounters {
        name: name.to_string(),
        bytes_in: counter(0, "receive bytes")?,
        packets_in: counter(1, "receive packets")?,
        bytes_out: counter(8, "transmit bytes")?,
        packets_out: counter(9, "transmit packets")?,
    })
}

fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
    }

    fn v6(text: &str, port: u16) -> SocketAddr {
        SocketAddr::new(text.parse().expect("test address"), port)
    }

    // The fixtures were captured on (and are written for) a little-endian
    // host: the kernel prints addresses as native words.
    #[cfg(target_endian = "little")]
    #[test]
    fn tcp_fixture_parses_exactly() {
        let parsed = parse_sockets(include_str!("../tests/fixtures/good/net/tcp"), Family::V4);
        assert_eq!(parsed.malformed, vec![]);
        assert_eq!(
            parsed.entries,
            vec![
                SocketEntry {
                    local: v4([0, 0, 0, 0], 2024),
                    remote: v4([0, 0, 0, 0], 0),
                    state: TCP_LISTEN
                },
                SocketEntry {
                    local: v4([127, 0, 0, 1], 32779),
                    remote: v4([0, 0, 0, 0], 0),
                    state: TCP_LISTEN
                },
                SocketEntry {
                    local: v4([127, 0, 0, 1], 56634),
                    remote: v4([127, 0, 0, 1], 32779),
                    state: TCP_ESTABLISHED
                },
                SocketEntry {
                    local: v4([127, 0, 0, 1], 32779),
                    remote: v4([127, 0, 0, 1], 56634),
                    state: TCP_ESTABLISHED
                },
                SocketEntry {
                    local: v4([192, 0, 2, 2], 22),
                    remote: v4([198, 51, 100, 7], 51000),
                    state: TCP_ESTABLISHED
                },
                SocketEntry {
                    local: v4([192, 0, 2, 2], 40000),
                    remote: v4([203, 0, 113, 9], 443),
                    state: 0x06 // TIME_WAIT
                },
            ]
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn tcp6_fixture_parses_exactly() {
        let parsed = parse_sockets(include_str!("../tests/fixtures/good/net/tcp6"), Family::V6);
        assert_eq!(parsed.malformed, vec![]);
        assert_eq!(
            parsed.entries,
            vec![
                SocketEntry {
                    local: v6("::", 2024),
                    remote: v6("::", 0),
                    state: TCP_LISTEN
                },
                SocketEntry {
                    local: v6("::1", 8080),
                    remote: v6("::", 0),
                    state: TCP_LISTEN
                },
                SocketEntry {
                    local: v6("fd00::2", 8883),
                    remote: v6("fd00::7", 50123),
                    state: TCP_ESTABLISHED
                },
                SocketEntry {
                    local: v6("::ffff:127.0.0.1", 9000),
                    remote: v6("::ffff:127.0.0.1", 41000),
                    state: TCP_ESTABLISHED
                },
            ]
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn udp_fixtures_parse_exactly() {
        let parsed = parse_sockets(include_str!("../tests/fixtures/good/net/udp"), Family::V4);
        assert_eq!(parsed.malformed, vec![]);
        assert_eq!(
            parsed.entries,
            vec![
                SocketEntry {
                    local: v4([127, 0, 0, 1], 36590),
                    remote: v4([0, 0, 0, 0], 0),
                    state: TCP_CLOSE
                },
                SocketEntry {
                    local: v4([0, 0, 0, 0], 5353),
                    remote: v4([0, 0, 0, 0], 0),
                    state: TCP_CLOSE
                },
                SocketEntry {
                    local: v4([192, 0, 2, 2], 45000),
                    remote: v4([192, 0, 2, 1], 53),
                    state: TCP_ESTABLISHED
                },
            ]
        );
        let parsed = parse_sockets(include_str!("../tests/fixtures/good/net/udp6"), Family::V6);
        assert_eq!(parsed.malformed, vec![]);
        assert_eq!(
            parsed.entries,
            vec![SocketEntry {
                local: v6("::", 5353),
                remote: v6("::", 0),
                state: TCP_CLOSE
            }]
        );
    }

    #[test]
    fn net_dev_fixture_parses_exactly() {
        let parsed = parse_net_dev(include_str!("../tests/fixtures/good/net/dev"));
        assert_eq!(parsed.malformed, vec![]);
        let c = |name: &str, bi, pi, bo, po| InterfaceCounters {
            name: name.into(),
            bytes_in: bi,
            packets_in: pi,
            bytes_out: bo,
            packets_out: po,
        };
        assert_eq!(
            parsed.entries,
            vec![
                c("lo", 1005497, 73, 1005497, 73),
                c("ifb0", 0, 0, 0, 0),
                c("eth0", 62614148, 3926, 299731, 2674),
                // A counter too wide for its column runs into the colon.
                c("wlan0", 12345678901234, 10, 5, 1),
            ]
        );
    }

    #[test]
    fn malformed_socket_lines_are_reported_with_their_numbers() {
        let parsed = parse_sockets(include_str!("../tests/fixtures/bad/net/tcp"), Family::V4);
        let lines: Vec<(usize, LineError)> = parsed
            .malformed
            .iter()
            .map(|m| (m.line, m.error.clone()))
            .collect();
        let endpoint = |field, value: &str| LineError::Endpoint {
            field,
            value: value.into(),
            family: "IPv4",
        };
        assert_eq!(
            lines,
            vec![
                (3, LineError::Missing("remote address")),
                (4, endpoint("local address", "0100007G:0016")),
                (5, LineError::State("ZZ".into())),
                (6, LineError::Slot("x:".into())),
                (
                    7,
                    endpoint("local address", "00000000000000000000000000000000:0016")
                ),
                (8, endpoint("remote address", "0100007F:+016")),
                (9, LineError::State("1".into())),
            ]
        );
        // The good lines around the bad ones are still read.
        assert_eq!(
            parsed
                .entries
                .iter()
                .map(|e| e.local.port())
                .collect::<Vec<_>>(),
            vec![22, 8080]
        );
    }

    #[test]
    fn malformed_dev_lines_are_reported_with_their_numbers() {
        let parsed = parse_net_dev(include_str!("../tests/fixtures/bad/net/dev"));
        let lines: Vec<(usize, LineError)> = parsed
            .malformed
            .iter()
            .map(|m| (m.line, m.error.clone()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (4, LineError::InterfaceName),
                (
                    5,
                    LineError::Counter {
                        field: "receive packets",
                        value: "-3".into()
                    }
                ),
                (6, LineError::Missing("transmit packets")),
            ]
        );
        assert_eq!(
            parsed
                .entries
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            vec!["lo", "eth0"]
        );
    }

    #[test]
    fn empty_and_header_only_files_are_empty() {
        assert_eq!(parse_sockets("", Family::V4), Parsed::default());
        let header = "  sl  local_address rem_address   st tx_queue\n";
        assert_eq!(parse_sockets(header, Family::V4), Parsed::default());
        assert_eq!(parse_net_dev("Inter-|\n face |\n"), Parsed::default());
    }

    #[test]
    fn long_garbage_is_quoted_short() {
        let garbage = "x".repeat(10_000);
        let parsed = parse_sockets(&format!("0: {garbage} {garbage} 0A"), Family::V4);
        let shown = parsed.malformed[0].error.to_string();
        assert!(shown.len() < 200, "{shown}");
    }
}
