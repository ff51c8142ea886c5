//! Connection functions through the whole pipeline: agent →
//! joiner → exporter → gRPC → collector → JSON file. A revoked client's
//! record says `Failed:ConnectionFunctionDenied` with `REVOKED:<serial>`,
//! an unrevoked one `Success` with its custom data, a throwing function
//! `Failed:ConnectionFunctionError` — each exactly once.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result};
use connlog_tests::pki::{self, LeafSpec};
use connlog_tests::tlsclient::ClientSpec;
use connlog_tests::tlsfixture::{ListenerSpec, TlsFixture};
use connlog_tests::{CollectorProcess, json_records};
use serde_json::Value;

const COLLECTOR: &str = "127.0.0.1:4317";

const FUNCTION: &str = r#"import cf from 'cloudfront';

async function connectionHandler(connection) {
    const leaf = connection.clientCertificate.certificates.leaf;
    if (leaf.subject.includes('CN=boom.test')) {
        throw new Error('boom');
    }
    if (await cf.kvs().exists(leaf.serialNumber)) {
        connection.logCustomData('REVOKED:' + leaf.serialNumber);
        return connection.deny();
    }
    connection.logCustomData('OK:' + leaf.serialNumber);
    return connection.allow();
}
"#;

/// Connects with `leaf`, reads until the server closes, and returns the
/// client's port (the record's `clientPort`).
fn connect(fx: &TlsFixture, spec: &ClientSpec) -> Result<String> {
    let mut tls = fx.tls(false, spec)?;
    let port = tls.sock.local_addr()?.port().to_string();
    tls.sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 64];
    // Success: the upstream is absent, so the agent closes after the
    // handshake; denied: close_notify. Either way the read ends.
    let _ = tls.read(&mut buf);
    fx.agent.event()?;
    Ok(port)
}

#[test]
fn function_verdicts_and_custom_data_reach_the_collector_once() -> Result<()> {
    let mut spec = ListenerSpec::required();
    spec.mtls.push_str(&format!(
        "[listener.connection_function]\nfile = \"fn.js\"\nkvs = \"kvs.json\"\n\n\
         [export]\nendpoint = \"http://{COLLECTOR}\"\nbatch_max_age_ms = 50\n"
    ));
    let mut fx = TlsFixture::start("fnrec", spec, |f| {
        pki::write(f.dir.path(), "fn.js", FUNCTION)?;
        pki::write(f.dir.path(), "kvs.json", r#"{"0b:ad": "revoked"}"#)?;
        Ok(())
    })?;
    let mut collector = CollectorProcess::start_in(
        &fx.pair.server,
        COLLECTOR.parse()?,
        "[[sink]]\ntype = \"file\"\nformat = \"json\"\ndir = \"{dir}/out\"\n\
         fields = [\"connectionStatus\", \"clientPort\", \"clientLeafCertSerialNumber\", \
         \"clientLeafCertSubject\", \"connectionLogCustomData\", \"tcpFailureDetail\", \"connectionId\"]\n",
    )?;
    let leaf = |cn: &str, serial: &[u8]| {
        fx.root.leaf(&LeafSpec {
            subject: vec![(rcgen::DnType::CommonName, cn.to_string())],
            serial: serial.to_vec(),
            ..LeafSpec::default()
        })
    };
    let revoked = connect(
        &fx,
        &ClientSpec::with_leaf(&leaf("kvs.test", &[0x0b, 0xad])?),
    )?;
    let good = connect(&fx, &ClientSpec::with_leaf(&leaf("ok.test", &[0x0c])?))?;
    let boom = connect(&fx, &ClientSpec::with_leaf(&leaf("boom.test", &[0x0d])?))?;

    fx.agent.signal("TERM")?;
    fx.agent.wait_exit(Duration::from_secs(20))?;
    assert_eq!(collector.terminate()?, 0, "{}", collector.stderr());
    let records = json_records(&collector.path().join("out"))?;
    assert_eq!(records.len(), 3, "{records:?}");
    let by_port: HashMap<&str, &serde_json::Map<String, Value>> = records
        .iter()
        .map(|r| Ok((r["clientPort"].as_str().context("clientPort")?, r)))
        .collect::<Result<_>>()?;

    let r = by_port[revoked.as_str()];
    assert_eq!(r["connectionStatus"], "Failed:ConnectionFunctionDenied");
    assert_eq!(r["connectionLogCustomData"], "REVOKED:0b:ad");
    assert_eq!(r["clientLeafCertSerialNumber"], "0b:ad");
    assert_eq!(r["clientLeafCertSubject"], "CN=kvs.test");

    let r = by_port[good.as_str()];
    assert_eq!(r["connectionStatus"], "Success");
    assert_eq!(r["connectionLogCustomData"], "OK:0c");

    let r = by_port[boom.as_str()];
    assert_eq!(r["connectionStatus"], "Failed:ConnectionFunctionError");
    assert_eq!(
        r["tcpFailureDetail"],
        "uncaught exception: Error: boom at connection-function.js:6:19"
    );
    assert_eq!(r["connectionLogCustomData"], "-");
    assert_eq!(r["clientLeafCertSubject"], "CN=boom.test");
    Ok(())
}
