//! Running a function on the thread that asks for it, without the pool.
//!
//! Handing a call to a pool thread and back costs more than the call: two
//! thread wake-ups (futex, scheduler, often an IPI on a VM), a timer and a
//! channel, ≈ 50–60 µs of CPU per connection against ≈ 15 µs of
//! JavaScript. So a call first runs right where the handshake finished,
//! on the async runtime's thread, but only under a budget that keeps the
//! runtime responsive:
//!
//! - it is stopped after [`INLINE_BUDGET`] of CPU time (the same interrupt
//!   handler that enforces the 5 ms limit), its engine is dropped, and the
//!   call runs again from the start on the pool with the full limits. A
//!   function has no side effects outside its call but `console` lines,
//!   so running it twice is invisible to the record;
//! - a program whose engine took more than [`INLINE_BUILD_BUDGET`] to
//!   build at load (runtime, compile, top level) never runs inline: each
//!   runtime thread pays that once per program;
//! - a program that overran the budget more than [`FREE_OVERRUNS`] times
//!   plus once per [`CALLS_PER_OVERRUN`] inline calls runs on the pool
//!   only, for the rest of its life (a reload starts afresh).
//!
//! So an async thread spends at most the budget on any call, and a slow
//! function costs it on average at most (budget + one engine rebuild) /
//! [`CALLS_PER_OVERRUN`] per call before it is sent to the pool for good. The other limits (2 MB,
//! panics caught, engine dropped after any limit) are the engine's and
//! hold wherever it runs. Native code that the interrupt handler cannot
//! stop (one builtin call on at most 2 MB of data) is the one exception,
//! as it is on the pool.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::cache::EngineCache;
use super::counters::PoolCounters;
use super::{ConnectionInfo, FunctionResult, Program};

/// CPU time a call may take on an async runtime thread before it is
/// stopped and handed to the pool.
pub(crate) const INLINE_BUDGET: Duration = Duration::from_micros(250);
/// A program whose engine took longer to build (runtime, compile, top
/// level, measured once at load) is never run inline: every runtime thread
/// builds its own engine once per program.
pub(crate) const INLINE_BUILD_BUDGET: Duration = Duration::from_millis(2);
/// Overruns a program may have before its share is checked.
const FREE_OVERRUNS: u64 = 4;
/// Each this many inline calls allow one more overrun.
const CALLS_PER_OVERRUN: u64 = 1024;

thread_local! {
    static ENGINES: RefCell<EngineCache> = RefCell::new(EngineCache::default());
}

/// Per program: may it run inline, and how has it fared.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Building the engine took more than [`INLINE_BUILD_BUDGET`]: never inline.
    too_costly: std::sync::atomic::AtomicBool,
    calls: AtomicU64,
    overruns: AtomicU64,
}

impl Admission {
    pub(super) fn set_build_cost(&self, cpu: Duration) {
        self.too_costly
            .store(cpu > INLINE_BUILD_BUDGET, Ordering::Relaxed);
    }

    fn allowed(&self) -> bool {
        if self.too_costly.load(Ordering::Relaxed) {
            return false;
        }
        let calls = self.calls.load(Ordering::Relaxed);
        self.overruns.load(Ordering::Relaxed) <= FREE_OVERRUNS + calls / CALLS_PER_OVERRUN
    }
}

/// Runs `program` for `conn` on this thread if it may and finishes within
/// [`INLINE_BUDGET`]; `None` means: run it on the pool.
pub(super) fn try_run(
    program: &Arc<Program>,
    conn: &ConnectionInfo,
    counters: &PoolCounters,
) -> Option<FunctionResult> {
    let admission = program.inline();
    if !admission.allowed() {
        return None;
    }
    let ran = ENGINES.try_with(|cache| {
        // A call never re-enters (the engine calls no async code), but a
        // busy cache must not panic: the pool takes the call then.
        let mut cache = cache.try_borrow_mut().ok()?;
        match cache.call(program, conn, INLINE_BUDGET, counters) {
            Some(result) => {
                admission.calls.fetch_add(1, Ordering::Relaxed);
                counters.inline.fetch_add(1, Ordering::Relaxed);
                cache.account(counters, program, &result);
                Some(result)
            }
            None => {
                admission.overruns.fetch_add(1, Ordering::Relaxed);
                counters.inline_overruns.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    });
    ran.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_allows_a_share_of_overruns() {
        let a = Admission::default();
        assert!(a.allowed());
        a.overruns.store(FREE_OVERRUNS, Ordering::Relaxed);
        assert!(a.allowed());
        a.overruns.store(FREE_OVERRUNS + 1, Ordering::Relaxed);
        assert!(!a.allowed());
        a.calls.store(CALLS_PER_OVERRUN, Ordering::Relaxed);
        assert!(a.allowed());
        a.set_build_cost(INLINE_BUILD_BUDGET + Duration::from_micros(1));
        assert!(!a.allowed());
        a.set_build_cost(INLINE_BUILD_BUDGET);
        assert!(a.allowed());
    }
}
