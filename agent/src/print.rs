//! `--print-events`: one JSON object per line on stdout, for debugging and
//! for tests. Shared by every event source (TLS outcomes, kernel events).

use std::io::Write as _;

/// Writes `value` as one JSON line to stdout and flushes, so a reader sees
/// each event as it happens. serde_json escapes every control character,
/// so hostile certificate fields cannot break the line.
pub fn print_json_line<T: serde::Serialize>(value: &T) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}
