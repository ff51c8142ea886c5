//! The agent side of the scenarios: its config (kernel probe, one mTLS
//! listener with a CRL and a KVS-revocation connection function, exporting
//! to a collector) and the client namespace's firewall rule.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use super::pki;
use crate::Pair;

/// The listener's port.
pub const TLS_PORT: u16 = 443;
/// The listener's `handshake_timeout` (the silent client's TcpTimeout).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// The probe's `syn_timeout` (the unanswered SYN-ACK's TcpTimeout).
pub const SYN_TIMEOUT: Duration = Duration::from_secs(2);

/// In the client namespace: drop the RSTs the kernel would send for the
/// raw SYNs that must stay unanswered.
pub fn drop_unanswered_rsts(pair: &Pair) -> Result<()> {
    let [p4, p6] = super::UNANSWERED_PORTS;
    let rules = format!(
        "add table inet scenarios; \
         add chain inet scenarios out {{ type filter hook output priority 0; }}; \
         add rule inet scenarios out tcp sport {{ {p4}, {p6} }} tcp flags & rst == rst drop"
    );
    pair.client.exec(&["nft", &rules]).map(drop)
}

/// Writes `agent.toml`, `function.js` and `revoked.json` into `dir` (which
/// already holds [`pki::write`]'s files); returns the config's path.
pub fn write_agent_config(
    dir: &Path,
    pair: &Pair,
    upstream: SocketAddr,
    collector: SocketAddr,
    agent_id: &str,
) -> Result<PathBuf> {
    std::fs::write(dir.join("function.js"), FUNCTION)?;
    std::fs::write(
        dir.join("revoked.json"),
        format!(
            "{{\"{}\": \"revoked by the scenarios\"}}\n",
            pki::KVS_REVOKED_SERIAL_TEXT
        ),
    )?;
    let config = format!(
        r#"# connlog scenarios agent
[agent]
id = "{agent_id}"

[probe]
syn_timeout = "{syn_timeout}ms"

[export]
endpoint = "http://{collector}"
batch_max_age_ms = 100

[[listener]]
distribution_id = "E2DX1SLDPK0123"
bind = ["{v4}:{TLS_PORT}", "[{v6}]:{TLS_PORT}"]
cert = "server.pem"
key = "server.key"
upstream = "{upstream}"
handshake_timeout = "{timeout}ms"

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
        timeout = HANDSHAKE_TIMEOUT.as_millis(),
        syn_timeout = SYN_TIMEOUT.as_millis(),
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
    throw new Error('scenarios: this function fails for boom.client.test');
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
