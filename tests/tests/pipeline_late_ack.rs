//! One record per attempt when the client's final ACK comes after
//! `syn_timeout`: the probe records the attempt as `TcpTimeout`
//! (`syn-ack-unanswered`); when the ACK then arrives (here: dropped by an
//! nft rule in the client namespace for longer than a 300 ms `syn_timeout`,
//! then let through) the kernel still holds the request and the connection
//! is ESTABLISHED and served, but no second record follows. Observed
//! through the agent's metrics, read with Python's urllib.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use connlog_tests::agent::Agent;
use connlog_tests::pki::{Ca, LeafSpec};
use connlog_tests::promtext;
use connlog_tests::tlsclient::{self, ClientSpec};
use connlog_tests::{Pair, TempDir};

const PORT: u16 = 8443;
const METRICS: &str = "127.0.0.1:9464";

/// The agent's samples once `done` holds for them (up to 5 s).
fn wait_for(
    pair: &Pair,
    agent: &Agent,
    what: &str,
    done: impl Fn(&BTreeMap<String, u64>) -> bool,
) -> Result<BTreeMap<String, u64>> {
    promtext::wait_for(
        &pair.server,
        METRICS,
        agent,
        Duration::from_secs(5),
        what,
        done,
    )
}

#[test]
fn an_ack_after_syn_timeout_gives_one_tcp_timeout_record() -> Result<()> {
    let pair = Pair::new("lateack")?;
    let dir = TempDir::new("lateack")?;
    let root = Ca::root("late ack root")?;
    let agent = promtext::start_agent(&pair, dir.path(), &root, PORT, METRICS, "300ms")?;

    // The client's pure ACKs to the port are dropped: its connect()
    // returns, the server's request stays in SYN_RECV.
    let drop_acks = format!(
        "add table inet late; \
         add chain inet late out {{ type filter hook output priority 0; }}; \
         add rule inet late out tcp dport {PORT} tcp flags == ack drop"
    );
    pair.client.exec(&["nft", &drop_acks])?;
    let addr = format!("{}:{PORT}", pair.server_v4).parse()?;
    let tcp = pair.client.connect(addr)?;

    // After syn_timeout (300 ms) and a sweep: the TcpTimeout record.
    let timeout = "connlog_records_total{status=\"Failed:TcpTimeout\"}";
    wait_for(&pair, &agent, "the TcpTimeout record", |m| {
        m.get(timeout) == Some(&1)
    })?;

    // The ACK now gets through (the ClientHello carries it, and the kernel
    // still holds the request: its first SYN-ACK retransmission is due at
    // 1 s, it gives up after 63 s): the connection is established late and
    // the terminator serves it.
    pair.client.exec(&["nft", "delete table inet late"])?;
    let good = root.leaf(&LeafSpec::default())?;
    tlsclient::handshake(tcp, &ClientSpec::with_leaf(&good))?;

    wait_for(&pair, &agent, "the late ESTABLISHED", |m| {
        m.get("connlog_probe_established_after_timeout_total") == Some(&1)
            && m.get("connlog_join_after_timeout_total") == Some(&1)
    })?;
    // Past the joiner's grace (500 ms) for the TLS outcome: still one record.
    std::thread::sleep(Duration::from_millis(1200));
    let m = wait_for(&pair, &agent, "the counters", |_| true)?;
    let want = [
        (timeout, 1),
        ("connlog_export_records_in_total", 1),
        ("connlog_tls_accepted_total", 1),
        ("connlog_probe_established_after_timeout_total", 1),
        ("connlog_join_after_timeout_total", 1),
        ("connlog_join_kernel_only_total", 1),
        ("connlog_join_joined_total", 0),
        ("connlog_join_tls_only_total", 0),
        ("connlog_probe_channel_full_total", 0),
    ];
    for (name, value) in want {
        assert_eq!(m.get(name), Some(&value), "{name}: {m:?}");
    }
    assert_eq!(
        m.keys()
            .filter(|k| k.starts_with("connlog_records_total"))
            .collect::<Vec<_>>(),
        [timeout],
        "{m:?}"
    );
    Ok(())
}
