//! The one clock both halves of a record are measured on.

use std::fmt;

/// Nanoseconds of `CLOCK_MONOTONIC`: the clock of the kernel's
/// `bpf_ktime_get_ns()`, so kernel and userspace timestamps compare directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
#[serde(transparent)]
pub struct MonoNanos(pub u64);

impl MonoNanos {
    /// The current monotonic time.
    pub fn now() -> Self {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        Self(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }

    /// Microseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn micros_since(self, earlier: MonoNanos) -> u64 {
        self.0.saturating_sub(earlier.0) / 1_000
    }
}

impl fmt::Display for MonoNanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ns", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_monotonic_and_nonzero() {
        let a = MonoNanos::now();
        let b = MonoNanos::now();
        assert!(a.0 > 0);
        assert!(b >= a);
    }

    #[test]
    fn micros_since_saturates() {
        assert_eq!(MonoNanos(5_000).micros_since(MonoNanos(2_000)), 3);
        assert_eq!(MonoNanos(1_000).micros_since(MonoNanos(2_000)), 0);
    }
}
