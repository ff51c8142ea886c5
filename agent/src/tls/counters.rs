//! Named counters of the terminator: nothing is lost or refused silently.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every listener. Read with [`TlsCounters::snapshot`].
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Connections returned by `accept()`.
    pub accepted: AtomicU64,
    /// `accept()` failures (e.g. EMFILE): no socket, so no outcome.
    pub accept_errors: AtomicU64,
    /// Outcomes dropped because the outcome channel was full.
    pub outcomes_dropped: AtomicU64,
    /// Accepted connections whose upstream could not be reached.
    pub upstream_connect_failures: AtomicU64,
    /// Proxied connections that ended with an I/O error or idle timeout.
    pub proxy_errors: AtomicU64,
    /// Reloads that failed (the old config stayed in force).
    pub reload_failures: AtomicU64,
}

impl TlsCounters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(name, value)` pairs for metrics and logs.
    pub fn snapshot(&self) -> [(&'static str, u64); 6] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("tls_accepted", get(&self.accepted)),
            ("tls_accept_errors", get(&self.accept_errors)),
            ("tls_outcomes_dropped", get(&self.outcomes_dropped)),
            (
                "tls_upstream_connect_failures",
                get(&self.upstream_connect_failures),
            ),
            ("tls_proxy_errors", get(&self.proxy_errors)),
            ("tls_reload_failures", get(&self.reload_failures)),
        ]
    }
}
