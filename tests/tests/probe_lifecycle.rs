//! The probe's life: SIGTERM detaches every program, link, TC filter and
//! qdisc it added (checked against the kernel with bpftool and tc), so does
//! a start that fails after the probe attached, a restart right after
//! works, and a host that cannot run it gets one clear line.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use connlog_tests::agent::Agent;
use connlog_tests::kernel::Kernel;
use connlog_tests::probefixture::{PORT, ProbeFixture};
use connlog_tests::{Netns, Pair, TempDir, bin_path, pki};

/// The BPF program and link ids a process holds open (from its fdinfo).
fn bpf_ids(pid: u32) -> Result<(BTreeSet<u32>, BTreeSet<u32>)> {
    let (mut progs, mut links) = (BTreeSet::new(), BTreeSet::new());
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        for line in info.lines() {
            let id = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|v| v.trim().parse().ok())
            };
            if let Some(id) = id("link_id:") {
                links.insert(id);
            } else if let Some(id) = id("prog_id:") {
                progs.insert(id);
            }
        }
    }
    Ok((progs, links))
}

fn bpftool_knows(kind: &str, id: u32) -> Result<bool> {
    Ok(Command::new("bpftool")
        .args([kind, "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running bpftool")?
        .success())
}

/// The TC filters and the qdiscs other than the default ones on the
/// namespace's interfaces (`tc`'s own words, one line each).
fn tc_state(ns: &Netns, interfaces: &[&str]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for dev in interfaces {
        for argv in [
            ["tc", "filter", "show", "dev", dev, "ingress"],
            ["tc", "filter", "show", "dev", dev, "egress"],
        ] {
            let out = ns.exec(&argv)?;
            lines.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_owned),
            );
        }
        let out = ns.exec(&["tc", "qdisc", "show", "dev", dev])?;
        lines.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("clsact"))
                .map(str::to_owned),
        );
    }
    Ok(lines)
}

#[test]
fn sigterm_detaches_everything_and_a_restart_works() -> Result<()> {
    let kernel = Kernel::current();
    let mut fx = ProbeFixture::start("pr-life", "3s", "")?;
    let interfaces = ["lo", fx.pair.server_if.as_str()];
    let (progs, links) = bpf_ids(fx.agent.pid())?;
    // A tp_btf program and link per tracepoint (kfree_skb only where it
    // has a drop reason) + TC ingress and egress and their L3 variants
    // (loaded for interfaces without an Ethernet header; none here). TC
    // links: 2 × (lo, veth) with tcx; netlink filters otherwise, on a
    // clsact qdisc the agent added.
    let tracepoints = if kernel.drop_reason() { 4 } else { 3 };
    let tc_links = if kernel.tcx() { 4 } else { 0 };
    assert_eq!(
        (progs.len(), links.len()),
        (tracepoints + 4, tracepoints + tc_links),
        "{progs:?} {links:?}"
    );
    for &id in &progs {
        assert!(bpftool_knows("prog", id)?, "prog {id} loaded");
    }
    for &id in &links {
        assert!(bpftool_knows("link", id)?, "link {id} attached");
    }
    let tc = tc_state(&fx.pair.server, &interfaces)?;
    if kernel.tcx() {
        assert!(tc.is_empty(), "tcx leaves no netlink filter: {tc:?}");
    } else {
        let filters = tc.iter().filter(|l| l.contains("connlog_tc_")).count();
        let qdiscs = tc.iter().filter(|l| l.contains("clsact")).count();
        assert_eq!((filters, qdiscs), (4, 2), "{tc:?}");
    }

    fx.agent.signal("TERM")?;
    let status = fx.agent.wait_exit(Duration::from_secs(10))?;
    assert!(status.success(), "{status}: {}", fx.agent.stderr());
    assert!(fx.agent.stderr().contains("detaching the kernel probe"));
    // The kernel frees programs and links after an RCU grace period.
    for (kind, ids) in [("prog", &progs), ("link", &links)] {
        for &id in ids {
            let deadline = Instant::now() + Duration::from_secs(5);
            while bpftool_knows(kind, id)? {
                assert!(Instant::now() < deadline, "{kind} {id} left behind");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    let tc = tc_state(&fx.pair.server, &interfaces)?;
    assert!(tc.is_empty(), "left after SIGTERM: {tc:?}");

    // A second start right after works and reports.
    fx.agent = Agent::start(Some(&fx.pair.server), &fx.config)?;
    fx.agent.wait_log("probe attached")?;
    let listener = fx.listen(false, PORT)?;
    let _c = fx.connect(false, PORT)?;
    let _a = listener.accept()?;
    let evs = fx.exactly(1, Duration::from_secs(5), Duration::from_millis(300))?;
    assert_eq!(evs[0]["event"], "established");
    Ok(())
}

/// Runs the agent with `probe` as its `[probe]` section through `wrapper`
/// (e.g. setpriv); returns exit code and the stderr lines from the agent.
fn failing_start(tag: &str, probe: &str, wrapper: &[&str]) -> Result<(Option<i32>, Vec<String>)> {
    let dir = TempDir::new(tag)?;
    let path = pki::write(
        dir.path(),
        "agent.toml",
        &format!("[probe]\nports = [{PORT}]\n{probe}"),
    )?;
    let agent = bin_path("connlog-agent");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&agent);
            c
        }
        None => Command::new(&agent),
    };
    let out = cmd
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .context("starting connlog-agent")?;
    std::io::stderr().write_all(&out.stderr)?;
    let lines = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("connlog-agent:"))
        .map(str::to_owned)
        .collect();
    Ok((out.status.code(), lines))
}

#[test]
fn missing_capabilities_are_one_clear_line() -> Result<()> {
    // As root with an empty bounding set, exec grants no capabilities.
    let (code, lines) = failing_start(
        "pr-caps",
        "",
        &["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"],
    )?;
    assert_eq!(code, Some(1));
    assert_eq!(
        lines,
        [
            "connlog-agent: starting the kernel probe: missing capabilities CAP_BPF, CAP_PERFMON, \
          CAP_NET_ADMIN: run as root or grant them"
        ]
    );
    Ok(())
}

#[test]
fn unknown_interface_is_one_clear_line() -> Result<()> {
    let (code, lines) = failing_start("pr-if", "interfaces = [\"nosuch0\"]\n", &[])?;
    assert_eq!(code, Some(1));
    assert_eq!(
        lines,
        ["connlog-agent: starting the kernel probe: interface nosuch0 does not exist"]
    );
    Ok(())
}

/// A start that fails after the probe attached (here the metrics address
/// is taken) leaves no program, filter or qdisc behind.
#[test]
fn a_failed_start_leaves_nothing_attached() -> Result<()> {
    let pair = Pair::new("pr-half")?;
    let busy = std::net::SocketAddr::new(pair.server_v4.into(), 9464);
    let _taken = pair.server.listen(busy)?;
    let netns = format!("--net={}", pair.server.path().display());
    let (code, lines) = failing_start(
        "pr-half",
        &format!("[metrics]\nlisten = \"{busy}\"\n"),
        &["nsenter", &netns, "--"],
    )?;
    assert_eq!(code, Some(1));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("connlog-agent: binding metrics.listen {busy}")),
        "{lines:?}"
    );
    let tc = tc_state(&pair.server, &["lo", &pair.server_if])?;
    assert!(tc.is_empty(), "left after a failed start: {tc:?}");
    Ok(())
}
