//! The whole pipeline with real processes: agent (mTLS terminator →
//! joiner → exporter) → gRPC → collector → JSON file. For each terminator
//! scenario exactly one record with the right status and fields arrives,
//! over IPv4 and IPv6; a SIGTERM'd agent under load still delivers every
//! record of every connection it handled.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use connlog_tests::pki::{Ca, LeafSpec};
use connlog_tests::tlsclient::{ClientSpec, client_hello_bytes};
use connlog_tests::tlsfixture::{ListenerSpec, PORT, TlsFixture, client_refused};
use connlog_tests::{CollectorProcess, json_records};
use serde_json::{Map, Value};

const COLLECTOR: &str = "127.0.0.1:4317";

/// Agent + collector in the server namespace; every field written.
fn start(tag: &str) -> Result<(TlsFixture, CollectorProcess)> {
    let spec = ListenerSpec {
        extra: "handshake_timeout = \"1500ms\"\n".into(),
        mtls: format!(
            "mode = \"required\"\ntrust_store = \"ca.pem\"\n\n\
             [agent]\nid = \"edge-{tag}\"\n\n\
             [export]\nendpoint = \"http://{COLLECTOR}\"\nbatch_max_age_ms = 50\nbackoff_max_ms = 200\n"
        ),
    };
    let fx = TlsFixture::start(tag, spec, |_| Ok(()))?;
    let fields: Vec<String> = connlog_proto::Field::ALL
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    let collector = CollectorProcess::start_in(
        &fx.pair.server,
        COLLECTOR.parse()?,
        &format!(
            "[[sink]]\ntype = \"file\"\nformat = \"json\"\ndir = \"{{dir}}/out\"\nfields = [{}]\n",
            fields.join(", ")
        ),
    )?;
    Ok((fx, collector))
}

/// Stops the agent (SIGTERM: it flushes), then the collector; returns the
/// records by connectionId, failing on any duplicate.
fn stop_and_read(
    fx: &mut TlsFixture,
    collector: &mut CollectorProcess,
) -> Result<HashMap<String, Map<String, Value>>> {
    fx.agent.signal("TERM")?;
    let status = fx.agent.wait_exit(Duration::from_secs(20))?;
    assert!(
        status.success(),
        "agent exit: {status}; {}",
        fx.agent.stderr()
    );
    assert_eq!(collector.terminate()?, 0);
    let mut out = HashMap::new();
    for r in json_records(&collector.path().join("out"))? {
        let id = r["connectionId"]
            .as_str()
            .context("connectionId")?
            .to_owned();
        assert!(out.insert(id.clone(), r).is_none(), "duplicate record {id}");
    }
    Ok(out)
}

struct Expect {
    id: String,
    client: SocketAddr,
    status: &'static str,
    detail: &'static str,
    subject: &'static str,
    sni: &'static str,
}

