//! `cargo xtask …`: everything a developer or CI runs, each step installing
//! what it needs first.

mod bench;
mod codegen;
mod demo;
mod kernels;
mod setup;
mod shell;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "connlog developer tasks")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what this machine lacks: the kernel programs' pinned nightly
    /// with rust-src, bpf-linker, the Debian and Python packages the tests
    /// use. Idempotent.
    Setup,
    /// Regenerate the checked-in protobuf code in `proto/src/gen/`.
    Codegen,
    /// Run a benchmark and print its comparison table.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Set up, build everything and show connlog working end to end.
    Demo,
    /// Set up, build everything, and run every test (as root: tests load eBPF
    /// programs and create network namespaces).
    Test {
        /// Run the kernel matrix's tests in a VM booting this Debian kernel
        /// (5.10, 6.1, 6.12, or `all` for the three) instead of every test
        /// on this machine's kernel.
        #[arg(long)]
        kernel: Option<String>,
        /// Extra arguments passed to `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        cargo_args: Vec<String>,
    },
}

fn main() {
    let args = Args::parse();
    let result: Result<()> = match args.task {
        Task::Setup => setup::run(),
        Task::Codegen => codegen::run(),
        Task::Demo => demo::run(),
        Task::Bench(b) => bench::run(b),
        Task::Test {
            kernel: Some(line),
            cargo_args,
        } if cargo_args.is_empty() => test::kernels(&line),
        Task::Test {
            kernel: Some(_), ..
        } => Err(anyhow::anyhow!(
            "--kernel runs the kernel matrix's own tests; it takes no cargo arguments"
        )),
        Task::Test {
            kernel: None,
            cargo_args,
        } => test::run(&cargo_args),
    };
    if let Err(err) = result {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}
