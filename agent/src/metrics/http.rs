//! A deliberately tiny HTTP/1.x server for `GET /metrics`: one request per
//! connection, one connection at a time, a bounded request head and a
//! deadline, `Connection: close`. Enough for a Prometheus scraper without
//! an HTTP stack.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{Sources, render};

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// A client gets this long to send its request and read the answer.
const DEADLINE: Duration = Duration::from_secs(5);

/// The metrics socket, bound before the agent drops its privileges.
#[derive(Debug)]
pub struct Endpoint(std::net::TcpListener);

/// Binds `addr` (plain socket, no runtime needed yet).
pub fn bind(addr: SocketAddr) -> std::io::Result<Endpoint> {
    let sock = std::net::TcpListener::bind(addr)?;
    sock.set_nonblocking(true)?;
    Ok(Endpoint(sock))
}

impl Endpoint {
    /// Serves until `stop` is cancelled. Needs a tokio runtime.
    pub async fn serve(self, sources: Sources, stop: CancellationToken) {
        let listener = match TcpListener::from_std(self.0) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "metrics endpoint: cannot listen");
                return;
            }
        };
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, _)) => {
                    if tokio::time::timeout(DEADLINE, answer(stream, &sources))
                        .await
                        .is_err()
                    {
                        tracing::debug!("metrics request timed out");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn answer(mut stream: TcpStream, sources: &Sources) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            let _ = respond(&mut stream, "431 Request Header Fields Too Large", "").await;
            return;
        }
    }
    let (status, body) = route(&head, sources);
    let _ = respond(&mut stream, status, &body).await;
}

fn route(head: &[u8], sources: &Sources) -> (&'static str, String) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", render(sources)),
        (Some(b"GET"), Some(_)) => ("404 Not Found", "not found: try /metrics\n".into()),
        _ => ("405 Method Not Allowed", "only GET\n".into()),
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
