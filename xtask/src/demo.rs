//! `cargo xtask demo`: the README's "run" command.

use std::process::Command;

use anyhow::Result;

use crate::{setup, shell};

pub fn run() -> Result<()> {
    setup::run()?;
    shell::run(Command::new("cargo").args(["build", "--workspace", "--bins"]))?;
    // Grows with the product: for now the agent only reports its version.
    shell::run(Command::new("target/debug/connlog-agent").arg("--version"))
}
