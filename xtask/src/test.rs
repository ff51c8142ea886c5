//! `cargo xtask test`: set up, build every binary, run every test.

use std::process::Command;

use anyhow::Result;

use crate::{setup, shell};

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
