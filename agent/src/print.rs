//! `--print-events`: every event as one JSON line on stdout, the debugging
//! view of what the agent sees. The one place events are printed.

use std::io::Write;

use serde::Serialize;

/// Writes `event` as one JSON line to stdout and flushes, so a reader sees
/// each event as it happens. A serialization or write error is returned,
/// never a panic.
pub fn print_event<T: Serialize>(event: &T) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, event)?;
    out.write_all(b"\n")?;
    out.flush()
}
