//! Full mTLS handshakes through the real terminator (in process, loopback),
//! one listener without a function and one with the KVS revocation
//! function, measured alternately in one run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connlog_agent::config::Config;
use connlog_agent::tls::Terminator;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

/// Client certificates; every 4th one's serial is in the KVS.
const CLIENTS: u8 = 16;

pub struct HandshakeRow {
    pub name: &'static str,
    pub handshakes: u64,
    pub per_sec: f64,
    /// Process CPU time (clients and server together) per handshake.
    pub cpu_per_handshake: Duration,
    pub statuses: String,
}

struct Client {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

fn ca() -> anyhow::Result<(CertificateParams, KeyPair, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "connlog bench CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key)?.pem();
    Ok((params, key, pem))
}

/// Writes the PKI, the function and its KVS into `dir`; returns the clients.
fn write_pki(dir: &Path, root_pem: &mut String) -> anyhow::Result<Vec<Client>> {
    let (params, ca_key, ca_pem) = ca()?;
    let issuer = Issuer::from_params(&params, &ca_key);
    let server_key = KeyPair::generate()?;
    let server =
        CertificateParams::new(vec!["edge.test".to_string()])?.signed_by(&server_key, &issuer)?;
    std::fs::write(dir.join("ca.pem"), &ca_pem)?;
    std::fs::write(dir.join("server.pem"), server.pem())?;
    std::fs::write(dir.join("server.key"), server_key.serialize_pem())?;
    let mut clients = Vec::new();
    let mut revoked = serde_json::Map::new();
    for i in 0..CLIENTS {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name
            .push(DnType::CommonName, format!("client{i}.test"));
        p.serial_number = Some(SerialNumber::from_slice(&[0x3c, i]));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer)?;
        if i % 4 == 0 {
            revoked.insert(format!("3c:{i:02x}"), "revoked".into());
        }
        clients.push(Client {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        });
    }
    // Pad the store to 10 000 keys so lookups hit a realistic table.
    for n in 0..10_000u32 {
        revoked.insert(format!("7f:{n:08x}"), "revoked".into());
    }
    std::fs::write(dir.join("kvs.json"), serde_json::to_vec(&revoked)?)?;
    std::fs::write(dir.join("revocation.js"), super::REVOCATION)?;
    *root_pem = ca_pem;
    Ok(clients)
}

fn config_text(plain: SocketAddr, function: SocketAddr) -> String {
    let listener = |id: &str, addr: SocketAddr| {
        format!(
            "[[listener]]\ndistribution_id = \"{id}\"\nbind = [\"{addr}\"]\n\
             cert = \"server.pem\"\nkey = \"server.key\"\n\
             [listener.mtls]\nmode = \"required\"\ntrust_store = \"ca.pem\"\n"
        )
    };
    format!(
        "{}{}[listener.connection_function]\nfile = \"revocation.js\"\nkvs = \"kvs.json\"\n",
        listener("EPLAIN", plain),
        listener("EFUNCTION", function)
    )
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// One full handshake: connect, handshake, read until the server closes
/// (it does so right after the verdict: no upstream is configured).
async fn one(connector: &TlsConnector, addr: SocketAddr) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector
        .connect(ServerName::try_from("edge.test")?, tcp)
        .await?;
    let mut buf = [0u8; 64];
    while tls.read(&mut buf).await? > 0 {}
    Ok(())
}

pub async fn run(seconds: u64, concurrency: usize) -> anyhow::Result<Vec<HandshakeRow>> {
    let dir = std::env::temp_dir().join(format!("connlog-fn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut root_pem = String::new();
    let clients = write_pki(&dir, &mut root_pem)?;
    let (plain, function) = (free_port()?, free_port()?);
    let config = Config::parse(&config_text(plain, function), &dir)?;
    let terminator = Arc::new(Terminator::load(&config.listeners)?);
    let (tx, mut rx) = tokio::sync::mpsc::channel(65_536);
    let shutdown = CancellationToken::new();
    let running = terminator.start(tx, shutdown.clone()).await?;
    let tally = tokio::spawn(async move {
        let mut counts: HashMap<(String, String), u64> = HashMap::new();
        while let Some(o) = rx.recv().await {
            *counts
                .entry((o.distribution_id.clone(), o.status.to_string()))
                .or_default() += 1;
        }
        counts
    });

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&root_pem)? {
        roots.add(cert)?;
    }
    let connectors: Vec<TlsConnector> = clients
        .iter()
        .map(|c| -> anyhow::Result<TlsConnector> {
            let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(
                c.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone())),
            )?;
            cfg.resumption = rustls::client::Resumption::disabled();
            Ok(TlsConnector::from(Arc::new(cfg)))
        })
        .collect::<Result<_, _>>()?;
    let connectors = Arc::new(connectors);

    let mut totals = [(0u64, Duration::ZERO, Duration::ZERO); 2];
    // A B B A A B B A: linear drift and neighbours' load hit both alike.
    for which in [0, 1, 1, 0, 0, 1, 1, 0] {
        let addr = if which == 0 { plain } else { function };
        let cpu = process_cpu();
        let (n, took) = load(&connectors, addr, Duration::from_secs(seconds), concurrency).await;
        totals[which].0 += n;
        totals[which].1 += took;
        totals[which].2 += process_cpu().saturating_sub(cpu);
    }
    let drained = running.shutdown(Duration::from_secs(5)).await;
    drop(terminator);
    let counts = tally.await?;
    let _ = std::fs::remove_dir_all(&dir);
    if !drained {
        eprintln!("bench: some connections were still open at shutdown");
    }
    let statuses = |id: &str| {
        let mut v: Vec<String> = counts
            .iter()
            .filter(|((d, _), _)| d == id)
            .map(|((_, s), n)| format!("{s} {n}"))
            .collect();
        v.sort();
        v.join(", ")
    };
    let row = |name, (n, took, cpu): (u64, Duration, Duration), id| HandshakeRow {
        name,
        handshakes: n,
        per_sec: n as f64 / took.as_secs_f64(),
        cpu_per_handshake: cpu / u32::try_from(n.max(1)).unwrap_or(u32::MAX),
        statuses: statuses(id),
    };
    Ok(vec![
        row("no function", totals[0], "EPLAIN"),
        row("KVS revocation function", totals[1], "EFUNCTION"),
    ])
}

/// `concurrency` client loops against `addr` for `duration`; returns the
/// completed handshakes and the time taken.
async fn load(
    connectors: &Arc<Vec<TlsConnector>>,
    addr: SocketAddr,
    duration: Duration,
    concurrency: usize,
) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..concurrency {
        let (connectors, done, stop) = (connectors.clone(), done.clone(), stop.clone());
        tasks.spawn(async move {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let connector = &connectors[i % connectors.len()];
                if one(connector, addr).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += concurrency;
            }
        });
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    (done.load(Ordering::Relaxed), started.elapsed())
}

/// CPU time used by this whole process so far.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The certificates of a PEM text (the root only, here).
fn rustls_pemfile_certs(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    Ok(CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>()?)
}
