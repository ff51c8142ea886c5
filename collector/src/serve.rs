//! Starting and stopping the server: the writer thread, the gRPC listener
//! (TLS or mTLS optional), housekeeping, and a clean drain on SIGTERM.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::{Config, Fsync, SinkConfig, TlsFiles};
use crate::dedup::Dedup;
use crate::encoded::Encoders;
use crate::journal::Journal;
use crate::server::Service;
use crate::ship::{BatchPool, Routes};
use crate::sink::Sink;
use crate::writer::{Job, Writer};

/// How long in-flight streams get to finish after SIGTERM.
const DRAIN: Duration = Duration::from_secs(3);

pub(crate) async fn run(cfg: Config) -> Result<()> {
    let (jobs, jobs_rx) = mpsc::channel::<Job>(64);
    let (observers, _) = broadcast::channel(4096);
    let rt = tokio::runtime::Handle::current();
    let sinks = cfg
        .sinks
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, s)| Sink::new(s, i, &rt))
        .collect();
    let mut dedup = Dedup::new(cfg.dedup_window, cfg.dedup_max_ids);
    // Fsync the journal with the data when a file sink fsyncs every batch.
    let sync = cfg
        .sinks
        .iter()
        .any(|s| matches!(s, SinkConfig::File(f) if f.fsync == Fsync::Batch));
    let journal = match &cfg.dedup_journal {
        Some(path) => Some(
            Journal::open(path, sync, &mut dedup)
                .with_context(|| format!("opening the dedup journal {}", path.display()))?,
        ),
        None => None,
    };
    let pool = BatchPool::default();
    let encoders = Encoders::new(&cfg.sinks);
    let writer = Writer::new(
        sinks,
        dedup,
        journal,
        observers.clone(),
        pool.clone(),
        encoders.clone(),
    );
    let writer_thread = std::thread::Builder::new()
        .name("connlog-writer".into())
        .spawn(move || writer.run(jobs_rx))
        .context("starting the writer thread")?;

    let ticker = {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(500));
            loop {
                every.tick().await;
                // Full means the writer is busy; the next tick will do.
                if let Err(mpsc::error::TrySendError::Closed(_)) = jobs.try_send(Job::Tick) {
                    break;
                }
            }
        })
    };

    let service = Routes::new(
        Service {
            jobs: jobs.clone(),
            observers,
            max_batch_records: cfg.max_batch_records,
            encoders,
        },
        cfg.max_message_bytes,
        pool,
    );
    // Large HTTP/2 windows: an agent's batch is about a megabyte, and the
    // default 64 KiB window would stall it on window updates.
    let mut builder = Server::builder()
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20);
    if let Some(tls) = &cfg.tls {
        builder = builder
            .tls_config(tls_config(tls)?)
            .context("configuring TLS")?;
    }
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    eprintln!("connlog-collector: listening on {addr}");
    tracing::info!(%addr, tls = cfg.tls.is_some(), sinks = cfg.sinks.len(), "collector started");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(builder.add_service(service).serve_with_incoming_shutdown(
        TcpListenerStream::new(listener),
        async {
            let _ = stop_rx.await;
        },
    ));
    shutdown_signal().await;
    tracing::info!("stopping: draining streams");
    let _ = stop_tx.send(());
    let aborter = server.abort_handle();
    match tokio::time::timeout(DRAIN, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => tracing::warn!(error = %err, "server ended with an error"),
        Ok(Err(err)) => tracing::warn!(error = %err, "server task failed"),
        Err(_) => {
            tracing::info!("streams still open after the drain time; closing");
            aborter.abort();
        }
    }
    ticker.abort();
    // Batches already queued are written first; streams still open get
    // UNAVAILABLE for anything after, so their agents keep those records.
    let _ = jobs.send(Job::Stop).await;
    let joined = tokio::task::spawn_blocking(move || writer_thread.join());
    match tokio::time::timeout(Duration::from_secs(60), joined).await {
        Ok(_) => Ok(()),
        Err(_) => anyhow::bail!("writer did not stop within 60 s"),
    }
}

fn tls_config(tls: &TlsFiles) -> Result<ServerTlsConfig> {
    // tonic's server builds its rustls config from the process-level
    // provider; in a workspace build rustls has both the ring and the
    // aws-lc-rs features (the agent's), so none is implied. The collector
    // runs on ring. Err means one is installed already: that one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read =
        |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can only be killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
