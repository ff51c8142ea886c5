//! BTF tracepoints (tp_btf: no tracefs needed). They are global across
//! network namespaces and fire for every socket of the host, so each one
//! filters cheapest-first: its own arguments, then the local port (an
//! inlined array lookup), then the socket's `net->ns.inum` (offsets from
//! BTF, in [`Globals`]), and only then touches the attempt map.
//!
//! Only the start of `struct sock_common` is read at fixed offsets (stable
//! for full, request and timewait sockets): daddr@0, rcv_saddr@4, dport@12,
//! num@14, family@16.

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_get_socket_cookie, bpf_probe_read_kernel};
use aya_ebpf::macros::btf_tracepoint;
use aya_ebpf::programs::BtfTracePointContext;
use connlog_common::{
    AttemptKey, FAMILY_V4, FAMILY_V6, Globals, NO_REASON, RawEvent, fallback, kind,
};

use crate::attempt;
use crate::emit::{emit, globals, now, watched};
use crate::packet::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_RECV: i32 = 3;
const IPPROTO_TCP: u8 = 6;
/// IPv6's next header may be an extension header before TCP: what is
/// surely not TCP is left out.
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

#[inline(always)]
fn read<T>(base: *const u8, off: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize).cast::<T>()).ok() }
}

/// A direct load from a BTF-typed kernel pointer (a tracepoint's socket
/// argument, or a pointer loaded from one): the verifier checks the offset
/// against the kernel's BTF and turns it into a fault-safe load, far cheaper
/// than a `bpf_probe_read_kernel` call.
#[inline(always)]
fn field<T: Copy>(base: *const u8, off: u32) -> T {
    // SAFETY: see above; the kernel handles a faulting address by reading 0.
    unsafe { core::ptr::read_volatile(base.wrapping_add(off as usize).cast::<T>()) }
}

/// Whether `sk` is bound to a watched local port in the agent's namespace.
#[inline(always)]
fn ours(sk: *const u8, g: &Globals) -> bool {
    if sk.is_null() {
        return false;
    }
    let local_port: u16 = field(sk, 14);
    if !watched(local_port) {
        return false;
    }
    if g.netns_ino != 0 {
        let net: *const u8 = field(sk, g.skc_net);
        if net.is_null() {
            return false;
        }
        let inum: u32 = field(net, g.net_ns_inum);
        if inum != g.netns_ino {
            return false;
        }
    }
    true
}

/// The socket's tuple (server's view) if it is ours. An IPv4 connection on
/// a dual-stack socket (AF_INET6, v4-mapped addresses) gets the IPv4 key
/// the TC programs build from its packets.
#[inline(always)]
fn sock_key(sk: *const u8, g: &Globals) -> Option<AttemptKey> {
    if !ours(sk, g) {
        return None;
    }
    let family: u16 = field(sk, 16);
    let remote_port: u16 = field(sk, 12);
    let mut key = AttemptKey {
        client_port: u16::from_be(remote_port),
        server_port: field(sk, 14),
        ..AttemptKey::default()
    };
    let v4 = if family == AF_INET {
        true
    } else if family == AF_INET6 {
        let client: [u8; 16] = field(sk, g.skc_v6_daddr);
        let mapped =
            client[..10].iter().all(|&b| b == 0) && client[10] == 0xff && client[11] == 0xff;
        if !mapped {
            key.family = FAMILY_V6;
            key.client_addr = client;
            key.server_addr = field(sk, g.skc_v6_rcv_saddr);
        }
        mapped
    } else {
        return None;
    };
    if v4 {
        key.family = FAMILY_V4;
        let client: [u8; 4] = field(sk, 0);
        let server: [u8; 4] = field(sk, 4);
        key.client_addr[..4].copy_from_slice(&client);
        key.server_addr[..4].copy_from_slice(&server);
    }
    Some(key)
}

/// The socket's cookie; 0 where tracing programs cannot ask for it (before
/// Linux 5.12: the `_no_cookie` variants), and the agent joins on the tuple.
#[inline(always)]
fn cookie<const COOKIE: bool>(sk: *const u8) -> u64 {
    if !COOKIE {
        return 0;
    }
    // SAFETY: `sk` is the tracepoint's BTF-typed socket argument, unmodified.
    unsafe { bpf_get_socket_cookie(sk as *mut c_void) }
}

/// `inet_sock_set_state(sk, oldstate, newstate)`: a passive open completing.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn connlog_set_state(ctx: BtfTracePointContext) -> i32 {
    set_state::<true>(&ctx)
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn connlog_set_state_no_cookie(ctx: BtfTracePointContext) -> i32 {
    set_state::<false>(&ctx)
}

#[inline(always)]
fn set_state<const COOKIE: bool>(ctx: &BtfTracePointContext) -> i32 {
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if old != TCP_SYN_RECV || new != TCP_ESTABLISHED {
        return 0;
    }
    let sk: *const u8 = ctx.arg(0);
    if let Some(key) = sock_key(sk, globals()) {
        attempt::established(&key, now(), cookie::<COOKIE>(sk));
    }
    0
}

/// `tcp_receive_reset(sk)`: an RST accepted on a full socket.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn connlog_receive_reset(ctx: BtfTracePointContext) -> i32 {
    receive_reset::<true>(&ctx)
}

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn connlog_receive_reset_no_cookie(ctx: BtfTracePointContext) -> i32 {
    receive_reset::<false>(&ctx)
}

#[inline(always)]
fn receive_reset<const COOKIE: bool>(ctx: &BtfTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    if let Some(key) = sock_key(sk, globals()) {
        emit(&RawEvent {
            ts: now(),
            cookie: cookie::<COOKIE>(sk),
            tuple: key,
            kind: kind::RECEIVE_RESET,
            ..RawEvent::default()
        });
    }
    0
}

