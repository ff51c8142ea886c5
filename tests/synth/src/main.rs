//! `connlog-synth`: drives the agent's real exporter with synthetic
//! connection records at a steady rate, as a separate process, for the
//! pipeline's end-to-end tests and `cargo xtask bench pipeline`.
//!
//! Prints one JSON line when done: how many records it generated, how
//! many were acknowledged, how many could not be sent or were dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use connlog_agent::config::{ExportConfig, ExportProtocol, ExportTls};
use connlog_agent::export::{ExportStats, Exporter};
use connlog_tests::synth_record;

/// The agent binary's allocator (agent/src/main.rs): this process stands
/// in for the agent, its joiner and exporter run here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    endpoint: String,
    #[arg(long, default_value = "grpc")]
    protocol: String,
    /// Records per second (0: as fast as possible).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Records in total.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    #[arg(long, default_value = "synth")]
    agent_id: String,
    #[arg(long, default_value = "E2DX1SLDPK0123")]
    distribution: String,
    #[arg(long, default_value_t = 500)]
    batch_max_records: usize,
    #[arg(long, default_value_t = 50)]
    batch_max_age_ms: u64,
    #[arg(long, default_value_t = 1_000_000)]
    buffer_max_records: usize,
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    shutdown_deadline_ms: u64,
    #[arg(long, default_value_t = 500)]
    backoff_max_ms: u64,
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    #[arg(long)]
    domain: Option<String>,
    /// Feed the records through the real joiner as TLS outcomes + kernel
    /// `Established` events (random connection ids).
    #[arg(long)]
    through_joiner: bool,
    /// With --rate 0: at most this many records accepted but not yet
    /// acknowledged (closed-loop maximum throughput without drops).
    #[arg(long, default_value_t = 200_000)]
    window: u64,
    /// The async runtime's worker threads.
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let tls = (args.ca.is_some() || args.cert.is_some()).then(|| ExportTls {
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        domain: args.domain.clone(),
    });
    let cfg = ExportConfig {
        endpoint: Some(args.endpoint.clone()),
        protocol: if args.protocol == "otlp" {
            ExportProtocol::Otlp
        } else {
            ExportProtocol::Grpc
        },
        tls,
        batch_max_records: args.batch_max_records,
        batch_max_age: Duration::from_millis(args.batch_max_age_ms),
        buffer_max_records: args.buffer_max_records,
        buffer_max_bytes: 1 << 30,
        spool_dir: args.spool_dir.clone(),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(args.backoff_max_ms),
        shutdown_deadline: Duration::from_millis(args.shutdown_deadline_ms),
        ..ExportConfig::default()
    };
    let (exporter, handle) = Exporter::start(cfg, args.agent_id.clone());
    let stats = exporter.stats();

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                term.recv().await;
                stop.store(true, Ordering::Relaxed);
            }
        });
    }

    let start = Instant::now();
    let mut generated = 0u64;
    let tick = Duration::from_millis(10);
    let joiner = args
        .through_joiner
        .then(|| joiner::start(handle.clone(), &args.agent_id));
    while generated < args.count && !stop.load(Ordering::Relaxed) {
        if args.rate == 0 {
            let acked = ExportStats::get(&stats.records_acked);
            if generated.saturating_sub(acked) > args.window || handle.queued() > 8_192 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        }
        // Produce what the rate allows so far, in 10 ms steps.
        let due = if args.rate == 0 {
            generated + 1000
        } else {
            (start.elapsed().as_secs_f64() * args.rate as f64) as u64 + 1
        };
        let due = due.min(args.count);
        while generated < due {
            match &joiner {
                Some(j) => {
                    let n = (due - generated).min(joiner::CHUNK);
                    j.send(&args.distribution, generated, n).await;
                    generated += n;
                }
                None => {
                    handle.send(synth_record(&args.agent_id, &args.distribution, generated));
                    generated += 1;
                }
            }
        }
        if args.rate == 0 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(tick).await;
        }
    }
    drop(handle);
    if let Some(j) = joiner {
        j.finish().await;
    }
    let report = exporter.shutdown().await;
    let line = serde_json::json!({
        "generated": generated,
        "accepted": ExportStats::get(&stats.records_in),
        "acked": report.acked,
        "not_sent": report.not_sent,
        "dropped_queue_full": ExportStats::get(&stats.dropped_queue_full),
        "dropped_buffer_full": ExportStats::get(&stats.dropped_buffer_full),
        "batches_resent": ExportStats::get(&stats.batches_resent),
        "batches_spooled": ExportStats::get(&stats.batches_spooled),
        "connect_failures": ExportStats::get(&stats.connect_failures),
        "elapsed_ms": start.elapsed().as_millis() as u64,
        "peak_rss_kib": connlog_tests::procfs::status_kib("self", "VmHWM").unwrap_or(0),
        "cpu_ms": connlog_tests::procfs::cpu_us("self").unwrap_or(0) / 1000,
    });
    println!("{line}");
    Ok(())
}

