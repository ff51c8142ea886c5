//! `[export]`: shipping records to a collector (native gRPC) or to any
//! OTLP/gRPC endpoint.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Ctx};

/// Which wire the exporter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportProtocol {
    /// connlog.v1 `Collector/Ship`: batches acknowledged once written.
    Grpc,
    /// OpenTelemetry `LogsService/Export` (SPEC.md section 6).
    Otlp,
}

/// TLS to the collector: `ca` verifies it; `cert` + `key` make it mutual.
#[derive(Debug, Clone)]
pub struct ExportTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub domain: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// `http://host:port` or `https://host:port`; `None`: records are only
    /// counted (no exporter configured).
    pub endpoint: Option<String>,
    pub protocol: ExportProtocol,
    pub tls: Option<ExportTls>,
    /// A batch is sent when it holds this many records …
    pub batch_max_records: usize,
    /// … or its oldest record is this old.
    pub batch_max_age: Duration,
    /// Batches sent and not yet acknowledged, per connection.
    pub max_in_flight: usize,
    /// Records kept in memory (queued + unacknowledged) before spilling to
    /// the spool, or dropping and counting.
    pub buffer_max_records: usize,
    pub buffer_max_bytes: usize,
    /// Optional disk queue for what does not fit in memory; also survives
    /// agent restarts.
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How long shutdown waits for the last acknowledgements.
    pub shutdown_deadline: Duration,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: ExportProtocol::Grpc,
            tls: None,
            batch_max_records: 1_000,
            batch_max_age: Duration::from_millis(200),
            max_in_flight: 32,
            buffer_max_records: 200_000,
            buffer_max_bytes: 128 << 20,
            spool_dir: None,
            spool_max_bytes: 1 << 30,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            shutdown_deadline: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExport {
    endpoint: Option<String>,
    protocol: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    domain: Option<String>,
    batch_max_records: Option<usize>,
    batch_max_age_ms: Option<u64>,
    max_in_flight: Option<usize>,
    buffer_max_records: Option<usize>,
    buffer_max_bytes: Option<usize>,
    spool_dir: Option<PathBuf>,
    spool_max_bytes: Option<u64>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    shutdown_deadline_ms: Option<u64>,
}

fn at_least<T: PartialOrd + Copy + std::fmt::Display>(
    key: &str,
    value: Option<T>,
    default: T,
    min: T,
) -> Result<T, ConfigError> {
    let v = value.unwrap_or(default);
    if v < min {
        return Err(ConfigError::invalid(
            format!("export.{key}"),
            format!("{v}: must be at least {min}"),
        ));
    }
    Ok(v)
}

impl RawExport {
    pub(super) fn validate(self, ctx: &Ctx) -> Result<ExportConfig, ConfigError> {
        let d = ExportConfig::default();
        let protocol = match self.protocol.as_deref().unwrap_or("grpc") {
            "grpc" => ExportProtocol::Grpc,
            "otlp" => ExportProtocol::Otlp,
            other => {
                return Err(ConfigError::invalid(
                    "export.protocol",
                    format!("{other:?}: expected \"grpc\" or \"otlp\""),
                ));
            }
        };
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "export.endpoint",
                format!("{e:?}: must start with http:// or https://"),
            ));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(ConfigError::invalid(
                "export.cert",
                "cert and key must be given together",
            ));
        }
        let https = self
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("https://"));
        let tls_keys = self.ca.is_some() || self.cert.is_some();
        if tls_keys && !https {
            return Err(ConfigError::invalid(
                "export.endpoint",
                "ca/cert/key need an https:// endpoint",
            ));
        }
        let file = |key: &str, p: Option<PathBuf>| -> Result<Option<PathBuf>, ConfigError> {
            let Some(p) = p else { return Ok(None) };
            let p = ctx.path(&p);
            if !p.is_file() {
                return Err(ConfigError::file(
                    format!("export.{key}"),
                    p,
                    "not a readable file",
                ));
            }
            Ok(Some(p))
        };
        let tls = if https {
            Some(ExportTls {
                ca: file("ca", self.ca)?,
                cert: file("cert", self.cert)?,
                key: file("key", self.key)?,
                domain: self.domain,
            })
        } else {
            None
        };
        let ms = Duration::from_millis;
        Ok(ExportConfig {
            endpoint: self.endpoint,
            protocol,
            tls,
            batch_max_records: at_least(
                "batch_max_records",
                self.batch_max_records,
                d.batch_max_records,
                1,
            )?,
            batch_max_age: ms(at_least("batch_max_age_ms", self.batch_max_age_ms, 200, 1)?),
            max_in_flight: at_least("max_in_flight", self.max_in_flight, d.max_in_flight, 1)?,
            buffer_max_records: at_least(
                "buffer_max_records",
                self.buffer_max_records,
                d.buffer_max_records,
                1,
            )?,
            buffer_max_bytes: at_least(
                "buffer_max_bytes",
                self.buffer_max_bytes,
                d.buffer_max_bytes,
                1024,
            )?,
            spool_dir: self.spool_dir.map(|p| ctx.path(&p)),
            spool_max_bytes: self.spool_max_bytes.unwrap_or(d.spool_max_bytes),
            backoff_initial: ms(at_least(
                "backoff_initial_ms",
                self.backoff_initial_ms,
                100,
                1,
            )?),
            backoff_max: ms(at_least("backoff_max_ms", self.backoff_max_ms, 5_000, 1)?),
            shutdown_deadline: ms(self.shutdown_deadline_ms.unwrap_or(5_000)),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<ExportConfig, String> {
        Config::parse(text, Path::new("/nonexistent"))
            .map(|c| c.export)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_values() {
        let e = parse("").unwrap();
        assert_eq!(e.endpoint, None);
        assert_eq!(e.protocol, ExportProtocol::Grpc);
        let e = parse(
            "[export]\nendpoint = \"http://127.0.0.1:4317\"\nprotocol = \"otlp\"\nbatch_max_age_ms = 50\n",
        )
        .unwrap();
        assert_eq!(e.protocol, ExportProtocol::Otlp);
        assert_eq!(e.batch_max_age, Duration::from_millis(50));
        assert!(e.tls.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            parse("[export]\nprotocol = \"kafka\"\n").unwrap_err(),
            "export.protocol: \"kafka\": expected \"grpc\" or \"otlp\""
        );
        assert_eq!(
            parse("[export]\nbatch_max_records = 0\n").unwrap_err(),
            "export.batch_max_records: 0: must be at least 1"
        );
        assert_eq!(
            parse("[export]\nendpoint = \"http://a:1\"\nca = \"ca.pem\"\n").unwrap_err(),
            "export.endpoint: ca/cert/key need an https:// endpoint"
        );
        assert!(
            parse("[export]\nendpoint = \"https://a:1\"\nca = \"ca.pem\"\n")
                .unwrap_err()
                .starts_with("export.ca: /nonexistent/ca.pem")
        );
        assert!(
            parse("[export]\nbogus = 1\n")
                .unwrap_err()
                .contains("bogus")
        );
    }
}
