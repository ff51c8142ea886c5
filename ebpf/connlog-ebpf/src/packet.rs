//! Parsing [Ethernet [802.1Q / 802.1ad tags]] / IPv4 / IPv6 (with extension
//! headers) / TCP with direct packet access. Frames of L3 devices (tun,
//! wireguard: no link-layer header) start at the IP header: the `ETH`
//! parameter picks the variant at compile time. Everything is
//! bounds-checked against `data_end`; anything malformed, truncated,
//! fragmented (non-first fragment) or not TCP gives `None`.

use connlog_common::{AttemptKey, FAMILY_V4, FAMILY_V6};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HLEN: usize = 4;
const IPPROTO_TCP: u8 = 6;
/// IPv6 extension headers we step over.
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;
/// At most this many extension headers, and the TCP header must start within
/// this many bytes of the frame: keeps the verifier's ranges small.
const MAX_EXT_HEADERS: usize = 6;
const MAX_L4_OFFSET: usize = 512;

pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;

/// Where the headers of a TCP segment start, and its flags.
#[derive(Clone, Copy)]
pub(crate) struct Headers {
    pub flags: u8,
    pub family: u8,
    pub l3: usize,
    pub l4: usize,
}

/// `len` bytes at `off` are inside the packet: returns their address.
#[inline(always)]
fn at(data: usize, end: usize, off: usize, len: usize) -> Option<*const u8> {
    if data + off + len > end {
        return None;
    }
    Some((data + off) as *const u8)
}

#[inline(always)]
fn byte(p: *const u8, i: usize) -> u8 {
    // SAFETY: callers checked `i` is within the range `at` validated.
    unsafe { *p.add(i) }
}

#[inline(always)]
fn be16(p: *const u8, i: usize) -> u16 {
    u16::from_be_bytes([byte(p, i), byte(p, i + 1)])
}

/// The TCP headers of this frame, cheaply: the fast path every packet
/// takes (callers test `flags` before anything costlier).
#[inline(always)]
pub(crate) fn tcp_headers<const ETH: bool>(data: usize, end: usize) -> Option<Headers> {
    if let Some(h) = plain_ipv4::<ETH>(data, end) {
        return Some(h);
    }
    let (family, l3) = if ETH {
        ethernet(data, end)?
    } else {
        // Twenty bytes: every IP header has them, and the verifier needs a
        // length it can turn into a packet range.
        let ip = at(data, end, 0, 20)?;
        match byte(ip, 0) >> 4 {
            4 => (FAMILY_V4, 0),
            6 => (FAMILY_V6, 0),
            _ => return None,
        }
    };
    let l4 = if family == FAMILY_V4 {
        ipv4_l4(data, end, l3)?
    } else {
        ipv6_l4(data, end, l3)?
    };
    if l4 > MAX_L4_OFFSET {
        return None;
    }
    let tcp = at(data, end, l4, 20)?;
    Some(Headers {
        flags: byte(tcp, 13),
        family,
        l3,
        l4,
    })
}

/// The common case at fixed offsets, one bounds check: IPv4 without
/// options or VLAN tag, a first (or only) fragment, TCP. `None` sends the
/// frame through the general parser, which also handles what this refuses.
#[inline(always)]
fn plain_ipv4<const ETH: bool>(data: usize, end: usize) -> Option<Headers> {
    let l3 = if ETH { ETH_HLEN } else { 0 };
    let p = at(data, end, 0, l3 + 40)?;
    if ETH && be16(p, 12) != ETH_P_IP {
        return None;
    }
    if byte(p, l3) != 0x45 || byte(p, l3 + 9) != IPPROTO_TCP || be16(p, l3 + 6) & 0x1fff != 0 {
        return None;
    }
    Some(Headers {
        flags: byte(p, l3 + 33),
        family: FAMILY_V4,
        l3,
        l4: l3 + 20,
    })
}

