//! The pending table: each half of an attempt waits here for the other,
//! keyed by 4-tuple + socket cookie, so a reused client port (a new child
//! socket, a new cookie) never merges with an earlier attempt. On kernels
//! whose programs cannot read the cookie, the key is the 4-tuple alone
//! (`Settings::tuple_only`): each half leaves the table when it meets the
//! other, so a reused port still starts a new entry.
//!
//! - TLS outcome + `Established` → one record with the kernel fields.
//! - TLS outcome alone → emitted after `grace` with kernel fields empty.
//! - kernel `Failed` → a kernel-only record at once (it never reached
//!   `accept()`, so no TLS outcome will come).
//! - kernel `Reset` + TLS `TcpError` (RST/EOF during TLS) → one TcpError
//!   record, `rst-during-tls`. A `Reset` with no kernel half waiting is
//!   dropped: the attempt's record is already out (a client resetting a
//!   finished connection).
//! - kernel `EstablishedAfterTimeout` + TLS outcome → no record: the probe
//!   already reported the attempt as a `TcpTimeout`, which was emitted as
//!   its record (counted in `after_timeout`).
//! - full table → the oldest entry leaves early: a TLS outcome is emitted
//!   without kernel fields, a kernel half is dropped; both counted.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use connlog_proto::v1::ConnectionRecord;
use tokio::time::Instant;

use super::Distributions;
use super::record::{self, KernelFailure};
use super::stats::JoinStats;
use crate::probe::TcpEvent;
use crate::tls::TlsOutcome;
use crate::{FailureCode, MonoNanos, Status, Tuple};

type Key = (Tuple, u64);

#[derive(Debug, Default)]
struct KernelHalf {
    /// (µs from SYN to ESTABLISHED, SYN-ACK retransmits).
    established: Option<(u64, u32)>,
    reset_at: Option<MonoNanos>,
    /// The attempt's `TcpTimeout` was already emitted: no record.
    after_timeout: bool,
}

enum Entry {
    Kernel(KernelHalf),
    Tls(Box<TlsOutcome>),
}

pub(crate) struct Settings {
    pub(crate) agent_id: String,
    /// How long a TLS outcome waits for its kernel half.
    pub(crate) grace: Duration,
    /// How long a kernel half waits for its TLS outcome (the handshake can
    /// take up to the listener's handshake timeout).
    pub(crate) kernel_ttl: Duration,
    pub(crate) capacity: usize,
    /// Listener addresses → distributionId, for kernel-only records.
    pub(crate) distributions: Distributions,
    /// Kernel events carry cookie 0: TLS outcomes are keyed with 0 too.
    pub(crate) tuple_only: bool,
}

pub(crate) struct Table {
    s: Settings,
    /// Each entry with the key of its deadline.
    entries: HashMap<Key, (Entry, (Instant, u64))>,
    /// (deadline, insertion number) → key; stale items are skipped.
    deadlines: BTreeMap<(Instant, u64), Key>,
    next_id: u64,
}

impl Table {
    pub(crate) fn new(s: Settings) -> Self {
        Self {
            s,
            entries: HashMap::new(),
            deadlines: BTreeMap::new(),
            next_id: 0,
        }
    }

