//! `cargo xtask bench pipeline`: synthetic connection records through the
//! real joiner → exporter → gRPC → collector → JSON file (release builds,
//! separate processes, loopback), beside the limit measured in the same
//! run: the same records encoded to JSON by the collector's encoder in one
//! tight loop. Then latency from record creation to written at a steady
//! 10k records/s, and both processes' peak RSS. CPU time per record of
//! both processes is printed too: on a shared machine it moves less than
//! the rates. The collector's writes allocate page-cache pages: with little
//! free memory the kernel reclaims cache first, which costs it up to 1.5 µs
//! more per record here, so the free memory at the start is printed as well
//! (`sync; echo 3 > /proc/sys/vm/drop_caches` before a run gives comparable
//! numbers; the bench does not do it for you).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use connlog_tests::procfs;

use crate::shell;

const THROUGHPUT_RECORDS: u64 = 2_000_000;
const LATENCY_RATE: u64 = 10_000;
const LATENCY_SECS: u64 = 10;

pub fn run() -> Result<()> {
    shell::run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "connlog-collector",
        "-p",
        "connlog-tests",
        "--bin",
        "connlog-collector",
        "--bin",
        "connlog-synth",
    ]))?;
    let bin = PathBuf::from("target/release");
    let mem_free_mib = procfs::meminfo_kib("MemFree").unwrap_or(0) / 1024;
    let dir = std::env::temp_dir().join(format!("connlog-bench-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&bin, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let m = result?;
    let share = 100.0 * m.end_to_end / m.limit;
    println!();
    println!("| pipeline (2-core VM, loopback, release) | value |");
    println!("|---|---|");
    println!(
        "| limit: JSON encode, one tight loop, one core | {:.0} records/s |",
        m.limit
    );
    println!(
        "| end to end: joiner → exporter → gRPC → collector → JSON file | {:.0} records/s ({share:.0}% of the limit) |",
        m.end_to_end
    );
    println!(
        "| latency creation → written at {LATENCY_RATE} records/s ({} records) | p50 {} ms, p99 {} ms, max {} ms |",
        m.latency_count, m.p50, m.p99, m.max
    );
    println!(
        "| CPU per record, throughput run: agent side (synth + joiner + exporter) / collector / limit | {:.2} µs / {:.2} µs / {:.2} µs |",
        m.agent_cpu_us,
        m.collector_cpu_us,
        1e6 / m.limit
    );
    println!(
        "| agent side (synth + joiner + exporter) peak RSS, throughput run | {} MiB |",
        m.agent_rss_kib / 1024
    );
    println!(
        "| collector peak RSS, throughput run | {} MiB |",
        m.collector_rss_kib / 1024
    );
    println!("| free memory at the start (page cache for the JSON file) | {mem_free_mib} MiB |");
    println!(
        "| machine idle during the throughput run (both cores, from /proc/stat) | {:.0}% |",
        m.machine_idle
    );
    Ok(())
}

struct Measured {
    limit: f64,
    end_to_end: f64,
    latency_count: usize,
    p50: u64,
    p99: u64,
    max: u64,
    agent_rss_kib: u64,
    collector_rss_kib: u64,
    agent_cpu_us: f64,
    collector_cpu_us: f64,
    /// Share of both cores idle over the throughput run: the stages
    /// waiting on each other (on a quiet machine).
    machine_idle: f64,
}

fn measure(bin: &Path, dir: &Path) -> Result<Measured> {
    // 1. The limit.
    let out = shell::output(Command::new(bin.join("connlog-collector")).args([
        "bench-encode",
        "--count",
        &THROUGHPUT_RECORDS.to_string(),
    ]))
    .context("bench-encode failed")?;
    let v: serde_json::Value = serde_json::from_str(out.trim())?;
    let limit = v["records_per_s"].as_f64().context("records_per_s")?;
    eprintln!("xtask: limit {limit:.0} records/s");

    // 2. End to end, closed loop at maximum rate.
    let mut collector = Collector::start(bin, &dir.join("tp"))?;
    let ticks_before = procfs::machine_ticks();
    let report = synth(
        bin,
        &collector.url(),
        &[
            "--rate",
            "0",
            "--count",
            &THROUGHPUT_RECORDS.to_string(),
            "--batch-max-records",
            "2000",
        ],
    )?;
    let machine_idle = match (ticks_before, procfs::machine_ticks()) {
        (Some((i0, t0)), Some((i1, t1))) if t1 > t0 => {
            100.0 * i1.saturating_sub(i0) as f64 / (t1 - t0) as f64
        }
        _ => f64::NAN,
    };
    let collector_rss_kib = collector.peak_rss_kib();
    let collector_cpu_ms = collector.cpu_ms();
    collector.stop()?;
    let acked = report["acked"].as_u64().unwrap_or(0);
    if acked != THROUGHPUT_RECORDS {
        bail!("throughput run lost records: {report}");
    }
    let secs = report["elapsed_ms"].as_f64().unwrap_or(1.0) / 1000.0;
    let end_to_end = acked as f64 / secs;
    let per_record = |ms: u64| ms as f64 * 1000.0 / acked as f64;
    let agent_cpu_us = per_record(report["cpu_ms"].as_u64().unwrap_or(0));
    let collector_cpu_us = per_record(collector_cpu_ms);
    eprintln!("xtask: end to end {end_to_end:.0} records/s");

    // 3. Latency at a steady rate, seen by a live observer right after write.
    let mut collector = Collector::start(bin, &dir.join("lat"))?;
    let mut observer = Command::new(bin.join("connlog-collector"))
        .args(["observe", "--server", &collector.url(), "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = observer.stdout.take().context("observer stdout")?;
    let reader = std::thread::spawn(move || {
        let mut lat = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let now = now_ms();
            let ts = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["eventTimestamp"].as_str()?.parse::<u64>().ok());
            if let Some(ts) = ts {
                lat.push(now.saturating_sub(ts));
            }
        }
        lat
    });
    std::thread::sleep(Duration::from_millis(500));
    let count = LATENCY_RATE * LATENCY_SECS;
    synth(
        bin,
        &collector.url(),
        &[
            "--rate",
            &LATENCY_RATE.to_string(),
            "--count",
            &count.to_string(),
            "--batch-max-age-ms",
            "20",
        ],
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let _ = observer.kill();
    let _ = observer.wait();
    collector.stop()?;
    let mut lat = reader
        .join()
        .map_err(|_| anyhow::anyhow!("observer reader panicked"))?;
    if lat.is_empty() {
        bail!("the observer saw no records");
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    Ok(Measured {
        limit,
        end_to_end,
        latency_count: lat.len(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: *lat.last().unwrap_or(&0),
        agent_rss_kib: report["peak_rss_kib"].as_u64().unwrap_or(0),
        collector_rss_kib,
        agent_cpu_us,
        collector_cpu_us,
        machine_idle,
    })
}

fn synth(bin: &Path, url: &str, extra: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(bin.join("connlog-synth"))
        .args(["--endpoint", url, "--through-joiner", "--agent-id", "bench"])
        .args(extra)
        .stderr(Stdio::inherit())
        .output()
        .context("running connlog-synth")?;
    if !out.status.success() {
        bail!("connlog-synth failed with {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(
        text.lines().last().unwrap_or_default(),
    )?)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Collector {
    child: Child,
    port: u16,
}

impl Collector {
    fn start(bin: &Path, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [[sink]]\ntype = \"file\"\nformat = \"json\"\ndir = \"{}\"\nfsync = \"never\"\n",
                dir.join("out").display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("collector.log"))?;
        let child = Command::new(bin.join("connlog-collector"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("collector did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, port })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn peak_rss_kib(&self) -> u64 {
        procfs::status_kib(&self.child.id().to_string(), "VmHWM").unwrap_or(0)
    }

    /// User + system CPU time so far, ms.
    fn cpu_ms(&self) -> u64 {
        procfs::cpu_us(&self.child.id().to_string()).unwrap_or(0) / 1000
    }

    fn stop(&mut self) -> Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("collector did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
