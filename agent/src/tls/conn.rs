//! One accepted connection, from `accept()` to its outcome and, when
//! accepted, to the proxy.
//!
//! Order of events: first byte → ClientHello (SNI, tenant) → handshake
//! with certificate policy → [`gate`](super::gate) → outcome → proxy. The
//! whole handshake, first byte included, is bounded by
//! `handshake_timeout`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use crate::config::MtlsMode;
use crate::policy;
use crate::proxy::{self, v2};
use crate::{FailureCode, MonoNanos, Status, Tuple, certinfo};

use super::classify::{self, Failure};
use super::counters::TlsCounters;
use super::gate::{GateInput, GateVerdict};
use super::negotiated;
use super::outcome::{TlsOutcome, epoch_millis};
use super::server::Listener;
use super::state::ListenerState;

/// The gate's backstop time limit; the function engine enforces its own.
const GATE_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends outcomes to the joiner without ever blocking a handshake.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    pub(crate) tx: mpsc::Sender<TlsOutcome>,
    pub(crate) counters: Arc<TlsCounters>,
}

impl Sink {
    fn emit(&self, outcome: TlsOutcome) {
        if self.tx.try_send(outcome).is_err() {
            TlsCounters::inc(&self.counters.outcomes_dropped);
        }
    }

    /// Emits `out` as failed with `f`; `first_byte` starts its handshake
    /// duration (none before the first byte).
    fn fail(&self, mut out: TlsOutcome, f: Failure, first_byte: Option<Instant>) {
        out.status = Status::Failed(f.code);
        out.detail = f.detail;
        out.handshake_ms = first_byte.map(|t| millis(t.elapsed()));
        out.event_time = epoch_millis();
        self.emit(out);
    }
}

/// Drives one connection to its outcome, then proxies it if accepted.
/// `local` is the accepted socket's local address when the listener
/// already knows it (bound to one address), else it is asked for.
pub(crate) async fn handle(
    listener: Arc<Listener>,
    stream: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    sink: Sink,
) {
    let accepted_at = MonoNanos::now();
    let local = local.unwrap_or_else(|| stream.local_addr().unwrap_or(peer));
    let cookie = rustix::net::sockopt::socket_cookie(&stream).ok();
    let state = listener.state();
    let cfg = &listener.cfg;
    let out = TlsOutcome::accepted(
        Tuple::new(peer, local),
        cookie,
        cfg.distribution_id.clone(),
        accepted_at,
    );
    // TCP_NODELAY is inherited from the listening socket.
    // One timer bounds the whole handshake, first byte included.
    let mut deadline = Box::pin(tokio::time::sleep(cfg.handshake_timeout));

    // The first byte starts tlsHandshakeDuration. `peek` waits for real
    // data (or EOF / RST, which the acceptor then classifies). (Socket
    // readiness alone is not enough: it can come before any byte, and a
    // connection past this point holds the acceptor's buffers.)
    let mut probe = [0u8; 1];
    if before(&mut deadline, stream.peek(&mut probe))
        .await
        .is_none()
    {
        let no_hello = Failure::new(FailureCode::TcpTimeout, "no-client-hello");
        return sink.fail(out, no_hello, None);
    }
    let first_byte = Instant::now();
    // Boxed: a connection that never sends a byte keeps only the small
    // future above (idle connections cost little memory). Bound first:
    // awaited in the same statement, the unboxed future would stay in this
    // one's layout (rustc keeps a statement's temporaries across its
    // await), and every connection would copy it in and out.
    let rest = Box::pin(after_first_byte(
        listener, state, stream, out, deadline, first_byte, sink,
    ));
    rest.await;
}

/// `fut`'s output, or `None` when `deadline` passes first.
async fn before<F: std::future::Future>(
    deadline: &mut Pin<Box<Sleep>>,
    fut: F,
) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = fut => Some(out),
        () = deadline.as_mut() => None,
    }
}

