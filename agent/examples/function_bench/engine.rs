//! The engine alone: the KVS revocation function through its own pool,
//! many calls in flight, calls/s and execution-time percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::REVOCATION;
use connlog_agent::function::{
    CertInfo, ConnectionFunction, ConnectionInfo, FunctionPool, Kvs, Program, Verdict,
};

const TRIVIAL: &str = "function connectionHandler(c) { c.allow(); }";

fn serial(i: u32) -> String {
    let b = i.to_be_bytes();
    format!("00:c3:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

fn conn(i: u32) -> ConnectionInfo {
    ConnectionInfo {
        connection_id: format!("bench-{i}"),
        distribution_id: "EBENCH".into(),
        client_ip: "198.18.0.2".parse().expect("literal address"),
        endpoint: Some("edge.test".into()),
        leaf: Some(CertInfo {
            serial_number: serial(i),
            subject: "O=connlog, CN=bench client".into(),
            issuer: "CN=connlog bench CA".into(),
            not_before: "2025-06-05T23:28:21Z".into(),
            not_after: "2125-05-12T23:28:21Z".into(),
            sha256_fingerprint: "ab".repeat(32),
        }),
        intermediates: Vec::new(),
    }
}

pub struct Row {
    name: &'static str,
    calls: usize,
    per_sec: f64,
    exec: Vec<Duration>,
    round_trip: Vec<Duration>,
    denied: usize,
}

async fn measure(
    name: &'static str,
    function: &ConnectionFunction,
    calls: u32,
    in_flight: usize,
    on_pool: bool,
) -> Row {
    let started = Instant::now();
    let mut exec = Vec::with_capacity(calls as usize);
    let mut round_trip = Vec::with_capacity(calls as usize);
    let mut denied = 0;
    let mut next = 0u32;
    let mut tasks = tokio::task::JoinSet::new();
    while next < calls || !tasks.is_empty() {
        while next < calls && tasks.len() < in_flight {
            let function = function.clone();
            let i = next;
            tasks.spawn(async move {
                let t = Instant::now();
                let r = if on_pool {
                    function.run_on_pool(conn(i)).await
                } else {
                    function.run(conn(i)).await
                };
                (r, t.elapsed())
            });
            next += 1;
        }
        if let Some(Ok((result, rtt))) = tasks.join_next().await {
            match result.verdict {
                Verdict::Allow => {}
                Verdict::Deny => denied += 1,
                other => panic!("bench call failed: {other:?}"),
            }
            exec.push(result.exec_time);
            round_trip.push(rtt);
        }
    }
    let elapsed = started.elapsed();
    exec.sort();
    round_trip.sort();
    Row {
        name,
        calls: exec.len(),
        per_sec: exec.len() as f64 / elapsed.as_secs_f64(),
        exec,
        round_trip,
        denied,
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

pub async fn run(calls: u32) -> (usize, Vec<Row>) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // 10 000 revoked serials: every 5th benchmark client is revoked.
    let revoked: serde_json::Map<String, serde_json::Value> = (0..50_000u32)
        .step_by(5)
        .map(|i| {
            (
                serial(i),
                serde_json::Value::String("key-compromise".into()),
            )
        })
        .collect();
    let kvs_json = serde_json::to_vec(&revoked).expect("serializable map");
    let kvs = Kvs::from_json(&kvs_json).expect("valid kvs");
    let pool = FunctionPool::start(workers, 1024).expect("start pool");
    let revocation = Program::new("revocation.js", REVOCATION.into(), kvs).expect("valid");
    let trivial = Program::new("trivial.js", TRIVIAL.into(), Kvs::default()).expect("valid");
    let revocation = ConnectionFunction::new(&pool, Arc::clone(&revocation));
    let trivial = ConnectionFunction::new(&pool, trivial);
    // Warm every worker's engine cache.
    for on_pool in [true, false] {
        measure("warm-up", &revocation, 2_000, 64, on_pool).await;
        measure("warm-up", &trivial, 2_000, 64, on_pool).await;
    }
    let rows = vec![
        measure("allow() only, pool", &trivial, calls, 64, true).await,
        measure(
            "KVS revocation (10k keys), pool",
            &revocation,
            calls,
            64,
            true,
        )
        .await,
        measure("allow() only, inline", &trivial, calls, 64, false).await,
        measure(
            "KVS revocation (10k keys), inline",
            &revocation,
            calls,
            64,
            false,
        )
        .await,
    ];
    (workers, rows)
}

pub fn print(workers: usize, calls: u32, rows: &[Row]) {
    println!(
        "Engine alone: {workers} pool workers (inline rows: on the tokio threads), {calls} calls per row, 64 in flight\n"
    );
    println!(
        "| function | calls | calls/s | exec p50 µs | exec p99 µs | round trip p50 µs | round trip p99 µs | denied |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            r.name,
            r.calls,
            r.per_sec,
            pct(&r.exec, 0.50),
            pct(&r.exec, 0.99),
            pct(&r.round_trip, 0.50),
            pct(&r.round_trip, 0.99),
            r.denied
        );
    }
}
