//! What kind of link an interface is: whether its packets start with an
//! Ethernet header (Ethernet, veth, loopback) or at the IP header (tun,
//! wireguard, IP tunnels), which picks the TC program variant. Read with
//! `SIOCGIFHWADDR` in the calling thread's network namespace; needs no
//! privilege.

use std::os::fd::AsRawFd;

/// `ARPHRD_*` link types whose frames carry an Ethernet header.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

/// Whether `name`'s packets start with an Ethernet header. An interface
/// that cannot be asked is assumed to be Ethernet, the common case.
pub(crate) fn has_ethernet_header(name: &str) -> bool {
    link_type(name).is_none_or(|t| t == ARPHRD_ETHER || t == ARPHRD_LOOPBACK)
}

/// The interface's `ARPHRD_*` type.
fn link_type(name: &str) -> Option<u16> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return None;
    }
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .ok()?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads the NUL-terminated name (the last byte
    // stays 0: the name is shorter than IFNAMSIZ) and writes only inside
    // `req`, which outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success the kernel filled the `ifru_hwaddr` member.
    Some(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_ethernet_header_and_unknown_names_default_to_it() {
        assert_eq!(link_type("lo"), Some(ARPHRD_LOOPBACK));
        assert!(has_ethernet_header("lo"));
        assert_eq!(link_type("nosuch0"), None);
        assert!(has_ethernet_header("nosuch0"));
        assert_eq!(link_type("a-name-far-too-long"), None);
    }
}
