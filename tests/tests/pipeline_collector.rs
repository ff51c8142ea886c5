//! The collector process on its own: bad input gets a clear gRPC status
//! and never crashes it, duplicates are dropped, Parquet reads back in
//! pyarrow, `observe` tails with filters.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use connlog_proto::v1::collector_client::CollectorClient;
use connlog_proto::v1::{Ack, ConnectionRecord, FailureCode, RecordBatch, Status};
use connlog_tests::{
    CollectorProcess, SynthProcess, bin_path, finished_files, json_records, synth_record,
};
use tokio_stream::StreamExt;

async fn client(c: &CollectorProcess) -> Result<CollectorClient<tonic::transport::Channel>> {
    Ok(CollectorClient::connect(c.url())
        .await?
        .max_encoding_message_size(64 << 20))
}

/// Sends `batches` on one stream; returns the acks, or the status that
/// ended the stream.
async fn ship(
    c: &CollectorProcess,
    batches: Vec<RecordBatch>,
) -> Result<Result<Vec<Ack>, tonic::Status>> {
    let mut client = client(c).await?;
    let n = batches.len();
    let response = match client.ship(tokio_stream::iter(batches)).await {
        Ok(r) => r,
        Err(status) => return Ok(Err(status)),
    };
    let mut acks = Vec::new();
    let mut stream = response.into_inner();
    while acks.len() < n {
        match stream.next().await {
            Some(Ok(ack)) => acks.push(ack),
            Some(Err(status)) => return Ok(Err(status)),
            None => break,
        }
    }
    Ok(Ok(acks))
}

fn batch(seq: u64, records: Vec<ConnectionRecord>) -> RecordBatch {
    RecordBatch {
        sequence: seq,
        agent_id: "test".into(),
        records,
    }
}

const SINK: &str = r#"
[server]
max_message_bytes = 65536
max_batch_records = 50

