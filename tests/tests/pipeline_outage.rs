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

#[test]
fn collector_killed_under_load_and_restarted_loses_and_duplicates_nothing() -> Result<()> {
    let mut collector = CollectorProcess::start(JSON_SINK)?;
    // 600 records/s for 10 s; the collector is gone from 2 s to 6 s.
    let synth = SynthProcess::start(&[
        "--endpoint",
        &collector.url(),
        "--rate",
        "600",
        "--count",
        "6000",
        "--agent-id",
        "outage",
        "--batch-max-age-ms",
        "20",
    ])?;
    std::thread::sleep(Duration::from_secs(2));
    collector.kill();
    std::thread::sleep(Duration::from_secs(4));
    collector.spawn()?;
    let report = synth.report(Duration::from_secs(40))?;
    assert_eq!(report["generated"], 6000, "{report}");
    assert_eq!(report["acked"], 6000, "{report}");
    assert_eq!(report["not_sent"], 0, "{report}");
    assert!(
        report["connect_failures"].as_u64() > Some(0),
        "the outage was seen: {report}"
    );
    assert_eq!(collector.terminate()?, 0);
    assert!(
        collector
            .stderr()
            .contains("finalised files left by a previous run"),
        "the killed run's file was recovered: {}",
        collector.stderr()
    );
    assert_exactly_once(&collector.path().join("out"), "outage", 6000)
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