#[test]
fn every_terminator_scenario_gives_one_record_in_the_collector_v4_and_v6() -> Result<()> {
    let (mut fx, mut collector) = start("pl-e2e")?;
    let rogue = Ca::root("not trusted")?.leaf(&LeafSpec::default())?;
    let good = fx.root.leaf(&LeafSpec::default())?;
    let hello = client_hello_bytes()?;
    let mut expected = Vec::new();
    for v6 in [false, true] {
        let mut expect = |client: SocketAddr, status, detail, subject, sni| -> Result<()> {
            let ev = fx.agent.event()?;
            expected.push(Expect {
                id: ev["connection_id"].as_str().context("id")?.to_owned(),
                client,
                status,
                detail,
                subject,
                sni,
            });
            Ok(())
        };
        // Success.
        let tls = fx.tls(v6, &ClientSpec::with_leaf(&good))?;
        let client = tls.sock.local_addr()?;
        drop(tls);
        expect(
            client,
            "Success",
            "-",
            "C=US, O=Example, CN=client.test",
            "edge.test",
        )?;
        // Untrusted certificate (fields still logged).
        let tcp = fx.tcp(v6)?;
        let client = tcp.local_addr()?;
        assert!(client_refused(connlog_tests::tlsclient::handshake(
            tcp,
            &ClientSpec::with_leaf(&rogue)
        )));
        expect(
            client,
            "Failed:ClientCertUntrusted",
            "-",
            "C=US, O=Example, CN=client.test",
            "edge.test",
        )?;
        // No certificate in required mode.
        let tcp = fx.tcp(v6)?;
        let client = tcp.local_addr()?;
        assert!(client_refused(connlog_tests::tlsclient::handshake(
            tcp,
            &ClientSpec::anonymous()
        )));
        expect(client, "Failed:ClientCertMissing", "-", "-", "edge.test")?;
        // Not TLS.
        let mut tcp = fx.tcp(v6)?;
        let client = tcp.local_addr()?;
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n")?;
        expect(client, "Failed:UnmappedConnectionError", "-", "-", "-")?;
        drop(tcp);
        // EOF and RST in the middle of the ClientHello.
        let mut tcp = fx.tcp(v6)?;
        let client = tcp.local_addr()?;
        tcp.write_all(&hello[..10])?;
        tcp.shutdown(Shutdown::Write)?;
        expect(client, "Failed:TcpError", "eof-during-tls", "-", "-")?;
        let mut tcp = fx.tcp(v6)?;
        let client = tcp.local_addr()?;
        tcp.write_all(&hello[..hello.len() / 2])?;
        std::thread::sleep(Duration::from_millis(100));
        connlog_tests::reset(tcp)?;
        expect(client, "Failed:TcpError", "rst-during-tls", "-", "-")?;
        // A silent client runs into the handshake timeout.
        let tcp = fx.tcp(v6)?;
        let client = tcp.local_addr()?;
        expect(client, "Failed:TcpTimeout", "no-client-hello", "-", "-")?;
        drop(tcp);
    }
    let records = stop_and_read(&mut fx, &mut collector)?;
    assert_eq!(
        records.len(),
        expected.len(),
        "one record per attempt, nothing else"
    );
    for e in &expected {
        let r = records
            .get(&e.id)
            .with_context(|| format!("no record for {} ({})", e.id, e.status))?;
        let ctx = format!("{} {}", e.status, e.client);
        assert_eq!(r["connectionStatus"], e.status, "{ctx}");
        assert_eq!(r["clientIp"], e.client.ip().to_string(), "{ctx}");
        assert_eq!(r["clientPort"], e.client.port().to_string(), "{ctx}");
        let server = fx.addr(e.client.is_ipv6());
        assert_eq!(r["serverIp"], server.ip().to_string(), "{ctx}");
        assert_eq!(r["serverPort"], PORT.to_string(), "{ctx}");
        assert_eq!(r["distributionId"], "E2DX1SLDPK0123", "{ctx}");
        assert_eq!(r["agentId"], "edge-pl-e2e", "{ctx}");
        assert_eq!(r["tcpFailureDetail"], e.detail, "{ctx}");
        assert_eq!(r["clientLeafCertSubject"], e.subject, "{ctx}");
        assert_eq!(r["tlsSni"], e.sni, "{ctx}");
        let ts: u64 = r["eventTimestamp"].as_str().unwrap_or("0").parse()?;
        assert!(ts > 1_700_000_000_000, "{ctx}: eventTimestamp in ms");
        if e.status == "Success" {
            assert_eq!(r["tlsProtocol"], "TLSv1.3", "{ctx}");
            assert_eq!(r["clientLeafCertSerialNumber"], "00:8f:12:34", "{ctx}");
            assert_eq!(
                r["clientLeafCertValidity"],
                "NotBefore=2025-06-05T00:00:00Z;NotAfter=2125-05-12T00:00:00Z",
                "{ctx}"
            );
        }
        if e.status.starts_with("Failed:Tcp") {
            assert_eq!(r["tlsProtocol"], "-", "{ctx}");
            assert_eq!(r["clientLeafCertSerialNumber"], "-", "{ctx}");
        }
    }
    Ok(())
}

