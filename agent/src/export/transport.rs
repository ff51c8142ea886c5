//! One connection to the receiver: batches go in, acknowledgements (by
//! sequence) come out, until the link fails. Native gRPC streams batches
//! on `Collector/Ship`; OTLP sends each batch as one `LogsService/Export`
//! call and treats a success as the acknowledgement.

use connlog_proto::export_request;
use connlog_proto::wire::{self, EncodedBatch};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::{ExportConfig, ExportProtocol, ExportTls};

/// A live link. `acks` ends (or yields an error) when the link fails.
pub(crate) struct Link {
    pub(crate) batches: mpsc::Sender<EncodedBatch>,
    pub(crate) acks: mpsc::Receiver<Result<u64, tonic::Status>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("endpoint {endpoint}: {reason}")]
    Config { endpoint: String, reason: String },
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("opening the stream to {endpoint}: {}", .status.message())]
    Open {
        endpoint: String,
        status: tonic::Status,
    },
}

fn tls_config(tls: &ExportTls) -> Result<ClientTlsConfig, String> {
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let mut config = ClientTlsConfig::new();
    if let Some(ca) = &tls.ca {
        config = config.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    Ok(config)
}

/// HTTP/2 flow-control windows (bytes) for the link to the collector.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

async fn channel(cfg: &ExportConfig, endpoint: &str) -> Result<Channel, ConnectError> {
    let config_err = |reason: String| ConnectError::Config {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let mut ep =
        Endpoint::from_shared(endpoint.to_owned()).map_err(|e| config_err(e.to_string()))?;
    // Large HTTP/2 windows: a batch of a few thousand records is about a
    // megabyte, and the default 64 KiB window would stall every batch on
    // window updates.
    ep = ep
        .connect_timeout(std::time::Duration::from_secs(3))
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    if let Some(tls) = &cfg.tls {
        ep = ep
            .tls_config(tls_config(tls).map_err(config_err)?)
            .map_err(|e| config_err(e.to_string()))?;
    }
    ep.connect().await.map_err(|source| ConnectError::Connect {
        endpoint: endpoint.to_owned(),
        source,
    })
}

pub(crate) async fn connect(
    cfg: &ExportConfig,
    endpoint: &str,
    agent_id: &str,
) -> Result<Link, ConnectError> {
    let channel = channel(cfg, endpoint).await?;
    let (batches, batch_rx) = mpsc::channel::<EncodedBatch>(cfg.max_in_flight);
    let (ack_tx, acks) = mpsc::channel(cfg.max_in_flight * 2 + 4);
    match cfg.protocol {
        ExportProtocol::Grpc => {
            let mut inbound = wire::ship(channel, ReceiverStream::new(batch_rx))
                .await
                .map_err(|status| ConnectError::Open {
                    endpoint: endpoint.to_owned(),
                    status,
                })?;
            tokio::spawn(async move {
                loop {
                    let item = match inbound.message().await {
                        Ok(Some(ack)) => Ok(ack.sequence),
                        Ok(None) => Err(tonic::Status::unavailable("collector closed the stream")),
                        Err(status) => Err(status),
                    };
                    let end = item.is_err();
                    if ack_tx.send(item).await.is_err() || end {
                        break;
                    }
                }
            });
        }
        ExportProtocol::Otlp => {
            let mut client = LogsServiceClient::new(channel);
            let agent_id = agent_id.to_owned();
            let mut batch_rx = batch_rx;
            tokio::spawn(async move {
                while let Some(encoded) = batch_rx.recv().await {
                    let batch = match encoded.decode() {
                        Ok(batch) => batch,
                        Err(err) => {
                            let status = tonic::Status::internal(format!(
                                "batch {}: {err}",
                                encoded.sequence
                            ));
                            let _ = ack_tx.send(Err(status)).await;
                            break;
                        }
                    };
                    let request = export_request(&agent_id, &batch.records);
                    let item = match client.export(request).await {
                        Ok(response) => {
                            if let Some(partial) = response.into_inner().partial_success
                                && partial.rejected_log_records > 0
                            {
                                tracing::warn!(
                                    rejected = partial.rejected_log_records,
                                    message = %partial.error_message,
                                    "OTLP endpoint rejected part of a batch"
                                );
                            }
                            Ok(batch.sequence)
                        }
                        Err(status) => Err(status),
                    };
                    let end = item.is_err();
                    if ack_tx.send(item).await.is_err() || end {
                        break;
                    }
                }
            });
        }
    }
    Ok(Link { batches, acks })
}
