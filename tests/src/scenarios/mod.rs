//! One client behaviour per connection status, against an agent with the
//! kernel probe, an mTLS listener with a CRL and a connection function:
//! what `cargo xtask demo` shows and what the pipeline's end-to-end test
//! checks record by record. `setup` writes the agent's side.

pub mod pki;
pub mod setup;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::Result;

use crate::Pair;
use crate::pki::Leaf;
use crate::tlsclient::{self, ClientSpec};
use pki::Clients;

/// Where the clients connect from and to.
pub struct Target<'a> {
    pub pair: &'a Pair,
    pub addr: SocketAddr,
    pub clients: &'a Clients,
    /// The listener's `handshake_timeout`.
    pub handshake_timeout: Duration,
    pub v6: bool,
}

/// Client ports of the raw SYNs whose SYN-ACK the client never answers:
/// [`setup::drop_unanswered_rsts`] drops the RST the client kernel would
/// send (IPv4, IPv6).
pub const UNANSWERED_PORTS: [u16; 2] = [45001, 45003];
/// Client ports of the raw SYNs whose SYN-ACK the client kernel resets.
const RESET_PORTS: [u16; 2] = [45002, 45004];

/// One client behaviour and what its record must carry.
pub struct Scenario {
    pub what: &'static str,
    /// `connectionStatus`.
    pub expect: &'static str,
    /// `tcpFailureDetail` (`-` when none).
    pub detail: &'static str,
    /// `clientLeafCertSerialNumber` (`-` when no certificate was sent).
    pub serial: &'static str,
    /// Whether the attempt reached the TLS terminator (`accept()`); the
    /// others are kernel-only records.
    pub accepted: bool,
    /// Runs it; returns the client's address (the record's clientIp and
    /// clientPort).
    pub run: fn(&Target) -> Result<SocketAddr>,
}

/// A scenario whose connection the terminator handles.
const fn tls(
    what: &'static str,
    expect: &'static str,
    detail: &'static str,
    serial: &'static str,
    run: fn(&Target) -> Result<SocketAddr>,
) -> Scenario {
    Scenario {
        what,
        expect,
        detail,
        serial,
        accepted: true,
        run,
    }
}

pub fn all() -> Vec<Scenario> {
    vec![
        tls(
            "valid client certificate, one echo round trip",
            "Success",
            "-",
            "00:8f:12:34",
            |t| success(t, &t.clients.good),
        ),
        tls(
            "no client certificate",
            "Failed:ClientCertMissing",
            "-",
            "-",
            |t| handshake(t, &ClientSpec::anonymous()),
        ),
        tls(
            "certificate from an unknown CA",
            "Failed:ClientCertUntrusted",
            "-",
            "21",
            |t| refused(t, &t.clients.untrusted),
        ),
        tls(
            "certificate expired in 2021",
            "Failed:ClientCertExpired",
            "-",
            "31",
            |t| refused(t, &t.clients.expired),
        ),
        tls(
            "certificate valid from 2199",
            "Failed:ClientCertNotYetValid",
            "-",
            "32",
            |t| refused(t, &t.clients.not_yet_valid),
        ),
        tls(
            "serverAuth-only extended key usage",
            "Failed:ClientCertIntentInvalid",
            "-",
            "41",
            |t| refused(t, &t.clients.server_auth_only),
        ),
        tls(
            "Ed25519 key",
            "Failed:ClientCertTypeUnsupported",
            "-",
            "51",
            |t| refused(t, &t.clients.ed25519),
        ),
        tls(
            "corrupted signature",
            "Failed:ClientCertInvalid",
            "-",
            "11",
            |t| refused(t, &t.clients.bad_signature),
        ),
        tls(
            "root + 4 intermediates + leaf",
            "Failed:ClientCertMaxChainDepthExceeded",
            "-",
            "61",
            |t| refused(t, &t.clients.too_deep),
        ),
        tls(
            "17 KB leaf certificate",
            "Failed:ClientCertMaxSizeExceeded",
            "-",
            "71",
            |t| refused(t, &t.clients.too_big),
        ),
        tls(
            "serial revoked by the CRL",
            "Failed:ClientCertRejected",
            "-",
            "66:01",
            |t| refused(t, &t.clients.crl_revoked),
        ),
        tls(
            "serial revoked in the connection function's KVS",
            "Failed:ConnectionFunctionDenied",
            "-",
            "0b:ad",
            |t| refused(t, &t.clients.kvs_revoked),
        ),
        tls(
            "connection function throws",
            "Failed:ConnectionFunctionError",
            "uncaught exception: Error: scenarios: this function fails for boom.client.test at connection-function.js:8:15",
            "00:81",
            |t| refused(t, &t.clients.function_throws),
        ),
        tls(
            "client resets mid-ClientHello",
            "Failed:TcpError",
            "rst-during-tls",
            "-",
            reset_mid_hello,
        ),
        tls(
            "client connects and stays silent",
            "Failed:TcpTimeout",
            "no-client-hello",
            "-",
            silent,
        ),
        Scenario {
            what: "SYN whose SYN-ACK is never answered (kernel only)",
            expect: "Failed:TcpTimeout",
            detail: "syn-ack-unanswered",
            serial: "-",
            accepted: false,
            run: |t| raw_syn(t, UNANSWERED_PORTS[usize::from(t.v6)]),
        },
        Scenario {
            what: "client RST while the server is in SYN_RECV (kernel only)",
            expect: "Failed:TcpError",
            detail: "client-rst-in-syn-recv",
            serial: "-",
            accepted: false,
            run: |t| raw_syn(t, RESET_PORTS[usize::from(t.v6)]),
        },
        tls(
            "plain HTTP request on the TLS port",
            "Failed:UnmappedConnectionError",
            "-",
            "-",
            http,
        ),
    ]
}

