//! Deciding what the kernel cannot: timeouts. The kernel keeps every
//! attempt between its SYN and its outcome in the `ATTEMPTS` LRU map (see
//! `connlog-ebpf/src/attempt.rs`); the agent sweeps it:
//!
//! - a pending attempt older than `syn_timeout` is reported once as a
//!   `TcpTimeout` (`super::claims`); it stays in the map, unchanged, so
//!   that the client's SYN retransmissions, same ISN, do not open a new
//!   attempt, and the kernel no longer reports its failures;
//! - a closed attempt is forgotten [`REMEMBER_CLOSED`] after it closed, a
//!   timed-out one [`REMEMBER_CLOSED`] after its timeout (with the default
//!   `syn_timeout`, 63 s, an unanswered attempt stays ~3 minutes: the LRU
//!   bounds the table whatever the hold time);
//! - what the LRU evicted is counted: the kernel counts the keys it inserted
//!   and removed, the agent those it forgot, the rest of the difference to
//!   what is still in the map was evicted.

use std::time::Duration;

use connlog_common::Attempt;

use crate::{FailureCode, MonoNanos, TcpEvent, TcpFailureDetail, Tuple};

/// How long a closed attempt's ISN is remembered: longer than Linux's
/// default SYN retry span (~127 s with `tcp_syn_retries` = 6 is cut to this).
pub(crate) const REMEMBER_CLOSED: Duration = Duration::from_secs(120);

/// What the sweep does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    /// Pending past `syn_timeout`: report a timeout unless already done.
    TimedOut,
    Forget,
}

/// The sweep's rules and its running counts.
pub(crate) struct Tracker {
    syn_timeout: u64,
    remember: u64,
    /// Entries the agent removed, ever.
    forgotten: u64,
    /// Entries the LRU evicted, ever (the largest estimate so far).
    pub(crate) evicted: u64,
    /// Entries in the map at the last sweep.
    pub(crate) tracked: u64,
}

impl Tracker {
    pub(crate) fn new(syn_timeout: Duration) -> Self {
        Self {
            syn_timeout: nanos(syn_timeout),
            remember: nanos(REMEMBER_CLOSED),
            forgotten: 0,
            evicted: 0,
            tracked: 0,
        }
    }

    pub(crate) fn judge(&self, now: MonoNanos, a: &Attempt) -> Verdict {
        if a.closed_at != 0 {
            if now.0.saturating_sub(a.closed_at) >= self.remember {
                return Verdict::Forget;
            }
            return Verdict::Keep;
        }
        let age = now.0.saturating_sub(a.syn_at);
        if age >= self.syn_timeout.saturating_add(self.remember) {
            return Verdict::Forget;
        }
        if age >= self.syn_timeout {
            return Verdict::TimedOut;
        }
        Verdict::Keep
    }

    /// The agent removed an entry.
    pub(crate) fn forgot(&mut self) {
        self.forgotten += 1;
    }

    /// After a sweep: `inserted` (read before the sweep) and `removed` (read
    /// after it) from the kernel, `live` entries left in the map. Entries
    /// inserted or removed while the map was read can only lower the
    /// estimate, never raise it; at rest it is exact.
    pub(crate) fn account(&mut self, inserted: u64, removed: u64, live: u64) {
        self.tracked = live;
        let gone = inserted
            .saturating_sub(removed)
            .saturating_sub(self.forgotten)
            .saturating_sub(live);
        self.evicted = self.evicted.max(gone);
    }
}

/// The timeout of an attempt that saw `synacks` SYN-ACKs: none means the
/// kernel never answered the SYN (its queues were full).
pub(crate) fn timeout(tuple: Tuple, syn_at: u64, synacks: u32, now: MonoNanos) -> TcpEvent {
    let detail = if synacks == 0 {
        TcpFailureDetail::SynDropped
    } else {
        TcpFailureDetail::SynAckUnanswered
    };
    TcpEvent::Failed {
        tuple,
        code: FailureCode::TcpTimeout,
        detail,
        syn_at: Some(MonoNanos(syn_at)),
        failed_at: now,
        synack_retransmits: synacks.saturating_sub(1),
        cookie: None,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn pending(syn_at: u64, synacks: u32) -> Attempt {
        Attempt {
            syn_at,
            closed_at: 0,
            isn: 7,
            synacks,
            ..Attempt::default()
        }
    }

    #[test]
    fn pending_attempts_time_out_once() {
        let tr = Tracker::new(Duration::from_millis(100));
        let a = pending(10 * MS, 2);
        assert_eq!(tr.judge(MonoNanos(109 * MS), &a), Verdict::Keep);
        assert_eq!(tr.judge(MonoNanos(110 * MS), &a), Verdict::TimedOut);
        // Timed out: kept (its ISN remembered) until REMEMBER_CLOSED passed
        // after its timeout; the sweeper reports it once (claims).
        let later = 110 * MS + nanos(REMEMBER_CLOSED);
        assert_eq!(tr.judge(MonoNanos(later - 1), &a), Verdict::TimedOut);
        assert_eq!(tr.judge(MonoNanos(later), &a), Verdict::Forget);
        // Closed by the kernel: kept until REMEMBER_CLOSED after it closed.
        let closed = Attempt {
            closed_at: 50 * MS,
            ..a
        };
        assert_eq!(tr.judge(MonoNanos(111 * MS), &closed), Verdict::Keep);
        let later = 50 * MS + nanos(REMEMBER_CLOSED);
        assert_eq!(tr.judge(MonoNanos(later - 1), &closed), Verdict::Keep);
        assert_eq!(tr.judge(MonoNanos(later), &closed), Verdict::Forget);
    }

    #[test]
    fn timeout_detail_depends_on_synacks() {
        let t = Tuple::new(
            "198.18.0.2:40000".parse().unwrap(),
            "198.18.0.1:443".parse().unwrap(),
        );
        assert_eq!(
            timeout(t, 5, 0, MonoNanos(9)),
            TcpEvent::Failed {
                tuple: t,
                code: FailureCode::TcpTimeout,
                detail: TcpFailureDetail::SynDropped,
                syn_at: Some(MonoNanos(5)),
                failed_at: MonoNanos(9),
                synack_retransmits: 0,
                cookie: None,
            }
        );
        assert!(matches!(
            timeout(t, 5, 3, MonoNanos(9)),
            TcpEvent::Failed {
                detail: TcpFailureDetail::SynAckUnanswered,
                synack_retransmits: 2,
                ..
            }
        ));
    }

    #[test]
    fn evictions_are_what_is_missing() {
        let mut tr = Tracker::new(Duration::from_secs(1));
        // 10 inserted, 3 established (kernel), 2 forgotten, 4 left: 1 evicted.
        tr.forgot();
        tr.forgot();
        tr.account(10, 3, 4);
        assert_eq!((tr.evicted, tr.tracked), (1, 4));
        // A racy read that would lower the estimate does not.
        tr.account(10, 3, 6);
        assert_eq!((tr.evicted, tr.tracked), (1, 6));
        tr.account(20, 3, 5);
        assert_eq!(tr.evicted, 10);
    }
}
