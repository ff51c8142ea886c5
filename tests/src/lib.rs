//! Shared helpers for connlog's end-to-end tests: throwaway network
//! namespaces joined by veth, the paths of the binaries under test, a
//! generated test PKI, a rustls test client and a harness for the agent.
//!
//! Tests use only 198.18.0.0/15 and fd00::/8 inside their own namespaces
//! (and loopback), and clean up in `Drop`, also when they fail.

pub mod agent;
mod bins;
mod collector;
pub mod kernel;
mod netns;
mod nssock;
pub mod pki;
pub mod probefixture;
pub mod procfs;
pub mod promtext;
pub mod scenarios;
mod synth_proc;
mod tempdir;
pub mod tlsclient;
pub mod tlsfixture;
pub mod upstream;

pub use bins::bin_path;
pub use collector::{CollectorProcess, finished_files, free_port, json_records, signal};
pub use connlog_proto::sample::record as synth_record;
pub use netns::{Netns, Pair};
pub use nssock::reset;
pub use synth_proc::SynthProcess;
pub use tempdir::TempDir;

/// How long to wait for something that must happen: `wait` times
/// `CONNLOG_TEST_PATIENCE` (default 1). The kernel matrix sets it for its
/// VMs, which run under emulation several times slower than the host.
/// Waits that check that nothing more happens are never stretched.
pub fn patient(wait: std::time::Duration) -> std::time::Duration {
    let factor = std::env::var("CONNLOG_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    wait * factor
}
