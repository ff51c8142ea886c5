//! `cargo xtask demo`: the README's "run" command. Builds everything, puts
//! a collector and an agent (kernel probe + mTLS listener + connection
//! function, exporting over gRPC) in a server network namespace, drives
//! clients that produce every status from a client namespace, and prints
//! a per-status table of the records the collector wrote.

mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use connlog_tests::agent::Agent;
use connlog_tests::scenarios::setup::{HANDSHAKE_TIMEOUT, SYN_TIMEOUT, TLS_PORT};
use connlog_tests::scenarios::{self, pki, setup as agent_setup};
use connlog_tests::upstream::Upstream;
use connlog_tests::{CollectorProcess, Pair};

use crate::{setup, shell};

/// The demo's files stay here afterwards, for a look.
const DEMO_DIR: &str = "/tmp/connlog-demo";
const UPSTREAM_PORT: u16 = 8080;
/// The collector listens on the server namespace's loopback.
const COLLECTOR: &str = "127.0.0.1:4317";

pub fn run() -> Result<()> {
    setup::run()?;
    shell::run(Command::new("cargo").args(["build", "--workspace", "--bins"]))?;

    let dir = PathBuf::from(DEMO_DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {DEMO_DIR}"))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {DEMO_DIR}"))?;

    println!("\n== connlog demo ==");
    let pair = Pair::new("demo").context("creating the demo network namespaces")?;
    println!(
        "network:   client namespace {} ({}, {}) ↔ server namespace {} ({}, {})",
        pair.client.name(),
        pair.client_v4,
        pair.client_v6,
        pair.server.name(),
        pair.server_v4,
        pair.server_v6
    );
    agent_setup::drop_unanswered_rsts(&pair)?;
    let clients = pki::write(&dir).context("writing the demo PKI")?;
    let upstream = Upstream::echo(
        &pair.server,
        SocketAddr::new(pair.server_v4.into(), UPSTREAM_PORT),
        false,
    )?;
    let mut collector =
        CollectorProcess::start_in(&pair.server, COLLECTOR.parse()?, &collector_sinks(&dir))
            .context("starting connlog-collector")?;
    println!("collector: {COLLECTOR} in the server namespace → {DEMO_DIR}/out");
    let config = agent_setup::write_agent_config(
        &dir,
        &pair,
        upstream.addr,
        COLLECTOR.parse()?,
        "demo-edge-1",
    )?;
    let mut agent = Agent::start(Some(&pair.server), &config).context("starting connlog-agent")?;
    agent
        .wait_log("probe attached")
        .context("the kernel probe did not attach")?;
    println!(
        "agent:     kernel probe attached, listening on :{TLS_PORT} (config {})",
        config.display()
    );

    let mut expected = Vec::new();
    for v6 in [false, true] {
        let target = scenarios::Target {
            pair: &pair,
            addr: SocketAddr::new(pair.server_ip(v6), TLS_PORT),
            clients: &clients,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            v6,
        };
        println!("\nclients → {}", target.addr);
        for scenario in scenarios::all() {
            println!("  {:<58} expect {}", scenario.what, scenario.expect);
            (scenario.run)(&target).with_context(|| format!("scenario: {}", scenario.what))?;
            expected.push(scenario.expect);
        }
    }

    // Unanswered SYNs become records only after `syn_timeout`; then the
    // agent flushes on SIGTERM and the collector finalises its files.
    std::thread::sleep(SYN_TIMEOUT + Duration::from_millis(1500));
    agent.signal("TERM")?;
    agent.wait_exit(Duration::from_secs(30))?;
    collector.terminate()?;

    let records = connlog_tests::json_records(&dir.join("out"))?;
    let all_seen = report::print_table(&expected, &records);
    println!("\nfiles (JSON, W3C and Parquet, CloudFront names):");
    for f in connlog_tests::finished_files(&dir.join("out"), "") {
        println!("  {}", f.display());
    }
    anyhow::ensure!(all_seen, "some statuses were not produced as expected");
    Ok(())
}

/// Three file sinks: JSON with every field (CloudFront's and connlog's),
/// W3C with CloudFront's, Parquet with every field.
fn collector_sinks(dir: &Path) -> String {
    let out = dir.join("out");
    let out = out.display();
    format!(
        r#"[[sink]]
type = "file"
format = "json"
dir = "{out}/json"
fields = [{ALL_FIELDS}]

[[sink]]
type = "file"
format = "w3c"
dir = "{out}/w3c"

[[sink]]
type = "file"
format = "parquet"
dir = "{out}/parquet"
hive = true
fields = [{ALL_FIELDS}]
"#
    )
}

const ALL_FIELDS: &str = r#""eventTimestamp", "connectionId", "connectionStatus", "clientIp", "clientPort",
  "serverIp", "distributionId", "distributionTenantId", "tlsProtocol", "tlsCipher",
  "tlsHandshakeDuration", "tlsSni", "clientLeafCertSerialNumber", "clientLeafCertSubject",
  "clientLeafCertIssuer", "clientLeafCertValidity", "connectionLogCustomData", "serverPort",
  "tcpHandshakeDuration", "synAckRetransmits", "tcpFailureDetail", "clientLeafCertSha256",
  "clientLeafCertSans", "agentId""#;
