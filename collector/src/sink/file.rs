//! A file sink: records appended to per-partition temporary files, which
//! become visible under their final names only when complete (size
//! rotation, idle, shutdown). A batch is appended as one chunk; if any part
//! of it fails, every file it touched is cut back to where it was, so a
//! retried batch is never written twice.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use connlog_proto::v1::ConnectionRecord;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::SinkError;
use super::finalise::{Complete, Finaliser, finalise};
use super::path::Partition;
use crate::config::{FileSinkConfig, Fsync};
use crate::encoded::Ahead;
use crate::format::Format;

const TMP_SUFFIX: &str = ".connlog-tmp";

struct OpenFile {
    temp: PathBuf,
    final_path: PathBuf,
    file: File,
    len: u64,
    last_write: Instant,
}

pub(crate) struct FileSink {
    cfg: FileSinkConfig,
    open: HashMap<Partition, OpenFile>,
    /// Makes complete files durable and visible, off the writer thread.
    finaliser: Finaliser,
    counter: u64,
    /// A batch's bytes for one file, reused from batch to batch.
    chunk: Vec<u8>,
}

impl FileSink {
    pub(crate) fn new(cfg: FileSinkConfig) -> Self {
        Self {
            finaliser: Finaliser::start(&cfg),
            cfg,
            open: HashMap::new(),
            counter: 0,
            chunk: Vec::new(),
        }
    }

    fn name(&self) -> String {
        sink_name(&self.cfg)
    }

    fn temp_tag(&self) -> String {
        format!(".s{}{TMP_SUFFIX}", self.cfg.index)
    }

