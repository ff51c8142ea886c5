//! The exporter: batches records by size and age and streams them to the
//! collector (connlog.v1 gRPC, TLS or mTLS optional) or to an OTLP
//! endpoint; resends what is not acknowledged, backs off with jitter while
//! the collector is away, holds a bounded buffer (records and bytes) with
//! an optional disk spool, and drops-and-counts past capacity.

mod buffer;
mod queue;
mod run;
mod spool;
mod stats;
mod transport;

use std::sync::Arc;

use connlog_proto::v1::ConnectionRecord;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::ExportConfig;
use queue::Queue;
pub use stats::ExportStats;

/// Records waiting between the joiner and the exporter task. Full: drop
/// and count (`dropped_queue_full`); the task drains it continuously.
const INPUT_QUEUE: usize = 16_384;

/// Where the joiner hands records over. Cheap to clone; never blocks.
pub struct ExportHandle {
    queue: Arc<Queue>,
    stats: Arc<ExportStats>,
}

impl Clone for ExportHandle {
    fn clone(&self) -> Self {
        self.queue.add_handle();
        Self {
            queue: self.queue.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl Drop for ExportHandle {
    fn drop(&mut self) {
        self.queue.drop_handle();
    }
}

impl ExportHandle {
    /// Records waiting in the input queue (for load generators that want
    /// to run at the exporter's pace without drops).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn send(&self, record: ConnectionRecord) {
        if self.queue.push(record) {
            ExportStats::add(&self.stats.records_in, 1);
        } else {
            ExportStats::drop_records(&self.stats.dropped_queue_full, 1, "export input queue full");
        }
    }
}

/// What shutdown could and could not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub acked: u64,
    pub not_sent: u64,
}

pub struct Exporter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<u64>,
    stats: Arc<ExportStats>,
    /// False without `[export] endpoint`: nothing was ever to be sent.
    sends: bool,
}

impl Exporter {
    /// Starts the exporter task. Without an endpoint, records are accepted
    /// and counted as unsent.
    pub fn start(cfg: ExportConfig, agent_id: String) -> (Exporter, ExportHandle) {
        let stats = Arc::new(ExportStats::default());
        let queue = Arc::new(Queue::new(INPUT_QUEUE));
        let (stop, stop_rx) = oneshot::channel();
        let sends = cfg.endpoint.is_some();
        let task = tokio::spawn(run::run(
            cfg,
            agent_id,
            queue.clone(),
            stop_rx,
            stats.clone(),
        ));
        (
            Exporter {
                stop,
                task,
                stats: stats.clone(),
                sends,
            },
            ExportHandle { queue, stats },
        )
    }

    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// Sends what it can within the configured deadline and reports what
    /// it could not.
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(());
        let not_sent = self.task.await.unwrap_or(0);
        let acked = ExportStats::get(&self.stats.records_acked);
        if !self.sends {
            tracing::info!(
                not_sent,
                "no [export] endpoint: records were counted, not sent"
            );
        } else if not_sent > 0 {
            tracing::error!(
                not_sent,
                acked,
                "shutdown deadline passed with records unsent"
            );
        } else {
            tracing::info!(acked, "exporter flushed every record");
        }
        ShutdownReport { acked, not_sent }
    }
}
