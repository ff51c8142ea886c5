//! Reading the records back and printing the per-status table.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use connlog_tests::agent::Agent;
use serde_json::Value;

/// Waits for `count` records (each at most 10 s apart). The kernel probe's
/// TcpEvents (tagged `"event"`) are skipped: until the joiner merges them
/// into records they are printed alongside.
pub fn collect(agent: &Agent, count: usize) -> Result<Vec<Value>> {
    let mut records = Vec::new();
    while records.len() < count {
        let ev = agent.event()?;
        if ev.get("event").is_none() {
            records.push(ev);
        }
    }
    Ok(records)
}

pub fn write_jsonl(path: &Path, records: &[Value]) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in records {
        writeln!(file, "{r}")?;
    }
    file.flush()?;
    Ok(())
}

/// Prints expected vs seen per status; true when they match everywhere.
pub fn print_table(expected: &[&str], records: &[Value]) -> bool {
    let mut rows: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for e in expected {
        rows.entry((*e).to_string()).or_default().0 += 1;
    }
    for r in records {
        let status = r["status"].as_str().unwrap_or("(no status)").to_string();
        rows.entry(status).or_default().1 += 1;
    }
    println!(
        "\n{:<42} {:>8} {:>8}",
        "connectionStatus", "expected", "records"
    );
    println!("{}", "-".repeat(60));
    let mut all_match = true;
    for (status, (want, got)) in &rows {
        let mark = if want == got { "" } else { "  ✗" };
        all_match &= want == got;
        println!("{status:<42} {want:>8} {got:>8}{mark}");
    }
    println!("{}", "-".repeat(60));
    println!("{:<42} {:>8} {:>8}", "total", expected.len(), records.len());
    all_match
}
