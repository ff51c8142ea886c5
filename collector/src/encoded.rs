//! Batches encoded ahead of the writer: a stream's task encodes each batch
//! for every file sink before handing it to the writer thread, so several
//! batches (and streams) encode in parallel with the one thread that drops
//! duplicates and appends. Every format encodes a record on its own (a
//! batch's bytes are its records' bytes one after another), so the writer
//! appends exactly the bytes of the records it keeps, in their order: the
//! same file content as encoding those records itself.

use std::sync::{Arc, Mutex, PoisonError};

use connlog_proto::v1::ConnectionRecord;

use crate::config::SinkConfig;
use crate::format::Encoder;

/// Encoded buffers kept for reuse: about what is in flight at once.
const POOL_BUFFERS: usize = 16;
/// A buffer larger than this is not kept.
const POOL_MAX_BYTES: usize = 8 << 20;

/// One batch in one sink's format, and where each record ends.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Encoded {
    /// The bytes of records `from..to` of the batch.
    pub(crate) fn records(&self, from: usize, to: usize) -> &[u8] {
        let start = if from == 0 { 0 } else { self.ends[from - 1] };
        let end = if to == 0 { 0 } else { self.ends[to - 1] };
        &self.bytes[start..end]
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Every file sink's encoder (`None` for the other sinks), shared by the
/// streams' tasks, with a pool of buffers the writer hands back.
#[derive(Clone)]
pub(crate) struct Encoders {
    sinks: Arc<Vec<Option<Encoder>>>,
    pool: Arc<Mutex<Vec<Encoded>>>,
}

impl Encoders {
    pub(crate) fn new(sinks: &[SinkConfig]) -> Self {
        let sinks = sinks
            .iter()
            .map(|s| match s {
                SinkConfig::File(f) => Some(f.encoder.clone()),
                _ => None,
            })
            .collect();
        Self {
            sinks: Arc::new(sinks),
            pool: Arc::default(),
        }
    }

    /// `records` encoded for each sink, by sink index.
    pub(crate) fn encode(&self, records: &[ConnectionRecord]) -> Vec<Option<Encoded>> {
        self.sinks
            .iter()
            .map(|encoder| {
                let encoder = encoder.as_ref()?;
                let mut e = self.take();
                e.ends.reserve(records.len());
                for r in records {
                    encoder.encode([r], &mut e.bytes);
                    e.ends.push(e.bytes.len());
                }
                Some(e)
            })
            .collect()
    }

    fn take(&self) -> Encoded {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// Keeps written batches' buffers for later batches.
    pub(crate) fn give(&self, encoded: Vec<Option<Encoded>>) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        for mut e in encoded.into_iter().flatten() {
            if pool.len() >= POOL_BUFFERS || e.bytes.capacity() > POOL_MAX_BYTES {
                continue;
            }
            e.bytes.clear();
            e.ends.clear();
            pool.push(e);
        }
    }
}

/// A batch's encoded bytes for one sink, and for each record the sink is
/// asked to write, its index in the batch.
#[derive(Clone, Copy)]
pub(crate) struct Ahead<'a> {
    pub(crate) encoded: &'a Encoded,
    pub(crate) index: &'a [usize],
}

impl<'a> Ahead<'a> {
    /// The bytes of the records at `positions` when they are one run of
    /// consecutive records of the batch.
    pub(crate) fn run(self, positions: &[usize]) -> Option<&'a [u8]> {
        let first = self.index[*positions.first()?];
        let consecutive = positions
            .iter()
            .enumerate()
            .all(|(k, &p)| self.index[p] == first + k);
        consecutive.then(|| self.encoded.records(first, first + positions.len()))
    }

    /// Appends the bytes of the records at `positions` (positions in the
    /// list the sink was asked to write), copying runs of consecutive
    /// records at once.
    pub(crate) fn append(&self, positions: impl IntoIterator<Item = usize>, out: &mut Vec<u8>) {
        let mut run: Option<(usize, usize)> = None;
        for p in positions {
            let i = self.index[p];
            run = match run {
                Some((from, to)) if to == i => Some((from, i + 1)),
                Some((from, to)) => {
                    out.extend_from_slice(self.encoded.records(from, to));
                    Some((i, i + 1))
                }
                None => Some((i, i + 1)),
            };
        }
        if let Some((from, to)) = run {
            out.extend_from_slice(self.encoded.records(from, to));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use connlog_proto::Field;

    fn want_01(encoder: &Encoder, records: &[ConnectionRecord]) -> Vec<u8> {
        let mut want = Vec::new();
        encoder.encode(&records[..2], &mut want);
        want
    }

    #[test]
    fn kept_records_are_the_bytes_encoding_them_alone_gives() {
        let encoder = Encoder::new(Format::Json, Field::cloudfront().to_vec(), "\t".into());
        let encoders = Encoders {
            sinks: Arc::new(vec![None, Some(encoder.clone())]),
            pool: Arc::default(),
        };
        let records: Vec<ConnectionRecord> = (0..6)
            .map(|n| connlog_proto::sample::record("a", "E2DX", n))
            .collect();
        for round in 0..2 {
            let encoded = encoders.encode(&records);
            assert!(encoded[0].is_none(), "not a file sink");
            let e = encoded[1].as_ref().unwrap();
            assert_eq!(e.len(), 6);
            // The writer keeps records 0, 1, 3 and 5 (2 and 4 duplicates).
            let index = [0, 1, 3, 5];
            let mut out = Vec::new();
            Ahead {
                encoded: e,
                index: &index,
            }
            .append(0..index.len(), &mut out);
            let mut want = Vec::new();
            encoder.encode(index.iter().map(|&i| &records[i]), &mut want);
            assert_eq!(out, want, "round {round}");
            let mut odd = Vec::new();
            Ahead {
                encoded: e,
                index: &index,
            }
            .append([1, 3], &mut odd);
            let mut want = Vec::new();
            encoder.encode([&records[1], &records[5]], &mut want);
            assert_eq!(odd, want);
            let kept = Ahead {
                encoded: e,
                index: &index,
            };
            assert_eq!(kept.run(&[0, 1]), Some(&want_01(&encoder, &records)[..]));
            assert_eq!(kept.run(&[1, 2]), None, "records 1 and 3: not one run");
            // Round 1 reuses round 0's buffers.
            encoders.give(encoded);
        }
    }
}
