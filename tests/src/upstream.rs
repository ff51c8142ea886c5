//! Test upstreams inside a namespace: an echo server that can first read
//! a PROXY v2 header and report it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::Netns;

/// An upstream server; stops accepting on drop.
pub struct Upstream {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    headers: Receiver<Vec<u8>>,
}

impl Upstream {
    /// Echoes every connection until EOF, then writes `bye` and closes.
    /// With `proxy_v2`, first reads one PROXY v2 header and reports it.
    pub fn echo(ns: &Netns, addr: SocketAddr, proxy_v2: bool) -> Result<Self> {
        let listener = ns.listen(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, headers) = channel();
        let stop2 = stop.clone();
        std::thread::spawn(move || accept_loop(&listener, &stop2, &tx, proxy_v2));
        Ok(Self {
            addr,
            stop,
            headers,
        })
    }

    /// The next PROXY v2 header received (10 s).
    pub fn header(&self) -> Result<Vec<u8>> {
        Ok(self.headers.recv_timeout(Duration::from_secs(10))?)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, tx: &Sender<Vec<u8>>, proxy_v2: bool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let _ = serve(s, &tx, proxy_v2);
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve(mut s: TcpStream, tx: &Sender<Vec<u8>>, proxy_v2: bool) -> Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    if proxy_v2 {
        let mut fixed = [0u8; 16];
        s.read_exact(&mut fixed)?;
        let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
        let mut rest = vec![0u8; len];
        s.read_exact(&mut rest)?;
        let mut header = fixed.to_vec();
        header.extend_from_slice(&rest);
        let _ = tx.send(header);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n])?;
    }
    s.write_all(b"bye")?;
    Ok(())
}

/// A parsed PROXY v2 header.
#[derive(Debug)]
pub struct ProxyHeader {
    pub command: u8,
    pub family: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Top-level TLVs in order.
    pub tlvs: Vec<(u8, Vec<u8>)>,
}

impl ProxyHeader {
    pub fn parse(h: &[u8]) -> Result<Self> {
        if h.len() < 16 || &h[..12] != b"\r\n\r\n\0\r\nQUIT\n" {
            bail!("not a PROXY v2 header");
        }
        let (command, family) = (h[12], h[13]);
        let body = &h[16..];
        let (src, dst, rest) = match family {
            0x11 => {
                let ip = |o: usize| {
                    std::net::Ipv4Addr::new(body[o], body[o + 1], body[o + 2], body[o + 3])
                };
                let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                (
                    SocketAddr::new(ip(0).into(), port(8)),
                    SocketAddr::new(ip(4).into(), port(10)),
                    &body[12..],
                )
            }
            0x21 => {
                let ip = |o: usize| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&body[o..o + 16]);
                    std::net::Ipv6Addr::from(a)
                };
                let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
                (
                    SocketAddr::new(ip(0).into(), port(32)),
                    SocketAddr::new(ip(16).into(), port(34)),
                    &body[36..],
                )
            }
            other => bail!("family {other:#x}"),
        };
        Ok(Self {
            command,
            family,
            src,
            dst,
            tlvs: tlvs(rest)?,
        })
    }

    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }
}

/// Splits type-length-value items.
pub fn tlvs(mut data: &[u8]) -> Result<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 3 {
            bail!("truncated TLV");
        }
        let len = usize::from(u16::from_be_bytes([data[1], data[2]]));
        if data.len() < 3 + len {
            bail!("TLV longer than the header");
        }
        out.push((data[0], data[3..3 + len].to_vec()));
        data = &data[3 + len..];
    }
    Ok(out)
}
