//! The one thread that writes: takes batches in order, drops duplicates,
//! writes every sink, and answers only when the batch is written (or says
//! why not). Finished records go to live observers.

use std::sync::Arc;
use std::time::Instant;

use connlog_proto::v1::ConnectionRecord;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::dedup::{Dedup, KeySet};
use crate::encoded::{Ahead, Encoded, Encoders};
use crate::journal::Journal;
use crate::ship::BatchPool;
use crate::sink::{Sink, SinkError};

/// What the writer thread is asked to do.
pub(crate) enum Job {
    /// Write a batch; answer `Ok(duplicates)` once every sink wrote it.
    Write {
        records: Vec<ConnectionRecord>,
        /// The batch in each sink's format, by sink index (none: the
        /// sink encodes it).
        encoded: Vec<Option<Encoded>>,
        done: oneshot::Sender<Result<u32, String>>,
    },
    /// Housekeeping: finalise idle files, expire dedup entries.
    Tick,
    /// Finalise every file and stop; later jobs are refused.
    Stop,
}

pub(crate) struct Writer {
    sinks: Vec<Sink>,
    dedup: Dedup,
    journal: Option<Journal>,
    observers: broadcast::Sender<Arc<ConnectionRecord>>,
    /// Where written batches' records go to be decoded into again.
    pool: BatchPool,
    /// Where written batches' encoded buffers go to be encoded into again.
    encoders: Encoders,
}

impl Writer {
    pub(crate) fn new(
        sinks: Vec<Sink>,
        dedup: Dedup,
        journal: Option<Journal>,
        observers: broadcast::Sender<Arc<ConnectionRecord>>,
        pool: BatchPool,
        encoders: Encoders,
    ) -> Self {
        Self {
            sinks,
            dedup,
            journal,
            observers,
            pool,
            encoders,
        }
    }

    /// Runs until told to stop (or every sender is gone), then finalises
    /// all files.
    pub(crate) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        for sink in &mut self.sinks {
            let n = sink.recover();
            if n > 0 {
                tracing::info!(files = n, "finalised files left by a previous run");
            }
        }
        while let Some(job) = jobs.blocking_recv() {
            match job {
                Job::Write {
                    records,
                    encoded,
                    done,
                } => {
                    let result = self.write(&records, &encoded);
                    let _ = done.send(result);
                    self.pool.give(records);
                    self.encoders.give(encoded);
                }
                Job::Tick => {
                    let now = Instant::now();
                    for sink in &mut self.sinks {
                        sink.tick(now);
                    }
                    self.dedup.expire(now);
                    if let Some(j) = &mut self.journal {
                        j.compact_if_large(&self.dedup);
                    }
                }
                Job::Stop => break,
            }
        }
        for sink in &mut self.sinks {
            sink.close();
        }
        tracing::info!("all files finalised");
    }

    fn write(
        &mut self,
        records: &[ConnectionRecord],
        encoded: &[Option<Encoded>],
    ) -> Result<u32, String> {
        let now = Instant::now();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let keys: Vec<u64> = records
            .iter()
            .map(|r| self.dedup.key(&r.connection_id))
            .collect();
        // The sinks that already wrote each record, looked up once; a
        // record repeated inside the batch counts once (0: not to write).
        let all_sinks = if self.sinks.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << self.sinks.len()) - 1
        };
        let mut seen = KeySet::with_capacity_and_hasher(records.len(), Default::default());
        let written: Vec<u64> = keys
            .iter()
            .map(|k| {
                if seen.insert(*k) {
                    self.dedup.written_by(*k)
                } else {
                    all_sinks
                }
            })
            .collect();
        let mut failure: Option<SinkError> = None;
        let mut todo: Vec<usize> = Vec::with_capacity(records.len());
        let mut refs: Vec<&ConnectionRecord> = Vec::with_capacity(records.len());
        for (index, sink) in self.sinks.iter_mut().enumerate() {
            let bit = 1u64 << index.min(63);
            todo.clear();
            todo.extend((0..records.len()).filter(|&i| written[i] & bit == 0));
            refs.clear();
            refs.extend(todo.iter().map(|&i| &records[i]));
            let ahead = encoded
                .get(index)
                .and_then(Option::as_ref)
                .filter(|e| e.len() == records.len())
                .map(|encoded| Ahead {
                    encoded,
                    index: &todo,
                });
            match sink.write(&refs, ahead) {
                Ok(()) => {
                    for &i in &todo {
                        self.dedup.mark(keys[i], index, now);
                        if let Some(j) = &mut self.journal {
                            j.record(keys[i], index, now_ms);
                        }
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "batch not written; not acknowledged");
                    failure.get_or_insert(err);
                }
            }
        }
        // Before the acknowledgement: a restarted collector then knows what
        // it wrote. Failing to note it loses nothing (the records are
        // written); it only lets a resend after a crash through twice.
        if let Some(Err(e)) = self.journal.as_mut().map(Journal::commit) {
            tracing::error!(error = %e, "appending to the dedup journal failed");
        }
        if let Some(err) = failure {
            return Err(err.to_string());
        }
        let mut duplicates = 0u32;
        let observed = self.observers.receiver_count() > 0;
        for (r, w) in records.iter().zip(&written) {
            if *w != all_sinks {
                if observed {
                    let _ = self.observers.send(Arc::new(r.clone()));
                }
            } else {
                duplicates += 1;
            }
        }
        Ok(duplicates)
    }
}
