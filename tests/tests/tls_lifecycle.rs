//! Config errors before anything listens, SIGHUP reloads (good and
//! broken) without dropping open connections, and SIGTERM draining.

use std::time::{Duration, Instant};

use anyhow::Result;
use connlog_tests::TempDir;
use connlog_tests::agent::start_failure;
use connlog_tests::pki::{self, Ca, LeafSpec, pem};
use connlog_tests::tlsclient::{ClientSpec, echo};
use connlog_tests::tlsfixture::{ListenerSpec, TlsFixture, client_refused, status};
use connlog_tests::upstream::Upstream;

/// A directory with a valid server certificate, key and trust store, and
/// a config naming them; `edit` changes the config text or the files.
fn config_error(
    edit: impl FnOnce(&TempDir, &mut String) -> Result<()>,
) -> Result<(Option<i32>, String, TempDir)> {
    let dir = TempDir::new("cfgerr")?;
    let root = Ca::root("cfg root")?;
    let server = root.leaf(&LeafSpec::default())?;
    pki::write(
        dir.path(),
        "server.pem",
        &pem("CERTIFICATE", &[&server.der]),
    )?;
    pki::write(
        dir.path(),
        "server.key",
        &pem("PRIVATE KEY", &[&server.key_pkcs8]),
    )?;
    pki::write(dir.path(), "ca.pem", &pem("CERTIFICATE", &[&root.der]))?;
    let mut text = "[probe]\nenabled = false\n[[listener]]\ndistribution_id = \"E1\"\nbind = [\"127.0.0.1:0\"]\n\
                    cert = \"server.pem\"\nkey = \"server.key\"\n\
                    [listener.mtls]\nmode = \"required\"\ntrust_store = \"ca.pem\"\n"
        .to_string();
    edit(&dir, &mut text)?;
    let path = pki::write(dir.path(), "agent.toml", &text)?;
    let (code, stderr) = start_failure(&path)?;
    Ok((code, stderr, dir))
}

#[test]
fn valid_config_starts() -> Result<()> {
    // The baseline of the error cases below really is valid.
    let dir = TempDir::new("cfgok")?;
    let root = Ca::root("cfg root")?;
    let server = root.leaf(&LeafSpec::default())?;
    pki::write(
        dir.path(),
        "server.pem",
        &pem("CERTIFICATE", &[&server.der]),
    )?;
    pki::write(
        dir.path(),
        "server.key",
        &pem("PRIVATE KEY", &[&server.key_pkcs8]),
    )?;
    pki::write(dir.path(), "ca.pem", &pem("CERTIFICATE", &[&root.der]))?;
    let text = "[probe]\nenabled = false\n[[listener]]\ndistribution_id = \"E1\"\nbind = [\"127.0.0.1:0\"]\n\
                cert = \"server.pem\"\nkey = \"server.key\"\n\
                [listener.mtls]\nmode = \"required\"\ntrust_store = \"ca.pem\"\n";
    let path = pki::write(dir.path(), "agent.toml", text)?;
    let agent = connlog_tests::agent::Agent::start(None, &path)?;
    assert!(agent.stderr().contains("listening"));
    Ok(())
}

