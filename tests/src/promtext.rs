//! Reading the agent's `[metrics]` endpoint with an independent client
//! (Python's urllib) inside a namespace, and the agent those tests start.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::agent::Agent;
use crate::pki::{self, Ca};
use crate::{Netns, Pair};

/// Starts an agent in `pair`'s server namespace with the probe on
/// (`syn_timeout`), `[metrics] listen = metrics` and one `required` mTLS
/// listener on `server_v4:port` trusting `root` (files written to `dir`);
/// returns once the probe is attached.
pub fn start_agent(
    pair: &Pair,
    dir: &Path,
    root: &Ca,
    port: u16,
    metrics: &str,
    syn_timeout: &str,
) -> Result<Agent> {
    pki::write_server_files(dir, root)?;
    let config = format!(
        "[probe]\nsyn_timeout = \"{syn_timeout}\"\n[metrics]\nlisten = \"{metrics}\"\n\
         [[listener]]\ndistribution_id = \"E1\"\nbind = [\"{}:{port}\"]\n\
         cert = \"server.pem\"\nkey = \"server.key\"\n\
         [listener.mtls]\nmode = \"required\"\ntrust_store = \"ca.pem\"\n",
        pair.server_v4
    );
    let path = pki::write(dir, "agent.toml", &config)?;
    let agent = Agent::start(Some(&pair.server), &path)?;
    agent.wait_log("probe attached")?;
    Ok(agent)
}

/// The samples at `http://{addr}/metrics` in `ns` once `done` holds for
/// them, read every 50 ms for up to `timeout`; the error names `what` and
/// carries the last body and `agent`'s log.
pub fn wait_for(
    ns: &Netns,
    addr: &str,
    agent: &Agent,
    timeout: Duration,
    what: &str,
    done: impl Fn(&BTreeMap<String, u64>) -> bool,
) -> Result<BTreeMap<String, u64>> {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, body) = get(ns, addr, "/metrics")?;
        assert_eq!(code, 200);
        let m = samples(&body)?;
        if done(&m) {
            return Ok(m);
        }
        if Instant::now() > deadline {
            bail!("{what} never seen:\n{body}\nlog:\n{}", agent.stderr());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET http://{addr}{path}` with urllib inside `ns`: (status code, body).
/// Asserts the Prometheus text content type.
pub fn get(ns: &Netns, addr: &str, path: &str) -> Result<(u16, String)> {
    let script = format!(
        "import urllib.request, urllib.error\n\
         try:\n    r = urllib.request.urlopen('http://{addr}{path}', timeout=5)\n    \
         print(r.status); print(r.headers.get('Content-Type')); print(r.read().decode(), end='')\n\
         except urllib.error.HTTPError as e:\n    print(e.code); print(e.headers.get('Content-Type'))\n"
    );
    let out = ns.exec(&["python3", "-c", &script])?;
    let text = String::from_utf8(out.stdout)?;
    let mut lines = text.splitn(3, '\n');
    let code = lines.next().context("status")?.trim().parse()?;
    let content_type = lines.next().context("content type")?;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    Ok((code, lines.next().unwrap_or_default().to_string()))
}

/// Sample lines as `name{labels}` → value.
pub fn samples(body: &str) -> Result<BTreeMap<String, u64>> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').context("sample line")?;
            Ok((name.to_string(), value.parse()?))
        })
        .collect()
}