    /// When the next entry times out.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(t, _)| *t)
    }

    fn insert(
        &mut self,
        key: Key,
        entry: Entry,
        ttl: Duration,
        now: Instant,
        out: &mut Vec<ConnectionRecord>,
        stats: &JoinStats,
    ) {
        while self.entries.len() >= self.s.capacity {
            let Some(((_, id), old)) = self.deadlines.pop_first() else {
                break;
            };
            if let Some(e) = self.take_current(old, id) {
                self.leave(e, out, stats, true);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let deadline = (now + ttl, id);
        self.deadlines.insert(deadline, key);
        self.entries.insert(key, (entry, deadline));
    }

    /// Removes the entry at `key` if it is still the one deadline `id`
    /// was set for (a later entry for the key has its own deadline).
    fn take_current(&mut self, key: Key, id: u64) -> Option<Entry> {
        if self.entries.get(&key).is_some_and(|(_, (_, i))| *i == id) {
            return self.entries.remove(&key).map(|(e, _)| e);
        }
        None
    }

    /// Removes the entry at `key` and its deadline (joined: no timeout).
    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let (entry, deadline) = self.entries.remove(key)?;
        self.deadlines.remove(&deadline);
        Some(entry)
    }

    /// An entry leaving without its other half (timeout or overflow).
    fn leave(&self, e: Entry, out: &mut Vec<ConnectionRecord>, stats: &JoinStats, overflow: bool) {
        match e {
            Entry::Tls(o) => {
                out.push(record::from_tls(*o, &self.s.agent_id));
                if overflow {
                    JoinStats::bump(&stats.overflow_emitted);
                } else {
                    JoinStats::bump(&stats.tls_only);
                }
            }
            Entry::Kernel(_) => {
                if overflow {
                    JoinStats::drop_kernel(&stats.overflow_kernel_dropped);
                } else {
                    JoinStats::bump(&stats.kernel_expired);
                }
            }
        }
    }

    pub(crate) fn on_tls(
        &mut self,
        o: TlsOutcome,
        now: Instant,
        out: &mut Vec<ConnectionRecord>,
        stats: &JoinStats,
    ) {
        let cookie = if self.s.tuple_only { Some(0) } else { o.cookie };
        let Some(cookie) = cookie else {
            // Without a cookie nothing can be joined safely.
            JoinStats::bump(&stats.tls_only);
            out.push(record::from_tls(o, &self.s.agent_id));
            return;
        };
        let key = (o.tuple, cookie);
        match self.remove(&key) {
            Some(Entry::Kernel(k)) if k.after_timeout => suppress(&o.tuple, cookie, stats),
            Some(Entry::Kernel(k)) => {
                JoinStats::bump(&stats.joined);
                out.push(merge(o, &k, &self.s.agent_id));
            }
            Some(Entry::Tls(earlier)) => {
                // Two outcomes for one socket cannot happen; keep the first.
                let grace = self.s.grace;
                self.insert(key, Entry::Tls(earlier), grace, now, out, stats);
                JoinStats::bump(&stats.duplicate_outcomes);
            }
            None if self.s.grace.is_zero() => {
                JoinStats::bump(&stats.tls_only);
                out.push(record::from_tls(o, &self.s.agent_id));
            }
            None => {
                let grace = self.s.grace;
                self.insert(key, Entry::Tls(Box::new(o)), grace, now, out, stats);
            }
        }
    }

    pub(crate) fn on_tcp(
        &mut self,
        ev: TcpEvent,
        now: Instant,
        out: &mut Vec<ConnectionRecord>,
        stats: &JoinStats,
    ) {
        match ev {
            TcpEvent::Failed {
                tuple,
                code,
                detail,
                failed_at,
                synack_retransmits,
                ..
            } => {
                JoinStats::bump(&stats.kernel_only);
                let distribution_id = self
                    .s
                    .distributions
                    .of(tuple.server)
                    .unwrap_or_default()
                    .to_owned();
                out.push(record::from_kernel(
                    KernelFailure {
                        tuple: &tuple,
                        code,
                        detail: &detail,
                        synack_retransmits,
                        event_time_ms: wall_ms_of(failed_at),
                        distribution_id,
                    },
                    &self.s.agent_id,
                ));
            }
            TcpEvent::Established {
                tuple,
                cookie,
                syn_at,
                established_at,
                synack_retransmits,
            } => {
                let est = (established_at.micros_since(syn_at), synack_retransmits);
                self.kernel_half((tuple, cookie), now, out, stats, |k| {
                    k.established = Some(est)
                });
            }
            TcpEvent::EstablishedAfterTimeout { tuple, cookie, .. } => {
                self.kernel_half((tuple, cookie), now, out, stats, |k| k.after_timeout = true);
            }
            TcpEvent::Reset { tuple, cookie, at } => {
                // An RST matters only to an attempt whose TLS outcome is
                // still to come: its `Established` half waits here (the
                // kernel reports ESTABLISHED before any RST). Otherwise the
                // record is already out, most often because the client
                // reset a finished connection, as many clients close:
                // nothing to wait for.
                if let Some((Entry::Kernel(k), _)) = self.entries.get_mut(&(tuple, cookie)) {
                    k.reset_at = Some(at);
                }
            }
        }
    }

    fn kernel_half(
        &mut self,
        key: Key,
        now: Instant,
        out: &mut Vec<ConnectionRecord>,
        stats: &JoinStats,
        update: impl FnOnce(&mut KernelHalf),
    ) {
        match self.entries.get_mut(&key) {
            Some((Entry::Kernel(k), _)) => update(k),
            Some((Entry::Tls(_), _)) => {
                let mut k = KernelHalf::default();
                update(&mut k);
                match self.remove(&key) {
                    Some(Entry::Tls(_)) if k.after_timeout => suppress(&key.0, key.1, stats),
                    Some(Entry::Tls(o)) => {
                        JoinStats::bump(&stats.joined);
                        out.push(merge(*o, &k, &self.s.agent_id));
                    }
                    _ => {}
                }
            }
            None => {
                let mut k = KernelHalf::default();
                update(&mut k);
                let ttl = self.s.kernel_ttl;
                self.insert(key, Entry::Kernel(k), ttl, now, out, stats);
            }
        }
    }

    /// Entries past their deadline leave.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        out: &mut Vec<ConnectionRecord>,
        stats: &JoinStats,
    ) {
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, id), key) = entry.remove_entry();
            if let Some(e) = self.take_current(key, id) {
                self.leave(e, out, stats, false);
            }
        }
    }

    /// Shutdown: every waiting TLS outcome is emitted now.
    pub(crate) fn flush(&mut self, out: &mut Vec<ConnectionRecord>, stats: &JoinStats) {
        self.deadlines.clear();
        for (_, (e, _)) in std::mem::take(&mut self.entries) {
            self.leave(e, out, stats, false);
        }
    }
}

