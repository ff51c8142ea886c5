//! `cargo xtask test`: set up, build every binary, run every test.

use std::process::Command;

use anyhow::Result;

use crate::{kernels, setup, shell};

pub fn run(cargo_args: &[String]) -> Result<()> {
    setup::run()?;
    if !shell::running_as_root() {
        eprintln!(
            "xtask: warning: not root; the kernel and namespace tests need root and will fail"
        );
    }
    // The end-to-end tests start the real binaries: build them first.
    shell::run(Command::new("cargo").args(["build", "--workspace", "--bins"]))?;
    shell::run(
        Command::new("cargo")
            .args(["test", "--workspace"])
            .args(cargo_args),
    )
}

/// `--kernel <line>`: the kernel matrix's tests in a VM per kernel, one
/// after the other; every kernel runs even when one fails.
pub fn kernels(line: &str) -> Result<()> {
    let chosen: Vec<_> = match line {
        "all" => kernels::KERNELS.iter().collect(),
        line => vec![kernels::find(line)?],
    };
    let mut failed = Vec::new();
    for kernel in chosen {
        if let Err(e) = kernels::test(kernel) {
            eprintln!("xtask: {e:#}");
            failed.push(kernel.line);
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "the kernel matrix failed on Linux {}",
        failed.join(", ")
    );
    Ok(())
}