fn connect(t: &Target) -> Result<(TcpStream, SocketAddr)> {
    let stream = t.pair.client.connect(t.addr)?;
    let local = stream.local_addr()?;
    Ok((stream, local))
}

/// A handshake whose outcome the server decides; the client reads until
/// the server answers or closes, so the server's verdict is final.
fn handshake(t: &Target, spec: &ClientSpec) -> Result<SocketAddr> {
    let (stream, local) = connect(t)?;
    if let Ok(mut stream) = tlsclient::handshake(stream, spec) {
        let mut buf = [0u8; 16];
        let _ = stream.read(&mut buf);
    }
    Ok(local)
}

fn refused(t: &Target, leaf: &Leaf) -> Result<SocketAddr> {
    handshake(t, &ClientSpec::with_leaf(leaf))
}

fn success(t: &Target, leaf: &Leaf) -> Result<SocketAddr> {
    let (stream, local) = connect(t)?;
    let mut stream = tlsclient::handshake(stream, &ClientSpec::with_leaf(leaf))?;
    let echoed = tlsclient::echo(&mut stream, b"hello connlog")?;
    anyhow::ensure!(echoed == b"hello connlog", "upstream echo mismatch");
    Ok(local)
}

fn reset_mid_hello(t: &Target) -> Result<SocketAddr> {
    let hello = tlsclient::client_hello_bytes()?;
    let (mut stream, local) = connect(t)?;
    stream.write_all(&hello[..hello.len().min(20)])?;
    std::thread::sleep(Duration::from_millis(50));
    crate::reset(stream)?;
    Ok(local)
}

fn silent(t: &Target) -> Result<SocketAddr> {
    let (stream, local) = connect(t)?;
    std::thread::sleep(t.handshake_timeout + Duration::from_millis(500));
    drop(stream);
    Ok(local)
}

fn http(t: &Target) -> Result<SocketAddr> {
    let (mut stream, local) = connect(t)?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n")?;
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    Ok(local)
}

/// One SYN from scapy: no socket on the client owns it, so the client
/// kernel answers the SYN-ACK with an RST, unless [`setup::drop_unanswered_rsts`]
/// drops that RST.
fn raw_syn(t: &Target, client_port: u16) -> Result<SocketAddr> {
    let layer = if t.v6 { "IPv6" } else { "IP" };
    let script = format!(
        "from scapy.all import {layer}, TCP, send\n\
         send({layer}(dst='{dst}')/TCP(sport={client_port}, dport={dport}, flags='S', seq=1000000), verbose=0)\n",
        dst = t.addr.ip(),
        dport = t.addr.port(),
    );
    t.pair.client.exec(&["python3", "-c", &script])?;
    Ok(SocketAddr::new(t.pair.client_ip(t.v6), client_port))
}
