//! The maps every program shares, and writing one event to the ring.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{HashMap, PerCpuArray, RingBuf};
use connlog_common::{Globals, RawEvent};

/// Default size; the agent sets the real one at load time.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Watched local ports, filled by the agent.
#[map(name = "PORTS")]
static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(1024, 0);

/// Events lost because the ring was full, per CPU.
#[map(name = "RING_FULL")]
static RING_FULL: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

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
    kfree_skb_reason_arg: 0,
    kfree_skb_rx_sk_arg: 0,
    _pad: 0,
};

#[inline(always)]
pub(crate) fn globals() -> Globals {
    // SAFETY: a plain read of a static; volatile so the compiler does not
    // fold in the zero initializer the agent overrides at load time.
    unsafe { core::ptr::read_volatile(&GLOBALS) }
}

#[inline(always)]
pub(crate) fn watched(port: u16) -> bool {
    // SAFETY: the value is a plain u8 we only test for presence.
    unsafe { PORTS.get(port).is_some() }
}

#[inline(always)]
pub(crate) fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

/// The reader is woken each time the pending data crosses a multiple of
/// this many bytes, not for every event: one wakeup per batch keeps the
/// agent cheap under load. Smaller batches wait for the reader's own short
/// timer.
const WAKEUP_BYTES: u64 = 64 * RECORD_BYTES;
/// A ring record: the event plus the ring's 8-byte header.
const RECORD_BYTES: u64 = size_of::<RawEvent>() as u64 + 8;

/// Writes `ev` to the ring; counts it on this CPU if the ring is full.
#[inline(always)]
pub(crate) fn emit(ev: &RawEvent) {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA.into());
    let flags = if (pending + RECORD_BYTES) / WAKEUP_BYTES != pending / WAKEUP_BYTES {
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
