//! What a target of `cargo xtask bench tls` costs, counted two independent
//! ways so that a process or thread left out shows up as a disagreement:
//!
//! - `/proc/<pid>/stat` utime + stime of the target and its children (a
//!   process's figures include all its threads; nginx's workers are
//!   children of its master), in clock ticks;
//! - the `cpu.stat` `usage_usec` of a cgroup v2 the target was started in,
//!   which every descendant process and thread inherits, in microseconds.
//!
//! Also the resident memory of the target's processes.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use connlog_tests::procfs;

use crate::shell;

/// A cgroup v2 of its own for one target; removed on drop (once empty).
pub(super) struct Cgroup(PathBuf);

impl Cgroup {
    /// A fresh cgroup under the cgroup2 mount, or `None` when there is no
    /// writable one (then only `/proc` is counted).
    pub(super) fn create(name: &str) -> Option<Self> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        let root = mounts.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let (_, path, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(path))
        })?;
        let dir = root.join(format!("connlog-bench-{}-{name}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let cg = Self(dir);
        cg.usage_usec().map(|_| cg)
    }

    /// `cmd`, run so that it enters this cgroup before it execs (so every
    /// process it forks is counted from its first instruction).
    pub(super) fn wrap(&self, cmd: &Command) -> Command {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(self.0.join("cgroup.procs"))
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                sh.env(k, v);
            }
        }
        sh
    }

    /// CPU time of everything that ever ran in the cgroup, in µs.
    pub(super) fn usage_usec(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(self.0.join("cpu.stat")).ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The process and its children (nginx workers).
pub(super) fn family(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if stat_fields(child).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                == Some(pid)
            {
                out.push(child);
            }
        }
    }
    out
}

/// Fields of /proc/<pid>/stat after the command name (state is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime of the process and its children, in µs.
pub(super) fn proc_usec(pid: u32) -> Result<u64> {
    let mut ticks = 0;
    for p in family(pid) {
        let f = stat_fields(p).context("stat")?;
        ticks += f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    }
    Ok(ticks * 1_000_000 / clk_tck())
}

/// Resident memory of the process and its children, in KiB.
pub(super) fn rss_kib(pid: u32) -> Result<u64> {
    let mut total = 0;
    for p in family(pid) {
        total += procfs::status_kib(&p.to_string(), "VmRSS").unwrap_or(0);
    }
    Ok(total)
}

fn clk_tck() -> u64 {
    shell::output(Command::new("getconf").arg("CLK_TCK"))
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}
