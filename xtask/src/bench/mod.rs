//! `cargo xtask bench <what>`: side-by-side comparisons in one run, printed
//! as a table (numbers for `docs/benchmarks.md`). Benchmarks, not tests.

use anyhow::Result;
use clap::Subcommand;

mod function;
mod kernel;
mod pipeline;
mod tls;
mod tls_ab;
mod tls_cpu;
mod tls_table;
mod tls_targets;

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// eBPF probe overhead: connect rate attached vs detached, per-program run time.
    Kernel,
    /// mTLS terminator: connlog vs nginx vs HAProxy (with
    /// `CONNLOG_BENCH_TLS_B=<agent binary>`: an A/B of two agent builds).
    Tls,
    /// Records through joiner → exporter → gRPC → collector → file.
    Pipeline,
    /// Handshakes with and without a connection function.
    Function,
}

pub fn run(bench: Bench) -> Result<()> {
    crate::setup::run()?;
    match bench {
        Bench::Function => function::run(),
        Bench::Kernel => kernel::run(),
        Bench::Tls => tls::run(),
        Bench::Pipeline => pipeline::run(),
    }
}
