//! Listeners: bind every address, accept, spawn one task per connection;
//! reload on request; stop accepting and drain on shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{ConfigError, ListenerConfig};

use super::TlsOutcome;
use super::conn::{self, Sink};
use super::counters::TlsCounters;
use super::provider;
use super::state::ListenerState;

/// Pending connections the kernel may queue per bind address.
const BACKLOG: i32 = 4096;

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
    #[error("listening on {key}")]
    Register {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no listener #{0} for a bound socket")]
    Mismatch(usize),
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
        let provider = Arc::new(provider::agent_provider());
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
        let cfgs: Vec<ListenerConfig> = self.listeners.iter().map(|l| l.cfg.clone()).collect();
        let bound = bind(&cfgs)?;
        self.serve(bound, outcomes, shutdown)
    }

    /// Accepts on sockets bound earlier by [`bind`] with the same listener
    /// configs, until `shutdown` is cancelled. Needs a tokio runtime.
    pub fn serve(
        self: &Arc<Self>,
        bound: Bound,
        outcomes: mpsc::Sender<TlsOutcome>,
        shutdown: CancellationToken,
    ) -> Result<Running, StartError> {
        let tracker = TaskTracker::new();
        let sink = Sink {
            tx: outcomes,
            counters: self.counters.clone(),
        };
        for (index, std_sock) in bound.0 {
            let Some(listener) = self.listeners.get(index) else {
                return Err(StartError::Mismatch(index));
            };
            let addr = std_sock
                .local_addr()
                .map_err(|source| StartError::Register {
                    key: format!("{}.bind", listener.cfg.key_prefix),
                    source,
                })?;
            let sock = TcpListener::from_std(std_sock).map_err(|source| StartError::Register {
                key: format!("{}.bind", listener.cfg.key_prefix),
                source,
            })?;
            info!(%addr, distribution = %listener.cfg.distribution_id, "listening");
            tracker.spawn(accept_loop(
                listener.clone(),
                sock,
                local_of_accepted(addr),
                sink.clone(),
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        Ok(Running { tracker, shutdown })
    }
}

/// Listening sockets, bound before the agent gives up its privileges and
/// before any runtime exists; [`Terminator::serve`] accepts on them.
#[derive(Debug)]
pub struct Bound(Vec<(usize, std::net::TcpListener)>);

/// Binds and listens on every address of every listener (in config
/// order). Plain sockets: no tokio runtime is needed yet.
pub fn bind(cfgs: &[ListenerConfig]) -> Result<Bound, StartError> {
    let mut bound = Vec::new();
    for (index, cfg) in cfgs.iter().enumerate() {
        for &addr in &cfg.bind {
            let sock = bind_one(addr).map_err(|source| StartError::Bind {
                addr,
                key: format!("{}.bind", cfg.key_prefix),
                source,
            })?;
            bound.push((index, sock));
        }
    }
    Ok(Bound(bound))
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

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    // Accepted sockets inherit TCP_NODELAY from the listening socket on
    // Linux: one setsockopt here instead of one per connection.
    sockopt::set_tcp_nodelay(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, BACKLOG)?;
    Ok(std::net::TcpListener::from(fd))
}

/// The local address every socket accepted on a listener bound to `bound`
/// has: the bound address itself, unless it is a wildcard (then each
/// accepted socket is asked, one `getsockname` per connection).
fn local_of_accepted(bound: SocketAddr) -> Option<SocketAddr> {
    (!bound.ip().is_unspecified()).then_some(bound)
}

async fn accept_loop(
    listener: Arc<Listener>,
    sock: TcpListener,
    local: Option<SocketAddr>,
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
                tracker.spawn(conn::handle(
                    listener.clone(),
                    stream,
                    peer,
                    local,
                    sink.clone(),
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let listener = bind_one("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn local_address_is_known_unless_the_bind_is_a_wildcard() {
        let v4: SocketAddr = "198.18.0.1:443".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:443".parse().unwrap();
        assert_eq!(local_of_accepted(v4), Some(v4));
        assert_eq!(local_of_accepted(v6), Some(v6));
        assert_eq!(local_of_accepted("0.0.0.0:443".parse().unwrap()), None);
        assert_eq!(local_of_accepted("[::]:443".parse().unwrap()), None);
    }
}