/// `tcp_send_reset(sk, skb, reason)` (Linux ≥ 6.10): the kernel sent an
/// RST; reported if it ends a pending attempt. With an incoming `skb` (the
/// segment being answered) the tuple comes from it: `sk` may be the
/// listener, whose remote end is unset, or none at all (a SYN to a port
/// where nothing listens).
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn connlog_send_reset(ctx: BtfTracePointContext) -> i32 {
    send_reset(&ctx, ctx.arg(2))
}

/// `tcp_send_reset(sk, skb)` of older kernels: the same, without a reason.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn connlog_send_reset_no_reason(ctx: BtfTracePointContext) -> i32 {
    send_reset(&ctx, NO_REASON)
}

#[inline(always)]
fn send_reset(ctx: &BtfTracePointContext, reason: u32) -> i32 {
    let g = globals();
    let sk: *const u8 = ctx.arg(0);
    let skb: *const u8 = ctx.arg(1);
    let key = if skb.is_null() {
        sock_key(sk, g)
    } else if sk.is_null() {
        // No socket took the segment (nothing listens on its port): no
        // namespace to check, but only the TC programs of the agent's
        // namespace open the attempts `fail` looks for.
        skb_segment(skb, g)
            .map(|(key, _)| key)
            .filter(|key| watched(key.server_port))
    } else if ours(sk, g) {
        skb_segment(skb, g).map(|(key, _)| key)
    } else {
        None
    };
    if let Some(key) = key {
        attempt::fail(&key, kind::SERVER_RST, now(), reason);
    }
    0
}

/// `kfree_skb(skb, location, reason, rx_sk)` (Linux ≥ 6.12), for segments
/// a watched listener (`rx_sk`) dropped:
/// - reason `TCP_LISTEN_OVERFLOW`: the final ACK found the accept queue
///   full;
/// - an RST with reason `NOT_SPECIFIED` (it matched a request socket and
///   reset it in `tcp_check_req`) or `TCP_RESET` (it reached the listener
///   itself, e.g. after a syncookie SYN-ACK): the client reset the attempt;
/// - with [`fallback::DROP_OVERFLOW`], a pure ACK with reason
///   `NOT_SPECIFIED`: the final ACK found the accept queue full.
#[btf_tracepoint(function = "kfree_skb")]
pub fn connlog_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    kfree_skb(&ctx, ctx.arg(2), Some(ctx.arg(3)))
}

/// `kfree_skb(skb, location, reason)` (Linux 5.17 – 6.11): the same without
/// the listener. The segment's port must be watched and its tuple that of a
/// pending attempt, which only the TC programs of the agent's namespace
/// open.
#[btf_tracepoint(function = "kfree_skb")]
pub fn connlog_kfree_skb_no_rx_sk(ctx: BtfTracePointContext) -> i32 {
    kfree_skb(&ctx, ctx.arg(2), None)
}

/// Cheapest test first: the reason (constants), then the listener, then
/// the segment.
#[inline(always)]
fn kfree_skb(ctx: &BtfTracePointContext, reason: u64, rx_sk: Option<*const u8>) -> i32 {
    let g = globals();
    let not_specified = reason == u64::from(g.reason_not_specified);
    let overflow = reason == u64::from(g.reason_listen_overflow);
    if reason == 0 || !(overflow || not_specified || reason == u64::from(g.reason_tcp_reset)) {
        return 0;
    }
    if let Some(rx_sk) = rx_sk
        && !ours(rx_sk, g)
    {
        return 0;
    }
    let skb: *const u8 = ctx.arg(0);
    let Some((key, flags)) = skb_segment(skb, g) else {
        return 0;
    };
    if rx_sk.is_none() && !watched(key.server_port) {
        return 0;
    }
    let kind = if overflow {
        kind::LISTEN_OVERFLOW
    } else if flags & TCP_RST != 0 {
        kind::CLIENT_RST
    } else if not_specified
        && g.fallbacks & fallback::DROP_OVERFLOW != 0
        && flags & (TCP_SYN | TCP_ACK | TCP_FIN) == TCP_ACK
    {
        kind::LISTEN_OVERFLOW
    } else {
        return 0;
    };
    attempt::fail(&key, kind, now(), 0);
    0
}

/// The tuple (source = client) and TCP flags of an incoming TCP segment.
#[inline(always)]
fn skb_segment(skb: *const u8, g: &Globals) -> Option<(AttemptKey, u8)> {
    let head: *const u8 = read(skb, g.skb_head)?;
    let nh: u16 = read(skb, g.skb_network_header)?;
    let th: u16 = read(skb, g.skb_transport_header)?;
    let ip = head.wrapping_add(usize::from(nh));
    let tcp: [u8; 14] = read(head, u32::from(th))?;
    let version: u8 = read(ip, 0)?;
    let mut key = AttemptKey::default();
    match version >> 4 {
        4 if read::<u8>(ip, 9)? == IPPROTO_TCP => {
            key.family = FAMILY_V4;
            let client: [u8; 4] = read(ip, 12)?;
            let server: [u8; 4] = read(ip, 16)?;
            key.client_addr[..4].copy_from_slice(&client);
            key.server_addr[..4].copy_from_slice(&server);
        }
        6 if !matches!(read::<u8>(ip, 6)?, IPPROTO_UDP | IPPROTO_ICMPV6) => {
            key.family = FAMILY_V6;
            key.client_addr = read(ip, 8)?;
            key.server_addr = read(ip, 24)?;
        }
        _ => return None,
    }
    key.client_port = u16::from_be_bytes([tcp[0], tcp[1]]);
    key.server_port = u16::from_be_bytes([tcp[2], tcp[3]]);
    Some((key, tcp[13]))
}
