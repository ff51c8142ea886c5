//! The clock the 5 ms limit is measured on: the calling thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), which tests can make jump.

use std::time::Duration;

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time used by the calling thread, in nanoseconds.
pub(super) fn thread_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let real = (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64;
    #[cfg(test)]
    let real = real + clock_jump::apply();
    real
}

/// Tests make the thread's CPU clock jump, as a VM's does now and then.
#[cfg(test)]
pub(crate) mod clock_jump {
    use std::cell::Cell;

    thread_local! {
        /// (clock readings still to pass before the jump, its size in ns)
        static PENDING: Cell<Option<(u32, u64)>> = const { Cell::new(None) };
        static OFFSET: Cell<u64> = const { Cell::new(0) };
    }

    /// The clock of this thread jumps ahead by `nanos` at its
    /// `after_reads + 1`-th reading from now, once.
    pub(crate) fn schedule(after_reads: u32, nanos: u64) {
        PENDING.set(Some((after_reads, nanos)));
    }

    pub(super) fn apply() -> u64 {
        if let Some((left, nanos)) = PENDING.get() {
            if left == 0 {
                PENDING.set(None);
                OFFSET.set(OFFSET.get() + nanos);
            } else {
                PENDING.set(Some((left - 1, nanos)));
            }
        }
        OFFSET.get()
    }
}
