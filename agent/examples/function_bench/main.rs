//! `cargo xtask bench function` (release build): full mTLS handshakes/s
//! through the real terminator with the KVS revocation function vs without,
//! side by side in one run, the function's execution time under that load,
//! and the process CPU time per handshake (clients and server share the
//! process: on a shared box CPU per handshake is steadier than the rate),
//! then the engine alone. Prints markdown tables for docs/benchmarks.md.

mod engine;
mod handshakes;

use std::time::Duration;

/// The revocation function in the style of CloudFront's documentation.
const REVOCATION: &str = r#"import cf from 'cloudfront';
async function connectionHandler(connection) {
    const serial = connection.clientCertificate.certificates.leaf.serialNumber;
    if (await cf.kvs().exists(serial)) {
        connection.logCustomData('REVOKED:' + serial);
        return connection.deny();
    }
    connection.logCustomData('OK:' + serial);
    return connection.allow();
}
"#;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 3u64);
    let concurrency = env_or("BENCH_CONCURRENCY", 16usize);
    let calls = env_or("BENCH_CALLS", 50_000u32);

    let rows = handshakes::run(seconds, concurrency).await?;
    let pool = connlog_agent::function::shared_pool()?.counters();
    let us = |p: f64| pool.exec_quantile(p).map_or(0, |d: Duration| d.as_micros());
    println!(
        "Full mTLS handshakes (TLS 1.3, P-256, no resumption), in-process terminator on \
         loopback, {concurrency} concurrent clients, 4 × {seconds} s per row, interleaved ABBAABBA\n"
    );
    println!(
        "| listener | handshakes | handshakes/s | relative | CPU µs / handshake | relative by CPU | outcomes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let (base, base_cpu) = (rows[0].per_sec, rows[0].cpu_per_handshake.as_secs_f64());
    for r in &rows {
        let cpu = r.cpu_per_handshake.as_secs_f64();
        println!(
            "| {} | {} | {:.0} | {:.1} % | {:.0} | {:.1} % | {} |",
            r.name,
            r.handshakes,
            r.per_sec,
            100.0 * r.per_sec / base,
            cpu * 1e6,
            100.0 * base_cpu / cpu,
            r.statuses
        );
    }
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "\nFunction execution time during the handshake rows (CPU time of one call, \
         1 µs resolution): p50 {} µs, p99 {} µs; calls run inline {}, stopped at the \
         inline budget and rerun on the pool {}, errors {}, internal {}\n",
        us(0.50),
        us(0.99),
        count(&pool.inline),
        count(&pool.inline_overruns),
        count(&pool.errors),
        count(&pool.internal) + count(&pool.queue_full)
    );

    let (workers, engine_rows) = engine::run(calls).await;
    engine::print(workers, calls, &engine_rows);
    Ok(())
}
