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
        .worker_threads(2)
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
    while generated < args.count && !stop.load(Ordering::Relaxed) {
        // Produce what the rate allows so far, in 10 ms steps.
        let due = if args.rate == 0 {
            generated + 1000
        } else {
            (start.elapsed().as_secs_f64() * args.rate as f64) as u64 + 1
        };
        let due = due.min(args.count);
        while generated < due {
            handle.send(synth_record(&args.agent_id, &args.distribution, generated));
            generated += 1;
        }
        if args.rate == 0 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(tick).await;
        }
    }
    drop(handle);
    let report = exporter.shutdown().await;
    let line = serde_json::json!({
        "generated": generated,
        "accepted": ExportStats::get(&stats.records_in),
        "acked": report.acked,
        "not_sent": report.not_sent,
        "dropped_queue_full": ExportStats::get(&stats.dropped_queue_full),
        "dropped_buffer_full": ExportStats::get(&stats.dropped_buffer_full),
        "batches_resent": ExportStats::get(&stats.batches_resent),
        "connect_failures": ExportStats::get(&stats.connect_failures),
        "elapsed_ms": start.elapsed().as_millis() as u64,
    });
    println!("{line}");
    Ok(())
}
