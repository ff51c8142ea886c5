//! Hostile input: a certificate subject full of newlines, delimiters and
//! invalid UTF-8; thousands of idle connections; clients vanishing
//! mid-handshake. Every attempt ends in one classified outcome, memory
//! stays bounded, and other clients keep being served.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use connlog_tests::pki::{LeafSpec, self_signed};
use connlog_tests::tlsclient::{ClientSpec, client_hello_bytes, echo};
use connlog_tests::tlsfixture::{ListenerSpec, TlsFixture, status};
use connlog_tests::upstream::Upstream;
use rcgen::DnType;

#[test]
fn hostile_subject_is_recorded_raw_and_printed_as_one_json_line() -> Result<()> {
    let spec = ListenerSpec {
        mtls: "mode = \"passthrough\"\n".into(),
        extra: String::new(),
    };
    let fx = TlsFixture::start("bad-subj", spec, |_| Ok(()))?;
    let placeholder = "PLACEHOLDER-PLACEHOLDER";
    let mut leaf = self_signed(&LeafSpec {
        subject: vec![
            (DnType::OrganizationName, "a\nb\tc, O=fake\"x\\y%0A".into()),
            (DnType::CommonName, placeholder.into()),
        ],
        ..LeafSpec::default()
    })?;
    // Invalid UTF-8 inside the CN's UTF8String (same length, so the DER
    // stays well-formed; passthrough mode does not check the signature).
    let hostile: &[u8] = b"\xff\xfe\n\r\x00,=;\t|\xc3(PLACEHOLDER";
    assert_eq!(hostile.len(), placeholder.len());
    // Self-signed: the issuer carries the same name; patch both.
    for _ in 0..2 {
        let pos = (leaf.der.windows(placeholder.len()))
            .position(|w| w == placeholder.as_bytes())
            .context("placeholder")?;
        leaf.der[pos..pos + hostile.len()].copy_from_slice(hostile);
    }
    let _tls = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    let ev = fx.agent.event()?;
    assert_eq!(
        ev["unparsable"],
        serde_json::Value::Null,
        "the event line is valid JSON: {ev}"
    );
    assert_eq!(status(&ev), "Success", "{ev}");
    assert_eq!(
        ev["cert"]["subject"],
        "O=a\nb\tc, O=fake\"x\\y%0A, CN=\u{fffd}\u{fffd}\n\r\u{0},=;\t|\u{fffd}(PLACEHOLDER"
    );
    assert_eq!(ev["cert"]["issuer"], ev["cert"]["subject"]);
    Ok(())
}

/// Waits for `n` events, returning how many had each status.
fn drain(fx: &TlsFixture, n: usize) -> Result<std::collections::BTreeMap<String, usize>> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let ev = fx.agent.event()?;
        *counts
            .entry(format!(
                "{} {}",
                status(&ev),
                ev["detail"].as_str().unwrap_or("-")
            ))
            .or_insert(0) += 1;
    }
    Ok(counts)
}

#[test]
fn two_thousand_idle_connections_stay_bounded_and_others_are_served() -> Result<()> {
    const IDLE: usize = 2_000;
    const PROXIED: usize = 200;
    let spec = ListenerSpec {
        extra: "handshake_timeout = \"60s\"\nupstream = \"127.0.0.1:9000\"\n".into(),
        ..ListenerSpec::required()
    };
    let fx = TlsFixture::start("bad-idle", spec, |_| Ok(()))?;
    let _up = Upstream::echo(&fx.pair.server, "127.0.0.1:9000".parse()?, false)?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let warm = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    assert_eq!(status(&fx.agent.event()?), "Success");
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));
    let before = fx.agent.rss_kib()?;

    // Idle TCP connections that never send a byte.
    let idle = fx.pair.client.connect_many(fx.addr(false), IDLE)?;
    // A normal client is still served promptly.
    let started = Instant::now();
    let mut tls = fx.tls(true, &ClientSpec::with_leaf(&leaf))?;
    assert_eq!(echo(&mut tls, b"x")?, b"x");
    assert_eq!(status(&fx.agent.event()?), "Success");
    assert!(started.elapsed() < Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let with_idle = fx.agent.rss_kib()?;
    let per_idle = (with_idle.saturating_sub(before)) * 1024 / IDLE as u64;
    assert!(
        per_idle < 16 * 1024,
        "{per_idle} bytes per idle pre-TLS connection"
    );

    // Idle proxied connections (handshake done, nothing flowing).
    let mut proxied = Vec::new();
    for _ in 0..PROXIED {
        let mut t = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
        assert_eq!(echo(&mut t, b"p")?, b"p");
        proxied.push(t);
    }
    let counts = drain(&fx, PROXIED)?;
    assert_eq!(counts.get("Success -"), Some(&PROXIED), "{counts:?}");
    std::thread::sleep(Duration::from_millis(300));
    let with_proxied = fx.agent.rss_kib()?;
    let per_proxied = (with_proxied.saturating_sub(with_idle)) * 1024 / PROXIED as u64;
    eprintln!(
        "rss: before {before} KiB, +{IDLE} idle {with_idle} KiB, +{PROXIED} proxied {with_proxied} KiB"
    );
    eprintln!(
        "per idle pre-TLS connection {per_idle} B, per idle proxied connection {per_proxied} B"
    );
    assert!(
        per_proxied < 64 * 1024,
        "{per_proxied} bytes per idle proxied connection"
    );

    // Every idle connection ends in one classified outcome when it goes.
    drop(idle);
    let counts = drain(&fx, IDLE)?;
    assert_eq!(
        counts.get("Failed:TcpError eof-during-tls"),
        Some(&IDLE),
        "{counts:?}"
    );
    Ok(())
}

#[test]
fn vanishing_clients_are_classified_and_others_served() -> Result<()> {
    let fx = TlsFixture::start("bad-vanish", ListenerSpec::required(), |_| Ok(()))?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let hello = client_hello_bytes()?;
    for i in 0..40 {
        let mut tcp = fx.tcp(i % 2 == 0)?;
        tcp.write_all(&hello[..hello.len() * (i % 4 + 1) / 5])?;
        connlog_tests::reset(tcp)?;
        let _ok = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    }
    let counts = drain(&fx, 80)?;
    assert_eq!(
        counts.get("Failed:TcpError rst-during-tls"),
        Some(&40),
        "{counts:?}"
    );
    assert_eq!(counts.get("Success -"), Some(&40), "{counts:?}");
    Ok(())
}
