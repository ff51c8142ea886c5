//! Every status end to end with real processes: an agent with the kernel
//! probe, an mTLS listener with a CRL and a connection function, exporting
//! over gRPC to a collector writing JSON. For every scenario of the kernel
//! probe and the terminator (`connlog_tests::scenarios`, the demo's), over
//! IPv4 and IPv6, exactly one record arrives with the right status and
//! fields, and nothing else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use connlog_tests::agent::Agent;
use connlog_tests::scenarios::setup::{self, HANDSHAKE_TIMEOUT, SYN_TIMEOUT, TLS_PORT};
use connlog_tests::scenarios::{self, Scenario, Target, pki};
use connlog_tests::upstream::Upstream;
use connlog_tests::{CollectorProcess, Pair, TempDir, json_records};
use serde_json::{Map, Value};

const COLLECTOR: &str = "127.0.0.1:4317";
const AGENT_ID: &str = "edge-pl-status";

#[test]
fn every_status_arrives_exactly_once_with_its_fields_v4_and_v6() -> Result<()> {
    let pair = Pair::new("pl-status")?;
    let dir = TempDir::new("pl-status")?;
    setup::drop_unanswered_rsts(&pair)?;
    let clients = pki::write(dir.path())?;
    let upstream = Upstream::echo(
        &pair.server,
        SocketAddr::new(pair.server_v4.into(), 8080),
        false,
    )?;
    let fields: Vec<String> = connlog_proto::Field::ALL
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    let mut collector = CollectorProcess::start_in(
        &pair.server,
        COLLECTOR.parse()?,
        &format!(
            "[[sink]]\ntype = \"file\"\nformat = \"json\"\ndir = \"{{dir}}/out\"\nfields = [{}]\n",
            fields.join(", ")
        ),
    )?;
    let config = setup::write_agent_config(
        dir.path(),
        &pair,
        upstream.addr,
        COLLECTOR.parse()?,
        AGENT_ID,
    )?;
    let mut agent = Agent::start(Some(&pair.server), &config)?;
    agent.wait_log("probe attached")?;

    let all = scenarios::all();
    let mut done: Vec<(&Scenario, SocketAddr)> = Vec::new();
    for v6 in [false, true] {
        let target = Target {
            pair: &pair,
            addr: SocketAddr::new(pair.server_ip(v6), TLS_PORT),
            clients: &clients,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            v6,
        };
        for scenario in &all {
            let client = (scenario.run)(&target)
                .with_context(|| format!("scenario {} (v6 {v6})", scenario.what))?;
            done.push((scenario, client));
        }
    }
    // Unanswered SYNs become records after `syn_timeout`; then the agent
    // flushes on SIGTERM and the collector finalises its files.
    std::thread::sleep(SYN_TIMEOUT + Duration::from_millis(1500));
    agent.signal("TERM")?;
    let status = agent.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "agent exit {status}: {}", agent.stderr());
    ensure!(collector.terminate()? == 0, "collector exit");

    let records = json_records(&collector.path().join("out"))?;
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for r in &records {
        *ids.entry(text(r, "connectionId")).or_default() += 1;
    }
    let dups: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(dups.is_empty(), "duplicate connectionIds: {dups:?}");
    ensure!(
        records.len() == done.len(),
        "{} records for {} attempts: {records:#?}",
        records.len(),
        done.len()
    );
    for (scenario, client) in &done {
        check(scenario, *client, &pair, &records)?;
    }
    Ok(())
}

fn text<'a>(r: &'a Map<String, Value>, field: &str) -> &'a str {
    r.get(field).and_then(Value::as_str).unwrap_or("<missing>")
}

