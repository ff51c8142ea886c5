//! What the function pool did, for the agent's metrics and the benchmark:
//! a counter per verdict and per failure, and a histogram of execution
//! times at 1 µs resolution (lock-free, fixed size).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram buckets: 0..2000 µs one per µs, then one overflow bucket.
const BUCKETS: usize = 2001;

/// Every failure that is not the function's own verdict has its counter.
#[derive(Debug)]
pub struct PoolCounters {
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    /// Threw, or broke the time or memory limit.
    pub errors: AtomicU64,
    /// The queue was full: the connection failed as Internal.
    pub queue_full: AtomicU64,
    /// No reply in time, a worker panicked or could not compile.
    pub internal: AtomicU64,
    /// The caller was gone before a worker picked the job up.
    pub abandoned: AtomicU64,
    /// Calls that ran on the caller's thread, not the pool.
    pub inline: AtomicU64,
    /// Calls stopped at the inline budget and run again on the pool.
    pub inline_overruns: AtomicU64,
    /// Time limits resting on one long stretch of CPU time, checked by
    /// running the call again.
    pub time_rechecks: AtomicU64,
    exec_micros: Box<[AtomicU64]>,
}

impl Default for PoolCounters {
    fn default() -> Self {
        Self {
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
            internal: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            inline: AtomicU64::new(0),
            inline_overruns: AtomicU64::new(0),
            time_rechecks: AtomicU64::new(0),
            exec_micros: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl PoolCounters {
    /// Every counter with its metric name.
    pub fn snapshot(&self) -> [(&'static str, u64); 9] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("function_allowed", get(&self.allowed)),
            ("function_denied", get(&self.denied)),
            ("function_errors", get(&self.errors)),
            ("function_queue_full", get(&self.queue_full)),
            ("function_internal", get(&self.internal)),
            ("function_abandoned", get(&self.abandoned)),
            ("function_inline", get(&self.inline)),
            ("function_inline_overruns", get(&self.inline_overruns)),
            ("function_time_rechecks", get(&self.time_rechecks)),
        ]
    }

    pub(super) fn record_exec(&self, took: Duration) {
        let micros = usize::try_from(took.as_micros()).unwrap_or(usize::MAX);
        self.exec_micros[micros.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `p`-quantile (0.0–1.0) of execution times so far, to the µs;
    /// `None` before the first call. Times of 2 ms and more read as 2 ms.
    pub fn exec_quantile(&self, p: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .exec_micros
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * p.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (micros, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_micros(micros as u64));
            }
        }
        Some(Duration::from_micros(BUCKETS as u64 - 1))
    }

    /// Forgets the recorded execution times (the counters stay).
    pub fn reset_exec(&self) {
        for c in self.exec_micros.iter() {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact_to_the_microsecond() {
        let c = PoolCounters::default();
        assert_eq!(c.exec_quantile(0.5), None);
        for us in 1..=100 {
            c.record_exec(Duration::from_micros(us));
        }
        assert_eq!(c.exec_quantile(0.5), Some(Duration::from_micros(50)));
        assert_eq!(c.exec_quantile(0.99), Some(Duration::from_micros(99)));
        assert_eq!(c.exec_quantile(1.0), Some(Duration::from_micros(100)));
        c.record_exec(Duration::from_secs(1));
        assert_eq!(c.exec_quantile(1.0), Some(Duration::from_micros(2000)));
        c.reset_exec();
        assert_eq!(c.exec_quantile(0.5), None);
        c.denied.fetch_add(2, Ordering::Relaxed);
        assert_eq!(c.snapshot()[1], ("function_denied", 2));
    }
}
