//! OTLP against a receiver built from the official `opentelemetry-proto`
//! crate (the agent's exporter and the collector's forwarding sink), and
//! the collector's mutual TLS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use connlog_tests::pki::{self, Ca, LeafSpec};
use connlog_tests::{CollectorProcess, SynthProcess};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use rcgen::{ExtendedKeyUsagePurpose, SanType};

#[derive(Clone, Default)]
struct Receiver {
    logs: Arc<Mutex<Vec<LogRecord>>>,
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut logs = self
            .logs
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?;
        for rl in request.into_inner().resource_logs {
            for sl in rl.scope_logs {
                logs.extend(sl.log_records);
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// An OTLP/gRPC logs receiver on a loopback port.
async fn receiver() -> Result<(Receiver, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let r = Receiver::default();
    let svc = LogsServiceServer::new(r.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok((r, addr))
}

fn attr(log: &LogRecord, key: &str) -> Option<Value> {
    log.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

fn s(v: &str) -> Option<Value> {
    Some(Value::StringValue(v.to_owned()))
}

async fn wait_for(r: &Receiver, n: usize) -> Vec<LogRecord> {
    for _ in 0..200 {
        let logs = r.logs.lock().map(|l| l.clone()).unwrap_or_default();
        if logs.len() >= n {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.logs.lock().map(|l| l.clone()).unwrap_or_default()
}

fn check_mapping(logs: &[LogRecord], agent: &str) {
    let by_id = |id: &str| {
        logs.iter()
            .find(|l| attr(l, "connlog.connection_id") == s(id))
            .unwrap_or_else(|| panic!("{id} missing"))
    };
    let ok = by_id(&format!("{agent}-0"));
    assert_eq!(attr(ok, "client.address"), s("198.18.0.0"));
    assert_eq!(attr(ok, "client.port"), Some(Value::IntValue(1024)));
    assert_eq!(attr(ok, "network.local.address"), s("198.18.0.1"));
    assert_eq!(attr(ok, "server.address"), s("edge.test"));
    assert_eq!(attr(ok, "tls.protocol.version"), s("TLSv1.3"));
    assert_eq!(attr(ok, "tls.cipher"), s("TLS_AES_128_GCM_SHA256"));
    assert_eq!(
        attr(ok, "tls.client.subject"),
        s("C=US, O=Example, CN=client.test")
    );
    assert_eq!(attr(ok, "tls.client.not_before"), s("2025-06-05T23:28:21Z"));
    assert_eq!(attr(ok, "tls.established"), Some(Value::BoolValue(true)));
    assert_eq!(attr(ok, "error.type"), None);
    assert_eq!(attr(ok, "connlog.distribution_id"), s("E2DX1SLDPK0123"));
    let failed = by_id(&format!("{agent}-3"));
    assert_eq!(
        attr(failed, "tls.established"),
        Some(Value::BoolValue(false))
    );
    assert_eq!(attr(failed, "error.type"), s("TcpTimeout"));
    assert_eq!(
        attr(failed, "connlog.tcp_failure_detail"),
        s("syn-ack-unanswered")
    );
    assert_eq!(attr(failed, "tls.cipher"), None);
    assert!(failed.time_unix_nano > 1_700_000_000_000_000_000);
    assert_eq!(failed.time_unix_nano % 1_000_000, 0, "eventTimestamp in ms");
}

#[tokio::test(flavor = "multi_thread")]
async fn exporter_speaks_otlp_to_an_opentelemetry_proto_receiver() -> Result<()> {
    let (r, addr) = receiver().await?;
    let synth = SynthProcess::start(&[
        "--endpoint",
        &format!("http://{addr}"),
        "--protocol",
        "otlp",
        "--rate",
        "500",
        "--count",
        "200",
        "--agent-id",
        "otlp",
    ])?;
    let report =
        tokio::task::spawn_blocking(move || synth.report(Duration::from_secs(30))).await??;
    assert_eq!(report["acked"], 200, "{report}");
    let logs = wait_for(&r, 200).await;
    assert_eq!(logs.len(), 200);
    check_mapping(&logs, "otlp");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn collector_forwards_to_an_otlp_receiver() -> Result<()> {
    let (r, addr) = receiver().await?;
    let mut c = CollectorProcess::start(&format!(
        "[[sink]]\ntype = \"otlp\"\nendpoint = \"http://{addr}\"\n"
    ))?;
    let synth = SynthProcess::start(&[
        "--endpoint",
        &c.url(),
        "--rate",
        "500",
        "--count",
        "100",
        "--agent-id",
        "fwd",
    ])?;
    let report =
        tokio::task::spawn_blocking(move || synth.report(Duration::from_secs(30))).await??;
    assert_eq!(report["acked"], 100, "{report}");
    let logs = wait_for(&r, 100).await;
    assert_eq!(logs.len(), 100, "acked means forwarded");
    check_mapping(&logs, "fwd");
    assert_eq!(c.terminate()?, 0);
    Ok(())
}

#[test]
fn mutual_tls_collector_accepts_only_agents_its_trust_store_validates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Ca::root("connlog test collector CA")?;
    let server = ca.leaf(&LeafSpec {
        subject: vec![(rcgen::DnType::CommonName, "collector.test".into())],
        eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
        sans: vec![SanType::DnsName("collector.test".try_into()?)],
        ..LeafSpec::default()
    })?;
    let agent = ca.leaf(&LeafSpec::default())?;
    let rogue = Ca::root("someone else")?.leaf(&LeafSpec::default())?;
    let write = |name: &str, label: &str, der: &[u8]| {
        pki::write(dir.path(), name, &pki::pem(label, &[der]))
    };
    let ca_pem = write("ca.pem", "CERTIFICATE", &ca.der)?;
    let server_pem = write("server.pem", "CERTIFICATE", &server.der)?;
    let server_key = write("server.key", "PRIVATE KEY", &server.key_pkcs8)?;
    let agent_pem = write("agent.pem", "CERTIFICATE", &agent.der)?;
    let agent_key = write("agent.key", "PRIVATE KEY", &agent.key_pkcs8)?;
    let rogue_pem = write("rogue.pem", "CERTIFICATE", &rogue.der)?;
    let rogue_key = write("rogue.key", "PRIVATE KEY", &rogue.key_pkcs8)?;

    let mut c = CollectorProcess::start(&format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n\n[[sink]]\ntype = \"file\"\nformat = \"json\"\ndir = \"{{dir}}/out\"\n",
        server_pem.display(),
        server_key.display(),
        ca_pem.display()
    ))?;
    let url = format!("https://{}", c.addr);
    let run = |cert: &std::path::Path, key: &std::path::Path, id: &str| {
        SynthProcess::start(&[
            "--endpoint",
            &url,
            "--rate",
            "500",
            "--count",
            "50",
            "--agent-id",
            id,
            "--ca",
            &ca_pem.to_string_lossy(),
            "--cert",
            &cert.to_string_lossy(),
            "--key",
            &key.to_string_lossy(),
            "--domain",
            "collector.test",
            "--shutdown-deadline-ms",
            "1500",
        ])?
        .report(Duration::from_secs(30))
    };
    let good = run(&agent_pem, &agent_key, "mtls-good")?;
    assert_eq!(good["acked"], 50, "{good}");
    let bad = run(&rogue_pem, &rogue_key, "mtls-rogue")?;
    assert_eq!(bad["acked"], 0, "{bad}");
    assert_eq!(bad["not_sent"], 50, "{bad}");
    assert_eq!(c.terminate()?, 0);
    let ids: Vec<String> = connlog_tests::json_records(&c.path().join("out"))?
        .iter()
        .map(|r| r["connectionId"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), 50);
    assert!(ids.iter().all(|id| id.starts_with("mtls-good-")));
    Ok(())
}