/// The IP family and header offset after the Ethernet header and at most
/// two VLAN tags (802.1Q, or 802.1ad outer + 802.1Q inner).
#[inline(always)]
fn ethernet(data: usize, end: usize) -> Option<(u8, usize)> {
    let eth = at(data, end, 0, ETH_HLEN)?;
    let mut proto = be16(eth, 12);
    let mut l3 = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let tag = at(data, end, ETH_HLEN, VLAN_HLEN)?;
        proto = be16(tag, 2);
        l3 = ETH_HLEN + VLAN_HLEN;
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            let tag = at(data, end, ETH_HLEN + VLAN_HLEN, VLAN_HLEN)?;
            proto = be16(tag, 2);
            l3 = ETH_HLEN + 2 * VLAN_HLEN;
        }
    }
    match proto {
        ETH_P_IP => Some((FAMILY_V4, l3)),
        ETH_P_IPV6 => Some((FAMILY_V6, l3)),
        _ => None,
    }
}

#[inline(always)]
fn ipv4_l4(data: usize, end: usize, l3: usize) -> Option<usize> {
    let ip = at(data, end, l3, 20)?;
    let ver_ihl = byte(ip, 0);
    if ver_ihl >> 4 != 4 || byte(ip, 9) != IPPROTO_TCP {
        return None;
    }
    // Non-first fragments carry no TCP header.
    if be16(ip, 6) & 0x1fff != 0 {
        return None;
    }
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    Some(l3 + ihl)
}

#[inline(always)]
fn ipv6_l4(data: usize, end: usize, l3: usize) -> Option<usize> {
    let ip = at(data, end, l3, 40)?;
    if byte(ip, 0) >> 4 != 6 {
        return None;
    }
    let mut next = byte(ip, 6);
    let mut off = l3 + 40;
    for _ in 0..MAX_EXT_HEADERS {
        if next == IPPROTO_TCP {
            return Some(off);
        }
        if off > MAX_L4_OFFSET {
            return None;
        }
        let hdr = at(data, end, off, 8)?;
        let len = match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => (usize::from(byte(hdr, 1)) + 1) * 8,
            NEXTHDR_AUTH => (usize::from(byte(hdr, 1)) + 2) * 4,
            NEXTHDR_FRAGMENT => {
                // Offset field (13 bits) non-zero: not the first fragment.
                if be16(hdr, 2) & 0xfff8 != 0 {
                    return None;
                }
                8
            }
            _ => return None,
        };
        next = byte(hdr, 0);
        off += len;
    }
    if next == IPPROTO_TCP { Some(off) } else { None }
}

/// A parsed segment's tuple (source = client for `inbound`, else the
/// destination) and sequence number: only for the few packets whose flags
/// passed the test.
#[inline(always)]
pub(crate) fn tuple(
    data: usize,
    end: usize,
    h: Headers,
    inbound: bool,
) -> Option<(AttemptKey, u32)> {
    if h.l4 > MAX_L4_OFFSET || h.l3 > ETH_HLEN + 2 * VLAN_HLEN {
        return None;
    }
    let tcp = at(data, end, h.l4, 20)?;
    let (sport, dport) = (be16(tcp, 0), be16(tcp, 2));
    let seq = u32::from_be_bytes([byte(tcp, 4), byte(tcp, 5), byte(tcp, 6), byte(tcp, 7)]);
    let mut key = AttemptKey {
        family: h.family,
        ..AttemptKey::default()
    };
    let (src, dst) = if inbound {
        key.client_port = sport;
        key.server_port = dport;
        (&mut key.client_addr, &mut key.server_addr)
    } else {
        key.client_port = dport;
        key.server_port = sport;
        (&mut key.server_addr, &mut key.client_addr)
    };
    if h.family == FAMILY_V4 {
        let ip = at(data, end, h.l3, 20)?;
        for i in 0..4 {
            src[i] = byte(ip, 12 + i);
            dst[i] = byte(ip, 16 + i);
        }
    } else {
        let ip = at(data, end, h.l3, 40)?;
        for i in 0..16 {
            src[i] = byte(ip, 8 + i);
            dst[i] = byte(ip, 24 + i);
        }
    }
    Some((key, seq))
}

/// The TCP destination port (host order), for the watched-port test that
/// comes before building the whole tuple.
#[inline(always)]
pub(crate) fn port(data: usize, end: usize, h: Headers, dest: bool) -> Option<u16> {
    if h.l4 > MAX_L4_OFFSET {
        return None;
    }
    let tcp = at(data, end, h.l4, 4)?;
    Some(if dest { be16(tcp, 2) } else { be16(tcp, 0) })
}
