//! Whether a connected socket already owns a SYN's tuple: such a SYN (a
//! delayed duplicate, or crafted) is answered with a challenge ACK, it is
//! not a connection attempt. Asked only for SYNs about to open an attempt.
//!
//! `bpf_skc_lookup_tcp` (TC programs, since 5.2) searches the established
//! table, time-wait and request sockets included, then the listeners, in
//! the packet's network namespace; it returns a `sock_common` whose `state`
//! is readable and which must be released.

use aya_ebpf::EbpfContext;
use aya_ebpf::bindings::{
    BPF_F_CURRENT_NETNS, BPF_TCP_CLOSE_WAIT, BPF_TCP_CLOSING, BPF_TCP_ESTABLISHED,
    BPF_TCP_FIN_WAIT1, BPF_TCP_FIN_WAIT2, BPF_TCP_LAST_ACK, bpf_sock_tuple,
};
use aya_ebpf::helpers::{bpf_sk_release, bpf_skc_lookup_tcp};
use aya_ebpf::programs::TcContext;
use connlog_common::{AttemptKey, FAMILY_V4};

/// States of a socket past its handshake and not yet gone: a SYN on its
/// tuple is no new attempt. TIME_WAIT is not among them (a SYN there may
/// start a new connection: port reuse), nor LISTEN or the SYN_RECV ones.
const CONNECTED: u32 = 1 << BPF_TCP_ESTABLISHED
    | 1 << BPF_TCP_FIN_WAIT1
    | 1 << BPF_TCP_FIN_WAIT2
    | 1 << BPF_TCP_CLOSE_WAIT
    | 1 << BPF_TCP_LAST_ACK
    | 1 << BPF_TCP_CLOSING;

/// `key` (an inbound SYN's tuple) belongs to a connected socket.
#[inline(always)]
pub(crate) fn connected(ctx: &TcContext, key: &AttemptKey) -> bool {
    // SAFETY: plain-old-data union, all zeroes is a valid value.
    let mut t: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    // The lookup's source is the packet's: the client.
    let size = if key.family == FAMILY_V4 {
        // SAFETY: writing the fields of the IPv4 variant of a local union.
        let v4 = unsafe { &mut t.__bindgen_anon_1.ipv4 };
        v4.saddr = u32::from_ne_bytes(first4(&key.client_addr));
        v4.daddr = u32::from_ne_bytes(first4(&key.server_addr));
        v4.sport = key.client_port.to_be();
        v4.dport = key.server_port.to_be();
        core::mem::size_of_val(v4)
    } else {
        // SAFETY: writing the fields of the IPv6 variant of a local union.
        let v6 = unsafe { &mut t.__bindgen_anon_1.ipv6 };
        for i in 0..4 {
            v6.saddr[i] = u32::from_ne_bytes(word(&key.client_addr, i));
            v6.daddr[i] = u32::from_ne_bytes(word(&key.server_addr, i));
        }
        v6.sport = key.client_port.to_be();
        v6.dport = key.server_port.to_be();
        core::mem::size_of_val(v6)
    };
    // SAFETY: the context is the program's; the tuple is on the stack and
    // `size` is the length of the variant written.
    let sk = unsafe {
        bpf_skc_lookup_tcp(
            ctx.as_ptr(),
            &mut t,
            size as u32,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a non-null socket from the lookup; `state` is readable on a
    // sock_common, and the reference is released right after.
    let state = unsafe { (*sk).state };
    // SAFETY: releasing the reference the lookup returned, once.
    unsafe { bpf_sk_release(sk.cast()) };
    state < 32 && CONNECTED & (1 << state) != 0
}

#[inline(always)]
fn first4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

#[inline(always)]
fn word(a: &[u8; 16], i: usize) -> [u8; 4] {
    [a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]]
}
