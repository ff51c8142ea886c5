//! `CONNLOG_BENCH_TLS_B=/path/to/connlog-agent cargo xtask bench tls`: an
//! A/B of two agent builds instead of the table. A is this checkout's
//! release build, B the named binary (e.g. a copy of an earlier build).
//!
//! Same listener config as the "probe/export off" row (with
//! `CONNLOG_BENCH_TLS_AB_PROBE=1`: as the "probe on" row; both agents'
//! programs then see every packet on `lo`), same loader, echo
//! upstream and pinning (both agents on core 0, each in a cgroup v2 of its
//! own; loader and echo on core 1). Both pass `connlog-loadgen check`,
//! get a 1 s warm-up, then alternate rounds of 3 s at concurrency 64 (A
//! first in odd rounds, B first in even ones). CPU per handshake is the
//! cgroup's `usage_usec` over the round divided by its handshakes; the
//! ratio B/A is taken per round (pairs run seconds apart see the same
//! background load).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::median;
use super::tls::workspace;
use super::tls::{Running, check, load, spawn_target, wait_port};
use super::tls_cpu::Cgroup;
use super::tls_targets::{PROBE_OFF, PROBE_ON, connlog_bin};

pub(super) const B_ENV: &str = "CONNLOG_BENCH_TLS_B";
const PROBE_ENV: &str = "CONNLOG_BENCH_TLS_AB_PROBE";
const ROUNDS: usize = 8;
const ROUND_SECS: f64 = 3.0;

struct Agent {
    name: &'static str,
    addr: SocketAddr,
    running: Running,
    usec_per_hs: Vec<f64>,
}

impl Agent {
    fn usage_usec(&self) -> Result<u64> {
        self.running
            .cgroup
            .as_ref()
            .and_then(Cgroup::usage_usec)
            .context("cpu.stat")
    }
}

pub(super) fn run(dir: &Path, pki: &Path, b: PathBuf) -> Result<()> {
    let a = workspace().join("target/release/connlog-agent");
    let probe = std::env::var(PROBE_ENV).is_ok_and(|v| v == "1");
    let section = if probe { PROBE_ON } else { PROBE_OFF };
    eprintln!(
        "xtask: bench tls A/B: probe {}",
        if probe { "on" } else { "off" }
    );
    let mut agents = Vec::new();
    for (name, bin, port) in [("A", a, 28461u16), ("B", b, 28462)] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let work = dir.join(format!("ab-{name}"));
        std::fs::create_dir_all(&work)?;
        let cmd = connlog_bin(&bin, &work, addr, section)?;
        let running = spawn_target(&cmd, &format!("ab-{name}"), &work.join("stderr.log"))?;
        if running.cgroup.is_none() {
            bail!("A/B needs a writable cgroup v2 (CPU is read from it)");
        }
        wait_port(addr)?;
        check(addr, pki).with_context(|| format!("{name}: {}", bin.display()))?;
        eprintln!("xtask: bench tls A/B: {name} = {}", bin.display());
        load(addr, pki, 64, 1.0)?; // warm-up
        agents.push(Agent {
            name,
            addr,
            running,
            usec_per_hs: Vec::new(),
        });
    }
    for round in 0..ROUNDS {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let agent = &mut agents[i];
            let before = agent.usage_usec()?;
            let report = load(agent.addr, pki, 64, ROUND_SECS)?;
            let after = agent.usage_usec()?;
            if report.errors > 0 || report.handshakes == 0 {
                bail!(
                    "{}: {} errors, {} handshakes",
                    agent.name,
                    report.errors,
                    report.handshakes
                );
            }
            agent
                .usec_per_hs
                .push(after.saturating_sub(before) as f64 / report.handshakes as f64);
        }
        println!(
            "round {}: A {:.1} µs/handshake, B {:.1} µs/handshake",
            round + 1,
            agents[0].usec_per_hs[round],
            agents[1].usec_per_hs[round]
        );
    }
    let ratios: Vec<f64> = agents[1]
        .usec_per_hs
        .iter()
        .zip(&agents[0].usec_per_hs)
        .map(|(b, a)| b / a)
        .collect();
    let median = |v: &[f64]| median(v).unwrap_or(0.0);
    println!(
        "A: mean {:.1} median {:.1} µs | B: mean {:.1} median {:.1} µs | B/A per round: mean {:.3} (sd {:.3}), median {:.3}",
        mean(&agents[0].usec_per_hs),
        median(&agents[0].usec_per_hs),
        mean(&agents[1].usec_per_hs),
        median(&agents[1].usec_per_hs),
        mean(&ratios),
        sd(&ratios),
        median(&ratios),
    );
    Ok(())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn sd(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64).sqrt()
}
