//! `cargo xtask test --kernel <line>`: the kernel and end-to-end tests in a
//! VM running a Debian stock kernel (virtme-ng on qemu, with the host's root
//! filesystem, so the binaries built here run there unchanged).
//!
//! The kernel package comes from Debian's package registry (`fetch`); the
//! VM runs the tests that `docs/kernels.md` promises for every kernel line
//! (`MATRIX`), each test binary once, and leaves its logs under
//! `target/kernels/run/`.

mod fetch;
mod vm;

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{setup, shell};

/// A Debian kernel the matrix boots.
pub(crate) struct DebianKernel {
    /// What `--kernel` takes.
    pub(crate) line: &'static str,
    pub(crate) suite: &'static str,
    /// `uname -r`.
    pub(crate) release: &'static str,
    pub(crate) package: &'static str,
}

/// Debian 11, 12 and 13: what edge hosts run.
pub(crate) const KERNELS: [DebianKernel; 3] = [
    DebianKernel {
        line: "5.10",
        suite: "bullseye",
        release: "5.10.0-32-amd64",
        package: "linux-image-5.10.0-32-amd64-unsigned",
    },
    DebianKernel {
        line: "6.1",
        suite: "bookworm",
        release: "6.1.0-50-amd64",
        package: "linux-image-6.1.0-50-amd64-unsigned",
    },
    DebianKernel {
        line: "6.12",
        suite: "trixie",
        release: "6.12.117+deb13-amd64",
        package: "linux-image-6.12.117+deb13-amd64-unsigned",
    },
];

/// The tests each VM runs: (test target, test names). Under TCG a VM runs
/// about ten times slower than the host, so these are the cases every
/// kernel line must get right, not the whole suite.
pub(crate) const MATRIX: &[(&str, &[&str])] = &[
    (
        "probe_tcp",
        &[
            "connect_gives_one_established_with_the_accepted_cookie",
            "connect_v6_gives_one_established_with_the_accepted_cookie",
            "unanswered_syn_ack_gives_one_timeout",
            "client_rst_in_syn_recv_is_tcp_error",
            "client_rst_in_syn_recv_v6_is_tcp_error",
            "accept_queue_overflow_is_tcp_error",
            "abort_on_overflow_is_server_rst_with_the_kernel_reason",
            "client_reset_after_handshake_is_visible_with_the_cookie",
            "unwatched_ports_give_no_events",
            "syn_to_a_port_without_listener_is_server_rst",
        ],
    ),
    (
        "probe_lifecycle",
        &[
            "sigterm_detaches_everything_and_a_restart_works",
            "a_failed_start_leaves_nothing_attached",
        ],
    ),
    // Through the real collector: Success, a certificate failure, an RST
    // during TLS, a client RST in SYN_RECV and an unanswered SYN-ACK, IPv4
    // and IPv6, each one record joined with its kernel half.
    // (`pipeline_statuses` has every status, but its connection function's
    // 5 ms limit does not hold under emulation.)
    (
        "pipeline_agent",
        &["kernel_and_tls_halves_join_into_one_record_per_attempt_v4_and_v6"],
    ),
];

pub(crate) fn find(line: &str) -> Result<&'static DebianKernel> {
    KERNELS.iter().find(|k| k.line == line).with_context(|| {
        let known: Vec<&str> = KERNELS.iter().map(|k| k.line).collect();
        format!("no kernel line {line:?}: known are {}", known.join(", "))
    })
}

/// Builds the binaries and the matrix's test executables, then runs them in
/// a VM booted with `kernel`.
pub(crate) fn test(kernel: &DebianKernel) -> Result<()> {
    setup::run()?;
    setup::vm_tools()?;
    let image = fetch::kernel(kernel)?;
    shell::run(Command::new("cargo").args(["build", "--workspace", "--bins"]))?;
    let executables = test_executables()?;
    let runs = MATRIX
        .iter()
        .map(|&(target, names)| {
            let exe = executables
                .iter()
                .find(|(t, _)| t == target)
                .map(|(_, path)| path.clone())
                .with_context(|| format!("no test executable for {target}"))?;
            Ok(vm::TestRun { target, exe, names })
        })
        .collect::<Result<Vec<_>>>()?;
    let failed = vm::run_tests(kernel, &image, &runs)?;
    if !failed.is_empty() {
        bail!(
            "on Linux {} ({}): {} failed",
            kernel.line,
            kernel.release,
            failed.join(", ")
        );
    }
    println!(
        "xtask: Linux {} ({}): every test passed",
        kernel.line, kernel.release
    );
    Ok(())
}

/// (test target, executable) of the connlog-tests integration tests,
/// built now.
fn test_executables() -> Result<Vec<(String, std::path::PathBuf)>> {
    let build = || {
        let mut cmd = Command::new("cargo");
        cmd.args(["test", "-p", "connlog-tests", "--no-run"]);
        for (target, _) in MATRIX {
            cmd.args(["--test", target]);
        }
        cmd
    };
    shell::run(&mut build())?;
    // Built now: this only lists them.
    let out = shell::output(build().arg("--message-format=json"))
        .context("listing the matrix's test executables")?;
    let mut found = Vec::new();
    for line in out.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(exe), Some(name)) =
            (msg["executable"].as_str(), msg["target"]["name"].as_str())
        {
            found.push((name.to_owned(), exe.into()));
        }
    }
    Ok(found)
}
