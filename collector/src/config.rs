//! `collector.toml`: serde with `deny_unknown_fields`, validated once into
//! the types the server and sinks use. Every error names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use connlog_proto::Field;
use serde::Deserialize;

use crate::format::{Encoder, Format};
use crate::sink::path::PathTemplate;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) max_message_bytes: usize,
    pub(crate) max_batch_records: usize,
    pub(crate) dedup_window: Duration,
    pub(crate) dedup_max_ids: usize,
    /// Where the dedup window survives restarts: `[dedup] journal`, by
    /// default `.connlog-dedup.journal` in the first file sink's directory;
    /// none without a file sink.
    pub(crate) dedup_journal: Option<PathBuf>,
    pub(crate) sinks: Vec<SinkConfig>,
}

#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// Set: mutual TLS, only agents whose certificate chains to it.
    pub(crate) client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) enum SinkConfig {
    File(FileSinkConfig),
    Stdout(Encoder),
    Otlp { endpoint: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fsync {
    /// fsync every file a batch touched before acknowledging it.
    Batch,
    /// Hand data to the kernel before acknowledging; fsync on finalise.
    Never,
}

#[derive(Debug, Clone)]
pub(crate) struct FileSinkConfig {
    pub(crate) index: usize,
    pub(crate) encoder: Encoder,
    pub(crate) dir: PathBuf,
    pub(crate) template: PathTemplate,
    pub(crate) gzip: bool,
    pub(crate) rotate_bytes: u64,
    pub(crate) idle_close: Duration,
    pub(crate) fsync: Fsync,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    dedup: RawDedup,
    #[serde(default, rename = "sink")]
    sinks: Vec<RawSink>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_message_bytes: Option<usize>,
    max_batch_records: Option<usize>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    window_secs: Option<u64>,
    max_ids: Option<usize>,
    journal: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum RawSink {
    File(RawFileSink),
    Stdout(RawStdoutSink),
    Otlp(RawOtlpSink),
}

/// `path` when `hive = true` and no template is given.
const HIVE_DEFAULT_PATH: &str = "{DistributionId}/{yyyy}/{MM}/{dd}/{HH}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSink {
    format: String,
    dir: PathBuf,
    #[serde(default)]
    path: String,
    #[serde(default)]
    hive: bool,
    fields: Option<Vec<String>>,
    delimiter: Option<String>,
    #[serde(default)]
    gzip: bool,
    rotate_bytes: Option<u64>,
    idle_close_secs: Option<u64>,
    fsync: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStdoutSink {
    format: Option<String>,
    fields: Option<Vec<String>>,
    delimiter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlpSink {
    endpoint: String,
}

/// An error about one key, before the file name is attached.
struct KeyError {
    key: String,
    reason: String,
}

fn bad(key: impl Into<String>, reason: impl Into<String>) -> KeyError {
    KeyError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl Config {
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| match e {
            ParseError::Toml(message) => ConfigError::Toml {
                path: path.to_path_buf(),
                message,
            },
            ParseError::Key(k) => ConfigError::Invalid {
                path: path.to_path_buf(),
                key: k.key,
                reason: k.reason,
            },
        })
    }

    fn parse(text: &str, base: &Path) -> Result<Self, ParseError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ParseError::Toml(e.to_string().trim().to_owned()))?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let listen = raw.server.listen.as_deref().unwrap_or("127.0.0.1:4317");
        let listen = listen
            .parse()
            .map_err(|e| bad("server.listen", format!("{listen:?}: {e}")))?;
        let tls = raw.server.tls.map(|t| TlsFiles {
            cert: resolve(t.cert),
            key: resolve(t.key),
            client_ca: t.client_ca.map(resolve),
        });
        let max_message_bytes = raw.server.max_message_bytes.unwrap_or(16 << 20);
        if max_message_bytes < 1024 {
            return Err(bad("server.max_message_bytes", "must be at least 1024").into());
        }
        let max_batch_records = raw.server.max_batch_records.unwrap_or(100_000);
        if max_batch_records == 0 {
            return Err(bad("server.max_batch_records", "must be at least 1").into());
        }
        let mut sinks = Vec::new();
        for (index, sink) in raw.sinks.into_iter().enumerate() {
            sinks.push(sink.validate(index, &resolve)?);
        }
        if sinks.is_empty() {
            return Err(bad("sink", "at least one [[sink]] is needed").into());
        }
        let dedup_journal = raw.dedup.journal.map(&resolve).or_else(|| {
            sinks.iter().find_map(|s| match s {
                SinkConfig::File(f) => Some(f.dir.join(".connlog-dedup.journal")),
                _ => None,
            })
        });
        Ok(Config {
            listen,
            tls,
            max_message_bytes,
            max_batch_records,
            dedup_window: Duration::from_secs(raw.dedup.window_secs.unwrap_or(600)),
            dedup_max_ids: raw.dedup.max_ids.unwrap_or(2_000_000),
            dedup_journal,
            sinks,
        })
    }
}

enum ParseError {
    Toml(String),
    Key(KeyError),
}

impl From<KeyError> for ParseError {
    fn from(k: KeyError) -> Self {
        Self::Key(k)
    }
}

impl RawSink {
    fn validate(
        self,
        index: usize,
        resolve: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Result<SinkConfig, KeyError> {
        let key = |k: &str| format!("sink[{index}].{k}");
        match self {
            RawSink::File(f) => {
                let format = parse_format(&key("format"), &f.format)?;
                if f.gzip && format == Format::Parquet {
                    return Err(bad(key("gzip"), "applies to the text formats only"));
                }
                let encoder = encoder(&key, format, f.fields, f.delimiter)?;
                // Hive style names the partition directories; with no
                // template of its own it partitions the usual way.
                let path = if f.hive && f.path.is_empty() {
                    HIVE_DEFAULT_PATH
                } else {
                    &f.path
                };
                let template =
                    PathTemplate::parse(path, f.hive).map_err(|reason| bad(key("path"), reason))?;
                let fsync = match f.fsync.as_deref().unwrap_or("batch") {
                    "batch" => Fsync::Batch,
                    "never" => Fsync::Never,
                    other => {
                        return Err(bad(
                            key("fsync"),
                            format!("{other:?}: expected \"batch\" or \"never\""),
                        ));
                    }
                };
                let rotate_bytes = f.rotate_bytes.unwrap_or(128 << 20);
                if rotate_bytes == 0 {
                    return Err(bad(key("rotate_bytes"), "must be at least 1"));
                }
                Ok(SinkConfig::File(FileSinkConfig {
                    index,
                    encoder,
                    dir: resolve(f.dir),
                    template,
                    gzip: f.gzip,
                    rotate_bytes,
                    idle_close: Duration::from_secs(f.idle_close_secs.unwrap_or(60)),
                    fsync,
                }))
            }
            RawSink::Stdout(s) => {
                let format = parse_format(&key("format"), s.format.as_deref().unwrap_or("json"))?;
                if format == Format::Parquet {
                    return Err(bad(key("format"), "parquet cannot go to stdout"));
                }
                Ok(SinkConfig::Stdout(encoder(
                    &key,
                    format,
                    s.fields,
                    s.delimiter,
                )?))
            }
            RawSink::Otlp(o) => {
                if !(o.endpoint.starts_with("http://") || o.endpoint.starts_with("https://")) {
                    return Err(bad(key("endpoint"), "must start with http:// or https://"));
                }
                Ok(SinkConfig::Otlp {
                    endpoint: o.endpoint,
                })
            }
        }
    }
}

fn parse_format(key: &str, name: &str) -> Result<Format, KeyError> {
    Format::parse(name).ok_or_else(|| {
        bad(
            key,
            format!("unknown format {name:?}: expected json, plain, w3c, raw or parquet"),
        )
    })
}

fn encoder(
    key: &dyn Fn(&str) -> String,
    format: Format,
    fields: Option<Vec<String>>,
    delimiter: Option<String>,
) -> Result<Encoder, KeyError> {
    let fields = match fields {
        None => Field::cloudfront().to_vec(),
        Some(names) if names.is_empty() => return Err(bad(key("fields"), "must not be empty")),
        Some(names) => names
            .iter()
            .map(|n| {
                Field::from_name(n)
                    .ok_or_else(|| bad(key("fields"), format!("unknown field {n:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let delimiter = delimiter.unwrap_or_else(|| "\t".to_owned());
    let chars = delimiter.chars().count();
    if !(1..=5).contains(&chars) {
        return Err(bad(
            key("delimiter"),
            format!("{delimiter:?}: must be 1 to 5 characters"),
        ));
    }
    if delimiter
        .chars()
        .any(|c| c == '\n' || c == '\r' || c == '%')
    {
        return Err(bad(
            key("delimiter"),
            "must not contain a line break or `%`",
        ));
    }
    Ok(Encoder::new(format, fields, delimiter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/connlog")).map_err(|e| match e {
            ParseError::Toml(m) => m,
            ParseError::Key(k) => format!("{}: {}", k.key, k.reason),
        })
    }

    const SINK: &str = "[[sink]]\ntype = \"file\"\nformat = \"json\"\ndir = \"out\"\n";

    #[test]
    fn minimal_file_sink_gets_defaults() {
        let cfg = parse(SINK).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:4317".parse().unwrap());
        let SinkConfig::File(f) = &cfg.sinks[0] else {
            panic!("file sink expected")
        };
        assert_eq!(f.dir, Path::new("/etc/connlog/out"));
        assert_eq!(f.encoder.fields, Field::cloudfront());
        assert_eq!(f.fsync, Fsync::Batch);
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse(&format!("{SINK}fields = [\"clientIp\", \"nope\"]\n")).unwrap_err();
        assert_eq!(err, "sink[0].fields: unknown field \"nope\"");
        let err = parse(&format!("{SINK}delimiter = \"abcdef\"\n")).unwrap_err();
        assert_eq!(
            err,
            "sink[0].delimiter: \"abcdef\": must be 1 to 5 characters"
        );
        let err = parse(&format!("{SINK}delimiter = \"\"\n")).unwrap_err();
        assert!(err.starts_with("sink[0].delimiter"), "{err}");
        let err = parse(&format!("{SINK}path = \"{{yyyy}}/{{bogus}}\"\n")).unwrap_err();
        assert!(
            err.starts_with("sink[0].path: unknown placeholder {bogus}"),
            "{err}"
        );
        let err = parse(&format!("{SINK}colour = 1\n")).unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(err.starts_with("server.listen: \"nowhere\""), "{err}");
        let err = parse("").unwrap_err();
        assert_eq!(err, "sink: at least one [[sink]] is needed");
        let err = parse("[[sink]]\ntype = \"file\"\nformat = \"xml\"\ndir = \"d\"\n").unwrap_err();
        assert!(
            err.starts_with("sink[0].format: unknown format \"xml\""),
            "{err}"
        );
    }

    #[test]
    fn hive_without_a_path_partitions_by_distribution_and_hour() {
        let cfg = parse(&format!("{SINK}hive = true\n")).unwrap();
        let SinkConfig::File(f) = &cfg.sinks[0] else {
            panic!("file sink expected")
        };
        let partition = crate::sink::path::Partition::of("E2DX1SLDPK0123", 1_795_763_700_000);
        assert_eq!(
            f.template.dir(Path::new("/data"), &partition),
            Path::new("/data/DistributionId=E2DX1SLDPK0123/year=2026/month=11/day=27/hour=07")
        );
    }

    #[test]
    fn multi_char_delimiter_is_accepted() {
        let cfg = parse(&format!("{SINK}delimiter = \"||\"\n")).unwrap();
        assert_eq!(cfg.sinks.len(), 1);
    }
}
