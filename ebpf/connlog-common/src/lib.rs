//! The ABI shared by connlog's kernel programs (`connlog-ebpf`) and the
//! agent: the raw event written to the ring buffer, the per-attempt state the
//! kernel keeps between a SYN and its outcome, and the settings the agent
//! writes into the programs' read-only globals at load time.
//!
//! Every type is `#[repr(C)]`, has no implicit padding (checked below) and no
//! `bool`, so any byte pattern is a valid value on both sides.

#![no_std]

/// Names of the maps and globals in the kernel object.
pub mod names {
    /// Ring buffer of [`super::RawEvent`]s.
    pub const EVENTS: &str = "EVENTS";
    /// Array indexed by local TCP port (host order): `u8` 1 when watched.
    pub const PORTS: &str = "PORTS";
    /// Per-CPU array with one `u64`: events lost because the ring was full.
    pub const RING_FULL: &str = "RING_FULL";
    /// LRU hash [`super::AttemptKey`] → [`super::Attempt`]: the attempts
    /// between their SYN and their outcome (and, for a while, after it).
    pub const ATTEMPTS: &str = "ATTEMPTS";
    /// Per-CPU array of `u64` indexed by [`super::count`].
    pub const ATTEMPT_COUNTS: &str = "ATTEMPT_COUNTS";
    /// LRU hash [`super::AttemptKey`] → [`super::Attempt`] of the benchmark
    /// program `connlog_tc_syn_update`: one entry unless it is attached.
    pub const BENCH_SYNS: &str = "BENCH_SYNS";
    /// The read-only global holding [`super::Globals`].
    pub const GLOBALS: &str = "GLOBALS";
}

/// Indexes of [`names::ATTEMPT_COUNTS`]. With the entries the agent removed
/// and those still in the map, they tell how many the LRU evicted.
pub mod count {
    /// New keys the kernel inserted into `ATTEMPTS`.
    pub const INSERTED: u32 = 0;
    /// Keys the kernel removed from `ATTEMPTS` (ESTABLISHED).
    pub const REMOVED: u32 = 1;
    pub const LEN: u32 = 2;
}

/// What a [`RawEvent`] reports. Stored as `u8` in [`RawEvent::kind`].
pub mod kind {
    /// tp_btf `kfree_skb` of an RST, reason NOT_SPECIFIED or TCP_RESET, for
    /// a pending attempt (SYN_RECV): the client reset it (or, with
    /// [`fallback::TC_CLIENT_RST`], TC ingress saw that RST).
    pub const CLIENT_RST: u8 = 3;
    /// tp_btf `inet_sock_set_state`: a child socket SYN_RECV → ESTABLISHED.
    pub const ESTABLISHED: u8 = 4;
    /// tp_btf `tcp_receive_reset`: an RST received on a full socket.
    pub const RECEIVE_RESET: u8 = 5;
    /// tp_btf `tcp_send_reset` for a pending attempt; `reason` holds the
    /// kernel's `enum sk_rst_reason`.
    pub const SERVER_RST: u8 = 6;
    /// tp_btf `kfree_skb` with reason `TCP_LISTEN_OVERFLOW` for a pending
    /// attempt: its final ACK was dropped because the accept queue was full
    /// (or one of the [`fallback`]s that infer it).
    pub const LISTEN_OVERFLOW: u8 = 7;
    /// TC ingress: a SYN with a new ISN on the tuple of a pending attempt;
    /// the event describes the old attempt, which never completed.
    pub const SUPERSEDED: u8 = 8;
}

/// Where a kernel lacks the hook that decides an outcome, the programs
/// decide it from another one. Bits of [`Globals::fallbacks`], chosen by
/// the agent from the kernel's BTF.
pub mod fallback {
    /// `kfree_skb` has no drop reason (before Linux 5.17): an RST that TC
    /// ingress sees for a pending attempt is the client's reset in SYN_RECV.
    pub const TC_CLIENT_RST: u32 = 1;
    /// No `SKB_DROP_REASON_TCP_LISTEN_OVERFLOW` (before Linux 6.13), but
    /// drop reasons: the kernel drops a final ACK it cannot queue with
    /// `NOT_SPECIFIED`, so such a drop of a pure ACK for a pending attempt
    /// is an accept-queue overflow.
    pub const DROP_OVERFLOW: u32 = 2;
    /// No drop reason at all: an ACK that TC ingress saw for a pending
    /// attempt, followed by a SYN-ACK the server sent again, is an
    /// accept-queue overflow (the kernel dropped the ACK and keeps
    /// retransmitting).
    pub const TC_OVERFLOW: u32 = 4;
}

