//! `connlog-agent`: parse the command line and config, do the privileged
//! part, drop privileges, start the parts, drain on SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use connlog_agent::config::Config;
use connlog_agent::export::Exporter;
use connlog_agent::join::{self, Distributions, JoinConfig, JoinStats};
use connlog_agent::tls::{self, Terminator};
use connlog_agent::{LoadedProbe, Missing, Probe, print_json_line};
use connlog_agent::{metrics, privileges};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// How long open connections may take to finish after SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// Outcomes buffered between the terminator and their consumer.
const OUTCOME_CHANNEL: usize = 8192;

/// connlog edge agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Agent configuration (TOML).
    #[arg(long, short)]
    config: PathBuf,
    /// Print every event (TLS outcomes, kernel events) as a JSON line on stdout.
    #[arg(long)]
    print_events: bool,
}

/// mimalloc instead of glibc's malloc: the joiner and exporter allocate and
/// free several strings per record (−19 % CPU per record on the agent side
/// of `cargo xtask bench pipeline`); handshakes neither gain nor lose, and
/// an idle proxied connection holds ≈ 0.7 KiB more (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    if let Err(err) = run(args) {
        eprintln!("connlog-agent: {err:#}");
        std::process::exit(1);
    }
}

/// The privileged part first, on the process's only thread: load and
/// attach the probe, bind every listener. Then give up every capability,
/// and only then start threads (function pool, tokio runtime), which
/// inherit the empty sets.
fn run(args: Args) -> Result<()> {
    let config = Config::load(&args.config).context("loading config")?;
    // One provider for the whole process: the terminator passes it
    // explicitly, tonic's TLS to the collector takes the default.
    tls::install_crypto_provider().map_err(anyhow::Error::msg)?;
    let probe = load_probe(&config)?;
    let bound = tls::bind(&config.listeners).context("starting listeners")?;
    let metrics = match config.metrics.listen {
        Some(addr) => {
            Some(metrics::bind(addr).with_context(|| format!("binding metrics.listen {addr}"))?)
        }
        None => None,
    };
    let keep = probe.as_ref().map(LoadedProbe::keeps).unwrap_or_default();
    privileges::drop_all_but(&keep).context("dropping privileges")?;
    // Read with the rights a SIGHUP reload has.
    let terminator = Arc::new(Terminator::load(&config.listeners).context("loading TLS files")?);
    raise_fd_limit();
    // One CPU to run on (e.g. pinned with taskset): the single-threaded
    // scheduler, which has no cross-thread wake-ups or work stealing to pay
    // for; otherwise one worker per CPU.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let runtime = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .context("starting the tokio runtime")?;
    let scheduler = if one_cpu {
        "current_thread"
    } else {
        "multi_thread"
    };
    info!(scheduler, "tokio runtime");
    runtime.block_on(serve(
        args.print_events,
        config,
        probe,
        bound,
        metrics,
        terminator,
    ))
}

