//! `Collector/Ship` decoded into recycled batches: the writer hands every
//! written batch's records back to a small pool, and the next batch is
//! decoded into them (`connlog_proto::decode_batch_into`), so a record's
//! string fields reuse their buffers instead of allocating one each. The
//! rest of the service (`Observe`) is the generated server's.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use connlog_proto::decode_batch_into;
use connlog_proto::v1::collector_server::{Collector, CollectorServer};
use connlog_proto::v1::{Ack, ConnectionRecord, RecordBatch};
use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService};

use crate::server::Service as CollectorService;

const SHIP_PATH: &str = "/connlog.v1.Collector/Ship";

/// Batches kept for reuse: about what is in flight at once.
const POOL_BATCHES: usize = 8;
/// A batch whose records hold more string capacity than this is not kept
/// (so the pool stays below `POOL_BATCHES` × this).
const POOL_MAX_BYTES: usize = 8 << 20;

/// Written batches' record vectors, waiting to be decoded into again.
#[derive(Clone, Default)]
pub(crate) struct BatchPool(Arc<Mutex<Vec<Vec<ConnectionRecord>>>>);

impl BatchPool {
    fn take(&self) -> Vec<ConnectionRecord> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// Keeps `records` for a later batch, if the pool has room and they
    /// are not too large.
    pub(crate) fn give(&self, records: Vec<ConnectionRecord>) {
        if records.iter().map(retained_bytes).sum::<usize>() > POOL_MAX_BYTES {
            return;
        }
        let mut pool = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_BATCHES {
            pool.push(records);
        }
    }
}

fn retained_bytes(r: &ConnectionRecord) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
    let opt_b = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::capacity);
    r.connection_id.capacity()
        + r.client_ip.capacity()
        + r.server_ip.capacity()
        + r.distribution_id.capacity()
        + r.agent_id.capacity()
        + opt(&r.distribution_tenant_id)
        + opt(&r.tls_protocol)
        + opt(&r.tls_cipher)
        + opt(&r.tls_sni)
        + opt(&r.client_leaf_cert_serial_number)
        + opt(&r.connection_log_custom_data)
        + opt(&r.tcp_failure_detail)
        + opt(&r.client_leaf_cert_sha256)
        + opt_b(&r.client_leaf_cert_subject)
        + opt_b(&r.client_leaf_cert_issuer)
        + opt_b(&r.client_leaf_cert_sans)
}

/// Decodes `RecordBatch`es into pooled records; encodes `Ack`s with prost.
#[derive(Clone)]
struct ShipCodec(BatchPool);

impl Codec for ShipCodec {
    type Encode = Ack;
    type Decode = RecordBatch;
    type Encoder = tonic_prost::ProstEncoder<Ack>;
    type Decoder = PooledDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        PooledDecoder(self.0.clone())
    }
}

struct PooledDecoder(BatchPool);

impl Decoder for PooledDecoder {
    type Item = RecordBatch;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<RecordBatch>, Status> {
        let mut batch = RecordBatch {
            records: self.0.take(),
            ..Default::default()
        };
        let len = src.remaining();
        let result = if src.chunk().len() >= len {
            let r = decode_batch_into(&mut batch, &src.chunk()[..len]);
            src.advance(len);
            r
        } else {
            let bytes = src.copy_to_bytes(len);
            decode_batch_into(&mut batch, &bytes)
        };
        match result {
            Ok(()) => Ok(Some(batch)),
            Err(e) => {
                self.0.give(batch.records);
                // As tonic's prost decoder answers.
                Err(Status::internal(e.to_string()))
            }
        }
    }
}

/// The collector service: `Ship` through [`ShipCodec`], everything else
/// through the generated server.
#[derive(Clone)]
pub(crate) struct Routes {
    service: Arc<CollectorService>,
    generated: CollectorServer<CollectorService>,
    max_message_bytes: usize,
    pool: BatchPool,
}

impl Routes {
    pub(crate) fn new(
        service: CollectorService,
        max_message_bytes: usize,
        pool: BatchPool,
    ) -> Self {
        let service = Arc::new(service);
        let generated =
            CollectorServer::from_arc(service.clone()).max_decoding_message_size(max_message_bytes);
        Self {
            service,
            generated,
            max_message_bytes,
            pool,
        }
    }
}

impl NamedService for Routes {
    const NAME: &'static str = <CollectorServer<CollectorService> as NamedService>::NAME;
}

struct ShipMethod(Arc<CollectorService>);

impl StreamingService<RecordBatch> for ShipMethod {
    type Response = Ack;
    type ResponseStream = <CollectorService as Collector>::ShipStream;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<RecordBatch>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.ship(request).await })
    }
}

impl<B> Service<http::Request<B>> for Routes
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != SHIP_PATH {
            return self.generated.call(req);
        }
        let method = ShipMethod(self.service.clone());
        let codec = ShipCodec(self.pool.clone());
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = Grpc::new(codec).max_decoding_message_size(max);
            Ok(grpc.streaming(method, req).await)
        })
    }
}
