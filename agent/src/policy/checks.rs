//! Checks on the presented chain that rustls/webpki cannot tell apart:
//! chain depth, certificate size, key type, signature algorithms, unknown
//! critical extensions, extended key usage, validity at a given time.
//! Each returns the SPEC.md code it proves; the verifier takes the first by
//! precedence.

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

use crate::FailureCode;
use crate::config::KeyType;

const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";

/// Signature algorithms allowed in the path: RSA PKCS#1 and PSS with
/// SHA-2, ECDSA with SHA-256/384.
const ALLOWED_SIGNATURES: [&str; 6] = [
    "1.2.840.113549.1.1.11",
    "1.2.840.113549.1.1.12",
    "1.2.840.113549.1.1.13",
    "1.2.840.113549.1.1.10",
    "1.2.840.10045.4.3.2",
    "1.2.840.10045.4.3.3",
];

/// Any presented certificate larger than `max` bytes of DER.
pub(crate) fn size(chain: &[&[u8]], max: usize) -> Option<FailureCode> {
    chain
        .iter()
        .any(|der| der.len() > max)
        .then_some(FailureCode::ClientCertMaxSizeExceeded)
}

/// The path from the leaf through the presented intermediates to an
/// anchor, by issuer/subject names: its length, root included, when it
/// reaches one of `anchor_subjects` (raw DER names).
pub(crate) fn path_len(chain: &[X509Certificate<'_>], anchor_subjects: &[&[u8]]) -> Option<usize> {
    let mut used = vec![false; chain.len()];
    let mut cur = 0;
    used[0] = true;
    let mut len = 1;
    loop {
        let issuer = chain[cur].issuer().as_raw();
        let self_issued = issuer == chain[cur].subject().as_raw();
        if anchor_subjects.contains(&issuer) {
            // A presented copy of the root itself is the anchor, not a hop.
            return Some(if self_issued { len } else { len + 1 });
        }
        if self_issued {
            return None;
        }
        let next = (0..chain.len()).find(|&i| !used[i] && chain[i].subject().as_raw() == issuer)?;
        used[next] = true;
        cur = next;
        len += 1;
    }
}

/// The certificates on the name path from the leaf (leaf first), for the
/// validity checks; unrelated extra certificates are not judged.
pub(crate) fn path<'c, 'a>(chain: &'c [X509Certificate<'a>]) -> Vec<&'c X509Certificate<'a>> {
    let mut out = vec![&chain[0]];
    let mut used = vec![false; chain.len()];
    used[0] = true;
    let mut cur = &chain[0];
    while cur.issuer().as_raw() != cur.subject().as_raw() {
        let Some(i) = (0..chain.len())
            .find(|&i| !used[i] && chain[i].subject().as_raw() == cur.issuer().as_raw())
        else {
            break;
        };
        used[i] = true;
        cur = &chain[i];
        out.push(cur);
    }
    out
}

