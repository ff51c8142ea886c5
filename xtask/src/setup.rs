//! Installs what a fresh machine lacks. Every check is cheap, so running it
//! before each task costs nothing once the machine is set up.

use std::process::Command;

use anyhow::Result;

use crate::shell;

/// bpf-linker ≥ 0.11 needs a system LLVM that Debian does not ship; 0.10.4
/// loads rustc's own LLVM (DESIGN.md).
const BPF_LINKER_VERSION: &str = "0.10.4";

/// Debian packages the tests and benchmarks use as independent peers and tools.
const DEBIAN_PACKAGES: &[&str] = &[
    "bpftool",
    "iproute2",
    "iputils-ping",
    "python3",
    "nftables",
    "hping3",
    "openssl",
    "nginx-light",
    "libnginx-mod-stream",
    "haproxy",
    // The C compiler for ring, rquickjs-sys and aws-lc-sys (the agent's TLS
    // crypto): aws-lc-sys builds with its cc builder and pregenerated
    // bindings on Linux x86_64/aarch64, so no cmake, clang, Go or NASM.
    "gcc",
    "libc6-dev",
];

/// Python packages the tests use (pinned).
const PYTHON_PACKAGES: &[(&str, &str)] = &[
    ("scapy", "scapy==2.8.0"),
    // Independent Parquet reader for the collector's Parquet output.
    ("pyarrow", "pyarrow==25.0.1"),
];

pub fn run() -> Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    python_packages()?;
    Ok(())
}

fn nightly_rust_src() -> Result<()> {
    let installed = shell::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    // rust-src for build-std; clippy for `.ci/run`'s lint of the kernel
    // programs on their own target.
    for component in ["rust-src", "clippy"] {
        if installed.lines().any(|l| l.starts_with(component)) {
            continue;
        }
        // `component add`, not `toolchain install`: the latter would update
        // the preinstalled nightly, whose LLVM bpf-linker 0.10.4 is built
        // against.
        shell::run(Command::new("rustup").args([
            "component",
            "add",
            component,
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let version = shell::output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    shell::run(Command::new("cargo").args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
        "--force",
    ]))
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    shell::run(Command::new("apt-get").arg("update").arg("-q"))?;
    shell::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn dpkg_installed(package: &str) -> bool {
    shell::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn python_packages() -> Result<()> {
    for (module, requirement) in PYTHON_PACKAGES {
        if shell::succeeds(Command::new("python3").args(["-c", &format!("import {module}")])) {
            continue;
        }
        shell::run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ]))?;
    }
    Ok(())
}
