//! The agent gives up root after start (every thread: no capability left,
//! empty bounding and ambient sets, no_new_privs) and still does its job:
//! serves connections, reloads on SIGHUP, drains on SIGTERM, and its
//! probe reports kernel events and attaches to interfaces that appear
//! after start (and forgets those that go away).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use connlog_tests::agent::Agent;
use connlog_tests::kernel::Kernel;
use connlog_tests::pki::{self, Ca, LeafSpec, pem};
use connlog_tests::tlsclient::{self, ClientSpec};
use connlog_tests::tlsfixture::{client_refused, status};
use connlog_tests::{Netns, TempDir};
use serde_json::Value;

const PORT: u16 = 8443;

/// Per thread of `pid`: its name and the capability / no_new_privs lines
/// of its status.
fn threads(pid: u32) -> Result<Vec<(String, BTreeMap<String, String>)>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        let mut fields = BTreeMap::new();
        let mut name = String::new();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim().to_string();
            match key {
                "Name" => name = value,
                "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" | "NoNewPrivs" => {
                    fields.insert(key.to_string(), value);
                }
                _ => {}
            }
        }
        out.push((name, fields));
    }
    Ok(out)
}

/// Every thread holds no capability, can gain none, and the expected
/// threads exist (so the check covered them).
/// Every thread holds no capability but `kept` (a capability mask).
fn assert_unprivileged(agent: &Agent, kept: u64, expect_threads: &[&str]) -> Result<()> {
    let zero = "0000000000000000".to_string();
    let kept = format!("{kept:016x}");
    let want: BTreeMap<String, String> = [
        ("CapAmb", &zero),
        ("CapBnd", &zero),
        ("CapEff", &kept),
        ("CapInh", &zero),
        ("CapPrm", &kept),
        ("NoNewPrivs", &"1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    // A new thread names itself once it runs: wait until all are named.
    let deadline = Instant::now() + Duration::from_secs(5);
    let all = loop {
        let all = threads(agent.pid())?;
        let named = expect_threads
            .iter()
            .all(|prefix| all.iter().any(|(name, _)| name.starts_with(prefix)));
        if named {
            break all;
        }
        assert!(Instant::now() < deadline, "threads never named: {all:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for (name, fields) in &all {
        assert_eq!(fields, &want, "thread {name}");
    }
    Ok(())
}

/// Events (TLS outcomes and kernel events) until `want` of them matched
/// `pick`, within 10 s.
fn events(agent: &Agent, want: usize, pick: impl Fn(&Value) -> bool) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match agent.event_within(left) {
            Some(ev) if pick(&ev) => out.push(ev),
            Some(_) => {}
            None => bail!("got {out:?}, wanted {want}; log:\n{}", agent.stderr()),
        }
    }
    Ok(out)
}

/// The interface indexes of the tcx links the process holds, with counts.
fn tc_links(pid: u32) -> Result<BTreeMap<u32, usize>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        if !info.lines().any(|l| l.starts_with("link_type:\ttcx")) {
            continue;
        }
        if let Some(index) = info
            .lines()
            .find_map(|l| l.strip_prefix("ifindex:"))
            .and_then(|v| v.trim().parse().ok())
        {
            *out.entry(index).or_insert(0) += 1;
        }
    }
    Ok(out)
}

fn ifindex(ns: &Netns, name: &str) -> Result<u32> {
    let out = ns.exec(&["ip", "-o", "link", "show", name])?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("ifindex of {name} in {text:?}"))
}

/// Writes the server files, a function (`allow()`) and the config.
fn config(dir: &TempDir, root: &Ca, probe: &str) -> Result<std::path::PathBuf> {
    pki::write_server_files(dir.path(), root)?;
    // The key readable by its owner only: the agent, root without
    // CAP_DAC_OVERRIDE after the drop, still reads it on every reload.
    let key = dir.path().join("server.key");
    std::process::Command::new("chmod")
        .arg("600")
        .arg(&key)
        .status()?;
    pki::write(
        dir.path(),
        "fn.js",
        "function connectionHandler(c) { c.allow(); }\n",
    )?;
    let text = format!(
        "{probe}\n[[listener]]\ndistribution_id = \"E1\"\nbind = [\"0.0.0.0:{PORT}\"]\n\
         cert = \"server.pem\"\nkey = \"server.key\"\n\
         [listener.mtls]\nmode = \"required\"\ntrust_store = \"ca.pem\"\n\
         [listener.connection_function]\nfile = \"fn.js\"\n"
    );
    pki::write(dir.path(), "agent.toml", &text)
}

