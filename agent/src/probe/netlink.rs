//! Link notifications from the kernel (rtnetlink, `RTMGRP_LINK`): a raw
//! `NETLINK_ROUTE` socket and the few bytes of each message the probe
//! needs — which interface appeared, came up, or went away.
//!
//! Subscribing needs no privilege; the socket belongs to the network
//! namespace of the thread that opens it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};

/// `RTMGRP_LINK`: the multicast group of link changes.
const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const IFLA_IFNAME: u16 = 3;
const IFF_UP: u32 = 1;
/// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
const NLMSG_HDR: usize = 16;
/// `struct ifinfomsg`: family u8, pad u8, type u16, index i32, flags u32,
/// change u32.
const IFINFO: usize = 16;
/// `struct rtattr`: len u16, type u16.
const RTA_HDR: usize = 4;

/// A change to one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkChange {
    /// The interface exists (new or changed); `up` is `IFF_UP`.
    New { index: u32, name: String, up: bool },
    /// The interface is gone.
    Deleted { index: u32 },
}

/// A non-blocking socket subscribed to link changes.
#[derive(Debug)]
pub(crate) struct LinkSocket(OwnedFd);

impl LinkSocket {
    pub(crate) fn open() -> std::io::Result<Self> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None, // NETLINK_ROUTE
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, RTMGRP_LINK))?;
        Ok(Self(fd))
    }

    /// One datagram (possibly several messages). `ENOBUFS` means the
    /// kernel dropped notifications: the caller must resynchronise.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        let (n, _) = rustix::net::recv(&self.0, buf, RecvFlags::empty())?;
        Ok(n)
    }
}

impl AsFd for LinkSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl std::os::fd::AsRawFd for LinkSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }
}

/// The link changes in one datagram; anything malformed or of another
/// type is skipped.
pub(crate) fn parse(mut buf: &[u8]) -> Vec<LinkChange> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDR {
        let len = u32_at(buf, 0) as usize;
        if len < NLMSG_HDR || len > buf.len() {
            break;
        }
        let kind = u16_at(buf, 4);
        if let Some(change) = link_change(kind, &buf[NLMSG_HDR..len]) {
            out.push(change);
        }
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

fn link_change(kind: u16, body: &[u8]) -> Option<LinkChange> {
    if kind != RTM_NEWLINK && kind != RTM_DELLINK || body.len() < IFINFO {
        return None;
    }
    let index = u32::try_from(i32::from_ne_bytes(body[4..8].try_into().ok()?)).ok()?;
    if kind == RTM_DELLINK {
        return Some(LinkChange::Deleted { index });
    }
    let up = u32_at(body, 8) & IFF_UP != 0;
    let name = attribute(&body[IFINFO..], IFLA_IFNAME)?;
    let name = name.split(|&b| b == 0).next()?;
    let name = String::from_utf8(name.to_vec()).ok()?;
    Some(LinkChange::New { index, name, up })
}

fn attribute(mut attrs: &[u8], want: u16) -> Option<&[u8]> {
    while attrs.len() >= RTA_HDR {
        let len = usize::from(u16_at(attrs, 0));
        if len < RTA_HDR || len > attrs.len() {
            return None;
        }
        if u16_at(attrs, 2) == want {
            return Some(&attrs[RTA_HDR..len]);
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    None
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Callers check `buf.len() >= at + 4`.
fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Callers check `buf.len() >= at + 2`.
fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([buf[at], buf[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, index: i32, flags: u32, name: Option<&str>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&[0, 0, 1, 0]); // family, pad, type
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&flags.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes()); // change
        // An attribute before the name, to be skipped (IFLA_MTU).
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&4u16.to_ne_bytes());
        body.extend_from_slice(&1500u32.to_ne_bytes());
        if let Some(name) = name {
            let len = RTA_HDR + name.len() + 1;
            body.extend_from_slice(&u16::try_from(len).unwrap().to_ne_bytes());
            body.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
            body.extend_from_slice(name.as_bytes());
            body.push(0);
            body.resize(align4(body.len()), 0);
        }
        let mut msg = Vec::new();
        let len = u32::try_from(NLMSG_HDR + body.len()).unwrap();
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]); // flags, seq, pid
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn new_and_deleted_links_in_one_datagram() {
        let mut buf = message(RTM_NEWLINK, 7, IFF_UP | 0x40, Some("veth-a"));
        buf.extend(message(RTM_NEWLINK, 8, 0, Some("eth12345")));
        buf.extend(message(24, 9, 0, None)); // RTM_NEWROUTE: skipped
        buf.extend(message(RTM_DELLINK, 7, 0, Some("veth-a")));
        assert_eq!(
            parse(&buf),
            [
                LinkChange::New {
                    index: 7,
                    name: "veth-a".into(),
                    up: true
                },
                LinkChange::New {
                    index: 8,
                    name: "eth12345".into(),
                    up: false
                },
                LinkChange::Deleted { index: 7 },
            ]
        );
    }

    #[test]
    fn malformed_input_is_skipped() {
        let good = message(RTM_NEWLINK, 3, IFF_UP, Some("lo"));
        // Truncated at every length: never a panic, never a wrong change.
        for cut in 0..good.len() {
            let changes = parse(&good[..cut]);
            assert!(changes.is_empty(), "cut {cut}: {changes:?}");
        }
        // A header claiming more than the datagram holds.
        let mut long = good.clone();
        long[0] = 0xff;
        assert!(parse(&long).is_empty());
        // No name attribute: not usable.
        assert!(parse(&message(RTM_NEWLINK, 3, IFF_UP, None)).is_empty());
        // A negative index.
        assert!(parse(&message(RTM_DELLINK, -1, 0, None)).is_empty());
        assert!(parse(&[0xff; 64]).is_empty());
    }

    #[test]
    fn the_socket_is_non_blocking() {
        let sock = LinkSocket::open().expect("netlink route socket");
        let mut buf = [0u8; 8192];
        // Returns at once: nothing pending, or a change some other process
        // just made in this namespace.
        match sock.recv(&mut buf) {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
            Ok(n) => assert!(n >= NLMSG_HDR, "{n}"),
        }
    }
}
