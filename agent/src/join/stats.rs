//! The joiner's counters.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct JoinStats {
    /// Records with both halves.
    pub joined: AtomicU64,
    /// TLS outcomes emitted without a kernel half after the grace period.
    pub tls_only: AtomicU64,
    /// Kernel failures that never reached `accept()`.
    pub kernel_only: AtomicU64,
    /// TLS outcomes emitted early because the table was full.
    pub overflow_emitted: AtomicU64,
    /// Kernel halves dropped because the table was full.
    pub overflow_kernel_dropped: AtomicU64,
    /// Kernel halves whose TLS outcome never came (e.g. not our listener).
    pub kernel_expired: AtomicU64,
    pub duplicate_outcomes: AtomicU64,
    /// TLS outcomes dropped because the probe had already reported their
    /// attempt as a `TcpTimeout` (late ESTABLISHED): one record per attempt.
    pub after_timeout: AtomicU64,
}

impl JoinStats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts a dropped kernel half; logs at WARN on the first and at every
    /// power of two (the record itself still comes from the TLS side).
    pub(crate) fn drop_kernel(counter: &AtomicU64) {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(dropped_total = n, "join table full: kernel halves dropped");
        }
    }
}
