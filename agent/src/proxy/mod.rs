//! Forwarding an accepted connection's plaintext to the listener's
//! upstream, optionally behind a PROXY v2 header.

mod copy;
pub(crate) mod v2;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

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
pub(crate) async fn run<C>(
    client: &mut C,
    upstream: &str,
    header: Option<Vec<u8>>,
    idle: Duration,
) -> Result<Copied, ProxyError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let connect_err = |source| ProxyError::Connect {
        upstream: upstream.to_string(),
        source,
    };
    let mut up = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(connect_err(e)),
        Err(_) => return Err(connect_err(std::io::ErrorKind::TimedOut.into())),
    };
    let _ = up.set_nodelay(true);
    if let Some(header) = header {
        up.write_all(&header).await.map_err(connect_err)?;
    }
    copy::bidirectional(client, &mut up, idle)
        .await
        .map_err(ProxyError::Copy)
}
