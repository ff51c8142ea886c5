//! The gRPC service: `Ship` (batches in, acks out once written) and
//! `Observe` (live tail).

use std::pin::Pin;
use std::sync::Arc;

use connlog_proto::failure_code_name;
use connlog_proto::v1::collector_server::Collector;
use connlog_proto::v1::{
    Ack, ConnectionRecord, ObserveRequest, RecordBatch, Status as RecordStatus,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::encoded::Encoders;
use crate::filter::Filter;
use crate::writer::Job;

pub(crate) struct Service {
    pub(crate) jobs: mpsc::Sender<Job>,
    pub(crate) observers: broadcast::Sender<Arc<ConnectionRecord>>,
    pub(crate) max_batch_records: usize,
    /// Batches are encoded for the file sinks here, on the streams' tasks,
    /// so the writer thread only drops duplicates and appends.
    pub(crate) encoders: Encoders,
}

/// Batches of one stream written or being written before the next is
/// read: decoding overlaps writing, and memory stays bounded.
const PIPELINE: usize = 4;

/// A batch handed to the writer and the writer's answer to come, or why
/// the stream ends.
type Pending = Result<(u64, oneshot::Receiver<Result<u32, String>>), Status>;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Whether `status_text(r)` is `Some`, without building the text.
fn has_status_text(r: &ConnectionRecord) -> bool {
    match r.status() {
        RecordStatus::Success => true,
        RecordStatus::Failed => failure_code_name(r.failure_code()).is_some(),
        RecordStatus::Unspecified => false,
    }
}

/// Why a record cannot be accepted, if it cannot.
fn check_record(r: &ConnectionRecord) -> Result<(), String> {
    if r.connection_id.is_empty() {
        return Err("connection_id is empty".into());
    }
    if !has_status_text(r) {
        return Err(format!(
            "status {:?} with failure code {:?} is not a valid connectionStatus",
            r.status, r.failure_code
        ));
    }
    if r.client_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("client_ip {:?} is not an address", r.client_ip));
    }
    Ok(())
}

fn check_batch(batch: &RecordBatch, max_records: usize) -> Result<(), Status> {
    if batch.records.len() > max_records {
        return Err(Status::invalid_argument(format!(
            "batch {}: {} records, more than the collector's limit of {max_records}",
            batch.sequence,
            batch.records.len()
        )));
    }
    for (i, r) in batch.records.iter().enumerate() {
        check_record(r).map_err(|reason| {
            Status::invalid_argument(format!("batch {}: record {i}: {reason}", batch.sequence))
        })?;
    }
    Ok(())
}

#[tonic::async_trait]
impl Collector for Service {
    type ShipStream = BoxStream<Ack>;
    type ObserveStream = BoxStream<ConnectionRecord>;

    async fn ship(
        &self,
        request: Request<Streaming<RecordBatch>>,
    ) -> Result<Response<Self::ShipStream>, Status> {
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        // Batches handed to the writer, in order, with their answers: the
        // next batch is decoded while the writer writes this one.
        let (pending_tx, mut pending_rx) = mpsc::channel::<Pending>(PIPELINE);
        let jobs = self.jobs.clone();
        let max = self.max_batch_records;
        let encoders = self.encoders.clone();
        tokio::spawn(async move {
            loop {
                let item = match inbound.message().await {
                    Ok(Some(batch)) => match check_batch(&batch, max) {
                        Ok(()) => {
                            let (done, answer) = oneshot::channel();
                            let sequence = batch.sequence;
                            let job = Job::Write {
                                encoded: encoders.encode(&batch.records),
                                records: batch.records,
                                done,
                            };
                            match jobs.send(job).await {
                                Ok(()) => Ok((sequence, answer)),
                                Err(_) => Err(Status::unavailable("collector shutting down")),
                            }
                        }
                        Err(status) => {
                            tracing::warn!(peer = ?peer, error = %status.message(), "rejected batch");
                            Err(status)
                        }
                    },
                    Ok(None) => break,
                    Err(status) => {
                        tracing::warn!(peer = ?peer, error = %status.message(), "bad message from agent");
                        Err(status)
                    }
                };
                // Errors go through the same queue: earlier batches are
                // answered first.
                let end = item.is_err();
                if pending_tx.send(item).await.is_err() || end {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(item) = pending_rx.recv().await {
                let (sequence, answer) = match item {
                    Ok(pending) => pending,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let reply = match answer.await {
                    Ok(Ok(duplicates)) => Ok(Ack {
                        sequence,
                        duplicates,
                    }),
                    Ok(Err(reason)) => Err(Status::unavailable(format!(
                        "batch {sequence} not written: {reason}"
                    ))),
                    Err(_) => Err(Status::unavailable("collector shutting down")),
                };
                let stop = reply.is_err();
                if tx.send(reply).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn observe(
        &self,
        request: Request<ObserveRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let filter = Filter::parse(request.get_ref()).map_err(Status::invalid_argument)?;
        let mut records = self.observers.subscribe();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut lagged: u64 = 0;
            loop {
                match records.recv().await {
                    Ok(r) => {
                        if filter.matches(&r) && tx.send(Ok((*r).clone())).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        lagged += n;
                        tracing::warn!(
                            skipped = n,
                            total = lagged,
                            "observer too slow; records skipped"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connlog_proto::v1::{FailureCode, Status as RecStatus};

    #[test]
    fn the_status_check_agrees_with_the_status_text() {
        for status in -1..4 {
            for code in -1..20 {
                let r = ConnectionRecord {
                    status,
                    failure_code: code,
                    ..Default::default()
                };
                assert_eq!(
                    has_status_text(&r),
                    connlog_proto::status_text(&r).is_some(),
                    "{status} {code}"
                );
            }
        }
    }

    #[test]
    fn malformed_records_get_invalid_argument_naming_them() {
        let mut good = ConnectionRecord {
            connection_id: "a".into(),
            client_ip: "198.18.0.2".into(),
            ..Default::default()
        };
        good.set_status(RecStatus::Failed);
        good.set_failure_code(FailureCode::TcpError);
        let mut batch = RecordBatch {
            sequence: 7,
            agent_id: "h".into(),
            records: vec![good.clone(), ConnectionRecord::default()],
        };
        let err = check_batch(&batch, 10).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), "batch 7: record 1: connection_id is empty");
        batch.records[1] = good.clone();
        batch.records[1].failure_code = 0;
        let err = check_batch(&batch, 10).unwrap_err();
        assert!(
            err.message().starts_with("batch 7: record 1: status"),
            "{}",
            err.message()
        );
        batch.records[1] = good;
        assert!(check_batch(&batch, 10).is_ok());
        let err = check_batch(&batch, 1).unwrap_err();
        assert_eq!(
            err.message(),
            "batch 7: 2 records, more than the collector's limit of 1"
        );
    }
}
