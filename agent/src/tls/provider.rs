//! The agent's one rustls crypto provider: aws-lc-rs, with the listeners'
//! suite order and an explicit list of key exchange groups.
//!
//! aws-lc-rs was measured faster than ring on this machine (X25519 33 vs
//! 60 µs, P-256 sign 18.7 vs 20.6 µs, verify 63.0 vs 65.7 µs). Everything
//! negotiated stays as it was with ring: the same suites in the same order,
//! and the groups X25519, secp256r1, secp384r1 (aws-lc-rs' default list
//! also has the X25519MLKEM768 hybrid, which a rustls server picks for a
//! client that prefers it, as current browsers do). The client verifier's signature
//! algorithms come from this provider too.

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, kx_group};

use super::negotiated;

/// aws-lc-rs with the server's suite order and X25519, secp256r1, secp384r1.
pub(crate) fn agent_provider() -> CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    negotiated::server_order(&mut provider.cipher_suites);
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    provider
}

/// Makes [`agent_provider`] the process-level default, which tonic's TLS
/// to the collector uses. Call once, before any TLS config is built.
pub fn install_default() -> Result<(), &'static str> {
    agent_provider()
        .install_default()
        .map_err(|_| "a process-level rustls crypto provider was already installed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::negotiated::cipher_name;

    fn group_names(p: &CryptoProvider) -> Vec<String> {
        p.kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect()
    }

    #[test]
    fn groups_are_x25519_then_p256_then_p384_and_no_hybrid() {
        assert_eq!(
            group_names(&agent_provider()),
            ["X25519", "secp256r1", "secp384r1"]
        );
        // The same groups ring offered before the switch.
        assert_eq!(
            group_names(&agent_provider()),
            group_names(&rustls::crypto::ring::default_provider())
        );
    }

    #[test]
    fn suites_are_ring_s_suites_in_the_server_order() {
        let names = |p: &CryptoProvider| -> Vec<String> {
            p.cipher_suites
                .iter()
                .map(|s| cipher_name(s.suite()))
                .collect()
        };
        let mut ring = rustls::crypto::ring::default_provider();
        negotiated::server_order(&mut ring.cipher_suites);
        assert_eq!(names(&agent_provider()), names(&ring));
        assert_eq!(names(&agent_provider())[0], "TLS_AES_128_GCM_SHA256");
    }

    #[test]
    fn signature_verification_comes_from_aws_lc_rs() {
        let ours = agent_provider().signature_verification_algorithms;
        let aws = aws_lc_rs::default_provider().signature_verification_algorithms;
        let ring = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let ptrs = |a: &rustls::crypto::WebPkiSupportedAlgorithms| -> Vec<*const ()> {
            a.all.iter().map(|x| *x as *const _ as *const ()).collect()
        };
        assert_eq!(ptrs(&ours), ptrs(&aws));
        assert_ne!(ptrs(&ours), ptrs(&ring));
    }
}