mod joiner {
    //! Synthetic TLS outcomes and kernel events through the real joiner.

    use std::sync::Arc;

    use connlog_agent::export::ExportHandle;
    use connlog_agent::join::{self, Distributions, JoinConfig, JoinStats};
    use connlog_agent::{ClientCertInfo, MonoNanos, TcpEvent, TlsOutcome, Tuple};
    use tokio::sync::mpsc;

    pub(crate) struct Joiner {
        tcp: mpsc::Sender<TcpEvent>,
        tls: mpsc::Sender<TlsOutcome>,
        task: tokio::task::JoinHandle<()>,
    }

    pub(crate) fn start(export: ExportHandle, agent_id: &str) -> Joiner {
        let (tcp, tcp_rx) = mpsc::channel(4096);
        let (tls, tls_rx) = mpsc::channel(4096);
        let cfg = JoinConfig::new(agent_id.to_owned(), true, Distributions::default());
        let task = tokio::spawn(join::run(
            cfg,
            tcp_rx,
            tls_rx,
            Arc::new(JoinStats::default()),
            tokio_util::sync::CancellationToken::new(),
            move |r| export.send(r),
        ));
        Joiner { tcp, tls, task }
    }

    /// Records handed over at once: the terminator and the probe never
    /// wait on the joiner (they `try_send`), so neither does this
    /// generator per record; it waits until the joiner's queues have room
    /// for a chunk, then sends the chunk without waiting.
    pub(crate) const CHUNK: u64 = 1000;

    impl Joiner {
        /// Connections `first..first + count` (`count` at most [`CHUNK`]).
        pub(crate) async fn send(&self, distribution: &str, first: u64, count: u64) {
            let count = count.min(CHUNK) as usize;
            let (Ok(tcp), Ok(tls)) = (
                self.tcp.reserve_many(count).await,
                self.tls.reserve_many(count).await,
            ) else {
                return;
            };
            for ((tcp, tls), n) in tcp.zip(tls).zip(first..) {
                let (ev, outcome) = connection(distribution, n);
                tcp.send(ev);
                tls.send(outcome);
            }
        }

        pub(crate) async fn finish(self) {
            drop(self.tcp);
            drop(self.tls);
            let _ = self.task.await;
        }
    }

    /// Connection `n`: its kernel `Established` event and TLS outcome.
    fn connection(distribution: &str, n: u64) -> (TcpEvent, TlsOutcome) {
        let tuple = Tuple::new(
            (
                [198, 18, (n >> 8) as u8, n as u8],
                1024 + (n % 60_000) as u16,
            )
                .into(),
            ([198, 18, 0, 1], 443).into(),
        );
        let now = MonoNanos::now();
        let ev = TcpEvent::Established {
            tuple,
            cookie: n + 1,
            syn_at: MonoNanos(now.0.saturating_sub(80_000)),
            established_at: now,
            synack_retransmits: 0,
        };
        let outcome = TlsOutcome {
            event_time: connlog_agent::tls::epoch_millis(),
            tls_protocol: Some("TLSv1.3".into()),
            tls_cipher: Some("TLS_AES_128_GCM_SHA256".into()),
            handshake_ms: Some(3),
            sni: Some("edge.test".into()),
            cert: Some(ClientCertInfo {
                serial: "00:b1:43:ed:93:d2:d8:f3:9d".into(),
                subject: "C=US, O=Example, CN=client.test".into(),
                issuer: "C=US, O=Example, CN=Example CA".into(),
                validity: "NotBefore=2025-06-05T23:28:21Z;NotAfter=2125-05-12T23:28:21Z".into(),
                not_before_s: Some(1_749_166_101),
                not_after_s: Some(4_902_766_101),
                sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                sans: "DNS:client.test".into(),
            }),
            ..TlsOutcome::accepted(tuple, Some(n + 1), distribution.to_owned(), now)
        };
        (ev, outcome)
    }
}
