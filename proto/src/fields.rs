//! The record's fields by SPEC.md name, in the table's order, and their
//! values: what every output format is built from.

use std::borrow::Cow;

use crate::status::status_text;
use crate::time::format_rfc3339_s;
use crate::v1::ConnectionRecord;

/// Every field of SPEC.md section 1: CloudFront's 17, then the extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    EventTimestamp,
    ConnectionId,
    ConnectionStatus,
    ClientIp,
    ClientPort,
    ServerIp,
    DistributionId,
    DistributionTenantId,
    TlsProtocol,
    TlsCipher,
    TlsHandshakeDuration,
    TlsSni,
    ClientLeafCertSerialNumber,
    ClientLeafCertSubject,
    ClientLeafCertIssuer,
    ClientLeafCertValidity,
    ConnectionLogCustomData,
    ServerPort,
    TcpHandshakeDuration,
    SynAckRetransmits,
    TcpFailureDetail,
    ClientLeafCertSha256,
    ClientLeafCertSans,
    AgentId,
}

/// A field's value, typed for Parquet and renderable as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// No value: `-` in text, null in Parquet.
    Absent,
    /// An integer (ports, durations, counts, the timestamp).
    UInt(u64),
    /// Text that may hold any bytes (a certificate subject is
    /// attacker-controlled).
    Text(Cow<'a, [u8]>),
}

/// How a field is stored in typed formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Unix epoch milliseconds.
    TimestampMs,
    UInt,
    Text,
}

impl Field {
    /// Every field in SPEC.md's table order (the `raw` format's order).
    pub const ALL: [Field; 24] = [
        Self::EventTimestamp,
        Self::ConnectionId,
        Self::ConnectionStatus,
        Self::ClientIp,
        Self::ClientPort,
        Self::ServerIp,
        Self::DistributionId,
        Self::DistributionTenantId,
        Self::TlsProtocol,
        Self::TlsCipher,
        Self::TlsHandshakeDuration,
        Self::TlsSni,
        Self::ClientLeafCertSerialNumber,
        Self::ClientLeafCertSubject,
        Self::ClientLeafCertIssuer,
        Self::ClientLeafCertValidity,
        Self::ConnectionLogCustomData,
        Self::ServerPort,
        Self::TcpHandshakeDuration,
        Self::SynAckRetransmits,
        Self::TcpFailureDetail,
        Self::ClientLeafCertSha256,
        Self::ClientLeafCertSans,
        Self::AgentId,
    ];

