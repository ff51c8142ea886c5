//! TC classifiers (tcx links, or netlink filters before Linux 6.6): SYNs at
//! ingress open attempts, SYN-ACKs at egress are counted on them; neither
//! writes to the ring (a superseded attempt, a server RST no tracepoint
//! reported, and the [`fallback`]s aside). They never change the packet's
//! fate: every path returns `TC_ACT_UNSPEC` (tcx "next"), so other programs
//! on the interface still run.
//!
//! Fast path: parse to the TCP flags with direct packet access and return
//! unless they are those of a SYN (ingress) or SYN-ACK (egress); only then
//! test the port (an inlined array lookup) and touch the attempt map. A
//! SYN about to open an attempt also pays a socket lookup (`owner`).
//!
//! `_l3` variants are for devices without a link-layer header (tun,
//! wireguard): the packet starts at the IP header.

use aya_ebpf::macros::classifier;
use aya_ebpf::programs::TcContext;

use connlog_common::{NO_REASON, fallback, kind};

use crate::attempt;
use crate::emit::{globals, now, watched};
use crate::packet::{Headers, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, port, tcp_headers, tuple};

/// `TC_ACT_UNSPEC`, tcx's `TCX_NEXT`.
pub(crate) const NEXT: i32 = -1;

#[classifier]
pub fn connlog_tc_ingress(ctx: TcContext) -> i32 {
    ingress::<true>(&ctx);
    NEXT
}

#[classifier]
pub fn connlog_tc_egress(ctx: TcContext) -> i32 {
    egress::<true>(&ctx);
    NEXT
}

#[classifier]
pub fn connlog_tc_ingress_l3(ctx: TcContext) -> i32 {
    ingress::<false>(&ctx);
    NEXT
}

#[classifier]
pub fn connlog_tc_egress_l3(ctx: TcContext) -> i32 {
    egress::<false>(&ctx);
    NEXT
}

#[inline(always)]
fn ingress<const ETH: bool>(ctx: &TcContext) -> Option<()> {
    let (data, end) = (ctx.data(), ctx.data_end());
    let h = tcp_headers::<ETH>(data, end)?;
    let flags = h.flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN);
    if flags != TCP_SYN {
        // Only on kernels that need these fallbacks: the globals are
        // constants to the verifier, which drops this branch elsewhere.
        let fallbacks = globals().fallbacks;
        if fallbacks & (fallback::TC_CLIENT_RST | fallback::TC_OVERFLOW) != 0 {
            non_syn(ctx, h, flags, fallbacks);
        }
        return None;
    }
    if !watched(port(data, end, h, true)?) {
        return None;
    }
    let (key, isn) = tuple(data, end, h, true)?;
    attempt::syn(ctx, &key, isn, now());
    Some(())
}

/// Ingress segments other than SYNs, where the kernel has no hook that
/// reports their effect ([`fallback`]): an RST for a pending attempt is the
/// client's reset in SYN_RECV; a pure ACK marks the attempt as acknowledged.
#[inline(always)]
fn non_syn(ctx: &TcContext, h: Headers, flags: u8, fallbacks: u32) -> Option<()> {
    let rst = flags & TCP_RST != 0 && fallbacks & fallback::TC_CLIENT_RST != 0;
    let ack = flags == TCP_ACK && fallbacks & fallback::TC_OVERFLOW != 0;
    if !(rst || ack) {
        return None;
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    if !watched(port(data, end, h, true)?) {
        return None;
    }
    let (key, _) = tuple(data, end, h, true)?;
    if rst {
        attempt::fail(&key, kind::CLIENT_RST, now(), 0);
    } else {
        attempt::acked(&key);
    }
    Some(())
}

#[inline(always)]
fn egress<const ETH: bool>(ctx: &TcContext) -> Option<()> {
    let (data, end) = (ctx.data(), ctx.data_end());
    let h = tcp_headers::<ETH>(data, end)?;
    let flags = h.flags & (TCP_SYN | TCP_ACK | TCP_RST);
    if flags != TCP_SYN | TCP_ACK && flags & TCP_RST == 0 {
        return None;
    }
    if !watched(port(data, end, h, false)?) {
        return None;
    }
    let (key, _) = tuple(data, end, h, false)?;
    if flags & TCP_RST == 0 {
        attempt::synack(&key);
    } else {
        // The server's RST for a pending attempt. `tcp_send_reset` reports
        // it first, with the kernel's reason, wherever it fires; not for a
        // SYN to a port without listener before Linux 6.10, so this does.
        attempt::fail(&key, kind::SERVER_RST, now(), NO_REASON);
    }
    Some(())
}
