//! `connlog-collector`: receives connection records from agents over gRPC
//! and writes them to its sinks; `connlog-collector observe` tails them.

mod config;
mod dedup;
mod encoded;
mod filter;
mod format;
mod journal;
mod observe;
mod serve;
mod server;
mod ship;
mod sink;
mod writer;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// connlog collector.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    /// Collector configuration (TOML).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Live tail of the records a collector writes, with filters.
    Observe(Box<observe::ObserveArgs>),
    /// Benchmark baseline: sample records to JSON in one tight loop.
    #[command(hide = true)]
    BenchEncode {
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
    },
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Err(err) = run(args) {
        eprintln!("connlog-collector: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match args.command {
        Some(Command::Observe(o)) => rt.block_on(observe::run(*o)),
        Some(Command::BenchEncode { count }) => {
            format::bench_encode(count);
            Ok(())
        }
        None => {
            let path = args
                .config
                .context("--config <collector.toml> is required")?;
            let cfg = config::Config::load(&path)?;
            rt.block_on(serve::run(cfg))
        }
    }
}
