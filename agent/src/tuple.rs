//! The socket 4-tuple that names a connection attempt.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Client and server ends of a TCP connection, as seen on the server.
/// IPv4-mapped IPv6 addresses are stored as IPv4 (SPEC.md field 4), so the
/// kernel's and userspace's views of one socket compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Tuple {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

impl Tuple {
    pub fn new(client: SocketAddr, server: SocketAddr) -> Self {
        Self {
            client: canonical(client),
            server: canonical(server),
        }
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.client, self.server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_v6_becomes_v4() {
        let t = Tuple::new(
            "[::ffff:198.18.0.2]:40000".parse().unwrap(),
            "[::ffff:198.18.0.1]:443".parse().unwrap(),
        );
        assert_eq!(t.client, "198.18.0.2:40000".parse().unwrap());
        assert_eq!(t.server, "198.18.0.1:443".parse().unwrap());
    }

    #[test]
    fn real_v6_is_kept() {
        let t = Tuple::new(
            "[fd00::2]:1".parse().unwrap(),
            "[fd00::1]:2".parse().unwrap(),
        );
        assert_eq!(t.client, "[fd00::2]:1".parse().unwrap());
    }
}
