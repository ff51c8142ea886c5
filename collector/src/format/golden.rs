//! Golden tests: every format for a set of records with hostile values
//! (a subject with delimiters, `%`, newlines and non-UTF-8 bytes).
//! `CONNLOG_UPDATE_GOLDEN=1 cargo test -p connlog-collector golden`
//! rewrites the expected files; review the diff before committing.

use std::path::PathBuf;

use connlog_proto::Field;
use connlog_proto::v1::{ConnectionRecord, FailureCode, Status};

use super::{Encoder, Format};

pub(crate) fn records() -> Vec<ConnectionRecord> {
    let mut ok = ConnectionRecord {
        event_timestamp_ms: 1_731_620_046_814,
        connection_id: "oLHiEKbQSn8lkvJfA3D4gFowK3_iZ0g4".into(),
        client_ip: "198.18.0.2".into(),
        client_port: 12137,
        server_ip: "198.18.0.1".into(),
        server_port: 443,
        distribution_id: "E2DX1SLDPK0123".into(),
        distribution_tenant_id: Some("dt_2te1Ura9X3R2iCGNjW123".into()),
        tls_protocol: Some("TLSv1.3".into()),
        tls_cipher: Some("TLS_AES_128_GCM_SHA256".into()),
        tls_handshake_duration_ms: Some(153),
        tls_sni: Some("edge.test".into()),
        client_leaf_cert_serial_number: Some("00:b1:43:ed:93:d2:d8:f3:9d".into()),
        client_leaf_cert_subject: Some(
            b"C=US, ST=WA, L=Seattle, O=Example, OU=Edge, CN=client.test".to_vec(),
        ),
        client_leaf_cert_issuer: Some(b"C=US, O=Example, CN=Example CA".to_vec()),
        client_leaf_cert_not_before_s: Some(1_749_166_101),
        client_leaf_cert_not_after_s: Some(4_902_766_101),
        connection_log_custom_data: Some("tier=gold".into()),
        tcp_handshake_duration_us: Some(87),
        syn_ack_retransmits: Some(0),
        client_leaf_cert_sha256: Some(
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        client_leaf_cert_sans: Some(b"DNS:client.test,URI:spiffe://x/y".to_vec()),
        agent_id: "edge-1".into(),
        ..Default::default()
    };
    ok.set_status(Status::Success);

    let mut hostile = ConnectionRecord {
        event_timestamp_ms: 1_731_620_047_001,
        connection_id: "Zm9vYmFyYmF6cXV4cXV1eA==".into(),
        client_ip: "fd00:1::2".into(),
        client_port: 50000,
        server_ip: "fd00:1::1".into(),
        server_port: 8443,
        distribution_id: "E2DX1SLDPK0123".into(),
        tls_sni: Some("-".into()),
        client_leaf_cert_subject: Some(
            b"CN=evil\tname|x,\"quoted\" 100% \\ \nline2\r\xff\xfe\x00end\xc3\xa9".to_vec(),
        ),
        client_leaf_cert_issuer: Some("O=Ünïcödé, CN=a|b".as_bytes().to_vec()),
        connection_log_custom_data: Some("a\u{1}b".into()),
        agent_id: "edge-1".into(),
        ..Default::default()
    };
    hostile.set_status(Status::Failed);
    hostile.set_failure_code(FailureCode::ClientCertUntrusted);

    let mut tcp = ConnectionRecord {
        event_timestamp_ms: 1_731_620_048_000,
        connection_id: "dGNwLW9ubHktZmFpbHVyZQ==".into(),
        client_ip: "198.18.0.2".into(),
        client_port: 40001,
        server_ip: "198.18.0.1".into(),
        server_port: 443,
        distribution_id: "E2DX1SLDPK0123".into(),
        syn_ack_retransmits: Some(5),
        tcp_failure_detail: Some("syn-ack-unanswered".into()),
        agent_id: "edge-1".into(),
        ..Default::default()
    };
    tcp.set_status(Status::Failed);
    tcp.set_failure_code(FailureCode::TcpTimeout);
    vec![ok, hostile, tcp]
}

fn check(name: &str, encoder: &Encoder) {
    let mut out = Vec::new();
    encoder.header(&mut out);
    encoder.encode(&records(), &mut out);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden")
        .join(name);
    if std::env::var_os("CONNLOG_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let expected = std::fs::read(&path).unwrap();
    assert!(
        out == expected,
        "{name} differs from the golden file:\n{}",
        String::from_utf8_lossy(&out)
    );
    // Rows never break: one line per record (plus the w3c header).
    let header_lines = if encoder.format == Format::W3c { 2 } else { 0 };
    assert_eq!(
        out.iter().filter(|b| **b == b'\n').count(),
        3 + header_lines
    );
}

fn with_extensions() -> Vec<Field> {
    let mut f = Field::cloudfront().to_vec();
    f.extend([
        Field::ServerPort,
        Field::SynAckRetransmits,
        Field::TcpFailureDetail,
    ]);
    f
}

#[test]
fn golden_json() {
    check(
        "all.json",
        &Encoder::new(Format::Json, with_extensions(), "\t".into()),
    );
    // Every line is valid JSON with every value a string.
    let mut out = Vec::new();
    Encoder::new(Format::Json, Field::ALL.to_vec(), "\t".into()).encode(&records(), &mut out);
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).unwrap();
        assert_eq!(v.len(), 24);
        assert!(v.values().all(serde_json::Value::is_string));
    }
}

#[test]
fn golden_plain_tab() {
    check(
        "default.plain",
        &Encoder::new(Format::Plain, Field::cloudfront().to_vec(), "\t".into()),
    );
}

#[test]
fn golden_plain_multichar_delimiter() {
    let fields = vec![
        Field::ConnectionStatus,
        Field::ClientLeafCertSubject,
        Field::ClientLeafCertIssuer,
    ];
    check(
        "subject.plain",
        &Encoder::new(Format::Plain, fields, "|,".into()),
    );
}

#[test]
fn golden_w3c() {
    check(
        "default.w3c",
        &Encoder::new(Format::W3c, with_extensions(), " ".into()),
    );
}

#[test]
fn golden_raw() {
    // raw ignores the selection: every field in the table's order.
    check(
        "all.raw",
        &Encoder::new(Format::Raw, vec![Field::ClientIp], "\t".into()),
    );
}
