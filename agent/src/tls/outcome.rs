//! `TlsOutcome`: what the terminator knows about one accepted connection.
//!
//! Exactly one outcome is produced per connection that reached `accept()`,
//! whatever happened next (success, certificate failure, timeout, reset).
//! The joiner pairs it with the kernel's view of the same socket (by
//! `tuple` + `cookie`) into the final record; until then it can be printed
//! as a JSON line with `connlog-agent --print-events`.

use serde::Serialize;

use crate::{ConnectionId, MonoNanos, Status, Tuple};

/// One connection attempt as the TLS terminator saw it. Field formats are
/// SPEC.md's, so the joiner copies them into the record unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsOutcome {
    /// `connectionId`, generated at accept. The same id is sent upstream in
    /// the PROXY v2 header (`PP2_TYPE_UNIQUE_ID`).
    pub connection_id: ConnectionId,
    /// Client and local address of the accepted socket; `serverPort` is
    /// `tuple.server.port()`. IPv4-mapped addresses are already IPv4.
    pub tuple: Tuple,
    /// `SO_COOKIE` of the accepted socket: equals `bpf_get_socket_cookie()`
    /// on the kernel side, the join key together with `tuple`. `None` only
    /// if the getsockopt failed.
    pub cookie: Option<u64>,
    /// `distributionId`: the listener's id from the config.
    pub distribution_id: String,
    /// `distributionTenantId`, resolved from the SNI when configured.
    pub tenant_id: Option<String>,
    /// `connectionStatus`, decided by SPEC.md's precedence.
    pub status: Status,
    /// `tcpFailureDetail` for TcpError / TcpTimeout (`rst-during-tls`,
    /// `eof-during-tls`, `no-client-hello`, `handshake-timeout`); for other
    /// failures a short human-readable reason (not part of the record).
    pub detail: Option<String>,
    /// When `accept()` returned, on `CLOCK_MONOTONIC` (the kernel's clock).
    pub accepted_at: MonoNanos,
    /// `eventTimestamp`: Unix epoch milliseconds when the handshake
    /// completed or the attempt failed.
    pub event_time: u64,
    /// `tlsProtocol`: `TLSv1.2` or `TLSv1.3`, when a version was agreed.
    pub tls_protocol: Option<String>,
    /// `tlsCipher`: IANA name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub tls_cipher: Option<String>,
    /// `tlsHandshakeDuration`: milliseconds from the first ClientHello byte
    /// to completion or failure; `None` when no byte ever arrived.
    pub handshake_ms: Option<u64>,
    /// `tlsSni`: the server name the client sent.
    pub sni: Option<String>,
    /// The client's leaf certificate, whenever one was presented and
    /// parses — on failures too.
    pub cert: Option<ClientCertInfo>,
    /// `connectionLogCustomData` from the connection function (≤ 800 bytes).
    pub custom_data: Option<String>,
}

impl TlsOutcome {
    /// The outcome of a just-accepted connection: a fresh `connectionId`,
    /// no TLS details yet, and `Success` until the handshake says otherwise.
    /// `event_time` is set when the attempt ends.
    pub fn accepted(
        tuple: Tuple,
        cookie: Option<u64>,
        distribution_id: String,
        accepted_at: MonoNanos,
    ) -> Self {
        Self {
            connection_id: ConnectionId::generate(),
            tuple,
            cookie,
            distribution_id,
            tenant_id: None,
            status: Status::Success,
            detail: None,
            accepted_at,
            event_time: 0,
            tls_protocol: None,
            tls_cipher: None,
            handshake_ms: None,
            sni: None,
            cert: None,
            custom_data: None,
        }
    }
}

/// The client leaf certificate's fields, each already in SPEC.md's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientCertInfo {
    /// `clientLeafCertSerialNumber`: DER integer bytes as lowercase hex
    /// joined by `:` (leading `00` kept).
    pub serial: String,
    /// `clientLeafCertSubject`: RDNs in certificate order, `TYPE=value`
    /// joined by `, `. Values are raw (newlines, delimiters kept); bytes that
    /// are not valid UTF-8 become U+FFFD.
    pub subject: String,
    /// `clientLeafCertIssuer`, same form as the subject.
    pub issuer: String,
    /// `clientLeafCertValidity`: `NotBefore=…Z;NotAfter=…Z`.
    pub validity: String,
    /// The validity's two times as Unix seconds (the record's
    /// `clientLeafCertNotBefore`/`NotAfter`), so that the joiner does not
    /// parse the text back per record.
    #[serde(skip)]
    pub not_before_s: Option<i64>,
    #[serde(skip)]
    pub not_after_s: Option<i64>,
    /// `clientLeafCertSha256`: SHA-256 of the leaf DER, lowercase hex.
    pub sha256: String,
    /// `clientLeafCertSans`: `DNS:a.test,URI:spiffe://x,IP:198.18.0.2`;
    /// empty when the certificate has none.
    pub sans: String,
}

/// Unix epoch milliseconds now (`eventTimestamp`).
pub fn epoch_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureCode;

    #[test]
    fn serializes_status_as_spec_string() {
        let outcome = TlsOutcome {
            status: Status::Failed(FailureCode::ClientCertExpired),
            event_time: 1_731_620_046_814,
            tls_protocol: Some("TLSv1.3".into()),
            handshake_ms: Some(3),
            ..TlsOutcome::accepted(
                Tuple::new(
                    "198.18.0.2:40000".parse().unwrap(),
                    "198.18.0.1:443".parse().unwrap(),
                ),
                Some(7),
                "E1".into(),
                MonoNanos(1),
            )
        };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["status"], "Failed:ClientCertExpired");
        assert_eq!(json["event_time"], 1_731_620_046_814u64);
        assert_eq!(json["accepted_at"], 1);
        assert_eq!(json["tuple"]["client"], "198.18.0.2:40000");
    }
}
