//! The kernel probe under test: an agent in the server namespace of a
//! [`Pair`] watching one port, plus the client-side tools that make TCP
//! misbehave (nft rules, scapy, fixed client ports).

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::agent::Agent;
use crate::{Pair, TempDir, pki};

/// The port every probe test listens on and the agent watches (each test
/// has its own namespaces, so they do not collide).
pub const PORT: u16 = 7443;

pub struct ProbeFixture {
    pub agent: Agent,
    pub pair: Pair,
    /// The agent's config file.
    pub config: PathBuf,
    _dir: TempDir,
}

impl ProbeFixture {
    /// A pair and an agent in its server namespace watching [`PORT`] with
    /// `syn_timeout`; `extra` is appended to `[probe]`.
    pub fn start(tag: &str, syn_timeout: &str, extra: &str) -> Result<Self> {
        let pair = Pair::new(tag)?;
        let dir = TempDir::new(tag)?;
        let config = format!("[probe]\nports = [{PORT}]\nsyn_timeout = \"{syn_timeout}\"\n{extra}");
        let path = pki::write(dir.path(), "agent.toml", &config)?;
        let agent = Agent::start(Some(&pair.server), &path)?;
        agent.wait_log("probe attached")?;
        Ok(Self {
            agent,
            pair,
            config: path,
            _dir: dir,
        })
    }

    pub fn server_addr(&self, v6: bool, port: u16) -> SocketAddr {
        SocketAddr::new(self.pair.server_ip(v6), port)
    }

    /// A listener in the server namespace.
    pub fn listen(&self, v6: bool, port: u16) -> Result<TcpListener> {
        self.pair.server.listen(self.server_addr(v6, port))
    }

    /// A connection from the client namespace.
    pub fn connect(&self, v6: bool, port: u16) -> Result<TcpStream> {
        self.pair.client.connect(self.server_addr(v6, port))
    }

    /// A connection from the client namespace from a fixed local port
    /// (SO_REUSEADDR), for tuple-reuse tests.
    pub fn connect_from(&self, v6: bool, client_port: u16) -> Result<TcpStream> {
        let local = SocketAddr::new(self.pair.client_ip(v6), client_port);
        let remote = self.server_addr(v6, PORT);
        let fd: OwnedFd = self
            .pair
            .client
            .run_in(move || -> std::io::Result<OwnedFd> {
                use rustix::net::{
                    AddressFamily, SocketFlags, SocketType, bind, connect, socket_with, sockopt,
                };
                let family = if v6 {
                    AddressFamily::INET6
                } else {
                    AddressFamily::INET
                };
                // CLOEXEC, as std's sockets: without it every process a
                // concurrent test starts kept the connection open, so the
                // test's RST and the tuple's reuse came only when that
                // process exited (the `reused_tuple_is_two_attempts` flake).
                let fd = socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
                sockopt::set_socket_reuseaddr(&fd, true)?;
                bind(&fd, &local)?;
                connect(&fd, &remote)?;
                Ok(fd)
            })??;
        Ok(TcpStream::from(fd))
    }

    /// Events until none arrives for `quiet`.
    pub fn events_until_quiet(&self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(ev) = self.agent.event_within(quiet) {
            out.push(ev);
        }
        out
    }

    /// Exactly `n` events, waiting up to `within`; then checks that nothing
    /// else arrives for `quiet`.
    pub fn exactly(&self, n: usize, within: Duration, quiet: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + crate::patient(within);
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.agent.event_within(left) {
                Some(ev) => out.push(ev),
                None => bail!(
                    "got {} of {n} events: {out:?}\nlog:\n{}",
                    out.len(),
                    self.agent.stderr()
                ),
            }
        }
        if let Some(extra) = self.agent.event_within(quiet) {
            bail!("unexpected extra event {extra} after {out:?}");
        }
        Ok(out)
    }

    /// An nft rule in the client namespace dropping the client's pure ACKs
    /// to [`PORT`]: handshakes stop in SYN_RECV on the server until the
    /// client sends data (whose segments carry PSH).
    pub fn drop_client_pure_acks(&self) -> Result<()> {
        let rules = format!(
            "add table inet cl; \
             add chain inet cl out {{ type filter hook output priority 0; }}; \
             add rule inet cl out tcp dport {PORT} tcp flags == ack drop"
        );
        self.pair.client.exec(&["nft", &rules]).map(drop)
    }

    /// One raw SYN from the client namespace (scapy) from `client_port`
    /// with sequence number `seq`. The client kernel has no socket for it,
    /// so it answers the server's SYN-ACK with an RST.
    pub fn scapy_syn(&self, v6: bool, client_port: u16, seq: u32) -> Result<()> {
        let (layer, dst) = if v6 {
            ("IPv6", self.pair.server_v6.to_string())
        } else {
            ("IP", self.pair.server_v4.to_string())
        };
        let script = format!(
            "from scapy.all import {layer}, TCP, send\n\
             send({layer}(dst='{dst}')/TCP(sport={client_port}, dport={PORT}, flags='S', seq={seq}), verbose=0)\n"
        );
        let out = self
            .pair
            .client
            .command("python3")
            .args(["-c", &script])
            .output()
            .context("running scapy")?;
        if !out.status.success() {
            bail!("scapy failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

/// SO_COOKIE of a socket.
pub fn cookie(stream: &TcpStream) -> Result<u64> {
    Ok(rustix::net::sockopt::socket_cookie(stream)?)
}

/// The event's tuple as (client, server).
pub fn tuple(ev: &Value) -> (String, String) {
    let s = |k: &str| ev["tuple"][k].as_str().unwrap_or("").to_string();
    (s("client"), s("server"))
}

/// `addr` as the agent prints it (IPv4-mapped shown as IPv4).
pub fn shown(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), addr.port()).to_string(),
            None => addr.to_string(),
        },
        IpAddr::V4(_) => addr.to_string(),
    }
}
