//! One agent with one mTLS listener in a server namespace, a client
//! namespace to connect from, and a test PKI on disk.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;

use anyhow::Result;

use crate::Pair;
use crate::agent::Agent;
use crate::pki::{self, Ca};
use crate::tempdir::TempDir;
use crate::tlsclient::{self, ClientSpec, TlsStream};

/// The port the fixture's listener binds (namespaces keep tests apart).
pub const PORT: u16 = 8443;

/// Everything one TLS test needs. Dropping it stops the agent and removes
/// the namespaces and files.
/// How the fixture starts the agent.
enum Launch {
    Plain,
    NofileSoft(u64),
    OneCpu,
}

pub struct TlsFixture {
    pub agent: Agent,
    pub root: Ca,
    pub dir: TempDir,
    pub pair: Pair,
}

/// How to configure the listener.
pub struct ListenerSpec {
    /// Lines of `[listener.mtls]`; `trust_store = "ca.pem"` (the root) is
    /// available.
    pub mtls: String,
    /// Extra lines of `[[listener]]` (e.g. `upstream`, `handshake_timeout`).
    pub extra: String,
}

impl ListenerSpec {
    pub fn required() -> Self {
        Self {
            mtls: "mode = \"required\"\ntrust_store = \"ca.pem\"\n".into(),
            extra: String::new(),
        }
    }

    pub fn mode(mode: &str) -> Self {
        Self {
            mtls: format!("mode = \"{mode}\"\ntrust_store = \"ca.pem\"\n"),
            extra: String::new(),
        }
    }
}

impl TlsFixture {
    /// Namespaces, PKI, config, agent. `prepare` may write more files into
    /// the directory (CRLs…) before the agent starts.
    pub fn start(
        tag: &str,
        spec: ListenerSpec,
        prepare: impl FnOnce(&TlsFixture0) -> Result<()>,
    ) -> Result<Self> {
        Self::start_inner(tag, spec, prepare, Launch::Plain)
    }

    /// Like [`TlsFixture::start`], with the agent started under a soft
    /// open-file limit of `soft`.
    pub fn start_with_nofile_soft(tag: &str, spec: ListenerSpec, soft: u64) -> Result<Self> {
        Self::start_inner(tag, spec, |_| Ok(()), Launch::NofileSoft(soft))
    }

    /// Like [`TlsFixture::start`], with the agent pinned to one CPU.
    pub fn start_on_one_cpu(tag: &str, spec: ListenerSpec) -> Result<Self> {
        Self::start_inner(tag, spec, |_| Ok(()), Launch::OneCpu)
    }

    fn start_inner(
        tag: &str,
        spec: ListenerSpec,
        prepare: impl FnOnce(&TlsFixture0) -> Result<()>,
        launch: Launch,
    ) -> Result<Self> {
        let pair = Pair::new(tag)?;
        let dir = TempDir::new(tag)?;
        let root = Ca::root("connlog test root")?;
        pki::write_server_files(dir.path(), &root)?;
        let f0 = TlsFixture0 { root, dir };
        prepare(&f0)?;
        // The kernel probe's events would interleave with the TLS outcomes
        // these tests read; the probe has its own tests (tests/tests/probe_*).
        let config = format!(
            "[probe]\nenabled = false\n\
             [[listener]]\n\
             distribution_id = \"E2DX1SLDPK0123\"\n\
             bind = [\"{}:{PORT}\", \"[{}]:{PORT}\"]\n\
             cert = \"server.pem\"\n\
             key = \"server.key\"\n\
             {}\n\
             [listener.mtls]\n{}",
            pair.server_v4, pair.server_v6, spec.extra, spec.mtls
        );
        let path = pki::write(f0.dir.path(), "agent.toml", &config)?;
        let agent = match launch {
            Launch::NofileSoft(soft) => Agent::start_with_nofile_soft(&pair.server, &path, soft)?,
            Launch::OneCpu => Agent::start_on_one_cpu(&pair.server, &path)?,
            Launch::Plain => Agent::start(Some(&pair.server), &path)?,
        };
        Ok(Self {
            agent,
            root: f0.root,
            dir: f0.dir,
            pair,
        })
    }

    /// The listener's address.
    pub fn addr(&self, v6: bool) -> SocketAddr {
        SocketAddr::new(self.pair.server_ip(v6), PORT)
    }

    /// A TCP connection from the client namespace.
    pub fn tcp(&self, v6: bool) -> Result<TcpStream> {
        self.pair.client.connect(self.addr(v6))
    }

    /// A TLS handshake from the client namespace.
    pub fn tls(&self, v6: bool, spec: &ClientSpec) -> Result<TlsStream> {
        tlsclient::handshake(self.tcp(v6)?, spec)
    }

    /// A file in the fixture directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The fixture before the agent starts (for `prepare`).
pub struct TlsFixture0 {
    pub root: Ca,
    pub dir: TempDir,
}

/// The parts of an outcome every test checks, from the JSON line.
pub fn status(ev: &serde_json::Value) -> &str {
    ev["status"].as_str().unwrap_or("<no status>")
}

/// Whether the client saw its connection refused: the handshake failed, or
/// the first read after it got an alert (TLS 1.3 reports a rejected
/// certificate only after the client finished).
pub fn client_refused(result: Result<TlsStream>) -> bool {
    use std::io::Read as _;
    match result {
        Err(_) => true,
        Ok(mut s) => {
            let mut b = [0u8; 1];
            s.read(&mut b).is_err()
        }
    }
}

/// SHA-256 of `der`, lowercase hex.
pub fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
