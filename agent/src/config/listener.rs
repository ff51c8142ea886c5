//! `[[listener]]`: one mTLS listener ("distribution"), read and validated
//! for the TLS terminator; its `[listener.connection_function]` is read in
//! `config/function.rs`.
//!
//! ```toml
//! [[listener]]
//! distribution_id = "E2DX1SLDPK0123"
//! bind = ["198.18.0.1:443", "[fd00::1]:443"]
//! cert = "server.pem"             # chain, leaf first
//! key = "server.key"
//! upstream = "127.0.0.1:8080"     # optional: without it, accepted
//! proxy_protocol = "v2"           #   connections are closed after the verdict
//! handshake_timeout = "10s"
//! idle_timeout = "300s"
//!
//! [[listener.certificate]]        # per-SNI server certificates
//! sni = ["a.test", "*.b.test"]
//! cert = "a.pem"
//! key = "a.key"
//!
//! [[listener.tenant]]             # SNI → distributionTenantId
//! sni = ["*.tenant1.test"]
//! id = "dt_2te1Ura9X3R2iCGNjW123"
//!
//! [listener.mtls]
//! mode = "required"               # required | optional | passthrough
//! trust_store = "ca.pem"
//! max_chain_depth = 4
//! max_cert_size = 16384
//! advertise_ca_names = false
//! ignore_certificate_expiry = false
//! crl = ["ca.crl"]
//! key_types = ["rsa2048", "rsa3072", "rsa4096", "p256", "p384"]
//!
//! [listener.mtls.access]          # optional allow-lists, `*.` wildcards
//! subject_cn = ["client.test"]
//! dns_san = ["*.clients.test"]
//! uri_san = ["spiffe://edge/client"]
//! ```
//!
//! Only the syntax is checked here; the files are read (and checked:
//! readable, a CA in the trust store, key matching its certificate) by the
//! terminator before anything listens, and again on every reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::duration;
use super::function::{FunctionConfig, RawConnectionFunction};
use super::mtls::{MtlsConfig, RawMtls};
use super::{ConfigError, Ctx};

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// `listener[<index>]`, the prefix of every key named in errors.
    pub key_prefix: String,
    pub distribution_id: String,
    pub bind: Vec<SocketAddr>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub certificates: Vec<SniCertificate>,
    pub tenants: Vec<Tenant>,
    pub upstream: Option<String>,
    pub proxy_protocol: bool,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub mtls: MtlsConfig,
    pub connection_function: Option<FunctionConfig>,
}

