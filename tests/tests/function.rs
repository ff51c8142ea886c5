//! Connection functions end to end (SPEC.md section 5): the real
//! agent in a network namespace with `[listener.connection_function]`,
//! real TLS clients (rustls, and openssl s_client as an independent peer),
//! exact statuses, custom data and error details from the agent's events.

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use connlog_tests::pki::{self, Leaf, LeafSpec};
use connlog_tests::tlsclient::{self, ClientSpec, TlsStream};
use connlog_tests::tlsfixture::{ListenerSpec, TlsFixture, status};
use serde_json::Value;

/// CloudFront's documented revocation example, plus custom data.
const REVOCATION: &str = r#"import cf from 'cloudfront';

async function connectionHandler(connection) {
    const kvsHandle = cf.kvs();
    const serial = connection.clientCertificate.certificates.leaf.serialNumber;
    if (await kvsHandle.exists(serial)) {
        connection.logCustomData('REVOKED:' + serial);
        return connection.deny();
    }
    connection.logCustomData('OK:' + serial + ' sni=' + connection.endpoint);
    return connection.allow();
}
"#;

const GOOD_SERIAL: &str = "00:8f:12:34";
const REVOKED_SERIAL: &str = "00:8f:12:35";

/// A fixture whose listener runs `source` with `kvs`.
fn start(tag: &str, mode: &str, source: &str, kvs: &str) -> Result<TlsFixture> {
    let mut spec = ListenerSpec::mode(mode);
    spec.mtls
        .push_str("[listener.connection_function]\nfile = \"fn.js\"\nkvs = \"kvs.json\"\n");
    let (source, kvs) = (source.to_owned(), kvs.to_owned());
    TlsFixture::start(tag, spec, move |f| {
        pki::write(f.dir.path(), "fn.js", &source)?;
        pki::write(f.dir.path(), "kvs.json", &kvs)?;
        Ok(())
    })
}

/// A `required` listener running the revocation function with
/// `REVOKED_SERIAL` revoked in its KVS, and a client leaf with that serial.
fn start_revocation(tag: &str) -> Result<(TlsFixture, Leaf)> {
    let kvs = format!(r#"{{"{REVOKED_SERIAL}": "key-compromise"}}"#);
    let fx = start(tag, "required", REVOCATION, &kvs)?;
    let revoked = fx.root.leaf(&LeafSpec {
        serial: vec![0x8f, 0x12, 0x35],
        ..LeafSpec::default()
    })?;
    Ok((fx, revoked))
}

/// Reads until the server closes: `Ok(())` on a clean close (what a
/// function's deny looks like to the client: close_notify, then FIN).
fn read_to_close(mut tls: TlsStream) -> Result<()> {
    tls.sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).context("reading until close")?;
    ensure!(buf.is_empty(), "unexpected data {buf:?}");
    Ok(())
}

fn sni(leaf: &Leaf, name: &str) -> ClientSpec {
    let mut spec = ClientSpec::with_leaf(leaf);
    spec.sni = Some(name.into());
    spec
}

#[test]
fn revoked_client_denied_unrevoked_succeeds_with_custom_data() -> Result<()> {
    let (fx, revoked) = start_revocation("fn-rev")?;
    read_to_close(fx.tls(false, &ClientSpec::with_leaf(&revoked))?)?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:ConnectionFunctionDenied", "{ev}");
    assert_eq!(
        ev["custom_data"],
        format!("REVOKED:{REVOKED_SERIAL}"),
        "{ev}"
    );
    assert_eq!(ev["cert"]["serial"], REVOKED_SERIAL, "{ev}");
    assert_eq!(ev["detail"], Value::Null, "{ev}");

    // An unrevoked client, through openssl s_client (an independent peer).
    let good = fx.root.leaf(&LeafSpec::default())?;
    let dir = fx.dir.path();
    pki::write(dir, "good.pem", &pki::pem("CERTIFICATE", &[&good.der]))?;
    pki::write(
        dir,
        "good.key",
        &pki::pem("PRIVATE KEY", &[&good.key_pkcs8]),
    )?;
    let out = fx
        .pair
        .client
        .command("openssl")
        .args(["s_client", "-connect", &fx.addr(false).to_string()])
        .args(["-servername", "edge.test", "-CAfile"])
        .arg(dir.join("ca.pem"))
        .arg("-cert")
        .arg(dir.join("good.pem"))
        .arg("-key")
        .arg(dir.join("good.key"))
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Verify return code: 0 (ok)"), "{stdout}");
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_eq!(
        ev["custom_data"],
        format!("OK:{GOOD_SERIAL} sni=edge.test"),
        "{ev}"
    );
    assert_eq!(ev["cert"]["serial"], GOOD_SERIAL, "{ev}");

    // SIGHUP re-reads the store: un-revoked, the same client succeeds.
    pki::write(dir, "kvs.json", "{}")?;
    fx.agent.signal("HUP")?;
    fx.agent.wait_log("reloaded")?;
    let _tls = fx.tls(false, &ClientSpec::with_leaf(&revoked))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_eq!(
        ev["custom_data"],
        format!("OK:{REVOKED_SERIAL} sni=edge.test"),
        "{ev}"
    );
    Ok(())
}