/// The one record from `client` carries what `scenario` expects.
fn check(
    scenario: &Scenario,
    client: SocketAddr,
    pair: &Pair,
    records: &[Map<String, Value>],
) -> Result<()> {
    let ip = client.ip().to_canonical().to_string();
    let port = client.port().to_string();
    let mine: Vec<_> = records
        .iter()
        .filter(|r| text(r, "clientIp") == ip && text(r, "clientPort") == port)
        .collect();
    let ctx = format!("{} from {client}", scenario.what);
    ensure!(mine.len() == 1, "{ctx}: {} records: {mine:#?}", mine.len());
    let r = mine[0];
    let field = |name: &str| text(r, name);
    let eq = |name: &str, want: &str| -> Result<()> {
        ensure!(
            field(name) == want,
            "{ctx}: {name} = {:?}, expected {want:?}; record {r:#?}",
            field(name)
        );
        Ok(())
    };
    eq("connectionStatus", scenario.expect)?;
    eq("tcpFailureDetail", scenario.detail)?;
    eq("clientLeafCertSerialNumber", scenario.serial)?;
    eq("serverIp", &pair.server_ip(client.is_ipv6()).to_string())?;
    eq("serverPort", &TLS_PORT.to_string())?;
    eq("distributionId", "E2DX1SLDPK0123")?;
    eq("agentId", AGENT_ID)?;
    let ts: u64 = field("eventTimestamp").parse().context("eventTimestamp")?;
    ensure!(ts > 1_700_000_000_000, "{ctx}: eventTimestamp {ts} in ms");
    ensure!(
        field("connectionId").len() == 24,
        "{ctx}: connectionId {}",
        field("connectionId")
    );
    // The kernel's half: joined for every accepted attempt, and the only
    // source of the kernel-only records.
    let retransmits = field("synAckRetransmits");
    if scenario.detail == "syn-ack-unanswered" {
        let n: u32 = retransmits.parse().context("synAckRetransmits")?;
        ensure!(n >= 1, "{ctx}: the SYN-ACK was re-sent ({n})");
    } else {
        eq("synAckRetransmits", "0")?;
    }
    if scenario.accepted {
        let us: u64 = field("tcpHandshakeDuration")
            .parse()
            .with_context(|| format!("{ctx}: tcpHandshakeDuration joined"))?;
        ensure!(us < 5_000_000, "{ctx}: tcpHandshakeDuration {us} µs");
    } else {
        eq("tcpHandshakeDuration", "-")?;
        eq("tlsHandshakeDuration", "-")?;
    }
    // TLS fields: present once a handshake got far enough to agree on a
    // version (every certificate outcome), absent otherwise.
    let negotiated = scenario.expect == "Success"
        || scenario.expect.starts_with("Failed:ClientCert")
        || scenario.expect.starts_with("Failed:ConnectionFunction");
    if negotiated {
        eq("tlsProtocol", "TLSv1.3")?;
        eq("tlsSni", "edge.test")?;
        ensure!(field("tlsCipher").starts_with("TLS_"), "{ctx}: tlsCipher");
    } else {
        eq("tlsProtocol", "-")?;
        eq("tlsCipher", "-")?;
        eq("tlsSni", "-")?;
    }
    if scenario.serial == "-" {
        eq("clientLeafCertSubject", "-")?;
        eq("clientLeafCertValidity", "-")?;
    } else {
        let subject = field("clientLeafCertSubject");
        ensure!(
            subject.starts_with("C=US, O=Example, CN=") && subject.ends_with("client.test"),
            "{ctx}: subject {subject}"
        );
        ensure!(
            field("clientLeafCertValidity").starts_with("NotBefore="),
            "{ctx}: validity"
        );
        eq(
            "clientLeafCertSha256",
            &field("clientLeafCertSha256").to_lowercase(),
        )?;
        ensure!(field("clientLeafCertSha256").len() == 64, "{ctx}: sha256");
    }
    let custom = match scenario.expect {
        "Success" => "OK:00:8f:12:34",
        "Failed:ConnectionFunctionDenied" => "REVOKED:0b:ad",
        _ => "-",
    };
    eq("connectionLogCustomData", custom)
}
