//! Hostile input: a certificate subject full of newlines, delimiters and
//! invalid UTF-8; 10k idle connections; clients vanishing
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

/// The client side holds every idle connection: make sure this process
/// may open that many descriptors.
fn raise_own_fd_limit(need: u64) -> Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    anyhow::ensure!(
        hard >= need,
        "the hard open-file limit {hard} is below the {need} this test needs"
    );
    if limit.current.unwrap_or(u64::MAX) < need {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(())
}

/// 10k TCP connections that never send a byte, against an agent started
/// with the usual soft open-file limit of 1024: the agent raises its own
/// limit, accepts all of them, keeps serving a real mTLS client and idle
/// proxied connections meanwhile, stays under 64 MiB of extra RSS (≈ 6.5 KiB
/// per connection), and ends every one in exactly one classified outcome:
/// the half the clients close as `TcpError eof-during-tls`, the half left
/// open as `TcpTimeout no-client-hello` when `handshake_timeout` passes.
#[test]
fn ten_thousand_idle_connections_are_classified_bounded_and_others_served() -> Result<()> {
    const IDLE: usize = 10_000;
    const PROXIED: usize = 100;
    const RSS_BOUND_KIB: u64 = 64 * 1024;
    raise_own_fd_limit(IDLE as u64 + 1_000)?;
    let spec = ListenerSpec {
        extra: "handshake_timeout = \"12s\"\nupstream = \"127.0.0.1:9000\"\n".into(),
        ..ListenerSpec::required()
    };
    let fx = TlsFixture::start_with_nofile_soft("bad-idle", spec, 1024)?;
    let (soft, hard) = fx.agent.nofile_limits()?;
    assert_eq!(soft, hard, "the agent raises its soft open-file limit");
    let _up = Upstream::echo(&fx.pair.server, "127.0.0.1:9000".parse()?, false)?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let mut warm = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    assert_eq!(echo(&mut warm, b"w")?, b"w");
    assert_eq!(status(&fx.agent.event()?), "Success");
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));
    let before = fx.agent.rss_kib()?;

    // Idle TCP connections that never send a byte, half over IPv6.
    let opened = Instant::now();
    let mut idle = fx.pair.client.connect_many(fx.addr(false), IDLE / 2)?;
    idle.extend(fx.pair.client.connect_many(fx.addr(true), IDLE / 2)?);
    eprintln!("{IDLE} connections opened in {:?}", opened.elapsed());
    // A real mTLS client is still served promptly, end to end.
    let mut tls = fx.tls(true, &ClientSpec::with_leaf(&leaf))?;
    assert_eq!(echo(&mut tls, b"x")?, b"x");
    assert!(opened.elapsed() < Duration::from_secs(8));
    // Idle proxied connections (handshake done, nothing flowing).
    let mut proxied = Vec::new();
    for _ in 0..PROXIED {
        let mut t = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
        assert_eq!(echo(&mut t, b"p")?, b"p");
        proxied.push(t);
    }
    std::thread::sleep(Duration::from_millis(300));
    let with_idle = fx.agent.rss_kib()?;
    let grown = with_idle.saturating_sub(before);
    eprintln!(
        "agent rss: before {before} KiB, with {IDLE} idle + {PROXIED} proxied {with_idle} KiB \
         (+{} B per connection)",
        grown * 1024 / (IDLE + PROXIED) as u64
    );
    assert!(
        grown < RSS_BOUND_KIB,
        "agent RSS grew by {grown} KiB for {IDLE} idle connections"
    );
    // Half the idle clients go away; the rest are timed out by the agent.
    let kept = idle.split_off(IDLE / 2);
    drop(idle);
    // Before the first connection's 12 s handshake_timeout.
    assert!(
        opened.elapsed() < Duration::from_secs(11),
        "too slow to tell the closed from the timed-out connections"
    );
    let counts = drain(&fx, IDLE + PROXIED + 1)?;
    let expected: std::collections::BTreeMap<String, usize> = [
        ("Failed:TcpError eof-during-tls".to_string(), IDLE / 2),
        ("Failed:TcpTimeout no-client-hello".to_string(), IDLE / 2),
        ("Success -".to_string(), PROXIED + 1),
    ]
    .into();
    assert_eq!(counts, expected);
    assert!(fx.agent.no_event_within(Duration::from_millis(300)));
    // Still serving after all of it.
    let mut after = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    assert_eq!(echo(&mut after, b"y")?, b"y");
    assert_eq!(status(&fx.agent.event()?), "Success");
    drop((kept, tls, proxied));
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