/// One function, dispatching on SNI to each way a function can fail.
const MISBEHAVING: &str = r#"import cf from 'cloudfront';
async function connectionHandler(c) {
    c.logCustomData('seen:' + c.endpoint);
    switch (c.endpoint) {
    case 'throw.test': throw new TypeError('no such device');
    case 'loop.test': for (;;) {}
    case 'hog.test': { const a = []; for (;;) a.push(new Array(10000).fill(1)); }
    case 'nothing.test': return;
    case 'kvs.test': c.logCustomData('tier=' + await cf.kvs().get('tier')); return c.allow();
    }
}
"#;

#[test]
fn throw_loop_hog_and_silence_give_exact_statuses() -> Result<()> {
    let fx = start("fn-err", "required", MISBEHAVING, r#"{"tier": "gold"}"#)?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let cases = [
        (
            "throw.test",
            "Failed:ConnectionFunctionError",
            Value::from(
                "uncaught exception: TypeError: no such device at connection-function.js:5:34",
            ),
            "seen:throw.test",
        ),
        (
            "loop.test",
            "Failed:ConnectionFunctionError",
            Value::from("execution time limit (5 ms) exceeded"),
            "seen:loop.test",
        ),
        (
            "hog.test",
            "Failed:ConnectionFunctionError",
            Value::from("memory limit (2 MB) exceeded"),
            "seen:hog.test",
        ),
        (
            "nothing.test",
            "Failed:ConnectionFunctionDenied",
            Value::Null,
            "seen:nothing.test",
        ),
        ("kvs.test", "Success", Value::Null, "tier=gold"),
    ];
    for (name, expected, detail, custom) in cases {
        let tls = fx.tls(false, &sni(&leaf, name))?;
        if expected != "Success" {
            read_to_close(tls)?;
        }
        let ev = fx.agent.event()?;
        assert_eq!(status(&ev), expected, "{name}: {ev}");
        assert_eq!(ev["detail"], detail, "{name}: {ev}");
        assert_eq!(ev["custom_data"], custom, "{name}: {ev}");
    }
    // The agent kept serving throughout, and says why functions failed.
    assert!(fx.agent.stderr().contains("connection function failed"));
    Ok(())
}

#[test]
fn optional_mode_without_certificate_runs_the_function() -> Result<()> {
    let source = "function connectionHandler(c) { \
        c.logCustomData('cert=' + c.clientCertificate + ' ip=' + c.clientIp); c.allow(); }";
    let fx = start("fn-opt", "optional", source, "{}")?;
    let _tls = fx.tls(false, &ClientSpec::anonymous())?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_eq!(
        ev["custom_data"],
        format!("cert=null ip={}", fx.pair.client_v4),
        "{ev}"
    );
    // A certificate failure wins: the function never runs.
    let other = connlog_tests::pki::Ca::root("other root")?.leaf(&LeafSpec::default())?;
    let _ = fx
        .tls(false, &ClientSpec::with_leaf(&other))
        .map(read_to_close);
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:ClientCertUntrusted", "{ev}");
    assert_eq!(ev["custom_data"], Value::Null, "{ev}");
    Ok(())
}

const V1: &str = "function connectionHandler(c) { c.logCustomData('v1'); c.allow(); }";
const V2: &str = "function connectionHandler(c) { c.logCustomData('v2'); c.deny(); }";

