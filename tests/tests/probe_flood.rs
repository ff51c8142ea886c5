//! Bounded memory under a SYN flood: the pending-attempt table stops at
//! `max_pending`, the rest is counted (`table_full`), and the agent's RSS
//! stays flat.

use std::time::Duration;

use anyhow::{Context, Result};
use connlog_tests::probefixture::{PORT, ProbeFixture};

const SYNS: u32 = 20_000;
const MAX_PENDING: u64 = 1_000;

#[test]
fn syn_flood_is_bounded_and_counted() -> Result<()> {
    let mut fx = ProbeFixture::start("pr-flood", "60s", &format!("max_pending = {MAX_PENDING}\n"))?;
    // The client kernel would reset every SYN-ACK (no socket), closing the
    // attempts; keep them all pending.
    fx.pair.client.exec(&[
        "nft",
        "add table inet fl; \
         add chain inet fl out { type filter hook output priority 0; }; \
         add rule inet fl out tcp flags & rst == rst drop",
    ])?;
    let before = fx.agent.rss_kib()?;
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
            "u40",
            "-c",
            &SYNS.to_string(),
            &server,
        ])
        .output()
        .context("running hping3")?;
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        report.contains(&format!("{SYNS} packets transmitted")),
        "{report}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = fx.agent.rss_kib()?;

    fx.agent.signal("TERM")?;
    fx.agent.wait_exit(Duration::from_secs(10))?;
    let log = fx.agent.stderr();
    let table_full: u64 = log
        .split("table_full: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no table_full in the log:\n{log}"))?;
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
