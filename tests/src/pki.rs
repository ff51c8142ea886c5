//! A test PKI generated with rcgen: roots, intermediates, leaves with
//! exactly the fields a test asserts on, CRLs, and files for the agent.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SanType, SerialNumber, date_time_ymd,
};

/// A certificate authority that can issue intermediates, leaves and CRLs.
pub struct Ca {
    params: CertificateParams,
    pub key: KeyPair,
    /// DER of this CA's certificate.
    pub der: Vec<u8>,
    /// Intermediates a leaf issued by this CA presents, nearest first:
    /// empty for a root, this CA and its non-root parents otherwise.
    pub chain: Vec<Vec<u8>>,
}

/// A leaf certificate with its key.
pub struct Leaf {
    pub der: Vec<u8>,
    /// PKCS#8 DER of the private key.
    pub key_pkcs8: Vec<u8>,
    /// Intermediates to present after the leaf, nearest first.
    pub intermediates: Vec<Vec<u8>>,
}

/// What a leaf says. `Default` is a valid client certificate for
/// `client.test` (ECDSA P-256, clientAuth EKU, valid 2025–2125).
#[derive(Clone)]
pub struct LeafSpec {
    /// Subject RDNs in order.
    pub subject: Vec<(DnType, String)>,
    pub serial: Vec<u8>,
    pub not_before: (i32, u8, u8),
    pub not_after: (i32, u8, u8),
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub sans: Vec<SanType>,
    pub alg: &'static rcgen::SignatureAlgorithm,
    /// Extra non-critical extension payload size (to make a leaf large).
    pub padding: usize,
}

impl Default for LeafSpec {
    fn default() -> Self {
        Self {
            subject: vec![
                (DnType::CountryName, "US".into()),
                (DnType::OrganizationName, "Example".into()),
                (DnType::CommonName, "client.test".into()),
            ],
            serial: vec![0x8f, 0x12, 0x34],
            not_before: (2025, 6, 5),
            not_after: (2125, 5, 12),
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            sans: Vec::new(),
            alg: &rcgen::PKCS_ECDSA_P256_SHA256,
            padding: 0,
        }
    }
}

fn dn(pairs: &[(DnType, String)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (t, v) in pairs {
        dn.push(t.clone(), v.as_str());
    }
    dn
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(&[(DnType::CommonName, cn.to_string())]);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2200, 1, 1);
    p
}

impl Ca {
    /// A self-signed root with the given common name (P-256).
    pub fn root(cn: &str) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(cn);
        let der = params.self_signed(&key)?.der().to_vec();
        Ok(Self {
            params,
            key,
            der,
            chain: Vec::new(),
        })
    }

    /// An intermediate CA issued by this one.
    pub fn intermediate(&self, cn: &str) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(cn);
        let der = params.signed_by(&key, &self.issuer())?.der().to_vec();
        let mut chain = vec![der.clone()];
        chain.extend(self.chain.iter().cloned());
        Ok(Self {
            params,
            key,
            der,
            chain,
        })
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// A leaf issued by this CA.
    pub fn leaf(&self, spec: &LeafSpec) -> Result<Leaf> {
        let key = KeyPair::generate_for(spec.alg)?;
        let der = self.leaf_with_key(spec, &key)?;
        Ok(Leaf {
            der,
            key_pkcs8: key.serialize_der(),
            intermediates: self.chain.clone(),
        })
    }

    /// A leaf for an arbitrary public key (e.g. RSA-1024 made by openssl);
    /// returns the certificate DER only.
    pub fn leaf_with_key(&self, spec: &LeafSpec, key: &impl PublicKeyData) -> Result<Vec<u8>> {
        Ok(leaf_params(spec)?
            .signed_by(key, &self.issuer())?
            .der()
            .to_vec())
    }

    /// A CRL revoking `serials`, valid 2025–2200.
    pub fn crl(&self, serials: &[&[u8]]) -> Result<Vec<u8>> {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2025, 1, 1),
            next_update: date_time_ymd(2200, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: date_time_ymd(2025, 1, 2),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer())?.der().to_vec())
    }
}

fn leaf_params(spec: &LeafSpec) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(&spec.subject);
    p.serial_number = Some(SerialNumber::from_slice(&spec.serial));
    p.not_before = date_time_ymd(spec.not_before.0, spec.not_before.1, spec.not_before.2);
    p.not_after = date_time_ymd(spec.not_after.0, spec.not_after.1, spec.not_after.2);
    p.extended_key_usages = spec.eku.clone();
    p.subject_alt_names = spec.sans.clone();
    p.is_ca = IsCa::ExplicitNoCa;
    if spec.padding > 0 {
        let mut content = vec![0x04, 0x82];
        content.extend_from_slice(&u16::try_from(spec.padding)?.to_be_bytes());
        content.extend(std::iter::repeat_n(0x41, spec.padding));
        p.custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 55555, 1],
                content,
            ));
    }
    Ok(p)
}

/// A self-signed leaf (passthrough tests).
pub fn self_signed(spec: &LeafSpec) -> Result<Leaf> {
    let key = KeyPair::generate_for(spec.alg)?;
    let der = leaf_params(spec)?.self_signed(&key)?.der().to_vec();
    Ok(Leaf {
        der,
        key_pkcs8: key.serialize_der(),
        intermediates: Vec::new(),
    })
}

/// PEM text of DER items with the given label.
pub fn pem(label: &str, ders: &[&[u8]]) -> String {
    let mut out = String::new();
    for der in ders {
        out.push_str(&format!("-----BEGIN {label}-----\n"));
        let b64 = base64(der);
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
    }
    out
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes what an agent listener needs into `dir`: `server.pem` and
/// `server.key` (an `edge.test` server certificate issued by `root`) and
/// `ca.pem` (the root, as the client trust store). Returns the server leaf.
pub fn write_server_files(dir: &Path, root: &Ca) -> Result<Leaf> {
    let server = root.leaf(&LeafSpec {
        subject: vec![(DnType::CommonName, "edge.test".into())],
        eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
        sans: vec![SanType::DnsName("edge.test".try_into()?)],
        ..LeafSpec::default()
    })?;
    write(dir, "server.pem", &pem("CERTIFICATE", &[&server.der]))?;
    write(dir, "server.key", &pem("PRIVATE KEY", &[&server.key_pkcs8]))?;
    write(dir, "ca.pem", &pem("CERTIFICATE", &[&root.der]))?;
    Ok(server)
}

/// Writes `text` to `dir/name`, returning the path.
pub fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}
