//! Where records go: any number of sinks at once (files, OTLP, stdout).

mod file;
mod finalise;
mod otlp;
pub(crate) mod path;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use connlog_proto::v1::ConnectionRecord;

use crate::config::SinkConfig;
use crate::encoded::Ahead;
use crate::format::Encoder;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    #[error("{sink}: {path}: {source}")]
    Io {
        sink: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{sink}: writing parquet {path}: {message}")]
    Parquet {
        sink: String,
        path: PathBuf,
        message: String,
    },
    #[error("{sink}: {message}")]
    Forward { sink: String, message: String },
}

pub(crate) enum Sink {
    File(file::FileSink),
    Stdout(Encoder),
    Otlp(otlp::OtlpSink),
}

impl Sink {
    pub(crate) fn new(cfg: SinkConfig, index: usize, rt: &tokio::runtime::Handle) -> Self {
        match cfg {
            SinkConfig::File(f) => Sink::File(file::FileSink::new(f)),
            SinkConfig::Stdout(e) => Sink::Stdout(e),
            SinkConfig::Otlp { endpoint } => {
                Sink::Otlp(otlp::OtlpSink::new(index, endpoint, rt.clone()))
            }
        }
    }

    /// Writes `records` (a file sink takes their bytes from `ahead` when
    /// the batch was encoded already); on error nothing of them counts as
    /// written.
    pub(crate) fn write(
        &mut self,
        records: &[&ConnectionRecord],
        ahead: Option<Ahead<'_>>,
    ) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        match self {
            Sink::File(f) => f.write(records, ahead),
            Sink::Stdout(encoder) => {
                let mut out = Vec::new();
                encoder.encode(records.iter().copied(), &mut out);
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(&out)
                    .and_then(|()| stdout.flush())
                    .map_err(|source| SinkError::Io {
                        sink: "stdout".into(),
                        path: PathBuf::from("-"),
                        source,
                    })
            }
            Sink::Otlp(o) => o.write(records),
        }
    }

    pub(crate) fn tick(&mut self, now: Instant) {
        if let Sink::File(f) = self {
            f.tick(now);
        }
    }

    pub(crate) fn close(&mut self) {
        if let Sink::File(f) = self {
            f.close_all();
        }
    }

    /// Finalises files a previous run left behind; returns how many.
    pub(crate) fn recover(&mut self) -> usize {
        match self {
            Sink::File(f) => f.recover(),
            _ => 0,
        }
    }
}
