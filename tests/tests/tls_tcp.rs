//! TCP-level and protocol failures during the TLS handshake: resets,
//! EOFs, timeouts (silent and slowloris clients), not-TLS bytes, oversized
//! ClientHellos. Each ends in exactly one classified outcome.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use anyhow::Result;
use connlog_tests::pki::LeafSpec;
use connlog_tests::tlsclient::{ClientSpec, client_hello_bytes};
use connlog_tests::tlsfixture::{ListenerSpec, TlsFixture, status};
use serde_json::Value;

fn start(tag: &str, timeout: &str) -> Result<TlsFixture> {
    let spec = ListenerSpec {
        extra: format!("handshake_timeout = \"{timeout}\"\n"),
        ..ListenerSpec::required()
    };
    TlsFixture::start(tag, spec, |_| Ok(()))
}

fn detail(ev: &Value) -> &str {
    ev["detail"].as_str().unwrap_or("<none>")
}

#[test]
fn reset_mid_client_hello_is_tcp_error() -> Result<()> {
    let fx = start("tcp-rst", "10s")?;
    let hello = client_hello_bytes()?;
    let mut tcp = fx.tcp(false)?;
    tcp.write_all(&hello[..hello.len() / 2])?;
    std::thread::sleep(Duration::from_millis(100));
    connlog_tests::reset(tcp)?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:TcpError", "{ev}");
    assert_eq!(detail(&ev), "rst-during-tls");
    assert_eq!(ev["sni"], Value::Null);
    assert!(ev["handshake_ms"].is_u64(), "{ev}");
    Ok(())
}

#[test]
fn reset_after_server_hello_is_tcp_error() -> Result<()> {
    let fx = start("tcp-rst2", "10s")?;
    let hello = client_hello_bytes()?;
    let mut tcp = fx.tcp(true)?;
    tcp.write_all(&hello)?;
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf)?;
    assert!(n > 5 && buf[0] == 0x16, "a ServerHello record came back");
    connlog_tests::reset(tcp)?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:TcpError", "{ev}");
    assert_eq!(detail(&ev), "rst-during-tls");
    assert_eq!(
        ev["sni"], "edge.test",
        "SNI is known once the ClientHello arrived"
    );
    Ok(())
}

#[test]
fn eof_mid_client_hello_is_tcp_error() -> Result<()> {
    let fx = start("tcp-eof", "10s")?;
    let hello = client_hello_bytes()?;
    let mut tcp = fx.tcp(false)?;
    tcp.write_all(&hello[..10])?;
    tcp.shutdown(Shutdown::Write)?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:TcpError", "{ev}");
    assert_eq!(detail(&ev), "eof-during-tls");
    Ok(())
}

#[test]
fn silent_client_times_out() -> Result<()> {
    let fx = start("tcp-silent", "1s")?;
    let _tcp = fx.tcp(false)?;
    let started = Instant::now();
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:TcpTimeout", "{ev}");
    assert_eq!(detail(&ev), "no-client-hello");
    assert_eq!(ev["handshake_ms"], Value::Null, "no byte ever arrived");
    assert!(started.elapsed() < Duration::from_secs(6));
    Ok(())
}

#[test]
fn slowloris_client_times_out() -> Result<()> {
    let fx = start("tcp-slow", "2s")?;
    let hello = client_hello_bytes()?;
    let mut tcp = fx.tcp(false)?;
    // One byte per second: the ClientHello never completes in time.
    let writer = std::thread::spawn(move || {
        for b in hello.iter().take(4) {
            if tcp.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:TcpTimeout", "{ev}");
    assert_eq!(detail(&ev), "no-client-hello");
    let ms = ev["handshake_ms"].as_u64().unwrap_or(0);
    assert!(
        (1_800..=4_000).contains(&ms),
        "measured from the first byte: {ev}"
    );
    let _ = writer.join();
    Ok(())
}

#[test]
fn stall_after_client_hello_times_out() -> Result<()> {
    let fx = start("tcp-stall", "1s")?;
    let mut tcp = fx.tcp(false)?;
    tcp.write_all(&client_hello_bytes()?)?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:TcpTimeout", "{ev}");
    assert_eq!(detail(&ev), "handshake-timeout");
    assert_eq!(ev["sni"], "edge.test");
    Ok(())
}

#[test]
fn http_request_is_unmapped() -> Result<()> {
    let fx = start("tcp-http", "10s")?;
    let mut tcp = fx.tcp(false)?;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n")?;
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:UnmappedConnectionError", "{ev}");
    Ok(())
}

#[test]
fn garbage_and_huge_client_hello_are_unmapped_and_others_still_served() -> Result<()> {
    let fx = start("tcp-garb", "10s")?;
    // Random-looking bytes.
    let mut tcp = fx.tcp(false)?;
    let garbage: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = tcp.write_all(&garbage);
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:UnmappedConnectionError", "{ev}");

    // A ClientHello claiming 1 MiB, sent as handshake records until the
    // server gives up (at most 1 MiB).
    let mut tcp = fx.tcp(true)?;
    let mut first = vec![0x01, 0x10, 0x00, 0x00]; // ClientHello, length 1 MiB
    first.extend(std::iter::repeat_n(0x41, 16_380));
    let mut sent = 0usize;
    let mut body = first;
    while sent < 1 << 20 {
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend_from_slice(&u16::try_from(body.len())?.to_be_bytes());
        record.extend_from_slice(&body);
        if tcp.write_all(&record).is_err() {
            break;
        }
        sent += body.len();
        body = vec![0x41; 16_384];
    }
    let ev = fx.agent.event()?;
    assert_eq!(status(&ev), "Failed:UnmappedConnectionError", "{ev}");

    // The listener still serves a normal client.
    let leaf = fx.root.leaf(&LeafSpec::default())?;
    let _tls = fx.tls(false, &ClientSpec::with_leaf(&leaf))?;
    assert_eq!(status(&fx.agent.event()?), "Success");
    Ok(())
}
