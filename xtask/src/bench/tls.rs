//! `cargo xtask bench tls`: connlog vs nginx (stream, `ssl_verify_client
//! on`) vs HAProxy (`mode tcp`, `verify required`) with the same
//! certificates, loader (`connlog-loadgen`), echo upstream and CPU pinning:
//! the target on core 0; loader, echo upstream and collector on core 1.
//! Loopback only.
//!
//! Before measuring, `connlog-loadgen check` proves each target does the
//! same work: a full TLS 1.3 handshake (X25519, ECDSA P-256 server key,
//! TLS_AES_128_GCM_SHA256), no session tickets, and client certificates
//! really verified (a client without one and one with an untrusted one
//! are refused).
//!
//! Per target: handshakes/s and p50/p99 connect→first echoed byte at
//! concurrency 64 and 1, the target's CPU time per handshake (two ways,
//! see `tls_cpu`), tickets received per handshake, and RSS per idle
//! proxied connection at 1k connections. The targets take turns over
//! `CONNLOG_BENCH_TLS_ROUNDS` rounds (default 3), each started afresh per
//! round; CPU per handshake is the median of the rounds, the rest is the
//! first round's.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::tls_ab;
use super::tls_cpu::{self, Cgroup};
use super::tls_table::{Cpu, Row, print_table};
use super::tls_targets::{
    self, Collector, connlog_all, connlog_off, connlog_probe, haproxy, nginx,
};
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
    tls_targets::write_openssl_conf(&dir.join("openssl.cnf"))?;
    let _echo = Proc::spawn(pinned(1, Command::new(loadgen()).args(["echo", ECHO])))?;
    wait_port(ECHO.parse()?)?;
    if let Some(b) = std::env::var_os(tls_ab::B_ENV) {
        return tls_ab::run(&dir, &pki, b.into());
    }
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
    let rounds = rounds()?;
    let mut rows: Vec<(&str, Row)> = Vec::new();
    for round in 1..=rounds {
        for t in &targets {
            eprintln!("xtask: bench tls: round {round}/{rounds}: {}", t.name);
            let Some(running) = start(t, &dir, &pki)? else {
                continue;
            };
            let row = rows.iter_mut().find(|(name, _)| *name == t.name);
            match row {
                Some((_, row)) => row.cpu.push(cpu(&running, t.addr, &pki)?.1),
                None if round == 1 => rows.push((t.name, measure(&running, t.addr, &pki)?)),
                None => {} // skipped in the first round: no row
            }
        }
    }
    print_table(&rows);
    // Every agent has stopped (and flushed) by now: what reached the files?
    let records = collector.stop(&collector_dir)?;
    println!("records written by the collector (export row: warm-up + runs + idle): {records}");
    Ok(())
}

/// A started target; the process stops before its cgroup is removed.
pub(super) struct Running {
    pub(super) proc: Proc,
    pub(super) cgroup: Option<Cgroup>,
}

/// `cmd` pinned to core 0, in a fresh cgroup `name` when one can be made,
/// its stderr to `log`.
pub(super) fn spawn_target(cmd: &Command, name: &str, log: &Path) -> Result<Running> {
    let cmd = pinned(0, cmd);
    let cgroup = Cgroup::create(name);
    let mut cmd = match &cgroup {
        Some(cg) => cg.wrap(&cmd),
        None => cmd,
    };
    cmd.stderr(std::fs::File::create(log)?);
    Ok(Running {
        proc: Proc::spawn(cmd)?,
        cgroup,
    })
}

/// Starts `t` pinned to core 0 in a cgroup of its own, or `None` (said on
/// stderr) when it cannot be measured as configured.
fn start(t: &Target, dir: &Path, pki: &Path) -> Result<Option<Running>> {
    let work = dir.join(t.addr.port().to_string());
    std::fs::create_dir_all(&work)?;
    let log = work.join("stderr.log");
    let cmd = (t.start)(&work, t.addr)?;
    let running = spawn_target(&cmd, &t.addr.port().to_string(), &log)?;
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
            return Ok(None);
        }
    }
    if let Err(e) = check(t.addr, pki) {
        eprintln!("xtask: bench tls: {}: skipped: {e:#}", t.name);
        return Ok(None);
    }
    Ok(Some(running))
}

