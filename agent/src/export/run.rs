//! The exporter task: one loop that takes records, cuts batches by size
//! and age, keeps a link to the receiver (reconnecting with jittered
//! exponential backoff), sends within a window, releases batches on
//! acknowledgement and resends the rest after a reconnect.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use super::buffer::Buffer;
use super::queue::Queue;
use super::stats::ExportStats;
use super::transport::{self, ConnectError, Link};
use crate::config::ExportConfig;

enum Conn {
    Down { retry_at: Instant },
    Connecting(JoinHandle<Result<Link, ConnectError>>),
    Up(Link),
}

struct Backoff {
    current: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// Full jitter: a random wait up to the current step, which doubles.
    fn next(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let nanos = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(nanos / 2..=nanos.max(1)))
    }

    fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// Runs until stopped; returns how many records were left unsent.
pub(super) async fn run(
    cfg: ExportConfig,
    agent_id: String,
    input: Arc<Queue>,
    mut stop: oneshot::Receiver<()>,
    stats: Arc<ExportStats>,
) -> u64 {
    let mut buffer = Buffer::new(&cfg, agent_id.clone(), stats.clone());
    // Records taken from the input, one chunk at a time.
    let mut incoming = Vec::new();
    let Some(endpoint) = cfg.endpoint.clone() else {
        // No receiver configured: take and count what arrives, send nothing.
        tracing::warn!("no [export] endpoint configured: records are counted, not sent");
        let mut unsent = 0u64;
        loop {
            tokio::select! {
                more = input.take(&mut incoming) => {
                    unsent += incoming.len() as u64;
                    incoming.clear();
                    if !more {
                        break;
                    }
                },
                _ = &mut stop => {
                    input.close();
                    while input.take(&mut incoming).await {
                        unsent += incoming.len() as u64;
                        incoming.clear();
                    }
                    break;
                }
            }
        }
        return unsent;
    };
    let mut backoff = Backoff {
        current: cfg.backoff_initial,
        initial: cfg.backoff_initial,
        max: cfg.backoff_max,
    };
    let mut conn = Conn::Down {
        retry_at: Instant::now(),
    };
    // Highest sequence sent on the current link, and how many are in flight.
    let mut cursor = 0u64;
    let mut in_flight = 0usize;
    let mut max_sent = 0u64;
    let mut batch_deadline: Option<Instant> = None;
    let mut shutdown_deadline: Option<Instant> = None;
    let mut input_open = true;
    let far = || Instant::now() + Duration::from_secs(3600);
    // One timer for the open batch's deadline, moved when a new batch
    // opens: a timer made per wake-up (nearly one per record) would be
    // registered and removed again each time.
    let batch_timer = sleep_until(far());
    tokio::pin!(batch_timer);

    loop {
        if let Some(at) = batch_deadline
            && at != batch_timer.deadline()
        {
            batch_timer.as_mut().reset(at);
        }
        if let Conn::Up(link) = &conn {
            let next: Vec<u64> = buffer
                .unacked
                .range(cursor + 1..)
                .take(cfg.max_in_flight.saturating_sub(in_flight))
                .map(|(s, _)| *s)
                .collect();
            for seq in next {
                let Some(batch) = buffer.batch(seq) else {
                    // Unreadable spool file: counted as dropped, forgotten.
                    if let Some(n) = buffer.release(seq) {
                        ExportStats::drop_records(
                            &stats.dropped_buffer_full,
                            n as u64,
                            "spool file unreadable",
                        );
                    }
                    continue;
                };
                if link.batches.try_send(batch).is_err() {
                    break;
                }
                cursor = seq;
                in_flight += 1;
                ExportStats::add(&stats.batches_sent, 1);
                if seq <= max_sent {
                    ExportStats::add(&stats.batches_resent, 1);
                }
                max_sent = max_sent.max(seq);
            }
        }
        if shutdown_deadline.is_some()
            && !input_open
            && !buffer.has_pending()
            && buffer.unacked.is_empty()
        {
            return 0;
        }
        let retry_at = match &conn {
            Conn::Down { retry_at } => Some(*retry_at),
            _ => None,
        };
        tokio::select! {
            more = input.take(&mut incoming), if input_open => {
                for r in incoming.drain(..) {
                    if !buffer.has_pending() {
                        batch_deadline = Some(Instant::now() + cfg.batch_max_age);
                    }
                    if buffer.push(&r) {
                        buffer.cut_batch();
                        batch_deadline = None;
                    }
                }
                if !more {
                    input_open = false;
                    buffer.cut_batch();
                }
            },
            () = &mut batch_timer, if batch_deadline.is_some() => {
                buffer.cut_batch();
                batch_deadline = None;
            }
            () = sleep_until(retry_at.unwrap_or_else(far)), if retry_at.is_some() => {
                let cfg = cfg.clone();
                let endpoint = endpoint.clone();
                let agent_id = agent_id.clone();
                conn = Conn::Connecting(tokio::spawn(async move {
                    transport::connect(&cfg, &endpoint, &agent_id).await
                }));
            }
            event = conn_event(&mut conn) => match event {
                ConnEvent::Connected(result) => match result {
                    Ok(Ok(link)) => {
                        tracing::info!(%endpoint, unacked = buffer.unacked.len(), "connected to the collector");
                        conn = Conn::Up(link);
                        cursor = 0;
                        in_flight = 0;
                    }
                    Ok(Err(err)) => {
                        ExportStats::add(&stats.connect_failures, 1);
                        let wait = backoff.next();
                        tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, held = buffer.held_records(), "collector unreachable");
                        conn = Conn::Down { retry_at: Instant::now() + wait };
                    }
                    Err(_) => conn = Conn::Down { retry_at: Instant::now() + backoff.next() },
                },
                ConnEvent::Ack(ack) => match ack {
                    Some(Ok(seq)) => {
                        if let Some(n) = buffer.release(seq) {
                            ExportStats::add(&stats.records_acked, n as u64);
                            in_flight = in_flight.saturating_sub(1);
                        }
                        backoff.reset();
                    }
                    Some(Err(status)) => {
                        reject_named_batch(&status, &mut buffer, &stats);
                        let wait = backoff.next();
                        tracing::warn!(code = ?status.code(), error = %status.message(), retry_in_ms = wait.as_millis() as u64, "collector link failed; will resend unacknowledged batches");
                        conn = Conn::Down { retry_at: Instant::now() + wait };
                    }
                    None => {
                        conn = Conn::Down { retry_at: Instant::now() + backoff.next() };
                    }
                },
            },
            _ = &mut stop, if shutdown_deadline.is_none() => {
                shutdown_deadline = Some(Instant::now() + cfg.shutdown_deadline);
                // Take what is already queued, refuse anything newer.
                input.close();
            }
            () = sleep_until(shutdown_deadline.unwrap_or_else(far)), if shutdown_deadline.is_some() => {
                let left = buffer.held_records();
                let in_memory = buffer.held_in_memory();
                ExportStats::add(&stats.unsent_at_shutdown, left);
                if left > 0 {
                    tracing::error!(unsent = left, lost = in_memory, spooled = left - in_memory, "shutdown deadline passed");
                }
                return left;
            }
        }
    }
}

enum ConnEvent {
    Connected(Result<Result<Link, ConnectError>, tokio::task::JoinError>),
    Ack(Option<Result<u64, tonic::Status>>),
}

/// The next thing the link does: finish connecting, or yield an ack.
async fn conn_event(conn: &mut Conn) -> ConnEvent {
    match conn {
        Conn::Connecting(handle) => ConnEvent::Connected(handle.await),
        Conn::Up(link) => ConnEvent::Ack(link.acks.recv().await),
        Conn::Down { .. } => std::future::pending().await,
    }
}

/// A collector refuses a malformed batch with `InvalidArgument` and a
/// message starting `batch <seq>:`; resending it cannot help, so it is
/// dropped and counted.
fn reject_named_batch(status: &tonic::Status, buffer: &mut Buffer, stats: &ExportStats) {
    if status.code() != tonic::Code::InvalidArgument {
        return;
    }
    let seq = status
        .message()
        .strip_prefix("batch ")
        .and_then(|m| m.split(':').next())
        .and_then(|n| n.parse::<u64>().ok());
    if let Some(n) = seq.and_then(|s| buffer.release(s)) {
        ExportStats::drop_records(
            &stats.rejected,
            n as u64,
            "collector rejected a malformed batch",
        );
    }
}
