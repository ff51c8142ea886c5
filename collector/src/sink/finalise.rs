//! Finalising a file sink's complete files on a thread of their own: the
//! fsync of a rotated 128 MiB file (and a Parquet conversion) takes long,
//! and on the writer thread it held up every batch behind it. A file is
//! still renamed to its final name only after its data is on disk; one
//! whose finalisation fails (e.g. disk full) is retried every
//! [`RETRY`]. A crash before that leaves the temporary file, which the
//! next start finalises (`FileSink::recover`).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::SinkError;
use crate::config::FileSinkConfig;
use crate::format::{Format, journal_read, write_parquet};

/// How often a failed finalisation is tried again.
const RETRY: Duration = Duration::from_millis(500);

/// A complete file: its temporary path and the name it gets.
pub(super) struct Complete {
    pub(super) temp: PathBuf,
    pub(super) final_path: PathBuf,
}

enum Job {
    Finalise(Complete),
    /// Answered once every file sent before it was tried at least once.
    Flush(mpsc::SyncSender<()>),
}

pub(super) struct Finaliser {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Finaliser {
    pub(super) fn start(cfg: &FileSinkConfig) -> Self {
        let cfg = cfg.clone();
        let (jobs, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("connlog-final{}", cfg.index))
            .spawn(move || run(&cfg, &rx));
        match thread {
            Ok(thread) => Self {
                jobs: Some(jobs),
                thread: Some(thread),
            },
            Err(e) => {
                // Without the thread, files are finalised where they
                // complete (`send` falls back).
                tracing::warn!(error = %e, "no finaliser thread; finalising on the writer");
                Self {
                    jobs: None,
                    thread: None,
                }
            }
        }
    }

    /// Finalises `file` on the thread (here, if there is none).
    pub(super) fn send(&self, cfg: &FileSinkConfig, file: Complete) {
        let file = match &self.jobs {
            Some(jobs) => match jobs.send(Job::Finalise(file)) {
                Ok(()) => return,
                Err(mpsc::SendError(Job::Finalise(file))) => file,
                Err(_) => return,
            },
            None => file,
        };
        if let Err(err) = finalise(cfg, &file.temp, &file.final_path) {
            tracing::error!(error = %err, "finalising a file failed");
        }
    }

    /// Waits until every file sent so far was tried.
    pub(super) fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        if let Some(jobs) = &self.jobs
            && jobs.send(Job::Flush(done)).is_ok()
        {
            let _ = wait.recv();
        }
    }
}

impl Drop for Finaliser {
    /// Lets the thread finish what it was sent (one last try for files
    /// that failed).
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(cfg: &FileSinkConfig, jobs: &mpsc::Receiver<Job>) {
    let mut failed: Vec<Complete> = Vec::new();
    let attempt = |file: &Complete| match finalise(cfg, &file.temp, &file.final_path) {
        Ok(()) => {
            tracing::debug!(file = %file.final_path.display(), "file complete");
            true
        }
        Err(err) => {
            tracing::error!(error = %err, "finalising a file failed; will retry");
            false
        }
    };
    loop {
        let job = if failed.is_empty() {
            jobs.recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            jobs.recv_timeout(RETRY)
        };
        match job {
            Ok(Job::Finalise(file)) => {
                if !attempt(&file) {
                    failed.push(file);
                }
            }
            Ok(Job::Flush(done)) => {
                let _ = done.send(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => failed.retain(|f| !attempt(f)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                failed.retain(|f| !attempt(f));
                return;
            }
        }
    }
}

fn io_err(cfg: &FileSinkConfig, path: &Path, source: std::io::Error) -> SinkError {
    SinkError::Io {
        sink: super::file::sink_name(cfg),
        path: path.to_path_buf(),
        source,
    }
}

/// Makes `temp` durable and renames it to `final_path` (Parquet: converts
/// its journal first).
pub(super) fn finalise(
    cfg: &FileSinkConfig,
    temp: &Path,
    final_path: &Path,
) -> Result<(), SinkError> {
    if cfg.encoder.format == Format::Parquet {
        let mut journal = Vec::new();
        File::open(temp)
            .and_then(|mut f| f.read_to_end(&mut journal))
            .map_err(|e| io_err(cfg, temp, e))?;
        let (records, _) = journal_read(&journal);
        let pq_temp = temp.with_extension("parquet-tmp");
        let out = File::create(&pq_temp).map_err(|e| io_err(cfg, &pq_temp, e))?;
        let written = write_parquet(&cfg.encoder.fields, &records, &out)
            .map_err(|e| SinkError::Parquet {
                sink: super::file::sink_name(cfg),
                path: pq_temp.clone(),
                message: e.to_string(),
            })
            .and_then(|()| out.sync_all().map_err(|e| io_err(cfg, &pq_temp, e)));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&pq_temp);
            return Err(e);
        }
        std::fs::rename(&pq_temp, final_path).map_err(|e| io_err(cfg, final_path, e))?;
        std::fs::remove_file(temp).map_err(|e| io_err(cfg, temp, e))?;
    } else {
        File::open(temp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err(cfg, temp, e))?;
        std::fs::rename(temp, final_path).map_err(|e| io_err(cfg, final_path, e))?;
    }
    if let Some(dir) = final_path.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}
