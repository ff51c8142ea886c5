//! `cargo xtask demo`: the README's "run" command. Builds everything, puts
//! an agent in a server network namespace with a listener that shows every
//! status, drives clients from a client namespace, and prints what the
//! records say.

mod pki;
mod report;
mod scenarios;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use connlog_tests::Pair;
use connlog_tests::agent::Agent;
use connlog_tests::upstream::Upstream;

use crate::{setup, shell};

/// The demo's files stay here afterwards, for a look.
const DEMO_DIR: &str = "/tmp/connlog-demo";
const TLS_PORT: u16 = 443;
const UPSTREAM_PORT: u16 = 8080;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

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
        "network: client namespace {} ({}, {}) ↔ server namespace {} ({}, {})",
        pair.client.name(),
        pair.client_v4,
        pair.client_v6,
        pair.server.name(),
        pair.server_v4,
        pair.server_v6
    );
    let clients = pki::write(&dir).context("writing the demo PKI")?;
    let upstream = Upstream::echo(
        &pair.server,
        SocketAddr::new(pair.server_v4.into(), UPSTREAM_PORT),
        false,
    )?;
    let config = write_agent_config(&dir, &pair, upstream.addr)?;
    let agent = Agent::start(Some(&pair.server), &config).context("starting connlog-agent")?;
    println!("agent:   {} (config {})", pair.server_v4, config.display());

    let mut expected = Vec::new();
    for v6 in [false, true] {
        let target = scenarios::Target {
            pair: &pair,
            addr: SocketAddr::new(pair.server_ip(v6), TLS_PORT),
            clients: &clients,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        };
        println!("\nclients → {}", target.addr);
        for scenario in scenarios::all() {
            println!("  {:<50} expect {}", scenario.what, scenario.expect);
            (scenario.run)(&target).with_context(|| format!("scenario: {}", scenario.what))?;
            expected.push(scenario.expect);
        }
    }

    let records = report::collect(&agent, expected.len())?;
    let path = dir.join("records.jsonl");
    report::write_jsonl(&path, &records)?;
    let all_seen = report::print_table(&expected, &records);
    println!("\nrecords: {}", path.display());
    println!("files:   {DEMO_DIR}");
    anyhow::ensure!(all_seen, "some statuses were not produced as expected");
    Ok(())
}

fn write_agent_config(dir: &Path, pair: &Pair, upstream: SocketAddr) -> Result<PathBuf> {
    std::fs::write(dir.join("function.js"), FUNCTION)?;
    std::fs::write(
        dir.join("revoked.json"),
        format!(
            "{{\"{}\": \"revoked by the demo\"}}\n",
            pki::KVS_REVOKED_SERIAL_TEXT
        ),
    )?;
    let config = format!(
        r#"# connlog demo agent
[agent]
id = "demo-edge-1"

[[listener]]
distribution_id = "E2DX1SLDPK0123"
bind = ["{v4}:{TLS_PORT}", "[{v6}]:{TLS_PORT}"]
cert = "server.pem"
key = "server.key"
upstream = "{upstream}"
handshake_timeout = "{timeout}s"

[listener.mtls]
mode = "required"
trust_store = "ca.pem"
crl = ["root.crl"]

[listener.connection_function]
file = "function.js"
kvs = "revoked.json"
"#,
        v4 = pair.server_v4,
        v6 = pair.server_v6,
        timeout = HANDSHAKE_TIMEOUT.as_secs(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// A CloudFront-style connection function: revocation by KVS lookup of
/// the serial, and a deliberate failure for one client.
const FUNCTION: &str = r#"import cf from 'cloudfront';

const kvs = cf.kvs();

async function connectionHandler(connection) {
  const leaf = connection.clientCertificate.certificates.leaf;
  if (leaf.subject.includes('CN=boom.client.test')) {
    throw new Error('demo: this function fails for boom.client.test');
  }
  if (await kvs.exists(leaf.serialNumber)) {
    connection.logCustomData('REVOKED:' + leaf.serialNumber);
    connection.deny();
    return;
  }
  connection.logCustomData('OK:' + leaf.serialNumber);
  connection.allow();
}
"#;
