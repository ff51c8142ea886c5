//! The same statuses driven by independent TLS clients: OpenSSL's
//! `s_client` and Python's `ssl` module (both OpenSSL-based, not rustls).

use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result};
use connlog_tests::pki::{self, Ca, Leaf, LeafSpec, pem};
use connlog_tests::tlsfixture::{ListenerSpec, TlsFixture, sha256_hex, status};
use serde_json::Value;

fn write_leaf(fx: &TlsFixture, name: &str, leaf: &Leaf) -> Result<()> {
    let mut ders: Vec<&[u8]> = vec![&leaf.der];
    ders.extend(leaf.intermediates.iter().map(Vec::as_slice));
    pki::write(
        fx.dir.path(),
        &format!("{name}.pem"),
        &pem("CERTIFICATE", &ders),
    )?;
    pki::write(
        fx.dir.path(),
        &format!("{name}.key"),
        &pem("PRIVATE KEY", &[&leaf.key_pkcs8]),
    )?;
    Ok(())
}

fn run(mut cmd: Command) -> Result<Output> {
    cmd.stdin(Stdio::null());
    let out = cmd.output().context("running client")?;
    Ok(out)
}

fn s_client(fx: &TlsFixture, v6: bool, extra: &[&str], cert: Option<&str>) -> Result<Output> {
    let mut cmd = fx.pair.client.command("timeout");
    let addr = fx.addr(v6).to_string();
    cmd.args([
        "10",
        "openssl",
        "s_client",
        "-connect",
        &addr,
        "-servername",
        "edge.test",
    ]);
    if let Some(name) = cert {
        cmd.arg("-cert").arg(fx.file(&format!("{name}.pem")));
        cmd.arg("-key").arg(fx.file(&format!("{name}.key")));
    }
    cmd.args(extra);
    run(cmd)
}

const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
host, port, cert = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if cert != "-":
    ctx.load_cert_chain(cert + ".pem", cert + ".key")
s = socket.create_connection((host, port), timeout=5)
try:
    t = ctx.wrap_socket(s, server_hostname="edge.test")
    print("version", t.version())
    t.recv(1)
    print("closed")
except (ssl.SSLError, OSError) as e:
    print("error", type(e).__name__, e)
"#;

fn python(fx: &TlsFixture, v6: bool, cert: Option<&str>) -> Result<String> {
    let mut cmd = fx.pair.client.command("python3");
    let cert = cert.map_or("-".to_string(), |n| fx.file(n).display().to_string());
    cmd.args([
        "-c",
        PYTHON_CLIENT,
        &fx.pair.server_ip(v6).to_string(),
        "8443",
        &cert,
    ]);
    let out = run(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn assert_leaf(ev: &Value, leaf: &Leaf, issuer: &str) {
    assert_eq!(ev["cert"]["serial"], "00:8f:12:34", "{ev}");
    assert_eq!(
        ev["cert"]["subject"], "C=US, O=Example, CN=client.test",
        "{ev}"
    );
    assert_eq!(ev["cert"]["issuer"], issuer, "{ev}");
    assert_eq!(ev["cert"]["sha256"], sha256_hex(&leaf.der), "{ev}");
}

#[test]
fn openssl_s_client_success_expired_and_tls10() -> Result<()> {
    let fx = TlsFixture::start("ind-ossl", ListenerSpec::required(), |_| Ok(()))?;
    let good = fx.root.leaf(&LeafSpec::default())?;
    write_leaf(&fx, "good", &good)?;
    let out = s_client(&fx, false, &[], Some("good"))?;
    let ev = fx.agent.event()?;
    assert_eq!(
        status(&ev),
        "Success",
        "{ev} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ev["tls_protocol"], "TLSv1.3");
    assert_eq!(ev["tls_cipher"], "TLS_AES_128_GCM_SHA256");
    assert_leaf(&ev, &good, "CN=connlog test root");

    let expired = fx.root.leaf(&LeafSpec {
        not_before: (2020, 1, 1),
        not_after: (2021, 1, 1),
        ..LeafSpec::default()
    })?;
    write_leaf(&fx, "expired", &expired)?;
    // `-ign_eof`: keep reading after stdin ends, until the server's alert.
    let out = s_client(&fx, true, &["-ign_eof"], Some("expired"))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:ClientCertExpired", "{ev}");
    assert_leaf(&ev, &expired, "CN=connlog test root");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("alert certificate expired"),
        "{out:?}"
    );

    // A client that only speaks TLS 1.0.
    let _ = s_client(
        &fx,
        false,
        &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"],
        None,
    )?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:UnmappedConnectionError", "{ev}");
    Ok(())
}

#[test]
fn openssl_rsa1024_leaf_is_type_unsupported() -> Result<()> {
    let fx = TlsFixture::start("ind-rsa", ListenerSpec::required(), |_| Ok(()))?;
    let key = fx.file("rsa.key");
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
        ])
        .arg(&key)
        .output()?;
    assert!(ok.status.success(), "{ok:?}");
    let spki = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()?;
    let public = rcgen::SubjectPublicKeyInfo::from_der(&spki.stdout)?;
    let der = fx.root.leaf_with_key(&LeafSpec::default(), &public)?;
    pki::write(fx.dir.path(), "rsa.pem", &pem("CERTIFICATE", &[&der]))?;
    let _ = s_client(&fx, false, &["-cipher", "DEFAULT@SECLEVEL=0"], Some("rsa"))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:ClientCertTypeUnsupported", "{ev}");
    assert_eq!(ev["cert"]["sha256"], sha256_hex(&der));
    Ok(())
}