#[test]
fn probe_on_no_capability_left_and_new_interfaces_are_attached() -> Result<()> {
    let server = Netns::new("priv-s")?;
    let client = Netns::new("priv-c")?;
    let dir = TempDir::new("priv")?;
    let root = Ca::root("priv root")?;
    let path = config(&dir, &root, "[probe]\nsyn_timeout = \"2s\"\n")?;
    let mut agent = Agent::start(Some(&server), &path)?;
    agent.wait_log("probe attached")?;
    // Without tcx, TC programs attach (to interfaces that come up later)
    // and detach through netlink, which needs CAP_NET_ADMIN (12); where
    // every bpf() command needs CAP_BPF (39), reading the maps does.
    let kernel = Kernel::current();
    let kept =
        (u64::from(!kernel.tcx()) << 12) | (u64::from(kernel.map_reads_need_cap_bpf()) << 39);
    assert_unprivileged(
        &agent,
        kept,
        &["connlog-agent", "tokio-rt-worker", "connfn-", "probe-sweep"],
    )?;
    // Only loopback was up at start.
    let at_start = tc_links(agent.pid())?;
    assert_eq!(at_start.keys().copied().collect::<Vec<_>>(), [1]);

    // A veth pair created afterwards, one end moved into the agent's
    // namespace and brought up there.
    client.exec(&[
        "ip", "link", "add", "hp-c", "type", "veth", "peer", "name", "hp-s",
    ])?;
    client.exec(&["ip", "link", "set", "hp-s", "netns", server.name()])?;
    server.exec(&["ip", "addr", "add", "198.18.200.1/24", "dev", "hp-s"])?;
    client.exec(&["ip", "addr", "add", "198.18.200.2/24", "dev", "hp-c"])?;
    client.exec(&["ip", "link", "set", "hp-c", "up"])?;
    server.exec(&["ip", "link", "set", "hp-s", "up"])?;
    agent.wait_log("probe attached to a new interface interface=hp-s")?;
    let index = ifindex(&server, "hp-s")?;
    let links = tc_links(agent.pid())?;
    assert_eq!(links.get(&index), at_start.get(&1), "{links:?}");

    // A connection through it: served (TLS + function), and the kernel
    // saw its SYN on the new interface (syn_at before established_at).
    let leaf = root.leaf(&LeafSpec::default())?;
    let server_addr: SocketAddr = format!("198.18.200.1:{PORT}").parse()?;
    let tcp = client.connect(server_addr)?;
    let client_addr = tcp.local_addr()?;
    let _tls = tlsclient::handshake(tcp, &ClientSpec::with_leaf(&leaf))?;
    let evs = events(&agent, 2, |ev| {
        ev.get("accepted_at").is_some() || ev["event"] == "established"
    })?;
    let outcome = evs
        .iter()
        .find(|e| e.get("accepted_at").is_some())
        .context("outcome")?;
    assert_eq!(status(outcome), "Success", "{outcome}");
    let est = evs
        .iter()
        .find(|e| e["event"] == "established")
        .context("established")?;
    assert_eq!(est["tuple"]["client"], client_addr.to_string(), "{est}");
    assert_eq!(est["tuple"]["server"], server_addr.to_string(), "{est}");
    let (syn, established) = (
        est["syn_at"].as_u64().context("syn_at")?,
        est["established_at"].as_u64().context("established_at")?,
    );
    assert!(syn < established, "{est}");

    // SIGHUP re-reads the files by path without privileges: root B
    // replaces A, so A's leaf is now untrusted.
    let root_b = Ca::root("priv root b")?;
    pki::write(dir.path(), "ca.pem", &pem("CERTIFICATE", &[&root_b.der]))?;
    agent.signal("HUP")?;
    agent.wait_log("reloaded certificates")?;
    let refused = client_refused(tlsclient::handshake(
        client.connect(server_addr)?,
        &ClientSpec::with_leaf(&leaf),
    ));
    assert!(refused);
    let evs = events(&agent, 1, |ev| ev.get("accepted_at").is_some())?;
    assert_eq!(status(&evs[0]), "Failed:ClientCertUntrusted");

    // The interface goes away: forgotten, its links closed, no error.
    server.exec(&["ip", "link", "del", "hp-s"])?;
    agent.wait_log("probe: interface gone interface=hp-s")?;
    assert_eq!(tc_links(agent.pid())?, at_start);
    let log = agent.stderr();
    assert!(
        !log.lines()
            .any(|l| l.contains("hp-s") && (l.contains("WARN") || l.contains("ERROR"))),
        "{log}"
    );

    agent.signal("TERM")?;
    let exit = agent.wait_exit(Duration::from_secs(10))?;
    assert_eq!(exit.code(), Some(0), "{}", agent.stderr());
    Ok(())
}

#[test]
fn probe_off_no_capability_left_and_connections_served() -> Result<()> {
    let ns = Netns::new("priv-off")?;
    let dir = TempDir::new("priv-off")?;
    let root = Ca::root("priv off root")?;
    let path = config(&dir, &root, "[probe]\nenabled = false\n")?;
    let agent = Agent::start(Some(&ns), &path)?;
    assert_unprivileged(&agent, 0, &["connlog-agent", "tokio-rt-worker", "connfn-"])?;
    let leaf = root.leaf(&LeafSpec::default())?;
    let tcp = ns.connect(format!("127.0.0.1:{PORT}").parse()?)?;
    let _tls = tlsclient::handshake(tcp, &ClientSpec::with_leaf(&leaf))?;
    assert_eq!(status(&agent.event()?), "Success");
    Ok(())
}
