//! One report per attempt at the timeout boundary. A pending attempt past
//! `syn_timeout` is the agent's to report: the sweeper reports it as a
//! `TcpTimeout`, and the kernel no longer reports its failures (see
//! `connlog-ebpf/src/attempt.rs`). Two kernel reports remain possible, which
//! the ring reader may see before or after the sweeper read the old
//! attempt: a SYN with a new ISN replacing it (SUPERSEDED), and the client's
//! final ACK arriving late (ESTABLISHED: the kernel still held the request,
//! because `syn_timeout` is shorter than its give-up time, or a syncookie
//! let it in). Both claim the attempt (tuple and SYN time) before reporting
//! it; only the first claim succeeds. A late ESTABLISHED whose claim fails
//! is still passed on, as [`TcpEvent::EstablishedAfterTimeout`]
//! (`super::TcpEvent`), so that the joiner can drop the connection's TLS
//! outcome too: the `TcpTimeout` was the attempt's record.
//!
//! The table is bounded by the sweeper: after each sweep only the claims of
//! attempts still pending in the kernel's map are kept, and those of
//! attempts that left it less than [`GRACE`] ago (their ESTABLISHED may
//! still be on its way through the ring).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use connlog_common::{AttemptKey, RawEvent, kind};

/// How long a claim outlives its attempt's entry in the kernel's map (ns):
/// far longer than an event waits in the ring (~10 ms).
pub(crate) const GRACE: u64 = 1_000_000_000;

/// A claimed attempt's SYN time and when it was last known pending (ns).
#[derive(Clone, Copy)]
struct Claim {
    syn_at: u64,
    seen_at: u64,
}

#[derive(Default)]
pub(crate) struct Claims {
    /// Claimed attempts by tuple.
    claimed: Mutex<HashMap<AttemptKey, Claim>>,
}

