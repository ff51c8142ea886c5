//! What the exporter holds: records not yet batched and batches not yet
//! acknowledged, within bounds on records and bytes. Past the memory bound
//! batches go to the spool if there is one; past that, records are dropped
//! and counted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use connlog_proto::v1::ConnectionRecord;
use connlog_proto::wire::{self, EncodedBatch};
use prost::Message;

use super::spool::Spool;
use super::stats::ExportStats;
use crate::config::ExportConfig;

/// Emptied bodies kept for reuse: batches are acknowledged a few at a
/// time while the next ones fill.
const SPARES: usize = 4;

/// A new body's capacity is the last body's plus this share of it, so that
/// a batch a little larger than the last one does not double its body
/// (a copy and a megabyte of fresh pages) as it fills.
const HEADROOM: usize = 8;

/// A batch awaiting acknowledgement, encoded, in memory or on disk.
pub(crate) struct Held {
    pub(crate) body: Option<Arc<Vec<u8>>>,
    pub(crate) spooled: Option<PathBuf>,
    pub(crate) records: usize,
    pub(crate) bytes: usize,
}

pub(crate) struct Buffer {
    agent_id: String,
    batch_max_records: usize,
    max_records: usize,
    max_bytes: usize,
    spool: Option<Spool>,
    spool_max_bytes: u64,
    spool_bytes: u64,
    /// The next batch's body, records encoded as they arrive.
    pending: Vec<u8>,
    pending_records: usize,
    /// Size of the last batch cut: the next body's starting capacity
    /// (plus [`HEADROOM`]).
    last_body: usize,
    /// Acknowledged batches' bodies, emptied, for the next batches to fill
    /// (an allocation and its page faults less per batch), at most
    /// [`SPARES`].
    spares: Vec<Vec<u8>>,
    /// Unacknowledged batches by sequence.
    pub(crate) unacked: BTreeMap<u64, Held>,
    /// Records and bytes held in memory (pending + in-memory batches).
    mem_records: usize,
    mem_bytes: usize,
    next_seq: u64,
    stats: Arc<ExportStats>,
}

impl Buffer {
    pub(crate) fn new(cfg: &ExportConfig, agent_id: String, stats: Arc<ExportStats>) -> Self {
        let mut buffer = Self {
            agent_id,
            batch_max_records: cfg.batch_max_records,
            max_records: cfg.buffer_max_records,
            max_bytes: cfg.buffer_max_bytes,
            spool: None,
            spool_max_bytes: cfg.spool_max_bytes,
            spool_bytes: 0,
            pending: Vec::new(),
            pending_records: 0,
            last_body: 0,
            spares: Vec::new(),
            unacked: BTreeMap::new(),
            mem_records: 0,
            mem_bytes: 0,
            next_seq: 1,
            stats,
        };
        if let Some(dir) = &cfg.spool_dir {
            match Spool::open(dir) {
                Ok((spool, left)) => {
                    buffer.spool = Some(spool);
                    buffer.adopt_spooled(left);
                }
                Err(err) => tracing::error!(error = %err, "disk spool unavailable; memory only"),
            }
        }
        buffer
    }

