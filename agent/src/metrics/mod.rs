//! The agent's counters in Prometheus' text format (`[metrics] listen`):
//! what the probe, the terminator, the connection functions, the joiner and
//! the exporter count, and the records by `connectionStatus`. Every drop
//! in the agent is one of these counters.

mod http;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

pub use http::{Endpoint, bind};

use crate::export::ExportStats;
use crate::function::FunctionPool;
use crate::join::JoinStats;
use crate::probe::{Missing, ProbeStatsSource};
use crate::tls::TlsCounters;

/// Records handed to the exporter, by `connectionStatus`.
#[derive(Debug, Default)]
pub struct StatusCounts(Mutex<BTreeMap<String, u64>>);

impl StatusCounts {
    pub fn count(&self, record: &connlog_proto::v1::ConnectionRecord) {
        let status = connlog_proto::status_text(record).unwrap_or_else(|| "Unspecified".to_owned());
        let mut map = match self.0.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        *map.entry(status).or_insert(0) += 1;
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        match self.0.lock() {
            Ok(map) => map.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Where the counters live. Parts that are off (probe, functions) are
/// `None` and left out.
#[derive(Clone)]
pub struct Sources {
    pub probe: Option<ProbeStatsSource>,
    pub tls: Arc<TlsCounters>,
    pub functions: Option<&'static FunctionPool>,
    pub join: Arc<JoinStats>,
    pub export: Arc<ExportStats>,
    pub records: Arc<StatusCounts>,
}

/// The exposition text.
pub fn render(s: &Sources) -> String {
    let mut out = String::new();
    if let Some(probe) = &s.probe {
        let p = probe.stats();
        counter(
            &mut out,
            "probe_ring_full",
            "Kernel events dropped because the ring buffer was full (all CPUs).",
            p.ring_full,
        );
        counter(
            &mut out,
            "probe_channel_full",
            "Kernel events dropped because the probe's consumer channel was full.",
            p.channel_full,
        );
        counter(
            &mut out,
            "probe_table_full",
            "Attempts the probe's kernel table evicted before their outcome was reported.",
            p.table_full,
        );
        counter(
            &mut out,
            "probe_established_after_timeout",
            "Connections ESTABLISHED after their attempt was recorded as TcpTimeout (no second record).",
            p.established_after_timeout,
        );
        let _ = writeln!(
            out,
            "# HELP connlog_probe_tracked Attempts in the probe's kernel table at the last sweep.\n\
             # TYPE connlog_probe_tracked gauge\nconnlog_probe_tracked {}",
            p.tracked
        );
        let _ = writeln!(
            out,
            "# HELP connlog_probe_kernel_feature_missing 1 for each hook this kernel lacks \
             (the probe uses a fallback, docs/kernels.md).\n\
             # TYPE connlog_probe_kernel_feature_missing gauge"
        );
        for feature in Missing::ALL {
            let missing = u8::from(probe.missing().contains(&feature));
            let _ = writeln!(
                out,
                "connlog_probe_kernel_feature_missing{{feature=\"{}\"}} {missing}",
                feature.name()
            );
        }
    }
    for (name, value) in s.tls.snapshot() {
        counter(&mut out, name, "TLS terminator counter.", value);
    }
    if let Some(pool) = s.functions {
        for (name, value) in pool.counters().snapshot() {
            counter(&mut out, name, "Connection function counter.", value);
        }
    }
    let j = &s.join;
    let join: [(&str, &str, &AtomicU64); 8] = [
        (
            "join_joined",
            "Records with both the kernel and the TLS half.",
            &j.joined,
        ),
        (
            "join_tls_only",
            "Records whose kernel half never came.",
            &j.tls_only,
        ),
        (
            "join_kernel_only",
            "Kernel failures that never reached accept().",
            &j.kernel_only,
        ),
        (
            "join_overflow_emitted",
            "TLS outcomes emitted early because the join table was full.",
            &j.overflow_emitted,
        ),
        (
            "join_overflow_kernel_dropped",
            "Kernel halves dropped because the join table was full.",
            &j.overflow_kernel_dropped,
        ),
        (
            "join_kernel_expired",
            "Kernel halves whose TLS outcome never came.",
            &j.kernel_expired,
        ),
        (
            "join_duplicate_outcomes",
            "TLS outcomes seen twice.",
            &j.duplicate_outcomes,
        ),
        (
            "join_after_timeout",
            "TLS outcomes dropped: their attempt was already recorded as TcpTimeout.",
            &j.after_timeout,
        ),
    ];
    for (name, help, value) in join {
        counter(&mut out, name, help, JoinStats::get(value));
    }
    let e = &s.export;
    let export: [(&str, &str, &AtomicU64); 10] = [
        (
            "export_records_in",
            "Records accepted by the exporter.",
            &e.records_in,
        ),
        (
            "export_records_acked",
            "Records the collector acknowledged.",
            &e.records_acked,
        ),
        (
            "export_dropped_queue_full",
            "Records dropped because the exporter's input queue was full.",
            &e.dropped_queue_full,
        ),
        (
            "export_dropped_buffer_full",
            "Records dropped because the buffer (and spool) were full.",
            &e.dropped_buffer_full,
        ),
        (
            "export_rejected",
            "Records the collector refused as malformed.",
            &e.rejected,
        ),
        (
            "export_unsent_at_shutdown",
            "Records still unsent when shutdown's deadline passed.",
            &e.unsent_at_shutdown,
        ),
        ("export_batches_sent", "Batches sent.", &e.batches_sent),
        (
            "export_batches_resent",
            "Batches sent again after a reconnect.",
            &e.batches_resent,
        ),
        (
            "export_batches_spooled",
            "Batches written to the disk spool.",
            &e.batches_spooled,
        ),
        (
            "export_connect_failures",
            "Failed connections to the collector.",
            &e.connect_failures,
        ),
    ];
    for (name, help, value) in export {
        counter(&mut out, name, help, ExportStats::get(value));
    }
    let _ = writeln!(
        out,
        "# HELP connlog_records_total Records handed to the exporter, by connectionStatus."
    );
    let _ = writeln!(out, "# TYPE connlog_records_total counter");
    for (status, n) in s.records.snapshot() {
        // Status texts are SPEC.md codes: no quote or backslash to escape.
        let _ = writeln!(out, "connlog_records_total{{status=\"{status}\"}} {n}");
    }
    out
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP connlog_{name}_total {help}");
    let _ = writeln!(out, "# TYPE connlog_{name}_total counter");
    let _ = writeln!(out, "connlog_{name}_total {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_statuses() {
        let sources = Sources {
            probe: None,
            tls: Arc::default(),
            functions: None,
            join: Arc::default(),
            export: Arc::default(),
            records: Arc::default(),
        };
        ExportStats::add(&sources.export.records_in, 3);
        let mut ok = connlog_proto::v1::ConnectionRecord::default();
        ok.set_status(connlog_proto::v1::Status::Success);
        sources.records.count(&ok);
        sources.records.count(&ok);
        let text = render(&sources);
        assert!(
            text.contains("\nconnlog_export_records_in_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("\nconnlog_records_total{status=\"Success\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE connlog_tls_accepted_total counter\nconnlog_tls_accepted_total 0\n"
            ),
            "{text}"
        );
        assert!(!text.contains("probe_"), "probe off: {text}");
        // Every sample line is `name value` or `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("connlog_"), "{line}");
            value.parse::<u64>().unwrap();
        }
    }
}
