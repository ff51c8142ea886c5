//! `connlog-agent`: parse the command line and config, start the parts,
//! drain on SIGTERM.

use anyhow::{Context, Result};
use clap::Parser;
use connlog_agent::config::Config;
use connlog_agent::{Probe, print_event};
use tokio::signal::unix::{SignalKind, signal};

/// connlog edge agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Agent configuration (TOML).
    #[arg(long, short)]
    config: Option<std::path::PathBuf>,
    /// Print every event (kernel TcpEvents, TLS outcomes) as a JSON line on
    /// stdout: a debugging aid.
    #[arg(long)]
    print_events: bool,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = tokio::runtime::Runtime::new()
        .context("starting the tokio runtime")
        .and_then(|rt| rt.block_on(run(args)));
    if let Err(err) = result {
        eprintln!("connlog-agent: {err:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::parse("", std::path::Path::new("."))?,
    };
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let (probe, mut tcp_events) =
        Probe::start(&config.probe, &[]).context("starting the kernel probe")?;

    loop {
        tokio::select! {
            Some(event) = tcp_events.recv() => {
                if args.print_events {
                    print_event(&event).context("writing to stdout")?;
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    tracing::info!(stats = ?probe.stats(), "shutting down");
    drop(probe);
    Ok(())
}