/// The handshake from its first byte, the gate, the outcome and the proxy.
async fn after_first_byte(
    listener: Arc<Listener>,
    state: Arc<ListenerState>,
    stream: TcpStream,
    out: TlsOutcome,
    deadline: Pin<Box<Sleep>>,
    first_byte: Instant,
    sink: Sink,
) {
    let cfg = &listener.cfg;
    // Boxed: the handshake's futures (acceptor, rustls state) are large
    // and finished before proxying starts; a proxied connection keeps
    // only what it still uses. (Bound first, as in `handle`.)
    let handshake = Box::pin(handshake(&state, stream, out, deadline, first_byte, &sink));
    let Some((mut tls, chain, mut out)) = handshake.await else {
        return;
    };

    if let Some(gate) = &state.gate {
        let verdict = decide(gate.as_ref(), &out, &chain).await;
        let (custom, failure) = match verdict {
            GateVerdict::Allow { custom_data } => (custom_data, None),
            GateVerdict::Deny { custom_data } => (
                custom_data,
                Some(Failure {
                    code: FailureCode::ConnectionFunctionDenied,
                    detail: None,
                }),
            ),
            GateVerdict::Error {
                reason,
                custom_data,
            } => (
                custom_data,
                Some(Failure::new(FailureCode::ConnectionFunctionError, reason)),
            ),
            GateVerdict::Internal {
                reason,
                custom_data,
            } => (
                custom_data,
                Some(Failure::new(FailureCode::Internal, reason)),
            ),
        };
        out.custom_data = custom;
        if let Some(failure) = failure {
            out.status = Status::Failed(failure.code);
            out.detail = failure.detail;
            out.event_time = epoch_millis();
            sink.emit(out);
            let _ = tls.shutdown().await;
            return;
        }
    }
    out.event_time = epoch_millis();

    let Some(upstream) = cfg.upstream.as_deref() else {
        sink.emit(out);
        let _ = tls.shutdown().await;
        return;
    };
    let header = cfg.proxy_protocol.then(|| {
        let leaf = chain.first().map(Vec::as_slice);
        let cn = leaf
            .and_then(|d| x509_parser::parse_x509_certificate(d).ok())
            .and_then(|(_, c)| certinfo::common_names(c.subject()).into_iter().next());
        v2::encode(&v2::ProxyInfo {
            client: out.tuple.client,
            server: out.tuple.server,
            connection_id: out.connection_id.as_str(),
            sni: out.sni.as_deref(),
            tenant_id: out.tenant_id.as_deref(),
            tls_version: out.tls_protocol.as_deref().unwrap_or(""),
            cipher: out.tls_cipher.as_deref().unwrap_or(""),
            cn: cn.as_deref(),
            leaf_der: leaf,
            verified: leaf.is_some() && cfg.mtls.mode != MtlsMode::Passthrough,
        })
    });
    let (client, id) = (out.tuple.client, out.connection_id.clone());
    sink.emit(out);
    drop(chain);
    drop(state);
    // The client's first bytes often arrive with its Finished and are
    // already decrypted (a call that only reports what is buffered).
    let client_data_ready = tls
        .get_mut()
        .1
        .process_new_packets()
        .is_ok_and(|io| io.plaintext_bytes_to_read() > 0);
    match proxy::run(
        &mut tls,
        upstream,
        header,
        client_data_ready,
        cfg.idle_timeout,
    )
    .await
    {
        Ok(copied) => {
            debug!(%client, %id, up = copied.a_to_b, down = copied.b_to_a, "proxied connection closed")
        }
        Err(err @ proxy::ProxyError::Connect { .. }) => {
            TlsCounters::inc(&sink.counters.upstream_connect_failures);
            // Operator action needed, but at most one line per 10 s.
            if warn_allowed() {
                let failures = sink
                    .counters
                    .upstream_connect_failures
                    .load(Ordering::Relaxed);
                warn!(%client, %id, failures, error = %anyhow_chain(&err), "upstream unreachable");
            } else {
                debug!(%client, %id, error = %anyhow_chain(&err), "upstream unreachable");
            }
        }
        Err(err) => {
            TlsCounters::inc(&sink.counters.proxy_errors);
            debug!(%client, %id, error = %anyhow_chain(&err), "proxy ended with an error");
        }
    }
}