    /// Appends `records` (their bytes taken from `ahead` when the batch
    /// was encoded already); all or nothing.
    pub(crate) fn write(
        &mut self,
        records: &[&ConnectionRecord],
        ahead: Option<Ahead<'_>>,
    ) -> Result<(), SinkError> {
        // Each partition's records, as positions in `records`.
        let mut groups: Vec<(Partition, Vec<usize>)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let (id, ms) = (&r.distribution_id, r.event_timestamp_ms);
            match groups.iter_mut().find(|(q, _)| q.holds(id, ms)) {
                Some((_, list)) => list.push(i),
                None => groups.push((Partition::of(id, ms), vec![i])),
            }
        }
        let mut touched: Vec<(Partition, u64)> = Vec::new();
        let result = self.write_groups(records, ahead, &groups, &mut touched);
        if result.is_err() {
            for (p, len) in &touched {
                if let Some(f) = self.open.get_mut(p) {
                    // Best effort: truncating needs no free space.
                    let _ = f.file.set_len(*len);
                    f.len = *len;
                }
            }
            return result;
        }
        if self.cfg.fsync == Fsync::Batch {
            for (p, _) in &touched {
                if let Some(f) = self.open.get(p) {
                    f.file.sync_data().map_err(|e| self.io_err(&f.temp, e))?;
                }
            }
        }
        for (p, _) in touched {
            let full = self
                .open
                .get(&p)
                .is_some_and(|f| f.len >= self.cfg.rotate_bytes);
            if let Some(f) = full.then(|| self.open.remove(&p)).flatten() {
                self.finalise(f);
            }
        }
        Ok(())
    }

    fn write_groups(
        &mut self,
        records: &[&ConnectionRecord],
        ahead: Option<Ahead<'_>>,
        groups: &[(Partition, Vec<usize>)],
        touched: &mut Vec<(Partition, u64)>,
    ) -> Result<(), SinkError> {
        for (partition, list) in groups {
            if !self.open.contains_key(partition) {
                let f = self.open_file(partition)?;
                self.open.insert(partition.clone(), f);
            }
            let gzip = self.cfg.gzip;
            let encoder = &self.cfg.encoder;
            let Some(f) = self.open.get_mut(partition) else {
                continue;
            };
            // Records encoded already and in one run go to the file as
            // they are (no header to put first, nothing to compress).
            let as_is = ahead
                .filter(|_| !gzip && (f.len > 0 || !encoder.has_header()))
                .and_then(|a| a.run(list));
            let chunk = &mut self.chunk;
            chunk.clear();
            if as_is.is_none() {
                if f.len == 0 {
                    encoder.header(chunk);
                }
                match ahead {
                    Some(a) => a.append(list.iter().copied(), chunk),
                    None => encoder.encode(list.iter().map(|&i| records[i]), chunk),
                }
                if gzip {
                    *chunk = gzip_member(chunk);
                }
            }
            let chunk = as_is.unwrap_or(chunk);
            touched.push((partition.clone(), f.len));
            let res = f.file.write_all(chunk);
            if let Err(e) = res {
                let temp = f.temp.clone();
                return Err(self.io_err(&temp, e));
            }
            f.len += chunk.len() as u64;
            f.last_write = Instant::now();
        }
        Ok(())
    }

    fn open_file(&mut self, partition: &Partition) -> Result<OpenFile, SinkError> {
        let dir = self.cfg.template.dir(&self.cfg.dir, partition);
        std::fs::create_dir_all(&dir).map_err(|e| self.io_err(&dir, e))?;
        self.counter += 1;
        let unique = format!("{:x}-{}-{:08x}", unix_ms(), self.counter, fastrand::u32(..));
        let ext = self.cfg.encoder.format.extension();
        let name = partition.file_name(&unique, ext, self.cfg.gzip);
        let final_path = dir.join(&name);
        let temp = dir.join(format!(".{name}{}", self.temp_tag()));
        let file = OpenOptions::new()
            .create_new(true)
            // Append: after a failed batch is cut off, the next write goes
            // to the new end, not the old file position.
            .append(true)
            .open(&temp)
            .map_err(|e| self.io_err(&temp, e))?;
        Ok(OpenFile {
            temp,
            final_path,
            file,
            len: 0,
            last_write: Instant::now(),
        })
    }

    fn io_err(&self, path: &Path, source: std::io::Error) -> SinkError {
        SinkError::Io {
            sink: self.name(),
            path: path.to_path_buf(),
            source,
        }
    }

    /// Finalises files idle for longer than the configured time and retries
    /// failed finalisations.
    pub(crate) fn tick(&mut self, now: Instant) {
        let idle = self.cfg.idle_close;
        let stale: Vec<Partition> = self
            .open
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.last_write) >= idle)
            .map(|(p, _)| p.clone())
            .collect();
        for p in stale {
            if let Some(f) = self.open.remove(&p) {
                self.finalise(f);
            }
        }
    }

    /// Finalises every open file and waits until each was tried
    /// (shutdown).
    pub(crate) fn close_all(&mut self) {
        let all: Vec<OpenFile> = self.open.drain().map(|(_, f)| f).collect();
        for f in all {
            self.finalise(f);
        }
        self.finaliser.flush();
    }

    /// Waits until every file handed to the finaliser so far was tried.
    #[cfg(test)]
    pub(crate) fn flush_finalised(&self) {
        self.finaliser.flush();
    }

    /// Hands a complete file to the finaliser (the handle closes here).
    fn finalise(&mut self, f: OpenFile) {
        let OpenFile {
            temp, final_path, ..
        } = f;
        self.finaliser
            .send(&self.cfg, Complete { temp, final_path });
    }

    /// At startup: finalises this sink's temporary files left by a crash.
    /// A torn last line (text) or record (Parquet journal) is cut off;
    /// gzip files are kept as they are (each batch is its own member).
    pub(crate) fn recover(&mut self) -> usize {
        let tag = self.temp_tag();
        let mut found = Vec::new();
        collect_temps(&self.cfg.dir, &tag, &mut found, 0);
        let mut count = 0;
        for temp in found {
            let Some(name) = temp.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(final_name) = name.strip_prefix('.').and_then(|n| n.strip_suffix(&tag)) else {
                continue;
            };
            let final_path = temp.with_file_name(final_name);
            if final_path.exists() {
                let _ = std::fs::remove_file(&temp);
                continue;
            }
            let text = !self.cfg.gzip && self.cfg.encoder.format != Format::Parquet;
            if let Err(e) = if text { cut_torn_line(&temp) } else { Ok(()) } {
                tracing::error!(file = %temp.display(), error = %e, "recovering a file failed");
                continue;
            }
            match finalise(&self.cfg, &temp, &final_path) {
                Ok(()) => count += 1,
                Err(e) => tracing::error!(error = %e, "recovering a file failed"),
            }
        }
        count
    }
}

pub(super) fn sink_name(cfg: &FileSinkConfig) -> String {
    format!("sink[{}] ({})", cfg.index, cfg.dir.display())
}

fn collect_temps(dir: &Path, tag: &str, out: &mut Vec<PathBuf>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && depth < 16 {
            collect_temps(&path, tag, out, depth + 1);
        } else if kind.is_file() && path.to_string_lossy().ends_with(tag) {
            out.push(path);
        }
    }
}

fn cut_torn_line(path: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if keep < bytes.len() {
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(keep as u64)?;
    }
    Ok(())
}

fn gzip_member(chunk: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::with_capacity(chunk.len() / 4), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(chunk);
    gz.finish().unwrap_or_default()
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
