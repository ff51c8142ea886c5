//! `[listener.mtls]`: the client-certificate trust policy of a listener
//! (SPEC.md section 3). See `listener.rs` for the whole listener example.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Ctx};

/// `required`: a valid certificate is needed; `optional`: validated when
/// presented; `passthrough`: only proof of possession, no trust store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    Required,
    Optional,
    Passthrough,
}

/// A client key type the policy accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    P256,
    P384,
}

#[derive(Debug, Clone)]
pub struct MtlsConfig {
    pub mode: MtlsMode,
    /// Required unless `mode = "passthrough"`.
    pub trust_store: Option<PathBuf>,
    pub max_chain_depth: usize,
    pub max_cert_size: usize,
    pub advertise_ca_names: bool,
    pub ignore_certificate_expiry: bool,
    pub crl: Vec<PathBuf>,
    pub key_types: Vec<KeyType>,
    pub access: Option<AccessRules>,
}

/// Allow-lists; a certificate passes when it matches any entry of any
/// configured list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRules {
    #[serde(default)]
    pub subject_cn: Vec<String>,
    #[serde(default)]
    pub dns_san: Vec<String>,
    #[serde(default)]
    pub uri_san: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMtls {
    mode: MtlsMode,
    trust_store: Option<PathBuf>,
    max_chain_depth: Option<usize>,
    max_cert_size: Option<usize>,
    #[serde(default)]
    advertise_ca_names: bool,
    #[serde(default)]
    ignore_certificate_expiry: bool,
    #[serde(default)]
    crl: Vec<PathBuf>,
    key_types: Option<Vec<KeyType>>,
    access: Option<AccessRules>,
}

pub(super) const DEFAULT_KEY_TYPES: [KeyType; 5] = [
    KeyType::Rsa2048,
    KeyType::Rsa3072,
    KeyType::Rsa4096,
    KeyType::P256,
    KeyType::P384,
];

impl RawMtls {
    pub(super) fn validate(self, ctx: &Ctx, prefix: &str) -> Result<MtlsConfig, ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if self.mode != MtlsMode::Passthrough && self.trust_store.is_none() {
            return Err(ConfigError::invalid(
                key("trust_store"),
                "required unless mode = \"passthrough\"",
            ));
        }
        let max_chain_depth = self.max_chain_depth.unwrap_or(4);
        if max_chain_depth == 0 {
            return Err(ConfigError::invalid(
                key("max_chain_depth"),
                "must be at least 1",
            ));
        }
        let max_cert_size = self.max_cert_size.unwrap_or(16384);
        if max_cert_size == 0 {
            return Err(ConfigError::invalid(
                key("max_cert_size"),
                "must be at least 1",
            ));
        }
        let key_types = self.key_types.unwrap_or_else(|| DEFAULT_KEY_TYPES.to_vec());
        if key_types.is_empty() {
            return Err(ConfigError::invalid(key("key_types"), "must not be empty"));
        }
        if let Some(access) = &self.access {
            if access.subject_cn.is_empty()
                && access.dns_san.is_empty()
                && access.uri_san.is_empty()
            {
                return Err(ConfigError::invalid(
                    key("access"),
                    "no subject_cn, dns_san or uri_san entry: it would refuse every certificate \
                     (leave the section out to allow every valid one)",
                ));
            }
            for (list, k) in [
                (&access.subject_cn, "access.subject_cn"),
                (&access.dns_san, "access.dns_san"),
                (&access.uri_san, "access.uri_san"),
            ] {
                if list.iter().any(String::is_empty) {
                    return Err(ConfigError::invalid(key(k), "empty entry"));
                }
            }
        }
        Ok(MtlsConfig {
            mode: self.mode,
            trust_store: self.trust_store.map(|p| ctx.path(&p)),
            max_chain_depth,
            max_cert_size,
            advertise_ca_names: self.advertise_ca_names,
            ignore_certificate_expiry: self.ignore_certificate_expiry,
            crl: self.crl.iter().map(|p| ctx.path(p)).collect(),
            key_types,
            access: self.access,
        })
    }
}
