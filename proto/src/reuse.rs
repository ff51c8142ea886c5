//! Decoding a `RecordBatch` into records that already exist, so their
//! strings' buffers are reused instead of allocating one per field: the
//! collector decodes every batch into vectors it recycles.
//!
//! The result is exactly what `RecordBatch::decode` gives (a test checks
//! it over records with every field set and with none); only the memory
//! it lands in differs.

use prost::Message;
use prost::bytes::Buf;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint};

use crate::v1::{ConnectionRecord, RecordBatch};

/// `RecordBatch.records` (connlog.proto).
const RECORDS: u32 = 3;

/// Decodes `buf` (a whole `RecordBatch`) into `batch`, reusing the records
/// `batch.records` holds and their buffers; extra records are dropped.
pub fn decode_batch_into(batch: &mut RecordBatch, whole: &[u8]) -> Result<(), prost::DecodeError> {
    let mut buf = whole;
    batch.sequence = 0;
    batch.agent_id.clear();
    let mut used = 0;
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag != RECORDS || wire_type != WireType::LengthDelimited {
            batch.merge_field(tag, wire_type, &mut buf, DecodeContext::default())?;
            continue;
        }
        let len = usize::try_from(decode_varint(&mut buf)?).unwrap_or(usize::MAX);
        if len > buf.len() {
            // Truncated: prost's own decode gives the error it reports.
            *batch = RecordBatch::decode(whole)?;
            return Ok(());
        }
        let (body, rest) = buf.split_at(len);
        buf = rest;
        if used == batch.records.len() {
            batch.records.push(ConnectionRecord::default());
        }
        decode_record_into(&mut batch.records[used], body)?;
        used += 1;
    }
    batch.records.truncate(used);
    Ok(())
}

/// Decodes one record's bytes into `r`, keeping its buffers.
fn decode_record_into(r: &mut ConnectionRecord, mut buf: &[u8]) -> Result<(), prost::DecodeError> {
    reset_keeping_buffers(r);
    // Field numbers seen (all below 64 in connlog.proto; larger ones are
    // unknown fields, skipped by the merge).
    let mut seen = 0u64;
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        if tag < 64 {
            seen |= 1 << tag;
        }
        // Bytes fields are copied into their buffer here: prost's merge
        // would allocate a temporary `Bytes` for each. Anything malformed
        // is left to prost, for its error.
        if wire_type == WireType::LengthDelimited
            && let Some(field) = bytes_field(r, tag)
        {
            let mut peek = buf;
            let len = usize::try_from(decode_varint(&mut peek)?).unwrap_or(usize::MAX);
            if len <= peek.len() {
                field.clear();
                field.extend_from_slice(&peek[..len]);
                buf = &peek[len..];
                continue;
            }
        }
        r.merge_field(tag, wire_type, &mut buf, DecodeContext::default())?;
    }
    drop_absent(r, seen);
    Ok(())
}

/// The `bytes` field with this number, as a buffer to fill.
fn bytes_field(r: &mut ConnectionRecord, tag: u32) -> Option<&mut Vec<u8>> {
    let field = match tag {
        15 => &mut r.client_leaf_cert_subject,
        16 => &mut r.client_leaf_cert_issuer,
        25 => &mut r.client_leaf_cert_sans,
        _ => return None,
    };
    Some(field.get_or_insert_with(Vec::new))
}

/// Every field to its default, except that optional strings stay `Some`
/// (emptied) so a merge writes into their buffers; [`drop_absent`] then
/// turns back to `None` those the record did not carry. Destructured
/// without `..`: a new field in the schema fails to compile here.
fn reset_keeping_buffers(r: &mut ConnectionRecord) {
    let ConnectionRecord {
        event_timestamp_ms,
        connection_id,
        status,
        failure_code,
        client_ip,
        client_port,
        server_ip,
        distribution_id,
        distribution_tenant_id,
        tls_protocol,
        tls_cipher,
        tls_handshake_duration_ms,
        tls_sni,
        client_leaf_cert_serial_number,
        client_leaf_cert_subject,
        client_leaf_cert_issuer,
        client_leaf_cert_not_before_s,
        client_leaf_cert_not_after_s,
        connection_log_custom_data,
        server_port,
        tcp_handshake_duration_us,
        syn_ack_retransmits,
        tcp_failure_detail,
        client_leaf_cert_sha256,
        client_leaf_cert_sans,
        agent_id,
    } = r;
    *event_timestamp_ms = 0;
    *status = 0;
    *failure_code = 0;
    *client_port = 0;
    *server_port = 0;
    *tls_handshake_duration_ms = None;
    *client_leaf_cert_not_before_s = None;
    *client_leaf_cert_not_after_s = None;
    *tcp_handshake_duration_us = None;
    *syn_ack_retransmits = None;
    for s in [
        connection_id,
        client_ip,
        server_ip,
        distribution_id,
        agent_id,
    ] {
        s.clear();
    }
    for s in [
        distribution_tenant_id,
        tls_protocol,
        tls_cipher,
        tls_sni,
        client_leaf_cert_serial_number,
        connection_log_custom_data,
        tcp_failure_detail,
        client_leaf_cert_sha256,
    ]
    .into_iter()
    .flatten()
    {
        s.clear();
    }
    for b in [
        client_leaf_cert_subject,
        client_leaf_cert_issuer,
        client_leaf_cert_sans,
    ]
    .into_iter()
    .flatten()
    {
        b.clear();
    }
}

