//! `connlog-agent`: parse the command line and config, start the parts,
//! drain on SIGTERM.

use anyhow::Result;
use clap::Parser;

/// connlog edge agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Agent configuration (TOML).
    #[arg(long, short)]
    config: Option<std::path::PathBuf>,
}

fn main() -> Result<()> {
    let _args = Args::parse();
    anyhow::bail!("connlog-agent: nothing to run yet")
}
