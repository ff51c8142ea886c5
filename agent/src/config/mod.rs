//! The agent's configuration: TOML with `deny_unknown_fields`, parsed once
//! into validated types so the rest of the agent never re-checks.
//!
//! Each section lives in its own file, as a `Raw*` serde type and the
//! validated type built from it:
//! `[agent]` here, `[probe]` in `probe.rs`, `[[listener]]` in `listener.rs`,
//! `[export]` in `export.rs`, `[metrics]` in `metrics.rs`.

mod duration;
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
        if raw.agent.id.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::invalid(
                "agent.id",
                "must not be empty (leave it out for the host name)",
            ));
        }
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

    /// The complete example of `docs/agent-config.md` (its first `toml`
    /// block) loads with the real parser and means what the page says.
    #[test]
    fn agent_config_doc_example_loads() {
        const DOC: &str = include_str!("../../../docs/agent-config.md");
        const FENCE: &str = "```toml\n";
        let start = DOC.find(FENCE).expect("a toml block") + FENCE.len();
        let len = DOC[start..].find("\n```").expect("the end of the block");
        let example = &DOC[start..=start + len];

        let dir = tempfile::tempdir().unwrap();
        let path = |p: &str| dir.path().join(p);
        // Parsing reads the connection function and its store and wants the
        // collector's CA to be a file; the listeners' certificates, keys,
        // trust stores and CRLs are read later, by the terminator.
        std::fs::create_dir_all(path("functions")).unwrap();
        std::fs::create_dir_all(path("tls")).unwrap();
        std::fs::write(
            path("functions/revocation.js"),
            "function connectionHandler(connection) { connection.allow(); }",
        )
        .unwrap();
        std::fs::write(path("functions/revoked.json"), r#"{"1a2b": "revoked"}"#).unwrap();
        std::fs::write(path("tls/collector-ca.pem"), "").unwrap();
        std::fs::write(path("agent.toml"), example).unwrap();
        let cfg = Config::load(&path("agent.toml"))
            .unwrap_or_else(|e| panic!("docs/agent-config.md example: {e}"));

        assert_eq!(cfg.agent_id, "edge-fra-01");
        let p = &cfg.probe;
        assert!(p.enabled);
        assert_eq!(
            p.interfaces,
            Some(vec!["eth0".to_string(), "lo".to_string()])
        );
        assert_eq!(p.ports, [8443]);
        // Commented out in the example: the kernel's give-up time.
        let retries = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_synack_retries")
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let give_up = retries.map_or(probe::KERNEL_GIVE_UP_FALLBACK, probe::synack_give_up);
        assert_eq!(p.syn_timeout, give_up);
        let d = ProbeConfig::default();
        assert_eq!(
            (p.ring_bytes, p.max_pending, p.channel_capacity, p.benchmark),
            (
                d.ring_bytes,
                d.max_pending,
                d.channel_capacity,
                BenchPrograms::None
            )
        );

        assert_eq!(cfg.listeners.len(), 2);
        let full = &cfg.listeners[0];
        assert_eq!(full.distribution_id, "E2DX1SLDPK0123");
        assert_eq!(
            full.bind,
            [
                "198.18.0.1:443".parse().unwrap(),
                "[fd00::1]:443".parse().unwrap()
            ]
        );
        assert_eq!(
            (full.cert.clone(), full.key.clone()),
            (path("tls/edge.pem"), path("tls/edge.key"))
        );
        assert_eq!(full.upstream.as_deref(), Some("127.0.0.1:8080"));
        assert!(full.proxy_protocol);
        assert_eq!(full.idle_timeout, std::time::Duration::from_secs(300));
        assert_eq!(full.certificates.len(), 1);
        assert_eq!(
            full.certificates[0].names,
            ["api.example.test", "*.api.example.test"]
        );
        assert_eq!(full.certificates[0].cert, path("tls/api.pem"));
        assert_eq!(full.tenants[0].names, ["*.tenant1.example.test"]);
        assert_eq!(full.tenants[0].id, "dt_2te1Ura9X3R2iCGNjW123");
        let m = &full.mtls;
        assert_eq!(m.mode, MtlsMode::Required);
        assert_eq!(m.trust_store, Some(path("tls/clients-ca.pem")));
        assert_eq!(m.crl, [path("tls/clients.crl")]);
        assert_eq!(m.key_types, mtls::DEFAULT_KEY_TYPES);
        let access = m.access.as_ref().expect("access rules");
        assert_eq!(access.dns_san, ["*.clients.example.test"]);
        let function = full.connection_function.as_ref().expect("a function");
        assert_eq!(function.file, path("functions/revocation.js"));
        assert_eq!(function.kvs, Some(path("functions/revoked.json")));

        // The second listener shows the defaults the page states.
        let plain = &cfg.listeners[1];
        assert_eq!(plain.upstream, None);
        assert!(!plain.proxy_protocol);
        assert_eq!(plain.handshake_timeout, std::time::Duration::from_secs(10));
        assert_eq!(plain.idle_timeout, std::time::Duration::from_secs(300));
        assert!(plain.certificates.is_empty() && plain.tenants.is_empty());
        assert_eq!(plain.mtls.mode, MtlsMode::Passthrough);
        assert_eq!(plain.mtls.trust_store, None);
        assert_eq!(
            (plain.mtls.max_chain_depth, plain.mtls.max_cert_size),
            (4, 16384)
        );
        assert!(!plain.mtls.advertise_ca_names && !plain.mtls.ignore_certificate_expiry);
        assert_eq!(plain.mtls.key_types, mtls::DEFAULT_KEY_TYPES);
        assert!(plain.mtls.access.is_none() && plain.connection_function.is_none());

        let tls = cfg.export.tls.as_ref().expect("https export");
        assert_eq!(tls.ca, Some(path("tls/collector-ca.pem")));
        // Absolute paths are kept.
        assert_eq!(
            cfg.export.spool_dir,
            Some(PathBuf::from("/var/lib/connlog/spool"))
        );
        assert_eq!(cfg.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn empty_agent_id_is_refused() {
        let err = Config::parse("[agent]\nid = \"\"\n", Path::new("/")).unwrap_err();
        assert!(
            err.to_string().starts_with("agent.id: must not be empty"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[agent]\nidd = \"x\"\n", Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("idd"), "{err}");
    }
}
