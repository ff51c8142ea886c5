//! Exporter ↔ collector delivery with real processes: a collector outage
//! under steady load and a SIGTERM'd sender lose nothing and duplicate
//! nothing; a full disk gets no ack until space returns.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, ensure};
use connlog_tests::{CollectorProcess, SynthProcess, json_records, signal};

const JSON_SINK: &str = r#"
[[sink]]
type = "file"
format = "json"
dir = "{dir}/out"
fields = ["connectionId", "connectionStatus", "eventTimestamp"]
idle_close_secs = 1
"#;

/// Every id `<agent>-0` … `<agent>-(n-1)` exactly once, nothing else.
fn assert_exactly_once(dir: &std::path::Path, agent: &str, n: u64) -> Result<()> {
    let mut counts: HashMap<String, u32> = HashMap::new();
    for r in json_records(dir)? {
        let id = r["connectionId"].as_str().unwrap_or_default().to_owned();
        *counts.entry(id).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    ensure!(dups.is_empty(), "duplicates: {dups:?}");
    let missing: Vec<u64> = (0..n)
        .filter(|i| !counts.contains_key(&format!("{agent}-{i}")))
        .take(5)
        .collect();
    ensure!(missing.is_empty(), "missing (first 5): {missing:?}");
    assert_eq!(counts.len() as u64, n, "exactly the generated records");
    Ok(())
}

/// Records `connlog-synth --through-joiner` made for attempts 0 … n-1
/// (n ≤ 60 000: each has its own client address and port), each exactly
/// once, with distinct connection ids, and nothing else.
fn assert_joined_exactly_once(dir: &std::path::Path, n: u64) -> Result<()> {
    let records = json_records(dir)?;
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut clients: HashMap<(String, String), u32> = HashMap::new();
    for r in &records {
        let field = |f: &str| r[f].as_str().unwrap_or_default().to_owned();
        *ids.entry(field("connectionId")).or_default() += 1;
        *clients
            .entry((field("clientIp"), field("clientPort")))
            .or_default() += 1;
    }
    let dups: Vec<_> = ids.iter().filter(|(_, c)| **c > 1).take(5).collect();
    ensure!(dups.is_empty(), "duplicate connection ids: {dups:?}");
    let missing: Vec<u64> = (0..n)
        .filter(|i| {
            let ip = format!("198.18.{}.{}", (i >> 8) & 0xff, i & 0xff);
            let port = (1024 + i % 60_000).to_string();
            clients.get(&(ip, port)) != Some(&1)
        })
        .take(5)
        .collect();
    ensure!(
        missing.is_empty(),
        "missing or repeated attempts (first 5): {missing:?}"
    );
    ensure!(
        records.len() as u64 == n,
        "{} records for {n} attempts",
        records.len()
    );
    Ok(())
}

/// The issue asks for a 30 s collector outage under a steady 1k
/// connections/s. The load is 1 000 attempts/s of synthetic TLS outcomes +
/// kernel events through the real joiner and exporter (`connlog-synth
/// --through-joiner`): what is under test is delivery (buffering, backoff,
/// resend, the collector's recovery and dedup), the same code whatever made
/// the record, and real mTLS handshakes at 1k/s for 40 s would take most
/// of a core of this 2-core machine away from the tests running beside it.
#[test]
fn collector_killed_30s_under_1k_per_s_loses_and_duplicates_nothing() -> Result<()> {
    const RATE: u64 = 1_000;
    const COUNT: u64 = 40_000;
    let mut collector = CollectorProcess::start(
        r#"
[[sink]]
type = "file"
format = "json"
dir = "{dir}/out"
fields = ["connectionId", "connectionStatus", "clientIp", "clientPort", "tcpHandshakeDuration"]
idle_close_secs = 1
"#,
    )?;
    // 40 s of load; the collector is gone from 4 s to 34 s.
    let synth = SynthProcess::start(&[
        "--endpoint",
        &collector.url(),
        "--through-joiner",
        "--rate",
        &RATE.to_string(),
        "--count",
        &COUNT.to_string(),
        "--agent-id",
        "outage",
        "--batch-max-age-ms",
        "50",
        "--backoff-max-ms",
        "1000",
    ])?;
    std::thread::sleep(Duration::from_secs(4));
    collector.kill();
    std::thread::sleep(Duration::from_secs(30));
    collector.spawn()?;
    let report = synth.report(Duration::from_secs(90))?;
    assert_eq!(report["generated"], COUNT, "{report}");
    assert_eq!(report["acked"], COUNT, "{report}");
    assert_eq!(report["not_sent"], 0, "{report}");
    assert_eq!(report["dropped_queue_full"], 0, "{report}");
    assert_eq!(report["dropped_buffer_full"], 0, "{report}");
    assert!(
        report["connect_failures"].as_u64() > Some(5),
        "the 30 s outage was seen: {report}"
    );
    // The load was steady: generated on time, not caught up afterwards.
    let elapsed = report["elapsed_ms"].as_u64().unwrap_or(0);
    assert!(elapsed >= 39_000, "{report}");
    assert_eq!(collector.terminate()?, 0);
    assert!(
        collector
            .stderr()
            .contains("finalised files left by a previous run"),
        "the killed run's file was recovered: {}",
        collector.stderr()
    );
    assert_joined_exactly_once(&collector.path().join("out"), COUNT)
}

/// A collector away long enough that memory overflows: batches spill to
/// the agent's disk queue and all arrive exactly once when it returns;
/// the queue is empty afterwards.
#[test]
fn collector_away_records_spill_to_disk_and_arrive_exactly_once() -> Result<()> {
    const COUNT: u64 = 8_000;
    let mut collector = CollectorProcess::start(JSON_SINK)?;
    let spool = collector.path().join("spool");
    let synth = SynthProcess::start(&[
        "--endpoint",
        &collector.url(),
        "--rate",
        "2000",
        "--count",
        &COUNT.to_string(),
        "--agent-id",
        "spill",
        "--batch-max-records",
        "200",
        "--buffer-max-records",
        "1000",
        "--spool-dir",
        &spool.display().to_string(),
    ])?;
    collector.kill();
    // 4 s at 2000/s: 8000 records against a memory bound of 1000. The
    // collector stays away until most of them are on disk.
    let away = std::time::Instant::now();
    loop {
        let spooled = std::fs::read_dir(&spool).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "batch"))
                .count()
        });
        if spooled >= 25 {
            break;
        }
        ensure!(
            away.elapsed() < Duration::from_secs(20),
            "only {spooled} batches on disk after 20 s without a collector"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    collector.spawn()?;
    let report = synth.report(Duration::from_secs(60))?;
    assert_eq!(report["acked"], COUNT, "{report}");
    assert_eq!(report["not_sent"], 0, "{report}");
    assert_eq!(report["dropped_buffer_full"], 0, "{report}");
    assert_eq!(report["dropped_queue_full"], 0, "{report}");
    assert!(report["batches_spooled"].as_u64() >= Some(25), "{report}");
    assert_eq!(
        std::fs::read_dir(&spool)?.count(),
        0,
        "sent batches leave the spool"
    );
    assert_eq!(collector.terminate()?, 0);
    assert_exactly_once(&collector.path().join("out"), "spill", COUNT)
}

