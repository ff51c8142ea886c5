//! The table `cargo xtask bench tls` prints: per target, the first round's
//! rates, latencies and idle memory, and the CPU per handshake of every
//! round (median, and the range of the rounds).

use super::median;
use super::tls::Report;

pub(super) struct Row {
    pub(super) c64: Report,
    pub(super) c1: Report,
    /// One per round.
    pub(super) cpu: Vec<Cpu>,
    pub(super) idle_kib: f64,
}

/// CPU per handshake of one c=64 run.
pub(super) struct Cpu {
    /// From /proc/<pid>/stat of the target's processes.
    pub(super) proc_ms: f64,
    /// From the target's cgroup, when there is one.
    pub(super) cgroup_ms: Option<f64>,
}

pub(super) fn print_table(rows: &[(&str, Row)]) {
    let rounds = rows.iter().map(|(_, r)| r.cpu.len()).max().unwrap_or(0);
    println!(
        "| target | handshakes/s (c=64) | CPU ms/handshake (/proc, median of {rounds}) | (cgroup, median) | /proc min–max | tickets/handshake | p50 / p99 ms (c=64) | p50 / p99 ms (c=1) | RSS KiB per idle proxied conn (1k) | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in rows {
        let proc: Vec<f64> = r.cpu.iter().map(|c| c.proc_ms).collect();
        let cgroup: Vec<f64> = r.cpu.iter().filter_map(|c| c.cgroup_ms).collect();
        let cgroup = median(&cgroup).map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        let (lo, hi) = proc
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let tickets = r.c64.tickets as f64 / r.c64.handshakes.max(1) as f64;
        println!(
            "| {name} | {:.0} | {:.3} | {cgroup} | {lo:.3}–{hi:.3} | {tickets:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} | {} |",
            r.c64.per_sec,
            median(&proc).unwrap_or(f64::NAN),
            r.c64.p50_ms,
            r.c64.p99_ms,
            r.c1.p50_ms,
            r.c1.p99_ms,
            r.idle_kib,
            r.c64.errors + r.c1.errors,
        );
    }
    println!();
    println!("CPU ms per handshake (/proc) by round:");
    for (name, r) in rows {
        let each: Vec<String> = r.cpu.iter().map(|c| format!("{:.3}", c.proc_ms)).collect();
        println!("  {name}: {}", each.join(" "));
    }
}
