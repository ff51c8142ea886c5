//! `[metrics] listen`: the agent's counters over plain HTTP in Prometheus'
//! text format, read with an independent client (Python's urllib) after a
//! known set of connections.

use std::time::Duration;

use anyhow::Result;
use connlog_tests::kernel::Kernel;
use connlog_tests::pki::{Ca, LeafSpec};
use connlog_tests::promtext;
use connlog_tests::tlsclient::{self, ClientSpec};
use connlog_tests::tlsfixture::client_refused;
use connlog_tests::{Netns, Pair, TempDir};

const PORT: u16 = 8443;
const METRICS: &str = "127.0.0.1:9464";

fn get(ns: &Netns, path: &str) -> Result<(u16, String)> {
    promtext::get(ns, METRICS, path)
}

#[test]
fn counters_after_known_connections() -> Result<()> {
    let pair = Pair::new("metrics")?;
    let dir = TempDir::new("metrics")?;
    let root = Ca::root("metrics root")?;
    let agent = promtext::start_agent(&pair, dir.path(), &root, PORT, METRICS, "2s")?;

    let addr = format!("{}:{PORT}", pair.server_v4).parse()?;
    let good = root.leaf(&LeafSpec::default())?;
    let stranger = Ca::root("other root")?.leaf(&LeafSpec::default())?;
    for _ in 0..2 {
        tlsclient::handshake(pair.client.connect(addr)?, &ClientSpec::with_leaf(&good))?;
    }
    assert!(client_refused(tlsclient::handshake(
        pair.client.connect(addr)?,
        &ClientSpec::with_leaf(&stranger),
    )));

    // Records reach the exporter once joined with their kernel half.
    let m = promtext::wait_for(
        &pair.server,
        METRICS,
        &agent,
        Duration::from_secs(10),
        "records counted",
        |m| m.get("connlog_export_records_in_total") == Some(&3),
    )?;
    let want = [
        ("connlog_records_total{status=\"Success\"}", 2),
        (
            "connlog_records_total{status=\"Failed:ClientCertUntrusted\"}",
            1,
        ),
        ("connlog_tls_accepted_total", 3),
        ("connlog_tls_outcomes_dropped_total", 0),
        ("connlog_join_joined_total", 3),
        ("connlog_join_overflow_emitted_total", 0),
        ("connlog_join_overflow_kernel_dropped_total", 0),
        ("connlog_probe_ring_full_total", 0),
        ("connlog_probe_channel_full_total", 0),
        ("connlog_probe_table_full_total", 0),
        ("connlog_probe_established_after_timeout_total", 0),
        ("connlog_join_after_timeout_total", 0),
        ("connlog_export_records_in_total", 3),
        ("connlog_export_records_acked_total", 0),
        ("connlog_export_dropped_queue_full_total", 0),
        ("connlog_export_dropped_buffer_full_total", 0),
        ("connlog_export_batches_spooled_total", 0),
    ];
    for (name, value) in want {
        assert_eq!(m.get(name), Some(&value), "{name}: {m:?}");
    }
    assert_eq!(
        m.keys()
            .filter(|k| k.starts_with("connlog_records_total"))
            .count(),
        2,
        "{m:?}"
    );
    // What this kernel lacks, as docs/kernels.md says for its line.
    let kernel = Kernel::current();
    let missing = [
        ("socket_cookie", !kernel.socket_cookie()),
        ("rst_reason", !kernel.rst_reason()),
        ("drop_reason", !kernel.drop_reason()),
        (
            "drop_listener",
            kernel.drop_reason() && !kernel.drop_listener(),
        ),
        (
            "listen_overflow_reason",
            kernel.drop_reason() && !kernel.listen_overflow_reason(),
        ),
        ("tcx", !kernel.tcx()),
    ];
    for (feature, lacks) in missing {
        let name = format!("connlog_probe_kernel_feature_missing{{feature=\"{feature}\"}}");
        assert_eq!(m.get(&name), Some(&u64::from(lacks)), "{name}: {m:?}");
    }
    // No connection function configured: no function counters.
    assert!(
        !m.keys().any(|k| k.starts_with("connlog_function_")),
        "{m:?}"
    );

    assert_eq!(get(&pair.server, "/")?.0, 404);
    Ok(())
}
