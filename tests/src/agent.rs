//! A running `connlog-agent --print-events`: its JSON events and its log.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::{Netns, bin_path};

/// The agent process; killed on drop.
pub struct Agent {
    child: Child,
    events: Receiver<serde_json::Value>,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    /// Starts the agent with `config` inside `ns` (or here when `None`) and
    /// waits until it says it is ready.
    pub fn start(ns: Option<&Netns>, config: &Path) -> Result<Self> {
        let bin = bin_path("connlog-agent");
        let cmd = match ns {
            Some(ns) => ns.command(&bin),
            None => Command::new(&bin),
        };
        Self::spawn(cmd, config)
    }

    /// Like [`Agent::start`] inside `ns`, but the agent starts with a soft
    /// open-file limit of `soft` (hard limit unchanged), as under a default
    /// systemd or login session.
    pub fn start_with_nofile_soft(ns: &Netns, config: &Path, soft: u64) -> Result<Self> {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .maximum
            .context("unlimited hard open-file limit")?;
        let mut cmd = ns.command("prlimit");
        cmd.arg(format!("--nofile={soft}:{hard}"))
            .arg(bin_path("connlog-agent"));
        Self::spawn(cmd, config)
    }

    /// Like [`Agent::start`] inside `ns`, but pinned to one CPU (the
    /// first this process may run on), as in the TLS benchmark.
    pub fn start_on_one_cpu(ns: &Netns, config: &Path) -> Result<Self> {
        let cpu = rustix::thread::sched_getaffinity(None).context("sched_getaffinity")?;
        let first = (0..rustix::thread::CpuSet::MAX_CPU)
            .find(|&c| cpu.is_set(c))
            .context("no CPU in this process's affinity")?;
        let mut cmd = ns.command("taskset");
        cmd.arg("-c")
            .arg(first.to_string())
            .arg(bin_path("connlog-agent"));
        Self::spawn(cmd, config)
    }

    fn spawn(mut cmd: Command, config: &Path) -> Result<Self> {
        cmd.arg("--config").arg(config).arg("--print-events");
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting connlog-agent")?;
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or_else(
                    |e| serde_json::json!({ "unparsable": line, "error": e.to_string() }),
                );
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("connlog-agent ready") {
                    let _ = ready_tx.send(());
                }
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let mut agent = Agent {
            child,
            events,
            stderr: log,
        };
        let ready_within = crate::patient(Duration::from_secs(15));
        let deadline = Instant::now() + ready_within;
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                return Ok(agent);
            }
            if let Some(status) = agent.child.try_wait()? {
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "agent exited with {status} before ready: {}",
                    agent.stderr()
                );
            }
            if Instant::now() > deadline {
                bail!("agent not ready after {ready_within:?}: {}", agent.stderr());
            }
        }
    }

    /// The next printed TLS outcome (10 s timeout). Other printed events
    /// (the probe's kernel events) are skipped.
    pub fn event(&self) -> Result<serde_json::Value> {
        let deadline = Instant::now() + crate::patient(Duration::from_secs(10));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self
                .events
                .recv_timeout(left)
                .map_err(|e| anyhow!("no event from the agent ({e}); log:\n{}", self.stderr()))?;
            if ev.get("accepted_at").is_some() || ev.get("unparsable").is_some() {
                return Ok(ev);
            }
        }
    }

    /// The next printed event if one arrives within `wait`.
    pub fn event_within(&self, wait: Duration) -> Option<serde_json::Value> {
        self.events.recv_timeout(wait).ok()
    }

    /// Whether no event arrives within `wait`.
    pub fn no_event_within(&self, wait: Duration) -> bool {
        matches!(
            self.events.recv_timeout(wait),
            Err(RecvTimeoutError::Timeout)
        )
    }

    /// Everything the agent logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (10 s).
    pub fn wait_log(&self, needle: &str) -> Result<()> {
        let deadline = Instant::now() + crate::patient(Duration::from_secs(10));
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("agent never logged {needle:?}; log:\n{}", self.stderr())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`"HUP"`, `"TERM"`).
    pub fn signal(&self, sig: &str) -> Result<()> {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()?
            .success();
        if !ok {
            bail!("kill -{sig} failed");
        }
        Ok(())
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("agent still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's (soft, hard) open-file limits, from /proc.
    pub fn nofile_limits(&self) -> Result<(u64, u64)> {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id()))?;
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .context("no open-file limit")?;
        let mut nums = line.split_whitespace().filter_map(|w| w.parse().ok());
        Ok((
            nums.next().context("soft limit")?,
            nums.next().context("hard limit")?,
        ))
    }

    /// Resident set size in KiB (from /proc).
    pub fn rss_kib(&self) -> Result<u64> {
        crate::procfs::status_kib(&self.child.id().to_string(), "VmRSS").context("VmRSS")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the agent with `config` expecting it to fail at start; returns its
/// exit code and stderr.
pub fn start_failure(config: &Path) -> Result<(Option<i32>, String)> {
    let out = Command::new(bin_path("connlog-agent"))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
