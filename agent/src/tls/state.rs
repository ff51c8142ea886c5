//! One listener's loaded state: rustls config, policy, tenants, gate.
//! Replaced as a whole on reload; connections keep the state they were
//! accepted with.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;

use crate::config::{ConfigError, ListenerConfig};
use crate::policy::Policy;

use super::gate::{self, ConnectionGate};
use super::material::Material;
use super::sni::{self, CertResolver};

#[derive(Debug)]
pub(crate) struct ListenerState {
    pub(crate) server_config: Arc<ServerConfig>,
    pub(crate) tenants: Vec<(Vec<String>, String)>,
    pub(crate) gate: Option<Arc<dyn ConnectionGate>>,
    resolver: Arc<CertResolver>,
}

impl ListenerState {
    /// Reads every file of `cfg`; errors name the key and file.
    pub(crate) fn load(
        cfg: &ListenerConfig,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, ConfigError> {
        let material = Material::load(cfg, provider)?;
        let policy = Policy::new(
            cfg.mtls.clone(),
            material.roots,
            material.crls,
            provider.clone(),
        )
        .map_err(|e| ConfigError::invalid(format!("{}.mtls", cfg.key_prefix), e.to_string()))?;
        let resolver = Arc::new(CertResolver {
            default: material.default_cert,
            by_name: material.sni_certs,
        });
        let mut server_config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| ConfigError::invalid(cfg.key_prefix.clone(), e.to_string()))?
            .with_client_cert_verifier(Arc::new(policy))
            .with_cert_resolver(resolver.clone());
        // Every connection is a full handshake: its certificate is judged
        // (and logged) each time, by the trust store and CRLs in force.
        server_config.session_storage = Arc::new(NoServerSessionStorage {});
        server_config.send_tls13_tickets = 0;
        // The provider's suites are in our order (`negotiated::server_order`).
        server_config.ignore_client_order = true;
        Ok(Self {
            server_config: Arc::new(server_config),
            tenants: cfg
                .tenants
                .iter()
                .map(|t| (t.names.clone(), t.id.clone()))
                .collect(),
            gate: gate::for_listener(cfg)?,
            resolver,
        })
    }

    /// Whether the certificate served for `sni` has an ECDSA key.
    pub(crate) fn server_key_ecdsa(&self, sni: Option<&str>) -> bool {
        let key = sni
            .and_then(|s| sni::lookup(&self.resolver.by_name, s))
            .unwrap_or(&self.resolver.default);
        key.key.algorithm() == rustls::SignatureAlgorithm::ECDSA
    }

    pub(crate) fn tenant(&self, sni: Option<&str>) -> Option<String> {
        sni.and_then(|s| sni::lookup(&self.tenants, s)).cloned()
    }
}