#[test]
fn unknown_key_is_named() -> Result<()> {
    let (code, stderr, dir) = config_error(|_, t| {
        *t = t.replace("mode = \"required\"", "mode = \"required\"\nmax_depht = 3");
        Ok(())
    })?;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown field `max_depht`"), "{stderr}");
    assert!(
        stderr.contains(&dir.path().join("agent.toml").display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "nothing listens: {stderr}");
    Ok(())
}

#[test]
fn unreadable_file_is_named() -> Result<()> {
    let (code, stderr, dir) = config_error(|_, t| {
        *t = t.replace("cert = \"server.pem\"", "cert = \"missing.pem\"");
        Ok(())
    })?;
    assert_eq!(code, Some(1));
    let expected = format!(
        "connlog-agent: loading TLS files: listener[0].cert: {}: No such file or directory (os error 2)\n",
        dir.path().join("missing.pem").display()
    );
    assert_eq!(stderr, expected);
    Ok(())
}

#[test]
fn trust_store_without_ca_is_named() -> Result<()> {
    let (code, stderr, dir) = config_error(|d, _| {
        // A leaf only: a certificate, but no CA.
        let leaf = Ca::root("x")?.leaf(&LeafSpec::default())?;
        pki::write(d.path(), "ca.pem", &pem("CERTIFICATE", &[&leaf.der]))?;
        Ok(())
    })?;
    assert_eq!(code, Some(1));
    let expected = format!(
        "connlog-agent: loading TLS files: listener[0].mtls.trust_store: {}: no CA certificate in trust store\n",
        dir.path().join("ca.pem").display()
    );
    assert_eq!(stderr, expected);
    Ok(())
}

#[test]
fn key_not_matching_certificate_is_named() -> Result<()> {
    let (code, stderr, dir) = config_error(|d, _| {
        let other = Ca::root("y")?.leaf(&LeafSpec::default())?;
        pki::write(
            d.path(),
            "server.key",
            &pem("PRIVATE KEY", &[&other.key_pkcs8]),
        )?;
        Ok(())
    })?;
    assert_eq!(code, Some(1));
    let prefix = format!(
        "connlog-agent: loading TLS files: listener[0].key: {}: does not match the certificate in {}",
        dir.path().join("server.key").display(),
        dir.path().join("server.pem").display()
    );
    assert!(stderr.starts_with(&prefix), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    Ok(())
}

#[test]
fn sighup_reloads_trust_store_and_keeps_connections() -> Result<()> {
    let spec = ListenerSpec {
        extra: "upstream = \"127.0.0.1:9000\"\n".into(),
        ..ListenerSpec::required()
    };
    let fx = TlsFixture::start("rl", spec, |_| Ok(()))?;
    let _up = Upstream::echo(&fx.pair.server, "127.0.0.1:9000".parse()?, false)?;
    let leaf_a = fx.root.leaf(&LeafSpec::default())?;
    let mut open = fx.tls(false, &ClientSpec::with_leaf(&leaf_a))?;
    assert_eq!(echo(&mut open, b"before")?, b"before");
    assert_eq!(status(&fx.agent.event()?), "Success");

    // Trust root B instead of A.
    let root_b = Ca::root("root b")?;
    pki::write(fx.dir.path(), "ca.pem", &pem("CERTIFICATE", &[&root_b.der]))?;
    fx.agent.signal("HUP")?;
    fx.agent.wait_log("reloaded certificates")?;
    let refused = client_refused(fx.tls(false, &ClientSpec::with_leaf(&leaf_a)));
    assert_eq!(status(&fx.agent.event()?), "Failed:ClientCertUntrusted");
    assert!(refused);
    let leaf_b = root_b.leaf(&LeafSpec::default())?;
    let _b = fx.tls(false, &ClientSpec::with_leaf(&leaf_b))?;
    assert_eq!(status(&fx.agent.event()?), "Success");
    // The connection accepted under the old trust store is untouched.
    assert_eq!(echo(&mut open, b"after")?, b"after");

    // A broken trust store: the reload fails, says why, and B still works.
    pki::write(fx.dir.path(), "ca.pem", "not a certificate\n")?;
    fx.agent.signal("HUP")?;
    fx.agent.wait_log("reload failed")?;
    let log = fx.agent.stderr();
    assert!(
        log.contains("listener[0].mtls.trust_store") && log.contains("no certificate in file"),
        "{log}"
    );
    let _b2 = fx.tls(false, &ClientSpec::with_leaf(&leaf_b))?;
    assert_eq!(status(&fx.agent.event()?), "Success");
    assert_eq!(echo(&mut open, b"still")?, b"still");
    Ok(())
}

#[test]
fn sigterm_stops_accepting_and_drains() -> Result<()> {
    let spec = ListenerSpec {
        extra: "upstream = \"127.0.0.1:9000\"\n".into(),
        ..ListenerSpec::required()
    };
    let mut fx = TlsFixture::start("term", spec, |_| Ok(()))?;
    let _up = Upstream::echo(&fx.pair.server, "127.0.0.1:9000".parse()?, false)?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let mut open = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    assert_eq!(status(&fx.agent.event()?), "Success");
    fx.agent.signal("TERM")?;
    fx.agent.wait_log("shutting down")?;
    // New connections are refused once the listening socket is closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fx.tcp(false).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The open connection keeps working until the client closes it.
    assert_eq!(echo(&mut open, b"draining")?, b"draining");
    drop(open);
    let exit = fx.agent.wait_exit(Duration::from_secs(5))?;
    assert_eq!(exit.code(), Some(0));
    Ok(())
}