/// An unknown critical extension on any presented certificate.
pub(crate) fn critical_extensions(chain: &[X509Certificate<'_>]) -> Option<FailureCode> {
    chain
        .iter()
        .flat_map(|c| c.extensions())
        .any(|ext| {
            ext.critical
                && matches!(
                    ext.parsed_extension(),
                    ParsedExtension::UnsupportedExtension { .. }
                )
        })
        .then_some(FailureCode::ClientCertInvalid)
}

/// The leaf's key outside `allowed`, or a signature algorithm in the chain
/// outside the allowed set.
pub(crate) fn key_type(chain: &[X509Certificate<'_>], allowed: &[KeyType]) -> Option<FailureCode> {
    let leaf_ok = leaf_key_type(&chain[0]).is_some_and(|k| allowed.contains(&k));
    let sigs_ok = chain.iter().all(|c| {
        ALLOWED_SIGNATURES.contains(&c.signature_algorithm.algorithm.to_id_string().as_str())
    });
    (!leaf_ok || !sigs_ok).then_some(FailureCode::ClientCertTypeUnsupported)
}

fn leaf_key_type(cert: &X509Certificate<'_>) -> Option<KeyType> {
    let spki = cert.public_key();
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => match rsa.key_size() {
            2048 => Some(KeyType::Rsa2048),
            3072 => Some(KeyType::Rsa3072),
            4096 => Some(KeyType::Rsa4096),
            _ => None,
        },
        PublicKey::EC(_) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()?
                .as_oid()
                .ok()?
                .to_id_string();
            match curve.as_str() {
                P256 => Some(KeyType::P256),
                P384 => Some(KeyType::P384),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The leaf's extended key usage, when present, must allow client auth.
pub(crate) fn intent(leaf: &X509Certificate<'_>) -> Option<FailureCode> {
    match leaf.extended_key_usage() {
        Ok(Some(eku)) if !(eku.value.client_auth || eku.value.any) => {
            Some(FailureCode::ClientCertIntentInvalid)
        }
        Ok(_) => None,
        Err(_) => Some(FailureCode::ClientCertInvalid),
    }
}

/// The validity of a whole path as one window: the latest NotBefore and
/// the earliest NotAfter on it (Unix seconds). Empty when the first is
/// after the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl Window {
    /// The window of the certificates on `path` (at least one).
    pub(crate) fn of(path: &[&X509Certificate<'_>]) -> Self {
        let times = path.iter().map(|c| {
            let v = c.validity();
            (v.not_before.timestamp(), v.not_after.timestamp())
        });
        times.fold(
            Window {
                not_before: i64::MIN,
                not_after: i64::MAX,
            },
            |w, (nb, na)| Window {
                not_before: w.not_before.max(nb),
                not_after: w.not_after.min(na),
            },
        )
    }

    /// Expired if any certificate on the path is at `now`, else
    /// NotYetValid if any is not yet.
    pub(crate) fn check(self, now: i64) -> Option<FailureCode> {
        if self.not_after < now {
            Some(FailureCode::ClientCertExpired)
        } else if self.not_before > now {
            Some(FailureCode::ClientCertNotYetValid)
        } else {
            None
        }
    }

    /// A time at which every certificate on the path is valid, so that
    /// path building can be judged apart from expiry (SPEC.md puts
    /// Untrusted before Expired; webpki checks time first). `None` if there
    /// is none.
    pub(crate) fn inside(self) -> Option<i64> {
        (self.not_before <= self.not_after).then_some(self.not_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };

    fn ca(name: &str, key: &KeyPair) -> (rcgen::Certificate, CertificateParams) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        (p.clone().self_signed(key).unwrap(), p)
    }

    #[test]
    fn path_len_counts_root() {
        let root_key = KeyPair::generate().unwrap();
        let (root, root_params) = ca("root", &root_key);
        let issuer = rcgen::Issuer::new(root_params, &root_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["l.test".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let (_, leaf_x) = X509Certificate::from_der(leaf.der()).unwrap();
        let (_, root_x) = X509Certificate::from_der(root.der()).unwrap();
        let anchors = [root_x.subject().as_raw()];
        assert_eq!(path_len(std::slice::from_ref(&leaf_x), &anchors), Some(2));
        assert_eq!(
            path_len(&[leaf_x.clone(), root_x.clone()], &anchors),
            Some(2)
        );
        assert_eq!(path_len(&[leaf_x], &[]), None);
    }

    #[test]
    fn eku_server_only_is_intent_invalid() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["a.test".into()]).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let c = p.self_signed(&key).unwrap();
        let (_, x) = X509Certificate::from_der(c.der()).unwrap();
        assert_eq!(intent(&x), Some(FailureCode::ClientCertIntentInvalid));
        let mut p = CertificateParams::new(vec!["a.test".into()]).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let c = p.self_signed(&key).unwrap();
        let (_, x) = X509Certificate::from_der(c.der()).unwrap();
        assert_eq!(intent(&x), None);
    }

    #[test]
    fn key_types() {
        let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let p = CertificateParams::new(vec!["a.test".into()]).unwrap();
        let good = p.clone().self_signed(&p256).unwrap();
        let bad = p.self_signed(&ed).unwrap();
        let all = [KeyType::P256, KeyType::Rsa2048];
        let (_, g) = X509Certificate::from_der(good.der()).unwrap();
        let (_, b) = X509Certificate::from_der(bad.der()).unwrap();
        assert_eq!(key_type(std::slice::from_ref(&g), &all), None);
        assert_eq!(
            key_type(&[g], &[KeyType::P384]),
            Some(FailureCode::ClientCertTypeUnsupported)
        );
        assert_eq!(
            key_type(&[b], &all),
            Some(FailureCode::ClientCertTypeUnsupported)
        );
    }

    #[test]
    fn window_is_the_intersection_of_the_path() {
        let key = KeyPair::generate().unwrap();
        let cert = |from: i32, to: i32| {
            let mut p = CertificateParams::new(vec!["a.test".into()]).unwrap();
            p.not_before = rcgen::date_time_ymd(from, 1, 1);
            p.not_after = rcgen::date_time_ymd(to, 1, 1);
            p.self_signed(&key).unwrap()
        };
        let secs = |year: i32| rcgen::date_time_ymd(year, 1, 1).unix_timestamp();
        let (a, b) = (cert(2020, 2030), cert(2022, 2040));
        let (_, a) = X509Certificate::from_der(a.der()).unwrap();
        let (_, b) = X509Certificate::from_der(b.der()).unwrap();
        let w = Window::of(&[&a, &b]);
        assert_eq!(
            w,
            Window {
                not_before: secs(2022),
                not_after: secs(2030)
            }
        );
        assert_eq!(w.inside(), Some(secs(2022)));
        assert_eq!(
            w.check(secs(2022) - 1),
            Some(FailureCode::ClientCertNotYetValid)
        );
        assert_eq!(w.check(secs(2022)), None);
        assert_eq!(w.check(secs(2030)), None);
        assert_eq!(
            w.check(secs(2030) + 1),
            Some(FailureCode::ClientCertExpired)
        );
        // Disjoint: no time inside; Expired wins over NotYetValid.
        let later = cert(2031, 2032);
        let (_, c) = X509Certificate::from_der(later.der()).unwrap();
        let w = Window::of(&[&a, &c]);
        assert_eq!(w.inside(), None);
        assert_eq!(
            w.check(secs(2030) + 10),
            Some(FailureCode::ClientCertExpired)
        );
    }

    #[test]
    fn size_limit() {
        let big = vec![0u8; 20];
        assert_eq!(
            size(&[&big], 19),
            Some(FailureCode::ClientCertMaxSizeExceeded)
        );
        assert_eq!(size(&[&big], 20), None);
    }
}
