//! One test per certificate status (SPEC.md section 2), each asserting the
//! exact code and the exact certificate fields of the outcome, against the
//! real agent in a network namespace.

use anyhow::Result;
use connlog_tests::pki::{Ca, Leaf, LeafSpec, self_signed};
use connlog_tests::tlsclient::ClientSpec;
use connlog_tests::tlsfixture::{ListenerSpec, TlsFixture, client_refused, sha256_hex, status};
use rcgen::{DnType, ExtendedKeyUsagePurpose};
use serde_json::Value;

const SUBJECT: &str = "C=US, O=Example, CN=client.test";
const ROOT: &str = "CN=connlog test root";
const VALIDITY: &str = "NotBefore=2025-06-05T00:00:00Z;NotAfter=2125-05-12T00:00:00Z";
const SERIAL: &str = "00:8f:12:34";

fn start(tag: &str, spec: ListenerSpec) -> Result<TlsFixture> {
    TlsFixture::start(tag, spec, |_| Ok(()))
}

/// Asserts the certificate fields of `ev` describe `leaf`.
fn assert_cert(
    ev: &Value,
    leaf_der: &[u8],
    serial: &str,
    subject: &str,
    issuer: &str,
    validity: &str,
) {
    let cert = &ev["cert"];
    assert_eq!(cert["serial"], serial, "{ev}");
    assert_eq!(cert["subject"], subject, "{ev}");
    assert_eq!(cert["issuer"], issuer, "{ev}");
    assert_eq!(cert["validity"], validity, "{ev}");
    assert_eq!(cert["sha256"], sha256_hex(leaf_der), "{ev}");
}

/// Connects with `leaf`, expects `expected` and the client refused.
fn refused_with(fx: &TlsFixture, leaf: &Leaf, expected: &str) -> Result<Value> {
    let refused = client_refused(fx.tls(false, &ClientSpec::with_leaf(leaf)));
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), expected, "{ev}");
    assert!(refused, "the client must see the rejection");
    Ok(ev)
}

#[test]
fn success_required_v4_has_every_field() -> Result<()> {
    let fx = start("st-ok4", ListenerSpec::required())?;
    let leaf = fx.root.leaf(&LeafSpec {
        sans: vec![
            rcgen::SanType::DnsName("a.client.test".try_into()?),
            rcgen::SanType::URI("spiffe://edge/client".try_into()?),
            rcgen::SanType::IpAddress("198.18.0.2".parse()?),
        ],
        ..LeafSpec::default()
    })?;
    let tls = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    let local = tls.sock.local_addr()?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_eq!(ev["distribution_id"], "E2DX1SLDPK0123");
    assert_eq!(ev["tuple"]["client"], local.to_string());
    assert_eq!(ev["tuple"]["server"], fx.addr(false).to_string());
    assert_eq!(ev["sni"], "edge.test");
    assert_eq!(ev["tls_protocol"], "TLSv1.3");
    assert_eq!(ev["tls_cipher"], "TLS_AES_128_GCM_SHA256");
    assert!(ev["cookie"].as_u64().is_some_and(|c| c > 0), "{ev}");
    assert!(
        ev["handshake_ms"].as_u64().is_some_and(|ms| ms < 5_000),
        "{ev}"
    );
    assert_eq!(ev["connection_id"].as_str().map(str::len), Some(24));
    assert_eq!(ev["tenant_id"], Value::Null);
    assert_cert(&ev, &leaf.der, SERIAL, SUBJECT, ROOT, VALIDITY);
    assert_eq!(
        ev["cert"]["sans"],
        "DNS:a.client.test,URI:spiffe://edge/client,IP:198.18.0.2"
    );
    Ok(())
}

