//! Reading a listener's files: server certificates and keys, the trust
//! store, CRLs. Every problem is a [`ConfigError`] naming the key and the
//! file. Runs before anything listens, and again on every reload.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config::{ConfigError, ListenerConfig};

/// Everything a listener loads from files.
#[derive(Debug)]
pub(crate) struct Material {
    pub(crate) default_cert: Arc<CertifiedKey>,
    /// Per-SNI certificates: (lowercase names, possibly `*.`), in config order.
    pub(crate) sni_certs: Vec<(Vec<String>, Arc<CertifiedKey>)>,
    pub(crate) roots: RootCertStore,
    pub(crate) crls: Vec<CertificateRevocationListDer<'static>>,
}

impl Material {
    pub(crate) fn load(
        cfg: &ListenerConfig,
        provider: &CryptoProvider,
    ) -> Result<Self, ConfigError> {
        let p = &cfg.key_prefix;
        let default_cert = certified_key(
            &cfg.cert,
            &cfg.key,
            &format!("{p}.cert"),
            &format!("{p}.key"),
            provider,
        )?;
        let sni_certs = cfg
            .certificates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let key = certified_key(
                    &c.cert,
                    &c.key,
                    &format!("{p}.certificate[{i}].cert"),
                    &format!("{p}.certificate[{i}].key"),
                    provider,
                )?;
                Ok((c.names.clone(), key))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let roots = match &cfg.mtls.trust_store {
            Some(path) => trust_store(path, &format!("{p}.mtls.trust_store"))?,
            None => RootCertStore::empty(),
        };
        let mut crls = Vec::new();
        for path in &cfg.mtls.crl {
            crls.extend(crls_in(path, &format!("{p}.mtls.crl"))?);
        }
        Ok(Self {
            default_cert,
            sni_certs,
            roots,
            crls,
        })
    }
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::file(key, path.to_path_buf(), e))
}

fn certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read(path, key)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::file(
                key,
                path.to_path_buf(),
                format!("not a PEM certificate file: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::file(
            key,
            path.to_path_buf(),
            "no certificate in file",
        ));
    }
    Ok(certs)
}

fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    cert_key: &str,
    key_key: &str,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let chain = certs(cert_path, cert_key)?;
    let bytes = read(key_path, key_key)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        ConfigError::file(
            key_key,
            key_path.to_path_buf(),
            format!("no PEM private key: {e}"),
        )
    })?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        ConfigError::file(
            key_key,
            key_path.to_path_buf(),
            format!("unusable private key: {e}"),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        ConfigError::file(
            key_key,
            key_path.to_path_buf(),
            format!(
                "does not match the certificate in {} ({e})",
                cert_path.display()
            ),
        )
    })?;
    Ok(Arc::new(certified))
}

fn trust_store(path: &Path, key: &str) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path, key)? {
        // A CA: basicConstraints cA, or a self-issued (v1-style) root
        // without basicConstraints.
        let is_ca = x509_parser::parse_x509_certificate(&cert)
            .ok()
            .is_some_and(|(_, c)| match c.basic_constraints() {
                Ok(Some(bc)) => bc.value.ca,
                Ok(None) => c.subject().as_raw() == c.issuer().as_raw(),
                Err(_) => false,
            });
        if !is_ca {
            continue;
        }
        roots.add(cert).map_err(|e| {
            ConfigError::file(
                key,
                path.to_path_buf(),
                format!("unusable CA certificate: {e}"),
            )
        })?;
    }
    if roots.is_empty() {
        return Err(ConfigError::file(
            key,
            path.to_path_buf(),
            "no CA certificate in trust store",
        ));
    }
    Ok(roots)
}

/// Every CRL in the file: one DER CRL, or any number of PEM `X509 CRL`
/// blocks (a bundle), each of which must parse.
fn crls_in(
    path: &Path,
    key: &str,
) -> Result<Vec<CertificateRevocationListDer<'static>>, ConfigError> {
    let bytes = read(path, key)?;
    let error = |why: String| ConfigError::file(key, path.to_path_buf(), why);
    let crls = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(format!("not a PEM CRL: {e}")))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(error("no X509 CRL block in the PEM file".into()));
    }
    for (i, crl) in crls.iter().enumerate() {
        if x509_parser::parse_x509_crl(crl).is_err() {
            let which = if crls.len() == 1 {
                String::new()
            } else {
                format!(" (CRL {} of {})", i + 1, crls.len())
            };
            return Err(error(format!("not a valid CRL{which}")));
        }
    }
    Ok(crls)
}
