//! Installs what a fresh machine lacks. Every check is cheap, so running it
//! before each task costs nothing once the machine is set up.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::shell;

/// Names the nightly that builds the kernel programs (agent/build.rs reads
/// it too). Relative to the workspace root, where `cargo xtask` runs.
const EBPF_TOOLCHAIN_FILE: &str = "ebpf/connlog-ebpf/rust-toolchain.toml";

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
    ebpf_toolchain()?;
    bpf_linker()?;
    debian_packages(DEBIAN_PACKAGES)?;
    python_packages(PYTHON_PACKAGES)?;
    Ok(())
}

/// What the kernel matrix needs: qemu, virtme-ng and what it runs in the
/// VM (busybox for its init, kmod for modprobe), depmod for the kernel
/// packages' modules.
pub fn vm_tools() -> Result<()> {
    debian_packages(&["qemu-system-x86", "kmod", "busybox-static"])?;
    python_packages(&[("virtme_ng", "virtme-ng==1.42")])
}

/// The kernel programs' pinned nightly, from the file that names it.
pub fn ebpf_toolchain_name() -> Result<String> {
    let text = std::fs::read_to_string(EBPF_TOOLCHAIN_FILE)
        .with_context(|| format!("reading {EBPF_TOOLCHAIN_FILE}"))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .next()
        .with_context(|| format!("{EBPF_TOOLCHAIN_FILE}: no `channel = \"…\"` line"))
}

/// The pinned nightly with rust-src (build-std) and clippy (`.ci/run`'s
/// lint of the kernel programs on their own target).
fn ebpf_toolchain() -> Result<()> {
    let toolchain = ebpf_toolchain_name()?;
    let installed = shell::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        &toolchain,
        "--installed",
    ]))
    .unwrap_or_default();
    let has = |component: &str| installed.lines().any(|l| l.starts_with(component));
    if has("rustc") && has("rust-src") && has("clippy") {
        return Ok(());
    }
    let components = "rust-src,clippy";
    shell::run(Command::new("rustup").args([
        "toolchain",
        "install",
        &toolchain,
        "--profile",
        "minimal",
        "--component",
        components,
    ]))
    .with_context(|| {
        format!(
            "installing {toolchain} with {components} for the kernel programs; by hand: \
             rustup toolchain install {toolchain} --profile minimal --component {components}"
        )
    })
}

fn bpf_linker() -> Result<()> {
    let version = shell::output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    let package = format!("bpf-linker@{BPF_LINKER_VERSION}");
    shell::run(Command::new("cargo").args(["install", &package, "--locked", "--force"]))
        .with_context(|| format!("installing {package}; by hand: cargo install {package} --locked"))
}

fn debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let by_hand = format!("apt-get install {}", missing.join(" "));
    if !shell::running_as_root() {
        bail!("missing Debian packages, and not root to install them; as root: {by_hand}");
    }
    // Another apt (unattended upgrades on a new machine) may hold dpkg's
    // lock for a while: wait for it rather than fail.
    let lock_wait = "DPkg::Lock::Timeout=300";
    shell::run(Command::new("apt-get").args(["-o", lock_wait, "update", "-q"]))
        .and_then(|()| {
            shell::run(
                Command::new("apt-get")
                    .args(["-o", lock_wait, "install", "-y", "-q"])
                    .arg("--no-install-recommends")
                    .args(&missing)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )
        })
        .with_context(|| format!("installing Debian packages; by hand: {by_hand}"))
}

fn dpkg_installed(package: &str) -> bool {
    shell::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn python_packages(packages: &[(&str, &str)]) -> Result<()> {
    for (module, requirement) in packages {
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
        ]))
        .with_context(|| {
            format!(
                "installing Python's {requirement}; by hand: python3 -m pip install {requirement}"
            )
        })?;
    }
    Ok(())
}