[[sink]]
type = "file"
format = "json"
dir = "{dir}/out"
fields = ["connectionId", "connectionStatus"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn bad_batches_get_clear_statuses_and_duplicates_are_dropped() -> Result<()> {
    let mut c = CollectorProcess::start(SINK)?;

    let mut bad = synth_record("t", "D", 1);
    bad.connection_id.clear();
    let status = ship(&c, vec![batch(4, vec![synth_record("t", "D", 0), bad])])
        .await?
        .expect_err("empty connectionId refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "batch 4: record 1: connection_id is empty"
    );

    let mut bad = synth_record("t", "D", 1);
    bad.set_status(Status::Failed);
    bad.set_failure_code(FailureCode::Unspecified);
    let status = ship(&c, vec![batch(5, vec![bad])])
        .await?
        .expect_err("failed without code");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("batch 5: record 0: status"),
        "{}",
        status.message()
    );

    let many = (0..51).map(|i| synth_record("t", "D", i)).collect();
    let status = ship(&c, vec![batch(6, many)])
        .await?
        .expect_err("too many records");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "batch 6: 51 records, more than the collector's limit of 50"
    );

    let mut huge = synth_record("t", "D", 0);
    huge.connection_log_custom_data = Some("x".repeat(70_000));
    let status = ship(&c, vec![batch(7, vec![huge])])
        .await?
        .expect_err("oversized message");
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    assert!(
        status.message().contains("message length too large"),
        "{}",
        status.message()
    );

    // Still serving: a good batch twice, then once more with one new record.
    let good: Vec<_> = (0..10).map(|i| synth_record("dup", "D", i)).collect();
    let acks = ship(&c, vec![batch(1, good.clone()), batch(2, good.clone())]).await??;
    assert_eq!(
        acks.iter()
            .map(|a| (a.sequence, a.duplicates))
            .collect::<Vec<_>>(),
        vec![(1, 0), (2, 10)]
    );
    let mut again = good;
    again.push(synth_record("dup", "D", 10));
    let acks = ship(&c, vec![batch(3, again)]).await??;
    assert_eq!(acks[0].duplicates, 10);

    assert_eq!(c.terminate()?, 0);
    let mut ids: Vec<String> = json_records(&c.path().join("out"))?
        .iter()
        .map(|r| r["connectionId"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..11).map(|i| format!("dup-{i}")).collect();
    want.sort();
    assert_eq!(ids, want, "only the valid batch's records, once each");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_reads_back_in_pyarrow_with_types_and_nulls() -> Result<()> {
    let mut c = CollectorProcess::start(
        r#"
[[sink]]
type = "file"
format = "parquet"
dir = "{dir}/pq"
path = "{DistributionId}/{yyyy}/{MM}/{dd}/{HH}"
hive = true
fields = ["eventTimestamp", "connectionId", "connectionStatus", "clientIp", "clientPort", "tlsSni", "tlsHandshakeDuration", "clientLeafCertSubject", "synAckRetransmits", "tcpFailureDetail"]
"#,
    )?;
    let ok = synth_record("pq", "E2DX1SLDPK0123", 0);
    let mut hostile = synth_record("pq", "E2DX1SLDPK0123", 1);
    hostile.client_leaf_cert_subject = Some(b"CN=a\tb\n%\xff".to_vec());
    let timeout = synth_record("pq", "E2DX1SLDPK0123", 3);
    let ts = ok.event_timestamp_ms;
    ship(&c, vec![batch(1, vec![ok, hostile, timeout])]).await??;
    assert_eq!(c.terminate()?, 0);
    let files = finished_files(&c.path().join("pq"), ".parquet");
    assert_eq!(files.len(), 1, "{files:?}");
    let rel = files[0]
        .strip_prefix(c.path().join("pq"))?
        .to_string_lossy()
        .into_owned();
    assert!(
        rel.starts_with("DistributionId=E2DX1SLDPK0123/year="),
        "{rel}"
    );
    let script = r#"
import json, sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(json.dumps({"types": {f.name: str(f.type) for f in t.schema},
                  "rows": t.to_pylist()}, default=str))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&files[0])
        .stderr(Stdio::inherit())
        .output()
        .context("running python3 with pyarrow")?;
    assert!(out.status.success(), "pyarrow failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let types = &v["types"];
    assert_eq!(types["eventTimestamp"], "timestamp[ms, tz=UTC]");
    assert_eq!(types["clientPort"], "int64");
    assert_eq!(types["connectionId"], "string");
    assert_eq!(types["synAckRetransmits"], "int64");
    let rows = v["rows"].as_array().context("rows")?;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["connectionId"], "pq-0");
    assert_eq!(rows[0]["connectionStatus"], "Success");
    assert_eq!(rows[0]["clientPort"], 1024);
    assert_eq!(rows[0]["tlsHandshakeDuration"], 3);
    assert_eq!(rows[0]["tcpFailureDetail"], serde_json::Value::Null);
    assert!(
        rows[0]["eventTimestamp"]
            .as_str()
            .is_some_and(|s| s.contains("+00:00"))
    );
    assert_eq!(rows[1]["clientLeafCertSubject"], "CN=a%09b%0A%25%FF");
    assert_eq!(rows[2]["connectionStatus"], "Failed:TcpTimeout");
    assert_eq!(rows[2]["tlsSni"], serde_json::Value::Null);
    assert_eq!(rows[2]["tlsHandshakeDuration"], serde_json::Value::Null);
    assert_eq!(rows[2]["synAckRetransmits"], 5);
    assert_eq!(rows[2]["tcpFailureDetail"], "syn-ack-unanswered");
    let _ = ts;
    Ok(())
}

#[test]
fn observe_tails_with_filters_as_json_lines_and_table() -> Result<()> {
    let c = CollectorProcess::start(
        "[[sink]]\ntype = \"file\"\nformat = \"json\"\ndir = \"{dir}/out\"\n",
    )?;
    let spawn_observe = |extra: &[&str]| {
        Command::new(bin_path("connlog-collector"))
            .args(["observe", "--server", &c.url(), "--count", "3"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let json = spawn_observe(&[
        "--output",
        "json",
        "--status",
        "TcpTimeout",
        "--client",
        "198.18.0.0/24",
    ])?;
    let table = spawn_observe(&["--status", "Success", "--distribution", "E2DX1SLDPK0123"])?;
    std::thread::sleep(Duration::from_millis(1500));
    // Records 3, 7, 11, … are TcpTimeout; clients 198.18.0.x for n < 256.
    let synth = SynthProcess::start(&[
        "--endpoint",
        &c.url(),
        "--rate",
        "200",
        "--count",
        "40",
        "--agent-id",
        "obs",
    ])?;
    synth.report(Duration::from_secs(20))?;
    let json = json.wait_with_output()?;
    let lines: Vec<serde_json::Value> = String::from_utf8(json.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert_eq!(l["connectionStatus"], "Failed:TcpTimeout");
        assert_eq!(l["tcpFailureDetail"], "syn-ack-unanswered");
        assert_eq!(l.as_object().map(|o| o.len()), Some(24), "every field");
    }
    assert_eq!(lines[0]["connectionId"], "obs-3");
    let table = String::from_utf8(table.wait_with_output()?.stdout)?;
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert!(rows[0].starts_with("TIME"), "{table}");
    assert!(rows[1].contains(" Success "), "{table}");
    assert!(rows[1].contains("E2DX1SLDPK0123"), "{table}");
    Ok(())
}
