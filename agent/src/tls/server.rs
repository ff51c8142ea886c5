//! Listeners: bind every address, accept, spawn one task per connection;
//! reload on request; stop accepting and drain on shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{ConfigError, ListenerConfig};

use super::TlsOutcome;
use super::conn::{self, Sink};
use super::counters::TlsCounters;
use super::negotiated;
use super::state::ListenerState;

/// Pending connections the kernel may queue per bind address.
const BACKLOG: u32 = 4096;

/// One configured listener and its current state.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) cfg: ListenerConfig,
    state: RwLock<Arc<ListenerState>>,
}

impl Listener {
    /// The state new connections use (connections keep theirs).
    pub(crate) fn state(&self) -> Arc<ListenerState> {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, new: ListenerState) {
        let new = Arc::new(new);
        match self.state.write() {
            Ok(mut s) => *s = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

/// Errors starting the terminator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {addr} ({key})")]
    Bind {
        addr: SocketAddr,
        key: String,
        #[source]
        source: std::io::Error,
    },
}

/// The mTLS terminator: every listener of the config, loaded and checked.
#[derive(Debug)]
pub struct Terminator {
    listeners: Vec<Arc<Listener>>,
    provider: Arc<CryptoProvider>,
    counters: Arc<TlsCounters>,
}

impl Terminator {
    /// Reads every listener's files. Any problem is one error naming the
    /// key and file; nothing listens yet.
    pub fn load(cfgs: &[ListenerConfig]) -> Result<Self, ConfigError> {
        let mut provider = rustls::crypto::ring::default_provider();
        negotiated::server_order(&mut provider.cipher_suites);
        let provider = Arc::new(provider);
        let listeners = cfgs
            .iter()
            .map(|cfg| {
                let state = ListenerState::load(cfg, &provider)?;
                Ok(Arc::new(Listener {
                    cfg: cfg.clone(),
                    state: RwLock::new(Arc::new(state)),
                }))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Self {
            listeners,
            provider,
            counters: Arc::default(),
        })
    }

    pub fn counters(&self) -> Arc<TlsCounters> {
        self.counters.clone()
    }

    /// Re-reads certificates, trust stores and CRLs of every listener. All
    /// or nothing: on any error the old state stays in force everywhere.
    /// Open connections are untouched either way.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let fresh = self
            .listeners
            .iter()
            .map(|l| ListenerState::load(&l.cfg, &self.provider))
            .collect::<Result<Vec<_>, _>>();
        match fresh {
            Ok(states) => {
                for (l, s) in self.listeners.iter().zip(states) {
                    l.replace(s);
                }
                Ok(())
            }
            Err(e) => {
                TlsCounters::inc(&self.counters.reload_failures);
                Err(e)
            }
        }
    }

    /// Binds every address, then accepts until `shutdown` is cancelled.
    /// Outcomes go to `outcomes` (full: dropped and counted).
    pub async fn start(
        self: &Arc<Self>,
        outcomes: mpsc::Sender<TlsOutcome>,
        shutdown: CancellationToken,
    ) -> Result<Running, StartError> {
        let mut bound = Vec::new();
        for l in &self.listeners {
            for &addr in &l.cfg.bind {
                let sock = bind(addr).map_err(|source| StartError::Bind {
                    addr,
                    key: format!("{}.bind", l.cfg.key_prefix),
                    source,
                })?;
                bound.push((l.clone(), sock));
            }
        }
        let tracker = TaskTracker::new();
        let sink = Sink {
            tx: outcomes,
            counters: self.counters.clone(),
        };
        for (listener, sock) in bound {
            info!(addr = %sock.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
                distribution = %listener.cfg.distribution_id, "listening");
            tracker.spawn(accept_loop(
                listener,
                sock,
                sink.clone(),
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        Ok(Running { tracker, shutdown })
    }
}

/// The running terminator.
#[derive(Debug)]
pub struct Running {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Running {
    /// Stops accepting, then waits up to `grace` for open connections to
    /// finish. Returns whether all finished in time.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(BACKLOG)
}

async fn accept_loop(
    listener: Arc<Listener>,
    sock: TcpListener,
    sink: Sink,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = sock.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                TlsCounters::inc(&sink.counters.accepted);
                tracker.spawn(conn::handle(listener.clone(), stream, peer, sink.clone()));
            }
            Err(e) => {
                // EMFILE, ENOBUFS…: no socket, so no outcome; back off.
                TlsCounters::inc(&sink.counters.accept_errors);
                warn!(error = %e, distribution = %listener.cfg.distribution_id, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
