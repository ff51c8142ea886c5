//! The client's final ACK after `syn_timeout`: the probe reports the
//! attempt once, as `TcpTimeout`; when the ACK then gets through (here:
//! pure ACKs are dropped by an nft rule in the client namespace, the
//! client's first data segment carries the ACK) the kernel still holds the
//! request and ESTABLISHES the connection, and the probe says so as
//! `established_after_timeout` — not as a second attempt outcome — with the
//! accepted socket's cookie, so the joiner can keep the one record.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Result;
use connlog_tests::probefixture::{PORT, ProbeFixture, cookie, shown, tuple};

const WITHIN: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(400);

fn u64_of(ev: &serde_json::Value, key: &str) -> u64 {
    ev[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {ev}"))
}

fn late_ack(tag: &str, v6: bool) -> Result<()> {
    let fx = ProbeFixture::start(tag, "300ms", "")?;
    let listener = fx.listen(v6, PORT)?;
    fx.drop_client_pure_acks()?;
    let mut client = fx.connect(v6, PORT)?;
    let evs = fx.exactly(1, WITHIN, Duration::ZERO)?;
    let timeout = &evs[0];
    assert_eq!(timeout["event"], "failed", "{timeout}");
    assert_eq!(timeout["code"], "TcpTimeout");
    assert_eq!(timeout["detail"], "syn-ack-unanswered");
    assert_eq!(tuple(timeout).0, shown(client.local_addr()?));

    // The first data segment carries the ACK: ESTABLISHED, late.
    client.write_all(b"x")?;
    let (mut accepted, _) = listener.accept()?;
    let mut byte = [0u8; 1];
    accepted.read_exact(&mut byte)?;
    assert_eq!(&byte, b"x", "the connection is served");
    let evs = fx.exactly(1, WITHIN, QUIET)?;
    let ev = &evs[0];
    assert_eq!(ev["event"], "established_after_timeout", "{ev}");
    assert_eq!(
        tuple(ev),
        (shown(client.local_addr()?), shown(accepted.local_addr()?))
    );
    assert_eq!(u64_of(ev, "cookie"), cookie(&accepted)?);
    assert_eq!(u64_of(ev, "syn_at"), u64_of(timeout, "syn_at"));
    assert!(
        u64_of(ev, "established_at") - u64_of(ev, "syn_at") >= 300_000_000,
        "{ev}"
    );
    Ok(())
}

#[test]
fn ack_after_syn_timeout_is_marked_late_not_reported_again() -> Result<()> {
    late_ack("pr-late4", false)
}

#[test]
fn ack_after_syn_timeout_v6_is_marked_late_not_reported_again() -> Result<()> {
    late_ack("pr-late6", true)
}
