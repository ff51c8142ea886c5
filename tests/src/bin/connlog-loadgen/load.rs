//! The load loops: bounded in time and count, one thread.

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustls::client::{ClientSessionStore, Resumption, Tls12Resumption};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, NamedGroup, RootCertStore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// Longest a single connection may take before it counts as an error.
const CONN_TIMEOUT: Duration = Duration::from_secs(10);

/// The client side: TLS 1.3 only, P-256 client certificate, server
/// verified against the bench CA, no resumption: session tickets the
/// server sends are counted and thrown away, so every handshake is full.
pub struct Client {
    connector: TlsConnector,
    tickets: Arc<TicketCounter>,
}

impl Client {
    /// The bench client presenting `client.pem` / `client.key` of `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::with_identity(dir, Some("client"))
    }

    /// A client presenting `<name>.pem` / `<name>.key` of `dir`, or no
    /// certificate at all.
    pub fn with_identity(dir: &Path, name: Option<&str>) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).context("ca.pem")?)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots);
        let mut config = match name {
            Some(name) => {
                let pem = format!("{name}.pem");
                let chain = vec![CertificateDer::from_pem_file(dir.join(&pem)).context(pem)?];
                let key = format!("{name}.key");
                let key = PrivateKeyDer::from_pem_file(dir.join(&key)).context(key)?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        let tickets = Arc::new(TicketCounter::default());
        config.resumption =
            Resumption::store(tickets.clone()).tls12_resumption(Tls12Resumption::Disabled);
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            tickets,
        })
    }

    /// TLS 1.3 session tickets received so far.
    pub fn tickets(&self) -> u64 {
        self.tickets.0.load(Ordering::Relaxed)
    }

    /// Connect, handshake, one-byte echo; returns the stream and the time
    /// from connect to the first echoed byte.
    async fn once(
        &self,
        addr: SocketAddr,
    ) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Duration)> {
        let started = Instant::now();
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut tls = self
            .connector
            .connect(ServerName::try_from("edge.test")?, tcp)
            .await?;
        let kind = tls.get_ref().1.handshake_kind();
        if kind != Some(HandshakeKind::Full) {
            bail!("not a full handshake: {kind:?}");
        }
        tls.write_all(b"x").await?;
        tls.flush().await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        if b != *b"x" {
            bail!("echo returned {b:?}");
        }
        Ok((tls, started.elapsed()))
    }

    /// One connection: handshake, one-byte echo, close. The error says
    /// why it failed (a refusal shows up as an alert on the read).
    pub async fn probe(&self, addr: SocketAddr) -> Result<Negotiated> {
        let (mut tls, _) = tokio::time::timeout(CONN_TIMEOUT, self.once(addr)).await??;
        let conn = tls.get_ref().1;
        let negotiated = Negotiated {
            protocol: format!("{:?}", conn.protocol_version().context("no version")?),
            cipher: format!(
                "{:?}",
                conn.negotiated_cipher_suite().context("no suite")?.suite()
            ),
            group: format!(
                "{:?}",
                conn.negotiated_key_exchange_group()
                    .context("no group")?
                    .name()
            ),
        };
        let _ = tls.shutdown().await;
        Ok(negotiated)
    }
}

/// What one handshake agreed on.
#[derive(Debug, serde::Serialize)]
pub struct Negotiated {
    pub protocol: String,
    pub cipher: String,
    pub group: String,
}

/// A session store that keeps nothing (so no handshake is ever resumed)
/// and counts the TLS 1.3 tickets the server sent.
#[derive(Debug, Default)]
struct TicketCounter(AtomicU64);

impl ClientSessionStore for TicketCounter {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }

    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls12ClientSessionValue,
    ) {
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls13ClientSessionValue,
    ) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        None
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub concurrency: usize,
    pub handshakes: u64,
    pub errors: u64,
    pub secs: f64,
    pub per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// TLS 1.3 session tickets the server sent (never used).
    pub tickets: u64,
}

pub async fn run(
    client: Rc<Client>,
    addr: SocketAddr,
    concurrency: usize,
    secs: f64,
) -> Result<Report> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let local = tokio::task::LocalSet::new();
    let results = local
        .run_until(async {
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let client = client.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    let mut lat = Vec::new();
                    let mut errors = 0u64;
                    while Instant::now() < deadline {
                        match tokio::time::timeout(CONN_TIMEOUT, client.once(addr)).await {
                            Ok(Ok((mut tls, d))) => {
                                lat.push(d.as_micros() as u64);
                                let _ = tls.shutdown().await;
                            }
                            _ => errors += 1,
                        }
                    }
                    (lat, errors)
                }));
            }
            let mut all = Vec::new();
            let mut errors = 0;
            for t in tasks {
                if let Ok((l, e)) = t.await {
                    all.extend(l);
                    errors += e;
                }
            }
            (all, errors)
        })
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let (mut lat, errors) = results;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    Ok(Report {
        concurrency,
        handshakes: lat.len() as u64,
        errors,
        secs: elapsed,
        per_sec: lat.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        tickets: client.tickets(),
    })
}

pub async fn idle(client: &Client, addr: SocketAddr, count: usize) -> Result<()> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let (tls, _) = tokio::time::timeout(CONN_TIMEOUT, client.once(addr)).await??;
        held.push(tls);
    }
    println!("ready {}", held.len());
    // Hold until stdin closes (bounded by the caller's own timeout).
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    while stdin.read_line(&mut line).await? > 0 {
        line.clear();
    }
    drop(held);
    Ok(())
}

pub async fn echo(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (mut s, _) = listener.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}