/// A TLS outcome joined with a late ESTABLISHED is dropped: its attempt's
/// record was the `TcpTimeout`.
fn suppress(tuple: &Tuple, cookie: u64, stats: &JoinStats) {
    JoinStats::bump(&stats.after_timeout);
    tracing::debug!(
        client = %tuple.client,
        server = %tuple.server,
        cookie,
        "join: TLS outcome of a connection whose attempt was recorded as TcpTimeout; no second record"
    );
}

/// The TLS outcome's record with the kernel's fields added.
fn merge(o: TlsOutcome, k: &KernelHalf, agent_id: &str) -> ConnectionRecord {
    let status = o.status;
    let mut r = record::from_tls(o, agent_id);
    if let Some((us, retransmits)) = k.established {
        r.tcp_handshake_duration_us = Some(us);
        r.syn_ack_retransmits = Some(retransmits);
    }
    // The kernel saw the client's RST: whatever the terminator read (RST or
    // EOF), it was a reset during the handshake.
    if k.reset_at.is_some() && status == Status::Failed(FailureCode::TcpError) {
        r.tcp_failure_detail = Some("rst-during-tls".to_owned());
    }
    r
}

/// Unix ms of a monotonic kernel timestamp.
fn wall_ms_of(t: MonoNanos) -> u64 {
    let age_ms = MonoNanos::now().0.saturating_sub(t.0) / 1_000_000;
    crate::tls::epoch_millis().saturating_sub(age_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_joined_attempt_leaves_no_deadline_behind() {
        let mut table = Table::new(Settings {
            agent_id: "a".into(),
            grace: Duration::from_millis(500),
            kernel_ttl: Duration::from_secs(120),
            capacity: 16,
            distributions: Distributions::default(),
            tuple_only: false,
        });
        let stats = JoinStats::default();
        let tuple = Tuple::new(
            "198.18.0.2:40000".parse().unwrap(),
            "198.18.0.1:443".parse().unwrap(),
        );
        let mut out = Vec::new();
        let ev = TcpEvent::Established {
            tuple,
            cookie: 5,
            syn_at: MonoNanos(1),
            established_at: MonoNanos(2_001),
            synack_retransmits: 0,
        };
        table.on_tcp(ev, Instant::now(), &mut out, &stats);
        assert!(table.next_deadline().is_some());
        let outcome = TlsOutcome {
            event_time: 1,
            ..TlsOutcome::accepted(tuple, Some(5), "D".into(), MonoNanos(3))
        };
        table.on_tls(outcome, Instant::now(), &mut out, &stats);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].tcp_handshake_duration_us, Some(2));
        assert_eq!(
            table.next_deadline(),
            None,
            "no stale deadline after a join"
        );
        assert!(table.entries.is_empty());
    }
}
