//! Parsing Ethernet / IPv4 / IPv6 (with extension headers) / TCP with direct
//! packet access. Everything is bounds-checked against `data_end`; anything
//! malformed, truncated, fragmented (non-first fragment) or not TCP gives
//! `None`.

use connlog_common::{FAMILY_V4, FAMILY_V6};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
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

/// The TCP fields we report. Addresses are network order, ports and `seq`
/// host order.
pub(crate) struct Segment {
    pub family: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
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

/// The TCP flags byte of the segment in this frame, cheaply: the fast path
/// every packet takes. Returns the L4 offset too.
#[inline(always)]
pub(crate) fn tcp_flags(data: usize, end: usize) -> Option<(u8, usize, u8)> {
    let eth = at(data, end, 0, ETH_HLEN)?;
    let (family, l4) = match be16(eth, 12) {
        ETH_P_IP => (FAMILY_V4, ipv4_l4(data, end)?),
        ETH_P_IPV6 => (FAMILY_V6, ipv6_l4(data, end)?),
        _ => return None,
    };
    if l4 > MAX_L4_OFFSET {
        return None;
    }
    let tcp = at(data, end, l4, 20)?;
    Some((byte(tcp, 13), l4, family))
}

#[inline(always)]
fn ipv4_l4(data: usize, end: usize) -> Option<usize> {
    let ip = at(data, end, ETH_HLEN, 20)?;
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
    Some(ETH_HLEN + ihl)
}

#[inline(always)]
fn ipv6_l4(data: usize, end: usize) -> Option<usize> {
    let ip = at(data, end, ETH_HLEN, 40)?;
    if byte(ip, 0) >> 4 != 6 {
        return None;
    }
    let mut next = byte(ip, 6);
    let mut off = ETH_HLEN + 40;
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

/// The full segment: only called for the few packets that pass the flag test.
#[inline(always)]
pub(crate) fn segment(data: usize, end: usize, l4: usize, family: u8) -> Option<Segment> {
    if l4 > MAX_L4_OFFSET {
        return None;
    }
    let tcp = at(data, end, l4, 20)?;
    let mut seg = Segment {
        family,
        saddr: [0; 16],
        daddr: [0; 16],
        sport: be16(tcp, 0),
        dport: be16(tcp, 2),
        seq: u32::from_be_bytes([byte(tcp, 4), byte(tcp, 5), byte(tcp, 6), byte(tcp, 7)]),
    };
    if family == FAMILY_V4 {
        let ip = at(data, end, ETH_HLEN, 20)?;
        for i in 0..4 {
            seg.saddr[i] = byte(ip, 12 + i);
            seg.daddr[i] = byte(ip, 16 + i);
        }
    } else {
        let ip = at(data, end, ETH_HLEN, 40)?;
        for i in 0..16 {
            seg.saddr[i] = byte(ip, 8 + i);
            seg.daddr[i] = byte(ip, 24 + i);
        }
    }
    Some(seg)
}
