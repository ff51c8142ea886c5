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

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[0.3, 0.1, 0.2]), Some(0.2));
        assert_eq!(median(&[0.4, 0.1, 0.2, 0.3]), Some(0.25));
        assert_eq!(median(&[]), None);
    }
}
