//! Running `connlog-synth` (the agent's exporter in its own process).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bin_path;

/// A running synth process; killed on drop.
pub struct SynthProcess {
    child: Option<Child>,
}

impl SynthProcess {
    pub fn start(args: &[&str]) -> Result<Self> {
        let child = Command::new(bin_path("connlog-synth"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting connlog-synth")?;
        Ok(Self { child: Some(child) })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the process to end (at most `limit`) and returns its
    /// report line.
    pub fn report(mut self, limit: Duration) -> Result<serde_json::Value> {
        let mut child = self.child.take().context("already waited")?;
        let deadline = Instant::now() + limit;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                bail!(
                    "connlog-synth still running after {limit:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).with_context(|| {
            format!(
                "connlog-synth report {line:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for SynthProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
