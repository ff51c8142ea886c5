//! Programs for `cargo xtask bench kernel` only, never attached otherwise:
//! the floors the probe's costs are read against.
//!
//! - Empty programs on every hook the probe uses (TC ingress and egress,
//!   the four tp_btf tracepoints): what attaching anything there costs.
//! - `connlog_tc_syn_update`: the least a SYN-tracking classifier can do:
//!   the same flag test and tuple as `connlog_tc_ingress`, then one insert
//!   into an LRU hash map per client SYN to a watched port: the floor of the
//!   "× empty" ratio for a probe that keeps per-attempt state in the kernel.
//!   `connlog_tc_syn_forget` deletes the entries again.

use aya_ebpf::macros::{btf_tracepoint, classifier, map};
use aya_ebpf::maps::LruHashMap;
use aya_ebpf::programs::{BtfTracePointContext, TcContext};
use connlog_common::{Attempt, AttemptKey};

use crate::emit::watched;
use crate::packet::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, port, tcp_headers, tuple};
use crate::tc::NEXT;

/// The table `connlog_tc_syn_update` writes: one entry by default; the
/// agent sizes it like `ATTEMPTS` only when it attaches that program.
#[map(name = "BENCH_SYNS")]
static BENCH_SYNS: LruHashMap<AttemptKey, Attempt> = LruHashMap::with_max_entries(1, 0);

#[classifier]
pub fn connlog_tc_empty(_ctx: TcContext) -> i32 {
    NEXT
}

/// A second empty classifier, for egress: the bpf stats are per program,
/// and ingress and egress runs do not cost the same.
#[classifier]
pub fn connlog_tc_empty_egress(_ctx: TcContext) -> i32 {
    NEXT
}

#[classifier]
pub fn connlog_tc_syn_update(ctx: TcContext) -> i32 {
    let _ = syn_update(&ctx, true);
    NEXT
}

/// Attached after `connlog_tc_syn_update`: deletes on a client RST or FIN,
/// so that the table holds only open attempts, as `ATTEMPTS` does (the
/// probe deletes at ESTABLISHED, in `connlog_set_state`). A program of its
/// own, so that the other one's run time is the insert alone.
#[classifier]
pub fn connlog_tc_syn_forget(ctx: TcContext) -> i32 {
    let _ = syn_update(&ctx, false);
    NEXT
}

#[inline(always)]
fn syn_update(ctx: &TcContext, insert: bool) -> Option<()> {
    let (data, end) = (ctx.data(), ctx.data_end());
    let h = tcp_headers::<true>(data, end)?;
    let wanted = if insert {
        h.flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
    } else {
        h.flags & (TCP_RST | TCP_FIN) != 0
    };
    if !wanted || !watched(port(data, end, h, true)?) {
        return None;
    }
    let (key, isn) = tuple(data, end, h, true)?;
    if !insert {
        return BENCH_SYNS.remove(key).ok();
    }
    let value = Attempt {
        isn,
        ..Attempt::default()
    };
    BENCH_SYNS.insert(key, value, 0).ok()
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn connlog_empty_set_state(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn connlog_empty_receive_reset(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "tcp_send_reset")]
pub fn connlog_empty_send_reset(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "kfree_skb")]
pub fn connlog_empty_kfree_skb(_ctx: BtfTracePointContext) -> i32 {
    0
}