/// A drop reason no kernel uses: the value of a [`Globals`] reason the
/// kernel does not have, and [`RawEvent::reason`] of a SERVER_RST when
/// `tcp_send_reset` carries no reason.
pub const NO_REASON: u32 = u32::MAX;

/// [`Attempt::flags`] bit: TC ingress saw the client's ACK of the SYN-ACK
/// (tracked only with [`fallback::TC_OVERFLOW`]).
pub const ATTEMPT_ACKED: u32 = 1;

/// `family` values.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// A connection attempt's 4-tuple from the server's view: `client_*` is the
/// remote end, `server_*` the local one (a watched port). IPv4 (and
/// IPv4-mapped IPv6) addresses fill the first 4 bytes, the rest is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AttemptKey {
    /// Network order.
    pub client_addr: [u8; 16],
    pub server_addr: [u8; 16],
    /// Host byte order.
    pub client_port: u16,
    pub server_port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    pub _pad: [u8; 3],
}

/// What the kernel knows about one attempt.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempt {
    /// `bpf_ktime_get_ns()` when the attempt's first SYN arrived.
    pub syn_at: u64,
    /// 0 while the attempt is pending; else when the kernel reported its
    /// outcome. A closed attempt, like a pending one past `syn_timeout`
    /// (which the agent reports), is kept so that the client's retransmitted
    /// SYNs (same ISN) are not taken for a new attempt. The agent never
    /// writes this map: an update from userspace takes a fresh LRU node,
    /// which in a full table evicts another attempt.
    pub closed_at: u64,
    /// The client's initial sequence number.
    pub isn: u32,
    /// SYN-ACKs the server sent for it (TC egress), first one included.
    pub synacks: u32,
    /// [`ATTEMPT_ACKED`] or 0.
    pub flags: u32,
    pub _pad: u32,
}

/// One kernel observation, for the agent to turn into a `TcpEvent`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts: u64,
    /// Socket cookie for ESTABLISHED / RECEIVE_RESET; else 0.
    pub cookie: u64,
    /// The attempt's first SYN; 0 when the probe did not see it.
    pub syn_at: u64,
    pub tuple: AttemptKey,
    /// One of [`kind`].
    pub kind: u8,
    pub _pad: [u8; 3],
    /// [`Attempt::synacks`] of the attempt.
    pub synacks: u32,
    /// `enum sk_rst_reason` for SERVER_RST ([`NO_REASON`] where the kernel
    /// gives none); else 0.
    pub reason: u32,
    pub _reserved: u32,
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
    /// Value of `SKB_DROP_REASON_TCP_LISTEN_OVERFLOW` ([`NO_REASON`] where
    /// the kernel has none).
    pub reason_listen_overflow: u32,
    /// Value of `SKB_DROP_REASON_NOT_SPECIFIED` ([`NO_REASON`]: none).
    pub reason_not_specified: u32,
    /// Value of `SKB_DROP_REASON_TCP_RESET` ([`NO_REASON`]: none).
    pub reason_tcp_reset: u32,
    /// The [`fallback`]s this kernel needs, or'ed together.
    pub fallbacks: u32,
    pub _reserved: u32,
    /// Wake the ring's reader each time the pending data crosses a
    /// multiple of this many bytes (the reader also drains on a timer).
    pub wakeup_bytes: u32,
    /// `[probe] syn_timeout` in ns: an attempt pending that long is the
    /// agent's to report (as a timeout); the kernel no longer reports its
    /// failures. 0: no limit.
    pub syn_timeout_ns: u64,
}

// No implicit padding: the sizes are the sums of the fields.
const _: () = assert!(core::mem::size_of::<AttemptKey>() == 16 + 16 + 2 + 2 + 1 + 3);
const _: () = assert!(core::mem::size_of::<Attempt>() == 8 + 8 + 4 + 4 + 4 + 4);
const _: () = assert!(core::mem::size_of::<RawEvent>() == 8 + 8 + 8 + 40 + 1 + 3 + 4 + 4 + 4);
const _: () = assert!(core::mem::size_of::<Globals>() == 14 * 4 + 8);

#[cfg(feature = "user")]
mod user {
    // SAFETY: these types are #[repr(C)], contain only integers and integer
    // arrays, and have no padding (asserted above): every bit pattern is valid.
    unsafe impl aya::Pod for super::RawEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Globals {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AttemptKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Attempt {}
}
