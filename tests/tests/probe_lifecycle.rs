//! The probe's life: SIGTERM detaches every program and link (checked
//! against the kernel with bpftool), a restart right after works, and a
//! host that cannot run it gets one clear line.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use connlog_tests::agent::Agent;
use connlog_tests::probefixture::{PORT, ProbeFixture};
use connlog_tests::{TempDir, bin_path, pki};

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

#[test]
fn sigterm_detaches_everything_and_a_restart_works() -> Result<()> {
    let mut fx = ProbeFixture::start("pr-life", "3s", "")?;
    let (progs, links) = bpf_ids(fx.agent.pid())?;
    // 4 tp_btf + TC ingress + TC egress + their L3 variants (loaded for
    // interfaces without an Ethernet header; none here); links: 4 tp_btf +
    // 2 TC × (lo, veth).
    assert_eq!((progs.len(), links.len()), (8, 8), "{progs:?} {links:?}");
    for &id in &progs {
        assert!(bpftool_knows("prog", id)?, "prog {id} loaded");
    }
    for &id in &links {
        assert!(bpftool_knows("link", id)?, "link {id} attached");
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
