//! The policy's judgements, fresh and from its cache.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use super::*;
use crate::config::KeyType;

#[test]
fn der_name_wraps_content() {
    assert_eq!(der_name(&[1, 2]), vec![0x30, 2, 1, 2]);
    let long = vec![7u8; 300];
    let wrapped = der_name(&long);
    assert_eq!(&wrapped[..4], &[0x30, 0x82, 0x01, 0x2c]);
    assert_eq!(wrapped.len(), 304);
}

struct Pki {
    ca: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    stranger: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let ca = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let der = p.clone().self_signed(&key).unwrap().der().to_vec();
            (der, Issuer::new(p, key))
        };
        let (ca_der, issuer) = ca("policy test CA");
        let (_, stranger) = ca("unknown CA");
        Pki {
            ca: ca_der,
            issuer,
            stranger,
        }
    }

    /// A leaf valid from the start of `from` to the start of `to`.
    fn leaf(
        &self,
        by: &Issuer<'_, KeyPair>,
        from: i32,
        to: i32,
        eku: ExtendedKeyUsagePurpose,
    ) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["client.test".into()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "client");
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(to, 1, 1);
        p.extended_key_usages = vec![eku];
        p.signed_by(&key, by).unwrap().der().to_vec()
    }

    fn policy(&self) -> Policy {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.clone())).unwrap();
        let mtls = MtlsConfig {
            mode: MtlsMode::Required,
            trust_store: None,
            max_chain_depth: 4,
            max_cert_size: 16384,
            advertise_ca_names: false,
            ignore_certificate_expiry: false,
            crl: Vec::new(),
            key_types: vec![KeyType::P256],
            access: None,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Policy::new(mtls, roots, Vec::new(), provider).unwrap()
    }
}

fn at(year: i32) -> UnixTime {
    let secs = rcgen::date_time_ymd(year, 6, 1).unix_timestamp();
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs as u64))
}

#[test]
fn a_cached_judgement_equals_a_fresh_one_at_every_time() {
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    use FailureCode::*;
    let pki = Pki::new();
    let chains = [
        pki.leaf(&pki.issuer, 2024, 2027, ClientAuth),
        pki.leaf(&pki.stranger, 2024, 2027, ClientAuth),
        pki.leaf(&pki.issuer, 2024, 2027, ServerAuth),
    ];
    let years = [2023, 2025, 2026, 2028];
    // Per chain, per year: what SPEC.md's precedence gives.
    let expected = [
        [
            Some(ClientCertNotYetValid),
            None,
            None,
            Some(ClientCertExpired),
        ],
        [Some(ClientCertUntrusted); 4],
        [
            Some(ClientCertNotYetValid),
            Some(ClientCertIntentInvalid),
            Some(ClientCertIntentInvalid),
            Some(ClientCertExpired),
        ],
    ];
    let warm = pki.policy();
    for (chain, expected) in chains.iter().zip(expected) {
        // Seen first in 2025, so every later answer comes from the cache.
        warm.judge(&[chain], at(2025));
        for (year, expected) in years.into_iter().zip(expected) {
            let (code, leaf) = warm.judge(&[chain], at(year));
            let fresh = pki.policy().judge(&[chain], at(year));
            assert_eq!(code, expected, "year {year}");
            assert_eq!((code, leaf.clone()), fresh, "year {year}");
            let leaf = leaf.expect("the leaf parses");
            assert_eq!(leaf.subject, "CN=client");
            assert_eq!(leaf.sans, "DNS:client.test");
        }
    }
    assert_eq!(warm.judgements.len(), chains.len());
}

#[test]
fn a_path_with_no_valid_time_is_not_cached() {
    let pki = Pki::new();
    // The leaf's window does not overlap its intermediate's: webpki is
    // asked at the clock, so the answer is not the chain's alone.
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "intermediate");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let int_der = p
        .clone()
        .signed_by(&key, &pki.issuer)
        .unwrap()
        .der()
        .to_vec();
    let int = Issuer::new(p, key);
    let leaf = pki.leaf(&int, 2024, 2027, ExtendedKeyUsagePurpose::ClientAuth);
    let policy = pki.policy();
    let (code, _) = policy.judge(&[&leaf, &int_der], at(2025));
    assert_eq!(code, Some(FailureCode::ClientCertExpired));
    assert_eq!(policy.judgements.len(), 0);
}
