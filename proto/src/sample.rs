//! Sample connection records, the shape the agent produces: for tests,
//! `connlog-synth` and the pipeline benchmark.

use crate::v1::{ConnectionRecord, FailureCode, Status};

/// Record number `n`: a mix of successes and failures, with
/// `connectionId` = `<agent>-<n>` so tests can check exactly-once, and
/// eventTimestamp = now (the bench measures latency from it).
pub fn record(agent_id: &str, distribution: &str, n: u64) -> ConnectionRecord {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut r = ConnectionRecord {
        event_timestamp_ms: now_ms,
        connection_id: format!("{agent_id}-{n}"),
        client_ip: format!("198.18.{}.{}", (n >> 8) & 0xff, n & 0xff),
        client_port: 1024 + (n % 60_000) as u32,
        server_ip: "198.18.0.1".into(),
        server_port: 443,
        distribution_id: distribution.into(),
        agent_id: agent_id.into(),
        ..Default::default()
    };
    if n % 4 == 3 {
        r.set_status(Status::Failed);
        r.set_failure_code(FailureCode::TcpTimeout);
        r.tcp_failure_detail = Some("syn-ack-unanswered".into());
        r.syn_ack_retransmits = Some(5);
    } else {
        r.set_status(Status::Success);
        r.tls_protocol = Some("TLSv1.3".into());
        r.tls_cipher = Some("TLS_AES_128_GCM_SHA256".into());
        r.tls_handshake_duration_ms = Some(3);
        r.tls_sni = Some("edge.test".into());
        r.client_leaf_cert_serial_number = Some("00:b1:43:ed:93:d2:d8:f3:9d".into());
        r.client_leaf_cert_subject = Some(b"C=US, O=Example, CN=client.test".to_vec());
        r.client_leaf_cert_issuer = Some(b"C=US, O=Example, CN=Example CA".to_vec());
        r.client_leaf_cert_not_before_s = Some(1_749_166_101);
        r.client_leaf_cert_not_after_s = Some(4_902_766_101);
        r.tcp_handshake_duration_us = Some(80);
        r.syn_ack_retransmits = Some(0);
    }
    r
}