/// `CONNLOG_BENCH_TLS_ROUNDS` (default 3): how many times each target is
/// started and its CPU per handshake measured, targets in turn.
fn rounds() -> Result<usize> {
    match std::env::var("CONNLOG_BENCH_TLS_ROUNDS") {
        Err(_) => Ok(3),
        Ok(v) => match v.parse() {
            Ok(n) if n >= 1 => Ok(n),
            _ => bail!("CONNLOG_BENCH_TLS_ROUNDS={v:?}: expected a whole number ≥ 1"),
        },
    }
}

#[derive(Debug)]
pub(super) struct Report {
    pub(super) per_sec: f64,
    pub(super) handshakes: u64,
    pub(super) errors: u64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) tickets: u64,
}

/// `connlog-loadgen check`: fails unless the target negotiates TLS 1.3
/// with X25519, sends no tickets and refuses unverified clients.
pub(super) fn check(addr: SocketAddr, pki: &Path) -> Result<()> {
    let mut cmd = Command::new(loadgen());
    cmd.args(["check", "--connect", &addr.to_string(), "--pki"])
        .arg(pki);
    let out = pinned(1, &cmd).output()?;
    let line = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "check failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    eprintln!("xtask: bench tls: check {addr}: {}", line.trim());
    let v: serde_json::Value = serde_json::from_str(&line)?;
    if v["protocol"] != "TLSv1_3"
        || v["group"] != "X25519"
        || v["cipher"] != "TLS13_AES_128_GCM_SHA256"
        || v["tickets"] != 0
    {
        bail!("not the benchmark's handshake: {}", line.trim());
    }
    Ok(())
}

/// Warm-up, then c=64 for `SECS` with the target's CPU counted.
fn cpu(target: &Running, addr: SocketAddr, pki: &Path) -> Result<(Report, Cpu)> {
    load(addr, pki, 64, 1.0)?; // warm-up
    let proc0 = tls_cpu::proc_usec(target.proc.pid())?;
    let cg0 = target.cgroup.as_ref().and_then(Cgroup::usage_usec);
    let c64 = load(addr, pki, 64, SECS)?;
    let proc1 = tls_cpu::proc_usec(target.proc.pid())?;
    let cg1 = target.cgroup.as_ref().and_then(Cgroup::usage_usec);
    let per_hs = |us: u64| us as f64 / 1000.0 / c64.handshakes.max(1) as f64;
    let cpu = Cpu {
        proc_ms: per_hs(proc1.saturating_sub(proc0)),
        cgroup_ms: cg0.zip(cg1).map(|(a, b)| per_hs(b.saturating_sub(a))),
    };
    Ok((c64, cpu))
}

/// The first round's full measurement: CPU at c=64, latency at c=1, RSS
/// per idle proxied connection.
fn measure(running: &Running, addr: SocketAddr, pki: &Path) -> Result<Row> {
    let (c64, cpu) = cpu(running, addr, pki)?;
    let c1 = load(addr, pki, 1, SECS / 2.0)?;
    let target = &running.proc;
    let rss0 = tls_cpu::rss_kib(target.pid())?;
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
    let rss1 = tls_cpu::rss_kib(target.pid())?;
    drop(child.stdin.take());
    let _ = child.wait();
    let idle_kib = (rss1.saturating_sub(rss0)) as f64 / IDLE as f64;
    Ok(Row {
        c64,
        c1,
        cpu: vec![cpu],
        idle_kib,
    })
}

pub(super) fn load(addr: SocketAddr, pki: &Path, concurrency: usize, secs: f64) -> Result<Report> {
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
        tickets: v["tickets"].as_u64().unwrap_or(0),
    })
}

pub(super) fn pinned(core: u32, cmd: &Command) -> Command {
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

pub(super) fn wait_port(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("{addr} never accepted");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A child process killed on drop. The target's pid is the program's,
/// since `taskset` execs it.
pub(super) struct Proc(Child);

impl Proc {
    pub(super) fn spawn(mut cmd: Command) -> Result<Self> {
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
        let family = tls_cpu::family(self.pid());
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
