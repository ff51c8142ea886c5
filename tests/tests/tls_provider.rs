//! The agent's crypto provider (aws-lc-rs) negotiates what the ring one
//! did: the server's suite order and the key exchange groups X25519,
//! secp256r1, secp384r1 only. In particular the post-quantum hybrid
//! X25519MLKEM768, which aws-lc-rs' default provider supports, is not
//! taken even from a client that prefers it.

use anyhow::Result;
use connlog_tests::pki::LeafSpec;
use connlog_tests::tlsclient::{ClientSpec, handshake_with};
use connlog_tests::tlsfixture::{ListenerSpec, TlsFixture, client_refused, status};
use rustls::crypto::CryptoProvider;
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::aws_lc_rs::{self, kx_group};

fn client_with(groups: Vec<&'static dyn SupportedKxGroup>) -> CryptoProvider {
    CryptoProvider {
        kx_groups: groups,
        ..aws_lc_rs::default_provider()
    }
}

fn group_name(g: Option<&'static dyn SupportedKxGroup>) -> String {
    g.map_or_else(|| "none".into(), |g| format!("{:?}", g.name()))
}

#[test]
fn groups_and_suites_are_the_same_as_with_ring() -> Result<()> {
    let fx = TlsFixture::start("prov", ListenerSpec::required(), |_| Ok(()))?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let spec = ClientSpec::with_leaf(&leaf);

    // A client that prefers the hybrid (as current browsers do; rustls
    // servers follow the client's order among the groups they support).
    let hybrid_first = client_with(vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ]);
    let tls = handshake_with(fx.tcp(false)?, &spec, hybrid_first)?;
    assert_eq!(
        group_name(tls.conn.negotiated_key_exchange_group()),
        "X25519"
    );
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_eq!(ev["tls_protocol"], "TLSv1.3");
    // aws-lc-rs' client order puts AES-256 first; the server's order wins.
    assert_eq!(ev["tls_cipher"], "TLS_AES_128_GCM_SHA256");
    drop(tls);

    for (group, name) in [
        (kx_group::SECP256R1, "secp256r1"),
        (kx_group::SECP384R1, "secp384r1"),
    ] {
        let tls = handshake_with(fx.tcp(false)?, &spec, client_with(vec![group]))?;
        assert_eq!(group_name(tls.conn.negotiated_key_exchange_group()), name);
        let ev = fx.agent.event()?;
        assert_eq!(status(&ev), "Success", "{name}: {ev}");
    }

    // A client with only the hybrid finds no group in common.
    let only_hybrid = client_with(vec![kx_group::X25519MLKEM768]);
    assert!(client_refused(handshake_with(
        fx.tcp(false)?,
        &spec,
        only_hybrid
    )));
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:UnmappedConnectionError", "{ev}");
    Ok(())
}
