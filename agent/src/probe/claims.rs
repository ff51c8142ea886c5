//! One report per attempt at the timeout boundary. A pending attempt past
//! `syn_timeout` is the agent's to report: the sweeper reports it as a
//! `TcpTimeout`, and the kernel no longer reports its failures (see
//! `connlog-ebpf/src/attempt.rs`). One kernel report remains possible: a SYN
//! with a new ISN replacing it (SUPERSEDED), which the ring reader may see
//! before or after the sweeper read the old attempt. Both claim the attempt
//! (tuple and SYN time) before reporting it; only the first claim succeeds.
//!
//! The table is bounded by the sweeper: after each sweep only the claims
//! of attempts still pending in the kernel's map are kept.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use connlog_common::{AttemptKey, RawEvent, kind};

#[derive(Default)]
pub(crate) struct Claims {
    /// Claimed attempts: tuple → SYN time.
    claimed: Mutex<HashMap<AttemptKey, u64>>,
}

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AttemptKey, u64>> {
        match self.claimed.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Claims the attempt on `key` whose first SYN came at `syn_at`: true
    /// the first time, false after.
    pub(crate) fn claim(&self, key: &AttemptKey, syn_at: u64) -> bool {
        self.lock().insert(*key, syn_at) != Some(syn_at)
    }

    /// Keeps only the claims of `pending` attempts (tuple, SYN time).
    pub(crate) fn retain(&self, pending: &HashSet<(AttemptKey, u64)>) {
        self.lock()
            .retain(|key, syn_at| pending.contains(&(*key, *syn_at)));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the ring reader reports `ev`: anything but a SUPERSEDED past
    /// the attempt's `syn_timeout` (ns) that the sweeper already claimed.
    pub(crate) fn report(&self, ev: &RawEvent, syn_timeout: u64) -> bool {
        if ev.kind != kind::SUPERSEDED || ev.ts.saturating_sub(ev.syn_at) < syn_timeout {
            return true;
        }
        self.claim(&ev.tuple, ev.syn_at)
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

    #[test]
    fn an_attempt_is_claimed_once_and_a_new_one_on_its_tuple_again() {
        let c = Claims::default();
        assert!(c.claim(&key(1), 10));
        assert!(!c.claim(&key(1), 10));
        assert!(c.claim(&key(1), 20));
        assert!(c.claim(&key(2), 10));
        assert!(!c.claim(&key(2), 10));
    }

    #[test]
    fn superseded_past_the_timeout_is_reported_by_whoever_claims_first() {
        let c = Claims::default();
        // Before the timeout: the kernel's report is the only one.
        assert!(c.report(&superseded(1, 100, 150), 100));
        assert!(c.report(&superseded(1, 100, 150), 100));
        // The sweeper claimed it first: the kernel's report is dropped.
        assert!(c.claim(&key(1), 100));
        assert!(!c.report(&superseded(1, 100, 200), 100));
        // The reader first: the sweeper's claim fails.
        assert!(c.report(&superseded(2, 100, 250), 100));
        assert!(!c.claim(&key(2), 100));
        // Other kinds always pass.
        let established = RawEvent {
            kind: kind::ESTABLISHED,
            ..superseded(1, 100, 300)
        };
        assert!(c.report(&established, 100));
    }

    #[test]
    fn only_claims_of_pending_attempts_are_kept() {
        let c = Claims::default();
        assert!(c.claim(&key(1), 10));
        assert!(c.claim(&key(2), 10));
        assert!(c.claim(&key(3), 10));
        let pending = HashSet::from([(key(1), 10), (key(3), 99)]);
        c.retain(&pending);
        assert_eq!(c.len(), 1);
        assert!(!c.claim(&key(1), 10));
        assert!(c.claim(&key(3), 10));
    }
}
