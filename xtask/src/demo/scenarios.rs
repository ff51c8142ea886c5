//! What the demo's clients do: one scenario per connection status.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::Result;
use connlog_tests::Pair;
use connlog_tests::pki::Leaf;
use connlog_tests::tlsclient::{self, ClientSpec};

use super::pki::Clients;

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
/// the demo's nft rule in the client namespace drops the RST its kernel
/// would send (IPv4, IPv6).
pub const UNANSWERED_PORTS: [u16; 2] = [45001, 45003];
/// Client ports of the raw SYNs whose SYN-ACK the client kernel resets.
const RESET_PORTS: [u16; 2] = [45002, 45004];

/// One client behaviour and the status its record must carry.
pub struct Scenario {
    pub what: &'static str,
    pub expect: &'static str,
    pub run: fn(&Target) -> Result<()>,
}

pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            what: "valid client certificate, one echo round trip",
            expect: "Success",
            run: |t| success(t, &t.clients.good),
        },
        Scenario {
            what: "no client certificate",
            expect: "Failed:ClientCertMissing",
            run: |t| tls(t, &ClientSpec::anonymous()),
        },
        Scenario {
            what: "certificate from an unknown CA",
            expect: "Failed:ClientCertUntrusted",
            run: |t| refused(t, &t.clients.untrusted),
        },
        Scenario {
            what: "certificate expired in 2021",
            expect: "Failed:ClientCertExpired",
            run: |t| refused(t, &t.clients.expired),
        },
        Scenario {
            what: "certificate valid from 2199",
            expect: "Failed:ClientCertNotYetValid",
            run: |t| refused(t, &t.clients.not_yet_valid),
        },
        Scenario {
            what: "serverAuth-only extended key usage",
            expect: "Failed:ClientCertIntentInvalid",
            run: |t| refused(t, &t.clients.server_auth_only),
        },
        Scenario {
            what: "Ed25519 key",
            expect: "Failed:ClientCertTypeUnsupported",
            run: |t| refused(t, &t.clients.ed25519),
        },
        Scenario {
            what: "corrupted signature",
            expect: "Failed:ClientCertInvalid",
            run: |t| refused(t, &t.clients.bad_signature),
        },
        Scenario {
            what: "root + 4 intermediates + leaf",
            expect: "Failed:ClientCertMaxChainDepthExceeded",
            run: |t| refused(t, &t.clients.too_deep),
        },
        Scenario {
            what: "17 KB leaf certificate",
            expect: "Failed:ClientCertMaxSizeExceeded",
            run: |t| refused(t, &t.clients.too_big),
        },
        Scenario {
            what: "serial revoked by the CRL",
            expect: "Failed:ClientCertRejected",
            run: |t| refused(t, &t.clients.crl_revoked),
        },
        Scenario {
            what: "serial revoked in the connection function's KVS",
            expect: "Failed:ConnectionFunctionDenied",
            run: |t| refused(t, &t.clients.kvs_revoked),
        },
        Scenario {
            what: "connection function throws",
            expect: "Failed:ConnectionFunctionError",
            run: |t| refused(t, &t.clients.function_throws),
        },
        Scenario {
            what: "client resets mid-ClientHello",
            expect: "Failed:TcpError",
            run: reset_mid_hello,
        },
        Scenario {
            what: "client connects and stays silent",
            expect: "Failed:TcpTimeout",
            run: silent,
        },
        Scenario {
            what: "SYN whose SYN-ACK is never answered (kernel only)",
            expect: "Failed:TcpTimeout",
            run: |t| raw_syn(t, UNANSWERED_PORTS[usize::from(t.v6)]),
        },
        Scenario {
            what: "client RST while the server is in SYN_RECV (kernel only)",
            expect: "Failed:TcpError",
            run: |t| raw_syn(t, RESET_PORTS[usize::from(t.v6)]),
        },
        Scenario {
            what: "plain HTTP request on the TLS port",
            expect: "Failed:UnmappedConnectionError",
            run: http,
        },
    ]
}

fn connect(t: &Target) -> Result<TcpStream> {
    t.pair.client.connect(t.addr)
}

/// A handshake whose outcome the server decides; the client reads until
/// the server answers or closes, so the server's verdict is final.
fn tls(t: &Target, spec: &ClientSpec) -> Result<()> {
    if let Ok(mut stream) = tlsclient::handshake(connect(t)?, spec) {
        let mut buf = [0u8; 16];
        let _ = stream.read(&mut buf);
    }
    Ok(())
}

fn refused(t: &Target, leaf: &Leaf) -> Result<()> {
    tls(t, &ClientSpec::with_leaf(leaf))
}

fn success(t: &Target, leaf: &Leaf) -> Result<()> {
    let mut stream = tlsclient::handshake(connect(t)?, &ClientSpec::with_leaf(leaf))?;
    let echoed = tlsclient::echo(&mut stream, b"hello connlog")?;
    anyhow::ensure!(echoed == b"hello connlog", "upstream echo mismatch");
    Ok(())
}

fn reset_mid_hello(t: &Target) -> Result<()> {
    let hello = tlsclient::client_hello_bytes()?;
    let mut stream = connect(t)?;
    stream.write_all(&hello[..hello.len().min(20)])?;
    std::thread::sleep(Duration::from_millis(50));
    connlog_tests::reset(stream)
}

fn silent(t: &Target) -> Result<()> {
    let stream = connect(t)?;
    std::thread::sleep(t.handshake_timeout + Duration::from_millis(500));
    drop(stream);
    Ok(())
}

fn http(t: &Target) -> Result<()> {
    let mut stream = connect(t)?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n")?;
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    Ok(())
}

/// One SYN from scapy: no socket on the client owns it, so the client
/// kernel answers the SYN-ACK with an RST, unless the demo's nft rule
/// drops that RST.
fn raw_syn(t: &Target, client_port: u16) -> Result<()> {
    let layer = if t.v6 { "IPv6" } else { "IP" };
    let script = format!(
        "from scapy.all import {layer}, TCP, send\n\
         send({layer}(dst='{dst}')/TCP(sport={client_port}, dport={dport}, flags='S', seq=1000000), verbose=0)\n",
        dst = t.addr.ip(),
        dport = t.addr.port(),
    );
    t.pair.client.exec(&["python3", "-c", &script])?;
    Ok(())
}
