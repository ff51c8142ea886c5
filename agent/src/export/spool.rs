//! The optional disk queue: batches that do not fit in memory, one file per
//! batch (`<n>.batch`, a protobuf `RecordBatch` as the exporter encoded it,
//! without its sequence), read back in order. Files left by a previous run
//! are picked up at start.

use std::path::{Path, PathBuf};

use connlog_proto::v1::RecordBatch;
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool {path}: not a record batch: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: prost::DecodeError,
    },
}

pub(crate) struct Spool {
    dir: PathBuf,
    next: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Spool {
    /// Opens (creating) the directory; returns the spool and the files a
    /// previous run left, oldest first.
    pub(crate) fn open(dir: &Path) -> Result<(Spool, Vec<PathBuf>), SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                let n = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".batch")?
                    .parse()
                    .ok()?;
                Some((n, path))
            })
            .collect();
        found.sort();
        let next = found.last().map_or(0, |(n, _)| n + 1);
        let spool = Spool {
            dir: dir.to_path_buf(),
            next,
        };
        Ok((spool, found.into_iter().map(|(_, p)| p).collect()))
    }

    /// Writes an encoded batch body durably; returns its path.
    pub(crate) fn write(&mut self, body: &[u8]) -> Result<PathBuf, SpoolError> {
        let path = self.dir.join(format!("{:020}.batch", self.next));
        let tmp = self.dir.join(format!("{:020}.tmp", self.next));
        self.next += 1;
        std::fs::write(&tmp, body).map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(path)
    }

    /// A spooled batch body and its record count, checked to decode.
    pub(crate) fn read(path: &Path) -> Result<(Vec<u8>, usize), SpoolError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let batch = RecordBatch::decode(bytes.as_slice()).map_err(|source| SpoolError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
        Ok((bytes, batch.records.len()))
    }

    pub(crate) fn remove(path: &Path) {
        if let Err(err) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %err, "removing a sent spool file failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connlog_proto::v1::ConnectionRecord;

    #[test]
    fn batches_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, left) = Spool::open(dir.path()).unwrap();
        assert!(left.is_empty());
        for seq in [5, 6] {
            let batch = RecordBatch {
                sequence: seq,
                agent_id: "a".into(),
                records: vec![ConnectionRecord {
                    connection_id: format!("c{seq}"),
                    ..Default::default()
                }],
            };
            spool.write(&batch.encode_to_vec()).unwrap();
        }
        let (_, left) = Spool::open(dir.path()).unwrap();
        assert_eq!(left.len(), 2);
        let (first, n) = Spool::read(&left[0]).unwrap();
        assert_eq!(n, 1);
        let first = RecordBatch::decode(first.as_slice()).unwrap();
        assert_eq!(first.records[0].connection_id, "c5");
    }
}