/// Optional strings whose field number is not in `seen` become `None`.
fn drop_absent(r: &mut ConnectionRecord, seen: u64) {
    let absent = |tag: u32| seen & (1 << tag) == 0;
    let ConnectionRecord {
        distribution_tenant_id,
        tls_protocol,
        tls_cipher,
        tls_sni,
        client_leaf_cert_serial_number,
        client_leaf_cert_subject,
        client_leaf_cert_issuer,
        connection_log_custom_data,
        tcp_failure_detail,
        client_leaf_cert_sha256,
        client_leaf_cert_sans,
        ..
    } = r;
    for (tag, s) in [
        (9, distribution_tenant_id),
        (10, tls_protocol),
        (11, tls_cipher),
        (13, tls_sni),
        (14, client_leaf_cert_serial_number),
        (19, connection_log_custom_data),
        (23, tcp_failure_detail),
        (24, client_leaf_cert_sha256),
    ] {
        if absent(tag) {
            *s = None;
        }
    }
    for (tag, b) in [
        (15, client_leaf_cert_subject),
        (16, client_leaf_cert_issuer),
        (25, client_leaf_cert_sans),
    ] {
        if absent(tag) {
            *b = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field set, none at its default.
    fn full(n: u64) -> ConnectionRecord {
        ConnectionRecord {
            event_timestamp_ms: 1_700_000_000_000 + n,
            connection_id: format!("id-{n}"),
            status: 2,
            failure_code: 5,
            client_ip: "198.18.0.2".into(),
            client_port: 40_000,
            server_ip: "198.18.0.1".into(),
            distribution_id: "D1".into(),
            distribution_tenant_id: Some("t".into()),
            tls_protocol: Some("TLSv1.3".into()),
            tls_cipher: Some("TLS_AES_128_GCM_SHA256".into()),
            tls_handshake_duration_ms: Some(3),
            tls_sni: Some("edge.test".into()),
            client_leaf_cert_serial_number: Some("00:b1".into()),
            client_leaf_cert_subject: Some(b"CN=a\xff".to_vec()),
            client_leaf_cert_issuer: Some(b"CN=ca".to_vec()),
            client_leaf_cert_not_before_s: Some(1),
            client_leaf_cert_not_after_s: Some(2),
            connection_log_custom_data: Some("x".into()),
            server_port: 443,
            tcp_handshake_duration_us: Some(80),
            syn_ack_retransmits: Some(1),
            tcp_failure_detail: Some("rst".into()),
            client_leaf_cert_sha256: Some("9f86".into()),
            client_leaf_cert_sans: Some(b"DNS:a".to_vec()),
            agent_id: "agent".into(),
        }
    }

    #[test]
    fn reused_records_decode_exactly_as_prost_does() {
        // Present-but-empty optionals must stay Some(""), absent ones None.
        let empties = ConnectionRecord {
            tls_sni: Some(String::new()),
            client_leaf_cert_subject: Some(Vec::new()),
            ..Default::default()
        };
        let batches = [
            RecordBatch {
                sequence: 9,
                agent_id: "a".into(),
                records: vec![full(1), full(2), full(3)],
            },
            RecordBatch {
                sequence: 10,
                agent_id: String::new(),
                records: vec![ConnectionRecord::default(), empties, full(4)],
            },
            RecordBatch {
                sequence: 11,
                agent_id: "b".into(),
                records: vec![full(5)],
            },
        ];
        let mut into = RecordBatch::default();
        for b in &batches {
            let wire = b.encode_to_vec();
            decode_batch_into(&mut into, &wire).unwrap();
            assert_eq!(into, RecordBatch::decode(wire.as_slice()).unwrap());
            assert_eq!(&into, b);
        }
    }

    #[test]
    fn malformed_bytes_are_errors() {
        let mut wire = RecordBatch {
            sequence: 1,
            agent_id: "a".into(),
            records: vec![full(1)],
        }
        .encode_to_vec();
        let mut into = RecordBatch::default();
        assert!(decode_batch_into(&mut into, &wire[..wire.len() - 3]).is_err());
        // A record field that is not valid UTF-8.
        let at = wire.windows(4).position(|w| w == b"id-1").unwrap_or(0);
        wire[at] = 0xff;
        assert!(decode_batch_into(&mut into, &wire).is_err());
    }
}