#[test]
fn python_ssl_success_missing_untrusted() -> Result<()> {
    let fx = TlsFixture::start("ind-py", ListenerSpec::required(), |_| Ok(()))?;
    let good = fx.root.leaf(&LeafSpec::default())?;
    write_leaf(&fx, "good", &good)?;
    let out = python(&fx, true, Some("good"))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev} {out}");
    assert!(out.starts_with("version TLSv1.3"), "{out}");
    assert_leaf(&ev, &good, "CN=connlog test root");

    let out = python(&fx, false, None)?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:ClientCertMissing", "{ev}");
    assert!(out.contains("error"), "python saw the refusal: {out}");

    let other = Ca::root("other root")?.leaf(&LeafSpec::default())?;
    write_leaf(&fx, "other", &other)?;
    let out = python(&fx, false, Some("other"))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:ClientCertUntrusted", "{ev}");
    assert!(
        out.contains("UNKNOWN_CA") || out.contains("unknown ca"),
        "{out}"
    );
    assert_leaf(&ev, &other, "CN=other root");
    Ok(())
}

#[test]
fn openssl_sees_per_sni_certificates_and_advertised_ca_names() -> Result<()> {
    let spec = ListenerSpec {
        mtls: "mode = \"optional\"\ntrust_store = \"ca.pem\"\nadvertise_ca_names = true\n".into(),
        extra: "[[listener.certificate]]\nsni = [\"*.other.test\"]\ncert = \"other.pem\"\nkey = \"other.key\"\n".into(),
    };
    let fx = TlsFixture::start("ind-sni", spec, |f| {
        let other = f.root.leaf(&LeafSpec {
            subject: vec![(rcgen::DnType::CommonName, "wild.other.test".into())],
            ..LeafSpec::default()
        })?;
        pki::write(
            f.dir.path(),
            "other.pem",
            &pem("CERTIFICATE", &[&other.der]),
        )?;
        pki::write(
            f.dir.path(),
            "other.key",
            &pem("PRIVATE KEY", &[&other.key_pkcs8]),
        )?;
        Ok(())
    })?;
    let sni = |name: &str| -> Result<String> {
        let mut cmd = fx.pair.client.command("timeout");
        let addr = fx.addr(false).to_string();
        cmd.args([
            "10",
            "openssl",
            "s_client",
            "-connect",
            &addr,
            "-servername",
            name,
        ]);
        Ok(String::from_utf8_lossy(&run(cmd)?.stdout).into_owned())
    };
    let out = sni("a.other.test")?;
    assert!(out.contains("subject=CN = wild.other.test"), "{out}");
    assert!(
        out.contains("Acceptable client certificate CA names\nCN = connlog test root"),
        "{out}"
    );
    assert_eq!(fx.agent.event()?["sni"], "a.other.test");
    let out = sni("edge.test")?;
    assert!(out.contains("subject=CN = edge.test"), "{out}");
    assert_eq!(status(&fx.agent.event()?), "Success");
    Ok(())
}
