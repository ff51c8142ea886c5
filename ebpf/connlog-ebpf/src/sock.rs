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
use connlog_common::{AttemptKey, FAMILY_V4, FAMILY_V6, Globals, RawEvent, kind};

use crate::attempt;
use crate::emit::{emit, globals, now, watched};
use crate::packet::TCP_RST;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_RECV: i32 = 3;

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

#[inline(always)]
fn cookie(sk: *const u8) -> u64 {
    // SAFETY: `sk` is the tracepoint's BTF-typed socket argument, unmodified.
    unsafe { bpf_get_socket_cookie(sk as *mut c_void) }
}

/// `inet_sock_set_state(sk, oldstate, newstate)`: a passive open completing.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn connlog_set_state(ctx: BtfTracePointContext) -> i32 {
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if old != TCP_SYN_RECV || new != TCP_ESTABLISHED {
        return 0;
    }
    let sk: *const u8 = ctx.arg(0);
    if let Some(key) = sock_key(sk, globals()) {
        attempt::established(&key, now(), cookie(sk));
    }
    0
}

/// `tcp_receive_reset(sk)`: an RST accepted on a full socket.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn connlog_receive_reset(ctx: BtfTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    if let Some(key) = sock_key(sk, globals()) {
        emit(&RawEvent {
            ts: now(),
            cookie: cookie(sk),
            tuple: key,
            kind: kind::RECEIVE_RESET,
            ..RawEvent::default()
        });
    }
    0
}

/// `tcp_send_reset(sk, skb, reason)`: the kernel sent an RST; reported if it
/// ends a pending attempt. Without a socket there is no namespace to check,
/// so those are skipped. With an incoming `skb` (the segment being answered)
/// the tuple comes from it: `sk` may be the listener, whose remote end is
/// unset.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn connlog_send_reset(ctx: BtfTracePointContext) -> i32 {
    let g = globals();
    let sk: *const u8 = ctx.arg(0);
    let skb: *const u8 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    let key = if skb.is_null() {
        sock_key(sk, g)
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

/// `kfree_skb(skb, location, reason, rx_sk)`, for segments a watched
/// listener (`rx_sk`) dropped:
/// - reason `TCP_LISTEN_OVERFLOW`: the final ACK found the accept queue
///   full;
/// - an RST with reason `NOT_SPECIFIED` (it matched a request socket and
///   reset it in `tcp_check_req`) or `TCP_RESET` (it reached the listener
///   itself, e.g. after a syncookie SYN-ACK): the client reset the attempt.
#[btf_tracepoint(function = "kfree_skb")]
pub fn connlog_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let g = globals();
    // Argument positions come from BTF (checked by the agent: reason at 2,
    // rx_sk at 3 on Linux >= 6.12). Context reads must use constant offsets,
    // so read both slots and pick.
    let slot2: u64 = ctx.arg(2);
    let slot3: u64 = ctx.arg(3);
    let pick = |idx: u32| match idx {
        2 => Some(slot2),
        3 => Some(slot3),
        _ => None,
    };
    let Some(reason) = pick(g.kfree_skb_reason_arg) else {
        return 0;
    };
    let kind = if reason == u64::from(g.reason_listen_overflow) {
        kind::LISTEN_OVERFLOW
    } else if reason == u64::from(g.reason_not_specified) || reason == u64::from(g.reason_tcp_reset)
    {
        kind::CLIENT_RST
    } else {
        return 0;
    };
    if reason == 0 {
        return 0;
    }
    let Some(rx_sk) = pick(g.kfree_skb_rx_sk_arg) else {
        return 0;
    };
    if !ours(rx_sk as *const u8, g) {
        return 0;
    }
    let skb: *const u8 = ctx.arg(0);
    let Some((key, flags)) = skb_segment(skb, g) else {
        return 0;
    };
    if kind == kind::CLIENT_RST && flags & TCP_RST == 0 {
        return 0;
    }
    attempt::fail(&key, kind, now(), 0);
    0
}

/// The tuple (source = client) and TCP flags of an incoming segment.
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
        4 => {
            key.family = FAMILY_V4;
            let client: [u8; 4] = read(ip, 12)?;
            let server: [u8; 4] = read(ip, 16)?;
            key.client_addr[..4].copy_from_slice(&client);
            key.server_addr[..4].copy_from_slice(&server);
        }
        6 => {
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