    /// Takes over batches a previous run spooled, under new sequences.
    fn adopt_spooled(&mut self, files: Vec<PathBuf>) {
        for path in files {
            match Spool::read(&path) {
                Ok((body, records)) => {
                    let bytes = body.len();
                    let seq = self.take_seq();
                    self.spool_bytes += bytes as u64;
                    ExportStats::add(&self.stats.records_in, records as u64);
                    self.unacked.insert(
                        seq,
                        Held {
                            body: None,
                            spooled: Some(path),
                            records,
                            bytes,
                        },
                    );
                }
                Err(err) => tracing::error!(error = %err, "skipping unreadable spool file"),
            }
        }
        if !self.unacked.is_empty() {
            tracing::info!(
                batches = self.unacked.len(),
                "resending batches spooled by a previous run"
            );
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn full(&self, extra_bytes: usize) -> bool {
        self.mem_records + 1 > self.max_records || self.mem_bytes + extra_bytes > self.max_bytes
    }

    /// Takes a record (encoding it into the pending batch); drops and
    /// counts it if there is no room anywhere. Returns true when a full
    /// batch is ready.
    pub(crate) fn push(&mut self, record: &ConnectionRecord) -> bool {
        let encoded_len = record.encoded_len();
        let bytes = wire::framed_len(encoded_len);
        if self.full(bytes) {
            // Make room by moving the pending records to the spool.
            if self.spool.is_some() && self.pending_records > 0 {
                self.cut_batch();
            }
            if self.full(bytes) {
                ExportStats::drop_records(&self.stats.dropped_buffer_full, 1, "export buffer full");
                return false;
            }
        }
        if self.pending_records == 0 {
            if self.pending.capacity() == 0
                && let Some(spare) = self.spares.pop()
            {
                self.pending = spare;
            }
            // A spare is taken as it is unless it is smaller than the last
            // body (growing it would copy it to fresh pages).
            if self.pending.capacity() < self.last_body.max(4096) {
                self.pending
                    .reserve((self.last_body + self.last_body / HEADROOM).max(4096));
            }
            wire::begin_body(&self.agent_id, &mut self.pending);
            self.mem_bytes += self.pending.len();
        }
        let written = wire::push_sized_record(record, encoded_len, &mut self.pending);
        self.pending_records += 1;
        self.mem_records += 1;
        self.mem_bytes += written;
        self.pending_records >= self.batch_max_records
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.pending_records > 0
    }

    /// Turns the pending records into a batch (kept in memory, or spooled
    /// when memory is over its bound).
    pub(crate) fn cut_batch(&mut self) {
        if self.pending_records == 0 {
            return;
        }
        let body = std::mem::take(&mut self.pending);
        let count = std::mem::take(&mut self.pending_records);
        self.last_body = body.len();
        let seq = self.take_seq();
        let over = self.mem_records > self.max_records / 2 || self.mem_bytes > self.max_bytes / 2;
        // Already counted in `mem_bytes` as it was encoded.
        let bytes = body.len();
        let mut held = Held {
            body: None,
            spooled: None,
            records: count,
            bytes,
        };
        let room = self.spool_bytes + bytes as u64 <= self.spool_max_bytes;
        if let (true, true, Some(spool)) = (over, room, self.spool.as_mut()) {
            match spool.write(&body) {
                Ok(path) => {
                    self.spool_bytes += bytes as u64;
                    self.mem_records -= count;
                    self.mem_bytes -= bytes;
                    held.spooled = Some(path);
                    ExportStats::add(&self.stats.batches_spooled, 1);
                    self.unacked.insert(seq, held);
                    return;
                }
                Err(err) => {
                    tracing::error!(error = %err, "spooling a batch failed; keeping it in memory");
                }
            }
        }
        held.body = Some(Arc::new(body));
        self.unacked.insert(seq, held);
    }

    /// The batch with `seq`, read from the spool if needed.
    pub(crate) fn batch(&self, seq: u64) -> Option<EncodedBatch> {
        let held = self.unacked.get(&seq)?;
        if let Some(body) = &held.body {
            return Some(EncodedBatch {
                sequence: seq,
                body: body.clone(),
            });
        }
        let path = held.spooled.as_ref()?;
        match Spool::read(path) {
            Ok((body, _)) => Some(EncodedBatch {
                sequence: seq,
                body: Arc::new(body),
            }),
            Err(err) => {
                tracing::error!(error = %err, "reading a spooled batch failed");
                None
            }
        }
    }

    /// Forgets an acknowledged (or rejected) batch; returns its record count.
    pub(crate) fn release(&mut self, seq: u64) -> Option<usize> {
        let held = self.unacked.remove(&seq)?;
        match &held.spooled {
            Some(path) => {
                Spool::remove(path);
                self.spool_bytes = self.spool_bytes.saturating_sub(held.bytes as u64);
            }
            None => {
                self.mem_records -= held.records;
                self.mem_bytes -= held.bytes;
            }
        }
        if self.spares.len() < SPARES
            && let Some(Ok(mut body)) = held.body.map(Arc::try_unwrap)
        {
            body.clear();
            self.spares.push(body);
        }
        Some(held.records)
    }

    /// Records still held (pending + unacknowledged).
    pub(crate) fn held_records(&self) -> u64 {
        (self.pending_records + self.unacked.values().map(|h| h.records).sum::<usize>()) as u64
    }

    /// Held records not on disk: lost if the process ends now.
    pub(crate) fn held_in_memory(&self) -> u64 {
        self.mem_records as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn record(i: usize) -> ConnectionRecord {
        ConnectionRecord {
            connection_id: format!("id-{i}"),
            ..Default::default()
        }
    }

    fn cfg(max_records: usize) -> ExportConfig {
        ExportConfig {
            batch_max_records: 3,
            buffer_max_records: max_records,
            ..ExportConfig::default()
        }
    }

    #[test]
    fn batches_by_size_and_releases_on_ack() {
        let stats = Arc::new(ExportStats::default());
        let mut b = Buffer::new(&cfg(100), "a".into(), stats);
        assert!(!b.push(&record(0)));
        assert!(!b.push(&record(1)));
        assert!(b.push(&record(2)), "third record fills the batch");
        b.cut_batch();
        let batch = b.batch(1).unwrap().decode().unwrap();
        assert_eq!(batch.sequence, 1);
        assert_eq!(batch.agent_id, "a");
        assert_eq!(batch.records, vec![record(0), record(1), record(2)]);
        assert_eq!(b.held_records(), 3);
        assert_eq!(b.release(1), Some(3));
        assert_eq!(b.held_records(), 0);
        assert_eq!(b.release(1), None);
    }

    #[test]
    fn past_capacity_records_are_dropped_and_counted() {
        let stats = Arc::new(ExportStats::default());
        let mut b = Buffer::new(&cfg(4), "a".into(), stats.clone());
        for i in 0..6 {
            b.push(&record(i));
        }
        assert_eq!(stats.dropped_buffer_full.load(Ordering::Relaxed), 2);
        assert_eq!(b.held_records(), 4);
    }

    #[test]
    fn spool_takes_what_memory_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(ExportStats::default());
        let mut c = cfg(4);
        c.spool_dir = Some(dir.path().to_path_buf());
        let mut b = Buffer::new(&c, "a".into(), stats.clone());
        for i in 0..12 {
            if b.push(&record(i)) {
                b.cut_batch();
            }
        }
        b.cut_batch();
        assert_eq!(stats.dropped_buffer_full.load(Ordering::Relaxed), 0);
        assert_eq!(b.held_records(), 12);
        assert!(stats.batches_spooled.load(Ordering::Relaxed) >= 2);
        let ids: Vec<String> = b
            .unacked
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|s| b.batch(s).unwrap().decode().unwrap().records)
            .map(|r| r.connection_id)
            .collect();
        assert_eq!(ids, (0..12).map(|i| format!("id-{i}")).collect::<Vec<_>>());
        // A new run finds the spooled batches.
        let again = Buffer::new(&c, "a".into(), Arc::new(ExportStats::default()));
        assert_eq!(
            again.held_records() as usize,
            b.unacked
                .values()
                .filter(|h| h.spooled.is_some())
                .map(|h| h.records)
                .sum::<usize>()
        );
    }
}
