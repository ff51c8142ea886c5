//! Names of the negotiated protocol and suite, as SPEC.md writes them.

use rustls::server::ClientHello;
use rustls::{CipherSuite, ProtocolVersion, SupportedCipherSuite};

/// `TLSv1.2`, `TLSv1.3`.
pub(crate) fn protocol_name(v: ProtocolVersion) -> String {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        ProtocolVersion::TLSv1_1 => "TLSv1.1".into(),
        ProtocolVersion::TLSv1_0 => "TLSv1".into(),
        other => format!("{other:?}"),
    }
}

/// The IANA name: rustls spells TLS 1.3 suites `TLS13_…`, IANA `TLS_…`.
pub(crate) fn cipher_name(s: CipherSuite) -> String {
    let name = s.as_str().map_or_else(|| format!("{s:?}"), str::to_string);
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// What rustls negotiates for this ClientHello with `suites` in the
/// server's order of preference (the listener ignores the client's order):
/// the highest common version and the first of our suites of it the
/// client offered. Used for records of certificate failures, which happen
/// after the ServerHello but end the handshake before the stream could
/// tell.
pub(crate) fn expected(
    hello: &ClientHello<'_>,
    suites: &[SupportedCipherSuite],
    server_key_ecdsa: bool,
) -> Option<(String, String)> {
    let offered = hello.cipher_suites();
    for version in [ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2] {
        let pick = suites.iter().find(|x| {
            x.version().version == version
                && offered.contains(&x.suite())
                && match x {
                    SupportedCipherSuite::Tls12(t) => {
                        let ecdsa = t
                            .sign
                            .iter()
                            .any(|sch| format!("{sch:?}").starts_with("ECDSA"));
                        ecdsa == server_key_ecdsa
                    }
                    SupportedCipherSuite::Tls13(_) => true,
                }
        });
        if let Some(s) = pick {
            return Some((protocol_name(version), cipher_name(s.suite())));
        }
    }
    None
}

/// The provider's suites in the order the listeners prefer them: per
/// version, SHA-256 suites before SHA-384 ones (AES-128-GCM first). The
/// handshake's transcript hash and key schedule use the suite's hash, and
/// SHA-256 runs on the CPU's SHA extensions where SHA-384 cannot; both are
/// well above the security level of the P-256 / X25519 key exchange.
pub(crate) fn server_order(suites: &mut [SupportedCipherSuite]) {
    suites.sort_by_key(|s| {
        let tls12 = matches!(s, SupportedCipherSuite::Tls12(_));
        let sha384 = s.suite().as_str().is_some_and(|n| n.ends_with("SHA384"));
        (tls12, sha384)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_names() {
        assert_eq!(
            cipher_name(CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            cipher_name(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(protocol_name(ProtocolVersion::TLSv1_3), "TLSv1.3");
        assert_eq!(protocol_name(ProtocolVersion::TLSv1_2), "TLSv1.2");
    }

    #[test]
    fn server_order_prefers_sha256_suites_per_version() {
        let mut suites = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
        server_order(&mut suites);
        let names: Vec<String> = suites.iter().map(|s| cipher_name(s.suite())).collect();
        assert_eq!(
            names,
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_CHACHA20_POLY1305_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            ]
        );
    }
}
