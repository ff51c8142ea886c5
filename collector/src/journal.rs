//! The dedup window on disk, so a collector that is killed and restarted
//! still knows what it wrote: a record written but whose acknowledgement
//! never reached the agent is resent, and must be dropped as a duplicate.
//!
//! An append-only file of fixed entries (connection-id key, Unix ms, sink
//! index), appended after the sinks wrote a batch and before it is
//! acknowledged; read back at start (entries older than the window are
//! skipped) and rewritten compactly from time to time.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::dedup::Dedup;

const ENTRY: usize = 17;

pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    /// fsync after every batch (when a file sink fsyncs per batch).
    sync: bool,
    buf: Vec<u8>,
    /// Entries in the file.
    entries: usize,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Journal {
    /// Loads what `path` holds into `dedup`, rewrites it compactly and
    /// opens it for appending.
    pub(crate) fn open(path: &Path, sync: bool, dedup: &mut Dedup) -> std::io::Result<Journal> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (now, now_ms) = (Instant::now(), unix_ms());
        match std::fs::read(path) {
            Ok(bytes) => {
                for e in bytes.chunks_exact(ENTRY) {
                    let key = u64::from_le_bytes(e[..8].try_into().unwrap_or_default());
                    let at_ms = u64::from_le_bytes(e[8..16].try_into().unwrap_or_default());
                    let age = std::time::Duration::from_millis(now_ms.saturating_sub(at_ms));
                    if age > dedup.window() {
                        continue;
                    }
                    let at = now.checked_sub(age).unwrap_or(now);
                    dedup.mark(key, usize::from(e[16]), at);
                }
                dedup.expire(now);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut journal = Journal {
            path: path.to_path_buf(),
            file: OpenOptions::new().create(true).append(true).open(path)?,
            sync,
            buf: Vec::new(),
            entries: 0,
        };
        journal.compact(dedup)?;
        if journal.entries > 0 {
            tracing::info!(ids = dedup.len(), path = %path.display(), "dedup window restored");
        }
        Ok(journal)
    }

    /// Notes that `sink` wrote the record with `key`.
    pub(crate) fn record(&mut self, key: u64, sink: usize, at_ms: u64) {
        self.buf.extend_from_slice(&key.to_le_bytes());
        self.buf.extend_from_slice(&at_ms.to_le_bytes());
        self.buf.push(u8::try_from(sink).unwrap_or(u8::MAX));
    }

    /// Appends what was recorded since the last commit.
    pub(crate) fn commit(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.buf).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        self.entries += self.buf.len() / ENTRY;
        self.buf.clear();
        result
    }

    /// Rewrites the file from `dedup` when it holds far more entries than
    /// the window does.
    pub(crate) fn compact_if_large(&mut self, dedup: &Dedup) {
        if self.entries > 2 * dedup.len() + 100_000
            && let Err(e) = self.compact(dedup)
        {
            tracing::error!(path = %self.path.display(), error = %e, "compacting the dedup journal failed");
        }
    }

    fn compact(&mut self, dedup: &Dedup) -> std::io::Result<()> {
        let (now, now_ms) = (Instant::now(), unix_ms());
        let tmp = self.path.with_extension("tmp");
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        let mut entries = 0;
        for (at, key, sinks) in dedup.entries() {
            let at_ms = now_ms.saturating_sub(now.saturating_duration_since(at).as_millis() as u64);
            for sink in (0..64).filter(|b| sinks & (1u64 << b) != 0) {
                out.write_all(&key.to_le_bytes())?;
                out.write_all(&at_ms.to_le_bytes())?;
                out.write_all(&[sink as u8])?;
                entries += 1;
            }
        }
        let file = out
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.entries = entries;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_restarted_collector_remembers_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/dedup.journal");
        let mut d = Dedup::new(Duration::from_secs(600), 100);
        let mut j = Journal::open(&path, false, &mut d).unwrap();
        let (a, b) = (d.key("a"), d.key("b"));
        d.mark(a, 0, Instant::now());
        j.record(a, 0, unix_ms());
        d.mark(a, 1, Instant::now());
        j.record(a, 1, unix_ms());
        j.commit().unwrap();
        // An entry older than the window is not restored.
        j.record(b, 0, unix_ms() - 700_000);
        j.commit().unwrap();
        drop(j);
        let mut again = Dedup::new(Duration::from_secs(600), 100);
        let j = Journal::open(&path, false, &mut again).unwrap();
        assert_eq!(again.written_by(a), 0b11);
        assert_eq!(again.written_by(b), 0);
        assert_eq!(j.entries, 2, "compacted to what the window holds");
    }
}
