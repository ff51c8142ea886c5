//! Which listener's `distributionId` a kernel-only record gets: the
//! listener bound to the connection's server address, as the kernel picks
//! it (an address of its own before a wildcard on the same port, and a
//! dual-stack `[::]` listener for IPv4 too).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone, Default)]
pub struct Distributions(HashMap<SocketAddr, String>);

impl Distributions {
    /// `binds`: every listener's bind addresses with its distributionId.
    pub fn new(binds: impl IntoIterator<Item = (SocketAddr, String)>) -> Self {
        Self(binds.into_iter().collect())
    }

    /// The distributionId for a connection to `server`, if a listener
    /// takes it.
    pub fn of(&self, server: SocketAddr) -> Option<&str> {
        let port = server.port();
        let v4_any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let v6_any = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        // An IPv4 wildcard takes no IPv6 connection.
        let wildcards: &[SocketAddr] = if server.is_ipv4() {
            &[v4_any, v6_any]
        } else {
            &[v6_any]
        };
        std::iter::once(&server)
            .chain(wildcards)
            .find_map(|a| self.0.get(a))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_own_address_before_a_wildcard_and_dual_stack_for_ipv4() {
        let d = Distributions::new([
            (addr("198.18.0.1:443"), "A".to_owned()),
            (addr("0.0.0.0:443"), "WILD4".to_owned()),
            (addr("198.18.0.2:443"), "B".to_owned()),
            (addr("[::]:8443"), "WILD6".to_owned()),
            (addr("[fd00::1]:443"), "C".to_owned()),
        ]);
        assert_eq!(d.of(addr("198.18.0.1:443")), Some("A"));
        assert_eq!(d.of(addr("198.18.0.2:443")), Some("B"));
        assert_eq!(d.of(addr("198.18.0.3:443")), Some("WILD4"));
        assert_eq!(d.of(addr("[fd00::1]:443")), Some("C"));
        assert_eq!(d.of(addr("[fd00::2]:443")), None, "0.0.0.0 takes no IPv6");
        assert_eq!(d.of(addr("198.18.0.1:8443")), Some("WILD6"));
        assert_eq!(d.of(addr("[fd00::1]:8443")), Some("WILD6"));
        assert_eq!(d.of(addr("198.18.0.1:80")), None);
    }
}
