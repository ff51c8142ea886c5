//! `[probe]`: the kernel TCP probe.
//!
//! ```toml
//! [probe]
//! enabled = true                # default; false runs the agent without eBPF
//! interfaces = ["lo", "eth0"]   # default: every interface that is up, loopback included, and any that comes up later
//! ports = [8443]                # watched in addition to the listeners' ports
//! syn_timeout = "63s"           # SYN without ESTABLISHED → TcpTimeout; default: the kernel's give-up time
//! ring_bytes = 1048576          # kernel ring buffer (power of two, ≥ 4096)
//! max_pending = 65536           # kernel LRU table: attempts between SYN and outcome
//! channel_capacity = 4096       # TcpEvents queued for the consumer
//! benchmark = "none"            # "floors" / "empty": aids for `cargo xtask bench kernel` only
//! ```
//!
//! `syn_timeout` defaults to the time the kernel itself keeps a request
//! (SYN_RECV) before dropping it, computed at startup from
//! `/proc/sys/net/ipv4/tcp_synack_retries` of the agent's network namespace:
//! the SYN-ACK is retransmitted with an RTO of 1 s doubling (capped at
//! `TCP_RTO_MAX`, 120 s), so the request is dropped after
//! 1 + 2 + … + 2^retries s = 2^(retries+1) − 1 s: 63 s for the default 5
//! retries (SYN-ACKs at 0, 1, 3, 7, 15, 31 s). If the sysctl cannot be read,
//! 63 s, with a warning. So by default a `TcpTimeout` (`syn-ack-unanswered`)
//! is recorded when the kernel gives up on the request, and no late
//! ESTABLISHED can follow it (except through syncookies, which need no
//! request). A shorter explicit value reports unanswered SYN-ACKs sooner;
//! a client ACK that then still completes the handshake yields no second
//! record (counted as `probe_established_after_timeout`, see
//! `docs/metrics.md`).
//!
//! Memory: the kernel's attempt table is an LRU of `max_pending` entries
//! whatever `syn_timeout` is; a longer timeout only keeps unanswered
//! attempts in it longer (a SYN flood evicts them and counts them in
//! `probe_table_full`), and the sweeper's claims are bounded by that table.

use std::time::Duration;

use serde::Deserialize;

use super::duration::duration;
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
            syn_timeout: KERNEL_GIVE_UP_FALLBACK,
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
        let syn_timeout = match duration(self.syn_timeout.as_deref(), "probe.syn_timeout")? {
            Some(d) => d,
            None => kernel_give_up(std::fs::read_to_string(SYNACK_RETRIES)),
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

/// The sysctl the default `syn_timeout` comes from.
const SYNACK_RETRIES: &str = "/proc/sys/net/ipv4/tcp_synack_retries";

/// The kernel's give-up time with its default 5 SYN-ACK retries; the
/// default `syn_timeout` when the sysctl cannot be read.
pub(crate) const KERNEL_GIVE_UP_FALLBACK: Duration = Duration::from_secs(63);

/// The kernel's `TCP_RTO_MAX`: no SYN-ACK retransmission waits longer.
const RTO_MAX_SECS: u64 = 120;

/// How long the kernel keeps a request whose SYN-ACK it retransmits
/// `retries` times: the initial 1 s RTO, doubling up to `TCP_RTO_MAX`,
/// summed over the first SYN-ACK and each retransmission.
pub(crate) fn synack_give_up(retries: u32) -> Duration {
    let secs = (0..=retries.min(255))
        .map(|i| {
            1u64.checked_shl(i)
                .map_or(RTO_MAX_SECS, |t| t.min(RTO_MAX_SECS))
        })
        .sum();
    Duration::from_secs(secs)
}

/// The default `syn_timeout` from the contents of `tcp_synack_retries`;
/// [`KERNEL_GIVE_UP_FALLBACK`] with a warning if it could not be read.
fn kernel_give_up(sysctl: std::io::Result<String>) -> Duration {
    let retries = sysctl.map_err(|e| e.to_string()).and_then(|text| {
        text.trim()
            .parse::<u32>()
            .map_err(|e| format!("{text:?}: {e}"))
    });
    match retries {
        Ok(retries) => synack_give_up(retries),
        Err(error) => {
            tracing::warn!(
                %error,
                sysctl = SYNACK_RETRIES,
                fallback_s = KERNEL_GIVE_UP_FALLBACK.as_secs(),
                "cannot read the kernel's SYN-ACK retries; probe.syn_timeout defaults to the fallback"
            );
            KERNEL_GIVE_UP_FALLBACK
        }
    }
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
        let p = probe("").unwrap();
        let want = ProbeConfig {
            syn_timeout: kernel_give_up(std::fs::read_to_string(SYNACK_RETRIES)),
            ..ProbeConfig::default()
        };
        assert_eq!(p, want);
    }

    #[test]
    fn default_syn_timeout_is_the_kernels_give_up_time() {
        let ok = |s: &str| kernel_give_up(Ok(s.to_owned()));
        assert_eq!(ok("5\n"), Duration::from_secs(63));
        assert_eq!(ok("2\n"), Duration::from_secs(7));
        assert_eq!(ok("0"), Duration::from_secs(1));
        assert_eq!(ok("6"), Duration::from_secs(127));
        // Past 64 s each retransmission waits TCP_RTO_MAX (120 s).
        assert_eq!(ok("8"), Duration::from_secs(127 + 120 + 120));
        assert_eq!(synack_give_up(u32::MAX), synack_give_up(255));
        let unreadable = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(kernel_give_up(Err(unreadable)), KERNEL_GIVE_UP_FALLBACK);
        assert_eq!(ok("five"), KERNEL_GIVE_UP_FALLBACK);
        assert_eq!(KERNEL_GIVE_UP_FALLBACK, Duration::from_secs(63));
    }

    #[test]
    fn an_explicit_syn_timeout_wins() {
        let p = probe("[probe]\nsyn_timeout = \"3s\"\n").unwrap();
        assert_eq!(p.syn_timeout, Duration::from_secs(3));
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
