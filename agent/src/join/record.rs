//! Building the wire record from the agent's types: the one place the
//! agent's `Status` becomes `connlog.v1`'s enums.

use connlog_proto::v1::{self, ConnectionRecord};

use crate::probe::TcpFailureDetail;
use crate::tls::TlsOutcome;
use crate::{FailureCode, Status, Tuple};

pub(crate) fn wire_code(code: FailureCode) -> v1::FailureCode {
    use FailureCode as F;
    use v1::FailureCode as W;
    match code {
        F::ClientCertMaxChainDepthExceeded => W::ClientCertMaxChainDepthExceeded,
        F::ClientCertMaxSizeExceeded => W::ClientCertMaxSizeExceeded,
        F::ClientCertInvalid => W::ClientCertInvalid,
        F::ClientCertTypeUnsupported => W::ClientCertTypeUnsupported,
        F::ClientCertUntrusted => W::ClientCertUntrusted,
        F::ClientCertExpired => W::ClientCertExpired,
        F::ClientCertNotYetValid => W::ClientCertNotYetValid,
        F::ClientCertIntentInvalid => W::ClientCertIntentInvalid,
        F::ClientCertRejected => W::ClientCertRejected,
        F::ConnectionFunctionError => W::ConnectionFunctionError,
        F::ConnectionFunctionDenied => W::ConnectionFunctionDenied,
        F::ClientCertMissing => W::ClientCertMissing,
        F::TcpError => W::TcpError,
        F::TcpTimeout => W::TcpTimeout,
        F::Internal => W::Internal,
        F::UnmappedConnectionError => W::UnmappedConnectionError,
    }
}

pub(crate) fn set_status(r: &mut ConnectionRecord, status: Status) {
    match status {
        Status::Success => {
            r.set_status(v1::Status::Success);
            r.set_failure_code(v1::FailureCode::Unspecified);
        }
        Status::Failed(code) => {
            r.set_status(v1::Status::Failed);
            r.set_failure_code(wire_code(code));
        }
    }
}

fn addresses(r: &mut ConnectionRecord, tuple: &Tuple) {
    r.client_ip = ip_text(tuple.client.ip());
    r.client_port = u32::from(tuple.client.port());
    r.server_ip = ip_text(tuple.server.ip());
    r.server_port = u32::from(tuple.server.port());
}

/// An address as text; IPv4 without the formatting machinery (this runs
/// twice per record).
fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            s.push(char::from(b'0' + octet / 10 % 10));
        }
        s.push(char::from(b'0' + octet % 10));
    }
    s
}

/// `tcpFailureDetail` carries what the kernel or the terminator saw for
/// TcpError / TcpTimeout, and the reason a connection function failed
/// (exception, time or memory limit) for ConnectionFunctionError; for other
/// codes the terminator's detail is a log line, not a record field.
fn keeps_detail(status: Status) -> bool {
    matches!(
        status,
        Status::Failed(
            FailureCode::TcpError | FailureCode::TcpTimeout | FailureCode::ConnectionFunctionError
        )
    )
}

/// A record from the terminator's outcome (its strings move into the
/// record); kernel fields left empty.
pub(crate) fn from_tls(o: TlsOutcome, agent_id: &str) -> ConnectionRecord {
    let keep_detail = keeps_detail(o.status);
    let mut r = ConnectionRecord {
        event_timestamp_ms: o.event_time,
        connection_id: o.connection_id.into_string(),
        distribution_id: o.distribution_id,
        distribution_tenant_id: o.tenant_id,
        tls_protocol: o.tls_protocol,
        tls_cipher: o.tls_cipher,
        tls_handshake_duration_ms: o.handshake_ms,
        tls_sni: o.sni,
        connection_log_custom_data: o.custom_data,
        tcp_failure_detail: o.detail.filter(|_| keep_detail),
        agent_id: agent_id.to_owned(),
        ..Default::default()
    };
    addresses(&mut r, &o.tuple);
    set_status(&mut r, o.status);
    if let Some(cert) = o.cert {
        r.client_leaf_cert_serial_number = Some(cert.serial);
        r.client_leaf_cert_subject = Some(cert.subject.into_bytes());
        r.client_leaf_cert_issuer = Some(cert.issuer.into_bytes());
        r.client_leaf_cert_not_before_s = cert.not_before_s;
        r.client_leaf_cert_not_after_s = cert.not_after_s;
        r.client_leaf_cert_sha256 = Some(cert.sha256).filter(|s| !s.is_empty());
        r.client_leaf_cert_sans = Some(cert.sans.into_bytes()).filter(|s| !s.is_empty());
    }
    r
}

/// A record for a kernel-level failure that never reached `accept()`.
pub(crate) struct KernelFailure<'a> {
    pub(crate) tuple: &'a Tuple,
    pub(crate) code: FailureCode,
    pub(crate) detail: &'a TcpFailureDetail,
    pub(crate) synack_retransmits: u32,
    pub(crate) event_time_ms: u64,
    pub(crate) distribution_id: String,
}

pub(crate) fn from_kernel(k: KernelFailure<'_>, agent_id: &str) -> ConnectionRecord {
    let mut r = ConnectionRecord {
        event_timestamp_ms: k.event_time_ms,
        connection_id: crate::ConnectionId::generate().to_string(),
        distribution_id: k.distribution_id,
        syn_ack_retransmits: Some(k.synack_retransmits),
        tcp_failure_detail: Some(k.detail.to_string()),
        agent_id: agent_id.to_owned(),
        ..Default::default()
    };
    addresses(&mut r, k.tuple);
    set_status(&mut r, Status::Failed(k.code));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_its_wire_name() {
        for code in FailureCode::ALL {
            assert_eq!(
                connlog_proto::failure_code_name(wire_code(code)),
                Some(code.as_str())
            );
        }
    }

    #[test]
    fn ipv4_text_matches_display() {
        for ip in ["0.0.0.0", "198.18.0.2", "10.100.9.255", "255.255.255.255"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        let v6: std::net::IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(ip_text(v6), "fd00::1");
    }
}