/// The stdout sink writes what it is sent, once, in its format.
#[test]
fn stdout_sink_prints_every_record_once() -> Result<()> {
    let mut collector = CollectorProcess::start(
        r#"
[[sink]]
type = "stdout"
format = "json"
fields = ["connectionId", "connectionStatus", "clientIp", "serverPort"]
"#,
    )?;
    let synth = SynthProcess::start(&[
        "--endpoint",
        &collector.url(),
        "--rate",
        "0",
        "--count",
        "500",
        "--agent-id",
        "stdout",
    ])?;
    let report = synth.report(Duration::from_secs(30))?;
    assert_eq!(report["acked"], 500, "{report}");
    assert_eq!(collector.terminate()?, 0);
    let out = collector.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 500, "{out}");
    let mut seen = std::collections::HashSet::new();
    for (line, n) in lines.iter().zip(0u64..) {
        let r: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)?;
        assert_eq!(r.len(), 4, "{line}");
        let at: Vec<Option<usize>> = ["connectionId", "connectionStatus", "clientIp", "serverPort"]
            .iter()
            .map(|k| line.find(&format!("\"{k}\":")))
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]) && at[0] == Some(1),
            "keys in selection order: {line}"
        );
        let id = r["connectionId"].as_str().unwrap_or_default();
        let i: u64 = id.strip_prefix("stdout-").unwrap_or("x").parse()?;
        assert_eq!(i, n, "in order");
        assert!(seen.insert(i));
        let expected = connlog_tests::synth_record("stdout", "E2DX1SLDPK0123", i);
        let status = connlog_proto::status_text(&expected).unwrap_or_default();
        assert_eq!(r["connectionStatus"], status.as_str(), "{line}");
        assert_eq!(r["clientIp"], expected.client_ip.as_str(), "{line}");
        assert_eq!(r["serverPort"], "443", "{line}");
    }
    Ok(())
}

