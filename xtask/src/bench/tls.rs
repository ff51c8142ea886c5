//! `cargo xtask bench tls`: connlog vs nginx (stream, `ssl_verify_client
//! on`) vs HAProxy (`mode tcp`, `verify required`) with the same
//! certificates, loader (`connlog-loadgen`), echo upstream and CPU pinning:
//! the target on core 0, loader and upstream on core 1. Loopback only.
//!
//! Per target: handshakes/s and p50/p99 connect→first echoed byte at
//! concurrency 64 and 1, the target's CPU time per handshake (from
//! /proc/<pid>/stat), and RSS per idle proxied connection at 1k
//! connections.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::tls_targets::{Collector, connlog_all, connlog_off, connlog_probe, haproxy, nginx};
use crate::shell;

pub(super) const ECHO: &str = "127.0.0.1:29000";
const SECS: f64 = 5.0;
const IDLE: usize = 1000;

struct Target {
    name: &'static str,
    addr: SocketAddr,
    start: fn(&Path, SocketAddr) -> Result<Command>,
    /// A log line proving the configuration is in force; without it the
    /// row is skipped rather than mislabelled.
    requires_log: Option<&'static str>,
}

pub fn run() -> Result<()> {
    shell::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "connlog-agent",
        "--bin",
        "connlog-agent",
    ]))?;
    shell::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "connlog-tests",
        "--bin",
        "connlog-loadgen",
    ]))?;
    shell::run(Command::new("cargo").args(["build", "--release", "-p", "connlog-collector"]))?;
    let dir = std::env::temp_dir().join(format!("connlog-bench-tls-{}", std::process::id()));
    let _cleanup = Cleanup(dir.clone());
    std::fs::create_dir_all(&dir)?;
    let pki = dir.join("pki");
    shell::run(Command::new(loadgen()).arg("pki").arg(&pki))?;
    let _echo = Proc::spawn(pinned(1, Command::new(loadgen()).args(["echo", ECHO])))?;
    wait_port(ECHO.parse()?)?;
    let collector_dir = dir.join("collector");
    let collector = Collector::start(&collector_dir)?;

    let targets = [
        Target {
            name: "connlog (probe/export off)",
            addr: "127.0.0.1:28443".parse()?,
            start: connlog_off,
            requires_log: None,
        },
        Target {
            name: "connlog (probe on)",
            addr: "127.0.0.1:28446".parse()?,
            start: connlog_probe,
            requires_log: Some("probe attached"),
        },
        Target {
            name: "connlog (probe + join + export on)",
            addr: "127.0.0.1:28447".parse()?,
            start: connlog_all,
            requires_log: Some("probe attached"),
        },
        Target {
            name: "nginx 1.22 stream",
            addr: "127.0.0.1:28444".parse()?,
            start: nginx,
            requires_log: None,
        },
        Target {
            name: "HAProxy 2.6 mode tcp",
            addr: "127.0.0.1:28445".parse()?,
            start: haproxy,
            requires_log: None,
        },
    ];
    let mut rows = Vec::new();
    for t in &targets {
        eprintln!("xtask: bench tls: {}", t.name);
        let work = dir.join(t.addr.port().to_string());
        std::fs::create_dir_all(&work)?;
        let log = work.join("stderr.log");
        let mut cmd = pinned(0, &(t.start)(&work, t.addr)?);
        cmd.stderr(std::fs::File::create(&log)?);
        let proc = Proc::spawn(cmd)?;
        wait_port(t.addr)?;
        if let Some(needle) = t.requires_log {
            std::thread::sleep(Duration::from_millis(500));
            if !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(needle)
            {
                eprintln!(
                    "xtask: bench tls: {}: skipped, the agent never logged {needle:?}",
                    t.name
                );
                continue;
            }
        }
        rows.push((t.name, measure(&proc, t.addr, &pki)?));
    }
    print_table(&rows);
    // Every agent has stopped (and flushed) by now: what reached the files?
    let records = collector.stop(&collector_dir)?;
    println!("records written by the collector (export row: warm-up + runs + idle): {records}");
    Ok(())
}

struct Row {
    c64: Report,
    c1: Report,
    cpu_ms_per_hs: f64,
    idle_kib: f64,
}

#[derive(Debug)]
struct Report {
    per_sec: f64,
    handshakes: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
}

