//! The per-status table of the records the collector wrote.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One row: how many records a status was expected in and found in, and
/// the details seen with it (`tcpFailureDetail`, custom data).
#[derive(Default)]
struct Row {
    expected: usize,
    records: usize,
    details: Vec<String>,
}

/// Prints expected vs written per status; true when they match everywhere.
pub fn print_table(expected: &[&str], records: &[Map<String, Value>]) -> bool {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for e in expected {
        rows.entry((*e).to_string()).or_default().expected += 1;
    }
    for r in records {
        let field = |name: &str| r.get(name).and_then(Value::as_str).unwrap_or("-");
        let row = rows
            .entry(field("connectionStatus").to_string())
            .or_default();
        row.records += 1;
        for detail in [field("tcpFailureDetail"), field("connectionLogCustomData")] {
            if detail != "-" && !row.details.iter().any(|d| d == detail) {
                row.details.push(detail.to_string());
            }
        }
    }
    let line = "-".repeat(100);
    println!(
        "\n{:<40} {:>8} {:>8}  detail / custom data",
        "connectionStatus", "expected", "records"
    );
    println!("{line}");
    let mut all_match = true;
    for (status, row) in &rows {
        let mark = if row.expected == row.records {
            ""
        } else {
            "✗ "
        };
        all_match &= row.expected == row.records;
        println!(
            "{status:<40} {:>8} {:>8}  {mark}{}",
            row.expected,
            row.records,
            row.details.join(", ")
        );
    }
    println!("{line}");
    println!("{:<40} {:>8} {:>8}", "total", expected.len(), records.len());
    all_match
}