#[test]
fn success_required_v6_and_tls12() -> Result<()> {
    let fx = start("st-ok6", ListenerSpec::required())?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let tls = fx.tls(true, &ClientSpec::with_leaf(&leaf))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_eq!(ev["tuple"]["client"], tls.sock.local_addr()?.to_string());
    assert_eq!(
        ev["tuple"]["server"],
        format!("[{}]:8443", fx.pair.server_v6)
    );
    assert_cert(&ev, &leaf.der, SERIAL, SUBJECT, ROOT, VALIDITY);

    let spec = ClientSpec {
        tls12_only: true,
        ..ClientSpec::with_leaf(&leaf)
    };
    let _tls = fx.tls(false, &spec)?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_eq!(ev["tls_protocol"], "TLSv1.2");
    assert_eq!(ev["tls_cipher"], "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
    Ok(())
}

#[test]
fn success_optional_with_and_without_certificate() -> Result<()> {
    let fx = start("st-opt", ListenerSpec::mode("optional"))?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let _a = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_cert(&ev, &leaf.der, SERIAL, SUBJECT, ROOT, VALIDITY);

    let _b = fx.tls(false, &ClientSpec::anonymous())?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_eq!(ev["cert"], Value::Null);

    // A presented certificate is still judged in optional mode.
    let other = Ca::root("other root")?.leaf(&LeafSpec::default())?;
    refused_with(&fx, &other, "Failed:ClientCertUntrusted")?;
    Ok(())
}

#[test]
fn success_passthrough_with_self_signed() -> Result<()> {
    let fx = start(
        "st-pass",
        ListenerSpec {
            mtls: "mode = \"passthrough\"\n".into(),
            extra: String::new(),
        },
    )?;
    let leaf = self_signed(&LeafSpec::default())?;
    let _tls = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_cert(&ev, &leaf.der, SERIAL, SUBJECT, SUBJECT, VALIDITY);
    Ok(())
}

#[test]
fn missing_in_required_mode() -> Result<()> {
    let fx = start("st-miss", ListenerSpec::required())?;
    let refused = client_refused(fx.tls(false, &ClientSpec::anonymous()));
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:ClientCertMissing", "{ev}");
    assert_eq!(ev["cert"], Value::Null);
    assert_eq!(ev["tls_protocol"], "TLSv1.3");
    assert!(refused);
    Ok(())
}

#[test]
fn untrusted_issuer() -> Result<()> {
    let fx = start("st-untr", ListenerSpec::required())?;
    let leaf = Ca::root("other root")?.leaf(&LeafSpec::default())?;
    let ev = refused_with(&fx, &leaf, "Failed:ClientCertUntrusted")?;
    assert_cert(&ev, &leaf.der, SERIAL, SUBJECT, "CN=other root", VALIDITY);
    assert_eq!(ev["tls_protocol"], "TLSv1.3");
    assert_eq!(ev["tls_cipher"], "TLS_AES_128_GCM_SHA256");
    Ok(())
}

#[test]
fn expired_and_not_yet_valid() -> Result<()> {
    let fx = start("st-time", ListenerSpec::required())?;
    let expired = fx.root.leaf(&LeafSpec {
        not_before: (2020, 1, 1),
        not_after: (2021, 1, 1),
        ..LeafSpec::default()
    })?;
    let ev = refused_with(&fx, &expired, "Failed:ClientCertExpired")?;
    assert_cert(
        &ev,
        &expired.der,
        SERIAL,
        SUBJECT,
        ROOT,
        "NotBefore=2020-01-01T00:00:00Z;NotAfter=2021-01-01T00:00:00Z",
    );

    let future = fx.root.leaf(&LeafSpec {
        not_before: (2100, 1, 1),
        not_after: (2101, 1, 1),
        ..LeafSpec::default()
    })?;
    let ev = refused_with(&fx, &future, "Failed:ClientCertNotYetValid")?;
    assert_cert(
        &ev,
        &future.der,
        SERIAL,
        SUBJECT,
        ROOT,
        "NotBefore=2100-01-01T00:00:00Z;NotAfter=2101-01-01T00:00:00Z",
    );
    Ok(())
}

#[test]
fn ignore_certificate_expiry_accepts_expired() -> Result<()> {
    let spec = ListenerSpec {
        mtls: "mode = \"required\"\ntrust_store = \"ca.pem\"\nignore_certificate_expiry = true\n"
            .into(),
        extra: String::new(),
    };
    let fx = start("st-igexp", spec)?;
    let expired = fx.root.leaf(&LeafSpec {
        not_before: (2020, 1, 1),
        not_after: (2021, 1, 1),
        ..LeafSpec::default()
    })?;
    let _tls = fx.tls(false, &ClientSpec::with_leaf(&expired))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    Ok(())
}

#[test]
fn precedence_expired_and_untrusted_is_untrusted() -> Result<()> {
    let fx = start("st-prec", ListenerSpec::required())?;
    let leaf = Ca::root("other root")?.leaf(&LeafSpec {
        not_before: (2020, 1, 1),
        not_after: (2021, 1, 1),
        ..LeafSpec::default()
    })?;
    refused_with(&fx, &leaf, "Failed:ClientCertUntrusted")?;
    // Server-auth-only EKU and expired at once: Expired comes first.
    let both = fx.root.leaf(&LeafSpec {
        not_before: (2020, 1, 1),
        not_after: (2021, 1, 1),
        eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..LeafSpec::default()
    })?;
    refused_with(&fx, &both, "Failed:ClientCertExpired")?;
    Ok(())
}

#[test]
fn intent_invalid_for_server_auth_only() -> Result<()> {
    let fx = start("st-eku", ListenerSpec::required())?;
    let leaf = fx.root.leaf(&LeafSpec {
        eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..LeafSpec::default()
    })?;
    let ev = refused_with(&fx, &leaf, "Failed:ClientCertIntentInvalid")?;
    assert_cert(&ev, &leaf.der, SERIAL, SUBJECT, ROOT, VALIDITY);
    Ok(())
}

#[test]
fn type_unsupported_ed25519() -> Result<()> {
    let fx = start("st-ed", ListenerSpec::required())?;
    let leaf = fx.root.leaf(&LeafSpec {
        alg: &rcgen::PKCS_ED25519,
        ..LeafSpec::default()
    })?;
    let ev = refused_with(&fx, &leaf, "Failed:ClientCertTypeUnsupported")?;
    assert_cert(&ev, &leaf.der, SERIAL, SUBJECT, ROOT, VALIDITY);
    Ok(())
}

#[test]
fn invalid_signature() -> Result<()> {
    let fx = start("st-sig", ListenerSpec::required())?;
    let mut leaf = fx.root.leaf(&LeafSpec::default())?;
    // The last byte is inside the signature: the certificate still parses.
    let last = leaf.der.len() - 1;
    leaf.der[last] ^= 0x01;
    let ev = refused_with(&fx, &leaf, "Failed:ClientCertInvalid")?;
    assert_cert(&ev, &leaf.der, SERIAL, SUBJECT, ROOT, VALIDITY);
    Ok(())
}

#[test]
fn max_chain_depth() -> Result<()> {
    let fx = start("st-depth", ListenerSpec::required())?;
    let i1 = fx.root.intermediate("int 1")?;
    let i2 = i1.intermediate("int 2")?;
    let i3 = i2.intermediate("int 3")?;
    let i4 = i3.intermediate("int 4")?;
    // root + 2 intermediates + leaf = 4: allowed.
    let ok = i2.leaf(&LeafSpec::default())?;
    let _tls = fx.tls(false, &ClientSpec::with_leaf(&ok))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_eq!(ev["cert"]["issuer"], "CN=int 2");
    // root + 3 intermediates + leaf: 4 presented, path of 5.
    let deep = i3.leaf(&LeafSpec::default())?;
    refused_with(&fx, &deep, "Failed:ClientCertMaxChainDepthExceeded")?;
    // root + 4 intermediates + leaf: 5 presented.
    let deeper = i4.leaf(&LeafSpec::default())?;
    let ev = refused_with(&fx, &deeper, "Failed:ClientCertMaxChainDepthExceeded")?;
    assert_cert(&ev, &deeper.der, SERIAL, SUBJECT, "CN=int 4", VALIDITY);
    Ok(())
}

#[test]
fn max_cert_size() -> Result<()> {
    let fx = start("st-size", ListenerSpec::required())?;
    let leaf = fx.root.leaf(&LeafSpec {
        padding: 17_000,
        ..LeafSpec::default()
    })?;
    assert!(leaf.der.len() > 16_384);
    let ev = refused_with(&fx, &leaf, "Failed:ClientCertMaxSizeExceeded")?;
    assert_cert(&ev, &leaf.der, SERIAL, SUBJECT, ROOT, VALIDITY);
    Ok(())
}

#[test]
fn rejected_by_crl() -> Result<()> {
    let spec = ListenerSpec {
        mtls: "mode = \"required\"\ntrust_store = \"ca.pem\"\ncrl = [\"root.crl\"]\n".into(),
        extra: String::new(),
    };
    // A PEM bundle: another CA's CRL first, the root's second (every
    // block of the file counts, not only the first).
    let fx = TlsFixture::start("st-crl", spec, |f| {
        let other = Ca::root("Other CA")?.crl(&[&[0x77]])?;
        let crl = f.root.crl(&[&[0x66, 0x01]])?;
        connlog_tests::pki::write(
            f.dir.path(),
            "root.crl",
            &connlog_tests::pki::pem("X509 CRL", &[&other, &crl]),
        )?;
        Ok(())
    })?;
    let revoked = fx.root.leaf(&LeafSpec {
        serial: vec![0x66, 0x01],
        ..LeafSpec::default()
    })?;
    let ev = refused_with(&fx, &revoked, "Failed:ClientCertRejected")?;
    assert_cert(&ev, &revoked.der, "66:01", SUBJECT, ROOT, VALIDITY);
    let good = fx.root.leaf(&LeafSpec::default())?;
    let _tls = fx.tls(false, &ClientSpec::with_leaf(&good))?;
    assert_eq!(status(&fx.agent.event()?), "Success");
    Ok(())
}

#[test]
fn rejected_by_access_rules() -> Result<()> {
    let spec = ListenerSpec {
        mtls: "mode = \"required\"\ntrust_store = \"ca.pem\"\n\
               [listener.mtls.access]\nsubject_cn = [\"allowed.test\"]\nuri_san = [\"spiffe://edge/*\", \"spiffe://edge/ok\"]\n"
            .into(),
        extra: String::new(),
    };
    let fx = start("st-acl", spec)?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let ev = refused_with(&fx, &leaf, "Failed:ClientCertRejected")?;
    assert_cert(&ev, &leaf.der, SERIAL, SUBJECT, ROOT, VALIDITY);

    let by_cn = fx.root.leaf(&LeafSpec {
        subject: vec![(DnType::CommonName, "allowed.test".into())],
        ..LeafSpec::default()
    })?;
    let _a = fx.tls(false, &ClientSpec::with_leaf(&by_cn))?;
    assert_eq!(status(&fx.agent.event()?), "Success");
    let by_uri = fx.root.leaf(&LeafSpec {
        sans: vec![rcgen::SanType::URI("spiffe://edge/ok".try_into()?)],
        ..LeafSpec::default()
    })?;
    let _b = fx.tls(false, &ClientSpec::with_leaf(&by_uri))?;
    assert_eq!(status(&fx.agent.event()?), "Success");
    Ok(())
}

#[test]
fn tenant_from_sni_wildcard() -> Result<()> {
    let spec = ListenerSpec {
        mtls: "mode = \"optional\"\ntrust_store = \"ca.pem\"\n".into(),
        extra:
            "[[listener.tenant]]\nsni = [\"*.tenant1.test\"]\nid = \"dt_2te1Ura9X3R2iCGNjW123\"\n"
                .into(),
    };
    let fx = start("st-ten", spec)?;
    let spec = ClientSpec {
        sni: Some("a.tenant1.test".into()),
        ..ClientSpec::anonymous()
    };
    let _a = fx.tls(false, &spec)?;
    let ev = fx.agent.event()?;
    assert_eq!(ev["tenant_id"], "dt_2te1Ura9X3R2iCGNjW123", "{ev}");
    assert_eq!(ev["sni"], "a.tenant1.test");
    let spec = ClientSpec {
        sni: Some("other.test".into()),
        ..ClientSpec::anonymous()
    };
    let _b = fx.tls(false, &spec)?;
    let ev = fx.agent.event()?;
    assert_eq!(ev["tenant_id"], Value::Null, "{ev}");
    Ok(())
}

#[test]
fn key_types_setting_restricts_leaf_keys() -> Result<()> {
    let spec = ListenerSpec {
        mtls: "mode = \"required\"\ntrust_store = \"ca.pem\"\nkey_types = [\"p384\"]\n".into(),
        extra: String::new(),
    };
    let fx = start("st-keyt", spec)?;
    let p256 = fx.root.leaf(&LeafSpec::default())?;
    let ev = refused_with(&fx, &p256, "Failed:ClientCertTypeUnsupported")?;
    assert_cert(&ev, &p256.der, SERIAL, SUBJECT, ROOT, VALIDITY);
    let p384 = fx.root.leaf(&LeafSpec {
        alg: &rcgen::PKCS_ECDSA_P384_SHA384,
        ..LeafSpec::default()
    })?;
    let _tls = fx.tls(false, &ClientSpec::with_leaf(&p384))?;
    assert_eq!(status(&fx.agent.event()?), "Success");
    Ok(())
}
