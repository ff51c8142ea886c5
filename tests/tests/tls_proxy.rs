//! Proxying accepted connections: the PROXY v2 header at a real upstream
//! (every TLV), bytes both ways, half-close, a large transfer, and an
//! upstream that is down.

use std::io::{Read, Write};
use std::net::SocketAddr;

use anyhow::Result;
use connlog_tests::pki::LeafSpec;
use connlog_tests::tlsclient::{ClientSpec, echo};
use connlog_tests::tlsfixture::{ListenerSpec, TlsFixture, status};
use connlog_tests::upstream::{ProxyHeader, Upstream, tlvs};

const UPSTREAM_PORT: u16 = 9000;

fn fixture(tag: &str, proxy_v2: bool) -> Result<TlsFixture> {
    let mut extra = String::new();
    // The agent and the upstream share the server namespace; the upstream
    // is started by the test after the agent (it only connects on demand).
    extra.push_str(&format!("upstream = \"127.0.0.1:{UPSTREAM_PORT}\"\n"));
    if proxy_v2 {
        extra.push_str("proxy_protocol = \"v2\"\n");
        extra.push_str("[[listener.tenant]]\nsni = [\"edge.test\"]\nid = \"dt_edge\"\n");
    }
    TlsFixture::start(
        tag,
        ListenerSpec {
            extra,
            ..ListenerSpec::required()
        },
        |_| Ok(()),
    )
}

fn upstream_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], UPSTREAM_PORT))
}

#[test]
fn proxy_v2_header_carries_every_tlv() -> Result<()> {
    let fx = fixture("px-v2", true)?;
    let up = Upstream::echo(&fx.pair.server, upstream_addr(), true)?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    for v6 in [false, true] {
        let mut tls = fx.tls(v6, &ClientSpec::with_leaf(&leaf))?;
        assert_eq!(echo(&mut tls, b"ping")?, b"ping");
        let ev = fx.agent.event()?;
        assert_eq!(status(&ev), "Success", "{ev}");
        let h = ProxyHeader::parse(&up.header()?)?;
        assert_eq!(h.command, 0x21, "version 2, PROXY");
        assert_eq!(h.family, if v6 { 0x21 } else { 0x11 });
        assert_eq!(h.src, tls.sock.local_addr()?);
        assert_eq!(h.dst, fx.addr(v6));
        let kinds: Vec<u8> = h.tlvs.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [0x02, 0x05, 0x20, 0xE1, 0xE0]);
        assert_eq!(h.tlv(0x02), Some(&b"edge.test"[..]));
        assert_eq!(h.tlv(0x05), ev["connection_id"].as_str().map(str::as_bytes));
        assert_eq!(h.tlv(0xE1), Some(&b"dt_edge"[..]));
        assert_eq!(h.tlv(0xE0), Some(leaf.der.as_slice()));
        let ssl = h.tlv(0x20).unwrap_or_default();
        assert_eq!(ssl[0], 0x07, "SSL + cert on this connection + in session");
        assert_eq!(&ssl[1..5], &[0, 0, 0, 0], "verified");
        let subs = tlvs(&ssl[5..])?;
        assert_eq!(
            subs,
            vec![
                (0x21, b"TLSv1.3".to_vec()),
                (0x22, b"client.test".to_vec()),
                (0x23, b"TLS_AES_128_GCM_SHA256".to_vec()),
            ]
        );
    }
    Ok(())
}

/// Pinned to one CPU (as in the benchmark) the agent runs tokio's
/// single-threaded scheduler and still handshakes, proxies and reports.
#[test]
fn agent_on_one_cpu_uses_the_single_threaded_scheduler() -> Result<()> {
    let fx = TlsFixture::start_on_one_cpu(
        "px-onecpu",
        ListenerSpec {
            extra: format!("upstream = \"127.0.0.1:{UPSTREAM_PORT}\"\n"),
            ..ListenerSpec::required()
        },
    )?;
    fx.agent
        .wait_log("tokio runtime scheduler=\"current_thread\"")?;
    let _up = Upstream::echo(&fx.pair.server, upstream_addr(), false)?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    for i in 0..20u8 {
        let mut tls = fx.tls(i % 2 == 1, &ClientSpec::with_leaf(&leaf))?;
        assert_eq!(echo(&mut tls, &[i; 100])?, [i; 100]);
        assert_eq!(status(&fx.agent.event()?), "Success");
    }
    Ok(())
}

#[test]
fn bytes_both_ways_half_close_and_large_transfer() -> Result<()> {
    let fx = fixture("px-echo", false)?;
    let _up = Upstream::echo(&fx.pair.server, upstream_addr(), false)?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let mut tls = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    assert_eq!(status(&fx.agent.event()?), "Success");
    // 8 MiB each way in 64 KiB round trips.
    let chunk: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..128 {
        assert!(echo(&mut tls, &chunk)? == chunk);
    }
    // Half-close: the client ends its stream; the upstream sees EOF and
    // still answers over the other direction.
    tls.conn.send_close_notify();
    tls.flush()?;
    tls.sock.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest)?;
    assert_eq!(rest, b"bye");
    Ok(())
}

#[test]
fn upstream_down_keeps_the_tls_status_and_is_logged() -> Result<()> {
    let fx = fixture("px-down", false)?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let mut tls = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Success", "the handshake succeeded: {ev}");
    let mut buf = Vec::new();
    // The agent closes the client connection.
    let _ = tls.read_to_end(&mut buf);
    assert!(buf.is_empty());
    fx.agent.wait_log("upstream unreachable")?;
    assert!(
        fx.agent.stderr().contains("failures=1"),
        "{}",
        fx.agent.stderr()
    );
    Ok(())
}

#[test]
fn idle_proxied_connection_is_closed_after_idle_timeout() -> Result<()> {
    let extra = format!("upstream = \"127.0.0.1:{UPSTREAM_PORT}\"\nidle_timeout = \"1s\"\n");
    let fx = TlsFixture::start(
        "px-idle",
        ListenerSpec {
            extra,
            ..ListenerSpec::required()
        },
        |_| Ok(()),
    )?;
    let _up = Upstream::echo(&fx.pair.server, upstream_addr(), false)?;
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let mut tls = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    assert_eq!(echo(&mut tls, b"a")?, b"a");
    assert_eq!(status(&fx.agent.event()?), "Success");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    // The agent closes the idle connection; the client sees the end.
    let _ = tls.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        waited >= std::time::Duration::from_millis(800),
        "{waited:?}"
    );
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");
    Ok(())
}
