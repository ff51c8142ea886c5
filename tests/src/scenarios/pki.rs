//! The scenarios' PKI: one trusted root, one stranger, and a client
//! certificate for every certificate status.

use std::path::Path;

use crate::pki::{self, Ca, Leaf, LeafSpec};
use anyhow::Result;
use rcgen::{DnType, ExtendedKeyUsagePurpose};

/// Serial the CRL revokes (`ClientCertRejected`).
pub const CRL_REVOKED_SERIAL: [u8; 2] = [0x66, 0x01];
/// Serial the connection function's KVS lists (`ConnectionFunctionDenied`).
pub const KVS_REVOKED_SERIAL: [u8; 2] = [0x0b, 0xad];
/// The same serial as SPEC.md writes it (the function sees this form).
pub const KVS_REVOKED_SERIAL_TEXT: &str = "0b:ad";
/// Common name the connection function throws on (`ConnectionFunctionError`).
pub const FUNCTION_THROWS_CN: &str = "boom.client.test";

/// Client certificates, one per status.
pub struct Clients {
    pub good: Leaf,
    pub untrusted: Leaf,
    pub expired: Leaf,
    pub not_yet_valid: Leaf,
    pub server_auth_only: Leaf,
    pub ed25519: Leaf,
    pub bad_signature: Leaf,
    pub too_deep: Leaf,
    pub too_big: Leaf,
    pub crl_revoked: Leaf,
    pub kvs_revoked: Leaf,
    pub function_throws: Leaf,
}

/// Writes `server.pem`, `server.key`, `ca.pem`, `root.crl` into `dir` and
/// returns the client certificates.
pub fn write(dir: &Path) -> Result<Clients> {
    let root = Ca::root("connlog scenarios root")?;
    pki::write_server_files(dir, &root)?;
    let crl = root.crl(&[&CRL_REVOKED_SERIAL])?;
    pki::write(dir, "root.crl", &pki::pem("X509 CRL", &[&crl]))?;

    let client = |cn: &str, serial: &[u8]| LeafSpec {
        subject: vec![
            (DnType::CountryName, "US".into()),
            (DnType::OrganizationName, "Example".into()),
            (DnType::CommonName, cn.into()),
        ],
        serial: serial.to_vec(),
        ..LeafSpec::default()
    };
    let stranger = Ca::root("stranger root")?;
    let deep = root
        .intermediate("int 1")?
        .intermediate("int 2")?
        .intermediate("int 3")?
        .intermediate("int 4")?;
    let mut bad_signature = root.leaf(&client("forged.client.test", &[0x11]))?;
    // The last byte lies inside the signature: the certificate still parses.
    if let Some(last) = bad_signature.der.last_mut() {
        *last ^= 0x01;
    }
    Ok(Clients {
        good: root.leaf(&client("client.test", &[0x8f, 0x12, 0x34]))?,
        untrusted: stranger.leaf(&client("stranger.client.test", &[0x21]))?,
        expired: root.leaf(&LeafSpec {
            not_before: (2020, 1, 1),
            not_after: (2021, 1, 1),
            ..client("expired.client.test", &[0x31])
        })?,
        not_yet_valid: root.leaf(&LeafSpec {
            not_before: (2199, 1, 1),
            not_after: (2199, 6, 1),
            ..client("future.client.test", &[0x32])
        })?,
        server_auth_only: root.leaf(&LeafSpec {
            eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
            ..client("server-eku.client.test", &[0x41])
        })?,
        ed25519: root.leaf(&LeafSpec {
            alg: &rcgen::PKCS_ED25519,
            ..client("ed25519.client.test", &[0x51])
        })?,
        bad_signature,
        too_deep: deep.leaf(&client("deep.client.test", &[0x61]))?,
        too_big: root.leaf(&LeafSpec {
            padding: 17_000,
            ..client("big.client.test", &[0x71])
        })?,
        crl_revoked: root.leaf(&client("revoked.client.test", &CRL_REVOKED_SERIAL))?,
        kvs_revoked: root.leaf(&client("kvs.client.test", &KVS_REVOKED_SERIAL))?,
        function_throws: root.leaf(&client(FUNCTION_THROWS_CN, &[0x81]))?,
    })
}
