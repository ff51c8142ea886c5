//! Batches as the exporter holds them: already protobuf-encoded, so a
//! batch is encoded once when it is cut, kept (in memory or spooled) as
//! bytes, and sent (and resent) with one copy into the gRPC frame.
//!
//! The body is a `RecordBatch` without its `sequence` (field 2 `agent_id`,
//! then every field 3 `records`); the sequence is appended when sent.
//! Protobuf decoders take the last value of a repeated scalar field, so a
//! body that already carries a sequence (a spool file from an older agent)
//! is sent under the new one.

use std::sync::Arc;

use prost::Message;
use prost::bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::http;

use crate::v1::{Ack, ConnectionRecord, RecordBatch};

/// Field numbers of `RecordBatch` (connlog.proto).
const SEQUENCE: u32 = 1;
const AGENT_ID: u32 = 2;
const RECORDS: u32 = 3;

/// An encoded batch body plus the sequence it is sent under.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    pub sequence: u64,
    pub body: Arc<Vec<u8>>,
}

impl EncodedBatch {
    /// The whole `RecordBatch` message (tests, OTLP conversion).
    pub fn decode(&self) -> Result<RecordBatch, prost::DecodeError> {
        let mut batch = RecordBatch::decode(self.body.as_slice())?;
        batch.sequence = self.sequence;
        Ok(batch)
    }
}

/// Starts a batch body: the `agent_id` field.
pub fn begin_body(agent_id: &str, out: &mut Vec<u8>) {
    if !agent_id.is_empty() {
        encode_key(AGENT_ID, WireType::LengthDelimited, out);
        encode_varint(agent_id.len() as u64, out);
        out.extend_from_slice(agent_id.as_bytes());
    }
}

/// Appends one record to a batch body; returns the bytes it took.
pub fn push_record(record: &ConnectionRecord, out: &mut Vec<u8>) -> usize {
    push_sized_record(record, record.encoded_len(), out)
}

/// [`push_record`] for a record whose `encoded_len()` is known already.
pub fn push_sized_record(
    record: &ConnectionRecord,
    encoded_len: usize,
    out: &mut Vec<u8>,
) -> usize {
    let before = out.len();
    encode_key(RECORDS, WireType::LengthDelimited, out);
    encode_varint(encoded_len as u64, out);
    record.encode_raw(out);
    out.len() - before
}

/// The bytes [`push_record`] would take for `record`.
pub fn record_len(record: &ConnectionRecord) -> usize {
    framed_len(record.encoded_len())
}

/// The bytes a record of `encoded_len` takes in a batch body.
pub fn framed_len(encoded_len: usize) -> usize {
    1 + encoded_len_varint(encoded_len as u64) + encoded_len
}

/// `Collector/Ship` with pre-encoded batches: the client side of the same
/// RPC the generated `CollectorClient::ship` calls.
pub async fn ship<S>(
    channel: tonic::transport::Channel,
    batches: S,
) -> Result<tonic::codec::Streaming<Ack>, Status>
where
    S: tokio_stream::Stream<Item = EncodedBatch> + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("collector not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static("/connlog.v1.Collector/Ship");
    let response = grpc
        .streaming(tonic::Request::new(batches), path, ShipCodec)
        .await?;
    Ok(response.into_inner())
}

/// Encodes [`EncodedBatch`]es as they are; decodes `Ack`s with prost.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShipCodec;

impl Codec for ShipCodec {
    type Encode = EncodedBatch;
    type Decode = Ack;
    type Encoder = BatchEncoder;
    type Decoder = tonic_prost::ProstDecoder<Ack>;

    fn encoder(&mut self) -> Self::Encoder {
        BatchEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BatchEncoder;

impl Encoder for BatchEncoder {
    type Item = EncodedBatch;
    type Error = Status;

    fn encode(&mut self, item: EncodedBatch, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let (seq, used) = sequence_field(item.sequence);
        dst.reserve(item.body.len() + used);
        dst.put_slice(&item.body);
        dst.put_slice(&seq[..used]);
        Ok(())
    }
}

/// The `sequence` field as bytes: a one-byte key and at most ten of varint.
fn sequence_field(sequence: u64) -> ([u8; 11], usize) {
    let mut field = [0u8; 11];
    let mut tail = &mut field[..];
    encode_key(SEQUENCE, WireType::Varint, &mut tail);
    encode_varint(sequence, &mut tail);
    let used = 11 - tail.len();
    (field, used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Status as RecStatus;

    #[test]
    fn a_body_with_an_appended_sequence_is_the_batch() {
        let mut r = crate::sample::record("a", "D", 7);
        r.set_status(RecStatus::Success);
        let mut body = Vec::new();
        begin_body("agent-1", &mut body);
        let n = push_record(&r, &mut body);
        assert_eq!(n, record_len(&r));
        push_record(&r, &mut body);
        let batch = EncodedBatch {
            sequence: 300,
            body: Arc::new(body.clone()),
        };
        let mut wire = body;
        let (seq, used) = sequence_field(300);
        wire.extend_from_slice(&seq[..used]);
        let decoded = RecordBatch::decode(wire.as_slice()).unwrap();
        assert_eq!(decoded.sequence, 300);
        assert_eq!(decoded.agent_id, "agent-1");
        assert_eq!(decoded.records, vec![r.clone(), r]);
        assert_eq!(batch.decode().unwrap(), decoded);
    }

    #[test]
    fn the_last_sequence_wins() {
        let old = RecordBatch {
            sequence: 5,
            agent_id: "a".into(),
            records: vec![],
        };
        let mut wire = old.encode_to_vec();
        let (seq, used) = sequence_field(9);
        wire.extend_from_slice(&seq[..used]);
        assert_eq!(RecordBatch::decode(wire.as_slice()).unwrap().sequence, 9);
    }
}