    /// CloudFront's 17 fields: the default selection.
    pub fn cloudfront() -> &'static [Field] {
        &Self::ALL[..17]
    }

    /// The camelCase name from SPEC.md.
    pub fn name(self) -> &'static str {
        match self {
            Self::EventTimestamp => "eventTimestamp",
            Self::ConnectionId => "connectionId",
            Self::ConnectionStatus => "connectionStatus",
            Self::ClientIp => "clientIp",
            Self::ClientPort => "clientPort",
            Self::ServerIp => "serverIp",
            Self::DistributionId => "distributionId",
            Self::DistributionTenantId => "distributionTenantId",
            Self::TlsProtocol => "tlsProtocol",
            Self::TlsCipher => "tlsCipher",
            Self::TlsHandshakeDuration => "tlsHandshakeDuration",
            Self::TlsSni => "tlsSni",
            Self::ClientLeafCertSerialNumber => "clientLeafCertSerialNumber",
            Self::ClientLeafCertSubject => "clientLeafCertSubject",
            Self::ClientLeafCertIssuer => "clientLeafCertIssuer",
            Self::ClientLeafCertValidity => "clientLeafCertValidity",
            Self::ConnectionLogCustomData => "connectionLogCustomData",
            Self::ServerPort => "serverPort",
            Self::TcpHandshakeDuration => "tcpHandshakeDuration",
            Self::SynAckRetransmits => "synAckRetransmits",
            Self::TcpFailureDetail => "tcpFailureDetail",
            Self::ClientLeafCertSha256 => "clientLeafCertSha256",
            Self::ClientLeafCertSans => "clientLeafCertSans",
            Self::AgentId => "agentId",
        }
    }

    /// Looks a field up by its exact SPEC.md name.
    pub fn from_name(name: &str) -> Option<Field> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn kind(self) -> FieldKind {
        match self {
            Self::EventTimestamp => FieldKind::TimestampMs,
            Self::ClientPort
            | Self::TlsHandshakeDuration
            | Self::ServerPort
            | Self::TcpHandshakeDuration
            | Self::SynAckRetransmits => FieldKind::UInt,
            _ => FieldKind::Text,
        }
    }

    /// This field's value in `r`.
    pub fn value(self, r: &ConnectionRecord) -> FieldValue<'_> {
        match self {
            Self::EventTimestamp => FieldValue::UInt(r.event_timestamp_ms),
            Self::ConnectionId => text(&r.connection_id),
            Self::ConnectionStatus => match status_text(r) {
                Some(s) => FieldValue::Text(Cow::Owned(s.into_bytes())),
                None => FieldValue::Absent,
            },
            Self::ClientIp => text(&r.client_ip),
            Self::ClientPort => FieldValue::UInt(u64::from(r.client_port)),
            Self::ServerIp => text(&r.server_ip),
            Self::DistributionId => text(&r.distribution_id),
            Self::DistributionTenantId => opt_text(r.distribution_tenant_id.as_deref()),
            Self::TlsProtocol => opt_text(r.tls_protocol.as_deref()),
            Self::TlsCipher => opt_text(r.tls_cipher.as_deref()),
            Self::TlsHandshakeDuration => opt_uint(r.tls_handshake_duration_ms),
            Self::TlsSni => opt_text(r.tls_sni.as_deref()),
            Self::ClientLeafCertSerialNumber => {
                opt_text(r.client_leaf_cert_serial_number.as_deref())
            }
            Self::ClientLeafCertSubject => opt_bytes(r.client_leaf_cert_subject.as_deref()),
            Self::ClientLeafCertIssuer => opt_bytes(r.client_leaf_cert_issuer.as_deref()),
            Self::ClientLeafCertValidity => {
                match (
                    r.client_leaf_cert_not_before_s,
                    r.client_leaf_cert_not_after_s,
                ) {
                    (Some(nb), Some(na)) => FieldValue::Text(Cow::Owned(
                        format!(
                            "NotBefore={};NotAfter={}",
                            format_rfc3339_s(nb),
                            format_rfc3339_s(na)
                        )
                        .into_bytes(),
                    )),
                    _ => FieldValue::Absent,
                }
            }
            Self::ConnectionLogCustomData => opt_text(r.connection_log_custom_data.as_deref()),
            Self::ServerPort => FieldValue::UInt(u64::from(r.server_port)),
            Self::TcpHandshakeDuration => opt_uint(r.tcp_handshake_duration_us),
            Self::SynAckRetransmits => opt_uint(r.syn_ack_retransmits.map(u64::from)),
            Self::TcpFailureDetail => opt_text(r.tcp_failure_detail.as_deref()),
            Self::ClientLeafCertSha256 => opt_text(r.client_leaf_cert_sha256.as_deref()),
            Self::ClientLeafCertSans => opt_bytes(r.client_leaf_cert_sans.as_deref()),
            Self::AgentId => text(&r.agent_id),
        }
    }
}

fn text(s: &str) -> FieldValue<'_> {
    opt_text(Some(s))
}

fn opt_text(s: Option<&str>) -> FieldValue<'_> {
    opt_bytes(s.map(str::as_bytes))
}

fn opt_bytes(b: Option<&[u8]>) -> FieldValue<'_> {
    match b {
        Some(b) if !b.is_empty() => FieldValue::Text(Cow::Borrowed(b)),
        _ => FieldValue::Absent,
    }
}

fn opt_uint(n: Option<u64>) -> FieldValue<'static> {
    n.map_or(FieldValue::Absent, FieldValue::UInt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for f in Field::ALL {
            assert_eq!(Field::from_name(f.name()), Some(f));
        }
        assert_eq!(Field::from_name("EventTimestamp"), None);
        assert_eq!(Field::cloudfront().len(), 17);
        assert_eq!(Field::cloudfront()[16], Field::ConnectionLogCustomData);
    }

    #[test]
    fn empty_and_missing_values_are_absent() {
        let mut r = ConnectionRecord {
            client_leaf_cert_not_before_s: Some(1_749_166_101),
            ..Default::default()
        };
        assert_eq!(Field::TlsSni.value(&r), FieldValue::Absent);
        assert_eq!(Field::ClientLeafCertValidity.value(&r), FieldValue::Absent);
        r.client_leaf_cert_not_after_s = Some(4_902_939_201);
        assert_eq!(
            Field::ClientLeafCertValidity.value(&r),
            FieldValue::Text(Cow::Borrowed(
                b"NotBefore=2025-06-05T23:28:21Z;NotAfter=2125-05-14T23:33:21Z".as_slice()
            ))
        );
        r.tls_handshake_duration_ms = Some(0);
        assert_eq!(Field::TlsHandshakeDuration.value(&r), FieldValue::UInt(0));
    }
}
