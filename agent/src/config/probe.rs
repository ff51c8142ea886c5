//! `[probe]`: the kernel TCP probe (issue 2).
//!
//! ```toml
//! [probe]
//! enabled = true                # default; false runs the agent without eBPF
//! interfaces = ["lo", "eth0"]   # default: every interface that is up, loopback included, and any that comes up later
//! ports = [8443]                # watched in addition to the listeners' ports
//! syn_timeout = "3s"            # SYN without ESTABLISHED → TcpTimeout
//! ring_bytes = 1048576          # kernel ring buffer (power of two, ≥ 4096)
//! max_pending = 65536           # kernel LRU table: attempts between SYN and outcome
//! channel_capacity = 4096       # TcpEvents queued for the consumer
//! benchmark = "none"            # "floors" / "empty": aids for `cargo xtask bench kernel` only
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Ctx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    pub enabled: bool,
    /// Interfaces the TC programs attach to; `None`: every interface that is
    /// up when the probe starts, and every one that comes up later.
    pub interfaces: Option<Vec<String>>,
    /// Ports watched in addition to those the caller passes.
    pub ports: Vec<u16>,
    pub syn_timeout: Duration,
    pub ring_bytes: u32,
    /// Entries of the kernel's attempt table (an LRU map: what overflows is
    /// evicted and counted). At most `u32::MAX`.
    pub max_pending: usize,
    pub channel_capacity: usize,
    /// What `cargo xtask bench kernel` attaches besides (or instead of) the
    /// probe's programs.
    pub benchmark: BenchPrograms,
}

/// Benchmark aids (`[probe] benchmark`), for `cargo xtask bench kernel`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchPrograms {
    /// The probe's programs only: production.
    #[default]
    None,
    /// The probe's programs, plus empty classifiers (ingress and egress) and
    /// a classifier that only updates a hash map per SYN, on the same
    /// interfaces: the floors of its run times.
    Floors,
    /// Only empty programs, on every hook the probe uses (TC ingress and
    /// egress, its tp_btf tracepoints): the floor of the connect rate.
    Empty,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interfaces: None,
            ports: Vec::new(),
            syn_timeout: Duration::from_secs(3),
            ring_bytes: 1 << 20,
            max_pending: 65_536,
            channel_capacity: 4_096,
            benchmark: BenchPrograms::None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    enabled: Option<bool>,
    interfaces: Option<Vec<String>>,
    #[serde(default)]
    ports: Vec<u16>,
    syn_timeout: Option<String>,
    ring_bytes: Option<u32>,
    max_pending: Option<usize>,
    channel_capacity: Option<usize>,
    #[serde(default)]
    benchmark: BenchPrograms,
}

impl RawProbe {
    pub(super) fn validate(self, _ctx: &Ctx) -> Result<ProbeConfig, ConfigError> {
        let d = ProbeConfig::default();
        if let Some(ifs) = &self.interfaces
            && let Some(bad) = ifs.iter().find(|i| i.is_empty() || i.len() > 15)
        {
            return Err(ConfigError::invalid(
                "probe.interfaces",
                format!("{bad:?} is not an interface name"),
            ));
        }
        if self.ports.contains(&0) {
            return Err(ConfigError::invalid("probe.ports", "port 0"));
        }
        let syn_timeout = match self.syn_timeout {
            Some(s) => parse_duration(&s).filter(|d| !d.is_zero()).ok_or_else(|| {
                ConfigError::invalid(
                    "probe.syn_timeout",
                    format!("{s:?}: expected e.g. \"500ms\" or \"3s\""),
                )
            })?,
            None => d.syn_timeout,
        };
        let ring_bytes = self.ring_bytes.unwrap_or(d.ring_bytes);
        if !ring_bytes.is_power_of_two() || ring_bytes < 4096 {
            return Err(ConfigError::invalid(
                "probe.ring_bytes",
                format!("{ring_bytes}: must be a power of two ≥ 4096"),
            ));
        }
        let positive = |key: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(ConfigError::invalid(key, "must be at least 1")),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        Ok(ProbeConfig {
            enabled: self.enabled.unwrap_or(true),
            interfaces: self.interfaces,
            ports: self.ports,
            syn_timeout,
            ring_bytes,
            max_pending: match positive("probe.max_pending", self.max_pending, d.max_pending)? {
                v if u32::try_from(v).is_err() => {
                    return Err(ConfigError::invalid(
                        "probe.max_pending",
                        format!("{v}: at most {}", u32::MAX),
                    ));
                }
                v => v,
            },
            channel_capacity: positive(
                "probe.channel_capacity",
                self.channel_capacity,
                d.channel_capacity,
            )?,
            benchmark: self.benchmark,
        })
    }
}

/// `"250ms"`, `"3s"`.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.trim().parse().ok().map(Duration::from_millis);
    }
    s.strip_suffix('s')?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn probe(text: &str) -> Result<ProbeConfig, ConfigError> {
        Config::parse(text, Path::new("/")).map(|c| c.probe)
    }

    #[test]
    fn defaults() {
        assert_eq!(probe("").unwrap(), ProbeConfig::default());
    }

    #[test]
    fn parses_every_key() {
        let p = probe(
            "[probe]\nenabled = false\ninterfaces = [\"lo\"]\nports = [8443]\nsyn_timeout = \"250ms\"\n\
             ring_bytes = 8192\nmax_pending = 10\nchannel_capacity = 5\nbenchmark = \"empty\"\n",
        )
        .unwrap();
        assert_eq!(p.benchmark, BenchPrograms::Empty);
        assert!(!p.enabled);
        assert_eq!(p.interfaces, Some(vec!["lo".to_string()]));
        assert_eq!(p.ports, [8443]);
        assert_eq!(p.syn_timeout, Duration::from_millis(250));
        assert_eq!(
            (p.ring_bytes, p.max_pending, p.channel_capacity),
            (8192, 10, 5)
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("[probe]\nsyn_timeout = \"soon\"\n", "probe.syn_timeout"),
            ("[probe]\nsyn_timeout = \"0s\"\n", "probe.syn_timeout"),
            ("[probe]\nring_bytes = 5000\n", "probe.ring_bytes"),
            ("[probe]\nmax_pending = 0\n", "probe.max_pending"),
            ("[probe]\nports = [0]\n", "probe.ports"),
            ("[probe]\ninterfaces = [\"\"]\n", "probe.interfaces"),
        ] {
            let err = probe(text).unwrap_err().to_string();
            assert!(err.starts_with(key), "{text}: {err}");
        }
    }
}
