//! Builds the kernel programs (`ebpf/connlog-ebpf`) for `bpfel-unknown-none`
//! with the pinned nightly toolchain (`ebpf/connlog-ebpf/rust-toolchain.toml`)
//! and bpf-linker, through aya-build; the object lands in
//! `OUT_DIR/connlog-ebpf` and is embedded by `probe::loader`.
//!
//! `cargo xtask setup` installs both. Without them this script stops with
//! one line saying what is missing, before aya-build's own diagnostics.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    // Read at run time, not with `env!`: a build-script binary reused from
    // another checkout (a shared or copied target dir) would otherwise
    // build that checkout's kernel programs.
    let agent = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf = format!("{agent}/../ebpf/connlog-ebpf");
    let common = format!("{agent}/../ebpf/connlog-common");
    let toolchain_file = format!("{ebpf}/rust-toolchain.toml");
    println!("cargo:rerun-if-changed={common}");
    println!("cargo:rerun-if-changed={toolchain_file}");
    let toolchain = pinned_toolchain(Path::new(&toolchain_file))?;
    check_prerequisites(&toolchain)?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "connlog-ebpf",
            root_dir: &ebpf,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}

/// The `channel` of the kernel programs' `rust-toolchain.toml`.
fn pinned_toolchain(file: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .with_context(|| format!("{}: no `channel = \"…\"` line", file.display()))
}

/// The pinned toolchain with its `rust-src`, and a bpf-linker on PATH.
fn check_prerequisites(toolchain: &str) -> anyhow::Result<()> {
    const SETUP: &str = "run `cargo xtask setup`, or by hand";
    let sysroot = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let Some(sysroot) = sysroot else {
        bail!(
            "the kernel programs build with the {toolchain} toolchain, which is not installed: \
             {SETUP}: rustup toolchain install {toolchain} --profile minimal --component rust-src,clippy"
        );
    };
    let library = Path::new(&sysroot).join("lib/rustlib/src/rust/library/Cargo.lock");
    if !library.exists() {
        bail!(
            "the kernel programs need rust-src for {toolchain}, which is not installed: \
             {SETUP}: rustup component add rust-src --toolchain {toolchain}"
        );
    }
    // Its version is xtask's to check (`xtask/src/setup.rs`).
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !linker.is_ok_and(|out| out.status.success()) {
        bail!(
            "the kernel programs link with bpf-linker, which is not on PATH: \
             {SETUP}: cargo install bpf-linker@0.10.4 --locked"
        );
    }
    Ok(())
}
