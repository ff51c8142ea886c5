//! The sweeper: a thread that reads the kernel's `ATTEMPTS` map every
//! `syn_timeout / 8` (10 ms – 500 ms), reports the attempts that timed out,
//! forgets old closed ones and counts what the LRU evicted (rules in
//! [`super::tracker`]). A thread, not a task: reading a large map is a few
//! hundred thousand syscalls that must not stall the runtime. It only reads
//! and deletes entries, never updates one: an update from userspace takes a
//! fresh LRU node, which in a full table would evict another attempt.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use connlog_common::{Attempt, AttemptKey, count};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::claims::Claims;
use super::decode::tuple_of;
use super::tracker::{Tracker, Verdict, timeout};
use super::{Counters, TcpEvent};
use crate::MonoNanos;

pub(crate) struct Sweeper {
    /// Shared with the ring reader: one report per attempt.
    pub(crate) claims: Arc<Claims>,
    pub(crate) attempts: BpfHashMap<MapData, AttemptKey, Attempt>,
    pub(crate) counts: PerCpuArray<MapData, u64>,
    pub(crate) tracker: Tracker,
    /// The map's capacity: bounds one sweep's read even while the kernel
    /// churns it (a deleted cursor key restarts the kernel's iteration).
    pub(crate) capacity: usize,
    pub(crate) period: Duration,
    pub(crate) tx: mpsc::Sender<TcpEvent>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) stop: Arc<AtomicBool>,
}

/// The sweep period for `syn_timeout`.
pub(crate) fn period(syn_timeout: Duration) -> Duration {
    (syn_timeout / 8).clamp(Duration::from_millis(10), Duration::from_millis(500))
}

impl Sweeper {
    pub(crate) fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) && !self.tx.is_closed() {
            std::thread::sleep(self.period);
            self.sweep();
        }
    }

    fn kernel_count(&self, index: u32) -> u64 {
        self.counts
            .get(&index, 0)
            .map_or(0, |per_cpu| per_cpu.iter().sum())
    }

    pub(crate) fn sweep(&mut self) {
        // Before reading: an attempt judged timed out was read after its
        // deadline, so a failure the kernel reported before the deadline
        // shows in what we read (closed), and after it the kernel reports
        // none.
        let now = MonoNanos::now();
        let inserted = self.kernel_count(count::INSERTED);
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        for item in self.attempts.iter().take(2 * self.capacity) {
            match item {
                Ok((key, value)) => {
                    if seen.insert(key) {
                        entries.push((key, value));
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, "probe: reading the attempt map");
                    break;
                }
            }
        }
        let mut live = entries.len() as u64;
        let mut timed_out = HashSet::new();
        for (key, attempt) in entries {
            match self.tracker.judge(now, &attempt) {
                Verdict::Keep => {}
                Verdict::Forget => {
                    if self.attempts.remove(&key).is_ok() {
                        self.tracker.forgot();
                        live -= 1;
                    }
                }
                Verdict::TimedOut => {
                    timed_out.insert((key, attempt.syn_at));
                    if self.claims.claim(&key, attempt.syn_at, now.0)
                        && let Some(tuple) = tuple_of(&key)
                    {
                        self.send(timeout(tuple, attempt.syn_at, attempt.synacks, now));
                    }
                }
            }
        }
        self.claims.retain(&timed_out, now.0);
        let removed = self.kernel_count(count::REMOVED);
        self.tracker.account(inserted, removed, live);
        self.counters
            .table_full
            .store(self.tracker.evicted, Ordering::Relaxed);
        self.counters
            .tracked
            .store(self.tracker.tracked, Ordering::Relaxed);
    }

    fn send(&self, ev: TcpEvent) {
        match self.tx.try_send(ev) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.channel_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
