//! The ring-buffer reader: one tokio task that wakes when the ring is
//! readable (`AsyncFd`) or its drain timer is due, and never blocks — a full
//! consumer channel drops the event and counts it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::claims::{Claims, Report};
use super::decode::{event, late_established, parse};
use super::{Counters, TcpEvent};

/// The longest an event waits in the ring when the kernel did not wake us.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

pub(crate) struct Reader {
    pub(crate) ring: RingBuf<MapData>,
    pub(crate) tx: mpsc::Sender<TcpEvent>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rst_reasons: HashMap<u32, String>,
    /// Shared with the sweeper: one report per attempt.
    pub(crate) claims: Arc<Claims>,
    /// `syn_timeout` in ns.
    pub(crate) syn_timeout: u64,
}

pub(crate) async fn run(r: Reader) {
    let Reader {
        ring,
        tx,
        counters,
        rst_reasons,
        claims,
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
    // the programs' `emit`); this timer drains smaller batches.
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // false: the consumer is gone.
    let drain = |ring: &mut RingBuf<MapData>| -> bool {
        while let Some(item) = ring.next() {
            let Some(raw) = parse(&item) else {
                continue;
            };
            let ev = match claims.report(&raw, syn_timeout) {
                Report::No => continue,
                Report::Yes => event(&raw, &rst_reasons),
                Report::AfterTimeout => {
                    counters
                        .established_after_timeout
                        .fetch_add(1, Ordering::Relaxed);
                    let ev = late_established(&raw);
                    if let Some(TcpEvent::EstablishedAfterTimeout { tuple, cookie, .. }) = &ev {
                        tracing::debug!(
                            client = %tuple.client,
                            server = %tuple.server,
                            cookie,
                            "probe: ESTABLISHED after the attempt's TcpTimeout was reported; no second record"
                        );
                    }
                    ev
                }
            };
            let Some(ev) = ev else {
                continue;
            };
            tracing::trace!(?ev, "kernel");
            match tx.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    counters.channel_full.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        true
    };
    loop {
        let open = tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = match guard {
                    Ok(g) => g,
                    Err(err) => {
                        tracing::error!(error = %err, "probe: ring buffer poll failed; no kernel events");
                        return;
                    }
                };
                let open = drain(guard.get_inner_mut());
                guard.clear_ready();
                open
            }
            _ = tick.tick() => drain(ring.get_mut()),
        };
        if !open {
            return;
        }
    }
}