#[test]
fn sender_sigterm_under_load_flushes_every_record() -> Result<()> {
    let mut collector = CollectorProcess::start(JSON_SINK)?;
    let synth = SynthProcess::start(&[
        "--endpoint",
        &collector.url(),
        "--rate",
        "3000",
        "--count",
        "1000000",
        "--agent-id",
        "sigterm",
        "--batch-max-age-ms",
        "500",
    ])?;
    std::thread::sleep(Duration::from_millis(1500));
    signal(synth.pid(), "TERM");
    let report = synth.report(Duration::from_secs(20))?;
    let generated = report["generated"].as_u64().unwrap_or(0);
    assert!(generated > 1000, "{report}");
    assert_eq!(report["acked"].as_u64(), Some(generated), "{report}");
    assert_eq!(report["not_sent"], 0, "{report}");
    assert_eq!(collector.terminate()?, 0);
    assert_exactly_once(&collector.path().join("out"), "sigterm", generated)
}

/// A small tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(path)?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()?
            .success();
        ensure!(ok, "mounting tmpfs at {} (needs root)", path.display());
        Ok(Self(path.to_path_buf()))
    }

    fn resize(&self, size: &str) -> Result<()> {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()?
            .success();
        ensure!(ok, "remounting {}", self.0.display());
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_gets_no_ack_and_recovers_when_space_returns() -> Result<()> {
    let mut collector = CollectorProcess::start(
        r#"
[[sink]]
type = "file"
format = "json"
dir = "{dir}/disk"
fields = ["connectionId", "connectionStatus", "eventTimestamp", "clientIp", "tlsSni", "clientLeafCertSubject", "clientLeafCertIssuer", "clientLeafCertValidity"]
idle_close_secs = 30
fsync = "never"
"#,
    )?;
    // Mounted after start: the collector creates its files lazily.
    let disk = Tmpfs::mount(&collector.path().join("disk"), "64k")?;
    let synth = SynthProcess::start(&[
        "--endpoint",
        &collector.url(),
        "--rate",
        "1000",
        "--count",
        "3000",
        "--agent-id",
        "diskfull",
        "--batch-max-records",
        "100",
    ])?;
    std::thread::sleep(Duration::from_secs(4));
    let log = collector.stderr();
    assert!(
        log.contains("No space left on device"),
        "the collector says why: {log}"
    );
    assert!(log.contains("not acknowledged"), "{log}");
    disk.resize("16m")?;
    let report = synth.report(Duration::from_secs(30))?;
    assert_eq!(report["acked"], 3000, "{report}");
    assert_eq!(report["not_sent"], 0, "{report}");
    assert_eq!(collector.terminate()?, 0);
    let result = assert_exactly_once(&collector.path().join("disk"), "diskfull", 3000);
    drop(disk);
    result
}