fn measure(target: &Proc, addr: SocketAddr, pki: &Path) -> Result<Row> {
    load(addr, pki, 64, 1.0)?; // warm-up
    let cpu0 = cpu_ticks(target.pid())?;
    let c64 = load(addr, pki, 64, SECS)?;
    let cpu1 = cpu_ticks(target.pid())?;
    let c1 = load(addr, pki, 1, SECS / 2.0)?;
    let ticks = u64::try_from(clk_tck()).unwrap_or(100) as f64;
    let cpu_ms_per_hs = (cpu1 - cpu0) as f64 * 1000.0 / ticks / c64.handshakes.max(1) as f64;

    let rss0 = rss_kib(target.pid())?;
    let mut idle = Command::new(loadgen());
    idle.args([
        "idle",
        "--connect",
        &addr.to_string(),
        "--count",
        &IDLE.to_string(),
        "--pki",
    ])
    .arg(pki);
    let mut idle = pinned(1, &idle);
    let mut child = idle.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    if !line.starts_with("ready") {
        let _ = child.kill();
        bail!("idle loader failed: {line:?}");
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss1 = rss_kib(target.pid())?;
    drop(child.stdin.take());
    let _ = child.wait();
    let idle_kib = (rss1.saturating_sub(rss0)) as f64 / IDLE as f64;
    Ok(Row {
        c64,
        c1,
        cpu_ms_per_hs,
        idle_kib,
    })
}

fn load(addr: SocketAddr, pki: &Path, concurrency: usize, secs: f64) -> Result<Report> {
    let mut cmd = Command::new(loadgen());
    cmd.args([
        "run",
        "--connect",
        &addr.to_string(),
        "--concurrency",
        &concurrency.to_string(),
    ])
    .args(["--secs", &secs.to_string(), "--pki"])
    .arg(pki);
    let mut cmd = pinned(1, &cmd);
    let out = cmd.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("loader failed: {}", String::from_utf8_lossy(&out.stdout));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Report {
        per_sec: f("per_sec"),
        handshakes: v["handshakes"].as_u64().unwrap_or(0),
        errors: v["errors"].as_u64().unwrap_or(0),
        p50_ms: f("p50_us") / 1000.0,
        p99_ms: f("p99_us") / 1000.0,
    })
}

fn print_table(rows: &[(&str, Row)]) {
    println!(
        "| target | handshakes/s (c=64) | CPU ms/handshake | p50 / p99 ms (c=64) | p50 / p99 ms (c=1) | RSS KiB per idle proxied conn (1k) | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, r) in rows {
        println!(
            "| {name} | {:.0} | {:.3} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} | {} |",
            r.c64.per_sec,
            r.cpu_ms_per_hs,
            r.c64.p50_ms,
            r.c64.p99_ms,
            r.c1.p50_ms,
            r.c1.p99_ms,
            r.idle_kib,
            r.c64.errors + r.c1.errors,
        );
    }
}

fn pinned(core: u32, cmd: &Command) -> Command {
    let mut t = Command::new("taskset");
    t.arg("-c")
        .arg(core.to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            t.env(k, v);
        }
    }
    t
}

fn loadgen() -> PathBuf {
    workspace().join("target/release/connlog-loadgen")
}

pub(super) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn wait_port(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("{addr} never accepted");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The process and its children (nginx workers).
fn family(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if stat_fields(child).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                == Some(pid)
            {
                out.push(child);
            }
        }
    }
    out
}

/// Fields of /proc/<pid>/stat after the command name (state is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime of the process and its children, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let mut total = 0;
    for p in family(pid) {
        let f = stat_fields(p).context("stat")?;
        total += f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    }
    Ok(total)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let mut total = 0;
    for p in family(pid) {
        let status = std::fs::read_to_string(format!("/proc/{p}/status"))?;
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

fn clk_tck() -> i64 {
    shell::output(Command::new("getconf").arg("CLK_TCK"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// A child process killed on drop. The target's pid is the program's,
/// since `taskset` execs it.
struct Proc(Child);

impl Proc {
    fn spawn(mut cmd: Command) -> Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        Ok(Self(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    /// SIGTERM first so nginx takes its workers down; then SIGKILL whatever
    /// of the family is left (a killed nginx master leaves its workers
    /// listening).
    fn drop(&mut self) {
        let family = family(self.pid());
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        for pid in family.into_iter().skip(1) {
            let _ = (Command::new("kill").args(["-9", &pid.to_string()]))
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::io::stderr().flush();
    }
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
