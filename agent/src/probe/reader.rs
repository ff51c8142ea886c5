//! The ring-buffer reader: one tokio task that wakes when the ring is
//! readable (`AsyncFd`) or a timeout is due, and never blocks — a full
//! consumer channel drops the event and counts it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::decode::decode;
use super::tracker::Tracker;
use super::{Counters, TcpEvent};
use crate::MonoNanos;

/// The longest an event waits in the ring when the kernel did not wake us.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

pub(crate) struct Reader {
    pub(crate) ring: RingBuf<MapData>,
    pub(crate) tracker: Tracker,
    pub(crate) tx: mpsc::Sender<TcpEvent>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rst_reasons: HashMap<u32, String>,
    pub(crate) syn_timeout: Duration,
}

pub(crate) async fn run(r: Reader) {
    let Reader {
        ring,
        mut tracker,
        tx,
        counters,
        rst_reasons,
        syn_timeout,
    } = r;
    // SAFETY: the RingBuf owns its map fd and keeps it open for as long as
    // the AsyncFd owns the RingBuf; nothing else closes or replaces it.
    let mut ring = match unsafe { AsyncFd::register(ring) } {
        Ok(fd) => fd,
        Err(err) => {
            tracing::error!(error = %err, "probe: cannot poll the ring buffer; no kernel events");
            return;
        }
    };
    // The kernel wakes us only when a quarter of the ring is pending (see
    // the programs' `emit`); this timer drains smaller batches and decides
    // timeouts.
    let period = (syn_timeout / 4).clamp(Duration::from_millis(1), DRAIN_EVERY);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let drain = |ring: &mut RingBuf<MapData>, tracker: &mut Tracker| {
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            if let Some((tuple, at, obs)) = decode(&item, &rst_reasons) {
                tracing::trace!(%tuple, ?obs, "kernel");
                out.extend(tracker.observe(tuple, at, obs));
            }
        }
        out
    };
    let send = |ev: TcpEvent| match tx.try_send(ev) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            counters.channel_full.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(TrySendError::Closed(_)) => false,
    };
    loop {
        let events = tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = match guard {
                    Ok(g) => g,
                    Err(err) => {
                        tracing::error!(error = %err, "probe: ring buffer poll failed; no kernel events");
                        return;
                    }
                };
                let out = drain(guard.get_inner_mut(), &mut tracker);
                guard.clear_ready();
                out
            }
            _ = tick.tick() => {
                let mut out = drain(ring.get_mut(), &mut tracker);
                out.extend(tracker.expire(MonoNanos::now()));
                out
            }
        };
        counters
            .table_full
            .store(tracker.table_full, Ordering::Relaxed);
        for ev in events {
            if !send(ev) {
                return;
            }
        }
    }
}
