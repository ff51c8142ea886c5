//! The kernel TCP probe: eBPF programs that watch SYNs, SYN-ACKs, resets,
//! drops and state changes on the agent's ports, and the userspace half that
//! turns their raw events into [`TcpEvent`]s.
//!
//! [`Probe::load`] checks the host, loads and attaches everything (the
//! privileged part, no runtime needed); [`LoadedProbe::start`] then reads
//! the events. Dropping the [`Probe`] detaches everything.

mod btf;
mod checks;
mod claims;
mod clsact;
mod decode;
mod event;
mod hotplug;
mod kernel;
mod link;
mod loader;
mod netlink;
mod reader;
mod sweep;
#[cfg(test)]
mod test_run;
mod tracker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

pub use event::{TcpEvent, TcpFailureDetail};
pub use kernel::Missing;

use crate::config::ProbeConfig;
use crate::privileges::Keep;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("missing capabilities {0}: run as root or grant them")]
    Capabilities(String),
    #[error("kernel too old for the probe: {0}")]
    TooOld(&'static str),
    #[error("kernel has no BTF ({path}); connlog needs CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error("no port to watch: configure a listener or [probe] ports")]
    NoPorts,
    #[error(transparent)]
    Btf(#[from] btf::BtfError),
    #[error("tracepoint {name}: {reason}")]
    Tracepoint { name: &'static str, reason: String },
    #[error("reading /proc")]
    Proc(#[source] std::io::Error),
    #[error("loading the kernel programs")]
    Load(#[source] aya::EbpfError),
    #[error("{what}")]
    Program {
        what: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("{what}")]
    Map {
        what: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("subscribing to link notifications (rtnetlink)")]
    Netlink(#[source] std::io::Error),
    #[error("ring buffer")]
    Ring(#[source] std::io::Error),
}

/// Counters of what the probe could not report. Nothing is lost silently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProbeStats {
    /// Kernel events dropped because the ring buffer was full (all CPUs).
    pub ring_full: u64,
    /// `TcpEvent`s dropped because the consumer's channel was full.
    pub channel_full: u64,
    /// Attempts the kernel's LRU table (`[probe] max_pending` entries)
    /// evicted to make room, before their outcome was reported (or, for
    /// closed ones, before they were forgotten): estimated from the
    /// kernel's insert/remove counts at each sweep, exact at rest.
    pub table_full: u64,
    /// Attempts (pending or recently closed) in the kernel's table at the
    /// last sweep.
    pub tracked: u64,
    /// Connections that reached ESTABLISHED after their attempt was
    /// reported as a `TcpTimeout`: no second record is emitted for them.
    pub established_after_timeout: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    channel_full: AtomicU64,
    table_full: AtomicU64,
    tracked: AtomicU64,
    established_after_timeout: AtomicU64,
}

/// The programs loaded and attached, not yet read: what needs privileges.
/// [`LoadedProbe::start`] (in a tokio runtime) starts reading; the agent
/// drops its capabilities in between.
pub struct LoadedProbe {
    loaded: loader::Loaded,
    facts: kernel::KernelFacts,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    attempts:
        aya::maps::HashMap<aya::maps::MapData, connlog_common::AttemptKey, connlog_common::Attempt>,
    counts: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    config: ProbeConfig,
    ports: Vec<u16>,
    /// Link notifications, when the probe follows every interface.
    links: Option<netlink::LinkSocket>,
}

/// The running probe. Dropping it stops the reader and detaches every
/// program.
pub struct Probe {
    loaded: Arc<Mutex<loader::Loaded>>,
    missing: Arc<[Missing]>,
    counters: Arc<Counters>,
    reader: tokio::task::JoinHandle<()>,
    stop_sweeper: Arc<AtomicBool>,
    hotplug: Option<tokio::task::JoinHandle<()>>,
}

impl Probe {
    /// [`Probe::load`] then [`LoadedProbe::start`].
    pub fn start(
        config: &ProbeConfig,
        ports: &[u16],
    ) -> Result<(Probe, mpsc::Receiver<TcpEvent>), ProbeError> {
        Ok(Self::load(config, ports)?.start())
    }

    /// Checks the host, loads and attaches the programs, watching `ports`
    /// plus the config's `ports`. Needs no runtime and starts no thread.
    pub fn load(config: &ProbeConfig, ports: &[u16]) -> Result<LoadedProbe, ProbeError> {
        let mut all: Vec<u16> = ports.iter().chain(&config.ports).copied().collect();
        all.sort_unstable();
        all.dedup();
        if all.is_empty() {
            return Err(ProbeError::NoPorts);
        }
        // Following every interface: subscribe before listing them, so an
        // interface that appears in between is not missed.
        let links = match config.interfaces {
            Some(_) => None,
            None => Some(netlink::LinkSocket::open().map_err(ProbeError::Netlink)?),
        };
        let interfaces = checks::interfaces(config.interfaces.as_deref())?;
        let (mut loaded, facts) = loader::load(config, &all, &interfaces)?;
        let ring = loaded.take_ring()?;
        let (attempts, counts) = loader::take_attempts(&mut loaded.ebpf)?;
        Ok(LoadedProbe {
            loaded,
            facts,
            ring,
            attempts,
            counts,
            config: config.clone(),
            ports: all,
            links,
        })
    }

    /// The interfaces the TC programs are attached to now.
    pub fn interfaces(&self) -> Vec<String> {
        lock(&self.loaded).interfaces()
    }

    pub fn stats(&self) -> ProbeStats {
        self.stats_source().stats()
    }

    /// What this kernel lacks (`docs/kernels.md`).
    pub fn missing(&self) -> &[Missing] {
        &self.missing
    }

    /// A handle that reads the counters without keeping the probe
    /// attached (for metrics).
    pub fn stats_source(&self) -> ProbeStatsSource {
        ProbeStatsSource {
            loaded: Arc::downgrade(&self.loaded),
            counters: self.counters.clone(),
            missing: self.missing.clone(),
        }
    }
}

/// Reads the probe's counters; after the probe is gone the kernel's
/// ring-full count reads as 0.
#[derive(Clone)]
pub struct ProbeStatsSource {
    loaded: Weak<Mutex<loader::Loaded>>,
    counters: Arc<Counters>,
    missing: Arc<[Missing]>,
}

impl ProbeStatsSource {
    /// What this kernel lacks.
    pub fn missing(&self) -> &[Missing] {
        &self.missing
    }

    pub fn stats(&self) -> ProbeStats {
        ProbeStats {
            ring_full: self.loaded.upgrade().map_or(0, |l| lock(&l).ring_full()),
            channel_full: self.counters.channel_full.load(Ordering::Relaxed),
            table_full: self.counters.table_full.load(Ordering::Relaxed),
            tracked: self.counters.tracked.load(Ordering::Relaxed),
            established_after_timeout: self
                .counters
                .established_after_timeout
                .load(Ordering::Relaxed),
        }
    }
}

impl LoadedProbe {
    /// The capabilities the running probe needs on this kernel
    /// ([`Keep`]): CAP_NET_ADMIN for netlink TC filters, CAP_BPF where
    /// reading a map needs it.
    pub fn keeps(&self) -> Vec<Keep> {
        let mut keep = Vec::new();
        if self.loaded.needs_net_admin() {
            keep.push(Keep::NetAdmin);
        }
        if self.maps_need_cap_bpf() {
            keep.push(Keep::Bpf);
        }
        keep
    }

    /// Whether reading the probe's maps needs CAP_BPF here (before Linux
    /// 5.19 with `kernel.unprivileged_bpf_disabled` set, every bpf()
    /// command does). Found out by trying: a child process drops every
    /// capability and reads a counter through the inherited map fd.
    fn maps_need_cap_bpf(&self) -> bool {
        // SAFETY: the agent calls this before it starts any thread (it
        // drops capabilities next, which requires that too), so the child
        // is a copy of a single-threaded process; it makes two syscalls
        // and leaves with _exit, running no destructor of the parent's.
        match unsafe { libc::fork() } {
            -1 => true,
            0 => {
                let none = rustix::thread::CapabilitySets {
                    effective: rustix::thread::CapabilitySet::empty(),
                    permitted: rustix::thread::CapabilitySet::empty(),
                    inheritable: rustix::thread::CapabilitySet::empty(),
                };
                let read = rustix::thread::set_capabilities(None, none).is_ok()
                    && self.counts.get(&0, 0).is_ok();
                // SAFETY: ends the child at once; nothing of the parent's
                // state is flushed or freed twice.
                unsafe { libc::_exit(if read { 0 } else { 1 }) }
            }
            child => {
                let mut status = 0;
                // SAFETY: waits for the child just forked; `status` is ours.
                let waited = unsafe { libc::waitpid(child, &mut status, 0) };
                waited != child || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0
            }
        }
    }

    /// What this kernel lacks (`docs/kernels.md`).
    pub fn missing(&self) -> Vec<Missing> {
        self.facts.hooks.missing()
    }

    /// Starts the ring-buffer reader (and the interface watcher) on the
    /// current tokio runtime. Events come out of the returned channel.
    pub fn start(self) -> (Probe, mpsc::Receiver<TcpEvent>) {
        let LoadedProbe {
            loaded,
            facts,
            ring,
            attempts,
            counts,
            config,
            ports,
            links,
        } = self;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(config.channel_capacity);
        let stop_sweeper = Arc::new(AtomicBool::new(false));
        let claims = Arc::new(claims::Claims::default());
        let sweeper = sweep::Sweeper {
            claims: claims.clone(),
            attempts,
            counts,
            tracker: tracker::Tracker::new(config.syn_timeout),
            capacity: config.max_pending,
            period: sweep::period(config.syn_timeout),
            tx: tx.clone(),
            counters: counters.clone(),
            stop: stop_sweeper.clone(),
        };
        if let Err(err) = std::thread::Builder::new()
            .name("probe-sweep".into())
            .spawn(move || sweeper.run())
        {
            tracing::error!(error = %err, "probe: cannot start the sweeper; no TcpTimeout events");
        }
        let reader = tokio::spawn(reader::run(reader::Reader {
            ring,
            tx,
            counters: counters.clone(),
            rst_reasons: facts.rst_reasons,
            claims,
            syn_timeout: u64::try_from(config.syn_timeout.as_nanos()).unwrap_or(u64::MAX),
        }));
        tracing::info!(interfaces = ?loaded.interfaces(), ports = ?ports, "probe attached");
        let missing: Arc<[Missing]> = facts.hooks.missing().into();
        let loaded = Arc::new(Mutex::new(loaded));
        let hotplug = links.map(|socket| tokio::spawn(hotplug::run(socket, loaded.clone())));
        (
            Probe {
                loaded,
                missing,
                counters,
                reader,
                stop_sweeper,
                hotplug,
            },
            rx,
        )
    }
}

fn lock(loaded: &Mutex<loader::Loaded>) -> std::sync::MutexGuard<'_, loader::Loaded> {
    match loaded.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.reader.abort();
        self.stop_sweeper.store(true, Ordering::Relaxed);
        if let Some(hotplug) = &self.hotplug {
            hotplug.abort();
        }
        tracing::info!("probe detached");
    }
}
