//! TC classifiers (tcx links): SYN and RST at ingress, SYN-ACK at egress.
//! They never change the packet's fate: every path returns `TC_ACT_UNSPEC`
//! (tcx "next"), so other programs on the interface still run.
//!
//! Fast path: parse to the TCP flags with direct packet access and return
//! unless the flags are interesting; only then look the port up.

use aya_ebpf::macros::classifier;
use aya_ebpf::programs::TcContext;
use connlog_common::{RawEvent, kind};

use crate::emit::{emit, now, watched};
use crate::packet::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, segment, tcp_flags};

/// `TC_ACT_UNSPEC`, tcx's `TCX_NEXT`.
const NEXT: i32 = -1;

#[classifier]
pub fn connlog_tc_ingress(ctx: TcContext) -> i32 {
    ingress(&ctx);
    NEXT
}

#[classifier]
pub fn connlog_tc_egress(ctx: TcContext) -> i32 {
    egress(&ctx);
    NEXT
}

/// An empty classifier: the floor for `cargo xtask bench kernel`.
#[classifier]
pub fn connlog_tc_empty(_ctx: TcContext) -> i32 {
    NEXT
}

#[inline(always)]
fn ingress(ctx: &TcContext) -> Option<()> {
    let (data, end) = (ctx.data(), ctx.data_end());
    let (flags, l4, family) = tcp_flags(data, end)?;
    let kind = if flags & TCP_RST != 0 {
        kind::RST_IN
    } else if flags & (TCP_SYN | TCP_ACK | TCP_FIN) == TCP_SYN {
        kind::SYN
    } else {
        return None;
    };
    let seg = segment(data, end, l4, family)?;
    if !watched(seg.dport) {
        return None;
    }
    emit(&RawEvent {
        ts: now(),
        client_addr: seg.saddr,
        server_addr: seg.daddr,
        client_port: seg.sport,
        server_port: seg.dport,
        family: seg.family,
        kind,
        seq: seg.seq,
        ..RawEvent::default()
    });
    Some(())
}

#[inline(always)]
fn egress(ctx: &TcContext) -> Option<()> {
    let (data, end) = (ctx.data(), ctx.data_end());
    let (flags, l4, family) = tcp_flags(data, end)?;
    if flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN | TCP_ACK {
        return None;
    }
    let seg = segment(data, end, l4, family)?;
    if !watched(seg.sport) {
        return None;
    }
    emit(&RawEvent {
        ts: now(),
        client_addr: seg.daddr,
        server_addr: seg.saddr,
        client_port: seg.dport,
        server_port: seg.sport,
        family: seg.family,
        kind: kind::SYN_ACK,
        seq: seg.seq,
        ..RawEvent::default()
    });
    Some(())
}
