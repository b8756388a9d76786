//! Which network interface a local address belongs to.
//!
//! Owns the address → interface-name table that the metrics document's
//! `interface` and `local_interface` fields come from. The socket tables in
//! `/proc/net` name addresses, not interfaces, so the collector asks this
//! table; it is built from `getifaddrs(3)` on the host (NoContainer mode
//! shares the host's network namespace, and Greengrass containers did too),
//! or from a plain list in tests.
//!
//! Rules, in order:
//! * IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket
//!   shows for IPv4 peers) are looked up as the IPv4 address.
//! * Wildcard addresses (`0.0.0.0`, `::`) belong to no single interface:
//!   no name (the document then omits the field; AWS's Python agent put the
//!   address itself there, which says nothing an absent field does not).
//! * An address an interface holds → that interface (the first one listed,
//!   should two hold the same address).
//! * Any other loopback address (all of `127.0.0.0/8` routes to `lo`) → the
//!   interface that holds a loopback address.
//! * Otherwise no name (an address that went away between the two reads).

use std::collections::HashMap;
use std::net::IpAddr;

/// Address → interface name.
#[derive(Debug, Clone, Default)]
pub struct InterfaceTable {
    by_address: HashMap<IpAddr, String>,
    loopback: Option<String>,
}

impl InterfaceTable {
    /// A table from `(address, interface)` pairs.
    pub fn from_pairs<S: Into<String>>(pairs: impl IntoIterator<Item = (IpAddr, S)>) -> Self {
        let mut table = InterfaceTable::default();
        for (addr, name) in pairs {
            let addr = canonical(addr);
            let name = name.into();
            if addr.is_loopback() && table.loopback.is_none() {
                table.loopback = Some(name.clone());
            }
            table.by_address.entry(addr).or_insert(name);
        }
        table
    }

    /// The host's interfaces and their addresses, as `getifaddrs(3)` lists them.
    pub fn from_system() -> nix::Result<Self> {
        let pairs = nix::ifaddrs::getifaddrs()?.filter_map(|ifa| {
            let addr = ifa.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(addr.as_sockaddr_in6()?.ip())
            };
            Some((ip, ifa.interface_name))
        });
        Ok(Self::from_pairs(pairs))
    }

    /// The interface `addr` belongs to, if one can be named (see the module rules).
    pub fn name_of(&self, addr: IpAddr) -> Option<&str> {
        let addr = canonical(addr);
        if addr.is_unspecified() {
            return None;
        }
        if let Some(name) = self.by_address.get(&addr) {
            return Some(name);
        }
        if addr.is_loopback() {
            return self.loopback.as_deref();
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; every other address unchanged.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn lookup_rules() {
        let table = InterfaceTable::from_pairs([
            (ip("127.0.0.1"), "lo"),
            (ip("::1"), "lo"),
            (ip("192.0.2.2"), "eth0"),
            (ip("fd00::2"), "eth0"),
            (ip("192.0.2.2"), "eth0-dup"),
            (ip("10.1.0.5"), "wlan0"),
        ]);
        assert_eq!(
            table.name_of(ip("192.0.2.2")),
            Some("eth0"),
            "first holder wins"
        );
        assert_eq!(table.name_of(ip("fd00::2")), Some("eth0"));
        assert_eq!(
            table.name_of(ip("::ffff:10.1.0.5")),
            Some("wlan0"),
            "mapped"
        );
        assert_eq!(table.name_of(ip("127.0.0.53")), Some("lo"), "all of 127/8");
        assert_eq!(table.name_of(ip("::ffff:127.0.0.1")), Some("lo"));
        assert_eq!(table.name_of(ip("0.0.0.0")), None, "wildcard");
        assert_eq!(table.name_of(ip("::")), None, "wildcard");
        assert_eq!(table.name_of(ip("198.51.100.1")), None, "not ours");
        assert!(InterfaceTable::default().is_empty());
        assert_eq!(InterfaceTable::default().name_of(ip("127.0.0.1")), None);
    }

    #[test]
    fn the_system_table_names_loopback() {
        let table = InterfaceTable::from_system().expect("getifaddrs");
        assert!(
            table.name_of(ip("127.0.0.1")).is_some(),
            "every Linux host has a loopback interface: {table:?}"
        );
    }
}