/// The TLS handshake: ClientHello, certificate policy, negotiated details.
/// On failure the outcome is emitted here and `None` returned.
async fn handshake(
    state: &ListenerState,
    stream: TcpStream,
    mut out: TlsOutcome,
    mut deadline: Pin<Box<Sleep>>,
    first_byte: Instant,
    sink: &Sink,
) -> Option<(TlsStream<TcpStream>, Vec<Vec<u8>>, TlsOutcome)> {
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = match before(&mut deadline, acceptor).await {
        None => {
            sink.fail(
                out,
                Failure::new(FailureCode::TcpTimeout, "no-client-hello"),
                Some(first_byte),
            );
            return None;
        }
        Some(Err(e)) => {
            sink.fail(out, classify::io_failure(&e), Some(first_byte));
            return None;
        }
        Some(Ok(start)) => start,
    };
    let hello = start.client_hello();
    out.sni = hello.server_name().map(str::to_string);
    out.tenant_id = state.tenant(out.sni.as_deref());
    let expected = negotiated::expected(
        &hello,
        &state.server_config.crypto_provider().cipher_suites,
        state.server_key_ecdsa(out.sni.as_deref()),
    );

    let handshake = start.into_stream(state.server_config.clone());
    let (result, capture) = policy::capturing(before(&mut deadline, handshake)).await;
    drop(deadline);
    let policy::Capture {
        chain: captured,
        code: refused,
        cert,
    } = capture;
    out.cert = cert;
    let tls = match result {
        None => {
            sink.fail(
                out,
                Failure::new(FailureCode::TcpTimeout, "handshake-timeout"),
                Some(first_byte),
            );
            return None;
        }
        Some(Err(e)) => {
            // The policy's own verdict is authoritative (SPEC.md precedence).
            let failure = match refused {
                Some(code) => Failure::new(code, e.to_string()),
                None => classify::io_failure(&e),
            };
            if let Some((p, c)) = expected.filter(|_| is_certificate(failure.code)) {
                out.tls_protocol = Some(p);
                out.tls_cipher = Some(c);
            }
            debug!(client = %out.tuple.client, code = ?failure.code, detail = ?failure.detail, "handshake failed");
            sink.fail(out, failure, Some(first_byte));
            return None;
        }
        Some(Ok(tls)) => tls,
    };
    out.handshake_ms = Some(millis(first_byte.elapsed()));
    let chain: Vec<Vec<u8>> = {
        let conn = tls.get_ref().1;
        out.tls_protocol = conn.protocol_version().map(negotiated::protocol_name);
        out.tls_cipher = conn
            .negotiated_cipher_suite()
            .map(|s| negotiated::cipher_name(s.suite()));
        // The verifier saw (and captured) the chain rustls accepted.
        if captured.is_empty() {
            conn.peer_certificates()
                .map(|certs| certs.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default()
        } else {
            captured
        }
    };
    if out.cert.is_none() {
        out.cert = chain.first().and_then(|leaf| certinfo::from_der(leaf));
    }
    Some((tls, chain, out))
}

async fn decide(
    gate: &dyn super::ConnectionGate,
    out: &TlsOutcome,
    chain: &[Vec<u8>],
) -> GateVerdict {
    let input = GateInput {
        connection_id: &out.connection_id,
        client: out.tuple.client,
        server: out.tuple.server,
        distribution_id: &out.distribution_id,
        tenant_id: out.tenant_id.as_deref(),
        sni: out.sni.as_deref(),
        leaf: out.cert.as_ref(),
        chain,
    };
    match tokio::time::timeout(GATE_TIMEOUT, gate.decide(&input)).await {
        Ok(v) => v,
        Err(_) => GateVerdict::Error {
            reason: "connection function timed out".into(),
            custom_data: None,
        },
    }
}

/// Rate limit for per-connection warnings: one per 10 s per process.
fn warn_allowed() -> bool {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = MonoNanos::now().0 / 1_000_000_000;
    let last = LAST.load(Ordering::Relaxed);
    (last == 0 || now >= last + 10)
        && LAST
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

fn is_certificate(code: FailureCode) -> bool {
    code <= FailureCode::ClientCertRejected || code == FailureCode::ClientCertMissing
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn anyhow_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}
