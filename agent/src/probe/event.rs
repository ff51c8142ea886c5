//! What the kernel probe reports: one [`TcpEvent`] per kernel-level outcome
//! of a TCP connection attempt on a watched port, in the agent's own network
//! namespace.
//!
//! Every timestamp is a [`MonoNanos`]: `CLOCK_MONOTONIC` nanoseconds, taken in
//! the kernel with `bpf_ktime_get_ns()` (the same clock as
//! [`MonoNanos::now`]). `cookie` is the socket cookie of the server's child
//! socket: equal to `getsockopt(SO_COOKIE)` on the socket `accept()` returns.
//!
//! Events reach the consumer up to ~10 ms after the kernel saw them (the
//! ring is drained in batches), in the order the kernel wrote them.

use std::fmt;

use serde::Serialize;

use crate::{FailureCode, MonoNanos, Tuple};

/// A kernel-level outcome of one TCP connection attempt. Serialized (for
/// `--print-events`) as a JSON object with an `"event"` tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TcpEvent {
    /// The child socket went SYN_RECV → ESTABLISHED: the server kernel got
    /// the client's final ACK and queued the connection for `accept()`.
    /// Emitted once per attempt, when that transition happens.
    Established {
        tuple: Tuple,
        cookie: u64,
        /// When the attempt's first SYN arrived (TC ingress). Retransmitted
        /// SYNs of the same attempt (same ISN) do not move it. Equals
        /// `established_at` if the probe did not see the SYN (started
        /// mid-handshake) or no longer knew it (evicted from the kernel's
        /// full attempt table, counted in `ProbeStats::table_full`).
        #[serde(serialize_with = "mono")]
        syn_at: MonoNanos,
        #[serde(serialize_with = "mono")]
        established_at: MonoNanos,
        /// SYN-ACKs sent for this attempt beyond the first (TC egress).
        synack_retransmits: u32,
    },
    /// The attempt never reached ESTABLISHED. Emitted once per attempt:
    /// - `TcpError` / `client-rst-in-syn-recv`: the client sent an RST while
    ///   the attempt was pending (after its SYN, before ESTABLISHED);
    /// - `TcpError` / `accept-queue-overflow`: the client's final ACK was
    ///   dropped because the listener's accept queue was full
    ///   (`SKB_DROP_REASON_TCP_LISTEN_OVERFLOW`);
    /// - `TcpError` / `server-rst:<reason>`: the server kernel sent an RST
    ///   for the pending attempt;
    /// - `TcpTimeout` / `syn-ack-unanswered`: `[probe] syn_timeout` passed
    ///   after the SYN, SYN-ACKs were sent, no ESTABLISHED (by default
    ///   `syn_timeout` is the kernel's own give-up time for the request; a
    ///   late ESTABLISHED after a shorter one is an
    ///   [`TcpEvent::EstablishedAfterTimeout`]);
    /// - `TcpTimeout` / `syn-dropped`: `syn_timeout` passed and the kernel
    ///   never answered the SYN (queues full).
    ///
    /// Also emitted early (with its timeout detail) when a new SYN with a
    /// different ISN arrives on the same tuple: that is a new attempt.
    ///
    /// After `accept-queue-overflow` the kernel keeps the request; if the
    /// client's retransmitted ACK later finds room, an `Established` for the
    /// same tuple follows (the joiner keys on the cookie).
    Failed {
        tuple: Tuple,
        #[serde(serialize_with = "ser_code")]
        code: FailureCode,
        detail: TcpFailureDetail,
        /// The attempt's first SYN, if the probe saw it.
        #[serde(serialize_with = "opt_mono")]
        syn_at: Option<MonoNanos>,
        /// When the kernel saw the failure (for timeouts: when the agent
        /// decided it, read from the same clock).
        #[serde(serialize_with = "mono")]
        failed_at: MonoNanos,
        /// SYN-ACKs sent for this attempt beyond the first.
        synack_retransmits: u32,
        /// The child socket's cookie, when one existed (never for the
        /// failures above, which all happen before the child socket exists;
        /// kept so the joiner's key is uniform).
        cookie: Option<u64>,
    },
    /// The child socket reached ESTABLISHED after its attempt had already
    /// been reported as a `TcpTimeout` (`[probe] syn_timeout` shorter than
    /// the kernel's own give-up time, or a syncookie): the client's final
    /// ACK came late. The `TcpTimeout` is the attempt's one record; this
    /// event tells the joiner to drop the connection's TLS outcome instead
    /// of emitting a second record (counted as
    /// `probe_established_after_timeout`). The terminator still serves the
    /// connection.
    EstablishedAfterTimeout {
        tuple: Tuple,
        cookie: u64,
        #[serde(serialize_with = "mono")]
        syn_at: MonoNanos,
        #[serde(serialize_with = "mono")]
        established_at: MonoNanos,
    },
    /// The server kernel received an RST from the client on an ESTABLISHED
    /// socket (`tcp:tcp_receive_reset`): emitted for every such RST, at any
    /// time after [`TcpEvent::Established`]. The joiner decides whether it
    /// happened during the TLS handshake (`rst-during-tls`).
    Reset {
        tuple: Tuple,
        cookie: u64,
        #[serde(serialize_with = "mono")]
        at: MonoNanos,
    },
}

