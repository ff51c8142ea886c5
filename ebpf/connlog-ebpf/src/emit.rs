//! The maps every program shares, and writing one event to the ring.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, LruHashMap, PerCpuArray, RingBuf};
use connlog_common::{Attempt, AttemptKey, Globals, RawEvent, count};

/// Default size; the agent sets the real one at load time.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Watched local ports, filled by the agent: indexed by port, 1 = watched.
/// An array lookup is inlined by the verifier (no helper call, no hash),
/// which matters for `inet_sock_set_state`, called for every socket.
#[map(name = "PORTS")]
static PORTS: Array<u8> = Array::with_max_entries(65536, 0);

/// Events lost because the ring was full, per CPU.
#[map(name = "RING_FULL")]
static RING_FULL: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Attempts between their SYN and their outcome. Default size; the agent
/// sets `[probe] max_pending` at load time.
#[map(name = "ATTEMPTS")]
pub(crate) static ATTEMPTS: LruHashMap<AttemptKey, Attempt> =
    LruHashMap::with_max_entries(65536, 0);

/// Keys inserted into / removed from `ATTEMPTS` by the kernel, per CPU.
#[map(name = "ATTEMPT_COUNTS")]
static ATTEMPT_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(count::LEN, 0);

/// Kernel facts the agent writes at load time (read-only after load, so the
/// verifier treats them as constants).
#[unsafe(no_mangle)]
static GLOBALS: Globals = Globals {
    netns_ino: 0,
    skc_net: 0,
    net_ns_inum: 0,
    skc_v6_daddr: 0,
    skc_v6_rcv_saddr: 0,
    skb_head: 0,
    skb_network_header: 0,
    skb_transport_header: 0,
    reason_listen_overflow: 0,
    reason_not_specified: 0,
    reason_tcp_reset: 0,
    fallbacks: 0,
    _reserved: 0,
    wakeup_bytes: 0,
    syn_timeout_ns: 0,
};

/// The globals, each field loaded where it is used (not the whole struct
/// up front: a program's cheapest test should come first).
#[inline(always)]
pub(crate) fn globals() -> &'static Globals {
    let at: *const Globals = &raw const GLOBALS;
    // SAFETY: reads back the address just taken, volatile so that the
    // compiler cannot see which static it points to and fold in the zero
    // initializer the agent overrides at load time; the reference is to a
    // static, valid for the program's life.
    unsafe { &*core::ptr::read_volatile(&at) }
}

#[inline(always)]
pub(crate) fn watched(port: u16) -> bool {
    PORTS.get(u32::from(port)).is_some_and(|&w| w != 0)
}

#[inline(always)]
pub(crate) fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

/// Adds one to counter `index` of `ATTEMPT_COUNTS` on this CPU.
#[inline(always)]
pub(crate) fn count(index: u32) {
    if let Some(slot) = ATTEMPT_COUNTS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *slot += 1 };
    }
}

/// Writes `ev` to the ring; counts it on this CPU if the ring is full.
///
/// The reader is woken only when the pending data crosses a multiple of
/// `Globals::wakeup_bytes` (a quarter of the ring): a wakeup costs about
/// 10 µs on a VM, more than everything else here. The reader drains
/// smaller batches on its own short timer.
#[inline(always)]
pub(crate) fn emit(ev: &RawEvent) {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    const RECORD_BYTES: u64 = size_of::<RawEvent>() as u64 + 8;
    let every = u64::from(globals().wakeup_bytes).max(RECORD_BYTES);
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA.into());
    let flags = if (pending + RECORD_BYTES) / every != pending / every {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if EVENTS.output::<RawEvent>(ev, flags.into()).is_err()
        && let Some(count) = RING_FULL.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *count += 1 };
    }
}