/// A server certificate for some SNI names.
#[derive(Debug, Clone)]
pub struct SniCertificate {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub names: Vec<String>,
    pub id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    distribution_id: String,
    bind: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    certificate: Vec<RawSniCertificate>,
    #[serde(default)]
    tenant: Vec<RawTenant>,
    upstream: Option<String>,
    proxy_protocol: Option<String>,
    handshake_timeout: Option<String>,
    idle_timeout: Option<String>,
    mtls: RawMtls,
    connection_function: Option<RawConnectionFunction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSniCertificate {
    sni: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    sni: Vec<String>,
    id: String,
}

impl RawListener {
    pub(super) fn validate(self, ctx: &Ctx, index: usize) -> Result<ListenerConfig, ConfigError> {
        let prefix = format!("listener[{index}]");
        let key = |k: &str| format!("{prefix}.{k}");
        if self.distribution_id.is_empty() {
            return Err(ConfigError::invalid(
                key("distribution_id"),
                "must not be empty",
            ));
        }
        if self.bind.is_empty() {
            return Err(ConfigError::invalid(
                key("bind"),
                "needs at least one address",
            ));
        }
        let bind = self
            .bind
            .iter()
            .map(|b| {
                b.parse::<SocketAddr>().map_err(|e| {
                    ConfigError::invalid(key("bind"), format!("{b:?}: {e} (expected ip:port)"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let proxy_protocol = match self.proxy_protocol.as_deref() {
            None => false,
            Some("v2") => true,
            Some(other) => {
                return Err(ConfigError::invalid(
                    key("proxy_protocol"),
                    format!("{other:?}: only \"v2\" is supported"),
                ));
            }
        };
        if proxy_protocol && self.upstream.is_none() {
            return Err(ConfigError::invalid(
                key("proxy_protocol"),
                "needs `upstream`",
            ));
        }
        if let Some(up) = self.upstream.as_ref().filter(|up| !up.contains(':')) {
            return Err(ConfigError::invalid(
                key("upstream"),
                format!("{up:?}: expected host:port"),
            ));
        }
        let handshake_timeout =
            duration(self.handshake_timeout.as_deref(), &key("handshake_timeout"))?
                .unwrap_or(Duration::from_secs(10));
        let idle_timeout = duration(self.idle_timeout.as_deref(), &key("idle_timeout"))?
            .unwrap_or(Duration::from_secs(300));
        let certificates = self
            .certificate
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                names(&c.sni, &key(&format!("certificate[{i}].sni")))?;
                Ok(SniCertificate {
                    names: c.sni.iter().map(|n| n.to_ascii_lowercase()).collect(),
                    cert: ctx.path(&c.cert),
                    key: ctx.path(&c.key),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let tenants = self
            .tenant
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                names(&t.sni, &key(&format!("tenant[{i}].sni")))?;
                if t.id.is_empty() {
                    return Err(ConfigError::invalid(
                        key(&format!("tenant[{i}].id")),
                        "must not be empty",
                    ));
                }
                Ok(Tenant {
                    names: t.sni.iter().map(|n| n.to_ascii_lowercase()).collect(),
                    id: t.id,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let mtls = self.mtls.validate(ctx, &key("mtls"))?;
        let connection_function = (self.connection_function)
            .map(|f| f.validate(ctx, &key("connection_function")))
            .transpose()?;
        Ok(ListenerConfig {
            key_prefix: prefix,
            distribution_id: self.distribution_id,
            bind,
            cert: ctx.path(&self.cert),
            key: ctx.path(&self.key),
            certificates,
            tenants,
            upstream: self.upstream,
            proxy_protocol,
            handshake_timeout,
            idle_timeout,
            mtls,
            connection_function,
        })
    }
}

fn names(list: &[String], key: &str) -> Result<(), ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::invalid(key, "needs at least one name"));
    }
    for n in list {
        let bare = n.strip_prefix("*.").unwrap_or(n);
        if bare.is_empty() || bare.contains('*') {
            return Err(ConfigError::invalid(
                key,
                format!("{n:?}: not a name or `*.` wildcard"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    use super::*;

    const MINIMAL: &str = r#"
[[listener]]
distribution_id = "E1"
bind = ["198.18.0.1:443", "[fd00::1]:443"]
cert = "s.pem"
key = "s.key"
[listener.mtls]
mode = "required"
trust_store = "/abs/ca.pem"
"#;

    #[test]
    fn minimal_listener_gets_defaults_and_resolved_paths() {
        let cfg = Config::parse(MINIMAL, Path::new("/etc/connlog")).unwrap();
        let l = &cfg.listeners[0];
        assert_eq!(l.cert, Path::new("/etc/connlog/s.pem"));
        assert_eq!(
            l.mtls.trust_store.as_deref(),
            Some(Path::new("/abs/ca.pem"))
        );
        assert_eq!(l.mtls.max_chain_depth, 4);
        assert_eq!(l.mtls.max_cert_size, 16384);
        assert_eq!(l.mtls.key_types, super::super::mtls::DEFAULT_KEY_TYPES);
        assert_eq!(l.handshake_timeout, Duration::from_secs(10));
        assert_eq!(l.bind.len(), 2);
        assert!(!l.proxy_protocol);
    }

    #[test]
    fn unknown_key_in_mtls_is_named() {
        let text = MINIMAL.replace("mode = \"required\"", "mode = \"required\"\nmax_depth = 3");
        let err = Config::parse(&text, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_depth"), "{err}");
    }

    #[test]
    fn missing_trust_store_is_named() {
        let text = MINIMAL.replace("trust_store = \"/abs/ca.pem\"", "");
        let err = Config::parse(&text, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "listener[0].mtls.trust_store: required unless mode = \"passthrough\""
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (from, to, expected) in [
            (
                "bind = [\"198.18.0.1:443\", \"[fd00::1]:443\"]",
                "bind = [\"nope\"]",
                "listener[0].bind",
            ),
            (
                "key = \"s.key\"",
                "key = \"s.key\"\nhandshake_timeout = \"10x\"",
                "listener[0].handshake_timeout",
            ),
            (
                "key = \"s.key\"",
                "key = \"s.key\"\nproxy_protocol = \"v2\"",
                "listener[0].proxy_protocol",
            ),
            ("mode = \"required\"", "mode = \"sometimes\"", "sometimes"),
        ] {
            let err = Config::parse(&MINIMAL.replace(from, to), Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn access_rules_without_an_entry_are_refused() {
        let text = format!("{MINIMAL}[listener.mtls.access]\n");
        let err = Config::parse(&text, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("listener[0].mtls.access: no subject_cn, dns_san or uri_san entry"),
            "{err}"
        );
        let text = format!("{MINIMAL}[listener.mtls.access]\nuri_san = [\"spiffe://a/b\"]\n");
        assert!(Config::parse(&text, Path::new("/")).is_ok());
    }
}
