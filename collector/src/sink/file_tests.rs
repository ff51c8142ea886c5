//! File sink behaviour on real files: atomic finalisation, size rotation,
//! gzip, hourly partitions, an unusable directory, crash recovery.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use connlog_proto::Field;
use connlog_proto::v1::ConnectionRecord;

use super::FileSink;
use crate::config::{FileSinkConfig, Fsync};
use crate::format::{Encoder, Format};
use crate::sink::path::PathTemplate;

fn cfg(dir: &Path, format: Format, gzip: bool, rotate_bytes: u64) -> FileSinkConfig {
    FileSinkConfig {
        index: 0,
        encoder: Encoder::new(
            format,
            vec![Field::ConnectionId, Field::ConnectionStatus],
            "\t".into(),
        ),
        dir: dir.to_path_buf(),
        template: PathTemplate::parse("{DistributionId}/{HH}", false).unwrap(),
        gzip,
        rotate_bytes,
        idle_close: Duration::from_secs(60),
        fsync: Fsync::Batch,
    }
}

fn records(from: u64, n: u64, ts: u64) -> Vec<ConnectionRecord> {
    (from..from + n)
        .map(|i| {
            let mut r = connlog_proto::sample::record("t", "E2DX", i);
            r.event_timestamp_ms = ts;
            r
        })
        .collect()
}

fn write(sink: &mut FileSink, recs: &[ConnectionRecord]) -> Result<(), super::SinkError> {
    let refs: Vec<&ConnectionRecord> = recs.iter().collect();
    sink.write(&refs, None)
}

/// (finalised files, hidden temporary files) under `dir`.
fn files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut done, mut tmp) = (Vec::new(), Vec::new());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with('.') {
                tmp.push(p);
            } else {
                done.push(p);
            }
        }
    }
    done.sort();
    (done, tmp)
}

fn lines(paths: &[PathBuf], gzip: bool) -> Vec<String> {
    let mut out = Vec::new();
    for p in paths {
        let text = if gzip {
            // An independent reader: gzip(1) handles multi-member files.
            let o = Command::new("gzip").arg("-dc").arg(p).output().unwrap();
            assert!(o.status.success(), "gzip -dc {}", p.display());
            String::from_utf8(o.stdout).unwrap()
        } else {
            std::fs::read_to_string(p).unwrap()
        };
        out.extend(text.lines().map(str::to_owned));
    }
    out.sort();
    out
}

// 2026-11-27T07:15:00Z and an hour later.
const H7: u64 = 1_795_763_700_000;
const H8: u64 = H7 + 3_600_000;

#[test]
fn files_appear_only_when_complete_and_rotate_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = FileSink::new(cfg(dir.path(), Format::Plain, false, 300));
    write(&mut sink, &records(0, 10, H7)).unwrap();
    let (done, tmp) = files(dir.path());
    assert!(done.is_empty(), "nothing visible before it is complete");
    assert_eq!(tmp.len(), 1);
    for i in 0..10 {
        write(&mut sink, &records(10 + i * 10, 10, H7)).unwrap();
    }
    sink.flush_finalised();
    let (done, _) = files(dir.path());
    assert!(done.len() >= 2, "rotated by size: {done:?}");
    sink.close_all();
    let (done, tmp) = files(dir.path());
    assert!(tmp.is_empty(), "{tmp:?}");
    let got = lines(&done, false);
    assert_eq!(got.len(), 110);
    let name = done[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("E2DX.2026-11-27-07.") && name.ends_with(".log"),
        "{name}"
    );
    assert!(done[0].starts_with(dir.path().join("E2DX/07")));
}

#[test]
fn gzip_files_read_back_with_gzip_and_hours_are_separate_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = FileSink::new(cfg(dir.path(), Format::Json, true, 1 << 30));
    write(&mut sink, &records(0, 5, H7)).unwrap();
    let mut mixed = records(5, 5, H8);
    mixed.extend(records(10, 5, H7));
    write(&mut sink, &mixed).unwrap();
    sink.close_all();
    let (done, tmp) = files(dir.path());
    assert!(tmp.is_empty());
    assert_eq!(done.len(), 2, "one file per hour: {done:?}");
    assert!(
        done.iter()
            .all(|p| p.to_string_lossy().ends_with(".json.gz"))
    );
    let hour8 = lines(&[done[1].clone()], true);
    assert_eq!(hour8.len(), 5);
    assert!(hour8.iter().all(|l| l.contains("\"connectionId\":\"t-")));
    assert_eq!(lines(&done, true).len(), 15);
}

#[test]
fn unusable_directory_fails_the_batch_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // A plain file where the partition directory must go: even root
    // cannot create the directory.
    std::fs::write(dir.path().join("E2DX"), b"in the way").unwrap();
    let mut sink = FileSink::new(cfg(dir.path(), Format::Plain, false, 1 << 30));
    let err = write(&mut sink, &records(0, 3, H7))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("sink[0] ("), "{err}");
    assert!(err.contains("E2DX/07"), "{err}");
    assert!(
        err.contains("File exists") || err.contains("Not a directory"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("E2DX")).unwrap();
    write(&mut sink, &records(0, 3, H7)).unwrap();
    sink.close_all();
    assert_eq!(
        lines(&files(dir.path()).0, false).len(),
        3,
        "written once after recovery"
    );
}

#[test]
fn a_crash_leaves_temporaries_that_the_next_start_finalises() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = FileSink::new(cfg(dir.path(), Format::Plain, false, 1 << 30));
    write(&mut sink, &records(0, 4, H7)).unwrap();
    drop(sink); // no finalisation: as if killed
    let (done, tmp) = files(dir.path());
    assert!(done.is_empty());
    // A torn half line at the end, as a crash mid-write leaves.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&tmp[0])
        .unwrap();
    std::io::Write::write_all(&mut f, b"t-99\tSucc").unwrap();
    let mut sink = FileSink::new(cfg(dir.path(), Format::Plain, false, 1 << 30));
    assert_eq!(sink.recover(), 1);
    let (done, tmp) = files(dir.path());
    assert!(tmp.is_empty());
    let got = lines(&done, false);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got.iter()
            .all(|l| l.ends_with("\tSuccess") || l.ends_with("\tFailed:TcpTimeout"))
    );
}
