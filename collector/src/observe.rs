//! `connlog-collector observe`: live tail of the records a collector
//! writes, filtered on the server, printed as a table or JSON lines.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use connlog_proto::v1::ObserveRequest;
use connlog_proto::v1::collector_client::CollectorClient;
use connlog_proto::{Field, FieldValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::format::{Encoder, Format};

#[derive(Debug, clap::Args)]
pub(crate) struct ObserveArgs {
    /// Collector address.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    server: String,
    /// Only this status: `Success`, `Failed`, `Failed:<Code>` or `<Code>` (repeatable).
    #[arg(long)]
    status: Vec<String>,
    /// Only this distributionId (repeatable).
    #[arg(long)]
    distribution: Vec<String>,
    /// Only clients in this address or prefix, e.g. `198.18.0.0/15` (repeatable).
    #[arg(long)]
    client: Vec<String>,
    /// Only records at or after this eventTimestamp (Unix ms).
    #[arg(long)]
    since_ms: Option<u64>,
    /// `table` or `json` (JSON lines with every field).
    #[arg(long, default_value = "table")]
    output: String,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// CA certificate (PEM) to verify a TLS collector.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for a mutual-TLS collector.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Server name to verify (default: the host of --server).
    #[arg(long)]
    domain: Option<String>,
}

pub(crate) async fn run(args: ObserveArgs) -> Result<()> {
    let json = match args.output.as_str() {
        "json" => true,
        "table" => false,
        other => anyhow::bail!("--output {other:?}: expected table or json"),
    };
    let mut endpoint = Endpoint::from_shared(args.server.clone())
        .with_context(|| format!("--server {:?}", args.server))?;
    if args.ca.is_some() || args.cert.is_some() {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &args.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(domain) = &args.domain {
            tls = tls.domain_name(domain.clone());
        }
        endpoint = endpoint.tls_config(tls).context("configuring TLS")?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
    let mut client = CollectorClient::new(channel);
    let request = ObserveRequest {
        statuses: args.status,
        distribution_ids: args.distribution,
        client_addresses: args.client,
        since_ms: args.since_ms,
    };
    let mut stream = client
        .observe(request)
        .await
        .map_err(|s| anyhow::anyhow!("observe refused: {}", s.message()))?
        .into_inner();
    let encoder = Encoder::new(Format::Json, Field::ALL.to_vec(), "\t".into());
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(out, "{}", table_header())?;
    }
    let mut seen = 0u64;
    while let Some(record) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("stream ended: {}", s.message()))?
    {
        if json {
            let mut line = Vec::new();
            encoder.encode([&record], &mut line);
            out.write_all(&line)?;
        } else {
            writeln!(out, "{}", table_row(&record))?;
        }
        out.flush()?;
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    Ok(())
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

const COLUMNS: [(Field, usize); 7] = [
    (Field::EventTimestamp, 24),
    (Field::ConnectionStatus, 34),
    (Field::ClientIp, 22),
    (Field::DistributionId, 16),
    (Field::TlsSni, 18),
    (Field::TlsProtocol, 8),
    (Field::ClientLeafCertSubject, 0),
];

fn table_header() -> String {
    let names = [
        "TIME",
        "STATUS",
        "CLIENT",
        "DISTRIBUTION",
        "SNI",
        "TLS",
        "SUBJECT",
    ];
    COLUMNS
        .iter()
        .zip(names)
        .map(|((_, w), n)| format!("{n:<w$}"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end()
        .to_owned()
}

fn table_row(r: &connlog_proto::v1::ConnectionRecord) -> String {
    COLUMNS
        .iter()
        .map(|(field, width)| {
            let text = match (field, field.value(r)) {
                (Field::EventTimestamp, FieldValue::UInt(ms)) => {
                    let secs = i64::try_from(ms / 1000).unwrap_or(0);
                    let iso = connlog_proto::format_rfc3339_s(secs);
                    format!("{}.{:03}Z", iso.trim_end_matches('Z'), ms % 1000)
                }
                (Field::ClientIp, _) => format!("{}:{}", r.client_ip, r.client_port),
                (_, FieldValue::Absent) => "-".to_owned(),
                (_, FieldValue::UInt(n)) => n.to_string(),
                (_, FieldValue::Text(b)) => String::from_utf8_lossy(&b)
                    .chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect(),
            };
            format!("{text:<width$}")
        })
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end()
        .to_owned()
}
