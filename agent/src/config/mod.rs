//! The agent's configuration: TOML with `deny_unknown_fields`, parsed once
//! into validated types so the rest of the agent never re-checks.
//!
//! Each section lives in its own file, as a `Raw*` serde type and the
//! validated type built from it:
//! `[agent]` here, `[probe]` in `probe.rs`, `[[listener]]` in `listener.rs`,
//! `[export]` in `export.rs`, `[metrics]` in `metrics.rs`.

mod error;
mod export;
mod function;
mod listener;
mod metrics;
mod mtls;
mod probe;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use error::ConfigError;
pub use export::{ExportConfig, ExportProtocol, ExportTls};
pub use function::FunctionConfig;
pub use listener::{ListenerConfig, SniCertificate, Tenant};
pub use metrics::MetricsConfig;
pub use mtls::{AccessRules, KeyType, MtlsConfig, MtlsMode};
pub use probe::{BenchPrograms, ProbeConfig};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Names this edge host in records (`agentId`); defaults to the hostname.
    pub agent_id: String,
    pub probe: ProbeConfig,
    pub listeners: Vec<ListenerConfig>,
    pub export: ExportConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: RawAgent,
    #[serde(default)]
    probe: probe::RawProbe,
    #[serde(default, rename = "listener")]
    listeners: Vec<listener::RawListener>,
    #[serde(default)]
    export: export::RawExport,
    #[serde(default)]
    metrics: metrics::RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: Option<String>,
}

impl Config {
    /// Reads and validates the file at `path`. Relative paths inside the
    /// file are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &base).map_err(|err| err.in_file(path))
    }

    /// Parses TOML text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(ConfigError::Toml)?;
        let ctx = Ctx {
            base: base.to_path_buf(),
        };
        let listeners = raw
            .listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| l.validate(&ctx, i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            agent_id: raw.agent.id.unwrap_or_else(default_agent_id),
            probe: raw.probe.validate(&ctx)?,
            listeners,
            export: raw.export.validate(&ctx)?,
            metrics: raw.metrics.validate()?,
        })
    }
}

/// What validation needs to know about where the file is.
pub(crate) struct Ctx {
    base: PathBuf,
}

impl Ctx {
    /// Resolves a path from the file against the file's directory.
    pub(crate) fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }
}

fn default_agent_id() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = Config::parse("", Path::new("/")).unwrap();
        assert!(cfg.listeners.is_empty());
        assert!(!cfg.agent_id.is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[agent]\nidd = \"x\"\n", Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("idd"), "{err}");
    }
}
