//! Per-attempt state between a SYN and its outcome, in the `ATTEMPTS` LRU
//! map, so that a connection that completes costs one ring event
//! (ESTABLISHED, carrying its SYN time and SYN-ACK count) and failures one
//! each. Timeouts are found by the agent, which sweeps the map.

use aya_ebpf::bindings::BPF_NOEXIST;
use aya_ebpf::programs::TcContext;
use connlog_common::{ATTEMPT_ACKED, Attempt, AttemptKey, RawEvent, count, fallback, kind};

use crate::emit::{ATTEMPTS, emit, globals};
use crate::owner;

/// A SYN arrived (TC ingress). The same ISN again is a retransmission of a
/// known attempt, pending or closed: nothing changes. A new ISN starts a new
/// attempt; if the old one was still pending it is reported as superseded
/// (past `syn_timeout`, the agent may have reported it already: it drops
/// the second report, see the agent's `probe::claims`).
/// No attempt is opened on a tuple a connected socket owns (a socket
/// lookup, asked only then): the kernel answers such a SYN with a challenge
/// ACK.
#[inline(always)]
pub(crate) fn syn(ctx: &TcContext, key: &AttemptKey, isn: u32, at: u64) {
    let fresh = Attempt {
        syn_at: at,
        closed_at: 0,
        isn,
        synacks: 0,
        flags: 0,
        _pad: 0,
    };
    let known = ATTEMPTS.get_ptr_mut(key);
    // SAFETY: a pointer to a live map value; concurrent writers of one
    // tuple are the packets of one flow, serialized in practice, and a
    // torn value only skews one attempt's report.
    if let Some(a) = known
        && unsafe { (*a).isn } == isn
    {
        return;
    }
    // Called directly, not through a closure, so that it is inlined: a
    // bpf-to-bpf call adds a stack frame, and older verifiers count frames,
    // each rounded up to 32 bytes, against one 512-byte limit.
    if owner::connected(ctx, key) {
        return;
    }
    match known {
        Some(a) => {
            // SAFETY: as above.
            let a = unsafe { &mut *a };
            if a.closed_at == 0 {
                emit(&event(key, a, kind::SUPERSEDED, at));
            }
            *a = fresh;
        }
        None => {
            if ATTEMPTS.insert(key, fresh, BPF_NOEXIST.into()).is_ok() {
                crate::emit::count(count::INSERTED);
            }
        }
    }
}

/// A SYN-ACK left (TC egress). With [`fallback::TC_OVERFLOW`], one sent
/// again after the client's ACK arrived means the kernel dropped that ACK:
/// the accept queue was full.
#[inline(always)]
pub(crate) fn synack(key: &AttemptKey) {
    let Some(a) = ATTEMPTS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: as in `syn`.
    let acked = unsafe {
        (*a).synacks = (*a).synacks.saturating_add(1);
        (*a).flags & ATTEMPT_ACKED != 0
    };
    if acked && globals().fallbacks & fallback::TC_OVERFLOW != 0 {
        fail(key, kind::LISTEN_OVERFLOW, crate::emit::now(), 0);
    }
}

/// The client ACKed the SYN-ACK of a pending attempt (TC ingress, tracked
/// only with [`fallback::TC_OVERFLOW`]).
#[inline(always)]
pub(crate) fn acked(key: &AttemptKey) {
    if let Some(a) = ATTEMPTS.get_ptr_mut(key) {
        // SAFETY: as in `syn`.
        unsafe {
            if (*a).closed_at == 0 && (*a).synacks != 0 {
                (*a).flags |= ATTEMPT_ACKED;
            }
        }
    }
}

/// The attempt failed (`kind`): reported once, if it is pending and not yet
/// past `syn_timeout` (then it is the agent's sweep that reports it, as a
/// timeout: one report per attempt, whichever comes first); it stays in the
/// map, closed.
#[inline(always)]
pub(crate) fn fail(key: &AttemptKey, kind: u8, at: u64, reason: u32) {
    let Some(a) = ATTEMPTS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: as in `syn`.
    let a = unsafe { &mut *a };
    if a.closed_at != 0 {
        return;
    }
    let timeout = globals().syn_timeout_ns;
    if timeout != 0 && at.saturating_sub(a.syn_at) >= timeout {
        return;
    }
    a.closed_at = at;
    let mut ev = event(key, a, kind, at);
    ev.reason = reason;
    emit(&ev);
}

/// The attempt reached ESTABLISHED: its event, with what is known of it;
/// the entry is removed.
#[inline(always)]
pub(crate) fn established(key: &AttemptKey, at: u64, cookie: u64) {
    let mut ev = RawEvent {
        ts: at,
        cookie,
        tuple: *key,
        kind: kind::ESTABLISHED,
        ..RawEvent::default()
    };
    if let Some(a) = ATTEMPTS.get_ptr(key) {
        // SAFETY: as in `syn`.
        let a = unsafe { *a };
        ev.syn_at = a.syn_at;
        ev.synacks = a.synacks;
        if ATTEMPTS.remove(key).is_ok() {
            crate::emit::count(count::REMOVED);
        }
    }
    emit(&ev);
}

#[inline(always)]
fn event(key: &AttemptKey, a: &Attempt, kind: u8, at: u64) -> RawEvent {
    RawEvent {
        ts: at,
        syn_at: a.syn_at,
        tuple: *key,
        kind,
        synacks: a.synacks,
        ..RawEvent::default()
    }
}
