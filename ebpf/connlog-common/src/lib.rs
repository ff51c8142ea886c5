//! The ABI shared by connlog's kernel programs (`connlog-ebpf`) and the
//! agent: the raw event written to the ring buffer and the settings the
//! agent writes into the programs' read-only globals at load time.
//!
//! Every type is `#[repr(C)]`, has no implicit padding (checked below) and no
//! `bool`, so any byte pattern is a valid value on both sides.

#![no_std]

/// Names of the maps and globals in the kernel object.
pub mod names {
    /// Ring buffer of [`super::RawEvent`]s.
    pub const EVENTS: &str = "EVENTS";
    /// Hash map: watched local TCP port (host order `u16`) → `u8` 1.
    pub const PORTS: &str = "PORTS";
    /// Per-CPU array with one `u64`: events lost because the ring was full.
    pub const RING_FULL: &str = "RING_FULL";
    /// The read-only global holding [`super::Globals`].
    pub const GLOBALS: &str = "GLOBALS";
}

/// What a [`RawEvent`] reports. Stored as `u8` in [`RawEvent::kind`].
pub mod kind {
    /// TC ingress: a SYN (without ACK) to a watched port.
    pub const SYN: u8 = 1;
    /// TC egress: a SYN-ACK from a watched port.
    pub const SYN_ACK: u8 = 2;
    /// TC ingress: an RST to a watched port.
    pub const RST_IN: u8 = 3;
    /// tp_btf `inet_sock_set_state`: a child socket SYN_RECV → ESTABLISHED.
    pub const ESTABLISHED: u8 = 4;
    /// tp_btf `tcp_receive_reset`: an RST received on a full socket.
    pub const RECEIVE_RESET: u8 = 5;
    /// tp_btf `tcp_send_reset`: the kernel sent an RST; `reason` holds its
    /// `enum sk_rst_reason`.
    pub const SEND_RESET: u8 = 6;
    /// tp_btf `kfree_skb` with reason `TCP_LISTEN_OVERFLOW`: the final ACK
    /// was dropped because the accept queue was full.
    pub const LISTEN_OVERFLOW: u8 = 7;
}

/// `family` values.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// One kernel observation, normalized to the server's view: `client_*` is
/// the remote end, `server_*` the local one (a watched port).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts: u64,
    /// Socket cookie for ESTABLISHED / RECEIVE_RESET / SEND_RESET; else 0.
    pub cookie: u64,
    /// IPv4 in the first 4 bytes (network order), or IPv6.
    pub client_addr: [u8; 16],
    pub server_addr: [u8; 16],
    /// Host byte order.
    pub client_port: u16,
    pub server_port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// One of [`kind`].
    pub kind: u8,
    pub _pad: [u8; 2],
    /// TCP sequence number of the packet (the ISN for SYNs), host order.
    pub seq: u32,
    /// `enum sk_rst_reason` for SEND_RESET; else 0.
    pub reason: u32,
}

/// Kernel-specific facts the agent reads from BTF at load time and writes
/// into the programs' read-only globals (offsets in bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Globals {
    /// Inode of the agent's network namespace (`net->ns.inum`); socket-level
    /// events from other namespaces are ignored. 0 disables the filter.
    pub netns_ino: u32,
    /// `offsetof(struct sock_common, skc_net)` (a `struct net *`).
    pub skc_net: u32,
    /// `offsetof(struct net, ns) + offsetof(struct ns_common, inum)`.
    pub net_ns_inum: u32,
    /// `offsetof(struct sock_common, skc_v6_daddr)`.
    pub skc_v6_daddr: u32,
    /// `offsetof(struct sock_common, skc_v6_rcv_saddr)`.
    pub skc_v6_rcv_saddr: u32,
    /// `offsetof(struct sk_buff, head)`.
    pub skb_head: u32,
    /// `offsetof(struct sk_buff, network_header)` (a `u16`).
    pub skb_network_header: u32,
    /// `offsetof(struct sk_buff, transport_header)` (a `u16`).
    pub skb_transport_header: u32,
    /// Value of `SKB_DROP_REASON_TCP_LISTEN_OVERFLOW`.
    pub reason_listen_overflow: u32,
    /// Index of `enum skb_drop_reason reason` in `kfree_skb`'s arguments.
    pub kfree_skb_reason_arg: u32,
    /// Index of `struct sock *rx_sk` in `kfree_skb`'s arguments.
    pub kfree_skb_rx_sk_arg: u32,
    /// Wake the ring's reader each time the pending data crosses a
    /// multiple of this many bytes (the reader also drains on a timer).
    pub wakeup_bytes: u32,
}

// No implicit padding: the sizes are the sums of the fields.
const _: () =
    assert!(core::mem::size_of::<RawEvent>() == 8 + 8 + 16 + 16 + 2 + 2 + 1 + 1 + 2 + 4 + 4);
const _: () = assert!(core::mem::size_of::<Globals>() == 12 * 4);

#[cfg(feature = "user")]
mod user {
    // SAFETY: both types are #[repr(C)], contain only integers and integer
    // arrays, and have no padding (asserted above): every bit pattern is valid.
    unsafe impl aya::Pod for super::RawEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Globals {}
}
