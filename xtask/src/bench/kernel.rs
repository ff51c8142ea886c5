//! `cargo xtask bench kernel`: what the probe costs, measured side by side
//! in one run on loopback inside a throwaway namespace.
//!
//! - TCP connect+accept rate in three configurations, interleaved (the
//!   order rotates every round), medians: detached (no agent); the agent
//!   with only empty programs on the probe's hooks (`[probe] benchmark =
//!   "empty"`: empty classifiers at TC ingress and egress, empty tp_btf
//!   programs on its four tracepoints, attached the same way), the floor
//!   any probe on those hooks pays; and the probe as deployed. bpf stats
//!   off.
//! - Then, in separate attached rounds (`benchmark = "floors"`), each
//!   program's average run time from the kernel's own accounting
//!   (`kernel.bpf_stats_enabled=1`, read from the agent's fdinfo), next to
//!   an empty classifier attached in the same agent on the same interface
//!   and direction (`connlog_tc_empty` at ingress, `connlog_tc_empty_egress`
//!   at egress), and `connlog_tc_syn_update` at ingress: the same flag test
//!   and tuple plus one LRU hash-map update per SYN, the least per-attempt
//!   state in the kernel can cost.
//!
//! The run times are reported per phase: the connect+accept loop, where one
//! packet in four is a SYN (ingress: opens an attempt in the kernel's table)
//! or a SYN-ACK (egress: counted on it), the probe's worst case, and a bulk
//! transfer over the watched port (MTU 1500, one segment per packet), where
//! every packet takes the early-return path, as ordinary traffic does.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use connlog_tests::{Netns, TempDir};

use super::median;
use crate::shell;

const PORT: u16 = 9443;
const ROUNDS: usize = 5;
/// Attached rounds with bpf stats and the empty classifiers, for run times.
const STATS_ROUNDS: usize = 2;
const RUN: Duration = Duration::from_secs(1);
const BULK_BYTES: usize = 64 << 20;
const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// (run_time_ns, run_cnt) per program name, summed over rounds.
type ProgramStats = BTreeMap<String, (u64, u64)>;

/// The two phases of a round.
#[derive(Default)]
struct Phases {
    connect: ProgramStats,
    bulk: ProgramStats,
}

/// Names another agent binary to measure instead of this checkout's
/// release build (A/B comparisons of two builds, run back to back).
const AGENT_ENV: &str = "CONNLOG_BENCH_AGENT";

pub fn run() -> Result<()> {
    if std::env::var_os(AGENT_ENV).is_none() {
        shell::run(Command::new("cargo").args([
            "build",
            "--quiet",
            "--release",
            "--bins",
            "-p",
            "connlog-agent",
        ]))?;
    }
    let previous = std::fs::read_to_string(STATS_SYSCTL).context("reading bpf_stats_enabled")?;
    let result = measure();
    let _ = std::fs::write(STATS_SYSCTL, previous.trim());
    let (rates, programs) = result?;
    print_table(&rates, &programs);
    Ok(())
}

/// The rate configurations, in the order of the table's columns.
#[derive(Clone, Copy)]
enum Setup {
    Detached,
    EmptyHooks,
    Probe,
}

const SETUPS: [Setup; 3] = [Setup::Detached, Setup::EmptyHooks, Setup::Probe];

/// One connect+accept loop: connections per second, and the loop thread's
/// CPU time per connection (ns; on this kernel softirq time, where the TC
/// programs run on loopback, is charged to the interrupted thread). The CPU
/// time resists contention from other processes better than the rate.
#[derive(Clone, Copy, Default)]
struct Loop {
    rate: f64,
    cpu_ns: f64,
}

/// Loops per [`SETUPS`] entry, one per round.
type Rates = [Vec<Loop>; 3];

