//! The per-connection verdict after certificate validation: the one place
//! where a connection function (SPEC.md section 5) decides.
//!
//! The terminator calls [`ConnectionGate::decide`] exactly once per
//! connection, after the rustls handshake completed with the client's
//! certificate accepted (or with no certificate in `optional` /
//! `passthrough` mode), and before any byte is proxied upstream. On
//! `Deny` / `Error` the connection is closed (`close_notify`, then FIN)
//! and the outcome carries `ConnectionFunctionDenied` /
//! `ConnectionFunctionError`. Certificate failures never reach the gate:
//! they win by SPEC.md's precedence.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::ConnectionId;
use crate::config::ConfigError;
use crate::config::ListenerConfig;

use super::ClientCertInfo;

/// What the gate may look at. Borrowed: the gate copies what it keeps.
#[derive(Debug)]
pub struct GateInput<'a> {
    pub connection_id: &'a ConnectionId,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub distribution_id: &'a str,
    pub tenant_id: Option<&'a str>,
    /// `connection.endpoint`: the SNI.
    pub sni: Option<&'a str>,
    /// Leaf fields in SPEC.md formats (`None` without a certificate).
    pub leaf: Option<&'a ClientCertInfo>,
    /// The presented chain as DER, leaf first; empty without a certificate.
    /// `.intermediates` of SPEC.md section 5 are `chain[1..]`.
    pub chain: &'a [Vec<u8>],
}

/// The gate's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Proxy the connection.
    Allow { custom_data: Option<String> },
    /// `deny()` called, or neither `allow()` nor `deny()`:
    /// `ConnectionFunctionDenied`.
    Deny { custom_data: Option<String> },
    /// The function threw or broke a limit: `ConnectionFunctionError`;
    /// `reason` goes into the outcome's `detail`.
    Error {
        reason: String,
        custom_data: Option<String>,
    },
    /// connlog could not run the function (pool full, worker gone):
    /// `Internal`.
    Internal {
        reason: String,
        custom_data: Option<String>,
    },
}

/// Boxed future returned by [`ConnectionGate::decide`].
pub type GateFuture<'a> = Pin<Box<dyn Future<Output = GateVerdict> + Send + 'a>>;

/// Decides whether an authenticated connection may proceed. Implemented by
/// the connection-function engine; the terminator enforces its
/// own time limit around the call only as a backstop.
pub trait ConnectionGate: Send + Sync + std::fmt::Debug {
    fn decide<'a>(&'a self, input: &'a GateInput<'a>) -> GateFuture<'a>;
}

/// Builds the gate of one listener from its config, once at start and on
/// every reload. The connection-function engine hooks in here: return
/// `Some(gate)` when `[listener.connection_function]` is configured.
pub fn for_listener(
    listener: &ListenerConfig,
) -> Result<Option<Arc<dyn ConnectionGate>>, ConfigError> {
    crate::function::for_listener(listener)
}
