//! Bounded memory under a SYN flood: the pending-attempt table stops at
//! `max_pending`, the rest is counted (`table_full`), and the agent's RSS
//! stays flat; a ring too small for a burst counts what it drops.

use std::time::Duration;

use anyhow::{Context, Result};
use connlog_tests::probefixture::{PORT, ProbeFixture};

const SYNS: u32 = 20_000;
const MAX_PENDING: u64 = 1_000;

/// `name: <n>` from the agent's shutdown log (`ProbeStats { … }`).
fn stat(log: &str, name: &str) -> Result<u64> {
    log.split(&format!("{name}: "))
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no {name} in the log:\n{log}"))
}

/// Floods `count` SYNs (hping3, `interval` between them) from the client
/// namespace with the client's RSTs dropped: without a socket the client
/// kernel would reset every SYN-ACK and close the attempts.
fn flood(fx: &ProbeFixture, count: u32, interval: &str) -> Result<()> {
    fx.pair.client.exec(&[
        "nft",
        "add table inet fl; \
         add chain inet fl out { type filter hook output priority 0; }; \
         add rule inet fl out tcp flags & rst == rst drop",
    ])?;
    let server = fx.pair.server_v4.to_string();
    let out = fx
        .pair
        .client
        .command("hping3")
        .args([
            "-q",
            "-S",
            "-p",
            &PORT.to_string(),
            "-i",
            interval,
            "-c",
            &count.to_string(),
            &server,
        ])
        .output()
        .context("running hping3")?;
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        report.contains(&format!("{count} packets transmitted")),
        "{report}"
    );
    Ok(())
}

#[test]
fn syn_flood_is_bounded_and_counted() -> Result<()> {
    let mut fx = ProbeFixture::start("pr-flood", "60s", &format!("max_pending = {MAX_PENDING}\n"))?;
    let before = fx.agent.rss_kib()?;
    flood(&fx, SYNS, "u40")?;
    std::thread::sleep(Duration::from_millis(500));
    let after = fx.agent.rss_kib()?;

    fx.agent.signal("TERM")?;
    fx.agent.wait_exit(Duration::from_secs(10))?;
    let log = fx.agent.stderr();
    let table_full = stat(&log, "table_full")?;
    eprintln!("table_full = {table_full}; RSS {before} KiB -> {after} KiB");
    // Every SYN beyond the table's capacity is counted (a few may be lost on
    // the way, never more counted than sent).
    assert!(
        table_full >= u64::from(SYNS) * 9 / 10 - MAX_PENDING
            && table_full <= u64::from(SYNS) - MAX_PENDING,
        "table_full = {table_full}"
    );
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // Nothing is reported for the flood within the (long) syn_timeout.
    assert!(fx.events_until_quiet(Duration::from_millis(100)).is_empty());
    Ok(())
}

/// A ring too small for a burst: what does not fit is counted, per CPU,
/// and reported.
#[test]
fn full_ring_is_counted() -> Result<()> {
    let mut fx = ProbeFixture::start("pr-ring", "60s", "ring_bytes = 4096\n")?;
    flood(&fx, 20_000, "u1")?;
    fx.agent.signal("TERM")?;
    fx.agent.wait_exit(Duration::from_secs(10))?;
    let log = fx.agent.stderr();
    let ring_full = stat(&log, "ring_full")?;
    eprintln!("ring_full = {ring_full}");
    // One SYN and one SYN-ACK event per attempt at most.
    assert!(
        ring_full > 0 && ring_full <= 2 * 20_000,
        "ring_full = {ring_full}"
    );
    Ok(())
}
