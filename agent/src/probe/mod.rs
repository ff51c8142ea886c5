//! The kernel TCP probe: eBPF programs that watch SYNs, SYN-ACKs, resets,
//! drops and state changes on the agent's ports, and the userspace half that
//! turns their raw events into [`TcpEvent`]s.
//!
//! [`Probe::start`] checks the host, loads and attaches everything and
//! returns the event stream; dropping the [`Probe`] detaches everything.

mod btf;
mod checks;
mod decode;
mod event;
mod kernel;
mod loader;
mod reader;
mod sweep;
#[cfg(test)]
mod test_run;
mod tracker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;

pub use event::{TcpEvent, TcpFailureDetail};

use crate::config::ProbeConfig;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("missing capabilities {0}: run as root or grant them")]
    Capabilities(String),
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
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    channel_full: AtomicU64,
    table_full: AtomicU64,
    tracked: AtomicU64,
}

/// The loaded, attached probe. Dropping it stops the reader and detaches
/// every program.
pub struct Probe {
    loaded: loader::Loaded,
    counters: Arc<Counters>,
    reader: tokio::task::JoinHandle<()>,
    stop_sweeper: Arc<AtomicBool>,
}

impl Probe {
    /// Loads and attaches the programs, watching `ports` plus the config's
    /// `ports`, and starts the ring-buffer reader on the current tokio
    /// runtime. Events come out of the returned channel.
    pub fn start(
        config: &ProbeConfig,
        ports: &[u16],
    ) -> Result<(Probe, mpsc::Receiver<TcpEvent>), ProbeError> {
        let mut all: Vec<u16> = ports.iter().chain(&config.ports).copied().collect();
        all.sort_unstable();
        all.dedup();
        if all.is_empty() {
            return Err(ProbeError::NoPorts);
        }
        let (mut loaded, facts) = loader::load(config, &all)?;
        let ring = loaded.take_ring()?;
        let (attempts, counts) = loader::take_attempts(&mut loaded.ebpf)?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(config.channel_capacity);
        let stop_sweeper = Arc::new(AtomicBool::new(false));
        let sweeper = sweep::Sweeper {
            attempts,
            counts,
            tracker: tracker::Tracker::new(config.syn_timeout),
            capacity: config.max_pending,
            period: sweep::period(config.syn_timeout),
            tx: tx.clone(),
            counters: counters.clone(),
            stop: stop_sweeper.clone(),
        };
        std::thread::Builder::new()
            .name("probe-sweep".into())
            .spawn(move || sweeper.run())
            .map_err(ProbeError::Proc)?;
        let reader = tokio::spawn(reader::run(reader::Reader {
            ring,
            tx,
            counters: counters.clone(),
            rst_reasons: facts.rst_reasons,
        }));
        tracing::info!(interfaces = ?loaded.interfaces, ports = ?all, "probe attached");
        Ok((
            Probe {
                loaded,
                counters,
                reader,
                stop_sweeper,
            },
            rx,
        ))
    }

    /// The interfaces the TC programs are attached to.
    pub fn interfaces(&self) -> &[String] {
        &self.loaded.interfaces
    }

    pub fn stats(&self) -> ProbeStats {
        ProbeStats {
            ring_full: self.loaded.ring_full(),
            channel_full: self.counters.channel_full.load(Ordering::Relaxed),
            table_full: self.counters.table_full.load(Ordering::Relaxed),
            tracked: self.counters.tracked.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.reader.abort();
        self.stop_sweeper.store(true, Ordering::Relaxed);
        tracing::info!("probe detached");
    }
}
