//! A `connlog-collector` process for tests: its config in a temporary
//! directory, its stderr in a file, killed on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Netns, bin_path};

pub struct CollectorProcess {
    child: Option<Child>,
    /// Runs inside this namespace (`/run/netns/…`) when set.
    netns: Option<PathBuf>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    config: PathBuf,
    runs: u32,
}

/// A free loopback port (bound then released).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl CollectorProcess {
    /// Writes `collector.toml` with `[server] listen` on a free loopback
    /// port followed by `rest` (sinks etc.; `{dir}` is replaced by the
    /// temporary directory), and starts the collector.
    pub fn start(rest: &str) -> Result<Self> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        Self::start_at(None, addr, rest)
    }

    /// Like [`start`](Self::start), inside `ns`, listening on `addr` there.
    pub fn start_in(ns: &Netns, addr: SocketAddr, rest: &str) -> Result<Self> {
        Self::start_at(Some(ns.path()), addr, rest)
    }

    fn start_at(netns: Option<PathBuf>, addr: SocketAddr, rest: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let rest = rest.replace("{dir}", &dir.path().display().to_string());
        let text = if rest.contains("[server]") {
            rest.replacen("[server]", &format!("[server]\nlisten = \"{addr}\""), 1)
        } else {
            format!("[server]\nlisten = \"{addr}\"\n{rest}")
        };
        let config = dir.path().join("collector.toml");
        std::fs::write(&config, text)?;
        let mut c = Self {
            child: None,
            netns,
            dir,
            addr,
            config,
            runs: 0,
        };
        c.spawn()?;
        Ok(c)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the collector wrote on stderr so far (all runs).
    pub fn stderr(&self) -> String {
        (0..self.runs)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("stderr.{i}")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Everything the collector wrote on stdout so far (all runs).
    pub fn stdout(&self) -> String {
        (0..self.runs)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("stdout.{i}")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Starts the collector (again) with the same config and port; waits
    /// until it listens.
    pub fn spawn(&mut self) -> Result<()> {
        let log_path = self.dir.path().join(format!("stderr.{}", self.runs));
        let out = std::fs::File::create(self.dir.path().join(format!("stdout.{}", self.runs)))?;
        self.runs += 1;
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display()))
                    .arg("--")
                    .arg(bin_path("connlog-collector"));
                c
            }
            None => Command::new(bin_path("connlog-collector")),
        };
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .context("starting connlog-collector")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("listening on") {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("collector exited with {status}: {text}");
            }
            if Instant::now() > deadline {
                bail!("collector did not start listening: {text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to finalise anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: files are finalised. Returns the exit code.
    pub fn terminate(&mut self) -> Result<i32> {
        let Some(mut c) = self.child.take() else {
            bail!("collector not running");
        };
        signal(c.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!("collector did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends signal `sig` (e.g. `"TERM"`) to process `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Every finalised file under `dir` whose name ends with `suffix`
/// (temporary files are hidden, starting with `.`).
pub fn finished_files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if !name.starts_with('.') && name.ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every JSON record in the finalised `.json` files under `dir`.
pub fn json_records(dir: &Path) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut out = Vec::new();
    for f in finished_files(dir, ".json") {
        for line in std::fs::read_to_string(&f)?.lines() {
            out.push(
                serde_json::from_str(line).with_context(|| format!("{}: {line}", f.display()))?,
            );
        }
    }
    Ok(out)
}
