//! The exporter's counters: every record is accepted, acknowledged,
//! dropped (and why) or still held; nothing is lost silently.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ExportStats {
    /// Records handed to the exporter and accepted.
    pub records_in: AtomicU64,
    /// Records the collector (or OTLP endpoint) acknowledged.
    pub records_acked: AtomicU64,
    /// Dropped because the exporter's input queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Dropped because memory (and spool, if any) were at capacity.
    pub dropped_buffer_full: AtomicU64,
    /// Refused by the collector as malformed (`InvalidArgument`).
    pub rejected: AtomicU64,
    /// Still unsent when shutdown's deadline passed.
    pub unsent_at_shutdown: AtomicU64,
    pub batches_sent: AtomicU64,
    /// Batches sent again after a reconnect.
    pub batches_resent: AtomicU64,
    pub batches_spooled: AtomicU64,
    pub connect_failures: AtomicU64,
}

impl ExportStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) -> u64 {
        counter.fetch_add(n, Ordering::Relaxed) + n
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts a drop and logs it at ERROR (data loss) on the first drop and
    /// then at every power of two, so a flood cannot flood the log.
    pub(crate) fn drop_records(counter: &AtomicU64, n: u64, why: &'static str) {
        let before = counter.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        if before == 0 || (before.leading_zeros() != after.leading_zeros()) {
            tracing::error!(
                dropped_total = after,
                reason = why,
                "connection records dropped"
            );
        }
    }
}