/// What the ring reader does with a raw event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// Report it.
    Yes,
    /// Drop it: the sweeper reported the attempt.
    No,
    /// An ESTABLISHED for an attempt the sweeper reported as timed out.
    AfterTimeout,
}

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AttemptKey, Claim>> {
        match self.claimed.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Claims the attempt on `key` whose first SYN came at `syn_at`, at
    /// `now`: true the first time, false after.
    pub(crate) fn claim(&self, key: &AttemptKey, syn_at: u64, now: u64) -> bool {
        let claim = Claim {
            syn_at,
            seen_at: now,
        };
        self.lock()
            .insert(*key, claim)
            .is_none_or(|old| old.syn_at != syn_at)
    }

    /// After a sweep at `now`: keeps the claims of `pending` attempts
    /// (tuple, SYN time) and those last pending less than [`GRACE`] ago.
    pub(crate) fn retain(&self, pending: &HashSet<(AttemptKey, u64)>, now: u64) {
        self.lock().retain(|key, c| {
            if pending.contains(&(*key, c.syn_at)) {
                c.seen_at = now;
            }
            now.saturating_sub(c.seen_at) < GRACE
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// What the ring reader does with `ev`: a SUPERSEDED or ESTABLISHED
    /// past the attempt's `syn_timeout` (ns) is the attempt's report only
    /// if its claim succeeds; other events always are.
    pub(crate) fn report(&self, ev: &RawEvent, syn_timeout: u64) -> Report {
        let late = ev.syn_at != 0 && ev.ts.saturating_sub(ev.syn_at) >= syn_timeout;
        match ev.kind {
            kind::SUPERSEDED | kind::ESTABLISHED if late => {
                if self.claim(&ev.tuple, ev.syn_at, ev.ts) {
                    Report::Yes
                } else if ev.kind == kind::ESTABLISHED {
                    Report::AfterTimeout
                } else {
                    Report::No
                }
            }
            _ => Report::Yes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> AttemptKey {
        AttemptKey {
            client_port: port,
            server_port: 443,
            family: connlog_common::FAMILY_V4,
            ..AttemptKey::default()
        }
    }

    fn superseded(port: u16, syn_at: u64, ts: u64) -> RawEvent {
        RawEvent {
            ts,
            syn_at,
            tuple: key(port),
            kind: kind::SUPERSEDED,
            ..RawEvent::default()
        }
    }

    fn established(port: u16, syn_at: u64, ts: u64) -> RawEvent {
        RawEvent {
            kind: kind::ESTABLISHED,
            cookie: 42,
            ..superseded(port, syn_at, ts)
        }
    }

    #[test]
    fn an_attempt_is_claimed_once_and_a_new_one_on_its_tuple_again() {
        let c = Claims::default();
        assert!(c.claim(&key(1), 10, 0));
        assert!(!c.claim(&key(1), 10, 0));
        assert!(c.claim(&key(1), 20, 0));
        assert!(c.claim(&key(2), 10, 0));
        assert!(!c.claim(&key(2), 10, 0));
    }

    #[test]
    fn superseded_past_the_timeout_is_reported_by_whoever_claims_first() {
        let c = Claims::default();
        // Before the timeout: the kernel's report is the only one.
        assert_eq!(c.report(&superseded(1, 100, 150), 100), Report::Yes);
        assert_eq!(c.report(&superseded(1, 100, 150), 100), Report::Yes);
        // The sweeper claimed it first: the kernel's report is dropped.
        assert!(c.claim(&key(1), 100, 200));
        assert_eq!(c.report(&superseded(1, 100, 200), 100), Report::No);
        // The reader first: the sweeper's claim fails.
        assert_eq!(c.report(&superseded(2, 100, 250), 100), Report::Yes);
        assert!(!c.claim(&key(2), 100, 250));
        // Other kinds always pass.
        let reset = RawEvent {
            kind: kind::RECEIVE_RESET,
            ..superseded(1, 100, 300)
        };
        assert_eq!(c.report(&reset, 100), Report::Yes);
    }

    #[test]
    fn established_after_a_reported_timeout_is_marked_late() {
        let c = Claims::default();
        // Within syn_timeout: an ordinary Established, no claim taken.
        assert_eq!(c.report(&established(1, 100, 150), 100), Report::Yes);
        assert_eq!(c.len(), 0);
        // The sweeper reported the timeout; the ACK came later.
        assert!(c.claim(&key(1), 100, 210));
        assert_eq!(
            c.report(&established(1, 100, 5_000), 100),
            Report::AfterTimeout
        );
        // Past syn_timeout but before the sweeper judged it: the
        // Established is the report, and the sweeper's claim fails.
        assert_eq!(c.report(&established(2, 100, 205), 100), Report::Yes);
        assert!(!c.claim(&key(2), 100, 210));
        // An attempt the probe no longer knew (syn_at 0): never late.
        assert_eq!(c.report(&established(3, 0, 5_000), 100), Report::Yes);
        // A new attempt on a timed-out tuple (another SYN time): its own.
        assert_eq!(c.report(&established(1, 900, 1_100), 100), Report::Yes);
    }

    #[test]
    fn claims_are_kept_while_pending_and_for_a_grace_after() {
        let c = Claims::default();
        assert!(c.claim(&key(1), 10, 0));
        assert!(c.claim(&key(2), 10, 0));
        assert!(c.claim(&key(3), 10, 0));
        let pending = HashSet::from([(key(1), 10), (key(3), 99)]);
        // Within the grace every claim stays.
        c.retain(&pending, GRACE - 1);
        assert_eq!(c.len(), 3);
        // Past it only the pending one (seen at the last sweep).
        c.retain(&pending, GRACE);
        assert_eq!(c.len(), 1);
        assert!(!c.claim(&key(1), 10, GRACE));
        assert!(c.claim(&key(3), 10, GRACE));
        // Key 1 left the map: kept for GRACE after its last sighting.
        c.retain(&HashSet::new(), 2 * GRACE - 1);
        assert_eq!(c.len(), 2);
        c.retain(&HashSet::new(), 3 * GRACE);
        assert_eq!(c.len(), 0);
    }
}