/// The rates first, with bpf stats off (they add two clock reads to every
/// program run) and nothing but the configuration measured attached. Then
/// [`STATS_ROUNDS`] attached rounds with stats and the floor programs, for
/// the run times.
fn measure() -> Result<(Rates, Phases)> {
    let ns = Netns::new("bench-k")?;
    ns.exec(&[
        "ip",
        "link",
        "set",
        "lo",
        "mtu",
        "1500",
        "gso_max_segs",
        "1",
    ])?;
    let dir = TempDir::new("bench-k")?;
    let config = |name: &str, benchmark: &str| -> Result<std::path::PathBuf> {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[probe]\nports = [{PORT}]\ninterfaces = [\"lo\"]\nbenchmark = \"{benchmark}\"\n"
            ),
        )?;
        Ok(path)
    };
    let deployed = config("agent.toml", "none")?;
    let empty = config("agent-empty.toml", "empty")?;
    let floors = config("agent-floors.toml", "floors")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], PORT));
    let listener = ns.listen(addr)?;
    std::fs::write(STATS_SYSCTL, "0").context("disabling bpf stats (root needed)")?;
    let mut rates: Rates = Default::default();
    for round in 0..ROUNDS {
        for i in 0..SETUPS.len() {
            let slot = (round + i) % SETUPS.len();
            let agent = match SETUPS[slot] {
                Setup::Detached => None,
                Setup::EmptyHooks => Some(ReleaseAgent::start(&ns, &empty, dir.path())?),
                Setup::Probe => Some(ReleaseAgent::start(&ns, &deployed, dir.path())?),
            };
            rates[slot].push(workload(&ns, &listener, addr, None)?.0);
            if let Some(agent) = agent {
                agent.stop()?;
            }
        }
        eprintln!(
            "xtask: round {}/{ROUNDS}: detached {:.0}/s, empty hooks {:.0}/s, probe {:.0}/s",
            round + 1,
            rates[0][round].rate,
            rates[1][round].rate,
            rates[2][round].rate
        );
    }
    std::fs::write(STATS_SYSCTL, "1").context("enabling bpf stats (root needed)")?;
    let mut programs = Phases::default();
    for round in 0..STATS_ROUNDS {
        let agent = ReleaseAgent::start(&ns, &floors, dir.path())?;
        let (_, phases) = workload(&ns, &listener, addr, Some(agent.pid()))?;
        for (sum, phase) in [
            (&mut programs.connect, phases.connect),
            (&mut programs.bulk, phases.bulk),
        ] {
            for (name, (time, count)) in phase {
                let entry = sum.entry(name).or_default();
                entry.0 += time;
                entry.1 += count;
            }
        }
        agent.stop()?;
        eprintln!("xtask: run-time round {}/{STATS_ROUNDS}", round + 1);
    }
    Ok((rates, programs))
}

/// Connect+accept for [`RUN`] (client closes with an RST: no TIME_WAIT),
/// then a bulk transfer. Returns the loop's figures and, with the agent's
/// pid, its programs' run times in each phase.
fn workload(
    ns: &Netns,
    listener: &TcpListener,
    addr: SocketAddr,
    agent: Option<u32>,
) -> Result<(Loop, Phases)> {
    let listener = listener.try_clone()?;
    let snapshot = move || agent.map_or(Ok(ProgramStats::new()), program_stats);
    ns.run_in(move || -> Result<(Loop, Phases)> {
        let at_start = snapshot()?;
        let cpu_start = thread_cpu_ns()?;
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < RUN {
            let client = TcpStream::connect(addr)?;
            let (server, _) = listener.accept()?;
            connlog_tests::reset(client)?;
            drop(server);
            done += 1;
        }
        let rate = done as f64 / start.elapsed().as_secs_f64();
        let cpu_ns = (thread_cpu_ns()? - cpu_start) as f64 / done.max(1) as f64;
        let after_connect = snapshot()?;

        let mut client = TcpStream::connect(addr)?;
        let (mut server, _) = listener.accept()?;
        let reader = std::thread::spawn(move || -> std::io::Result<usize> {
            let mut buf = vec![0u8; 64 << 10];
            let mut total = 0;
            loop {
                match server.read(&mut buf)? {
                    0 => return Ok(total),
                    n => total += n,
                }
            }
        });
        let chunk = vec![0x5au8; 16 << 10];
        for _ in 0..BULK_BYTES / chunk.len() {
            client.write_all(&chunk)?;
        }
        drop(client);
        let got = reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))??;
        anyhow::ensure!(got == BULK_BYTES, "bulk transfer moved {got} bytes");
        let after_bulk = snapshot()?;
        Ok((
            Loop { rate, cpu_ns },
            Phases {
                connect: delta(&after_connect, &at_start),
                bulk: delta(&after_bulk, &after_connect),
            },
        ))
    })?
}

/// CPU time of the calling thread so far, in ns (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("parsing /proc/thread-self/schedstat")
}

fn delta(later: &ProgramStats, earlier: &ProgramStats) -> ProgramStats {
    later
        .iter()
        .map(|(name, &(time, count))| {
            let (t0, c0) = earlier.get(name).copied().unwrap_or_default();
            (
                name.clone(),
                (time.saturating_sub(t0), count.saturating_sub(c0)),
            )
        })
        .collect()
}

/// Run time and count of every BPF program `pid` holds, by name.
fn program_stats(pid: u32) -> Result<ProgramStats> {
    let mut out = ProgramStats::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let (Some(id), Some(time), Some(count)) =
            (field("prog_id:"), field("run_time_ns:"), field("run_cnt:"))
        else {
            continue;
        };
        let name = program_name(id)?;
        let entry = out.entry(name).or_default();
        entry.0 += time;
        entry.1 += count;
    }
    Ok(out)
}

fn program_name(id: u64) -> Result<String> {
    let json =
        shell::output(Command::new("bpftool").args(["prog", "show", "id", &id.to_string(), "-j"]))
            .context("bpftool prog show")?;
    let v: serde_json::Value = serde_json::from_str(&json)?;
    Ok(v["name"].as_str().unwrap_or("?").to_string())
}

/// The connect rate with the probe attached must stay within this share
/// (percent) of the detached rate.
const RATE_GOAL: f64 = 97.0;

