//! Forwarding an accepted connection's plaintext to the listener's
//! upstream, optionally behind a PROXY v2 header.

mod copy;
pub(crate) mod v2;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub(crate) use copy::Copied;

/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("connecting to upstream {upstream}")]
    Connect {
        upstream: String,
        #[source]
        source: std::io::Error,
    },
    #[error("copying")]
    Copy(#[source] std::io::Error),
}

/// Connects to `upstream`, sends `header` (if any), then copies both ways
/// until both sides have closed or `idle` passes without traffic.
/// `client_data_ready`: the client's first bytes are already buffered, so
/// something is written upstream as soon as the connection is up.
pub(crate) async fn run<C>(
    client: &mut C,
    upstream: &str,
    header: Option<Vec<u8>>,
    client_data_ready: bool,
    idle: Duration,
) -> Result<Copied, ProxyError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let connect_err = |source| ProxyError::Connect {
        upstream: upstream.to_string(),
        source,
    };
    let sends_at_once = header.is_some() || client_data_ready;
    let mut up = match tokio::time::timeout(CONNECT_TIMEOUT, connect(upstream, sends_at_once)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(connect_err(e)),
        Err(_) => return Err(connect_err(std::io::ErrorKind::TimedOut.into())),
    };
    if let Some(header) = header {
        up.write_all(&header).await.map_err(connect_err)?;
    }
    copy::bidirectional(client, &mut up, idle)
        .await
        .map_err(ProxyError::Copy)
}

/// Connects to the first address of `upstream` that accepts, with
/// TCP_NODELAY. When `sends_at_once`, the socket asks the kernel to send
/// the handshake's final ACK with the first data instead of alone (as
/// HAProxy's `tcp-smart-connect` does): one packet fewer, and the upstream
/// gets its connection and its first bytes together. Only then: an
/// upstream that speaks first would otherwise see its connection only when
/// the delayed ACK leaves (up to 200 ms later).
async fn connect(upstream: &str, sends_at_once: bool) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host(upstream).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_nodelay(true)?;
        if sends_at_once {
            rustix::net::sockopt::set_tcp_quickack(&socket, false)?;
        }
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to connect to")
    }))
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// Without bytes to send, the connection is complete for the upstream
    /// at once (an upstream that speaks first is not kept waiting); with
    /// them, the first bytes arrive with it.
    #[tokio::test]
    async fn connects_with_nodelay_either_way() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = upstream.local_addr().unwrap().to_string();

        let quiet = connect(&addr, false).await.unwrap();
        assert!(quiet.nodelay().unwrap());
        let accepted = tokio::time::timeout(Duration::from_millis(100), upstream.accept()).await;
        assert!(accepted.is_ok(), "the upstream waited for the final ACK");

        let mut eager = connect(&addr, true).await.unwrap();
        assert!(eager.nodelay().unwrap());
        eager.write_all(b"hello").await.unwrap();
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), upstream.accept())
            .await
            .unwrap()
            .unwrap();
        let mut got = [0u8; 5];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }

    #[tokio::test]
    async fn unreachable_upstream_is_a_connect_error() {
        // A port nothing listens on: bound, then closed.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let (mut a, _b) = tokio::io::duplex(64);
        let err = run(&mut a, &addr, None, true, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::Connect { .. }), "{err:?}");
    }
}
