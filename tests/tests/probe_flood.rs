//! Bounded memory under a SYN flood: the kernel's attempt table (an LRU
//! map of `max_pending` entries) evicts what does not fit and the agent
//! counts it (`table_full`), the agent's RSS stays flat; a ring too small
//! for a burst counts what it drops.

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
/// namespace. Without a socket the client kernel resets every SYN-ACK,
/// which closes the attempt (one `client-rst-in-syn-recv` each) unless
/// `unanswered`: then the client namespace drops what the server sends
/// (so neither the client kernel nor hping3 answers or counts it).
fn flood(fx: &ProbeFixture, count: u32, interval: &str, unanswered: bool) -> Result<()> {
    if unanswered {
        fx.pair.client.exec(&[
            "nft",
            &format!(
                "add table inet fl; \
                 add chain inet fl in {{ type filter hook input priority 0; }}; \
                 add rule inet fl in tcp sport {PORT} drop"
            ),
        ])?;
    }
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
    // A listener: every SYN gets a SYN-ACK (from a syncookie once the SYN
    // queue is full) and stays a pending attempt; without one the kernel
    // would refuse each SYN with an RST, a server-rst record each.
    let _listener = fx.listen(false, PORT)?;
    let before = fx.agent.rss_kib()?;
    flood(&fx, SYNS, "u40", true)?;
    // Two sweeps (every 500 ms with this syn_timeout) after the last SYN.
    std::thread::sleep(Duration::from_millis(1100));
    let after = fx.agent.rss_kib()?;

    fx.agent.signal("TERM")?;
    fx.agent.wait_exit(Duration::from_secs(10))?;
    let log = fx.agent.stderr();
    let table_full = stat(&log, "table_full")?;
    let tracked = stat(&log, "tracked")?;
    eprintln!("table_full = {table_full}, tracked = {tracked}; RSS {before} KiB -> {after} KiB");
    // The table holds at most its size (an LRU map may evict a little
    // before it is full); every attempt that does not fit is counted (a few
    // SYNs may be lost on the way, never more counted than sent).
    assert!(
        (MAX_PENDING / 2..=MAX_PENDING).contains(&tracked),
        "tracked = {tracked}"
    );
    assert!(
        table_full + tracked >= u64::from(SYNS) * 9 / 10 && table_full + tracked <= u64::from(SYNS),
        "table_full = {table_full}, tracked = {tracked}"
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
/// and reported. The agent is stopped (SIGSTOP) during the burst so that
/// nothing drains the ring: every failure beyond its ~46 records is lost
/// and counted.
#[test]
fn full_ring_is_counted() -> Result<()> {
    const BURST: u64 = 2_000;
    let mut fx = ProbeFixture::start("pr-ring", "60s", "ring_bytes = 4096\n")?;
    // A listener, so that each SYN gets a SYN-ACK the client kernel resets.
    let _listener = fx.listen(false, PORT)?;
    fx.agent.signal("STOP")?;
    let flooded = flood(&fx, BURST as u32, "u100", false);
    fx.agent.signal("CONT")?;
    flooded?;
    fx.agent.signal("TERM")?;
    fx.agent.wait_exit(Duration::from_secs(10))?;
    let log = fx.agent.stderr();
    let ring_full = stat(&log, "ring_full")?;
    eprintln!("ring_full = {ring_full}");
    // One event (client-rst-in-syn-recv) per attempt; 4096 bytes hold 46
    // records of 88 bytes.
    assert!(
        (BURST * 9 / 10 - 46..=BURST - 46).contains(&ring_full),
        "ring_full = {ring_full}"
    );
    Ok(())
}
