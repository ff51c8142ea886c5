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

/// What rustls negotiates for this ClientHello with `suites` (in the
/// provider's order, client order preferred — rustls' default): the
/// highest common version and the client's first common suite of it. Used
/// for records of certificate failures, which happen after the ServerHello
/// but end the handshake before the stream could tell.
pub(crate) fn expected(
    hello: &ClientHello<'_>,
    suites: &[SupportedCipherSuite],
    server_key_ecdsa: bool,
) -> Option<(String, String)> {
    let offered = hello.cipher_suites();
    for version in [ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2] {
        let version_offered = match version {
            ProtocolVersion::TLSv1_3 => offered.iter().any(|s| {
                suites
                    .iter()
                    .any(|x| x.suite() == *s && x.version().version == version)
            }),
            _ => true,
        };
        if !version_offered {
            continue;
        }
        let pick = offered.iter().find(|s| {
            suites.iter().any(|x| {
                x.suite() == **s
                    && x.version().version == version
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
            })
        });
        if let Some(s) = pick {
            return Some((protocol_name(version), cipher_name(*s)));
        }
    }
    None
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
}
