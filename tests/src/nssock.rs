//! Sockets inside a namespace: a thread enters the namespace, makes the
//! socket and hands it back; the socket stays in that namespace.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd as _;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use crate::Netns;

impl Netns {
    /// Runs `f` on a fresh thread that has entered this namespace.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = self.path();
        std::thread::spawn(move || -> Result<T> {
            let ns = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
                .context("setns")?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow!("namespace thread panicked"))?
    }

    /// A TCP connection from inside this namespace (5 s timeout).
    pub fn connect(&self, addr: SocketAddr) -> Result<TcpStream> {
        let stream = self
            .run_in(move || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(stream)
    }

    /// `n` TCP connections from inside this namespace, made on one thread.
    pub fn connect_many(&self, addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
        self.run_in(move || {
            (0..n)
                .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
                .collect::<std::io::Result<Vec<_>>>()
        })?
        .with_context(|| format!("connecting {n} times to {addr}"))
    }

    /// A TCP listener inside this namespace.
    pub fn listen(&self, addr: SocketAddr) -> Result<TcpListener> {
        self.run_in(move || TcpListener::bind(addr))?
            .with_context(|| format!("binding {addr}"))
    }
}

/// Ends `stream` with an RST instead of a FIN, now: `connect(AF_UNSPEC)`
/// aborts the connection (what `close` does with SO_LINGER 0) even while
/// another process still holds a copy of the descriptor, e.g. a child a
/// concurrent test is forking (its copy lives until its `exec`), where a
/// plain close would send the RST only when that copy goes.
pub fn reset(stream: TcpStream) -> Result<()> {
    rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO))?;
    rustix::net::connect_unspec(&stream).context("aborting the connection")?;
    drop(stream);
    Ok(())
}