#[test]
fn agent_sigterm_under_load_delivers_every_handled_connection() -> Result<()> {
    let (mut fx, mut collector) = start("pl-term")?;
    let good = fx.root.leaf(&LeafSpec::default())?;
    let spec = ClientSpec::with_leaf(&good);
    // Handshakes back to back (bounded: 400 or 3 s) while SIGTERM lands.
    let addr = fx.addr(false);
    let client_ns = &fx.pair.client;
    let mut completed = 0u32;
    let started = std::time::Instant::now();
    let mut signalled = false;
    while completed < 400 && started.elapsed() < Duration::from_secs(3) {
        if !signalled && started.elapsed() > Duration::from_millis(800) {
            fx.agent.signal("TERM")?;
            signalled = true;
        }
        let Ok(tcp) = client_ns.connect(addr) else {
            break;
        };
        match connlog_tests::tlsclient::handshake(tcp, &spec) {
            Ok(_) => completed += 1,
            Err(_) => break,
        }
    }
    if !signalled {
        fx.agent.signal("TERM")?;
    }
    assert!(completed > 5, "load ran: {completed}");
    let status = fx.agent.wait_exit(Duration::from_secs(30))?;
    assert!(status.success(), "{status}");
    // Every outcome the agent printed must be in the collector's output.
    let mut ids = Vec::new();
    while let Ok(ev) = fx.agent.event() {
        ids.push(ev["connection_id"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        ids.len() as u32 >= completed,
        "{} outcomes for {completed} handshakes",
        ids.len()
    );
    assert_eq!(collector.terminate()?, 0);
    let mut out = HashMap::new();
    for r in json_records(&collector.path().join("out"))? {
        let id = r["connectionId"].as_str().unwrap_or_default().to_owned();
        assert!(out.insert(id.clone(), r).is_none(), "duplicate {id}");
    }
    for id in &ids {
        assert!(
            out.contains_key(id),
            "record {id} lost at shutdown ({} of {})",
            out.len(),
            ids.len()
        );
    }
    assert_eq!(out.len(), ids.len());
    Ok(())
}

/// Agent with the kernel probe and an mTLS listener, exporting to a
/// collector in the server namespace.
struct ProbeTls {
    agent: connlog_tests::agent::Agent,
    root: Ca,
    pair: connlog_tests::Pair,
    _dir: connlog_tests::TempDir,
}

fn start_with_probe(tag: &str) -> Result<(ProbeTls, CollectorProcess)> {
    use connlog_tests::pki;
    let pair = connlog_tests::Pair::new(tag)?;
    let dir = connlog_tests::TempDir::new(tag)?;
    let root = Ca::root("connlog test root")?;
    pki::write_server_files(dir.path(), &root)?;
    let config = format!(
        "[agent]\nid = \"edge-{tag}\"\n\n\
         [probe]\nsyn_timeout = \"1500ms\"\n\n\
         [export]\nendpoint = \"http://{COLLECTOR}\"\nbatch_max_age_ms = 50\nbackoff_max_ms = 200\n\n\
         [[listener]]\ndistribution_id = \"E2DX1SLDPK0123\"\n\
         bind = [\"{}:{PORT}\", \"[{}]:{PORT}\"]\n\
         cert = \"server.pem\"\nkey = \"server.key\"\n\
         [listener.mtls]\nmode = \"required\"\ntrust_store = \"ca.pem\"\n",
        pair.server_v4, pair.server_v6
    );
    let path = pki::write(dir.path(), "agent.toml", &config)?;
    let agent = connlog_tests::agent::Agent::start(Some(&pair.server), &path)?;
    agent.wait_log("probe attached")?;
    let collector = CollectorProcess::start_in(
        &pair.server,
        COLLECTOR.parse()?,
        "[[sink]]\ntype = \"file\"\nformat = \"json\"\ndir = \"{dir}/out\"\n\
         fields = [\"connectionId\", \"connectionStatus\", \"clientIp\", \"clientPort\", \"distributionId\", \
         \"tlsProtocol\", \"tcpHandshakeDuration\", \"synAckRetransmits\", \"tcpFailureDetail\"]\n",
    )?;
    Ok((
        ProbeTls {
            agent,
            root,
            pair,
            _dir: dir,
        },
        collector,
    ))
}

#[test]
fn kernel_and_tls_halves_join_into_one_record_per_attempt_v4_and_v6() -> Result<()> {
    let (mut fx, mut collector) = start_with_probe("pl-probe")?;
    let good = fx.root.leaf(&LeafSpec::default())?;
    let server = |v6: bool| SocketAddr::new(fx.pair.server_ip(v6), PORT);
    let mut expected: Vec<(SocketAddr, &str, &str)> = Vec::new();
    for v6 in [false, true] {
        // A successful handshake: kernel and TLS halves in one record.
        let tcp = fx.pair.client.connect(server(v6))?;
        let tls = connlog_tests::tlsclient::handshake(tcp, &ClientSpec::with_leaf(&good))?;
        expected.push((tls.sock.local_addr()?, "Success", "-"));
        drop(tls);
        // A raw SYN whose SYN-ACK the client kernel resets: kernel only.
        let port = if v6 { 40124 } else { 40123 };
        let (layer, dst) = if v6 {
            ("IPv6", fx.pair.server_v6.to_string())
        } else {
            ("IP", fx.pair.server_v4.to_string())
        };
        let script = format!(
            "from scapy.all import {layer}, TCP, send\n\
             send({layer}(dst='{dst}')/TCP(sport={port}, dport={PORT}, flags='S', seq=1000000), verbose=0)\n"
        );
        let ok = fx
            .pair
            .client
            .command("python3")
            .args(["-c", &script])
            .status()?
            .success();
        assert!(ok, "scapy");
        expected.push((
            SocketAddr::new(fx.pair.client_ip(v6), port),
            "Failed:TcpError",
            "client-rst-in-syn-recv",
        ));
    }
    // The client's final ACKs are dropped: SYN-ACKs go unanswered.
    let rules = format!(
        "add table inet cl; add chain inet cl out {{ type filter hook output priority 0; }}; \
         add rule inet cl out tcp dport {PORT} tcp flags == ack drop"
    );
    fx.pair.client.exec(&["nft", &rules])?;
    let mut hanging = Vec::new();
    for v6 in [false, true] {
        let tcp = fx.pair.client.connect(server(v6))?;
        expected.push((tcp.local_addr()?, "Failed:TcpTimeout", "syn-ack-unanswered"));
        hanging.push(tcp);
    }
    std::thread::sleep(Duration::from_millis(3500));
    fx.agent.signal("TERM")?;
    let status = fx.agent.wait_exit(Duration::from_secs(20))?;
    assert!(status.success(), "{status}");
    drop(hanging);
    assert_eq!(collector.terminate()?, 0);
    let records = json_records(&collector.path().join("out"))?;
    assert_eq!(
        records.len(),
        expected.len(),
        "one record per attempt: {records:?}"
    );
    for (client, status, detail) in &expected {
        let shown_ip = client.ip().to_canonical().to_string();
        let port = client.port().to_string();
        let matching: Vec<_> = records
            .iter()
            .filter(|r| {
                r["clientIp"] == shown_ip && r["clientPort"].as_str() == Some(port.as_str())
            })
            .collect();
        assert_eq!(matching.len(), 1, "{client} {status}: {records:?}");
        let r = matching[0];
        assert_eq!(r["connectionStatus"], *status, "{r:?}");
        assert_eq!(r["tcpFailureDetail"], *detail, "{r:?}");
        assert_eq!(r["distributionId"], "E2DX1SLDPK0123", "{r:?}");
        if *status == "Success" {
            assert_eq!(r["tlsProtocol"], "TLSv1.3", "{r:?}");
            assert_eq!(r["synAckRetransmits"], "0", "{r:?}");
            let us: u64 = r["tcpHandshakeDuration"]
                .as_str()
                .unwrap_or("x")
                .parse()
                .context("kernel field joined")?;
            assert!(us < 1_000_000, "{r:?}");
        } else {
            assert_eq!(r["tlsProtocol"], "-", "{r:?}");
            assert_ne!(r["synAckRetransmits"], "-", "{r:?}");
        }
    }
    Ok(())
}
