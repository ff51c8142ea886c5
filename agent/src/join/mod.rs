//! The joiner: pairs the kernel's [`TcpEvent`]s with the terminator's
//! [`TlsOutcome`]s into one `connlog.v1` record per connection attempt
//! (the rules are in `table.rs`), and hands each record to the exporter.

mod distributions;
mod record;
mod stats;
mod table;

use std::sync::Arc;
use std::time::Duration;

use connlog_proto::v1::ConnectionRecord;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::probe::TcpEvent;
use crate::tls::TlsOutcome;
pub use distributions::Distributions;
pub use stats::JoinStats;
use table::{Settings, Table};

/// At most this many events of each kind are taken per wake-up.
const DRAIN: usize = 256;

/// How the joiner waits and how much it holds.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    pub agent_id: String,
    /// How long a TLS outcome waits for its kernel half; zero when there
    /// is no probe.
    pub grace: Duration,
    pub kernel_ttl: Duration,
    pub capacity: usize,
    /// Listener addresses → distributionId, for kernel-only records.
    pub distributions: Distributions,
    /// The kernel's events carry no socket cookie (tracing programs cannot
    /// read it before Linux 5.12): join on the 4-tuple alone.
    pub tuple_only: bool,
}

impl JoinConfig {
    pub fn new(agent_id: String, probe: bool, distributions: Distributions) -> Self {
        Self {
            agent_id,
            grace: if probe {
                Duration::from_millis(500)
            } else {
                Duration::ZERO
            },
            kernel_ttl: Duration::from_secs(120),
            capacity: 65_536,
            distributions,
            tuple_only: false,
        }
    }
}

/// Runs until both inputs are closed, or `stop` is cancelled and the TLS
/// input is closed (the terminator has stopped); then takes the kernel
/// events already queued, emits what still waits and returns. `emit`
/// receives every record exactly once.
pub async fn run(
    cfg: JoinConfig,
    mut tcp: mpsc::Receiver<TcpEvent>,
    mut tls: mpsc::Receiver<TlsOutcome>,
    stats: Arc<JoinStats>,
    stop: CancellationToken,
    mut emit: impl FnMut(ConnectionRecord),
) {
    let mut table = Table::new(Settings {
        agent_id: cfg.agent_id,
        grace: cfg.grace,
        kernel_ttl: cfg.kernel_ttl,
        capacity: cfg.capacity.max(1),
        distributions: cfg.distributions,
        tuple_only: cfg.tuple_only,
    });
    let mut out = Vec::new();
    let (mut tcp_open, mut tls_open) = (true, true);
    let mut stopping = false;
    // One timer for the table's next deadline, moved as that changes: a
    // timer made per wake-up would be registered and removed again for
    // nearly every connection.
    let timer = sleep_until(Instant::now());
    tokio::pin!(timer);
    // Stopping ends the loop once the terminator's outcomes are all in.
    while tls_open || (tcp_open && !stopping) {
        let deadline = table.next_deadline();
        if let Some(at) = deadline
            && at != timer.deadline()
        {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            () = stop.cancelled(), if !stopping => stopping = true,
            ev = tcp.recv(), if tcp_open => match ev {
                Some(ev) => table.on_tcp(ev, Instant::now(), &mut out, &stats),
                None => tcp_open = false,
            },
            o = tls.recv(), if tls_open => match o {
                Some(o) => table.on_tls(o, Instant::now(), &mut out, &stats),
                None => tls_open = false,
            },
            () = &mut timer, if deadline.is_some() => {
                table.expire(Instant::now(), &mut out, &stats);
            }
        }
        // Whatever else is already queued is taken now, without another
        // round through select! and its timer.
        let now = Instant::now();
        for _ in 0..DRAIN {
            let mut took = false;
            if tcp_open && let Ok(ev) = tcp.try_recv() {
                table.on_tcp(ev, now, &mut out, &stats);
                took = true;
            }
            if tls_open && let Ok(o) = tls.try_recv() {
                table.on_tls(o, now, &mut out, &stats);
                took = true;
            }
            if !took {
                break;
            }
        }
        for r in out.drain(..) {
            emit(r);
        }
    }
    while let Ok(ev) = tcp.try_recv() {
        table.on_tcp(ev, Instant::now(), &mut out, &stats);
    }
    table.flush(&mut out, &stats);
    tracing::debug!(left = out.len(), "joiner flushed");
    for r in out.drain(..) {
        emit(r);
    }
}

#[cfg(test)]
mod tests;