fn print_table(rates: &Rates, programs: &Phases) {
    let of = |i: usize, f: fn(&Loop) -> f64| {
        median(&rates[i].iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
    };
    let [d, e, p] = [0, 1, 2].map(|i| of(i, |l| l.rate));
    let [dc, ec, pc] = [0, 1, 2].map(|i| of(i, |l| l.cpu_ns));
    let pct = |x: f64| if d > 0.0 { 100.0 * x / d } else { 0.0 };
    // By CPU: the share of detached's rate the CPU time per connection allows.
    let by_cpu = |x: f64| if x > 0.0 { 100.0 * dc / x } else { 0.0 };
    println!(
        "\nkernel probe on loopback: {ROUNDS} interleaved rounds of {}s connect+accept \
         + {} MiB bulk, medians (bpf stats off)",
        RUN.as_secs(),
        BULK_BYTES >> 20
    );
    println!(
        "{:<28} {:>12} {:>20} {:>20}",
        "", "detached", "empty on the hooks", "connlog"
    );
    println!(
        "{:<28} {:>12.0} {:>12.0} {:>6.1}% {:>12.0} {:>6.1}%",
        "connect+accept per second",
        d,
        e,
        pct(e),
        p,
        pct(p)
    );
    println!(
        "{:<28} {:>12.0} {:>12.0} {:>6.1}% {:>12.0} {:>6.1}%",
        "loop CPU ns per connection",
        dc,
        ec,
        by_cpu(ec),
        pc,
        by_cpu(pc)
    );
    let floor_cost = (100.0 - pct(e), 100.0 - by_cpu(ec));
    if pct(e) < RATE_GOAL {
        println!(
            "floor: empty programs on the probe's hooks alone cost {:.1}% of the rate \
             ({:.1}% by CPU), more than {:.0}%: a rate >= {RATE_GOAL:.0}% of detached is \
             unreachable on this machine by construction",
            floor_cost.0,
            floor_cost.1,
            100.0 - RATE_GOAL
        );
    } else {
        println!(
            "floor: empty programs on the probe's hooks cost {:.1}% of the rate ({:.1}% by CPU)",
            floor_cost.0, floor_cost.1
        );
    }
    let avg = |(time, count): (u64, u64)| {
        if count == 0 {
            0.0
        } else {
            time as f64 / count as f64
        }
    };
    // Each program is compared with the empty program on its own hook: the
    // empty classifier of its direction (ingress and egress runs do not cost
    // the same), or the empty tp_btf program on its tracepoint.
    let floor = |stats: &ProgramStats, program: &str| {
        floor_of(program)
            .and_then(|empty| stats.get(empty.as_str()).copied())
            .map_or(0.0, avg)
    };
    println!(
        "\n{:<24} {:>27} {:>27}",
        format!("avg ns/run, {STATS_ROUNDS} rounds"),
        "connect+accept phase",
        "bulk phase"
    );
    println!(
        "{:<24} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7}",
        "program", "runs", "ns/run", "x empty", "runs", "ns/run", "x empty"
    );
    let ratio = |ns: f64, floor: f64| {
        if floor > 0.0 {
            format!("{:.2}", ns / floor)
        } else {
            "-".to_string()
        }
    };
    for (name, &connect) in &programs.connect {
        let bulk = programs.bulk.get(name).copied().unwrap_or_default();
        if connect.1 == 0 && bulk.1 == 0 {
            // Loaded, never attached here (the L3 variants on loopback).
            continue;
        }
        let (nc, nb) = (avg(connect), avg(bulk));
        println!(
            "{name:<24} {:>9} {nc:>9.1} {:>7} {:>9} {nb:>9.1} {:>7}",
            connect.1,
            ratio(nc, floor(&programs.connect, name)),
            bulk.1,
            ratio(nb, floor(&programs.bulk, name))
        );
    }
}

/// The empty program on `program`'s hook (itself for an empty one).
fn floor_of(program: &str) -> Option<String> {
    let hook = program.strip_prefix("connlog_")?;
    if hook.starts_with("tc_") {
        let egress = hook.contains("egress");
        return Some(
            if egress {
                "connlog_tc_empty_egress"
            } else {
                "connlog_tc_empty"
            }
            .into(),
        );
    }
    let hook = hook.strip_prefix("empty_").unwrap_or(hook);
    Some(format!("connlog_empty_{hook}"))
}

/// The release-built agent in `ns`, as deployed (the tests use the debug
/// build; a benchmark should not).
struct ReleaseAgent {
    child: Child,
}

impl ReleaseAgent {
    fn start(ns: &Netns, config: &Path, dir: &Path) -> Result<Self> {
        let bin = std::env::var_os(AGENT_ENV).map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/connlog-agent"),
            std::path::PathBuf::from,
        );
        let log_path = dir.join("agent.log");
        let log = std::fs::File::create(&log_path)?;
        let child = ns
            .command(&bin)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut agent = ReleaseAgent { child };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("connlog-agent ready") {
                return Ok(agent);
            }
            if agent.child.try_wait()?.is_some() || Instant::now() > deadline {
                anyhow::bail!("agent did not start: {text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) -> Result<()> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(sent.success(), "kill -TERM failed");
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "agent exited with {status}");
        Ok(())
    }
}

impl Drop for ReleaseAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