#[test]
fn reload_under_load_swaps_function_and_survives_a_broken_one() -> Result<()> {
    let fx = start("fn-rld", "required", V1, "{}")?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let spec = ClientSpec::with_leaf(&leaf);
    let (client_ns, addr) = (&fx.pair.client, fx.addr(false));
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    // Waits until the load made `more` further attempts (bounded in time).
    let after = |more: usize| -> Result<()> {
        let target = done.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(20);
        while done.load(Ordering::Relaxed) < target {
            ensure!(Instant::now() < deadline, "load stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    };
    let attempts = std::thread::scope(|s| -> Result<usize> {
        // One client in a loop, bounded in count and time.
        let load = s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed)
                && done.load(Ordering::Relaxed) < 2_000
                && Instant::now() < deadline
            {
                let tls = client_ns
                    .connect(addr)
                    .and_then(|t| tlsclient::handshake(t, &spec));
                if let Ok(tls) = tls {
                    let _ = read_to_close(tls);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
        let steps = || -> Result<()> {
            after(5)?;
            pki::write(fx.dir.path(), "fn.js", V2)?;
            fx.agent.signal("HUP")?;
            fx.agent.wait_log("reloaded")?;
            after(5)?;
            let broken = "function connectionHandler(c) {\n  c.deny(;\n}\n";
            pki::write(fx.dir.path(), "fn.js", broken)?;
            fx.agent.signal("HUP")?;
            fx.agent.wait_log("reload failed")?;
            after(5)
        };
        let stepped = steps();
        stop.store(true, Ordering::Relaxed);
        load.join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))?;
        stepped.map(|()| done.load(Ordering::Relaxed))
    })?;
    assert!(attempts >= 15, "only {attempts} connections under load");

    // Every attempt got exactly one event: v1 allowed, then v2 denied, never
    // anything else (no error, no Internal), in that order.
    let (mut v1, mut v2) = (0, 0);
    for _ in 0..attempts {
        let ev = fx.agent.event()?;
        match (status(&ev), ev["custom_data"].as_str()) {
            ("Success", Some("v1")) => {
                assert_eq!(v2, 0, "v1 after v2: {ev}");
                v1 += 1;
            }
            ("Failed:ConnectionFunctionDenied", Some("v2")) => v2 += 1,
            _ => panic!("unexpected event {ev}"),
        }
    }
    assert!(v1 >= 5 && v2 >= 9, "v1 {v1}, v2 {v2}");
    let log = fx.agent.stderr();
    assert!(log.contains("syntax error at line 2, column 10"), "{log}");
    // The broken file was refused: the v2 function still decides.
    read_to_close(fx.tls(false, &spec)?)?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:ConnectionFunctionDenied", "{ev}");
    assert_eq!(ev["custom_data"], "v2", "{ev}");
    Ok(())
}

#[test]
fn broken_function_files_stop_the_agent_with_one_line_errors() -> Result<()> {
    let dir = connlog_tests::TempDir::new("fn-cfg")?;
    let config = "[probe]\nenabled = false\n[[listener]]\ndistribution_id = \"E1\"\n\
        bind = [\"127.0.0.1:0\"]\ncert = \"server.pem\"\nkey = \"server.key\"\n\
        [listener.mtls]\nmode = \"required\"\ntrust_store = \"ca.pem\"\n\
        [listener.connection_function]\nfile = \"fn.js\"\nkvs = \"kvs.json\"\n";
    let path = pki::write(dir.path(), "agent.toml", config)?;
    let js = dir.path().join("fn.js").display().to_string();
    let kvs = dir.path().join("kvs.json").display().to_string();
    let key = "listener[0].connection_function";
    let cases = [
        (
            "function connectionHandler(c) {\n  c.deny(;\n}\n".to_string(),
            "{}".to_string(),
            format!("{key}.file: {js}: syntax error at line 2, column 10: "),
        ),
        (
            format!("{V1}\n//{}", "x".repeat(10 * 1024)),
            "{}".to_string(),
            format!(
                "{key}.file: {js}: function source of {} bytes is over the 10240-byte limit",
                V1.len() + 3 + 10 * 1024
            ),
        ),
        (
            "function handler(c) { c.allow(); }".to_string(),
            "{}".to_string(),
            format!("{key}.file: {js}: no `connectionHandler` function is defined"),
        ),
        (
            V1.to_string(),
            format!(r#"{{"{}": "v"}}"#, "k".repeat(513)),
            format!("{key}.kvs: {kvs}: kvs: key "),
        ),
    ];
    for (source, store, expected) in cases {
        pki::write(dir.path(), "fn.js", &source)?;
        pki::write(dir.path(), "kvs.json", &store)?;
        let (code, stderr) = connlog_tests::agent::start_failure(&path)?;
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert_eq!(
            stderr.matches(&expected).count(),
            1,
            "expected {expected:?} once in {stderr}"
        );
    }
    Ok(())
}

#[test]
fn function_sees_leaf_intermediates_and_connection_fields() -> Result<()> {
    let source = r#"function connectionHandler(c) {
    const certs = c.clientCertificate.certificates;
    const leaf = certs.leaf;
    c.logCustomData([leaf.serialNumber, leaf.subject, leaf.issuer,
        leaf.validity.notBefore, leaf.validity.notAfter, leaf.sha256Fingerprint,
        certs.intermediates.length, certs.intermediates[0].subject,
        c.distributionId, c.endpoint, c.clientIp, c.connectionId.length].join('|'));
    c.allow();
}"#;
    let fx = start("fn-fld", "required", source, "{}")?;
    let mid = fx.root.intermediate("connlog test intermediate")?;
    let leaf = mid.leaf(&LeafSpec::default())?;
    let _tls = fx.tls(false, &sni(&leaf, "fields.edge.test"))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "{ev}");
    let expected = [
        GOOD_SERIAL.to_string(),
        "C=US, O=Example, CN=client.test".into(),
        "CN=connlog test intermediate".into(),
        "2025-06-05T00:00:00Z".into(),
        "2125-05-12T00:00:00Z".into(),
        connlog_tests::tlsfixture::sha256_hex(&leaf.der),
        "1".into(),
        "CN=connlog test intermediate".into(),
        "E2DX1SLDPK0123".into(),
        "fields.edge.test".into(),
        fx.pair.client_v4.to_string(),
        "24".into(),
    ]
    .join("|");
    assert_eq!(ev["custom_data"], expected, "{ev}");
    assert_eq!(ev["connection_id"].as_str().map(str::len), Some(24), "{ev}");
    Ok(())
}

/// Python's `ssl` client (OpenSSL, an independent peer): the handshake
/// completes, then the server's clean close. `suppress_ragged_eofs=False`
/// tells `close_notify` (`b''`) from a bare FIN (`SSLEOFError`) and from
/// a TLS alert (`SSLError` with its reason).
const PY_CLIENT: &str = r#"
import socket, ssl, sys
host, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
sock = socket.create_connection((host, port), timeout=10)
tls = ctx.wrap_socket(sock, server_hostname='edge.test', suppress_ragged_eofs=False)
print('handshake ' + tls.version())
try:
    print('read ' + repr(tls.recv(1)))
except ssl.SSLEOFError:
    print('eof without close_notify')
except ssl.SSLError as e:
    print('alert ' + str(e.reason))
"#;

/// What a denied client sees: the function runs once
/// rustls finished the handshake, when rustls 0.23 can no longer send an
/// alert, so a deny is a completed handshake followed by `close_notify`.
#[test]
fn denied_client_sees_a_completed_handshake_then_close_notify() -> Result<()> {
    let (fx, revoked) = start_revocation("fn-py")?;
    let dir = fx.dir.path();
    pki::write(dir, "rev.pem", &pki::pem("CERTIFICATE", &[&revoked.der]))?;
    pki::write(
        dir,
        "rev.key",
        &pki::pem("PRIVATE KEY", &[&revoked.key_pkcs8]),
    )?;
    let addr = fx.addr(false);
    let out = fx
        .pair
        .client
        .command("python3")
        .args([
            "-c",
            PY_CLIENT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ])
        .arg(dir.join("ca.pem"))
        .arg(dir.join("rev.pem"))
        .arg(dir.join("rev.key"))
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "handshake TLSv1.3\nread b''\n", "{stderr}");
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:ConnectionFunctionDenied", "{ev}");
    assert_eq!(
        ev["custom_data"],
        format!("REVOKED:{REVOKED_SERIAL}"),
        "{ev}"
    );
    Ok(())
}
