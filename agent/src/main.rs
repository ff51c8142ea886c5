//! `connlog-agent`: parse the command line and config, start the parts,
//! drain on SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use connlog_agent::config::Config;
use connlog_agent::export::Exporter;
use connlog_agent::join::{self, JoinConfig, JoinStats};
use connlog_agent::tls::Terminator;
use connlog_agent::{Probe, print_json_line};
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

#[tokio::main]
async fn run(args: Args) -> Result<()> {
    let config = Config::load(&args.config).context("loading config")?;
    let terminator = Arc::new(Terminator::load(&config.listeners).context("loading TLS files")?);
    raise_fd_limit();
    // Records: probe + terminator → joiner → exporter.
    let (exporter, export) = Exporter::start(config.export.clone(), config.agent_id.clone());
    let (tcp_tx, tcp_rx) = tokio::sync::mpsc::channel(OUTCOME_CHANNEL);
    let probe = start_probe(&config, args.print_events, tcp_tx)?;
    let distributions = config
        .listeners
        .iter()
        .flat_map(|l| l.bind.iter().map(|a| (a.port(), l.distribution_id.clone())))
        .collect();
    let (join_tx, join_rx) = tokio::sync::mpsc::channel(OUTCOME_CHANNEL);
    let join_cfg = JoinConfig::new(config.agent_id.clone(), probe.is_some(), distributions);
    let join_stop = CancellationToken::new();
    let joiner = tokio::spawn(join::run(
        join_cfg,
        tcp_rx,
        join_rx,
        Arc::new(JoinStats::default()),
        join_stop.clone(),
        move |record| export.send(record),
    ));
    let (tx, mut rx) = tokio::sync::mpsc::channel(OUTCOME_CHANNEL);
    let shutdown = CancellationToken::new();
    let running = terminator
        .start(tx, shutdown.clone())
        .await
        .context("starting listeners")?;
    let print = args.print_events;
    let printer = tokio::spawn(async move {
        while let Some(outcome) = rx.recv().await {
            if print && let Err(e) = print_json_line(&outcome) {
                error!(error = %e, "printing events");
            }
            if join_tx.send(outcome).await.is_err() {
                break;
            }
        }
    });
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
    if tokio::time::timeout(Duration::from_secs(5), printer)
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

/// Starts the kernel probe on the listeners' ports (plus `[probe] ports`);
/// its events are printed with `--print-events` and go to the joiner.
fn start_probe(
    config: &Config,
    print: bool,
    joiner: tokio::sync::mpsc::Sender<connlog_agent::TcpEvent>,
) -> Result<Option<Probe>> {
    if !config.probe.enabled {
        return Ok(None);
    }
    let ports: Vec<u16> = config
        .listeners
        .iter()
        .flat_map(|l| l.bind.iter().map(|a| a.port()))
        .filter(|&port| port != 0)
        .collect();
    let (probe, mut events) =
        Probe::start(&config.probe, &ports).context("starting the kernel probe")?;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if print && let Err(e) = print_json_line(&event) {
                error!(error = %e, "printing events");
            }
            // After shutdown the joiner is gone; events are still printed.
            let _ = joiner.send(event).await;
        }
    });
    Ok(Some(probe))
}
