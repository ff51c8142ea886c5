//! BTF tracepoints (tp_btf: no tracefs needed). They are global across
//! network namespaces, so each event is kept only if its socket's
//! `net->ns.inum` is the agent's (offsets from BTF, in [`Globals`]).
//!
//! Only the start of `struct sock_common` is read at fixed offsets (stable
//! for full, request and timewait sockets): daddr@0, rcv_saddr@4, dport@12,
//! num@14, family@16.

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_get_socket_cookie, bpf_probe_read_kernel};
use aya_ebpf::macros::btf_tracepoint;
use aya_ebpf::programs::BtfTracePointContext;
use connlog_common::{FAMILY_V4, FAMILY_V6, Globals, RawEvent, kind};

use crate::emit::{emit, globals, now, watched};

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

/// The socket's ends, if it is in the agent's namespace on a watched port.
#[inline(always)]
fn sock_event(sk: *const u8, g: &Globals, kind: u8) -> Option<RawEvent> {
    if sk.is_null() {
        return None;
    }
    let local_port: u16 = field(sk, 14);
    if !watched(local_port) {
        return None;
    }
    if g.netns_ino != 0 {
        let net: *const u8 = field(sk, g.skc_net);
        if net.is_null() {
            return None;
        }
        let inum: u32 = field(net, g.net_ns_inum);
        if inum != g.netns_ino {
            return None;
        }
    }
    let family: u16 = field(sk, 16);
    let remote_port: u16 = field(sk, 12);
    let mut ev = RawEvent {
        ts: now(),
        client_port: u16::from_be(remote_port),
        server_port: local_port,
        kind,
        ..RawEvent::default()
    };
    if family == AF_INET {
        ev.family = FAMILY_V4;
        let client: [u8; 4] = field(sk, 0);
        let server: [u8; 4] = field(sk, 4);
        ev.client_addr[..4].copy_from_slice(&client);
        ev.server_addr[..4].copy_from_slice(&server);
    } else if family == AF_INET6 {
        ev.family = FAMILY_V6;
        ev.client_addr = field(sk, g.skc_v6_daddr);
        ev.server_addr = field(sk, g.skc_v6_rcv_saddr);
    } else {
        return None;
    }
    Some(ev)
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
    if let Some(mut ev) = sock_event(sk, &globals(), kind::ESTABLISHED) {
        ev.cookie = cookie(sk);
        emit(&ev);
    }
    0
}

/// `tcp_receive_reset(sk)`: an RST accepted on a full socket.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn connlog_receive_reset(ctx: BtfTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    if let Some(mut ev) = sock_event(sk, &globals(), kind::RECEIVE_RESET) {
        ev.cookie = cookie(sk);
        emit(&ev);
    }
    0
}

/// `tcp_send_reset(sk, skb, reason)`: the kernel sent an RST. Without a
/// socket there is no namespace to check, so those are skipped. With an
/// incoming `skb` (the segment being answered) the tuple comes from it: `sk`
/// may be the listener, whose remote end is unset.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn connlog_send_reset(ctx: BtfTracePointContext) -> i32 {
    let g = globals();
    let sk: *const u8 = ctx.arg(0);
    let skb: *const u8 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    let Some(mut ev) = sock_event(sk, &g, kind::SEND_RESET) else {
        return 0;
    };
    if !skb.is_null() && skb_tuple(skb, &g, &mut ev).is_none() {
        return 0;
    }
    ev.reason = reason;
    emit(&ev);
    0
}

/// `kfree_skb(skb, location, reason, rx_sk)`: only the accept-queue
/// overflow reason is reported, with the tuple parsed from the dropped ACK.
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
    if reason != u64::from(g.reason_listen_overflow) || reason == 0 {
        return 0;
    }
    let Some(rx_sk) = pick(g.kfree_skb_rx_sk_arg) else {
        return 0;
    };
    let rx_sk = rx_sk as *const u8;
    let skb: *const u8 = ctx.arg(0);
    if let Some(ev) = overflow_event(skb, rx_sk, &g) {
        emit(&ev);
    }
    0
}

#[inline(always)]
fn overflow_event(skb: *const u8, listener: *const u8, g: &Globals) -> Option<RawEvent> {
    // Namespace and port of the listener; the tuple from the packet.
    let mut ev = sock_event(listener, g, kind::LISTEN_OVERFLOW)?;
    skb_tuple(skb, g, &mut ev)?;
    Some(ev)
}

/// Fills `ev`'s ends from an incoming segment (source = client).
#[inline(always)]
fn skb_tuple(skb: *const u8, g: &Globals, ev: &mut RawEvent) -> Option<()> {
    let head: *const u8 = read(skb, g.skb_head)?;
    let nh: u16 = read(skb, g.skb_network_header)?;
    let th: u16 = read(skb, g.skb_transport_header)?;
    let ip = head.wrapping_add(usize::from(nh));
    let ports: [u8; 4] = read(head, u32::from(th))?;
    let version: u8 = read(ip, 0)?;
    match version >> 4 {
        4 => {
            ev.family = FAMILY_V4;
            ev.client_addr = [0; 16];
            ev.server_addr = [0; 16];
            let client: [u8; 4] = read(ip, 12)?;
            let server: [u8; 4] = read(ip, 16)?;
            ev.client_addr[..4].copy_from_slice(&client);
            ev.server_addr[..4].copy_from_slice(&server);
        }
        6 => {
            ev.family = FAMILY_V6;
            ev.client_addr = read(ip, 8)?;
            ev.server_addr = read(ip, 24)?;
        }
        _ => return None,
    }
    ev.client_port = u16::from_be_bytes([ports[0], ports[1]]);
    ev.server_port = u16::from_be_bytes([ports[2], ports[3]]);
    Some(())
}