impl TcpEvent {
    /// The 4-tuple every variant carries.
    pub fn tuple(&self) -> Tuple {
        match self {
            Self::Established { tuple, .. }
            | Self::EstablishedAfterTimeout { tuple, .. }
            | Self::Failed { tuple, .. }
            | Self::Reset { tuple, .. } => *tuple,
        }
    }
}

/// `tcpFailureDetail` for kernel-level failures; `Display` gives SPEC.md's
/// strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TcpFailureDetail {
    /// `client-rst-in-syn-recv`
    ClientRstInSynRecv,
    /// `accept-queue-overflow`
    AcceptQueueOverflow,
    /// `syn-ack-unanswered`
    SynAckUnanswered,
    /// `syn-dropped`
    SynDropped,
    /// `server-rst:<reason>`, the kernel's `enum sk_rst_reason` name without
    /// its `SK_RST_REASON_` prefix, e.g. `server-rst:NOT_SPECIFIED`;
    /// `server-rst` alone on a kernel that gives no reason.
    ServerRst(Option<String>),
}

impl fmt::Display for TcpFailureDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientRstInSynRecv => f.write_str("client-rst-in-syn-recv"),
            Self::AcceptQueueOverflow => f.write_str("accept-queue-overflow"),
            Self::SynAckUnanswered => f.write_str("syn-ack-unanswered"),
            Self::SynDropped => f.write_str("syn-dropped"),
            Self::ServerRst(Some(reason)) => write!(f, "server-rst:{reason}"),
            Self::ServerRst(None) => f.write_str("server-rst"),
        }
    }
}

impl Serialize for TcpFailureDetail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn mono<S: serde::Serializer>(t: &MonoNanos, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(t.0)
}

fn opt_mono<S: serde::Serializer>(t: &Option<MonoNanos>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&t.0),
        None => s.serialize_none(),
    }
}

fn ser_code<S: serde::Serializer>(c: &FailureCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple() -> Tuple {
        Tuple::new(
            "198.18.0.2:40000".parse().unwrap(),
            "198.18.0.1:443".parse().unwrap(),
        )
    }

    #[test]
    fn details_use_spec_strings() {
        assert_eq!(
            TcpFailureDetail::ClientRstInSynRecv.to_string(),
            "client-rst-in-syn-recv"
        );
        assert_eq!(
            TcpFailureDetail::AcceptQueueOverflow.to_string(),
            "accept-queue-overflow"
        );
        assert_eq!(
            TcpFailureDetail::SynAckUnanswered.to_string(),
            "syn-ack-unanswered"
        );
        assert_eq!(TcpFailureDetail::SynDropped.to_string(), "syn-dropped");
        assert_eq!(
            TcpFailureDetail::ServerRst(Some("NOT_SPECIFIED".into())).to_string(),
            "server-rst:NOT_SPECIFIED"
        );
        assert_eq!(TcpFailureDetail::ServerRst(None).to_string(), "server-rst");
    }

    #[test]
    fn failed_serializes_as_one_flat_object() {
        let ev = TcpEvent::Failed {
            tuple: tuple(),
            code: FailureCode::TcpTimeout,
            detail: TcpFailureDetail::SynAckUnanswered,
            syn_at: Some(MonoNanos(5)),
            failed_at: MonoNanos(9),
            synack_retransmits: 2,
            cookie: None,
        };
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "event": "failed",
                "tuple": {"client": "198.18.0.2:40000", "server": "198.18.0.1:443"},
                "code": "TcpTimeout",
                "detail": "syn-ack-unanswered",
                "syn_at": 5,
                "failed_at": 9,
                "synack_retransmits": 2,
                "cookie": null,
            })
        );
        assert_eq!(ev.tuple(), tuple());
    }
}