async fn serve(
    print: bool,
    config: Config,
    probe: Option<LoadedProbe>,
    bound: tls::Bound,
    metrics: Option<metrics::Endpoint>,
    terminator: Arc<Terminator>,
) -> Result<()> {
    // Records: probe + terminator → joiner → exporter.
    let (exporter, export) = Exporter::start(config.export.clone(), config.agent_id.clone());
    let (probe, tcp_rx) = match probe {
        Some(p) => {
            let (probe, events) = start_probe(p, print);
            (Some(probe), events)
        }
        // No kernel events: the joiner's input is closed from the start.
        None => (None, tokio::sync::mpsc::channel(1).1),
    };
    let distributions = Distributions::new(
        config
            .listeners
            .iter()
            .flat_map(|l| l.bind.iter().map(|&a| (a, l.distribution_id.clone()))),
    );
    let (join_tx, join_rx) = tokio::sync::mpsc::channel(OUTCOME_CHANNEL);
    let mut join_cfg = JoinConfig::new(config.agent_id.clone(), probe.is_some(), distributions);
    join_cfg.tuple_only = probe
        .as_ref()
        .is_some_and(|p| p.missing().contains(&Missing::SocketCookie));
    let join_stop = CancellationToken::new();
    let join_stats = Arc::new(JoinStats::default());
    let records = Arc::new(metrics::StatusCounts::default());
    let counted = records.clone();
    let joiner = tokio::spawn(join::run(
        join_cfg,
        tcp_rx,
        join_rx,
        join_stats.clone(),
        join_stop.clone(),
        move |record| {
            counted.count(&record);
            export.send(record);
        },
    ));
    // Outcomes go straight to the joiner; with `--print-events` through a
    // printer task first (one more hop per connection only then).
    let (tx, printer) = if print {
        let (tx, mut rx) = tokio::sync::mpsc::channel(OUTCOME_CHANNEL);
        let printer = tokio::spawn(async move {
            while let Some(outcome) = rx.recv().await {
                if let Err(e) = print_json_line(&outcome) {
                    error!(error = %e, "printing events");
                }
                if join_tx.send(outcome).await.is_err() {
                    break;
                }
            }
        });
        (tx, Some(printer))
    } else {
        (join_tx, None)
    };
    let shutdown = CancellationToken::new();
    let running = terminator
        .serve(bound, tx, shutdown.clone())
        .context("starting listeners")?;
    if let Some(endpoint) = metrics {
        let sources = metrics::Sources {
            probe: probe.as_ref().map(Probe::stats_source),
            tls: terminator.counters(),
            functions: connlog_agent::function::running_pool(),
            join: join_stats,
            export: exporter.stats(),
            records,
        };
        tokio::spawn(endpoint.serve(sources, shutdown.clone()));
    }
    // Handlers first: "ready" promises that SIGHUP / SIGTERM are handled.
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    info!("connlog-agent ready");
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match terminator.reload() {
                Ok(()) => info!("reloaded certificates, trust stores and CRLs"),
                Err(e) => error!(error = %e, "reload failed; keeping the previous configuration"),
            },
        }
    }
    info!("shutting down: no new connections");
    let drained = running.shutdown(DRAIN_GRACE).await;
    if !drained {
        info!("drain deadline passed; closing the remaining connections");
    }
    drop(terminator);
    if let Some(probe) = probe {
        info!(stats = ?probe.stats(), "detaching the kernel probe");
        drop(probe);
    }
    // Outcomes of the drained connections are still printed and joined.
    if let Some(printer) = printer
        && tokio::time::timeout(Duration::from_secs(5), printer)
            .await
            .is_err()
    {
        info!("outcome printer did not finish");
    }
    join_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(5), joiner)
        .await
        .is_err()
    {
        error!("joiner did not finish; its pending records are lost");
    }
    let report = exporter.shutdown().await;
    info!(
        acked = report.acked,
        not_sent = report.not_sent,
        "exporter stopped"
    );
    Ok(())
}

/// Raises the soft open-file limit to the hard limit: every connection
/// holds one descriptor (two while proxied), and the usual soft default of
/// 1024 would refuse connections (`accept` → EMFILE) long before an edge
/// host runs out of memory.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current >= limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => info!(from = ?limit.current, to = ?limit.maximum, "raised the open-file limit"),
        Err(e) => warn!(error = %e, limit = ?limit.current, "could not raise the open-file limit"),
    }
}

/// Loads and attaches the kernel probe on the listeners' ports (plus
/// `[probe] ports`); `None` when the probe is off.
fn load_probe(config: &Config) -> Result<Option<LoadedProbe>> {
    if !config.probe.enabled {
        return Ok(None);
    }
    let ports: Vec<u16> = config
        .listeners
        .iter()
        .flat_map(|l| l.bind.iter().map(|a| a.port()))
        .filter(|&port| port != 0)
        .collect();
    Probe::load(&config.probe, &ports)
        .map(Some)
        .context("starting the kernel probe")
}

/// Starts reading the probe's events. They go straight to the joiner; with
/// `--print-events` through a printer task first (one more hop per event
/// only then).
fn start_probe(
    probe: LoadedProbe,
    print: bool,
) -> (Probe, tokio::sync::mpsc::Receiver<connlog_agent::TcpEvent>) {
    let (probe, mut events) = probe.start();
    if !print {
        return (probe, events);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(OUTCOME_CHANNEL);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Err(e) = print_json_line(&event) {
                error!(error = %e, "printing events");
            }
            // After shutdown the joiner is gone; events are still printed.
            let _ = tx.send(event).await;
        }
    });
    (probe, rx)
}
