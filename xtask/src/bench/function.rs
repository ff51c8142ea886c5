//! `cargo xtask bench function`: the connection-function engine through
//! its real worker pool (release build), allow-only vs the KVS revocation
//! function, calls/s and execution-time p50/p99.

use std::process::Command;

use anyhow::Result;

use crate::shell;

pub fn run() -> Result<()> {
    shell::run(Command::new("cargo").args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "connlog-agent",
        "--example",
        "function_bench",
    ]))
}
